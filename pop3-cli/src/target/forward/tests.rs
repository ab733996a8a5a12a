//! The forward target against real servers on 127.0.0.1: Dovecot's LMTP (`dovecot-lmtpd`)
//! over TCP and its Unix socket, and Python's aiosmtpd as an SMTP server (in the clear,
//! with `STARTTLS`, and with implicit TLS), plus a scripted server that hangs up before
//! answering. A test whose server is not installed says so and passes.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::Path as FsPath;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use super::*;

fn owner(dir: &FsPath) -> Owner<'_> {
    Owner {
        host: "pop.example",
        user: "u",
        account: "a",
        state_dir: dir,
    }
}

fn lmtp(url: &str, recipient: &str) -> TargetSpec {
    TargetSpec::Lmtp {
        url: url.into(),
        recipient: recipient.into(),
    }
}

fn smtp(url: &str, recipient: &str) -> TargetSpec {
    TargetSpec::Smtp {
        url: url.into(),
        recipient: recipient.into(),
    }
}

/// Streams `text` (as POP3 gives it: CRLF, unstuffed) through the target in small pieces.
fn deliver(t: &mut Forward, key: &str, text: &[u8]) -> io::Result<Outcome> {
    t.begin(&MessageInfo {
        key,
        uidl: Some(key),
        size: text.len() as u64,
    })?;
    for chunk in text.chunks(7) {
        t.write(chunk)?;
    }
    t.finish()
}

fn free_port() -> u16 {
    pop3_interop::free_port()
}

fn wait_for_port(port: u16, child: &mut Child, log: &dyn Fn() -> String) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the server exited ({status}):\n{}", log());
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nothing listens on {port}:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Messages as a POP3 server hands them over, with what a careless forwarder would break:
/// lines that begin with a dot (one a lone dot), a bare CR, 8-bit text, a line of 998 octets (RFC 5321's most), and a
/// `Return-Path:`.
fn messages() -> Vec<Vec<u8>> {
    vec![
        b"Return-Path: <bounce+1@lists.example>\r\nFrom: a@example.org\r\nSubject: dots\r\n\r\n.\r\n..\r\n.leading dot\r\nend\r\n"
            .to_vec(),
        [
            &b"From: b@example.org\r\nSubject: 8bit \xc3\xa9t\xc3\xa9\r\n\r\nbare\rCR and caf\xc3\xa9\r\n"[..],
            "x".repeat(998).as_bytes(),
            b"\r\n",
        ]
        .concat(),
        b"Return-Path: <>\r\nSubject: a bounce\r\n\r\nbody\r\n".to_vec(),
    ]
}

/// CRLF to LF, as Dovecot stores a message in a Maildir.
fn lf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut u = super::super::ToLf::default();
    u.feed(text, &mut out);
    u.finish(&mut out);
    out
}

#[test]
fn urls() {
    let tcp = |host: &str, port| Address::Tcp {
        host: host.into(),
        port,
    };
    let e = Endpoint::parse("lmtp://127.0.0.1").unwrap();
    assert_eq!(
        (e.protocol, e.security, e.address),
        (Protocol::Lmtp, Security::Plain, tcp("127.0.0.1", 24))
    );
    let e = Endpoint::parse("LMTP:///run/dovecot/lmtp").unwrap();
    assert_eq!(e.address, Address::Unix("/run/dovecot/lmtp".into()));
    let e = Endpoint::parse("smtp://mx.example:2525/").unwrap();
    assert_eq!(
        (e.protocol, e.security, e.address),
        (Protocol::Smtp, Security::Plain, tcp("mx.example", 2525))
    );
    let e = Endpoint::parse("smtp+starttls://[::1]").unwrap();
    assert_eq!(
        (e.security, e.address),
        (Security::StartTls, tcp("::1", 25))
    );
    let e = Endpoint::parse("smtps://[::1]:4650").unwrap();
    assert_eq!(
        (e.security, e.address),
        (Security::Implicit, tcp("::1", 4650))
    );
    assert_eq!(
        Endpoint::parse("smtps://relay.example").unwrap().address,
        tcp("relay.example", 465)
    );
    for (bad, why) in [
        ("127.0.0.1:24", "not a URL"),
        ("imap://h", "scheme"),
        ("lmtp://", "no host"),
        ("lmtp://h:0", "port"),
        ("lmtp://h:99999", "port"),
        ("lmtp://h:x", "port"),
        ("smtp://me@h", "no login"),
        ("lmtp://h/box", "Unix socket"),
        ("smtps:///run/sock", "host name"),
        ("lmtp://h?x=1", "query"),
        ("lmtp://[::1", "unclosed"),
        ("lmtp:///", "no socket path"),
    ] {
        let e = Endpoint::parse(bad).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn open_checks_the_url_and_the_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let o = owner(dir.path());
    let e = Forward::open(&lmtp("lmtp://h", "not an address"), &o)
        .err()
        .unwrap();
    assert!(e.contains("not an address"), "{e}");
    let e = Forward::open(&lmtp("smtp://h", "a@b.example"), &o)
        .err()
        .unwrap();
    assert!(e.contains("needs an lmtp:// URL"), "{e}");
    let e = Forward::open(&smtp("lmtp://h", "a@b.example"), &o)
        .err()
        .unwrap();
    assert!(e.contains("smtp+starttls://"), "{e}");
    let t = Forward::open(&smtp("smtps://h", "a@b.example"), &o).unwrap();
    // The record is locked for the run.
    let e = Forward::open(&lmtp("lmtp://h", "a@b.example"), &o)
        .err()
        .unwrap();
    assert!(e.contains("is running"), "{e}");
    drop(t);
    assert!(dir.path().join("forward-pop.example-u").exists());
}

/// A server that greets, takes the envelope (pipelined or not) and the data, then hangs up
/// without answering for it; or, with `refuse`, answers `DATA` with that reply.
fn scripted(refuse: Option<&'static str>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        let mut w = sock.try_clone().unwrap();
        let mut r = BufReader::new(sock);
        w.write_all(b"220 scripted\r\n").unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
            let reply: &str = match verb.as_str() {
                "LHLO" => "250-scripted\r\n250 PIPELINING\r\n",
                "MAIL" | "RCPT" => "250 ok\r\n",
                "DATA" => match refuse {
                    Some(r) => r,
                    None => "354 go\r\n",
                },
                "QUIT" => "221 bye\r\n",
                _ => "500 what\r\n",
            };
            w.write_all(reply.as_bytes()).unwrap();
            if verb == "DATA" && refuse.is_none() {
                // The data, to its end, then a hang-up instead of the answer.
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == ".\r\n" {
                        return;
                    }
                }
            }
        }
    });
    port
}

#[test]
fn a_hang_up_before_the_answer_stops_the_fetch_and_a_refused_data_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let port = scripted(None);
    let mut t = Forward::open(
        &lmtp(&format!("lmtp://127.0.0.1:{port}"), "alice@example.org"),
        &owner(dir.path()),
    )
    .unwrap();
    let e = deliver(&mut t, "k1", b"Subject: x\r\n\r\ny\r\n").unwrap_err();
    assert!(e.to_string().contains("connection closed"), "{e}");
    assert!(!t.has("k1"));
    // Nobody listens any more: an error too, naming the URL.
    let e = deliver(&mut t, "k1", b"x\r\n").unwrap_err();
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    drop(t);

    let port = scripted(Some("451 4.3.0 queue full\r\n"));
    let mut t = Forward::open(
        &lmtp(&format!("lmtp://127.0.0.1:{port}"), "alice@example.org"),
        &owner(dir.path()),
    )
    .unwrap();
    match deliver(&mut t, "k2", b"x\r\n").unwrap() {
        Outcome::Deferred(why) => assert!(why.contains("451 4.3.0 queue full"), "{why}"),
        o => panic!("{o:?}"),
    }
    assert!(!t.has("k2"));
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
        let dovecot = pop3_interop::find_program("dovecot")?;
        if !FsPath::new("/usr/lib/dovecot/lmtp").exists() {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("pop3-lmtp-dovecot")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let mode = |p: &FsPath, m: u32| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        };
        mode(d, 0o755);
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let id = |flag: &str| {
            let out = Command::new("id").arg(flag).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let (users, uid, gid) = if id("-u") == "0" {
            // The mail user must create its Maildir.
            std::os::unix::fs::chown(d.join("mail"), Some(65534), Some(65534)).unwrap();
            (
                "default_internal_user = dovecot\ndefault_internal_group = dovecot\n\
                 default_login_user = dovenull\n"
                    .to_string(),
                "65534".to_string(),
                "65534".to_string(),
            )
        } else {
            let (name, group) = (id("-un"), id("-gn"));
            (
                format!(
                    "default_internal_user = {name}\ndefault_login_user = {name}\n\
                     default_internal_group = {group}\n"
                ),
                id("-u"),
                id("-g"),
            )
        };
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
        let mut child = Command::new(dovecot)
            .args(["-F", "-c"])
            .arg(d.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("stderr")).unwrap())
            .spawn()
            .unwrap();
        let log = {
            let d = d.to_path_buf();
            move || {
                let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
                format!("{}{}", read("dovecot.log"), read("stderr"))
            }
        };
        wait_for_port(port, &mut child, &log);
        Some(DovecotLmtp { child, dir, port })
    }

    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.path().join("run/lmtp")
    }

    pub(crate) fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}{}", read("dovecot.log"), read("stderr"))
    }

    /// alice's messages in `new/`, oldest first.
    pub(crate) fn delivered(&self) -> Vec<Vec<u8>> {
        let new = self.dir.path().join("mail/alice/new");
        let mut files: Vec<(std::time::SystemTime, String, Vec<u8>)> = std::fs::read_dir(new)
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

/// Splits what Dovecot stored into the three header fields it puts first (`Return-Path:`,
/// `Delivered-To:`, then `Received:` with its continuation lines) and the message after
/// them. Panics if they are not there, in that order.
fn dovecot_added(stored: &[u8]) -> (String, &[u8]) {
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

#[test]
fn dovecot_lmtp_stores_each_message_byte_exact_and_refuses_an_unknown_user() {
    let Some(dovecot) = DovecotLmtp::start() else {
        eprintln!("Dovecot's LMTP server (dovecot-lmtpd) is not installed: skipped");
        return;
    };
    let state = tempfile::tempdir().unwrap();
    let msgs = messages();
    let url = format!("lmtp://127.0.0.1:{}", dovecot.port);
    let mut t = Forward::open(&lmtp(&url, "alice@example.org"), &owner(state.path())).unwrap();
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(
            deliver(&mut t, &format!("k{i}"), m).unwrap(),
            Outcome::Stored,
            "{}",
            dovecot.log()
        );
        assert!(t.has(&format!("k{i}")));
    }
    // An unknown user: refused for good, nothing recorded.
    drop(t);
    let mut t = Forward::open(&lmtp(&url, "nobody@example.org"), &owner(state.path())).unwrap();
    match deliver(&mut t, "k-nobody", &msgs[0]).unwrap() {
        Outcome::Failed(why) => {
            assert!(why.contains("550") && why.contains(&url), "{why}");
        }
        o => panic!("{o:?}"),
    }
    assert!(!t.has("k-nobody"));
    // Over the Unix socket too.
    drop(t);
    let socket_url = format!("lmtp://{}", dovecot.socket().display());
    let mut t = Forward::open(
        &lmtp(&socket_url, "alice@example.org"),
        &owner(state.path()),
    )
    .unwrap();
    assert!(t.has("k0") && t.has("k2"), "the record outlives the run");
    assert_eq!(deliver(&mut t, "k3", &msgs[1]).unwrap(), Outcome::Stored);
    // Wrong recipient on the socket, and a message cut by an abort: nothing more arrives.
    t.begin(&MessageInfo {
        key: "k4",
        uidl: None,
        size: 10,
    })
    .unwrap();
    t.write(b"Subject: cut\r\n").unwrap();
    t.abort();
    assert!(!t.has("k4"));

    let stored = dovecot.delivered();
    assert_eq!(stored.len(), 4, "{}", dovecot.log());
    let senders = [
        "<bounce+1@lists.example>",
        "<>",
        "<>",
        "<>", // The second message again: it has no Return-Path.
    ];
    for (i, (s, want)) in stored.iter().zip(msgs.iter().chain([&msgs[1]])).enumerate() {
        let (added, rest) = dovecot_added(s);
        assert_eq!(
            rest,
            lf(want).as_slice(),
            "message {i}: after Dovecot's lines\n{added}"
        );
        assert!(
            added.starts_with(&format!("Return-Path: {}\n", senders[i])),
            "message {i}: {added}"
        );
        assert!(
            added.contains("Delivered-To: alice@example.org\n"),
            "message {i}: {added}"
        );
        assert!(added.contains("with LMTP"), "message {i}: {added}");
    }
    // A message with its own Return-Path keeps it, after Dovecot's.
    assert!(
        dovecot_added(&stored[0])
            .1
            .starts_with(b"Return-Path: <bounce+1@")
    );
}

/// Python's aiosmtpd on 127.0.0.1, killed on drop: it stores each message's data as
/// received (`NNNN.eml`) with its envelope (`NNNN.env`: the sender, the recipients,
/// `tls` or `plain`); it answers `451` to `RCPT TO:<busy@…>` and `550` to
/// `RCPT TO:<nobody@…>`.
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
        let mut child = Command::new("python3")
            .arg(d.join("sink.py"))
            .arg(d.join("out"))
            .arg(port.to_string())
            .arg(mode)
            .arg(d.join("cert.pem"))
            .arg(d.join("key.pem"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("stderr")).unwrap())
            .spawn()
            .unwrap();
        let log = {
            let d = d.to_path_buf();
            move || std::fs::read_to_string(d.join("stderr")).unwrap_or_default()
        };
        wait_for_port(port, &mut child, &log);
        Some(Aiosmtpd {
            child,
            dir,
            port,
            cert_pem: tls.cert_pem,
        })
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// Each message received, in order: (its data, its envelope lines).
    pub(crate) fn received(&self) -> Vec<(Vec<u8>, Vec<String>)> {
        let out = self.dir.path().join("out");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        names.sort();
        names
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

#[test]
fn smtp_to_aiosmtpd_byte_exact_451_deferred_550_failed() {
    let Some(sink) = Aiosmtpd::start("plain") else {
        eprintln!("python3 with aiosmtpd is not installed: skipped");
        return;
    };
    let state = tempfile::tempdir().unwrap();
    let url = format!("smtp://127.0.0.1:{}", sink.port);
    let msgs = messages();
    let mut t = Forward::open(&smtp(&url, "me@example.net"), &owner(state.path())).unwrap();
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(
            deliver(&mut t, &format!("k{i}"), m).unwrap(),
            Outcome::Stored,
            "{}",
            sink.log()
        );
    }
    drop(t);
    let mut busy = Forward::open(&smtp(&url, "busy@example.net"), &owner(state.path())).unwrap();
    match deliver(&mut busy, "k-busy", &msgs[0]).unwrap() {
        Outcome::Deferred(why) => assert!(why.contains("451 4.2.1 mailbox busy"), "{why}"),
        o => panic!("{o:?}"),
    }
    assert!(!busy.has("k-busy"));
    assert!(busy.has("k0") && busy.has("k1") && busy.has("k2"));
    drop(busy);
    let mut nobody =
        Forward::open(&smtp(&url, "nobody@example.net"), &owner(state.path())).unwrap();
    match deliver(&mut nobody, "k-nobody", &msgs[0]).unwrap() {
        Outcome::Failed(why) => assert!(why.contains("550 5.1.1 no such user"), "{why}"),
        o => panic!("{o:?}"),
    }
    assert!(!nobody.has("k-nobody"));

    let got = sink.received();
    assert_eq!(got.len(), 3, "{}", sink.log());
    let senders = ["bounce+1@lists.example", "<>", "<>"];
    for (i, ((data, env), want)) in got.iter().zip(&msgs).enumerate() {
        assert_eq!(data, want, "message {i}");
        assert_eq!(env[0], senders[i], "message {i}");
        assert_eq!(env[1], "me@example.net");
        assert_eq!(env[2], "plain");
    }
}

#[test]
fn smtp_with_starttls_and_implicit_tls() {
    let Some(sink) = Aiosmtpd::start("starttls") else {
        eprintln!("python3 with aiosmtpd is not installed: skipped");
        return;
    };
    let state = tempfile::tempdir().unwrap();
    let trust = Trust::CaPem(sink.cert_pem.clone().into_bytes());
    let msg = &messages()[0];
    let url = format!("smtp+starttls://127.0.0.1:{}", sink.port);
    let mut t =
        Forward::open_with(&smtp(&url, "me@example.net"), &owner(state.path()), &trust).unwrap();
    assert_eq!(
        deliver(&mut t, "k1", msg).unwrap(),
        Outcome::Stored,
        "{}",
        sink.log()
    );
    drop(t);
    // The certificate is not one Mozilla's roots vouch for: nothing is sent.
    let mut t = Forward::open(&smtp(&url, "me@example.net"), &owner(state.path())).unwrap();
    let e = deliver(&mut t, "k2", msg).unwrap_err();
    assert!(e.to_string().contains("TLS after STARTTLS"), "{e}");
    assert!(!t.has("k2"));
    drop(t);
    let got = sink.received();
    assert_eq!(got.len(), 1, "{}", sink.log());
    assert_eq!(&got[0].0, msg);
    assert_eq!(got[0].1[2], "tls");

    // smtps://: TLS from the first byte.
    let Some(smtps) = Aiosmtpd::start("smtps") else {
        return;
    };
    let trust = Trust::CaPem(smtps.cert_pem.clone().into_bytes());
    let url = format!("smtps://127.0.0.1:{}", smtps.port);
    let mut t =
        Forward::open_with(&smtp(&url, "me@example.net"), &owner(state.path()), &trust).unwrap();
    assert_eq!(
        deliver(&mut t, "k3", msg).unwrap(),
        Outcome::Stored,
        "{}",
        smtps.log()
    );
    drop(t);
    let got = smtps.received();
    assert_eq!(got.len(), 1, "{}", smtps.log());
    assert_eq!(&got[0].0, msg);
    assert_eq!(got[0].1[2], "tls");

    // STARTTLS required from a server that does not offer it: an error, nothing sent.
    let Some(plain) = Aiosmtpd::start("plain") else {
        return;
    };
    let url = format!("smtp+starttls://127.0.0.1:{}", plain.port);
    let mut t =
        Forward::open_with(&smtp(&url, "me@example.net"), &owner(state.path()), &trust).unwrap();
    let e = deliver(&mut t, "k4", msg).unwrap_err();
    assert!(e.to_string().contains("STARTTLS required"), "{e}");
    assert!(!t.has("k4"));
    assert!(plain.received().is_empty());
}
