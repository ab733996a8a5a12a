//! `pop3 serve --lmtp-listen`: mail delivered by real LMTP clients (Python's
//! `smtplib.LMTP`, swaks) is served by POP3 byte for byte, with one reply per recipient.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{MESSAGES, PASSWORD, Server, USER, free_port, wait_for_listener};

/// A `pop3 serve` with an LMTP listener; gives it and the LMTP port.
fn start(extra: &[&str]) -> (Server, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["--lmtp-listen", listen.as_str()];
    args.extend_from_slice(extra);
    let server = Server::start(support::Options {
        args: &args,
        ..Default::default()
    });
    wait_for_listener(port);
    (server, port)
}

/// Everything alice's maildrop serves after the fixture's messages, by RETR.
fn delivered(server: &Server) -> Vec<Vec<u8>> {
    let mut c = server.connect();
    assert!(c.user_pass(USER, PASSWORD).starts_with("+OK"));
    let stat = c.cmd("STAT");
    let n: usize = stat.split(' ').nth(1).unwrap().parse().unwrap();
    (MESSAGES.len() + 1..=n)
        .map(|i| c.multiline(&format!("RETR {i}")))
        .collect()
}

fn python() -> Option<&'static str> {
    Command::new("python3")
        .arg("-c")
        .arg("import smtplib")
        .status()
        .ok()
        .filter(|s| s.success())
        .map(|_| "python3")
}

#[test]
fn python_smtplib_lmtp_delivers_and_unknown_recipients_are_refused_at_rcpt() {
    let Some(python) = python() else {
        eprintln!("SKIPPED: python3 with smtplib is missing (run .ci/install-peers.sh)");
        return;
    };
    let (server, port) = start(&[]);
    let script = r#"
import smtplib, sys
msg = b"Subject: caf\xc3\xa9\r\nFrom: bob@example.org\r\n\r\n.leading dot\r\nbody\r\n"
lmtp = smtplib.LMTP("127.0.0.1", int(sys.argv[1]))
lmtp.ehlo_or_helo_if_needed()
assert lmtp.has_extn("pipelining") and lmtp.has_extn("8bitmime") and lmtp.has_extn("size"), lmtp.esmtp_features
refused = lmtp.sendmail("bob@example.org", ["alice@example.org", "nobody@example.org"], msg)
print(sorted((k, v[0]) for k, v in refused.items()))
lmtp.quit()
"#;
    let out = Command::new(python)
        .args(["-c", script, &port.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "[('nobody@example.org', 550)]"
    );
    assert_eq!(
        delivered(&server),
        vec![
            b"Return-Path: <bob@example.org>\r\nSubject: caf\xc3\xa9\r\nFrom: bob@example.org\r\n\r\n.leading dot\r\nbody\r\n"
                .to_vec()
        ]
    );
    let log = server.wait_for_lines("lmtp: delivered", 1);
    assert!(log.contains("user=alice"), "{log}");
}

#[test]
fn swaks_delivers_over_lmtp() {
    if Command::new("swaks").arg("--version").output().is_err() {
        eprintln!("SKIPPED: swaks is not installed (run .ci/install-peers.sh)");
        return;
    }
    let (server, port) = start(&[]);
    let out = Command::new("swaks")
        .args(["--protocol", "LMTP", "--server"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--from", "<>", "--to", "alice@example.org"])
        .args([
            "--header",
            "Subject: from swaks",
            "--body",
            "hello from swaks",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "swaks: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let got = delivered(&server);
    assert_eq!(got.len(), 1);
    let text = String::from_utf8_lossy(&got[0]);
    assert!(text.starts_with("Return-Path: <>\r\n"), "{text}");
    assert!(text.contains("Subject: from swaks\r\n"), "{text}");
    assert!(text.contains("\r\n\r\nhello from swaks\r\n"), "{text}");
}

/// A raw LMTP client: pipelined commands in one write, then `n` reply lines read.
fn converse(port: u16, commands: &[u8], replies: usize) -> Vec<String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut writer = tcp.try_clone().unwrap();
    let mut reader = BufReader::new(tcp);
    let mut lines = Vec::new();
    let mut read = |lines: &mut Vec<String>| {
        let mut l = String::new();
        reader.read_line(&mut l).unwrap();
        lines.push(l.trim_end().to_string());
    };
    read(&mut lines);
    writer.write_all(commands).unwrap();
    while lines.len() < replies {
        read(&mut lines);
    }
    lines
}

#[test]
fn one_reply_per_recipient_with_mixed_results_and_the_size_limit() {
    let (server, port) = start(&["--lmtp-max-message-size", "200"]);
    // A second user whose maildir cannot be written (tmp/ is a file): delivery to them fails
    // for now (451) while alice's succeeds.
    std::fs::write(
        server.dir.path().join("users"),
        format!("{USER}:{{PLAIN}}{PASSWORD}\nbroken:{{PLAIN}}x\n"),
    )
    .unwrap();
    server.reload();
    let broken = server.dir.path().join("mail/broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("tmp"), b"").unwrap();

    let big = "x".repeat(300);
    let session = format!(
        "LHLO test\r\nMAIL FROM:<bob@example.org>\r\nRCPT TO:<alice@example.org>\r\n\
         RCPT TO:<broken@example.org>\r\nRCPT TO:<ghost@example.org>\r\nDATA\r\n\
         Subject: mixed\r\n\r\nhi\r\n.\r\n\
         MAIL FROM:<bob@example.org>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n{big}\r\n.\r\n\
         QUIT\r\n"
    );
    let lines = converse(port, session.as_bytes(), 1 + 5 + 5 + 2 + 3 + 1 + 1);
    let codes: Vec<&str> = lines.iter().map(|l| l.get(..3).unwrap_or(l)).collect();
    assert_eq!(
        codes,
        [
            "220", // greeting
            "250", "250", "250", "250", "250", // LHLO: the name and 4 extensions
            "250", "250", "250", "550", "354", // MAIL, RCPT x3 (ghost unknown), DATA
            "250", "451", // one reply per accepted recipient, in RCPT order
            "250", "250", "354", "552", // the second message is over the size limit
            "221",
        ],
        "{lines:#?}"
    );
    assert!(lines[9].contains("ghost@example.org"), "{lines:#?}");
    assert!(lines[12].contains("broken@example.org"), "{lines:#?}");
    assert_eq!(
        delivered(&server),
        vec![b"Return-Path: <bob@example.org>\r\nSubject: mixed\r\n\r\nhi\r\n".to_vec()]
    );
}
