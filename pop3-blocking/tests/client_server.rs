//! The blocking client against the blocking server on 127.0.0.1, plain, STLS and implicit TLS.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use pop3_blocking::client::{Chunk, ClientOptions, Error, Pop3Client, TlsMode};
use pop3_blocking::server::{ServerOptions, Shutdown, serve};
use pop3_proto::sasl::ClientCredentials;
use pop3_proto::{MsgNum, Secret};
use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
use pop3_server_core::session::{Backend, Policy};
use pop3_tls::Trust;

const LIMIT: Duration = Duration::from_secs(120);
const SMALL: &[u8] = b"Subject: one\r\n\r\nfirst line\r\n.dot line\r\nlast\r\n";

/// Runs `f` on a thread and fails the test if it takes longer than `LIMIT`.
fn bounded(f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let t = thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(()) => t.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = t.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("test took longer than {LIMIT:?}"),
    }
}

fn n(i: u32) -> MsgNum {
    MsgNum::new(i).unwrap()
}

fn big_message() -> Vec<u8> {
    let mut m = b"Subject: big\r\n\r\n".to_vec();
    let mut i = 0u64;
    while m.len() < 20_000_000 {
        if i.is_multiple_of(5) {
            m.push(b'.');
        }
        m.extend_from_slice(format!("line {i} of a large message\r\n").as_bytes());
        i += 1;
    }
    m
}

struct Fixture {
    addr: String,
    tls_addr: String,
    store: MemoryStore,
    client_tls: Arc<rustls::ClientConfig>,
    shutdown: Shutdown,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Fixture {
    fn new(big: Option<&[u8]>, policy: Policy, options: ServerOptions) -> Fixture {
        let store = MemoryStore::new();
        store.add_message("alice", "u1", SMALL);
        store.add_message("alice", "u2", b"Subject: two\r\n\r\nsecond\r\n");
        if let Some(big) = big {
            store.add_message("alice", "u3", big);
        }
        let backend = Backend::new(
            MemoryAuthenticator::new().with_user("alice", "pw"),
            store.clone(),
            policy,
        );
        let cert = pop3_tls::self_signed(&["localhost".into()]).unwrap();
        let server_tls =
            pop3_tls::server_config(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes()).unwrap();
        let client_tls =
            pop3_tls::client_config(&Trust::CaPem(cert.cert_pem.into_bytes())).unwrap();
        let plain = TcpListener::bind("127.0.0.1:0").unwrap();
        let tls = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = plain.local_addr().unwrap().to_string();
        let tls_addr = tls.local_addr().unwrap().to_string();
        let shutdown = Shutdown::new();
        let mut opts = options;
        opts.tls = Some(server_tls.clone());
        let mut threads = Vec::new();
        for (listener, implicit) in [(plain, None), (tls, Some(server_tls))] {
            let (b, o, s) = (backend.clone(), opts.clone(), shutdown.clone());
            threads.push(thread::spawn(move || {
                serve(listener, b, implicit, o, &s).unwrap()
            }));
        }
        Fixture {
            addr,
            tls_addr,
            store,
            client_tls,
            shutdown,
            threads,
        }
    }

    fn options(&self, mode: &str) -> (String, ClientOptions) {
        let (addr, tls) = match mode {
            "plain" => (self.addr.clone(), TlsMode::Plain),
            "stls" => (
                self.addr.clone(),
                TlsMode::StartTls(self.client_tls.clone()),
            ),
            _ => (
                self.tls_addr.clone(),
                TlsMode::Implicit(self.client_tls.clone()),
            ),
        };
        let mut o = ClientOptions::new(tls);
        o.server_name = Some("localhost".into());
        (addr, o)
    }

    fn connect(&self, mode: &str) -> Pop3Client {
        let (addr, o) = self.options(mode);
        Pop3Client::connect(&addr, o).unwrap()
    }

    fn stop(self) {
        self.shutdown.trigger();
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

fn policy() -> Policy {
    let mut p = Policy::default();
    p.rules.auth_failure_delay = Duration::from_millis(10);
    p
}

fn scram() -> ClientCredentials {
    ClientCredentials::ScramSha256 {
        user: "alice".into(),
        password: Secret::new("pw".into()),
    }
}

#[test]
fn plain_stls_and_implicit_tls_sessions() {
    bounded(|| {
        let big = big_message();
        for mode in ["plain", "stls", "implicit"] {
            let f = Fixture::new(Some(&big), policy(), ServerOptions::default());
            let mut c = f.connect(mode);
            if mode == "plain" {
                assert!(
                    matches!(c.login("alice", "pw"), Err(Error::Server(_))),
                    "no plaintext password without TLS"
                );
                c.auth(scram()).unwrap();
            } else {
                c.auth(ClientCredentials::Plain {
                    authzid: None,
                    user: "alice".into(),
                    password: Secret::new("pw".into()),
                })
                .unwrap();
            }
            assert_eq!(c.stat().unwrap().count, 3);
            let list = c.list().unwrap();
            assert_eq!(list[2].size, big.len() as u64);
            assert_eq!(c.uidl().unwrap()[1].uid.as_str(), "u2");
            let (mut pos, mut chunks, mut largest) = (0usize, 0usize, 0usize);
            let size = c
                .retr_with(n(3), |chunk| {
                    assert_eq!(chunk, &big[pos..pos + chunk.len()], "differs at {pos}");
                    pos += chunk.len();
                    chunks += 1;
                    largest = largest.max(chunk.len());
                    Ok(())
                })
                .unwrap();
            assert_eq!((size as usize, pos), (big.len(), big.len()));
            assert!(
                chunks > 100 && largest <= 64 * 1024,
                "{chunks} chunks, largest {largest}"
            );
            let mut top = Vec::new();
            c.top_to(n(1), 0, &mut top).unwrap();
            assert_eq!(top, b"Subject: one\r\n\r\n");
            let mut one = Vec::new();
            c.retr_to(n(1), &mut one).unwrap();
            assert_eq!(one, SMALL);
            c.dele(n(1)).unwrap();
            c.rset().unwrap();
            c.dele(n(2)).unwrap();
            assert!(matches!(c.list_one(n(2)), Err(Error::Server(_))));
            c.noop().unwrap();
            c.quit().unwrap();
            let mut c = f.connect(mode);
            c.auth(scram()).unwrap();
            let uids: Vec<String> = c
                .uidl()
                .unwrap()
                .iter()
                .map(|u| u.uid.as_str().to_string())
                .collect();
            assert_eq!(
                uids,
                ["u1", "u3"],
                "{mode}: the second session sees exactly the deletion"
            );
            c.quit().unwrap();
            f.stop();
        }
    });
}

#[test]
fn pipelined_fetch_and_delete_many() {
    bounded(|| {
        let f = Fixture::new(None, policy(), ServerOptions::default());
        for i in 0..30 {
            f.store.add_message(
                "alice",
                &format!("x{i}"),
                format!("Subject: {i}\r\n\r\n.{i}\r\n").as_bytes(),
            );
        }
        let mut c = f.connect("implicit");
        c.login("alice", "pw").unwrap();
        let msgs: Vec<MsgNum> = (1..=32).map(n).collect();
        let mut bodies = vec![Vec::new(); 33];
        let mut ends = 0;
        c.fetch_many(&msgs, |m, chunk| {
            match chunk {
                Chunk::Data(d) => bodies[m.get() as usize].extend_from_slice(d),
                Chunk::End => ends += 1,
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(ends, 32);
        assert_eq!(bodies[32], b"Subject: 29\r\n\r\n.29\r\n");
        c.delete_many(&msgs[2..]).unwrap();
        c.quit().unwrap();
        assert_eq!(f.store.uids("alice"), ["u1", "u2"]);
        f.stop();
    });
}

#[test]
fn dropped_connection_and_shutdown_commit_nothing() {
    bounded(|| {
        let mut o = ServerOptions::default();
        o.shutdown_grace = Duration::from_millis(200);
        let f = Fixture::new(None, policy(), o);
        let mut c = f.connect("stls");
        c.apop("alice", "pw").unwrap();
        c.dele(n(1)).unwrap();
        drop(c);
        thread::sleep(Duration::from_millis(200));
        assert_eq!(f.store.message_count("alice"), 2);
        let mut c = f.connect("implicit");
        c.login("alice", "pw").unwrap();
        c.dele(n(1)).unwrap();
        let store = f.store.clone();
        f.stop();
        assert_eq!(store.message_count("alice"), 2);
        assert!(!store.is_locked("alice"));
        assert!(c.noop().is_err());
    });
}

#[test]
fn starttls_required_but_not_offered_and_connection_limit() {
    bounded(|| {
        let mut p = policy();
        p.rules.idle_timeout = Duration::from_millis(300);
        let mut o = ServerOptions::default();
        o.max_connections = 1;
        let f = Fixture::new(None, p.clone(), o);
        // A server without TLS: STLS is not offered, and the client refuses to go on.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Shutdown::new();
        let s2 = stop.clone();
        let backend = Backend::new(MemoryAuthenticator::new(), MemoryStore::new(), p);
        let t = thread::spawn(move || {
            serve(listener, backend, None, ServerOptions::default(), &s2).unwrap()
        });
        let mut o = ClientOptions::new(TlsMode::StartTls(f.client_tls.clone()));
        o.server_name = Some("localhost".into());
        assert!(matches!(
            Pop3Client::connect(&addr, o),
            Err(Error::TlsUnavailable)
        ));
        stop.trigger();
        t.join().unwrap();
        // The limit: one connection at a time. Logged in, it is never evicted to make room:
        // the newcomer is refused.
        let mut c1 = f.connect("plain");
        c1.apop("alice", "pw").unwrap();
        let (addr, opts) = f.options("plain");
        match Pop3Client::connect(&addr, opts) {
            Err(Error::Server(line)) => {
                assert_eq!(line.code(), Some(&pop3_proto::ResponseCode::SysTemp))
            }
            other => panic!("{other:?}"),
        }
        thread::sleep(Duration::from_millis(600));
        assert!(c1.capa().is_err(), "idle session logged out");
        thread::sleep(Duration::from_millis(100));
        f.connect("plain").capa().unwrap();
        f.stop();
    });
}
