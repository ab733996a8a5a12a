//! Real servers that `pop3 fetch`'s forward target delivers to, each started by a test on
//! 127.0.0.1 in a temporary directory and killed on drop: Dovecot's LMTP server
//! ([`DovecotLmtp`]) and Python's aiosmtpd as an SMTP server ([`Aiosmtpd`]). Included by the
//! integration tests with `#[path = "support/peers.rs"] mod peers;`, and by the forward
//! target's unit tests (`src/target/forward/tests.rs`) with
//! `#[path = "../../../tests/support/peers.rs"] mod peers;`.
//!
//! The Dovecot here runs as `support/dovecot_imap.rs`'s IMAP one and pop3-interop's POP3 one
//! do (the same `default_*_user` lines as root or not, the same `base_dir`/`state_dir`/log
//! lines); each writes its own configuration, as the three differ in everything else.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pop3_interop::{DovecotUsers, dovecot_users, find_program, free_port, set_mode};

/// Starts `cmd` in the background, its standard error in `dir/stderr`, and waits (up to
/// 30 s) until it accepts connections on 127.0.0.1:`port`; panics with `log(dir)` if it exits
/// first or nothing listens in time.
fn spawn_listening(cmd: &mut Command, dir: &Path, port: u16, log: fn(&Path) -> String) -> Child {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{cmd:?} exited ({status}):\n{}", log(dir));
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nothing listens on {port}:\n{}",
            log(dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// `dir/stderr`.
fn stderr_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("stderr")).unwrap_or_default()
}

/// A private Dovecot serving LMTP only, killed on drop: on 127.0.0.1:[`DovecotLmtp::port`]
/// and on the Unix socket [`DovecotLmtp::socket`], for the user `alice` (any domain; the
/// local part is the user) whose Maildir is [`DovecotLmtp::maildir`]. As root the mail is
/// written as uid 65534 (Dovecot refuses uid 0), as pop3-interop's Dovecot does.
pub(crate) struct DovecotLmtp {
    child: Child,
    dir: tempfile::TempDir,
    pub(crate) port: u16,
}

impl DovecotLmtp {
    /// `None` when Dovecot's LMTP server is not installed.
    pub(crate) fn start() -> Option<DovecotLmtp> {
        let dovecot = find_program("dovecot")?;
        if !Path::new("/usr/lib/dovecot/lmtp").exists() {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("pop3-lmtp-dovecot")
            .tempdir()
            .unwrap();
        let d = dir.path();
        set_mode(d, 0o755);
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let DovecotUsers {
            settings: users,
            uid,
            gid,
        } = dovecot_users(&d.join("mail"));
        let p = d.display();
        std::fs::write(
            d.join("passwd"),
            format!("alice:{{PLAIN}}pw:{uid}:{gid}::{p}/mail/alice::\n"),
        )
        .unwrap();
        let port = free_port();
        let conf = format!(
            "base_dir = {p}/run\nstate_dir = {p}/state\nlog_path = {p}/dovecot.log\n\
             info_log_path = {p}/dovecot.log\n\
             protocols = lmtp\nlisten = 127.0.0.1\n{users}first_valid_uid = 1\nfirst_valid_gid = 1\n\
             ssl = no\nauth_username_format = %Ln\n\
             mail_location = maildir:{p}/mail/%n\n\
             passdb {{\n  driver = passwd-file\n  args = {p}/passwd\n}}\n\
             userdb {{\n  driver = passwd-file\n  args = {p}/passwd\n}}\n\
             service lmtp {{\n  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n"
        );
        std::fs::write(d.join("dovecot.conf"), conf).unwrap();
        let child = spawn_listening(
            Command::new(dovecot)
                .args(["-F", "-c"])
                .arg(d.join("dovecot.conf")),
            d,
            port,
            dovecot_log,
        );
        Some(DovecotLmtp { child, dir, port })
    }

    /// The LMTP Unix socket.
    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.path().join("run/lmtp")
    }

    /// Dovecot's log and standard error.
    pub(crate) fn log(&self) -> String {
        dovecot_log(self.dir.path())
    }

    /// alice's Maildir.
    pub(crate) fn maildir(&self) -> PathBuf {
        self.dir.path().join("mail/alice")
    }

    /// alice's messages in `new/` as stored (Dovecot's three header fields first), oldest
    /// first; none before the first delivery made the Maildir.
    pub(crate) fn delivered(&self) -> Vec<Vec<u8>> {
        let mut files: Vec<(std::time::SystemTime, String, Vec<u8>)> =
            std::fs::read_dir(self.maildir().join("new"))
                .map(|d| {
                    d.map(|e| {
                        let e = e.unwrap();
                        (
                            e.metadata().unwrap().modified().unwrap(),
                            e.file_name().to_string_lossy().into_owned(),
                            std::fs::read(e.path()).unwrap(),
                        )
                    })
                    .collect()
                })
                .unwrap_or_default();
        files.sort();
        files.into_iter().map(|(_, _, m)| m).collect()
    }
}

impl Drop for DovecotLmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `dir/dovecot.log` and `dir/stderr`.
fn dovecot_log(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default();
    format!("{log}{}", stderr_log(dir))
}

/// Splits what Dovecot stored into the three header fields it puts first (`Return-Path:`,
/// `Delivered-To:`, then `Received:` with its continuation lines) and the message after
/// them. Panics if they are not there, in that order.
pub(crate) fn dovecot_added(stored: &[u8]) -> (String, &[u8]) {
    let line_end = |at: usize| {
        stored[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(stored.len(), |i| at + i + 1)
    };
    let mut at = 0;
    for field in ["Return-Path: ", "Delivered-To: ", "Received: "] {
        assert!(
            stored[at..].starts_with(field.as_bytes()),
            "no {field}at {at}: {}",
            String::from_utf8_lossy(stored)
        );
        at = line_end(at);
    }
    while stored[at..].starts_with(b"\t") || stored[at..].starts_with(b" ") {
        at = line_end(at);
    }
    (
        String::from_utf8_lossy(&stored[..at]).into_owned(),
        &stored[at..],
    )
}

/// What Dovecot stored of a message `pop3 fetch` forwarded to alice (with the null sender,
/// as it forwards every message) with Dovecot's three header fields taken off; panics
/// unless they are `Return-Path: <>`, `Delivered-To: alice@example.org` and a `Received:`.
pub(crate) fn forwarded_to_alice(stored: &[u8]) -> Vec<u8> {
    let (added, rest) = dovecot_added(stored);
    assert!(
        added.starts_with("Return-Path: <>\nDelivered-To: alice@example.org\nReceived: "),
        "{}",
        String::from_utf8_lossy(stored)
    );
    rest.to_vec()
}

/// Python's aiosmtpd on 127.0.0.1, killed on drop: it stores each message's data as
/// received (`NNNN.eml`, through a temporary file renamed, before it answers `250`) with
/// its envelope (`NNNN.env`: the sender, the recipients, `tls` or `plain`); it answers `451`
/// to `RCPT TO:<busy@…>` and `550` to `RCPT TO:<nobody@…>`.
pub(crate) struct Aiosmtpd {
    child: Child,
    dir: tempfile::TempDir,
    pub(crate) port: u16,
    /// The server's self-signed certificate (PEM), for TLS.
    pub(crate) cert_pem: String,
}

const SINK_PY: &str = r#"
import os, ssl, sys, time
from aiosmtpd.controller import Controller

out, port, mode, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]

class Handler:
    n = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split('@')[0]
        if local == 'busy':
            return '451 4.2.1 mailbox busy, try later'
        if local == 'nobody':
            return '550 5.1.1 no such user here'
        envelope.rcpt_tos.append(address)
        return '250 2.1.5 OK'

    async def handle_DATA(self, server, session, envelope):
        Handler.n += 1
        base = os.path.join(out, '%04d' % Handler.n)
        with open(base + '.env', 'w') as f:
            f.write('%s\n%s\n%s\n' % (envelope.mail_from, ' '.join(envelope.rcpt_tos),
                                      'tls' if server.transport.get_extra_info('ssl_object') else 'plain'))
        with open(base + '.tmp', 'wb') as f:
            f.write(envelope.original_content)
        os.rename(base + '.tmp', base + '.eml')
        return '250 2.0.0 queued as %d' % Handler.n

ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
kw = {}
if mode == 'starttls':
    kw = dict(tls_context=ctx, require_starttls=True)
elif mode == 'smtps':
    kw = dict(ssl_context=ctx)
controller = Controller(Handler(), hostname='127.0.0.1', port=port, **kw)
controller.start()
while True:
    time.sleep(3600)
"#;

impl Aiosmtpd {
    /// `mode`: `plain`, `starttls` (offered and required) or `smtps`. `None` when aiosmtpd
    /// is not installed.
    pub(crate) fn start(mode: &str) -> Option<Aiosmtpd> {
        let probe = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status();
        if !probe.is_ok_and(|s| s.success()) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let tls =
            pop3_tls::self_signed(&["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        std::fs::write(d.join("cert.pem"), &tls.cert_pem).unwrap();
        std::fs::write(d.join("key.pem"), &tls.key_pem).unwrap();
        std::fs::write(d.join("sink.py"), SINK_PY).unwrap();
        std::fs::create_dir(d.join("out")).unwrap();
        let port = free_port();
        let child = spawn_listening(
            Command::new("python3")
                .arg(d.join("sink.py"))
                .arg(d.join("out"))
                .arg(port.to_string())
                .arg(mode)
                .arg(d.join("cert.pem"))
                .arg(d.join("key.pem")),
            d,
            port,
            stderr_log,
        );
        Some(Aiosmtpd {
            child,
            dir,
            port,
            cert_pem: tls.cert_pem,
        })
    }

    /// The server's standard error.
    pub(crate) fn log(&self) -> String {
        stderr_log(self.dir.path())
    }

    /// The files of the messages received (each whole: renamed into place once written),
    /// in order.
    pub(crate) fn message_files(&self) -> Vec<PathBuf> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("out"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        names.sort();
        names
    }

    /// Each message received, in order: (its data, its envelope lines).
    pub(crate) fn received(&self) -> Vec<(Vec<u8>, Vec<String>)> {
        self.message_files()
            .iter()
            .map(|p| {
                let env = std::fs::read_to_string(p.with_extension("env")).unwrap();
                (
                    std::fs::read(p).unwrap(),
                    env.lines().map(str::to_string).collect(),
                )
            })
            .collect()
    }
}

impl Drop for Aiosmtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
