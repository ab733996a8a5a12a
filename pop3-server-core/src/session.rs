//! The session: one connection's server machine joined to the backends.
//!
//! [`Session`] turns the events of [`pop3_proto::server::Server`] into backend calls and
//! replies, and streams `RETR`/`TOP` from the backend's reader under the machine's
//! backpressure. Adapters only move bytes and time in and out of it.
//!
//! The driver contract: the client's octets go to [`Session::handle_input`], read only while
//! [`Session::wants_input`]; its end of stream to [`Session::handle_eof`]; the time to
//! [`Session::handle_timeout`] once [`Session::poll_timeout`] has passed. After each, the
//! driver calls [`Session::process`] (which awaits the backends; on [`Step::StartTls`] it
//! flushes the output, runs the TLS handshake, then calls [`Session::tls_established`]) and
//! writes out what [`Session::poll_transmit`] gives, taking nothing more from the session until
//! the connection has accepted it: that is the backpressure, as the session stops producing at
//! the high-water mark ([`Session::is_streaming`]: more comes as soon as the output drains).
//! Once [`Session::is_closed`] and the output is written, it closes the connection.
//! `pop3_driver::server::run_session` is this loop for the shipped adapters;
//! `pop3-driver/examples/mio_server.rs` in the repository is a complete one written by hand,
//! over mio.
//!
//! The semantics are fixed here, whatever the backend: message numbers are fixed for the
//! session; a message marked deleted disappears from STAT, LIST, UIDL, RETR and TOP; number 0
//! and numbers past the end get `-ERR`; RSET unmarks; deletions are committed only on QUIT from
//! TRANSACTION, never on a dropped connection, an autologout or a shutdown; a failed commit
//! answers `-ERR [SYS/TEMP]`; the maildrop lock is released however the session ends (the
//! maildrop is dropped).
//!
//! Sessions of one user share the maildrop as [`Policy::maildrop_lock`] says: by default each
//! works on the snapshot taken at its login and removes at QUIT only what it marked
//! ([`MaildropLock::Snapshot`]); [`MaildropLock::Exclusive`] refuses a second session with
//! `-ERR [IN-USE]`. `CAPA` has no capability for either (RFC 2449 defines none), and the
//! server claims neither.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::backend::MaildropLock;
pub use pop3_proto::server::SessionRules;
use pop3_proto::server::{LoginRequest, Rejection, Request, Server, ServerConfig, ServerEvent};
use pop3_proto::{
    Capability, Expire, MsgNum, ResponseCode, ScanListing, Secret, Stat, StatusLine, Text,
    Timestamp, UidListing,
};

use crate::backend::*;
use crate::observe::{
    BodyCommand, ConnectionInfo, EndReason, FailureReason, NoObserver, Observer, SharedObserver,
    Tracker, end_reason,
};

/// Server policy shared by all sessions.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Policy {
    /// The greeting text.
    pub greeting: String,
    /// The host name used in APOP timestamps and SASL challenges.
    pub hostname: String,
    /// Offer APOP (when the authenticator can do it).
    pub apop: bool,
    /// Timeouts, error and failure limits, output buffering, and whether plaintext passwords
    /// (USER/PASS, PLAIN, LOGIN) are accepted without TLS (off by default): handed to each
    /// session's protocol machine as they are.
    pub rules: SessionRules,
    /// Minimum seconds between two logins of one user: advertised as `LOGIN-DELAY` and
    /// enforced with `-ERR [LOGIN-DELAY]` (RFC 2449 §6.5, §8.1.1). Only a login that opened
    /// the maildrop starts the delay: one refused (`[IN-USE]`, a store failure) does not.
    pub login_delay: Option<u64>,
    /// What happens to mail left on the server, advertised as `EXPIRE` (RFC 2449 §6.7):
    /// [`Retention::Never`] by default.
    pub expire: Retention,
    /// At most this many messages are listed per maildrop (the oldest first).
    pub max_messages: Option<usize>,
    /// At most this many octets of messages are listed per maildrop.
    pub max_maildrop_size: Option<u64>,
    /// `IMPLEMENTATION` text (advertised after login only).
    pub implementation: Option<String>,
    /// How sessions of one user share the maildrop: each on its own snapshot
    /// ([`MaildropLock::Snapshot`], the default) or one at a time
    /// ([`MaildropLock::Exclusive`], the others refused with `-ERR [IN-USE]`). Handed to
    /// [`MailStore::open`].
    pub maildrop_lock: MaildropLock,
    /// Most sessions of one user logged in at once, over every listener of the
    /// [`Backend`] (10 by default; `None`: no limit). One more login, with good credentials,
    /// is refused with `-ERR [IN-USE]`: RFC 2449 §8.1.2 defines `IN-USE` as the reply for a
    /// maildrop that other sessions hold, which is the case, and tells the client that its
    /// credentials were right and that trying later can succeed (RFC 3206's `[SYS/TEMP]`
    /// would blame the server). Only a client that proved the password learns it.
    pub max_sessions_per_user: Option<usize>,
}

/// What happens to mail left on the server: advertised as `EXPIRE` (RFC 2449 §6.7), which
/// clients read to decide whether they may leave mail on the server, so each value says who
/// removes mail and the server advertises only what really happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Retention {
    /// Mail stays until a client deletes it: `EXPIRE NEVER` (RFC 2449 §6.7: sites that do not
    /// expire mail SHOULD say so). The server removes nothing on its own, and neither do the
    /// shipped stores; the default.
    #[default]
    Never,
    /// Mail may not be left on the server: `EXPIRE 0`, enforced by the session. At the QUIT
    /// of a session, the messages it retrieved whole (`RETR`; `TOP` does not count) are
    /// removed with those it marked, as if each had been marked (the implicit `DELE` that RFC
    /// 2449 §6.7 allows; `RSET` takes back only `DELE` marks). A session that ends without
    /// QUIT removes nothing, as always.
    RemoveRetrieved,
    /// Another program removes mail older than this many days (Dovecot's `autoexpunge`, a
    /// cleanup job): `EXPIRE days`. This server removes nothing on its own: choose it only
    /// when such a program runs, since clients take the days as a promise.
    External(u64),
    /// Not advertised: for a store whose retention the embedder does not know.
    Unadvertised,
}

impl Retention {
    /// The `EXPIRE` value advertised, if any.
    pub fn advertised(self) -> Option<Expire> {
        match self {
            Retention::Never => Some(Expire::Never),
            Retention::RemoveRetrieved => Some(Expire::Days(0)),
            Retention::External(days) => Some(Expire::Days(days)),
            Retention::Unadvertised => None,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            greeting: "POP3 server ready".into(),
            hostname: "localhost".into(),
            apop: true,
            rules: SessionRules::default(),
            login_delay: None,
            expire: Retention::default(),
            max_messages: None,
            max_maildrop_size: None,
            implementation: None,
            maildrop_lock: MaildropLock::default(),
            max_sessions_per_user: Some(10),
        }
    }
}

/// The backends and policy, shared by every session of a server.
#[derive(Debug)]
pub struct Backend<A, S> {
    /// The users.
    pub auth: A,
    /// The mail.
    pub store: S,
    /// The policy.
    pub policy: Policy,
    last_login: Mutex<HashMap<String, Instant>>,
    /// Server-wide secret for fake SCRAM salts of unknown users.
    scram_fake_key: Secret<Vec<u8>>,
    /// Who is told what happens ([`Backend::with_observer`]).
    observer: SharedObserver,
    /// Sessions logged in, per user ([`Policy::max_sessions_per_user`]).
    sessions: Arc<UserSessions>,
}

impl<A: Authenticator, S: MailStore> Backend<A, S> {
    /// Joins the backends and the policy.
    pub fn new(auth: A, store: S, policy: Policy) -> Arc<Self> {
        Self::with_observer(auth, store, policy, Arc::new(NoObserver))
    }

    /// [`Backend::new`], with an [`Observer`] that every session of the server and the driver
    /// report their [events](crate::observe::Event) to (logins, logouts, connections).
    pub fn with_observer(
        auth: A,
        store: S,
        policy: Policy,
        observer: Arc<dyn Observer>,
    ) -> Arc<Self> {
        Arc::new(Backend {
            auth,
            store,
            policy,
            last_login: Mutex::new(HashMap::new()),
            scram_fake_key: Secret::new(random::<32>().to_vec()),
            observer: SharedObserver(observer),
            sessions: Arc::default(),
        })
    }

    /// The observer the events go to ([`NoObserver`] unless [`Backend::with_observer`] gave
    /// one). The driver reports its own events here too.
    pub fn observer(&self) -> &dyn Observer {
        &*self.observer.0
    }

    /// The server machine configuration for one new connection. `random` must be fresh,
    /// unguessable bytes for this connection (they make the APOP timestamp and the SASL
    /// nonces, RFC 1939 §7).
    pub fn connection_config(&self, conn: &Connection, random: [u8; 16]) -> ServerConfig {
        let p = &self.policy;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let mut c = ServerConfig::default();
        c.greeting = Text::new(p.greeting.as_bytes()).unwrap_or_default();
        c.apop_timestamp = (p.apop && self.auth.apop())
            .then(|| Timestamp::new(format!("<{hex}@{}>", p.hostname)).ok())
            .flatten();
        c.sasl_nonce = hex.into_bytes();
        c.scram_fake_key = Some(self.scram_fake_key.clone());
        c.hostname = p.hostname.clone();
        c.port = conn.local_port;
        c.rules = p.rules.clone();
        c.tls_active = conn.tls_active;
        c.stls_offered = conn.stls_available;
        c.sasl_mechanisms = self.auth.mechanisms();
        c.login_delay = p.login_delay.map(|secs| Capability::LoginDelay {
            secs,
            per_user: false,
        });
        c.expire = p.expire.advertised().map(|policy| Capability::Expire {
            policy,
            per_user: false,
        });
        c.implementation = p
            .implementation
            .as_ref()
            .and_then(|t| Text::new(t.as_bytes()).ok());
        c
    }

    /// Checks `LOGIN-DELAY`: `None` if `user` logged in less than the delay ago. Otherwise
    /// this login is recorded now, so that two logins at once cannot both pass, and the claim
    /// returned is given back with [`Backend::unclaim_login`] if the login fails after all.
    fn claim_login(&self, user: &str, now: Instant) -> Option<LoginClaim> {
        let Some(delay) = self.policy.login_delay else {
            return Some(LoginClaim::default());
        };
        let mut last = self.last_login.lock().unwrap_or_else(|e| e.into_inner());
        match last.get(user) {
            Some(t) if now.saturating_duration_since(*t) < Duration::from_secs(delay) => None,
            previous => {
                let previous = previous.copied();
                last.insert(user.to_string(), now);
                Some(LoginClaim {
                    at: Some(now),
                    previous,
                })
            }
        }
    }

    /// Undoes [`Backend::claim_login`] for a login that did not open the maildrop, so that it
    /// does not start the `LOGIN-DELAY` clock (unless another login has been recorded since).
    fn unclaim_login(&self, user: &str, claim: LoginClaim) {
        let Some(at) = claim.at else { return };
        let mut last = self.last_login.lock().unwrap_or_else(|e| e.into_inner());
        if last.get(user) == Some(&at) {
            match claim.previous {
                Some(previous) => last.insert(user.to_string(), previous),
                None => last.remove(user),
            };
        }
    }
}

/// A login recorded for `LOGIN-DELAY` (see [`Backend::claim_login`]).
#[derive(Debug, Clone, Copy, Default)]
struct LoginClaim {
    /// When it was recorded; `None` without a delay policy.
    at: Option<Instant>,
    /// The login recorded before it.
    previous: Option<Instant>,
}

/// What the adapter knows of a connection.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Connection {
    /// The connection is encrypted from the start (implicit TLS, RFC 8314).
    pub tls_active: bool,
    /// `STLS` can be offered (a TLS configuration exists).
    pub stls_available: bool,
    /// The local port, for OAUTHBEARER host/port checks.
    pub local_port: Option<u16>,
    /// The client's address (the driver sets it from the accepted socket; `None` when the
    /// transport has none), for logs and per-address limits.
    pub peer: Option<SocketAddr>,
    /// The local address (the listener's), for the [events](crate::observe).
    pub local: Option<SocketAddr>,
    /// The TLS protocol version of an implicit-TLS connection, once its handshake told it
    /// (`"TLSv1.3"`), for the [events](crate::observe).
    pub tls_version: Option<&'static str>,
}

impl Connection {
    /// A plaintext connection, with `STLS` if `stls_available`.
    pub fn plain(stls_available: bool) -> Self {
        Connection {
            tls_active: false,
            stls_available,
            local_port: None,
            peer: None,
            local: None,
            tls_version: None,
        }
    }

    /// An implicit-TLS connection.
    pub fn tls() -> Self {
        Connection {
            tls_active: true,
            stls_available: false,
            local_port: None,
            peer: None,
            local: None,
            tls_version: None,
        }
    }
}

/// What [`Session::process`] asks of the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Nothing special: transmit, then wait for input, writability or the timeout.
    Continue,
    /// Flush the output (the `+OK` to `STLS`), run the TLS handshake, then call
    /// [`Session::tls_established`].
    StartTls,
}

type ReaderOf<S> = <<S as MailStore>::Maildrop as Maildrop>::Reader;

/// One connection's session. See the module docs.
pub struct Session<A: Authenticator, S: MailStore> {
    server: Server,
    backend: Arc<Backend<A, S>>,
    maildrop: Option<S::Maildrop>,
    /// Messages of the snapshot that this session shows (after the policy's limits).
    visible: usize,
    deleted: Vec<bool>,
    /// Messages sent whole by `RETR`, for [`Retention::RemoveRetrieved`].
    retrieved: Vec<bool>,
    /// The message being sent by `RETR` (not `TOP`), if one is.
    retr: Option<usize>,
    reader: Option<ReaderOf<S>>,
    /// An open LIST/UIDL listing: whether it is UIDL, and the next index.
    listing: Option<(bool, usize)>,
    buf: Vec<u8>,
    /// Octets of `buf` read but not yet accepted by the machine.
    pending: std::ops::Range<usize>,
    /// Counters and facts for the observer's events.
    tracker: Tracker,
    /// This session's place among its user's sessions, from login until it closes.
    user_slot: Option<UserSlot>,
}

impl<A: Authenticator, S: MailStore> std::fmt::Debug for Session<A, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.server.state())
            .field("visible", &self.visible)
            .finish_non_exhaustive()
    }
}

const READ_CHUNK: usize = 32 * 1024;

impl<A: Authenticator, S: MailStore> Session<A, S> {
    /// A session for a new connection, with fresh random nonces from the operating system;
    /// the greeting is queued.
    pub fn new(backend: Arc<Backend<A, S>>, conn: &Connection, now: Instant) -> Self {
        Self::with_random(backend, conn, random::<16>(), now)
    }

    /// [`Session::new`] with the caller's random bytes (see [`Backend::connection_config`]).
    pub fn with_random(
        backend: Arc<Backend<A, S>>,
        conn: &Connection,
        random: [u8; 16],
        now: Instant,
    ) -> Self {
        let config = backend.connection_config(conn, random);
        let mut info = ConnectionInfo::new(conn.peer, conn.local, conn.tls_active);
        if conn.tls_active {
            info = info.with_tls_version(conn.tls_version);
        }
        Session {
            server: Server::new(config, now),
            backend,
            maildrop: None,
            visible: 0,
            deleted: Vec::new(),
            retrieved: Vec::new(),
            retr: None,
            reader: None,
            listing: None,
            buf: Vec::new(),
            pending: 0..0,
            tracker: Tracker::new(info, now),
            user_slot: None,
        }
    }

    /// The protocol machine, for inspection.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Octets from the client.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        self.server.handle_input(data, now);
    }

    /// The client closed its side: the session ends without UPDATE.
    pub fn handle_eof(&mut self, now: Instant) {
        self.server.handle_eof(now);
    }

    /// Advances time (autologout, delayed `-ERR`).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.server.handle_timeout(now);
        self.release_if_closed();
    }

    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.server.poll_timeout()
    }

    /// Octets to send.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) {
        self.server.poll_transmit(now, out);
    }

    /// Whether a multi-line reply is being streamed: [`Session::process`] has more to write
    /// as soon as the output drains.
    pub fn is_streaming(&self) -> bool {
        self.reader.is_some() || self.listing.is_some()
    }

    /// Gives back buffer memory kept from past bursts (the body read buffer, the machine's
    /// output): the driver calls it before waiting for the client, so an idle session holds
    /// no buffer sized for a download.
    pub fn shrink(&mut self) {
        if self.reader.is_none() {
            self.buf = Vec::new();
        }
        self.server.shrink();
    }

    /// Whether to read more input now.
    pub fn wants_input(&self) -> bool {
        self.server.wants_input()
    }

    /// Whether the session is over (flush the output, then close).
    pub fn is_closed(&self) -> bool {
        self.server.is_closed()
    }

    /// The TLS handshake after `STLS` completed.
    pub fn tls_established(&mut self) {
        self.server.tls_established();
    }

    /// The TLS protocol version a handshake agreed on (`"TLSv1.3"`), for the
    /// [events](crate::observe): the driver tells it after [`Session::tls_established`]
    /// (for implicit TLS, [`Connection::tls_version`] does).
    pub fn set_tls_version(&mut self, version: Option<&'static str>) {
        self.tracker.tls_version(version);
    }

    /// Ends the session now (server shutdown): nothing is committed, the lock is released.
    pub fn shutdown(&mut self) {
        self.end(EndReason::Shutdown);
    }

    /// Ends the session now, for `reason` (its summary tells it): nothing is committed, the
    /// lock is released. [`Session::shutdown`] is `end(EndReason::Shutdown)`; a driver ends a
    /// session whose connection broke with [`EndReason::Dropped`].
    pub fn end(&mut self, reason: EndReason) {
        if !self.server.is_closed() {
            self.tracker.ended(reason);
        }
        self.server.close();
        self.release_if_closed();
    }

    fn release_if_closed(&mut self) {
        if self.server.is_closed() {
            // Dropping the maildrop releases its lock and applies nothing.
            self.reader = None;
            self.maildrop = None;
            self.user_slot = None;
        }
    }

    /// Does all the work that the input so far allows: answers commands (awaiting the
    /// backends) and streams message bodies until the output reaches the high-water mark.
    pub async fn process(&mut self, now: Instant) -> Step {
        let mut step = Step::Continue;
        loop {
            if self.reader.is_some() || self.listing.is_some() {
                if self.server.writable() == 0 {
                    break;
                }
                if self.listing.is_some() {
                    self.pump_listing();
                } else {
                    self.pump_body().await;
                }
                continue;
            }
            let Some(ev) = self.server.poll_event() else {
                break;
            };
            match ev {
                ServerEvent::Login(req) => self.login(req, now).await,
                ServerEvent::SaslCheck(req) => {
                    let started = Instant::now();
                    let checked = self.backend.auth.sasl(&req).await;
                    let took = started.elapsed();
                    let exchange = self.server.sasl_exchanges();
                    let user = credential_user(&req);
                    self.tracker
                        .sasl_checked(exchange, user, took, checked.is_err());
                    let answer = match checked {
                        Ok(a) => a,
                        // A backend failure must not read as "wrong password": fail the
                        // exchange as an unknown user would (the event tells the truth).
                        Err(_) => pop3_proto::sasl::CredentialAnswer::Verified(false),
                    };
                    let _ = self.server.sasl_answer(answer);
                }
                ServerEvent::Rejected {
                    reason: Rejection::SaslFailed,
                } => {
                    // A failed exchange: bad credentials, or one that broke off before
                    // naming a user (then the name is empty).
                    let exchange = self.server.sasl_exchanges();
                    let (user, reason) = self.tracker.take_sasl_user(exchange);
                    let mechanism = self.server.failed_sasl_mechanism();
                    self.tracker.login_failed(
                        self.backend.observer(),
                        user.as_deref().unwrap_or(""),
                        mechanism.map_or("", |m| m.as_str()),
                        reason,
                    );
                }
                ServerEvent::Request(r) => self.request(r).await,
                ServerEvent::StartTls => step = Step::StartTls,
                ServerEvent::Closed(reason) => {
                    self.tracker.ended(end_reason(reason));
                    self.release_if_closed();
                }
                _ => {}
            }
        }
        self.release_if_closed();
        step
    }

    async fn login(&mut self, req: LoginRequest, now: Instant) {
        let auth = &self.backend.auth;
        let started = Instant::now();
        let checked: Result<Option<String>, StoreError> = match &req {
            LoginRequest::Pass { user, password } => {
                let name = String::from_utf8_lossy(user.as_bytes()).into_owned();
                auth.verify_password(&name, password.expose_secret().as_bytes())
                    .await
                    .map(|ok| ok.then_some(name))
            }
            LoginRequest::Apop {
                user,
                timestamp,
                digest,
            } => {
                let name = String::from_utf8_lossy(user.as_bytes()).into_owned();
                auth.verify_apop(&name, timestamp, digest.expose_secret())
                    .await
                    .map(|ok| ok.then_some(name))
            }
            LoginRequest::Sasl { identity, .. } => Ok(match &identity.authzid {
                Some(z) if !z.is_empty() && !auth.authorize(&identity.user, z) => None,
                Some(z) if !z.is_empty() => Some(z.clone()),
                _ => Some(identity.user.clone()),
            }),
            _ => Ok(None),
        };
        if !matches!(req, LoginRequest::Sasl { .. }) {
            // A SASL login's check ran before (ServerEvent::SaslCheck), and was timed there.
            self.tracker.auth_time = Some(started.elapsed());
        }
        let user = match checked {
            Ok(Some(u)) => u,
            // Unknown user and wrong password give the same reply (RFC 1939 §13).
            Ok(None) => {
                self.login_failed(&req, FailureReason::Credentials);
                let _ = self.server.reject_login(
                    Some(ResponseCode::Auth),
                    "Authentication failed",
                    now,
                );
                return;
            }
            Err(_) => {
                self.login_failed(&req, FailureReason::AuthUnavailable);
                let _ = self.server.reject_login(
                    Some(ResponseCode::SysTemp),
                    "Authentication service unavailable",
                    now,
                );
                return;
            }
        };
        let limit = self.backend.policy.max_sessions_per_user;
        let Some(slot) = UserSessions::claim(&self.backend.sessions, &user, limit) else {
            // Before LOGIN-DELAY and the store: a refused login claims nothing.
            self.login_failed(&req, FailureReason::TooManySessions);
            let _ = self.server.reject_login(
                Some(ResponseCode::InUse),
                "Too many sessions for this user",
                now,
            );
            return;
        };
        let Some(claim) = self.backend.claim_login(&user, now) else {
            self.login_failed(&req, FailureReason::LoginDelay);
            let _ = self.server.reject_login(
                Some(ResponseCode::LoginDelay),
                "Logged in too recently",
                now,
            );
            return;
        };
        let opened = self
            .backend
            .store
            .open(&user, self.backend.policy.maildrop_lock)
            .await;
        if opened.is_err() {
            // Only a login that got its maildrop counts for LOGIN-DELAY.
            self.backend.unclaim_login(&user, claim);
        }
        match opened {
            Ok(drop) => {
                self.visible = self.visible_count(drop.messages());
                self.deleted = vec![false; self.visible];
                self.retrieved = vec![false; self.visible];
                self.maildrop = Some(drop);
                self.user_slot = Some(slot);
                let size = self.infos().iter().map(|m| m.size).sum();
                let mechanism = login_names(&req).0;
                let observer = self.backend.observer();
                self.tracker
                    .login_succeeded(observer, &user, mechanism, self.visible, size);
                let _ = self.server.accept_login();
            }
            Err(StoreError::InUse) => {
                self.login_failed(&req, FailureReason::InUse);
                let _ = self.server.reject_login(
                    Some(ResponseCode::InUse),
                    "Maildrop is locked by another session",
                    now,
                );
            }
            Err(StoreError::Permanent(_) | StoreError::NotFound) => {
                self.login_failed(&req, FailureReason::MaildropUnavailable);
                let _ = self.server.reject_login(
                    Some(ResponseCode::SysPerm),
                    "Maildrop not available",
                    now,
                );
            }
            Err(_) => {
                self.login_failed(&req, FailureReason::MaildropUnavailable);
                let _ = self.server.reject_login(
                    Some(ResponseCode::SysTemp),
                    "Maildrop temporarily unavailable",
                    now,
                );
            }
        }
    }

    /// Reports a failed login (the user name as sent, never a secret).
    fn login_failed(&mut self, req: &LoginRequest, reason: FailureReason) {
        let (mechanism, user) = login_names(req);
        let observer = self.backend.observer();
        self.tracker
            .login_failed(observer, &user, mechanism, reason);
    }

    /// How many messages of the snapshot are shown, after `max_messages` and
    /// `max_maildrop_size`.
    fn visible_count(&self, messages: &[MessageInfo]) -> usize {
        let p = &self.backend.policy;
        let mut total = 0u64;
        let mut n = 0;
        for m in messages.iter().take(p.max_messages.unwrap_or(usize::MAX)) {
            total = total.saturating_add(m.size);
            if p.max_maildrop_size.is_some_and(|max| total > max) {
                break;
            }
            n += 1;
        }
        n
    }

    fn infos(&self) -> &[MessageInfo] {
        match &self.maildrop {
            Some(d) => &d.messages()[..self.visible],
            None => &[],
        }
    }

    /// The index of message `m` if it exists and is not marked deleted.
    fn live(&self, m: MsgNum) -> Option<usize> {
        let i = m.index();
        (i < self.visible && !self.deleted[i]).then_some(i)
    }

    fn err(&mut self, code: Option<ResponseCode>, text: &str) {
        let line = match code {
            Some(c) => StatusLine::err_with_code(c, text),
            None => StatusLine::err(text),
        };
        if let Ok(line) = line {
            let _ = self.server.reply(line);
        }
    }

    fn no_such_message(&mut self, m: MsgNum) {
        let i = m.index();
        let text = if i < self.visible && self.deleted[i] {
            "Message already deleted"
        } else {
            "No such message"
        };
        self.err(None, text);
    }

    async fn request(&mut self, r: Request) {
        match r {
            Request::Stat => {
                let (count, size) = self
                    .infos()
                    .iter()
                    .zip(&self.deleted)
                    .filter(|(_, d)| !**d)
                    .fold((0u64, 0u64), |(c, s), (m, _)| {
                        (c + 1, s.saturating_add(m.size))
                    });
                let _ = self.server.reply_stat(Stat { count, size });
            }
            Request::List(Some(m)) => match self.live(m) {
                Some(i) => {
                    let size = self.infos()[i].size;
                    let _ = self.server.reply_scan(ScanListing { msg: m, size });
                }
                None => self.no_such_message(m),
            },
            Request::Uidl(Some(m)) => match self.live(m) {
                Some(i) => {
                    let uid = self.infos()[i].uid.clone();
                    let _ = self.server.reply_uid(&UidListing { msg: m, uid });
                }
                None => self.no_such_message(m),
            },
            Request::List(None) | Request::Uidl(None) => self.listing(r),
            Request::Retr(m) => self.open_body(m, None).await,
            Request::Top { msg, lines } => self.open_body(msg, Some(lines)).await,
            Request::Dele(m) => match self.live(m) {
                Some(i) => {
                    self.deleted[i] = true;
                    let _ = self.server.reply(ok(&format!("Message {m} deleted")));
                }
                None => self.no_such_message(m),
            },
            Request::Rset => {
                self.deleted.iter_mut().for_each(|d| *d = false);
                let _ = self.server.reply(ok(&format!("{} messages", self.visible)));
            }
            Request::Quit => self.commit().await,
            _ => self.err(None, "Not supported"),
        }
    }

    /// Opens a multi-line LIST or UIDL; its items are written by `pump_listing` under
    /// backpressure, so a huge maildrop's listing is never held in memory.
    fn listing(&mut self, r: Request) {
        let count = self.deleted.iter().filter(|d| !**d).count();
        let _ = self.server.begin_multiline(&format!("{count} messages"));
        self.listing = Some((matches!(r, Request::Uidl(_)), 0));
    }

    /// Writes listing items until the output reaches the high-water mark or the list ends.
    fn pump_listing(&mut self) {
        let Some((uidl, mut next)) = self.listing.take() else {
            return;
        };
        let Some(drop) = &self.maildrop else {
            let _ = self.server.end_multiline();
            return;
        };
        let infos = &drop.messages()[..self.visible];
        while next < infos.len() && self.server.writable() > 0 {
            let i = next;
            next += 1;
            let Ok(msg) = MsgNum::new(i as u32 + 1) else {
                continue;
            };
            if self.deleted[i] {
                continue;
            }
            let _ = if uidl {
                self.server.write_uid(&UidListing {
                    msg,
                    uid: infos[i].uid.clone(),
                })
            } else {
                self.server.write_scan(ScanListing {
                    msg,
                    size: infos[i].size,
                })
            };
        }
        if next >= infos.len() {
            let _ = self.server.end_multiline();
        } else {
            self.listing = Some((uidl, next));
        }
    }

    async fn open_body(&mut self, m: MsgNum, top: Option<u64>) {
        let Some(i) = self.live(m) else {
            return self.no_such_message(m);
        };
        let size = self.infos()[i].size;
        let opened = match self.maildrop.as_mut() {
            Some(d) => d.open_message(i, top).await,
            None => Err(StoreError::Temporary("no maildrop".into())),
        };
        match opened {
            Ok(reader) => {
                let text = match top {
                    None => format!("{size} octets"),
                    Some(_) => "Top of message follows".to_string(),
                };
                let _ = self.server.begin_multiline(&text);
                self.reader = Some(reader);
                self.retr = top.is_none().then_some(i);
                self.tracker.body_started(match top {
                    None => BodyCommand::Retr,
                    Some(_) => BodyCommand::Top,
                });
                if self.buf.is_empty() {
                    self.buf = vec![0; READ_CHUNK];
                }
                self.pending = 0..0;
            }
            Err(_) => self.err(Some(ResponseCode::SysTemp), "Cannot read message"),
        }
    }

    /// Moves one chunk from the reader into the machine, as far as it accepts.
    async fn pump_body(&mut self) {
        let Some(reader) = self.reader.as_mut() else {
            return;
        };
        if self.pending.is_empty() {
            match reader.read(&mut self.buf).await {
                Ok(0) => {
                    self.reader = None;
                    if let Some(i) = self.retr.take() {
                        self.retrieved[i] = true;
                    }
                    let _ = self.server.end_multiline();
                    self.tracker.body_done(self.backend.observer());
                    return;
                }
                Ok(n) => self.pending = 0..n,
                Err(_) => {
                    // The +OK is out: there is no way to report this but to end the session.
                    self.reader = None;
                    self.end(EndReason::StoreError);
                    return;
                }
            }
        }
        if let Ok(took) = self.server.write_body(&self.buf[self.pending.clone()]) {
            self.pending.start += took;
            self.tracker.body_sent(took);
        }
    }

    async fn commit(&mut self) {
        let Some(drop) = self.maildrop.take() else {
            let _ = self.server.reply(ok("Bye"));
            return;
        };
        // EXPIRE 0: what this session retrieved goes too, as if marked.
        let implicit = self.backend.policy.expire == Retention::RemoveRetrieved;
        let delete: Vec<usize> = (0..self.visible)
            .filter(|&i| self.deleted[i] || (implicit && self.retrieved[i]))
            .collect();
        let n = delete.len();
        match drop.commit(delete).await {
            Ok(()) => {
                self.tracker.committed(n, true);
                let _ = self.server.reply(ok(&format!("Bye, {n} messages deleted")));
            }
            Err(_) => {
                self.tracker.committed(n, false);
                self.err(
                    Some(ResponseCode::SysTemp),
                    "Some deleted messages not removed",
                )
            }
        }
    }
}

impl<A: Authenticator, S: MailStore> Drop for Session<A, S> {
    /// Reports the session's summary ([`Event::SessionEnded`](crate::observe::Event)), once,
    /// however it ended.
    fn drop(&mut self) {
        if !self.tracker.has_ended() {
            if self.server.is_closed() {
                // Closed, but the event not read yet (a timeout, then the driver's end).
                while let Some(ev) = self.server.poll_event() {
                    if let ServerEvent::Closed(reason) = ev {
                        self.tracker.ended(end_reason(reason));
                    }
                }
            } else {
                // Dropped while open: the connection broke (a reset, a failed write).
                self.tracker.ended(EndReason::Dropped);
            }
        }
        let marked = self.deleted.iter().filter(|d| **d).count();
        self.tracker.summary(self.backend.observer(), marked);
    }
}

/// The mechanism name and the user name as the client sent it, for the events.
fn login_names(req: &LoginRequest) -> (&str, std::borrow::Cow<'_, str>) {
    match req {
        LoginRequest::Pass { user, .. } => ("USER", String::from_utf8_lossy(user.as_bytes())),
        LoginRequest::Apop { user, .. } => ("APOP", String::from_utf8_lossy(user.as_bytes())),
        LoginRequest::Sasl {
            mechanism,
            identity,
        } => (mechanism.as_str(), identity.user.as_str().into()),
        _ => ("", "".into()),
    }
}

/// The user a SASL credential check is about.
fn credential_user(req: &pop3_proto::sasl::CredentialRequest) -> &str {
    use pop3_proto::sasl::CredentialRequest as R;
    match req {
        R::Password { user, .. }
        | R::CramMd5 { user, .. }
        | R::Scram { user }
        | R::Token { user, .. } => user,
        #[allow(unreachable_patterns)]
        _ => "",
    }
}

/// How many sessions each user has logged in ([`Policy::max_sessions_per_user`]).
#[derive(Debug, Default)]
struct UserSessions(Mutex<HashMap<String, usize>>);

impl UserSessions {
    /// A place for one more session of `user`, unless it has `limit` already.
    fn claim(this: &Arc<Self>, user: &str, limit: Option<usize>) -> Option<UserSlot> {
        let mut live = this.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = live.get(user).copied().unwrap_or(0);
        if limit.is_some_and(|max| n >= max) {
            return None;
        }
        live.insert(user.to_string(), n + 1);
        Some(UserSlot {
            sessions: this.clone(),
            user: user.to_string(),
        })
    }
}

/// One session's place among its user's sessions, given back on drop.
#[derive(Debug)]
struct UserSlot {
    sessions: Arc<UserSessions>,
    user: String,
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut live = self.sessions.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = live.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                live.remove(&self.user);
            }
        }
    }
}

/// `N` random octets from the operating system. Without a working random source a POP3 server
/// cannot make safe APOP timestamps and SASL nonces, so this is a fatal condition.
fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    b
}

/// `+OK text`; the texts here are fixed and valid, so the fallback (a bare `+OK`) never shows.
fn ok(text: &str) -> StatusLine {
    StatusLine::ok(text)
        .or_else(|_| StatusLine::ok(""))
        .unwrap_or_else(|_| StatusLine::err("").unwrap_or_else(|_| unreachable!()))
}
