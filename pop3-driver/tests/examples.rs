//! The hand-written adapters of `examples/` ("bring your own runtime"), on 127.0.0.1: the mio
//! server (driving `Session` directly) and the std client (driving the client machine
//! directly) against each other, against curl and Python's poplib, against the workspace's
//! blocking server, many at once, and as the processes `cargo run --example` starts.
//!
//! The examples' code is compiled into this test (`#[path]` modules) so that the tests call
//! their `serve` and `fetch`; one test also builds and runs the example binaries themselves.
//! curl and Python are needed (`.ci/install-peers.sh`); `POP3_SKIP_INTEROP=1` skips the tests
//! that use them.

#[allow(dead_code)]
#[path = "../examples/mio_server.rs"]
mod mio_server;
#[allow(dead_code)]
#[path = "../examples/std_client.rs"]
mod std_client;

use std::env::consts::EXE_SUFFIX;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pop3_proto::Stat;
use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
use pop3_server_core::session::{Backend, Policy};

/// The longest any one client, process or wait may take.
const LIMIT: Duration = Duration::from_secs(120);

type Shared = Arc<Backend<MemoryAuthenticator, MemoryStore>>;

/// Messages that make a naive implementation fail: dot lines, 8-bit octets and NUL, an empty
/// body, one large enough to be streamed in many batches under backpressure.
fn messages() -> Vec<Vec<u8>> {
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    for i in 0..40_000 {
        if i % 7 == 0 {
            big.push(b'.');
        }
        big.extend_from_slice(format!("line {i} of the large message, caf\u{e9}\r\n").as_bytes());
    }
    vec![
        b"Subject: dots\r\n\r\nhello\r\n.leading dot\r\n.\r\n..two\r\n...\r\nend\r\n".to_vec(),
        b"Subject: 8bit\r\n\r\ncaf\xe9 \xff\xfe\x80\x00 raw\r\n".to_vec(),
        b"Subject: empty body\r\n\r\n".to_vec(),
        big,
    ]
}

/// A message larger than every socket buffer between the server and a client that does not
/// read (no dot lines: on the wire it is itself, then `.`).
fn huge() -> Vec<u8> {
    let line = b"0123456789abcdefghijklmnopqrstuvwxyz 0123456789\r\n";
    [&b"Subject: huge\r\n\r\n"[..], &line.repeat(400_000)].concat()
}

/// Each user gets `msgs`; every password is `pw`.
fn backend(users: &[&str], msgs: &[Vec<u8>]) -> (Shared, MemoryStore) {
    backend_with(users, msgs, Policy::default())
}

fn backend_with(users: &[&str], msgs: &[Vec<u8>], mut policy: Policy) -> (Shared, MemoryStore) {
    let store = MemoryStore::new();
    let mut auth = MemoryAuthenticator::new();
    for user in users {
        auth.add_user(user, "pw");
        for (i, m) in msgs.iter().enumerate() {
            store.add_message(user, &format!("{user}-{i}"), m);
        }
    }
    policy.rules.plaintext_auth = true;
    (Backend::new(auth, store.clone(), policy), store)
}

/// The mio example's server on a thread, on a fresh port.
fn start_mio(backend: Shared) -> SocketAddr {
    let listener = mio::net::TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || mio_server::serve(listener, backend));
    addr
}

/// The std client example: every message of `user`, and what STAT said.
fn fetch(addr: SocketAddr, user: &str, delete: bool) -> (Stat, Vec<Vec<u8>>) {
    let mut got: Vec<Vec<u8>> = Vec::new();
    let stat = std_client::fetch(&addr.to_string(), user, "pw", delete, |n, chunk| {
        let i = n as usize - 1;
        if got.len() <= i {
            got.resize(i + 1, Vec::new());
        }
        got[i].extend_from_slice(chunk);
        Ok(())
    })
    .unwrap_or_else(|e| panic!("std client as {user}: {e}"));
    got.resize(stat.count as usize, Vec::new());
    (stat, got)
}

fn total(msgs: &[Vec<u8>]) -> u64 {
    msgs.iter().map(|m| m.len() as u64).sum()
}

fn peer_available(program: &str) -> bool {
    if std::env::var("POP3_SKIP_INTEROP").as_deref() == Ok("1") {
        eprintln!("skipped: POP3_SKIP_INTEROP=1 (no test against {program})");
        return false;
    }
    true
}

/// Runs a started process to its end within `limit` (killed past it), its output collected
/// meanwhile.
fn finish(mut child: Child, what: &str, limit: Duration) -> Output {
    let collect = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut pipe) = pipe {
                pipe.read_to_end(&mut v).unwrap();
            }
            v
        })
    };
    let stdout = collect(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = collect(child.stderr.take().map(|p| Box::new(p) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let out = Output {
        status,
        stdout,
        stderr,
    };
    assert!(
        out.status.success(),
        "{what}: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn spawn(cmd: &mut Command, what: &str) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e} (.ci/install-peers.sh)"))
}

fn curl(addr: SocketAddr, path: &str, user: &str) -> Child {
    spawn(
        Command::new("curl").args([
            "-sS",
            "--max-time",
            "60",
            &format!("pop3://{addr}/{path}"),
            "-u",
            &format!("{user}:pw"),
        ]),
        "curl",
    )
}

/// Python's poplib: USER/PASS, STAT, RETR of each message (written out with CRLF line ends
/// again, as poplib splits them off), QUIT.
const POPLIB: &str = r#"
import poplib, sys
p = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=60)
p.user(sys.argv[3])
p.pass_("pw")
count, _ = p.stat()
for i in range(1, count + 1):
    _, lines, _ = p.retr(i)
    sys.stdout.buffer.write(b"\r\n".join(lines) + b"\r\n")
p.quit()
"#;

fn poplib(addr: SocketAddr, user: &str) -> Child {
    let port = addr.port().to_string();
    let args = ["-c", POPLIB, "127.0.0.1", &port, user];
    spawn(Command::new("python3").args(args), "python3 poplib")
}

/// Reads from `tcp` until `end` has arrived (for replies the test checks by hand).
fn read_until(tcp: &mut TcpStream, got: &mut Vec<u8>, end: impl Fn(&[u8]) -> bool) {
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    let mut buf = [0; 64 * 1024];
    while !end(got) {
        let n = tcp.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "connection closed early: {}",
            String::from_utf8_lossy(got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

fn lines(n: usize) -> impl Fn(&[u8]) -> bool {
    move |got| got.windows(2).filter(|w| w == b"\r\n").count() >= n
}

#[test]
fn std_client_fetches_from_the_mio_server_byte_exactly_and_only_quit_deletes() {
    let mut msgs = messages();
    // The client gets octets as stored: a bare LF or CR is not a line end.
    msgs.push(b"Subject: bare\r\n\r\nbare LF\nbare CR\rthen CRLF\r\n".to_vec());
    let (backend, store) = backend(&["alice"], &msgs);
    let addr = start_mio(backend);

    let (stat, got) = fetch(addr, "alice", false);
    assert_eq!(stat.count, msgs.len() as u64);
    assert_eq!(stat.size, total(&msgs));
    assert!(got == msgs, "RETR differs from what was stored");

    // DELE, then the connection dropped without QUIT: nothing is deleted.
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.write_all(b"USER alice\r\nPASS pw\r\nDELE 1\r\nDELE 2\r\n")
        .unwrap();
    let mut replies = Vec::new();
    read_until(&mut tcp, &mut replies, lines(5));
    assert!(
        replies.ends_with(b"+OK Message 2 deleted\r\n"),
        "{replies:?}"
    );
    drop(tcp);
    let start = Instant::now();
    while store.is_locked("alice") {
        assert!(
            start.elapsed() < LIMIT,
            "the dropped session kept the maildrop"
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(store.message_count("alice"), msgs.len());

    // DELE of each, then QUIT: all gone, and a new session finds nothing.
    let (stat, got) = fetch(addr, "alice", true);
    assert_eq!(stat.count, msgs.len() as u64);
    assert!(got == msgs, "RETR differs from what was stored");
    assert_eq!(store.message_count("alice"), 0);
    let (stat, got) = fetch(addr, "alice", false);
    assert_eq!((stat.count, stat.size, got.len()), (0, 0, 0));
}

#[test]
fn mio_server_serves_curl_poplib_and_std_clients_all_at_once() {
    if !peer_available("curl") || !peer_available("python3") {
        return;
    }
    let msgs = messages();
    let users: Vec<String> = (0..12).map(|i| format!("u{i}")).collect();
    let mut names: Vec<&str> = users.iter().map(String::as_str).collect();
    names.extend(["alice", "slow"]);
    let (backend, store) = backend(&names, &msgs);
    // For a client that does not read: the server must stop at its high-water mark and go on
    // serving the others.
    let huge = huge();
    store.add_message("slow", "huge", &huge); // message 5
    let addr = start_mio(backend);

    // curl, as its manual says: LIST, then RETR of message 1.
    let list = finish(curl(addr, "", "alice"), "curl LIST", LIMIT).stdout;
    let want: String = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{} {}\r\n", i + 1, m.len()))
        .collect();
    assert_eq!(String::from_utf8_lossy(&list), want);
    assert!(finish(curl(addr, "1", "alice"), "curl RETR", LIMIT).stdout == msgs[0]);

    // An idle connection, and one that asks for the huge message and does not read: the one
    // event loop serves everyone else meanwhile.
    let mut idle = TcpStream::connect(addr).unwrap();
    read_until(&mut idle, &mut Vec::new(), lines(1));
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"USER slow\r\nPASS pw\r\nRETR 5\r\n")
        .unwrap();

    // Then everyone at once, each as a user of their own (a maildrop has one session at a
    // time): curl for each message, poplib and the std client for all of them.
    let curls: Vec<(usize, Child)> = (0..msgs.len())
        .map(|i| (i, curl(addr, &(i + 1).to_string(), &users[i])))
        .collect();
    let poplibs: Vec<Child> = users[4..8].iter().map(|u| poplib(addr, u)).collect();
    let clients: Vec<_> = users[8..12]
        .iter()
        .map(|u| {
            let u = u.clone();
            thread::spawn(move || fetch(addr, &u, false))
        })
        .collect();
    for (i, child) in curls {
        assert!(
            finish(child, "curl", LIMIT).stdout == msgs[i],
            "curl RETR {}",
            i + 1
        );
    }
    for child in poplibs {
        assert!(
            finish(child, "poplib", LIMIT).stdout == msgs.concat(),
            "poplib RETR"
        );
    }
    for client in clients {
        let (stat, got) = client.join().unwrap();
        assert_eq!((stat.count, stat.size), (msgs.len() as u64, total(&msgs)));
        assert!(got == msgs, "std client RETR");
    }

    // The slow client reads at last: the whole message, intact (it has no dot lines).
    let mut wire = Vec::new();
    read_until(&mut slow, &mut wire, |w| w.ends_with(b"\r\n.\r\n"));
    // After the greeting and the replies to USER, PASS and RETR.
    let body = wire.splitn(5, |&b| b == b'\n').nth(4).unwrap();
    assert!(
        body.len() == huge.len() + 3 && body.starts_with(&huge),
        "huge RETR"
    );
    slow.write_all(b"QUIT\r\n").unwrap();
    idle.write_all(b"QUIT\r\n").unwrap();
    read_until(&mut idle, &mut Vec::new(), lines(1));
    assert_eq!(store.message_count("slow"), msgs.len() + 1);
}

#[test]
fn clients_that_do_not_read_or_go_idle_are_cut_off_without_update() {
    let mut policy = Policy::default();
    policy.rules.idle_timeout = Duration::from_secs(1);
    // Output batches larger than the socket buffers: the last one stays stuck in the server.
    policy.rules.high_water = 8 << 20;
    let msgs = messages();
    let (backend, store) = backend_with(&["slow", "idle"], &msgs, policy);
    let huge = huge();
    store.add_message("slow", "huge", &huge); // message 5
    let addr = start_mio(backend);
    let start = Instant::now();
    // Marks a message, asks for the huge one and reads nothing.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"USER slow\r\nPASS pw\r\nDELE 1\r\nRETR 5\r\n")
        .unwrap();
    // Marks a message and says nothing more.
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.write_all(b"USER idle\r\nPASS pw\r\nDELE 1\r\n")
        .unwrap();
    read_until(&mut idle, &mut Vec::new(), lines(4));

    // The autologout ends both sessions; the idle connection is closed at once.
    idle.set_read_timeout(Some(LIMIT)).unwrap();
    let _ = idle.read_to_end(&mut Vec::new()); // EOF (or a reset), else a timeout past LIMIT
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < LIMIT,
        "idle: {elapsed:?}"
    );
    while store.is_locked("slow") || store.is_locked("idle") {
        assert!(start.elapsed() < LIMIT, "a maildrop stayed locked");
        thread::sleep(Duration::from_millis(10));
    }
    // The slow one's output is stuck: the server drops the socket all the same once the
    // client has not taken it for the idle timeout. Otherwise it would wait for the client
    // for ever (its session is closed: no session timer is left).
    #[cfg(target_os = "linux")]
    while server_side_open(addr, &slow) {
        assert!(start.elapsed() < LIMIT, "slow: the server kept the socket");
        thread::sleep(Duration::from_millis(10));
    }
    let mut rest = Vec::new();
    slow.set_read_timeout(Some(LIMIT)).unwrap();
    let _ = slow.read_to_end(&mut rest); // what was in the socket buffers, then EOF or a reset
    assert!(rest.len() < huge.len(), "slow: not cut off");
    assert_eq!(store.message_count("slow"), msgs.len() + 1);
    assert_eq!(store.message_count("idle"), msgs.len());
}

#[test]
fn std_client_against_the_blocking_server() {
    use pop3_blocking::server::{ServerOptions, Shutdown, serve};
    let msgs = messages();
    let (backend, store) = backend(&["alice"], &msgs);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let stop = shutdown.clone();
    let server =
        thread::spawn(move || serve(listener, backend, None, ServerOptions::default(), &stop));

    let (stat, got) = fetch(addr, "alice", true);
    assert_eq!((stat.count, stat.size), (msgs.len() as u64, total(&msgs)));
    assert!(got == msgs, "RETR differs from what was stored");
    assert_eq!(store.message_count("alice"), 0);
    shutdown.trigger();
    server.join().unwrap().unwrap();
}

/// Whether a program still holds the server's side of the connection `client`: a socket its
/// program closed shows inode 0 in /proc/net/tcp while the kernel finishes it.
#[cfg(target_os = "linux")]
fn server_side_open(server: SocketAddr, client: &TcpStream) -> bool {
    let hex = |a: SocketAddr| format!("0100007F:{:04X}", a.port()); // 127.0.0.1, as Linux shows it
    let (server, client) = (hex(server), hex(client.local_addr().unwrap()));
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() > 9 && f[1] == server && f[2] == client && f[9] != "0"
    })
}

/// Kills the process on drop (a failed assertion must not leave a server running).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The example binaries `mio_server` and `std_client`, in TARGET/PROFILE/examples (this test
/// is TARGET/PROFILE/deps/examples-HASH). `cargo test` builds the examples before it runs the
/// tests; when they are missing or older than their sources (`cargo test --test examples`),
/// they are built here.
fn example_binaries() -> [PathBuf; 2] {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let bins = ["mio_server", "std_client"].map(|name| {
        let bin = profile_dir
            .join("examples")
            .join(format!("{name}{EXE_SUFFIX}"));
        (bin, src.join(format!("{name}.rs")))
    });
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let stale = bins.iter().any(|(bin, src)| modified(bin) < modified(src));
    if stale {
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args([
                "build",
                "--quiet",
                "-p",
                "pop3-driver",
                "--profile",
                profile,
            ])
            .args(["--example", "mio_server", "--example", "std_client"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        let build = spawn(&mut cargo, "cargo build --example");
        finish(build, "cargo build", Duration::from_secs(900));
    }
    bins.map(|(bin, _)| bin)
}

#[test]
fn the_example_binaries_serve_and_fetch() {
    let [server, client] = example_binaries();
    let mut server = Running(spawn(
        Command::new(server).args(["127.0.0.1:0", "alice", "secret"]),
        "mio_server",
    ));
    // The first line on stdout is the address.
    let mut first = String::new();
    let stdout = server.0.stdout.take().unwrap();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    let addr = first.trim().to_string();
    assert!(addr.parse::<SocketAddr>().is_ok(), "first line: {first:?}");

    let client = |extra: &[&str]| {
        let mut cmd = Command::new(&client);
        cmd.args([addr.as_str(), "alice", "secret"]).args(extra);
        finish(spawn(&mut cmd, "std_client"), "std_client", LIMIT)
    };
    let demo = mio_server::DEMO.concat();
    let out = client(&[]);
    assert!(out.stdout == demo, "std_client printed {:?}", out.stdout);
    let summary = format!("3 messages, {} octets\n", demo.len());
    assert_eq!(String::from_utf8_lossy(&out.stderr), summary);
    if peer_available("curl") {
        let mut curl = Command::new("curl");
        curl.args(["-sS", "--max-time", "60", &format!("pop3://{addr}/1")])
            .args(["-u", "alice:secret"]);
        let out = finish(spawn(&mut curl, "curl"), "curl", LIMIT);
        assert!(
            out.stdout == mio_server::DEMO[0],
            "curl printed {:?}",
            out.stdout
        );
    }
    assert!(client(&["--delete"]).stdout == demo);
    let out = client(&[]);
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "0 messages, 0 octets\n"
    );
}
