//! # pop3-blocking
//!
//! POP3 on blocking `std::net`: a [`client`] and a [`server`] (a thread per connection), in
//! plain text, with STLS or with implicit TLS (rustls' own stream). The protocol lives in
//! `pop3-proto` and the server policy in `pop3-server-core`, whose async backends are driven
//! by `pop3_server_core::block_on`; this crate moves bytes, maps timers onto socket timeouts
//! and does TLS.

#![forbid(unsafe_code)]

pub mod client;
pub mod server;
mod stream;

pub use pop3_proto;
pub use pop3_server_core;
pub use pop3_tls;
