//! `pop3 fetch --mda CMD` against `pop3 serve`: real procmail delivering into a Maildir (what
//! arrives is the message byte for byte, LF line ends), and MDAs that defer (exit 75) or
//! refuse (exit 1): those messages stay on the server and the exit status says so.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod support;
use support::{BIN, MESSAGES, PASSWORD, Server, on_server, run, stderr, stdout};

/// The files of a Maildir's `new/`, contents sorted.
fn delivered(md: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(md.join("new"))
        .map(|d| {
            d.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `pop3 fetch pop3s://alice@… --mda CMD EXTRA…` with its state in `state`.
fn fetch_mda(server: &Server, state: &Path, mda: &str, extra: &[&str]) -> Output {
    run(Command::new(BIN)
        .arg("fetch")
        .arg(format!(
            "pop3s://alice@127.0.0.1:{}",
            server.tls_port.unwrap()
        ))
        .arg("--ca-file")
        .arg(server.dir.path().join("cert.pem"))
        .args(["--password-env", "PW", "--mda", mda])
        .args(extra)
        .env("PW", PASSWORD)
        .env("XDG_STATE_HOME", state))
}

fn procmailrc(dir: &Path) -> (PathBuf, PathBuf) {
    let md = dir.join("Maildir");
    let rc = dir.join("procmailrc");
    std::fs::write(
        &rc,
        format!(
            "DEFAULT={}/\nLOGFILE={}\n",
            md.display(),
            dir.join("procmail.log").display()
        ),
    )
    .unwrap();
    (rc, md)
}

fn sorted(msgs: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = msgs.iter().map(|m| m.to_string()).collect();
    v.sort();
    v
}

#[test]
fn procmail_gets_every_message_byte_exact_and_once() {
    if !Path::new("/usr/bin/procmail").exists() {
        eprintln!("procmail is not installed: skipped");
        return;
    }
    let server = Server::start_tls();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (rc, md) = procmailrc(dir.path());
    let mda = format!("procmail -m {}", rc.display());
    // --keep: delivered, recorded, left on the server.
    let out = fetch_mda(&server, &state, &mda, &["--keep"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("3 messages fetched"), "{out:?}");
    assert_eq!(delivered(&md), sorted(&MESSAGES));
    assert_eq!(on_server(&server), 3);
    // The record (in the state directory) keeps them from being delivered again.
    let record = state.join("pop3/mda-127.0.0.1-alice");
    assert_eq!(
        std::fs::read_to_string(&record).unwrap().lines().count(),
        3,
        "one key a message"
    );
    let out = fetch_mda(&server, &state, &mda, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("0 messages fetched")
            && stdout(&out).contains("3 deleted from the server, 0 left"),
        "{out:?}"
    );
    assert_eq!(delivered(&md).len(), 3, "nothing delivered twice");
    assert_eq!(on_server(&server), 0);
    assert_eq!(std::fs::read_to_string(&record).unwrap(), "");
}

#[test]
fn a_deferring_or_failing_mda_leaves_the_mail_on_the_server() {
    let server = Server::start_tls();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // EX_TEMPFAIL, without reading the message: deferred, exit status 75.
    let out = fetch_mda(&server, &state, "echo 'mailbox busy' >&2; exit 75", &[]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("0 messages fetched"), "{out:?}");
    assert!(stdout(&out).contains("3 deferred"), "{out:?}");
    assert!(
        stderr(&out).contains("deferred, left on the server: the MDA exited 75")
            && stderr(&out).contains("mailbox busy"),
        "{}",
        stderr(&out)
    );
    assert_eq!(on_server(&server), 3);
    // Any other status: refused, exit status 1.
    let out = fetch_mda(&server, &state, "cat >/dev/null; exit 1", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("3 refused by the target"), "{out:?}");
    assert!(
        stderr(&out).contains("not delivered, left on the server: the MDA exited 1"),
        "{}",
        stderr(&out)
    );
    assert_eq!(on_server(&server), 3);
    // One message deferred, the others delivered (and deleted): status 75.
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let script = format!(
        "f=$(mktemp {0}/m.XXXXXX) && cat > \"$f\" && if grep -q '^Subject: two' \"$f\"; then rm \"$f\"; exit 75; fi",
        out_dir.display()
    );
    let out = fetch_mda(&server, &state, &script, &[]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("2 messages fetched")
            && stdout(&out).contains("1 deferred")
            && stdout(&out).contains("2 deleted from the server, 1 left"),
        "{out:?}"
    );
    assert_eq!(on_server(&server), 1);
    let mut got: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    got.sort();
    assert_eq!(got, sorted(&[MESSAGES[0], MESSAGES[2]]));
    // The next run delivers the one left.
    let all = format!("cat > $(mktemp {}/m.XXXXXX)", out_dir.display());
    let out = fetch_mda(&server, &state, &all, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("1 messages fetched"), "{out:?}");
    assert_eq!(on_server(&server), 0);
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 3);
}
