//! Every client adapter against every server adapter (3 x 3), each over plain text, STLS and
//! implicit TLS: log in, STAT, LIST, UIDL, RETR of a 20 MB message (checked as it streams,
//! never collected), TOP, DELE, RSET, QUIT, then a second session sees exactly the deletions.

use std::sync::Arc;
use std::time::Duration;

use pop3_interop::{ClientKind, Login, Mode, Op, ServerKind, Tls, run_client, start_server};
use pop3_proto::Secret;
use pop3_proto::sasl::ClientCredentials;
use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
use pop3_server_core::session::{Backend, Policy};

const SMALL: &[u8] =
    b"Subject: one\r\nFrom: a@example.com\r\n\r\nfirst\r\n.dot line\r\n.\r\nlast\r\n";
const SECOND: &[u8] = b"Subject: two\r\n\r\nsecond\r\n";

fn big() -> Arc<Vec<u8>> {
    let mut m = b"Subject: big\r\n\r\n".to_vec();
    let mut i = 0u64;
    while m.len() < 20_000_000 {
        if i.is_multiple_of(4) {
            m.push(b'.');
        }
        m.extend_from_slice(
            format!("{i:08} the quick brown fox jumps over the lazy dog\r\n").as_bytes(),
        );
        i += 1;
    }
    Arc::new(m)
}

#[test]
fn every_client_adapter_against_every_server_adapter() {
    let big = big();
    let tls = Tls::new();
    let mut results = Vec::new();
    for server in [ServerKind::Tokio, ServerKind::Blocking, ServerKind::Smol] {
        for client in [ClientKind::Tokio, ClientKind::Blocking, ClientKind::Smol] {
            for mode in [Mode::Plain, Mode::StartTls, Mode::Implicit] {
                let store = MemoryStore::new();
                store.add_message("alice", "u1", SMALL);
                store.add_message("alice", "u2", SECOND);
                store.add_message("alice", "u3", &big);
                let mut policy = Policy::default();
                policy.auth_failure_delay = Duration::from_millis(10);
                let backend = Backend::new(
                    MemoryAuthenticator::new().with_user("alice", "pw"),
                    store.clone(),
                    policy,
                );
                let running = start_server(server, backend, &tls);
                let addr = if mode == Mode::Implicit {
                    running.tls
                } else {
                    running.plain
                };
                // Without TLS plaintext passwords are refused: SCRAM there, PLAIN over TLS.
                let login = if mode == Mode::Plain {
                    Login::Sasl(ClientCredentials::ScramSha256 {
                        user: "alice".into(),
                        password: Secret::new("pw".into()),
                    })
                } else {
                    Login::UserPass("alice".into(), "pw".into())
                };
                let total = (SMALL.len() + SECOND.len() + big.len()) as u64;
                let ops = vec![
                    Op::Stat(3, total),
                    Op::List(vec![
                        SMALL.len() as u64,
                        SECOND.len() as u64,
                        big.len() as u64,
                    ]),
                    Op::Uidl(vec!["u1".into(), "u2".into(), "u3".into()]),
                    Op::Retr(3, big.clone()),
                    Op::Top(
                        1,
                        0,
                        b"Subject: one\r\nFrom: a@example.com\r\n\r\n".to_vec(),
                    ),
                    Op::Retr(1, Arc::new(SMALL.to_vec())),
                    Op::Dele(1),
                    Op::Dele(2),
                    Op::Rset,
                    Op::Dele(2),
                    Op::Noop,
                    Op::Quit,
                ];
                let label = format!("{client:?} client x {server:?} server x {mode:?}");
                let largest = run_client(client, mode, addr, &tls, &login, &ops)
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                assert!(
                    largest <= 64 * 1024,
                    "{label}: a body chunk of {largest} octets"
                );
                let second = vec![Op::Uidl(vec!["u1".into(), "u3".into()]), Op::Quit];
                run_client(client, mode, addr, &tls, &login, &second)
                    .unwrap_or_else(|e| panic!("{label}, second session: {e}"));
                assert_eq!(store.uids("alice"), ["u1", "u3"], "{label}");
                drop(running);
                results.push(label);
            }
        }
    }
    assert_eq!(results.len(), 27);
    eprintln!("matrix passed:\n{}", results.join("\n"));
}
