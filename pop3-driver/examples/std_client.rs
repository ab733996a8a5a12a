//! Bring your own runtime, client side: POP3 over a plain blocking `std::net::TcpStream`,
//! driving the sans-IO client machine [`pop3_proto::client::Client`] directly.
//!
//! The machine's contract, as [`Pop3::run`] keeps it: enqueue a command (a typed call that
//! returns its `Handle`), write what `poll_transmit` gives, then take events with `poll_event`
//! until that command's `Done` (a body chunk borrows the machine's buffer: use it at once);
//! when there is no event, read from the socket and feed `handle_input`, `handle_eof`, or
//! `handle_timeout` once the machine's `poll_timeout` passes (the read timeout here). Commands
//! go one at a time: a pipelining client would keep writing its commands while it reads.
//!
//! Plain text only. STLS would go right after the greeting: `stls()`, and on its
//! `Event::StlsReady` a `rustls::ClientConnection` between the socket and the machine (the
//! handshake, then every read and write through it), `tls_established`, and `CAPA` again.
//!
//! `cargo run -p pop3-driver --example std_client -- ADDR USER PASSWORD [--delete]`: logs
//! in (USER/PASS, plain text: no TLS here), STAT, LIST, RETR of every message to stdout, with
//! `--delete` DELE of each, QUIT (which commits the deletions); a summary on stderr.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use pop3_proto::client::{Client, ClientConfig, ClientError, Event, Handle};
use pop3_proto::{Atom, Secret, Stat, Text};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How long connecting, a write, or waiting for any byte of a reply may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A connection: the socket and the protocol machine.
pub(crate) struct Pop3 {
    tcp: TcpStream,
    machine: Client,
    buf: Vec<u8>,
}

impl Pop3 {
    /// Connects and reads the greeting.
    pub(crate) fn connect(addr: &str) -> Result<Self> {
        let to = addr.to_socket_addrs()?.next().ok_or("no such address")?;
        let tcp = TcpStream::connect_timeout(&to, TIMEOUT)?;
        tcp.set_write_timeout(Some(TIMEOUT))?;
        tcp.set_nodelay(true)?;
        let mut config = ClientConfig::default();
        config.response_timeout = Some(TIMEOUT);
        let machine = Client::new(config, Instant::now());
        let mut pop3 = Pop3 {
            tcp,
            machine,
            buf: vec![0; 64 * 1024],
        };
        pop3.run(None, |_| Ok(()))?;
        Ok(pop3)
    }

    /// Enqueues a command with `cmd`, then runs it to its end, handing its events to `f`.
    pub(crate) fn call(
        &mut self,
        cmd: impl FnOnce(&mut Client) -> std::result::Result<Handle, ClientError>,
        f: impl FnMut(Event<'_>) -> io::Result<()>,
    ) -> Result<()> {
        let handle = cmd(&mut self.machine)?;
        self.run(Some(handle), f)
    }

    /// Moves bytes until the command `handle` is done (`None`: until the greeting); `-ERR`,
    /// a broken reply, a timeout or a closed connection is an error.
    fn run(
        &mut self,
        handle: Option<Handle>,
        mut f: impl FnMut(Event<'_>) -> io::Result<()>,
    ) -> Result<()> {
        let mut failed = None;
        loop {
            let mut out = Vec::new();
            self.machine.poll_transmit(Instant::now(), &mut out);
            self.tcp.write_all(&out)?;
            while let Some(event) = self.machine.poll_event() {
                match event {
                    Event::Greeting(_) if handle.is_none() => return Ok(()),
                    Event::Err { line, .. } => failed = Some(format!("-ERR {}", line.text())),
                    Event::Done { handle: h } if Some(h) == handle => {
                        return failed.map_or(Ok(()), |e| Err(e.into()));
                    }
                    Event::Closed { error: Some(e) } => return Err(e.into()),
                    Event::Closed { error: None } => return Ok(()),
                    event => f(event)?,
                }
            }
            let left = self.machine.poll_timeout().map(|d| {
                let left = d.saturating_duration_since(Instant::now());
                left.max(Duration::from_millis(1)) // zero would mean "no timeout"
            });
            self.tcp.set_read_timeout(left.or(Some(TIMEOUT)))?;
            match self.tcp.read(&mut self.buf) {
                Ok(0) => self.machine.handle_eof(Instant::now()),
                Ok(n) => self.machine.handle_input(&self.buf[..n], Instant::now()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    self.machine.handle_timeout(Instant::now());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// One session: login, STAT, LIST, RETR of each message (its octets to `sink(number,
/// chunk)`), DELE of each if `delete`, QUIT. Returns what STAT said.
pub(crate) fn fetch(
    addr: &str,
    user: &str,
    password: &str,
    delete: bool,
    mut sink: impl FnMut(u32, &[u8]) -> io::Result<()>,
) -> Result<Stat> {
    let mut pop3 = Pop3::connect(addr)?;
    let user = Atom::new(user)?;
    pop3.call(|m| m.user(user), |_| Ok(()))?;
    let password = Secret::new(Text::new(password)?);
    pop3.call(|m| m.pass(password), |_| Ok(()))?;
    let mut stat = Stat { count: 0, size: 0 };
    pop3.call(Client::stat, |event| {
        if let Event::Stat { stat: s, .. } = event {
            stat = s;
        }
        Ok(())
    })?;
    let mut list = Vec::new();
    pop3.call(
        |m| m.list(None),
        |event| {
            if let Event::ListingItem { item, .. } = event {
                list.push(item.msg);
            }
            Ok(())
        },
    )?;
    for msg in list {
        pop3.call(
            |m| m.retr(msg),
            |event| match event {
                Event::BodyChunk { bytes, .. } => sink(msg.get(), bytes),
                _ => Ok(()),
            },
        )?;
        if delete {
            pop3.call(|m| m.dele(msg), |_| Ok(()))?;
        }
    }
    pop3.call(Client::quit, |_| Ok(()))?;
    Ok(stat)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, user, password, rest @ ..] = &args[..] else {
        return Err("usage: std_client ADDR USER PASSWORD [--delete]".into());
    };
    let delete = rest.iter().any(|a| a == "--delete");
    let mut stdout = io::stdout().lock();
    let stat = fetch(addr, user, password, delete, |_, chunk| {
        stdout.write_all(chunk)
    })?;
    stdout.flush()?;
    let deleted = if delete { ", deleted" } else { "" };
    eprintln!("{} messages, {} octets{deleted}", stat.count, stat.size);
    Ok(())
}
