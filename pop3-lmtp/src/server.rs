//! The sans-IO LMTP server machine (RFC 2033).
//!
//! [`Server`] takes the client's bytes ([`Server::feed`], [`Server::feed_eof`]) and gives the
//! bytes to send ([`Server::poll_transmit`]) and events ([`Server::poll_event`]). It answers by
//! itself everything that needs no mail store: the greeting, `LHLO` (advertising
//! `PIPELINING`, `ENHANCEDSTATUSCODES`, `8BITMIME` and `SIZE`), `MAIL`, `RSET`, `NOOP`, `VRFY`
//! (`252`), `QUIT`, and every error: out-of-sequence commands (`503 5.5.1`), syntax errors
//! (`501`, `500`), unknown commands (`500 5.5.1`), over-long lines (`500 5.5.2`), too many
//! recipients (`452 4.5.3`), an over-size message (`552 5.3.4` for each recipient), and, after
//! [`Config::max_errors`] errors, `421` and the end of the session.
//!
//! What needs the store comes as events, and the machine reads no further command until it
//! is answered (so pipelined replies stay in order, RFC 2920):
//!
//! - [`Event::Recipient`]: may this mailbox receive mail? Answer with
//!   [`Server::accept_recipient`]: `250 2.1.5`, or the [`RcptRefusal`]'s reply
//!   (`550 5.1.1`, `451 4.3.0`, ...).
//! - [`Event::Message`]: the message, dot-unstuffed, in CRLF form, with the envelope. Deliver
//!   it to each recipient and answer with [`Server::delivered`]: one result per recipient, in
//!   `RCPT` order, which become one reply each (RFC 2033 §4.2). The machine adds no header:
//!   prepend `Return-Path:` (from the envelope sender) and `Received:` as the store wishes.
//!
//! `HELO` and `EHLO` are refused (`500 5.5.1`): this is LMTP, and `LHLO` must come first
//! (RFC 2033 §4.1). `STARTTLS` is not offered (`502 5.5.1`).
//!
//! **Data.** A line of the message may have any length; a bare LF in the data is read as a
//! line end and becomes CRLF, a bare CR passes unchanged (see [`crate::body`]). A message over
//! [`Config::max_message_size`] is read to its final dot without being kept (at most the
//! limit is ever buffered), then refused.
//!
//! **Memory.** A command line longer than [`Config::max_line`] is discarded as it arrives and
//! answered `500 5.5.2`. Unread input only accumulates while an event waits for its answer:
//! read from the socket only while [`Server::wants_input`] says so. No command is read while
//! more than 64 KiB of output waits to be sent.
//!
//! Drain order: after [`Server::feed`] or an answer, call [`Server::poll_event`] until
//! `None`, answer what it asks, then [`Server::poll_transmit`]. Close the connection once
//! [`Server::is_closed`] and the output is flushed.
//!
//! ```
//! use pop3_lmtp::server::{Config, Event, Server};
//!
//! let mut config = Config::default();
//! config.hostname = "mx.example.org".into();
//! let mut server = Server::new(config);
//! let mut out = Vec::new();
//! server.poll_transmit(&mut out);
//! assert_eq!(out, b"220 mx.example.org LMTP server ready\r\n");
//!
//! // A whole pipelined transaction in one packet.
//! server.feed(b"LHLO client.example.org\r\nMAIL FROM:<a@example.org>\r\n\
//!               RCPT TO:<b@example.org>\r\nDATA\r\nSubject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n");
//! while let Some(event) = server.poll_event() {
//!     match event {
//!         Event::Recipient { path, .. } => {
//!             assert_eq!(path.to_string(), "b@example.org");
//!             server.accept_recipient(Ok(())).unwrap();
//!         }
//!         Event::Message { sender, recipients, body, .. } => {
//!             assert_eq!(sender.to_string(), "<a@example.org>");
//!             assert_eq!(body, b"Subject: hi\r\n\r\n.dot\r\n");
//!             server.delivered(vec![Ok(()); recipients.len()]).unwrap();
//!         }
//!         _ => {} // Event::Closed
//!     }
//! }
//! out.clear();
//! server.poll_transmit(&mut out);
//! let text = String::from_utf8(out).unwrap();
//! assert!(text.ends_with("250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n\
//!     354 Start mail input; end with <CRLF>.<CRLF>\r\n250 2.0.0 <b@example.org> Delivered\r\n\
//!     221 2.0.0 mx.example.org closing connection\r\n"));
//! assert!(server.is_closed());
//! ```

use std::collections::VecDeque;

use crate::body::DotUnstuffer;
use crate::decode::{self, DecodeError};
use crate::encode::Encode;
use crate::types::*;

/// No command is read while more output than this waits to be sent.
const HIGH_WATER: usize = 64 * 1024;

/// Server configuration, per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The host name in the greeting, the `LHLO` reply and `221`/`421`.
    pub hostname: String,
    /// The largest message accepted, in octets (CRLF form, after dot-unstuffing); advertised
    /// as `SIZE`. Default 64 MiB.
    pub max_message_size: u64,
    /// Recipients accepted per transaction (RFC 5321 §4.5.3.1.8 asks for at least 100).
    /// Default 100.
    pub max_recipients: usize,
    /// The longest command line, in octets including CRLF. RFC 5321 §4.5.3.1.4 sets 512;
    /// the default, 2048, is lenient.
    pub max_line: usize,
    /// Errors (`500`, `501`, `502`, `503`, `555` replies) after which the server says `421`
    /// and closes. Default 10.
    pub max_errors: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: "localhost".into(),
            max_message_size: 64 * 1024 * 1024,
            max_recipients: 100,
            max_line: 2048,
            max_errors: 10,
        }
    }
}

/// Why a recipient is refused ([`Server::accept_recipient`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RcptRefusal {
    /// `550 5.1.1 <path> User unknown`.
    UnknownUser,
    /// `451 4.3.0 <path> Temporary failure`: the client retries later.
    Temporary,
    /// `552 5.2.2 <path> Mailbox full`.
    MailboxFull,
    /// This reply. A code that is not 4xx or 5xx is replaced by `451 4.3.0`.
    Reply(Reply),
}

/// Why delivery to one recipient failed ([`Server::delivered`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryRefusal {
    /// `451 4.3.0 <path> Temporary failure`: the client retries later.
    Temporary,
    /// `552 5.2.2 <path> Mailbox full`.
    MailboxFull,
    /// `554 5.0.0 <path> Delivery failed`.
    Permanent,
    /// This reply. A code that is not 4xx or 5xx is replaced by `451 4.3.0`.
    Reply(Reply),
}

/// Why the session closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// `QUIT`.
    Quit,
    /// The client closed the connection (a message being received is dropped).
    Eof,
    /// Too many errors (`421` sent).
    TooManyErrors,
    /// [`Server::shutdown`] (`421` sent).
    Shutdown,
}

/// What the server machine reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// `RCPT TO`: may `path` receive mail? Answer with [`Server::accept_recipient`].
    Recipient {
        /// The recipient.
        path: Mailbox,
        /// The envelope sender of the transaction.
        sender: Path,
    },
    /// A message to deliver. Answer with [`Server::delivered`], one result per recipient.
    Message {
        /// The envelope sender (`MAIL FROM`), for a `Return-Path:` header.
        sender: Path,
        /// The `MAIL FROM` parameters (`BODY=8BITMIME`, `SIZE=`).
        params: Vec<Param>,
        /// The accepted recipients, in `RCPT` order.
        recipients: Vec<Mailbox>,
        /// The message, dot-unstuffed, every line ending in CRLF; nothing added.
        body: Vec<u8>,
    },
    /// The session is over: flush the output and close.
    Closed(CloseReason),
}

/// An answer that does not fit what the machine is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// No event is waiting for this kind of answer.
    #[error("no event is waiting for this answer")]
    NotExpected,
    /// [`Server::delivered`] needs exactly one result per recipient.
    #[error("expected {expected} delivery results, got {got}")]
    WrongCount {
        /// The number of recipients.
        expected: usize,
        /// The number of results given.
        got: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before `LHLO`.
    Start,
    /// After `LHLO`: commands.
    Ready,
    /// Reading message data.
    Data,
    /// Over.
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Awaiting {
    Nothing,
    Recipient(Mailbox),
    Delivery(usize),
}

/// The LMTP server state machine. See the module docs.
#[derive(Debug)]
pub struct Server {
    config: Config,
    phase: Phase,
    input: Vec<u8>,
    pos: usize,
    out: Vec<u8>,
    events: VecDeque<Event>,
    awaiting: Awaiting,
    /// An over-long command line is being discarded.
    discarding: bool,
    errors: u32,
    sender: Option<(Path, Vec<Param>)>,
    recipients: Vec<Mailbox>,
    unstuffer: DotUnstuffer,
    body: Vec<u8>,
    eof: bool,
}

fn reply(out: &mut Vec<u8>, code: u16, enhanced: Option<EnhancedCode>, text: &str) {
    Reply::fixed(code, enhanced, text).encode(out);
}

/// `refused` if it is a 4xx or 5xx reply, else `451 4.3.0`.
fn failure_reply(refused: Reply, path: &Mailbox) -> Reply {
    if (400..600).contains(&refused.code) {
        refused
    } else {
        Reply::fixed(451, Some((4, 3, 0)), &format!("<{path}> Temporary failure"))
    }
}

impl Server {
    /// A server for one new connection; the greeting `220 hostname LMTP server ready` is
    /// queued.
    pub fn new(config: Config) -> Self {
        let mut s = Server {
            phase: Phase::Start,
            input: Vec::new(),
            pos: 0,
            out: Vec::new(),
            events: VecDeque::new(),
            awaiting: Awaiting::Nothing,
            discarding: false,
            errors: 0,
            sender: None,
            recipients: Vec::new(),
            unstuffer: DotUnstuffer::new(),
            body: Vec::new(),
            eof: false,
            config,
        };
        let greeting = format!("{} LMTP server ready", s.config.hostname);
        reply(&mut s.out, 220, None, &greeting);
        s
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether the session is over (flush the output, then close the connection).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether the machine is receiving message data (after `354`).
    pub fn in_data(&self) -> bool {
        self.phase == Phase::Data
    }

    /// Whether the adapter should read more input now: false once closed, and while more
    /// unread input is held than one command line (or 4 KiB), which happens only while an
    /// event waits for its answer or output waits to be sent.
    pub fn wants_input(&self) -> bool {
        self.phase != Phase::Closed && self.buffered_input() < self.config.max_line.max(4096)
    }

    /// Input octets held, not yet read.
    pub fn buffered_input(&self) -> usize {
        self.input.len() - self.pos
    }

    /// Output octets waiting for [`Server::poll_transmit`].
    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    /// Message octets held for the message being received (at most
    /// [`Config::max_message_size`]).
    pub fn buffered_message(&self) -> usize {
        self.body.len()
    }

    /// Octets from the client.
    pub fn feed(&mut self, data: &[u8]) {
        if self.phase == Phase::Closed || data.is_empty() {
            return;
        }
        if self.pos == self.input.len() {
            self.input.clear();
            self.pos = 0;
        } else if self.pos > 4096 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        self.input.extend_from_slice(data);
        self.process();
    }

    /// The client closed its side: the commands already received are still answered, then
    /// the session ends ([`CloseReason::Eof`]). A message not yet complete is dropped.
    pub fn feed_eof(&mut self) {
        self.eof = true;
        self.process();
    }

    /// Moves the output to `out` (appending). Call after the events are drained.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.out);
        self.process();
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Ends the session now (server shutdown): `421 4.3.2 hostname Service shutting down`.
    /// An event waiting for its answer is abandoned; nothing is delivered.
    pub fn shutdown(&mut self) {
        if self.phase != Phase::Closed {
            let text = format!("{} Service shutting down", self.config.hostname);
            reply(&mut self.out, 421, Some((4, 3, 2)), &text);
            self.close(CloseReason::Shutdown);
        }
    }

    /// Answers [`Event::Recipient`]: `Ok` accepts the recipient (`250 2.1.5`).
    pub fn accept_recipient(&mut self, answer: Result<(), RcptRefusal>) -> Result<(), ServerError> {
        if !matches!(self.awaiting, Awaiting::Recipient(_)) {
            return Err(ServerError::NotExpected);
        }
        let Awaiting::Recipient(path) = std::mem::replace(&mut self.awaiting, Awaiting::Nothing)
        else {
            return Err(ServerError::NotExpected);
        };
        match answer {
            Ok(()) => {
                reply(&mut self.out, 250, Some((2, 1, 5)), "Recipient OK");
                self.recipients.push(path);
            }
            Err(refusal) => {
                let r = match refusal {
                    RcptRefusal::UnknownUser => {
                        Reply::fixed(550, Some((5, 1, 1)), &format!("<{path}> User unknown"))
                    }
                    RcptRefusal::Temporary => {
                        Reply::fixed(451, Some((4, 3, 0)), &format!("<{path}> Temporary failure"))
                    }
                    RcptRefusal::MailboxFull => {
                        Reply::fixed(552, Some((5, 2, 2)), &format!("<{path}> Mailbox full"))
                    }
                    RcptRefusal::Reply(r) => failure_reply(r, &path),
                };
                r.encode(&mut self.out);
            }
        }
        self.process();
        Ok(())
    }

    /// Answers [`Event::Message`]: exactly one result per recipient, in `RCPT` order, each
    /// becoming one reply (RFC 2033 §4.2): `250 2.0.0 <path> Delivered` or the refusal's.
    /// The transaction then ends.
    pub fn delivered(
        &mut self,
        results: Vec<Result<(), DeliveryRefusal>>,
    ) -> Result<(), ServerError> {
        let Awaiting::Delivery(expected) = self.awaiting else {
            return Err(ServerError::NotExpected);
        };
        if results.len() != expected {
            return Err(ServerError::WrongCount {
                expected,
                got: results.len(),
            });
        }
        self.awaiting = Awaiting::Nothing;
        let recipients = std::mem::take(&mut self.recipients);
        for (path, result) in recipients.iter().zip(results) {
            let r = match result {
                Ok(()) => Reply::fixed(250, Some((2, 0, 0)), &format!("<{path}> Delivered")),
                Err(DeliveryRefusal::Temporary) => {
                    Reply::fixed(451, Some((4, 3, 0)), &format!("<{path}> Temporary failure"))
                }
                Err(DeliveryRefusal::MailboxFull) => {
                    Reply::fixed(552, Some((5, 2, 2)), &format!("<{path}> Mailbox full"))
                }
                Err(DeliveryRefusal::Permanent) => {
                    Reply::fixed(554, Some((5, 0, 0)), &format!("<{path}> Delivery failed"))
                }
                Err(DeliveryRefusal::Reply(r)) => failure_reply(r, path),
            };
            r.encode(&mut self.out);
        }
        self.reset_transaction();
        self.process();
        Ok(())
    }

    fn reset_transaction(&mut self) {
        self.sender = None;
        self.recipients.clear();
        self.body = Vec::new();
        self.unstuffer = DotUnstuffer::new();
    }

    fn close(&mut self, reason: CloseReason) {
        if self.phase != Phase::Closed {
            self.phase = Phase::Closed;
            self.awaiting = Awaiting::Nothing;
            self.reset_transaction();
            self.input = Vec::new();
            self.pos = 0;
            self.events.push_back(Event::Closed(reason));
        }
    }

    /// An error reply, counted; `421` and the end after too many.
    fn error(&mut self, code: u16, enhanced: EnhancedCode, text: &str) {
        reply(&mut self.out, code, Some(enhanced), text);
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            let text = format!(
                "{} Too many errors, closing connection",
                self.config.hostname
            );
            reply(&mut self.out, 421, Some((4, 7, 0)), &text);
            self.close(CloseReason::TooManyErrors);
        }
    }

    /// Reads commands (and data) until an event waits, the output is full or the input ends.
    fn process(&mut self) {
        loop {
            if self.phase == Phase::Closed || self.awaiting != Awaiting::Nothing {
                return;
            }
            if self.phase == Phase::Data {
                if !self.read_data() {
                    if self.eof {
                        self.close(CloseReason::Eof);
                    }
                    return;
                }
                continue;
            }
            if self.out.len() >= HIGH_WATER {
                return;
            }
            let avail = &self.input[self.pos..];
            let Some(lf) = memchr::memchr(b'\n', avail) else {
                if self.discarding || avail.len() >= self.config.max_line {
                    // Over the limit without a line end: keep nothing of it.
                    self.discarding = true;
                    self.pos = self.input.len();
                }
                if self.eof {
                    self.close(CloseReason::Eof);
                }
                return;
            };
            let too_long = self.discarding || lf + 1 > self.config.max_line;
            let content = avail[..lf]
                .strip_suffix(b"\r")
                .unwrap_or(&avail[..lf])
                .to_vec();
            self.pos += lf + 1;
            self.discarding = false;
            if too_long {
                self.error(500, (5, 5, 2), "Line too long");
            } else {
                self.command_line(&content);
            }
        }
    }

    /// Reads message data; true when the final dot was found.
    fn read_data(&mut self) -> bool {
        let max = self.config.max_message_size;
        let limit = usize::try_from(max).unwrap_or(usize::MAX);
        let found = self
            .unstuffer
            .push(&self.input[self.pos..], &mut self.body, limit);
        match found {
            Some(used) => self.pos += used,
            None => self.pos = self.input.len(),
        }
        let oversize = self.unstuffer.total() > max;
        if oversize && self.body.capacity() > 0 {
            self.body = Vec::new();
        }
        if found.is_none() {
            return false;
        }
        self.phase = Phase::Ready;
        if oversize {
            for path in std::mem::take(&mut self.recipients) {
                let text = format!("<{path}> Message size exceeds fixed maximum message size");
                reply(&mut self.out, 552, Some((5, 3, 4)), &text);
            }
            self.reset_transaction();
        } else {
            let (sender, params) = self.sender.take().unwrap_or((Path::Null, Vec::new()));
            self.awaiting = Awaiting::Delivery(self.recipients.len());
            self.events.push_back(Event::Message {
                sender,
                params,
                recipients: self.recipients.clone(),
                body: std::mem::take(&mut self.body),
            });
        }
        true
    }

    fn lhlo_reply(&mut self) {
        let r = Reply {
            code: 250,
            enhanced: None,
            lines: vec![
                self.config.hostname.clone(),
                "PIPELINING".into(),
                "ENHANCEDSTATUSCODES".into(),
                "8BITMIME".into(),
                format!("SIZE {}", self.config.max_message_size),
            ],
        };
        r.encode(&mut self.out);
    }

    fn command_line(&mut self, content: &[u8]) {
        let cmd = match decode::parse_command(content) {
            Ok(c) => c,
            Err(e) => return self.syntax_error(content, e),
        };
        match cmd {
            Command::Lhlo(_) => {
                self.reset_transaction();
                self.phase = Phase::Ready;
                self.lhlo_reply();
            }
            Command::Ehlo(_) | Command::Helo(_) => {
                self.error(500, (5, 5, 1), "This is LMTP: use LHLO");
            }
            Command::Quit => {
                let text = format!("{} closing connection", self.config.hostname);
                reply(&mut self.out, 221, Some((2, 0, 0)), &text);
                self.close(CloseReason::Quit);
            }
            Command::Rset => {
                self.reset_transaction();
                reply(&mut self.out, 250, Some((2, 0, 0)), "OK");
            }
            Command::Noop(_) => reply(&mut self.out, 250, Some((2, 0, 0)), "OK"),
            Command::Vrfy(_) => reply(
                &mut self.out,
                252,
                Some((2, 5, 0)),
                "Cannot VRFY user, but will accept message and attempt delivery",
            ),
            Command::StartTls => self.error(502, (5, 5, 1), "STARTTLS not available"),
            Command::Unknown { .. } => self.error(500, (5, 5, 1), "Command unrecognized"),
            _ if self.phase == Phase::Start => self.error(503, (5, 5, 1), "Send LHLO first"),
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to, params } => {
                if self.sender.is_none() {
                    self.error(503, (5, 5, 1), "Need MAIL command");
                } else if self.recipients.len() >= self.config.max_recipients {
                    reply(&mut self.out, 452, Some((4, 5, 3)), "Too many recipients");
                } else if !params.is_empty() {
                    self.error(555, (5, 5, 4), "Unsupported RCPT parameter");
                } else {
                    let sender = self.sender.as_ref().map_or(Path::Null, |(p, _)| p.clone());
                    self.awaiting = Awaiting::Recipient(to.clone());
                    self.events.push_back(Event::Recipient { path: to, sender });
                }
            }
            Command::Data => {
                if self.sender.is_none() {
                    self.error(503, (5, 5, 1), "Need MAIL command");
                } else if self.recipients.is_empty() {
                    self.error(503, (5, 5, 1), "No valid recipients");
                } else {
                    reply(
                        &mut self.out,
                        354,
                        None,
                        "Start mail input; end with <CRLF>.<CRLF>",
                    );
                    self.body = Vec::new();
                    self.unstuffer = DotUnstuffer::new();
                    self.phase = Phase::Data;
                }
            }
        }
    }

    fn mail(&mut self, from: Path, params: Vec<Param>) {
        if self.sender.is_some() {
            return self.error(503, (5, 5, 1), "Nested MAIL command");
        }
        for p in &params {
            if p.is("SIZE") {
                match p.value().and_then(|v| decode_u64(v.as_bytes())) {
                    None => return self.error(501, (5, 5, 4), "Invalid SIZE parameter"),
                    Some(n) if n > self.config.max_message_size => {
                        return reply(
                            &mut self.out,
                            552,
                            Some((5, 3, 4)),
                            "Message size exceeds fixed maximum message size",
                        );
                    }
                    Some(_) => {}
                }
            } else if p.is("BODY") {
                let ok = p.value().is_some_and(|v| {
                    v.eq_ignore_ascii_case("7BIT") || v.eq_ignore_ascii_case("8BITMIME")
                });
                if !ok {
                    return self.error(501, (5, 5, 4), "Invalid BODY parameter");
                }
            } else {
                return self.error(555, (5, 5, 4), "Unsupported MAIL parameter");
            }
        }
        self.sender = Some((from, params));
        reply(&mut self.out, 250, Some((2, 1, 0)), "Sender OK");
    }

    fn syntax_error(&mut self, content: &[u8], e: DecodeError) {
        let verb = content.split(|&b| b == b' ').next().unwrap_or_default();
        let verb = verb.to_ascii_uppercase();
        let known = matches!(
            verb.as_slice(),
            b"LHLO"
                | b"EHLO"
                | b"HELO"
                | b"MAIL"
                | b"RCPT"
                | b"DATA"
                | b"RSET"
                | b"NOOP"
                | b"QUIT"
                | b"VRFY"
                | b"STARTTLS"
        );
        if !known {
            return self.error(500, (5, 5, 2), "Syntax error");
        }
        match (verb.as_slice(), e) {
            (b"MAIL", DecodeError::InvalidPath) => {
                self.error(501, (5, 1, 7), "Bad sender address syntax")
            }
            (b"RCPT", DecodeError::InvalidPath) => {
                self.error(501, (5, 1, 3), "Bad recipient address syntax")
            }
            (_, DecodeError::InvalidDomain) => self.error(501, (5, 5, 4), "Invalid domain name"),
            _ => self.error(501, (5, 5, 4), "Syntax error in parameters"),
        }
    }
}

/// `1*DIGIT` as a `u64`; overflow is `None`.
fn decode_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}
