//! # pop3-lmtp
//!
//! The sans-IO core of local delivery for the pop3 workspace: LMTP (RFC 2033) and the SMTP
//! client dialogue (RFC 5321), with `PIPELINING` (RFC 2920), `8BITMIME` (RFC 6152),
//! `ENHANCEDSTATUSCODES` (RFC 2034, 3463), `SIZE` (RFC 1870) and `STARTTLS` (RFC 3207, client
//! side). No sockets, no clocks, no async, no threads: bytes in, values and events out.
//!
//! - [`types`]: the values. Constructors validate, so CR, LF and NUL in an address, a domain
//!   or a parameter are unrepresentable and encoding a command can't inject a line.
//! - [`decode`]: nom parsers over one framed line (commands, paths, reply lines) and the
//!   multi-line [`decode::ReplyReader`]; [`encode`]: encoders into a caller's `Vec<u8>`.
//! - [`body`]: dot-stuffing and dot-unstuffing that never hold a whole body and normalise
//!   line ends to CRLF.
//! - [`server`]: the LMTP server machine, which asks the embedder about each recipient and
//!   hands it each message, and answers one reply per recipient after the data.
//! - [`client`]: the LMTP/SMTP client machine that delivers one message and reports a typed
//!   outcome per recipient.
//!
//! ```
//! use pop3_lmtp::{decode, Command, Encode, Mailbox, Path};
//!
//! // Parse a command line (verbs are case-insensitive)...
//! let (rest, cmd) = decode::command(b"rcpt to:<alice@example.org>\r\nDATA\r\n").unwrap();
//! assert_eq!(cmd, Command::Rcpt { to: Mailbox::parse("alice@example.org").unwrap(), params: vec![] });
//! assert_eq!(rest, b"DATA\r\n");
//!
//! // ...and encode one.
//! let cmd = Command::Mail { from: Path::Null, params: vec![] };
//! assert_eq!(cmd.to_bytes(), b"MAIL FROM:<>\r\n");
//!
//! // Replies keep their enhanced status code, typed.
//! let (_, reply) = decode::reply(b"550 5.1.1 <bob@example.org> User unknown\r\n").unwrap();
//! assert_eq!((reply.code, reply.enhanced), (550, Some((5, 1, 1))));
//! ```

#![forbid(unsafe_code)]

pub mod body;
pub mod client;
pub mod decode;
pub mod encode;
pub mod server;
pub mod types;

pub use decode::DecodeError;
pub use encode::Encode;
pub use types::*;
