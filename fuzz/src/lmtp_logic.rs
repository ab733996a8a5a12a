//! The logic of the LMTP fuzz targets (`lmtp_server`, `lmtp_client`), in one place: each
//! `fuzz_targets/lmtp_*.rs` calls one function here, and `pop3-lmtp/tests/fuzz_corpus.rs`
//! replays every committed corpus and regression input through the same function on stable
//! Rust (`#[path]`-included by both), so a crash found once stays a test.
//!
//! Input layout (both targets): byte 0 chooses the configuration; byte 1 is `n`, the number
//! of answer bytes that follow (the application's choices, used in turn, `0` once used up);
//! the rest is operations, each an op byte and, for a chunk of peer bytes, a length byte and
//! that many bytes.

use pop3_lmtp::Reply;
use pop3_lmtp::client::{Client, ClientConfig, Envelope, Event, Protocol, StartTls};
use pop3_lmtp::server::{Config, DeliveryRefusal, RcptRefusal, Server, ServerError};
use pop3_lmtp::{Domain, Mailbox, Path};

/// The names of the targets, as directories under `fuzz/corpus/` and `fuzz/regressions/`.
pub(crate) const LMTP_TARGETS: [&str; 2] = ["lmtp_server", "lmtp_client"];

/// Runs the logic of the target called `name` on `data`.
pub(crate) fn run_lmtp(name: &str, data: &[u8]) {
    match name {
        "lmtp_server" => lmtp_server(data),
        "lmtp_client" => lmtp_client(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

/// The input split into a configuration byte, answers and operations.
struct Input<'a> {
    config: u8,
    answers: &'a [u8],
    ops: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Self {
        let config = data.first().copied().unwrap_or(0);
        let n = usize::from(data.get(1).copied().unwrap_or(0));
        let rest = data.get(2..).unwrap_or_default();
        let (answers, ops) = rest.split_at(n.min(rest.len()));
        Input {
            config,
            answers,
            ops,
        }
    }

    fn answer(&mut self) -> u8 {
        match self.answers.split_first() {
            Some((&a, rest)) => {
                self.answers = rest;
                a
            }
            None => 0,
        }
    }

    /// The next operation: `(op, chunk)`.
    fn op(&mut self) -> Option<(u8, &'a [u8])> {
        let (&op, rest) = self.ops.split_first()?;
        self.ops = rest;
        if op % 8 < 5 {
            let len = usize::from(self.ops.first().copied().unwrap_or(0));
            let rest = self.ops.get(1..).unwrap_or_default();
            let (chunk, rest) = rest.split_at(len.min(rest.len()));
            self.ops = rest;
            Some((op, chunk))
        } else {
            Some((op, &[]))
        }
    }
}

fn custom_reply(a: u8) -> Reply {
    let code = if a & 1 == 0 { 450 } else { 550 };
    // Sometimes a reply that is not a failure (the machine must replace it), sometimes one
    // whose text tries to inject a line.
    match a % 4 {
        0 => Reply::new(250, None, "fine?").expect("valid reply"),
        1 => Reply {
            code,
            enhanced: None,
            lines: vec!["evil\r\n250 ok".into(), String::new()],
        },
        _ => Reply::new(code, Some(((code / 100) as u8, 7, 1)), "custom").expect("valid reply"),
    }
}

/// Fuzz target `lmtp_server`: arbitrary client bytes, in arbitrary chunks (fed only while
/// `wants_input()`, like an adapter), EOF, shutdown and output drains, with the store's
/// answers chosen by the input (accept, each refusal, custom replies, a wrong result count
/// first). Properties: no panic; an answer is taken only when asked for; the pending
/// output stays within 64 KiB plus one line per recipient, buffered input within the read
/// limit plus the last chunk, the message buffer within the size limit; a delivered body is in CRLF form and no
/// larger than the limit; after `Closed`, the machine stays closed and asks nothing more.
pub(crate) fn lmtp_server(data: &[u8]) {
    let mut input = Input::new(data);
    let mut config = Config::default();
    config.hostname = "mx.fuzz".into();
    config.max_line = [16, 64, 512, 2048][usize::from(input.config & 3)];
    config.max_message_size = [0, 10, 300, 1 << 20][usize::from((input.config >> 2) & 3)];
    config.max_recipients = [1, 2, 5, 100][usize::from((input.config >> 4) & 3)];
    config.max_errors = [1, 3, 10, 1000][usize::from((input.config >> 6) & 3)];
    let read_limit = config.max_line.max(4096);
    // The server stops reading commands at 64 KiB of output; one command's replies add at
    // most one line per recipient (each naming an address shorter than a line) or the LHLO
    // reply.
    let output_limit = 64 * 1024 + config.max_recipients * (config.max_line + 64) + 1024;
    let max_size = config.max_message_size;
    let mut server = Server::new(config);
    let mut out = Vec::new();
    let mut closed = false;
    let mut last_chunk = 0;
    while let Some((op, chunk)) = input.op() {
        match op % 8 {
            0..=4 => {
                if server.wants_input() {
                    server.feed(chunk);
                    last_chunk = chunk.len();
                }
            }
            5 => {
                out.clear();
                server.poll_transmit(&mut out);
            }
            6 => server.feed_eof(),
            _ => {
                if op == 255 {
                    server.shutdown();
                } else {
                    out.clear();
                    server.poll_transmit(&mut out);
                }
            }
        }
        assert!(server.pending_output() <= output_limit, "output unbounded");
        assert!(
            server.buffered_input() <= read_limit + last_chunk,
            "input unbounded"
        );
        assert!(
            server.buffered_message() as u64 <= max_size,
            "message unbounded"
        );
        while let Some(ev) = server.poll_event() {
            assert!(!closed, "event after Closed: {ev:?}");
            match ev {
                pop3_lmtp::server::Event::Recipient { .. } => {
                    assert_eq!(server.delivered(vec![]), Err(ServerError::NotExpected));
                    let a = input.answer();
                    let answer = match a % 8 {
                        0..=3 => Ok(()),
                        4 => Err(RcptRefusal::UnknownUser),
                        5 => Err(RcptRefusal::Temporary),
                        6 => Err(RcptRefusal::MailboxFull),
                        _ => Err(RcptRefusal::Reply(custom_reply(a / 8))),
                    };
                    server.accept_recipient(answer).expect("asked for");
                }
                pop3_lmtp::server::Event::Message {
                    recipients, body, ..
                } => {
                    assert!(!recipients.is_empty());
                    assert!(body.len() as u64 <= max_size);
                    assert!(body.is_empty() || body.ends_with(b"\r\n"));
                    for (i, &b) in body.iter().enumerate() {
                        if b == b'\n' {
                            assert!(i > 0 && body[i - 1] == b'\r', "bare LF in body");
                        }
                    }
                    assert_eq!(
                        server.accept_recipient(Ok(())),
                        Err(ServerError::NotExpected)
                    );
                    let a = input.answer();
                    if a == 255 {
                        assert!(matches!(
                            server.delivered(vec![Ok(()); recipients.len() + 1]),
                            Err(ServerError::WrongCount { .. })
                        ));
                    }
                    let results = recipients
                        .iter()
                        .map(|_| match input.answer() % 6 {
                            0..=2 => Ok(()),
                            3 => Err(DeliveryRefusal::Temporary),
                            4 => Err(DeliveryRefusal::MailboxFull),
                            _ => Err(DeliveryRefusal::Reply(custom_reply(a))),
                        })
                        .collect();
                    server.delivered(results).expect("asked for");
                }
                pop3_lmtp::server::Event::Closed(_) => closed = true,
                _ => {}
            }
        }
        assert_eq!(closed, server.is_closed());
    }
}

/// Fuzz target `lmtp_client`: arbitrary server bytes in arbitrary chunks, EOF and output
/// drains, against a client for LMTP or SMTP, with or without pipelining and STARTTLS, one
/// to four recipients, the body streamed from the input in chunks. Properties: no panic; at
/// most one `Outcome`, with one status per recipient, before `Closed`; nothing after
/// `Closed`; buffered input within twice the line limit plus 4.
pub(crate) fn lmtp_client(data: &[u8]) {
    let mut input = Input::new(data);
    let protocol = if input.config & 1 == 0 {
        Protocol::Lmtp
    } else {
        Protocol::Smtp
    };
    let mut config = ClientConfig::new(protocol, Domain::new("client.fuzz").expect("domain"));
    config.pipelining = input.config & 2 != 0;
    config.starttls = [
        StartTls::Never,
        StartTls::Opportunistic,
        StartTls::Required,
        StartTls::Never,
    ][usize::from((input.config >> 2) & 3)];
    config.max_line = if input.config & 16 != 0 { 64 } else { 512 };
    config.max_reply_lines = if input.config & 32 != 0 { 3 } else { 100 };
    let n = 1 + usize::from((input.config >> 6) & 3);
    let recipients: Vec<Mailbox> = (0..n)
        .map(|i| Mailbox::parse(&format!("r{i}@x.fuzz")).expect("mailbox"))
        .collect();
    let mut envelope = Envelope::new(Path::Null, recipients);
    envelope.size = Some(100);
    let max_line = config.max_line;
    let mut client = Client::new(config, envelope).expect("recipients");
    let mut out = Vec::new();
    let mut outcome = false;
    let mut closed = false;
    while let Some((op, chunk)) = input.op() {
        match op % 8 {
            0..=4 => client.feed(chunk),
            5 | 7 => {
                out.clear();
                client.poll_transmit(&mut out);
            }
            _ => client.feed_eof(),
        }
        assert!(
            client.buffered_input() <= 2 * max_line + 4,
            "input unbounded"
        );
        let mut guard = 0;
        while let Some(ev) = client.poll_event() {
            guard += 1;
            assert!(guard < 1000, "events do not end");
            assert!(!closed, "event after Closed: {ev:?}");
            match ev {
                Event::StartTls => client.tls_started().expect("asked for"),
                Event::SendBody => {
                    let len = usize::from(input.answer());
                    let body = input
                        .ops
                        .get(..len.min(input.ops.len()))
                        .unwrap_or_default();
                    for piece in body.chunks(usize::from(input.answer()).max(1)) {
                        client.send_body_chunk(piece).expect("asked for");
                    }
                    client.finish_body().expect("asked for");
                    assert!(client.finish_body().is_err());
                }
                Event::Outcome(o) => {
                    assert!(!outcome, "two outcomes");
                    outcome = true;
                    assert_eq!(o.recipients.len(), n);
                }
                Event::Closed => {
                    assert!(outcome, "Closed before the outcome");
                    closed = true;
                }
                _ => {}
            }
        }
        assert_eq!(closed, client.is_closed());
    }
}
