//! pop3-futures on a single-threaded executor with nothing `Send`: `serve_local` and the client
//! run together on one `futures_executor::LocalPool`, over streams that cannot leave their
//! thread, with a runtime (spawner and timer) that cannot either.
//!
//! What makes each piece `!Send` is said where it is defined; nothing here asserts it, the
//! types simply hold an `Rc` or a raw-pointer marker, so a `Send` bound anywhere on the path
//! (the accept loop, a session task, the driver, the client) would fail to compile this file.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_executor::{LocalPool, LocalSpawner};
use futures_io::{AsyncRead, AsyncWrite};
use futures_util::future::{Either, join, select};
use futures_util::task::LocalSpawnExt;
use pop3_futures::client::{ClientOptions, Error, Pop3Client, TlsMode};
use pop3_futures::server::{Accepted, Listener, ServerOptions, serve_local};
use pop3_futures::{LocalBoxFuture, LocalRuntime, Timer};
use pop3_proto::MsgNum;
use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
use pop3_server_core::session::{Backend, Policy};

const M1: &[u8] = b"Subject: one\r\n\r\nfirst line\r\n.dot line\r\nlast\r\n";
const M2: &[u8] = b"Subject: two\r\n\r\nsecond\r\n";
/// How long the whole scenario may take.
const LIMIT: Duration = Duration::from_secs(60);

/// A single-threaded runtime: the `LocalPool`'s spawner and async-io's timer.
///
/// `!Send`: `LocalSpawner` holds an `Rc`-like handle to the pool's queue, and the task counter
/// is an `Rc<Cell<_>>`.
#[derive(Clone)]
struct Local {
    spawner: LocalSpawner,
    /// How many tasks were spawned on the pool through [`LocalRuntime::spawn_local`].
    spawned: Rc<Cell<usize>>,
}

/// A sleep on async-io's timer (its reactor runs on a thread of its own, so it fires under any
/// executor).
///
/// `!Send`: the `PhantomData<*const ()>` marker; the driver must not need its sleeps to be
/// `Send` on a local runtime.
struct LocalSleep(smol::Timer, PhantomData<*const ()>);

impl Future for LocalSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl Timer for Local {
    type Sleep = LocalSleep;

    fn sleep_until(&self, deadline: Instant) -> LocalSleep {
        LocalSleep(smol::Timer::at(deadline), PhantomData)
    }
}

impl LocalRuntime for Local {
    fn spawn_local(&self, task: LocalBoxFuture<()>) {
        self.spawned.set(self.spawned.get() + 1);
        self.spawner
            .spawn_local(task)
            .expect("the LocalPool takes the task");
    }
}

/// A TCP stream that must stay on the thread that made it.
///
/// `!Send`: it holds an `Rc<()>`. A session over it can only run as a local task, and the client
/// over it only on this thread.
struct LocalStream {
    tcp: smol::net::TcpStream,
    _not_send: Rc<()>,
}

impl LocalStream {
    fn new(tcp: smol::net::TcpStream) -> Self {
        let _ = tcp.set_nodelay(true);
        LocalStream {
            tcp,
            _not_send: Rc::new(()),
        }
    }
}

impl AsyncRead for LocalStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for LocalStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_close(cx)
    }
}

/// A listener whose connections are [`LocalStream`]s (and which is `!Send` itself: the
/// accepted-connection counter is an `Rc<Cell<_>>`).
struct LocalListener {
    tcp: smol::net::TcpListener,
    accepted: Rc<Cell<usize>>,
}

impl Listener for LocalListener {
    type Stream = LocalStream;

    async fn accept(&self) -> io::Result<Accepted<LocalStream>> {
        let (tcp, peer) = self.tcp.accept().await?;
        self.accepted.set(self.accepted.get() + 1);
        Ok(Accepted::new(LocalStream::new(tcp), Some(peer)))
    }

    fn local_port(&self) -> Option<u16> {
        self.tcp.local_addr().ok().map(|a| a.port())
    }
}

/// Runs `f` on a thread of its own and panics if it takes longer than [`LIMIT`] (the stuck
/// thread is left behind): a hang fails the test instead of hanging it.
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("took longer than {LIMIT:?}"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => panic!("the worker ended without a result"),
        },
    }
}

/// `fut`, or a panic once `deadline` passes (on the local timer).
async fn before<T>(rt: &Local, deadline: Instant, fut: impl Future<Output = T>) -> T {
    match select(std::pin::pin!(fut), rt.sleep_until(deadline)).await {
        Either::Left((v, _)) => v,
        Either::Right(_) => panic!("the LocalPool scenario did not finish in time"),
    }
}

fn n(i: u32) -> MsgNum {
    MsgNum::new(i).expect("message number")
}

/// The client's part: login, LIST, RETR, DELE, QUIT over a `!Send` stream; returns the
/// sizes listed and the body retrieved.
async fn client(addr: SocketAddr, rt: Local) -> Result<(Vec<u64>, Vec<u8>), Error> {
    let tcp = smol::net::TcpStream::connect(addr).await?;
    let mut o = ClientOptions::new(TlsMode::Plain);
    o.server_name = Some("localhost".into());
    o.config.response_timeout = Some(Duration::from_secs(10));
    let mut c = Pop3Client::connect_stream(LocalStream::new(tcp), o, rt).await?;
    c.login("alice", "pw").await?;
    let sizes = c.list().await?.iter().map(|l| l.size).collect();
    let mut body = Vec::new();
    c.retr_with(n(1), |chunk| {
        body.extend_from_slice(chunk);
        Ok(())
    })
    .await?;
    c.dele(n(1)).await?;
    c.quit().await?;
    Ok((sizes, body))
}

/// What a scenario on the pool gave: serve_local's result, the client's, and how many tasks
/// were spawned and connections accepted.
struct Run<R> {
    served: Result<(), String>,
    client: R,
    spawned: usize,
    accepted: usize,
}

/// Runs `serve_local` and the client future `client(addr, runtime, stop)` together on one
/// `LocalPool` (on a thread of its own, bounded in time). The server stops when `stop` is
/// sent or dropped.
fn on_local_pool<R, F, Fut>(
    backend: Arc<Backend<MemoryAuthenticator, MemoryStore>>,
    client: F,
) -> Run<R>
where
    R: Send + 'static,
    F: FnOnce(SocketAddr, Local, futures_channel::oneshot::Sender<()>) -> Fut + Send + 'static,
    Fut: Future<Output = R>,
{
    bounded(move || {
        let mut pool = LocalPool::new();
        let rt = Local {
            spawner: pool.spawner(),
            spawned: Rc::new(Cell::new(0)),
        };
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = std_listener.local_addr().expect("addr");
        let accepted = Rc::new(Cell::new(0));
        let listener = LocalListener {
            tcp: smol::net::TcpListener::try_from(std_listener).expect("listener"),
            accepted: accepted.clone(),
        };
        let mut options = ServerOptions::default();
        options.shutdown_grace = Duration::from_millis(100);
        let (stop, stopped) = futures_channel::oneshot::channel::<()>();
        // A dropped sender ends the server too: whatever the client does, nothing hangs.
        let server = serve_local(listener, backend, None, options, rt.clone(), async {
            let _ = stopped.await;
        });
        let deadline = Instant::now() + LIMIT - Duration::from_secs(5);
        let (served, client) = pool.run_until(before(
            &rt,
            deadline,
            join(server, client(addr, rt.clone(), stop)),
        ));
        Run {
            served: served.map_err(|e| e.to_string()),
            client,
            spawned: rt.spawned.get(),
            accepted: accepted.get(),
        }
    })
}

fn backend(store: &MemoryStore) -> Arc<Backend<MemoryAuthenticator, MemoryStore>> {
    store.add_message("alice", "u1", M1);
    store.add_message("alice", "u2", M2);
    let mut policy = Policy::default();
    policy.rules.plaintext_auth = true; // loopback, no TLS
    Backend::new(
        MemoryAuthenticator::new().with_user("alice", "pw"),
        store.clone(),
        policy,
    )
}

#[test]
fn serve_local_and_the_client_share_a_local_pool_over_not_send_streams() {
    let store = MemoryStore::new();
    let run = on_local_pool(backend(&store), |addr, rt, stop| async move {
        let r = client(addr, rt).await.map_err(|e| e.to_string());
        let _ = stop.send(());
        r
    });
    run.served.expect("serve_local ends Ok after its shutdown");
    let (listed, body) = run.client.expect("the client's session");
    assert_eq!(listed, [M1.len() as u64, M2.len() as u64], "LIST");
    assert_eq!(body, M1, "RETR 1");
    assert_eq!(run.accepted, 1, "connections accepted");
    assert_eq!(
        run.spawned, 1,
        "sessions spawned with LocalRuntime::spawn_local"
    );
    // QUIT committed the DELE, and the session let go of the maildrop.
    assert_eq!(store.uids("alice"), ["u2"]);
    assert!(!store.is_locked("alice"));
}

#[test]
fn serve_local_shutdown_ends_an_open_local_session_without_update() {
    let store = MemoryStore::new();
    let run = on_local_pool(backend(&store), |addr, rt, stop| async move {
        let tcp = smol::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let mut o = ClientOptions::new(TlsMode::Plain);
        o.config.response_timeout = Some(Duration::from_secs(10));
        let mut c = Pop3Client::connect_stream(LocalStream::new(tcp), o, rt.clone())
            .await
            .map_err(|e| e.to_string())?;
        c.login("alice", "pw").await.map_err(|e| e.to_string())?;
        c.dele(n(2)).await.map_err(|e| e.to_string())?;
        // Shut the server down with the session open, past its grace (100 ms).
        let _ = stop.send(());
        rt.sleep_until(Instant::now() + Duration::from_millis(500))
            .await;
        let after = c.noop().await;
        Ok::<_, String>(after.map_err(|e| e.to_string()))
    });
    run.served
        .expect("serve_local ends Ok once the stopped session is over");
    let after = run.client.expect("the client's session");
    assert!(
        after.is_err(),
        "NOOP after the shutdown ended the session: {after:?}"
    );
    assert_eq!(run.spawned, 1);
    // No QUIT: the DELE was never committed, and the maildrop is free.
    assert_eq!(store.uids("alice"), ["u1", "u2"]);
    assert!(!store.is_locked("alice"));
}
