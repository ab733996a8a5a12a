//! The sans-IO client machine: delivers one message over LMTP (RFC 2033) or SMTP
//! (RFC 5321).
//!
//! [`Client`] takes the server's bytes ([`Client::feed`], [`Client::feed_eof`]) and gives the
//! bytes to send ([`Client::poll_transmit`]) and events ([`Client::poll_event`]). It runs the
//! whole dialogue: the greeting, `LHLO` (LMTP) or `EHLO` (SMTP, falling back to `HELO` when
//! `EHLO` gets a 5xx), `STARTTLS` when asked for and offered ([`Event::StartTls`]: the
//! embedder runs the handshake and calls [`Client::tls_started`], then the hello is sent
//! again), `MAIL FROM` (with `BODY=8BITMIME` and `SIZE=` when offered), one `RCPT TO` per
//! recipient, `DATA`, the body ([`Event::SendBody`]: [`Client::send_body_chunk`] then
//! [`Client::finish_body`], dot-stuffed and in CRLF on the wire), the replies after the data
//! (one per accepted recipient for LMTP, RFC 2033 §4.2; one for all of them for SMTP), and
//! `QUIT`.
//!
//! With `PIPELINING` offered (RFC 2920) and [`ClientConfig::pipelining`] on, `MAIL`, every
//! `RCPT` and `DATA` go in one write; otherwise one command at a time. `QUIT` is never sent
//! while a reply to `DATA` may still be `354`.
//!
//! The result is one [`Event::Outcome`]: each recipient accepted, temporarily or permanently
//! refused (with the server's reply), or deferred when the session failed first (the
//! [`Outcome::error`] says why). Then [`Event::Closed`] when `QUIT` is answered or the
//! connection ends.
//!
//! Octets received after the `220` to `STARTTLS` and before [`Client::tls_started`] are
//! discarded unread (the CVE-2011-0411 class of injection).
//!
//! ```
//! use pop3_lmtp::client::{Client, ClientConfig, Envelope, Event, Protocol, RecipientStatus};
//! use pop3_lmtp::{Domain, Mailbox, Path};
//!
//! let config = ClientConfig::new(Protocol::Lmtp, Domain::new("fetcher.example").unwrap());
//! let envelope = Envelope::new(
//!     Path::Mailbox(Mailbox::parse("a@example.org").unwrap()),
//!     vec![Mailbox::parse("b@example.org").unwrap()],
//! );
//! let mut client = Client::new(config, envelope).unwrap();
//! let mut out = Vec::new();
//!
//! client.feed(b"220 mx ready\r\n");
//! client.poll_transmit(&mut out);
//! assert_eq!(out, b"LHLO fetcher.example\r\n");
//! out.clear();
//!
//! client.feed(b"250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
//! client.poll_transmit(&mut out);
//! assert_eq!(out, b"MAIL FROM:<a@example.org> BODY=8BITMIME\r\nRCPT TO:<b@example.org>\r\nDATA\r\n");
//! out.clear();
//!
//! client.feed(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n");
//! assert_eq!(client.poll_event(), Some(Event::SendBody));
//! client.send_body_chunk(b"Subject: x\n\n.dot\n").unwrap();
//! client.finish_body().unwrap();
//! client.poll_transmit(&mut out);
//! assert_eq!(out, b"Subject: x\r\n\r\n..dot\r\n.\r\n");
//! out.clear();
//!
//! client.feed(b"250 2.0.0 <b@example.org> delivered\r\n");
//! let Some(Event::Outcome(outcome)) = client.poll_event() else { panic!() };
//! assert!(matches!(outcome.recipients[0].1, RecipientStatus::Accepted(_)));
//! client.poll_transmit(&mut out);
//! assert_eq!(out, b"QUIT\r\n");
//! client.feed(b"221 bye\r\n");
//! assert_eq!(client.poll_event(), Some(Event::Closed));
//! ```

use std::collections::VecDeque;

use crate::body::DotStuffer;
use crate::decode::{DecodeError, ReplyReader};
use crate::encode::Encode;
use crate::types::*;

/// LMTP or SMTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// LMTP (RFC 2033): `LHLO`, one reply per recipient after the data.
    Lmtp,
    /// SMTP (RFC 5321): `EHLO` (or `HELO`), one reply after the data.
    Smtp,
}

/// Whether to use `STARTTLS` (RFC 3207).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTls {
    /// Never.
    Never,
    /// When the server offers it; in the clear otherwise (or when it is refused).
    Opportunistic,
    /// Always: the session fails ([`ClientError::TlsUnavailable`]) if it is not offered
    /// or refused.
    Required,
}

/// Client configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// LMTP or SMTP.
    pub protocol: Protocol,
    /// Our name, for `LHLO`/`EHLO`/`HELO`.
    pub hostname: Domain,
    /// Whether to use `STARTTLS`.
    pub starttls: StartTls,
    /// The connection is already encrypted (implicit TLS): no `STARTTLS`.
    pub tls_active: bool,
    /// Pipeline `MAIL`, `RCPT` and `DATA` when the server offers `PIPELINING`.
    pub pipelining: bool,
    /// The longest reply line accepted, in octets (RFC 5321: 512; default 4096).
    pub max_line: usize,
    /// The most lines one reply may have (default 256).
    pub max_reply_lines: usize,
}

impl ClientConfig {
    /// A configuration with pipelining on, no `STARTTLS`, and the default limits.
    pub fn new(protocol: Protocol, hostname: Domain) -> Self {
        ClientConfig {
            protocol,
            hostname,
            starttls: StartTls::Never,
            tls_active: false,
            pipelining: true,
            max_line: 4096,
            max_reply_lines: 256,
        }
    }
}

/// The envelope of the message to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Envelope {
    /// `MAIL FROM`.
    pub sender: Path,
    /// `RCPT TO`, in order.
    pub recipients: Vec<Mailbox>,
    /// The message size in octets (CRLF form), sent as `SIZE=` when the server offers it.
    pub size: Option<u64>,
}

impl Envelope {
    /// An envelope without a size.
    pub fn new(sender: Path, recipients: Vec<Mailbox>) -> Self {
        Envelope {
            sender,
            recipients,
            size: None,
        }
    }
}

/// What the server advertised in its `LHLO`/`EHLO` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// `PIPELINING` (RFC 2920).
    pub pipelining: bool,
    /// `8BITMIME` (RFC 6152).
    pub eight_bit_mime: bool,
    /// `ENHANCEDSTATUSCODES` (RFC 2034).
    pub enhanced_status_codes: bool,
    /// `STARTTLS` (RFC 3207).
    pub starttls: bool,
    /// `SIZE [n]` (RFC 1870): `Some(0)` when offered without a limit.
    pub size: Option<u64>,
    /// Every keyword line, as sent.
    pub lines: Vec<String>,
}

impl Capabilities {
    /// Reads the lines after the first of a `250` reply to `LHLO`/`EHLO`.
    pub fn from_reply(reply: &Reply) -> Self {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let kw = words.next().unwrap_or_default().to_ascii_uppercase();
            match kw.as_str() {
                "PIPELINING" => caps.pipelining = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "STARTTLS" => caps.starttls = true,
                "SIZE" => {
                    caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0));
                }
                _ => {}
            }
            caps.lines.push(line.clone());
        }
        caps
    }
}

/// Where in the dialogue a refusal came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage {
    /// The greeting.
    Greeting,
    /// `LHLO`, `EHLO` or `HELO`.
    Hello,
    /// `STARTTLS`.
    StartTls,
    /// `MAIL FROM`.
    Mail,
    /// `DATA`.
    Data,
}

/// Why a session failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server refused a step.
    #[error("refused at {stage:?}: {reply}")]
    Rejected {
        /// The step.
        stage: Stage,
        /// The server's reply.
        reply: Reply,
    },
    /// `STARTTLS` was required but not offered, or refused.
    #[error("STARTTLS required but not available")]
    TlsUnavailable,
    /// A reply could not be read.
    #[error("malformed reply: {0}")]
    Protocol(DecodeError),
    /// A reply came when none was expected.
    #[error("unexpected reply: {0}")]
    UnexpectedReply(Reply),
    /// The connection ended before the outcome was known.
    #[error("connection closed")]
    ConnectionClosed,
}

/// What became of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientStatus {
    /// Delivered (LMTP), or accepted for delivery (SMTP): the final reply.
    Accepted(Reply),
    /// A 4xx reply: try again later.
    TempFailed(Reply),
    /// A 5xx reply: do not try again.
    PermFailed(Reply),
    /// No final reply: the session failed first ([`Outcome::error`]); try again later.
    Deferred,
}

impl RecipientStatus {
    fn from_reply(reply: Reply) -> Self {
        if reply.is_positive() {
            RecipientStatus::Accepted(reply)
        } else if reply.is_transient() {
            RecipientStatus::TempFailed(reply)
        } else {
            RecipientStatus::PermFailed(reply)
        }
    }

    fn failure(reply: &Reply) -> Self {
        if reply.is_transient() {
            RecipientStatus::TempFailed(reply.clone())
        } else {
            RecipientStatus::PermFailed(reply.clone())
        }
    }
}

/// The result of a delivery: one status per recipient, in envelope order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Each recipient and what became of it.
    pub recipients: Vec<(Mailbox, RecipientStatus)>,
    /// Why the session failed, if it did.
    pub error: Option<ClientError>,
}

impl Outcome {
    /// Whether every recipient was accepted.
    pub fn all_accepted(&self) -> bool {
        self.recipients
            .iter()
            .all(|(_, s)| matches!(s, RecipientStatus::Accepted(_)))
    }
}

/// What the client machine reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The server accepted `STARTTLS`: flush [`Client::poll_transmit`], run the TLS handshake,
    /// then call [`Client::tls_started`].
    StartTls,
    /// The server wants the message: call [`Client::send_body_chunk`] for each piece (CRLF
    /// or LF line ends; flush [`Client::poll_transmit`] as you go), then
    /// [`Client::finish_body`].
    SendBody,
    /// The result of the delivery (exactly once).
    Outcome(Outcome),
    /// The session is over: close the connection once the output is flushed.
    Closed,
}

/// A call that does not fit the machine's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// Nothing waits for this call.
    #[error("not expected now")]
    NotExpected,
    /// The envelope has no recipient.
    #[error("no recipient")]
    NoRecipients,
}

/// A command whose reply is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Greeting,
    Lhlo,
    Ehlo,
    Helo,
    StartTls,
    Mail,
    Rcpt(usize),
    Data,
    /// The reply after the data for this recipient (LMTP), or for all accepted (SMTP).
    DataEnd(Option<usize>),
    /// A reply after data that was sent only to end a `354` nobody wanted.
    Discard,
    Quit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Commands and replies.
    Dialogue,
    /// Waiting for [`Client::tls_started`].
    TlsHandshake,
    /// Waiting for the body.
    Body,
    /// Closed.
    Closed,
}

/// The client state machine. See the module docs.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    envelope: Envelope,
    phase: Phase,
    reader: ReplyReader,
    /// A partial reply line.
    input: Vec<u8>,
    /// Octets received while the body is being sent, read after it.
    held: Vec<u8>,
    out: Vec<u8>,
    events: VecDeque<Event>,
    inflight: VecDeque<Sent>,
    caps: Capabilities,
    tls_active: bool,
    statuses: Vec<Option<RecipientStatus>>,
    /// Recipients accepted by `RCPT`, in order.
    accepted: Vec<usize>,
    stuffer: DotStuffer,
    /// The transaction is abandoned (an error happened, or no recipient was accepted).
    failed: Option<Option<ClientError>>,
    outcome_sent: bool,
    quit_sent: bool,
    pipelined: bool,
}

impl Client {
    /// A client for one delivery; it waits for the greeting. Fails if the envelope has no
    /// recipient.
    pub fn new(config: ClientConfig, envelope: Envelope) -> Result<Self, UsageError> {
        if envelope.recipients.is_empty() {
            return Err(UsageError::NoRecipients);
        }
        Ok(Client {
            reader: ReplyReader::new(config.max_line, config.max_reply_lines),
            tls_active: config.tls_active,
            statuses: vec![None; envelope.recipients.len()],
            config,
            envelope,
            phase: Phase::Dialogue,
            input: Vec::new(),
            held: Vec::new(),
            out: Vec::new(),
            events: VecDeque::new(),
            inflight: VecDeque::from([Sent::Greeting]),
            caps: Capabilities::default(),
            accepted: Vec::new(),
            stuffer: DotStuffer::new(),
            failed: None,
            outcome_sent: false,
            quit_sent: false,
            pipelined: false,
        })
    }

    /// What the server advertised (empty before its `LHLO`/`EHLO` reply, and after `HELO`).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Whether the connection is encrypted.
    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Input octets held (a partial reply line, and what came while the body was being
    /// sent): at most twice [`ClientConfig::max_line`] plus 4.
    pub fn buffered_input(&self) -> usize {
        self.input.len() + self.held.len()
    }

    /// Output octets waiting for [`Client::poll_transmit`].
    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    /// Octets from the server. While the body is being sent ([`Event::SendBody`] until
    /// [`Client::finish_body`]) they are held unread (at most one line's worth: more is a
    /// protocol error).
    pub fn feed(&mut self, data: &[u8]) {
        match self.phase {
            Phase::Closed | Phase::TlsHandshake => {}
            Phase::Body => self.hold(data),
            Phase::Dialogue => self.consume(data),
        }
    }

    fn hold(&mut self, data: &[u8]) {
        if self.held.len() + data.len() > self.config.max_line + 2 {
            self.protocol_error(DecodeError::LineTooLong);
        } else {
            self.held.extend_from_slice(data);
        }
    }

    fn consume(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.phase {
                Phase::Dialogue => {}
                // Plaintext after the 220 to STARTTLS: never interpreted.
                Phase::TlsHandshake | Phase::Closed => return,
                Phase::Body => return self.hold(data),
            }
            let Some(lf) = memchr::memchr(b'\n', data) else {
                if self.input.len() + data.len() > self.config.max_line + 2 {
                    self.protocol_error(DecodeError::LineTooLong);
                } else {
                    self.input.extend_from_slice(data);
                }
                return;
            };
            if self.input.len() + lf + 1 > self.config.max_line + 2 {
                self.protocol_error(DecodeError::LineTooLong);
                return;
            }
            self.input.extend_from_slice(&data[..=lf]);
            data = &data[lf + 1..];
            let line = std::mem::take(&mut self.input);
            let content = &line[..line.len() - 1];
            let content = content.strip_suffix(b"\r").unwrap_or(content);
            match self.reader.push_line(content) {
                Ok(None) => {}
                Ok(Some(reply)) => self.on_reply(reply),
                Err(e) => self.protocol_error(e),
            }
        }
    }

    /// The server closed the connection.
    pub fn feed_eof(&mut self) {
        if self.phase == Phase::Closed {
            return;
        }
        if !self.outcome_sent {
            self.fail(Some(ClientError::ConnectionClosed));
        }
        self.close();
    }

    /// Moves the output to `out` (appending).
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.out);
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The TLS handshake after [`Event::StartTls`] is done: the hello is sent again
    /// (RFC 3207 §4.2: what the server said before is forgotten).
    pub fn tls_started(&mut self) -> Result<(), UsageError> {
        if self.phase != Phase::TlsHandshake {
            return Err(UsageError::NotExpected);
        }
        self.phase = Phase::Dialogue;
        self.tls_active = true;
        self.caps = Capabilities::default();
        self.input.clear();
        self.reader = ReplyReader::new(self.config.max_line, self.config.max_reply_lines);
        self.send_hello();
        Ok(())
    }

    /// A piece of the message after [`Event::SendBody`] (CRLF or LF line ends, any octets):
    /// dot-stuffed into the output.
    pub fn send_body_chunk(&mut self, chunk: &[u8]) -> Result<(), UsageError> {
        if self.phase != Phase::Body {
            return Err(UsageError::NotExpected);
        }
        self.stuffer.push(chunk, &mut self.out);
        Ok(())
    }

    /// Ends the message (`.` CRLF, after a CRLF if the last line had none).
    pub fn finish_body(&mut self) -> Result<(), UsageError> {
        if self.phase != Phase::Body {
            return Err(UsageError::NotExpected);
        }
        self.stuffer.finish(&mut self.out);
        self.phase = Phase::Dialogue;
        match self.config.protocol {
            Protocol::Lmtp => {
                for &i in &self.accepted {
                    self.inflight.push_back(Sent::DataEnd(Some(i)));
                }
            }
            Protocol::Smtp => self.inflight.push_back(Sent::DataEnd(None)),
        }
        let held = std::mem::take(&mut self.held);
        self.consume(&held);
        Ok(())
    }

    fn send(&mut self, cmd: &Command, sent: Sent) {
        cmd.encode(&mut self.out);
        self.inflight.push_back(sent);
    }

    fn send_hello(&mut self) {
        let name = self.config.hostname.clone();
        match self.config.protocol {
            Protocol::Lmtp => self.send(&Command::Lhlo(name), Sent::Lhlo),
            Protocol::Smtp => self.send(&Command::Ehlo(name), Sent::Ehlo),
        }
    }

    fn close(&mut self) {
        if self.phase != Phase::Closed {
            self.phase = Phase::Closed;
            self.inflight.clear();
            self.input = Vec::new();
            self.held = Vec::new();
            self.events.push_back(Event::Closed);
        }
    }

    fn protocol_error(&mut self, e: DecodeError) {
        self.fail(Some(ClientError::Protocol(e)));
        self.close();
    }

    /// Abandons the transaction: every recipient without a status gets one (the reply's
    /// when the error carries one, else deferred); the outcome is reported and `QUIT` follows
    /// once no reply that could be `354` is pending.
    fn fail(&mut self, error: Option<ClientError>) {
        if self.failed.is_none() {
            let status = match &error {
                Some(ClientError::Rejected { reply, .. }) => RecipientStatus::failure(reply),
                _ => RecipientStatus::Deferred,
            };
            for s in &mut self.statuses {
                if s.is_none() {
                    *s = Some(status.clone());
                }
            }
            self.failed = Some(error);
        }
        self.report();
    }

    fn reject(&mut self, stage: Stage, reply: Reply) {
        self.fail(Some(ClientError::Rejected { stage, reply }));
    }

    /// Reports the outcome once every recipient has a status.
    fn report(&mut self) {
        if self.outcome_sent || self.statuses.iter().any(Option::is_none) {
            return;
        }
        self.outcome_sent = true;
        let recipients = self
            .envelope
            .recipients
            .iter()
            .cloned()
            .zip(
                self.statuses
                    .iter()
                    .map(|s| s.clone().unwrap_or(RecipientStatus::Deferred)),
            )
            .collect();
        let error = self.failed.clone().flatten();
        self.events
            .push_back(Event::Outcome(Outcome { recipients, error }));
    }

    fn maybe_quit(&mut self) {
        if self.outcome_sent
            && !self.quit_sent
            && self.inflight.is_empty()
            && self.phase == Phase::Dialogue
        {
            self.quit_sent = true;
            self.send(&Command::Quit, Sent::Quit);
        }
    }

    fn start_transaction(&mut self) {
        let mut params = Vec::new();
        if self.caps.eight_bit_mime {
            params.extend(Param::new("BODY", Some("8BITMIME")).ok());
        }
        if let (Some(_), Some(size)) = (self.caps.size, self.envelope.size) {
            params.extend(Param::new("SIZE", Some(size.to_string())).ok());
        }
        let from = self.envelope.sender.clone();
        self.send(&Command::Mail { from, params }, Sent::Mail);
        self.pipelined = self.config.pipelining && self.caps.pipelining;
        if self.pipelined {
            for i in 0..self.envelope.recipients.len() {
                self.send_rcpt(i);
            }
            self.send(&Command::Data, Sent::Data);
        }
    }

    fn send_rcpt(&mut self, i: usize) {
        let to = self.envelope.recipients[i].clone();
        self.send(
            &Command::Rcpt {
                to,
                params: Vec::new(),
            },
            Sent::Rcpt(i),
        );
    }

    /// After the last `RCPT` reply (one at a time): `DATA`, or nothing to send.
    fn after_recipients(&mut self) {
        if self.accepted.is_empty() {
            self.fail(None);
        } else if !self.pipelined {
            self.send(&Command::Data, Sent::Data);
        }
    }

    fn on_reply(&mut self, reply: Reply) {
        let Some(sent) = self.inflight.pop_front() else {
            self.fail(Some(ClientError::UnexpectedReply(reply)));
            self.close();
            return;
        };
        let abandoned = self.failed.is_some();
        match sent {
            Sent::Greeting if reply.is_positive() => self.send_hello(),
            Sent::Greeting => self.reject(Stage::Greeting, reply),
            Sent::Lhlo | Sent::Ehlo | Sent::Helo if reply.is_positive() => {
                self.caps = if sent == Sent::Helo {
                    Capabilities::default()
                } else {
                    Capabilities::from_reply(&reply)
                };
                let want_tls = self.config.starttls != StartTls::Never && !self.tls_active;
                if want_tls && self.caps.starttls {
                    self.send(&Command::StartTls, Sent::StartTls);
                } else if want_tls && self.config.starttls == StartTls::Required {
                    self.fail(Some(ClientError::TlsUnavailable));
                } else {
                    self.start_transaction();
                }
            }
            Sent::Ehlo if reply.code >= 500 => {
                let name = self.config.hostname.clone();
                self.send(&Command::Helo(name), Sent::Helo);
            }
            Sent::Lhlo | Sent::Ehlo | Sent::Helo => self.reject(Stage::Hello, reply),
            Sent::StartTls if reply.code == 220 => {
                // Anything already received after this reply is discarded unread.
                self.input.clear();
                self.phase = Phase::TlsHandshake;
                self.events.push_back(Event::StartTls);
            }
            Sent::StartTls if self.config.starttls == StartTls::Required => {
                self.fail(Some(ClientError::TlsUnavailable));
            }
            Sent::StartTls => self.start_transaction(),
            Sent::Mail if abandoned => {}
            Sent::Mail if reply.is_positive() => {
                if !self.pipelined {
                    self.send_rcpt(0);
                }
            }
            Sent::Mail => self.reject(Stage::Mail, reply),
            Sent::Rcpt(i) => {
                if !abandoned {
                    if reply.is_positive() {
                        self.accepted.push(i);
                    } else {
                        self.statuses[i] = Some(RecipientStatus::failure(&reply));
                    }
                    if i + 1 < self.envelope.recipients.len() {
                        if !self.pipelined {
                            self.send_rcpt(i + 1);
                        }
                    } else {
                        self.after_recipients();
                    }
                }
            }
            Sent::Data if reply.code == 354 => {
                if abandoned {
                    // Nobody wants this message: end it at once.
                    self.out.extend_from_slice(crate::encode::TERMINATOR);
                    self.inflight.push_back(Sent::Discard);
                } else {
                    self.phase = Phase::Body;
                    self.events.push_back(Event::SendBody);
                }
            }
            Sent::Data if abandoned => {}
            Sent::Data => self.reject(Stage::Data, reply),
            Sent::DataEnd(Some(i)) => {
                self.statuses[i] = Some(RecipientStatus::from_reply(reply));
                self.report();
            }
            Sent::DataEnd(None) => {
                for &i in &self.accepted {
                    self.statuses[i] = Some(RecipientStatus::from_reply(reply.clone()));
                }
                self.report();
            }
            Sent::Discard => {}
            Sent::Quit => {
                self.close();
                return;
            }
        }
        self.maybe_quit();
    }
}
