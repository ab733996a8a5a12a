//! # pop3-tokio
//!
//! POP3 on tokio: a [`client`] and a [`server`], in plain text, with STLS or with implicit
//! TLS (rustls). The protocol lives in `pop3-proto` and the server policy in
//! `pop3-server-core`; this crate only moves bytes between a socket and them, runs their
//! timers and does TLS.

#![forbid(unsafe_code)]

pub mod client;
pub mod server;
mod stream;

pub use pop3_proto;
pub use pop3_server_core;
pub use pop3_tls;
