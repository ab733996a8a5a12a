//! Forwarding over LMTP or SMTP: each message is handed to a mail server for one configured
//! recipient, and deleted from the POP3 server only once that server answered `250` for it.
//!
//! - `lmtp://host[:port]` (port 24) or `lmtp:///path/to/socket` (a Unix socket), in the clear:
//!   Dovecot's, Cyrus's or Postfix's local delivery.
//! - `smtp://host[:port]` (port 25), in the clear, like fetchmail's default of localhost:25;
//!   `smtp+starttls://host[:port]` (port 25), `STARTTLS` required: the message is never sent
//!   if the server does not offer it or the handshake fails; `smtps://host[:port]` (port 465),
//!   TLS from the first byte. Certificates are checked against Mozilla's roots for the host
//!   name in the URL, as `pop3 fetch` checks the POP3 server's. No login (`AUTH`): the target
//!   is a server that accepts mail for the recipient, not a submission relay.
//!
//! The protocol is `pop3_lmtp::client`'s sans-IO machine; this module drives it over a
//! blocking socket (the fetch runs each account on a thread of its own) with a timeout on
//! every read and write.
//!
//! The envelope: `MAIL FROM` is the message's `Return-Path:` (the address the POP3 server's
//! MTA recorded), or the null sender `<>` when it has none (or one that is not an address):
//! then a later bounce goes nowhere rather than to a header address (`From:`) that may be
//! forged or not want it. `RCPT TO` is the configured `recipient`. `SIZE=` is the message's
//! exact size, when the server offers `SIZE`.
//!
//! A message is buffered while it arrives (its size and its `Return-Path:` are known only
//! then) and delivered at [`Target::finish`], one session per message: the client machine
//! runs a whole session (greeting, hello, one transaction, `QUIT`) and cannot take a second
//! message over the same connection, so each message has a connection of its own.
//!
//! The answer for the recipient decides: `250`, [`Outcome::Stored`], the key recorded and
//! synced *before* `finish` returns (and before `QUIT`), so a run killed after it does not
//! forward the message again; a `4xx`, [`Outcome::Deferred`]; a `5xx`,
//! [`Outcome::Failed`] (both with the server's reply, and the message stays on the POP3
//! server). A connection that fails (cannot connect, a timeout, closed or garbled before the
//! answer, a TLS failure, `STARTTLS` required but missing) is an `Err`: the fetch stops,
//! deleting only what was stored before. The record lives in the state directory
//! (`forward-<host>-<user>`), like the MDA's.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pop3_lmtp::client::{
    Client, ClientConfig, ClientError, Event, Protocol, RecipientStatus, StartTls,
};
use pop3_lmtp::{Domain, Mailbox, Path};
use pop3_tls::Trust;
use rustls::pki_types::ServerName;

use super::record::{Record, safe, synced_record_methods};
use super::{Envelope, MessageInfo, Outcome, Owner, Target, TargetSpec, begun};

/// How long one read or write may take (RFC 5321 §4.5.3.2 has the server wait 10 minutes
/// for the end of the data, and the client 10 minutes for its answer; 5 is plenty locally).
const IO_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a connection attempt may take, per address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the `QUIT` after the answer may take: the message is already accounted for.
const QUIT_TIMEOUT: Duration = Duration::from_secs(10);
/// The body is handed to the machine (and written) in pieces of this size.
const CHUNK: usize = 64 * 1024;
/// The most a message's buffer reserves up front from the announced size.
const RESERVE_LIMIT: u64 = 16 * 1024 * 1024;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    /// In the clear.
    Plain,
    /// `STARTTLS`, required.
    StartTls,
    /// TLS from the first byte.
    Implicit,
}

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Address {
    /// A host name or IP address (without brackets) and a port.
    Tcp { host: String, port: u16 },
    /// A Unix socket.
    Unix(PathBuf),
}

/// A target URL, read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    protocol: Protocol,
    security: Security,
    address: Address,
}

impl Endpoint {
    /// Reads `lmtp://host:port`, `lmtp:///socket`, `smtp://`, `smtp+starttls://` or
    /// `smtps://`.
    fn parse(url: &str) -> Result<Endpoint, String> {
        let bad = |why: &str| format!("{url}: {why}");
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("not a URL (lmtp://host:port, lmtp:///socket, smtp://host)"))?;
        let (protocol, security, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "lmtp" => (Protocol::Lmtp, Security::Plain, 24),
            "smtp" => (Protocol::Smtp, Security::Plain, 25),
            "smtp+starttls" => (Protocol::Smtp, Security::StartTls, 25),
            "smtps" => (Protocol::Smtp, Security::Implicit, 465),
            _ => {
                return Err(bad("the scheme must be lmtp, smtp, smtp+starttls or smtps"));
            }
        };
        if rest.contains(['?', '#']) {
            return Err(bad("no query or fragment is understood"));
        }
        if rest.starts_with('/') {
            if security != Security::Plain {
                return Err(bad("TLS needs a host name, not a socket"));
            }
            if rest.len() < 2 {
                return Err(bad("no socket path"));
            }
            return Ok(Endpoint {
                protocol,
                security,
                address: Address::Unix(PathBuf::from(rest)),
            });
        }
        let authority = match rest.split_once('/') {
            Some((a, "")) => a,
            Some(_) => return Err(bad("a path is only for a Unix socket (lmtp:///path)")),
            None => rest,
        };
        if authority.contains('@') {
            return Err(bad("no user: the target takes no login"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an unclosed [ in the host"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("junk after the IPv6 address"))?,
                ),
            };
            (host, port)
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
        };
        Ok(Endpoint {
            protocol,
            security,
            address: Address::Tcp {
                host: host.to_string(),
                port,
            },
        })
    }
}

/// Our name for `LHLO`/`EHLO`: the kernel's host name when it is a valid domain, else
/// `localhost`.
fn hello_name() -> Domain {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(|h| Domain::new(h.trim()).ok())
        .unwrap_or_else(|| Domain::new("localhost").expect("a valid domain"))
}

/// The connection to the server.
enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(Some(t)),
            Conn::Unix(s) => s.set_read_timeout(Some(t)),
            Conn::Tls(s) => s.sock.set_read_timeout(Some(t)),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// TLS over `sock`, the handshake done.
fn handshake(
    sock: TcpStream,
    config: &Arc<rustls::ClientConfig>,
    name: &ServerName<'static>,
) -> io::Result<Conn> {
    let conn = rustls::ClientConnection::new(Arc::clone(config), name.clone())
        .map_err(io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(Conn::Tls(Box::new(tls)))
}

/// TLS settings of an endpoint that uses TLS.
struct Tls {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

/// A message being received from the POP3 server.
struct Pending {
    key: String,
    data: Vec<u8>,
    envelope: Envelope,
}

/// The LMTP or SMTP target.
pub(crate) struct Forward {
    /// The URL, for messages.
    url: String,
    endpoint: Endpoint,
    tls: Option<Tls>,
    recipient: Mailbox,
    hello: Domain,
    record: Record,
    current: Option<Pending>,
}

impl Forward {
    /// Opens the record of `owner` for an LMTP or SMTP `spec`.
    pub(crate) fn open(spec: &TargetSpec, owner: &Owner<'_>) -> Result<Forward, String> {
        Forward::open_with(spec, owner, &Trust::WebPki)
    }

    /// [`Forward::open`], trusting the certificates `trust` accepts.
    fn open_with(spec: &TargetSpec, owner: &Owner<'_>, trust: &Trust) -> Result<Forward, String> {
        let (url, recipient, protocol) = match spec {
            TargetSpec::Lmtp { url, recipient } => (url, recipient, Protocol::Lmtp),
            TargetSpec::Smtp { url, recipient } => (url, recipient, Protocol::Smtp),
            _ => return Err(format!("not an lmtp or smtp target: {}", spec.describe())),
        };
        let endpoint = Endpoint::parse(url)?;
        if endpoint.protocol != protocol {
            return Err(format!(
                "{url}: an {} target needs an {} URL",
                if protocol == Protocol::Lmtp {
                    "lmtp"
                } else {
                    "smtp"
                },
                if protocol == Protocol::Lmtp {
                    "lmtp://"
                } else {
                    "smtp://, smtp+starttls:// or smtps://"
                }
            ));
        }
        let recipient = Mailbox::parse(recipient.trim())
            .map_err(|_| format!("recipient {recipient:?} is not an address (local@domain)"))?;
        let tls = match (&endpoint.security, &endpoint.address) {
            (Security::Plain, _) => None,
            (_, Address::Tcp { host, .. }) => Some(Tls {
                config: pop3_tls::client_config(trust).map_err(|e| format!("{url}: {e}"))?,
                name: pop3_tls::server_name(host).map_err(|e| format!("{url}: {e}"))?,
            }),
            (_, Address::Unix(_)) => unreachable!("refused by Endpoint::parse"),
        };
        let path =
            owner
                .state_dir
                .join(format!("forward-{}-{}", safe(owner.host), safe(owner.user)));
        Ok(Forward {
            url: url.clone(),
            endpoint,
            tls,
            recipient,
            hello: hello_name(),
            record: Record::open(&path)?,
            current: None,
        })
    }

    /// A connection to the server, TLS done for `smtps://`.
    fn connect(&self) -> io::Result<Conn> {
        let cannot = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", self.url));
        let conn = match &self.endpoint.address {
            Address::Unix(path) => {
                let s = UnixStream::connect(path).map_err(cannot)?;
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                Conn::Unix(s)
            }
            Address::Tcp { host, port } => {
                let mut last = None;
                let mut found = None;
                for addr in (host.as_str(), *port).to_socket_addrs().map_err(cannot)? {
                    match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                let s = found.ok_or_else(|| {
                    cannot(last.unwrap_or_else(|| io::Error::other("the host has no address")))
                })?;
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                let _ = s.set_nodelay(true);
                match (&self.endpoint.security, &self.tls) {
                    (Security::Implicit, Some(tls)) => handshake(s, &tls.config, &tls.name)
                        .map_err(|e| io::Error::new(e.kind(), format!("{}: TLS: {e}", self.url)))?,
                    _ => Conn::Tcp(s),
                }
            }
        };
        Ok(conn)
    }

    /// Delivers `p`: one session, recorded as soon as the server took it.
    fn deliver(&mut self, p: Pending) -> io::Result<Outcome> {
        let sender = match p.envelope.sender() {
            Some(s) if !s.is_empty() => Mailbox::parse(&s).map_or(Path::Null, Path::Mailbox),
            _ => Path::Null,
        };
        let mut envelope = pop3_lmtp::client::Envelope::new(sender, vec![self.recipient.clone()]);
        envelope.size = Some(p.data.len() as u64);
        let mut config = ClientConfig::new(self.endpoint.protocol, self.hello.clone());
        config.starttls = match self.endpoint.security {
            Security::StartTls => StartTls::Required,
            Security::Plain | Security::Implicit => StartTls::Never,
        };
        config.tls_active = self.endpoint.security == Security::Implicit;
        let client = Client::new(config, envelope).map_err(io::Error::other)?;
        let mut session = Session {
            conn: self.connect()?,
            client,
            out: Vec::new(),
            tls: self.tls.as_ref(),
            url: &self.url,
        };
        let outcome = session.run(&p.data)?;
        let Some(outcome) = outcome else {
            return Err(io::Error::other(format!(
                "{}: the session ended without an answer",
                self.url
            )));
        };
        let said = |reply: &pop3_lmtp::Reply| match &outcome.error {
            Some(e @ ClientError::Rejected { .. }) => format!("{} {e}", self.url),
            _ => format!("{} answered {reply}", self.url),
        };
        let result = match outcome.recipients.first().map(|(_, s)| s) {
            Some(RecipientStatus::Accepted(_)) => {
                // Durable before anything else happens: the DELE may follow.
                self.record.accept(&p.key)?;
                Outcome::Stored
            }
            Some(RecipientStatus::TempFailed(r)) => Outcome::Deferred(said(r)),
            Some(RecipientStatus::PermFailed(r)) => Outcome::Failed(said(r)),
            Some(RecipientStatus::Deferred) | None => {
                let why = outcome
                    .error
                    .as_ref()
                    .map_or_else(|| "no answer".to_string(), ToString::to_string);
                return Err(io::Error::other(format!("{}: {why}", self.url)));
            }
        };
        // The answer is in: a QUIT that fails changes nothing.
        session.quit();
        Ok(result)
    }
}

/// One session: the machine and its connection.
struct Session<'a> {
    conn: Conn,
    client: Client,
    out: Vec<u8>,
    tls: Option<&'a Tls>,
    url: &'a str,
}

impl Session<'_> {
    fn flush(&mut self) -> io::Result<()> {
        self.client.poll_transmit(&mut self.out);
        if !self.out.is_empty() {
            self.conn.write_all(&self.out)?;
            self.conn.flush()?;
            self.out.clear();
        }
        Ok(())
    }

    /// Runs the dialogue until the machine reports the outcome (`Some`) or the end (`None`).
    fn run(&mut self, body: &[u8]) -> io::Result<Option<pop3_lmtp::client::Outcome>> {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            self.flush()?;
            while let Some(event) = self.client.poll_event() {
                match event {
                    Event::StartTls => {
                        self.flush()?;
                        let tls = self
                            .tls
                            .ok_or_else(|| io::Error::other("STARTTLS without TLS settings"))?;
                        let Conn::Tcp(sock) = &self.conn else {
                            return Err(io::Error::other("STARTTLS twice"));
                        };
                        let sock = sock.try_clone()?;
                        self.conn = handshake(sock, &tls.config, &tls.name).map_err(|e| {
                            io::Error::new(
                                e.kind(),
                                format!("{}: TLS after STARTTLS: {e}", self.url),
                            )
                        })?;
                        self.client.tls_started().map_err(io::Error::other)?;
                    }
                    Event::SendBody => {
                        for chunk in body.chunks(CHUNK) {
                            self.client
                                .send_body_chunk(chunk)
                                .map_err(io::Error::other)?;
                            self.flush()?;
                        }
                        self.client.finish_body().map_err(io::Error::other)?;
                    }
                    Event::Outcome(o) => return Ok(Some(o)),
                    Event::Closed => {
                        self.flush()?;
                        return Ok(None);
                    }
                    _ => {}
                }
            }
            self.flush()?;
            let n = match self.conn.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("{}: reading the answer: {e}", self.url),
                    ));
                }
            };
            if n == 0 {
                self.client.feed_eof();
            } else {
                self.client.feed(&buf[..n]);
            }
        }
    }

    /// Ends the session politely, briefly, whatever happens.
    fn quit(mut self) {
        if self.conn.set_read_timeout(QUIT_TIMEOUT).is_ok() {
            let _ = self.run(&[]);
        }
    }
}

impl Target for Forward {
    synced_record_methods!();

    fn begin(&mut self, msg: &MessageInfo<'_>) -> io::Result<()> {
        self.current = Some(Pending {
            key: msg.key.to_string(),
            data: Vec::with_capacity(msg.size.min(RESERVE_LIMIT) as usize),
            envelope: Envelope::default(),
        });
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let p = begun(self.current.as_mut())?;
        p.data.extend_from_slice(data);
        p.envelope.feed(data);
        Ok(())
    }

    fn finish(&mut self) -> io::Result<Outcome> {
        let p = begun(self.current.take())?;
        self.deliver(p)
    }

    fn abort(&mut self) {
        // Nothing was sent yet: the message goes at `finish`.
        self.current = None;
    }
}

#[cfg(test)]
mod tests;
