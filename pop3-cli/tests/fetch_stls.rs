//! `pop3 fetch` against a server whose TLS fails after it accepted `STLS`: a rogue server
//! (`std::net`) that answers `STLS` with `+OK`, then sends a fatal TLS alert and
//! `-ERR STARTTLS failed: no certificate` in plain text. The error names the STLS step and
//! shows the server's own line, instead of suggesting that the server does not speak TLS.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener};
use std::process::Command;
use std::time::Duration;

use support::{BIN, run};

const REFUSAL: &str = "-ERR STARTTLS failed: no certificate";
/// A fatal `handshake_failure` alert record.
const ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];

#[test]
fn a_tls_failure_after_stls_names_stls_and_shows_the_servers_err() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut w = stream.try_clone().unwrap();
        let mut r = BufReader::new(stream);
        let mut commands = Vec::new();
        w.write_all(b"+OK rogue POP3 ready\r\n").unwrap();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return commands;
            }
            let cmd = line.trim_end().to_string();
            commands.push(cmd.clone());
            match cmd.as_str() {
                "CAPA" => w.write_all(b"+OK\r\nSTLS\r\nUSER\r\n.\r\n").unwrap(),
                "STLS" => break,
                _ => w.write_all(b"-ERR no\r\n").unwrap(),
            }
        }
        w.write_all(b"+OK begin TLS negotiation\r\n").unwrap();
        // The ClientHello, read whole so that closing is a FIN, not a reset.
        let mut header = [0u8; 5];
        r.read_exact(&mut header).unwrap();
        let mut hello = vec![0u8; usize::from(u16::from_be_bytes([header[3], header[4]]))];
        r.read_exact(&mut hello).unwrap();
        let mut reply = ALERT.to_vec();
        reply.extend_from_slice(format!("{REFUSAL}\r\n").as_bytes());
        w.write_all(&reply).unwrap();
        let _ = w.shutdown(Shutdown::Write);
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest);
        commands
    });
    let dest = tempfile::tempdir().unwrap();
    let out = run(Command::new(BIN)
        .arg("fetch")
        .arg(format!("pop3://alice@127.0.0.1:{port}"))
        .args(["--insecure", "--password-env", "PW", "--maildir"])
        .arg(dest.path().join("md"))
        .env("PW", "secret"));
    let commands = server.join().unwrap();
    assert_eq!(commands, ["CAPA", "STLS"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("after STLS"), "{stderr}");
    assert!(stderr.contains(REFUSAL), "{stderr}");
    assert!(
        !stderr.contains("pop3s:// expects TLS from the first byte"),
        "{stderr}"
    );
}
