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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use pop3_proto::server::SessionRules;
use pop3_proto::server::{LoginRequest, Request, Server, ServerConfig, ServerEvent};
use pop3_proto::{
    Capability, Expire, MsgNum, ResponseCode, ScanListing, Secret, Stat, StatusLine, Text,
    Timestamp, UidListing,
};

use crate::backend::*;

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
    /// enforced with `-ERR [LOGIN-DELAY]` (RFC 2449 §6.5, §8.1.1).
    pub login_delay: Option<u64>,
    /// The retention policy advertised as `EXPIRE` (RFC 2449 §6.7).
    pub expire: Option<Expire>,
    /// At most this many messages are listed per maildrop (the oldest first).
    pub max_messages: Option<usize>,
    /// At most this many octets of messages are listed per maildrop.
    pub max_maildrop_size: Option<u64>,
    /// `IMPLEMENTATION` text (advertised after login only).
    pub implementation: Option<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            greeting: "POP3 server ready".into(),
            hostname: "localhost".into(),
            apop: true,
            rules: SessionRules::default(),
            login_delay: None,
            expire: None,
            max_messages: None,
            max_maildrop_size: None,
            implementation: None,
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
}

impl<A: Authenticator, S: MailStore> Backend<A, S> {
    /// Joins the backends and the policy.
    pub fn new(auth: A, store: S, policy: Policy) -> Arc<Self> {
        Arc::new(Backend {
            auth,
            store,
            policy,
            last_login: Mutex::new(HashMap::new()),
            scram_fake_key: Secret::new(random::<32>().to_vec()),
        })
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
        c.expire = p.expire.map(|policy| Capability::Expire {
            policy,
            per_user: false,
        });
        c.implementation = p
            .implementation
            .as_ref()
            .and_then(|t| Text::new(t.as_bytes()).ok());
        c
    }

    /// Whether `user` logged in less than `LOGIN-DELAY` ago; records this login if not.
    fn login_too_soon(&self, user: &str, now: Instant) -> bool {
        let Some(delay) = self.policy.login_delay else {
            return false;
        };
        let mut last = self.last_login.lock().unwrap_or_else(|e| e.into_inner());
        match last.get(user) {
            Some(t) if now.saturating_duration_since(*t) < Duration::from_secs(delay) => true,
            _ => {
                last.insert(user.to_string(), now);
                false
            }
        }
    }
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
}

impl Connection {
    /// A plaintext connection, with `STLS` if `stls_available`.
    pub fn plain(stls_available: bool) -> Self {
        Connection {
            tls_active: false,
            stls_available,
            local_port: None,
        }
    }

    /// An implicit-TLS connection.
    pub fn tls() -> Self {
        Connection {
            tls_active: true,
            stls_available: false,
            local_port: None,
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
    reader: Option<ReaderOf<S>>,
    /// An open LIST/UIDL listing: whether it is UIDL, and the next index.
    listing: Option<(bool, usize)>,
    buf: Vec<u8>,
    /// Octets of `buf` read but not yet accepted by the machine.
    pending: std::ops::Range<usize>,
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
        Session {
            server: Server::new(config, now),
            backend,
            maildrop: None,
            visible: 0,
            deleted: Vec::new(),
            reader: None,
            listing: None,
            buf: Vec::new(),
            pending: 0..0,
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

    /// Ends the session now (server shutdown): nothing is committed, the lock is released.
    pub fn shutdown(&mut self) {
        self.server.close();
        self.release_if_closed();
    }

    fn release_if_closed(&mut self) {
        if self.server.is_closed() {
            // Dropping the maildrop releases its lock and applies nothing.
            self.reader = None;
            self.maildrop = None;
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
                    let answer = match self.backend.auth.sasl(&req).await {
                        Ok(a) => a,
                        // A backend failure must not read as "wrong password": fail the
                        // exchange as an unknown user would, and log it via the reply.
                        Err(_) => pop3_proto::sasl::CredentialAnswer::Verified(false),
                    };
                    let _ = self.server.sasl_answer(answer);
                }
                ServerEvent::Request(r) => self.request(r).await,
                ServerEvent::StartTls => step = Step::StartTls,
                ServerEvent::Closed(_) => self.release_if_closed(),
                _ => {}
            }
        }
        self.release_if_closed();
        step
    }

    async fn login(&mut self, req: LoginRequest, now: Instant) {
        let auth = &self.backend.auth;
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
        let user = match checked {
            Ok(Some(u)) => u,
            // Unknown user and wrong password give the same reply (RFC 1939 §13).
            Ok(None) => {
                let _ = self.server.reject_login(
                    Some(ResponseCode::Auth),
                    "Authentication failed",
                    now,
                );
                return;
            }
            Err(_) => {
                let _ = self.server.reject_login(
                    Some(ResponseCode::SysTemp),
                    "Authentication service unavailable",
                    now,
                );
                return;
            }
        };
        if self.backend.login_too_soon(&user, now) {
            let _ = self.server.reject_login(
                Some(ResponseCode::LoginDelay),
                "Logged in too recently",
                now,
            );
            return;
        }
        match self.backend.store.open(&user).await {
            Ok(drop) => {
                self.visible = self.visible_count(drop.messages());
                self.deleted = vec![false; self.visible];
                self.maildrop = Some(drop);
                let _ = self.server.accept_login();
            }
            Err(StoreError::InUse) => {
                let _ = self.server.reject_login(
                    Some(ResponseCode::InUse),
                    "Maildrop is locked by another session",
                    now,
                );
            }
            Err(StoreError::Permanent(_) | StoreError::NotFound) => {
                let _ = self.server.reject_login(
                    Some(ResponseCode::SysPerm),
                    "Maildrop not available",
                    now,
                );
            }
            Err(_) => {
                let _ = self.server.reject_login(
                    Some(ResponseCode::SysTemp),
                    "Maildrop temporarily unavailable",
                    now,
                );
            }
        }
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
                    let _ = self.server.end_multiline();
                    return;
                }
                Ok(n) => self.pending = 0..n,
                Err(_) => {
                    // The +OK is out: there is no way to report this but to end the session.
                    self.reader = None;
                    self.shutdown();
                    return;
                }
            }
        }
        if let Ok(took) = self.server.write_body(&self.buf[self.pending.clone()]) {
            self.pending.start += took;
        }
    }

    async fn commit(&mut self) {
        let Some(drop) = self.maildrop.take() else {
            let _ = self.server.reply(ok("Bye"));
            return;
        };
        let delete: Vec<usize> = (0..self.visible).filter(|&i| self.deleted[i]).collect();
        let n = delete.len();
        match drop.commit(delete).await {
            Ok(()) => {
                let _ = self.server.reply(ok(&format!("Bye, {n} messages deleted")));
            }
            Err(_) => self.err(
                Some(ResponseCode::SysTemp),
                "Some deleted messages not removed",
            ),
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
