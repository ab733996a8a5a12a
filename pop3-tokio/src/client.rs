//! The POP3 client on tokio: [`pop3_driver::client::Client`] over tokio's TCP, plus
//! [`Pop3Client::retr_to`] and [`Pop3Client::top_to`] into tokio writers. Every other method
//! (`login`, `auth`, `stat`, `list`, `uidl`, `retr_with`, `fetch_many`, `delete_many`,
//! `quit`, ...) is the driver's, reached through `Deref`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pop3_tokio::client::Error> {
//! use pop3_tokio::client::{ClientOptions, Pop3Client, TlsMode};
//! use pop3_tokio::pop3_tls::{Trust, client_config};
//!
//! let tls = client_config(&Trust::WebPki).expect("TLS configuration");
//! let mut client = Pop3Client::connect("pop.example.com:995", ClientOptions::new(TlsMode::Implicit(tls))).await?;
//! client.login("alice", "secret").await?;
//! let stat = client.stat().await?;
//! let mut out = tokio::io::sink();
//! for item in client.list().await? {
//!     client.retr_to(item.msg, &mut out).await?;
//! }
//! client.quit().await?;
//! # let _ = stat; Ok(()) }
//! ```

use std::ops::{Deref, DerefMut};

use pop3_driver::AsyncIo;
use pop3_proto::MsgNum;
use tokio::net::TcpStream;

use crate::{Compat, Tokio};

pub use pop3_driver::client::{Chunk, ClientOptions, Error, TlsMode};

/// The driver's client over tokio's TCP.
pub type Inner = pop3_driver::client::Client<AsyncIo<Compat<TcpStream>, Tokio>>;

/// A POP3 client connection on tokio.
#[derive(Debug)]
pub struct Pop3Client(pub Inner);

impl Pop3Client {
    /// Connects to `addr` (`host:port`), reads the greeting and the capabilities, and for
    /// [`TlsMode::StartTls`] upgrades the connection before anything else.
    pub async fn connect(addr: &str, options: ClientOptions) -> Result<Self, Error> {
        Inner::connect(addr, options).await.map(Pop3Client)
    }

    /// Like [`Pop3Client::connect`], over an already connected socket.
    pub async fn connect_stream(tcp: TcpStream, options: ClientOptions) -> Result<Self, Error> {
        let _ = tcp.set_nodelay(true);
        Inner::connect_stream(Compat(tcp), options, Tokio)
            .await
            .map(Pop3Client)
    }

    /// `RETR n` into a tokio writer; returns the message size.
    pub async fn retr_to<W>(&mut self, n: MsgNum, w: &mut W) -> Result<u64, Error>
    where
        W: tokio::io::AsyncWrite + Unpin + ?Sized,
    {
        self.0.retr_to(n, &mut Compat(w)).await
    }

    /// `TOP n lines` into a tokio writer.
    pub async fn top_to<W>(&mut self, n: MsgNum, lines: u64, w: &mut W) -> Result<u64, Error>
    where
        W: tokio::io::AsyncWrite + Unpin + ?Sized,
    {
        self.0.top_to(n, lines, &mut Compat(w)).await
    }
}

impl Deref for Pop3Client {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl DerefMut for Pop3Client {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.0
    }
}
