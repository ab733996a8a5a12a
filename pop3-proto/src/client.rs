//! The sans-IO client state machine.
//!
//! [`Client`] takes the bytes that arrive from the server ([`Client::handle_input`]), the end
//! of the stream ([`Client::handle_eof`]) and the time ([`Client::handle_timeout`]); it gives
//! the bytes to send ([`Client::poll_transmit`]), events ([`Client::poll_event`]) and its next
//! deadline ([`Client::poll_timeout`]). Commands are enqueued with typed calls ([`Client::stat`],
//! [`Client::retr`], ...), each returning a [`Handle`] that its events carry.
//!
//! Every command ends with exactly one [`Event::Done`], after its status line
//! ([`Event::Ok`] or [`Event::Err`]) and, for a multi-line reply, its items or body chunks. The
//! command at the head of the in-flight queue decides how the next reply is framed; replies are
//! never guessed from their bytes. Commands are pipelined only when the server advertised
//! `PIPELINING` in its last `CAPA`, up to a configurable window; authentication commands and
//! `STLS` are sent alone.
//!
//! Drain order after each input: call [`Client::poll_event`] until `None` (body chunks borrow
//! the machine's input buffer, so each must be used before the next call), then
//! [`Client::poll_transmit`], then [`Client::poll_timeout`].
//!
//! ```
//! use std::time::Instant;
//! use pop3_proto::client::{Client, ClientConfig, Event};
//! use pop3_proto::{Atom, MsgNum, Secret, Text};
//!
//! let now = Instant::now();
//! let mut client = Client::new(ClientConfig::default(), now);
//! let mut wire = Vec::new();
//!
//! // The server's bytes go in; events come out.
//! client.handle_input(b"+OK POP3 ready\r\n", now);
//! assert!(matches!(client.poll_event(), Some(Event::Greeting(_))));
//! assert!(client.stat().is_err(), "STAT is refused locally before login");
//!
//! client.user(Atom::new("alice").unwrap()).unwrap();
//! client.poll_transmit(now, &mut wire);
//! assert_eq!(wire, b"USER alice\r\n");
//! client.handle_input(b"+OK\r\n", now);
//! while client.poll_event().is_some() {}
//!
//! client.pass(Secret::new(Text::new("open sesame").unwrap())).unwrap();
//! wire.clear();
//! client.poll_transmit(now, &mut wire);
//! assert_eq!(wire, b"PASS open sesame\r\n");
//! client.handle_input(b"+OK logged in\r\n", now);
//! while client.poll_event().is_some() {}
//!
//! // A body arrives in pieces, dot-stuffed; chunks come out unstuffed.
//! let h = client.retr(MsgNum::new(1).unwrap()).unwrap();
//! wire.clear();
//! client.poll_transmit(now, &mut wire);
//! assert_eq!(wire, b"RETR 1\r\n");
//! let mut body = Vec::new();
//! for piece in [&b"+OK 20 octets\r\nSubject: x\r\n\r\n..hi"[..], b"\r\n.\r\n"] {
//!     client.handle_input(piece, now);
//!     while let Some(ev) = client.poll_event() {
//!         match ev {
//!             Event::BodyChunk { bytes, .. } => body.extend_from_slice(bytes),
//!             Event::Done { handle } => assert_eq!(handle, h),
//!             _ => {}
//!         }
//!     }
//! }
//! assert_eq!(body, b"Subject: x\r\n\r\n.hi\r\n");
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::body::{DotUnstuffer, Unstuffed};
use crate::decode::{self, ListingLine};
use crate::encode::Encode;
use crate::framing::{Framed, LineFramer, LineLimits};
use crate::sasl::{ClientCredentials, ClientExchange};
use crate::types::*;

/// Identifies one enqueued command in the events it produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(pub u64);

/// The POP3 session state (RFC 1939 §3), as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientState {
    /// Waiting for the greeting.
    Greeting,
    /// AUTHORIZATION: logging in.
    Authorization,
    /// The server accepted `STLS`; waiting for the TLS handshake
    /// ([`Client::tls_established`]).
    TlsHandshake,
    /// TRANSACTION: logged in.
    Transaction,
    /// `QUIT` was sent from TRANSACTION; the server is in UPDATE.
    Update,
    /// The session is over.
    Closed,
}

/// Client configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Line limits for what the server sends.
    pub limits: LineLimits,
    /// Most commands in flight at once when the server advertises `PIPELINING`.
    pub pipeline_window: usize,
    /// How long to wait for any byte of an expected reply before giving up.
    pub response_timeout: Option<Duration>,
    /// Longest command line sent (RFC 2449 §4: 255 octets including CRLF). An `AUTH` whose
    /// initial response would exceed it sends the response after an empty challenge instead
    /// (RFC 5034 §4).
    pub max_command_line: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            limits: LineLimits::DEFAULT,
            pipeline_window: 32,
            response_timeout: Some(Duration::from_secs(300)),
            max_command_line: 255,
        }
    }
}

/// Why the client refused a command locally, or why the session failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The command is not allowed in the current state (RFC 1939 §3).
    #[error("{0} is not allowed in state {1:?}")]
    IllegalInState(&'static str, ClientState),
    /// An authentication or `STLS` command is in flight; wait for its `Done`.
    #[error("another command must complete first")]
    Busy,
    /// After `STLS` the client must issue `CAPA` again before anything else (RFC 2595 §4).
    #[error("CAPA must be reissued after STLS")]
    CapaRequired,
    /// `APOP` needs a timestamp in the greeting, and there was none.
    #[error("the server offered no APOP timestamp")]
    NoApopTimestamp,
    /// The encoded command is longer than the command line limit.
    #[error("command line longer than {0} octets")]
    CommandTooLong(usize),
    /// The server sent something that is not a valid reply here.
    #[error("invalid reply from the server: {0}")]
    InvalidReply(String),
    /// A reply line exceeded its limit.
    #[error("reply line longer than {0} octets")]
    LineTooLong(usize),
    /// The server sent data when no reply was expected.
    #[error("unsolicited data from the server")]
    Unsolicited,
    /// Octets followed the `+OK` to `STLS` before the TLS handshake: a response injection
    /// attempt (CVE-2021-22947 class). They were discarded and the session failed.
    #[error(
        "response injection: {0} octets arrived after the STLS reply, before the TLS handshake"
    )]
    StlsInjection(usize),
    /// The connection ended before the reply was complete (never a complete message).
    #[error("connection closed in the middle of a reply")]
    UnexpectedEof,
    /// The server did not answer in time.
    #[error("timed out waiting for the server")]
    Timeout,
    /// The SASL exchange failed on the client side: a bad SCRAM server signature, an `e=`
    /// error, `+OK` before the SCRAM server signature, a malformed or unexpected challenge.
    /// The session is over (nothing more is sent, not even `*` or `QUIT`).
    #[error("SASL: {0}")]
    Sasl(String),
    /// The session is closed.
    #[error("the session is closed")]
    Closed,
}

/// What the client machine reports. See the module docs for the order.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The server's greeting (`GreetingReceived`).
    Greeting(Greeting),
    /// `+OK` to a command (for multi-line replies, its first line).
    Ok {
        /// The command.
        handle: Handle,
        /// The status line.
        line: StatusLine,
    },
    /// `-ERR` to a command, with its response code if any.
    Err {
        /// The command.
        handle: Handle,
        /// The status line.
        line: StatusLine,
    },
    /// The reply to `STAT`.
    Stat {
        /// The command.
        handle: Handle,
        /// Count and size.
        stat: Stat,
    },
    /// A scan listing: an item of a multi-line `LIST`, or the reply to `LIST n`.
    ListingItem {
        /// The command.
        handle: Handle,
        /// The item.
        item: ScanListing,
    },
    /// A unique-id listing: an item of a multi-line `UIDL`, or the reply to `UIDL n`.
    UidlItem {
        /// The command.
        handle: Handle,
        /// The item.
        item: UidListing,
    },
    /// A capability line of the `CAPA` reply.
    Capability {
        /// The command.
        handle: Handle,
        /// The capability.
        capability: Capability,
    },
    /// A line of the multi-line `LANG` reply, or of the mechanism list of a bare `AUTH`.
    Line {
        /// The command.
        handle: Handle,
        /// The line, dot-stuffing undone, without CRLF.
        line: Vec<u8>,
    },
    /// Message octets of a `RETR` or `TOP` reply, dot-unstuffed, in order. Borrowed from the
    /// machine's input buffer: use it before the next call.
    BodyChunk {
        /// The command.
        handle: Handle,
        /// The octets.
        bytes: &'a [u8],
    },
    /// The server accepted `STLS`: start the TLS handshake now, then call
    /// [`Client::tls_established`].
    StlsReady {
        /// The command.
        handle: Handle,
    },
    /// The command is complete; nothing more will carry its handle.
    Done {
        /// The command.
        handle: Handle,
    },
    /// The session is over: after `QUIT`, or with the error that ended it. Close the
    /// connection.
    Closed {
        /// `None` for an orderly end.
        error: Option<ClientError>,
    },
}

#[derive(Debug)]
struct InFlight {
    handle: Handle,
    cmd: Command,
    /// A multi-line reply whose items are unknown to this crate (`Unknown` commands can ask).
    multiline: bool,
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::User(_) => "USER",
        Command::Pass(_) => "PASS",
        Command::Apop { .. } => "APOP",
        Command::Quit => "QUIT",
        Command::Stat => "STAT",
        Command::List(_) => "LIST",
        Command::Retr(_) => "RETR",
        Command::Dele(_) => "DELE",
        Command::Noop => "NOOP",
        Command::Rset => "RSET",
        Command::Top { .. } => "TOP",
        Command::Uidl(_) => "UIDL",
        Command::Capa => "CAPA",
        Command::Stls => "STLS",
        Command::Auth(_) => "AUTH",
        Command::Utf8 => "UTF8",
        Command::Lang(_) => "LANG",
        Command::Unknown { .. } => "this command",
    }
}

/// Where a body step's output is, without borrowing the input.
enum BodyOut {
    Range(usize, usize),
    Cr,
    End,
    NeedMore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// The next line is a status line (or a SASL continuation for `AUTH`).
    Status,
    /// Inside a multi-line listing.
    Listing,
    /// Inside a multi-line body.
    Body,
}

/// The client state machine. See the module docs.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    state: ClientState,
    reading: Reading,
    framer: LineFramer,
    body: DotUnstuffer,
    input: Vec<u8>,
    pos: usize,
    scratch: Vec<u8>,
    /// Sent, awaiting a reply; the head is being answered.
    in_flight: VecDeque<InFlight>,
    /// Enqueued, not sent yet (pipelining window, or waiting behind an exclusive command).
    queued: VecDeque<InFlight>,
    out: Vec<u8>,
    events: VecDeque<Event<'static>>,
    next_handle: u64,
    timestamp: Option<Timestamp>,
    capabilities: Option<Vec<Capability>>,
    /// Capabilities being collected from a `CAPA` reply.
    collecting: Vec<Capability>,
    capa_required: bool,
    user_accepted: bool,
    sasl: Option<ClientExchange>,
    deadline: Option<Instant>,
    /// The server closed the connection; reported once the buffered input is processed.
    eof: bool,
}

impl Client {
    /// A client waiting for the greeting.
    pub fn new(config: ClientConfig, now: Instant) -> Self {
        let framer = LineFramer::new(config.limits.status);
        let body = DotUnstuffer::with_line_limit(config.limits.body);
        let deadline = config.response_timeout.map(|t| now + t);
        Client {
            config,
            state: ClientState::Greeting,
            reading: Reading::Status,
            framer,
            body,
            input: Vec::new(),
            pos: 0,
            scratch: Vec::new(),
            in_flight: VecDeque::new(),
            queued: VecDeque::new(),
            out: Vec::new(),
            events: VecDeque::new(),
            next_handle: 0,
            timestamp: None,
            capabilities: None,
            collecting: Vec::new(),
            capa_required: false,
            user_accepted: false,
            sasl: None,
            deadline,
            eof: false,
        }
    }

    /// The session state.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The APOP timestamp of the greeting, if any.
    pub fn apop_timestamp(&self) -> Option<&Timestamp> {
        self.timestamp.as_ref()
    }

    /// The capabilities of the last complete `CAPA` reply; `None` before one (and after
    /// `STLS`, which discards them, RFC 2595 §4).
    pub fn capabilities(&self) -> Option<&[Capability]> {
        self.capabilities.as_deref()
    }

    /// Whether the last `CAPA` advertised `cap` (compared by kind, ignoring parameters).
    pub fn has_capability(&self, cap: &Capability) -> bool {
        self.capabilities
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|c| std::mem::discriminant(c) == std::mem::discriminant(cap))
    }

    /// The SASL mechanisms of the last `CAPA`.
    pub fn sasl_mechanisms(&self) -> Vec<Mechanism> {
        self.capabilities
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter_map(|c| match c {
                Capability::Sasl(m) => Some(m.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Whether commands may be pipelined (the last `CAPA` said `PIPELINING`).
    pub fn pipelining(&self) -> bool {
        self.has_capability(&Capability::Pipelining)
    }

    /// Octets held in the machine's buffers: input not yet turned into events, a partial
    /// line, and output not yet taken. After [`Client::poll_event`] has returned `None`, this
    /// is bounded by the line limits plus the pending commands.
    pub fn buffered(&self) -> usize {
        (self.input.len() - self.pos) + self.framer.buffered() + self.out.len()
    }

    /// Number of commands enqueued or in flight.
    pub fn pending(&self) -> usize {
        self.in_flight.len() + self.queued.len()
    }

    /// Most commands in flight at once: [`ClientConfig::pipeline_window`] when the server
    /// advertised `PIPELINING`, else 1. Batching callers (a driver's `fetch_many`) keep this
    /// many commands enqueued, no more.
    pub fn pipeline_window(&self) -> usize {
        if self.pipelining() {
            self.config.pipeline_window.max(1)
        } else {
            1
        }
    }

    // -----------------------------------------------------------------------------------------
    // Commands

    /// Enqueues any command, after checking that it is legal in the current state.
    pub fn send(&mut self, cmd: Command) -> Result<Handle, ClientError> {
        self.check_legal(&cmd)?;
        Ok(self.enqueue(cmd, false))
    }

    /// Enqueues an extension command whose successful reply is multi-line; its lines come as
    /// [`Event::Line`].
    pub fn send_multiline(&mut self, cmd: Command) -> Result<Handle, ClientError> {
        self.check_legal(&cmd)?;
        Ok(self.enqueue(cmd, true))
    }

    fn enqueue(&mut self, cmd: Command, multiline: bool) -> Handle {
        let handle = Handle(self.next_handle);
        self.next_handle += 1;
        let multiline = multiline || cmd.expects_multiline();
        self.queued.push_back(InFlight {
            handle,
            cmd,
            multiline,
        });
        handle
    }

    /// Whether `cmd` is exclusive: sent alone, and nothing enqueued behind it until it is done.
    fn exclusive(cmd: &Command) -> bool {
        matches!(
            cmd,
            Command::User(_)
                | Command::Pass(_)
                | Command::Apop { .. }
                | Command::Auth(Some(_))
                | Command::Stls
                | Command::Quit
                | Command::Utf8
        )
    }

    fn check_legal(&self, cmd: &Command) -> Result<(), ClientError> {
        let illegal = || Err(ClientError::IllegalInState(command_name(cmd), self.state));
        if self.state == ClientState::Closed {
            return Err(ClientError::Closed);
        }
        if self
            .queued
            .iter()
            .chain(self.in_flight.iter())
            .any(|f| Self::exclusive(&f.cmd))
        {
            return Err(ClientError::Busy);
        }
        if Self::exclusive(cmd) && self.pending() > 0 {
            return Err(ClientError::Busy);
        }
        if self.capa_required && !matches!(cmd, Command::Capa | Command::Quit) {
            return Err(ClientError::CapaRequired);
        }
        let auth_state = matches!(
            self.state,
            ClientState::Greeting | ClientState::Authorization
        );
        match cmd {
            Command::Quit | Command::Capa | Command::Unknown { .. } | Command::Lang(_)
                if auth_state || self.state == ClientState::Transaction =>
            {
                Ok(())
            }
            Command::User(_) | Command::Apop { .. } | Command::Auth(_) | Command::Utf8
                if auth_state =>
            {
                Ok(())
            }
            Command::Pass(_) if auth_state && self.user_accepted => Ok(()),
            Command::Stls if auth_state => Ok(()),
            Command::Stat
            | Command::List(_)
            | Command::Retr(_)
            | Command::Dele(_)
            | Command::Noop
            | Command::Rset
            | Command::Top { .. }
            | Command::Uidl(_)
                if self.state == ClientState::Transaction =>
            {
                Ok(())
            }
            _ => illegal(),
        }
    }

    /// `USER name`.
    pub fn user(&mut self, name: Atom) -> Result<Handle, ClientError> {
        self.send(Command::User(name))
    }

    /// `PASS password` (legal only right after a successful `USER`).
    pub fn pass(&mut self, password: Secret<Text>) -> Result<Handle, ClientError> {
        self.send(Command::Pass(password))
    }

    /// `APOP name digest`, the digest computed from the greeting's timestamp and `secret`.
    pub fn apop(&mut self, name: Atom, secret: &[u8]) -> Result<Handle, ClientError> {
        let ts = self
            .timestamp
            .as_ref()
            .ok_or(ClientError::NoApopTimestamp)?;
        let digest = crate::sasl::apop_digest(ts, secret);
        self.send(Command::Apop {
            name,
            digest: Secret::new(digest),
        })
    }

    /// `AUTH` with a SASL mechanism, run to completion by the machine. `nonce` is fresh random
    /// printable data from the caller (used by SCRAM). The initial response is sent inline
    /// unless that would make the line longer than the limit (RFC 5034 §4).
    ///
    /// The session reaches TRANSACTION only through a complete exchange: for SCRAM-SHA-256
    /// that includes a server signature that verifies (mutual authentication, RFC 5802 §5).
    /// A challenge the mechanism refuses, or `+OK` too early, ends the session with
    /// [`ClientError::Sasl`], sending nothing more.
    pub fn auth(&mut self, creds: ClientCredentials, nonce: &[u8]) -> Result<Handle, ClientError> {
        let mut exchange = ClientExchange::new(creds, nonce);
        let mechanism = exchange.mechanism();
        let mut cmd = Command::Auth(Some(AuthCommand {
            mechanism: mechanism.clone(),
            initial_response: None,
        }));
        self.check_legal(&cmd)?;
        if let Some(ir) = exchange.initial_response() {
            let with_ir = Command::Auth(Some(AuthCommand {
                mechanism,
                initial_response: Some(Secret::new(ir)),
            }));
            if with_ir.to_bytes().len() <= self.config.max_command_line {
                cmd = with_ir;
            } else {
                // Not sent inline: the exchange answers the empty challenge with it.
                exchange.defer_initial_response();
            }
        }
        self.sasl = Some(exchange);
        Ok(self.enqueue(cmd, false))
    }

    /// `STAT`.
    pub fn stat(&mut self) -> Result<Handle, ClientError> {
        self.send(Command::Stat)
    }

    /// `LIST [msg]`.
    pub fn list(&mut self, msg: Option<MsgNum>) -> Result<Handle, ClientError> {
        self.send(Command::List(msg))
    }

    /// `UIDL [msg]`.
    pub fn uidl(&mut self, msg: Option<MsgNum>) -> Result<Handle, ClientError> {
        self.send(Command::Uidl(msg))
    }

    /// `RETR msg`.
    pub fn retr(&mut self, msg: MsgNum) -> Result<Handle, ClientError> {
        self.send(Command::Retr(msg))
    }

    /// `TOP msg lines`.
    pub fn top(&mut self, msg: MsgNum, lines: u64) -> Result<Handle, ClientError> {
        self.send(Command::Top { msg, lines })
    }

    /// `DELE msg`.
    pub fn dele(&mut self, msg: MsgNum) -> Result<Handle, ClientError> {
        self.send(Command::Dele(msg))
    }

    /// `NOOP`.
    pub fn noop(&mut self) -> Result<Handle, ClientError> {
        self.send(Command::Noop)
    }

    /// `RSET`.
    pub fn rset(&mut self) -> Result<Handle, ClientError> {
        self.send(Command::Rset)
    }

    /// `CAPA`.
    pub fn capa(&mut self) -> Result<Handle, ClientError> {
        self.send(Command::Capa)
    }

    /// `STLS`.
    pub fn stls(&mut self) -> Result<Handle, ClientError> {
        self.send(Command::Stls)
    }

    /// `QUIT`.
    pub fn quit(&mut self) -> Result<Handle, ClientError> {
        self.send(Command::Quit)
    }

    // -----------------------------------------------------------------------------------------
    // I/O

    /// Octets to send: appends them to `out`. Moves enqueued commands into flight as the
    /// pipelining window allows; `now` starts the reply deadline of a command sent while
    /// nothing was in flight.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) {
        if self.in_flight.is_empty() && self.state != ClientState::Greeting {
            self.touch(now);
        }
        if matches!(
            self.state,
            ClientState::Greeting | ClientState::TlsHandshake
        ) {
            // Nothing may be sent before the greeting, nor during the handshake (RFC 2595 §4).
        } else {
            while let Some(next) = self.queued.front() {
                let blocked = self.in_flight.len() >= self.pipeline_window()
                    || (Self::exclusive(&next.cmd) && !self.in_flight.is_empty())
                    || self
                        .in_flight
                        .back()
                        .is_some_and(|f| Self::exclusive(&f.cmd));
                if blocked {
                    break;
                }
                let Some(f) = self.queued.pop_front() else {
                    break;
                };
                f.cmd.encode(&mut self.out);
                if matches!(f.cmd, Command::Quit) && self.state == ClientState::Transaction {
                    // The server enters UPDATE on reading QUIT (RFC 1939 §6).
                    self.state = ClientState::Update;
                }
                self.in_flight.push_back(f);
            }
        }
        out.append(&mut self.out);
    }

    /// Whether there are octets waiting in [`Client::poll_transmit`] (or commands that could be
    /// sent now).
    pub fn wants_transmit(&self) -> bool {
        !self.out.is_empty()
            || (!self.queued.is_empty()
                && !matches!(
                    self.state,
                    ClientState::Greeting | ClientState::TlsHandshake
                )
                && self.in_flight.len() < self.pipeline_window()
                && !self
                    .in_flight
                    .back()
                    .is_some_and(|f| Self::exclusive(&f.cmd)))
    }

    /// The deadline at which [`Client::handle_timeout`] must be called, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let waiting = self.state == ClientState::Greeting || !self.in_flight.is_empty();
        if waiting && self.state != ClientState::Closed {
            self.deadline
        } else {
            None
        }
    }

    /// Advances time: fails the session if a reply is overdue.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|d| now >= d) {
            self.fail(ClientError::Timeout);
        }
    }

    fn touch(&mut self, now: Instant) {
        self.deadline = self.config.response_timeout.map(|t| now + t);
    }

    /// Octets from the server. Events become available from [`Client::poll_event`].
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        if self.state == ClientState::Closed {
            return;
        }
        if self.pos == self.input.len() {
            self.input.clear();
            self.pos = 0;
        }
        self.input.extend_from_slice(data);
        self.touch(now);
    }

    /// The server closed the connection.
    pub fn handle_eof(&mut self, _now: Instant) {
        if self.state == ClientState::Closed {
            return;
        }
        // Whatever is still buffered is processed by poll_event first; the EOF is recorded.
        self.eof = true;
    }

    /// The connection failed under the session (a read or write error, a reset): the session
    /// is over. Commands issued later fail at once with [`ClientError::Closed`] instead of
    /// waiting behind replies that will never come.
    pub fn connection_lost(&mut self) {
        self.fail(ClientError::Closed);
    }

    /// The TLS handshake after `STLS` completed: the session goes on, clean (RFC 2595 §4).
    /// `CAPA` must be issued again before anything else.
    pub fn tls_established(&mut self, now: Instant) {
        if self.state == ClientState::TlsHandshake {
            self.state = ClientState::Authorization;
            self.capabilities = None;
            self.capa_required = true;
            self.input.clear();
            self.pos = 0;
            self.framer.reset();
            self.touch(now);
        }
    }

    fn fail(&mut self, error: ClientError) {
        if self.state != ClientState::Closed {
            self.state = ClientState::Closed;
            self.input.clear();
            self.pos = 0;
            self.in_flight.clear();
            self.queued.clear();
            self.sasl = None;
            self.events.push_back(Event::Closed { error: Some(error) });
        }
    }

    fn close_ok(&mut self) {
        self.state = ClientState::Closed;
        self.events.push_back(Event::Closed { error: None });
    }

    /// The next event, if any. Body chunks borrow the machine's input buffer.
    pub fn poll_event(&mut self) -> Option<Event<'_>> {
        loop {
            if let Some(ev) = self.events.pop_front() {
                return Some(ev);
            }
            if self.state == ClientState::Closed {
                return None;
            }
            if self.pos >= self.input.len() {
                if self.eof {
                    self.eof = false;
                    let mid_reply = self.state == ClientState::Greeting
                        || !self.in_flight.is_empty()
                        || self.framer.has_partial();
                    if mid_reply
                        && !(self.state == ClientState::Update && self.in_flight.is_empty())
                    {
                        self.fail(ClientError::UnexpectedEof);
                    } else {
                        self.close_ok();
                    }
                    continue;
                }
                return None;
            }
            if self.state == ClientState::TlsHandshake {
                let n = self.input.len() - self.pos;
                self.fail(ClientError::StlsInjection(n));
                continue;
            }
            if self.reading == Reading::Body {
                let Some(head) = self.in_flight.front() else {
                    self.fail(ClientError::Unsolicited);
                    continue;
                };
                let handle = head.handle;
                // Body data is a slice of the input (or the one held-back CR): remember where,
                // so the borrow is taken only when returning it.
                let input = &self.input[self.pos..];
                let step = match self.body.next(input) {
                    Err(e) => Err(e),
                    Ok((used, found)) => Ok((
                        used,
                        match found {
                            Unstuffed::Data(d) => {
                                let off =
                                    (d.as_ptr() as usize).wrapping_sub(input.as_ptr() as usize);
                                if off
                                    .checked_add(d.len())
                                    .is_some_and(|end| end <= input.len())
                                {
                                    BodyOut::Range(off, off + d.len())
                                } else {
                                    BodyOut::Cr
                                }
                            }
                            Unstuffed::End => BodyOut::End,
                            Unstuffed::NeedMore => BodyOut::NeedMore,
                        },
                    )),
                };
                let base = self.pos;
                match step {
                    Err(e) => {
                        self.fail(ClientError::LineTooLong(e.limit));
                    }
                    Ok((used, BodyOut::Range(a, b))) => {
                        self.pos += used;
                        if a < b {
                            return Some(Event::BodyChunk {
                                handle,
                                bytes: &self.input[base + a..base + b],
                            });
                        }
                    }
                    Ok((used, BodyOut::Cr)) => {
                        self.pos += used;
                        return Some(Event::BodyChunk {
                            handle,
                            bytes: b"\r",
                        });
                    }
                    Ok((used, BodyOut::End)) => {
                        self.pos += used;
                        self.body.reset();
                        self.reading = Reading::Status;
                        self.finish_head();
                    }
                    Ok((used, BodyOut::NeedMore)) => self.pos += used,
                }
                continue;
            }
            let limit = self.line_limit();
            self.framer.set_limit(limit);
            let (used, framed) = self.framer.next_line(&self.input[self.pos..]);
            let line = match framed {
                Framed::Line(l) => {
                    self.scratch.clear();
                    self.scratch.extend_from_slice(l);
                    true
                }
                Framed::TooLong { .. } => false,
                Framed::NeedMore => {
                    self.pos += used;
                    continue;
                }
            };
            self.pos += used;
            if !line {
                self.fail(ClientError::LineTooLong(limit));
                continue;
            }
            let line = std::mem::take(&mut self.scratch);
            self.handle_line(&line);
            self.scratch = line;
        }
    }

    fn line_limit(&self) -> usize {
        match (self.reading, self.in_flight.front().map(|f| &f.cmd)) {
            (Reading::Listing, _) => self.config.limits.listing,
            (_, Some(Command::Auth(Some(_)))) => self.config.limits.sasl,
            _ => self.config.limits.status,
        }
    }

    fn handle_line(&mut self, raw: &[u8]) {
        let content = match decode::line(raw) {
            Ok((_, c)) => c,
            Err(_) => return,
        };
        if self.state == ClientState::Greeting {
            match decode::parse_greeting(content) {
                Ok(g) if g.line().is_ok() => {
                    self.timestamp = g.timestamp();
                    self.state = ClientState::Authorization;
                    self.events.push_back(Event::Greeting(g));
                }
                Ok(g) => {
                    self.events.push_back(Event::Greeting(g));
                    self.close_ok();
                }
                Err(e) => self.fail(ClientError::InvalidReply(format!("greeting: {e}"))),
            }
            return;
        }
        let Some(head) = self.in_flight.front() else {
            self.fail(ClientError::Unsolicited);
            return;
        };
        let handle = head.handle;
        if self.reading == Reading::Listing {
            match decode::classify_listing_line(content) {
                ListingLine::End => {
                    self.reading = Reading::Status;
                    if matches!(head.cmd, Command::Capa) {
                        self.capabilities = Some(std::mem::take(&mut self.collecting));
                        self.capa_required = false;
                    }
                    self.finish_head();
                }
                ListingLine::Data(d) => self.listing_item(handle, d),
            }
            return;
        }
        // A status line, or a SASL continuation during AUTH.
        if matches!(head.cmd, Command::Auth(Some(_))) && decode::is_continuation(content) {
            self.sasl_challenge(content);
            return;
        }
        let line = match decode::parse_status_line(content) {
            Ok(l) => l,
            Err(e) => {
                self.fail(ClientError::InvalidReply(format!("status line: {e}")));
                return;
            }
        };
        if !line.is_ok() {
            self.events.push_back(Event::Err { handle, line });
            self.after_err();
            self.finish_head();
            return;
        }
        self.after_ok(handle, line);
    }

    fn listing_item(&mut self, handle: Handle, d: &[u8]) {
        let Some(head) = self.in_flight.front() else {
            return;
        };
        let ev = match &head.cmd {
            Command::List(None) => match decode::parse_scan_listing(d) {
                Ok(item) => Event::ListingItem { handle, item },
                Err(e) => return self.fail(ClientError::InvalidReply(format!("LIST item: {e}"))),
            },
            Command::Uidl(None) => match decode::parse_uid_listing(d) {
                Ok(item) => Event::UidlItem { handle, item },
                Err(e) => return self.fail(ClientError::InvalidReply(format!("UIDL item: {e}"))),
            },
            Command::Capa => match decode::parse_capability(d) {
                Ok(capability) => {
                    self.collecting.push(capability.clone());
                    Event::Capability { handle, capability }
                }
                // A line without even a tag (blank): skipped, never failing the list.
                Err(_) => return,
            },
            _ => Event::Line {
                handle,
                line: d.to_vec(),
            },
        };
        self.events.push_back(ev);
    }

    fn after_ok(&mut self, handle: Handle, line: StatusLine) {
        let Some(head) = self.in_flight.front() else {
            return;
        };
        let multiline = head.multiline;
        let cmd_kind = std::mem::discriminant(&head.cmd);
        let single_item = match &head.cmd {
            Command::Stat => Some(
                decode::parse_stat(line.text().as_bytes()).map(|stat| Event::Stat { handle, stat }),
            ),
            Command::List(Some(_)) => Some(
                decode::parse_scan_listing(line.text().as_bytes())
                    .map(|item| Event::ListingItem { handle, item }),
            ),
            Command::Uidl(Some(_)) => Some(
                decode::parse_uid_listing(line.text().as_bytes())
                    .map(|item| Event::UidlItem { handle, item }),
            ),
            _ => None,
        };
        match &head.cmd {
            Command::User(_) => self.user_accepted = true,
            Command::Pass(_) | Command::Apop { .. } => self.logged_in(),
            Command::Auth(Some(_)) => {
                if let Some(Err(e)) = self.sasl.take().map(|s| s.finish()) {
                    self.fail(ClientError::Sasl(e.to_string()));
                    return;
                }
                self.logged_in();
            }
            Command::Capa => self.collecting.clear(),
            _ => {}
        }
        self.events.push_back(Event::Ok { handle, line });
        match single_item {
            Some(Ok(ev)) => self.events.push_back(ev),
            Some(Err(e)) => {
                return self.fail(ClientError::InvalidReply(format!("reply: {e}")));
            }
            None => {}
        }
        if cmd_kind == std::mem::discriminant(&Command::Stls) {
            self.state = ClientState::TlsHandshake;
            self.in_flight.pop_front();
            self.events.push_back(Event::StlsReady { handle });
            self.events.push_back(Event::Done { handle });
            // Whatever follows the +OK line in this input is injected (CVE-2021-22947).
            return;
        }
        if multiline {
            let body = matches!(
                self.in_flight.front().map(|f| &f.cmd),
                Some(Command::Retr(_) | Command::Top { .. })
            );
            self.reading = if body {
                Reading::Body
            } else {
                Reading::Listing
            };
            return;
        }
        if cmd_kind == std::mem::discriminant(&Command::Quit) {
            self.in_flight.pop_front();
            self.events.push_back(Event::Done { handle });
            self.close_ok();
            return;
        }
        self.finish_head();
    }

    fn logged_in(&mut self) {
        self.state = ClientState::Transaction;
        self.user_accepted = false;
        // RFC 2449 §5: capabilities may differ after login; keep them until a new CAPA.
    }

    fn after_err(&mut self) {
        let Some(head) = self.in_flight.front() else {
            return;
        };
        match head.cmd {
            Command::Pass(_) | Command::User(_) => self.user_accepted = false,
            Command::Auth(_) => self.sasl = None,
            Command::Capa => self.collecting.clear(),
            _ => {}
        }
        if matches!(head.cmd, Command::Quit) {
            // -ERR to QUIT (some deletions failed): the session is over all the same.
            let handle = head.handle;
            self.in_flight.pop_front();
            self.events.push_back(Event::Done { handle });
            self.close_ok();
        }
    }

    fn finish_head(&mut self) {
        if let Some(f) = self.in_flight.pop_front() {
            self.events.push_back(Event::Done { handle: f.handle });
        }
    }

    fn sasl_challenge(&mut self, content: &[u8]) {
        let Some(ex) = self.sasl.as_mut() else {
            // An AUTH sent with `send`, whose exchange the caller runs elsewhere: nothing here
            // can answer, so cancel (RFC 5034 §4); the server's -ERR completes the command.
            SaslResponse::Cancel.encode(&mut self.out);
            return;
        };
        let response = match decode::parse_continuation(content) {
            Ok(ch) => ex.step(ch.0.expose_secret()).map_err(|e| e.to_string()),
            Err(e) => Err(format!("undecodable challenge: {e}")),
        };
        match response {
            Ok(data) => SaslResponse::Data(Secret::new(data)).encode(&mut self.out),
            // The server sent what the mechanism refuses: a SCRAM server signature that does
            // not verify (the server does not know the password: an impostor), an `e=` error,
            // a malformed or extra challenge. The session ends here, with the reason, and
            // nothing more is sent: no `*` (RFC 5034 §4 lets a client drop the connection
            // instead), no QUIT (in AUTHORIZATION it commits nothing), and above all no
            // second login that would hand a weaker mechanism's secret to that server.
            Err(reason) => self.fail(ClientError::Sasl(reason)),
        }
    }
}
