//! `pop3 fetch` with an `lmtp = "lmtp://…"` target in its configuration file, from `pop3 serve`
//! into a real Dovecot LMTP server (`dovecot-lmtpd`): every message arrives byte for byte
//! (after the three header fields Dovecot puts first), is recorded, and is deleted from the
//! POP3 server only once Dovecot said `250`; an unknown recipient (`550`) leaves the mail on
//! the server and the run fails.

use std::path::Path;
use std::process::Output;

mod support;
use support::{MESSAGES, Server, on_server, run_fetch, stderr, stdout, write_config};

#[path = "support/peers.rs"]
mod peers;
use peers::{DovecotLmtp, forwarded_to_alice};

/// alice's messages at `lmtp`, each without the three header fields Dovecot puts first,
/// sorted.
fn delivered(lmtp: &DovecotLmtp) -> Vec<String> {
    let mut v: Vec<String> = lmtp
        .delivered()
        .iter()
        .map(|m| String::from_utf8(forwarded_to_alice(m)).unwrap())
        .collect();
    v.sort();
    v
}

/// `pop3 fetch --config` with one account `fwd` of `server` into `lmtp`, for `recipient`.
fn fetch(home: &Path, server: &Server, lmtp: &DovecotLmtp, recipient: &str, extra: &str) -> Output {
    let target = format!(
        "lmtp = \"lmtp://127.0.0.1:{}\"\nrecipient = \"{recipient}\"\n{extra}",
        lmtp.port
    );
    let config = write_config(home, server, "fwd", &target);
    run_fetch(home, &config)
}

#[test]
fn fetch_into_dovecot_lmtp_byte_exact_deleting_only_what_was_delivered() {
    let Some(dovecot) = DovecotLmtp::start() else {
        eprintln!("Dovecot's LMTP server (dovecot-lmtpd) is not installed: skipped");
        return;
    };
    let server = Server::start_tls();
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
    assert!(delivered(&dovecot).is_empty());
    // keep: delivered and recorded, left on the server.
    let out = fetch(h, &server, &dovecot, "alice@example.org", "keep = true");
    assert!(out.status.success(), "{}\n{}", stderr(&out), dovecot.log());
    assert!(stdout(&out).contains("3 messages fetched"), "{out:?}");
    let mut want: Vec<String> = MESSAGES.iter().map(|m| m.to_string()).collect();
    want.sort();
    assert_eq!(delivered(&dovecot), want, "{}", dovecot.log());
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
    assert_eq!(delivered(&dovecot).len(), 3, "nothing delivered twice");
    assert_eq!(on_server(&server), 0);
    assert_eq!(std::fs::read_to_string(&record).unwrap(), "");
}
