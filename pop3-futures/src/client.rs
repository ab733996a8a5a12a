//! The POP3 client over a futures-io stream: [`pop3_driver::client::Client`] over
//! [`pop3_driver::AsyncIo`], with smol's TCP for [`Pop3Client::connect`] (feature `smol`).
//! Every method (`login`, `auth`, `stat`, `list`, `uidl`, `retr_with`, `retr_to` into a
//! futures-io writer, `fetch_many`, `delete_many`, `quit`, ...) is the driver's, reached
//! through `Deref`. Nothing requires the stream or the runtime to be `Send`.
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

use std::ops::{Deref, DerefMut};

use futures_io::{AsyncRead, AsyncWrite};
use pop3_driver::{AsyncIo, Timer};

pub use pop3_driver::client::{Chunk, ClientOptions, Error, TlsMode};

/// A POP3 client connection over the stream `S`, with the timer of runtime `R`.
#[derive(Debug)]
pub struct Pop3Client<S, R>(pub pop3_driver::client::Client<AsyncIo<S, R>>);

#[cfg(feature = "smol")]
impl Pop3Client<smol::net::TcpStream, crate::Smol> {
    /// Connects to `addr` (`host:port`) with smol's TCP (within `options.connect_timeout`),
    /// then as [`Pop3Client::connect_stream`]. On another runtime, connect its TCP stream and
    /// call [`Pop3Client::connect_stream`].
    pub async fn connect(addr: &str, options: ClientOptions) -> Result<Self, Error> {
        pop3_driver::client::Client::connect(addr, options)
            .await
            .map(Pop3Client)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin, R: Timer> Pop3Client<S, R> {
    /// Reads the greeting and the capabilities over a connected stream, and for
    /// [`TlsMode::StartTls`] upgrades it before anything else.
    pub async fn connect_stream(
        stream: S,
        options: ClientOptions,
        runtime: R,
    ) -> Result<Self, Error> {
        pop3_driver::client::Client::connect_stream(stream, options, runtime)
            .await
            .map(Pop3Client)
    }
}

impl<S, R> Deref for Pop3Client<S, R> {
    type Target = pop3_driver::client::Client<AsyncIo<S, R>>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<S, R> DerefMut for Pop3Client<S, R> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}
