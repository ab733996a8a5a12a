//! `pop3 deliver`, the MDA: a message on standard input goes into the maildrop `pop3 serve`
//! serves, byte for byte, or the exit status (sysexits.h) says why not; and it works as
//! procmail's delivery command.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use support::{BIN, MESSAGES, PASSWORD, Server, USER};

/// Runs `pop3 deliver ARGS` with `message` on standard input.
fn deliver(args: &[&str], root: &Path, message: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .arg("deliver")
        .arg("--maildir-root")
        .arg(root)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(message).unwrap();
    child.wait_with_output().unwrap()
}

/// What `RETR n` serves, after logging in.
fn retr(server: &Server, n: usize) -> Vec<u8> {
    let mut c = server.connect();
    assert!(c.user_pass(USER, PASSWORD).starts_with("+OK"));
    c.multiline(&format!("RETR {n}"))
}

const MESSAGE: &[u8] = b"Return-Path: <bob@example.org>\r\nSubject: caf\xc3\xa9\r\n\r\n.a line with a dot\r\nbare LF line\nlast\r\n";

#[test]
fn a_delivered_message_is_served_byte_for_byte_with_crlf() {
    let server = Server::start(Default::default());
    let root = server.dir.path().join("mail");
    let mut with_envelope = b"From bob@example.org Sun Dec  6 10:00:00 2026\n".to_vec();
    with_envelope.extend_from_slice(MESSAGE);
    let out = deliver(&["--user", USER], &root, &with_envelope);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = String::from_utf8_lossy(MESSAGE).replace("bare LF line\n", "bare LF line\r\n");
    assert_eq!(retr(&server, MESSAGES.len() + 1), expected.as_bytes());
    // Delivered under a unique name in new/, nothing left in tmp/.
    assert!(
        std::fs::read_dir(root.join(USER).join("tmp"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn refusals_have_sysexits_statuses_and_store_nothing() {
    let server = Server::start(Default::default());
    let root = server.dir.path().join("mail");
    let count = || {
        std::fs::read_dir(root.join(USER).join("new"))
            .unwrap()
            .count()
    };
    let before = count();

    let out = deliver(&["--user", "nobody"], &root, MESSAGE);
    assert_eq!(out.status.code(), Some(67), "EX_NOUSER");
    assert!(!root.join("nobody").exists());
    let out = deliver(&["--user", "../alice"], &root, MESSAGE);
    assert_eq!(out.status.code(), Some(67));

    let out = deliver(&["--user", USER, "--max-size", "10"], &root, MESSAGE);
    assert_eq!(out.status.code(), Some(65), "EX_DATAERR");
    assert!(String::from_utf8_lossy(&out.stderr).contains("larger than 10"));

    // A maildir that cannot be written (tmp/ is a file): try again later.
    let broken = root.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("tmp"), b"").unwrap();
    let out = deliver(&["--user", "broken"], &root, MESSAGE);
    assert_eq!(out.status.code(), Some(75), "EX_TEMPFAIL");
    assert_eq!(count(), before);

    let out = Command::new(BIN)
        .args(["deliver", "--user", USER, "--config"])
        .arg(server.dir.path().join("missing.toml"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "EX_CONFIG");
}

#[test]
fn the_store_can_come_from_the_serve_configuration_file() {
    let server = Server::start(Default::default());
    let config = server.dir.path().join("pop3.toml");
    std::fs::write(&config, "[store]\nmaildir_root = \"mail\"\n").unwrap();
    let mut child = Command::new(BIN)
        .args(["deliver", "--user", USER, "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(MESSAGE).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(retr(&server, MESSAGES.len() + 1).len(), MESSAGE.len() + 1);
}

#[test]
fn procmail_delivers_through_it() {
    let Some(procmail) = pop3_interop::find_program("procmail") else {
        eprintln!("SKIPPED: procmail is not installed (run .ci/install-peers.sh)");
        return;
    };
    let server = Server::start(Default::default());
    let root = server.dir.path().join("mail");
    let rc = server.dir.path().join("procmailrc");
    std::fs::write(
        &rc,
        format!(
            "LOGFILE={}\n:0 w\n| {BIN} deliver --maildir-root {} --user {USER}\n",
            server.dir.path().join("procmail.log").display(),
            root.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(procmail)
        .arg("-m")
        .arg(&rc)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"From bob@example.org Sun Dec  6 10:00:00 2026\nSubject: via procmail\n\nhello\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "procmail: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        retr(&server, MESSAGES.len() + 1),
        // procmail ends what it pipes with an empty line (its mbox habit): that line is
        // part of what was handed over, so it is kept.
        b"Subject: via procmail\r\n\r\nhello\r\n\r\n"
    );
}
