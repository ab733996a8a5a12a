//! A blocking stream that is plain TCP or TLS over it, switchable by STLS.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rustls::{ConnectionCommon, SideData, StreamOwned};

/// Plain TCP or rustls over it (`C` is the client or server connection).
#[derive(Debug)]
pub(crate) enum MaybeTls<C> {
    Plain(TcpStream),
    Tls(Box<StreamOwned<C, TcpStream>>),
}

impl<C> MaybeTls<C> {
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTls::Plain(s) => s,
            MaybeTls::Tls(s) => &s.sock,
        }
    }

    /// Sets how long a read may block (`None`: forever; a zero duration is rounded up).
    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.tcp()
            .set_read_timeout(t.map(|d| d.max(Duration::from_millis(1))))
    }
}

impl<C, S> Read for MaybeTls<C>
where
    C: std::ops::DerefMut<Target = ConnectionCommon<S>>,
    S: SideData,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            MaybeTls::Plain(s) => s.read(buf),
            MaybeTls::Tls(s) => s.read(buf),
        }
    }
}

impl<C, S> Write for MaybeTls<C>
where
    C: std::ops::DerefMut<Target = ConnectionCommon<S>>,
    S: SideData,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            MaybeTls::Plain(s) => s.write(buf),
            MaybeTls::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            MaybeTls::Plain(s) => s.flush(),
            MaybeTls::Tls(s) => s.flush(),
        }
    }
}

/// Whether an I/O error is a read timeout.
pub(crate) fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Completes a TLS handshake on a blocking connection, bounded by `limit`.
pub(crate) fn complete_handshake<C, S>(
    tls: &mut StreamOwned<C, TcpStream>,
    limit: Duration,
) -> io::Result<()>
where
    C: std::ops::DerefMut<Target = ConnectionCommon<S>>,
    S: SideData,
{
    tls.sock.set_read_timeout(Some(limit))?;
    tls.sock.set_write_timeout(Some(limit))?;
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    tls.sock.set_write_timeout(None)?;
    Ok(())
}
