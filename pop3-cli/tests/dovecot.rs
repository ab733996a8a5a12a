//! `pop3 fetch` from Dovecot (a private instance on 127.0.0.1) into a Maildir and an mbox,
//! byte-exact.

use std::collections::HashSet;
use std::process::Command;

use pop3_interop::{Dovecot, Tls, peer_available};

const BIN: &str = env!("CARGO_BIN_EXE_pop3");

#[test]
fn fetch_from_dovecot_into_maildir_and_mbox() {
    if !peer_available("dovecot") {
        return;
    }
    let msgs: Vec<Vec<u8>> = vec![
        b"Subject: one\nFrom: a@example.com\n\nhello\n.leading dot\n.\nFrom here\n".to_vec(),
        b"Subject: two\n\n\xc3\xa9t\xc3\xa9\n".to_vec(),
        format!(
            "Subject: big\n\n{}",
            "a line of a larger message\n".repeat(20_000)
        )
        .into_bytes(),
    ];
    let tls = Tls::new();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &tls.cert_pem).unwrap();
    let dovecot = Dovecot::start(&msgs, &tls);
    // Dovecot's certificate names localhost: verify against it.
    let md = dir.path().join("md");
    let out = Command::new(BIN)
        .args([
            "fetch",
            &format!("pop3s://alice@localhost:{}", dovecot.tls_port),
            "--keep",
            "--password-env",
            "PW",
        ])
        .arg("--ca-file")
        .arg(&ca)
        .arg("--maildir")
        .arg(&md)
        .env("PW", "pw")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        dovecot.log()
    );
    let got: HashSet<Vec<u8>> = std::fs::read_dir(md.join("new"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    // Stored as a mail system stores them: LF line ends, the octets Dovecot holds.
    let want: HashSet<Vec<u8>> = msgs.iter().cloned().collect();
    assert_eq!(got, want);
    // Into an mbox through STLS, deleting from Dovecot.
    let mbox = dir.path().join("mbox");
    let out = Command::new(BIN)
        .args([
            "fetch",
            &format!("pop3://alice@localhost:{}", dovecot.port),
            "--password-env",
            "PW",
            "--quiet",
        ])
        .arg("--ca-file")
        .arg(&ca)
        .arg("--mbox")
        .arg(&mbox)
        .env("PW", "pw")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        dovecot.log()
    );
    let text = std::fs::read_to_string(&mbox).unwrap();
    assert_eq!(text.matches("\n\nFrom ").count() + 1, 3);
    assert!(
        text.contains("\nhello\n.leading dot\n.\n>From here\n\n"),
        "{text}"
    );
    assert!(text.contains("\nété\n"));
    let left = ["new", "cur"]
        .iter()
        .map(|d| {
            std::fs::read_dir(dovecot.maildir().join(d))
                .unwrap()
                .count()
        })
        .sum::<usize>();
    assert_eq!(left, 0, "Dovecot emptied");
}
