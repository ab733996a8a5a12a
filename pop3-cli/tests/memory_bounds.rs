//! The server's memory stays bounded under hostile input over real sockets: a 1 GB line
//! without a line end, and 100,000 pipelined commands from a client that never reads. The
//! server is a `pop3 serve` child process, so its peak resident memory (`VmHWM` in
//! `/proc/PID/status`) is its own and no other test's. Every socket operation has a timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pop3");
/// What the hostile client may cost the server, beyond its warmed-up peak.
const GROWTH_LIMIT_KIB: u64 = 16 * 1024;
const MESSAGE_LINES: usize = 2_000;

struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Peak resident memory of the server process so far, in KiB.
    fn peak_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    fn connect(&self) -> (TcpStream, BufReader<TcpStream>) {
        // Under the full suite's load a connection was, twice, reset before its greeting
        // (cause not found; the memory bounds are not what fails). Such a connection is tried
        // again, a few times at most; anything else still fails the test.
        for attempt in 1.. {
            let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut greeting = String::new();
            match r.read_line(&mut greeting) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && attempt < 5 => {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                other => {
                    other.unwrap();
                }
            }
            assert!(greeting.starts_with("+OK"), "{greeting}");
            return (s, r);
        }
        unreachable!()
    }
}

fn line(r: &mut impl BufRead) -> String {
    let mut l = String::new();
    r.read_line(&mut l).unwrap();
    l
}

fn message() -> Vec<u8> {
    let mut m = b"Subject: big\n\n".to_vec();
    for i in 0..MESSAGE_LINES {
        m.extend_from_slice(
            format!("line {i} of a message that is read again and again\n").as_bytes(),
        );
    }
    m
}

/// `pop3 serve` over one Maildir user `alice` (password `secret`) holding one message.
fn serve() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("mail/alice");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    std::fs::write(md.join("new/1700000000.M1P1.test"), message()).unwrap();
    std::fs::write(dir.path().join("users"), "alice:{PLAIN}secret\n").unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(BIN)
        .arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--maildir-root")
        .arg(dir.path().join("mail"))
        .arg("--users")
        .arg(dir.path().join("users"))
        .arg("--allow-plaintext-auth")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "server not up");
        std::thread::sleep(Duration::from_millis(30));
    }
    let server = Server {
        child,
        port,
        _dir: dir,
    };
    // Warm up: one whole session, so the baseline includes what any session allocates.
    assert_eq!(full_session(&server), message().len() + MESSAGE_LINES + 2);
    server
}

/// Logs in, reads message 1 and quits: returns the octets of the message on the wire.
fn full_session(server: &Server) -> usize {
    let start = Instant::now();
    loop {
        let (mut s, mut r) = server.connect();
        s.write_all(b"USER alice\r\nPASS secret\r\n").unwrap();
        assert!(line(&mut r).starts_with("+OK"));
        let pass = line(&mut r);
        if pass.contains("[IN-USE]") && start.elapsed() < Duration::from_secs(20) {
            // A previous session of alice is still ending.
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        assert!(pass.starts_with("+OK"), "{pass}");
        s.write_all(b"RETR 1\r\n").unwrap();
        assert!(line(&mut r).starts_with("+OK"));
        let mut n = 0;
        loop {
            let l = line(&mut r);
            assert!(!l.is_empty(), "EOF inside the message");
            if l == ".\r\n" {
                break;
            }
            n += l.len();
        }
        s.write_all(b"QUIT\r\n").unwrap();
        assert!(line(&mut r).starts_with("+OK"));
        return n;
    }
}

#[test]
fn a_gigabyte_line_without_a_line_end_keeps_the_server_small() {
    let server = serve();
    let before = server.peak_kib();
    let (mut s, mut r) = server.connect();
    let chunk = vec![b'x'; 64 * 1024];
    let total: u64 = 1 << 30;
    let mut sent = 0;
    while sent < total {
        s.write_all(&chunk).unwrap();
        sent += chunk.len() as u64;
    }
    let after_line = server.peak_kib();
    // The line ends at last: one -ERR for it, and the session goes on.
    s.write_all(b"\r\nCAPA\r\n").unwrap();
    let err = line(&mut r);
    assert!(err.starts_with("-ERR"), "{err}");
    assert!(line(&mut r).starts_with("+OK"));
    s.write_all(b"QUIT\r\n").unwrap();
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    assert!(
        rest.contains(".\r\n+OK"),
        "the rest of CAPA, then QUIT: {rest}"
    );
    eprintln!("1 GiB line: server peak {before} KiB before, {after_line} KiB after");
    assert!(
        after_line.saturating_sub(before) < GROWTH_LIMIT_KIB,
        "the server grew from {before} KiB to {after_line} KiB"
    );
    // Still serving.
    assert_eq!(full_session(&server), message().len() + MESSAGE_LINES + 2);
}

#[test]
fn pipelined_commands_from_a_client_that_never_reads_keep_the_server_small() {
    let server = serve();
    let before = server.peak_kib();
    let (mut s, mut r) = server.connect();
    s.write_all(b"USER alice\r\nPASS secret\r\n").unwrap();
    assert!(line(&mut r).starts_with("+OK"));
    assert!(line(&mut r).starts_with("+OK"));
    // 100,000 RETRs of a 100 KB message (10 GB of replies), never read. The server reads a
    // command only when its output has drained, so the commands wait in the socket buffers
    // (the kernel's, which may take all 800 KB), not in the server.
    let commands = b"RETR 1\r\n".repeat(100_000);
    s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut written = 0;
    while written < commands.len() {
        match s.write(&commands[written..]) {
            Ok(n) => written += n,
            Err(e) => {
                assert!(
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                    "{e}"
                );
                break;
            }
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let stalled = server.peak_kib();
    eprintln!(
        "{} of {} command octets accepted; server peak {before} KiB before, {stalled} KiB stalled",
        written,
        commands.len()
    );
    assert!(
        stalled.saturating_sub(before) < GROWTH_LIMIT_KIB,
        "the server grew from {before} KiB to {stalled} KiB"
    );
    // The client goes away: the session ends (without UPDATE) and the maildrop is free again.
    s.shutdown(Shutdown::Both).unwrap();
    drop((s, r));
    assert_eq!(full_session(&server), message().len() + MESSAGE_LINES + 2);
}
