//! Test support for running the workspace against real peers and against itself: a private
//! Dovecot instance, servers of every adapter on loopback, one client interface over every
//! client adapter, time-bounded child processes, and the shared test messages.
//!
//! Everything listens on 127.0.0.1 only, and everything that waits is bounded in time: a
//! hung peer fails the test instead of hanging it.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pop3_futures::{BoxFuture, Runtime};
use pop3_proto::sasl::ClientCredentials;
use pop3_proto::{Capability, MsgNum};
use pop3_server_core::backend::{Authenticator, MailStore, Maildrop, MaildropLock};
use pop3_server_core::block_on;
use pop3_server_core::deliver::Deliver;
use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
use pop3_server_core::session::{Backend, Policy};
use pop3_store_postgres::{PgConfig, PgStore};
use pop3_tokio::server::ServerOptions;

/// How long one client session, one child program or one server start may take.
pub const LIMIT: Duration = Duration::from_secs(120);

/// Whether the test may use the peer `program`: `false` (with a note on stderr) when
/// `POP3_SKIP_INTEROP=1`; otherwise it panics with a clear message if the program is missing,
/// and returns `true`.
pub fn peer_available(program: &str) -> bool {
    if std::env::var("POP3_SKIP_INTEROP").as_deref() == Ok("1") {
        eprintln!("skipped: POP3_SKIP_INTEROP=1 (test against {program} not run)");
        return false;
    }
    assert!(
        find_program(program).is_some(),
        "{program} is not installed: run .ci/install-peers.sh (or set POP3_SKIP_INTEROP=1 to skip \
         the tests against real peers)"
    );
    true
}

/// The path of `program`: in `PATH`, or in the sbin directories a non-root `PATH` often lacks
/// (Debian installs `dovecot` in `/usr/sbin`).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// A free TCP port on 127.0.0.1 (for peers that cannot be handed a bound socket).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A hand-written server for one connection on 127.0.0.1: `serve` runs on a thread of its
/// own with the accepted socket, split into a line reader and a writer whose reads and writes
/// give up after `io_limit`. For rogue and broken servers no real one would be.
pub fn one_connection<T: Send + 'static>(
    io_limit: Duration,
    serve: impl FnOnce(std::io::BufReader<TcpStream>, TcpStream) -> T + Send + 'static,
) -> (std::net::SocketAddr, std::thread::JoinHandle<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(io_limit)).expect("timeout");
        stream.set_write_timeout(Some(io_limit)).expect("timeout");
        let writer = stream.try_clone().expect("clone");
        serve(std::io::BufReader::new(stream), writer)
    });
    (addr, server)
}

/// Runs `f` on its own thread and panics if it takes longer than `limit`: a hung client or
/// server fails the test instead of hanging it (the stuck thread is left behind).
pub fn bounded<T: Send + 'static>(
    label: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{label}: took longer than {limit:?}")
        }
        // The closure panicked: re-raise its message.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => panic!("{label}: the worker ended without a result"),
        },
    }
}

/// Runs a program to completion with output captured, killing it after `limit`.
pub fn run_program(cmd: &mut Command, limit: Duration) -> Output {
    // Files, not pipes: a chatty child cannot block on a full pipe while we wait for it.
    let dir = tempfile::tempdir().expect("temp dir");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    cmd.stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for child") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} took longer than {limit:?}; stderr: {}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
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
    /// A client configuration trusting it (`Trust::CaPem`).
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

/// The test messages as a Maildir stores them (LF line ends): dot-stuffing cases (a line
/// starting with `.`, a lone `.`, `..`, `...`), 8-bit bytes that are not UTF-8, a message
/// whose last line has no newline, an empty body, and a message of a little over 2 MB.
pub fn stored_messages() -> Vec<Vec<u8>> {
    let mut big = b"Subject: big\nFrom: b@example.com\n\n".to_vec();
    let mut i = 0u32;
    while big.len() < 2 * 1024 * 1024 + 100 {
        if i.is_multiple_of(7) {
            big.push(b'.');
        }
        if i % 1000 == 999 {
            big.extend_from_slice(b".\n");
        }
        big.extend_from_slice(format!("line {i} of the large message, café\n").as_bytes());
        i += 1;
    }
    vec![
        b"Subject: dots\nFrom: a@example.com\n\nhello\n.leading dot\n.\n..two\n...\nend\n"
            .to_vec(),
        b"Subject: 8bit\nContent-Type: text/plain; charset=latin1\n\ncaf\xe9 \xff\xfe\x80\x00 raw\n"
            .to_vec(),
        b"Subject: no final newline\n\nthe last line ends without a line end".to_vec(),
        b"Subject: empty body\n\n".to_vec(),
        big,
    ]
}

/// A message as it crosses the wire, before dot-stuffing: every LF that is not already
/// preceded by CR becomes CRLF. (Whether a peer adds a line end to a message without a final
/// one is the test's business.)
pub fn lf_to_crlf(m: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(m.len() + m.len() / 16);
    for (i, &b) in m.iter().enumerate() {
        if b == b'\n' && (i == 0 || m[i - 1] != b'\r') {
            v.push(b'\r');
        }
        v.push(b);
    }
    v
}

/// The first lines of a CRLF message as `TOP n lines` returns them: the header, the blank
/// line, then up to `lines` body lines.
pub fn top_of(wire: &[u8], lines: usize) -> Vec<u8> {
    let header_end = wire
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(wire.len(), |p| p + 4);
    let mut end = header_end;
    for _ in 0..lines {
        match wire[end..].windows(2).position(|w| w == b"\r\n") {
            Some(p) => end += p + 2,
            None => {
                end = wire.len();
                break;
            }
        }
    }
    wire[..end].to_vec()
}

/// Writes `messages` into `root/user/new` as Maildir files and returns their names (the
/// Maildir unique names, which `pop3_uidl_format = %f` and our Maildir store use as UIDLs).
pub fn write_maildir(root: &Path, user: &str, messages: &[Vec<u8>]) -> Vec<String> {
    let mail = root.join(user);
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(mail.join(sub)).expect("maildir");
    }
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let name = format!("{}.M{i}P1.interop", 1_700_000_000 + i);
            std::fs::write(mail.join("new").join(&name), m).expect("message");
            name
        })
        .collect()
}

/// A private Dovecot (POP3 only, or IMAP only: [`DovecotService`]) on loopback, killed on
/// drop: plain text with STLS on [`Dovecot::port`], implicit TLS on [`Dovecot::tls_port`],
/// user `alice` with password `pw` stored `{PLAIN}` (so CRAM-MD5, SCRAM-SHA-256 and APOP work
/// over POP3), and a Maildir holding the given messages.
///
/// Found out on Debian 12's Dovecot 2.3.19: `pop3-login` (and `imap-login`) refuses to run as root and the mail
/// processes refuse uid 0 (`userdb returned 0 as uid`) whatever `first_valid_uid` says. So as
/// root the login processes run as Debian's `dovenull`, the internal ones as `dovecot`, and the
/// mail as uid/gid 65534 (the Maildir is chowned to it); as another user everything runs as
/// that user.
pub struct Dovecot {
    child: Child,
    dir: tempfile::TempDir,
    /// The plain (STLS) port.
    pub port: u16,
    /// The implicit-TLS port.
    pub tls_port: u16,
    /// The Maildir file names of the messages, in order (their UIDLs).
    pub names: Vec<String>,
}

/// Which of its servers a test's [`Dovecot`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DovecotService {
    /// POP3 (`pop3`/`pop3s` listeners), every mechanism a `{PLAIN}` password allows, and
    /// `pop3_uidl_format = %f` (UIDLs are the Maildir unique names, as ours are).
    Pop3,
    /// IMAP (`imap`/`imaps` listeners), `LOGIN` and `AUTHENTICATE PLAIN`.
    Imap,
}

impl DovecotService {
    /// Its protocol name, the mechanisms it offers and its own settings.
    fn settings(self) -> (&'static str, &'static str, &'static str) {
        match self {
            DovecotService::Pop3 => (
                "pop3",
                "plain login cram-md5 scram-sha-256 apop",
                "pop3_uidl_format = %f\n",
            ),
            DovecotService::Imap => ("imap", "plain login", ""),
        }
    }
}

impl Dovecot {
    /// Starts Dovecot's POP3 server with these messages (file contents) in alice's `new/`,
    /// and waits (bounded) until both ports accept connections.
    pub fn start(messages: &[Vec<u8>], tls: &Tls) -> Dovecot {
        Dovecot::start_service(DovecotService::Pop3, messages, tls)
    }

    /// As [`Dovecot::start`], for `service`.
    pub fn start_service(service: DovecotService, messages: &[Vec<u8>], tls: &Tls) -> Dovecot {
        let dovecot = find_program("dovecot").expect("dovecot is not installed");
        let dir = tempfile::Builder::new()
            .prefix("pop3-dovecot")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        // The login processes (another user when we are root) must reach the base directory.
        set_mode(d, 0o755);
        let names = write_maildir(&d.join("mail"), "alice", messages);
        std::fs::write(d.join("passwd"), "alice:{PLAIN}pw::::::\n").expect("passwd");
        std::fs::write(d.join("cert.pem"), &tls.cert_pem).expect("cert");
        std::fs::write(d.join("key.pem"), &tls.key_pem).expect("key");
        set_mode(&d.join("key.pem"), 0o600);
        for sub in ["run", "state"] {
            std::fs::create_dir_all(d.join(sub)).expect("dirs");
        }
        let DovecotUsers {
            settings: users,
            uid: mail_uid,
            gid: mail_gid,
        } = dovecot_users(&d.join("mail"));
        let (port, tls_port) = (free_port(), free_port());
        let p = d.display();
        let (proto, mechanisms, own) = service.settings();
        let conf = format!(
            "base_dir = {p}/run\nstate_dir = {p}/state\nlog_path = {p}/dovecot.log\n\
             info_log_path = {p}/dovecot.log\n\
             protocols = {proto}\nlisten = 127.0.0.1\n{users}first_valid_uid = 1\nfirst_valid_gid = 1\n\
             ssl = yes\nssl_cert = <{p}/cert.pem\nssl_key = <{p}/key.pem\n\
             auth_mechanisms = {mechanisms}\n\
             disable_plaintext_auth = no\n\
             mail_location = maildir:{p}/mail/%u\n{own}\
             passdb {{\n  driver = passwd-file\n  args = {p}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = uid={mail_uid} gid={mail_gid} home={p}/mail/%u\n}}\n\
             service {proto}-login {{\n  chroot =\n  inet_listener {proto} {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  \
             inet_listener {proto}s {{\n    address = 127.0.0.1\n    port = {tls_port}\n    ssl = yes\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n"
        );
        std::fs::write(d.join("dovecot.conf"), conf).expect("config");
        let child = Command::new(dovecot)
            .args(["-F", "-c"])
            .arg(d.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(d.join("stderr")).expect("stderr file"))
            .spawn()
            .expect("dovecot starts");
        let mut dovecot = Dovecot {
            child,
            dir,
            port,
            tls_port,
            names,
        };
        dovecot.wait_for_ports();
        dovecot
    }

    fn wait_for_ports(&mut self) {
        let start = Instant::now();
        for port in [self.port, self.tls_port] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("dovecot exited ({status}):\n{}", self.log());
                }
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "dovecot does not listen on {port} after 30 s:\n{}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Dovecot's log and stderr, for failure messages.
    pub fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}{}", read("dovecot.log"), read("stderr"))
    }

    /// The directory of alice's Maildir.
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("mail/alice")
    }

    /// How many message files alice's Maildir holds (`new/` and `cur/`).
    pub fn message_files(&self) -> usize {
        ["new", "cur"]
            .iter()
            .map(|s| {
                std::fs::read_dir(self.maildir().join(s))
                    .map(|r| r.count())
                    .unwrap_or(0)
            })
            .sum()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // The master takes its children down when it is killed (they watch its pipe).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sets the permission bits of `path` (best effort): a test's Dovecot needs its base
/// directory reachable by its login processes and its key private.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            chown_tree(&e.path(), uid, gid);
        }
    }
}

/// Our user or group name (`id -un`, `id -gn`): Dovecot's settings take names, not ids.
fn id(flag: &str) -> String {
    let out = run_program(Command::new("id").arg(flag), Duration::from_secs(10));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Who a Dovecot started by a test runs as, from [`dovecot_users`].
#[derive(Debug, Clone)]
pub struct DovecotUsers {
    /// The `default_internal_user`, `default_login_user` and `default_internal_group`
    /// settings, one a line.
    pub settings: String,
    /// The uid of the mail (the static userdb's `uid=`).
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
}

/// The users a test's Dovecot runs as. As root (as CI runs), Debian's `dovecot` and
/// `dovenull` users, and the mail (the tree under `mail_dir`, made over to it here) as
/// uid and gid 65534; otherwise ourselves for everything.
pub fn dovecot_users(mail_dir: &Path) -> DovecotUsers {
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata(mail_dir).expect("the mail directory exists");
    if me.uid() == 0 {
        let (uid, gid) = (65534, 65534);
        chown_tree(mail_dir, uid, gid);
        DovecotUsers {
            settings: "default_internal_user = dovecot
default_internal_group = dovecot
                       default_login_user = dovenull
"
            .to_string(),
            uid,
            gid,
        }
    } else {
        let (name, group) = (id("-un"), id("-gn"));
        DovecotUsers {
            settings: format!(
                "default_internal_user = {name}
default_login_user = {name}
                 default_internal_group = {group}
"
            ),
            uid: me.uid(),
            gid: me.gid(),
        }
    }
}

/// async-std as a [`pop3_futures::Runtime`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncStd;

impl pop3_futures::Timer for AsyncStd {
    type Sleep = BoxFuture<()>;

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<()> {
        Box::pin(async_std::task::sleep(
            deadline.saturating_duration_since(Instant::now()),
        ))
    }
}

impl Runtime for AsyncStd {
    fn spawn(&self, task: BoxFuture<()>) {
        async_std::task::spawn(task);
    }
}

/// async-std's TCP listener as a [`pop3_futures::server::Listener`].
#[derive(Debug)]
pub struct AsyncStdListener(pub async_std::net::TcpListener);

impl pop3_futures::server::Listener for AsyncStdListener {
    type Stream = async_std::net::TcpStream;

    async fn accept(
        &self,
    ) -> std::io::Result<pop3_futures::server::Accepted<async_std::net::TcpStream>> {
        let (s, peer) = self.0.accept().await?;
        let _ = s.set_nodelay(true);
        Ok(pop3_futures::server::Accepted::new(s, Some(peer)))
    }

    fn local_port(&self) -> Option<u16> {
        self.0.local_addr().ok().map(|a| a.port())
    }
}

/// A server adapter under test, serving on two loopback listeners until [`stop`]ped or
/// dropped (both shut it down gracefully and join its threads).
///
/// [`stop`]: RunningServer::stop
pub struct RunningServer {
    /// The plain (STLS) address.
    pub plain: SocketAddr,
    /// The implicit-TLS address.
    pub tls: SocketAddr,
    stop: Option<Box<dyn FnOnce() + Send>>,
}

/// How long a server's graceful shutdown may take (its grace period is 100 ms).
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(30);

impl RunningServer {
    /// Shuts the server down and panics unless every accept loop and thread ended within 30 s.
    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            bounded("server shutdown", SHUTDOWN_LIMIT, stop);
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // No panic in drop (it may run while unwinding): a stuck shutdown is left behind.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                stop();
                let _ = tx.send(());
            });
            if rx.recv_timeout(SHUTDOWN_LIMIT).is_err() {
                eprintln!("warning: a server did not shut down within {SHUTDOWN_LIMIT:?}");
            }
        }
    }
}

/// Which server adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// pop3-tokio (multi-threaded runtime).
    Tokio,
    /// pop3-blocking (a thread per connection).
    Blocking,
    /// pop3-futures on smol.
    Smol,
    /// pop3-futures on async-std.
    AsyncStd,
}

impl ServerKind {
    /// Every server adapter.
    pub const ALL: [ServerKind; 4] = [
        ServerKind::Tokio,
        ServerKind::Blocking,
        ServerKind::Smol,
        ServerKind::AsyncStd,
    ];
}

/// Starts a server adapter with `backend`: STLS on the plain listener, implicit TLS on the
/// other.
pub fn start_server<A: Authenticator, S: MailStore>(
    kind: ServerKind,
    backend: Arc<Backend<A, S>>,
    tls: &Tls,
) -> RunningServer {
    start_server_with(kind, backend, tls, ServerOptions::default())
}

/// [`start_server`] with these accept-loop options (the limits before login, ...); its TLS
/// configuration and shutdown grace are set here (100 ms).
pub fn start_server_with<A: Authenticator, S: MailStore>(
    kind: ServerKind,
    backend: Arc<Backend<A, S>>,
    tls: &Tls,
    options: ServerOptions,
) -> RunningServer {
    let plain_l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let tls_l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let (plain, tlsa) = (
        plain_l.local_addr().expect("addr"),
        tls_l.local_addr().expect("addr"),
    );
    let cfg = tls.server.clone();
    let grace = Duration::from_millis(100);
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
                    let mut o = options;
                    o.tls = Some(cfg.clone());
                    o.shutdown_grace = grace;
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
            let mut o = options;
            o.tls = Some(cfg.clone());
            o.shutdown_grace = grace;
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
                    let mut o = options;
                    o.tls = Some(cfg.clone());
                    o.shutdown_grace = grace;
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
        ServerKind::AsyncStd => {
            let (tx, rx) = futures_channel::oneshot::channel::<()>();
            let t = std::thread::spawn(move || {
                async_std::task::block_on(async move {
                    let mut o = options;
                    o.tls = Some(cfg.clone());
                    o.shutdown_grace = grace;
                    let p = AsyncStdListener(plain_l.into());
                    let t = AsyncStdListener(tls_l.into());
                    let (itx, irx) = futures_channel::oneshot::channel::<()>();
                    let implicit = async_std::task::spawn(pop3_futures::server::serve(
                        t,
                        backend.clone(),
                        Some(cfg),
                        o.clone(),
                        AsyncStd,
                        async {
                            let _ = irx.await;
                        },
                    ));
                    let _ = pop3_futures::server::serve(p, backend, None, o, AsyncStd, async {
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
    };
    RunningServer {
        plain,
        tls: tlsa,
        stop: Some(stop),
    }
}

/// Where a test server keeps its users and mail: the same tests run on each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// pop3-server-core's in-memory store and authenticator.
    Memory,
    /// A [`PgStore`] (users, metadata and bodies in PostgreSQL) on the database at this URL.
    /// The database may be shared by several [`Mail`]s one after another: each empties the
    /// maildrops of its users first.
    Postgres(String),
}

impl std::fmt::Display for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Storage::Memory => "memory",
            Storage::Postgres(_) => "PostgreSQL",
        })
    }
}

/// A mail backend seeded with users and messages; any number of servers, of any adapter, can
/// be started on it ([`Mail::start`]), and they share its users and maildrops.
#[derive(Clone)]
pub struct Mail {
    backend: MailBackend,
    /// Each user's unique ids as seeded, in order.
    seeded: Arc<BTreeMap<String, Vec<String>>>,
}

#[derive(Clone)]
enum MailBackend {
    Memory(MemoryAuthenticator, MemoryStore),
    Postgres(PgStore),
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.backend {
            MailBackend::Memory(..) => "memory",
            MailBackend::Postgres(_) => "postgres",
        };
        f.debug_struct("Mail")
            .field("backend", &kind)
            .field("seeded", &self.seeded)
            .finish()
    }
}

impl Mail {
    /// A backend on `storage` with `users` (name, password) and `messages` (user, unique id,
    /// octets) in order. The in-memory store keeps the messages as given, under the given
    /// unique ids; the PostgreSQL store gets them through [`Deliver::deliver`] (which stores
    /// them with CRLF line ends) and assigns its own unique ids (see [`Mail::uids`]), and its
    /// users' passwords are stored `{PLAIN}` (so that SCRAM, CRAM-MD5 and APOP work, as with
    /// the in-memory authenticator).
    ///
    /// Call it outside any async runtime: a [`PgStore`] built there runs on a runtime of its
    /// own, so every server adapter (the blocking one included) can drive it.
    pub fn new(
        storage: &Storage,
        users: &[(&str, &str)],
        messages: &[(&str, &str, &[u8])],
    ) -> Mail {
        let mut seeded: BTreeMap<String, Vec<String>> = users
            .iter()
            .map(|(u, _)| ((*u).to_string(), Vec::new()))
            .collect();
        let backend = match storage {
            Storage::Memory => {
                let mut auth = MemoryAuthenticator::new();
                let store = MemoryStore::new();
                for (user, password) in users {
                    auth.add_user(user, password);
                    store.add_user(user);
                }
                for (user, uid, m) in messages {
                    store.add_message(user, uid, m);
                    seeded
                        .entry((*user).to_string())
                        .or_default()
                        .push((*uid).to_string());
                }
                MailBackend::Memory(auth, store)
            }
            Storage::Postgres(url) => {
                let store = PgStore::new(PgConfig::new(url.as_str())).expect("PgStore");
                block_on(store.migrate()).expect("migrate the database");
                for (user, password) in users {
                    block_on(store.add_user(user, &format!("{{PLAIN}}{password}"), true))
                        .expect("add a user");
                    // Empty: an earlier fixture on the same database may have left mail.
                    let drop =
                        block_on(store.open(user, MaildropLock::Snapshot)).expect("open maildrop");
                    let all = (0..drop.messages().len()).collect();
                    block_on(drop.commit(all)).expect("empty the maildrop");
                }
                for (user, _, m) in messages {
                    let delivered = block_on(store.deliver(user, m))
                        .unwrap_or_else(|e| panic!("deliver to {user}: {e}"));
                    seeded
                        .entry((*user).to_string())
                        .or_default()
                        .push(delivered.uid.as_str().to_string());
                }
                MailBackend::Postgres(store)
            }
        };
        Mail {
            backend,
            seeded: Arc::new(seeded),
        }
    }

    /// Starts a server adapter on this backend with `policy` (see [`start_server`]).
    pub fn start(&self, kind: ServerKind, policy: Policy, tls: &Tls) -> RunningServer {
        self.start_with(kind, policy, tls, ServerOptions::default())
    }

    /// [`Mail::start`] with these accept-loop options (see [`start_server_with`]).
    pub fn start_with(
        &self,
        kind: ServerKind,
        policy: Policy,
        tls: &Tls,
        options: ServerOptions,
    ) -> RunningServer {
        match &self.backend {
            MailBackend::Memory(auth, store) => start_server_with(
                kind,
                Backend::new(auth.clone(), store.clone(), policy),
                tls,
                options,
            ),
            MailBackend::Postgres(store) => start_server_with(
                kind,
                Backend::new(store.clone(), store.clone(), policy),
                tls,
                options,
            ),
        }
    }

    /// `user`'s unique ids as seeded, in order (the given ones in memory, the assigned ones
    /// in PostgreSQL).
    pub fn uids(&self, user: &str) -> Vec<String> {
        self.seeded.get(user).cloned().unwrap_or_default()
    }

    /// `user`'s unique ids in the store now, in order (from a snapshot in PostgreSQL: call it
    /// outside any async runtime).
    pub fn current(&self, user: &str) -> Vec<String> {
        match &self.backend {
            MailBackend::Memory(_, store) => store.uids(user),
            MailBackend::Postgres(store) => {
                let drop =
                    block_on(store.open(user, MaildropLock::Snapshot)).expect("open maildrop");
                drop.messages()
                    .iter()
                    .map(|m| m.uid.as_str().to_string())
                    .collect()
            }
        }
    }

    /// The in-memory store, if that is the backend (for its fault injection).
    pub fn memory_store(&self) -> Option<&MemoryStore> {
        match &self.backend {
            MailBackend::Memory(_, store) => Some(store),
            MailBackend::Postgres(_) => None,
        }
    }

    /// The PostgreSQL store, if that is the backend.
    pub fn pg_store(&self) -> Option<&PgStore> {
        match &self.backend {
            MailBackend::Memory(..) => None,
            MailBackend::Postgres(store) => Some(store),
        }
    }
}

/// Which client adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// pop3-tokio (current-thread runtime).
    Tokio,
    /// pop3-blocking.
    Blocking,
    /// pop3-futures on smol.
    Smol,
    /// pop3-futures on async-std.
    AsyncStd,
}

impl ClientKind {
    /// Every client adapter.
    pub const ALL: [ClientKind; 4] = [
        ClientKind::Tokio,
        ClientKind::Blocking,
        ClientKind::Smol,
        ClientKind::AsyncStd,
    ];
}

/// How the client protects the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain text.
    Plain,
    /// STLS (required: the client refuses to go on without it).
    StartTls,
    /// Implicit TLS.
    Implicit,
}

impl Mode {
    /// Every mode.
    pub const ALL: [Mode; 3] = [Mode::Plain, Mode::StartTls, Mode::Implicit];
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
/// APIs, so that one scenario runs on all of them.
#[derive(Debug, Clone)]
pub enum Op {
    /// CAPA: expects these SASL mechanisms (in this order) in the answer.
    SaslMechanisms(Vec<String>),
    /// STAT: expects (count, size).
    Stat(u64, u64),
    /// LIST: expects the sizes in order.
    List(Vec<u64>),
    /// UIDL: expects the unique-ids in order.
    Uidl(Vec<String>),
    /// RETR n through the chunk callback (`retr_with`): expects these bytes, compared as they
    /// stream (never collected).
    Retr(u32, Arc<Vec<u8>>),
    /// RETR n into a writer (`retr_to`: std, tokio or futures-io): expects these bytes,
    /// compared as they are written.
    RetrTo(u32, Arc<Vec<u8>>),
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
    /// RETR of several messages with `fetch_many` (pipelined when the server advertises
    /// PIPELINING): expects each message's bytes, in order, each ended by `Chunk::End`.
    FetchMany(Vec<(u32, Arc<Vec<u8>>)>),
    /// DELE of several messages with `delete_many` (pipelined).
    DeleteMany(Vec<u32>),
    /// RETR n through the chunk callback, checked against a length and an [`Fnv`] digest
    /// only: the expected bytes need not be in memory either (for memory measurements).
    RetrDigest(u32, u64, u64),
}

/// What a client run observed about how bodies reached the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyStats {
    /// The largest single chunk (or write) of any body: the most the client held at once.
    pub largest_chunk: usize,
    /// How many chunks (or writes) all bodies took.
    pub chunks: usize,
    /// Body octets delivered.
    pub octets: u64,
}

/// Compares a streamed body with the expected bytes, chunk by chunk, and records the chunk
/// sizes. It is also a writer (std, tokio and futures-io) for the adapters' `retr_to`.
#[derive(Debug)]
pub struct BodyCheck {
    expected: Arc<Vec<u8>>,
    pos: usize,
    stats: BodyStats,
}

impl BodyCheck {
    /// A check against `expected`.
    pub fn new(expected: Arc<Vec<u8>>) -> Self {
        BodyCheck {
            expected,
            pos: 0,
            stats: BodyStats::default(),
        }
    }

    /// Takes the next chunk: an error as soon as it differs from what was expected.
    pub fn feed(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.stats.largest_chunk = self.stats.largest_chunk.max(chunk.len());
        self.stats.chunks += 1;
        self.stats.octets += chunk.len() as u64;
        let end = self.pos + chunk.len();
        if end > self.expected.len() || self.expected[self.pos..end] != *chunk {
            let same = chunk
                .iter()
                .zip(&self.expected[self.pos.min(self.expected.len())..])
                .take_while(|(a, b)| a == b)
                .count();
            return Err(std::io::Error::other(format!(
                "body differs at octet {} of {}",
                self.pos + same,
                self.expected.len()
            )));
        }
        self.pos = end;
        Ok(())
    }

    /// The statistics, or an error if the body was shorter than expected.
    pub fn finish(&self) -> Result<BodyStats, String> {
        if self.pos == self.expected.len() {
            Ok(self.stats)
        } else {
            Err(format!(
                "body ended after {} octets, expected {}",
                self.pos,
                self.expected.len()
            ))
        }
    }
}

impl std::io::Write for BodyCheck {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.feed(buf).map(|()| buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl futures_io::AsyncWrite for BodyCheck {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.get_mut().feed(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for BodyCheck {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.get_mut().feed(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Runs `login` and `ops` with the client adapter `kind` against `addr` (certificate name
/// `localhost`, trusted through `client_tls`), bounded by [`LIMIT`]; returns what the bodies
/// looked like, or the first failure.
pub fn run_client(
    kind: ClientKind,
    mode: Mode,
    addr: SocketAddr,
    client_tls: Arc<rustls::ClientConfig>,
    login: Login,
    ops: Vec<Op>,
) -> Result<BodyStats, String> {
    let label = format!("{kind:?} client, {mode:?}, {addr}");
    bounded(&label, LIMIT, move || {
        let addr = addr.to_string();
        let t = match mode {
            Mode::Plain => TlsChoice::Plain,
            Mode::StartTls => TlsChoice::StartTls(client_tls),
            Mode::Implicit => TlsChoice::Implicit(client_tls),
        };
        match kind {
            ClientKind::Tokio => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(run_tokio(t, &addr, &login, &ops)),
            ClientKind::Blocking => run_blocking(t, &addr, &login, &ops),
            ClientKind::Smol => smol::block_on(run_smol(t, &addr, &login, &ops)),
            ClientKind::AsyncStd => {
                async_std::task::block_on(run_async_std(t, &addr, &login, &ops))
            }
        }
    })
}

/// The TLS mode, before it becomes an adapter's own `TlsMode`.
enum TlsChoice {
    Plain,
    StartTls(Arc<rustls::ClientConfig>),
    Implicit(Arc<rustls::ClientConfig>),
}

macro_rules! tls_mode {
    ($t:expr, $m:path) => {{
        use $m as m;
        let t = match $t {
            TlsChoice::Plain => m::TlsMode::Plain,
            TlsChoice::StartTls(c) => m::TlsMode::StartTls(c),
            TlsChoice::Implicit(c) => m::TlsMode::Implicit(c),
        };
        let mut o = m::ClientOptions::new(t);
        o.server_name = Some("localhost".into());
        o
    }};
}

/// The scenario, written once for all adapters: `$m` is the adapter's client module (for its
/// `Chunk`), `$aw` is `.await` for the async ones.
macro_rules! script {
    ($c:ident, $($m:ident)::+, $login:expr, $ops:expr, [$($aw:tt)*]) => {{
        let mut stats = BodyStats::default();
        match $login {
            Login::UserPass(u, p) => $c.login(u, p)$($aw)*.map_err(|e| format!("USER/PASS: {e}"))?,
            Login::Apop(u, p) => $c.apop(u, p)$($aw)*.map_err(|e| format!("APOP: {e}"))?,
            Login::Sasl(creds) => $c.auth(creds.clone())$($aw)*.map_err(|e| format!("AUTH {creds:?}: {e}"))?,
        }
        for op in $ops {
            match op {
                Op::SaslMechanisms(want) => {
                    let caps = $c.capa()$($aw)*.map_err(|e| format!("CAPA: {e}"))?;
                    let got = sasl_of(&caps);
                    if got != *want {
                        return Err(format!("SASL {got:?}, expected {want:?}"));
                    }
                }
                Op::Stat(count, size) => {
                    let s = $c.stat()$($aw)*.map_err(|e| format!("STAT: {e}"))?;
                    if (s.count, s.size) != (*count, *size) {
                        return Err(format!("STAT {} {}, expected {count} {size}", s.count, s.size));
                    }
                }
                Op::List(sizes) => {
                    let l: Vec<u64> = $c.list()$($aw)*.map_err(|e| format!("LIST: {e}"))?.iter().map(|i| i.size).collect();
                    if l != *sizes {
                        return Err(format!("LIST {l:?}, expected {sizes:?}"));
                    }
                }
                Op::Uidl(uids) => {
                    let u: Vec<String> = $c.uidl()$($aw)*.map_err(|e| format!("UIDL: {e}"))?.iter().map(|i| i.uid.as_str().to_string()).collect();
                    if u != *uids {
                        return Err(format!("UIDL {u:?}, expected {uids:?}"));
                    }
                }
                Op::Retr(n, expected) => {
                    let mut check = BodyCheck::new(expected.clone());
                    let count = $c.retr_with(msg(*n)?, |chunk| check.feed(chunk))$($aw)*
                        .map_err(|e| format!("RETR {n}: {e}"))?;
                    let s = check.finish().map_err(|e| format!("RETR {n}: {e}"))?;
                    if count != s.octets {
                        return Err(format!("RETR {n}: returned {count}, delivered {}", s.octets));
                    }
                    stats = merge(stats, s);
                }
                Op::RetrTo(n, expected) => {
                    let mut check = BodyCheck::new(expected.clone());
                    let count = $c.retr_to(msg(*n)?, &mut check)$($aw)*
                        .map_err(|e| format!("RETR {n} (writer): {e}"))?;
                    let s = check.finish().map_err(|e| format!("RETR {n} (writer): {e}"))?;
                    if count != s.octets {
                        return Err(format!("RETR {n}: returned {count}, wrote {}", s.octets));
                    }
                    stats = merge(stats, s);
                }
                Op::Top(n, lines, expected) => {
                    let mut got = Vec::new();
                    $c.top_with(msg(*n)?, *lines, |c| { got.extend_from_slice(c); Ok(()) })$($aw)*
                        .map_err(|e| format!("TOP {n} {lines}: {e}"))?;
                    if got != *expected {
                        return Err(format!("TOP {n} {lines}: got {:?}, expected {:?}",
                            String::from_utf8_lossy(&got), String::from_utf8_lossy(expected)));
                    }
                }
                Op::Dele(n) => $c.dele(msg(*n)?)$($aw)*.map_err(|e| format!("DELE {n}: {e}"))?,
                Op::Rset => $c.rset()$($aw)*.map_err(|e| format!("RSET: {e}"))?,
                Op::Noop => $c.noop()$($aw)*.map_err(|e| format!("NOOP: {e}"))?,
                Op::Quit => $c.quit()$($aw)*.map_err(|e| format!("QUIT: {e}"))?,
                Op::FetchMany(msgs) => {
                    let nums = msgs.iter().map(|(n, _)| msg(*n)).collect::<Result<Vec<_>, _>>()?;
                    let mut checks: Vec<BodyCheck> = msgs.iter().map(|(_, m)| BodyCheck::new(m.clone())).collect();
                    let mut at = 0usize;
                    $c.fetch_many(&nums, |n, chunk| {
                        if nums.get(at) != Some(&n) {
                            return Err(std::io::Error::other(format!("message {n:?} out of order")));
                        }
                        match chunk {
                            $($m)::+::Chunk::Data(d) => checks[at].feed(d),
                            $($m)::+::Chunk::End => {
                                at += 1;
                                Ok(())
                            }
                        }
                    })$($aw)*.map_err(|e| format!("fetch_many: {e}"))?;
                    if at != nums.len() {
                        return Err(format!("fetch_many: {at} of {} messages ended", nums.len()));
                    }
                    for (c, (n, _)) in checks.iter().zip(msgs) {
                        stats = merge(stats, c.finish().map_err(|e| format!("fetch_many {n}: {e}"))?);
                    }
                }
                Op::DeleteMany(ns) => {
                    let nums = ns.iter().map(|n| msg(*n)).collect::<Result<Vec<_>, _>>()?;
                    $c.delete_many(&nums)$($aw)*.map_err(|e| format!("delete_many: {e}"))?;
                }
                Op::RetrDigest(n, len, digest) => {
                    let mut fnv = Fnv::new();
                    let mut s = BodyStats::default();
                    $c.retr_with(msg(*n)?, |chunk| {
                        s.largest_chunk = s.largest_chunk.max(chunk.len());
                        s.chunks += 1;
                        s.octets += chunk.len() as u64;
                        fnv.write(chunk);
                        Ok(())
                    })$($aw)*.map_err(|e| format!("RETR {n}: {e}"))?;
                    if (s.octets, fnv.finish()) != (*len, *digest) {
                        return Err(format!("RETR {n}: {} octets with digest {:x}, expected {len} with {digest:x}", s.octets, fnv.finish()));
                    }
                    stats = merge(stats, s);
                }
            }
        }
        Ok(stats)
    }};
}

/// FNV-1a, 64 bits: a streaming digest (chunk boundaries do not matter) to compare a body
/// with one that is never held in memory.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Fnv {
    /// The empty digest.
    pub fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    /// Adds octets.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// The digest so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv {
    fn default() -> Self {
        Self::new()
    }
}

fn merge(a: BodyStats, b: BodyStats) -> BodyStats {
    BodyStats {
        largest_chunk: a.largest_chunk.max(b.largest_chunk),
        chunks: a.chunks + b.chunks,
        octets: a.octets + b.octets,
    }
}

/// The SASL mechanisms a CAPA answer lists.
pub fn sasl_of(caps: &[Capability]) -> Vec<String> {
    caps.iter()
        .find_map(|c| match c {
            Capability::Sasl(m) => Some(m.iter().map(|m| m.as_str().to_string()).collect()),
            _ => None,
        })
        .unwrap_or_default()
}

fn msg(n: u32) -> Result<MsgNum, String> {
    MsgNum::new(n).map_err(|e| format!("message number {n}: {e}"))
}

async fn run_tokio(
    t: TlsChoice,
    addr: &str,
    login: &Login,
    ops: &[Op],
) -> Result<BodyStats, String> {
    use pop3_tokio::client::Pop3Client;
    let o = tls_mode!(t, pop3_tokio::client);
    let mut c = Pop3Client::connect(addr, o)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    script!(c, pop3_tokio::client, login, ops, [.await])
}

fn run_blocking(t: TlsChoice, addr: &str, login: &Login, ops: &[Op]) -> Result<BodyStats, String> {
    use pop3_blocking::client::Pop3Client;
    let o = tls_mode!(t, pop3_blocking::client);
    let mut c = Pop3Client::connect(addr, o).map_err(|e| format!("connect: {e}"))?;
    script!(c, pop3_blocking::client, login, ops, [])
}

async fn run_smol(
    t: TlsChoice,
    addr: &str,
    login: &Login,
    ops: &[Op],
) -> Result<BodyStats, String> {
    use pop3_futures::client::Pop3Client;
    let o = tls_mode!(t, pop3_futures::client);
    let mut c = Pop3Client::connect(addr, o)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    script!(c, pop3_futures::client, login, ops, [.await])
}

async fn run_async_std(
    t: TlsChoice,
    addr: &str,
    login: &Login,
    ops: &[Op],
) -> Result<BodyStats, String> {
    use pop3_futures::client::Pop3Client;
    let o = tls_mode!(t, pop3_futures::client);
    let tcp = async_std::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let mut c = Pop3Client::connect_stream(tcp, o, AsyncStd)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    script!(c, pop3_futures::client, login, ops, [.await])
}

/// The SASL mechanisms the server at `addr` offers over `mode` (asked with the blocking
/// client, bounded).
pub fn offered_sasl(
    mode: Mode,
    addr: SocketAddr,
    client_tls: Arc<rustls::ClientConfig>,
) -> Result<Vec<String>, String> {
    bounded("CAPA probe", LIMIT, move || {
        let t = match mode {
            Mode::Plain => TlsChoice::Plain,
            Mode::StartTls => TlsChoice::StartTls(client_tls),
            Mode::Implicit => TlsChoice::Implicit(client_tls),
        };
        let o = tls_mode!(t, pop3_blocking::client);
        let mut c = pop3_blocking::client::Pop3Client::connect(&addr.to_string(), o)
            .map_err(|e| format!("connect: {e}"))?;
        let caps = c.capa().map_err(|e| format!("CAPA: {e}"))?;
        let _ = c.quit();
        Ok(sasl_of(&caps))
    })
}
