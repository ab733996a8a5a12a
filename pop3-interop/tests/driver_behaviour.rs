//! Every adapter behaves the same, because the one driver (`pop3-driver`) is what runs on each:
//! the same scenario on every client adapter (pop3-tokio, pop3-blocking, pop3-futures on smol
//! and on async-std) and every server adapter gives the same observable result.
//!
//! - `-ERR` to a command is `Error::Server` and the next command on the connection works; the
//!   caller's callback or writer failing is `Error::Output`, and the next command gets its own
//!   reply only;
//! - the server closing mid-body is `Error::Protocol(ClientError::UnexpectedEof)`, a reset is
//!   `Error::Io`, a server that never answers is `Error::Protocol(ClientError::Timeout)` after
//!   the configured reply timeout;
//! - a session reset or closed without `QUIT` deletes nothing and releases the maildrop, and
//!   the single-session entry point (`run_connection`) returns `Err` for a reset on every
//!   adapter and `Ok` for a close;
//! - `fetch_many` and `delete_many` keep at most `pipeline_window` commands in flight when the
//!   server advertises `PIPELINING`, and one otherwise.
//!
//! Client read errors and pipelining are checked against scripted raw servers (`std::net`, bytes
//! written by hand), so the server side cannot hide anything. Everything listens on 127.0.0.1;
//! every socket has a timeout and every scenario is bounded.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pop3_futures::client::{Chunk, ClientOptions, Error, TlsMode};
use pop3_interop::{AsyncStd, ClientKind, ServerKind, Tls, bounded, start_server};
use pop3_proto::client::ClientError;
use pop3_proto::{MsgNum, ScanListing, Stat};
use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
use pop3_server_core::session::{Backend, Policy};

/// How long one scenario may take, all waits included.
const SCENARIO_LIMIT: Duration = Duration::from_secs(60);
/// The timeout of every raw socket (scripted servers and raw clients).
const IO_LIMIT: Duration = Duration::from_secs(10);
/// The reply timeout of clients that must not wait long.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

const M1: &[u8] = b"Subject: one\r\nFrom: a@example.com\r\n\r\nfirst\r\n.dot line\r\n.\r\nlast\r\n";
const M2: &[u8] = b"Subject: two\r\n\r\nsecond \xff\xfe 8-bit\r\n";
const M3: &[u8] = b"Subject: three\r\n\r\nthird\r\n";

fn msg(n: u32) -> MsgNum {
    MsgNum::new(n).expect("message number")
}

// -------------------------------------------------------------------------------------------
// One synchronous face over every client adapter

/// A client of one adapter; each method runs the adapter's own method to completion (the
/// blocking one directly, the async ones on their runtime).
enum AnyClient {
    Tokio(tokio::runtime::Runtime, Box<pop3_tokio::client::Pop3Client>),
    Blocking(Box<pop3_blocking::client::Pop3Client>),
    Smol(Box<pop3_futures::client::Pop3Client<smol::net::TcpStream, pop3_futures::Smol>>),
    AsyncStd(Box<pop3_futures::client::Pop3Client<async_std::net::TcpStream, AsyncStd>>),
}

/// Runs the async method on the adapter's runtime, the blocking one as it is.
macro_rules! call {
    ($client:expr, $method:ident($($arg:expr),*)) => {
        match $client {
            AnyClient::Tokio(rt, c) => rt.block_on(c.$method($($arg),*)),
            AnyClient::Blocking(c) => c.$method($($arg),*),
            AnyClient::Smol(c) => smol::block_on(c.$method($($arg),*)),
            AnyClient::AsyncStd(c) => async_std::task::block_on(c.$method($($arg),*)),
        }
    };
}

impl AnyClient {
    fn connect(kind: ClientKind, addr: SocketAddr, o: ClientOptions) -> Result<AnyClient, Error> {
        let a = addr.to_string();
        Ok(match kind {
            ClientKind::Tokio => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let c = rt.block_on(pop3_tokio::client::Pop3Client::connect(&a, o))?;
                AnyClient::Tokio(rt, Box::new(c))
            }
            ClientKind::Blocking => {
                AnyClient::Blocking(Box::new(pop3_blocking::client::Pop3Client::connect(&a, o)?))
            }
            ClientKind::Smol => AnyClient::Smol(Box::new(smol::block_on(
                pop3_futures::client::Pop3Client::connect(&a, o),
            )?)),
            ClientKind::AsyncStd => {
                let c = async_std::task::block_on(async {
                    let tcp = async_std::net::TcpStream::connect(&a).await?;
                    tcp.set_nodelay(true)?;
                    pop3_futures::client::Pop3Client::connect_stream(tcp, o, AsyncStd).await
                })?;
                AnyClient::AsyncStd(Box::new(c))
            }
        })
    }

    fn login(&mut self, user: &str, password: &str) -> Result<(), Error> {
        call!(self, login(user, password))
    }

    fn stat(&mut self) -> Result<Stat, Error> {
        call!(self, stat())
    }

    fn list(&mut self) -> Result<Vec<ScanListing>, Error> {
        call!(self, list())
    }

    /// `RETR n` through the chunk callback: the result, and every octet the callback got.
    fn retr(&mut self, n: u32) -> (Result<u64, Error>, Vec<u8>) {
        let mut body = Vec::new();
        let r = call!(
            self,
            retr_with(msg(n), |chunk: &[u8]| {
                body.extend_from_slice(chunk);
                Ok(())
            })
        );
        (r, body)
    }

    /// `RETR n` through a callback that fails at the first chunk.
    fn retr_failing(&mut self, n: u32) -> Result<u64, Error> {
        call!(
            self,
            retr_with(msg(n), |_: &[u8]| Err(io::Error::other("disk full")))
        )
    }

    /// `RETR n` into the adapter's kind of writer (std, tokio, futures-io), which fails.
    fn retr_to_failing(&mut self, n: u32) -> Result<u64, Error> {
        call!(self, retr_to(msg(n), &mut FailingWriter))
    }

    fn dele(&mut self, n: u32) -> Result<(), Error> {
        call!(self, dele(msg(n)))
    }

    fn noop(&mut self) -> Result<(), Error> {
        call!(self, noop())
    }

    fn quit(&mut self) -> Result<(), Error> {
        call!(self, quit())
    }

    /// `fetch_many` of `msgs`: the result, each message's octets, and the messages whose
    /// `Chunk::End` came, in order.
    fn fetch_many(&mut self, msgs: &[u32]) -> (Result<(), Error>, Vec<Vec<u8>>, Vec<u32>) {
        let nums: Vec<MsgNum> = msgs.iter().map(|n| msg(*n)).collect();
        let mut bodies = vec![Vec::new(); msgs.len()];
        let mut ended = Vec::new();
        let r = call!(
            self,
            fetch_many(&nums, |n: MsgNum, chunk: Chunk<'_>| {
                let at = msgs
                    .iter()
                    .position(|m| *m == u32::from(n))
                    .ok_or_else(|| io::Error::other(format!("unexpected message {n}")))?;
                match chunk {
                    Chunk::Data(d) => bodies[at].extend_from_slice(d),
                    Chunk::End => ended.push(u32::from(n)),
                }
                Ok(())
            })
        );
        (r, bodies, ended)
    }

    /// `fetch_many` of `msgs` whose callback fails at the first chunk of `fail_at`: the
    /// result and the messages whose `Chunk::End` came.
    fn fetch_many_failing(&mut self, msgs: &[u32], fail_at: u32) -> (Result<(), Error>, Vec<u32>) {
        let nums: Vec<MsgNum> = msgs.iter().map(|n| msg(*n)).collect();
        let mut ended = Vec::new();
        let r = call!(
            self,
            fetch_many(&nums, |n: MsgNum, chunk: Chunk<'_>| {
                match chunk {
                    Chunk::Data(_) if u32::from(n) == fail_at => Err(io::Error::other("disk full")),
                    Chunk::Data(_) => Ok(()),
                    Chunk::End => {
                        ended.push(u32::from(n));
                        Ok(())
                    }
                }
            })
        );
        (r, ended)
    }

    fn delete_many(&mut self, msgs: &[u32]) -> Result<(), Error> {
        let nums: Vec<MsgNum> = msgs.iter().map(|n| msg(*n)).collect();
        call!(self, delete_many(&nums))
    }

    fn pipeline_window(&self) -> usize {
        match self {
            AnyClient::Tokio(_, c) => c.pipeline_window(),
            AnyClient::Blocking(c) => c.pipeline_window(),
            AnyClient::Smol(c) => c.pipeline_window(),
            AnyClient::AsyncStd(c) => c.pipeline_window(),
        }
    }
}

/// A writer of every kind (std, tokio, futures-io) whose every write fails: a full disk.
struct FailingWriter;

impl Write for FailingWriter {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::other("disk full"))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl futures_io::AsyncWrite for FailingWriter {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::task::Poll::Ready(Err(io::Error::other("disk full")))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for FailingWriter {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::task::Poll::Ready(Err(io::Error::other("disk full")))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Plain-text options, with `response_timeout` as the reply timeout.
fn options(response_timeout: Duration) -> ClientOptions {
    let mut o = ClientOptions::new(TlsMode::Plain);
    o.server_name = Some("localhost".into());
    o.config.response_timeout = Some(response_timeout);
    o.connect_timeout = IO_LIMIT;
    o
}

/// An error as the scenarios compare it across adapters: the variant and what identifies it.
fn describe(e: &Error) -> String {
    match e {
        Error::Server(line) => format!(
            "Server(-ERR {}{})",
            line.code()
                .map(|c| format!("[{}] ", String::from_utf8_lossy(c.as_bytes())))
                .unwrap_or_default(),
            String::from_utf8_lossy(line.text().as_bytes())
        ),
        Error::Protocol(p) => format!("Protocol({p:?})"),
        Error::Io(io) => format!("Io({:?})", io.kind()),
        Error::Output(e) => format!("Output({e})"),
        other => format!("other: {other:?}"),
    }
}

/// Asserts that `r` is the server's `-ERR` and describes it.
fn server_err<T: std::fmt::Debug>(what: &str, r: Result<T, Error>) -> String {
    match r {
        Err(Error::Server(ref line)) if !line.is_ok() => {
            format!("{what}: {}", describe(r.as_ref().unwrap_err()))
        }
        other => panic!("{what}: expected Err(Error::Server(-ERR ..)), got {other:?}"),
    }
}

/// Runs `scenario` with a client of every adapter (each bounded in time), and asserts that
/// they all observed the same; returns that.
fn on_every_client(
    what: &str,
    scenario: impl Fn(ClientKind) -> Vec<String> + Send + Sync + 'static,
) -> Vec<String> {
    let scenario = Arc::new(scenario);
    let mut seen: Vec<(ClientKind, Vec<String>)> = Vec::new();
    for kind in ClientKind::ALL {
        let s = scenario.clone();
        let t = bounded(
            &format!("{what}, {kind:?} client"),
            SCENARIO_LIMIT,
            move || s(kind),
        );
        seen.push((kind, t));
    }
    let (first_kind, first) = seen[0].clone();
    for (kind, t) in &seen[1..] {
        assert_eq!(
            t, &first,
            "{what}: the {kind:?} client observed something else than the {first_kind:?} client"
        );
    }
    eprintln!(
        "{what}: every client adapter observed:\n  {}",
        first.join("\n  ")
    );
    first
}

// -------------------------------------------------------------------------------------------
// 1. -ERR leaves the connection usable

fn err_backend(store: &MemoryStore) -> Arc<Backend<MemoryAuthenticator, MemoryStore>> {
    store.add_message("alice", "u1", M1);
    store.add_message("alice", "u2", M2);
    store.add_message("alice", "u3", M3);
    let mut policy = Policy::default();
    policy.rules.plaintext_auth = true;
    policy.rules.auth_failure_delay = Duration::from_millis(10);
    Backend::new(
        MemoryAuthenticator::new().with_user("alice", "pw"),
        store.clone(),
        policy,
    )
}

/// A wrong password, RETR of a message that does not exist, DELE twice, RETR of a deleted
/// message and a pipelined batch meeting a deleted message: each is `Error::Server`, and each
/// time the next command works; QUIT then commits exactly the one deletion.
fn err_scenario(c: &mut AnyClient) -> Vec<String> {
    let mut t = Vec::new();
    t.push(server_err("PASS wrong", c.login("alice", "wrong")));
    c.login("alice", "pw")
        .expect("login after a wrong password");
    let total = (M1.len() + M2.len() + M3.len()) as u64;
    let s = c.stat().expect("STAT after a wrong password");
    assert_eq!((s.count, s.size), (3, total));
    t.push(format!("STAT: {} {}", s.count, s.size));

    let (r, body) = c.retr(9);
    t.push(server_err("RETR 9", r));
    assert!(
        body.is_empty(),
        "a failed RETR delivered {} octets",
        body.len()
    );
    let (r, body) = c.retr(1);
    assert_eq!(r.expect("RETR 1 after -ERR"), M1.len() as u64);
    assert_eq!(body, M1, "RETR 1 after -ERR");
    t.push(format!("RETR 1: {} octets", body.len()));

    c.dele(2).expect("DELE 2");
    t.push(server_err("DELE 2 again", c.dele(2)));
    let (r, _) = c.retr(2);
    t.push(server_err("RETR 2 (deleted)", r));
    let sizes: Vec<(u32, u64)> = c
        .list()
        .expect("LIST after -ERR")
        .iter()
        .map(|l| (u32::from(l.msg), l.size))
        .collect();
    assert_eq!(sizes, [(1, M1.len() as u64), (3, M3.len() as u64)]);
    t.push(format!("LIST: {sizes:?}"));

    // A batch meeting the deleted message: the error, after the replies in flight are read.
    let (r, bodies, ended) = c.fetch_many(&[1, 2, 3]);
    t.push(server_err("fetch_many 1 2 3", r));
    assert_eq!(ended, [1], "fetch_many ended {ended:?}");
    assert_eq!(bodies[0], M1);
    t.push(format!("fetch_many ended {ended:?}"));

    let s = c.stat().expect("STAT after a failed batch");
    assert_eq!((s.count, s.size), (2, (M1.len() + M3.len()) as u64));
    t.push(format!("STAT: {} {}", s.count, s.size));
    let (r, body) = c.retr(3);
    assert_eq!(r.expect("RETR 3 after a failed batch"), M3.len() as u64);
    assert_eq!(body, M3);
    c.noop().expect("NOOP");
    c.quit().expect("QUIT commits");
    t.push("QUIT: ok".into());
    t
}

#[test]
fn err_replies_are_server_errors_and_the_connection_goes_on_with_every_adapter() {
    let tls = Arc::new(Tls::new());
    let mut transcripts = Vec::new();
    for server in ServerKind::ALL {
        let tls_server = tls.clone();
        let t = on_every_client(&format!("-ERR, {server:?} server"), move |kind| {
            let store = MemoryStore::new();
            let running = start_server(server, err_backend(&store), &tls_server);
            let mut c = AnyClient::connect(kind, running.plain, options(IO_LIMIT))
                .unwrap_or_else(|e| panic!("{kind:?} connect: {e}"));
            let t = err_scenario(&mut c);
            drop(c);
            assert_eq!(
                store.uids("alice"),
                ["u1", "u3"],
                "{kind:?} client x {server:?} server: QUIT committed something else"
            );
            running.stop();
            t
        });
        transcripts.push((server, t));
    }
    // The server adapters answered alike too: the same core behind the same driver.
    let (_, first) = &transcripts[0];
    for (server, t) in &transcripts[1..] {
        assert_eq!(t, first, "the {server:?} server answered differently");
    }
}

/// The caller's output failing (a callback, a writer, a batch's callback) in the middle of a
/// large body: `Error::Output`, and the next command gets its own reply only, never the rest
/// of the failed one.
fn output_scenario(c: &mut AnyClient, big: &[u8]) -> Vec<String> {
    let mut t = Vec::new();
    c.login("alice", "pw").expect("login");
    let r = c.retr_failing(1);
    assert!(
        matches!(r, Err(Error::Output(_))),
        "RETR 1, callback fails: {r:?}"
    );
    t.push(format!(
        "RETR 1, callback fails: {}",
        describe(&r.unwrap_err())
    ));
    let (r, body) = c.retr(2);
    assert_eq!(r.expect("RETR 2 after a failed callback"), M2.len() as u64);
    assert_eq!(body, M2, "RETR 2 after a failed callback got other octets");
    t.push(format!("RETR 2: {} octets", body.len()));

    let r = c.retr_to_failing(1);
    assert!(
        matches!(r, Err(Error::Output(_))),
        "RETR 1, writer fails: {r:?}"
    );
    t.push(format!(
        "RETR 1, writer fails: {}",
        describe(&r.unwrap_err())
    ));
    let (r, body) = c.retr(3);
    assert_eq!(r.expect("RETR 3 after a failed writer"), M3.len() as u64);
    assert_eq!(body, M3, "RETR 3 after a failed writer got other octets");
    t.push(format!("RETR 3: {} octets", body.len()));

    // The batch's callback fails in message 1 (large) while 2 and 3 are in flight.
    let (r, ended) = c.fetch_many_failing(&[1, 2, 3], 1);
    assert!(matches!(r, Err(Error::Output(_))), "fetch_many: {r:?}");
    assert!(ended.is_empty(), "fetch_many ended {ended:?}");
    t.push(format!(
        "fetch_many 1 2 3, callback fails in 1: {}",
        describe(&r.unwrap_err())
    ));
    let s = c.stat().expect("STAT after a failed batch");
    let total = (big.len() + M2.len() + M3.len()) as u64;
    assert_eq!((s.count, s.size), (3, total));
    t.push(format!("STAT: {} {}", s.count, s.size));
    let (r, bodies, ended) = c.fetch_many(&[2, 3]);
    r.expect("fetch_many 2 3 after a failed batch");
    assert_eq!(ended, [2, 3]);
    assert_eq!((&bodies[0][..], &bodies[1][..]), (M2, M3));
    t.push("fetch_many 2 3: both whole".into());
    c.quit().expect("QUIT");
    t
}

#[test]
fn a_failing_callback_or_writer_is_an_output_error_and_the_next_command_is_clean_on_every_client() {
    let tls = Arc::new(Tls::new());
    // Larger than a read: the rest of its body is still to come when the output fails.
    let big = Arc::new({
        let mut m = b"Subject: big\r\n\r\n".to_vec();
        while m.len() < 1 << 20 {
            m.extend_from_slice(b"a line of the message whose writer fails\r\n");
        }
        m
    });
    on_every_client("failing output", move |kind| {
        let store = MemoryStore::new();
        store.add_message("alice", "u1", &big);
        store.add_message("alice", "u2", M2);
        store.add_message("alice", "u3", M3);
        let mut policy = Policy::default();
        policy.rules.plaintext_auth = true;
        let backend = Backend::new(
            MemoryAuthenticator::new().with_user("alice", "pw"),
            store.clone(),
            policy,
        );
        let running = start_server(ServerKind::Tokio, backend, &tls);
        let mut c = AnyClient::connect(kind, running.plain, options(IO_LIMIT))
            .unwrap_or_else(|e| panic!("{kind:?} connect: {e}"));
        let t = output_scenario(&mut c, &big);
        drop(c);
        assert_eq!(store.message_count("alice"), 3);
        running.stop();
        t
    });
}

// -------------------------------------------------------------------------------------------
// 2. Client read errors, against scripted raw servers

/// A raw connection: lines in, bytes out, every wait bounded.
struct Raw {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Raw {
    fn new(s: TcpStream) -> Raw {
        s.set_read_timeout(Some(IO_LIMIT)).expect("read timeout");
        s.set_write_timeout(Some(IO_LIMIT)).expect("write timeout");
        let _ = s.set_nodelay(true);
        Raw {
            r: BufReader::new(s.try_clone().expect("clone")),
            w: s,
        }
    }

    /// The next line, without its line end (empty at EOF).
    fn line(&mut self) -> String {
        let mut l = Vec::new();
        self.r.read_until(b'\n', &mut l).expect("read a line");
        String::from_utf8_lossy(&l).trim_end().to_string()
    }

    fn send(&mut self, b: &[u8]) {
        self.w.write_all(b).expect("raw write");
        self.w.flush().expect("raw flush");
    }

    /// Reads the next line and asserts it is `want`.
    fn expect(&mut self, want: &str) {
        let l = self.line();
        assert_eq!(l, want, "the scripted peer expected {want:?}");
    }

    /// Sends `cmd` (a raw client) and returns the status line of the reply.
    fn cmd(&mut self, cmd: &str) -> String {
        self.send(format!("{cmd}\r\n").as_bytes());
        self.line()
    }

    /// Reads until the peer closes (or the read timeout passes): a server that never answers.
    fn wait_for_close(&mut self) {
        let mut sink = Vec::new();
        let _ = self.r.read_to_end(&mut sink);
    }

    /// Ends the connection with a reset (RST), not a close (FIN): `SO_LINGER` 0, then drop.
    fn reset(self) {
        socket2::SockRef::from(&self.w)
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER 0");
        drop(self);
    }
}

/// A server for one connection: `script` runs on its own thread with the accepted socket.
fn raw_server<T: Send + 'static>(
    script: impl FnOnce(Raw) -> T + Send + 'static,
) -> (SocketAddr, JoinHandle<T>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    l.set_nonblocking(true).expect("nonblocking");
    let h = std::thread::spawn(move || {
        let start = Instant::now();
        let s = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(start.elapsed() < IO_LIMIT, "no client connected");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        s.set_nonblocking(false).expect("blocking");
        script(Raw::new(s))
    });
    (addr, h)
}

/// The scripted server's side of the greeting, CAPA, USER alice and PASS pw.
fn serve_login(raw: &mut Raw, pipelining: bool) {
    raw.send(b"+OK scripted server ready\r\n");
    raw.expect("CAPA");
    if pipelining {
        raw.send(b"+OK capabilities\r\nUSER\r\nPIPELINING\r\n.\r\n");
    } else {
        raw.send(b"+OK capabilities\r\nUSER\r\n.\r\n");
    }
    raw.expect("USER alice");
    raw.send(b"+OK\r\n");
    raw.expect("PASS pw");
    raw.send(b"+OK maildrop ready\r\n");
}

/// The first part of a body announced whole: the server goes away after it.
const PARTIAL: &[u8] =
    b"+OK 200 octets\r\nSubject: cut\r\n\r\nthe first line of the body\r\nthe seco";

/// How a scripted server ends the connection in the middle of a body.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// An orderly close (FIN): everything the client sent was read.
    Close,
    /// A reset (RST).
    Reset,
}

/// A client logs in and asks RETR 1; the server sends part of the body and ends the
/// connection. Returns what the client saw, checking the variant for `ending`.
fn mid_body(kind: ClientKind, ending: Ending) -> Vec<String> {
    let (addr, server) = raw_server(move |mut raw| {
        serve_login(&mut raw, false);
        raw.expect("RETR 1");
        raw.send(PARTIAL);
        // Let the client take the partial body first: the end comes in the middle of it.
        std::thread::sleep(Duration::from_millis(100));
        match ending {
            Ending::Close => drop(raw),
            Ending::Reset => raw.reset(),
        }
    });
    let mut c = AnyClient::connect(kind, addr, options(IO_LIMIT)).expect("connect");
    c.login("alice", "pw").expect("login");
    let (r, body) = c.retr(1);
    let got = match (&r, ending) {
        (Err(e @ Error::Protocol(ClientError::UnexpectedEof)), Ending::Close) => describe(e),
        (Err(e @ Error::Io(io)), Ending::Reset) if io.kind() == ErrorKind::ConnectionReset => {
            describe(e)
        }
        _ => panic!("{kind:?} client, server {ending:?} mid-body: got {r:?}"),
    };
    // Never a short message passed off as whole: what arrived is a strict prefix.
    assert!(
        body.len() < 200,
        "{kind:?}: {} octets delivered",
        body.len()
    );
    let full = b"Subject: cut\r\n\r\nthe first line of the body\r\nthe seco";
    assert!(full.starts_with(&body), "{kind:?}: delivered {body:?}");
    // The session is over: the next command fails at once, it does not wait.
    let start = Instant::now();
    let next = c.noop();
    assert!(
        next.is_err(),
        "{kind:?}: NOOP after a broken connection: {next:?}"
    );
    assert!(start.elapsed() < REPLY_TIMEOUT, "{kind:?}: NOOP waited");
    drop(c);
    server.join().expect("scripted server");
    vec![
        format!("RETR 1: {got}"),
        format!("then NOOP: {}", describe(&next.unwrap_err())),
    ]
}

/// A message with 8-bit headers, and the 7-bit notice a server such as Courier gives instead
/// to a client that did not say `UTF8` (RFC 6856 §2.1, §4).
const EIGHT_BIT: &[u8] = "Subject: Grüße aus Köln\r\n\r\nÄpfel\r\n".as_bytes();
const SURROGATE: &[u8] = b"Subject: Cannot display Unicode content\r\n\r\nreplaced\r\n";

/// A server that lists `UTF8` (with `utf8_listed`) and serves the 8-bit message whole only
/// to a client that sent `UTF8` first; returns whether the client sent it.
fn utf8_scenario(kind: ClientKind, utf8_listed: bool, client_utf8: bool) -> (bool, Vec<u8>) {
    let (addr, server) = raw_server(move |mut raw| {
        raw.send(b"+OK scripted server ready\r\n");
        raw.expect("CAPA");
        if utf8_listed {
            raw.send(b"+OK capabilities\r\nUSER\r\nUTF8 USER\r\n.\r\n");
        } else {
            raw.send(b"+OK capabilities\r\nUSER\r\n.\r\n");
        }
        let mut line = raw.line();
        let sent_utf8 = line == "UTF8";
        if sent_utf8 {
            raw.send(b"+OK UTF8 enabled\r\n");
            line = raw.line();
        }
        assert_eq!(line, "USER alice", "{kind:?}: after CAPA");
        raw.send(b"+OK\r\n");
        raw.expect("PASS pw");
        raw.send(b"+OK maildrop ready\r\n");
        raw.expect("RETR 1");
        let body = if sent_utf8 { EIGHT_BIT } else { SURROGATE };
        raw.send(format!("+OK {} octets\r\n", body.len()).as_bytes());
        raw.send(body);
        raw.send(b".\r\n");
        raw.expect("QUIT");
        raw.send(b"+OK bye\r\n");
        sent_utf8
    });
    let mut o = options(IO_LIMIT);
    o.utf8 = client_utf8;
    let mut c = AnyClient::connect(kind, addr, o).expect("connect");
    c.login("alice", "pw").expect("login");
    let (r, body) = c.retr(1);
    r.expect("RETR 1");
    c.quit().expect("QUIT");
    (server.join().expect("scripted server"), body)
}

#[test]
fn utf8_is_sent_when_listed_so_8bit_mail_arrives_whole_on_every_client() {
    on_every_client("UTF8 when CAPA lists it", |kind| {
        let (sent, body) = utf8_scenario(kind, true, true);
        assert!(sent, "{kind:?}: UTF8 not sent although CAPA listed it");
        assert_eq!(body, EIGHT_BIT, "{kind:?}: the message was replaced");
        // Not listed: never sent (the server would take it as an unknown command).
        let (sent, _) = utf8_scenario(kind, false, true);
        assert!(
            !sent,
            "{kind:?}: UTF8 sent to a server that does not list it"
        );
        // Turned off: the caller gets what such a server gives, the surrogate.
        let (sent, body) = utf8_scenario(kind, true, false);
        assert!(!sent && body == SURROGATE, "{kind:?}: utf8 = false");
        vec!["ok".into()]
    });
}

#[test]
fn server_closing_mid_body_is_unexpected_eof_on_every_client() {
    let t = on_every_client("server closes mid-body", |kind| {
        mid_body(kind, Ending::Close)
    });
    assert_eq!(t[0], "RETR 1: Protocol(UnexpectedEof)");
    assert_eq!(t[1], "then NOOP: Protocol(Closed)");
}

#[test]
fn server_resetting_mid_body_is_an_io_error_on_every_client() {
    let t = on_every_client("server resets mid-body", |kind| {
        mid_body(kind, Ending::Reset)
    });
    assert_eq!(t[0], "RETR 1: Io(ConnectionReset)");
    // The machine was told the connection is gone: no command waits behind the lost reply.
    assert_eq!(t[1], "then NOOP: Protocol(Closed)");
}

/// Asserts the result is the reply timeout, and that it came after about `REPLY_TIMEOUT`.
fn timed_out<T: std::fmt::Debug>(what: &str, r: Result<T, Error>, took: Duration) -> String {
    assert!(
        matches!(r, Err(Error::Protocol(ClientError::Timeout))),
        "{what}: expected Err(Error::Protocol(ClientError::Timeout)), got {r:?}"
    );
    assert!(
        took >= REPLY_TIMEOUT.mul_f32(0.9) && took < REPLY_TIMEOUT * 5,
        "{what}: timed out after {took:?}, the timeout is {REPLY_TIMEOUT:?}"
    );
    format!("{what}: {}", describe(&r.unwrap_err()))
}

#[test]
fn a_server_that_never_greets_times_out_on_every_client() {
    let t = on_every_client("no greeting", |kind| {
        let (addr, server) = raw_server(|mut raw| raw.wait_for_close());
        let start = Instant::now();
        let r = AnyClient::connect(kind, addr, options(REPLY_TIMEOUT)).map(|_| ());
        let t = timed_out(&format!("{kind:?} connect"), r, start.elapsed());
        server.join().expect("scripted server");
        vec![t.split_once(": ").map(|(_, e)| e.to_string()).unwrap_or(t)]
    });
    assert_eq!(t, ["Protocol(Timeout)"]);
}

#[test]
fn a_server_that_never_answers_times_out_on_every_client() {
    let t = on_every_client("no answer to STAT", |kind| {
        let (addr, server) = raw_server(|mut raw| {
            serve_login(&mut raw, false);
            raw.expect("STAT");
            raw.wait_for_close();
        });
        let mut c = AnyClient::connect(kind, addr, options(REPLY_TIMEOUT)).expect("connect");
        c.login("alice", "pw").expect("login");
        let start = Instant::now();
        let r = c.stat();
        let t = timed_out("STAT", r, start.elapsed());
        drop(c);
        server.join().expect("scripted server");
        vec![t]
    });
    assert_eq!(t, ["STAT: Protocol(Timeout)"]);
}

// -------------------------------------------------------------------------------------------
// 3. Server read errors: no deletion, the maildrop released, run_connection's result

fn server_backend(
    store: &MemoryStore,
    big: Option<&[u8]>,
) -> Arc<Backend<MemoryAuthenticator, MemoryStore>> {
    store.add_message("alice", "u1", M1);
    store.add_message("alice", "u2", M2);
    store.add_message("alice", "u3", M3);
    if let Some(big) = big {
        store.add_message("alice", "u4", big);
    }
    let mut policy = Policy::default();
    policy.rules.plaintext_auth = true;
    policy.rules.auth_failure_delay = Duration::from_millis(10);
    Backend::new(
        MemoryAuthenticator::new().with_user("alice", "pw"),
        store.clone(),
        policy,
    )
}

/// A raw client: greeting, USER alice, PASS pw; the PASS reply.
fn raw_login(addr: SocketAddr) -> (Raw, String) {
    let mut raw = Raw::new(TcpStream::connect(addr).expect("connect"));
    let greeting = raw.line();
    assert!(greeting.starts_with("+OK"), "greeting {greeting:?}");
    let user = raw.cmd("USER alice");
    assert!(user.starts_with("+OK"), "USER: {user}");
    let pass = raw.cmd("PASS pw");
    (raw, pass)
}

/// Logs in, marks message 1 deleted, and ends the connection without QUIT.
fn dele_then(addr: SocketAddr, ending: Ending) {
    let (mut raw, pass) = raw_login(addr);
    assert!(pass.starts_with("+OK"), "PASS: {pass}");
    let dele = raw.cmd("DELE 1");
    assert!(dele.starts_with("+OK"), "DELE 1: {dele}");
    match ending {
        Ending::Close => drop(raw),
        Ending::Reset => raw.reset(),
    }
}

/// Waits (bounded) until the maildrop of alice is unlocked.
fn wait_unlocked(store: &MemoryStore, what: &str) {
    let start = Instant::now();
    while store.is_locked("alice") {
        assert!(
            start.elapsed() < IO_LIMIT,
            "{what}: the maildrop is still locked after {IO_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A new session logs in (retrying while the maildrop is `[IN-USE]`, bounded) and sees all
/// three messages; it quits.
fn new_session_sees_everything(addr: SocketAddr, what: &str) {
    let start = Instant::now();
    let mut raw = loop {
        let (mut raw, pass) = raw_login(addr);
        if pass.starts_with("+OK") {
            break raw;
        }
        assert!(
            pass.contains("[IN-USE]") && start.elapsed() < IO_LIMIT,
            "{what}: a new session cannot log in: {pass}"
        );
        let _ = raw.cmd("QUIT");
        std::thread::sleep(Duration::from_millis(20));
    };
    let stat = raw.cmd("STAT");
    let total = M1.len() + M2.len() + M3.len();
    assert_eq!(
        stat,
        format!("+OK 3 {total}"),
        "{what}: STAT of the new session"
    );
    assert!(raw.cmd("QUIT").starts_with("+OK"), "{what}: QUIT");
}

#[test]
fn a_session_reset_or_closed_without_quit_deletes_nothing_on_every_server() {
    let tls = Tls::new();
    for server in ServerKind::ALL {
        for ending in [Ending::Reset, Ending::Close] {
            let what = format!("{server:?} server, client {ending:?} after DELE 1");
            let store = MemoryStore::new();
            let running = start_server(server, server_backend(&store, None), &tls);
            let addr = running.plain;
            let (s, w) = (store.clone(), what.clone());
            bounded(&what, SCENARIO_LIMIT, move || {
                dele_then(addr, ending);
                wait_unlocked(&s, &w);
                assert_eq!(s.uids("alice"), ["u1", "u2", "u3"], "{w}");
                new_session_sees_everything(addr, &w);
                wait_unlocked(&s, &w);
            });
            assert_eq!(store.message_count("alice"), 3, "{what}");
            running.stop();
        }
    }
}

/// The server adapters' single-session entry points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Adapter {
    Tokio,
    Blocking,
    Smol,
    AsyncStd,
}

const ADAPTERS: [Adapter; 4] = [
    Adapter::Tokio,
    Adapter::Blocking,
    Adapter::Smol,
    Adapter::AsyncStd,
];

/// Runs the adapter's `run_connection` over an accepted socket.
fn run_connection(
    adapter: Adapter,
    tcp: TcpStream,
    backend: Arc<Backend<MemoryAuthenticator, MemoryStore>>,
) -> io::Result<()> {
    match adapter {
        Adapter::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async move {
                tcp.set_nonblocking(true)?;
                let tcp = tokio::net::TcpStream::from_std(tcp)?;
                pop3_tokio::server::run_connection(tcp, backend, None).await
            }),
        Adapter::Blocking => pop3_blocking::server::run_connection(tcp, backend, None),
        Adapter::Smol => smol::block_on(async move {
            let tcp = smol::net::TcpStream::try_from(tcp)?;
            let peer = tcp.peer_addr().ok();
            pop3_futures::server::run_connection(tcp, backend, None, None, peer, pop3_futures::Smol)
                .await
        }),
        Adapter::AsyncStd => async_std::task::block_on(async move {
            let tcp = async_std::net::TcpStream::from(tcp);
            let peer = tcp.peer_addr().ok();
            pop3_futures::server::run_connection(tcp, backend, None, None, peer, AsyncStd).await
        }),
    }
}

/// How the raw client ends its session with `run_connection`.
#[derive(Debug, Clone, Copy)]
enum ClientEnd {
    /// DELE 1, then a reset while the server waits for a command.
    ResetIdle,
    /// DELE 1, then a close (FIN) without QUIT.
    CloseIdle,
    /// DELE 1, RETR of a large message, a little of it read, then a reset while the server
    /// writes.
    ResetMidBody,
}

/// One session with `run_connection` of `adapter`: its result, and the store afterwards.
fn one_session(adapter: Adapter, end: ClientEnd, big: &Arc<Vec<u8>>) -> (io::Result<()>, usize) {
    let store = MemoryStore::new();
    let backend = server_backend(&store, Some(big));
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let (tcp, _) = l.accept().expect("accept");
        let _ = tx.send(run_connection(adapter, tcp, backend));
    });
    let (mut raw, pass) = raw_login(addr);
    assert!(pass.starts_with("+OK"), "{adapter:?}: PASS {pass}");
    assert!(raw.cmd("DELE 1").starts_with("+OK"), "{adapter:?}: DELE 1");
    match end {
        ClientEnd::ResetIdle => raw.reset(),
        ClientEnd::CloseIdle => drop(raw),
        ClientEnd::ResetMidBody => {
            let ok = raw.cmd("RETR 4");
            assert!(ok.starts_with("+OK"), "{adapter:?}: RETR 4 {ok}");
            let mut some = vec![0u8; 256 * 1024];
            raw.r.read_exact(&mut some).expect("the start of the body");
            raw.reset();
        }
    }
    let result = rx
        .recv_timeout(IO_LIMIT)
        .unwrap_or_else(|_| panic!("{adapter:?} run_connection did not return after {end:?}"));
    server.join().expect("server thread");
    // run_connection has returned: the session is gone, and its maildrop with it.
    assert!(
        !store.is_locked("alice"),
        "{adapter:?}, {end:?}: the maildrop is still locked"
    );
    assert_eq!(
        store.uids("alice"),
        ["u1", "u2", "u3", "u4"],
        "{adapter:?}, {end:?}: a session without QUIT deleted something"
    );
    (result, store.message_count("alice"))
}

#[test]
fn run_connection_returns_err_for_a_reset_and_ok_for_a_close_on_every_adapter() {
    let big = Arc::new({
        let mut m = b"Subject: big\r\n\r\n".to_vec();
        while m.len() < 16 << 20 {
            m.extend_from_slice(b"a line of a large message that the client stops reading\r\n");
        }
        m
    });
    for end in [
        ClientEnd::ResetIdle,
        ClientEnd::CloseIdle,
        ClientEnd::ResetMidBody,
    ] {
        let mut seen = Vec::new();
        for adapter in ADAPTERS {
            let b = big.clone();
            let what = format!("{adapter:?} run_connection, {end:?}");
            let (result, count) =
                bounded(&what, SCENARIO_LIMIT, move || one_session(adapter, end, &b));
            assert_eq!(count, 4, "{what}");
            let got = match (&result, end) {
                (Ok(()), ClientEnd::CloseIdle) => "Ok(())".to_string(),
                (Err(e), ClientEnd::ResetIdle) if e.kind() == ErrorKind::ConnectionReset => {
                    format!("Err({:?})", e.kind())
                }
                // A write into a reset connection: ECONNRESET, or EPIPE once that was taken.
                (Err(e), ClientEnd::ResetMidBody)
                    if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) =>
                {
                    "Err(reset)".to_string()
                }
                _ => panic!("{what}: got {result:?}"),
            };
            seen.push((adapter, got));
        }
        eprintln!("{end:?}: {seen:?}");
        let first = seen[0].1.clone();
        assert!(
            seen.iter().all(|(_, g)| *g == first),
            "{end:?}: the adapters disagree: {seen:?}"
        );
    }
}

// -------------------------------------------------------------------------------------------
// 4. The pipelining window

/// How long the scripted server waits for more commands before it answers one.
const QUIET: Duration = Duration::from_millis(60);
const BATCH: u32 = 20;
const WINDOW: usize = 4;

fn batch_message(i: u32) -> Vec<u8> {
    format!("Subject: message {i}\r\n\r\nbody of message {i}\r\n").into_bytes()
}

/// What the scripted server saw of the batches.
#[derive(Debug, Default)]
struct Seen {
    /// For each RETR answered: how many commands were outstanding (sent, not answered) once
    /// the client had stopped sending.
    retr_outstanding: Vec<usize>,
    /// The same for each DELE.
    dele_outstanding: Vec<usize>,
    /// The RETRs and DELEs, in the order they came.
    commands: Vec<String>,
}

/// A server advertising PIPELINING (or not) with `BATCH` messages. It answers one command at a
/// time, and only once the client has sent nothing for `QUIET`: so it sees every command the
/// client has in flight at once.
fn pipelining_script(mut raw: Raw, advertise: bool) -> Seen {
    serve_login(&mut raw, advertise);
    raw.w.set_read_timeout(Some(QUIET)).expect("read timeout");
    let mut seen = Seen::default();
    let mut queue: VecDeque<String> = VecDeque::new();
    let mut input = Vec::new();
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < SCENARIO_LIMIT,
            "pipelining: the client never quit"
        );
        let mut chunk = [0u8; 4096];
        match raw.r.read(&mut chunk) {
            Ok(0) => panic!("pipelining: the client closed without QUIT"),
            Ok(n) => {
                input.extend_from_slice(&chunk[..n]);
                while let Some(p) = input.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = input.drain(..=p).collect();
                    queue.push_back(String::from_utf8_lossy(&line).trim_end().to_string());
                }
                continue;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("pipelining: read: {e}"),
        }
        // The client is quiet: everything it has in flight is in the queue.
        let Some(head) = queue.pop_front() else {
            continue;
        };
        let outstanding = queue.len() + 1;
        let (verb, arg) = head.split_once(' ').unwrap_or((&head, ""));
        match verb {
            "RETR" => {
                seen.retr_outstanding.push(outstanding);
                seen.commands.push(head.clone());
                let n: u32 = arg.parse().expect("RETR n");
                let m = batch_message(n);
                let mut reply = format!("+OK {} octets\r\n", m.len()).into_bytes();
                reply.extend_from_slice(&m);
                reply.extend_from_slice(b".\r\n");
                raw.send(&reply);
            }
            "DELE" => {
                seen.dele_outstanding.push(outstanding);
                seen.commands.push(head.clone());
                raw.send(format!("+OK message {arg} deleted\r\n").as_bytes());
            }
            "QUIT" => {
                assert_eq!(outstanding, 1, "pipelining: commands after QUIT");
                raw.send(b"+OK bye\r\n");
                return seen;
            }
            _ => raw.send(b"-ERR not in this script\r\n"),
        }
    }
}

/// `fetch_many` and `delete_many` over `BATCH` messages with `pipeline_window` = `WINDOW`
/// against the scripted server; returns what it saw.
fn batches(kind: ClientKind, advertise: bool) -> Seen {
    let (addr, server) = raw_server(move |raw| pipelining_script(raw, advertise));
    let mut o = options(IO_LIMIT);
    o.config.pipeline_window = WINDOW;
    let mut c = AnyClient::connect(kind, addr, o).expect("connect");
    c.login("alice", "pw").expect("login");
    assert_eq!(
        c.pipeline_window(),
        if advertise { WINDOW } else { 1 },
        "{kind:?}: pipeline_window"
    );
    let all: Vec<u32> = (1..=BATCH).collect();
    let (r, bodies, ended) = c.fetch_many(&all);
    r.unwrap_or_else(|e| panic!("{kind:?}: fetch_many: {e}"));
    assert_eq!(ended, all, "{kind:?}: messages ended");
    for (i, b) in bodies.iter().enumerate() {
        assert_eq!(
            *b,
            batch_message(i as u32 + 1),
            "{kind:?}: message {}",
            i + 1
        );
    }
    c.delete_many(&all)
        .unwrap_or_else(|e| panic!("{kind:?}: delete_many: {e}"));
    c.quit().expect("QUIT");
    drop(c);
    let seen = server.join().expect("scripted server");
    let expected: Vec<String> = all
        .iter()
        .map(|n| format!("RETR {n}"))
        .chain(all.iter().map(|n| format!("DELE {n}")))
        .collect();
    assert_eq!(seen.commands, expected, "{kind:?}: the commands, in order");
    seen
}

#[test]
fn fetch_many_and_delete_many_keep_the_pipelining_window_on_every_client() {
    on_every_client("pipelining window", |kind| {
        let seen = batches(kind, true);
        let (retr, dele) = (&seen.retr_outstanding, &seen.dele_outstanding);
        let max_retr = retr.iter().copied().max().unwrap_or(0);
        let max_dele = dele.iter().copied().max().unwrap_or(0);
        eprintln!("{kind:?}: RETRs outstanding {retr:?}, DELEs outstanding {dele:?}");
        assert!(
            max_retr <= WINDOW,
            "{kind:?}: {max_retr} RETRs in flight, window {WINDOW}"
        );
        assert!(max_retr > 1, "{kind:?}: RETRs never pipelined: {retr:?}");
        assert!(
            max_dele <= WINDOW,
            "{kind:?}: {max_dele} DELEs in flight, window {WINDOW}"
        );
        assert!(max_dele > 1, "{kind:?}: DELEs never pipelined: {dele:?}");
        // What the adapters must agree on: the window was never exceeded and was used.
        vec![
            format!("RETR: at most {WINDOW} in flight, more than one at once"),
            format!("DELE: at most {WINDOW} in flight, more than one at once"),
        ]
    });
}

#[test]
fn batches_send_one_command_at_a_time_without_pipelining_on_every_client() {
    on_every_client("no PIPELINING", |kind| {
        let seen = batches(kind, false);
        assert!(
            seen.retr_outstanding.iter().all(|n| *n == 1),
            "{kind:?}: RETRs outstanding {:?} without PIPELINING",
            seen.retr_outstanding
        );
        assert!(
            seen.dele_outstanding.iter().all(|n| *n == 1),
            "{kind:?}: DELEs outstanding {:?} without PIPELINING",
            seen.dele_outstanding
        );
        vec![
            format!("RETR outstanding: {:?}", seen.retr_outstanding),
            format!("DELE outstanding: {:?}", seen.dele_outstanding),
        ]
    });
}
