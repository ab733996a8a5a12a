//! The POP3 client on blocking `std::net`: [`pop3_driver::client::Client`] over a
//! [`BlockingIo`], each method run to completion on the calling thread. The behaviour is the
//! driver's, the same as on every async runtime.
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

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};

use pop3_driver::block_on;
use pop3_proto::sasl::ClientCredentials;
use pop3_proto::{Capability, Greeting, MsgNum, ScanListing, Stat, UidListing};

use crate::BlockingIo;

pub use pop3_driver::client::{Chunk, ClientOptions, Error, TlsMode};

/// The driver's client over a blocking socket.
pub type Inner = pop3_driver::client::Client<BlockingIo>;

/// A POP3 client connection on a blocking socket.
#[derive(Debug)]
pub struct Pop3Client(pub Inner);

/// Blocking forms of the driver's methods.
macro_rules! blocking {
    ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {$(
        $(#[$doc])*
        pub fn $name(&mut self, $($arg: $ty),*) -> Result<$ret, Error> {
            block_on(self.0.$name($($arg),*))
        }
    )*};
}

impl Pop3Client {
    /// Connects to `addr` (`host:port`, each of its addresses in turn), reads the greeting
    /// and the capabilities, and for [`TlsMode::StartTls`] upgrades the connection first.
    pub fn connect(addr: &str, mut options: ClientOptions) -> Result<Self, Error> {
        let mut last = None;
        for sa in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&sa, options.connect_timeout) {
                Ok(tcp) => {
                    options
                        .server_name
                        .get_or_insert_with(|| pop3_driver::client::host_of(addr));
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
        block_on(Inner::connect_with(BlockingIo(tcp), options)).map(Pop3Client)
    }

    /// The server's greeting.
    pub fn greeting(&self) -> Option<&Greeting> {
        self.0.greeting()
    }

    /// The capabilities of the last `CAPA`.
    pub fn capabilities(&self) -> Option<&[Capability]> {
        self.0.capabilities()
    }

    /// The protocol machine (state, capabilities, SASL mechanisms).
    pub fn machine(&self) -> &pop3_proto::client::Client {
        self.0.machine()
    }

    /// How many commands a batch keeps in flight.
    pub fn pipeline_window(&self) -> usize {
        self.0.pipeline_window()
    }

    blocking! {
        /// `CAPA`.
        fn capa() -> Vec<Capability>;
        /// `USER` and `PASS`.
        fn login(user: &str, password: &str) -> ();
        /// `APOP` with the greeting's timestamp.
        fn apop(user: &str, secret: &str) -> ();
        /// `AUTH` with a SASL mechanism.
        fn auth(creds: ClientCredentials) -> ();
        /// `STAT`.
        fn stat() -> Stat;
        /// `LIST`.
        fn list() -> Vec<ScanListing>;
        /// `LIST n`.
        fn list_one(n: MsgNum) -> ScanListing;
        /// `UIDL`.
        fn uidl() -> Vec<UidListing>;
        /// `UIDL n`.
        fn uidl_one(n: MsgNum) -> UidListing;
        /// `RETR n`, streamed to `f` chunk by chunk; returns the message size.
        fn retr_with(n: MsgNum, f: impl FnMut(&[u8]) -> std::io::Result<()>) -> u64;
        /// `TOP n lines`, streamed to `f`.
        fn top_with(n: MsgNum, lines: u64, f: impl FnMut(&[u8]) -> std::io::Result<()>) -> u64;
        /// `DELE n`.
        fn dele(n: MsgNum) -> ();
        /// `RSET`.
        fn rset() -> ();
        /// `NOOP`.
        fn noop() -> ();
        /// `QUIT`; the connection is closed afterwards.
        fn quit() -> ();
        /// `RETR` of each message, pipelined when the server allows it; `f` gets each
        /// message's chunks and then [`Chunk::End`].
        fn fetch_many(msgs: &[MsgNum], f: impl FnMut(MsgNum, Chunk<'_>) -> std::io::Result<()>) -> ();
        /// `DELE` of each message, pipelined when the server allows it.
        fn delete_many(msgs: &[MsgNum]) -> ();
    }

    /// `RETR n` into a writer; returns the message size.
    pub fn retr_to(&mut self, n: MsgNum, w: &mut (impl Write + ?Sized)) -> Result<u64, Error> {
        self.retr_with(n, |c| w.write_all(c))
    }

    /// `TOP n lines` into a writer.
    pub fn top_to(
        &mut self,
        n: MsgNum,
        lines: u64,
        w: &mut (impl Write + ?Sized),
    ) -> Result<u64, Error> {
        self.top_with(n, lines, |c| w.write_all(c))
    }
}
