//! # pop3-driver
//!
//! The one server driver and the one client facade of the pop3 workspace, written once for
//! every runtime. `pop3-proto` knows POP3, `pop3-server-core` knows maildrops; this crate
//! joins them to a connection:
//!
//! - [`server::run_session`] runs a session over a connection (reads with deadlines, writes
//!   under backpressure, STLS, implicit TLS, timers, shutdown), and [`server::serve`] is the
//!   accept loop with the connection policy every runtime needs (the too-many-connections
//!   reply, graceful shutdown).
//! - [`client::Client`] is the client API (`connect`, STLS, `login`/`auth`, `stat`, `list`,
//!   `uidl`, `retr_with`/`retr_to`, `fetch_many`, `delete_many`, `quit`, ...).
//! - TLS is rustls' sans-IO connection, driven here over the raw transport: one
//!   implementation of implicit TLS and STLS for all.
//!
//! An adapter supplies only what is specific to its runtime ([`io`]): a [`Transport`] (or a
//! futures-io stream and a [`Timer`], which [`AsyncIo`] turns into one), and for servers a
//! [`server::Listener`] and a [`server::Spawn`]. That is all of `pop3-tokio`,
//! `pop3-futures` and `pop3-blocking`; `examples/` has a complete hand-written adapter
//! ("bring your own runtime").
//!
//! Every runtime behaves the same because this code is what runs on every runtime.

#![forbid(unsafe_code)]

pub mod client;
pub mod io;
mod link;
pub mod server;

pub use io::{AsyncIo, Stop, Timer, Transport, Wake, with_read_buffer};
pub use link::HandshakeError;
pub use pop3_server_core::block_on;
pub use rustls;
