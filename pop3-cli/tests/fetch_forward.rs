//! `pop3 fetch` with an `lmtp = "lmtp://…"` target in its configuration file, from `pop3 serve`
//! into a real Dovecot LMTP server (`dovecot-lmtpd`): every message arrives byte for byte
//! (after the three header fields Dovecot puts first), is recorded, and is deleted from the
//! POP3 server only once Dovecot said `250`; an unknown recipient (`550`) leaves the mail on
//! the server and the run fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{BIN, MESSAGES, Options, PASSWORD, Server, free_port, run};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Messages left in alice's maildrop.
fn on_server(server: &Server) -> usize {
    let md = server.dir.path().join("mail").join(support::USER);
    ["new", "cur"]
        .iter()
        .map(|d| std::fs::read_dir(md.join(d)).unwrap().count())
        .sum()
}

/// A private Dovecot serving LMTP only on 127.0.0.1, killed on drop; the user `alice` (the
/// local part of any address) has her Maildir in `mail/alice`. As root the mail is written
/// as uid 65534 (Dovecot refuses uid 0).
struct DovecotLmtp {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl DovecotLmtp {
    fn start() -> Option<DovecotLmtp> {
        let dovecot = ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())?;
        if !Path::new("/usr/lib/dovecot/lmtp").exists() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let id = |flag: &str| {
            let out = Command::new("id").arg(flag).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let (users, uid, gid) = if id("-u") == "0" {
            std::os::unix::fs::chown(d.join("mail"), Some(65534), Some(65534)).unwrap();
            (
                "default_internal_user = dovecot\ndefault_internal_group = dovecot\n\
                 default_login_user = dovenull\n"
                    .to_string(),
                "65534".to_string(),
                "65534".to_string(),
            )
        } else {
            let (name, group) = (id("-un"), id("-gn"));
            (
                format!(
                    "default_internal_user = {name}\ndefault_login_user = {name}\n\
                     default_internal_group = {group}\n"
                ),
                id("-u"),
                id("-g"),
            )
        };
        let p = d.display();
        std::fs::write(
            d.join("passwd"),
            format!("alice:{{PLAIN}}pw:{uid}:{gid}::{p}/mail/alice::\n"),
        )
        .unwrap();
        let port = free_port();
        std::fs::write(
            d.join("dovecot.conf"),
            format!(
                "base_dir = {p}/run\nstate_dir = {p}/state\nlog_path = {p}/dovecot.log\n\
                 info_log_path = {p}/dovecot.log\n\
                 protocols = lmtp\nlisten = 127.0.0.1\n{users}first_valid_uid = 1\nfirst_valid_gid = 1\n\
                 ssl = no\nauth_username_format = %Ln\nmail_location = maildir:{p}/mail/%n\n\
                 passdb {{\n  driver = passwd-file\n  args = {p}/passwd\n}}\n\
                 userdb {{\n  driver = passwd-file\n  args = {p}/passwd\n}}\n\
                 service lmtp {{\n  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n}}\n\
                 service anvil {{\n  chroot =\n}}\n"
            ),
        )
        .unwrap();
        let mut child = Command::new(dovecot)
            .args(["-F", "-c"])
            .arg(d.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("stderr")).unwrap())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "dovecot exited ({status}): {}",
                    std::fs::read_to_string(d.join("stderr")).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no LMTP on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(DovecotLmtp { child, dir, port })
    }

    fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}{}", read("dovecot.log"), read("stderr"))
    }

    /// alice's messages, each without the three header fields Dovecot puts first
    /// (`Return-Path:`, `Delivered-To:`, `Received:` and its continuation lines), sorted.
    fn delivered(&self) -> Vec<String> {
        let new = self.dir.path().join("mail/alice/new");
        let mut v: Vec<String> = std::fs::read_dir(new)
            .map(|d| {
                d.map(|e| {
                    let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
                    let mut lines = text.split_inclusive('\n').peekable();
                    for field in ["Return-Path: <>\n", "Delivered-To: alice@example.org\n"] {
                        assert_eq!(lines.next(), Some(field), "{text}");
                    }
                    assert!(lines.next().unwrap().starts_with("Received: "), "{text}");
                    while lines.next_if(|l| l.starts_with(['\t', ' '])).is_some() {}
                    lines.collect()
                })
                .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for DovecotLmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `pop3 fetch --config` with one account `fwd` of `server` into `lmtp`, for `recipient`.
fn fetch(home: &Path, server: &Server, lmtp: &DovecotLmtp, recipient: &str, extra: &str) -> Output {
    let config = home.join("fetch.toml");
    std::fs::write(
        &config,
        format!(
            "[accounts.fwd]\nurl = \"pop3s://alice@127.0.0.1:{}\"\nca_file = \"{}\"\n\
             password_command = \"echo {PASSWORD}\"\n\
             lmtp = \"lmtp://127.0.0.1:{}\"\nrecipient = \"{recipient}\"\n{extra}\n",
            server.tls_port.unwrap(),
            server.dir.path().join("cert.pem").display(),
            lmtp.port,
        ),
    )
    .unwrap();
    run(Command::new(BIN)
        .arg("fetch")
        .arg("--config")
        .arg(&config)
        .env("HOME", home)
        .env("XDG_STATE_HOME", home.join("state")))
}

#[test]
fn fetch_into_dovecot_lmtp_byte_exact_deleting_only_what_was_delivered() {
    let Some(dovecot) = DovecotLmtp::start() else {
        eprintln!("Dovecot's LMTP server (dovecot-lmtpd) is not installed: skipped");
        return;
    };
    let server = Server::start(Options {
        tls: true,
        ..Options::default()
    });
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    // An unknown recipient: every message refused (550), all left on the server.
    let out = fetch(h, &server, &dovecot, "nobody@example.org", "");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("3 refused by the target"), "{out:?}");
    let e = stderr(&out);
    assert!(
        e.contains(&format!(
            "not delivered, left on the server: lmtp://127.0.0.1:{} answered 550",
            dovecot.port
        )),
        "{e}"
    );
    assert_eq!(on_server(&server), 3);
    assert!(dovecot.delivered().is_empty());
    // keep: delivered and recorded, left on the server.
    let out = fetch(h, &server, &dovecot, "alice@example.org", "keep = true");
    assert!(out.status.success(), "{}\n{}", stderr(&out), dovecot.log());
    assert!(stdout(&out).contains("3 messages fetched"), "{out:?}");
    let mut want: Vec<String> = MESSAGES.iter().map(|m| m.to_string()).collect();
    want.sort();
    assert_eq!(dovecot.delivered(), want, "{}", dovecot.log());
    assert_eq!(on_server(&server), 3);
    let record = h.join("state/pop3/forward-127.0.0.1-alice");
    assert_eq!(
        std::fs::read_to_string(&record).unwrap().lines().count(),
        3,
        "one key a message"
    );
    // The next run delivers nothing again and deletes what was delivered.
    let out = fetch(h, &server, &dovecot, "alice@example.org", "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("0 messages fetched")
            && stdout(&out).contains("3 deleted from the server, 0 left"),
        "{out:?}"
    );
    assert_eq!(dovecot.delivered().len(), 3, "nothing delivered twice");
    assert_eq!(on_server(&server), 0);
    assert_eq!(std::fs::read_to_string(&record).unwrap(), "");
}
