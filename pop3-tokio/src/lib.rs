//! # pop3-tokio
//!
//! POP3 on tokio: a [`client`] and a [`server`], in plain text, with STLS or with implicit
//! TLS (rustls). The protocol lives in `pop3-proto`, the server policy in `pop3-server-core`,
//! and the connection loop, the client API and TLS in `pop3-driver`, written once for every
//! runtime; this crate gives the driver tokio's sockets, timer and tasks, and nothing else.

#![forbid(unsafe_code)]

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use pop3_server_core::offload::{Job, Offload, OffloadError, Submit};

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

/// Password hashing (and any [`Offload`] job) on tokio's blocking pool, at most `limit` jobs at
/// once: a login storm with `{ARGON2ID}` or `{SHA512-CRYPT}` passwords waits for a permit
/// instead of stalling the worker threads that serve sessions already downloading.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use pop3_tokio::BlockingPool;
/// use pop3_tokio::pop3_server_core::passwd::PasswdFile;
///
/// let pool = BlockingPool::new(tokio::runtime::Handle::current(), 4);
/// let users = PasswdFile::parse("alice:{PLAIN}secret\n")?.with_offload(Arc::new(pool));
/// # let _ = users; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BlockingPool {
    handle: tokio::runtime::Handle,
    permits: Arc<tokio::sync::Semaphore>,
}

impl BlockingPool {
    /// Runs jobs with `spawn_blocking` on the runtime of `handle`, at most `limit` (at least
    /// one) at a time; further jobs wait, without blocking a thread, for a free permit.
    pub fn new(handle: tokio::runtime::Handle, limit: usize) -> Self {
        let permits = Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
        BlockingPool { handle, permits }
    }
}

impl Offload for BlockingPool {
    fn submit(&self, job: Job) -> Submit {
        let (handle, permits) = (self.handle.clone(), Arc::clone(&self.permits));
        Box::pin(async move {
            let permit = permits
                .acquire_owned()
                .await
                .map_err(|_| OffloadError::Closed)?;
            handle.spawn_blocking(move || {
                let _permit = permit;
                job();
            });
            Ok(())
        })
    }
}
