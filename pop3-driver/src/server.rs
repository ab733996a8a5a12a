//! The one server driver: the connection loop around a
//! [`Session`] ([`run_session`]), and the accept loop with
//! its connection policy ([`serve`]), written once for every runtime.
//!
//! [`run_session`] reads with the session's deadline, feeds the session, writes what it emits
//! under backpressure (each batch of output must be taken within the idle timeout), runs the
//! TLS handshake for implicit TLS and after `STLS`, and ends the session on a stop: this is the
//! whole driver contract of `Session`, so an adapter never calls it itself.
//!
//! [`serve`] accepts from a [`Listener`], refuses connections past
//! [`ServerOptions::max_connections`] with the core's typed reply, starts each session with a
//! [`Spawn`], and on shutdown stops accepting, gives sessions
//! [`ServerOptions::shutdown_grace`] to end, then stops the rest (no UPDATE).
//!
//! An adapter supplies the four small pieces: a [`Transport`], a [`Timer`], a [`Listener`] and
//! a [`Spawn`]. See `pop3-tokio`, `pop3-futures`, `pop3-blocking`, and the hand-written
//! adapter in `pop3-driver/examples/` ("bring your own runtime").

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use pop3_proto::server::Refusal;
use pop3_server_core::backend::{Authenticator, MailStore};
use pop3_server_core::session::{Backend, Connection, Session, Step};

use crate::io::{Stop, Timer, Transport, Wake};
use crate::link::{HandshakeError, Link};

/// Accept-loop options, the same for every runtime.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Most connections served at once; more are answered `-ERR [SYS/TEMP]` and closed.
    pub max_connections: usize,
    /// A TLS configuration makes plain listeners offer `STLS`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// After shutdown is requested, how long sessions may go on before they are ended
    /// (without UPDATE).
    pub shutdown_grace: Duration,
    /// How long a TLS handshake may take (incomplete handshakes must not pin connections:
    /// CVE-2014-3430).
    pub handshake_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: 1024,
            tls: None,
            shutdown_grace: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(30),
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
    fn connection(&self, local_port: Option<u16>) -> Connection {
        let mut c = match self.implicit {
            Some(_) => Connection::tls(),
            None => Connection::plain(self.stls.is_some()),
        };
        c.local_port = local_port;
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
/// that did not `QUIT` commits nothing, whatever ended it.
///
/// Returns `Ok(())` for every orderly end (QUIT, the client closing, an autologout, a stop,
/// a TLS handshake the client abandoned) and the error for a failed read or write (a reset
/// connection) or a TLS protocol failure; in every case the maildrop is released.
pub async fn run_session<T: Transport, A: Authenticator, S: MailStore>(
    io: T,
    backend: Arc<Backend<A, S>>,
    tls: SessionTls,
    local_port: Option<u16>,
    stop: &Stop,
) -> io::Result<()> {
    if let Some(interrupt) = io.interrupter() {
        stop.on_trigger(interrupt);
    }
    let mut link = Link::new(io);
    if let Some(cfg) = &tls.implicit
        && let Err(e) = accept_tls(&mut link, cfg, tls.handshake_timeout, stop).await
    {
        link.close().await;
        return handshake_result(e);
    }
    let idle = backend.policy.rules.idle_timeout;
    let mut session = Session::new(backend, &tls.connection(local_port), Instant::now());
    let mut out = Vec::new();
    loop {
        let step = session.process(Instant::now()).await;
        out.clear();
        session.poll_transmit(Instant::now(), &mut out);
        if !out.is_empty() {
            // A client that never reads must not pin the session: each batch of output must
            // be taken within the idle timeout. Late is as bad as never: a write that
            // completes past the deadline (a client reading a byte a second) ends it too.
            let deadline = Instant::now() + idle;
            match link.send(&out, deadline, stop).await? {
                Wake::Ready if Instant::now() < deadline => {}
                Wake::Stopped => session.shutdown(),
                _ => return Ok(()),
            }
        }
        if step == Step::StartTls && !session.is_closed() {
            let Some(cfg) = &tls.stls else {
                return Ok(());
            };
            if let Err(e) = accept_tls(&mut link, cfg, tls.handshake_timeout, stop).await {
                link.close().await;
                return handshake_result(e);
            }
            session.tls_established();
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
                    session.shutdown();
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
            Wake::Stopped => session.shutdown(),
        }
    }
}

// -------------------------------------------------------------------------------------------
// The accept loop

/// Where connections come from: what a runtime's TCP listener provides.
pub trait Listener {
    /// An accepted connection.
    type Io: Transport;

    /// Waits for the next connection. `Ok(None)` means none yet: a listener that cannot wait
    /// for a connection and a shutdown at once (a blocking one) returns now and then, so the
    /// loop sees the shutdown.
    fn accept(&mut self) -> impl Future<Output = io::Result<Option<Self::Io>>>;

    /// The local port (OAUTHBEARER checks it).
    fn local_port(&self) -> Option<u16>;
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
            stop,
            _admitted,
        } = self;
        run_session(io, backend, tls, local_port, &stop).await
    }
}

/// The sessions a server runs: each has its own stop, for the shutdown.
#[derive(Default)]
struct Registry {
    live: Mutex<HashMap<u64, Stop>>,
    next: AtomicU64,
}

/// A session's place in the [`Registry`], given back on drop.
struct Admitted {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        lock(&self.registry.live).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    /// A place for one more session, if fewer than `max` run.
    fn admit(self: &Arc<Self>, max: usize) -> Option<(Admitted, Stop)> {
        let mut live = lock(&self.live);
        if live.len() >= max {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let stop = Stop::new();
        live.insert(id, stop.clone());
        Some((
            Admitted {
                registry: self.clone(),
                id,
            },
            stop,
        ))
    }

    fn len(&self) -> usize {
        lock(&self.live).len()
    }

    fn stop_all(&self) {
        let stops: Vec<Stop> = lock(&self.live).values().cloned().collect();
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
/// Past [`ServerOptions::max_connections`], a newcomer on a plain listener gets the core's
/// `-ERR [SYS/TEMP]` refusal ([`Refusal::TooManyConnections`]) and is closed; on an implicit-TLS
/// listener it is closed at once (a plaintext reply there would only break the client's
/// handshake). On shutdown it stops accepting, lets sessions end for
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
        let io = match accepted {
            None => break,
            Some(Ok(Some(io))) => io,
            Some(Ok(None)) => continue,
            // Out of descriptors and the like: pause, keep serving the others.
            Some(Err(_)) => {
                timer
                    .sleep_until(Instant::now() + Duration::from_millis(50))
                    .await;
                continue;
            }
        };
        match registry.admit(options.max_connections) {
            Some((admitted, stop)) => spawner.spawn(SessionTask {
                io,
                backend: backend.clone(),
                tls: tls.clone(),
                local_port,
                stop,
                _admitted: admitted,
            }),
            None => refuse(io, Refusal::TooManyConnections, implicit_tls.is_some()).await,
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
