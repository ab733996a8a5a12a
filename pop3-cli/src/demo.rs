//! The demo that `pop3 serve` runs with no arguments: `./pop3-demo/` with a users file (user
//! `demo`, password `demo`), a Maildir with a few sample messages and a self-signed
//! certificate, created on first run and reused after.

use std::fs;
use std::path::{Path, PathBuf};

/// The sample messages, as a mail system stores them (LF line ends).
const SAMPLES: [(&str, &str); 3] = [
    (
        "1700000000.M1P1.pop3-demo",
        "From: Demo Sender <sender@example.com>\nTo: demo@localhost\nSubject: Welcome to pop3\nDate: Tue, 14 Nov 2023 22:13:20 +0000\nMessage-ID: <welcome@pop3-demo>\n\nHello!\n\nThis message comes from the pop3 demo server.\nFetch it with `pop3 fetch` or any POP3 client.\n",
    ),
    (
        "1700000060.M2P1.pop3-demo",
        "From: Demo Sender <sender@example.com>\nTo: demo@localhost\nSubject: Lines that start with a dot\nDate: Tue, 14 Nov 2023 22:14:20 +0000\nMessage-ID: <dots@pop3-demo>\n\nPOP3 stuffs these lines on the wire and unstuffs them on arrival:\n.one dot\n..two dots\n.\nThe line above is a single dot.\n",
    ),
    (
        "1700000120.M3P1.pop3-demo",
        "From: Demo Sender <sender@example.com>\nTo: demo@localhost\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\nDate: Tue, 14 Nov 2023 22:15:20 +0000\nMessage-ID: <utf8@pop3-demo>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\nGrüße aus dem Demo-Server. Bodies are passed through byte for byte.\n",
    ),
];

/// What the demo needs.
pub(crate) struct Demo {
    pub(crate) root: PathBuf,
    pub(crate) users: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// Creates `dir` (if it does not exist yet) and returns its paths.
pub(crate) fn setup(dir: &Path) -> Result<Demo, String> {
    let demo = Demo {
        root: dir.join("mail"),
        users: dir.join("users"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    let err = |e: std::io::Error| format!("cannot create the demo in {}: {e}", dir.display());
    if !demo.users.exists() {
        fs::create_dir_all(dir).map_err(err)?;
        fs::write(
            &demo.users,
            "# user:{SCHEME}password — the pop3 demo's only user\ndemo:{PLAIN}demo\n",
        )
        .map_err(err)?;
    }
    let maildir = demo.root.join("demo");
    if !maildir.exists() {
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(maildir.join(sub)).map_err(err)?;
        }
        for (name, text) in SAMPLES {
            fs::write(maildir.join("new").join(name), text).map_err(err)?;
        }
    }
    if !demo.cert.exists() || !demo.key.exists() {
        let c = pop3_tls::self_signed(&["localhost".into(), "127.0.0.1".into()])
            .map_err(|e| e.to_string())?;
        fs::write(&demo.cert, c.cert_pem).map_err(err)?;
        fs::write(&demo.key, c.key_pem).map_err(err)?;
    }
    Ok(demo)
}
