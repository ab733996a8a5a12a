//! End-to-end tests of the `pop3` binary on 127.0.0.1.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pop3");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// A `pop3 serve` child, killed on drop.
struct Server {
    child: Child,
    port: u16,
    tls_port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn maildir(&self) -> PathBuf {
        self.dir.path().join("mail/alice")
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// Messages left on the server.
    fn count(&self) -> usize {
        ["new", "cur"]
            .iter()
            .map(|d| std::fs::read_dir(self.maildir().join(d)).unwrap().count())
            .sum()
    }
}

/// Starts `pop3 serve` over a Maildir holding `messages` (LF line ends, as stored).
fn serve(messages: &[Vec<u8>], tls: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("mail/alice");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    for (i, m) in messages.iter().enumerate() {
        std::fs::write(md.join(format!("new/{}.M{i}P9.test", 1_700_000_000 + i)), m).unwrap();
    }
    std::fs::write(dir.path().join("users"), "alice:{PLAIN}secret\n").unwrap();
    let cert = pop3_tls::self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.key_pem).unwrap();
    let (port, tls_port) = (free_port(), free_port());
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--maildir-root")
        .arg(dir.path().join("mail"))
        .arg("--users")
        .arg(dir.path().join("users"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if tls {
        cmd.args(["--tls-listen", &format!("127.0.0.1:{tls_port}")])
            .arg("--cert")
            .arg(dir.path().join("cert.pem"))
            .arg("--key")
            .arg(dir.path().join("key.pem"));
    }
    let child = cmd.spawn().unwrap();
    wait_for_port(port);
    if tls {
        wait_for_port(tls_port);
    }
    Server {
        child,
        port,
        tls_port,
        dir,
    }
}

fn fetch(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("fetch")
        .args(args)
        .env("PW", "secret")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn crlf(m: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for &b in m {
        if b == b'\n' {
            v.push(b'\r');
        }
        v.push(b);
    }
    v
}

fn stored(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir.join("new"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn messages() -> Vec<Vec<u8>> {
    vec![
        b"From: a@example.com\nSubject: one\n\nhello\n.leading dot\n.\nFrom the start\n>From quoted\n".to_vec(),
        b"Subject: two\n\nsecond\n".to_vec(),
        b"Subject: three\n\n\xc3\xa9t\xc3\xa9 8-bit\n".to_vec(),
    ]
}

#[test]
fn fetch_into_maildir_then_mbox_byte_exact() {
    let msgs = messages();
    let server = serve(&msgs, true);
    let dest = tempfile::tempdir().unwrap();
    let md = dest.path().join("md");
    let url = format!("pop3s://alice@127.0.0.1:{}", server.tls_port);
    let ca = server.cert();
    let out = fetch(&[
        &url,
        "--ca-file",
        ca.to_str().unwrap(),
        "--password-env",
        "PW",
        "--maildir",
        md.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("3 messages fetched"),
        "{out:?}"
    );
    let got: HashSet<Vec<u8>> = stored(&md).into_iter().collect();
    let want: HashSet<Vec<u8>> = msgs.iter().map(|m| crlf(m)).collect();
    assert_eq!(got, want);
    assert_eq!(
        server.count(),
        0,
        "fetched messages are deleted from the server"
    );
    drop(server);

    // mbox (mboxrd), through STLS (the default for pop3://).
    let server = serve(&msgs, true);
    let mbox = dest.path().join("mbox");
    let url = format!("pop3://alice@127.0.0.1:{}", server.port);
    let out = fetch(&[
        &url,
        "--ca-file",
        server.cert().to_str().unwrap(),
        "--password-env",
        "PW",
        "--mbox",
        mbox.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read(&mbox).unwrap();
    let parts: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    assert!(
        parts[0].starts_with(b"From MAILER-DAEMON "),
        "{}",
        String::from_utf8_lossy(&text)
    );
    let body = String::from_utf8_lossy(&text);
    assert!(
        body.contains("\n.leading dot\n.\n>From the start\n>>From quoted\n\nFrom MAILER-DAEMON"),
        "{body}"
    );
    assert_eq!(body.matches("\nFrom MAILER-DAEMON ").count() + 1, 3);
    assert!(!body.contains('\r'));
}

#[test]
fn keep_twice_fetches_nothing_new() {
    let server = serve(&messages(), true);
    let dest = tempfile::tempdir().unwrap();
    let url = format!("pop3s://alice@127.0.0.1:{}", server.tls_port);
    let ca = server.cert();
    let args = [
        &url[..],
        "--ca-file",
        ca.to_str().unwrap(),
        "--password-env",
        "PW",
        "--keep",
        "--maildir",
        dest.path().to_str().unwrap(),
    ];
    let first = fetch(&args);
    assert!(first.status.success(), "{first:?}");
    assert!(String::from_utf8_lossy(&first.stdout).starts_with("3 messages fetched"));
    let second = fetch(&args);
    assert!(second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stdout).starts_with("0 messages fetched"),
        "{second:?}"
    );
    assert_eq!(stored(dest.path()).len(), 3);
    assert_eq!(server.count(), 3, "--keep leaves them on the server");
}

#[test]
fn sigkill_at_random_points_loses_nothing_and_duplicates_nothing() {
    let msgs: Vec<Vec<u8>> = (0..500)
        .map(|i| {
            format!(
                "Subject: message {i}\n\n{}\n",
                format!("body of message {i} ").repeat(200)
            )
            .into_bytes()
        })
        .collect();
    let server = serve(&msgs, true);
    let dest = tempfile::tempdir().unwrap();
    let url = format!("pop3s://alice@127.0.0.1:{}", server.tls_port);
    let ca = server.cert();
    let args = [
        &url[..],
        "--ca-file",
        ca.to_str().unwrap(),
        "--password-env",
        "PW",
        "--quiet",
        "--maildir",
        dest.path().to_str().unwrap(),
    ];
    for delay_ms in [40u64, 90, 150, 230, 330] {
        let mut child = Command::new(BIN)
            .arg("fetch")
            .args(args)
            .env("PW", "secret")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
    let last = fetch(&args);
    assert!(
        last.status.success(),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    let got = stored(dest.path());
    let unique: HashSet<&Vec<u8>> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "a message was stored twice");
    let want: HashSet<Vec<u8>> = msgs.iter().map(|m| crlf(m)).collect();
    assert_eq!(
        got.into_iter().collect::<HashSet<_>>(),
        want,
        "every message exactly once"
    );
    assert_eq!(server.count(), 0, "the server is emptied");
    assert_eq!(
        std::fs::read_dir(dest.path().join("tmp")).unwrap().count(),
        0,
        "nothing partial in tmp/"
    );
}

/// A scripted server: sends `script` replies in order, one per line the client sends (after
/// the greeting), and records what the client sent. Ends after `script` or at `drop_after`.
fn scripted(
    greeting: &'static str,
    script: Vec<&'static str>,
) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(greeting.as_bytes()).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut seen = Vec::new();
        for reply in script {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            seen.push(line.trim_end().to_string());
            if s.write_all(reply.as_bytes()).is_err() {
                break;
            }
        }
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest);
        seen
    });
    (port, t)
}

#[test]
fn plaintext_is_refused_unless_tls_none() {
    let (port, t) = scripted("+OK hi\r\n", vec!["+OK\r\nUSER\r\nUIDL\r\n.\r\n"]);
    let out = fetch(&[
        &format!("pop3://alice@127.0.0.1:{port}"),
        "--password-env",
        "PW",
        "--maildir",
        "/tmp/never-created-pop3",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("STLS"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = t.join().unwrap();
    assert_eq!(seen, ["CAPA"], "no credentials were sent");
    // With --tls none it goes ahead (and warns).
    let server = serve(&messages(), false);
    let dest = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("fetch")
        .arg(format!("pop3://alice@127.0.0.1:{}", server.port))
        .args([
            "--tls",
            "none",
            "--password-env",
            "PW",
            "--keep",
            "--maildir",
        ])
        .arg(dest.path())
        .env("PW", "secret")
        .output()
        .unwrap();
    // Our server refuses plaintext passwords without TLS unless configured: SCRAM still works.
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning"));
    assert_eq!(stored(dest.path()).len(), 3);
}

#[test]
fn failures_give_a_clear_error_and_nonzero_status() {
    let server = serve(&messages(), true);
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path().to_str().unwrap().to_string();
    let ca = server.cert();
    // Wrong password.
    let out = Command::new(BIN)
        .args([
            "fetch",
            &format!("pop3s://alice@127.0.0.1:{}", server.tls_port),
            "--ca-file",
            ca.to_str().unwrap(),
            "--password-env",
            "BAD",
            "--maildir",
            &d,
        ])
        .env("BAD", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("login failed"),
        "{out:?}"
    );
    // Unknown host.
    let out = fetch(&[
        "pop3s://alice@nonexistent.invalid",
        "--password-env",
        "PW",
        "--maildir",
        &d,
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect"),
        "{out:?}"
    );
    // TLS refused: implicit TLS against the plain port, and an unverifiable certificate.
    let out = fetch(&[
        &format!("pop3s://alice@127.0.0.1:{}", server.port),
        "--ca-file",
        ca.to_str().unwrap(),
        "--password-env",
        "PW",
        "--maildir",
        &d,
    ]);
    assert!(!out.status.success());
    let out = fetch(&[
        &format!("pop3s://alice@127.0.0.1:{}", server.tls_port),
        "--password-env",
        "PW",
        "--maildir",
        &d,
    ]);
    assert!(
        !out.status.success(),
        "a self-signed certificate is not trusted by default"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect"),
        "{out:?}"
    );
    assert_eq!(server.count(), 3);
    // A server that drops in the middle of a message: nothing partial is stored.
    let (port, t) = scripted(
        "+OK hi\r\n",
        vec![
            "+OK\r\nUSER\r\nUIDL\r\n.\r\n",
            "+OK\r\n",
            "+OK\r\n",
            "+OK 1 messages\r\n1 5000\r\n.\r\n",
            "+OK\r\n1 only-one\r\n.\r\n",
            "+OK 5000 octets\r\nSubject: cut\r\n\r\nthe message goes on",
        ],
    );
    let dest2 = tempfile::tempdir().unwrap();
    let out = fetch(&[
        &format!("pop3://alice@127.0.0.1:{port}"),
        "--tls",
        "none",
        "--password-env",
        "PW",
        "--maildir",
        dest2.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("retrieving messages"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = t.join().unwrap();
    assert!(!seen.iter().any(|l| l.starts_with("DELE")), "{seen:?}");
    assert!(stored(dest2.path()).is_empty());
    assert_eq!(
        std::fs::read_dir(dest2.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn demo_starts_and_answers() {
    let cwd = tempfile::tempdir().unwrap();
    let (p, t) = (free_port(), free_port());
    let mut child = Command::new(BIN)
        .arg("serve")
        .current_dir(cwd.path())
        .env("POP3_DEMO_LISTEN", format!("127.0.0.1:{p}"))
        .env("POP3_DEMO_TLS_LISTEN", format!("127.0.0.1:{t}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(p);
    wait_for_port(t);
    let mut s = TcpStream::connect(("127.0.0.1", p)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"CAPA\r\nQUIT\r\n").unwrap();
    let mut reply = String::new();
    let _ = BufReader::new(s).read_to_string(&mut reply);
    assert!(reply.starts_with("+OK"), "{reply}");
    assert!(
        reply.contains("\r\nSTLS\r\n") && reply.contains("\r\nUSER\r\n"),
        "{reply}"
    );
    // The printed fetch command works (with the demo's ports).
    let dest = cwd.path().join("fetched");
    let out = Command::new(BIN)
        .current_dir(cwd.path())
        .args([
            "fetch",
            &format!("pop3s://demo@127.0.0.1:{t}"),
            "--ca-file",
            "pop3-demo/cert.pem",
            "--password-env",
            "DEMO_PASSWORD",
            "--keep",
            "--maildir",
        ])
        .arg(&dest)
        .env("DEMO_PASSWORD", "demo")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stored(&dest).len(), 3);
    // SIGTERM: a graceful stop.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(
        stdout.contains("curl --cacert pop3-demo/cert.pem pop3s://127.0.0.1:"),
        "{stdout}"
    );
    assert!(stdout.contains("fetch pop3s://demo@127.0.0.1:"), "{stdout}");
}
