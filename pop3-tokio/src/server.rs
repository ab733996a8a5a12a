//! The POP3 server on tokio: the driver's accept loop ([`serve`]) and session loop
//! ([`run_connection`]) over tokio's sockets, timer and tasks.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use pop3_tokio::pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
//! use pop3_tokio::pop3_server_core::session::{Backend, Policy};
//! use pop3_tokio::server::{ServerOptions, serve};
//!
//! let store = MemoryStore::new();
//! store.add_message("alice", "m1", b"Subject: hi\r\n\r\nHello\r\n");
//! let mut policy = Policy::default();
//! policy.rules.plaintext_auth = true; // loopback demo without TLS
//! let backend = Backend::new(MemoryAuthenticator::new().with_user("alice", "pw"), store, policy);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:1110").await?;
//! let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
//! serve(listener, backend, None, ServerOptions::default(), shutdown).await
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;

use pop3_driver::server::{self as driver, Accepted, SessionTask, SessionTls};
use pop3_driver::{AsyncIo, Stop};
use pop3_server_core::backend::{Authenticator, MailStore};
use pop3_server_core::session::Backend;
use tokio::net::{TcpListener, TcpStream};

use crate::{Compat, Tokio};

pub use pop3_driver::server::ServerOptions;

/// A connection as the driver sees it on tokio.
pub type TokioIo = AsyncIo<Compat<TcpStream>, Tokio>;

struct Listener(TcpListener);

impl driver::Listener for Listener {
    type Io = TokioIo;

    async fn accept(&mut self) -> std::io::Result<Option<Accepted<TokioIo>>> {
        let (tcp, peer) = self.0.accept().await?;
        let _ = tcp.set_nodelay(true);
        Ok(Some(Accepted::new(
            AsyncIo::new(Compat(tcp), Tokio),
            Some(peer),
        )))
    }

    fn local_port(&self) -> Option<u16> {
        self.0.local_addr().ok().map(|a| a.port())
    }

    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.0.local_addr().ok()
    }
}

struct Spawner;

impl<A: Authenticator, S: MailStore> driver::Spawn<TokioIo, A, S> for Spawner {
    fn spawn(&self, task: SessionTask<TokioIo, A, S>) {
        tokio::spawn(task.run());
    }
}

/// Serves POP3 on `listener` until `shutdown` completes: implicit TLS when `implicit_tls` is
/// set, otherwise plain text with `STLS` when `options.tls` is set. See
/// [`pop3_driver::server::serve`]; each session is a tokio task.
pub async fn serve<A: Authenticator, S: MailStore>(
    listener: TcpListener,
    backend: Arc<Backend<A, S>>,
    implicit_tls: Option<Arc<rustls::ServerConfig>>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let l = Listener(listener);
    driver::serve(l, Spawner, Tokio, backend, implicit_tls, options, shutdown).await
}

/// Runs one session over an accepted, plain connection (with `STLS` when `stls` is set) until
/// it ends. See [`pop3_driver::server::run_session`].
pub async fn run_connection<A: Authenticator, S: MailStore>(
    tcp: TcpStream,
    backend: Arc<Backend<A, S>>,
    stls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    let port = tcp.local_addr().ok().map(|a| a.port());
    let peer = tcp.peer_addr().ok();
    let io = AsyncIo::new(Compat(tcp), Tokio);
    let tls = SessionTls::plain(stls);
    driver::run_session(io, backend, tls, port, peer, &Stop::never()).await
}
