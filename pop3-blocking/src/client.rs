//! The POP3 client on blocking `std::net`.
//!
//! Each method enqueues typed commands in the sans-IO [`pop3_proto::client::Client`] and runs
//! one loop ([`Pop3Client::drive`]) that writes what the machine wants sent, reads into a
//! fixed buffer (the read timeout set from the machine's deadline), and hands the machine's
//! events to the method until its command is done. Bodies go from that buffer straight to the
//! caller's writer or callback: never whole in memory.
//!
//! Writing and reading alternate rather than overlap: the loop writes all pending output,
//! then reads. That cannot deadlock against a server blocked writing to us, because what the
//! machine sends at once is at most its pipelining window of command lines (each at most
//! `max_command_line` octets), which the socket buffers absorb.
//!
//! ```no_run
//! use pop3_blocking::client::{ClientOptions, Pop3Client, TlsMode};
//! use pop3_blocking::pop3_tls::{Trust, client_config};
//!
//! let tls = client_config(&Trust::WebPki).expect("TLS configuration");
//! let mut client = Pop3Client::connect("pop.example.com:995", ClientOptions::new(TlsMode::Implicit(tls)))?;
//! client.login("alice", "secret")?;
//! for item in client.list()? {
//!     client.retr_to(item.msg, &mut std::io::sink())?;
//! }
//! client.quit()?;
//! # Ok::<(), pop3_blocking::client::Error>(())
//! ```

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pop3_proto::client::{Client, Event, Handle};
use pop3_proto::collect::{self, Collect};
use pop3_proto::sasl::ClientCredentials;
use pop3_proto::{
    Atom, Capability, Greeting, MsgNum, ScanListing, Secret, Stat, StatusLine, Text, UidListing,
};
use rustls::{ClientConnection, StreamOwned};

use crate::stream::{MaybeTls, complete_handshake, timed_out};

pub use pop3_tls::{ClientOptions, Error, TlsMode};

pub use pop3_proto::collect::Chunk;

const READ_BUF: usize = 64 * 1024;

/// A POP3 client connection.
#[derive(Debug)]
pub struct Pop3Client {
    stream: MaybeTls<ClientConnection>,
    machine: Client,
    buf: Box<[u8]>,
    out: Vec<u8>,
    greeting: Option<Greeting>,
}

fn tls_client(
    config: &Arc<rustls::ClientConfig>,
    name: &str,
    tcp: TcpStream,
    limit: Duration,
) -> Result<StreamOwned<ClientConnection, TcpStream>, Error> {
    let server_name = pop3_tls::server_name(name).map_err(|e| Error::Tls(e.to_string()))?;
    let conn = ClientConnection::new(config.clone(), server_name)
        .map_err(|e| Error::Tls(e.to_string()))?;
    let mut tls = StreamOwned::new(conn, tcp);
    complete_handshake(&mut tls, limit).map_err(Error::from_handshake)?;
    Ok(tls)
}

impl Pop3Client {
    /// Connects to `addr` (`host:port`), reads the greeting and the capabilities, and for
    /// [`TlsMode::StartTls`] upgrades the connection before anything else.
    pub fn connect(addr: &str, options: ClientOptions) -> Result<Self, Error> {
        let host = pop3_tls::host_of(addr);
        let mut last = None;
        for sa in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&sa, options.connect_timeout) {
                Ok(tcp) => {
                    let mut options = options;
                    options.server_name.get_or_insert(host);
                    return Self::connect_stream(tcp, options);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or(Error::Closed, Error::Io))
    }

    /// Like [`Pop3Client::connect`], over an already connected socket.
    pub fn connect_stream(tcp: TcpStream, options: ClientOptions) -> Result<Self, Error> {
        let _ = tcp.set_nodelay(true);
        let name = options
            .server_name
            .clone()
            .unwrap_or_else(|| "localhost".into());
        let stream = match &options.tls {
            TlsMode::Implicit(cfg) => MaybeTls::Tls(Box::new(tls_client(
                cfg,
                &name,
                tcp,
                options.connect_timeout,
            )?)),
            _ => MaybeTls::Plain(tcp),
        };
        let mut c = Pop3Client {
            stream,
            machine: Client::new(options.config.clone(), Instant::now()),
            buf: vec![0; READ_BUF].into_boxed_slice(),
            out: Vec::new(),
            greeting: None,
        };
        c.drive(None, |_| Ok(()))?;
        if let TlsMode::StartTls(cfg) = &options.tls {
            let _ = c.capa();
            if !c.machine.has_capability(&Capability::Stls) {
                return Err(Error::TlsUnavailable);
            }
            let h = c.machine.stls()?;
            c.drive(Some(h), |_| Ok(()))?;
            if let Some(Event::Closed { error }) = c.machine.poll_event() {
                return Err(error.map_or(Error::Closed, Error::Protocol));
            }
            let MaybeTls::Plain(tcp) = c.stream else {
                return Err(Error::Closed);
            };
            c.stream = MaybeTls::Tls(Box::new(tls_client(
                cfg,
                &name,
                tcp,
                options.connect_timeout,
            )?));
            c.machine.tls_established(Instant::now());
        }
        let _ = c.capa();
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
    fn drive(
        &mut self,
        until: Option<Handle>,
        mut f: impl FnMut(Event<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut failed: Option<StatusLine> = None;
        loop {
            while let Some(ev) = self.machine.poll_event() {
                match ev {
                    Event::Greeting(g) => {
                        let line = g.line().clone();
                        self.greeting = Some(g);
                        if until.is_none() {
                            return if line.is_ok() {
                                Ok(())
                            } else {
                                Err(Error::Server(line))
                            };
                        }
                    }
                    Event::Done { handle } if Some(handle) == until => {
                        return failed.take().map_or(Ok(()), |l| Err(Error::Server(l)));
                    }
                    Event::Err { handle, line } if Some(handle) == until => failed = Some(line),
                    Event::Closed { error } => {
                        return Err(error.map_or(Error::Closed, Error::Protocol));
                    }
                    ev => f(ev)?,
                }
            }
            self.out.clear();
            self.machine.poll_transmit(Instant::now(), &mut self.out);
            if !self.out.is_empty() {
                self.stream.write_all(&self.out)?;
                self.stream.flush()?;
            }
            let deadline = self.machine.poll_timeout();
            self.stream
                .set_read_timeout(deadline.map(|d| d.saturating_duration_since(Instant::now())))?;
            match self.stream.read(&mut self.buf) {
                Ok(0) => self.machine.handle_eof(Instant::now()),
                Ok(n) => self.machine.handle_input(&self.buf[..n], Instant::now()),
                Err(e) if timed_out(&e) => self.machine.handle_timeout(Instant::now()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn simple(&mut self, h: Handle) -> Result<(), Error> {
        self.drive(Some(h), |_| Ok(()))
    }

    /// `CAPA`.
    pub fn capa(&mut self) -> Result<Vec<Capability>, Error> {
        let h = self.machine.capa()?;
        self.run(h, collect::Capabilities::default())
    }

    /// `USER` and `PASS`.
    pub fn login(&mut self, user: &str, password: &str) -> Result<(), Error> {
        let user = Atom::new(user).map_err(|e| Error::InvalidArgument(format!("user: {e}")))?;
        let password =
            Text::new(password).map_err(|e| Error::InvalidArgument(format!("password: {e}")))?;
        let h = self.machine.user(user)?;
        self.simple(h)?;
        let h = self.machine.pass(Secret::new(password))?;
        self.simple(h)
    }

    /// `APOP` with the greeting's timestamp.
    pub fn apop(&mut self, user: &str, secret: &str) -> Result<(), Error> {
        let user = Atom::new(user).map_err(|e| Error::InvalidArgument(format!("user: {e}")))?;
        let h = self.machine.apop(user, secret.as_bytes())?;
        self.simple(h)
    }

    /// `AUTH` with a SASL mechanism.
    pub fn auth(&mut self, creds: ClientCredentials) -> Result<(), Error> {
        let h = self.machine.auth(creds, &pop3_tls::client_nonce()?)?;
        self.simple(h)
    }

    /// `STAT`.
    pub fn stat(&mut self) -> Result<Stat, Error> {
        let h = self.machine.stat()?;
        self.run(h, collect::StatReply::default())
    }

    /// `LIST`.
    pub fn list(&mut self) -> Result<Vec<ScanListing>, Error> {
        let h = self.machine.list(None)?;
        self.run(h, collect::Listing::default())
    }

    /// `LIST n`.
    pub fn list_one(&mut self, n: MsgNum) -> Result<ScanListing, Error> {
        let h = self.machine.list(Some(n))?;
        self.run(h, collect::OneListing::default())
    }

    /// `UIDL`.
    pub fn uidl(&mut self) -> Result<Vec<UidListing>, Error> {
        let h = self.machine.uidl(None)?;
        self.run(h, collect::Uids::default())
    }

    /// `UIDL n`.
    pub fn uidl_one(&mut self, n: MsgNum) -> Result<UidListing, Error> {
        let h = self.machine.uidl(Some(n))?;
        self.run(h, collect::OneUid::default())
    }

    /// `RETR n`, streamed to `f` chunk by chunk; returns the message size.
    pub fn retr_with(
        &mut self,
        n: MsgNum,
        f: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, Error> {
        let h = self.machine.retr(n)?;
        self.body(h, f)
    }

    /// `TOP n lines`, streamed to `f`.
    pub fn top_with(
        &mut self,
        n: MsgNum,
        lines: u64,
        f: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, Error> {
        let h = self.machine.top(n, lines)?;
        self.body(h, f)
    }

    /// `RETR n` into a writer.
    pub fn retr_to(&mut self, n: MsgNum, w: &mut impl Write) -> Result<u64, Error> {
        self.retr_with(n, |c| w.write_all(c))
    }

    /// `TOP n lines` into a writer.
    pub fn top_to(&mut self, n: MsgNum, lines: u64, w: &mut impl Write) -> Result<u64, Error> {
        self.top_with(n, lines, |c| w.write_all(c))
    }

    fn body(
        &mut self,
        h: Handle,
        f: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, Error> {
        self.run(h, collect::Body::new(f))
    }

    /// Feeds the events of command `h` to a collector until it is done.
    fn run<C: Collect>(&mut self, h: Handle, mut c: C) -> Result<C::Output, Error> {
        self.drive(Some(h), |ev| c.event(ev).map_err(Error::Output))?;
        c.finish().ok_or(Error::Closed)
    }

    /// `DELE n`.
    pub fn dele(&mut self, n: MsgNum) -> Result<(), Error> {
        let h = self.machine.dele(n)?;
        self.simple(h)
    }

    /// `RSET`.
    pub fn rset(&mut self) -> Result<(), Error> {
        let h = self.machine.rset()?;
        self.simple(h)
    }

    /// `NOOP`.
    pub fn noop(&mut self) -> Result<(), Error> {
        let h = self.machine.noop()?;
        self.simple(h)
    }

    /// `QUIT`; the connection is closed afterwards.
    pub fn quit(&mut self) -> Result<(), Error> {
        let h = self.machine.quit()?;
        let r = self.simple(h);
        let _ = self.stream.tcp().shutdown(std::net::Shutdown::Both);
        r
    }

    /// `RETR` of each message, pipelined when the server allows it; `f` gets each message's
    /// chunks and then [`Chunk::End`]. A `-ERR` stops the batch after the replies in flight.
    pub fn fetch_many(
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
            let r = self.drive(Some(h), |ev| {
                if let Event::BodyChunk { bytes, .. } = ev {
                    f(msg, Chunk::Data(bytes)).map_err(Error::Output)?;
                }
                Ok(())
            });
            match r {
                Ok(()) => f(msg, Chunk::End).map_err(Error::Output)?,
                Err(Error::Server(line)) => {
                    for (h, _) in pending.drain(..) {
                        let _ = self.simple(h);
                    }
                    return Err(Error::Server(line));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `DELE` of each message, pipelined when the server allows it.
    pub fn delete_many(&mut self, msgs: &[MsgNum]) -> Result<(), Error> {
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
                })?;
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
