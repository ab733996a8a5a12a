//! The POP3 client on tokio.
//!
//! Each method enqueues typed commands in the sans-IO [`pop3_proto::client::Client`] and runs
//! one loop ([`Pop3Client::drive`]) that writes what the machine wants sent, reads into a
//! fixed buffer, and hands the machine's events to the method until its command is done. Message
//! bodies go from that buffer straight to the caller's writer or callback: never whole in
//! memory.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pop3_tokio::client::Error> {
//! use pop3_tokio::client::{ClientOptions, Pop3Client, TlsMode};
//! use pop3_tokio::pop3_tls::{Trust, client_config};
//!
//! let tls = client_config(&Trust::WebPki).expect("TLS configuration");
//! let mut client = Pop3Client::connect("pop.example.com:995", ClientOptions::new(TlsMode::Implicit(tls))).await?;
//! client.login("alice", "secret").await?;
//! let stat = client.stat().await?;
//! let mut out = tokio::io::sink();
//! for item in client.list().await? {
//!     client.retr_to(item.msg, &mut out).await?;
//! }
//! client.quit().await?;
//! # let _ = stat; Ok(()) }
//! ```

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use pop3_proto::client::{Client, Event, Handle};
use pop3_proto::collect::{self, Collect};
use pop3_proto::sasl::ClientCredentials;
use pop3_proto::{Atom, Capability, Greeting, MsgNum, ScanListing, Secret, Stat, Text, UidListing};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::stream::MaybeTls;

pub use pop3_tls::{ClientOptions, Error, TlsMode};

pub use pop3_proto::collect::Chunk;

const READ_BUF: usize = 64 * 1024;

/// A POP3 client connection.
#[derive(Debug)]
pub struct Pop3Client {
    stream: MaybeTls<TlsStream<TcpStream>>,
    machine: Client,
    buf: Box<[u8]>,
    out: Vec<u8>,
    /// How much of `out` is written.
    sent: usize,
    greeting: Option<Greeting>,
}

impl Pop3Client {
    /// Connects to `addr` (`host:port`), reads the greeting and the capabilities, and for
    /// [`TlsMode::StartTls`] upgrades the connection before anything else.
    pub async fn connect(addr: &str, options: ClientOptions) -> Result<Self, Error> {
        let host = pop3_tls::host_of(addr);
        let connect = TcpStream::connect(addr);
        let tcp = tokio::time::timeout(options.connect_timeout, connect)
            .await
            .map_err(|_| Error::Timeout)??;
        let mut options = options;
        options.server_name.get_or_insert(host);
        Self::connect_stream(tcp, options).await
    }

    /// Like [`Pop3Client::connect`], over an already connected socket.
    pub async fn connect_stream(tcp: TcpStream, options: ClientOptions) -> Result<Self, Error> {
        let _ = tcp.set_nodelay(true);
        let name = options
            .server_name
            .clone()
            .unwrap_or_else(|| "localhost".into());
        let stream = match &options.tls {
            TlsMode::Implicit(cfg) => MaybeTls::Tls(Box::new(
                handshake(cfg, &name, tcp, options.connect_timeout).await?,
            )),
            _ => MaybeTls::Plain(tcp),
        };
        let mut c = Pop3Client {
            stream,
            machine: Client::new(options.config.clone(), Instant::now()),
            buf: vec![0; READ_BUF].into_boxed_slice(),
            out: Vec::new(),
            sent: 0,
            greeting: None,
        };
        c.drive(None, |_| Ok(())).await?;
        if let TlsMode::StartTls(cfg) = &options.tls {
            let _ = c.capa().await;
            if !c.machine.has_capability(&Capability::Stls) {
                return Err(Error::TlsUnavailable);
            }
            let h = c.machine.stls()?;
            c.simple(h).await?;
            // Bytes after the +OK would be an injection: the machine fails on them here.
            if let Some(Event::Closed { error }) = c.machine.poll_event() {
                return Err(error.map_or(Error::Closed, Error::Protocol));
            }
            let tcp = c.stream.take_plain()?;
            c.stream = MaybeTls::Tls(Box::new(
                handshake(cfg, &name, tcp, options.connect_timeout).await?,
            ));
            c.machine.tls_established(Instant::now());
        }
        // Capabilities decide pipelining and the SASL choice; a server without CAPA is fine.
        let _ = c.capa().await;
        Ok(c)
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
    pub fn machine(&self) -> &Client {
        &self.machine
    }

    /// Runs the connection until the command `until` is done (or, for `None`, until the
    /// greeting), passing every other event to `f`. `-ERR` to `until` is `Error::Server`.
    async fn drive(
        &mut self,
        until: Option<Handle>,
        mut f: impl FnMut(Event<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        while !self.step(until, &mut f).await? {}
        Ok(())
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
                Event::Done { handle } if Some(handle) == until => return Ok(true),
                // Its `Done` follows and is ignored by later commands.
                Event::Err { handle, line } if Some(handle) == until => {
                    return Err(Error::Server(line));
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

    /// Sends what the machine wants sent while reading (both at once, so a server blocked
    /// writing to us never blocks our writes: imap-next#134), then feeds the machine the bytes
    /// read, the end of stream or its timeout.
    async fn io_round(&mut self) -> Result<(), Error> {
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        }
        self.machine.poll_transmit(Instant::now(), &mut self.out);
        let (stream, out, sent, buf) = (&mut self.stream, &self.out, &mut self.sent, &mut self.buf);
        let io = std::future::poll_fn(|cx| {
            while *sent < out.len() {
                match Pin::new(&mut *stream).poll_write(cx, &out[*sent..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(k)) => *sent += k,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                }
            }
            if *sent == out.len() {
                // TLS keeps records until flushed; pending is fine, the read goes on.
                if let Poll::Ready(Err(e)) = Pin::new(&mut *stream).poll_flush(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            let mut rb = ReadBuf::new(&mut buf[..]);
            match Pin::new(&mut *stream).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        });
        let n = match self.machine.poll_timeout() {
            Some(deadline) => match tokio::time::timeout_at(deadline.into(), io).await {
                Ok(r) => r?,
                Err(_) => {
                    self.machine.handle_timeout(Instant::now());
                    return Ok(());
                }
            },
            None => io.await?,
        };
        if n == 0 {
            self.machine.handle_eof(Instant::now());
        } else {
            self.machine.handle_input(&self.buf[..n], Instant::now());
        }
        Ok(())
    }

    async fn simple(&mut self, h: Handle) -> Result<(), Error> {
        self.drive(Some(h), |_| Ok(())).await
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

    /// `AUTH` with a SASL mechanism.
    pub async fn auth(&mut self, creds: ClientCredentials) -> Result<(), Error> {
        let h = self.machine.auth(creds, &pop3_tls::client_nonce()?)?;
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
        f: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, Error> {
        let h = self.machine.retr(n)?;
        self.body(h, f).await
    }

    /// `TOP n lines`, streamed to `f`.
    pub async fn top_with(
        &mut self,
        n: MsgNum,
        lines: u64,
        f: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, Error> {
        let h = self.machine.top(n, lines)?;
        self.body(h, f).await
    }

    async fn body(
        &mut self,
        h: Handle,
        f: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, Error> {
        self.run(h, collect::Body::new(f)).await
    }

    /// Feeds the events of command `h` to a collector until it is done.
    async fn run<C: Collect>(&mut self, h: Handle, mut c: C) -> Result<C::Output, Error> {
        self.drive(Some(h), |ev| c.event(ev).map_err(Error::Output))
            .await?;
        c.finish().ok_or(Error::Closed)
    }

    /// `RETR n` into an async writer; returns the message size.
    pub async fn retr_to<W: AsyncWrite + Unpin>(
        &mut self,
        n: MsgNum,
        w: &mut W,
    ) -> Result<u64, Error> {
        let h = self.machine.retr(n)?;
        self.body_to(h, w).await
    }

    /// `TOP n lines` into an async writer.
    pub async fn top_to<W: AsyncWrite + Unpin>(
        &mut self,
        n: MsgNum,
        lines: u64,
        w: &mut W,
    ) -> Result<u64, Error> {
        let h = self.machine.top(n, lines)?;
        self.body_to(h, w).await
    }

    /// Streams a body into an async writer. The machine's chunks borrow its input buffer, so
    /// each read's worth is copied once into a staging buffer and written.
    async fn body_to<W: AsyncWrite + Unpin>(&mut self, h: Handle, w: &mut W) -> Result<u64, Error> {
        let mut total = 0u64;
        let mut staged: Vec<u8> = Vec::with_capacity(READ_BUF);
        loop {
            let done = self
                .step(Some(h), &mut |ev| {
                    if let Event::BodyChunk { bytes, .. } = ev {
                        total += bytes.len() as u64;
                        staged.extend_from_slice(bytes);
                    }
                    Ok(())
                })
                .await?;
            w.write_all(&staged).await.map_err(Error::Output)?;
            staged.clear();
            if done {
                w.flush().await.map_err(Error::Output)?;
                return Ok(total);
            }
        }
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

    /// `QUIT`: in TRANSACTION the server then applies the deletions (an `Error::Server` if
    /// some failed). The connection is closed afterwards.
    pub async fn quit(&mut self) -> Result<(), Error> {
        let h = self.machine.quit()?;
        let r = self.simple(h).await;
        let _ = self.stream.shutdown().await;
        r
    }

    /// `RETR` of each message, pipelined when the server allows it; `f` gets each message's
    /// chunks and then [`Chunk::End`]. A `-ERR` for one message stops the batch with
    /// `Error::Server`, after the replies already in flight are read.
    pub async fn fetch_many(
        &mut self,
        msgs: &[MsgNum],
        mut f: impl FnMut(MsgNum, Chunk<'_>) -> std::io::Result<()>,
    ) -> Result<(), Error> {
        let mut pending = std::collections::VecDeque::new();
        let mut next = 0;
        while next < msgs.len() || !pending.is_empty() {
            // Keep the window full: the machine sends only what pipelining allows.
            while next < msgs.len() && pending.len() < self.window() {
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
            match r {
                Ok(()) => f(msg, Chunk::End).map_err(Error::Output)?,
                Err(Error::Server(line)) => {
                    for (h, _) in pending.drain(..) {
                        let _ = self.drive(Some(h), |_| Ok(())).await;
                    }
                    return Err(Error::Server(line));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `DELE` of each message, pipelined when the server allows it.
    pub async fn delete_many(&mut self, msgs: &[MsgNum]) -> Result<(), Error> {
        let mut handles = Vec::with_capacity(msgs.len());
        for chunk in msgs.chunks(self.window()) {
            handles.clear();
            for m in chunk {
                handles.push(self.machine.dele(*m)?);
            }
            let mut error = None;
            let last = *handles.last().unwrap_or(&Handle(u64::MAX));
            self.drive(Some(last), |ev| {
                if let Event::Err { line, .. } = ev {
                    error.get_or_insert(line);
                }
                Ok(())
            })
            .await?;
            if let Some(line) = error {
                return Err(Error::Server(line));
            }
        }
        Ok(())
    }

    fn window(&self) -> usize {
        if self.machine.pipelining() { 16 } else { 1 }
    }
}

async fn handshake(
    config: &Arc<rustls::ClientConfig>,
    name: &str,
    tcp: TcpStream,
    limit: Duration,
) -> Result<TlsStream<TcpStream>, Error> {
    let server_name = pop3_tls::server_name(name).map_err(|e| Error::Tls(e.to_string()))?;
    let connect = TlsConnector::from(config.clone()).connect(server_name, tcp);
    tokio::time::timeout(limit, connect)
        .await
        .map_err(|_| Error::Timeout)?
        .map_err(Error::from_handshake)
}
