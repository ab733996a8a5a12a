//! The POP3 client over a futures-io stream.
//!
//! Each method enqueues typed commands in the sans-IO [`pop3_proto::client::Client`] and runs
//! one loop that writes what the machine wants sent, reads into a fixed buffer (racing the
//! machine's deadline on the [`Runtime`]'s timer), and hands the machine's events to the method
//! until its command is done. Bodies go from that buffer straight to the caller: never whole in
//! memory.
//!
//! ```no_run
//! # #[cfg(feature = "smol")]
//! # fn demo() -> Result<(), pop3_futures::client::Error> { smol::block_on(async {
//! use pop3_futures::client::{ClientOptions, Pop3Client, TlsMode};
//! use pop3_futures::pop3_tls::{Trust, client_config};
//!
//! let tls = client_config(&Trust::WebPki).expect("TLS configuration");
//! let mut client = Pop3Client::connect("pop.example.com:995", ClientOptions::new(TlsMode::Implicit(tls))).await?;
//! client.login("alice", "secret").await?;
//! for item in client.list().await? {
//!     client.retr_with(item.msg, |_chunk| Ok(())).await?;
//! }
//! client.quit().await
//! # }) }
//! ```

use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_io::{AsyncRead, AsyncWrite};
use futures_rustls::TlsConnector;
use futures_rustls::client::TlsStream;
use futures_util::AsyncWriteExt;
use futures_util::future::{Either, select};
use pop3_proto::client::{Client, Event, Handle};
use pop3_proto::collect::{self, Collect};
use pop3_proto::sasl::ClientCredentials;
use pop3_proto::{Atom, Capability, Greeting, MsgNum, ScanListing, Secret, Stat, Text, UidListing};

use crate::Runtime;
use crate::stream::MaybeTls;

pub use pop3_tls::{ClientOptions, Error, TlsMode};

pub use pop3_proto::collect::Chunk;

const READ_BUF: usize = 64 * 1024;

/// A POP3 client connection over the stream `S`, with the timer of runtime `R`.
pub struct Pop3Client<S, R> {
    stream: MaybeTls<S, TlsStream<S>>,
    runtime: R,
    machine: Client,
    buf: Box<[u8]>,
    out: Vec<u8>,
    /// How much of `out` is written.
    sent: usize,
    greeting: Option<Greeting>,
}

impl<S, R> std::fmt::Debug for Pop3Client<S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pop3Client")
            .field("state", &self.machine.state())
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "smol")]
impl Pop3Client<smol::net::TcpStream, crate::Smol> {
    /// Connects to `addr` (`host:port`) with smol's TCP (within `options.connect_timeout`),
    /// then as [`Pop3Client::connect_stream`]. On another runtime, connect its TCP stream and
    /// call [`Pop3Client::connect_stream`].
    pub async fn connect(addr: &str, options: ClientOptions) -> Result<Self, Error> {
        let host = pop3_tls::host_of(addr);
        let deadline = Instant::now() + options.connect_timeout;
        let connect = pin!(smol::net::TcpStream::connect(addr));
        let tcp = match select(connect, crate::Smol.sleep_until(deadline)).await {
            Either::Left((r, _)) => r?,
            Either::Right(_) => return Err(Error::Timeout),
        };
        let _ = tcp.set_nodelay(true);
        let mut options = options;
        options.server_name.get_or_insert(host);
        Self::connect_stream(tcp, options, crate::Smol).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send, R: Runtime> Pop3Client<S, R> {
    /// Reads the greeting and the capabilities over a connected stream, and for
    /// [`TlsMode::StartTls`] upgrades it before anything else.
    pub async fn connect_stream(
        stream: S,
        options: ClientOptions,
        runtime: R,
    ) -> Result<Self, Error> {
        let name = options
            .server_name
            .clone()
            .unwrap_or_else(|| "localhost".into());
        let stream = match &options.tls {
            TlsMode::Implicit(cfg) => MaybeTls::Tls(Box::new(
                handshake(cfg, &name, stream, &runtime, options.connect_timeout).await?,
            )),
            _ => MaybeTls::Plain(stream),
        };
        let mut c = Pop3Client {
            stream,
            runtime,
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
            if let Some(Event::Closed { error }) = c.machine.poll_event() {
                return Err(error.map_or(Error::Closed, Error::Protocol));
            }
            let plain = c.stream.take_plain()?;
            c.stream = MaybeTls::Tls(Box::new(
                handshake(cfg, &name, plain, &c.runtime, options.connect_timeout).await?,
            ));
            c.machine.tls_established(Instant::now());
        }
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

    /// The protocol machine.
    pub fn machine(&self) -> &Client {
        &self.machine
    }

    /// Runs the connection until the command `until` is done (`None`: until the greeting),
    /// passing the other events to `f`. `-ERR` to `until` is `Error::Server`.
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
    /// writing to us never blocks our writes: imap-next#134), racing the machine's deadline,
    /// then feeds the machine the bytes read, the end of stream or its timeout.
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
            Pin::new(&mut *stream).poll_read(cx, buf)
        });
        let n = match self.machine.poll_timeout() {
            Some(deadline) => match select(pin!(io), self.runtime.sleep_until(deadline)).await {
                Either::Left((r, _)) => r?,
                Either::Right(_) => {
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

    /// `CAPA`.
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

    /// `LIST`.
    pub async fn list(&mut self) -> Result<Vec<ScanListing>, Error> {
        let h = self.machine.list(None)?;
        self.run(h, collect::Listing::default()).await
    }

    /// `LIST n`.
    pub async fn list_one(&mut self, n: MsgNum) -> Result<ScanListing, Error> {
        let h = self.machine.list(Some(n))?;
        self.run(h, collect::OneListing::default()).await
    }

    /// `UIDL`.
    pub async fn uidl(&mut self) -> Result<Vec<UidListing>, Error> {
        let h = self.machine.uidl(None)?;
        self.run(h, collect::Uids::default()).await
    }

    /// `UIDL n`.
    pub async fn uidl_one(&mut self, n: MsgNum) -> Result<UidListing, Error> {
        let h = self.machine.uidl(Some(n))?;
        self.run(h, collect::OneUid::default()).await
    }

    /// `RETR n`, streamed to `f` chunk by chunk; returns the message size.
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
    /// each read's worth is copied once into a staging buffer (at most the read buffer's size)
    /// and written before the next read.
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

    /// `QUIT`; the stream is closed afterwards.
    pub async fn quit(&mut self) -> Result<(), Error> {
        let h = self.machine.quit()?;
        let r = self.simple(h).await;
        let _ = self.stream.close().await;
        r
    }

    /// `RETR` of each message, pipelined when the server allows it; `f` gets each message's
    /// chunks and then [`Chunk::End`]. A `-ERR` stops the batch after the replies in flight.
    pub async fn fetch_many(
        &mut self,
        msgs: &[MsgNum],
        mut f: impl FnMut(MsgNum, Chunk<'_>) -> std::io::Result<()>,
    ) -> Result<(), Error> {
        let mut pending = std::collections::VecDeque::new();
        let mut next = 0;
        while next < msgs.len() || !pending.is_empty() {
            while next < msgs.len() && pending.len() < self.window() {
                pending.push_back((self.machine.retr(msgs[next])?, msgs[next]));
                next += 1;
            }
            let Some((h, msg)) = pending.pop_front() else {
                break;
            };
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
                        let _ = self.simple(h).await;
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
        for chunk in msgs.chunks(self.window()) {
            let mut last = None;
            for m in chunk {
                last = Some(self.machine.dele(*m)?);
            }
            let mut error = None;
            if let Some(h) = last {
                self.drive(Some(h), |ev| {
                    if let Event::Err { line, .. } = ev {
                        error.get_or_insert(line);
                    }
                    Ok(())
                })
                .await?;
            }
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

async fn handshake<S: AsyncRead + AsyncWrite + Unpin, R: Runtime>(
    config: &Arc<rustls::ClientConfig>,
    name: &str,
    stream: S,
    runtime: &R,
    limit: Duration,
) -> Result<TlsStream<S>, Error> {
    let server_name = pop3_tls::server_name(name).map_err(|e| Error::Tls(e.to_string()))?;
    let connect = TlsConnector::from(config.clone()).connect(server_name, stream);
    match select(connect, runtime.sleep_until(Instant::now() + limit)).await {
        Either::Left((r, _)) => r.map_err(Error::from_handshake),
        Either::Right(_) => Err(Error::Timeout),
    }
}
