//! Running CPU-heavy work off the caller's thread, without tying the core to a runtime.
//!
//! # Why this exists
//!
//! Checking a password against `{ARGON2ID}`, `{BLF-CRYPT}` or `{SHA512-CRYPT}` is meant to be
//! slow: tens to hundreds of milliseconds of pure CPU. The [`Authenticator`] futures are
//! polled on an async runtime's worker threads, and a future that hashes inside `poll` holds
//! its worker for that long: every other session scheduled on that worker stalls behind one
//! login. The fix is the usual one (tokio's `spawn_blocking`), but this crate must not depend
//! on a runtime, so it brings its own small abstraction:
//!
//! - [`Offload`]: "run this closure somewhere and tell me when it is done". It is
//!   dyn-compatible, so a backend can hold an `Arc<dyn Offload>` chosen by the adapter.
//! - [`OffloadExt::run`]: the typed entry point: runs `FnOnce() -> R` and awaits `R`.
//! - [`Inline`]: runs the closure right in `poll`. Right for the blocking, thread-per-connection
//!   server, where the polling thread is the session's own and nothing else waits on it.
//! - [`ThreadPool`]: a fixed set of named std threads (`pop3-auth-N`) fed by a bounded queue.
//!   When the queue is full, callers wait for room asynchronously: the pool never blocks the
//!   caller's thread and never grows without bound. Results come back through a oneshot
//!   channel, so the awaiting future is woken by whatever executor polls it.
//!
//! A job that panics does not take its worker down: the panic is caught, the worker goes on
//! with the next job, and the caller's future resolves to [`OffloadError::Panicked`].
//!
//! [`Authenticator`]: crate::backend::Authenticator

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::{self, JoinHandle};

use futures_channel::oneshot;

/// A unit of work handed to an [`Offload`]: it owns everything it needs.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// The future returned by [`Offload::submit`]: resolves once the job has been accepted (for
/// [`ThreadPool`], queued; for [`Inline`], run).
pub type Submit = Pin<Box<dyn Future<Output = Result<(), OffloadError>> + Send + 'static>>;

/// Why an offloaded job produced no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OffloadError {
    /// The job panicked. The panic was caught: the worker thread lives on and later jobs
    /// run normally.
    #[error("offloaded job panicked")]
    Panicked,
    /// The offloader was shut down (a [`ThreadPool`] was dropped) before the job could be
    /// queued; the job was dropped without running.
    #[error("offload pool is shut down")]
    Closed,
}

/// Somewhere to run CPU-heavy closures off the caller's thread.
///
/// This is the dyn-compatible core; use [`OffloadExt::run`] to run a closure and await its
/// result. Implementations must run every accepted job exactly once (or drop it unrun only
/// when the waiting side has gone away), and must not block the thread that polls the
/// [`Submit`] future.
pub trait Offload: fmt::Debug + Send + Sync + 'static {
    /// Hands `job` over. The returned future resolves to `Ok(())` once the job has been
    /// accepted, waiting (asynchronously) for room if the implementation is bounded, or to
    /// [`OffloadError::Closed`] if it can no longer accept work. Nothing happens until the
    /// future is polled; dropping it before it resolves drops the job unrun.
    fn submit(&self, job: Job) -> Submit;
}

/// The typed entry point of every [`Offload`]: run a closure, await its result.
///
/// Implemented for every `Offload`, including `dyn Offload` (and so through an
/// `Arc<dyn Offload>`).
pub trait OffloadExt: Offload {
    /// Runs `f` on this offloader and resolves to its return value.
    ///
    /// The future is `Send`, `'static` and tied to no runtime: the result arrives through a
    /// oneshot channel whose sender wakes whichever executor polls it. It resolves to
    /// [`OffloadError::Panicked`] if `f` panicked and to [`OffloadError::Closed`] if the
    /// offloader shut down before accepting it. Dropping the future cancels the job if it
    /// has not started yet (a queued job whose caller is gone is skipped); a job already
    /// running finishes and its result is discarded.
    ///
    /// ```
    /// use pop3_server_core::offload::{OffloadExt, ThreadPool};
    ///
    /// let pool = ThreadPool::builder().threads(2).queue_depth(8).build()?;
    /// let job = pool.run(|| {
    ///     let name = std::thread::current().name().map(str::to_owned);
    ///     (name, (1..=10u64).product::<u64>())
    /// });
    /// // Any executor will do; this one parks the current thread until the pool answers.
    /// let (name, product) = pop3_server_core::block_on(job)?;
    /// assert!(name.unwrap().starts_with("pop3-auth-"));
    /// assert_eq!(product, 3_628_800);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn run<F, R>(&self, f: F) -> Run<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let submit = self.submit(Box::new(move || {
            // Nobody is waiting any more (the session went away): save the CPU.
            if tx.is_canceled() {
                return;
            }
            // If `f` panics, `tx` is dropped while unwinding, which the receiver sees.
            let _ = tx.send(f());
        }));
        Run {
            submit: Some(submit),
            result: rx,
        }
    }
}

impl<T: Offload + ?Sized> OffloadExt for T {}

/// The future returned by [`OffloadExt::run`]: the closure's result, or why there is none.
#[must_use = "futures do nothing unless polled"]
pub struct Run<R> {
    /// `Some` until the job has been accepted.
    submit: Option<Submit>,
    result: oneshot::Receiver<R>,
}

impl<R> fmt::Debug for Run<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("accepted", &self.submit.is_none())
            .finish_non_exhaustive()
    }
}

impl<R> Future for Run<R> {
    type Output = Result<R, OffloadError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(submit) = this.submit.as_mut() {
            match submit.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    this.submit = None;
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(())) => this.submit = None,
            }
        }
        // The sender is dropped unused only when the job unwound (or was skipped because
        // this receiver was gone, which cannot be observed here).
        Pin::new(&mut this.result)
            .poll(cx)
            .map_err(|_| OffloadError::Panicked)
    }
}

/// Runs every job right where its future is polled, on the caller's thread.
///
/// For the blocking, thread-per-connection server: the polling thread belongs to one
/// session, so hashing there stalls nobody else. A panicking job is caught and reported as
/// [`OffloadError::Panicked`], as with [`ThreadPool`]. This is what a
/// [`PasswdFile`](crate::passwd::PasswdFile) uses unless it is given another offloader.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inline;

impl Offload for Inline {
    fn submit(&self, job: Job) -> Submit {
        Box::pin(async move {
            // The job reports its own outcome through its channel.
            let _ = catch_unwind(AssertUnwindSafe(job));
            Ok(())
        })
    }
}

/// Jobs queued per worker thread when [`ThreadPoolBuilder::queue_depth`] is not set.
pub const DEFAULT_QUEUE_PER_THREAD: usize = 16;

/// A fixed pool of std threads fed by a bounded queue.
///
/// - Threads are named `<prefix>-N` (`pop3-auth-0`, `pop3-auth-1`...).
/// - When the queue holds [`queue_depth`](Self::queue_depth) jobs, [`Offload::submit`]
///   futures wait (asynchronously, woken in arrival order as jobs leave the queue) instead of
///   failing, blocking, or spawning more threads.
/// - A panicking job is caught; its worker carries on and its caller gets
///   [`OffloadError::Panicked`].
/// - Dropping the pool closes it: callers still waiting for room get
///   [`OffloadError::Closed`], jobs already queued still run, and the threads end once the
///   queue is drained. Drop does not wait for that; [`shutdown`](Self::shutdown) does.
///
/// Share one pool between sessions (and between reloads of the password file) through an
/// `Arc`.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    queue_depth: usize,
}

/// Configures a [`ThreadPool`]; from [`ThreadPool::builder`].
#[derive(Debug, Clone)]
pub struct ThreadPoolBuilder {
    threads: Option<NonZeroUsize>,
    queue_depth: Option<usize>,
    name_prefix: String,
}

impl Default for ThreadPoolBuilder {
    fn default() -> Self {
        ThreadPoolBuilder {
            threads: None,
            queue_depth: None,
            name_prefix: "pop3-auth".to_owned(),
        }
    }
}

impl ThreadPoolBuilder {
    /// Number of worker threads; `0` means the default,
    /// [`std::thread::available_parallelism`] (1 if that is unknown).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = NonZeroUsize::new(threads);
        self
    }

    /// How many jobs may wait in the queue (not counting the ones running) before callers
    /// have to wait for room. Default: [`DEFAULT_QUEUE_PER_THREAD`] per thread. `0` is
    /// taken as `1`.
    pub fn queue_depth(mut self, depth: usize) -> Self {
        self.queue_depth = Some(depth.max(1));
        self
    }

    /// Thread name prefix; threads are named `<prefix>-0`, `<prefix>-1`... Default:
    /// `pop3-auth`.
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.name_prefix = prefix.into();
        self
    }

    /// Starts the threads. Fails only if the OS refuses to create one (the threads already
    /// started then end).
    pub fn build(self) -> io::Result<ThreadPool> {
        let threads = self
            .threads
            .or_else(|| thread::available_parallelism().ok())
            .map_or(1, NonZeroUsize::get);
        let queue_depth = self
            .queue_depth
            .unwrap_or_else(|| threads.saturating_mul(DEFAULT_QUEUE_PER_THREAD));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(queue_depth.min(1024)),
                queue_depth,
                closed: false,
                waiters: VecDeque::new(),
                next_waiter: 0,
            }),
            jobs: Condvar::new(),
        });
        // Built incrementally so that a failed spawn drops (and so closes) a valid pool.
        let mut pool = ThreadPool {
            shared,
            workers: Vec::with_capacity(threads),
            queue_depth,
        };
        for n in 0..threads {
            let shared = Arc::clone(&pool.shared);
            let handle = thread::Builder::new()
                .name(format!("{}-{n}", self.name_prefix))
                .spawn(move || work(&shared))?;
            pool.workers.push(handle);
        }
        Ok(pool)
    }
}

impl ThreadPool {
    /// A pool of `threads` workers (`0`: [`std::thread::available_parallelism`]) with the
    /// default queue depth. See [`ThreadPool::builder`] for the other settings.
    pub fn new(threads: usize) -> io::Result<ThreadPool> {
        ThreadPool::builder().threads(threads).build()
    }

    /// A builder with the defaults: `available_parallelism()` threads, a queue of
    /// [`DEFAULT_QUEUE_PER_THREAD`] jobs per thread, threads named `pop3-auth-N`.
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder::default()
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// Maximum number of queued (not yet running) jobs.
    pub fn queue_depth(&self) -> usize {
        self.queue_depth
    }

    /// Number of jobs queued and not yet picked up by a worker.
    pub fn queued(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Closes the pool, lets the workers drain the queue and waits for them to end. Callers
    /// still waiting for room get [`OffloadError::Closed`]. Called from one of the pool's own
    /// jobs, it does not wait for that job's thread.
    pub fn shutdown(mut self) {
        let workers = std::mem::take(&mut self.workers);
        drop(self); // closes
        let me = thread::current().id();
        for worker in workers {
            if worker.thread().id() != me {
                // Jobs' panics are caught, so a worker does not end by panicking.
                let _ = worker.join();
            }
        }
    }
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("threads", &self.threads())
            .field("queue_depth", &self.queue_depth)
            .field("queued", &self.queued())
            .finish()
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        let waiters = {
            let mut state = self.shared.lock();
            state.closed = true;
            std::mem::take(&mut state.waiters)
        };
        self.shared.jobs.notify_all();
        for (_, waker) in waiters {
            waker.wake();
        }
    }
}

impl Offload for ThreadPool {
    fn submit(&self, job: Job) -> Submit {
        Box::pin(Enqueue {
            shared: Arc::clone(&self.shared),
            job: Some(job),
            waiter: None,
        })
    }
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a job is queued or the pool closes.
    jobs: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs and wakers run outside the lock, so poisoning would mean a bug in this file;
        // the state is still consistent at every unlock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct State {
    queue: VecDeque<Job>,
    queue_depth: usize,
    closed: bool,
    /// Submitters waiting for room, oldest first. A waiter removed from here by a worker
    /// (not by itself) has been told that a slot is free.
    waiters: VecDeque<(u64, Waker)>,
    next_waiter: u64,
}

impl State {
    fn has_room(&self) -> bool {
        self.queue.len() < self.queue_depth
    }

    /// Removes waiter `id`; `false` if it was no longer registered (it had been woken).
    fn remove_waiter(&mut self, id: u64) -> bool {
        match self.waiters.iter().position(|(w, _)| *w == id) {
            Some(i) => {
                self.waiters.remove(i);
                true
            }
            None => false,
        }
    }
}

/// One worker thread: takes jobs until the pool is closed and the queue is empty.
fn work(shared: &Shared) {
    loop {
        let (job, waiter) = {
            let mut state = shared.lock();
            loop {
                if let Some(job) = state.queue.pop_front() {
                    // One slot just freed: tell the longest-waiting submitter.
                    break (job, state.waiters.pop_front());
                }
                if state.closed {
                    return;
                }
                state = shared
                    .jobs
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        if let Some((_, waker)) = waiter {
            waker.wake();
        }
        // The job reports its result through its own channel; a panic drops that channel's
        // sender on the way out, which its caller sees as `OffloadError::Panicked`.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}

/// [`ThreadPool`]'s [`Submit`] future: queues the job once there is room.
struct Enqueue {
    shared: Arc<Shared>,
    job: Option<Job>,
    /// Set while registered as (or woken as) a waiter for room.
    waiter: Option<u64>,
}

impl Future for Enqueue {
    type Output = Result<(), OffloadError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut state = this.shared.lock();
        if state.closed {
            if let Some(id) = this.waiter.take() {
                state.remove_waiter(id);
            }
            drop(state);
            // Dropped outside the lock: a job's captures may do anything on drop.
            drop(this.job.take());
            return Poll::Ready(Err(OffloadError::Closed));
        }
        if state.has_room() {
            let Some(job) = this.job.take() else {
                return Poll::Ready(Ok(())); // polled again after completion
            };
            state.queue.push_back(job);
            if let Some(id) = this.waiter.take() {
                state.remove_waiter(id);
            }
            drop(state);
            this.shared.jobs.notify_one();
            return Poll::Ready(Ok(()));
        }
        match this.waiter {
            Some(id) => match state.waiters.iter_mut().find(|(w, _)| *w == id) {
                Some((_, waker)) => waker.clone_from(cx.waker()),
                // Woken for a slot that someone else took first: keep our turn.
                None => state.waiters.push_front((id, cx.waker().clone())),
            },
            None => {
                let id = state.next_waiter;
                state.next_waiter += 1;
                state.waiters.push_back((id, cx.waker().clone()));
                this.waiter = Some(id);
            }
        }
        Poll::Pending
    }
}

impl Drop for Enqueue {
    fn drop(&mut self) {
        let Some(id) = self.waiter.take() else {
            return;
        };
        let mut state = self.shared.lock();
        if !state.remove_waiter(id) && state.has_room() {
            // We were told about a free slot and leave without using it: pass it on, or the
            // next waiter could sleep while the queue has room.
            if let Some((_, waker)) = state.waiters.pop_front() {
                drop(state);
                waker.wake();
            }
        }
    }
}
