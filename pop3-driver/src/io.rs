//! What an adapter supplies: a [`Transport`] (the socket, with deadlines) and a [`Timer`].
//!
//! The driver ([`crate::server`], [`crate::client`]) needs four things of a connection: wait
//! for input until a deadline or a [`Stop`] (writing the client's pending commands meanwhile),
//! write with a deadline, sleep, and close. Everything else (TLS, STLS, timers of the
//! protocol, backpressure, shutdown) is done once, by the driver.
//!
//! Any runtime whose sockets implement the futures-io traits (smol, async-std, tokio through a
//! thin wrapper, a home-made event loop) gets a [`Transport`] for free from [`AsyncIo`], given
//! a [`Timer`]. A blocking adapter implements [`Transport`] directly, with futures that block
//! and then complete (driven by [`crate::block_on`]).
//!
//! Reads go into a buffer owned by the thread, not by the connection ([`with_read_buffer`]):
//! a session that waits for its client holds no read buffer, which is what keeps an idle
//! session small.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use futures_io::{AsyncRead, AsyncWrite};

/// What ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Wake {
    /// The operation completed: input was handed over, or the data was written.
    Ready,
    /// The peer closed its side (a read of zero octets).
    Eof,
    /// The deadline passed first.
    Timeout,
    /// The [`Stop`] was triggered first.
    Stopped,
}

/// A timer: what a runtime provides for deadlines.
pub trait Timer {
    /// The future [`Timer::sleep_until`] returns.
    type Sleep: Future<Output = ()>;

    /// A future that completes at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> Self::Sleep;
}

/// A connection's socket, as the driver uses it. See the module docs.
///
/// Each method's future must honour its deadline and its [`Stop`] by itself (a blocking
/// implementation sets socket timeouts and uses [`Transport::interrupter`]).
pub trait Transport {
    /// Waits until octets arrive, `deadline` passes or `stop` is triggered. Octets read are
    /// handed to `sink` (non-empty) before [`Wake::Ready`] is returned; zero octets read is
    /// [`Wake::Eof`]. Meanwhile `pending[*written..]` is written, advancing `*written`: a
    /// client writes its commands while reading, so that a server blocked writing to it never
    /// blocks its writes (imap-next#134). A server passes an empty `pending`.
    fn read<F: FnMut(&[u8])>(
        &mut self,
        pending: &[u8],
        written: &mut usize,
        deadline: Option<Instant>,
        stop: &Stop,
        sink: F,
    ) -> impl Future<Output = io::Result<Wake>>;

    /// Writes all of `data` (and flushes it), unless `deadline` passes ([`Wake::Timeout`]) or
    /// `stop` is triggered ([`Wake::Stopped`]) first.
    fn write_all(
        &mut self,
        data: &[u8],
        deadline: Instant,
        stop: &Stop,
    ) -> impl Future<Output = io::Result<Wake>>;

    /// Waits until `deadline` ([`Wake::Timeout`]; never, for `None`) or a stop
    /// ([`Wake::Stopped`]). May return [`Wake::Timeout`] early: the caller checks the time.
    fn sleep_until(&mut self, deadline: Option<Instant>, stop: &Stop)
    -> impl Future<Output = Wake>;

    /// Closes the connection (both directions), ignoring errors.
    fn close(&mut self) -> impl Future<Output = ()>;

    /// For transports whose waits cannot be woken by a [`Stop`] (blocking sockets): a
    /// function that makes a blocked read or write return at once, e.g. by shutting the
    /// socket down from another thread. The driver registers it with the session's stop.
    fn interrupter(&self) -> Option<Box<dyn FnOnce() + Send>> {
        None
    }
}

// -------------------------------------------------------------------------------------------
// Stop

/// A signal that ends a wait: a session's end at shutdown, or an accept loop's shutdown.
/// Cloning shares the signal; it can be triggered from any thread, and any number of tasks
/// can wait for it. [`Stop::never`] is a signal that cannot be triggered and costs nothing.
#[derive(Clone, Default)]
pub struct Stop(Option<Arc<StopInner>>);

#[derive(Default)]
struct StopInner {
    set: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
    hooks: Mutex<Vec<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Stop").field(&self.is_triggered()).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Stop {
    /// A signal, not triggered.
    pub fn new() -> Self {
        Stop(Some(Arc::default()))
    }

    /// A signal that is never triggered (for clients, and sessions run on their own).
    pub const fn never() -> Self {
        Stop(None)
    }

    /// Triggers it: every waiter wakes, every hook runs (once). Triggering twice does nothing
    /// more.
    pub fn trigger(&self) {
        let Some(inner) = &self.0 else { return };
        if inner.set.swap(true, Ordering::SeqCst) {
            return;
        }
        for w in std::mem::take(&mut *lock(&inner.wakers)) {
            w.wake();
        }
        for hook in std::mem::take(&mut *lock(&inner.hooks)) {
            hook();
        }
    }

    /// Whether it was triggered.
    pub fn is_triggered(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|i| i.set.load(Ordering::SeqCst))
    }

    /// Runs `hook` when the signal is triggered (at once if it already was).
    pub fn on_trigger(&self, hook: Box<dyn FnOnce() + Send>) {
        let Some(inner) = &self.0 else { return };
        lock(&inner.hooks).push(hook);
        // A trigger that raced with the push has taken the list already, or will run this.
        if inner.set.load(Ordering::SeqCst) {
            for hook in std::mem::take(&mut *lock(&inner.hooks)) {
                hook();
            }
        }
    }

    /// Ready once triggered; otherwise registers the task to be woken.
    pub fn poll_triggered(&self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(inner) = &self.0 else {
            return Poll::Pending;
        };
        if inner.set.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        {
            let mut wakers = lock(&inner.wakers);
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
        }
        if inner.set.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Completes when triggered.
    pub async fn wait(&self) {
        poll_fn(|cx| self.poll_triggered(cx)).await;
    }
}

// -------------------------------------------------------------------------------------------
// The read buffer

const READ_BUFFER: usize = 64 * 1024;

thread_local! {
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_BUFFER].into_boxed_slice());
}

/// Runs `f` with this thread's read buffer (64 KiB). Connections read into it only once input
/// is there, and hand the octets on before returning, so no connection holds a read buffer
/// while it waits. Re-entrant calls get a fresh buffer.
pub fn with_read_buffer<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    READ_BUF.with(|b| match b.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        Err(_) => f(&mut vec![0; READ_BUFFER]),
    })
}

// -------------------------------------------------------------------------------------------
// AsyncIo

/// A [`Transport`] over any futures-io stream and a [`Timer`]: what the async adapters use.
/// `S` is the socket (plain TCP: TLS is the driver's business), `T` the runtime's timer.
#[derive(Debug)]
pub struct AsyncIo<S, T> {
    /// The socket.
    pub stream: S,
    /// The runtime's timer.
    pub timer: T,
}

impl<S, T> AsyncIo<S, T> {
    /// A transport over `stream`, with `timer`.
    pub fn new(stream: S, timer: T) -> Self {
        AsyncIo { stream, timer }
    }
}

/// Polls an optional sleep: `Ready` once it has fired, never for `None`.
fn poll_sleep<F: Future>(sleep: Pin<&mut Option<F>>, cx: &mut Context<'_>) -> Poll<()> {
    match sleep.as_pin_mut() {
        Some(s) => s.poll(cx).map(|_| ()),
        None => Poll::Pending,
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin, T: Timer> Transport for AsyncIo<S, T> {
    async fn read<F: FnMut(&[u8])>(
        &mut self,
        pending: &[u8],
        written: &mut usize,
        deadline: Option<Instant>,
        stop: &Stop,
        mut sink: F,
    ) -> io::Result<Wake> {
        let AsyncIo { stream, timer } = self;
        let mut sleep = pin!(deadline.map(|d| timer.sleep_until(d)));
        let mut flushed = pending.len() == *written;
        poll_fn(|cx| {
            if stop.poll_triggered(cx).is_ready() {
                return Poll::Ready(Ok(Wake::Stopped));
            }
            while *written < pending.len() {
                match Pin::new(&mut *stream).poll_write(cx, &pending[*written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => *written += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                }
            }
            if !flushed && *written == pending.len() {
                match Pin::new(&mut *stream).poll_flush(cx) {
                    Poll::Ready(Ok(())) => flushed = true,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    // The read goes on meanwhile.
                    Poll::Pending => {}
                }
            }
            let read = with_read_buffer(|buf| match Pin::new(&mut *stream).poll_read(cx, buf) {
                Poll::Ready(Ok(0)) => Poll::Ready(Ok(Wake::Eof)),
                Poll::Ready(Ok(n)) => {
                    sink(&buf[..n]);
                    Poll::Ready(Ok(Wake::Ready))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            });
            if read.is_ready() {
                return read;
            }
            poll_sleep(sleep.as_mut(), cx).map(|()| Ok(Wake::Timeout))
        })
        .await
    }

    async fn write_all(&mut self, data: &[u8], deadline: Instant, stop: &Stop) -> io::Result<Wake> {
        let AsyncIo { stream, timer } = self;
        let mut sleep = pin!(timer.sleep_until(deadline));
        let mut at = 0;
        poll_fn(|cx| {
            if stop.poll_triggered(cx).is_ready() {
                return Poll::Ready(Ok(Wake::Stopped));
            }
            while at < data.len() {
                match Pin::new(&mut *stream).poll_write(cx, &data[at..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => at += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                }
            }
            if at == data.len() {
                match Pin::new(&mut *stream).poll_flush(cx) {
                    Poll::Ready(r) => return Poll::Ready(r.map(|()| Wake::Ready)),
                    Poll::Pending => {}
                }
            }
            sleep.as_mut().poll(cx).map(|()| Ok(Wake::Timeout))
        })
        .await
    }

    async fn sleep_until(&mut self, deadline: Option<Instant>, stop: &Stop) -> Wake {
        let mut sleep = pin!(deadline.map(|d| self.timer.sleep_until(d)));
        poll_fn(|cx| {
            if stop.poll_triggered(cx).is_ready() {
                return Poll::Ready(Wake::Stopped);
            }
            poll_sleep(sleep.as_mut(), cx).map(|()| Wake::Timeout)
        })
        .await
    }

    async fn close(&mut self) {
        let _ = poll_fn(|cx| Pin::new(&mut self.stream).poll_close(cx)).await;
    }
}
