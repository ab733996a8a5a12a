//! The one server driver: the connection loop around a
//! [`Session`] ([`run_session`]), and the accept loop with
//! its connection policy ([`serve`]), written once for every runtime.
//!
//! [`run_session`] reads with the session's deadline, feeds the session, writes what it emits
//! under backpressure (each batch of output must be taken within the idle timeout), runs the
//! TLS handshake for implicit TLS and after `STLS`, and ends the session on a stop: this is the
//! whole driver contract of `Session`, so an adapter never calls it itself.
//!
//! [`serve`] accepts from a [`Listener`], applies the limits before login (below), starts
//! each session with a [`Spawn`], and on shutdown stops accepting, gives sessions
//! [`ServerOptions::shutdown_grace`] to end, then stops the rest (no UPDATE).
//!
//! ## Limits before login
//!
//! A connection that has not logged in costs the server as much as one that has, and costs
//! its client nothing: the limits below keep such connections from locking everyone out,
//! written here once for every runtime.
//!
//! - **Login timeout**: a session that has not logged in
//!   [`SessionRules::login_timeout`](pop3_server_core::session::SessionRules::login_timeout)
//!   (60 s) after its connection was accepted is closed, TLS handshake included (the session's
//!   own timer, so a hand-written driver gets it too).
//! - **Per address**: at most [`ServerOptions::max_unauthenticated_per_ip`] (32) connections
//!   from one IP address (IPv6: one /64) that have not logged in; a newcomer past it is
//!   refused with the core's `-ERR [SYS/TEMP]` ([`Refusal::TooManyFromAddress`]).
//! - **Full listener**: when [`ServerOptions::max_connections`] run, the oldest connection
//!   that has not logged in is stopped to make room for the newcomer (reported as
//!   [`Event::Evicted`]); only when every session
//!   has logged in is the newcomer refused ([`Refusal::TooManyConnections`]). A session that
//!   has logged in is never evicted.
//! - **Per user**: at most
//!   [`Policy::max_sessions_per_user`](pop3_server_core::session::Policy::max_sessions_per_user)
//!   (10) sessions of one user at once, enforced by the session at login (`-ERR [IN-USE]`).
//!
//! An adapter supplies the four small pieces: a [`Transport`], a [`Timer`], a [`Listener`] and
//! a [`Spawn`]. See `pop3-tokio`, `pop3-futures`, `pop3-blocking`, and the hand-written
//! adapter in `pop3-driver/examples/` ("bring your own runtime").

use std::collections::{BTreeMap, HashMap};
use std::future::{Future, poll_fn};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use pop3_proto::server::{Refusal, ServerState};
use pop3_server_core::backend::{Authenticator, MailStore};
use pop3_server_core::observe::{
    ConnectionInfo, EndReason, Event, RefusalReason, TlsFailure, TlsFailureKind,
};
use pop3_server_core::session::{Backend, Connection, Session, Step};

use crate::io::{Stop, Timer, Transport, Wake};
use crate::link::{HandshakeError, Link};

/// Accept-loop options, the same for every runtime.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Most connections served at once (1024 by default). When they all run, the oldest
    /// that has not logged in is stopped to make room for a newcomer; when every one has
    /// logged in, the newcomer is answered `-ERR [SYS/TEMP]` and closed. See the
    /// [module docs](self#limits-before-login).
    pub max_connections: usize,
    /// A TLS configuration makes plain listeners offer `STLS`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// After shutdown is requested, how long sessions may go on before they are ended
    /// (without UPDATE).
    pub shutdown_grace: Duration,
    /// How long a TLS handshake may take (incomplete handshakes must not pin connections:
    /// CVE-2014-3430).
    pub handshake_timeout: Duration,
    /// Most connections from one IP address that have not logged in, at once, on this
    /// listener (32 by default); past it, a newcomer from that address is refused
    /// ([`Refusal::TooManyFromAddress`]). Logged-in sessions do not count. An IPv6 client
    /// is counted by its /64 network (one host or site has all of it).
    pub max_unauthenticated_per_ip: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: 1024,
            tls: None,
            shutdown_grace: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(30),
            max_unauthenticated_per_ip: 32,
        }
    }
}

/// TLS for one session: from the first byte, and/or offered through `STLS`.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SessionTls {
    /// Implicit TLS (RFC 8314): the handshake runs before the greeting.
    pub implicit: Option<Arc<rustls::ServerConfig>>,
    /// The configuration `STLS` upgrades to (plain connections only).
    pub stls: Option<Arc<rustls::ServerConfig>>,
    /// How long a handshake may take.
    pub handshake_timeout: Duration,
}

impl SessionTls {
    /// Plain text, offering `STLS` when `stls` is given.
    pub fn plain(stls: Option<Arc<rustls::ServerConfig>>) -> Self {
        SessionTls {
            implicit: None,
            stls,
            handshake_timeout: ServerOptions::default().handshake_timeout,
        }
    }

    /// Implicit TLS with `config`.
    pub fn implicit(config: Arc<rustls::ServerConfig>) -> Self {
        SessionTls {
            implicit: Some(config),
            stls: None,
            handshake_timeout: ServerOptions::default().handshake_timeout,
        }
    }

    /// What the session needs to know of it.
    fn connection(&self, local_port: Option<u16>, peer: Option<SocketAddr>) -> Connection {
        let mut c = match self.implicit {
            Some(_) => Connection::tls(),
            None => Connection::plain(self.stls.is_some()),
        };
        c.local_port = local_port;
        c.peer = peer;
        c
    }
}

fn handshake_result(e: HandshakeError) -> io::Result<()> {
    match e {
        HandshakeError::Io(e) => Err(e),
        HandshakeError::Tls(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        // The peer went away, took too long, or the server stopped: an orderly end.
        _ => Ok(()),
    }
}

async fn accept_tls<T: Transport>(
    link: &mut Link<T>,
    config: &Arc<rustls::ServerConfig>,
    limit: Duration,
    stop: &Stop,
) -> Result<(), HandshakeError> {
    let conn = rustls::ServerConnection::new(config.clone()).map_err(HandshakeError::Tls)?;
    link.handshake(conn.into(), Instant::now() + limit, stop)
        .await
}

/// Runs one session over an accepted connection until it ends: the driver loop. A session
/// that did not `QUIT` commits nothing, whatever ended it. The session's login timeout
/// ([`SessionRules::login_timeout`](pop3_server_core::session::SessionRules::login_timeout))
/// counts from the call, TLS handshake included. `local_port` and `peer` (the
/// client's address) reach the session as [`Connection::local_port`] and
/// [`Connection::peer`].
///
/// Returns `Ok(())` for every orderly end (QUIT, the client closing, an autologout, a stop,
/// a TLS handshake the client abandoned) and the error for a failed read or write (a reset
/// connection) or a TLS protocol failure; in every case the maildrop is released.
pub async fn run_session<T: Transport, A: Authenticator, S: MailStore>(
    io: T,
    backend: Arc<Backend<A, S>>,
    tls: SessionTls,
    local_port: Option<u16>,
    peer: Option<SocketAddr>,
    stop: &Stop,
) -> io::Result<()> {
    drive(io, backend, tls, local_port, (peer, None), stop, None).await
}

/// [`run_session`], telling the accept loop's `slot` when the session has logged in.
/// `(peer, local)` are the client's and the listener's addresses.
async fn drive<T: Transport, A: Authenticator, S: MailStore>(
    io: T,
    backend: Arc<Backend<A, S>>,
    tls: SessionTls,
    local_port: Option<u16>,
    (peer, local): (Option<SocketAddr>, Option<SocketAddr>),
    stop: &Stop,
    slot: Option<&Admitted>,
) -> io::Result<()> {
    let (mut not_logged_in, admitted) = (slot, slot);
    // A stop ends the session: evicted to make room, or the server's shutdown.
    let stopped = || match admitted {
        Some(a) if a.is_evicted() => EndReason::Evicted,
        _ => EndReason::Shutdown,
    };
    let connected = Instant::now();
    // Accepted now, Closed when this returns (after the session's own last event).
    let mut report = Reported::new(
        backend.clone(),
        ConnectionInfo::new(peer, local, tls.implicit.is_some()),
    );
    if let Some(interrupt) = io.interrupter() {
        stop.on_trigger(interrupt);
    }
    // A handshake ends by the login timeout too: it is part of the time to log in.
    let login_by = connected.checked_add(backend.policy.rules.login_timeout);
    let handshake_limit = |now: Instant| {
        let left = login_by.map_or(Duration::MAX, |t| t.saturating_duration_since(now));
        tls.handshake_timeout.min(left)
    };
    let mut link = Link::new(io);
    if let Some(cfg) = &tls.implicit {
        if let Err(e) = Box::pin(accept_tls(&mut link, cfg, handshake_limit(connected), stop)).await
        {
            report.tls_failed(false, &e);
            link.close().await;
            return handshake_result(e);
        }
        report.info = report.info.with_tls_version(tls_version(&link));
    }
    let idle = backend.policy.rules.idle_timeout;
    // In a block: nothing but the session and what the loop needs may live across its
    // awaits, as every byte of this future is held by every session for its whole life.
    let mut session = {
        let mut conn = tls.connection(local_port, peer);
        conn.local = local;
        conn.tls_version = report.info.tls_version;
        Session::new(backend, &conn, connected)
    };
    let mut out = Vec::new();
    loop {
        let step = session.process(Instant::now()).await;
        if let Some(s) = not_logged_in.take_if(|_| {
            matches!(
                session.server().state(),
                ServerState::Transaction | ServerState::Update
            )
        }) {
            s.logged_in();
        }
        out.clear();
        session.poll_transmit(Instant::now(), &mut out);
        if !out.is_empty() {
            // A client that never reads must not pin the session: each batch of output must
            // be taken within the idle timeout. Late is as bad as never: a write that
            // completes past the deadline (a client reading a byte a second) ends it too.
            let deadline = Instant::now() + idle;
            match link.send(&out, deadline, stop).await? {
                Wake::Ready if Instant::now() < deadline => {}
                Wake::Stopped => session.end(stopped()),
                _ => return Ok(()),
            }
        }
        if step == Step::StartTls && !session.is_closed() {
            let Some(cfg) = &tls.stls else {
                return Ok(());
            };
            let limit = handshake_limit(Instant::now());
            // Boxed: a handshake's future (rustls' connection state) is needed once, not
            // for the session's life.
            if let Err(e) = Box::pin(accept_tls(&mut link, cfg, limit, stop)).await {
                report.tls_failed(true, &e);
                link.close().await;
                return handshake_result(e);
            }
            session.tls_established();
            let version = tls_version(&link);
            session.set_tls_version(version);
            report.info = report.info.with_tls_version(version);
            report.event(&Event::TlsStarted(&report.info));
            continue;
        }
        if session.is_closed() {
            link.close().await;
            return Ok(());
        }
        if !out.is_empty() || session.is_streaming() {
            // Output drained: the session may have more to write right away.
            continue;
        }
        // Waiting for the client: hold no buffer sized for a past burst.
        if out.capacity() > 4096 {
            out = Vec::new();
        }
        link.shrink();
        session.shrink();
        let deadline = session.poll_timeout();
        let wake = if session.wants_input() {
            let now = Instant::now();
            match link
                .recv(&[], deadline, stop, |data| session.handle_input(data, now))
                .await
            {
                Ok(w) => w,
                Err(e) => {
                    // A reset or a TLS failure: the session ends without UPDATE.
                    session.end(EndReason::Dropped);
                    return Err(e);
                }
            }
        } else {
            link.sleep_until(deadline, stop).await
        };
        match wake {
            Wake::Ready => {}
            Wake::Eof => session.handle_eof(Instant::now()),
            Wake::Timeout => session.handle_timeout(Instant::now()),
            Wake::Stopped => session.end(stopped()),
        }
    }
}

/// Reports a connection to the backend's observer: [`Event::Accepted`] when made,
/// [`Event::Closed`] when dropped (declared before the session, so dropped after it).
struct Reported<A: Authenticator, S: MailStore> {
    backend: Arc<Backend<A, S>>,
    info: ConnectionInfo,
}

impl<A: Authenticator, S: MailStore> Reported<A, S> {
    fn new(backend: Arc<Backend<A, S>>, info: ConnectionInfo) -> Self {
        backend.observer().event(&Event::Accepted(&info));
        Reported { backend, info }
    }

    fn event(&self, event: &Event<'_>) {
        self.backend.observer().event(event);
    }

    /// A failed handshake (not one the server stopped).
    fn tls_failed(&self, stls: bool, e: &HandshakeError) {
        let (kind, error): (_, Option<&dyn std::error::Error>) = match e {
            HandshakeError::Tls(e) => (TlsFailureKind::Protocol, Some(e)),
            HandshakeError::Io(e) => (TlsFailureKind::Io, Some(e)),
            HandshakeError::Closed => (TlsFailureKind::Closed, None),
            HandshakeError::Timeout => (TlsFailureKind::Timeout, None),
            _ => return,
        };
        let mut failure = TlsFailure::new(&self.info, stls, kind);
        if let Some(error) = error {
            failure = failure.with_error(error);
        }
        self.event(&Event::TlsFailed(&failure));
    }
}

impl<A: Authenticator, S: MailStore> Drop for Reported<A, S> {
    fn drop(&mut self) {
        self.backend.observer().event(&Event::Closed(&self.info));
    }
}

/// The name of the TLS version the link negotiated, for the events.
fn tls_version<T>(link: &Link<T>) -> Option<&'static str> {
    match link.tls_version()? {
        rustls::ProtocolVersion::TLSv1_3 => Some("TLSv1.3"),
        rustls::ProtocolVersion::TLSv1_2 => Some("TLSv1.2"),
        _ => None,
    }
}

// -------------------------------------------------------------------------------------------
// The accept loop

/// A connection a [`Listener`] accepted: its transport and the client's address.
#[derive(Debug)]
#[non_exhaustive]
pub struct Accepted<T> {
    /// The connection.
    pub io: T,
    /// The client's address (`None` when the transport has none, e.g. a Unix socket): the
    /// session sees it as [`Connection::peer`], and the per-address limit of [`serve`]
    /// ([`ServerOptions::max_unauthenticated_per_ip`]) counts by its IP.
    pub peer: Option<SocketAddr>,
}

impl<T> Accepted<T> {
    /// A connection `io` from `peer`.
    pub fn new(io: T, peer: Option<SocketAddr>) -> Self {
        Accepted { io, peer }
    }
}

/// Where connections come from: what a runtime's TCP listener provides.
pub trait Listener {
    /// An accepted connection.
    type Io: Transport;

    /// Waits for the next connection, and gives it with the client's address. `Ok(None)`
    /// means none yet: a listener that cannot wait for a connection and a shutdown at once (a
    /// blocking one) returns now and then, so the loop sees the shutdown.
    fn accept(&mut self) -> impl Future<Output = io::Result<Option<Accepted<Self::Io>>>>;

    /// The local port (OAUTHBEARER checks it).
    fn local_port(&self) -> Option<u16>;

    /// The address it listens on, for the observer's events (`None` by default).
    fn local_addr(&self) -> Option<SocketAddr> {
        None
    }
}

/// How a runtime starts a session: run [`SessionTask::run`] to completion, on a task or a
/// thread of its own.
pub trait Spawn<T, A, S> {
    /// Starts it; must not wait for it.
    fn spawn(&self, task: SessionTask<T, A, S>);
}

/// One accepted connection, ready to run: what [`serve`] hands to a [`Spawn`].
pub struct SessionTask<T, A, S> {
    io: T,
    backend: Arc<Backend<A, S>>,
    tls: SessionTls,
    local_port: Option<u16>,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    stop: Stop,
    _admitted: Admitted,
}

impl<T, A, S> std::fmt::Debug for SessionTask<T, A, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTask").finish_non_exhaustive()
    }
}

impl<T: Transport, A: Authenticator, S: MailStore> SessionTask<T, A, S> {
    /// Runs the session (see [`run_session`]); the server counts it until this returns.
    pub async fn run(self) -> io::Result<()> {
        let SessionTask {
            io,
            backend,
            tls,
            local_port,
            peer,
            local,
            stop,
            _admitted: admitted,
        } = self;
        let addrs = (peer, local);
        drive(io, backend, tls, local_port, addrs, &stop, Some(&admitted)).await
    }
}

/// The sessions a server runs, oldest first: each with its own stop (for the shutdown, and
/// to evict it), its client's IP, and whether it has logged in.
#[derive(Default)]
struct Registry {
    live: Mutex<Live>,
}

#[derive(Default)]
struct Live {
    /// By id, which grows: the first is the oldest.
    sessions: BTreeMap<u64, Entry>,
    /// Sessions neither logged in nor evicted, per client IP.
    unauthenticated: HashMap<IpAddr, usize>,
    /// Sessions evicted that have not ended yet (they no longer count as running).
    evicted: usize,
    next: u64,
}

struct Entry {
    stop: Stop,
    peer: Option<SocketAddr>,
    state: EntryState,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum EntryState {
    Unauthenticated,
    LoggedIn,
    Evicted,
}

/// What [`Registry::admit`] decided for a newcomer.
enum Admission {
    /// A place, with the session's stop; and the client of the session evicted to make it.
    Admitted(Admitted, Stop, Option<Evicted>),
    /// No place.
    Refused(Refusal),
}

/// A session stopped to make room: its client's address, and its stop, to trigger once the
/// registry is unlocked.
struct Evicted {
    peer: Option<SocketAddr>,
    stop: Stop,
}

/// A session's place in the [`Registry`], given back on drop.
struct Admitted {
    registry: Arc<Registry>,
    id: u64,
}

impl Admitted {
    /// Whether the session was evicted to make room.
    fn is_evicted(&self) -> bool {
        let live = lock(&self.registry.live);
        live.sessions
            .get(&self.id)
            .is_some_and(|e| e.state == EntryState::Evicted)
    }

    /// The session has logged in: it no longer counts against its address, and is never
    /// evicted.
    fn logged_in(&self) {
        let mut live = lock(&self.registry.live);
        let Live {
            sessions,
            unauthenticated,
            ..
        } = &mut *live;
        if let Some(e) = sessions.get_mut(&self.id)
            && e.state == EntryState::Unauthenticated
        {
            e.state = EntryState::LoggedIn;
            forget(unauthenticated, e.peer);
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut live = lock(&self.registry.live);
        if let Some(e) = live.sessions.remove(&self.id) {
            match e.state {
                EntryState::Unauthenticated => forget(&mut live.unauthenticated, e.peer),
                EntryState::Evicted => live.evicted -= 1,
                EntryState::LoggedIn => {}
            }
        }
    }
}

/// The address a client is counted by: its IPv4 address (also when it reached an IPv6
/// socket), or its IPv6 /64 network, which one host or site holds as a whole (counting each
/// of its 2^64 addresses apart would be no limit).
fn ip_of(peer: Option<SocketAddr>) -> Option<IpAddr> {
    peer.map(|p| match p.ip().to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    })
}

/// One unauthenticated session of `peer` fewer.
fn forget(counts: &mut HashMap<IpAddr, usize>, peer: Option<SocketAddr>) {
    if let Some(ip) = ip_of(peer)
        && let Some(n) = counts.get_mut(&ip)
    {
        *n -= 1;
        if *n == 0 {
            counts.remove(&ip);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    /// Admits a newcomer from `peer` under `options`' limits: refused if its address has
    /// its most unauthenticated sessions; if `max_connections` run, the oldest session that
    /// has not logged in is evicted to make room, and only if there is none is the newcomer
    /// refused. Sessions evicted but not yet ended do not count, up to `max_connections` of
    /// them (evicted sessions busy in a backend call must not pile up without bound).
    fn admit(self: &Arc<Self>, peer: Option<SocketAddr>, options: &ServerOptions) -> Admission {
        let mut live = lock(&self.live);
        let Live {
            sessions,
            unauthenticated,
            evicted,
            next,
        } = &mut *live;
        let ip = ip_of(peer);
        if let Some(ip) = ip
            && unauthenticated.get(&ip).copied().unwrap_or(0) >= options.max_unauthenticated_per_ip
        {
            return Admission::Refused(Refusal::TooManyFromAddress);
        }
        let mut made_room = None;
        if sessions.len() - *evicted >= options.max_connections {
            let oldest = (*evicted < options.max_connections)
                .then(|| {
                    sessions
                        .values_mut()
                        .find(|e| e.state == EntryState::Unauthenticated)
                })
                .flatten();
            let Some(e) = oldest else {
                return Admission::Refused(Refusal::TooManyConnections);
            };
            e.state = EntryState::Evicted;
            *evicted += 1;
            forget(unauthenticated, e.peer);
            made_room = Some(Evicted {
                peer: e.peer,
                stop: e.stop.clone(),
            });
        }
        let id = *next;
        *next += 1;
        let stop = Stop::new();
        let entry = Entry {
            stop: stop.clone(),
            peer,
            state: EntryState::Unauthenticated,
        };
        sessions.insert(id, entry);
        if let Some(ip) = ip {
            *unauthenticated.entry(ip).or_default() += 1;
        }
        let admitted = Admitted {
            registry: self.clone(),
            id,
        };
        Admission::Admitted(admitted, stop, made_room)
    }

    fn len(&self) -> usize {
        lock(&self.live).sessions.len()
    }

    fn stop_all(&self) {
        let stops: Vec<Stop> = lock(&self.live)
            .sessions
            .values()
            .map(|e| e.stop.clone())
            .collect();
        for s in stops {
            s.trigger();
        }
    }
}

/// How often the shutdown checks whether the sessions have ended.
const SHUTDOWN_POLL: Duration = Duration::from_millis(20);

/// Waits until the registry is empty or `until` passes.
async fn drain<Tm: Timer>(registry: &Registry, timer: &Tm, until: Option<Instant>) {
    while registry.len() > 0 {
        let now = Instant::now();
        if until.is_some_and(|u| now >= u) {
            return;
        }
        let next = now + SHUTDOWN_POLL;
        timer.sleep_until(until.map_or(next, |u| u.min(next))).await;
    }
}

/// Serves POP3 on `listener` until `shutdown` completes: implicit TLS when `implicit_tls`
/// is set, otherwise plain text with `STLS` when `options.tls` is set.
///
/// The limits before login are applied as the [module docs](self#limits-before-login) say: a
/// newcomer past one of them gets, on a plain listener, the core's `-ERR [SYS/TEMP]` refusal
/// ([`Refusal::TooManyFromAddress`], [`Refusal::TooManyConnections`]) and is closed; on an
/// implicit-TLS listener it is closed at once (a plaintext reply there would only break the
/// client's handshake). Each refusal and eviction is reported to the backend's observer
/// ([`Event::Refused`], [`Event::Evicted`]). On shutdown it stops accepting, lets sessions end for
/// [`ServerOptions::shutdown_grace`], then stops the rest; a session that did not `QUIT`
/// commits nothing.
pub async fn serve<L, Sp, Tm, A, S>(
    mut listener: L,
    spawner: Sp,
    timer: Tm,
    backend: Arc<Backend<A, S>>,
    implicit_tls: Option<Arc<rustls::ServerConfig>>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    L: Listener,
    Sp: Spawn<L::Io, A, S>,
    Tm: Timer,
    A: Authenticator,
    S: MailStore,
{
    let registry = Arc::new(Registry::default());
    let local_port = listener.local_port();
    let local = listener.local_addr();
    let tls = match &implicit_tls {
        Some(cfg) => SessionTls::implicit(cfg.clone()),
        None => SessionTls::plain(options.tls.clone()),
    };
    let tls = SessionTls {
        handshake_timeout: options.handshake_timeout,
        ..tls
    };
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = {
            let mut accept = pin!(listener.accept());
            poll_fn(|cx| {
                if shutdown.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                accept.as_mut().poll(cx).map(Some)
            })
            .await
        };
        let Accepted { io, peer } = match accepted {
            None => break,
            Some(Ok(Some(a))) => a,
            Some(Ok(None)) => continue,
            // Out of descriptors and the like: pause, keep serving the others.
            Some(Err(_)) => {
                timer
                    .sleep_until(Instant::now() + Duration::from_millis(50))
                    .await;
                continue;
            }
        };
        let implicit = implicit_tls.is_some();
        match registry.admit(peer, &options) {
            Admission::Admitted(admitted, stop, evicted) => {
                if let Some(old) = evicted {
                    // Stopped like at a shutdown: it ends without UPDATE (it has no maildrop).
                    old.stop.trigger();
                    let info = ConnectionInfo::new(old.peer, local, implicit);
                    backend.observer().event(&Event::Evicted(&info));
                }
                spawner.spawn(SessionTask {
                    io,
                    backend: backend.clone(),
                    tls: tls.clone(),
                    local_port,
                    peer,
                    local,
                    stop,
                    _admitted: admitted,
                });
            }
            Admission::Refused(why) => {
                let reason = match why {
                    Refusal::TooManyFromAddress => RefusalReason::TooManyFromAddress,
                    _ => RefusalReason::TooManyConnections,
                };
                let info = ConnectionInfo::new(peer, local, implicit);
                backend.observer().event(&Event::Refused(&info, reason));
                refuse(io, why, implicit).await;
            }
        }
    }
    drop(listener);
    drain(
        &registry,
        &timer,
        Some(Instant::now() + options.shutdown_grace),
    )
    .await;
    registry.stop_all();
    drain(&registry, &timer, None).await;
    Ok(())
}

/// Answers a connection that will not get a session, and closes it.
async fn refuse<T: Transport>(mut io: T, why: Refusal, implicit_tls: bool) {
    if !implicit_tls {
        let mut line = Vec::new();
        why.encode(&mut line);
        // A fresh socket's send buffer takes one line at once; the deadline only guards.
        let deadline = Instant::now() + Duration::from_secs(1);
        let _ = io.write_all(&line, deadline, &Stop::never()).await;
    }
    io.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_counted_by_ipv4_address_or_ipv6_64() {
        let ip = |s: &str| ip_of(Some(s.parse().unwrap())).unwrap().to_string();
        assert_eq!(ip("192.0.2.7:1110"), "192.0.2.7");
        assert_eq!(ip("[::ffff:192.0.2.7]:1110"), "192.0.2.7");
        assert_eq!(
            ip("[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:1110"),
            "2001:db8:1:2::"
        );
        assert_eq!(ip("[2001:db8:1:2::1]:1"), ip("[2001:db8:1:2:ffff::9]:2"));
        assert_ne!(ip("[2001:db8:1:2::1]:1"), ip("[2001:db8:1:3::1]:1"));
        assert_eq!(ip_of(None), None);
    }
}
