//! The POP3 server on blocking `std::net`: the driver's accept loop ([`serve`]) with a thread
//! per connection, and its session loop ([`run_connection`]).
//!
//! The accept loop polls a non-blocking listener every 50 ms, so it sees [`Shutdown::trigger`]
//! within that. At shutdown, sessions get `shutdown_grace` to end, then each remaining one is
//! stopped: its socket is shut down, which ends a read or write blocked on it, and the session
//! ends without UPDATE.
//!
//! ```no_run
//! use pop3_blocking::server::{ServerOptions, Shutdown, serve};
//! use pop3_blocking::pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
//! use pop3_blocking::pop3_server_core::session::{Backend, Policy};
//!
//! let store = MemoryStore::new();
//! store.add_message("alice", "m1", b"Subject: hi\r\n\r\nHello\r\n");
//! let mut policy = Policy::default();
//! policy.rules.plaintext_auth = true; // loopback demo without TLS
//! let backend = Backend::new(MemoryAuthenticator::new().with_user("alice", "pw"), store, policy);
//! let listener = std::net::TcpListener::bind("127.0.0.1:1110")?;
//! serve(listener, backend, None, ServerOptions::default(), &Shutdown::new())
//! # ; Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use pop3_driver::server::{self as driver, Accepted, SessionTask, SessionTls};
use pop3_driver::{Stop, block_on};
use pop3_server_core::backend::{Authenticator, MailStore};
use pop3_server_core::session::Backend;

use crate::{Blocking, BlockingIo};

pub use pop3_driver::server::ServerOptions;

/// Asks a running [`serve`] to stop. Cloning shares the same switch.
#[derive(Debug, Clone)]
pub struct Shutdown(Stop);

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown(Stop::new())
    }
}

impl Shutdown {
    /// A switch that is off.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests the shutdown.
    pub fn trigger(&self) {
        self.0.trigger();
    }
}

struct Listener(TcpListener);

impl driver::Listener for Listener {
    type Io = BlockingIo;

    async fn accept(&mut self) -> io::Result<Option<Accepted<BlockingIo>>> {
        match self.0.accept() {
            Ok((tcp, peer)) => {
                tcp.set_nonblocking(false)?;
                let _ = tcp.set_nodelay(true);
                Ok(Some(Accepted::new(BlockingIo(tcp), Some(peer))))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn local_port(&self) -> Option<u16> {
        self.0.local_addr().ok().map(|a| a.port())
    }

    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.0.local_addr().ok()
    }
}

struct Threads;

impl<A: Authenticator, S: MailStore> driver::Spawn<BlockingIo, A, S> for Threads {
    fn spawn(&self, task: SessionTask<BlockingIo, A, S>) {
        std::thread::spawn(move || block_on(task.run()));
    }
}

/// Serves POP3 on `listener` until `shutdown` is triggered: implicit TLS when `implicit_tls`
/// is set, otherwise plain text with `STLS` when `options.tls` is set. See
/// [`pop3_driver::server::serve`]. A session that did not `QUIT` commits nothing.
pub fn serve<A: Authenticator, S: MailStore>(
    listener: TcpListener,
    backend: Arc<Backend<A, S>>,
    implicit_tls: Option<Arc<rustls::ServerConfig>>,
    options: ServerOptions,
    shutdown: &Shutdown,
) -> io::Result<()> {
    // Polling accept lets the loop notice the shutdown without another thread.
    listener.set_nonblocking(true)?;
    let l = Listener(listener);
    let stop = shutdown.0.clone();
    let done = async move { stop.wait().await };
    block_on(driver::serve(
        l,
        Threads,
        Blocking,
        backend,
        implicit_tls,
        options,
        done,
    ))
}

/// Runs one session over an accepted, plain connection (with `STLS` when `stls` is set) until
/// it ends. See [`pop3_driver::server::run_session`].
pub fn run_connection<A: Authenticator, S: MailStore>(
    tcp: TcpStream,
    backend: Arc<Backend<A, S>>,
    stls: Option<Arc<rustls::ServerConfig>>,
) -> io::Result<()> {
    let port = tcp.local_addr().ok().map(|a| a.port());
    let peer = tcp.peer_addr().ok();
    let tls = SessionTls::plain(stls);
    block_on(driver::run_session(
        BlockingIo(tcp),
        backend,
        tls,
        port,
        peer,
        &Stop::never(),
    ))
}
