//! 1,000 concurrent sessions doing full downloads for a minute (`POP3_LOAD_SECS` to change
//! it) against the tokio server: every session logs in, checks STAT and UIDL, streams every
//! message and compares it byte for byte with what the store holds, and quits. The test
//! passes only if every session of the minute ended with every byte delivered and no error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pop3_interop::{ServerKind, Tls, bounded, start_server_with};
use pop3_proto::MsgNum;
use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
use pop3_server_core::session::{Backend, Policy};
use pop3_tokio::client::{ClientOptions, TlsMode};

const SESSIONS: usize = 1_000;

/// Four messages of 1, 4, 16 and 64 KiB, with dot lines to stuff, different per user.
fn messages(user: usize) -> Vec<Vec<u8>> {
    [1usize, 4, 16, 64]
        .iter()
        .enumerate()
        .map(|(i, kib)| {
            let mut m = format!("Subject: user {user} message {i}\r\n\r\n").into_bytes();
            let mut n = 0;
            while m.len() < kib * 1024 {
                let line = match n % 7 {
                    0 => format!(".line {n} starts with a dot\r\n"),
                    3 => ".\r\n".to_string(),
                    _ => format!("user {user} line {n} of message {i}\r\n"),
                };
                m.extend_from_slice(line.as_bytes());
                n += 1;
            }
            m
        })
        .collect()
}

#[derive(Default)]
struct Totals {
    sessions: AtomicU64,
    octets: AtomicU64,
    errors: AtomicU64,
}

async fn session(
    addr: &str,
    user: &str,
    expected: &[Vec<u8>],
    totals: &Totals,
) -> Result<(), String> {
    let mut c = pop3_tokio::client::Pop3Client::connect(addr, ClientOptions::new(TlsMode::Plain))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    c.login(user, "pw")
        .await
        .map_err(|e| format!("login: {e}"))?;
    let stat = c.stat().await.map_err(|e| format!("STAT: {e}"))?;
    let size: u64 = expected.iter().map(|m| m.len() as u64).sum();
    if (stat.count, stat.size) != (expected.len() as u64, size) {
        return Err(format!("STAT {stat:?}"));
    }
    let uids = c.uidl().await.map_err(|e| format!("UIDL: {e}"))?;
    if uids.len() != expected.len() {
        return Err(format!("UIDL gave {} entries", uids.len()));
    }
    for (i, m) in expected.iter().enumerate() {
        let n = MsgNum::new(i as u32 + 1).map_err(|e| e.to_string())?;
        let mut at = 0;
        let got = c
            .retr_with(n, |chunk| {
                if m.get(at..at + chunk.len()) != Some(chunk) {
                    return Err(std::io::Error::other(format!(
                        "message {n} differs at octet {at}"
                    )));
                }
                at += chunk.len();
                Ok(())
            })
            .await
            .map_err(|e| format!("RETR {n}: {e}"))?;
        if at != m.len() || got != m.len() as u64 {
            return Err(format!("RETR {n}: {at} of {} octets", m.len()));
        }
        totals.octets.fetch_add(at as u64, Ordering::Relaxed);
    }
    c.quit().await.map_err(|e| format!("QUIT: {e}"))?;
    totals.sessions.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

#[test]
fn a_thousand_concurrent_sessions_download_for_a_minute_without_loss() {
    let secs: u64 = std::env::var("POP3_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    // Two sockets per session in this one process.
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
    let want = (SESSIONS as u64) * 2 + 200;
    if soft < want {
        rlimit::setrlimit(rlimit::Resource::NOFILE, want.min(hard), hard).expect("setrlimit");
    }
    let auth = (0..SESSIONS).fold(MemoryAuthenticator::new(), |a, u| {
        a.with_user(&format!("user{u}"), "pw")
    });
    let store = MemoryStore::new();
    let expected: Arc<Vec<Vec<Vec<u8>>>> = Arc::new((0..SESSIONS).map(messages).collect());
    for (u, msgs) in expected.iter().enumerate() {
        for (i, m) in msgs.iter().enumerate() {
            store.add_message(&format!("user{u}"), &format!("u{u}m{i}"), m);
        }
    }
    let mut policy = Policy::default();
    policy.rules.plaintext_auth = true;
    // The thousand clients all come from 127.0.0.1, and connect at once: no per-address
    // limit on connections that have not logged in yet.
    let mut options = pop3_tokio::server::ServerOptions::default();
    options.max_unauthenticated_per_ip = SESSIONS;
    let server = start_server_with(
        ServerKind::Tokio,
        Backend::new(auth, store, policy),
        &Tls::new(),
        options,
    );
    let addr = server.plain.to_string();
    let totals = Arc::new(Totals::default());
    let t = totals.clone();
    let done = bounded(
        "1,000 sessions",
        Duration::from_secs(secs + 120),
        move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let end = Instant::now() + Duration::from_secs(secs);
                let tasks: Vec<_> = (0..SESSIONS)
                    .map(|u| {
                        let (addr, expected, t) = (addr.clone(), expected.clone(), t.clone());
                        tokio::spawn(async move {
                            // Spread the first connects over a second (the listen queue).
                            tokio::time::sleep(Duration::from_millis(u as u64)).await;
                            let user = format!("user{u}");
                            let mut done = 0u64;
                            while Instant::now() < end {
                                if let Err(e) = session(&addr, &user, &expected[u], &t).await {
                                    t.errors.fetch_add(1, Ordering::Relaxed);
                                    return Err(format!("{user}: {e}"));
                                }
                                done += 1;
                            }
                            Ok(done)
                        })
                    })
                    .collect();
                let mut done = Vec::new();
                for task in tasks {
                    done.push(task.await.expect("session task"));
                }
                done
            })
        },
    );
    let sessions = totals.sessions.load(Ordering::Relaxed);
    let octets = totals.octets.load(Ordering::Relaxed);
    eprintln!(
        "{SESSIONS} concurrent clients for {secs} s: {sessions} sessions, {} MB, {} errors",
        octets / 1_000_000,
        totals.errors.load(Ordering::Relaxed)
    );
    let done: Vec<u64> = done
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("a session failed: {e}"));
    assert!(
        done.iter().all(|&n| n >= 1),
        "a client completed no session in {secs} s"
    );
    assert_eq!(done.iter().sum::<u64>(), sessions);
    // Every octet of every message of every completed session, and nothing else.
    let expected_octets: u64 = done
        .iter()
        .enumerate()
        .map(|(u, n)| n * messages(u).iter().map(|m| m.len() as u64).sum::<u64>())
        .sum();
    assert_eq!(octets, expected_octets);
    server.stop();
}
