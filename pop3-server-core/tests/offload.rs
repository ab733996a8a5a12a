//! Tests of `pop3_server_core::offload`: the thread pool's threads, bounded queue, panic
//! isolation and shutdown, and the inline offloader.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use pop3_server_core::block_on;
use pop3_server_core::offload::{Inline, Offload, OffloadError, OffloadExt, Run, ThreadPool};

const PATIENCE: Duration = Duration::from_secs(10);

fn thread_name() -> String {
    thread::current().name().unwrap_or("<unnamed>").to_owned()
}

/// A waker that records that it was woken.
#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Flag {
    fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Waits (a bounded time) for the wake-up.
    fn wait(&self) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while !self.is_set() {
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(1));
        }
        true
    }
}

/// Polls `fut` once with `waker`.
fn poll_once<R>(fut: &mut Run<R>, waker: &Waker) -> Poll<Result<R, OffloadError>> {
    Pin::new(fut).poll(&mut Context::from_waker(waker))
}

fn flag_waker() -> (Arc<Flag>, Waker) {
    let flag = Arc::new(Flag::default());
    (Arc::clone(&flag), Waker::from(Arc::clone(&flag)))
}

/// A job that blocks its worker until the returned sender is dropped or sent to, after
/// signalling that it started.
fn gate(pool: &ThreadPool) -> (Run<()>, mpsc::Sender<()>) {
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let mut job = pool.run(move || {
        started_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(PATIENCE);
    });
    let (_, waker) = flag_waker();
    assert!(poll_once(&mut job, &waker).is_pending());
    started_rx.recv_timeout(PATIENCE).expect("gate job started");
    (job, release_tx)
}

fn assert_send_static<T: Send + 'static>(_: &T) {}

#[test]
fn pool_runs_more_jobs_than_threads_on_its_named_threads() {
    let pool = ThreadPool::builder()
        .threads(3)
        .queue_depth(4)
        .build()
        .unwrap();
    assert_eq!(pool.threads(), 3);
    assert_eq!(pool.queue_depth(), 4);
    let jobs: Vec<_> = (0..60u64)
        .map(|i| {
            pool.run(move || {
                // Enough work that jobs overlap.
                thread::sleep(Duration::from_micros(200));
                (i * i, thread_name())
            })
        })
        .collect();
    assert_send_static(&jobs[0]);
    let results = block_on(join_all(jobs));
    let mut names = BTreeSet::new();
    for (i, result) in results.into_iter().enumerate() {
        let (square, name) = result.expect("job ran");
        assert_eq!(square, (i * i) as u64);
        names.insert(name);
    }
    let allowed: BTreeSet<String> = (0..3).map(|n| format!("pop3-auth-{n}")).collect();
    assert!(names.is_subset(&allowed), "{names:?}");
    assert!(!names.contains(&thread_name()));
}

#[test]
fn default_pool_has_available_parallelism_threads() {
    let pool = ThreadPool::new(0).unwrap();
    let expected = thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(pool.threads(), expected);
    assert!(pool.queue_depth() >= expected);
    let name = block_on(pool.run(thread_name)).unwrap();
    assert!(name.starts_with("pop3-auth-"), "{name}");
}

#[test]
fn jobs_run_in_parallel_up_to_the_thread_count() {
    let pool = ThreadPool::new(2).unwrap();
    let arrived = Arc::new(AtomicUsize::new(0));
    let rendezvous = |arrived: Arc<AtomicUsize>| {
        move || {
            arrived.fetch_add(1, Ordering::SeqCst);
            let deadline = Instant::now() + PATIENCE;
            // Only true if the other job is running at the same time.
            while arrived.load(Ordering::SeqCst) < 2 {
                if Instant::now() > deadline {
                    return false;
                }
                thread::yield_now();
            }
            true
        }
    };
    let a = pool.run(rendezvous(Arc::clone(&arrived)));
    let b = pool.run(rendezvous(Arc::clone(&arrived)));
    let (a, b) = block_on(futures_util::future::join(a, b));
    assert_eq!((a, b), (Ok(true), Ok(true)));
}

#[test]
fn full_queue_makes_callers_wait_then_run() {
    let pool = ThreadPool::builder()
        .threads(1)
        .queue_depth(1)
        .build()
        .unwrap();
    let (mut gate_job, release) = gate(&pool);

    // B fits in the queue.
    let (_, b_waker) = flag_waker();
    let mut b = pool.run(|| 2);
    assert!(poll_once(&mut b, &b_waker).is_pending());
    assert_eq!(pool.queued(), 1);

    // C and D do not: they wait (pending, not an error) and nothing more is queued.
    let (c_flag, c_waker) = flag_waker();
    let mut c = pool.run(|| 3);
    assert!(poll_once(&mut c, &c_waker).is_pending());
    let (d_flag, d_waker) = flag_waker();
    let mut d = pool.run(|| 4);
    assert!(poll_once(&mut d, &d_waker).is_pending());
    assert_eq!(pool.queued(), 1);
    thread::sleep(Duration::from_millis(20));
    assert!(!c_flag.is_set() && !d_flag.is_set());
    assert!(poll_once(&mut c, &c_waker).is_pending(), "spurious poll");

    // The gate ends, the worker takes B: the longest waiter (C) is told there is room.
    release.send(()).unwrap();
    assert!(c_flag.wait(), "waiting caller never woken");
    assert!(!d_flag.is_set(), "one free slot, one caller woken");
    assert_eq!(block_on(gate_job_done(&mut gate_job)), Ok(()));
    assert_eq!(block_on(b), Ok(2));
    // C is queued and run; leaving the queue, it wakes D.
    assert_eq!(block_on(c), Ok(3));
    assert!(d_flag.wait(), "second waiting caller never woken");
    assert_eq!(block_on(d), Ok(4));
}

/// Awaits a `Run` held by reference.
fn gate_job_done(job: &mut Run<()>) -> impl Future<Output = Result<(), OffloadError>> + '_ {
    std::future::poll_fn(move |cx| Pin::new(&mut *job).poll(cx))
}

#[test]
fn many_waiting_callers_all_complete_with_a_tiny_queue() {
    let pool = ThreadPool::builder()
        .threads(1)
        .queue_depth(1)
        .build()
        .unwrap();
    let jobs: Vec<_> = (0..200u32).map(|i| pool.run(move || i + 1)).collect();
    let results = block_on(join_all(jobs));
    let expected: Vec<_> = (1..=200u32).map(Ok).collect();
    assert_eq!(results, expected);
}

#[test]
fn a_caller_that_gives_up_waiting_passes_its_turn_on() {
    let pool = ThreadPool::builder()
        .threads(1)
        .queue_depth(1)
        .build()
        .unwrap();
    let (gate_job, release) = gate(&pool);
    let (_, waker) = flag_waker();
    let mut b = pool.run(|| 'b');
    assert!(poll_once(&mut b, &waker).is_pending());
    let (c_flag, c_waker) = flag_waker();
    let mut c = pool.run(|| 'c');
    assert!(poll_once(&mut c, &c_waker).is_pending());
    let (d_flag, d_waker) = flag_waker();
    let mut d = pool.run(|| 'd');
    assert!(poll_once(&mut d, &d_waker).is_pending());
    release.send(()).unwrap();
    // C is told about the free slot but is dropped without using it: D must hear of it.
    assert!(c_flag.wait());
    drop(c);
    assert!(d_flag.wait(), "turn not passed on");
    drop(gate_job);
    assert_eq!(block_on(b), Ok('b'));
    assert_eq!(block_on(d), Ok('d'));
}

#[test]
fn a_panicking_job_fails_its_caller_and_the_pool_lives_on() {
    let pool = ThreadPool::builder()
        .threads(1)
        .queue_depth(2)
        .build()
        .unwrap();
    let failed = block_on(pool.run(|| -> u32 { panic!("job failure (expected by this test)") }));
    assert_eq!(failed, Err(OffloadError::Panicked));
    // The single worker survived.
    assert_eq!(
        block_on(pool.run(thread_name)),
        Ok("pop3-auth-0".to_owned())
    );

    // Many panics, interleaved with good jobs, on more threads.
    let pool = ThreadPool::new(2).unwrap();
    let jobs: Vec<_> = (0..20u32)
        .map(|i| {
            pool.run(move || {
                if i % 2 == 0 {
                    panic!("job {i} (expected by this test)");
                }
                i
            })
        })
        .collect();
    for (i, result) in block_on(join_all(jobs)).into_iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(result, Err(OffloadError::Panicked), "{i}");
        } else {
            assert_eq!(result, Ok(i as u32));
        }
    }
    let later: Vec<_> = (0..10u32).map(|i| pool.run(move || i)).collect();
    assert_eq!(
        block_on(join_all(later)),
        (0..10u32).map(Ok).collect::<Vec<_>>()
    );
}

#[test]
fn inline_runs_on_the_polling_thread_and_catches_panics() {
    let me = thread::current().id();
    let mut job = Inline.run(move || thread::current().id() == me);
    assert_send_static(&job);
    // Nothing runs before the first poll; then it is done at once.
    let (_, waker) = flag_waker();
    assert_eq!(poll_once(&mut job, &waker), Poll::Ready(Ok(true)));
    assert_eq!(
        block_on(Inline.run(|| -> u8 { panic!("inline failure (expected by this test)") })),
        Err(OffloadError::Panicked)
    );
    assert_eq!(block_on(Inline.run(|| 7)), Ok(7));
}

#[test]
fn works_through_arc_dyn_offload() {
    let offloaders: [Arc<dyn Offload>; 2] =
        [Arc::new(Inline), Arc::new(ThreadPool::new(1).unwrap())];
    let names: Vec<String> = offloaders
        .iter()
        .map(|o| block_on(o.run(thread_name)).unwrap())
        .collect();
    assert_eq!(names, [thread_name(), "pop3-auth-0".to_owned()]);
    assert!(format!("{:?}", offloaders[1]).contains("ThreadPool"));
}

#[test]
fn custom_thread_names() {
    let pool = ThreadPool::builder()
        .threads(1)
        .name_prefix("hasher")
        .build()
        .unwrap();
    assert_eq!(block_on(pool.run(thread_name)), Ok("hasher-0".to_owned()));
}

#[test]
fn dropping_the_pool_drains_queued_jobs_and_refuses_waiting_ones() {
    let pool = ThreadPool::builder()
        .threads(1)
        .queue_depth(2)
        .build()
        .unwrap();
    let (gate_job, release) = gate(&pool);
    let (_, waker) = flag_waker();
    let mut queued: Vec<_> = (0..2u32).map(|i| pool.run(move || i)).collect();
    for job in &mut queued {
        assert!(poll_once(job, &waker).is_pending());
    }
    let (late_flag, late_waker) = flag_waker();
    let mut late = pool.run(|| 99u32);
    assert!(poll_once(&mut late, &late_waker).is_pending());

    drop(pool);
    // The caller waiting for room is told at once, before the queue drains.
    assert!(late_flag.is_set());
    assert_eq!(
        poll_once(&mut late, &late_waker),
        Poll::Ready(Err(OffloadError::Closed))
    );
    // What was queued still runs.
    release.send(()).unwrap();
    assert_eq!(block_on(gate_job), Ok(()));
    assert_eq!(block_on(join_all(queued)), vec![Ok(0), Ok(1)]);
}

#[test]
fn shutdown_waits_for_the_queue_and_the_threads() {
    let pool = ThreadPool::builder()
        .threads(2)
        .queue_depth(8)
        .build()
        .unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let (_, waker) = flag_waker();
    let mut jobs: Vec<_> = (0..8)
        .map(|_| {
            let done = Arc::clone(&done);
            pool.run(move || {
                thread::sleep(Duration::from_millis(5));
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for job in &mut jobs {
        assert!(poll_once(job, &waker).is_pending());
    }
    pool.shutdown();
    assert_eq!(done.load(Ordering::SeqCst), 8);
    for job in &mut jobs {
        assert_eq!(poll_once(job, &waker), Poll::Ready(Ok(())));
    }
}

#[test]
fn a_queued_job_whose_caller_left_is_skipped() {
    let pool = ThreadPool::builder()
        .threads(1)
        .queue_depth(4)
        .build()
        .unwrap();
    let (gate_job, release) = gate(&pool);
    let (_, waker) = flag_waker();
    let ran = Arc::new(AtomicBool::new(false));
    let kept_ran = Arc::new(AtomicBool::new(false));
    let mut dropped = {
        let ran = Arc::clone(&ran);
        pool.run(move || ran.store(true, Ordering::SeqCst))
    };
    let mut kept = {
        let ran = Arc::clone(&kept_ran);
        pool.run(move || ran.store(true, Ordering::SeqCst))
    };
    assert!(poll_once(&mut dropped, &waker).is_pending());
    assert!(poll_once(&mut kept, &waker).is_pending());
    drop(dropped);
    release.send(()).unwrap();
    drop(gate_job);
    assert_eq!(block_on(kept), Ok(()));
    pool.shutdown();
    assert!(kept_ran.load(Ordering::SeqCst));
    assert!(!ran.load(Ordering::SeqCst), "job of a departed caller ran");
}

#[test]
fn a_pool_dropped_inside_its_own_job_does_not_deadlock() {
    let pool = Arc::new(ThreadPool::new(1).unwrap());
    let inner = Arc::clone(&pool);
    let job = pool.run(move || {
        // The last handle goes away on the worker itself.
        drop(inner);
        thread_name()
    });
    drop(pool);
    assert_eq!(block_on(job), Ok("pop3-auth-0".to_owned()));
}
