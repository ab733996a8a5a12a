//! The forward target against real servers on 127.0.0.1: Dovecot's LMTP (`dovecot-lmtpd`)
//! over TCP and its Unix socket, and Python's aiosmtpd as an SMTP server (in the clear,
//! with `STARTTLS`, and with implicit TLS), plus a scripted server that hangs up before
//! answering. A test whose server is not installed says so and passes.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path as FsPath;

use super::*;

#[path = "../../../tests/support/peers.rs"]
mod peers;
use peers::{Aiosmtpd, DovecotLmtp, dovecot_added};

fn owner(dir: &FsPath) -> Owner<'_> {
    Owner {
        host: "pop.example",
        user: "u",
        account: "a",
        state_dir: dir,
    }
}

fn lmtp(url: &str, recipient: &str) -> TargetSpec {
    TargetSpec::Lmtp {
        url: url.into(),
        recipient: recipient.into(),
    }
}

fn smtp(url: &str, recipient: &str) -> TargetSpec {
    TargetSpec::Smtp {
        url: url.into(),
        recipient: recipient.into(),
    }
}

/// Streams `text` (as POP3 gives it: CRLF, unstuffed) through the target in small pieces.
fn deliver(t: &mut Forward, key: &str, text: &[u8]) -> io::Result<Outcome> {
    t.begin(&MessageInfo {
        key,
        uidl: Some(key),
        size: text.len() as u64,
    })?;
    for chunk in text.chunks(7) {
        t.write(chunk)?;
    }
    t.finish()
}

/// Messages as a POP3 server hands them over, with what a careless forwarder would break:
/// lines that begin with a dot (one a lone dot), a bare CR, 8-bit text, a line of 998 octets (RFC 5321's most), and a
/// `Return-Path:`.
fn messages() -> Vec<Vec<u8>> {
    vec![
        b"Return-Path: <bounce+1@lists.example>\r\nFrom: a@example.org\r\nSubject: dots\r\n\r\n.\r\n..\r\n.leading dot\r\nend\r\n"
            .to_vec(),
        [
            &b"From: b@example.org\r\nSubject: 8bit \xc3\xa9t\xc3\xa9\r\n\r\nbare\rCR and caf\xc3\xa9\r\n"[..],
            "x".repeat(998).as_bytes(),
            b"\r\n",
        ]
        .concat(),
        b"Return-Path: <>\r\nSubject: a bounce\r\n\r\nbody\r\n".to_vec(),
    ]
}

/// CRLF to LF, as Dovecot stores a message in a Maildir.
fn lf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut u = super::super::ToLf::default();
    u.feed(text, &mut out);
    u.finish(&mut out);
    out
}

#[test]
fn urls() {
    let tcp = |host: &str, port| Address::Tcp {
        host: host.into(),
        port,
    };
    let e = Endpoint::parse("lmtp://127.0.0.1").unwrap();
    assert_eq!(
        (e.protocol, e.security, e.address),
        (Protocol::Lmtp, Security::Plain, tcp("127.0.0.1", 24))
    );
    let e = Endpoint::parse("LMTP:///run/dovecot/lmtp").unwrap();
    assert_eq!(e.address, Address::Unix("/run/dovecot/lmtp".into()));
    let e = Endpoint::parse("smtp://mx.example:2525/").unwrap();
    assert_eq!(
        (e.protocol, e.security, e.address),
        (Protocol::Smtp, Security::Plain, tcp("mx.example", 2525))
    );
    let e = Endpoint::parse("smtp+starttls://[::1]").unwrap();
    assert_eq!(
        (e.security, e.address),
        (Security::StartTls, tcp("::1", 25))
    );
    let e = Endpoint::parse("smtps://[::1]:4650").unwrap();
    assert_eq!(
        (e.security, e.address),
        (Security::Implicit, tcp("::1", 4650))
    );
    assert_eq!(
        Endpoint::parse("smtps://relay.example").unwrap().address,
        tcp("relay.example", 465)
    );
    for (bad, why) in [
        ("127.0.0.1:24", "not a URL"),
        ("imap://h", "scheme"),
        ("lmtp://", "no host"),
        ("lmtp://h:0", "port"),
        ("lmtp://h:99999", "port"),
        ("lmtp://h:x", "port"),
        ("smtp://me@h", "no login"),
        ("lmtp://h/box", "Unix socket"),
        ("smtps:///run/sock", "host name"),
        ("lmtp://h?x=1", "query"),
        ("lmtp://[::1", "unclosed"),
        ("lmtp:///", "no socket path"),
    ] {
        let e = Endpoint::parse(bad).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn open_checks_the_url_and_the_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let o = owner(dir.path());
    let e = Forward::open(&lmtp("lmtp://h", "not an address"), &o)
        .err()
        .unwrap();
    assert!(e.contains("not an address"), "{e}");
    let e = Forward::open(&lmtp("smtp://h", "a@b.example"), &o)
        .err()
        .unwrap();
    assert!(e.contains("needs an lmtp:// URL"), "{e}");
    let e = Forward::open(&smtp("lmtp://h", "a@b.example"), &o)
        .err()
        .unwrap();
    assert!(e.contains("smtp+starttls://"), "{e}");
    let t = Forward::open(&smtp("smtps://h", "a@b.example"), &o).unwrap();
    // The record is locked for the run.
    let e = Forward::open(&lmtp("lmtp://h", "a@b.example"), &o)
        .err()
        .unwrap();
    assert!(e.contains("is running"), "{e}");
    drop(t);
    assert!(dir.path().join("forward-pop.example-u").exists());
}

/// A server that greets, takes the envelope (pipelined or not) and the data, then hangs up
/// without answering for it; or, with `refuse`, answers `DATA` with that reply.
fn scripted(refuse: Option<&'static str>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        let mut w = sock.try_clone().unwrap();
        let mut r = BufReader::new(sock);
        w.write_all(b"220 scripted\r\n").unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
            let reply: &str = match verb.as_str() {
                "LHLO" => "250-scripted\r\n250 PIPELINING\r\n",
                "MAIL" | "RCPT" => "250 ok\r\n",
                "DATA" => match refuse {
                    Some(r) => r,
                    None => "354 go\r\n",
                },
                "QUIT" => "221 bye\r\n",
                _ => "500 what\r\n",
            };
            w.write_all(reply.as_bytes()).unwrap();
            if verb == "DATA" && refuse.is_none() {
                // The data, to its end, then a hang-up instead of the answer.
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == ".\r\n" {
                        return;
                    }
                }
            }
        }
    });
    port
}

#[test]
fn a_hang_up_before_the_answer_stops_the_fetch_and_a_refused_data_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let port = scripted(None);
    let mut t = Forward::open(
        &lmtp(&format!("lmtp://127.0.0.1:{port}"), "alice@example.org"),
        &owner(dir.path()),
    )
    .unwrap();
    let e = deliver(&mut t, "k1", b"Subject: x\r\n\r\ny\r\n").unwrap_err();
    assert!(e.to_string().contains("connection closed"), "{e}");
    assert!(!t.has("k1"));
    // Nobody listens any more: an error too, naming the URL.
    let e = deliver(&mut t, "k1", b"x\r\n").unwrap_err();
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    drop(t);

    let port = scripted(Some("451 4.3.0 queue full\r\n"));
    let mut t = Forward::open(
        &lmtp(&format!("lmtp://127.0.0.1:{port}"), "alice@example.org"),
        &owner(dir.path()),
    )
    .unwrap();
    match deliver(&mut t, "k2", b"x\r\n").unwrap() {
        Outcome::Deferred(why) => assert!(why.contains("451 4.3.0 queue full"), "{why}"),
        o => panic!("{o:?}"),
    }
    assert!(!t.has("k2"));
}

#[test]
fn dovecot_lmtp_stores_each_message_byte_exact_and_refuses_an_unknown_user() {
    let Some(dovecot) = DovecotLmtp::start() else {
        eprintln!("Dovecot's LMTP server (dovecot-lmtpd) is not installed: skipped");
        return;
    };
    let state = tempfile::tempdir().unwrap();
    let msgs = messages();
    let url = format!("lmtp://127.0.0.1:{}", dovecot.port);
    let mut t = Forward::open(&lmtp(&url, "alice@example.org"), &owner(state.path())).unwrap();
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(
            deliver(&mut t, &format!("k{i}"), m).unwrap(),
            Outcome::Stored,
            "{}",
            dovecot.log()
        );
        assert!(t.has(&format!("k{i}")));
    }
    // An unknown user: refused for good, nothing recorded.
    drop(t);
    let mut t = Forward::open(&lmtp(&url, "nobody@example.org"), &owner(state.path())).unwrap();
    match deliver(&mut t, "k-nobody", &msgs[0]).unwrap() {
        Outcome::Failed(why) => {
            assert!(why.contains("550") && why.contains(&url), "{why}");
        }
        o => panic!("{o:?}"),
    }
    assert!(!t.has("k-nobody"));
    // Over the Unix socket too.
    drop(t);
    let socket_url = format!("lmtp://{}", dovecot.socket().display());
    let mut t = Forward::open(
        &lmtp(&socket_url, "alice@example.org"),
        &owner(state.path()),
    )
    .unwrap();
    assert!(t.has("k0") && t.has("k2"), "the record outlives the run");
    assert_eq!(deliver(&mut t, "k3", &msgs[1]).unwrap(), Outcome::Stored);
    // Wrong recipient on the socket, and a message cut by an abort: nothing more arrives.
    t.begin(&MessageInfo {
        key: "k4",
        uidl: None,
        size: 10,
    })
    .unwrap();
    t.write(b"Subject: cut\r\n").unwrap();
    t.abort();
    assert!(!t.has("k4"));

    let stored = dovecot.delivered();
    assert_eq!(stored.len(), 4, "{}", dovecot.log());
    let senders = [
        "<bounce+1@lists.example>",
        "<>",
        "<>",
        "<>", // The second message again: it has no Return-Path.
    ];
    for (i, (s, want)) in stored.iter().zip(msgs.iter().chain([&msgs[1]])).enumerate() {
        let (added, rest) = dovecot_added(s);
        assert_eq!(
            rest,
            lf(want).as_slice(),
            "message {i}: after Dovecot's lines\n{added}"
        );
        assert!(
            added.starts_with(&format!("Return-Path: {}\n", senders[i])),
            "message {i}: {added}"
        );
        assert!(
            added.contains("Delivered-To: alice@example.org\n"),
            "message {i}: {added}"
        );
        assert!(added.contains("with LMTP"), "message {i}: {added}");
    }
    // A message with its own Return-Path keeps it, after Dovecot's.
    assert!(
        dovecot_added(&stored[0])
            .1
            .starts_with(b"Return-Path: <bounce+1@")
    );
}

#[test]
fn smtp_to_aiosmtpd_byte_exact_451_deferred_550_failed() {
    let Some(sink) = Aiosmtpd::start("plain") else {
        eprintln!("python3 with aiosmtpd is not installed: skipped");
        return;
    };
    let state = tempfile::tempdir().unwrap();
    let url = format!("smtp://127.0.0.1:{}", sink.port);
    let msgs = messages();
    let mut t = Forward::open(&smtp(&url, "me@example.net"), &owner(state.path())).unwrap();
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(
            deliver(&mut t, &format!("k{i}"), m).unwrap(),
            Outcome::Stored,
            "{}",
            sink.log()
        );
    }
    drop(t);
    let mut busy = Forward::open(&smtp(&url, "busy@example.net"), &owner(state.path())).unwrap();
    match deliver(&mut busy, "k-busy", &msgs[0]).unwrap() {
        Outcome::Deferred(why) => assert!(why.contains("451 4.2.1 mailbox busy"), "{why}"),
        o => panic!("{o:?}"),
    }
    assert!(!busy.has("k-busy"));
    assert!(busy.has("k0") && busy.has("k1") && busy.has("k2"));
    drop(busy);
    let mut nobody =
        Forward::open(&smtp(&url, "nobody@example.net"), &owner(state.path())).unwrap();
    match deliver(&mut nobody, "k-nobody", &msgs[0]).unwrap() {
        Outcome::Failed(why) => assert!(why.contains("550 5.1.1 no such user"), "{why}"),
        o => panic!("{o:?}"),
    }
    assert!(!nobody.has("k-nobody"));

    let got = sink.received();
    assert_eq!(got.len(), 3, "{}", sink.log());
    let senders = ["bounce+1@lists.example", "<>", "<>"];
    for (i, ((data, env), want)) in got.iter().zip(&msgs).enumerate() {
        assert_eq!(data, want, "message {i}");
        assert_eq!(env[0], senders[i], "message {i}");
        assert_eq!(env[1], "me@example.net");
        assert_eq!(env[2], "plain");
    }
}

/// The SMTP target of `url` for `me@example.net`, its server's certificate trusted by
/// `trust`.
fn open_trusting(url: &str, state: &FsPath, trust: &Trust) -> Forward {
    Forward::open_with(&smtp(url, "me@example.net"), &owner(state), trust).unwrap()
}

/// `sink` received `msg`, byte for byte, and nothing else, over TLS.
fn assert_received_alone_over_tls(sink: &Aiosmtpd, msg: &[u8]) {
    let got = sink.received();
    assert_eq!(got.len(), 1, "{}", sink.log());
    assert_eq!(got[0].0, msg);
    assert_eq!(got[0].1[2], "tls");
}

#[test]
fn smtp_with_starttls_and_implicit_tls() {
    let Some(sink) = Aiosmtpd::start("starttls") else {
        eprintln!("python3 with aiosmtpd is not installed: skipped");
        return;
    };
    let state = tempfile::tempdir().unwrap();
    let trust = Trust::CaPem(sink.cert_pem.clone().into_bytes());
    let msg = &messages()[0];
    let url = format!("smtp+starttls://127.0.0.1:{}", sink.port);
    let mut t = open_trusting(&url, state.path(), &trust);
    assert_eq!(
        deliver(&mut t, "k1", msg).unwrap(),
        Outcome::Stored,
        "{}",
        sink.log()
    );
    drop(t);
    // The certificate is not one Mozilla's roots vouch for: nothing is sent.
    let mut t = Forward::open(&smtp(&url, "me@example.net"), &owner(state.path())).unwrap();
    let e = deliver(&mut t, "k2", msg).unwrap_err();
    assert!(e.to_string().contains("TLS after STARTTLS"), "{e}");
    assert!(!t.has("k2"));
    drop(t);
    assert_received_alone_over_tls(&sink, msg);

    // smtps://: TLS from the first byte.
    let Some(smtps) = Aiosmtpd::start("smtps") else {
        return;
    };
    let trust = Trust::CaPem(smtps.cert_pem.clone().into_bytes());
    let url = format!("smtps://127.0.0.1:{}", smtps.port);
    let mut t = open_trusting(&url, state.path(), &trust);
    assert_eq!(
        deliver(&mut t, "k3", msg).unwrap(),
        Outcome::Stored,
        "{}",
        smtps.log()
    );
    drop(t);
    assert_received_alone_over_tls(&smtps, msg);

    // STARTTLS required from a server that does not offer it: an error, nothing sent.
    let Some(plain) = Aiosmtpd::start("plain") else {
        return;
    };
    let url = format!("smtp+starttls://127.0.0.1:{}", plain.port);
    let mut t = open_trusting(&url, state.path(), &trust);
    let e = deliver(&mut t, "k4", msg).unwrap_err();
    assert!(e.to_string().contains("STARTTLS required"), "{e}");
    assert!(!t.has("k4"));
    assert!(plain.received().is_empty());
}
