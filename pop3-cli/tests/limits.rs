//! The limits before login, against the real `pop3 serve` on loopback: 1,100 idle connections
//! held open (from one address, or spread over 127.0.0.2…127.0.0.9) do not lock a normal
//! client out, and the flags `--login-timeout`, `--max-unauthenticated-per-ip`,
//! `--max-sessions-per-user` reach the server.
//!
//! Idle connections come from 127.0.0.x source addresses (Linux routes all of 127/8 to the
//! loopback interface). The test raises its own open-files limit; `pop3 serve` raises its
//! own. Every read has a timeout; each server is killed on drop.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pop3");
const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the normal client may take, however loaded: it takes milliseconds (see the
/// printed figures), but a busy test machine must not fail the test.
const CLIENT_LIMIT: Duration = Duration::from_secs(10);
/// Idle connections held, past the server's 1,024.
const FLOOD: usize = 1100;
const MAX_CONNECTIONS: usize = 1024;

/// A `pop3 serve` child with alice (`secret`, one message), killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(flags: &[&str]) -> Server {
        let _ = rlimit::increase_nofile_limit(u64::MAX);
        let dir = tempfile::tempdir().unwrap();
        let md = dir.path().join("mail/alice");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(md.join(sub)).unwrap();
        }
        let message = "From: a@example.com\nSubject: hello\n\nThe message.\n";
        std::fs::write(md.join("new/1700000000.M1P1.test"), message).unwrap();
        std::fs::write(dir.path().join("users"), "alice:{PLAIN}secret\n").unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new(BIN)
            .arg("serve")
            .args(["--listen", &addr.to_string()])
            .arg("--maildir-root")
            .arg(dir.path().join("mail"))
            .arg("--users")
            .arg(dir.path().join("users"))
            .arg("--allow-plaintext-auth")
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let server = Server { child, addr, dir };
        let start = Instant::now();
        // Probe from an address no test floods from.
        while connect_from(200, addr).is_err() {
            assert!(start.elapsed() < READ_TIMEOUT, "pop3 serve did not start");
            std::thread::sleep(Duration::from_millis(30));
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("log")
    }
}

/// A TCP connection from `127.0.0.<src>` (bind before connect, through tokio's socket).
fn connect_from(src: u8, to: SocketAddr) -> std::io::Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, src), 0)))?;
        match tokio::time::timeout(READ_TIMEOUT, sock.connect(to)).await {
            Ok(s) => s?.into_std(),
            Err(_) => Err(ErrorKind::TimedOut.into()),
        }
    })?;
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(READ_TIMEOUT))?;
    s.set_write_timeout(Some(READ_TIMEOUT))?;
    Ok(s)
}

/// One line (empty at EOF or reset).
fn line(r: &mut impl BufRead) -> String {
    let mut l = Vec::new();
    match r.read_until(b'\n', &mut l) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("read a line: {e}"),
    }
    String::from_utf8_lossy(&l).into_owned()
}

/// Opens `FLOOD` connections, from the `sources` in turn, sending nothing; then reads the
/// first line each got (`+OK` greeting, a refusal, or nothing if it was closed at once).
fn flood(to: SocketAddr, sources: &[u8]) -> (Vec<TcpStream>, Vec<String>) {
    let conns: Vec<TcpStream> = (0..FLOOD)
        .map(|i| connect_from(sources[i % sources.len()], to).expect("an idle connection"))
        .collect();
    let firsts = conns.iter().map(|c| line(&mut BufReader::new(c))).collect();
    (conns, firsts)
}

/// How many of `conns` the server has not closed (reads nothing more, without waiting).
fn still_open(conns: &[TcpStream]) -> usize {
    conns
        .iter()
        .filter(|c| {
            c.set_nonblocking(true).unwrap();
            let open =
                matches!((&**c).read(&mut [0u8; 64]), Err(e) if e.kind() == ErrorKind::WouldBlock);
            c.set_nonblocking(false).unwrap();
            open
        })
        .count()
}

/// A normal client from `127.0.0.<src>`: login, STAT, RETR 1, QUIT. Returns how long it took
/// (connection included).
fn normal_client(src: u8, to: SocketAddr) -> Duration {
    let start = Instant::now();
    let s = connect_from(src, to).expect("the normal client connects");
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut cmd = |c: &str, r: &mut BufReader<TcpStream>| {
        if !c.is_empty() {
            w.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        }
        let l = line(r);
        assert!(l.starts_with("+OK"), "{c:?} got {l:?}");
        l
    };
    cmd("", &mut r);
    cmd("USER alice", &mut r);
    cmd("PASS secret", &mut r);
    assert!(cmd("STAT", &mut r).starts_with("+OK 1 "));
    cmd("RETR 1", &mut r);
    let mut body = String::new();
    loop {
        let l = line(&mut r);
        assert!(!l.is_empty(), "EOF inside RETR");
        if l == ".\r\n" {
            break;
        }
        body.push_str(&l);
    }
    assert!(body.contains("The message."), "{body}");
    cmd("QUIT", &mut r);
    let took = start.elapsed();
    assert!(
        took < CLIENT_LIMIT,
        "the normal client took {took:?} with {FLOOD} idle connections held"
    );
    took
}

/// 1,100 idle connections from `sources` with `flags`; then a normal client from 127.0.0.1.
/// With eviction (no per-address limit in the way), the server holds 1,024 of them, evicts
/// the oldest for the rest and one more for the client, and logs it.
fn evicting_flood(name: &str, sources: &[u8], flags: &[&str]) {
    let max = MAX_CONNECTIONS.to_string();
    let mut all = vec!["--max-connections", &max];
    all.extend_from_slice(flags);
    let srv = Server::start(&all);
    let started = Instant::now();
    let (conns, firsts) = flood(srv.addr, sources);
    let flooded = started.elapsed();
    let greeted = firsts.iter().filter(|l| l.starts_with("+OK")).count();
    let refused: Vec<_> = firsts.iter().filter(|l| l.starts_with("-ERR")).collect();
    assert!(refused.is_empty(), "{name}: refused {refused:?}");
    let took = normal_client(1, srv.addr);
    std::thread::sleep(Duration::from_millis(300));
    let open = still_open(&conns);
    eprintln!(
        "{name}: {FLOOD} idle connections opened in {flooded:?} ({greeted} greeted); the normal \
         client (login, STAT, RETR 1, QUIT) took {took:?}; {open} idle connections still open"
    );
    // Room for the client was made by evicting one more: the oldest went, 1,023 stay.
    assert_eq!(open, MAX_CONNECTIONS - 1, "{name}");
    let evicted = conns.len() - open;
    let log = srv.log();
    let lines = log
        .lines()
        .filter(|l| l.contains("connection evicted"))
        .count();
    assert_eq!(lines, evicted, "{name}: one log line per eviction:\n{log}");
    drop(conns);
}

#[test]
fn idle_flood_from_one_address_does_not_lock_a_client_out() {
    // The per-address limit is out of the way, so that the flood fills the listener.
    evicting_flood(
        "one address (127.0.0.1, the client's own)",
        &[1],
        &["--max-unauthenticated-per-ip", "2000"],
    );
}

#[test]
fn idle_flood_spread_over_eight_addresses_does_not_lock_a_client_out() {
    // 1,100 over 8 addresses is 138 each: past the default per-address limit (32), so it is
    // raised to let the flood fill the listener.
    evicting_flood(
        "127.0.0.2-9",
        &[2, 3, 4, 5, 6, 7, 8, 9],
        &["--max-unauthenticated-per-ip", "200"],
    );
}

#[test]
fn idle_flood_from_one_address_meets_the_default_per_address_limit() {
    let srv = Server::start(&[]);
    let (conns, firsts) = flood(srv.addr, &[2]);
    let greeted = firsts.iter().filter(|l| l.starts_with("+OK")).count();
    let refused = firsts
        .iter()
        .filter(|l| *l == "-ERR [SYS/TEMP] Too many connections from your address\r\n")
        .count();
    assert_eq!((greeted, refused), (32, FLOOD - 32), "{firsts:?}");
    let took = normal_client(1, srv.addr);
    eprintln!(
        "defaults, one address: {greeted} of {FLOOD} idle connections admitted, the rest \
         refused; the normal client from another address took {took:?}"
    );
    assert!(srv.log().contains("too_many_from_address") || srv.log().contains("refused"));
    drop(conns);
}

#[test]
fn limit_flags_reach_the_server() {
    let srv = Server::start(&[
        "--login-timeout",
        "3",
        "--max-unauthenticated-per-ip",
        "2",
        "--max-sessions-per-user",
        "2",
    ]);
    let conn = |src| {
        let s = connect_from(src, srv.addr).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let first = line(&mut r);
        (s, r, first)
    };
    let login = |s: &mut TcpStream, r: &mut BufReader<TcpStream>| {
        s.write_all(b"USER alice\r\nPASS secret\r\n").unwrap();
        assert!(line(r).starts_with("+OK"));
        line(r)
    };
    // --max-sessions-per-user 2: the third session of alice gets [IN-USE].
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let (mut s, mut r, first) = conn(3);
        assert!(first.starts_with("+OK"));
        assert!(login(&mut s, &mut r).starts_with("+OK"));
        sessions.push((s, r));
    }
    let (mut s, mut r, _) = conn(3);
    assert_eq!(
        login(&mut s, &mut r),
        "-ERR [IN-USE] Too many sessions for this user\r\n"
    );
    // --max-unauthenticated-per-ip 2: the third from 127.0.0.4 is refused.
    let start = Instant::now();
    let idle: Vec<_> = (0..2).map(|_| conn(4)).collect();
    assert!(idle.iter().all(|(_, _, first)| first.starts_with("+OK")));
    let (_, _, refused) = conn(4);
    assert_eq!(
        refused,
        "-ERR [SYS/TEMP] Too many connections from your address\r\n"
    );
    // --login-timeout 3: the two idle ones are closed about 3 s after they connected.
    for (_, mut r, _) in idle {
        assert_eq!(line(&mut r), "", "closed without a reply");
    }
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(15),
        "closed after {waited:?}"
    );
    // The logged-in sessions outlived it.
    for (s, r) in &mut sessions {
        s.write_all(b"STAT\r\n").unwrap();
        assert!(line(r).starts_with("+OK 1 "));
    }
}
