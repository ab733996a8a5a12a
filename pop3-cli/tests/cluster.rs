//! Three frontends, one store: `pop3 serve` processes on different ports over one PostgreSQL
//! database (and, in one test, one S3 server). Mail delivered by LMTP to one frontend is
//! listed by the others; concurrent sessions of one user on two frontends each commit their
//! own deletions; in exclusive mode a second frontend answers `[IN-USE]` while the first
//! holds the lease, and after `kill -9` of the first the lease expires and nothing was
//! deleted; a frontend killed mid-download and restarted loses nothing.

mod support;

#[path = "../../pop3-store-postgres/tests/support/mod.rs"]
mod pg;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{BIN, Client, MESSAGES, PASSWORD, USER, free_port, run, wait_for_listener};

/// A Maildir root with alice's fixture messages and a passwd-file, as `pop3 import` reads.
fn maildir_fixture(dir: &Path) -> (PathBuf, PathBuf) {
    let root = dir.join("mail");
    let md = root.join(USER);
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    for (i, m) in MESSAGES.iter().enumerate() {
        std::fs::write(md.join(format!("new/{}.M{i}P9.test", 1_700_000_000 + i)), m).unwrap();
    }
    let users = dir.join("users");
    std::fs::write(
        &users,
        format!("{USER}:{{PLAIN}}{PASSWORD}\nbob:{{CRAM-MD5}}e02d374fde0dc75a17a557039a3a5338c7743304777dccd376f332bee68d2cf6\n"),
    )
    .unwrap();
    (root, users)
}

/// The fixture's UIDLs: their Maildir unique names.
fn fixture_uidls() -> Vec<String> {
    (0..MESSAGES.len())
        .map(|i| format!("{}.M{i}P9.test", 1_700_000_000 + i))
        .collect()
}

/// `pop3 import` into the database at `url`.
fn import(dir: &Path, url: &str) -> String {
    let (root, users) = maildir_fixture(dir);
    let out = run(Command::new(BIN)
        .args(["import", "--postgres", url, "--maildir-root"])
        .arg(&root)
        .arg("--users")
        .arg(&users));
    assert!(
        out.status.success(),
        "pop3 import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One `pop3 serve` frontend over the store of `config`.
struct Frontend {
    child: Child,
    port: u16,
    lmtp_port: u16,
    config: PathBuf,
    log: PathBuf,
}

impl Frontend {
    fn start(dir: &Path, name: &str, config: &str) -> Frontend {
        Frontend::start_on(dir, name, config, free_port(), free_port())
    }

    fn start_on(dir: &Path, name: &str, config: &str, port: u16, lmtp_port: u16) -> Frontend {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--lmtp-listen", &format!("127.0.0.1:{lmtp_port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let mut f = Frontend {
            child,
            port,
            lmtp_port,
            config: path,
            log,
        };
        f.wait_ready();
        f
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "pop3 serve exited ({status}): {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(start.elapsed() < Duration::from_secs(30), "frontend not up");
            std::thread::sleep(Duration::from_millis(30));
        }
        wait_for_listener(self.lmtp_port);
    }

    fn login(&self) -> Client {
        let mut c = Client::connect(self.port);
        let ok = c.user_pass(USER, PASSWORD);
        assert!(ok.starts_with("+OK"), "login: {ok}");
        c
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts this frontend again on the same ports and configuration.
    fn restart(&mut self) {
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--lmtp-listen", &format!("127.0.0.1:{}", self.lmtp_port)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::options()
                    .append(true)
                    .open(&self.log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        self.child = child;
        self.wait_ready();
    }
}

impl Drop for Frontend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(url: &str, lock: &str, extra: &str) -> String {
    format!(
        "[store.postgres]\nurl = \"{url}\"\nlease = \"2s\"\n{extra}\n[policy]\nallow_plaintext_auth = true\nmaildrop_lock = \"{lock}\"\n"
    )
}

/// The UIDLs a session lists (`UIDL`), in message-number order.
fn uidls(c: &mut Client) -> Vec<String> {
    let body = c.multiline("UIDL");
    String::from_utf8(body)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap().to_string())
        .collect()
}

/// Delivers `message` for `rcpt` over LMTP to 127.0.0.1:`port`; panics unless it gets 250.
fn lmtp_deliver(port: u16, rcpt: &str, message: &[u8]) {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = tcp.try_clone().unwrap();
    let mut r = BufReader::new(tcp);
    let mut line = || {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        l
    };
    assert!(line().starts_with("220"));
    w.write_all(b"LHLO test\r\n").unwrap();
    while line().starts_with("250-") {}
    w.write_all(
        format!("MAIL FROM:<sender@example.org>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").as_bytes(),
    )
    .unwrap();
    for _ in 0..2 {
        let l = line();
        assert!(l.starts_with("250"), "{l}");
    }
    assert!(line().starts_with("354"));
    // Dot-stuffed (RFC 5321 §4.5.2).
    let mut stuffed = Vec::with_capacity(message.len() + 16);
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            stuffed.push(b'.');
        }
        stuffed.extend_from_slice(line);
    }
    w.write_all(&stuffed).unwrap();
    w.write_all(b".\r\nQUIT\r\n").unwrap();
    let l = line();
    assert!(l.starts_with("250"), "delivery: {l}");
}

#[test]
fn three_frontends_serve_one_store() {
    let Some(url) = pg::database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let first = import(dir.path(), &url);
    assert!(
        first.contains("users: 2 added") && first.contains("messages: 3 added"),
        "{first}"
    );
    // Idempotent: the second import adds nothing.
    let again = import(dir.path(), &url);
    assert!(
        again.contains("users: 0 added, 2 already there")
            && again.contains("messages: 0 added, 3 already there"),
        "{again}"
    );

    let cfg = config(&url, "snapshot", "");
    let a = Frontend::start(dir.path(), "a", &cfg);
    let b = Frontend::start(dir.path(), "b", &cfg);
    let c = Frontend::start(dir.path(), "c", &cfg);

    // The imported UIDLs are the Maildir's: clients that keep mail download nothing again.
    assert_eq!(uidls(&mut b.login()), fixture_uidls());

    // Delivered by LMTP to A, listed by B and C.
    let new = b"Subject: via A\r\n\r\nhello cluster\r\n.dot\r\n";
    lmtp_deliver(a.lmtp_port, "alice@example.org", new);
    for f in [&b, &c] {
        let mut s = f.login();
        let list = uidls(&mut s);
        assert_eq!(list.len(), 4);
        assert_eq!(list[..3], fixture_uidls()[..]);
        let mut expected = b"Return-Path: <sender@example.org>\r\n".to_vec();
        expected.extend_from_slice(new);
        assert_eq!(s.multiline("RETR 4"), expected);
    }

    // Concurrent sessions of alice on A and B, each deleting its own message.
    let mut on_a = a.login();
    let mut on_b = b.login();
    assert!(on_a.cmd("DELE 1").starts_with("+OK"));
    assert!(on_b.cmd("DELE 2").starts_with("+OK"));
    assert!(on_a.cmd("QUIT").starts_with("+OK"));
    assert!(on_b.cmd("QUIT").starts_with("+OK"));
    let left = uidls(&mut c.login());
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(left[0], fixture_uidls()[2]);

    // The same message deleted on two frontends at once: both QUITs succeed, it is gone once.
    let mut on_a = a.login();
    let mut on_c = c.login();
    assert!(on_a.cmd("DELE 1").starts_with("+OK"));
    assert!(on_c.cmd("DELE 1").starts_with("+OK"));
    assert!(on_a.cmd("QUIT").starts_with("+OK"));
    assert!(on_c.cmd("QUIT").starts_with("+OK"));
    assert_eq!(uidls(&mut b.login()).len(), 1);
}

#[test]
fn an_exclusive_lease_outlives_a_killed_frontend_and_deletes_nothing() {
    let Some(url) = pg::database() else { return };
    let dir = tempfile::tempdir().unwrap();
    import(dir.path(), &url);
    let cfg = config(&url, "exclusive", "");
    let mut a = Frontend::start(dir.path(), "a", &cfg);
    let b = Frontend::start(dir.path(), "b", &cfg);

    let mut on_a = a.login();
    assert!(on_a.cmd("DELE 1").starts_with("+OK"));
    assert!(on_a.cmd("DELE 2").starts_with("+OK"));
    let mut c = Client::connect(b.port);
    assert!(c.cmd(&format!("USER {USER}")).starts_with("+OK"));
    let refused = c.cmd(&format!("PASS {PASSWORD}"));
    assert!(refused.starts_with("-ERR [IN-USE]"), "{refused}");

    // Renewed while A lives: still refused after more than one lease length.
    std::thread::sleep(Duration::from_millis(2500));
    let mut c = Client::connect(b.port);
    assert!(c.cmd(&format!("USER {USER}")).starts_with("+OK"));
    assert!(
        c.cmd(&format!("PASS {PASSWORD}"))
            .starts_with("-ERR [IN-USE]")
    );

    a.kill9();
    drop(on_a);
    // The lease (2 s) expires; B then logs in, and nothing was deleted.
    let start = Instant::now();
    let mut session = loop {
        let mut c = Client::connect(b.port);
        assert!(c.cmd(&format!("USER {USER}")).starts_with("+OK"));
        let answer = c.cmd(&format!("PASS {PASSWORD}"));
        if answer.starts_with("+OK") {
            break c;
        }
        assert!(answer.starts_with("-ERR [IN-USE]"), "{answer}");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the lease never expired"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(uidls(&mut session), fixture_uidls());
}

#[test]
fn a_frontend_killed_mid_download_and_restarted_loses_nothing() {
    let Some(url) = pg::database() else { return };
    let dir = tempfile::tempdir().unwrap();
    import(dir.path(), &url);
    let mut a = Frontend::start(
        dir.path(),
        "a",
        &config(&url, "snapshot", "chunk_size = 4096"),
    );
    // 60 messages of 100 KiB by LMTP.
    let body: Vec<u8> = (0..1600)
        .flat_map(|i| {
            format!("line {i:05} of a long message, padded out to sixty-four octets...\r\n")
                .into_bytes()
        })
        .collect();
    for i in 0..60 {
        let mut m = format!("Subject: big {i}\r\n\r\n").into_bytes();
        m.extend_from_slice(&body);
        lmtp_deliver(a.lmtp_port, "alice@example.org", &m);
    }
    let dest = dir.path().join("fetched");
    let port = a.port;
    let fetch = |dest: &Path| {
        Command::new(BIN)
            .arg("fetch")
            .arg(format!("pop3://{USER}@127.0.0.1:{port}"))
            .args([
                "--tls",
                "none",
                "--password-env",
                "PW",
                "--quiet",
                "--maildir",
            ])
            .arg(dest)
            .env("PW", PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Kill the frontend while the fetch downloads: once the first message is in the
    // Maildir's tmp/ (written, not yet durable nor deleted).
    let child = fetch(&dest);
    let start = Instant::now();
    while std::fs::read_dir(dest.join("tmp"))
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the fetch never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    a.kill9();
    let out = child.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the fetch should have lost its server"
    );
    a.restart();
    let out = fetch(&dest).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every message exactly once in the Maildir, none left on the server.
    let mut subjects: Vec<String> = ["new", "cur"]
        .iter()
        .flat_map(|d| std::fs::read_dir(dest.join(d)).unwrap())
        .map(|e| {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            text.lines()
                .find(|l| l.starts_with("Subject:"))
                .unwrap()
                .to_string()
        })
        .collect();
    subjects.sort();
    let mut expected: Vec<String> = (0..60).map(|i| format!("Subject: big {i}")).collect();
    expected.extend(["Subject: one", "Subject: three", "Subject: two"].map(String::from));
    expected.sort();
    assert_eq!(subjects, expected);
    let mut s = a.login();
    assert_eq!(s.cmd("STAT"), "+OK 0 0\r\n");
}

#[test]
fn bodies_in_s3_behind_two_frontends() {
    let Some(url) = pg::database() else { return };
    let Some(moto) = pg::MotoServer::shared() else {
        return;
    };
    moto.create_bucket("cluster-bodies");
    let dir = tempfile::tempdir().unwrap();
    import(dir.path(), &url);
    let s3 = format!(
        "[store.postgres.bodies]\nkind = \"s3\"\nendpoint = \"{}\"\nbucket = \"cluster-bodies\"\naccess_key = \"test\"\nsecret_key = \"test\"\nallow_http = true\n",
        moto.endpoint()
    );
    let cfg = config(&url, "snapshot", "").replace("[policy]", &format!("{s3}\n[policy]"));
    let a = Frontend::start(dir.path(), "a", &cfg);
    let b = Frontend::start(dir.path(), "b", &cfg);
    let message = b"Subject: in S3\r\n\r\nbody kept in the object store\r\n";
    lmtp_deliver(a.lmtp_port, "alice@example.org", message);
    let mut s = b.login();
    let mut expected = b"Return-Path: <sender@example.org>\r\n".to_vec();
    expected.extend_from_slice(message);
    assert_eq!(s.multiline("RETR 4"), expected);
    assert!(s.cmd("DELE 4").starts_with("+OK"));
    assert!(s.cmd("QUIT").starts_with("+OK"));
    // gc finds nothing to remove that a message still names (here: nothing at all young).
    let out = run(Command::new(BIN)
        .args(["gc", "--config"])
        .arg(&a.config)
        .args(["--min-age", "0"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
