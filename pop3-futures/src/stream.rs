//! A futures-io stream that is plain or TLS over it, switchable by STLS.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};

/// Plain `S`, or TLS `T` over it.
#[derive(Debug)]
pub(crate) enum MaybeTls<S, T> {
    Plain(S),
    Tls(Box<T>),
    /// Only while a handshake owns the stream.
    Switching,
}

fn switching() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "TLS handshake in progress")
}

impl<S: AsyncRead + Unpin, T: AsyncRead + Unpin> AsyncRead for MaybeTls<S, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            MaybeTls::Switching => Poll::Ready(Err(switching())),
        }
    }
}

impl<S: AsyncWrite + Unpin, T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<S, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            MaybeTls::Switching => Poll::Ready(Err(switching())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            MaybeTls::Switching => Poll::Ready(Err(switching())),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_close(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
            MaybeTls::Switching => Poll::Ready(Err(switching())),
        }
    }
}

impl<S, T> MaybeTls<S, T> {
    /// Takes the plain stream out for a handshake.
    pub(crate) fn take_plain(&mut self) -> io::Result<S> {
        match std::mem::replace(self, MaybeTls::Switching) {
            MaybeTls::Plain(s) => Ok(s),
            other => {
                *self = other;
                Err(io::Error::other("STLS on a connection that is not plain"))
            }
        }
    }
}
