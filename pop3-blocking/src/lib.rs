//! # pop3-blocking
//!
//! POP3 on blocking `std::net`: a [`client`] and a [`server`] (a thread per connection), in
//! plain text, with STLS or with implicit TLS (rustls). The protocol lives in `pop3-proto`,
//! the server policy in `pop3-server-core`, and the connection loop, the client API and TLS in
//! `pop3-driver`, written once for every runtime. This crate gives the driver blocking sockets
//! ([`BlockingIo`]: deadlines become socket timeouts) and threads, and runs the driver's
//! futures to completion on the calling thread (`pop3_driver::block_on`): they block, then
//! complete, and never wait for a wake-up.

#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use pop3_driver::{Stop, Transport, Wake, with_read_buffer};

pub mod client;
pub mod server;

pub use pop3_driver;
pub use pop3_proto;
pub use pop3_server_core;
pub use pop3_tls;

/// A blocking TCP connection as the driver's [`Transport`]: each wait blocks the thread, with
/// its deadline as the socket timeout. A stop shuts the socket down from the stopping thread,
/// which ends a blocked read or write at once.
#[derive(Debug)]
pub struct BlockingIo(pub TcpStream);

/// The time left until `deadline`, if any; `Err` once it has passed. Socket timeouts cannot
/// be zero, so what is left is at least a millisecond.
fn left(deadline: Option<Instant>) -> Result<Option<Duration>, Wake> {
    match deadline.map(|d| d.saturating_duration_since(Instant::now())) {
        Some(d) if d.is_zero() => Err(Wake::Timeout),
        d => Ok(d.map(|d| d.max(Duration::from_millis(1)))),
    }
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// What a failed or empty wait means once a stop may have shut the socket down.
fn unless_stopped(r: io::Result<Wake>, stop: &Stop) -> io::Result<Wake> {
    match r {
        Ok(Wake::Ready) => r,
        _ if stop.is_triggered() => Ok(Wake::Stopped),
        _ => r,
    }
}

impl Transport for BlockingIo {
    async fn read<F: FnMut(&[u8])>(
        &mut self,
        pending: &[u8],
        written: &mut usize,
        deadline: Option<Instant>,
        stop: &Stop,
        mut sink: F,
    ) -> io::Result<Wake> {
        if stop.is_triggered() {
            return Ok(Wake::Stopped);
        }
        // Writing first cannot deadlock: what a client sends at once is its pipelining
        // window of command lines, which the socket buffers absorb.
        if *written < pending.len() {
            match self
                .write_all(&pending[*written..], deadline.unwrap_or_else(far), stop)
                .await?
            {
                Wake::Ready => *written = pending.len(),
                wake => return Ok(wake),
            }
        }
        let timeout = match left(deadline) {
            Ok(t) => t,
            Err(wake) => return Ok(wake),
        };
        self.0.set_read_timeout(timeout)?;
        let r = with_read_buffer(|buf| {
            loop {
                match self.0.read(buf) {
                    Ok(0) => return Ok(Wake::Eof),
                    Ok(n) => {
                        sink(&buf[..n]);
                        return Ok(Wake::Ready);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if timed_out(&e) => return Ok(Wake::Timeout),
                    Err(e) => return Err(e),
                }
            }
        });
        unless_stopped(r, stop)
    }

    async fn write_all(&mut self, data: &[u8], deadline: Instant, stop: &Stop) -> io::Result<Wake> {
        // The socket's write timeout alone restarts with every octet the client takes, so a
        // client reading a byte a second would never be cut off: the deadline is rechecked.
        let mut rest = data;
        let r = loop {
            let timeout = match left(Some(deadline)) {
                Ok(t) => t,
                Err(wake) => break Ok(wake),
            };
            self.0.set_write_timeout(timeout)?;
            if rest.is_empty() {
                break self.0.flush().map(|()| Wake::Ready);
            }
            match self.0.write(rest) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if timed_out(&e) => break Ok(Wake::Timeout),
                Err(e) => break Err(e),
            }
        };
        unless_stopped(r, stop)
    }

    async fn sleep_until(&mut self, deadline: Option<Instant>, stop: &Stop) -> Wake {
        // In slices, so that a stop is seen within 50 ms.
        let slice = Duration::from_millis(50);
        let wait = deadline.map_or(slice, |d| {
            d.saturating_duration_since(Instant::now()).min(slice)
        });
        std::thread::sleep(wait);
        if stop.is_triggered() {
            Wake::Stopped
        } else {
            Wake::Timeout
        }
    }

    async fn close(&mut self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }

    fn interrupter(&self) -> Option<Box<dyn FnOnce() + Send>> {
        let socket = self.0.try_clone().ok()?;
        Some(Box::new(move || {
            let _ = socket.shutdown(Shutdown::Both);
        }))
    }
}

/// A deadline far enough away to mean "none" for a write.
fn far() -> Instant {
    Instant::now() + Duration::from_secs(24 * 3600)
}

/// The blocking "timer": sleeping is done when the sleep is asked for, so the future is
/// ready at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct Blocking;

impl pop3_driver::Timer for Blocking {
    type Sleep = std::future::Ready<()>;

    fn sleep_until(&self, deadline: Instant) -> Self::Sleep {
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        std::future::ready(())
    }
}
