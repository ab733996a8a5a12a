//! Test support for running the workspace against real peers and against itself: a private
//! Dovecot instance, servers of every adapter on loopback, and one client interface over the
//! three client adapters.

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pop3_proto::MsgNum;
use pop3_proto::sasl::ClientCredentials;
use pop3_server_core::backend::{Authenticator, MailStore};
use pop3_server_core::session::Backend;

/// Whether a peer program is missing and the test should be skipped: only outside CI, and
/// only when `POP3_SKIP_INTEROP=1` or the program is not installed. In CI (`CI=true`) a
/// missing peer fails the test.
pub fn skip_without(program: &str) -> bool {
    let missing = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .map_or(true, |s| !s.success());
    if std::env::var("POP3_SKIP_INTEROP").as_deref() == Ok("1") {
        eprintln!("skipped: POP3_SKIP_INTEROP=1");
        return true;
    }
    if missing && std::env::var("CI").is_err() {
        eprintln!("skipped: {program} is not installed (.ci/install-peers.sh installs it)");
        return true;
    }
    assert!(
        !missing,
        "{program} is not installed: run .ci/install-peers.sh"
    );
    false
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until something accepts connections on `port` (bounded).
pub fn wait_for_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A self-signed certificate for `localhost` and the matching configurations.
pub struct Tls {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The key, PEM.
    pub key_pem: String,
    /// A server configuration with it.
    pub server: Arc<rustls::ServerConfig>,
    /// A client configuration trusting it.
    pub client: Arc<rustls::ClientConfig>,
}

impl Tls {
    /// A fresh certificate.
    pub fn new() -> Tls {
        let c = pop3_tls::self_signed(&["localhost".into()]).expect("certificate");
        Tls {
            server: pop3_tls::server_config(c.cert_pem.as_bytes(), c.key_pem.as_bytes())
                .expect("server config"),
            client: pop3_tls::client_config(&pop3_tls::Trust::CaPem(
                c.cert_pem.clone().into_bytes(),
            ))
            .expect("client config"),
            cert_pem: c.cert_pem,
            key_pem: c.key_pem,
        }
    }
}

impl Default for Tls {
    fn default() -> Self {
        Self::new()
    }
}

/// A private Dovecot (POP3 only) on loopback: plain with STLS on `port`, implicit TLS on
/// `tls_port`, user `alice` with password `pw` stored `{PLAIN}` (so every mechanism works), and
/// a Maildir. Killed on drop.
pub struct Dovecot {
    child: Child,
    dir: tempfile::TempDir,
    /// The plain (STLS) port.
    pub port: u16,
    /// The implicit-TLS port.
    pub tls_port: u16,
}

impl Dovecot {
    /// Starts Dovecot with these messages (file contents, LF line ends) in alice's `new/`.
    pub fn start(messages: &[&[u8]], tls: &Tls) -> Dovecot {
        let dir = tempfile::Builder::new()
            .prefix("pop3-dovecot")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        // Dovecot's login processes run as dovenull and must reach the base directory.
        set_mode(d, 0o755);
        let mail = d.join("mail/alice");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(mail.join(sub)).expect("maildir");
        }
        for (i, m) in messages.iter().enumerate() {
            std::fs::write(
                mail.join(format!("new/{}.M{i}P1.interop", 1_700_000_000 + i)),
                m,
            )
            .expect("message");
        }
        std::fs::write(d.join("passwd"), "alice:{PLAIN}pw::::::\n").expect("passwd");
        std::fs::write(d.join("cert.pem"), &tls.cert_pem).expect("cert");
        std::fs::write(d.join("key.pem"), &tls.key_pem).expect("key");
        let (port, tls_port) = (free_port(), free_port());
        let p = d.display();
        let conf = format!(
            "base_dir = {p}/run\nstate_dir = {p}/state\nlog_path = {p}/dovecot.log\n\
             protocols = pop3\nlisten = 127.0.0.1\n\
             default_internal_user = dovecot\ndefault_internal_group = dovecot\ndefault_login_user = dovenull\n\
             ssl = yes\nssl_cert = <{p}/cert.pem\nssl_key = <{p}/key.pem\n\
             auth_mechanisms = plain login cram-md5 scram-sha-256\ndisable_plaintext_auth = no\n\
             mail_location = maildir:{p}/mail/%u\n\
             passdb {{\n  driver = passwd-file\n  args = {p}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = uid=65534 gid=65534 home={p}/mail/%u\n}}\n\
             service pop3-login {{\n  chroot =\n  inet_listener pop3 {{\n    port = {port}\n  }}\n  inet_listener pop3s {{\n    port = {tls_port}\n    ssl = yes\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n"
        );
        std::fs::write(d.join("dovecot.conf"), conf).expect("config");
        for sub in ["run", "state"] {
            std::fs::create_dir_all(d.join(sub)).expect("dirs");
        }
        chown_tree(&d.join("mail"));
        let child = Command::new("dovecot")
            .args(["-F", "-c"])
            .arg(d.join("dovecot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dovecot starts");
        wait_for_port(port);
        wait_for_port(tls_port);
        Dovecot {
            child,
            dir,
            port,
            tls_port,
        }
    }

    /// Dovecot's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// The directory of alice's Maildir.
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("mail/alice")
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

/// Gives the mail tree to uid/gid 65534 (Dovecot refuses to deliver as root).
fn chown_tree(path: &Path) {
    let _ = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(path)
        .status();
}

/// A server adapter under test, serving on two loopback listeners until dropped.
pub struct RunningServer {
    /// The plain (STLS) address.
    pub plain: SocketAddr,
    /// The implicit-TLS address.
    pub tls: SocketAddr,
    stop: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

/// Which server adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// pop3-tokio.
    Tokio,
    /// pop3-blocking.
    Blocking,
    /// pop3-futures on smol.
    Smol,
}

/// Starts a server adapter with `backend`, offering STLS on the plain listener.
pub fn start_server<A: Authenticator, S: MailStore>(
    kind: ServerKind,
    backend: Arc<Backend<A, S>>,
    tls: &Tls,
) -> RunningServer {
    let plain_l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let tls_l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let (plain, tlsa) = (
        plain_l.local_addr().expect("addr"),
        tls_l.local_addr().expect("addr"),
    );
    let cfg = tls.server.clone();
    let stop: Box<dyn FnOnce() + Send> = match kind {
        ServerKind::Tokio => {
            let (tx, rx) = futures_channel::oneshot::channel::<()>();
            let t = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let mut o = pop3_tokio::server::ServerOptions::default();
                    o.tls = Some(cfg.clone());
                    o.shutdown_grace = Duration::from_millis(100);
                    plain_l.set_nonblocking(true).expect("nonblocking");
                    tls_l.set_nonblocking(true).expect("nonblocking");
                    let p = tokio::net::TcpListener::from_std(plain_l).expect("listener");
                    let t = tokio::net::TcpListener::from_std(tls_l).expect("listener");
                    let (itx, irx) = futures_channel::oneshot::channel::<()>();
                    let implicit = tokio::spawn(pop3_tokio::server::serve(
                        t,
                        backend.clone(),
                        Some(cfg),
                        o.clone(),
                        async {
                            let _ = irx.await;
                        },
                    ));
                    let _ = pop3_tokio::server::serve(p, backend, None, o, async {
                        let _ = rx.await;
                    })
                    .await;
                    let _ = itx.send(());
                    let _ = implicit.await;
                });
            });
            Box::new(move || {
                let _ = tx.send(());
                let _ = t.join();
            })
        }
        ServerKind::Blocking => {
            let shutdown = pop3_blocking::server::Shutdown::new();
            let mut o = pop3_blocking::server::ServerOptions::default();
            o.tls = Some(cfg.clone());
            o.shutdown_grace = Duration::from_millis(100);
            let threads: Vec<_> = [(plain_l, None), (tls_l, Some(cfg))]
                .into_iter()
                .map(|(l, implicit)| {
                    let (b, o, s) = (backend.clone(), o.clone(), shutdown.clone());
                    std::thread::spawn(move || {
                        let _ = pop3_blocking::server::serve(l, b, implicit, o, &s);
                    })
                })
                .collect();
            Box::new(move || {
                shutdown.trigger();
                for t in threads {
                    let _ = t.join();
                }
            })
        }
        ServerKind::Smol => {
            let (tx, rx) = futures_channel::oneshot::channel::<()>();
            let t = std::thread::spawn(move || {
                smol::block_on(async move {
                    let mut o = pop3_futures::server::ServerOptions::default();
                    o.tls = Some(cfg.clone());
                    o.shutdown_grace = Duration::from_millis(100);
                    let p = smol::net::TcpListener::try_from(plain_l).expect("listener");
                    let t = smol::net::TcpListener::try_from(tls_l).expect("listener");
                    let (itx, irx) = futures_channel::oneshot::channel::<()>();
                    let implicit = smol::spawn(pop3_futures::server::serve(
                        t,
                        backend.clone(),
                        Some(cfg),
                        o.clone(),
                        pop3_futures::Smol,
                        async {
                            let _ = irx.await;
                        },
                    ));
                    let _ = pop3_futures::server::serve(
                        p,
                        backend,
                        None,
                        o,
                        pop3_futures::Smol,
                        async {
                            let _ = rx.await;
                        },
                    )
                    .await;
                    let _ = itx.send(());
                    let _ = implicit.await;
                });
            });
            Box::new(move || {
                let _ = tx.send(());
                let _ = t.join();
            })
        }
    };
    RunningServer {
        plain,
        tls: tlsa,
        stop: Some(stop),
    }
}

/// Which client adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// pop3-tokio.
    Tokio,
    /// pop3-blocking.
    Blocking,
    /// pop3-futures on smol.
    Smol,
}

/// How the client protects the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain text.
    Plain,
    /// STLS.
    StartTls,
    /// Implicit TLS.
    Implicit,
}

/// How the client logs in.
#[derive(Debug, Clone)]
pub enum Login {
    /// USER/PASS.
    UserPass(String, String),
    /// APOP.
    Apop(String, String),
    /// SASL.
    Sasl(ClientCredentials),
}

/// A script of client operations, run by any client adapter: the common denominator of their
/// APIs, so that one scenario runs on all three.
#[derive(Debug, Clone)]
pub enum Op {
    /// STAT: expects (count, size).
    Stat(u64, u64),
    /// LIST: expects the sizes in order.
    List(Vec<u64>),
    /// UIDL: expects the unique-ids in order.
    Uidl(Vec<String>),
    /// RETR n: expects these bytes (compared as they stream: never collected).
    Retr(u32, Arc<Vec<u8>>),
    /// TOP n lines: expects these bytes.
    Top(u32, u64, Vec<u8>),
    /// DELE n.
    Dele(u32),
    /// RSET.
    Rset,
    /// NOOP.
    Noop,
    /// QUIT.
    Quit,
}

/// Streams `chunk` against `expected[*pos..]`, and tracks the largest chunk.
fn check_chunk(
    expected: &[u8],
    pos: &mut usize,
    largest: &mut usize,
    chunk: &[u8],
) -> std::io::Result<()> {
    *largest = (*largest).max(chunk.len());
    let end = *pos + chunk.len();
    if end > expected.len() || expected[*pos..end] != *chunk {
        return Err(std::io::Error::other(format!(
            "body differs at octet {}",
            *pos
        )));
    }
    *pos = end;
    Ok(())
}

/// Runs `login` and `ops` with the client adapter `kind` against `addr`; returns the largest
/// body chunk any RETR delivered (the client's buffering for a body).
pub fn run_client(
    kind: ClientKind,
    mode: Mode,
    addr: SocketAddr,
    tls: &Tls,
    login: &Login,
    ops: &[Op],
) -> Result<usize, String> {
    let addr = addr.to_string();
    match kind {
        ClientKind::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(run_tokio(mode, &addr, tls, login, ops)),
        ClientKind::Blocking => run_blocking(mode, &addr, tls, login, ops),
        ClientKind::Smol => smol::block_on(run_smol(mode, &addr, tls, login, ops)),
    }
}

macro_rules! script {
    ($c:ident, $login:expr, $ops:expr, $($aw:tt)*) => {{
        let mut largest = 0usize;
        match $login {
            Login::UserPass(u, p) => $c.login(u, p)$($aw)*.map_err(|e| format!("login: {e}"))?,
            Login::Apop(u, p) => $c.apop(u, p)$($aw)*.map_err(|e| format!("apop: {e}"))?,
            Login::Sasl(creds) => $c.auth(creds.clone())$($aw)*.map_err(|e| format!("auth: {e}"))?,
        }
        for op in $ops {
            match op {
                Op::Stat(count, size) => {
                    let s = $c.stat()$($aw)*.map_err(|e| format!("stat: {e}"))?;
                    if (s.count, s.size) != (*count, *size) {
                        return Err(format!("STAT {s:?}, expected {count} {size}"));
                    }
                }
                Op::List(sizes) => {
                    let l: Vec<u64> = $c.list()$($aw)*.map_err(|e| format!("list: {e}"))?.iter().map(|i| i.size).collect();
                    if l != *sizes {
                        return Err(format!("LIST {l:?}, expected {sizes:?}"));
                    }
                }
                Op::Uidl(uids) => {
                    let u: Vec<String> = $c.uidl()$($aw)*.map_err(|e| format!("uidl: {e}"))?.iter().map(|i| i.uid.as_str().to_string()).collect();
                    if u != *uids {
                        return Err(format!("UIDL {u:?}, expected {uids:?}"));
                    }
                }
                Op::Retr(n, expected) => {
                    let mut pos = 0;
                    $c.retr_with(msg(*n), |chunk| check_chunk(expected, &mut pos, &mut largest, chunk))$($aw)*
                        .map_err(|e| format!("retr {n}: {e}"))?;
                    if pos != expected.len() {
                        return Err(format!("RETR {n}: {pos} octets, expected {}", expected.len()));
                    }
                }
                Op::Top(n, lines, expected) => {
                    let mut got = Vec::new();
                    $c.top_with(msg(*n), *lines, |c| { got.extend_from_slice(c); Ok(()) })$($aw)*
                        .map_err(|e| format!("top: {e}"))?;
                    if got != *expected {
                        return Err(format!("TOP {n} {lines}: {:?}", String::from_utf8_lossy(&got)));
                    }
                }
                Op::Dele(n) => $c.dele(msg(*n))$($aw)*.map_err(|e| format!("dele: {e}"))?,
                Op::Rset => $c.rset()$($aw)*.map_err(|e| format!("rset: {e}"))?,
                Op::Noop => $c.noop()$($aw)*.map_err(|e| format!("noop: {e}"))?,
                Op::Quit => $c.quit()$($aw)*.map_err(|e| format!("quit: {e}"))?,
            }
        }
        Ok(largest)
    }};
}

fn msg(n: u32) -> MsgNum {
    MsgNum::new(n).unwrap_or(MsgNum::new(1).unwrap_or_else(|_| unreachable!()))
}

async fn run_tokio(
    mode: Mode,
    addr: &str,
    tls: &Tls,
    login: &Login,
    ops: &[Op],
) -> Result<usize, String> {
    use pop3_tokio::client::{ClientOptions, Pop3Client, TlsMode};
    let t = match mode {
        Mode::Plain => TlsMode::Plain,
        Mode::StartTls => TlsMode::StartTls(tls.client.clone()),
        Mode::Implicit => TlsMode::Implicit(tls.client.clone()),
    };
    let mut o = ClientOptions::new(t);
    o.server_name = Some("localhost".into());
    let mut c = Pop3Client::connect(addr, o)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    script!(c, login, ops, .await)
}

fn run_blocking(
    mode: Mode,
    addr: &str,
    tls: &Tls,
    login: &Login,
    ops: &[Op],
) -> Result<usize, String> {
    use pop3_blocking::client::{ClientOptions, Pop3Client, TlsMode};
    let t = match mode {
        Mode::Plain => TlsMode::Plain,
        Mode::StartTls => TlsMode::StartTls(tls.client.clone()),
        Mode::Implicit => TlsMode::Implicit(tls.client.clone()),
    };
    let mut o = ClientOptions::new(t);
    o.server_name = Some("localhost".into());
    let mut c = Pop3Client::connect(addr, o).map_err(|e| format!("connect: {e}"))?;
    script!(c, login, ops,)
}

async fn run_smol(
    mode: Mode,
    addr: &str,
    tls: &Tls,
    login: &Login,
    ops: &[Op],
) -> Result<usize, String> {
    use pop3_futures::client::{ClientOptions, Pop3Client, TlsMode};
    let t = match mode {
        Mode::Plain => TlsMode::Plain,
        Mode::StartTls => TlsMode::StartTls(tls.client.clone()),
        Mode::Implicit => TlsMode::Implicit(tls.client.clone()),
    };
    let mut o = ClientOptions::new(t);
    o.server_name = Some("localhost".into());
    let mut c = Pop3Client::connect(addr, o)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    script!(c, login, ops, .await)
}

/// Writes `script` to a temporary file and runs it with `python3`; returns its stdout.
pub fn python(script: &str) -> String {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(script.as_bytes()).expect("script");
    let out = Command::new("python3")
        .arg(f.path())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
