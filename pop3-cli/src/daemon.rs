//! `pop3 fetch --daemon`: polls every account on its own interval until SIGTERM or SIGINT.
//!
//! - Each account is fetched at start, then every `interval` (its own, else `--interval`,
//!   else the file's, else 5 minutes), each wait stretched or shrunk at random by up to 10 %
//!   so that many accounts (or many machines) do not poll in step.
//! - A run that fails is retried after twice the interval, then four times, ..., at most
//!   [`BACKOFF_CAP`] (or the interval, if that is longer); one success resets it. Other
//!   accounts go on as usual.
//! - At most `jobs` accounts are fetched at once, each on a thread of its own.
//! - SIGHUP re-reads the configuration file: new accounts are fetched at once, removed ones
//!   no more, changed ones take effect at their next run. A file that does not read is
//!   logged and the previous one stays in force.
//! - SIGTERM or SIGINT: no new run starts; a run under way stops after the message in hand
//!   (delivered, then deleted as the policy says, then QUIT), so that nothing is left half
//!   done. A second signal exits at once, which is safe too (see `fetch`).
//!
//! Everything is logged through `tracing` (`--log-format`, `--log-level`).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::time::Instant;

use crate::FetchArgs;
use crate::fetch::{self, Error, Plan, Report, Run, Status, Summary};
use crate::fetch_config::Interval;
use crate::serve::init_logging;
use crate::signals::{Hangup, Signals};

/// The longest wait after failures (unless the interval itself is longer).
const BACKOFF_CAP: Duration = Duration::from_secs(3600);

/// `d` times a random factor in [0.9, 1.1].
pub(crate) fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 4];
    let r = match getrandom::fill(&mut b) {
        Ok(()) => f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX),
        Err(_) => 0.5,
    };
    d.mul_f64(0.9 + 0.2 * r)
}

/// The wait after `failures` failed runs in a row (0: the interval).
pub(crate) fn backoff(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    let cap = BACKOFF_CAP.max(interval);
    interval
        .checked_mul(1u32.checked_shl(failures.min(20)).unwrap_or(u32::MAX))
        .map_or(cap, |d| d.min(cap))
}

/// The schedule of one account.
struct State {
    next: Instant,
    failures: u32,
    running: bool,
}

/// What a fetch thread sends back.
struct Done {
    account: String,
    result: Result<Summary, String>,
}

/// `pop3 fetch --daemon`.
pub(crate) fn run(args: FetchArgs, plan: Plan) -> Result<ExitCode, Error> {
    init_logging(args.log_format, args.log_level);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(poll(args, plan))
}

fn log_result(done: &Done, next_in: Duration) {
    let retry = format!("{:.1}s", next_in.as_secs_f64());
    match &done.result {
        Ok(s) => {
            let fields = (
                s.fetched,
                s.deleted,
                s.left,
                s.deferred,
                s.failed,
                s.too_large,
            );
            if let Some(e) = &s.error {
                tracing::error!(account = %done.account, fetched = fields.0, deleted = fields.1,
                    left = fields.2, error = %e, retry_in = %retry, "fetch failed");
            } else if s.status() != Status::Ok || s.fetched > 0 || s.deleted > 0 || s.too_large > 0
            {
                tracing::info!(account = %done.account, fetched = fields.0, deleted = fields.1,
                    left = fields.2, deferred = fields.3, refused = fields.4,
                    too_large = fields.5, secs = s.secs, next_in = %retry, "fetched");
            } else {
                tracing::debug!(account = %done.account, left = fields.2, next_in = %retry,
                    "nothing new");
            }
        }
        Err(e) => {
            tracing::error!(account = %done.account, error = %e, retry_in = %retry, "fetch failed");
        }
    }
}

async fn poll(args: FetchArgs, mut plan: Plan) -> Result<ExitCode, Error> {
    let mut signals = Signals::new();
    let mut hangup = Hangup::new();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Done>();
    let mut states: HashMap<String, State> = HashMap::new();
    let start = Instant::now();
    for a in &plan.accounts {
        states.insert(
            a.name.clone(),
            State {
                next: start,
                failures: 0,
                running: false,
            },
        );
    }
    tracing::info!(
        accounts = plan.accounts.len(),
        jobs = plan.jobs,
        interval = %Interval(plan.interval),
        config = %plan.config.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
        "pop3 fetch daemon started"
    );
    let mut running = 0usize;
    loop {
        let now = Instant::now();
        for a in &plan.accounts {
            if running >= plan.jobs {
                break;
            }
            let Some(st) = states.get_mut(&a.name) else {
                continue;
            };
            if st.running || st.next > now {
                continue;
            }
            st.running = true;
            running += 1;
            let account = a.clone();
            let state_dir = plan.state_dir.clone();
            let stop = stop.clone();
            let tx = tx.clone();
            tracing::debug!(account = %account.name, "fetching");
            std::thread::spawn(move || {
                let run = Run {
                    account: &account,
                    state_dir: &state_dir,
                    stop: &stop,
                    progress: false,
                    report: Report {
                        account: account.name.clone(),
                        prefix: false,
                        tracing: true,
                    },
                };
                let result = fetch::fetch_blocking(&run).map_err(|e| e.to_string());
                let _ = tx.send(Done {
                    account: account.name.clone(),
                    result,
                });
            });
        }
        // With every job slot taken, only a run's end can start another.
        let idle = now + Duration::from_secs(86_400);
        let wake = if running >= plan.jobs {
            idle
        } else {
            states
                .values()
                .filter(|s| !s.running)
                .map(|s| s.next)
                .min()
                .unwrap_or(idle)
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            Some(done) = rx.recv() => {
                running -= 1;
                let interval = plan
                    .accounts
                    .iter()
                    .find(|a| a.name == done.account)
                    .map(|a| a.interval.unwrap_or(plan.interval));
                let failed = match &done.result {
                    Ok(s) => s.error.is_some(),
                    Err(_) => true,
                };
                match (states.get_mut(&done.account), interval) {
                    (Some(st), Some(interval)) => {
                        st.running = false;
                        st.failures = if failed { st.failures.saturating_add(1) } else { 0 };
                        let wait = jitter(backoff(interval, st.failures));
                        st.next = Instant::now() + wait;
                        log_result(&done, wait);
                    }
                    // Removed by a reload while it ran.
                    _ => {
                        states.remove(&done.account);
                        log_result(&done, Duration::ZERO);
                    }
                }
            }
            () = signals.next() => {
                tracing::info!(running, "stopping: runs under way end after the message in hand (a second signal stops at once)");
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                break;
            }
            () = hangup.recv() => {
                match fetch::plan(&args) {
                    Ok(new) => {
                        let now = Instant::now();
                        let names: Vec<String> = new.accounts.iter().map(|a| a.name.clone()).collect();
                        states.retain(|name, st| st.running || names.contains(name));
                        for name in &names {
                            states.entry(name.clone()).or_insert(State { next: now, failures: 0, running: false });
                        }
                        tracing::info!(accounts = names.len(), "reload: configuration read");
                        plan = new;
                    }
                    Err(e) => tracing::error!(error = %e, "reload: configuration refused, the previous one stays in force"),
                }
            }
        }
    }
    while running > 0 {
        tokio::select! {
            Some(done) = rx.recv() => {
                running -= 1;
                log_result(&done, Duration::ZERO);
            }
            () = signals.next() => {
                tracing::warn!(running, "second signal: stopping now");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let m = Duration::from_secs(60);
        assert_eq!(backoff(m, 0), m);
        assert_eq!(backoff(m, 1), 2 * m);
        assert_eq!(backoff(m, 3), 8 * m);
        assert_eq!(backoff(m, 10), BACKOFF_CAP);
        assert_eq!(backoff(m, 40), BACKOFF_CAP);
        let day = Duration::from_secs(86_400);
        assert_eq!(backoff(day, 5), day);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let d = Duration::from_secs(100);
        for _ in 0..200 {
            let j = jitter(d);
            assert!(
                j >= Duration::from_secs(90) && j <= Duration::from_secs(110),
                "{j:?}"
            );
        }
    }
}
