//! # pop3-proto
//!
//! The sans-IO core of the pop3 workspace: typed POP3 commands and responses (RFC 1939, 2449,
//! 2595, 3206, 5034, 6856), their parsers and encoders, a bounded line framer and the streaming
//! multi-line body codec. No sockets, no clocks, no async, no threads: bytes in, values out,
//! and values in, bytes out.
//!
//! - [`types`]: the values. Constructors validate, so CR, LF and NUL in an argument are
//!   unrepresentable and encoding can't inject a line.
//! - [`decode`]: nom parsers over one framed line; [`encode`]: encoders into a caller's
//!   `Vec<u8>`.
//! - [`framing`]: the line framer with per-kind limits.
//! - [`body`]: dot-stuffing and dot-unstuffing that never hold a whole body.
//! - [`client`], [`server`]: the state machines. Bytes and `now` in; bytes, events and the
//!   next deadline out. Each module's docs drive its machine by hand over in-memory bytes.
//! - [`sasl`]: PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256, XOAUTH2 and OAUTHBEARER as step
//!   exchanges, both sides, and the APOP digest.
//!
//! ```
//! use pop3_proto::{decode, Command, Encode, MsgNum};
//!
//! // Parse a command line (keywords are case-insensitive)...
//! let (rest, cmd) = decode::command(b"top 1 10\r\nQUIT\r\n").unwrap();
//! assert_eq!(cmd, Command::Top { msg: MsgNum::new(1).unwrap(), lines: 10 });
//! assert_eq!(rest, b"QUIT\r\n");
//!
//! // ...and encode one.
//! let mut out = Vec::new();
//! Command::Retr(MsgNum::new(2).unwrap()).encode(&mut out);
//! assert_eq!(out, b"RETR 2\r\n");
//!
//! // Responses keep their RFC 2449 response code, typed.
//! let (_, line) = decode::status_line(b"-ERR [IN-USE] maildrop locked\r\n").unwrap();
//! assert_eq!(line.code(), Some(&pop3_proto::ResponseCode::InUse));
//! ```

#![forbid(unsafe_code)]

pub mod body;
pub mod client;
pub mod collect;
pub mod decode;
pub mod encode;
pub mod framing;
pub mod sasl;
pub mod server;
pub mod types;

pub use decode::DecodeError;
pub use encode::Encode;
pub use types::*;

#[cfg(feature = "arbitrary")]
mod arbitrary_impls;
