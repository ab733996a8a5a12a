//! Bring your own runtime: a POP3 server over [mio](https://docs.rs/mio), driving the sans-IO
//! [`Session`] of `pop3-server-core` directly (not `pop3_driver::server::run_session`). One
//! thread, one event loop, any number of connections.
//!
//! The driver contract of `Session`, as [`Conn::drive`] keeps it:
//! - bytes read go to `handle_input`, read only while `wants_input` (a client pipelining
//!   without reading cannot make the session buffer more); the end of the stream goes to
//!   `handle_eof`, once;
//! - then `process` answers commands and streams message bodies, awaiting the backend, up to
//!   the output's high-water mark; `poll_transmit` hands over the output;
//! - while the socket would block, nothing more is taken from the session: the loop waits for
//!   WRITABLE (backpressure, so a client that does not read costs no memory), and a client
//!   must take each batch within the idle timeout or is cut off;
//! - the poll timeout is the earliest `poll_timeout` of all sessions: when it passes,
//!   `handle_timeout` (autologout, delayed `-ERR`, a command line trickling in);
//! - once `is_closed` and the output is written, the socket is closed. A session that did not
//!   QUIT commits nothing, however it ended.
//!
//! `process` is async because a backend may wait. The in-memory store never does, so
//! `block_on` completes at once here; a backend that blocks (a slow disk, a remote store)
//! would stall every connection of this loop: give it threads, or use a real executor.
//!
//! Plain text only. STLS would go where `process` returns `Step::StartTls`: write out the
//! `+OK`, put a `rustls::ServerConnection` between the socket and the session (every later
//! read and write goes through it), run the handshake, then call `tls_established`; it is
//! offered with `Connection::plain(true)`.
//!
//! `cargo run -p pop3-driver --example mio_server -- [IP:PORT [USER PASSWORD]]` (default
//! `127.0.0.1:0`, `alice`, `pw`) serves a few demo messages; the first line on stdout is the
//! address it listens on.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};
use pop3_driver::block_on;
use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
use pop3_server_core::session::{Backend, Connection, Policy, Session};

/// What this demo serves; `Session` works the same over any `Authenticator` and `MailStore`.
type Demo = Backend<MemoryAuthenticator, MemoryStore>;
const LISTENER: Token = Token(0);
const BOTH: Interest = Interest::READABLE.add(Interest::WRITABLE);

/// One connection: its socket, its session, and output the socket has not taken yet.
struct Conn {
    tcp: TcpStream,
    session: Session<MemoryAuthenticator, MemoryStore>,
    out: Vec<u8>,
    eof: bool,
    /// While output waits (and WRITABLE is asked for): when the client must have taken it.
    stall: Option<Instant>,
}

/// `None` for "would block". (Non-blocking sockets are never `Interrupted`.)
fn nonblocking(r: io::Result<usize>) -> io::Result<Option<usize>> {
    match r {
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(None),
        r => r.map(Some),
    }
}

impl Conn {
    fn deadlines(&self) -> impl Iterator<Item = Instant> {
        self.session.poll_timeout().into_iter().chain(self.stall)
    }

    /// Does all that the socket and the session allow now; `Ok(false)` once it is over.
    fn drive(&mut self, registry: &Registry, token: Token, idle: Duration) -> io::Result<bool> {
        loop {
            while !self.out.is_empty()
                && let Some(n) = nonblocking(self.tcp.write(&self.out))?
            {
                self.out.drain(..n);
            }
            let blocked = !self.out.is_empty();
            if blocked != self.stall.is_some() {
                let interest = if blocked { BOTH } else { Interest::READABLE };
                registry.reregister(&mut self.tcp, token, interest)?;
                self.stall = blocked.then(|| Instant::now() + idle);
            }
            if blocked {
                return Ok(self.stall.is_some_and(|d| d > Instant::now()));
            }
            if self.session.is_closed() {
                return Ok(false);
            }
            let now = Instant::now();
            // Never `Step::StartTls`: this server does not offer STLS (see the module docs).
            block_on(self.session.process(now));
            self.session.poll_transmit(now, &mut self.out);
            if !self.out.is_empty() || self.session.is_streaming() || self.session.is_closed() {
                continue;
            }
            if self.eof || !self.session.wants_input() {
                return Ok(true); // only a timer can move it on (a delayed `-ERR`)
            }
            self.session.shrink(); // about to wait for the client: give back burst buffers
            let mut buf = [0; 16 * 1024];
            match nonblocking(self.tcp.read(&mut buf))? {
                None => return Ok(true),
                Some(0) => self.eof = true,
                Some(n) => self.session.handle_input(&buf[..n], now),
            }
            if self.eof {
                self.session.handle_eof(now);
            }
        }
    }
}

/// Serves `backend` on `listener`, forever (or until polling itself fails).
pub(crate) fn serve(mut listener: TcpListener, backend: Arc<Demo>) -> io::Result<()> {
    let idle = backend.policy.rules.idle_timeout;
    let mut poll = Poll::new()?;
    let registry = poll.registry().try_clone()?;
    registry.register(&mut listener, LISTENER, Interest::READABLE)?;
    let (mut conns, mut next) = (HashMap::new(), 1);
    let mut events = Events::with_capacity(1024);
    loop {
        // A scan is fine for an example; a server with many thousands would keep a heap.
        let earliest = conns.values().flat_map(Conn::deadlines).min();
        let timeout = earliest.map(|d| d.saturating_duration_since(Instant::now()));
        match poll.poll(&mut events, timeout) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            r => r?,
        }
        let mut ready: Vec<Token> = events.iter().map(|e| e.token()).collect();
        // Edge-triggered: accept until the queue is empty (or an error, e.g. out of files).
        while ready.contains(&LISTENER)
            && let Ok((mut tcp, _)) = listener.accept()
        {
            let token = Token(next);
            next += 1;
            registry.register(&mut tcp, token, Interest::READABLE)?;
            let session = Session::new(backend.clone(), &Connection::plain(false), Instant::now());
            let conn = Conn {
                tcp,
                session,
                out: Vec::new(),
                eof: false,
                stall: None,
            };
            conns.insert(token, conn);
            ready.push(token); // the greeting
        }
        let now = Instant::now();
        for (token, conn) in &mut conns {
            if conn.deadlines().any(|d| d <= now) {
                conn.session.handle_timeout(now);
                ready.push(*token);
            }
        }
        for token in ready {
            if let Some(conn) = conns.get_mut(&token)
                && !matches!(conn.drive(&registry, token, idle), Ok(true))
                && let Some(mut conn) = conns.remove(&token)
            {
                conn.session.shutdown(); // no UPDATE unless it QUIT; the maildrop is released
                let _ = registry.deregister(&mut conn.tcp);
            }
        }
    }
}

/// The demo maildrop.
pub(crate) const DEMO: [&[u8]; 3] = [
    b"Subject: Hello\r\n\r\nServed by a mio event loop.\r\n",
    b"Subject: Dots\r\n\r\n.a line that starts with a dot\r\n.\r\n..\r\n",
    b"Subject: Empty body\r\n\r\n",
];

fn main() -> io::Result<()> {
    let arg = |i, default: &str| std::env::args().nth(i).unwrap_or(default.into());
    let (addr, user, pw) = (arg(1, "127.0.0.1:0"), arg(2, "alice"), arg(3, "pw"));
    let store = MemoryStore::new();
    for (i, m) in DEMO.iter().enumerate() {
        store.add_message(&user, &format!("demo-{}", i + 1), m);
    }
    let mut policy = Policy::default();
    policy.rules.plaintext_auth = true; // no TLS here: loopback demos only
    let auth = MemoryAuthenticator::new().with_user(&user, &pw);
    let listener = TcpListener::bind(addr.parse().map_err(io::Error::other)?)?;
    println!("{}", listener.local_addr()?);
    eprintln!("POP3 in plain text, user {user}, {} messages", DEMO.len());
    serve(listener, Backend::new(auth, store, policy))
}
