//! The POP3 server on blocking `std::net`: an accept loop ([`serve`]) that runs each
//! connection on its own thread ([`run_connection`]), around
//! [`pop3_server_core::session::Session`].
//!
//! Timers become socket read timeouts; the async backends are driven by
//! [`pop3_server_core::block_on`]. Shutdown: [`Shutdown::trigger`] is an `Arc<AtomicBool>`
//! that the accept loop polls (a non-blocking accept, checked every 50 ms); sessions get
//! `shutdown_grace` to end, then the read side of each remaining socket is shut down, which
//! wakes its thread to end the session with [`Session::shutdown`] (no UPDATE); a thread still
//! blocked writing to a client that does not read is cut off one second later.
//!
//! ```no_run
//! use pop3_blocking::server::{ServerOptions, Shutdown, serve};
//! use pop3_blocking::pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
//! use pop3_blocking::pop3_server_core::session::{Backend, Policy};
//!
//! let store = MemoryStore::new();
//! store.add_message("alice", "m1", b"Subject: hi\r\n\r\nHello\r\n");
//! let mut policy = Policy::default();
//! policy.plaintext_auth = true; // loopback demo without TLS
//! let backend = Backend::new(MemoryAuthenticator::new().with_user("alice", "pw"), store, policy);
//! let listener = std::net::TcpListener::bind("127.0.0.1:1110")?;
//! serve(listener, backend, None, ServerOptions::default(), &Shutdown::new())
//! # ; Ok::<(), std::io::Error>(())
//! ```

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown as NetShutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pop3_server_core::backend::{Authenticator, MailStore};
use pop3_server_core::block_on;
use pop3_server_core::session::{Backend, Connection, Session, Step};
use rustls::{ServerConnection, StreamOwned};

use crate::stream::{MaybeTls, complete_handshake, timed_out};

pub use pop3_tls::ServerOptions;

/// Asks a running [`serve`] to stop. Cloning shares the same switch.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// A switch that is off.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests the shutdown.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn is_triggered(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Serves POP3 on `listener` until `shutdown` is triggered: implicit TLS when `implicit_tls`
/// is set, otherwise plain text with `STLS` when `options.tls` is set. A session that did not
/// `QUIT` commits nothing.
pub fn serve<A: Authenticator, S: MailStore>(
    listener: TcpListener,
    backend: Arc<Backend<A, S>>,
    implicit_tls: Option<Arc<rustls::ServerConfig>>,
    options: ServerOptions,
    shutdown: &Shutdown,
) -> std::io::Result<()> {
    // Polling accept lets the loop notice the shutdown within 50 ms without another thread.
    listener.set_nonblocking(true)?;
    let live: Arc<Mutex<HashMap<u64, TcpStream>>> = Arc::default();
    let ids = AtomicU64::new(0);
    let local_port = listener.local_addr().ok().map(|a| a.port());
    let mut threads = Vec::new();
    let ending = Arc::new(AtomicBool::new(false));
    while !shutdown.is_triggered() {
        let mut tcp = match listener.accept() {
            Ok((tcp, _)) => tcp,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(50));
                threads.retain(|t: &thread::JoinHandle<()>| !t.is_finished());
                continue;
            }
            // Out of descriptors and the like: back off rather than spin.
            Err(_) => {
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        tcp.set_nonblocking(false)?;
        let _ = tcp.set_nodelay(true);
        threads.retain(|t| !t.is_finished());
        if threads.len() >= options.max_connections {
            let _ = tcp.write_all(b"-ERR [SYS/TEMP] Too many connections\r\n");
            continue;
        }
        let id = ids.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = tcp.try_clone() {
            lock(&live).insert(id, clone);
        }
        let (backend, live, ending, implicit, stls) = (
            backend.clone(),
            live.clone(),
            ending.clone(),
            implicit_tls.clone(),
            options.tls.clone(),
        );
        let limit = options.handshake_timeout;
        threads.push(thread::spawn(move || {
            let mut conn = if implicit.is_some() {
                Connection::tls()
            } else {
                Connection::plain(stls.is_some())
            };
            conn.local_port = local_port;
            let stream = match implicit {
                Some(cfg) => match accept_tls(cfg, tcp, limit) {
                    Ok(tls) => MaybeTls::Tls(Box::new(tls)),
                    Err(_) => {
                        lock(&live).remove(&id);
                        return;
                    }
                },
                None => MaybeTls::Plain(tcp),
            };
            let _ = drive(stream, backend, &conn, stls, limit, &ending);
            lock(&live).remove(&id);
        }));
    }
    drop(listener);
    let deadline = Instant::now() + options.shutdown_grace;
    while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    // Sessions still running are ended: their reads see EOF, and with `ending` set they
    // call Session::shutdown (no UPDATE).
    ending.store(true, Ordering::SeqCst);
    for s in lock(&live).values() {
        let _ = s.shutdown(NetShutdown::Read);
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    for s in lock(&live).values() {
        let _ = s.shutdown(NetShutdown::Both);
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn accept_tls(
    cfg: Arc<rustls::ServerConfig>,
    tcp: TcpStream,
    limit: Duration,
) -> std::io::Result<StreamOwned<ServerConnection, TcpStream>> {
    let conn = ServerConnection::new(cfg).map_err(std::io::Error::other)?;
    let mut tls = StreamOwned::new(conn, tcp);
    complete_handshake(&mut tls, limit)?;
    Ok(tls)
}

/// Runs one session over an accepted, plain connection (with `STLS` when `stls` is set) until
/// it ends.
pub fn run_connection<A: Authenticator, S: MailStore>(
    tcp: TcpStream,
    backend: Arc<Backend<A, S>>,
    conn: Connection,
    stls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    drive(
        MaybeTls::Plain(tcp),
        backend,
        &conn,
        stls,
        Duration::from_secs(30),
        &AtomicBool::new(false),
    )
}

/// Writes all of `data` by `deadline`. The socket's write timeout alone restarts with every
/// octet the client takes, so a client reading a byte a second would never be cut off.
fn write_by(
    stream: &mut MaybeTls<ServerConnection>,
    data: &[u8],
    deadline: Instant,
) -> std::io::Result<()> {
    let mut rest = data;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client reads too slowly",
            ));
        }
        stream.tcp().set_write_timeout(Some(left))?;
        if rest.is_empty() {
            return stream.flush();
        }
        match stream.write(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn drive<A: Authenticator, S: MailStore>(
    mut stream: MaybeTls<ServerConnection>,
    backend: Arc<Backend<A, S>>,
    conn: &Connection,
    stls: Option<Arc<rustls::ServerConfig>>,
    handshake_timeout: Duration,
    ending: &AtomicBool,
) -> std::io::Result<()> {
    // A client that never reads must not pin the thread: writes time out like reads.
    stream
        .tcp()
        .set_write_timeout(Some(backend.policy.idle_timeout))?;
    let idle = backend.policy.idle_timeout;
    let mut session = Session::new(backend, conn, Instant::now());
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    loop {
        let step = block_on(session.process(Instant::now()));
        out.clear();
        session.poll_transmit(Instant::now(), &mut out);
        if !out.is_empty() {
            write_by(&mut stream, &out, Instant::now() + idle)?;
        }
        if step == Step::StartTls {
            let (Some(cfg), MaybeTls::Plain(tcp)) = (stls.clone(), stream) else {
                return Ok(());
            };
            stream = MaybeTls::Tls(Box::new(accept_tls(cfg, tcp, handshake_timeout)?));
            session.tls_established();
            continue;
        }
        if session.is_closed() {
            let _ = stream.tcp().shutdown(NetShutdown::Both);
            return Ok(());
        }
        if !out.is_empty() || session.is_streaming() {
            continue;
        }
        let wait = session
            .poll_timeout()
            .map(|d| d.saturating_duration_since(Instant::now()));
        if !session.wants_input() {
            thread::sleep(wait.unwrap_or(Duration::from_millis(50)));
            session.handle_timeout(Instant::now());
            continue;
        }
        stream.set_read_timeout(wait)?;
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => session.handle_input(&buf[..n], Instant::now()),
            Err(e) if timed_out(&e) => session.handle_timeout(Instant::now()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // The server is shutting down (serve shut the read side): end without UPDATE.
            _ if ending.load(Ordering::SeqCst) => session.shutdown(),
            // EOF or a reset: the session ends without UPDATE.
            _ => session.handle_eof(Instant::now()),
        }
    }
}
