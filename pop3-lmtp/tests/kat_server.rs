//! Known-answer tests of the LMTP server machine: every reply it gives, by transcript.

mod common;

use common::{Store, config, replies, session, session_chunks};
use pop3_lmtp::server::{
    CloseReason, Config, DeliveryRefusal, Event, RcptRefusal, Server, ServerError,
};
use pop3_lmtp::{Mailbox, Path, Reply};

const LHLO: &[u8] = b"LHLO client.test\r\n";

fn with_lhlo(rest: &[u8]) -> Vec<u8> {
    let mut v = LHLO.to_vec();
    v.extend_from_slice(rest);
    v
}

const LHLO_REPLY: [&str; 5] = [
    "250-mx.test",
    "250-PIPELINING",
    "250-ENHANCEDSTATUSCODES",
    "250-8BITMIME",
    "250 SIZE 67108864",
];

fn after_lhlo(out: &str) -> Vec<&str> {
    let r = replies(out);
    assert_eq!(r[..5], LHLO_REPLY, "{out}");
    r[5..].to_vec()
}

#[test]
fn greeting_lhlo_and_quit() {
    let (out, store) = session(config(), b"LHLO client.test\r\nQUIT\r\n");
    assert!(out.starts_with("220 mx.test LMTP server ready\r\n"));
    assert_eq!(after_lhlo(&out), ["221 2.0.0 mx.test closing connection"]);
    assert_eq!(store.closed, Some(CloseReason::Quit));
}

#[test]
fn input_after_quit_is_ignored() {
    let (out, _) = session(config(), b"QUIT\r\nNOOP\r\n");
    assert_eq!(replies(&out), ["221 2.0.0 mx.test closing connection"]);
}

#[test]
fn a_whole_transaction() {
    let (out, store) = session(
        config(),
        &with_lhlo(
            b"MAIL FROM:<a@example.org> BODY=8BITMIME SIZE=100\r\n\
              RCPT TO:<b@example.org>\r\nRCPT TO:<c@example.org>\r\nDATA\r\n\
              Subject: x\r\n\r\n..leading dot\r\n\xff\xfe 8 bit\r\n.\r\nQUIT\r\n",
        ),
    );
    assert_eq!(
        after_lhlo(&out),
        [
            "250 2.1.0 Sender OK",
            "250 2.1.5 Recipient OK",
            "250 2.1.5 Recipient OK",
            "354 Start mail input; end with <CRLF>.<CRLF>",
            "250 2.0.0 <b@example.org> Delivered",
            "250 2.0.0 <c@example.org> Delivered",
            "221 2.0.0 mx.test closing connection",
        ]
    );
    let (sender, rcpts, body) = &store.delivered[0];
    assert_eq!(
        sender,
        &Path::Mailbox(Mailbox::parse("a@example.org").unwrap())
    );
    assert_eq!(rcpts.len(), 2);
    assert_eq!(
        body.as_slice(),
        b"Subject: x\r\n\r\n.leading dot\r\n\xff\xfe 8 bit\r\n"
    );
}

#[test]
fn one_reply_per_recipient_with_mixed_results() {
    let (out, store) = session(
        config(),
        &with_lhlo(
            b"MAIL FROM:<>\r\nRCPT TO:<ok@x.test>\r\nRCPT TO:<unknown@x.test>\r\n\
              RCPT TO:<temp@x.test>\r\nRCPT TO:<full@x.test>\r\nRCPT TO:<dtemp@x.test>\r\n\
              RCPT TO:<dperm@x.test>\r\nRCPT TO:<ok2@x.test>\r\nDATA\r\nhi\r\n.\r\n",
        ),
    );
    assert_eq!(
        after_lhlo(&out),
        [
            "250 2.1.0 Sender OK",
            "250 2.1.5 Recipient OK",
            "550 5.1.1 <unknown@x.test> User unknown",
            "451 4.3.0 <temp@x.test> Temporary failure",
            "552 5.2.2 <full@x.test> Mailbox full",
            "250 2.1.5 Recipient OK",
            "250 2.1.5 Recipient OK",
            "250 2.1.5 Recipient OK",
            "354 Start mail input; end with <CRLF>.<CRLF>",
            "250 2.0.0 <ok@x.test> Delivered",
            "451 4.3.0 <dtemp@x.test> Temporary failure",
            "554 5.0.0 <dperm@x.test> Delivery failed",
            "250 2.0.0 <ok2@x.test> Delivered",
        ]
    );
    assert_eq!(store.delivered[0].0, Path::Null);
    assert_eq!(store.delivered[0].1.len(), 4);
}

#[test]
fn custom_refusal_replies() {
    let mut server = Server::new(config());
    server.feed(&with_lhlo(
        b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\n\
          DATA\r\nx\r\n.\r\n",
    ));
    let custom = Reply::new(550, Some((5, 7, 1)), "Go away").unwrap();
    let not_a_failure = Reply::new(250, None, "ok?").unwrap();
    let mut n = 0;
    while let Some(ev) = server.poll_event() {
        match ev {
            Event::Recipient { .. } => {
                n += 1;
                let a = match n {
                    1 => Err(RcptRefusal::Reply(custom.clone())),
                    2 => Err(RcptRefusal::Reply(not_a_failure.clone())),
                    _ => Ok(()),
                };
                server.accept_recipient(a).unwrap();
            }
            Event::Message { recipients, .. } => {
                assert_eq!(recipients.len(), 1);
                assert_eq!(
                    server.delivered(vec![]),
                    Err(ServerError::WrongCount {
                        expected: 1,
                        got: 0
                    })
                );
                server
                    .delivered(vec![Err(DeliveryRefusal::Reply(
                        Reply::new(452, Some((4, 2, 2)), "Over quota").unwrap(),
                    ))])
                    .unwrap();
            }
            other => panic!("{other:?}"),
        }
    }
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    let out = String::from_utf8(out).unwrap();
    assert_eq!(
        after_lhlo(&out)[1..],
        [
            "550 5.7.1 Go away",
            "451 4.3.0 <b@x.test> Temporary failure",
            "250 2.1.5 Recipient OK",
            "354 Start mail input; end with <CRLF>.<CRLF>",
            "452 4.2.2 Over quota",
        ]
    );
}

#[test]
fn answers_out_of_turn_are_refused() {
    let mut server = Server::new(config());
    assert_eq!(
        server.accept_recipient(Ok(())),
        Err(ServerError::NotExpected)
    );
    assert_eq!(server.delivered(vec![]), Err(ServerError::NotExpected));
    server.feed(&with_lhlo(b"MAIL FROM:<>\r\nRCPT TO:<a@b.test>\r\n"));
    assert!(matches!(server.poll_event(), Some(Event::Recipient { .. })));
    assert_eq!(
        server.delivered(vec![Ok(())]),
        Err(ServerError::NotExpected)
    );
    server.accept_recipient(Ok(())).unwrap();
    assert_eq!(
        server.accept_recipient(Ok(())),
        Err(ServerError::NotExpected)
    );
    server.feed(b"DATA\r\nx\r\n.\r\n");
    assert!(matches!(server.poll_event(), Some(Event::Message { .. })));
    // A wrong answer leaves the question open.
    assert_eq!(
        server.accept_recipient(Ok(())),
        Err(ServerError::NotExpected)
    );
    server.delivered(vec![Ok(())]).unwrap();
}

#[test]
fn recipient_event_carries_the_sender() {
    let mut server = Server::new(config());
    server.feed(&with_lhlo(
        b"MAIL FROM:<s@x.test>\r\nRCPT TO:<r@x.test>\r\n",
    ));
    assert_eq!(
        server.poll_event(),
        Some(Event::Recipient {
            path: Mailbox::parse("r@x.test").unwrap(),
            sender: Path::Mailbox(Mailbox::parse("s@x.test").unwrap()),
        })
    );
}

#[test]
fn sequence_errors() {
    let (out, _) = session(
        config(),
        b"MAIL FROM:<>\r\nRCPT TO:<a@b.test>\r\nDATA\r\nRSET\r\nNOOP\r\nVRFY x\r\n\
          LHLO c.test\r\nRCPT TO:<a@b.test>\r\nDATA\r\nMAIL FROM:<>\r\nMAIL FROM:<>\r\n\
          DATA\r\nRSET\r\nDATA\r\n",
    );
    let r = replies(&out);
    assert_eq!(
        r[..6],
        [
            "503 5.5.1 Send LHLO first",
            "503 5.5.1 Send LHLO first",
            "503 5.5.1 Send LHLO first",
            "250 2.0.0 OK",
            "250 2.0.0 OK",
            "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery",
        ]
    );
    assert_eq!(r[6..11], LHLO_REPLY);
    assert_eq!(
        r[11..],
        [
            "503 5.5.1 Need MAIL command",
            "503 5.5.1 Need MAIL command",
            "250 2.1.0 Sender OK",
            "503 5.5.1 Nested MAIL command",
            "503 5.5.1 No valid recipients",
            "250 2.0.0 OK",
            "503 5.5.1 Need MAIL command",
        ]
    );
}

#[test]
fn helo_and_ehlo_are_refused() {
    let (out, _) = session(config(), b"HELO c.test\r\nEHLO c.test\r\nLHLO c.test\r\n");
    let r = replies(&out);
    assert_eq!(r[..2], ["500 5.5.1 This is LMTP: use LHLO"; 2]);
    assert_eq!(r[2..], LHLO_REPLY);
}

#[test]
fn syntax_errors_and_unknown_commands() {
    let (out, _) = session(
        config(),
        &with_lhlo(
            b"FOO bar\r\n\xff\r\nNOOP \0\r\nLHLO\r\nLHLO bad domain\r\nMAIL FROM:nobrackets\r\n\
              MAIL FROM:<> SIZE=x\r\nMAIL FROM:<> BODY=BINARYMIME\r\nMAIL FROM:<> X-FOO=1\r\n\
              MAIL FROM:<>\r\nRCPT TO:<bad address@x>\r\nRCPT TO:<a@x.test> NOTIFY=NEVER\r\n\
              STARTTLS\r\nDATA now\r\n",
        ),
    );
    let mut config = config();
    config.max_errors = 100;
    let (out2, _) = session(
        config,
        &with_lhlo(
            b"FOO bar\r\n\xff\r\nNOOP \0\r\nLHLO\r\nLHLO bad domain\r\nMAIL FROM:nobrackets\r\n\
              MAIL FROM:<> SIZE=x\r\nMAIL FROM:<> BODY=BINARYMIME\r\nMAIL FROM:<> X-FOO=1\r\n\
              MAIL FROM:<>\r\nRCPT TO:<bad address@x>\r\nRCPT TO:<a@x.test> NOTIFY=NEVER\r\n\
              STARTTLS\r\nDATA now\r\n",
        ),
    );
    let expected = [
        "500 5.5.1 Command unrecognized",
        "500 5.5.2 Syntax error",
        "501 5.5.4 Syntax error in parameters",
        "501 5.5.4 Syntax error in parameters",
        "501 5.5.4 Invalid domain name",
        "501 5.1.7 Bad sender address syntax",
        "501 5.5.4 Invalid SIZE parameter",
        "501 5.5.4 Invalid BODY parameter",
        "555 5.5.4 Unsupported MAIL parameter",
        "250 2.1.0 Sender OK",
        "501 5.1.3 Bad recipient address syntax",
        "555 5.5.4 Unsupported RCPT parameter",
        "502 5.5.1 STARTTLS not available",
        "501 5.5.4 Syntax error in parameters",
    ];
    assert_eq!(after_lhlo(&out2), expected);
    // With the default limit of 10 errors: the tenth error is followed by 421.
    let mut first = expected[..11].to_vec();
    first.push("421 4.7.0 mx.test Too many errors, closing connection");
    assert_eq!(after_lhlo(&out), first);
}

#[test]
fn too_many_errors_closes() {
    let mut c = config();
    c.max_errors = 3;
    let (out, store) = session(c, b"X\r\nY\r\nZ\r\nNOOP\r\n");
    assert_eq!(
        replies(&out),
        [
            "500 5.5.1 Command unrecognized",
            "500 5.5.1 Command unrecognized",
            "500 5.5.1 Command unrecognized",
            "421 4.7.0 mx.test Too many errors, closing connection",
        ]
    );
    assert_eq!(store.closed, Some(CloseReason::TooManyErrors));
}

#[test]
fn over_long_lines() {
    let mut c = config();
    c.max_line = 32;
    // 30 octets + CRLF = 32: accepted. 31 + CRLF: refused.
    let ok = format!("NOOP {}\r\n", "x".repeat(25));
    let long = format!("NOOP {}\r\n", "x".repeat(26));
    let huge = format!("NOOP {}\r\n", "x".repeat(10_000));
    let input = format!("{ok}{long}{huge}NOOP\r\n");
    // Whole, and a byte at a time.
    let (out, _) = session(c.clone(), input.as_bytes());
    let chunks: Vec<&[u8]> = input.as_bytes().chunks(1).collect();
    let (out2, _) = session_chunks(c, &chunks, false);
    assert_eq!(out.as_bytes(), out2);
    assert_eq!(
        replies(&out),
        [
            "250 2.0.0 OK",
            "500 5.5.2 Line too long",
            "500 5.5.2 Line too long",
            "250 2.0.0 OK",
        ]
    );
}

#[test]
fn over_long_line_is_never_buffered() {
    let mut c = config();
    c.max_line = 64;
    let mut server = Server::new(c);
    for _ in 0..1000 {
        server.feed(&[b'x'; 100]);
        assert!(server.buffered_input() <= 164);
    }
    server.feed(b"\r\nNOOP\r\n");
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    assert!(
        String::from_utf8(out)
            .unwrap()
            .ends_with("500 5.5.2 Line too long\r\n250 2.0.0 OK\r\n")
    );
}

#[test]
fn too_many_recipients() {
    let mut c = config();
    c.max_recipients = 2;
    let (out, store) = session(
        c,
        &with_lhlo(
            b"MAIL FROM:<>\r\nRCPT TO:<unknown@x.test>\r\nRCPT TO:<a@x.test>\r\n\
              RCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\nDATA\r\n.\r\n",
        ),
    );
    assert_eq!(
        after_lhlo(&out),
        [
            "250 2.1.0 Sender OK",
            "550 5.1.1 <unknown@x.test> User unknown",
            "250 2.1.5 Recipient OK",
            "250 2.1.5 Recipient OK",
            "452 4.5.3 Too many recipients",
            "354 Start mail input; end with <CRLF>.<CRLF>",
            "250 2.0.0 <a@x.test> Delivered",
            "250 2.0.0 <b@x.test> Delivered",
        ]
    );
    // An empty message.
    assert_eq!(store.delivered[0].2, b"");
}

#[test]
fn over_size_messages() {
    let mut c = config();
    c.max_message_size = 10;
    let (out, store) = session(
        c.clone(),
        &with_lhlo(
            b"MAIL FROM:<> SIZE=11\r\nMAIL FROM:<> SIZE=10\r\nRCPT TO:<a@x.test>\r\n\
              RCPT TO:<b@x.test>\r\nDATA\r\n0123456789\r\n.\r\n\
              MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n01234567\r\n.\r\n",
        ),
    );
    let r = replies(&out);
    assert_eq!(r[4], "250 SIZE 10");
    assert_eq!(
        r[5..],
        [
            "552 5.3.4 Message size exceeds fixed maximum message size",
            "250 2.1.0 Sender OK",
            "250 2.1.5 Recipient OK",
            "250 2.1.5 Recipient OK",
            "354 Start mail input; end with <CRLF>.<CRLF>",
            "552 5.3.4 <a@x.test> Message size exceeds fixed maximum message size",
            "552 5.3.4 <b@x.test> Message size exceeds fixed maximum message size",
            "250 2.1.0 Sender OK",
            "250 2.1.5 Recipient OK",
            "354 Start mail input; end with <CRLF>.<CRLF>",
            "250 2.0.0 <a@x.test> Delivered",
        ]
    );
    // Only the second message (exactly 10 octets with its CRLF) was delivered.
    assert_eq!(store.delivered.len(), 1);
    assert_eq!(store.delivered[0].2, b"01234567\r\n");
}

#[test]
fn over_size_data_is_drained_without_buffering() {
    let mut c = config();
    c.max_message_size = 1000;
    let mut server = Server::new(c);
    server.feed(&with_lhlo(b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\n"));
    let mut store = Store::default();
    store.serve(&mut server);
    server.feed(b"DATA\r\n");
    assert!(server.in_data());
    let line = [b'y'; 99];
    for _ in 0..10_000 {
        server.feed(&line);
        server.feed(b"\n");
        assert!(server.buffered_message() <= 1000);
        assert_eq!(server.buffered_input(), 0);
    }
    server.feed(b".\r\nNOOP\r\n");
    assert_eq!(server.poll_event(), None);
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    assert!(String::from_utf8(out).unwrap().ends_with(
        "354 Start mail input; end with <CRLF>.<CRLF>\r\n\
         552 5.3.4 <a@x.test> Message size exceeds fixed maximum message size\r\n\
         250 2.0.0 OK\r\n"
    ));
}

#[test]
fn bare_lf_is_tolerated_and_normalised() {
    let (out, store) = session(
        config(),
        b"LHLO c.test\nMAIL FROM:<>\nRCPT TO:<a@x.test>\nDATA\na\nb\r\n..c\n.\nNOOP\n",
    );
    assert_eq!(after_lhlo(&out).last(), Some(&"250 2.0.0 OK"));
    assert_eq!(store.delivered[0].2, b"a\r\nb\r\n.c\r\n");
}

#[test]
fn bare_cr_in_data_passes_and_in_commands_is_refused() {
    let (out, store) = session(
        config(),
        &with_lhlo(b"NO\rOP\r\nMAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nDATA\r\na\rb\r\n.\r\r\n.\r\n"),
    );
    assert_eq!(after_lhlo(&out)[0], "500 5.5.2 Syntax error");
    assert_eq!(store.delivered[0].2, b"a\rb\r\n\r\r\n");
}

#[test]
fn pipelined_commands_wait_for_answers() {
    let mut server = Server::new(config());
    server.feed(&with_lhlo(
        b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nNOOP\r\n",
    ));
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    let text = String::from_utf8(out.clone()).unwrap();
    // Nothing after the first RCPT is answered before the store answers it.
    assert!(text.ends_with("250 2.1.0 Sender OK\r\n"));
    assert!(server.buffered_input() > 0);
    assert!(matches!(server.poll_event(), Some(Event::Recipient { .. })));
    assert_eq!(server.poll_event(), None);
    server
        .accept_recipient(Err(RcptRefusal::Temporary))
        .unwrap();
    assert!(matches!(server.poll_event(), Some(Event::Recipient { .. })));
    server.accept_recipient(Ok(())).unwrap();
    out.clear();
    server.poll_transmit(&mut out);
    assert_eq!(
        out,
        b"451 4.3.0 <a@x.test> Temporary failure\r\n250 2.1.5 Recipient OK\r\n250 2.0.0 OK\r\n"
    );
}

#[test]
fn wants_input_bounds_pipelined_input() {
    let mut server = Server::new(config());
    server.feed(&with_lhlo(b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\n"));
    assert!(matches!(server.poll_event(), Some(Event::Recipient { .. })));
    let mut fed = 0;
    while server.wants_input() {
        server.feed(b"NOOP\r\n");
        fed += 1;
    }
    assert!(fed > 100);
    assert!(server.buffered_input() < Config::default().max_line.max(4096) + 6);
    server.accept_recipient(Ok(())).unwrap();
    assert_eq!(server.buffered_input(), 0);
    assert!(server.wants_input());
}

#[test]
fn output_high_water_stops_reading() {
    let mut server = Server::new(config());
    let noops = b"NOOP\r\n".repeat(20_000);
    server.feed(&noops);
    assert!(server.pending_output() < 64 * 1024 + 64);
    assert!(!server.wants_input());
    let mut out = Vec::new();
    while server.pending_output() > 0 {
        server.poll_transmit(&mut out);
    }
    let greeting = "220 mx.test LMTP server ready\r\n".len();
    assert_eq!(out.len() - greeting, 20_000 * "250 2.0.0 OK\r\n".len());
}

#[test]
fn eof_answers_what_was_received_then_closes() {
    let (out, store) = session_chunks(
        config(),
        &[&with_lhlo(
            b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nNOOP\r\nNO",
        )],
        true,
    );
    let out = String::from_utf8(out).unwrap();
    assert_eq!(
        after_lhlo(&out),
        [
            "250 2.1.0 Sender OK",
            "250 2.1.5 Recipient OK",
            "250 2.0.0 OK"
        ]
    );
    assert_eq!(store.closed, Some(CloseReason::Eof));
}

#[test]
fn eof_in_data_drops_the_message() {
    let (_, store) = session_chunks(
        config(),
        &[&with_lhlo(
            b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nDATA\r\npartial\r\n",
        )],
        true,
    );
    assert!(store.delivered.is_empty());
    assert_eq!(store.closed, Some(CloseReason::Eof));
}

#[test]
fn shutdown_says_421() {
    let mut server = Server::new(config());
    server.feed(&with_lhlo(b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\n"));
    assert!(matches!(server.poll_event(), Some(Event::Recipient { .. })));
    server.shutdown();
    assert_eq!(
        server.poll_event(),
        Some(Event::Closed(CloseReason::Shutdown))
    );
    assert!(server.is_closed());
    assert_eq!(
        server.accept_recipient(Ok(())),
        Err(ServerError::NotExpected)
    );
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    assert!(
        String::from_utf8(out)
            .unwrap()
            .ends_with("421 4.3.2 mx.test Service shutting down\r\n")
    );
}

#[test]
fn lhlo_again_resets_the_transaction() {
    let (out, _) = session(
        config(),
        &with_lhlo(b"MAIL FROM:<>\r\nLHLO c.test\r\nMAIL FROM:<>\r\n"),
    );
    let r = after_lhlo(&out);
    assert_eq!(r[0], "250 2.1.0 Sender OK");
    assert_eq!(r[1..6], LHLO_REPLY);
    assert_eq!(r[6], "250 2.1.0 Sender OK");
}

#[test]
fn several_transactions_in_one_session() {
    let (_, store) = session(
        config(),
        &with_lhlo(
            b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nDATA\r\none\r\n.\r\n\
              MAIL FROM:<s@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\ntwo\r\n.\r\n",
        ),
    );
    assert_eq!(store.delivered.len(), 2);
    assert_eq!(store.delivered[1].2, b"two\r\n");
    assert_eq!(store.delivered[1].1[0].to_string(), "b@x.test");
}

#[test]
fn default_config() {
    let c = Config::default();
    assert_eq!(
        (
            c.max_recipients,
            c.max_line,
            c.max_errors,
            c.max_message_size
        ),
        (100, 2048, 10, 64 * 1024 * 1024)
    );
}
