//! `pop3 serve --maildrop-lock snapshot|exclusive` as a real process on 127.0.0.1: sessions of
//! one user at once over TCP, and a phone and a laptop running `pop3 fetch` (one with
//! `--keep`) against the same account.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pop3");
mod support;
use pop3_interop::free_port;
use support::run;

const LIMIT: Duration = Duration::from_secs(60);

/// A `pop3 serve` child over one user's Maildir, killed on drop.
struct Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `pop3 serve` with `extra` arguments, over `count` messages, plaintext passwords
    /// allowed (this is loopback).
    fn start(count: usize, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let md = dir.path().join("mail/alice");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(md.join(sub)).unwrap();
        }
        for i in 1..=count {
            std::fs::write(md.join("new").join(unique(i)), message(i)).unwrap();
        }
        std::fs::write(dir.path().join("users"), "alice:{PLAIN}secret\n").unwrap();
        let port = free_port();
        let child = Command::new(BIN)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--maildir-root")
            .arg(dir.path().join("mail"))
            .arg("--users")
            .arg(dir.path().join("users"))
            .arg("--allow-plaintext-auth")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < LIMIT, "nothing listens on {port}");
            std::thread::sleep(Duration::from_millis(30));
        }
        Server { child, port, dir }
    }

    fn maildir(&self) -> PathBuf {
        self.dir.path().join("mail/alice")
    }

    /// The unique names left on the server, sorted.
    fn left(&self) -> Vec<String> {
        let mut left: Vec<String> = ["new", "cur"]
            .iter()
            .flat_map(|d| std::fs::read_dir(self.maildir().join(d)).unwrap())
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .map(|n| n.split(':').next().unwrap().to_string())
            .collect();
        left.sort();
        left
    }

    fn deliver(&self, i: usize) {
        let md = self.maildir();
        std::fs::write(md.join("tmp").join(unique(i)), message(i)).unwrap();
        std::fs::rename(
            md.join("tmp").join(unique(i)),
            md.join("new").join(unique(i)),
        )
        .unwrap();
    }

    /// A logged-in raw session.
    fn login(&self) -> Conn {
        let mut c = Conn::connect(self.port);
        assert_eq!(c.send("USER alice"), "+OK");
        assert_eq!(c.send("PASS secret"), "+OK Logged in.");
        c
    }

    /// `pop3 fetch` into the Maildir `dest`, with `extra` arguments.
    fn fetch(&self, dest: &Path, extra: &[&str]) -> Output {
        run(Command::new(BIN)
            .arg("fetch")
            .arg(format!("pop3://alice@127.0.0.1:{}", self.port))
            .args(["--tls", "none", "--password-env", "PW", "--maildir"])
            .arg(dest)
            .args(extra)
            .env("PW", "secret"))
    }
}

fn unique(i: usize) -> String {
    format!("{}.M{i}P7.test", 1_700_000_000 + i)
}

fn message(i: usize) -> Vec<u8> {
    format!("Subject: message {i}\n\nbody {i}\n").into_bytes()
}

fn uniques(numbers: &[usize]) -> Vec<String> {
    numbers.iter().map(|&i| unique(i)).collect()
}

/// A raw POP3 connection.
struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn connect(port: u16) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut c = Conn { stream, reader };
        assert!(c.line().starts_with("+OK"));
        c
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line.trim_end().to_string()
    }

    /// Sends one command; its first reply line.
    fn send(&mut self, command: &str) -> String {
        self.stream
            .write_all(format!("{command}\r\n").as_bytes())
            .unwrap();
        self.line()
    }

    /// Sends a command with a multi-line reply; the lines after the status line.
    fn multi(&mut self, command: &str) -> Vec<String> {
        let status = self.send(command);
        assert!(status.starts_with("+OK"), "{command}: {status}");
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            if line == "." {
                return lines;
            }
            lines.push(line);
        }
    }
}

/// The default mode: two sessions of one user at once, each deleting some messages; both
/// commit, and what is gone is the union. A third deletes what the others already removed:
/// its QUIT is `+OK` and nothing else goes.
#[test]
fn snapshot_sessions_at_once_remove_the_union() {
    let server = Server::start(5, &[]);
    let mut a = server.login();
    let mut b = server.login();
    let mut c = server.login();
    let listing = a.multi("UIDL");
    assert_eq!(listing.len(), 5);
    assert_eq!(b.multi("UIDL"), listing);
    assert_eq!(a.send("DELE 1"), "+OK Message 1 deleted");
    assert_eq!(a.send("DELE 2"), "+OK Message 2 deleted");
    assert_eq!(b.send("DELE 4"), "+OK Message 4 deleted");
    assert_eq!(b.send("QUIT"), "+OK Bye, 1 messages deleted");
    assert_eq!(a.send("QUIT"), "+OK Bye, 2 messages deleted");
    assert_eq!(server.left(), uniques(&[3, 5]));
    // C logged in before any of that: its snapshot still has all five, same unique-ids.
    assert_eq!(c.multi("UIDL"), listing);
    assert_eq!(c.send("DELE 2"), "+OK Message 2 deleted");
    assert_eq!(c.send("QUIT"), "+OK Bye, 1 messages deleted");
    assert_eq!(server.left(), uniques(&[3, 5]));
}

/// `--maildrop-lock exclusive` keeps RFC 1939's lock: `[IN-USE]` while a session holds it.
#[test]
fn exclusive_answers_in_use() {
    let server = Server::start(2, &["--maildrop-lock", "exclusive"]);
    let mut a = server.login();
    let mut b = Conn::connect(server.port);
    assert_eq!(b.send("USER alice"), "+OK");
    assert_eq!(
        b.send("PASS secret"),
        "-ERR [IN-USE] Maildrop is locked by another session"
    );
    assert_eq!(a.send("DELE 1"), "+OK Message 1 deleted");
    assert_eq!(a.send("QUIT"), "+OK Bye, 1 messages deleted");
    let mut c = server.login();
    assert_eq!(c.send("STAT").split(' ').nth(1), Some("1"));
    // A bad value is refused by the argument parser.
    let out = run(Command::new(BIN).args(["serve", "--maildrop-lock", "shared"]));
    assert!(!out.status.success());
}

/// A phone that leaves mail on the server (`pop3 fetch --keep`) and a laptop that takes it
/// (`pop3 fetch`), each polling while the other device is logged in: neither is refused,
/// every message reaches both, and only the laptop's deletions happen.
#[test]
fn phone_keeps_laptop_deletes_with_pop3_fetch() {
    let server = Server::start(3, &[]);
    let phone = tempfile::tempdir().unwrap();
    let laptop = tempfile::tempdir().unwrap();
    let stored = |dir: &Path| std::fs::read_dir(dir.join("new")).unwrap().count();

    // The laptop is in the middle of a session (it has listed, not yet deleted) when the
    // phone polls.
    let mut busy = server.login();
    assert_eq!(busy.multi("UIDL").len(), 3);
    let out = server.fetch(phone.path(), &["--keep"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("3 messages fetched"), "{text}");
    assert!(text.contains("0 deleted from the server, 3 left"), "{text}");
    assert_eq!(busy.send("QUIT"), "+OK Bye, 0 messages deleted");

    // Now the phone is logged in when the laptop fetches (and deletes) everything.
    let mut busy = server.login();
    let out = server.fetch(laptop.path(), &[]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 deleted from the server, 0 left"), "{text}");
    assert!(server.left().is_empty());
    // The phone's session still has its snapshot, and its QUIT removes nothing more.
    assert_eq!(busy.multi("UIDL").len(), 3);
    assert_eq!(busy.send("QUIT"), "+OK Bye, 0 messages deleted");

    // New mail: the phone keeps it, then the laptop takes it; each got every message once.
    server.deliver(4);
    let out = server.fetch(phone.path(), &["--keep"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("1 messages fetched"),
        "{out:?}"
    );
    assert_eq!(server.left(), uniques(&[4]));
    let out = server.fetch(laptop.path(), &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("1 messages fetched"),
        "{out:?}"
    );
    assert!(server.left().is_empty());
    assert_eq!(stored(phone.path()), 4);
    assert_eq!(stored(laptop.path()), 4);
    // The phone's next poll finds nothing new and is not confused by what the laptop took.
    let out = server.fetch(phone.path(), &["--keep"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("0 messages fetched"),
        "{out:?}"
    );
}
