//! Known-answer tests of the client machine against scripted servers (SMTP and LMTP).

use pop3_lmtp::client::{
    Client, ClientConfig, ClientError, Envelope, Event, Outcome, Protocol, RecipientStatus, Stage,
    StartTls, UsageError,
};
use pop3_lmtp::decode::DecodeError;
use pop3_lmtp::{Domain, Mailbox, Path};

fn mb(s: &str) -> Mailbox {
    Mailbox::parse(s).unwrap()
}

fn client(protocol: Protocol, rcpts: &[&str], f: impl FnOnce(&mut ClientConfig)) -> Client {
    let mut c = ClientConfig::new(protocol, Domain::new("me.test").unwrap());
    f(&mut c);
    let mut e = Envelope::new(
        Path::Mailbox(mb("from@x.test")),
        rcpts.iter().map(|r| mb(r)).collect(),
    );
    e.size = Some(42);
    Client::new(c, e).unwrap()
}

/// Feeds `input`; returns what the client sends and its events.
fn step(c: &mut Client, input: &[u8]) -> (String, Vec<Event>) {
    c.feed(input);
    let mut events = Vec::new();
    while let Some(e) = c.poll_event() {
        events.push(e);
    }
    let mut out = Vec::new();
    c.poll_transmit(&mut out);
    (String::from_utf8(out).unwrap(), events)
}

fn outcome(events: &[Event]) -> &Outcome {
    events
        .iter()
        .find_map(|e| match e {
            Event::Outcome(o) => Some(o),
            _ => None,
        })
        .expect("an outcome")
}

fn kinds(o: &Outcome) -> Vec<&'static str> {
    o.recipients
        .iter()
        .map(|(_, s)| match s {
            RecipientStatus::Accepted(_) => "ok",
            RecipientStatus::TempFailed(_) => "temp",
            RecipientStatus::PermFailed(_) => "perm",
            RecipientStatus::Deferred => "deferred",
        })
        .collect()
}

#[test]
fn smtp_pipelined_one_reply_for_all() {
    let mut c = client(
        Protocol::Smtp,
        &["a@y.test", "b@y.test", "c@y.test"],
        |_| {},
    );
    assert_eq!(step(&mut c, b"220 mx ESMTP\r\n").0, "EHLO me.test\r\n");
    let (out, _) = step(
        &mut c,
        b"250-mx\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n250 HELP\r\n",
    );
    assert_eq!(
        out,
        "MAIL FROM:<from@x.test> BODY=8BITMIME SIZE=42\r\nRCPT TO:<a@y.test>\r\n\
         RCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n"
    );
    assert!(c.capabilities().pipelining);
    assert_eq!(c.capabilities().size, Some(1_000_000));
    let (out, ev) = step(
        &mut c,
        b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n250 2.1.5 ok\r\n354 go\r\n",
    );
    assert_eq!(out, "");
    assert_eq!(ev, [Event::SendBody]);
    c.send_body_chunk(b"x").unwrap();
    c.finish_body().unwrap();
    let (out, ev) = step(&mut c, b"");
    assert_eq!((out.as_str(), ev.len()), ("x\r\n.\r\n", 0));
    let (out, ev) = step(&mut c, b"250 2.0.0 queued as 123\r\n");
    assert_eq!(out, "QUIT\r\n");
    let o = outcome(&ev);
    assert_eq!(kinds(o), ["ok", "perm", "ok"]);
    assert_eq!(o.error, None);
    let (_, ev) = step(&mut c, b"221 bye\r\n");
    assert_eq!(ev, [Event::Closed]);
    assert!(c.is_closed());
}

#[test]
fn smtp_ehlo_refused_falls_back_to_helo() {
    let mut c = client(Protocol::Smtp, &["a@y.test"], |_| {});
    step(&mut c, b"220 old server\r\n");
    assert_eq!(step(&mut c, b"502 what?\r\n").0, "HELO me.test\r\n");
    // No extensions: no parameters, one command at a time.
    assert_eq!(step(&mut c, b"250 hi\r\n").0, "MAIL FROM:<from@x.test>\r\n");
    assert_eq!(step(&mut c, b"250 ok\r\n").0, "RCPT TO:<a@y.test>\r\n");
    assert_eq!(step(&mut c, b"250 ok\r\n").0, "DATA\r\n");
    let (_, ev) = step(&mut c, b"354 go\r\n");
    assert_eq!(ev, [Event::SendBody]);
    c.finish_body().unwrap();
    assert_eq!(step(&mut c, b"").0, ".\r\n");
    let (out, ev) = step(&mut c, b"451 4.3.0 later\r\n");
    assert_eq!(out, "QUIT\r\n");
    assert_eq!(kinds(outcome(&ev)), ["temp"]);
}

#[test]
fn smtp_ehlo_temporary_failure_is_not_retried_with_helo() {
    let mut c = client(Protocol::Smtp, &["a@y.test"], |_| {});
    step(&mut c, b"220 mx\r\n");
    let (out, ev) = step(&mut c, b"421 4.3.2 busy\r\n");
    assert_eq!(out, "QUIT\r\n");
    let o = outcome(&ev);
    assert_eq!(kinds(o), ["temp"]);
    assert!(matches!(
        o.error,
        Some(ClientError::Rejected {
            stage: Stage::Hello,
            ..
        })
    ));
}

#[test]
fn lmtp_without_pipelining_one_command_at_a_time() {
    let mut c = client(Protocol::Lmtp, &["a@y.test", "b@y.test"], |c| {
        c.pipelining = false
    });
    assert_eq!(step(&mut c, b"220 lmtp\r\n").0, "LHLO me.test\r\n");
    assert_eq!(
        step(
            &mut c,
            b"250-lmtp\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n"
        )
        .0,
        "MAIL FROM:<from@x.test>\r\n"
    );
    assert_eq!(step(&mut c, b"250 ok\r\n").0, "RCPT TO:<a@y.test>\r\n");
    assert_eq!(step(&mut c, b"250 ok\r\n").0, "RCPT TO:<b@y.test>\r\n");
    assert_eq!(step(&mut c, b"250 ok\r\n").0, "DATA\r\n");
    step(&mut c, b"354 go\r\n");
    c.send_body_chunk(b"hello\n").unwrap();
    c.finish_body().unwrap();
    assert_eq!(step(&mut c, b"").0, "hello\r\n.\r\n");
    // LMTP: one reply per accepted recipient; the outcome waits for all of them.
    let (out, ev) = step(&mut c, b"250 2.0.0 a ok\r\n");
    assert_eq!((out.as_str(), ev.len()), ("", 0));
    let (out, ev) = step(&mut c, b"552 5.2.2 b full\r\n");
    assert_eq!(out, "QUIT\r\n");
    assert_eq!(kinds(outcome(&ev)), ["ok", "perm"]);
}

#[test]
fn starttls_when_offered() {
    let mut c = client(Protocol::Smtp, &["a@y.test"], |c| {
        c.starttls = StartTls::Required
    });
    step(&mut c, b"220 mx\r\n");
    assert_eq!(
        step(&mut c, b"250-mx\r\n250-STARTTLS\r\n250 PIPELINING\r\n").0,
        "STARTTLS\r\n"
    );
    // Octets after the 220 (in the same packet, or before the handshake) are discarded.
    let (out, ev) = step(&mut c, b"220 2.0.0 go ahead\r\n250 injected\r\n");
    assert_eq!((out.as_str(), ev.as_slice()), ("", &[Event::StartTls][..]));
    assert_eq!(
        step(&mut c, b"250 more injection\r\n"),
        (String::new(), vec![])
    );
    assert!(!c.tls_active());
    c.tls_started().unwrap();
    assert!(c.tls_active());
    assert_eq!(step(&mut c, b"").0, "EHLO me.test\r\n");
    // After TLS, the capabilities are read again; STARTTLS is not sent twice.
    assert_eq!(
        step(&mut c, b"250-mx\r\n250-STARTTLS\r\n250 8BITMIME\r\n").0,
        "MAIL FROM:<from@x.test> BODY=8BITMIME\r\n"
    );
    assert_eq!(c.tls_started(), Err(UsageError::NotExpected));
}

#[test]
fn starttls_required_but_not_offered() {
    let mut c = client(Protocol::Lmtp, &["a@y.test", "b@y.test"], |c| {
        c.starttls = StartTls::Required;
    });
    step(&mut c, b"220 mx\r\n");
    let (out, ev) = step(&mut c, b"250-mx\r\n250 PIPELINING\r\n");
    assert_eq!(out, "QUIT\r\n");
    let o = outcome(&ev);
    assert_eq!(kinds(o), ["deferred", "deferred"]);
    assert_eq!(o.error, Some(ClientError::TlsUnavailable));
}

#[test]
fn starttls_opportunistic_continues_in_the_clear() {
    let mut c = client(Protocol::Smtp, &["a@y.test"], |c| {
        c.starttls = StartTls::Opportunistic
    });
    step(&mut c, b"220 mx\r\n");
    assert!(step(&mut c, b"250 mx\r\n").0.starts_with("MAIL FROM"));
    let mut c = client(Protocol::Smtp, &["a@y.test"], |c| {
        c.starttls = StartTls::Opportunistic
    });
    step(&mut c, b"220 mx\r\n");
    assert_eq!(
        step(&mut c, b"250-mx\r\n250 STARTTLS\r\n").0,
        "STARTTLS\r\n"
    );
    assert!(
        step(&mut c, b"454 4.7.0 TLS not available\r\n")
            .0
            .starts_with("MAIL FROM")
    );
}

#[test]
fn greeting_refused() {
    let mut c = client(Protocol::Lmtp, &["a@y.test"], |_| {});
    let (out, ev) = step(&mut c, b"554 5.3.2 go away\r\n");
    assert_eq!(out, "QUIT\r\n");
    let o = outcome(&ev);
    assert_eq!(kinds(o), ["perm"]);
    assert!(matches!(
        o.error,
        Some(ClientError::Rejected {
            stage: Stage::Greeting,
            ..
        })
    ));
    c.feed_eof();
    assert_eq!(c.poll_event(), Some(Event::Closed));
}

#[test]
fn mail_refused_while_pipelined_waits_for_data_reply_before_quit() {
    let mut c = client(Protocol::Lmtp, &["a@y.test"], |_| {});
    step(&mut c, b"220 mx\r\n");
    step(&mut c, b"250-mx\r\n250 PIPELINING\r\n");
    let (out, ev) = step(&mut c, b"451 4.3.0 sender db down\r\n");
    assert_eq!(out, "");
    assert_eq!(kinds(outcome(&ev)), ["temp"]);
    let (out, _) = step(&mut c, b"503 5.5.1 need MAIL\r\n");
    assert_eq!(out, "");
    // A server that says 354 anyway gets an empty message, never QUIT as data.
    let (out, _) = step(&mut c, b"354 go\r\n");
    assert_eq!(out, ".\r\n");
    let (out, _) = step(&mut c, b"554 5.5.1 no recipients\r\n");
    assert_eq!(out, "QUIT\r\n");
}

#[test]
fn data_refused() {
    let mut c = client(Protocol::Lmtp, &["a@y.test", "b@y.test"], |_| {});
    step(&mut c, b"220 mx\r\n");
    step(&mut c, b"250-mx\r\n250 PIPELINING\r\n");
    let (out, ev) = step(
        &mut c,
        b"250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n451 4.3.0 no data today\r\n",
    );
    assert_eq!(out, "QUIT\r\n");
    let o = outcome(&ev);
    assert_eq!(kinds(o), ["temp", "perm"]);
    assert!(matches!(
        o.error,
        Some(ClientError::Rejected {
            stage: Stage::Data,
            ..
        })
    ));
}

#[test]
fn connection_lost_defers_the_undecided() {
    let mut c = client(Protocol::Lmtp, &["a@y.test", "b@y.test"], |_| {});
    step(&mut c, b"220 mx\r\n");
    step(&mut c, b"250 mx\r\n");
    step(&mut c, b"250 ok\r\n");
    step(&mut c, b"550 5.1.1 unknown\r\n");
    c.feed_eof();
    let (_, ev) = step(&mut c, b"");
    let o = outcome(&ev);
    assert_eq!(kinds(o), ["perm", "deferred"]);
    assert_eq!(o.error, Some(ClientError::ConnectionClosed));
    assert_eq!(ev.last(), Some(&Event::Closed));
}

#[test]
fn malformed_and_over_long_replies() {
    let mut c = client(Protocol::Lmtp, &["a@y.test"], |_| {});
    let (_, ev) = step(&mut c, b"hello\r\n");
    assert_eq!(
        outcome(&ev).error,
        Some(ClientError::Protocol(DecodeError::InvalidReplyCode))
    );
    assert_eq!(ev.last(), Some(&Event::Closed));

    let mut c = client(Protocol::Lmtp, &["a@y.test"], |c| c.max_line = 100);
    for _ in 0..100 {
        c.feed(b"220-xxxxxxxxxxxxxxxxxxxxxxx");
        assert!(c.buffered_input() <= 102);
    }
    let (_, ev) = step(&mut c, b"");
    assert_eq!(
        outcome(&ev).error,
        Some(ClientError::Protocol(DecodeError::LineTooLong))
    );

    let mut c = client(Protocol::Lmtp, &["a@y.test"], |c| c.max_reply_lines = 3);
    let (_, ev) = step(&mut c, b"220-a\r\n220-b\r\n220-c\r\n220 d\r\n");
    assert_eq!(
        outcome(&ev).error,
        Some(ClientError::Protocol(DecodeError::TooManyLines))
    );

    let mut c = client(Protocol::Lmtp, &["a@y.test"], |_| {});
    step(&mut c, b"220 mx\r\n");
    step(&mut c, b"250 mx\r\n");
    step(&mut c, b"250 ok\r\n250 ok\r\n354 go\r\n");
    c.finish_body().unwrap();
    step(&mut c, b"250 ok\r\n");
    let (_, ev) = step(&mut c, b"221 bye\r\n250 extra\r\n");
    assert_eq!(ev, [Event::Closed]);
}

#[test]
fn usage_errors() {
    let mut c = client(Protocol::Lmtp, &["a@y.test"], |_| {});
    assert_eq!(c.send_body_chunk(b"x"), Err(UsageError::NotExpected));
    assert_eq!(c.finish_body(), Err(UsageError::NotExpected));
    let cfg = ClientConfig::new(Protocol::Lmtp, Domain::new("me.test").unwrap());
    assert_eq!(
        Client::new(cfg, Envelope::new(Path::Null, vec![])).err(),
        Some(UsageError::NoRecipients)
    );
}

#[test]
fn replies_split_at_every_byte_give_the_same_dialogue() {
    let script: &[u8] = b"220 mx\r\n250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n\
        250 ok\r\n250 ok\r\n550 5.1.1 no\r\n354 go\r\n250 2.0.0 ok\r\n221 bye\r\n";
    let run = |chunks: &[&[u8]]| {
        let mut c = client(Protocol::Lmtp, &["a@y.test", "b@y.test"], |_| {});
        let mut out = String::new();
        let mut events = Vec::new();
        for ch in chunks {
            let (o, ev) = step(&mut c, ch);
            out.push_str(&o);
            for e in ev {
                if e == Event::SendBody {
                    c.send_body_chunk(b".x").unwrap();
                    c.finish_body().unwrap();
                }
                events.push(e);
            }
        }
        let (o, ev) = step(&mut c, b"");
        out.push_str(&o);
        events.extend(ev);
        (out, events)
    };
    let want = run(&[script]);
    assert!(want.0.ends_with("..x\r\n.\r\nQUIT\r\n"));
    assert_eq!(want.1.last(), Some(&Event::Closed));
    for i in 0..=script.len() {
        let (a, b) = script.split_at(i);
        assert_eq!(run(&[a, b]), want, "split at {i}");
    }
}
