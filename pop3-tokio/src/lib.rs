//! # pop3-tokio
//!
//! POP3 on tokio: a [`client`] and a [`server`], in plain text, with STLS or with implicit
//! TLS (rustls). The protocol lives in `pop3-proto`, the server policy in `pop3-server-core`,
//! and the connection loop, the client API and TLS in `pop3-driver`, written once for every
//! runtime; this crate gives the driver tokio's sockets, timer and tasks, and nothing else.

#![forbid(unsafe_code)]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

pub mod client;
pub mod server;

pub use pop3_driver;
pub use pop3_proto;
pub use pop3_server_core;
pub use pop3_tls;

/// tokio's timer, and its TCP connector, for the driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

impl pop3_driver::Timer for Tokio {
    type Sleep = tokio::time::Sleep;

    fn sleep_until(&self, deadline: Instant) -> tokio::time::Sleep {
        tokio::time::sleep_until(deadline.into())
    }
}

impl pop3_driver::client::Connect for Tokio {
    type Stream = Compat<tokio::net::TcpStream>;

    async fn connect(&self, addr: &str) -> io::Result<Self::Stream> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Ok(Compat(tcp))
    }
}

/// A tokio reader or writer seen through the futures-io traits, which the driver uses.
#[derive(Debug)]
pub struct Compat<T>(pub T);

impl<T: tokio::io::AsyncRead + Unpin> futures_io::AsyncRead for Compat<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut rb = tokio::io::ReadBuf::new(buf);
        Pin::new(&mut self.0)
            .poll_read(cx, &mut rb)
            .map_ok(|()| rb.filled().len())
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> futures_io::AsyncWrite for Compat<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
