//! Observing a server: one [`Event`] per fact, for logs, audits and metrics.
//!
//! The server core and the driver report what happens to an [`Observer`] that the
//! [`Backend`](crate::session::Backend) holds ([`Backend::with_observer`]; by default
//! [`NoObserver`], which ignores everything). They say *what* happened, once, with typed data;
//! the observer decides what to do with it (the `pop3` binary writes `tracing` events and
//! updates Prometheus metrics).
//!
//! | event | reported by | when |
//! |---|---|---|
//! | [`Event::Accepted`] | the driver | a connection got a session slot (before any TLS handshake) |
//! | [`Event::Refused`] | the driver | a connection was refused before it got a session (a limit) |
//! | [`Event::Evicted`] | the driver | a connection that had not logged in was closed to make room |
//! | [`Event::TlsFailed`] | the driver | a TLS handshake (implicit or after `STLS`) failed |
//! | [`Event::TlsStarted`] | the driver | the handshake after `STLS` completed |
//! | [`Event::LoginSucceeded`] | the session | a login succeeded and the maildrop is open |
//! | [`Event::LoginFailed`] | the session | a login failed (credentials, or a limit, or a backend) |
//! | [`Event::MessageSent`] | the session | a `RETR` or `TOP` body was sent to its end |
//! | [`Event::SessionEnded`] | the session | the session is over: its [`SessionSummary`] |
//! | [`Event::Closed`] | the driver | the connection is closed (after every other event of it) |
//!
//! No event carries a secret: a failed login reports the user name as the client sent it, the
//! mechanism and a [`FailureReason`], never a password, digest or token. An unknown user and a
//! wrong password are one reason ([`FailureReason::Credentials`]), as the client sees them the
//! same.
//!
//! Events are borrowed and built without allocating; [`Observer::event`] is called inline,
//! on the session's task, so an observer must be quick and must not block (format a line,
//! bump a counter).
//!
//! An observer that counts failed logins:
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::time::Instant;
//! use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
//! use pop3_server_core::observe::{Event, FailureReason, Observer};
//! use pop3_server_core::session::{Backend, Connection, Policy, Session};
//!
//! #[derive(Default)]
//! struct FailedLogins(AtomicU64);
//!
//! impl Observer for FailedLogins {
//!     fn event(&self, event: &Event<'_>) {
//!         if let Event::LoginFailed(f) = event
//!             && f.reason == FailureReason::Credentials
//!         {
//!             self.0.fetch_add(1, Ordering::Relaxed);
//!         }
//!     }
//! }
//!
//! let failed = Arc::new(FailedLogins::default());
//! let auth = MemoryAuthenticator::new().with_user("alice", "secret");
//! let mut policy = Policy::default();
//! policy.rules.plaintext_auth = true; // this example has no TLS
//! let backend = Backend::with_observer(auth, MemoryStore::new(), policy, failed.clone());
//!
//! let now = Instant::now();
//! let mut session = Session::new(backend, &Connection::plain(false), now);
//! session.handle_input(b"USER alice\r\nPASS guess\r\n", now);
//! pop3_server_core::block_on(session.process(now));
//! assert_eq!(failed.0.load(Ordering::Relaxed), 1);
//! ```
//!
//! [`Backend::with_observer`]: crate::session::Backend::with_observer

use std::net::SocketAddr;
use std::time::Duration;

/// Receives the [`Event`]s of a server. See the [module docs](self).
pub trait Observer: Send + Sync + 'static {
    /// One event. Called inline, on the task or thread that runs the session: quick, never
    /// blocking.
    fn event(&self, event: &Event<'_>);
}

/// The observer that ignores every event: the default of a
/// [`Backend`](crate::session::Backend).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoObserver;

impl Observer for NoObserver {
    fn event(&self, _event: &Event<'_>) {}
}

/// One fact about a connection or a session. See the [module docs](self) for who reports
/// which, and when.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A connection was accepted and got a session slot (reported before any TLS handshake:
    /// [`ConnectionInfo::tls`] tells whether the listener is implicit TLS).
    Accepted(&'a ConnectionInfo),
    /// A connection was refused before it got a session, and closed.
    Refused(&'a ConnectionInfo, RefusalReason),
    /// A connection that had not logged in was closed to make room for a newcomer (the
    /// listener was full). Its session then ends without UPDATE, as the driver ends it
    /// ([`EndReason::Evicted`] when the driver tells it, see
    /// [`Session::end`](crate::session::Session::end)).
    Evicted(&'a ConnectionInfo),
    /// A TLS handshake failed; the connection is closed.
    TlsFailed(&'a TlsFailure<'a>),
    /// The TLS handshake after `STLS` completed ([`ConnectionInfo::tls_version`] says which
    /// protocol, when known).
    TlsStarted(&'a ConnectionInfo),
    /// A login succeeded: the user's maildrop is open.
    LoginSucceeded(&'a LoginSucceeded<'a>),
    /// A login failed.
    LoginFailed(&'a LoginFailed<'a>),
    /// A `RETR` or `TOP` body was sent to its end.
    MessageSent(&'a MessageSent<'a>),
    /// A session is over (however it ended); reported once per session, when it is dropped.
    SessionEnded(&'a SessionSummary<'a>),
    /// The connection is closed: the last event of a connection the driver accepted.
    Closed(&'a ConnectionInfo),
}

impl Event<'_> {
    /// The connection the event is about.
    pub fn connection(&self) -> &ConnectionInfo {
        match self {
            Event::Accepted(c)
            | Event::Refused(c, _)
            | Event::Evicted(c)
            | Event::TlsStarted(c)
            | Event::Closed(c) => c,
            Event::TlsFailed(f) => f.connection,
            Event::LoginSucceeded(l) => l.connection,
            Event::LoginFailed(l) => l.connection,
            Event::MessageSent(m) => m.connection,
            Event::SessionEnded(s) => s.connection,
        }
    }
}

/// What is known of a connection: in every event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The client's address, when the adapter knows it.
    pub remote: Option<SocketAddr>,
    /// The local address: the listener's (or the connection's own), when known.
    pub local: Option<SocketAddr>,
    /// The connection is encrypted: from the first byte (implicit TLS), or since `STLS`.
    pub tls: bool,
    /// The TLS protocol version in use (`"TLSv1.3"`, `"TLSv1.2"`), once a handshake told it.
    pub tls_version: Option<&'static str>,
}

impl ConnectionInfo {
    /// A connection from `remote` to `local`; `tls` for implicit TLS.
    pub fn new(remote: Option<SocketAddr>, local: Option<SocketAddr>, tls: bool) -> Self {
        ConnectionInfo {
            remote,
            local,
            tls,
            tls_version: None,
        }
    }

    /// TLS is on, with this protocol version.
    pub fn with_tls_version(mut self, version: Option<&'static str>) -> Self {
        self.tls = true;
        self.tls_version = version;
        self
    }
}

/// Why a connection was refused before it got a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalReason {
    /// The listener serves its most connections already.
    TooManyConnections,
    /// The client's address has its most connections that have not logged in already.
    TooManyFromAddress,
}

impl RefusalReason {
    /// A stable name for logs and metric labels: `too_many_connections`,
    /// `too_many_from_address`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::TooManyConnections => "too_many_connections",
            RefusalReason::TooManyFromAddress => "too_many_from_address",
        }
    }
}

/// A failed TLS handshake: [`Event::TlsFailed`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct TlsFailure<'a> {
    /// The connection.
    pub connection: &'a ConnectionInfo,
    /// The handshake followed `STLS` (else it was implicit TLS).
    pub stls: bool,
    /// How it failed.
    pub kind: TlsFailureKind,
    /// The error, when there is one to tell (a TLS alert, an I/O error).
    pub error: Option<&'a (dyn std::error::Error + 'a)>,
}

impl<'a> TlsFailure<'a> {
    /// A failure of this kind on `connection`.
    pub fn new(connection: &'a ConnectionInfo, stls: bool, kind: TlsFailureKind) -> Self {
        TlsFailure {
            connection,
            stls,
            kind,
            error: None,
        }
    }

    /// With the error that caused it.
    pub fn with_error(mut self, error: &'a (dyn std::error::Error + 'a)) -> Self {
        self.error = Some(error);
        self
    }
}

/// How a TLS handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsFailureKind {
    /// A TLS protocol error: no common version or cipher suite, a bad message, an alert.
    Protocol,
    /// A read or write failed.
    Io,
    /// The client closed the connection during the handshake.
    Closed,
    /// The handshake took longer than allowed.
    Timeout,
}

impl TlsFailureKind {
    /// A stable name for logs and metric labels: `protocol`, `io`, `closed`, `timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsFailureKind::Protocol => "protocol",
            TlsFailureKind::Io => "io",
            TlsFailureKind::Closed => "closed",
            TlsFailureKind::Timeout => "timeout",
        }
    }
}

/// A successful login: [`Event::LoginSucceeded`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct LoginSucceeded<'a> {
    /// The connection.
    pub connection: &'a ConnectionInfo,
    /// Whose maildrop is open (the authorization identity, for SASL with an authzid).
    pub user: &'a str,
    /// How: `USER` (USER/PASS), `APOP`, or the SASL mechanism (`PLAIN`, `SCRAM-SHA-256`, ...).
    pub mechanism: &'a str,
    /// How long the credential check took (the authenticator's call).
    pub auth_time: Duration,
}

impl<'a> LoginSucceeded<'a> {
    /// A successful login.
    pub fn new(
        connection: &'a ConnectionInfo,
        user: &'a str,
        mechanism: &'a str,
        auth_time: Duration,
    ) -> Self {
        LoginSucceeded {
            connection,
            user,
            mechanism,
            auth_time,
        }
    }
}

/// A failed login: [`Event::LoginFailed`]. Never a secret.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct LoginFailed<'a> {
    /// The connection.
    pub connection: &'a ConnectionInfo,
    /// The user name as the client sent it (lossily decoded; empty when a SASL exchange
    /// failed before it named one). Untrusted: log it quoted.
    pub user: &'a str,
    /// How: `USER` (USER/PASS), `APOP`, or the SASL mechanism.
    pub mechanism: &'a str,
    /// Why.
    pub reason: FailureReason,
    /// How long the credential check took, when one ran.
    pub auth_time: Option<Duration>,
}

impl<'a> LoginFailed<'a> {
    /// A failed login.
    pub fn new(
        connection: &'a ConnectionInfo,
        user: &'a str,
        mechanism: &'a str,
        reason: FailureReason,
        auth_time: Option<Duration>,
    ) -> Self {
        LoginFailed {
            connection,
            user,
            mechanism,
            reason,
            auth_time,
        }
    }
}

/// Why a login failed: a class, never more than the client was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureReason {
    /// Unknown user, wrong password, bad digest, proof or token, or an authorization identity
    /// the user may not act as: deliberately one class (`-ERR [AUTH]`).
    Credentials,
    /// The user logged in too recently (`-ERR [LOGIN-DELAY]`).
    LoginDelay,
    /// The maildrop is locked by another session (`-ERR [IN-USE]`).
    InUse,
    /// The user has their most concurrent sessions already.
    TooManySessions,
    /// The authenticator failed (`-ERR [SYS/TEMP]`).
    AuthUnavailable,
    /// The maildrop could not be opened (`-ERR [SYS/TEMP]` or `[SYS/PERM]`).
    MaildropUnavailable,
}

impl FailureReason {
    /// A stable name for logs and metric labels: `credentials`, `login_delay`, `in_use`,
    /// `too_many_sessions`, `auth_unavailable`, `maildrop_unavailable`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Credentials => "credentials",
            FailureReason::LoginDelay => "login_delay",
            FailureReason::InUse => "in_use",
            FailureReason::TooManySessions => "too_many_sessions",
            FailureReason::AuthUnavailable => "auth_unavailable",
            FailureReason::MaildropUnavailable => "maildrop_unavailable",
        }
    }
}

/// Which command a message body answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BodyCommand {
    /// `RETR`: the whole message.
    Retr,
    /// `TOP`: the headers and some body lines.
    Top,
}

impl BodyCommand {
    /// A stable name for logs and metric labels: `retr`, `top`.
    pub fn as_str(self) -> &'static str {
        match self {
            BodyCommand::Retr => "retr",
            BodyCommand::Top => "top",
        }
    }
}

/// A message body sent to its end: [`Event::MessageSent`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct MessageSent<'a> {
    /// The connection.
    pub connection: &'a ConnectionInfo,
    /// `RETR` or `TOP`.
    pub command: BodyCommand,
    /// The message octets sent (before dot-stuffing, without the status line and the final
    /// `.`).
    pub octets: u64,
}

impl<'a> MessageSent<'a> {
    /// A body of `octets` sent for `command`.
    pub fn new(connection: &'a ConnectionInfo, command: BodyCommand, octets: u64) -> Self {
        MessageSent {
            connection,
            command,
            octets,
        }
    }
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndReason {
    /// `QUIT` (in TRANSACTION: the deletions were committed).
    Quit,
    /// `QUIT` in TRANSACTION, but committing the deletions failed (`-ERR [SYS/TEMP]`).
    CommitFailed,
    /// The client closed the connection, or it broke (a reset, a failed write, a client that
    /// did not read its output in time), without `QUIT`.
    Dropped,
    /// The autologout timer expired (RFC 1939 §3).
    Autologout,
    /// A command line took too long to arrive.
    CommandTimeout,
    /// The client did not log in in time.
    LoginTimeout,
    /// Too many consecutive errors.
    TooManyErrors,
    /// Too many failed logins.
    TooManyAuthFailures,
    /// Closed to make room for a newcomer before it logged in ([`Event::Evicted`]; a driver
    /// ends such a session with [`Session::end`](crate::session::Session::end)).
    Evicted,
    /// The server stopped it (shutdown).
    Shutdown,
    /// The store failed while a message was being sent (the session cannot report it).
    StoreError,
}

impl EndReason {
    /// A stable name for logs and metric labels: `quit`, `commit_failed`, `drop`,
    /// `autologout`, `command_timeout`, `login_timeout`, `too_many_errors`,
    /// `too_many_auth_failures`, `evicted`, `shutdown`, `store_error`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Quit => "quit",
            EndReason::CommitFailed => "commit_failed",
            EndReason::Dropped => "drop",
            EndReason::Autologout => "autologout",
            EndReason::CommandTimeout => "command_timeout",
            EndReason::LoginTimeout => "login_timeout",
            EndReason::TooManyErrors => "too_many_errors",
            EndReason::TooManyAuthFailures => "too_many_auth_failures",
            EndReason::Evicted => "evicted",
            EndReason::Shutdown => "shutdown",
            EndReason::StoreError => "store_error",
        }
    }
}

/// What a session did, reported when it ends ([`Event::SessionEnded`]), in the spirit of
/// Dovecot's logout line (`top=`, `retr=`, `del=`, `size=`).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SessionSummary<'a> {
    /// The connection.
    pub connection: &'a ConnectionInfo,
    /// Who was logged in (`None` if nobody logged in).
    pub user: Option<&'a str>,
    /// How the session ended.
    pub reason: EndReason,
    /// How long the session lasted.
    pub duration: Duration,
    /// `TOP` bodies sent to their end.
    pub top: u32,
    /// Message octets sent for `TOP`.
    pub top_octets: u64,
    /// `RETR` bodies sent to their end.
    pub retr: u32,
    /// Message octets sent for `RETR`.
    pub retr_octets: u64,
    /// Messages marked deleted when the session ended (or at `QUIT`).
    pub deleted: u32,
    /// Messages whose removal was committed (0 without a successful `QUIT`).
    pub committed: u32,
    /// Messages in the maildrop as the session saw it.
    pub messages: u32,
    /// Octets in the maildrop as the session saw it.
    pub size: u64,
}

impl<'a> SessionSummary<'a> {
    /// A summary with no activity: fill in the counts.
    pub fn new(connection: &'a ConnectionInfo, reason: EndReason, duration: Duration) -> Self {
        SessionSummary {
            connection,
            user: None,
            reason,
            duration,
            top: 0,
            top_octets: 0,
            retr: 0,
            retr_octets: 0,
            deleted: 0,
            committed: 0,
            messages: 0,
            size: 0,
        }
    }
}

// -------------------------------------------------------------------------------------------
// The pieces the session and the backend keep (crate-private).

/// The observer a [`Backend`](crate::session::Backend) holds.
#[derive(Clone)]
pub(crate) struct SharedObserver(pub(crate) std::sync::Arc<dyn Observer>);

impl std::fmt::Debug for SharedObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

impl Default for SharedObserver {
    fn default() -> Self {
        SharedObserver(std::sync::Arc::new(NoObserver))
    }
}

/// What a session keeps for its events: counters and a few facts, no buffer, nothing
/// allocated per command.
#[derive(Debug)]
pub(crate) struct Tracker {
    pub(crate) conn: ConnectionInfo,
    started: std::time::Instant,
    /// Who logged in.
    user: Option<Box<str>>,
    /// The user named by the last SASL credential check, the exchange it belongs to
    /// ([`Server::sasl_exchanges`](pop3_proto::server::Server::sasl_exchanges)), whether the
    /// authenticator failed it, and (in `auth_time`) how long it took: a failure of that
    /// exchange reports them.
    sasl_user: Option<(u32, Box<str>)>,
    sasl_error: bool,
    pub(crate) auth_time: Option<Duration>,
    /// The body being sent, and its octets so far.
    body: Option<BodyCommand>,
    body_octets: u64,
    top: u32,
    top_octets: u64,
    retr: u32,
    retr_octets: u64,
    /// Messages given to the commit at QUIT, once it ran.
    deleted: Option<u32>,
    committed: u32,
    messages: u32,
    size: u64,
    /// How the session ended, once known.
    end: Option<EndReason>,
}

impl Tracker {
    pub(crate) fn new(conn: ConnectionInfo, now: std::time::Instant) -> Self {
        Tracker {
            conn,
            started: now,
            user: None,
            sasl_user: None,
            sasl_error: false,
            auth_time: None,
            body: None,
            body_octets: 0,
            top: 0,
            top_octets: 0,
            retr: 0,
            retr_octets: 0,
            deleted: None,
            committed: 0,
            messages: 0,
            size: 0,
            end: None,
        }
    }

    /// A SASL credential check about `user` in exchange number `exchange` took `took`;
    /// `error` if the authenticator failed.
    pub(crate) fn sasl_checked(&mut self, exchange: u32, user: &str, took: Duration, error: bool) {
        self.sasl_user = Some((exchange, user.into()));
        self.sasl_error = error;
        self.auth_time = Some(took);
    }

    /// The user of SASL exchange number `exchange`, which just failed, and why it failed
    /// (and forgets them). No user if the exchange failed before a credential check (a
    /// check of an earlier exchange, cancelled, does not count).
    pub(crate) fn take_sasl_user(&mut self, exchange: u32) -> (Option<Box<str>>, FailureReason) {
        let error = std::mem::take(&mut self.sasl_error);
        match self.sasl_user.take() {
            Some((n, user)) if n == exchange => {
                let reason = if error {
                    FailureReason::AuthUnavailable
                } else {
                    FailureReason::Credentials
                };
                (Some(user), reason)
            }
            _ => (None, FailureReason::Credentials),
        }
    }

    pub(crate) fn login_succeeded(
        &mut self,
        observer: &dyn Observer,
        user: &str,
        mechanism: &str,
        messages: usize,
        size: u64,
    ) {
        self.sasl_user = None;
        self.sasl_error = false;
        let auth_time = self.auth_time.take().unwrap_or_default();
        observer.event(&Event::LoginSucceeded(&LoginSucceeded::new(
            &self.conn, user, mechanism, auth_time,
        )));
        self.user = Some(user.into());
        self.messages = u32::try_from(messages).unwrap_or(u32::MAX);
        self.size = size;
    }

    pub(crate) fn login_failed(
        &mut self,
        observer: &dyn Observer,
        user: &str,
        mechanism: &str,
        reason: FailureReason,
    ) {
        let auth_time = self.auth_time.take();
        observer.event(&Event::LoginFailed(&LoginFailed::new(
            &self.conn, user, mechanism, reason, auth_time,
        )));
    }

    pub(crate) fn tls_version(&mut self, version: Option<&'static str>) {
        self.conn = self.conn.with_tls_version(version);
    }

    pub(crate) fn body_started(&mut self, command: BodyCommand) {
        self.body = Some(command);
        self.body_octets = 0;
    }

    pub(crate) fn body_sent(&mut self, octets: usize) {
        self.body_octets += octets as u64;
    }

    /// The body was sent to its end.
    pub(crate) fn body_done(&mut self, observer: &dyn Observer) {
        let Some(command) = self.body.take() else {
            return;
        };
        let octets = self.body_octets;
        match command {
            BodyCommand::Retr => {
                self.retr += 1;
                self.retr_octets += octets;
            }
            BodyCommand::Top => {
                self.top += 1;
                self.top_octets += octets;
            }
        }
        observer.event(&Event::MessageSent(&MessageSent::new(
            &self.conn, command, octets,
        )));
    }

    /// The commit at QUIT: `deleted` messages were to be removed; `ok` if they were.
    pub(crate) fn committed(&mut self, deleted: usize, ok: bool) {
        let deleted = u32::try_from(deleted).unwrap_or(u32::MAX);
        self.deleted = Some(deleted);
        if ok {
            self.committed = deleted;
        } else {
            self.end.get_or_insert(EndReason::CommitFailed);
        }
    }

    /// Records how the session ended, unless that is known already.
    pub(crate) fn ended(&mut self, reason: EndReason) {
        self.end.get_or_insert(reason);
    }

    pub(crate) fn has_ended(&self) -> bool {
        self.end.is_some()
    }

    /// Reports the summary; `deleted` is the marks held when the session ended without a
    /// commit.
    pub(crate) fn summary(&self, observer: &dyn Observer, deleted: usize) {
        let mut s = SessionSummary::new(
            &self.conn,
            self.end.unwrap_or(EndReason::Dropped),
            self.started.elapsed(),
        );
        s.user = self.user.as_deref();
        s.top = self.top;
        s.top_octets = self.top_octets;
        s.retr = self.retr;
        s.retr_octets = self.retr_octets;
        s.deleted = self
            .deleted
            .unwrap_or_else(|| u32::try_from(deleted).unwrap_or(u32::MAX));
        s.committed = self.committed;
        s.messages = self.messages;
        s.size = self.size;
        observer.event(&Event::SessionEnded(&s));
    }
}

/// How the protocol machine's close reason reads in a summary.
pub(crate) fn end_reason(r: pop3_proto::server::CloseReason) -> EndReason {
    use pop3_proto::server::CloseReason as C;
    match r {
        C::Quit => EndReason::Quit,
        C::Eof => EndReason::Dropped,
        C::Timeout => EndReason::Autologout,
        C::CommandTimeout => EndReason::CommandTimeout,
        C::TooManyErrors => EndReason::TooManyErrors,
        C::TooManyAuthFailures => EndReason::TooManyAuthFailures,
        C::LoginTimeout => EndReason::LoginTimeout,
        C::Shutdown => EndReason::Shutdown,
        _ => EndReason::Dropped,
    }
}
