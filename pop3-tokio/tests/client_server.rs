//! The tokio client against the tokio server on 127.0.0.1, plain, STLS and implicit TLS.

use std::sync::Arc;
use std::time::Duration;

use pop3_proto::sasl::ClientCredentials;
use pop3_proto::{MsgNum, Secret};
use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
use pop3_server_core::session::{Backend, Policy};
use pop3_tls::Trust;
use pop3_tokio::client::{ClientOptions, Error, Pop3Client, TlsMode};
use pop3_tokio::server::{ServerOptions, serve};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const LIMIT: Duration = Duration::from_secs(120);

fn n(i: u32) -> MsgNum {
    MsgNum::new(i).unwrap()
}

/// A 20 MB message with dot lines, made once.
fn big_message() -> Arc<Vec<u8>> {
    let mut m = b"Subject: big\r\n\r\n".to_vec();
    let mut i = 0u64;
    while m.len() < 20_000_000 {
        if i.is_multiple_of(7) {
            m.extend_from_slice(b".");
        }
        m.extend_from_slice(format!("line {i} of a large message, with some text\r\n").as_bytes());
        i += 1;
    }
    Arc::new(m)
}

struct Fixture {
    addr: String,
    tls_addr: String,
    store: MemoryStore,
    client_tls: Arc<rustls::ClientConfig>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

const SMALL: &[u8] = b"Subject: one\r\n\r\nfirst line\r\n.dot line\r\nlast\r\n";

async fn fixture(big: Option<Arc<Vec<u8>>>, policy: Policy, options: ServerOptions) -> Fixture {
    let store = MemoryStore::new();
    store.add_message("alice", "u1", SMALL);
    store.add_message("alice", "u2", b"Subject: two\r\n\r\nsecond\r\n");
    if let Some(big) = big {
        store.add_message("alice", "u3", &big);
    }
    let auth = MemoryAuthenticator::new().with_user("alice", "pw");
    let backend = Backend::new(auth, store.clone(), policy);
    let cert = pop3_tls::self_signed(&["localhost".into()]).unwrap();
    let server_tls =
        pop3_tls::server_config(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes()).unwrap();
    let client_tls = pop3_tls::client_config(&Trust::CaPem(cert.cert_pem.into_bytes())).unwrap();
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = plain.local_addr().unwrap().to_string();
    let tls_addr = tls.local_addr().unwrap().to_string();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let mut opts = options;
    opts.tls = Some(server_tls.clone());
    let b2 = backend.clone();
    let o2 = opts.clone();
    let task = tokio::spawn(async move {
        let (tx2, rx2) = oneshot::channel::<()>();
        let implicit = tokio::spawn(serve(tls, b2, Some(server_tls), o2, async {
            let _ = rx2.await;
        }));
        let _ = serve(plain, backend, None, opts, async {
            let _ = stop_rx.await;
        })
        .await;
        let _ = tx2.send(());
        let _ = implicit.await;
    });
    Fixture {
        addr,
        tls_addr,
        store,
        client_tls,
        stop: Some(stop_tx),
        task,
    }
}

fn policy() -> Policy {
    let mut p = Policy::default();
    p.rules.auth_failure_delay = Duration::from_millis(10);
    p
}

impl Fixture {
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

    async fn connect(&self, mode: &str) -> Pop3Client {
        let (addr, o) = self.options(mode);
        Pop3Client::connect(&addr, o).await.unwrap()
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(LIMIT, self.task).await;
    }
}

/// RETR of the 20 MB message: byte-exact, and streamed in chunks bounded by the read buffer.
async fn retr_big(c: &mut Pop3Client, big: &Arc<Vec<u8>>) {
    let mut got = 0usize;
    let mut largest = 0usize;
    let mut chunks = 0usize;
    let mut expect = big.iter();
    let size = c
        .retr_with(n(3), |chunk| {
            chunks += 1;
            largest = largest.max(chunk.len());
            for b in chunk {
                assert_eq!(Some(b), expect.next(), "byte {got} differs");
                got += 1;
            }
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(size as usize, big.len());
    assert_eq!(got, big.len());
    assert!(chunks > 100, "streamed in {chunks} chunks");
    assert!(largest <= 64 * 1024, "largest chunk {largest}");
}

async fn full_session(f: &Fixture, mode: &str, big: Option<&Arc<Vec<u8>>>) {
    let mut c = f.connect(mode).await;
    if mode == "plain" {
        assert!(matches!(
            c.login("alice", "pw").await,
            Err(Error::Server(_))
        ));
        // Plaintext passwords are refused without TLS by default: SCRAM works.
        c.auth(ClientCredentials::ScramSha256 {
            user: "alice".into(),
            password: Secret::new("pw".into()),
        })
        .await
        .unwrap();
    } else {
        c.auth(ClientCredentials::Plain {
            authzid: None,
            user: "alice".into(),
            password: Secret::new("pw".into()),
        })
        .await
        .unwrap();
    }
    let stat = c.stat().await.unwrap();
    assert_eq!(stat.count, 2 + u64::from(big.is_some()));
    let list = c.list().await.unwrap();
    assert_eq!(list.len(), stat.count as usize);
    assert_eq!(list[0].size, SMALL.len() as u64);
    let uidl = c.uidl().await.unwrap();
    assert_eq!(uidl[0].uid.as_str(), "u1");
    if let Some(big) = big {
        assert_eq!(list[2].size, big.len() as u64);
        retr_big(&mut c, big).await;
    }
    let mut top = Vec::new();
    c.top_to(n(1), 0, &mut top).await.unwrap();
    assert_eq!(top, b"Subject: one\r\n\r\n");
    let mut one = Vec::new();
    c.retr_to(n(1), &mut one).await.unwrap();
    assert_eq!(one, SMALL);
    c.dele(n(1)).await.unwrap();
    c.dele(n(2)).await.unwrap();
    c.rset().await.unwrap();
    c.dele(n(2)).await.unwrap();
    assert!(matches!(
        c.retr_to(n(2), &mut Vec::new()).await,
        Err(Error::Server(_))
    ));
    c.noop().await.unwrap();
    c.quit().await.unwrap();
    let left: &[&str] = if big.is_some() {
        &["u1", "u3"]
    } else {
        &["u1"]
    };
    assert_eq!(f.store.uids("alice"), left);
    // A second session sees exactly the deletion.
    let mut c = f.connect(mode).await;
    c.auth(ClientCredentials::ScramSha256 {
        user: "alice".into(),
        password: Secret::new("pw".into()),
    })
    .await
    .unwrap();
    let uidl = c.uidl().await.unwrap();
    assert_eq!(
        uidl.iter()
            .map(|u| u.uid.as_str().to_string())
            .collect::<Vec<_>>(),
        left
    );
    c.quit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_stls_and_implicit_tls_sessions() {
    let big = big_message();
    tokio::time::timeout(LIMIT, async {
        // The 20 MB message over plain text and implicit TLS only: debug builds are slow.
        for (mode, big) in [
            ("plain", Some(&big)),
            ("stls", None),
            ("implicit", Some(&big)),
        ] {
            let f = fixture(big.cloned(), policy(), ServerOptions::default()).await;
            full_session(&f, mode, big).await;
            f.stop().await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn pipelined_fetch_and_delete_many() {
    tokio::time::timeout(LIMIT, async {
        let f = fixture(None, policy(), ServerOptions::default()).await;
        for i in 0..50 {
            f.store.add_message(
                "alice",
                &format!("x{i}"),
                format!("Subject: {i}\r\n\r\nbody {i}\r\n.\r\n").as_bytes(),
            );
        }
        let mut c = f.connect("implicit").await;
        assert!(c.machine().pipelining());
        c.login("alice", "pw").await.unwrap();
        let msgs: Vec<MsgNum> = (1..=52).map(n).collect();
        let mut bodies = vec![Vec::new(); 53];
        let mut ends = 0;
        c.fetch_many(&msgs, |m, chunk| {
            match chunk {
                pop3_tokio::client::Chunk::Data(d) => bodies[m.get() as usize].extend_from_slice(d),
                pop3_tokio::client::Chunk::End => ends += 1,
            }
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(ends, 52);
        assert_eq!(bodies[1], SMALL);
        assert_eq!(bodies[52], b"Subject: 49\r\n\r\nbody 49\r\n.\r\n");
        c.delete_many(&msgs[..40]).await.unwrap();
        c.quit().await.unwrap();
        assert_eq!(f.store.message_count("alice"), 12);
        f.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn apop_and_user_pass_over_tls() {
    tokio::time::timeout(LIMIT, async {
        let f = fixture(None, policy(), ServerOptions::default()).await;
        let mut c = f.connect("stls").await;
        c.apop("alice", "pw").await.unwrap();
        c.quit().await.unwrap();
        let mut c = f.connect("implicit").await;
        assert!(matches!(
            c.login("alice", "wrong").await,
            Err(Error::Server(_))
        ));
        c.login("alice", "pw").await.unwrap();
        c.quit().await.unwrap();
        f.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn dropped_connection_and_shutdown_commit_nothing() {
    tokio::time::timeout(LIMIT, async {
        let mut o = ServerOptions::default();
        o.shutdown_grace = Duration::from_millis(200);
        let f = fixture(None, policy(), o).await;
        let mut c = f.connect("implicit").await;
        c.login("alice", "pw").await.unwrap();
        c.dele(n(1)).await.unwrap();
        drop(c);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(f.store.message_count("alice"), 2);
        let mut c = f.connect("implicit").await;
        c.login("alice", "pw").await.unwrap();
        c.dele(n(1)).await.unwrap();
        let store = f.store.clone();
        f.stop().await;
        assert_eq!(
            store.message_count("alice"),
            2,
            "shutdown without QUIT commits nothing"
        );
        assert!(!store.is_locked("alice"));
        assert!(c.noop().await.is_err(), "the session was ended");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn starttls_required_but_not_offered_fails_before_credentials() {
    tokio::time::timeout(LIMIT, async {
        let f = fixture(None, policy(), ServerOptions::default()).await;
        // A plain server without a TLS configuration: no STLS in CAPA.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let backend = Backend::new(MemoryAuthenticator::new(), MemoryStore::new(), policy());
        let t = tokio::spawn(serve(
            listener,
            backend,
            None,
            ServerOptions::default(),
            std::future::pending(),
        ));
        let mut o = ClientOptions::new(TlsMode::StartTls(f.client_tls.clone()));
        o.server_name = Some("localhost".into());
        assert!(matches!(
            Pop3Client::connect(&addr, o).await,
            Err(Error::TlsUnavailable)
        ));
        t.abort();
        f.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn connection_limit_and_idle_timeout() {
    tokio::time::timeout(LIMIT, async {
        let mut p = policy();
        p.rules.idle_timeout = Duration::from_millis(300);
        let mut o = ServerOptions::default();
        o.max_connections = 1;
        let f = fixture(None, p, o).await;
        // Logged in, it is never evicted to make room: the newcomer is refused.
        let mut c1 = f.connect("plain").await;
        c1.apop("alice", "pw").await.unwrap();
        let (addr, opts) = f.options("plain");
        match Pop3Client::connect(&addr, opts).await {
            Err(Error::Server(line)) => {
                assert_eq!(line.code(), Some(&pop3_proto::ResponseCode::SysTemp))
            }
            other => panic!("{other:?}"),
        }
        // The idle session is logged out, which frees its place.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(
            c1.capa().await.is_err(),
            "idle session closed by the server"
        );
        let mut c = f.connect("plain").await;
        c.capa().await.unwrap();
        f.stop().await;
    })
    .await
    .unwrap();
}

/// The client's futures are `Send`: a session can run in `tokio::spawn` on a multi-threaded
/// runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sessions_run_in_spawned_tasks() {
    let f = fixture(None, policy(), ServerOptions::default()).await;
    let (addr, opts) = f.options("implicit");
    let task = tokio::spawn(async move {
        let mut c = Pop3Client::connect(&addr, opts).await?;
        c.login("alice", "pw").await?;
        let mut body = Vec::new();
        c.retr_with(n(1), |d| {
            body.extend_from_slice(d);
            Ok(())
        })
        .await?;
        let stat = c.stat().await?;
        c.quit().await?;
        Ok::<_, Error>((stat.count, body))
    });
    let (count, body) = tokio::time::timeout(LIMIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(count, 2);
    assert_eq!(body, SMALL);
    f.stop().await;
}
