//! Every client adapter against every server adapter, each over plain text, STLS and implicit
//! TLS: pop3-tokio, pop3-blocking, and pop3-futures on smol and on async-std, on both sides
//! (4 x 4 x 3 = 48 combinations). Each logs in, runs STAT, LIST, UIDL, RETR of a 20 MB message
//! (checked as it streams, never collected: through the chunk callback and through a writer),
//! TOP, pipelined RETRs (`fetch_many`) and DELEs (`delete_many`), RSET, DELE, QUIT; then a
//! second session sees exactly the deletions.
//!
//! All of it twice: on the in-memory store, and (`postgres::*`) on a `PgStore` with the bodies
//! in PostgreSQL, seeded with the same users and messages (a fresh database per test, on the
//! test binary's PostgreSQL cluster; without PostgreSQL those tests print SKIPPED and pass).
//!
//! One test per server adapter and storage, so that they run in parallel and fail separately.

#[path = "../../pop3-store-postgres/tests/support/mod.rs"]
mod pg;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use pop3_interop::{
    ClientKind, Login, Mail, Mode, Op, ServerKind, Storage, Tls, run_client, top_of,
};
use pop3_proto::Secret;
use pop3_proto::sasl::ClientCredentials;
use pop3_server_core::session::Policy;

const SMALL: &[u8] =
    b"Subject: one\r\nFrom: a@example.com\r\n\r\nfirst\r\n.dot line\r\n.\r\n..\r\nlast\r\n";
const SECOND: &[u8] = b"Subject: two\r\n\r\nsecond \xff\xfe 8-bit\r\n";
/// The large message; the adapters' read buffers are 64 KiB, so a body that is never held
/// whole arrives in chunks no larger than that.
const BIG_LEN: usize = 20_000_000;
const MAX_CHUNK: usize = 64 * 1024;

/// The 20 MB message, built once and shared by every combination.
fn big() -> Arc<Vec<u8>> {
    static BIG: OnceLock<Arc<Vec<u8>>> = OnceLock::new();
    BIG.get_or_init(|| {
        let mut m = b"Subject: big\r\n\r\n".to_vec();
        let mut i = 0u64;
        while m.len() < BIG_LEN {
            if i.is_multiple_of(4) {
                m.push(b'.');
            }
            m.extend_from_slice(
                format!("{i:08} the quick brown fox jumps over the lazy dog\r\n").as_bytes(),
            );
            i += 1;
        }
        Arc::new(m)
    })
    .clone()
}

fn creds_scram() -> Login {
    Login::Sasl(ClientCredentials::ScramSha256 {
        user: "alice".into(),
        password: Secret::new("pw".into()),
    })
}

fn creds_plain() -> Login {
    Login::Sasl(ClientCredentials::Plain {
        authzid: None,
        user: "alice".into(),
        password: Secret::new("pw".into()),
    })
}

/// Runs the scenario for every client adapter and mode against one server adapter on
/// `storage`; returns one result line per combination.
fn against(server: ServerKind, storage: Storage) -> Vec<String> {
    let big = big();
    let tls = Tls::new();
    let mut results = Vec::new();
    for client in ClientKind::ALL {
        for mode in Mode::ALL {
            let start = Instant::now();
            // A fresh maildrop for each combination (on PostgreSQL: emptied and delivered
            // again, in the test's database).
            let mail = Mail::new(
                &storage,
                &[("alice", "pw")],
                &[
                    ("alice", "u1", SMALL),
                    ("alice", "u2", SECOND),
                    ("alice", "u3", big.as_slice()),
                ],
            );
            let uids = mail.uids("alice");
            let mut policy = Policy::default();
            policy.rules.auth_failure_delay = Duration::from_millis(10);
            let running = mail.start(server, policy, &tls);
            let addr = if mode == Mode::Implicit {
                running.tls
            } else {
                running.plain
            };
            // Our servers refuse passwords in the clear without TLS: SCRAM there; USER/PASS
            // after STLS, SASL PLAIN over implicit TLS.
            let login = match mode {
                Mode::Plain => creds_scram(),
                Mode::StartTls => Login::UserPass("alice".into(), "pw".into()),
                Mode::Implicit => creds_plain(),
            };
            let total = (SMALL.len() + SECOND.len() + big.len()) as u64;
            let ops = vec![
                Op::Stat(3, total),
                Op::List(vec![
                    SMALL.len() as u64,
                    SECOND.len() as u64,
                    big.len() as u64,
                ]),
                Op::Uidl(uids.clone()),
                Op::Retr(3, big.clone()),
                Op::RetrTo(3, big.clone()),
                Op::Top(1, 0, top_of(SMALL, 0)),
                Op::Top(1, 2, top_of(SMALL, 2)),
                Op::Retr(1, Arc::new(SMALL.to_vec())),
                Op::Retr(2, Arc::new(SECOND.to_vec())),
                Op::FetchMany(vec![
                    (1, Arc::new(SMALL.to_vec())),
                    (2, Arc::new(SECOND.to_vec())),
                ]),
                Op::DeleteMany(vec![1, 2]),
                Op::Rset,
                Op::Dele(2),
                Op::Noop,
                Op::Quit,
            ];
            let label = format!("{client:?} client x {server:?} server x {mode:?} on {storage}");
            let stats = run_client(client, mode, addr, tls.client.clone(), login.clone(), ops)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(
                stats.octets,
                2 * (big.len() + SMALL.len() + SECOND.len()) as u64,
                "{label}"
            );
            assert!(
                stats.largest_chunk <= MAX_CHUNK,
                "{label}: a body chunk of {} octets",
                stats.largest_chunk
            );
            // At least one chunk per read buffer: the body was streamed, not collected.
            assert!(
                stats.chunks >= 2 * BIG_LEN / MAX_CHUNK,
                "{label}: only {} chunks",
                stats.chunks
            );
            let second = vec![
                Op::Stat(2, (SMALL.len() + big.len()) as u64),
                Op::Uidl(vec![uids[0].clone(), uids[2].clone()]),
                Op::Quit,
            ];
            run_client(client, mode, addr, tls.client.clone(), login, second)
                .unwrap_or_else(|e| panic!("{label}, second session: {e}"));
            assert_eq!(
                mail.current("alice"),
                [uids[0].clone(), uids[2].clone()],
                "{label}"
            );
            running.stop();
            results.push(format!(
                "{label}: ok ({} chunks, largest {} octets, {:.1} s)",
                stats.chunks,
                stats.largest_chunk,
                start.elapsed().as_secs_f64()
            ));
        }
    }
    assert_eq!(results.len(), 12);
    eprintln!("{}", results.join("\n"));
    results
}

/// A fresh database for a `postgres::*` test; `None` (after a SKIPPED line) without PostgreSQL.
fn postgres() -> Option<Storage> {
    pg::database().map(Storage::Postgres)
}

/// Each test twice, with the same assertions: `NAME` on the in-memory store and
/// `postgres::NAME` on a PgStore (`$run(args..., storage)`).
macro_rules! on_both_stores {
    ($($name:ident => $run:ident($($arg:expr),*);)*) => {
        $(
            #[test]
            fn $name() {
                $run($($arg,)* Storage::Memory);
            }
        )*
        mod postgres {
            use super::*;
            $(
                #[test]
                fn $name() {
                    if let Some(storage) = postgres() {
                        $run($($arg,)* storage);
                    }
                }
            )*
        }
    };
}

on_both_stores! {
    every_client_against_the_tokio_server => against(ServerKind::Tokio);
    every_client_against_the_blocking_server => against(ServerKind::Blocking);
    every_client_against_the_futures_server_on_smol => against(ServerKind::Smol);
    every_client_against_the_futures_server_on_async_std => against(ServerKind::AsyncStd);
}
