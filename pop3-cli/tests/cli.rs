//! End-to-end tests of the `pop3` binary on 127.0.0.1. Every child process runs under a time
//! limit and is killed past it.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pop3");
mod support;
use pop3_interop::free_port;
use support::run;

const LIMIT: Duration = Duration::from_secs(60);

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
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

/// Starts `pop3 serve` over a Maildir holding `messages` (LF line ends, as stored); with `tls`,
/// a certificate (STLS on the plain port) and an implicit-TLS port.
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
    let server = Server {
        child,
        port,
        tls_port,
        dir,
    };
    support::wait_for_listener(port);
    if tls {
        support::wait_for_listener(tls_port);
    }
    server
}

/// `pop3 fetch ARGS` with the password `secret` in `$PW`.
fn fetch(args: &[&str]) -> Output {
    run(Command::new(BIN)
        .arg("fetch")
        .args(args)
        .env("PW", "secret"))
}

/// The messages in a Maildir's `new/`, sorted by file name (that is, by arrival).
fn stored(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir.join("new"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn count_new(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("new")).map_or(0, |d| d.count())
}

fn messages() -> Vec<Vec<u8>> {
    vec![
        b"Return-Path: <bounces@example.com>\nFrom: a@example.com\nSubject: one\n\nhello\n.leading dot\n.\nFrom the start\n>From quoted\n>>From twice\n".to_vec(),
        b"From: Bob <bob@example.com>\nSubject: two\n\nsecond\n".to_vec(),
        b"Subject: three\n\n\xc3\xa9t\xc3\xa9 8-bit\nno final line end".to_vec(),
    ]
}

/// Reads an mboxrd file back: (separator line, message) pairs, the `>` added before
/// `>*From ` removed and the blank line that ends each message dropped.
fn read_mboxrd(text: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for line in text.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            out.push((
                String::from_utf8_lossy(line).trim_end().to_string(),
                Vec::new(),
            ));
            continue;
        }
        let body = &mut out.last_mut().expect("text before the first From line").1;
        let unquoted = match line.iter().position(|&b| b != b'>') {
            Some(i) if i > 0 && line[i..].starts_with(b"From ") => &line[1..],
            _ => line,
        };
        body.extend_from_slice(unquoted);
    }
    for (_, m) in &mut out {
        assert!(
            m.ends_with(b"\n\n") || m == b"\n",
            "a message without its blank line"
        );
        m.pop();
    }
    out
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
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("3 messages fetched"), "{out:?}");
    // Stored as on the server, byte for byte (LF line ends on disk; the last message had
    // no final line end and POP3 adds one).
    let mut want = msgs.clone();
    want[2].push(b'\n');
    assert_eq!(stored(&md), want);
    assert_eq!(
        server.count(),
        0,
        "fetched messages are deleted from the server"
    );
    assert_eq!(std::fs::read_dir(md.join("tmp")).unwrap().count(), 0);
    drop(server);

    // mbox (mboxrd), through STLS (the default for pop3://), appended to an existing mbox.
    let server = serve(&msgs, true);
    let mbox = dest.path().join("mbox");
    let old = b"From someone Thu Jan  1 00:00:00 1970\nSubject: old\n\nold mail, no blank line at the end\n";
    std::fs::write(&mbox, old).unwrap();
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
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "--quiet prints nothing: {out:?}");
    let text = std::fs::read(&mbox).unwrap();
    assert!(!text.contains(&b'\r'), "LF line ends in the mbox");
    let raw = String::from_utf8_lossy(&text);
    assert!(
        raw.contains(
            "\nhello\n.leading dot\n.\n>From the start\n>>From quoted\n>>>From twice\n\nFrom "
        ),
        "{raw}"
    );
    let got = read_mboxrd(&text);
    assert_eq!(got.len(), 4, "{raw}");
    assert_eq!(
        got[0].1,
        &old[old.iter().position(|&b| b == b'\n').unwrap() + 1..]
    );
    let bodies: Vec<Vec<u8>> = got[1..].iter().map(|(_, m)| m.clone()).collect();
    assert_eq!(bodies, want);
    let senders: Vec<&str> = got[1..]
        .iter()
        .map(|(sep, _)| sep.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(
        senders,
        ["bounces@example.com", "bob@example.com", "MAILER-DAEMON"]
    );
    assert_eq!(server.count(), 0);
}

#[test]
fn keep_twice_fetches_nothing_new() {
    let server = serve(&messages(), true);
    let dest = tempfile::tempdir().unwrap();
    let url = format!("pop3s://alice@127.0.0.1:{}", server.tls_port);
    let ca = server.cert();
    let pw_file = server.dir.path().join("pw");
    std::fs::write(&pw_file, "secret\n").unwrap();
    // The same fetch, with the password from each source in turn.
    let with = |secret: &[&str]| {
        let mut args = vec![
            &url[..],
            "--ca-file",
            ca.to_str().unwrap(),
            "--keep",
            "--maildir",
            dest.path().to_str().unwrap(),
        ];
        args.extend_from_slice(secret);
        fetch(&args)
    };
    let first = with(&["--password-env", "PW"]);
    assert!(first.status.success(), "{first:?}");
    assert!(
        stdout(&first).starts_with("3 messages fetched"),
        "{first:?}"
    );
    let second = with(&["--password-command", "echo secret"]);
    assert!(second.status.success(), "{second:?}");
    assert!(
        stdout(&second).starts_with("0 messages fetched"),
        "{second:?}"
    );
    assert_eq!(stored(dest.path()).len(), 3);
    assert_eq!(server.count(), 3, "--keep leaves them on the server");
    // A new message arrives: only it is fetched.
    std::fs::write(
        server.maildir().join("new/1800000000.M1P1.new"),
        b"Subject: new\n\nnew\n",
    )
    .unwrap();
    let third = with(&["--password-file", pw_file.to_str().unwrap()]);
    assert!(
        stdout(&third).starts_with("1 messages fetched"),
        "{third:?}"
    );
    assert_eq!(stored(dest.path()).len(), 4);
    // The record is beside the destination.
    assert!(dest.path().join(".pop3-uidl-127.0.0.1-alice").exists());
    // Two password sources at once are refused.
    let both = with(&["--password-env", "PW", "--password-command", "echo secret"]);
    assert!(!both.status.success());
}

#[test]
fn limit_fetches_at_most_n() {
    let server = serve(&messages(), true);
    let dest = tempfile::tempdir().unwrap();
    let out = fetch(&[
        &format!("pop3s://alice@127.0.0.1:{}", server.tls_port),
        "--ca-file",
        server.cert().to_str().unwrap(),
        "--password-env",
        "PW",
        "--limit",
        "2",
        "--maildir",
        dest.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stored(dest.path()).len(), 2);
    assert_eq!(server.count(), 1);
}

/// Runs a fetch of 500 messages and SIGKILLs it at several points (while connecting, after
/// some messages are stored, once all are stored but before the QUIT can have happened), then
/// runs it to the end: every message exactly once, the server empty.
fn sigkill_run(mbox: bool) {
    let msgs: Vec<Vec<u8>> = (0..500)
        .map(|i| {
            format!(
                "Subject: message {i}\n\n{}\n",
                format!("body of message {i} ").repeat(100 + i % 50)
            )
            .into_bytes()
        })
        .collect();
    let server = serve(&msgs, true);
    let dest = tempfile::tempdir().unwrap();
    let target = if mbox {
        dest.path().join("mbox")
    } else {
        dest.path().to_path_buf()
    };
    let url = format!("pop3s://alice@127.0.0.1:{}", server.tls_port);
    let ca = server.cert();
    let args = [
        &url[..],
        "--ca-file",
        ca.to_str().unwrap(),
        "--password-env",
        "PW",
        "--quiet",
        if mbox { "--mbox" } else { "--maildir" },
        target.to_str().unwrap(),
    ];
    // How far the destination got: files in new/, or separator lines in the mbox.
    let progress = || {
        if mbox {
            std::fs::read(&target).map_or(0, |t| {
                t.split(|&b| b == b'\n')
                    .filter(|l| l.starts_with(b"From "))
                    .count()
            })
        } else {
            count_new(&target)
        }
    };
    // Kill points: a time (during the TLS handshake or login), then message counts.
    let mut kills = 0;
    for point in [None, Some(60), Some(200), Some(330), Some(470), Some(500)] {
        let mut child = Command::new(BIN)
            .arg("fetch")
            .args(args)
            .env("PW", "secret")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let due = match point {
                None => start.elapsed() > Duration::from_millis(20),
                Some(n) => progress() >= n,
            };
            if due {
                let _ = child.kill(); // SIGKILL
                kills += 1;
                break;
            }
            assert!(start.elapsed() < LIMIT, "the fetch hangs");
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.wait();
    }
    assert!(kills >= 3, "the kills must land inside the fetch ({kills})");
    let last = fetch(&args);
    assert!(last.status.success(), "{}", stderr(&last));
    let got: Vec<Vec<u8>> = if mbox {
        read_mboxrd(&std::fs::read(&target).unwrap())
            .into_iter()
            .map(|(_, m)| m)
            .collect()
    } else {
        assert_eq!(
            std::fs::read_dir(target.join("tmp")).unwrap().count(),
            0,
            "nothing partial left in tmp/"
        );
        stored(&target)
    };
    let unique: HashSet<&Vec<u8>> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "a message was stored twice");
    let want: HashSet<&Vec<u8>> = msgs.iter().collect();
    assert_eq!(unique, want, "every message exactly once");
    assert_eq!(server.count(), 0, "the server is emptied");
}

#[test]
fn sigkill_at_several_points_loses_nothing_and_duplicates_nothing_maildir() {
    sigkill_run(false);
}

#[test]
fn sigkill_at_several_points_loses_nothing_and_duplicates_nothing_mbox() {
    sigkill_run(true);
}

/// A scripted server: sends `script` replies in order, one per line the client sends (after
/// the greeting), and returns what the client sent.
fn scripted(
    greeting: &'static str,
    script: Vec<&'static str>,
) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        // Bounded: a client that never comes ends the script with nothing seen.
        l.set_nonblocking(true).unwrap();
        let start = Instant::now();
        let mut s = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(_) if start.elapsed() < Duration::from_secs(20) => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return Vec::new(),
            }
        };
        s.set_nonblocking(false).unwrap();
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
        // Drop the connection, reading whatever was still sent.
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut rest = String::new();
        let _ = r.read_to_string(&mut rest);
        seen.extend(rest.lines().map(str::to_string));
        seen
    });
    (port, t)
}

#[test]
fn plaintext_is_refused_unless_tls_none() {
    let (port, t) = scripted("+OK hi\r\n", vec!["+OK\r\nUSER\r\nUIDL\r\n.\r\n"]);
    let dest = tempfile::tempdir().unwrap();
    let out = fetch(&[
        &format!("pop3://alice@127.0.0.1:{port}"),
        "--password-env",
        "PW",
        "--maildir",
        dest.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does not offer STLS"),
        "{}",
        stderr(&out)
    );
    let seen = t.join().unwrap();
    assert_eq!(seen, ["CAPA"], "no credentials were sent");
    // With --tls none it goes ahead (and warns).
    let server = serve(&messages(), false);
    let dest = tempfile::tempdir().unwrap();
    let out = fetch(&[
        &format!("pop3://alice@127.0.0.1:{}", server.port),
        "--tls",
        "none",
        "--password-env",
        "PW",
        "--keep",
        "--maildir",
        dest.path().to_str().unwrap(),
    ]);
    // Our server refuses plaintext passwords without TLS (no --allow-plaintext-auth), so this
    // also shows that SCRAM-SHA-256 is chosen from CAPA.
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: --tls none"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stored(dest.path()).len(), 3);
    // Naming PLAIN in the URL forces it, and this server refuses it without TLS.
    let out = fetch(&[
        &format!("pop3://alice;AUTH=PLAIN@127.0.0.1:{}", server.port),
        "--tls",
        "none",
        "--password-env",
        "PW",
        "--maildir",
        dest.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("login failed"), "{}", stderr(&out));
}

#[test]
fn failures_give_a_clear_error_and_nonzero_status() {
    let server = serve(&messages(), true);
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path().to_str().unwrap().to_string();
    let ca = server.cert();
    let tls_url = format!("pop3s://alice@127.0.0.1:{}", server.tls_port);
    // Wrong password.
    let out = run(Command::new(BIN)
        .args(["fetch", &tls_url, "--ca-file", ca.to_str().unwrap()])
        .args(["--password-env", "BAD", "--maildir", &d])
        .env("BAD", "wrong"));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("login failed"), "{}", stderr(&out));
    // No password source and stdin not a terminal.
    let out = fetch(&[&tls_url, "--ca-file", ca.to_str().unwrap(), "--maildir", &d]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no password"), "{}", stderr(&out));
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
        stderr(&out).contains("cannot connect to nonexistent.invalid:995"),
        "{}",
        stderr(&out)
    );
    // TLS refused: implicit TLS against the plain port.
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
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));
    // An unverifiable certificate (self-signed, not trusted by default).
    let out = fetch(&[&tls_url, "--password-env", "PW", "--maildir", &d]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("certificate"), "{}", stderr(&out));
    // ... which --insecure accepts, with a warning.
    let out = fetch(&[
        &tls_url,
        "--insecure",
        "--keep",
        "--password-env",
        "PW",
        "--maildir",
        &d,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: --insecure"),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.count(), 3);
    // STLS offered but refused by the server.
    let (port, t) = scripted(
        "+OK hi\r\n",
        vec!["+OK\r\nSTLS\r\nUSER\r\n.\r\n", "-ERR not today\r\n"],
    );
    let out = fetch(&[
        &format!("pop3://alice@127.0.0.1:{port}"),
        "--password-env",
        "PW",
        "--maildir",
        &d,
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not today"), "{}", stderr(&out));
    assert!(
        !t.join()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("USER") || l.starts_with("AUTH"))
    );
}

/// The server sends half a message and hangs up.
fn drop_mid_message(mbox: bool) {
    let (port, t) = scripted(
        "+OK hi\r\n",
        vec![
            "+OK\r\nUSER\r\nUIDL\r\n.\r\n",
            "+OK\r\n",
            "+OK\r\n",
            "+OK 2 messages\r\n1 20\r\n2 5000\r\n.\r\n",
            "+OK\r\n1 first\r\n2 second\r\n.\r\n",
            "+OK 20 octets\r\nSubject: ok\r\n\r\nfine\r\n.\r\n",
            "+OK 5000 octets\r\nSubject: cut\r\n\r\nthe message goes on",
        ],
    );
    let dest = tempfile::tempdir().unwrap();
    let target = dest.path().join("dest");
    let out = fetch(&[
        &format!("pop3://alice@127.0.0.1:{port}"),
        "--tls",
        "none",
        "--password-env",
        "PW",
        if mbox { "--mbox" } else { "--maildir" },
        target.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("retrieving messages") && stderr(&out).contains("closed"),
        "{}",
        stderr(&out)
    );
    let seen = t.join().unwrap();
    assert!(!seen.iter().any(|l| l.starts_with("DELE")), "{seen:?}");
    // The complete first message is kept, nothing of the second.
    if mbox {
        let got = read_mboxrd(&std::fs::read(&target).unwrap());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, b"Subject: ok\n\nfine\n");
    } else {
        assert_eq!(stored(&target), [b"Subject: ok\n\nfine\n".to_vec()]);
        assert_eq!(std::fs::read_dir(target.join("tmp")).unwrap().count(), 0);
    }
}

#[test]
fn server_dropping_mid_message_is_an_error_and_stores_nothing_partial() {
    drop_mid_message(false);
    drop_mid_message(true);
}

#[test]
fn bad_urls_are_refused() {
    let dest = tempfile::tempdir().unwrap();
    for url in [
        "imap://alice@127.0.0.1",
        "pop3://alice:pw@127.0.0.1",
        "pop3://alice%0d%0aDELE 1@127.0.0.1",
        "pop3://alice@127.0.0.1:99999",
    ] {
        let out = fetch(&[
            url,
            "--password-env",
            "PW",
            "--maildir",
            dest.path().to_str().unwrap(),
        ]);
        assert!(!out.status.success(), "{url}");
        assert!(
            stderr(&out).contains("invalid URL"),
            "{url}: {}",
            stderr(&out)
        );
    }
}

/// A child's stdout, line by line, read on a thread so that waiting is bounded.
struct Lines(std::sync::mpsc::Receiver<String>);

impl Lines {
    fn new(r: impl Read + Send + 'static) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines(rx)
    }

    /// Lines until one matches `pred` (included); fails after 20 s or at the end.
    fn until(&self, mut pred: impl FnMut(&str) -> bool) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self
                .0
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|e| panic!("{e}: no line matched in {lines:?}"));
            let done = pred(&line);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }
}

/// Sends `signal` to the child and waits for it to end (at most 20 s).
fn stop(child: &mut Child, signal: &str) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "serve did not stop on {signal}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A raw POP3 exchange: sends `lines` one at a time, returning each first reply line.
fn converse(s: &mut TcpStream, r: &mut impl BufRead, lines: &[&str]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            s.write_all(format!("{l}\r\n").as_bytes()).unwrap();
            let mut reply = String::new();
            r.read_line(&mut reply).unwrap();
            reply.trim_end().to_string()
        })
        .collect()
}

/// The demo, as `pop3 serve` with no arguments sets it up (ports moved by the environment,
/// since 1110/1995 may be taken): it answers, the curl and fetch commands it prints work,
/// and SIGTERM stops it without committing a session that did not QUIT.
#[test]
fn demo_starts_answers_and_its_printed_commands_work() {
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
    let out = Lines::new(child.stdout.take().unwrap());
    let printed = out.until(|l| l.contains("Ctrl-C"));
    support::wait_for_listener(p);
    support::wait_for_listener(t);
    assert!(cwd.path().join("pop3-demo/users").exists());
    assert!(cwd.path().join("pop3-demo/cert.pem").exists());

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

    let curl = printed
        .iter()
        .find(|l| l.trim_start().starts_with("curl "))
        .unwrap();
    assert!(curl.contains(&format!("pop3://127.0.0.1:{p}/1")), "{curl}");
    if Command::new("curl").arg("--version").output().is_ok() {
        let out = run(Command::new("sh")
            .args(["-c", curl])
            .current_dir(cwd.path()));
        assert!(out.status.success(), "{curl}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("Subject: Welcome to pop3"),
            "{}",
            stdout(&out)
        );
    }
    let fetch_cmd = printed
        .iter()
        .find(|l| l.contains(" fetch pop3s://demo@"))
        .unwrap();
    assert!(fetch_cmd.contains(BIN), "{fetch_cmd}");
    let out = run(Command::new("sh")
        .args(["-c", fetch_cmd])
        .current_dir(cwd.path()));
    assert!(out.status.success(), "{fetch_cmd}: {}", stderr(&out));
    assert!(
        stdout(&out).starts_with("3 messages fetched"),
        "{}",
        stdout(&out)
    );
    assert_eq!(stored(&cwd.path().join("mail")).len(), 3);

    // A session that marks a message deleted and never QUITs; then SIGTERM.
    let mut s = TcpStream::connect(("127.0.0.1", p)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut greeting = String::new();
    r.read_line(&mut greeting).unwrap();
    let replies = converse(&mut s, &mut r, &["USER demo", "PASS demo", "DELE 1"]);
    assert!(replies.iter().all(|l| l.starts_with("+OK")), "{replies:?}");
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the open session is given time"
    );
    // The second signal ends it at once.
    assert!(stop(&mut child, "-TERM").success());
    assert_eq!(
        count_new(&cwd.path().join("pop3-demo/mail/demo")),
        3,
        "DELE without QUIT"
    );

    // A second start reuses the demo as it is.
    let mut child = Command::new(BIN)
        .arg("serve")
        .current_dir(cwd.path())
        .env("POP3_DEMO_LISTEN", format!("127.0.0.1:{p}"))
        .env("POP3_DEMO_TLS_LISTEN", format!("127.0.0.1:{t}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = Lines::new(child.stdout.take().unwrap());
    let printed = out.until(|l| l.contains("Ctrl-C"));
    assert!(printed[0].contains("3 messages"), "{printed:?}");
    assert!(stop(&mut child, "-INT").success());
}

/// The demo on its real ports, when they are free here.
#[test]
fn demo_on_default_ports() {
    if TcpListener::bind("127.0.0.1:1110").is_err() || TcpListener::bind("127.0.0.1:1995").is_err()
    {
        eprintln!("ports 1110/1995 are busy: the demo is tested on other ports only");
        return;
    }
    let cwd = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .arg("serve")
        .current_dir(cwd.path())
        .env_remove("POP3_DEMO_LISTEN")
        .env_remove("POP3_DEMO_TLS_LISTEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = Lines::new(child.stdout.take().unwrap());
    let printed = out.until(|l| l.contains("Ctrl-C"));
    assert!(
        printed
            .iter()
            .any(|l| l.contains("curl -k --ssl-reqd pop3://127.0.0.1:1110/1 -u demo:demo")),
        "{printed:?}"
    );
    let out = run(Command::new(BIN)
        .args([
            "fetch",
            "pop3s://demo@127.0.0.1:1995",
            "--insecure",
            "--keep",
        ])
        .args(["--password-env", "DEMO_PASSWORD", "--mbox", "demo.mbox"])
        .current_dir(cwd.path())
        .env("DEMO_PASSWORD", "demo"));
    assert!(out.status.success(), "{}", stderr(&out));
    let mbox = read_mboxrd(&std::fs::read(cwd.path().join("demo.mbox")).unwrap());
    assert_eq!(mbox.len(), 3);
    assert!(stop(&mut child, "-TERM").success());
}

/// `pop3 serve` started with a low soft open-files limit (as daemons are, at 1024) raises it to
/// the hard limit, and warns when even that holds fewer sessions than `--max-connections`.
#[cfg(target_os = "linux")]
#[test]
fn serve_raises_the_open_files_limit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("mail")).unwrap();
    std::fs::write(dir.path().join("users"), "alice:{PLAIN}secret\n").unwrap();
    let port = free_port();
    // `exec` keeps the pid, so /proc/<pid>/limits is the server's.
    let mut child = Command::new("sh")
        .args(["-c", r#"ulimit -Sn 256 && exec "$@""#, "sh", BIN, "serve"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--maildir-root")
        .arg(dir.path().join("mail"))
        .arg("--users")
        .arg(dir.path().join("users"))
        .args(["--max-connections", "100000000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Lines::new(child.stderr.take().unwrap());
    let printed = log.until(|l| l.contains("listening"));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string();
    assert!(stop(&mut child, "-TERM").success());
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    assert_eq!(soft, hard, "{line}");
    assert_ne!(soft, "256", "{line}");
    // No machine has 200 million descriptors to give: the operator is told.
    assert!(
        printed
            .iter()
            .any(|l| l.contains("fewer sessions than --max-connections")),
        "{printed:?}"
    );
}
