//! # pop3-futures
//!
//! POP3 over any `futures_io::AsyncRead + AsyncWrite` stream: a [`client`] and a [`server`],
//! in plain text, with STLS or with implicit TLS (futures-rustls). It serves smol and
//! async-std alike: the few things a runtime must provide (a timer, spawning, accepting) come
//! through the small [`Runtime`] and [`server::Listener`] traits; the `smol` feature (default)
//! provides them for smol.
//!
//! The protocol lives in `pop3-proto` and the server policy in `pop3-server-core`; this crate
//! only moves bytes, runs their timers and does TLS.

#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

pub mod client;
pub mod server;
mod stream;

pub use pop3_proto;
pub use pop3_server_core;
pub use pop3_tls;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the adapter needs from an async runtime: a timer and a way to spawn a task.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// A future that completes at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<()>;
    /// Runs `task` in the background.
    fn spawn(&self, task: BoxFuture<()>);
}

/// The smol runtime (feature `smol`).
#[cfg(feature = "smol")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Smol;

#[cfg(feature = "smol")]
impl Runtime for Smol {
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<()> {
        Box::pin(async move {
            smol::Timer::at(deadline).await;
        })
    }

    fn spawn(&self, task: BoxFuture<()>) {
        smol::spawn(task).detach();
    }
}
