//! The client machine against the server machine, wired together in memory: the message the
//! store receives is the client's body, byte for byte (in its canonical CRLF form), whatever
//! it holds and however it is chunked; each recipient's outcome is the store's answer.

mod common;

use common::{Store, config};
use pop3_lmtp::body::canonical;
use pop3_lmtp::client::{
    Client, ClientConfig, Envelope, Event, Outcome, Protocol, RecipientStatus,
};
use pop3_lmtp::server::{Config, Server};
use pop3_lmtp::{Domain, Mailbox, Path};
use proptest::prelude::*;

fn mb(s: &str) -> Mailbox {
    Mailbox::parse(s).unwrap()
}

/// Runs one delivery; returns the outcome, the store, and every octet the client sent.
fn deliver(
    server_config: Config,
    pipelining: bool,
    recipients: &[&str],
    body: &[u8],
    chunk: usize,
) -> (Outcome, Store, Vec<u8>) {
    let mut cc = ClientConfig::new(Protocol::Lmtp, Domain::new("client.test").unwrap());
    cc.pipelining = pipelining;
    let mut envelope = Envelope::new(
        Path::Mailbox(mb("sender@example.org")),
        recipients.iter().map(|r| mb(r)).collect(),
    );
    envelope.size = Some(canonical(body).len() as u64);
    let mut client = Client::new(cc, envelope).unwrap();
    let mut server = Server::new(server_config);
    let mut store = Store::default();
    let mut outcome = None;
    let mut closed = false;
    let mut wire_c2s = Vec::new();
    for _ in 0..10_000 {
        let mut buf = Vec::new();
        server.poll_transmit(&mut buf);
        client.feed(&buf);
        let mut progressed = !buf.is_empty();
        while let Some(ev) = client.poll_event() {
            progressed = true;
            match ev {
                Event::SendBody => {
                    for piece in body.chunks(chunk.max(1)) {
                        client.send_body_chunk(piece).unwrap();
                        // The body streams: flush as we go.
                        let mut b = Vec::new();
                        client.poll_transmit(&mut b);
                        wire_c2s.extend_from_slice(&b);
                        server.feed(&b);
                        store.serve(&mut server);
                    }
                    client.finish_body().unwrap();
                }
                Event::Outcome(o) => {
                    assert!(outcome.is_none(), "one outcome");
                    outcome = Some(o);
                }
                Event::Closed => closed = true,
                other => panic!("{other:?}"),
            }
        }
        let mut buf = Vec::new();
        client.poll_transmit(&mut buf);
        wire_c2s.extend_from_slice(&buf);
        server.feed(&buf);
        progressed |= !buf.is_empty();
        progressed |= store.serve(&mut server) > 0;
        if closed {
            break;
        }
        assert!(progressed, "stalled");
    }
    assert!(closed && server.is_closed());
    (outcome.expect("an outcome"), store, wire_c2s)
}

const BODIES: &[&[u8]] = &[
    b"",
    b"Subject: hello\r\n\r\nbody\r\n",
    b".\r\n",
    b".",
    b"..\r\n.\r\n...\r\n",
    b"a\r\n.\r\nb\r\n",
    b"\r\n.\r\n",
    b"bare\nlf\nlines\n",
    b"mixed\r\nends\nand no final newline",
    b"8-bit \xe9\xe8\xff\x00\x80\r\n",
    b"cr\ronly\rhere",
    b"\r",
    b"\n",
    b"\n.\n",
    b"trailing cr\r",
];

#[test]
fn bodies_round_trip_byte_exact() {
    for body in BODIES {
        for chunk in [1, 2, 3, 7, 1000] {
            for pipelining in [true, false] {
                let (outcome, store, _) = deliver(config(), pipelining, &["a@x.test"], body, chunk);
                assert!(outcome.all_accepted(), "{outcome:?}");
                assert_eq!(store.delivered.len(), 1);
                assert_eq!(
                    store.delivered[0].2,
                    canonical(body),
                    "body {:?} chunk {chunk}",
                    String::from_utf8_lossy(body)
                );
                assert_eq!(
                    store.delivered[0].0,
                    Path::Mailbox(mb("sender@example.org"))
                );
            }
        }
    }
}

#[test]
fn the_wire_is_dot_stuffed_crlf() {
    let (_, _, wire) = deliver(config(), true, &["a@x.test"], b".a\nb\n.\n", 1);
    let wire = String::from_utf8(wire).unwrap();
    assert_eq!(
        wire,
        "LHLO client.test\r\nMAIL FROM:<sender@example.org> BODY=8BITMIME SIZE=10\r\n\
         RCPT TO:<a@x.test>\r\nDATA\r\n..a\r\nb\r\n..\r\n.\r\nQUIT\r\n"
    );
}

#[test]
fn one_outcome_per_recipient_with_mixed_results() {
    for pipelining in [true, false] {
        let (outcome, store, _) = deliver(
            config(),
            pipelining,
            &[
                "ok@x.test",
                "unknown@x.test",
                "temp@x.test",
                "dtemp@x.test",
                "dperm@x.test",
                "ok2@x.test",
            ],
            b"hi\n",
            100,
        );
        let codes: Vec<(String, &str, u16)> = outcome
            .recipients
            .iter()
            .map(|(m, s)| match s {
                RecipientStatus::Accepted(r) => (m.to_string(), "ok", r.code),
                RecipientStatus::TempFailed(r) => (m.to_string(), "temp", r.code),
                RecipientStatus::PermFailed(r) => (m.to_string(), "perm", r.code),
                RecipientStatus::Deferred => (m.to_string(), "deferred", 0),
            })
            .collect();
        let want: Vec<(String, &str, u16)> = [
            ("ok@x.test", "ok", 250),
            ("unknown@x.test", "perm", 550),
            ("temp@x.test", "temp", 451),
            ("dtemp@x.test", "temp", 451),
            ("dperm@x.test", "perm", 554),
            ("ok2@x.test", "ok", 250),
        ]
        .iter()
        .map(|(a, b, c)| (a.to_string(), *b, *c))
        .collect();
        assert_eq!(codes, want);
        assert_eq!(outcome.error, None);
        assert_eq!(store.delivered[0].1.len(), 4);
        assert!(!outcome.all_accepted());
    }
}

#[test]
fn all_recipients_refused_sends_no_data() {
    for pipelining in [true, false] {
        let (outcome, store, wire) = deliver(
            config(),
            pipelining,
            &["unknown@x.test", "temp@x.test"],
            b"never sent\n",
            100,
        );
        assert!(store.delivered.is_empty());
        assert!(!String::from_utf8_lossy(&wire).contains("never sent"));
        assert!(matches!(
            outcome.recipients[0].1,
            RecipientStatus::PermFailed(_)
        ));
        assert!(matches!(
            outcome.recipients[1].1,
            RecipientStatus::TempFailed(_)
        ));
        assert_eq!(outcome.error, None);
    }
}

#[test]
fn over_size_is_refused_per_recipient() {
    let mut c = config();
    c.max_message_size = 100;
    let big = vec![b'x'; 500];
    // The client announces SIZE=502: refused at MAIL.
    let (outcome, store, _) = deliver(c.clone(), true, &["a@x.test", "b@x.test"], &big, 64);
    assert!(store.delivered.is_empty());
    for (_, s) in &outcome.recipients {
        match s {
            RecipientStatus::PermFailed(r) => {
                assert_eq!((r.code, r.enhanced), (552, Some((5, 3, 4))))
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        outcome.error,
        Some(pop3_lmtp::client::ClientError::Rejected {
            stage: pop3_lmtp::client::Stage::Mail,
            ..
        })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_body_round_trips(
        body in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), any::<u8>()], 0..200),
        chunk in 1usize..50,
        pipelining in any::<bool>(),
    ) {
        let (outcome, store, _) = deliver(config(), pipelining, &["a@x.test"], &body, chunk);
        prop_assert!(outcome.all_accepted());
        prop_assert_eq!(&store.delivered[0].2, &canonical(&body));
    }
}
