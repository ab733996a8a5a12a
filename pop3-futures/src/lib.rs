//! # pop3-futures
//!
//! POP3 over any `futures_io::AsyncRead + AsyncWrite` stream: a [`client`] and a [`server`],
//! in plain text, with STLS or with implicit TLS (rustls). It serves smol and async-std alike,
//! and single-threaded executors with `!Send` streams (`futures::executor::LocalPool`, a tokio
//! `LocalSet`, thread-per-core runtimes) through [`server::serve_local`]: the driver it runs
//! requires `Send` of nothing.
//!
//! The few things a runtime must provide come through small traits: a timer
//! ([`pop3_driver::Timer`]), spawning ([`Runtime`] or [`LocalRuntime`]) and accepting
//! ([`server::Listener`]); the `smol` feature (default) provides them for smol. The protocol
//! lives in `pop3-proto`, the server policy in `pop3-server-core`, and the connection loop, the
//! client API and TLS in `pop3-driver`, written once for every runtime.

#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::Pin;

pub mod client;
pub mod server;

pub use pop3_driver;
pub use pop3_driver::Timer;
pub use pop3_proto;
pub use pop3_server_core;
pub use pop3_tls;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A boxed future that may hold `!Send` values.
pub type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T> + 'static>>;

/// A multi-threaded runtime: a timer whose sleeps are `Send`, and a way to spawn a task.
pub trait Runtime: Timer<Sleep: Send> + Clone + Send + Sync + 'static {
    /// Runs `task` in the background.
    fn spawn(&self, task: BoxFuture<()>);
}

/// A single-threaded runtime: a timer, and a way to spawn a task that stays on this thread.
pub trait LocalRuntime: Timer + Clone + 'static {
    /// Runs `task` in the background, on this thread.
    fn spawn_local(&self, task: LocalBoxFuture<()>);
}

/// The smol runtime (feature `smol`).
#[cfg(feature = "smol")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Smol;

/// A sleep on smol's timer.
#[cfg(feature = "smol")]
#[derive(Debug)]
pub struct SmolSleep(smol::Timer);

#[cfg(feature = "smol")]
impl Future for SmolSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

#[cfg(feature = "smol")]
impl Timer for Smol {
    type Sleep = SmolSleep;

    fn sleep_until(&self, deadline: std::time::Instant) -> SmolSleep {
        SmolSleep(smol::Timer::at(deadline))
    }
}

#[cfg(feature = "smol")]
impl Runtime for Smol {
    fn spawn(&self, task: BoxFuture<()>) {
        smol::spawn(task).detach();
    }
}

#[cfg(feature = "smol")]
impl pop3_driver::client::Connect for Smol {
    type Stream = smol::net::TcpStream;

    async fn connect(&self, addr: &str) -> std::io::Result<smol::net::TcpStream> {
        let tcp = smol::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    }
}
