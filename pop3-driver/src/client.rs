//! The one client facade: [`Client`], written once over any [`Transport`].
//!
//! Each method enqueues typed commands in the sans-IO [`pop3_proto::client::Client`] and runs
//! one loop that writes what the machine wants sent while reading (so neither side can block
//! the other), hands the machine the octets read, its end of stream or its timeout, and
//! passes the machine's events to the method until its command is `Done`. Message bodies go
//! from the read buffer straight to the caller's callback or writer: never whole in memory.
//!
//! The behaviour is the same on every runtime because it is this code on every runtime:
//! - a command answered `-ERR` returns [`Error::Server`] once the machine has finished the
//!   command (its `Done`), so the next command starts clean; so does a failure of the
//!   caller's callback or writer ([`Error::Output`]: the rest of the reply is read and dropped);
//! - a failed read or write is [`Error::Io`] and ends the session (later commands fail at once
//!   with `Protocol(Closed)`); the server closing the connection in the middle
//!   of a reply is [`Error::Protocol`] (`UnexpectedEof`), never a short message;
//! - batches ([`Client::fetch_many`], [`Client::delete_many`]) keep
//!   [`ClientConfig::pipeline_window`](pop3_proto::client::ClientConfig::pipeline_window)
//!   commands in flight when the server allows pipelining, one otherwise.
//!
//! TLS (implicit, or `STLS` before anything else) is rustls, run by the driver over the
//! transport; `STLS` is never silently skipped. A failed handshake is [`Error::Handshake`],
//! naming the step ([`TlsStep`]) and any plain-text line the server sent instead of TLS (the
//! `-ERR STARTTLS failed: ...` of a server whose TLS broke after it accepted `STLS`).
//!
//! The adapters give it their runtime: `pop3_tokio::client::Pop3Client`,
//! `pop3_futures::client::Pop3Client`, `pop3_blocking::client::Pop3Client`. Over any
//! futures-io stream and a [`Timer`]:
//!
//! ```no_run
//! # async fn demo<S, T>(stream: S, timer: T) -> Result<(), pop3_driver::client::Error>
//! # where S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin, T: pop3_driver::Timer {
//! use pop3_driver::client::{Client, ClientOptions, TlsMode};
//!
//! let mut client = Client::connect_stream(stream, ClientOptions::new(TlsMode::Plain), timer).await?;
//! client.login("alice", "secret").await?;
//! let mut total = 0;
//! for item in client.list().await? {
//!     total += client.retr_with(item.msg, |_chunk| Ok(())).await?;
//! }
//! client.quit().await?;
//! # let _ = total; Ok(()) }
//! ```

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_io::{AsyncRead, AsyncWrite};
use pop3_proto::client::{ClientConfig, Event, Handle};
use pop3_proto::collect::{self, Collect};
use pop3_proto::sasl::ClientCredentials;
use pop3_proto::{
    Atom, Capability, Greeting, MsgNum, ScanListing, Secret, Stat, StatusLine, Text, UidListing,
};

pub use pop3_proto::collect::Chunk;

use crate::io::{AsyncIo, Stop, Timer, Transport, Wake};
use crate::link::{HandshakeError, Link};

/// How a client protects its connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TlsMode {
    /// No TLS at all. Passwords cross the network readable.
    Plain,
    /// TLS from the first byte (port 995, RFC 8314).
    Implicit(Arc<rustls::ClientConfig>),
    /// Plain text, then `STLS` (RFC 2595); an error if the server does not offer it, never a
    /// fallback to plain text.
    StartTls(Arc<rustls::ClientConfig>),
}

/// Client connection options.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// TLS mode.
    pub tls: TlsMode,
    /// The name the certificate must match (and SNI); default: the host of the address
    /// (`localhost` for a connection made by the caller).
    pub server_name: Option<String>,
    /// The protocol machine's configuration (limits, pipelining window, reply deadline).
    pub config: ClientConfig,
    /// How long connecting (TCP, and each TLS handshake) may take.
    pub connect_timeout: Duration,
    /// Send `UTF8` after `CAPA` when the server lists it (default: on). This client keeps
    /// message octets verbatim, so it can take 8-bit mail as it is; without `UTF8`, RFC 6856
    /// lets a server replace such a message with a 7-bit surrogate.
    pub utf8: bool,
}

impl ClientOptions {
    /// Options with this TLS mode and defaults for the rest.
    pub fn new(tls: TlsMode) -> Self {
        ClientOptions {
            tls,
            server_name: None,
            config: ClientConfig::default(),
            connect_timeout: Duration::from_secs(30),
            utf8: true,
        }
    }
}

/// What went wrong in a client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The network.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// TLS configuration or server name.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server's certificate was refused (untrusted issuer, wrong name, expired...).
    #[error("TLS: the server's certificate was refused: {0}")]
    Certificate(String),
    /// The TLS handshake failed for another reason than the certificate: the peer does not
    /// speak TLS there, or its TLS failed (its alert, a plain-text `-ERR` after `STLS`...).
    #[error("{}", handshake_message(*step, reason, server_said.as_deref()))]
    Handshake {
        /// Which handshake: implicit TLS, or the one after `STLS`.
        step: TlsStep,
        /// What TLS said (rustls' error, or the connection closing).
        reason: String,
        /// The plain-text line the server sent where TLS was expected, if any: the
        /// `-ERR STARTTLS failed: ...` of a server whose TLS failed after it accepted `STLS`,
        /// or a greeting where implicit TLS was expected. Printable characters only, at most
        /// 512 octets.
        server_said: Option<String>,
    },
    /// The protocol machine refused a command or the server broke the protocol.
    #[error("protocol: {0}")]
    Protocol(#[from] pop3_proto::client::ClientError),
    /// The server answered `-ERR` (with its response code, if any).
    #[error("server said: -ERR {}{}", .0.code().map(|c| format!("[{}] ", String::from_utf8_lossy(c.as_bytes()))).unwrap_or_default(), .0.text())]
    Server(StatusLine),
    /// STLS was required and the server does not offer it.
    #[error("the server does not offer STLS; refusing to continue in plain text")]
    TlsUnavailable,
    /// Connecting took too long.
    #[error("timed out")]
    Timeout,
    /// The session is closed.
    #[error("connection closed")]
    Closed,
    /// An invalid argument (a user name with a space, a password with a line end).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The caller's writer or callback failed.
    #[error("output: {0}")]
    Output(io::Error),
}

/// Which TLS handshake of a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsStep {
    /// TLS from the first byte ([`TlsMode::Implicit`]).
    Implicit,
    /// TLS after the server accepted `STLS` ([`TlsMode::StartTls`]).
    Stls,
}

fn handshake_message(step: TlsStep, reason: &str, server_said: Option<&str>) -> String {
    let mut m = match step {
        TlsStep::Implicit => format!("TLS handshake failed: {reason}"),
        TlsStep::Stls => format!("TLS handshake after STLS failed: {reason}"),
    };
    if let Some(line) = server_said {
        m.push_str(match step {
            TlsStep::Implicit => "; the server sent plain text: ",
            TlsStep::Stls => "; the server said: ",
        });
        m.push_str(line);
    }
    m
}

impl Error {
    /// The error of a failed handshake at `step`; `server_said` is the plain-text line the
    /// server sent instead, if any.
    fn handshake(e: HandshakeError, step: TlsStep, server_said: Option<&str>) -> Self {
        let handshake = |reason: String| Error::Handshake {
            step,
            reason,
            server_said: server_said.map(str::to_string),
        };
        match e {
            HandshakeError::Io(e) => Error::Io(e),
            HandshakeError::Tls(rustls::Error::InvalidCertificate(c)) => {
                Error::Certificate(format!("{c:?}"))
            }
            HandshakeError::Tls(e) => handshake(e.to_string()),
            HandshakeError::Timeout => Error::Timeout,
            e @ (HandshakeError::Closed | HandshakeError::Stopped) => handshake(e.to_string()),
        }
    }
}

/// The host part of `host:port` (IPv6 brackets removed), for SNI and certificate checks.
pub fn host_of(addr: &str) -> String {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// A fresh SASL client nonce (SCRAM): 18 random printable characters from the operating
/// system's random source.
pub fn client_nonce() -> Result<Vec<u8>, Error> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = [0u8; 18];
    getrandom::fill(&mut raw).map_err(|e| Error::Io(io::Error::other(e.to_string())))?;
    Ok(raw
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()])
        .collect())
}

/// A runtime that opens TCP connections, for [`Client::connect`] over [`AsyncIo`].
pub trait Connect: Timer + Default {
    /// Its TCP stream.
    type Stream: AsyncRead + AsyncWrite + Unpin;

    /// Connects to `addr` (`host:port`), with `TCP_NODELAY` set.
    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::Stream>>;
}

/// A POP3 client connection over the transport `T`. See the module docs.
pub struct Client<T> {
    link: Link<T>,
    machine: pop3_proto::client::Client,
    greeting: Option<Greeting>,
    /// Commands to send, as the machine gives them.
    out: Vec<u8>,
    /// The `-ERR` of the command being driven, returned at its `Done`.
    failed: Option<StatusLine>,
    /// Body octets between a read and the caller's writer.
    staged: Vec<u8>,
    handshake_timeout: Duration,
}

impl<T> std::fmt::Debug for Client<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.machine.state())
            .field("tls", &self.link.is_tls())
            .finish_non_exhaustive()
    }
}

impl<T: Connect> Client<AsyncIo<T::Stream, T>> {
    /// Connects to `addr` (`host:port`) with the runtime `T` (within
    /// `options.connect_timeout`), then as [`Client::connect_with`]; the certificate name is
    /// the host of `addr` unless `options.server_name` says otherwise.
    pub async fn connect(addr: &str, mut options: ClientOptions) -> Result<Self, Error> {
        let runtime = T::default();
        let deadline = Instant::now() + options.connect_timeout;
        let stream = {
            let mut connect = pin!(runtime.connect(addr));
            let mut sleep = pin!(runtime.sleep_until(deadline));
            poll_fn(|cx| {
                if let Poll::Ready(r) = connect.as_mut().poll(cx) {
                    return Poll::Ready(r.map_err(Error::Io));
                }
                sleep.as_mut().poll(cx).map(|()| Err(Error::Timeout))
            })
            .await?
        };
        options.server_name.get_or_insert_with(|| host_of(addr));
        Self::connect_stream(stream, options, runtime).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin, T: Timer> Client<AsyncIo<S, T>> {
    /// [`Client::connect_with`] over an already connected futures-io stream, with `timer`.
    pub async fn connect_stream(
        stream: S,
        options: ClientOptions,
        timer: T,
    ) -> Result<Self, Error> {
        Self::connect_with(AsyncIo::new(stream, timer), options).await
    }
}

/// Writes all of `data` to a futures-io writer.
async fn write_all<W: AsyncWrite + Unpin + ?Sized>(w: &mut W, data: &[u8]) -> io::Result<()> {
    let mut at = 0;
    poll_fn(|cx| {
        while at < data.len() {
            match Pin::new(&mut *w).poll_write(cx, &data[at..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => at += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    })
    .await
}

impl<T: Transport> Client<T> {
    /// Reads the greeting over a connected transport (after the TLS handshake for
    /// [`TlsMode::Implicit`]), upgrades with `STLS` for [`TlsMode::StartTls`] before anything
    /// else, and asks `CAPA` (which decides pipelining and the SASL mechanisms; a server
    /// without `CAPA` is fine).
    pub async fn connect_with(io: T, options: ClientOptions) -> Result<Self, Error> {
        let name = options
            .server_name
            .clone()
            .unwrap_or_else(|| "localhost".into());
        let mut c = Client {
            link: Link::new(io),
            machine: pop3_proto::client::Client::new(options.config.clone(), Instant::now()),
            greeting: None,
            out: Vec::new(),
            failed: None,
            staged: Vec::new(),
            handshake_timeout: options.connect_timeout,
        };
        if let TlsMode::Implicit(cfg) = &options.tls {
            c.start_tls(cfg, &name, TlsStep::Implicit).await?;
        }
        c.drive(None, |_| Ok(())).await?;
        if let TlsMode::StartTls(cfg) = &options.tls {
            let _ = c.capa().await;
            if !c.machine.has_capability(&Capability::Stls) {
                return Err(Error::TlsUnavailable);
            }
            let h = c.machine.stls()?;
            c.simple(h).await?;
            // Octets after the +OK would be an injection: the machine fails on them here.
            if let Some(Event::Closed { error }) = c.machine.poll_event() {
                return Err(error.map_or(Error::Closed, Error::Protocol));
            }
            c.start_tls(cfg, &name, TlsStep::Stls).await?;
            c.machine.tls_established(Instant::now());
        }
        let _ = c.capa().await;
        if options.utf8 {
            c.utf8().await?;
        }
        Ok(c)
    }

    /// Sends `UTF8` when `CAPA` lists it (RFC 6856 §2): this client hands message octets on
    /// verbatim, and a server not asked for UTF-8 may give a 7-bit surrogate instead of a
    /// message with 8-bit headers (Courier replaces it with a notice). A refusal (`-ERR`)
    /// changes nothing and is not an error.
    async fn utf8(&mut self) -> Result<(), Error> {
        let listed = self
            .machine
            .capabilities()
            .is_some_and(|caps| caps.iter().any(|c| matches!(c, Capability::Utf8 { .. })));
        if !listed {
            return Ok(());
        }
        let h = self.machine.send(pop3_proto::Command::Utf8)?;
        match self.simple(h).await {
            Ok(()) | Err(Error::Server(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn start_tls(
        &mut self,
        cfg: &Arc<rustls::ClientConfig>,
        name: &str,
        step: TlsStep,
    ) -> Result<(), Error> {
        let server_name = rustls::pki_types::ServerName::try_from(name.to_string())
            .map_err(|e| Error::Tls(format!("invalid server name {name:?}: {e}")))?;
        let conn = rustls::ClientConnection::new(cfg.clone(), server_name)
            .map_err(|e| Error::Tls(e.to_string()))?;
        let deadline = Instant::now() + self.handshake_timeout;
        self.link
            .handshake(conn.into(), deadline, &Stop::never())
            .await
            .map_err(|e| Error::handshake(e, step, self.link.handshake_refusal()))
    }

    /// The server's greeting.
    pub fn greeting(&self) -> Option<&Greeting> {
        self.greeting.as_ref()
    }

    /// The capabilities of the last `CAPA`.
    pub fn capabilities(&self) -> Option<&[Capability]> {
        self.machine.capabilities()
    }

    /// The protocol machine (state, capabilities, SASL mechanisms).
    pub fn machine(&self) -> &pop3_proto::client::Client {
        &self.machine
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.link.is_tls()
    }

    /// The TLS protocol version, once TLS is on.
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        self.link.tls_version()
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        self.link.transport()
    }

    /// Runs the connection until the command `until` is done (`None`: until the greeting),
    /// passing its other events to `f`. `-ERR` to `until` is [`Error::Server`], returned at
    /// its `Done`. An error of `f` (the caller's output failing) is returned at the `Done`
    /// too: the rest of the reply is read and dropped, so that it cannot reach the next
    /// command.
    async fn drive<F: FnMut(Event<'_>) -> Result<(), Error>>(
        &mut self,
        until: Option<Handle>,
        mut f: F,
    ) -> Result<(), Error> {
        let mut output = None;
        let mut g = |ev: Event<'_>| -> Result<(), Error> {
            if output.is_none()
                && let Err(e) = f(ev)
            {
                output = Some(e);
            }
            Ok(())
        };
        let r = loop {
            match self.step(until, &mut g).await {
                Ok(false) => {}
                Ok(true) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        match (output, r) {
            (Some(e), Ok(()) | Err(Error::Server(_))) => Err(e),
            (_, r) => r,
        }
    }

    /// Handles the events the buffered input gives (true when `until` is done), else sends
    /// and reads once.
    async fn step<F: FnMut(Event<'_>) -> Result<(), Error>>(
        &mut self,
        until: Option<Handle>,
        f: &mut F,
    ) -> Result<bool, Error> {
        while let Some(ev) = self.machine.poll_event() {
            match ev {
                Event::Greeting(g) => {
                    let line = g.line().clone();
                    self.greeting = Some(g);
                    if until.is_none() {
                        return if line.is_ok() {
                            Ok(true)
                        } else {
                            Err(Error::Server(line))
                        };
                    }
                }
                Event::Err { handle, line } if Some(handle) == until => self.failed = Some(line),
                Event::Done { handle } if Some(handle) == until => {
                    return match self.failed.take() {
                        Some(line) => Err(Error::Server(line)),
                        None => Ok(true),
                    };
                }
                Event::Closed { error } => {
                    return Err(error.map_or(Error::Closed, Error::Protocol));
                }
                ev => f(ev)?,
            }
        }
        self.io_round().await?;
        Ok(false)
    }

    /// Sends what the machine wants sent while reading, then feeds the machine the octets
    /// read, the end of stream or its timeout.
    async fn io_round(&mut self) -> Result<(), Error> {
        self.out.clear();
        self.machine.poll_transmit(Instant::now(), &mut self.out);
        let deadline = self.machine.poll_timeout();
        let machine = &mut self.machine;
        let wake = self
            .link
            .recv(&self.out, deadline, &Stop::never(), |data| {
                machine.handle_input(data, Instant::now())
            })
            .await
            .inspect_err(|_| self.machine.connection_lost())?;
        match wake {
            Wake::Eof => self.machine.handle_eof(Instant::now()),
            Wake::Timeout => self.machine.handle_timeout(Instant::now()),
            _ => {}
        }
        Ok(())
    }

    async fn simple(&mut self, h: Handle) -> Result<(), Error> {
        self.drive(Some(h), |_| Ok(())).await
    }

    /// Feeds the events of command `h` to a collector until it is done.
    async fn run<C: Collect>(&mut self, h: Handle, mut c: C) -> Result<C::Output, Error> {
        self.drive(Some(h), |ev| c.event(ev).map_err(Error::Output))
            .await?;
        c.finish().ok_or(Error::Closed)
    }

    /// `CAPA`: the capability list (also kept by the machine).
    pub async fn capa(&mut self) -> Result<Vec<Capability>, Error> {
        let h = self.machine.capa()?;
        self.run(h, collect::Capabilities::default()).await
    }

    /// `USER` and `PASS`.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<(), Error> {
        let user = Atom::new(user).map_err(|e| Error::InvalidArgument(format!("user: {e}")))?;
        let password =
            Text::new(password).map_err(|e| Error::InvalidArgument(format!("password: {e}")))?;
        let h = self.machine.user(user)?;
        self.simple(h).await?;
        let h = self.machine.pass(Secret::new(password))?;
        self.simple(h).await
    }

    /// `APOP` with the greeting's timestamp.
    pub async fn apop(&mut self, user: &str, secret: &str) -> Result<(), Error> {
        let user = Atom::new(user).map_err(|e| Error::InvalidArgument(format!("user: {e}")))?;
        let h = self.machine.apop(user, secret.as_bytes())?;
        self.simple(h).await
    }

    /// `AUTH` with a SASL mechanism, run to completion (SCRAM's server signature checked).
    pub async fn auth(&mut self, creds: ClientCredentials) -> Result<(), Error> {
        let h = self.machine.auth(creds, &client_nonce()?)?;
        self.simple(h).await
    }

    /// `STAT`.
    pub async fn stat(&mut self) -> Result<Stat, Error> {
        let h = self.machine.stat()?;
        self.run(h, collect::StatReply::default()).await
    }

    /// `LIST`: every message's size.
    pub async fn list(&mut self) -> Result<Vec<ScanListing>, Error> {
        let h = self.machine.list(None)?;
        self.run(h, collect::Listing::default()).await
    }

    /// `LIST n`.
    pub async fn list_one(&mut self, n: MsgNum) -> Result<ScanListing, Error> {
        let h = self.machine.list(Some(n))?;
        self.run(h, collect::OneListing::default()).await
    }

    /// `UIDL`: every message's unique-id.
    pub async fn uidl(&mut self) -> Result<Vec<UidListing>, Error> {
        let h = self.machine.uidl(None)?;
        self.run(h, collect::Uids::default()).await
    }

    /// `UIDL n`.
    pub async fn uidl_one(&mut self, n: MsgNum) -> Result<UidListing, Error> {
        let h = self.machine.uidl(Some(n))?;
        self.run(h, collect::OneUid::default()).await
    }

    /// `RETR n`, the message streamed to `f` chunk by chunk; returns its size.
    pub async fn retr_with(
        &mut self,
        n: MsgNum,
        f: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<u64, Error> {
        let h = self.machine.retr(n)?;
        self.run(h, collect::Body::new(f)).await
    }

    /// `TOP n lines`, streamed to `f`.
    pub async fn top_with(
        &mut self,
        n: MsgNum,
        lines: u64,
        f: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<u64, Error> {
        let h = self.machine.top(n, lines)?;
        self.run(h, collect::Body::new(f)).await
    }

    /// `RETR n` into a futures-io writer; returns the message size.
    pub async fn retr_to<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        n: MsgNum,
        w: &mut W,
    ) -> Result<u64, Error> {
        let h = self.machine.retr(n)?;
        self.body_to(h, w).await
    }

    /// `TOP n lines` into a futures-io writer.
    pub async fn top_to<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        n: MsgNum,
        lines: u64,
        w: &mut W,
    ) -> Result<u64, Error> {
        let h = self.machine.top(n, lines)?;
        self.body_to(h, w).await
    }

    /// Streams a body into an async writer. The machine's chunks borrow its input, so each
    /// read's worth is copied once into a staging buffer and written before the next read.
    async fn body_to<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        h: Handle,
        w: &mut W,
    ) -> Result<u64, Error> {
        let mut staged = std::mem::take(&mut self.staged);
        let mut total = 0u64;
        // A failed write is returned once the reply is over (the rest is read and dropped),
        // so that it cannot reach the next command.
        let mut failed = None;
        let result = loop {
            let done = match self
                .step(Some(h), &mut |ev| {
                    if let Event::BodyChunk { bytes, .. } = ev {
                        total += bytes.len() as u64;
                        staged.extend_from_slice(bytes);
                    }
                    Ok(())
                })
                .await
            {
                Ok(done) => done,
                Err(e) => break Err(e),
            };
            if failed.is_none()
                && let Err(e) = write_all(w, &staged).await
            {
                failed = Some(e);
            }
            staged.clear();
            if done {
                if let Some(e) = failed {
                    break Err(Error::Output(e));
                }
                break poll_fn(|cx| Pin::new(&mut *w).poll_flush(cx))
                    .await
                    .map(|()| total)
                    .map_err(Error::Output);
            }
        };
        staged.clear();
        self.staged = staged;
        result
    }

    /// `DELE n`.
    pub async fn dele(&mut self, n: MsgNum) -> Result<(), Error> {
        let h = self.machine.dele(n)?;
        self.simple(h).await
    }

    /// `RSET`.
    pub async fn rset(&mut self) -> Result<(), Error> {
        let h = self.machine.rset()?;
        self.simple(h).await
    }

    /// `NOOP`.
    pub async fn noop(&mut self) -> Result<(), Error> {
        let h = self.machine.noop()?;
        self.simple(h).await
    }

    /// `QUIT`: in TRANSACTION the server then applies the deletions (an [`Error::Server`] if
    /// some failed). The connection is closed afterwards.
    pub async fn quit(&mut self) -> Result<(), Error> {
        let h = self.machine.quit()?;
        let r = self.simple(h).await;
        self.link.close().await;
        r
    }

    /// How many commands a batch keeps in flight: see
    /// [`pop3_proto::client::Client::pipeline_window`].
    pub fn pipeline_window(&self) -> usize {
        self.machine.pipeline_window()
    }

    /// `RETR` of each message, pipelined when the server allows it (up to
    /// [`Client::pipeline_window`] in flight); `f` gets each message's chunks and then
    /// [`Chunk::End`]. A `-ERR` for one message stops the batch with [`Error::Server`] (an
    /// error of `f`, with [`Error::Output`]), after the replies already in flight are read, so
    /// the connection stays usable.
    pub async fn fetch_many(
        &mut self,
        msgs: &[MsgNum],
        mut f: impl FnMut(MsgNum, Chunk<'_>) -> io::Result<()>,
    ) -> Result<(), Error> {
        let mut pending = VecDeque::new();
        let mut next = 0;
        while next < msgs.len() || !pending.is_empty() {
            // Refill the window once it is half empty, so that the RETRs go out in batches
            // (one send, and one read by the server, for many) while the replies to the
            // other half keep the connection busy; the machine sends what pipelining allows.
            let window = self.pipeline_window();
            let refill = pending.len() <= window / 2;
            while refill && next < msgs.len() && pending.len() < window {
                pending.push_back((self.machine.retr(msgs[next])?, msgs[next]));
                next += 1;
            }
            let Some((h, msg)) = pending.pop_front() else {
                break;
            };
            // Replies come in order: the head's chunks come first, and only its.
            let r = self
                .drive(Some(h), |ev| {
                    if let Event::BodyChunk { bytes, .. } = ev {
                        f(msg, Chunk::Data(bytes)).map_err(Error::Output)?;
                    }
                    Ok(())
                })
                .await;
            let r = r.and_then(|()| f(msg, Chunk::End).map_err(Error::Output));
            match r {
                Ok(()) => {}
                // The batch stops; the replies in flight are read (and dropped), so the
                // connection stays usable.
                Err(e @ (Error::Server(_) | Error::Output(_))) => {
                    for (h, _) in pending.drain(..) {
                        self.drive(Some(h), |_| Ok(())).await.or_else(|e| match e {
                            Error::Server(_) => Ok(()),
                            e => Err(e),
                        })?;
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `DELE` of each message, pipelined when the server allows it (up to
    /// [`Client::pipeline_window`] in flight). The first `-ERR` is returned after the
    /// replies in flight are read.
    pub async fn delete_many(&mut self, msgs: &[MsgNum]) -> Result<(), Error> {
        let window = self.pipeline_window();
        for chunk in msgs.chunks(window) {
            let mut last = None;
            for m in chunk {
                last = Some(self.machine.dele(*m)?);
            }
            let Some(last) = last else { continue };
            let mut error = None;
            let r = self
                .drive(Some(last), |ev| {
                    if let Event::Err { line, .. } = ev {
                        error.get_or_insert(line);
                    }
                    Ok(())
                })
                .await;
            match r {
                Ok(()) => {}
                Err(Error::Server(line)) => {
                    error.get_or_insert(line);
                }
                Err(e) => return Err(e),
            }
            if let Some(line) = error {
                return Err(Error::Server(line));
            }
        }
        Ok(())
    }
}
