//! The POP3 server over futures-io streams: an accept loop ([`serve`]) over any
//! [`Listener`], and a connection driver ([`run_connection`]) around
//! [`pop3_server_core::session::Session`].
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
//! policy.plaintext_auth = true; // loopback demo without TLS
//! let backend = Backend::new(MemoryAuthenticator::new().with_user("alice", "pw"), store, policy);
//! let listener = smol::net::TcpListener::bind("127.0.0.1:1110").await?;
//! serve(listener, backend, None, ServerOptions::default(), Smol, std::future::pending()).await
//! # }) }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use futures_io::{AsyncRead, AsyncWrite};
use futures_rustls::TlsAcceptor;
use futures_rustls::server::TlsStream;
use futures_util::future::{Either, FutureExt, Shared, select};
use futures_util::{AsyncReadExt, AsyncWriteExt};
use pop3_server_core::backend::{Authenticator, MailStore};
use pop3_server_core::session::{Backend, Connection, Session, Step};

use crate::Runtime;
use crate::stream::MaybeTls;

/// A source of accepted connections: what a runtime's TCP listener provides.
pub trait Listener: Send + 'static {
    /// An accepted connection.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Waits for the next connection.
    fn accept(&self) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;

    /// The local port, for OAUTHBEARER checks.
    fn local_port(&self) -> Option<u16> {
        None
    }
}

#[cfg(feature = "smol")]
impl Listener for smol::net::TcpListener {
    type Stream = smol::net::TcpStream;

    async fn accept(&self) -> std::io::Result<smol::net::TcpStream> {
        let (s, _) = smol::net::TcpListener::accept(self).await?;
        let _ = s.set_nodelay(true);
        Ok(s)
    }

    fn local_port(&self) -> Option<u16> {
        self.local_addr().ok().map(|a| a.port())
    }
}

pub use pop3_tls::ServerOptions;

type Stop = Shared<oneshot::Receiver<()>>;

/// Serves POP3 on `listener` until `shutdown` completes, spawning each connection on
/// `runtime`: implicit TLS when `implicit_tls` is set, otherwise plain text with `STLS` when
/// `options.tls` is set. On shutdown it stops accepting, lets sessions end for
/// `shutdown_grace`, then ends the rest; a session that did not `QUIT` commits nothing.
pub async fn serve<L: Listener, A: Authenticator, S: MailStore, R: Runtime>(
    listener: L,
    backend: Arc<Backend<A, S>>,
    implicit_tls: Option<Arc<rustls::ServerConfig>>,
    options: ServerOptions,
    runtime: R,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let live = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let stop: Stop = stop_rx.shared();
    let mut shutdown = std::pin::pin!(shutdown);
    let local_port = listener.local_port();
    loop {
        let accepted = match select(shutdown.as_mut(), std::pin::pin!(listener.accept())).await {
            Either::Left(_) => break,
            Either::Right((a, _)) => a,
        };
        let Ok(mut stream) = accepted else {
            // Out of descriptors and the like: pause, keep serving the others.
            runtime
                .sleep_until(Instant::now() + Duration::from_millis(50))
                .await;
            continue;
        };
        if live.load(Ordering::SeqCst) >= options.max_connections {
            let _ = stream
                .write_all(b"-ERR [SYS/TEMP] Too many connections\r\n")
                .await;
            continue;
        }
        live.fetch_add(1, Ordering::SeqCst);
        let (backend, implicit, stls, live, stop, rt) = (
            backend.clone(),
            implicit_tls.clone(),
            options.tls.clone(),
            live.clone(),
            stop.clone(),
            runtime.clone(),
        );
        let limit = options.handshake_timeout;
        runtime.spawn(Box::pin(async move {
            let mut conn = if implicit.is_some() {
                Connection::tls()
            } else {
                Connection::plain(stls.is_some())
            };
            conn.local_port = local_port;
            let stream = match implicit {
                Some(cfg) => match accept_tls(cfg, stream, &rt, limit).await {
                    Some(tls) => MaybeTls::Tls(Box::new(tls)),
                    None => {
                        live.fetch_sub(1, Ordering::SeqCst);
                        return;
                    }
                },
                None => MaybeTls::Plain(stream),
            };
            let _ = drive(stream, backend, &conn, stls, limit, rt, stop).await;
            live.fetch_sub(1, Ordering::SeqCst);
        }));
    }
    drop(listener);
    let grace_end = Instant::now() + options.shutdown_grace;
    while live.load(Ordering::SeqCst) > 0 && Instant::now() < grace_end {
        runtime
            .sleep_until(Instant::now() + Duration::from_millis(20))
            .await;
    }
    let _ = stop_tx.send(());
    while live.load(Ordering::SeqCst) > 0 {
        runtime
            .sleep_until(Instant::now() + Duration::from_millis(20))
            .await;
    }
    Ok(())
}

async fn accept_tls<St: AsyncRead + AsyncWrite + Unpin, R: Runtime>(
    cfg: Arc<rustls::ServerConfig>,
    stream: St,
    runtime: &R,
    limit: Duration,
) -> Option<TlsStream<St>> {
    let accept = TlsAcceptor::from(cfg).accept(stream);
    match select(accept, runtime.sleep_until(Instant::now() + limit)).await {
        Either::Left((Ok(tls), _)) => Some(tls),
        _ => None,
    }
}

/// Runs one session over an accepted, plain connection (with `STLS` when `stls` is set) until
/// it ends.
pub async fn run_connection<St, A, S, R>(
    stream: St,
    backend: Arc<Backend<A, S>>,
    conn: Connection,
    stls: Option<Arc<rustls::ServerConfig>>,
    runtime: R,
) -> std::io::Result<()>
where
    St: AsyncRead + AsyncWrite + Unpin + Send,
    A: Authenticator,
    S: MailStore,
    R: Runtime,
{
    let (_tx, rx) = oneshot::channel::<()>();
    drive(
        MaybeTls::Plain(stream),
        backend,
        &conn,
        stls,
        Duration::from_secs(30),
        runtime,
        rx.shared(),
    )
    .await
}

async fn drive<St, A, S, R>(
    mut stream: MaybeTls<St, TlsStream<St>>,
    backend: Arc<Backend<A, S>>,
    conn: &Connection,
    stls: Option<Arc<rustls::ServerConfig>>,
    handshake_timeout: Duration,
    runtime: R,
    stop: Stop,
) -> std::io::Result<()>
where
    St: AsyncRead + AsyncWrite + Unpin + Send,
    A: Authenticator,
    S: MailStore,
    R: Runtime,
{
    let idle = backend.policy.idle_timeout;
    let mut session = Session::new(backend, conn, Instant::now());
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    loop {
        let step = session.process(Instant::now()).await;
        out.clear();
        session.poll_transmit(Instant::now(), &mut out);
        if !out.is_empty() {
            // A client that never reads must not pin the task: writes end at the idle timeout.
            let write = async {
                stream.write_all(&out).await?;
                stream.flush().await
            };
            // The deadline is checked after a completed write too: a runtime that retries the
            // write when the timer wakes it can find a little room and complete just then, and
            // a client reading a byte a second must not get a fresh deadline that way.
            let deadline = Instant::now() + idle;
            match select(std::pin::pin!(write), runtime.sleep_until(deadline)).await {
                Either::Left((r, _)) => {
                    r?;
                    if Instant::now() >= deadline {
                        return Ok(());
                    }
                }
                Either::Right(_) => return Ok(()),
            }
        }
        if step == Step::StartTls {
            let (Some(cfg), Ok(plain)) = (stls.clone(), stream.take_plain()) else {
                return Ok(());
            };
            match accept_tls(cfg, plain, &runtime, handshake_timeout).await {
                Some(tls) => stream = MaybeTls::Tls(Box::new(tls)),
                None => return Ok(()),
            }
            session.tls_established();
            continue;
        }
        if session.is_closed() {
            let _ = stream.close().await;
            return Ok(());
        }
        if !out.is_empty() || session.is_streaming() {
            continue;
        }
        let timer = match session.poll_timeout() {
            Some(d) => runtime.sleep_until(d),
            None => Box::pin(std::future::pending()),
        };
        let wake = select(timer, stop.clone());
        if session.wants_input() {
            match select(stream.read(&mut buf), wake).await {
                Either::Left((Ok(0), _)) => session.handle_eof(Instant::now()),
                Either::Left((Ok(n), _)) => session.handle_input(&buf[..n], Instant::now()),
                // A reset: the session ends without UPDATE.
                Either::Left((Err(_), _)) => session.handle_eof(Instant::now()),
                Either::Right((Either::Left(_), _)) => session.handle_timeout(Instant::now()),
                Either::Right((Either::Right(_), _)) => session.shutdown(),
            }
        } else {
            match wake.await {
                Either::Left(_) => session.handle_timeout(Instant::now()),
                Either::Right(_) => session.shutdown(),
            }
        }
    }
}
