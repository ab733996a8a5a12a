//! A connection as both sides of the driver see it: a [`Transport`], with TLS (rustls'
//! sans-IO connection) on top once it is started, from the first byte or after `STLS`.
//!
//! TLS lives here, once, for every runtime: the transports move raw octets only. Octets are
//! decrypted as they are read (inside the read's sink, into a stack buffer) and encrypted as
//! they are sent, so a connection holds no plaintext buffer of its own while it waits.

use std::io::{self, Read, Write};
use std::time::Instant;

use crate::io::{Stop, Transport, Wake};

/// Why a TLS handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The network.
    #[error("I/O error during the TLS handshake: {0}")]
    Io(#[from] io::Error),
    /// rustls refused the peer (a certificate, a protocol error; the alert was sent).
    #[error("{0}")]
    Tls(rustls::Error),
    /// The peer closed the connection before the handshake completed.
    #[error("the peer closed the connection during the TLS handshake")]
    Closed,
    /// The handshake took too long.
    #[error("the TLS handshake timed out")]
    Timeout,
    /// The connection was stopped (server shutdown).
    #[error("stopped")]
    Stopped,
}

/// Plaintext decrypted in one go: at most one TLS record's worth per `read()` of rustls.
const PLAIN_CHUNK: usize = 16 * 1024;

/// Plaintext handed over by one read at most (less one record, which may complete it): a
/// read's ciphertext can finish a record the previous read began, so without a bound one
/// read could give the reader more than the 64 KiB a plain read gives.
const PLAIN_BUDGET: usize = 48 * 1024;

pub(crate) struct Link<T> {
    io: T,
    tls: Option<Box<rustls::Connection>>,
    /// Octets to send: TLS records, or (client) plaintext commands not written yet.
    wire: Vec<u8>,
    /// How much of `wire` is written (client reads write it meanwhile).
    sent: usize,
    /// Plaintext that arrived with the last handshake flight (a client's first command
    /// right behind its `Finished`): handed over by the next read.
    early: Vec<u8>,
    /// Ciphertext read but not decrypted yet, as the last read's plaintext budget was spent:
    /// decrypted by the next read before the transport is read again.
    backlog: Vec<u8>,
    /// The plain-text line the peer sent instead of TLS when the last handshake failed.
    refusal: Option<String>,
}

impl<T> std::fmt::Debug for Link<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Feeds raw octets to rustls and hands the plaintext to `sink`, until `budget` octets of
/// plaintext are handed over (then the rest of `raw` is left). Returns whether the peer sent
/// its `close_notify`, and how many octets of `raw` rustls took.
fn decrypt(
    tls: &mut rustls::Connection,
    raw: &[u8],
    budget: usize,
    sink: &mut impl FnMut(&[u8]),
) -> Result<(bool, usize), rustls::Error> {
    let (mut closed, mut rest, mut handed) = (false, raw, 0);
    while !rest.is_empty() && handed < budget {
        if let Err(e) = tls.read_tls(&mut rest) {
            // Only "buffer full" can happen with a slice: the plaintext was drained below,
            // so this means a peer flooding handshake data.
            return Err(rustls::Error::General(e.to_string()));
        }
        tls.process_new_packets()?;
        let mut plain = [0u8; PLAIN_CHUNK];
        loop {
            match tls.reader().read(&mut plain) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => {
                    handed += n;
                    sink(&plain[..n]);
                }
                Err(_) => break,
            }
        }
    }
    Ok((closed, raw.len() - rest.len()))
}

fn tls_io_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The longest plain-text line kept from a failed handshake.
const PLAIN_LINE_MAX: usize = 512;

/// How long a failed handshake waits for the rest of a plain-text line (a server that sent
/// its TLS alert, then `-ERR STARTTLS failed: ...` in a second write).
const PLAIN_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// Watches the raw octets of a handshake for what the peer sent outside TLS records: a POP3
/// line in plain text, such as `-ERR STARTTLS failed: ...` after a server's TLS failed behind
/// `STLS`, or a greeting where implicit TLS was expected. Skips whole records (by their
/// headers) and keeps at most [`PLAIN_LINE_MAX`] octets of what follows them.
#[derive(Default)]
struct PlainSniffer {
    header: [u8; 5],
    have: usize,
    /// Body octets of the current record still to skip.
    skip: usize,
    /// The octets after the last record, once something other than a record began.
    plain: Option<Vec<u8>>,
}

impl PlainSniffer {
    fn feed(&mut self, mut raw: &[u8]) {
        while !raw.is_empty() {
            if let Some(p) = &mut self.plain {
                let n = raw.len().min(PLAIN_LINE_MAX.saturating_sub(p.len()));
                p.extend_from_slice(&raw[..n]);
                return;
            }
            if self.skip > 0 {
                let n = raw.len().min(self.skip);
                self.skip -= n;
                raw = &raw[n..];
                continue;
            }
            // A record starts with its content type (20 to 24) and a major version of 3.
            let byte = raw[0];
            let fits = match self.have {
                0 => (20..=24).contains(&byte),
                1 => byte == 3,
                _ => true,
            };
            if !fits {
                self.plain = Some(self.header[..self.have].to_vec());
                continue;
            }
            self.header[self.have] = byte;
            self.have += 1;
            raw = &raw[1..];
            if self.have == 5 {
                self.skip = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                self.have = 0;
            }
        }
    }

    /// Whether a whole line (or all that is kept of one) arrived.
    fn complete(&self) -> bool {
        self.plain
            .as_ref()
            .is_some_and(|p| p.contains(&b'\n') || p.len() >= PLAIN_LINE_MAX)
    }

    /// The first plain-text line, printable characters only; `None` if there was none.
    fn line(&self) -> Option<String> {
        let p = self.plain.as_deref()?;
        let end = p.iter().position(|&b| b == b'\r' || b == b'\n');
        let text: String = String::from_utf8_lossy(&p[..end.unwrap_or(p.len())])
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    }
}

impl<T> Link<T> {
    pub(crate) fn new(io: T) -> Self {
        Link {
            io,
            tls: None,
            wire: Vec::new(),
            sent: 0,
            early: Vec::new(),
            backlog: Vec::new(),
            refusal: None,
        }
    }

    /// The plain-text line (such as `-ERR STARTTLS failed: ...`) the peer sent where TLS was
    /// expected, when the last handshake failed.
    pub(crate) fn handshake_refusal(&self) -> Option<&str> {
        self.refusal.as_deref()
    }

    pub(crate) fn transport(&self) -> &T {
        &self.io
    }

    /// Whether TLS is on.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The TLS protocol version in use, once TLS is on.
    pub(crate) fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        self.tls.as_ref().and_then(|t| t.protocol_version())
    }

    /// Gives back memory held for a past burst of output.
    pub(crate) fn shrink(&mut self) {
        if self.wire.is_empty() && self.wire.capacity() > 4096 {
            self.wire = Vec::new();
        }
        if self.backlog.is_empty() {
            self.backlog = Vec::new();
        }
    }
}

impl<T: Transport> Link<T> {
    /// Writes what TLS wants to send (records, alerts) by `deadline`.
    async fn flush_tls(&mut self, deadline: Instant, stop: &Stop) -> io::Result<Wake> {
        if let Some(tls) = &mut self.tls {
            while tls.wants_write() {
                tls.write_tls(&mut self.wire)?;
            }
        }
        if self.wire.is_empty() {
            return Ok(Wake::Ready);
        }
        let r = self.io.write_all(&self.wire, deadline, stop).await;
        self.wire.clear();
        r
    }

    /// Sends `data` (encrypted when TLS is on), all of it by `deadline`.
    pub(crate) async fn send(
        &mut self,
        data: &[u8],
        deadline: Instant,
        stop: &Stop,
    ) -> io::Result<Wake> {
        if self.tls.is_none() {
            return self.io.write_all(data, deadline, stop).await;
        }
        let mut at = 0;
        loop {
            if let Some(tls) = &mut self.tls {
                at += tls.writer().write(&data[at..])?;
            }
            match self.flush_tls(deadline, stop).await? {
                Wake::Ready if at < data.len() => {}
                wake => return Ok(wake),
            }
        }
    }

    /// Waits for input (plaintext to `sink`) until `deadline` or `stop`, first writing
    /// `commands` (a client's; a server passes none) while reading. Decrypted here when TLS
    /// is on; anything TLS wants to send in answer is sent before returning.
    pub(crate) async fn recv(
        &mut self,
        commands: &[u8],
        deadline: Option<Instant>,
        stop: &Stop,
        mut sink: impl FnMut(&[u8]),
    ) -> io::Result<Wake> {
        if !commands.is_empty() {
            match &mut self.tls {
                Some(tls) => {
                    tls.writer().write_all(commands)?;
                    while tls.wants_write() {
                        tls.write_tls(&mut self.wire)?;
                    }
                }
                None => self.wire.extend_from_slice(commands),
            }
        }
        if !self.early.is_empty() {
            // Commands queued above go out with the next read.
            sink(&self.early);
            self.early = Vec::new();
            return Ok(Wake::Ready);
        }
        let Link {
            io,
            tls,
            wire,
            sent,
            backlog,
            ..
        } = self;
        let mut failure = None;
        let mut closed = false;
        let mut handed = 0;
        // Decrypts within the budget; what is left waits in the backlog.
        let mut feed = |raw: &[u8], backlog: &mut Vec<u8>, tls: &mut rustls::Connection| {
            if failure.is_some() {
                return;
            }
            let budget = PLAIN_BUDGET.saturating_sub(handed);
            let mut count = |p: &[u8]| {
                handed += p.len();
                sink(p);
            };
            match decrypt(tls, raw, budget, &mut count) {
                Ok((c, used)) => {
                    closed |= c;
                    backlog.extend_from_slice(&raw[used..]);
                }
                Err(e) => failure = Some(e),
            }
        };
        let wake = match tls {
            None => io.read(wire, sent, deadline, stop, sink).await?,
            Some(tls) if !backlog.is_empty() => {
                let raw = std::mem::take(backlog);
                feed(&raw, backlog, tls);
                Wake::Ready
            }
            Some(tls) => {
                io.read(wire, sent, deadline, stop, |raw| feed(raw, backlog, tls))
                    .await?
            }
        };
        let wake = if closed { Wake::Eof } else { wake };
        if *sent == wire.len() {
            wire.clear();
            *sent = 0;
        }
        if let Some(e) = failure {
            // Send the alert rustls queued, then fail.
            let _ = self
                .flush_tls(Instant::now() + std::time::Duration::from_secs(1), stop)
                .await;
            return Err(tls_io_error(e));
        }
        if self.tls.as_ref().is_some_and(|t| t.wants_write()) && self.sent == 0 {
            let limit =
                deadline.unwrap_or_else(|| Instant::now() + std::time::Duration::from_secs(30));
            self.flush_tls(limit, stop).await?;
        }
        Ok(wake)
    }

    /// Waits until `deadline` or `stop`, reading nothing.
    pub(crate) async fn sleep_until(&mut self, deadline: Option<Instant>, stop: &Stop) -> Wake {
        self.io.sleep_until(deadline, stop).await
    }

    /// Runs a TLS handshake over the connection, bounded by `deadline`; TLS is on afterwards.
    /// A client's failed handshake keeps the plain-text line the server sent instead of TLS,
    /// if any ([`Link::handshake_refusal`]), waiting briefly for the rest of it.
    pub(crate) async fn handshake(
        &mut self,
        conn: rustls::Connection,
        deadline: Instant,
        stop: &Stop,
    ) -> Result<(), HandshakeError> {
        // Only a client listens for a server's plain-text refusal; a server does not wait on
        // a client that failed its handshake.
        let client = matches!(conn, rustls::Connection::Client(_));
        self.tls = Some(Box::new(conn));
        self.refusal = None;
        let mut sniffer = PlainSniffer::default();
        let result = self.run_handshake(deadline, stop, &mut sniffer).await;
        if result.is_err() {
            self.tls = None;
            // A server that refused with an alert, or began a plain-text line, may send (the
            // rest of) its line right behind: wait briefly for it. Not after the client's own
            // refusal (a certificate), where the server has nothing more to say.
            let peer_spoke = sniffer.plain.is_some()
                || matches!(
                    result,
                    Err(HandshakeError::Tls(rustls::Error::AlertReceived(_)))
                );
            if client && peer_spoke && !sniffer.complete() {
                let grace = deadline.min(Instant::now() + PLAIN_GRACE);
                while !sniffer.complete() && Instant::now() < grace {
                    match self
                        .io
                        .read(&[], &mut 0, Some(grace), stop, |raw| sniffer.feed(raw))
                        .await
                    {
                        Ok(Wake::Ready) => {}
                        _ => break,
                    }
                }
            }
            self.refusal = sniffer.line();
        }
        result
    }

    async fn run_handshake(
        &mut self,
        deadline: Instant,
        stop: &Stop,
        sniffer: &mut PlainSniffer,
    ) -> Result<(), HandshakeError> {
        loop {
            match self.flush_tls(deadline, stop).await? {
                Wake::Ready => {}
                Wake::Stopped => return Err(HandshakeError::Stopped),
                _ => return Err(HandshakeError::Timeout),
            }
            let Link { io, tls, early, .. } = self;
            let Some(conn) = tls.as_deref_mut() else {
                return Err(HandshakeError::Closed);
            };
            if !conn.is_handshaking() {
                return Ok(());
            }
            let mut failure = None;
            let wake = io
                .read(&[], &mut 0, Some(deadline), stop, |raw| {
                    sniffer.feed(raw);
                    if failure.is_none()
                        && let Err(e) = decrypt(conn, raw, usize::MAX, &mut |p: &[u8]| {
                            early.extend_from_slice(p)
                        })
                    {
                        failure = Some(e);
                    }
                })
                .await?;
            if let Some(e) = failure {
                let _ = self.flush_tls(deadline, stop).await;
                return Err(HandshakeError::Tls(e));
            }
            match wake {
                Wake::Ready => {}
                Wake::Eof => return Err(HandshakeError::Closed),
                Wake::Timeout => return Err(HandshakeError::Timeout),
                Wake::Stopped => return Err(HandshakeError::Stopped),
            }
        }
    }

    /// Ends the connection: TLS `close_notify` (best effort, briefly), then closes.
    pub(crate) async fn close(&mut self) {
        if let Some(tls) = &mut self.tls {
            tls.send_close_notify();
            let _ = self
                .flush_tls(
                    Instant::now() + std::time::Duration::from_secs(1),
                    &Stop::never(),
                )
                .await;
        }
        self.io.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::PlainSniffer;

    #[test]
    fn sniffer_skips_records_split_anywhere_and_keeps_the_plain_line() {
        let mut wire = vec![0x16, 0x03, 0x03, 0x00, 0x04, 1, 2, 3, 4];
        wire.extend_from_slice(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]);
        wire.extend_from_slice(b"-ERR STARTTLS failed: no\x07 certificate\r\n+OK more\r\n");
        for cut in 0..wire.len() {
            let mut s = PlainSniffer::default();
            s.feed(&wire[..cut]);
            s.feed(&wire[cut..]);
            assert!(s.complete(), "cut at {cut}");
            assert_eq!(
                s.line().as_deref(),
                Some("-ERR STARTTLS failed: no certificate"),
                "cut at {cut}"
            );
        }
        let mut only_records = PlainSniffer::default();
        only_records.feed(&wire[..16]);
        assert!(!only_records.complete());
        assert_eq!(only_records.line(), None);
        // A greeting where a record was expected, cut short and longer than kept.
        let mut greeting = PlainSniffer::default();
        greeting.feed(b"+OK ");
        assert!(!greeting.complete());
        greeting.feed(&[b'x'; 600]);
        assert!(greeting.complete());
        assert_eq!(greeting.line().map(|l| l.len()), Some(512));
    }
}
