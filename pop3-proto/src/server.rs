//! The sans-IO server state machine.
//!
//! [`Server`] takes the client's bytes ([`Server::handle_input`]), the end of the stream
//! ([`Server::handle_eof`]) and the time ([`Server::handle_timeout`]); it gives the bytes to send
//! ([`Server::poll_transmit`]), events ([`Server::poll_event`]) and its next deadline
//! ([`Server::poll_timeout`]).
//!
//! The machine answers by itself everything that needs no maildrop: the greeting, `CAPA` (built
//! from [`ServerConfig`]), `USER`, `NOOP`, `QUIT` in AUTHORIZATION, `STLS`, the SASL exchange,
//! and `-ERR` for unknown commands, commands illegal in the current state, malformed and
//! over-long lines. It closes after a number of consecutive errors, and its autologout timer
//! (RFC 1939 §3) closes an idle session without entering UPDATE.
//!
//! What needs the application comes as events: [`ServerEvent::Login`] (check credentials and
//! open the maildrop, then [`Server::accept_login`] or [`Server::reject_login`]),
//! [`ServerEvent::SaslCheck`] (answer with [`Server::sasl_answer`]) and
//! [`ServerEvent::Request`] (a TRANSACTION command, answered with [`Server::reply`],
//! [`Server::reply_stat`], ... or a multi-line reply: [`Server::begin_multiline`], items or
//! [`Server::write_body`] under backpressure, [`Server::end_multiline`]). One command is
//! handled at a time, in order: a pipelined command's reply never overtakes the terminating line
//! of the previous one.
//!
//! Drain order: after any input or reply, call [`Server::poll_event`] until `None`, then
//! [`Server::poll_transmit`], then [`Server::poll_timeout`]. Read more input only while
//! [`Server::wants_input`] says so; close the connection when [`Server::is_closed`] and the
//! output is flushed.
//!
//! ```
//! use std::time::Instant;
//! use pop3_proto::server::{Server, ServerConfig, ServerEvent, LoginRequest, Request};
//! use pop3_proto::Stat;
//!
//! let now = Instant::now();
//! let mut config = ServerConfig::default();
//! config.rules.plaintext_auth = true; // this example runs without TLS
//! let mut server = Server::new(config, now);
//! let mut out = Vec::new();
//! server.poll_transmit(now, &mut out);
//! assert!(out.starts_with(b"+OK"));
//!
//! server.handle_input(b"USER alice\r\nPASS secret\r\nSTAT\r\n", now);
//! match server.poll_event() {
//!     Some(ServerEvent::Login(LoginRequest::Pass { user, .. })) => {
//!         assert_eq!(user.as_bytes(), b"alice");
//!         server.accept_login().unwrap(); // credentials checked, maildrop opened
//!     }
//!     other => panic!("{other:?}"),
//! }
//! assert_eq!(server.poll_event(), Some(ServerEvent::Request(Request::Stat)));
//! server.reply_stat(Stat { count: 2, size: 320 }).unwrap();
//! out.clear();
//! server.poll_transmit(now, &mut out);
//! assert_eq!(out, b"+OK\r\n+OK Logged in.\r\n+OK 2 320\r\n");
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::body::DotStuffer;
use crate::decode;
use crate::encode::{Encode, TERMINATOR, encode_listing_line};
use crate::framing::{Framed, LineFramer, LineLimits};
use crate::sasl::{
    CredentialAnswer, CredentialRequest, Identity, ServerExchange, ServerParams, ServerStep,
};
use crate::types::*;

/// Server configuration, per connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Line limits for what the client sends.
    pub limits: LineLimits,
    /// The greeting text (the APOP timestamp is appended when set).
    pub greeting: Text,
    /// The APOP timestamp for this connection: fresh and unguessable for every greeting
    /// (RFC 1939 §7). `None` disables APOP.
    pub apop_timestamp: Option<Timestamp>,
    /// Fresh random printable octets for this connection's SASL exchanges (CRAM-MD5
    /// challenge, SCRAM server nonce); each exchange appends its own counter, so no two
    /// exchanges of a connection share a nonce. Empty (the default): CRAM-MD5 and SCRAM,
    /// which need one, are not offered.
    pub sasl_nonce: Vec<u8>,
    /// The server's host name, for CRAM-MD5 challenges and OAUTHBEARER checks.
    pub hostname: String,
    /// The port the client connected to, for OAUTHBEARER checks.
    pub port: Option<u16>,
    /// A server-wide secret, stable across connections, from which fake SCRAM salts for
    /// unknown users are derived (so repeated attempts cannot tell unknown names apart).
    pub scram_fake_key: Option<Secret<Vec<u8>>>,
    /// Timeouts, error and failure limits, output buffering and the plaintext policy: the
    /// session rules an operator sets (server-core's `Policy` embeds the same value).
    pub rules: SessionRules,
    /// The connection is already encrypted (implicit TLS, RFC 8314).
    pub tls_active: bool,
    /// `STLS` is offered (a certificate is configured).
    pub stls_offered: bool,
    /// `USER`/`PASS` are offered at all.
    pub user_pass: bool,
    /// The SASL mechanisms offered (before the plaintext policy filters them).
    pub sasl_mechanisms: Vec<Mechanism>,
    /// `PIPELINING` is advertised.
    pub pipelining: bool,
    /// `LOGIN-DELAY`, advertised before login (the largest value, RFC 2449 §6.5), and in
    /// TRANSACTION without `USER` unless [`Server::set_user_policy`] gave the user's own.
    pub login_delay: Option<Capability>,
    /// `EXPIRE`, advertised before login (the smallest value, RFC 2449 §6.7), and in
    /// TRANSACTION without `USER` unless [`Server::set_user_policy`] gave the user's own.
    pub expire: Option<Capability>,
    /// `IMPLEMENTATION` text, advertised in TRANSACTION only.
    pub implementation: Option<Text>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: LineLimits::DEFAULT,
            greeting: Text::new(&b"POP3 server ready"[..]).unwrap_or_default(),
            apop_timestamp: None,
            sasl_nonce: Vec::new(),
            hostname: "localhost".into(),
            port: None,
            scram_fake_key: None,
            rules: SessionRules::default(),
            tls_active: false,
            stls_offered: false,
            user_pass: true,
            sasl_mechanisms: ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"]
                .iter()
                .filter_map(|m| Mechanism::new(*m).ok())
                .collect(),
            pipelining: true,
            login_delay: None,
            expire: None,
            implementation: None,
        }
    }
}

/// The rules of a session that an operator chooses: timeouts, error and failure limits,
/// output buffering, and whether passwords may be sent without TLS. One home for them:
/// [`ServerConfig::rules`] here, and the server core's `Policy` embeds the same struct.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionRules {
    /// Autologout: an idle session is closed, without UPDATE, after this long (RFC 1939 §3:
    /// at least 10 minutes).
    pub idle_timeout: Duration,
    /// A line, once begun, must be complete within this while the server waits for it: a
    /// client trickling a command (or an endless line) a byte at a time is closed
    /// ([`CloseReason::CommandTimeout`]) instead of holding the connection for ever, which the
    /// autologout timer alone would allow, since every byte is activity.
    pub command_timeout: Duration,
    /// The session is closed after this many consecutive errors.
    pub max_consecutive_errors: u32,
    /// How long a failed authentication's `-ERR` is held back.
    pub auth_failure_delay: Duration,
    /// The session is closed after this many failed authentications.
    pub max_auth_failures: u32,
    /// Output buffered beyond this is refused by [`Server::write_body`] (backpressure), and no
    /// further command is read.
    pub high_water: usize,
    /// Plaintext passwords (USER/PASS, PLAIN, LOGIN, and bearer tokens) are accepted without
    /// TLS. Off by default (RFC 2595 §2.3, RFC 5034 §4).
    pub plaintext_auth: bool,
    /// A session that has not logged in this long after it began (60 s by default) is closed
    /// ([`CloseReason::LoginTimeout`]), without a reply, whatever it is doing: a client that
    /// connects and sends nothing, or keeps failing slowly, or trickles a SASL exchange, holds
    /// its connection no longer than this, which the autologout timer alone would allow for
    /// ten minutes (RFC 1939 §3 sets that one for logged-in sessions). It stops at login.
    pub login_timeout: Duration,
}

impl Default for SessionRules {
    fn default() -> Self {
        SessionRules {
            idle_timeout: Duration::from_secs(600),
            command_timeout: Duration::from_secs(60),
            max_consecutive_errors: 10,
            auth_failure_delay: Duration::from_secs(2),
            max_auth_failures: 3,
            high_water: 64 * 1024,
            plaintext_auth: false,
            login_timeout: Duration::from_secs(60),
        }
    }
}

/// The POP3 session state (RFC 1939 §3), as the server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerState {
    /// AUTHORIZATION.
    Authorization,
    /// `STLS` accepted; waiting for [`Server::tls_established`].
    TlsHandshake,
    /// TRANSACTION.
    Transaction,
    /// `QUIT` from TRANSACTION: the application commits the deletions.
    Update,
    /// The session is over.
    Closed,
}

/// Credentials to check (and, if good, the maildrop to open and lock).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginRequest {
    /// `USER` then `PASS`.
    Pass {
        /// The name given to `USER`.
        user: Atom,
        /// The password, spaces included.
        password: Secret<Text>,
    },
    /// `APOP name digest`: check `digest` = MD5(timestamp ‖ secret).
    Apop {
        /// The name.
        user: Atom,
        /// This connection's timestamp.
        timestamp: Timestamp,
        /// The client's digest.
        digest: Secret<ApopDigest>,
    },
    /// A SASL exchange succeeded (its credentials were checked through
    /// [`ServerEvent::SaslCheck`]): open the maildrop of `identity`.
    Sasl {
        /// The mechanism used.
        mechanism: Mechanism,
        /// Who authenticated, and as whom.
        identity: Identity,
    },
}

/// A TRANSACTION command for the application to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// `STAT`: answer with [`Server::reply_stat`].
    Stat,
    /// `LIST [msg]`: [`Server::reply_scan`] for one message, or a multi-line reply of
    /// [`Server::write_scan`] items.
    List(Option<MsgNum>),
    /// `UIDL [msg]`: [`Server::reply_uid`], or a multi-line reply of [`Server::write_uid`].
    Uidl(Option<MsgNum>),
    /// `RETR msg`: a multi-line reply of [`Server::write_body`].
    Retr(MsgNum),
    /// `TOP msg lines`: a multi-line reply of [`Server::write_body`] with the headers, the
    /// blank line and `lines` body lines.
    Top {
        /// The message.
        msg: MsgNum,
        /// Body lines wanted.
        lines: u64,
    },
    /// `DELE msg`: mark it.
    Dele(MsgNum),
    /// `RSET`: unmark all.
    Rset,
    /// `QUIT` from TRANSACTION: commit the deletions (UPDATE), then reply; the session then
    /// closes.
    Quit,
}

/// Why the session closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// `QUIT`.
    Quit,
    /// The client closed the connection.
    Eof,
    /// The autologout timer expired.
    Timeout,
    /// A line took longer than [`SessionRules::command_timeout`] to arrive.
    CommandTimeout,
    /// Too many consecutive errors.
    TooManyErrors,
    /// Too many failed authentications.
    TooManyAuthFailures,
    /// No login within [`SessionRules::login_timeout`].
    LoginTimeout,
    /// [`Server::close`] was called (e.g. shutdown).
    Shutdown,
}

/// What the server machine reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// Check these credentials.
    Login(LoginRequest),
    /// A SASL mechanism needs a credential check; answer with [`Server::sasl_answer`].
    SaslCheck(CredentialRequest),
    /// A TRANSACTION command to answer.
    Request(Request),
    /// `+OK` to `STLS` is queued: flush [`Server::poll_transmit`], run the TLS handshake, then
    /// call [`Server::tls_established`].
    StartTls,
    /// Octets that followed `STLS` before the handshake were discarded (CVE-2011-0411 class).
    StlsInjection {
        /// How many.
        discarded: usize,
    },
    /// The machine answered a command with `-ERR` by itself (for logging).
    Rejected {
        /// Why.
        reason: Rejection,
    },
    /// The session is over: flush the output and close. Deletions are committed only through
    /// [`Request::Quit`], never because of this event.
    Closed(CloseReason),
}

/// Why the machine refused a command by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The line could not be parsed.
    Syntax(decode::DecodeError),
    /// An unknown command.
    UnknownCommand,
    /// A command not allowed in this state.
    WrongState,
    /// A line over the limit.
    LineTooLong,
    /// Authentication is not allowed here (plaintext without TLS, mechanism not offered).
    AuthNotAllowed,
    /// The SASL exchange failed or was cancelled.
    SaslFailed,
    /// The line is not valid UTF-8 (a command, its arguments and a password are ASCII or,
    /// at most, UTF-8: RFC 6856).
    InvalidUtf8,
}

/// A connection refused before any session starts: the one `-ERR` line it gets, then the
/// connection is closed. RFC 2449 §8 and RFC 3206 let such a reply carry `[SYS/TEMP]`: the
/// client may try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The server runs as many connections as it is configured for.
    TooManyConnections,
    /// The client's address has as many connections that have not logged in as the server
    /// allows one address (`-ERR [SYS/TEMP] Too many connections from your address`).
    TooManyFromAddress,
}

impl Refusal {
    /// The reply line (`-ERR [SYS/TEMP] Too many connections`, ...).
    pub fn status_line(self) -> StatusLine {
        let text = match self {
            Refusal::TooManyConnections => "Too many connections",
            Refusal::TooManyFromAddress => "Too many connections from your address",
        };
        StatusLine::new_unchecked(
            Status::Err,
            Some(ResponseCode::SysTemp),
            Text::new(text).unwrap_or_default(),
        )
    }

    /// Appends the reply line, CRLF included, to `out`.
    ///
    /// ```
    /// let mut out = Vec::new();
    /// pop3_proto::server::Refusal::TooManyConnections.encode(&mut out);
    /// assert_eq!(out, b"-ERR [SYS/TEMP] Too many connections\r\n");
    /// ```
    pub fn encode(self, out: &mut Vec<u8>) {
        self.status_line().encode(out);
    }
}

/// A reply call that does not fit what the machine is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// No event is waiting for this kind of answer.
    #[error("no request is waiting for this reply")]
    NotExpected,
    /// A multi-line reply is not open (or is, and this call needs it closed).
    #[error("wrong multi-line reply state")]
    MultilineState,
}

#[derive(Debug)]
enum Awaiting {
    /// Nothing: the next command can be read.
    Nothing,
    /// A [`ServerEvent::Login`].
    Login,
    /// A [`ServerEvent::SaslCheck`].
    SaslAnswer,
    /// The next client line of a SASL exchange.
    SaslLine,
    /// A reply to this request.
    Reply(Request),
    /// A multi-line reply to this request is open.
    Multiline { request: Request, body: bool },
}

/// The server state machine. See the module docs.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    state: ServerState,
    framer: LineFramer,
    stuffer: DotStuffer,
    input: Vec<u8>,
    pos: usize,
    out: Vec<u8>,
    events: VecDeque<ServerEvent>,
    awaiting: Awaiting,
    user: Option<Atom>,
    sasl: Option<(Mechanism, ServerExchange)>,
    consecutive_errors: u32,
    auth_failures: u32,
    idle_deadline: Instant,
    /// When the session is closed unless it has logged in ([`SessionRules::login_timeout`]);
    /// `None` once logged in.
    login_deadline: Option<Instant>,
    /// Since when the server has been waiting for the rest of a begun line.
    partial_since: Option<Instant>,
    /// A failed login's reply, held back until the instant.
    delayed: Option<(Instant, Vec<u8>)>,
    close_after_delay: bool,
    /// Per-user policy after login, replacing the configured pre-login values.
    user_login_delay: Option<Capability>,
    user_expire: Option<Capability>,
    eof: bool,
    /// The latest time the caller gave.
    now: Instant,
    /// SASL exchanges started, to make each one's nonce unique.
    sasl_attempts: u32,
    /// The mechanism of the SASL exchange that failed last (for logging).
    failed_sasl: Option<Mechanism>,
}

impl Server {
    /// A server for one new connection; the greeting is queued.
    pub fn new(config: ServerConfig, now: Instant) -> Self {
        let mut s = Server {
            framer: LineFramer::new(config.limits.command),
            stuffer: DotStuffer::new(),
            state: ServerState::Authorization,
            input: Vec::new(),
            pos: 0,
            out: Vec::new(),
            events: VecDeque::new(),
            awaiting: Awaiting::Nothing,
            user: None,
            sasl: None,
            consecutive_errors: 0,
            auth_failures: 0,
            idle_deadline: now + config.rules.idle_timeout,
            login_deadline: now.checked_add(config.rules.login_timeout),
            partial_since: None,
            delayed: None,
            close_after_delay: false,
            user_login_delay: None,
            user_expire: None,
            eof: false,
            now,
            sasl_attempts: 0,
            failed_sasl: None,
            config,
        };
        let greeting = Greeting::ok_with_timestamp(
            s.config.greeting.as_bytes(),
            s.config.apop_timestamp.as_ref(),
        )
        .unwrap_or_else(|_| {
            Greeting::new(StatusLine::new_unchecked(Status::Ok, None, Text::empty()))
        });
        greeting.encode(&mut s.out);
        s
    }

    /// How many SASL exchanges (`AUTH mechanism`) the session has started: tells which
    /// exchange a [`ServerEvent::SaslCheck`] or a [`Rejection::SaslFailed`] belongs to (for
    /// logging).
    pub fn sasl_exchanges(&self) -> u32 {
        self.sasl_attempts
    }

    /// The mechanism of the SASL exchange that failed last: the one the latest
    /// [`Rejection::SaslFailed`] is about (for logging; the exchange itself is gone).
    pub fn failed_sasl_mechanism(&self) -> Option<&Mechanism> {
        self.failed_sasl.as_ref()
    }

    /// The session state.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// Whether the session is over (flush the output, then close the connection).
    pub fn is_closed(&self) -> bool {
        self.state == ServerState::Closed
    }

    /// Whether the connection is encrypted.
    pub fn tls_active(&self) -> bool {
        self.config.tls_active
    }

    /// Whether the adapter should read more input now. False while unprocessed input is
    /// waiting (a client pipelining without reading cannot make the server buffer more) and
    /// once the session is closed.
    pub fn wants_input(&self) -> bool {
        self.state != ServerState::Closed
            && self.state != ServerState::TlsHandshake
            && self.input.len() - self.pos < self.config.limits.command.max(4096)
    }

    /// Gives back buffer memory kept from a past burst (a large download, a long pipeline),
    /// when nothing is buffered: for a connection about to wait for its client.
    pub fn shrink(&mut self) {
        if self.out.is_empty() && self.out.capacity() > 4096 {
            self.out = Vec::new();
        }
        if self.pos >= self.input.len() && self.input.capacity() > 4096 {
            self.input = Vec::new();
            self.pos = 0;
        }
    }

    /// Room left below the high-water mark, in octets.
    pub fn writable(&self) -> usize {
        self.config.rules.high_water.saturating_sub(self.out.len())
    }

    /// Sets the per-user `LOGIN-DELAY` and `EXPIRE` advertised in TRANSACTION
    /// (RFC 2449 §6.5, §6.7).
    pub fn set_user_policy(&mut self, login_delay: Option<Capability>, expire: Option<Capability>) {
        self.user_login_delay = login_delay;
        self.user_expire = expire;
    }

    fn plaintext_ok(&self) -> bool {
        self.config.tls_active || self.config.rules.plaintext_auth
    }

    fn is_plaintext_mech(m: &Mechanism) -> bool {
        matches!(m.as_str(), "PLAIN" | "LOGIN" | "XOAUTH2" | "OAUTHBEARER")
    }

    /// The mechanisms offered now (the plaintext policy applied).
    pub fn offered_mechanisms(&self) -> Vec<Mechanism> {
        self.config
            .sasl_mechanisms
            .iter()
            .filter(|m| self.plaintext_ok() || !Self::is_plaintext_mech(m))
            .filter(|m| ServerExchange::supported().contains(&m.as_str()))
            .filter(|m| {
                !self.config.sasl_nonce.is_empty()
                    || !matches!(m.as_str(), "CRAM-MD5" | "SCRAM-SHA-256")
            })
            .cloned()
            .collect()
    }

    /// The capabilities advertised in the current state.
    pub fn capabilities(&self) -> Vec<Capability> {
        let mut caps = vec![Capability::Top, Capability::Uidl, Capability::RespCodes];
        caps.push(Capability::AuthRespCode);
        if self.config.pipelining {
            caps.push(Capability::Pipelining);
        }
        if self.config.user_pass && self.plaintext_ok() {
            caps.push(Capability::User);
        }
        let mechs = self.offered_mechanisms();
        if !mechs.is_empty() {
            caps.push(Capability::Sasl(mechs));
        }
        let transaction = self.state == ServerState::Transaction;
        if !transaction && self.config.stls_offered && !self.config.tls_active {
            caps.push(Capability::Stls);
        }
        let (delay, expire) = if transaction {
            // In TRANSACTION, the value for this user, without `USER` (RFC 2449 §6.5, §6.7):
            // the one set by `set_user_policy`, else the server-wide one.
            (
                self.user_login_delay
                    .clone()
                    .or_else(|| self.config.login_delay.clone())
                    .map(for_this_user),
                self.user_expire
                    .clone()
                    .or_else(|| self.config.expire.clone())
                    .map(for_this_user),
            )
        } else {
            (self.config.login_delay.clone(), self.config.expire.clone())
        };
        caps.extend(delay);
        caps.extend(expire);
        if let (true, Some(t)) = (transaction, &self.config.implementation) {
            caps.push(Capability::Implementation(t.clone()));
        }
        caps
    }

    // -----------------------------------------------------------------------------------------
    // I/O

    /// Octets from the client.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        match self.state {
            ServerState::Closed => {}
            ServerState::TlsHandshake => {
                // Plaintext after STLS, before the handshake: never interpreted.
                if !data.is_empty() {
                    self.events.push_back(ServerEvent::StlsInjection {
                        discarded: data.len(),
                    });
                }
            }
            _ => {
                if self.pos == self.input.len() {
                    self.input.clear();
                    self.pos = 0;
                }
                self.input.extend_from_slice(data);
                self.now = now;
                self.idle_deadline = now + self.config.rules.idle_timeout;
            }
        }
    }

    /// The client closed the connection: the session ends without UPDATE.
    pub fn handle_eof(&mut self, _now: Instant) {
        self.eof = true;
    }

    /// Ends the session now (server shutdown): nothing is committed.
    pub fn close(&mut self) {
        self.close_with(CloseReason::Shutdown);
    }

    fn close_with(&mut self, reason: CloseReason) {
        if self.state != ServerState::Closed {
            self.state = ServerState::Closed;
            self.awaiting = Awaiting::Nothing;
            self.sasl = None;
            self.events.push_back(ServerEvent::Closed(reason));
        }
    }

    /// The next deadline: autologout, the login timeout, or the release of a delayed `-ERR`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == ServerState::Closed {
            return None;
        }
        let delayed = self.delayed.as_ref().map(|(t, _)| *t);
        let deadline = delayed.map_or(self.idle_deadline, |d| d.min(self.idle_deadline));
        let deadline = self.login_deadline.map_or(deadline, |d| d.min(deadline));
        Some(self.line_deadline().map_or(deadline, |d| d.min(deadline)))
    }

    /// Whether [`Server::poll_event`] would read a command now, were one complete.
    fn reading(&self) -> bool {
        self.state != ServerState::Closed
            && self.state != ServerState::TlsHandshake
            && self.delayed.is_none()
            && matches!(self.awaiting, Awaiting::Nothing | Awaiting::SaslLine)
            && self.out.len() < self.config.rules.high_water
    }

    /// When the line being waited for must be complete. Only while the server is itself
    /// waiting for it: time spent on the server's side (backpressure, a backend call) does
    /// not count against the client.
    fn line_deadline(&self) -> Option<Instant> {
        let since = self.partial_since?;
        (self.reading() && self.pos >= self.input.len())
            .then(|| since + self.config.rules.command_timeout)
    }

    /// Advances time: releases a delayed reply, or closes an idle session (autologout, never
    /// UPDATE; no reply is sent, RFC 1939 §3).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == ServerState::Closed {
            return;
        }
        self.now = now;
        if self.login_deadline.is_some_and(|d| now >= d) {
            self.close_with(CloseReason::LoginTimeout);
            return;
        }
        if let Some((_, reply)) = self.delayed.take_if(|(t, _)| now >= *t) {
            self.out.extend_from_slice(&reply);
            if self.close_after_delay {
                self.close_with(CloseReason::TooManyAuthFailures);
                return;
            }
            self.idle_deadline = now + self.config.rules.idle_timeout;
        }
        if self.line_deadline().is_some_and(|d| now >= d) {
            self.close_with(CloseReason::CommandTimeout);
        } else if now >= self.idle_deadline {
            self.close_with(CloseReason::Timeout);
        }
    }

    /// Octets to send: appends them to `out`. Output taken counts as activity for the
    /// autologout timer (a slow download is not idle).
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) {
        self.now = now;
        if !self.out.is_empty() {
            self.idle_deadline = now + self.config.rules.idle_timeout;
            out.append(&mut self.out);
        }
    }

    /// Input octets held: not yet read as commands, plus a partial line. Bounded when the
    /// caller reads only while [`Server::wants_input`] says so.
    pub fn buffered_input(&self) -> usize {
        (self.input.len() - self.pos) + self.framer.buffered()
    }

    /// Octets waiting in [`Server::poll_transmit`].
    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    /// The TLS handshake after `STLS` completed: the session starts clean in AUTHORIZATION.
    pub fn tls_established(&mut self) {
        if self.state == ServerState::TlsHandshake {
            self.state = ServerState::Authorization;
            self.config.tls_active = true;
            self.input.clear();
            self.pos = 0;
            self.framer.reset();
            self.partial_since = None;
            self.user = None;
        }
    }

    /// The next event. Reading the next command happens here, one at a time.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        loop {
            if let Some(ev) = self.events.pop_front() {
                return Some(ev);
            }
            if !self.reading() {
                return None;
            }
            if self.pos >= self.input.len() {
                if self.eof {
                    self.close_with(CloseReason::Eof);
                    continue;
                }
                if !self.framer.has_partial() {
                    self.partial_since = None;
                } else if self.partial_since.is_none() {
                    self.partial_since = Some(self.now);
                }
                return None;
            }
            let (used, framed) = self.framer.next_line(&self.input[self.pos..]);
            let line = match framed {
                Framed::Line(l) => Some(l.to_vec()),
                Framed::TooLong { .. } => None,
                Framed::NeedMore => {
                    self.pos += used;
                    continue;
                }
            };
            self.pos += used;
            self.partial_since = None;
            match line {
                Some(l) => self.handle_line(&l),
                None => {
                    if matches!(self.awaiting, Awaiting::SaslLine) {
                        self.sasl_fail();
                    } else {
                        self.reject(Rejection::LineTooLong, "Line too long");
                    }
                }
            }
        }
    }

    fn push_line(&mut self, line: StatusLine) {
        if line.is_ok() {
            self.consecutive_errors = 0;
        }
        line.encode(&mut self.out);
    }

    fn ok(&mut self, text: &str) {
        let line = StatusLine::new_unchecked(Status::Ok, None, Text::new(text).unwrap_or_default());
        self.push_line(line);
    }

    fn err(&mut self, code: Option<ResponseCode>, text: &str) {
        let line =
            StatusLine::new_unchecked(Status::Err, code, Text::new(text).unwrap_or_default());
        self.push_line(line);
    }

    /// `-ERR` from the machine itself: counts towards the consecutive-error limit.
    fn reject(&mut self, reason: Rejection, text: &str) {
        let code = matches!(reason, Rejection::AuthNotAllowed | Rejection::SaslFailed)
            .then_some(ResponseCode::Auth);
        self.err(code, text);
        self.events.push_back(ServerEvent::Rejected { reason });
        self.consecutive_errors += 1;
        if self.consecutive_errors >= self.config.rules.max_consecutive_errors {
            self.err(None, "Too many errors, closing connection");
            self.close_with(CloseReason::TooManyErrors);
        }
    }

    fn handle_line(&mut self, raw: &[u8]) {
        if matches!(self.awaiting, Awaiting::SaslLine) {
            return self.sasl_line(raw);
        }
        if std::str::from_utf8(raw).is_err() {
            return self.reject(Rejection::InvalidUtf8, "Invalid UTF-8 in command");
        }
        let cmd = match decode::command(raw) {
            Ok((_, c)) => c,
            Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
                return self.reject(Rejection::Syntax(e), "Invalid command syntax");
            }
            Err(nom::Err::Incomplete(_)) => return,
        };
        let auth = self.state == ServerState::Authorization;
        let trans = self.state == ServerState::Transaction;
        // PASS is legal only immediately after a successful USER (RFC 1939 §7).
        let user_given = self.user.take();
        match cmd {
            Command::Capa if auth || trans => {
                self.ok("Capability list follows");
                for c in self.capabilities() {
                    c.encode(&mut self.out);
                }
                self.out.extend_from_slice(TERMINATOR);
            }
            Command::Quit if auth => {
                self.ok("Logging out");
                self.close_with(CloseReason::Quit);
            }
            Command::Quit if trans => {
                self.state = ServerState::Update;
                self.request(Request::Quit);
            }
            Command::Noop if trans => self.ok(""),
            Command::Stls if auth => {
                if !self.config.stls_offered || self.config.tls_active {
                    return self.reject(Rejection::WrongState, "STLS not available");
                }
                self.ok("Begin TLS negotiation now");
                self.state = ServerState::TlsHandshake;
                let pending = self.input.len() - self.pos + self.framer.buffered();
                self.input.clear();
                self.pos = 0;
                self.framer.reset();
                self.events.push_back(ServerEvent::StartTls);
                if pending > 0 {
                    self.events
                        .push_back(ServerEvent::StlsInjection { discarded: pending });
                }
            }
            Command::User(name) if auth => {
                if !self.config.user_pass || !self.plaintext_ok() {
                    return self.reject(
                        Rejection::AuthNotAllowed,
                        "Plaintext authentication disallowed on non-secure connections",
                    );
                }
                self.user = Some(name);
                self.ok("");
            }
            Command::Pass(password) if auth => match user_given {
                Some(user) => {
                    self.awaiting = Awaiting::Login;
                    self.events
                        .push_back(ServerEvent::Login(LoginRequest::Pass { user, password }));
                }
                None => self.reject(Rejection::WrongState, "USER first"),
            },
            Command::Apop { name, digest } if auth => match self.config.apop_timestamp.clone() {
                Some(timestamp) => {
                    self.awaiting = Awaiting::Login;
                    self.events
                        .push_back(ServerEvent::Login(LoginRequest::Apop {
                            user: name,
                            timestamp,
                            digest,
                        }));
                }
                None => self.reject(Rejection::AuthNotAllowed, "APOP not available"),
            },
            Command::Auth(None) if auth => {
                self.ok("Methods supported:");
                for m in self.offered_mechanisms() {
                    encode_listing_line(m.as_bytes(), &mut self.out);
                }
                self.out.extend_from_slice(TERMINATOR);
            }
            Command::Auth(Some(a)) if auth => self.sasl_start(a),
            Command::Stat if trans => self.request(Request::Stat),
            Command::List(m) if trans => self.request(Request::List(m)),
            Command::Uidl(m) if trans => self.request(Request::Uidl(m)),
            Command::Retr(m) if trans => self.request(Request::Retr(m)),
            Command::Top { msg, lines } if trans => self.request(Request::Top { msg, lines }),
            Command::Dele(m) if trans => self.request(Request::Dele(m)),
            Command::Rset if trans => self.request(Request::Rset),
            Command::Utf8 | Command::Lang(_) => {
                self.reject(Rejection::UnknownCommand, "Not supported")
            }
            Command::Unknown { .. } => self.reject(Rejection::UnknownCommand, "Unknown command"),
            _ => self.reject(Rejection::WrongState, "Command not valid in this state"),
        }
    }

    fn request(&mut self, r: Request) {
        self.awaiting = Awaiting::Reply(r);
        self.events.push_back(ServerEvent::Request(r));
    }

    // -----------------------------------------------------------------------------------------
    // SASL

    fn sasl_start(&mut self, a: AuthCommand) {
        if !self.offered_mechanisms().contains(&a.mechanism) {
            return self.reject(
                Rejection::AuthNotAllowed,
                "Unsupported authentication mechanism",
            );
        }
        self.sasl_attempts += 1;
        let mut nonce = self.config.sasl_nonce.clone();
        nonce.extend_from_slice(format!("x{}", self.sasl_attempts).as_bytes());
        let mut params = ServerParams::new(nonce, self.config.hostname.clone());
        params.port = self.config.port;
        params.scram_fake_key = self.config.scram_fake_key.clone();
        let mut ex = match ServerExchange::new(&a.mechanism, params) {
            Ok(ex) => ex,
            Err(_) => {
                return self.reject(
                    Rejection::AuthNotAllowed,
                    "Unsupported authentication mechanism",
                );
            }
        };
        let step = ex.start(
            a.initial_response
                .as_ref()
                .map(|s| s.expose_secret().as_slice()),
        );
        self.sasl = Some((a.mechanism, ex));
        self.sasl_step(step);
    }

    fn sasl_step(&mut self, step: ServerStep) {
        match step {
            ServerStep::Challenge(c) => {
                Continuation(Secret::new(c)).encode(&mut self.out);
                self.framer.set_limit(self.config.limits.sasl);
                self.awaiting = Awaiting::SaslLine;
            }
            ServerStep::Check(req) => {
                self.awaiting = Awaiting::SaslAnswer;
                self.events.push_back(ServerEvent::SaslCheck(req));
            }
            ServerStep::Success(identity) => {
                self.framer.set_limit(self.config.limits.command);
                let mechanism = match self.sasl.take() {
                    Some((m, _)) => m,
                    None => return self.sasl_fail(),
                };
                self.awaiting = Awaiting::Login;
                self.events
                    .push_back(ServerEvent::Login(LoginRequest::Sasl {
                        mechanism,
                        identity,
                    }));
            }
            ServerStep::Failure(_) => self.sasl_fail(),
        }
    }

    fn sasl_fail(&mut self) {
        self.failed_sasl = self.sasl.take().map(|(m, _)| m);
        self.awaiting = Awaiting::Nothing;
        self.framer.set_limit(self.config.limits.command);
        self.events.push_back(ServerEvent::Rejected {
            reason: Rejection::SaslFailed,
        });
        self.login_failed(Some(ResponseCode::Auth), "Authentication failed", self.now);
    }

    fn sasl_line(&mut self, raw: &[u8]) {
        self.awaiting = Awaiting::Nothing;
        let resp = match decode::sasl_response(raw) {
            Ok((_, r)) => r,
            Err(_) => return self.sasl_fail(),
        };
        let data = match resp {
            SaslResponse::Cancel => {
                // RFC 5034 §4: "*" cancels; the server answers -ERR.
                self.sasl = None;
                self.framer.set_limit(self.config.limits.command);
                self.err(None, "Authentication cancelled");
                return;
            }
            SaslResponse::Data(d) => d,
        };
        let step = match self.sasl.as_mut() {
            Some((_, ex)) => ex.respond(data.expose_secret()),
            None => return self.sasl_fail(),
        };
        self.sasl_step(step);
    }

    /// The application's answer to a [`ServerEvent::SaslCheck`].
    pub fn sasl_answer(&mut self, answer: CredentialAnswer) -> Result<(), ServerError> {
        if !matches!(self.awaiting, Awaiting::SaslAnswer) {
            return Err(ServerError::NotExpected);
        }
        self.awaiting = Awaiting::Nothing;
        let step = match self.sasl.as_mut() {
            Some((_, ex)) => ex.answer(answer),
            None => return Err(ServerError::NotExpected),
        };
        self.sasl_step(step);
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Login outcome

    /// The credentials were good and the maildrop is open and locked: `+OK`, TRANSACTION.
    pub fn accept_login(&mut self) -> Result<(), ServerError> {
        if !matches!(self.awaiting, Awaiting::Login) {
            return Err(ServerError::NotExpected);
        }
        self.awaiting = Awaiting::Nothing;
        self.state = ServerState::Transaction;
        self.login_deadline = None;
        self.ok("Logged in.");
        Ok(())
    }

    /// The login failed: `-ERR [code] text`. A credentials failure (`code` is
    /// [`ResponseCode::Auth`] or `None`) is delayed and counted towards the limit; `[IN-USE]`,
    /// `[SYS/TEMP]` and `[LOGIN-DELAY]` are sent at once.
    pub fn reject_login(
        &mut self,
        code: Option<ResponseCode>,
        text: &str,
        now: Instant,
    ) -> Result<(), ServerError> {
        if !matches!(self.awaiting, Awaiting::Login) {
            return Err(ServerError::NotExpected);
        }
        self.awaiting = Awaiting::Nothing;
        match code {
            None | Some(ResponseCode::Auth) => self.login_failed(code, text, now),
            Some(c) => self.err(Some(c), text),
        }
        Ok(())
    }

    fn login_failed(&mut self, code: Option<ResponseCode>, text: &str, now: Instant) {
        self.auth_failures += 1;
        let mut reply = Vec::new();
        StatusLine::new_unchecked(Status::Err, code, Text::new(text).unwrap_or_default())
            .encode(&mut reply);
        if self.auth_failures >= self.config.rules.max_auth_failures {
            self.close_after_delay = true;
        }
        if self.config.rules.auth_failure_delay.is_zero() {
            self.out.extend_from_slice(&reply);
            if self.close_after_delay {
                self.close_with(CloseReason::TooManyAuthFailures);
            }
        } else {
            self.delayed = Some((now + self.config.rules.auth_failure_delay, reply));
        }
    }

    // -----------------------------------------------------------------------------------------
    // Replies to requests

    fn take_reply(&mut self) -> Result<Request, ServerError> {
        match self.awaiting {
            Awaiting::Reply(r) => {
                self.awaiting = Awaiting::Nothing;
                Ok(r)
            }
            _ => Err(ServerError::NotExpected),
        }
    }

    fn after_reply(&mut self, request: Request) {
        if request == Request::Quit {
            self.close_with(CloseReason::Quit);
        }
    }

    /// A single-line reply to the pending request (`+OK` for DELE, RSET, QUIT; or `-ERR` for
    /// any request, e.g. `-ERR no such message`).
    pub fn reply(&mut self, line: StatusLine) -> Result<(), ServerError> {
        let r = self.take_reply()?;
        self.push_line(line);
        self.after_reply(r);
        Ok(())
    }

    /// The reply to [`Request::Stat`].
    pub fn reply_stat(&mut self, stat: Stat) -> Result<(), ServerError> {
        match self.awaiting {
            Awaiting::Reply(Request::Stat) => {}
            _ => return Err(ServerError::NotExpected),
        }
        self.take_reply()?;
        self.consecutive_errors = 0;
        stat.encode(&mut self.out);
        Ok(())
    }

    /// The single-line reply to `LIST msg`.
    pub fn reply_scan(&mut self, item: ScanListing) -> Result<(), ServerError> {
        match self.awaiting {
            Awaiting::Reply(Request::List(Some(_))) => {}
            _ => return Err(ServerError::NotExpected),
        }
        self.take_reply()?;
        self.consecutive_errors = 0;
        item.encode_reply(&mut self.out);
        Ok(())
    }

    /// The single-line reply to `UIDL msg`.
    pub fn reply_uid(&mut self, item: &UidListing) -> Result<(), ServerError> {
        match self.awaiting {
            Awaiting::Reply(Request::Uidl(Some(_))) => {}
            _ => return Err(ServerError::NotExpected),
        }
        self.take_reply()?;
        self.consecutive_errors = 0;
        item.encode_reply(&mut self.out);
        Ok(())
    }

    /// Opens a multi-line `+OK` reply to `LIST`, `UIDL`, `RETR` or `TOP`.
    pub fn begin_multiline(&mut self, text: &str) -> Result<(), ServerError> {
        let request = match self.awaiting {
            Awaiting::Reply(
                r @ (Request::List(None)
                | Request::Uidl(None)
                | Request::Retr(_)
                | Request::Top { .. }),
            ) => r,
            _ => return Err(ServerError::NotExpected),
        };
        let body = matches!(request, Request::Retr(_) | Request::Top { .. });
        self.ok(text);
        self.stuffer.reset();
        self.awaiting = Awaiting::Multiline { request, body };
        Ok(())
    }

    /// A line of the open multi-line `LIST` reply.
    pub fn write_scan(&mut self, item: ScanListing) -> Result<(), ServerError> {
        match self.awaiting {
            Awaiting::Multiline {
                request: Request::List(None),
                ..
            } => {
                item.encode(&mut self.out);
                Ok(())
            }
            _ => Err(ServerError::MultilineState),
        }
    }

    /// A line of the open multi-line `UIDL` reply.
    pub fn write_uid(&mut self, item: &UidListing) -> Result<(), ServerError> {
        match self.awaiting {
            Awaiting::Multiline {
                request: Request::Uidl(None),
                ..
            } => {
                item.encode(&mut self.out);
                Ok(())
            }
            _ => Err(ServerError::MultilineState),
        }
    }

    /// Message octets for the open `RETR`/`TOP` reply, dot-stuffed as they are queued.
    /// Accepts only up to the high-water mark and returns how many octets it took: call again
    /// with the rest after [`Server::poll_transmit`] has drained the output.
    pub fn write_body(&mut self, data: &[u8]) -> Result<usize, ServerError> {
        match self.awaiting {
            Awaiting::Multiline { body: true, .. } => {
                let take = self.writable().min(data.len());
                self.stuffer.encode(&data[..take], &mut self.out);
                Ok(take)
            }
            _ => Err(ServerError::MultilineState),
        }
    }

    /// Closes the open multi-line reply (a body gets its final CRLF if it lacked one, then the
    /// terminator).
    pub fn end_multiline(&mut self) -> Result<(), ServerError> {
        match self.awaiting {
            Awaiting::Multiline { body, .. } => {
                if body {
                    self.stuffer.finish(&mut self.out);
                } else {
                    self.out.extend_from_slice(TERMINATOR);
                }
                self.awaiting = Awaiting::Nothing;
                Ok(())
            }
            _ => Err(ServerError::MultilineState),
        }
    }
}

/// A `LOGIN-DELAY` or `EXPIRE` capability as advertised in TRANSACTION: the value for the
/// logged-in user, so without the `USER` tag that only the AUTHORIZATION form may carry
/// (RFC 2449 §6.5, §6.7).
fn for_this_user(cap: Capability) -> Capability {
    match cap {
        Capability::LoginDelay { secs, .. } => Capability::LoginDelay {
            secs,
            per_user: false,
        },
        Capability::Expire { policy, .. } => Capability::Expire {
            policy,
            per_user: false,
        },
        other => other,
    }
}
