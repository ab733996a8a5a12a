//! The POP3 server on tokio: an accept loop ([`serve`]) and a connection driver
//! ([`run_connection`]) around [`pop3_server_core::session::Session`].
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
//! policy.plaintext_auth = true; // loopback demo without TLS
//! let backend = Backend::new(MemoryAuthenticator::new().with_user("alice", "pw"), store, policy);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:1110").await?;
//! let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
//! serve(listener, backend, None, ServerOptions::default(), shutdown).await
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pop3_server_core::backend::{Authenticator, MailStore};
use pop3_server_core::session::{Backend, Connection, Session, Step};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::stream::MaybeTls;

pub use pop3_tls::ServerOptions;

/// Serves POP3 on `listener` until `shutdown` completes: implicit TLS when `implicit_tls` is
/// set, otherwise plain text with `STLS` when `options.tls` is set. On shutdown it stops
/// accepting, lets sessions end for `shutdown_grace`, then ends the rest; a session that did
/// not `QUIT` commits nothing.
pub async fn serve<A: Authenticator, S: MailStore>(
    listener: TcpListener,
    backend: Arc<Backend<A, S>>,
    implicit_tls: Option<Arc<rustls::ServerConfig>>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limit = Arc::new(Semaphore::new(options.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let local_port = listener.local_addr().ok().map(|a| a.port());
    loop {
        let (mut tcp, _peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of descriptors and the like: keep serving the others.
                Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            let _ = tcp
                .write_all(b"-ERR [SYS/TEMP] Too many connections\r\n")
                .await;
            continue;
        };
        let backend = backend.clone();
        let implicit = implicit_tls.clone();
        let stls = options.tls.clone();
        let stop = stop_rx.clone();
        let handshake_timeout = options.handshake_timeout;
        tasks.spawn(async move {
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            let mut conn = match implicit {
                Some(_) => Connection::tls(),
                None => Connection::plain(stls.is_some()),
            };
            conn.local_port = local_port;
            let stream = match implicit {
                Some(cfg) => {
                    let accept = TlsAcceptor::from(cfg).accept(tcp);
                    match tokio::time::timeout(handshake_timeout, accept).await {
                        Ok(Ok(tls)) => MaybeTls::Tls(Box::new(tls)),
                        _ => return,
                    }
                }
                None => MaybeTls::Plain(tcp),
            };
            let _ = drive(stream, backend, &conn, stls, handshake_timeout, stop).await;
        });
    }
    drop(listener);
    let grace = tokio::time::sleep(options.shutdown_grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { return Ok(()) },
            () = &mut grace, if !*stop_tx.borrow() => { let _ = stop_tx.send(true); }
        }
    }
}

/// Runs one session over an accepted, plain connection (with `STLS` when `stls` is set) until
/// it ends.
pub async fn run_connection<A: Authenticator, S: MailStore>(
    tcp: TcpStream,
    backend: Arc<Backend<A, S>>,
    conn: Connection,
    stls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    let (_tx, rx) = watch::channel(false);
    drive(
        MaybeTls::Plain(tcp),
        backend,
        &conn,
        stls,
        Duration::from_secs(30),
        rx,
    )
    .await
}

async fn drive<A: Authenticator, S: MailStore>(
    mut stream: MaybeTls<TlsStream<TcpStream>>,
    backend: Arc<Backend<A, S>>,
    conn: &Connection,
    stls: Option<Arc<rustls::ServerConfig>>,
    handshake_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let idle = backend.policy.idle_timeout;
    let mut session = Session::new(backend, conn, Instant::now());
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    loop {
        let step = session.process(Instant::now()).await;
        out.clear();
        session.poll_transmit(Instant::now(), &mut out);
        if !out.is_empty() {
            // A client that never reads must not pin the task: the write is bounded by the
            // idle timeout, like the reads.
            // Late is as bad as never: a write completing past the deadline ends it too.
            let deadline = Instant::now() + idle;
            match tokio::time::timeout(idle, async {
                stream.write_all(&out).await?;
                stream.flush().await
            })
            .await
            {
                Ok(r) if Instant::now() < deadline => r?,
                Ok(r) => return r,
                Err(_) => return Ok(()),
            }
        }
        if step == Step::StartTls {
            let (Some(cfg), Ok(tcp)) = (stls.clone(), stream.take_plain()) else {
                return Ok(());
            };
            let accept = TlsAcceptor::from(cfg).accept(tcp);
            match tokio::time::timeout(handshake_timeout, accept).await {
                Ok(Ok(tls)) => stream = MaybeTls::Tls(Box::new(tls)),
                _ => return Ok(()),
            }
            session.tls_established();
            continue;
        }
        if session.is_closed() {
            let _ = stream.shutdown().await;
            return Ok(());
        }
        if !out.is_empty() || session.is_streaming() {
            // Output drained: the session may have more to write right away.
            continue;
        }
        let deadline = session.poll_timeout().map(tokio::time::Instant::from_std);
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = stream.read(&mut buf), if session.wants_input() => {
                let n = read?;
                if n == 0 {
                    session.handle_eof(Instant::now());
                } else {
                    session.handle_input(&buf[..n], Instant::now());
                }
            }
            () = sleep => session.handle_timeout(Instant::now()),
            _ = stop.changed() => session.shutdown(),
        }
    }
}
