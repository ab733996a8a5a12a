//! The clients' peak memory while retrieving a 20 MB message. The server is Dovecot, another
//! process, and the body is checked against a length and a streaming digest, so this test
//! process holds only the client: its peak resident size (Linux `VmHWM`, reset through
//! `/proc/self/clear_refs`) must grow by far less than the message. (The matrix checks the
//! chunk sizes; this checks that nothing else in the client buffers the body either.)
//!
//! One test in this file on purpose: nothing else may allocate in the process meanwhile.

use std::io::Write;
use std::net::SocketAddr;

use pop3_interop::{
    ClientKind, Dovecot, Fnv, Login, Mode, Op, Tls, lf_to_crlf, peer_available, run_client,
};

const BIG_LEN: u64 = 20_000_000;
/// The most the peak resident size may grow during one session.
const MAX_GROWTH: u64 = 6 * 1024 * 1024;

/// Writes a message of about 20 MB (LF line ends, dot lines, 8-bit text) line by line, and
/// returns the length and digest of what Dovecot sends for it (CRLF line ends).
fn write_big(path: &std::path::Path) -> (u64, u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("message file"));
    let (mut len, mut fnv) = (0u64, Fnv::new());
    let mut i = 0u64;
    while len < BIG_LEN {
        let line = if i == 0 {
            "Subject: big\nFrom: b@example.com\n\n".to_string()
        } else {
            let dot = if i.is_multiple_of(5) { "." } else { "" };
            format!("{dot}{i:08} caf\u{e9} the quick brown fox jumps over the lazy dog\n")
        };
        f.write_all(line.as_bytes()).expect("write");
        let wire = lf_to_crlf(line.as_bytes());
        len += wire.len() as u64;
        fnv.write(&wire);
        i += 1;
    }
    f.flush().expect("flush");
    (len, fnv.finish())
}

/// A `/proc/self/status` field, in bytes.
fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak resident size to the current one (Linux 4.0+).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[test]
fn retr_of_20_mb_grows_no_client_by_more_than_6_mib() {
    if !peer_available("dovecot") {
        return;
    }
    if !reset_peak() || status_kb("VmHWM:").is_none() {
        eprintln!("skipped: no /proc/self/clear_refs or VmHWM to measure peak memory with");
        return;
    }
    let tls = Tls::new();
    let dovecot = Dovecot::start(&[b"Subject: small\n\nhi\n".to_vec()], &tls);
    // Written after the start (the harness takes whole messages); Dovecot finds it at login.
    let (len, digest) = write_big(&dovecot.maildir().join("new/1800000000.M99P1.big"));
    let mut report = Vec::new();
    for client in ClientKind::ALL {
        for mode in [Mode::Plain, Mode::Implicit] {
            let port = if mode == Mode::Implicit {
                dovecot.tls_port
            } else {
                dovecot.port
            };
            assert!(reset_peak());
            let before = status_kb("VmRSS:").expect("VmRSS");
            let stats = run_client(
                client,
                mode,
                SocketAddr::from(([127, 0, 0, 1], port)),
                tls.client.clone(),
                Login::UserPass("alice".into(), "pw".into()),
                vec![Op::RetrDigest(2, len, digest), Op::Quit],
            )
            .unwrap_or_else(|e| panic!("{client:?} {mode:?}: {e}\n{}", dovecot.log()));
            let growth = status_kb("VmHWM:").expect("VmHWM").saturating_sub(before);
            assert_eq!(stats.octets, len);
            report.push(format!(
                "{client:?} client, {mode:?}: {len} octets in {} chunks (largest {}), peak RSS +{} KiB",
                stats.chunks,
                stats.largest_chunk,
                growth / 1024
            ));
            assert!(
                growth < MAX_GROWTH,
                "{client:?} {mode:?}: peak memory grew by {growth} octets for a {len}-octet message"
            );
        }
    }
    eprintln!("{}", report.join("\n"));
}
