//! The futures client against the futures server, on smol and on async-std, over plain text,
//! STLS and implicit TLS.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{Either, select};
use pop3_futures::client::{Chunk, ClientOptions, Error, Pop3Client, TlsMode};
use pop3_futures::server::{Accepted, Listener, ServerOptions, serve};
use pop3_futures::{BoxFuture, Runtime, Smol, Timer};
use pop3_proto::sasl::ClientCredentials;
use pop3_proto::{MsgNum, Secret};
use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
use pop3_server_core::session::{Backend, Policy};
use pop3_tls::Trust;

const SMALL: &[u8] = b"Subject: one\r\n\r\nfirst line\r\n.dot line\r\nlast\r\n";
const SECOND: &[u8] = b"Subject: two\r\n\r\nsecond\r\n";

/// async-std as a [`Runtime`] (a dev-dependency only: async-std is discontinued).
#[derive(Debug, Clone, Copy)]
struct AsyncStd;

impl Timer for AsyncStd {
    type Sleep = BoxFuture<()>;

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<()> {
        Box::pin(async_std::task::sleep(
            deadline.saturating_duration_since(Instant::now()),
        ))
    }
}

impl Runtime for AsyncStd {
    fn spawn(&self, task: BoxFuture<()>) {
        async_std::task::spawn(task);
    }
}

struct AsyncStdListener(async_std::net::TcpListener);

impl Listener for AsyncStdListener {
    type Stream = async_std::net::TcpStream;

    async fn accept(&self) -> std::io::Result<Accepted<async_std::net::TcpStream>> {
        let (s, peer) = self.0.accept().await?;
        Ok(Accepted::new(s, Some(peer)))
    }
}

/// Runs a future on `R` with a time limit.
async fn bounded<T>(rt: &impl Runtime, f: impl Future<Output = T>) -> T {
    match select(
        std::pin::pin!(f),
        std::pin::pin!(rt.sleep_until(Instant::now() + Duration::from_secs(120))),
    )
    .await
    {
        Either::Left((v, _)) => v,
        Either::Right(_) => panic!("test took too long"),
    }
}

fn n(i: u32) -> MsgNum {
    MsgNum::new(i).unwrap()
}

fn big_message() -> Vec<u8> {
    let mut m = b"Subject: big\r\n\r\n".to_vec();
    let mut i = 0u64;
    while m.len() < 20_000_000 {
        if i.is_multiple_of(3) {
            m.push(b'.');
        }
        m.extend_from_slice(format!("line {i} of a large message\r\n").as_bytes());
        i += 1;
    }
    m
}

struct Setup {
    store: MemoryStore,
    backend: Arc<Backend<MemoryAuthenticator, MemoryStore>>,
    server_tls: Arc<rustls::ServerConfig>,
    client_tls: Arc<rustls::ClientConfig>,
}

fn setup(big: Option<&[u8]>, policy: Policy) -> Setup {
    let store = MemoryStore::new();
    store.add_message("alice", "u1", SMALL);
    store.add_message("alice", "u2", SECOND);
    if let Some(big) = big {
        store.add_message("alice", "u3", big);
    }
    let backend = Backend::new(
        MemoryAuthenticator::new().with_user("alice", "pw"),
        store.clone(),
        policy,
    );
    let cert = pop3_tls::self_signed(&["localhost".into()]).unwrap();
    Setup {
        store,
        backend,
        server_tls: pop3_tls::server_config(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes())
            .unwrap(),
        client_tls: pop3_tls::client_config(&Trust::CaPem(cert.cert_pem.into_bytes())).unwrap(),
    }
}

fn options(s: &Setup, mode: &str) -> ClientOptions {
    let tls = match mode {
        "plain" => TlsMode::Plain,
        "stls" => TlsMode::StartTls(s.client_tls.clone()),
        _ => TlsMode::Implicit(s.client_tls.clone()),
    };
    let mut o = ClientOptions::new(tls);
    o.server_name = Some("localhost".into());
    o
}

fn policy() -> Policy {
    let mut p = Policy::default();
    p.rules.auth_failure_delay = Duration::from_millis(10);
    p
}

/// The whole scenario against a connected client.
async fn scenario<St, R>(
    mut c: Pop3Client<St, R>,
    mode: &str,
    big: Option<&[u8]>,
    store: &MemoryStore,
) -> Result<(), Error>
where
    St: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send,
    R: Runtime,
{
    if mode == "implicit" {
        c.auth(ClientCredentials::Plain {
            authzid: None,
            user: "alice".into(),
            password: Secret::new("pw".into()),
        })
        .await?;
    } else {
        if mode == "plain" {
            // USER/PASS is refused in plain text (policy default), before the password.
            assert!(matches!(
                c.login("alice", "pw").await,
                Err(Error::Server(_))
            ));
        }
        c.auth(ClientCredentials::ScramSha256 {
            user: "alice".into(),
            password: Secret::new("pw".into()),
        })
        .await?;
    }
    let count = 2 + u64::from(big.is_some());
    assert_eq!(c.stat().await?.count, count);
    let list = c.list().await?;
    assert_eq!(list.len(), count as usize);
    assert_eq!(list[0].size, SMALL.len() as u64);
    assert_eq!(c.list_one(n(2)).await?.size, SECOND.len() as u64);
    assert_eq!(c.uidl().await?[0].uid.as_str(), "u1");
    assert_eq!(c.uidl_one(n(2)).await?.uid.as_str(), "u2");
    assert!(matches!(c.list_one(n(9)).await, Err(Error::Server(_))));
    if let Some(big) = big {
        assert_eq!(list[2].size, big.len() as u64);
        let (mut pos, mut chunks, mut largest) = (0usize, 0usize, 0usize);
        c.retr_with(n(3), |chunk| {
            assert_eq!(chunk, &big[pos..pos + chunk.len()], "differs at {pos}");
            pos += chunk.len();
            chunks += 1;
            largest = largest.max(chunk.len());
            Ok(())
        })
        .await?;
        assert_eq!(pos, big.len());
        assert!(
            chunks > 100 && largest <= 64 * 1024,
            "{chunks} chunks, largest {largest}"
        );
    }
    let mut whole: Vec<u8> = Vec::new();
    assert_eq!(c.retr_to(n(1), &mut whole).await?, SMALL.len() as u64);
    assert_eq!(whole, SMALL);
    let mut head: Vec<u8> = Vec::new();
    c.top_to(n(1), 1, &mut head).await?;
    assert_eq!(head, b"Subject: one\r\n\r\nfirst line\r\n");
    let mut top = Vec::new();
    c.top_with(n(1), 0, |d| {
        top.extend_from_slice(d);
        Ok(())
    })
    .await?;
    assert_eq!(top, b"Subject: one\r\n\r\n");
    c.dele(n(1)).await?;
    c.rset().await?;
    c.dele(n(2)).await?;
    c.noop().await?;
    let mut got = Vec::new();
    c.fetch_many(&[n(1)], |_, chunk| {
        if let Chunk::Data(d) = chunk {
            got.extend_from_slice(d);
        }
        Ok(())
    })
    .await?;
    assert_eq!(got, SMALL);
    c.quit().await?;
    let left: &[&str] = if big.is_some() {
        &["u1", "u3"]
    } else {
        &["u1"]
    };
    assert_eq!(store.uids("alice"), left);
    Ok(())
}

#[test]
fn smol_plain_stls_and_implicit_tls() {
    let big = big_message();
    smol::block_on(bounded(&Smol, async {
        for mode in ["plain", "stls", "implicit"] {
            // The 20 MB RETR runs once per runtime (debug builds are slow).
            let big = (mode == "implicit").then_some(big.as_slice());
            let s = setup(big, policy());
            let plain = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let tls = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let (pa, ta) = (plain.local_addr().unwrap(), tls.local_addr().unwrap());
            let mut o = ServerOptions::default();
            o.tls = Some(s.server_tls.clone());
            let (stop_tx, stop_rx) = futures_channel::oneshot::channel::<()>();
            let server = smol::spawn(serve(
                plain,
                s.backend.clone(),
                None,
                o.clone(),
                Smol,
                async {
                    let _ = stop_rx.await;
                },
            ));
            let implicit = smol::spawn(serve(
                tls,
                s.backend.clone(),
                Some(s.server_tls.clone()),
                o,
                Smol,
                std::future::pending(),
            ));
            let addr = if mode == "implicit" { ta } else { pa };
            let c = Pop3Client::connect(&addr.to_string(), options(&s, mode))
                .await
                .unwrap();
            scenario(c, mode, big, &s.store).await.unwrap();
            // A second session sees exactly the deletion.
            let mut c = Pop3Client::connect(&ta.to_string(), options(&s, "implicit"))
                .await
                .unwrap();
            c.login("alice", "pw").await.unwrap();
            let uids: Vec<String> = c
                .uidl()
                .await
                .unwrap()
                .iter()
                .map(|u| u.uid.as_str().to_string())
                .collect();
            let expected: &[&str] = if big.is_some() {
                &["u1", "u3"]
            } else {
                &["u1"]
            };
            assert_eq!(uids, expected);
            c.quit().await.unwrap();
            let _ = stop_tx.send(());
            server.await.unwrap();
            drop(implicit);
        }
    }));
}

#[test]
fn async_std_plain_stls_and_implicit_tls() {
    let big = big_message();
    async_std::task::block_on(bounded(&AsyncStd, async {
        for mode in ["plain", "stls", "implicit"] {
            // The 20 MB RETR runs once per runtime (debug builds are slow).
            let big = (mode == "implicit").then_some(big.as_slice());
            let s = setup(big, policy());
            let listener = async_std::net::TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let mut o = ServerOptions::default();
            o.tls = Some(s.server_tls.clone());
            let implicit = (mode == "implicit").then(|| s.server_tls.clone());
            let backend = s.backend.clone();
            let (stop_tx, stop_rx) = futures_channel::oneshot::channel::<()>();
            let server = async_std::task::spawn(async move {
                serve(
                    AsyncStdListener(listener),
                    backend,
                    implicit,
                    o,
                    AsyncStd,
                    async {
                        let _ = stop_rx.await;
                    },
                )
                .await
            });
            let tcp = async_std::net::TcpStream::connect(&addr).await.unwrap();
            let c = Pop3Client::connect_stream(tcp, options(&s, mode), AsyncStd)
                .await
                .unwrap();
            scenario(c, mode, big, &s.store).await.unwrap();
            let _ = stop_tx.send(());
            server.await.unwrap();
        }
    }));
}

/// A dropped connection and a graceful shutdown commit nothing; STLS required but not
/// offered stops before credentials. `connect` opens a TCP stream on the runtime `rt`.
async fn commit_nothing<R, L, St>(
    rt: R,
    listener: L,
    addr: String,
    connect: impl AsyncFn(&str) -> St,
) where
    R: Runtime,
    L: Listener<Stream: Send>,
    St: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send,
{
    let s = setup(None, policy());
    let mut o = ServerOptions::default();
    o.shutdown_grace = Duration::from_millis(200);
    // No TLS configured: STLS is not offered, and a client requiring it stops.
    let (stop_tx, stop_rx) = futures_channel::oneshot::channel::<()>();
    let (done_tx, done_rx) = futures_channel::oneshot::channel::<std::io::Result<()>>();
    let server = serve(listener, s.backend.clone(), None, o, rt.clone(), async {
        let _ = stop_rx.await;
    });
    let server = async move {
        let _ = done_tx.send(server.await);
    };
    let client = async {
        let r =
            Pop3Client::connect_stream(connect(&addr).await, options(&s, "stls"), rt.clone()).await;
        assert!(matches!(r, Err(Error::TlsUnavailable)), "{:?}", r.err());
        let mut c =
            Pop3Client::connect_stream(connect(&addr).await, options(&s, "plain"), rt.clone())
                .await
                .unwrap();
        c.apop("alice", "pw").await.unwrap();
        c.dele(n(1)).await.unwrap();
        drop(c);
        rt.sleep_until(Instant::now() + Duration::from_millis(100))
            .await;
        assert_eq!(
            s.store.message_count("alice"),
            2,
            "a dropped connection commits nothing"
        );
        assert!(!s.store.is_locked("alice"));
        let mut c =
            Pop3Client::connect_stream(connect(&addr).await, options(&s, "plain"), rt.clone())
                .await
                .unwrap();
        c.apop("alice", "pw").await.unwrap();
        c.dele(n(1)).await.unwrap();
        let _ = stop_tx.send(());
        done_rx.await.unwrap().unwrap();
        assert_eq!(
            s.store.message_count("alice"),
            2,
            "shutdown commits nothing"
        );
        assert!(!s.store.is_locked("alice"));
        assert!(c.noop().await.is_err());
    };
    futures_util::future::join(server, client).await;
}

#[test]
fn smol_shutdown_and_dropped_connection_commit_nothing_and_stls_is_required() {
    smol::block_on(bounded(&Smol, async {
        let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        commit_nothing(Smol, listener, addr, async |a: &str| {
            smol::net::TcpStream::connect(a).await.unwrap()
        })
        .await;
    }));
}

#[test]
fn async_std_shutdown_and_dropped_connection_commit_nothing_and_stls_is_required() {
    async_std::task::block_on(bounded(&AsyncStd, async {
        let listener = async_std::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        commit_nothing(
            AsyncStd,
            AsyncStdListener(listener),
            addr,
            async |a: &str| async_std::net::TcpStream::connect(a).await.unwrap(),
        )
        .await;
    }));
}

#[test]
fn silent_server_times_out_on_both_runtimes() {
    async fn run<R: Runtime>(
        rt: R,
        tcp: impl futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send,
    ) {
        let mut o = ClientOptions::new(TlsMode::Plain);
        o.config.response_timeout = Some(Duration::from_millis(200));
        let started = Instant::now();
        let r = Pop3Client::connect_stream(tcp, o, rt).await;
        assert!(
            matches!(
                r,
                Err(Error::Protocol(pop3_proto::client::ClientError::Timeout))
            ),
            "{:?}",
            r.err()
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    // The listener accepts (the kernel does) and never answers: no greeting arrives.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    smol::block_on(bounded(&Smol, async {
        let tcp = smol::net::TcpStream::connect(addr).await.unwrap();
        run(Smol, tcp).await;
    }));
    async_std::task::block_on(bounded(&AsyncStd, async {
        let tcp = async_std::net::TcpStream::connect(addr).await.unwrap();
        run(AsyncStd, tcp).await;
    }));
}
