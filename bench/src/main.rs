//! `pop3-bench`: a load generator for any POP3 server.
//!
//! N sessions, C at a time. Worker w logs in as `USER_PREFIX{w % users}`: with at least as
//! many users as workers, no two sessions want one maildrop at once (POP3 servers may lock
//! it, RFC 1939 §8). Modes:
//! - `short`: log in, STAT, QUIT;
//! - `full`: log in, STAT, UIDL, RETR every message, QUIT (nothing deleted);
//! - `idle`: log in and hold the session for `--hold` seconds, then QUIT (memory per session).
//!
//! Prints sessions/s, messages/s, MB/s, and p50/p99 of login and RETR latency.
//!
//! `--storm N` (full mode): once the downloaders run, N more sessions log in all at once as
//! `STORM_PREFIX0..` (with `--storm-password`, typically users with a costly hash such as
//! `{SHA512-CRYPT}`) and quit; the downloaders stop when the storm is over, and the RETR
//! latency of the RETRs that started during the storm is printed on its own: what a login storm
//! does to sessions that are already downloading.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use pop3_tls::Trust;
use pop3_tokio::client::Pop3Client;
use pop3_tokio::client::{ClientOptions, TlsMode};
use tokio::sync::Mutex;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    Short,
    Full,
    Idle,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
enum Tls {
    None,
    Implicit,
    Starttls,
}

#[derive(Parser, Debug)]
#[command(name = "pop3-bench", about = "Load generator for POP3 servers")]
struct Args {
    /// Server address, host:port.
    #[arg(long)]
    addr: String,
    /// Users are PREFIX0, PREFIX1, ...
    #[arg(long, default_value = "user")]
    user_prefix: String,
    /// How many distinct users.
    #[arg(long, default_value_t = 1)]
    users: usize,
    /// Their password.
    #[arg(long)]
    password: String,
    /// Sessions in all.
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    /// Sessions at once.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// What each session does.
    #[arg(long, value_enum, default_value_t = Mode::Short)]
    mode: Mode,
    /// TLS.
    #[arg(long, value_enum, default_value_t = Tls::None)]
    tls: Tls,
    /// CA certificate (PEM) for TLS; otherwise certificates are not verified (benchmarks only).
    #[arg(long)]
    ca_file: Option<String>,
    /// Idle mode: seconds to hold each session.
    #[arg(long, default_value_t = 10)]
    hold: u64,
    /// Full mode: this many logins arrive at once while the sessions download.
    #[arg(long, default_value_t = 0)]
    storm: usize,
    /// Users of the storm are PREFIX0, PREFIX1, ...
    #[arg(long, default_value = "storm")]
    storm_prefix: String,
    /// Their password (default: --password).
    #[arg(long)]
    storm_password: Option<String>,
}

/// When the storm ran, and how its logins went.
#[derive(Default)]
struct Storm {
    start: Option<Instant>,
    end: Option<Instant>,
    login: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

#[derive(Default)]
struct Stats {
    login: Vec<Duration>,
    /// Each RETR's start and latency.
    retr: Vec<(Instant, Duration)>,
    messages: u64,
    bytes: u64,
    errors: u64,
    first_error: Option<String>,
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

async fn session(
    args: &Args,
    i: usize,
    opts: ClientOptions,
    stats: &Mutex<Stats>,
) -> Result<(), String> {
    let user = format!("{}{}", args.user_prefix, i % args.users.max(1));
    let t0 = Instant::now();
    let mut c = Pop3Client::connect(&args.addr, opts)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    c.login(&user, &args.password)
        .await
        .map_err(|e| format!("login {user}: {e}"))?;
    let login = t0.elapsed();
    let mut retr = Vec::new();
    let (mut messages, mut bytes) = (0, 0);
    c.stat().await.map_err(|e| format!("stat: {e}"))?;
    match args.mode {
        Mode::Short => {}
        Mode::Idle => tokio::time::sleep(Duration::from_secs(args.hold)).await,
        Mode::Full => {
            let uidl = c.uidl().await.map_err(|e| format!("uidl: {e}"))?;
            for u in uidl {
                let t = Instant::now();
                bytes += c
                    .retr_with(u.msg, |_| Ok(()))
                    .await
                    .map_err(|e| format!("retr: {e}"))?;
                retr.push((t, t.elapsed()));
                messages += 1;
            }
        }
    }
    c.quit().await.map_err(|e| format!("quit: {e}"))?;
    let mut s = stats.lock().await;
    s.login.push(login);
    s.retr.extend(retr);
    s.messages += messages;
    s.bytes += bytes;
    Ok(())
}

#[allow(clippy::print_stdout)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Arc::new(Args::parse());
    let trust = match &args.ca_file {
        Some(f) => Trust::CaPem(std::fs::read(f)?),
        None => Trust::DangerousAcceptAnyCertificate,
    };
    let cfg = pop3_tls::client_config(&trust)?;
    let mode = match args.tls {
        Tls::None => TlsMode::Plain,
        Tls::Implicit => TlsMode::Implicit(cfg),
        Tls::Starttls => TlsMode::StartTls(cfg),
    };
    let mut opts = ClientOptions::new(mode);
    opts.server_name = Some("localhost".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let stats = Arc::new(Mutex::new(Stats::default()));
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let storm = Arc::new(Mutex::new(Storm::default()));
    let storm_over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    rt.block_on(async {
        let mut workers = Vec::new();
        if args.storm > 0 {
            let (args, storm, over, opts) = (
                args.clone(),
                storm.clone(),
                storm_over.clone(),
                opts.clone(),
            );
            workers.push(tokio::spawn(async move {
                // Let the downloaders get going first.
                tokio::time::sleep(Duration::from_millis(500)).await;
                run_storm(&args, opts, &storm).await;
                over.store(true, Ordering::Relaxed);
            }));
        }
        for worker in 0..args.concurrency.max(1) {
            let (args, stats, next, opts, storm_over) = (
                args.clone(),
                stats.clone(),
                next.clone(),
                opts.clone(),
                storm_over.clone(),
            );
            workers.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let storm_done = args.storm > 0 && storm_over.load(Ordering::Relaxed);
                    if i >= args.sessions || storm_done {
                        break;
                    }
                    if let Err(e) = session(&args, worker, opts.clone(), &stats).await {
                        let mut s = stats.lock().await;
                        s.errors += 1;
                        s.first_error.get_or_insert(e);
                    }
                }
            }));
        }
        for w in workers {
            let _ = w.await;
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let mut s = rt.block_on(stats.lock()).clone_out();
    let ok = s.login.len();
    let mut st = rt.block_on(storm.lock()).take();
    let during: Vec<Duration> = match (st.start, st.end) {
        (Some(a), Some(b)) => s
            .retr
            .iter()
            .filter(|(t, _)| (a..b).contains(t))
            .map(|r| r.1)
            .collect(),
        _ => Vec::new(),
    };
    let mut retr: Vec<Duration> = s.retr.iter().map(|r| r.1).collect();
    println!(
        "sessions {ok} ok, {} failed in {secs:.2} s: {:.1} sessions/s, {:.1} messages/s, {:.1} MB/s",
        s.errors,
        ok as f64 / secs,
        s.messages as f64 / secs,
        s.bytes as f64 / 1e6 / secs
    );
    println!(
        "login p50 {:.2} ms p99 {:.2} ms; RETR p50 {:.2} ms p99 {:.2} ms",
        pct(&mut s.login, 0.5),
        pct(&mut s.login, 0.99),
        pct(&mut retr, 0.5),
        pct(&mut retr, 0.99)
    );
    if let (Some(a), Some(b)) = (st.start, st.end) {
        let mut during = during;
        println!(
            "storm: {} logins ({} failed) in {:.2} s, login p50 {:.2} ms p99 {:.2} ms; \
             {} RETRs started during it: p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
            st.login.len(),
            st.errors,
            (b - a).as_secs_f64(),
            pct(&mut st.login, 0.5),
            pct(&mut st.login, 0.99),
            during.len(),
            pct(&mut during, 0.5),
            pct(&mut during, 0.99),
            pct(&mut during, 1.0)
        );
        if let Some(e) = &st.first_error {
            println!("first storm error: {e}");
        }
    }
    if let Some(e) = &s.first_error {
        println!("first error: {e}");
    }
    Ok(())
}

/// N logins at once (connect, log in, QUIT), timed.
async fn run_storm(args: &Arc<Args>, opts: ClientOptions, storm: &Arc<Mutex<Storm>>) {
    storm.lock().await.start = Some(Instant::now());
    let mut logins = Vec::new();
    for i in 0..args.storm {
        let (args, opts, storm) = (args.clone(), opts.clone(), storm.clone());
        logins.push(tokio::spawn(async move {
            let user = format!("{}{i}", args.storm_prefix);
            let password = args.storm_password.as_ref().unwrap_or(&args.password);
            let t0 = Instant::now();
            let r = async {
                let mut c = Pop3Client::connect(&args.addr, opts).await?;
                c.login(&user, password).await?;
                let took = t0.elapsed();
                c.quit().await?;
                Ok::<_, pop3_tokio::client::Error>(took)
            }
            .await;
            let mut s = storm.lock().await;
            match r {
                Ok(took) => s.login.push(took),
                Err(e) => {
                    s.errors += 1;
                    s.first_error.get_or_insert(format!("{user}: {e}"));
                }
            }
        }));
    }
    for l in logins {
        let _ = l.await;
    }
    storm.lock().await.end = Some(Instant::now());
}

impl Storm {
    fn take(&mut self) -> Storm {
        std::mem::take(self)
    }
}

impl Stats {
    fn clone_out(&mut self) -> Stats {
        std::mem::take(self)
    }
}
