//! The POP3 server over futures-io streams: the driver's accept loop over any [`Listener`],
//! on a multi-threaded [`Runtime`] ([`serve`]) or on one thread with `!Send` streams
//! ([`serve_local`]), and its session loop ([`run_connection`]).
//!
//! ```no_run
//! # #[cfg(feature = "smol")]
//! # fn demo() -> std::io::Result<()> { smol::block_on(async {
//! use pop3_futures::Smol;
//! use pop3_futures::pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
//! use pop3_futures::pop3_server_core::session::{Backend, Policy};
//! use pop3_futures::server::{ServerOptions, serve};
//!
//! let store = MemoryStore::new();
//! store.add_message("alice", "m1", b"Subject: hi\r\n\r\nHello\r\n");
//! let mut policy = Policy::default();
//! policy.rules.plaintext_auth = true; // loopback demo without TLS
//! let backend = Backend::new(MemoryAuthenticator::new().with_user("alice", "pw"), store, policy);
//! let listener = smol::net::TcpListener::bind("127.0.0.1:1110").await?;
//! serve(listener, backend, None, ServerOptions::default(), Smol, std::future::pending()).await
//! # }) }
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_io::{AsyncRead, AsyncWrite};
use pop3_driver::server::{self as driver, SessionTask, SessionTls};
use pop3_driver::{AsyncIo, Stop, Timer};
use pop3_server_core::backend::{Authenticator, MailStore};
use pop3_server_core::session::Backend;

use crate::{LocalRuntime, Runtime};

pub use pop3_driver::server::{Accepted, ServerOptions};

/// A source of accepted connections: what a runtime's TCP listener provides.
pub trait Listener: 'static {
    /// An accepted connection (set `TCP_NODELAY` on it).
    type Stream: AsyncRead + AsyncWrite + Unpin + 'static;

    /// Waits for the next connection, and gives it with the client's address
    /// ([`Accepted::new`]; `None` when the stream has none).
    fn accept(&self) -> impl Future<Output = io::Result<Accepted<Self::Stream>>>;

    /// The local port, for OAUTHBEARER checks.
    fn local_port(&self) -> Option<u16> {
        None
    }

    /// The address it listens on, for the observer's events.
    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        None
    }
}

#[cfg(feature = "smol")]
impl Listener for smol::net::TcpListener {
    type Stream = smol::net::TcpStream;

    async fn accept(&self) -> io::Result<Accepted<smol::net::TcpStream>> {
        let (s, peer) = smol::net::TcpListener::accept(self).await?;
        let _ = s.set_nodelay(true);
        Ok(Accepted::new(s, Some(peer)))
    }

    fn local_port(&self) -> Option<u16> {
        smol::net::TcpListener::local_addr(self)
            .ok()
            .map(|a| a.port())
    }

    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        smol::net::TcpListener::local_addr(self).ok()
    }
}

struct Accepting<L, R>(L, R);

impl<L: Listener, R: Timer + Clone> driver::Listener for Accepting<L, R> {
    type Io = AsyncIo<L::Stream, R>;

    async fn accept(&mut self) -> io::Result<Option<Accepted<Self::Io>>> {
        let a = self.0.accept().await?;
        Ok(Some(Accepted::new(
            AsyncIo::new(a.io, self.1.clone()),
            a.peer,
        )))
    }

    fn local_port(&self) -> Option<u16> {
        self.0.local_port()
    }

    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.0.local_addr()
    }
}

/// Sessions as tasks of a multi-threaded runtime.
struct Tasks<R>(R);

impl<St, R, A, S> driver::Spawn<AsyncIo<St, R>, A, S> for Tasks<R>
where
    St: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: Runtime,
    A: Authenticator,
    S: MailStore,
{
    fn spawn(&self, task: SessionTask<AsyncIo<St, R>, A, S>) {
        self.0.spawn(Box::pin(async move {
            let _ = task.run().await;
        }));
    }
}

/// Sessions as tasks that stay on this thread.
struct LocalTasks<R>(R);

impl<St, R, A, S> driver::Spawn<AsyncIo<St, R>, A, S> for LocalTasks<R>
where
    St: AsyncRead + AsyncWrite + Unpin + 'static,
    R: LocalRuntime,
    A: Authenticator,
    S: MailStore,
{
    fn spawn(&self, task: SessionTask<AsyncIo<St, R>, A, S>) {
        self.0.spawn_local(Box::pin(async move {
            let _ = task.run().await;
        }));
    }
}

/// Serves POP3 on `listener` until `shutdown` completes, spawning each session on
/// `runtime`: implicit TLS when `implicit_tls` is set, otherwise plain text with `STLS` when
/// `options.tls` is set. See [`pop3_driver::server::serve`].
pub async fn serve<L, A, S, R>(
    listener: L,
    backend: Arc<Backend<A, S>>,
    implicit_tls: Option<Arc<rustls::ServerConfig>>,
    options: ServerOptions,
    runtime: R,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    L: Listener<Stream: Send>,
    A: Authenticator,
    S: MailStore,
    R: Runtime,
{
    let (accepting, tasks) = (Accepting(listener, runtime.clone()), Tasks(runtime.clone()));
    driver::serve(
        accepting,
        tasks,
        runtime,
        backend,
        implicit_tls,
        options,
        shutdown,
    )
    .await
}

/// [`serve`] for a single-threaded executor: the streams need not be `Send`, and each
/// session is spawned with [`LocalRuntime::spawn_local`], on this thread.
pub async fn serve_local<L, A, S, R>(
    listener: L,
    backend: Arc<Backend<A, S>>,
    implicit_tls: Option<Arc<rustls::ServerConfig>>,
    options: ServerOptions,
    runtime: R,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    L: Listener,
    A: Authenticator,
    S: MailStore,
    R: LocalRuntime,
{
    let accepting = Accepting(listener, runtime.clone());
    let tasks = LocalTasks(runtime.clone());
    driver::serve(
        accepting,
        tasks,
        runtime,
        backend,
        implicit_tls,
        options,
        shutdown,
    )
    .await
}

/// Runs one session over an accepted, plain connection (with `STLS` when `stls` is set) until
/// it ends, with the timer of `runtime`; `local_port` and `peer` (the client's address) are
/// what the session knows of the connection. See [`pop3_driver::server::run_session`].
pub async fn run_connection<St, A, S, R>(
    stream: St,
    backend: Arc<Backend<A, S>>,
    stls: Option<Arc<rustls::ServerConfig>>,
    local_port: Option<u16>,
    peer: Option<SocketAddr>,
    runtime: R,
) -> io::Result<()>
where
    St: AsyncRead + AsyncWrite + Unpin,
    A: Authenticator,
    S: MailStore,
    R: Timer,
{
    let io = AsyncIo::new(stream, runtime);
    driver::run_session(
        io,
        backend,
        SessionTls::plain(stls),
        local_port,
        peer,
        &Stop::never(),
    )
    .await
}
