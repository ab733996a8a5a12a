//! `pop3 serve` run as in production, with the real binary on 127.0.0.1: the configuration
//! file (`--config`, `--check-config`, the shipped `contrib/pop3.toml`), reloading the users
//! and the certificates on SIGHUP without dropping a session, and systemd (socket activation
//! through `LISTEN_FDS`, `sd_notify`, the shipped units). Every child is killed on drop.

#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use pop3_interop::free_port;
use pop3_interop::peer_available;

const BIN: &str = env!("CARGO_BIN_EXE_pop3");

fn contrib(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib")
        .join(path)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `pop3 serve --check-config ...` to the end (it never waits for anything).
fn check_config(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(BIN)
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The lines a child writes on a stream, as they come.
struct Lines {
    rx: Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn new(r: impl Read + Send + 'static) -> Self {
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits (at most 30 s) for a line that contains `needle`, and returns it.
    fn until(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no line with {needle:?} ({e}); so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

/// A child process, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends `signal` and waits (at most 20 s) for the end.
    fn stop(&mut self, signal: &str) -> std::process::ExitStatus {
        self.signal(signal);
        let start = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no end on {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A POP3 client over any stream, one command at a time.
struct Pop<S: Read + Write>(BufReader<S>);

impl<S: Read + Write> Pop<S> {
    fn new(stream: S) -> Self {
        let mut p = Pop(BufReader::new(stream));
        let greeting = p.line();
        assert!(greeting.starts_with("+OK"), "{greeting}");
        p
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.0.read_line(&mut l).unwrap();
        l.trim_end().to_string()
    }

    /// Sends `cmd`, returns the first line of the reply.
    fn cmd(&mut self, cmd: &str) -> String {
        self.0
            .get_mut()
            .write_all(format!("{cmd}\r\n").as_bytes())
            .unwrap();
        self.0.get_mut().flush().unwrap();
        self.line()
    }

    /// The rest of a multi-line reply, up to the final ".".
    fn body(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line();
            if l == "." {
                return out;
            }
            out.push(l);
        }
    }

    fn login(&mut self, user: &str, password: &str) -> String {
        let r = self.cmd(&format!("USER {user}"));
        assert!(r.starts_with("+OK"), "{r}");
        self.cmd(&format!("PASS {password}"))
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS client over `tcp` that accepts any certificate (the tests look at which one came).
fn tls_over(tcp: TcpStream) -> Tls {
    let config = pop3_tls::client_config(&pop3_tls::Trust::DangerousAcceptAnyCertificate).unwrap();
    let conn =
        rustls::ClientConnection::new(config, pop3_tls::server_name("localhost").unwrap()).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).unwrap();
    }
    s
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// A session on an implicit-TLS port, and the certificate the server showed.
fn implicit(port: u16) -> (Pop<Tls>, Vec<u8>) {
    let s = tls_over(connect(port));
    let cert = s.conn.peer_certificates().unwrap()[0].to_vec();
    (Pop::new(s), cert)
}

/// A session upgraded with STLS, and the certificate the server showed.
fn stls(port: u16) -> (Pop<Tls>, Vec<u8>) {
    let mut p = Pop::new(connect(port));
    let r = p.cmd("STLS");
    assert!(r.starts_with("+OK"), "{r}");
    let s = tls_over(p.0.into_inner());
    let cert = s.conn.peer_certificates().unwrap()[0].to_vec();
    // No greeting after STLS: the session goes on.
    (Pop(BufReader::new(s)), cert)
}

/// Writes a new self-signed certificate and key to `dir/name.pem` and `dir/name.key`; its DER.
fn new_cert(dir: &Path, name: &str) -> Vec<u8> {
    let c = pop3_tls::self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), &c.cert_pem).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), &c.key_pem).unwrap();
    pop3_tls::certificates_from_pem(c.cert_pem.as_bytes()).unwrap()[0].to_vec()
}

/// A Maildir root with one message for each user.
fn maildirs(root: &Path, users: &[&str]) {
    for u in users {
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(root.join(u).join(sub)).unwrap();
        }
        std::fs::write(
            root.join(u).join("new/1700000000.M1P1.test"),
            format!("Subject: for {u}\n\nhello {u}\n"),
        )
        .unwrap();
    }
}

/// The shipped example, with the files it names replaced by flags (they do not exist here):
/// it loads, and `--check-config` prints what it says, never a key or a password.
#[test]
fn check_config_on_the_shipped_example() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users"), "alice:{PLAIN}sesame-secret\n").unwrap();
    std::fs::create_dir(dir.path().join("mail")).unwrap();
    new_cert(dir.path(), "cert");
    let example = contrib("pop3.toml");
    let out = check_config(&[
        "--check-config".as_ref(),
        example.as_os_str(),
        "--users".as_ref(),
        dir.path().join("users").as_os_str(),
        "--maildir-root".as_ref(),
        dir.path().join("mail").as_os_str(),
        "--cert".as_ref(),
        dir.path().join("cert.pem").as_os_str(),
        "--key".as_ref(),
        dir.path().join("cert.key").as_os_str(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for want in [
        "[[listener]]\naddress = \"[::]:110\"\ntls = \"starttls\"\nname = \"pop3\"\n",
        "[[listener]]\naddress = \"[::]:995\"\ntls = \"implicit\"\nname = \"pop3s\"\n",
        "allow_plaintext_auth = false\n",
        "idle_timeout = 600\n",
        "command_timeout = 60\n",
        "max_connections = 1024\n",
        "login_timeout = 60\n",
        "max_unauthenticated_per_ip = 32\n",
        "max_sessions_per_user = 10\n",
        "maildrop_lock = \"snapshot\"\n",
        "expire = \"never\"\n",
        "[log]\nformat = \"text\"\nlevel = \"info\"\n",
        "# users: 1 in ",
        "they match",
        &format!("cert = \"{}\"", dir.path().join("cert.pem").display()),
    ] {
        assert!(stdout.contains(want), "{want:?} missing in:\n{stdout}");
    }
    let key = std::fs::read_to_string(dir.path().join("cert.key")).unwrap();
    let key_body = key.lines().nth(1).unwrap();
    for secret in ["PRIVATE KEY", key_body, "sesame-secret"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} printed"
        );
    }
    // What it prints is a configuration file that says the same.
    let again = dir.path().join("effective.toml");
    std::fs::write(&again, &stdout).unwrap();
    let out = check_config(&["--check-config".as_ref(), again.as_os_str()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let body = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(body(&text(&out.stdout)), body(&stdout));

    // As shipped, it names files of a real installation: when they are missing, it says so.
    if !Path::new("/etc/pop3/users").exists() {
        let out = check_config(&["--check-config".as_ref(), example.as_os_str()]);
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains("/etc/pop3/users"), "{err}");
        assert!(err.contains("/var/vmail: not a directory"), "{err}");
    }
}

/// Errors carry the file, line and column; unknown keys are errors; flags win over the file.
#[test]
fn check_config_errors_and_flags_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pop3.toml");
    let check = |body: &str, extra: &[&str]| {
        std::fs::write(&file, body).unwrap();
        let mut args = vec!["--check-config".as_ref(), file.as_os_str()];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        check_config(&args)
    };
    let bad = |body: &str, want: &str| {
        let out = check(body, &[]);
        assert!(!out.status.success(), "{body}");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{want:?} not in {err:?}");
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    };
    let f = file.display();
    bad(
        "[policy]\nidle_timeout = 5\nidle_timout = 6\n",
        &format!("{f}:3:1: unknown field `idle_timout`, expected one of"),
    );
    bad("[policy]\nidle_timeout = \"ten\"\n", &format!("{f}:2:16: "));
    bad(
        "[store]\nmaildir = \"/m\"\n",
        &format!("{f}:2:1: unknown field `maildir`"),
    );
    bad(
        "[policy]\nexpire = \"soon\"\n",
        "\"never\" or a number of days",
    );
    bad(
        "[[listener]]\naddress = \"127.0.0.1:110\"\ntls = \"ssl\"\n",
        &format!("{f}:3:7: "),
    );
    bad(
        "[[listener]]\nadress = \"127.0.0.1:110\"\n",
        &format!("{f}:2:1: unknown field `adress`"),
    );
    bad("[tls]\ncert = \"c.pem\"\n", "[tls] needs both cert and key");
    bad(
        "[[listener]]\naddress = \"127.0.0.1:995\"\ntls = \"implicit\"\n",
        "listener 1 (127.0.0.1:995): a certificate is needed",
    );
    bad(
        "[[listener]]\naddress = \"127.0.0.1\"\n",
        "listener 1 (127.0.0.1): expected host:port",
    );
    bad("[log\n", &format!("{f}:1:"));

    // Flags win; what they do not give comes from the file; --listen replaces the listeners.
    std::fs::write(dir.path().join("users"), "alice:{PLAIN}pw\n").unwrap();
    std::fs::create_dir(dir.path().join("mail")).unwrap();
    let body = "[users]\npasswd_file = \"users\"\n[store]\nmaildir_root = \"mail\"\n\
                [policy]\nidle_timeout = 100\ncommand_timeout = 7\nmaildrop_lock = \"exclusive\"\n\
                expire = 0\nlogin_delay = 30\n[metrics]\nlisten = \"127.0.0.1:9110\"\n\
                [[listener]]\naddress = \"127.0.0.1:1110\"\n";
    let out = check(
        body,
        &["--idle-timeout", "42", "--listen", "127.0.0.1:2110"],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("idle_timeout = 42\n"), "{stdout}");
    for want in [
        "command_timeout = 7\n",
        "maildrop_lock = \"exclusive\"\n",
        "expire = 0\n",
        "login_delay = 30\n",
        "[metrics]\nlisten = \"127.0.0.1:9110\"\n",
    ] {
        assert!(stdout.contains(want), "{want:?} missing in:\n{stdout}");
    }
    assert!(stdout.contains("address = \"127.0.0.1:2110\""), "{stdout}");
    assert!(!stdout.contains("1110"), "{stdout}");
    // Relative paths are relative to the file.
    let users = dir.path().join("users");
    assert!(
        stdout.contains(&format!("passwd_file = \"{}\"", users.display())),
        "{stdout}"
    );
    // A users file that does not load is an error, with its line.
    std::fs::write(&users, "alice:{PLAIN}pw\nbob:{NOSUCH}x\n").unwrap();
    let out = check(body, &[]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("line 2: unsupported password scheme {NOSUCH}"),
        "{err}"
    );
}

/// Reload on SIGHUP: sessions already open (plain and TLS) go on; new logins check the new
/// users file; new TLS connections, implicit and STLS, get the renewed certificates (each
/// listener its own); a broken users file or certificate is logged and the old one kept.
#[test]
fn sighup_reloads_users_and_certificates_without_dropping_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    maildirs(&d.join("mail"), &["alice", "bob", "carol"]);
    let users = d.join("users");
    std::fs::write(
        &users,
        "alice:{PLAIN}alice-old\nbob:{PLAIN}bob-old\ncarol:{PLAIN}carol-old\n",
    )
    .unwrap();
    let cert_a = new_cert(d, "a");
    let cert_b = new_cert(d, "b");
    let (port, tls_port) = (free_port(), free_port());
    std::fs::write(
        d.join("pop3.toml"),
        format!(
            "[users]\npasswd_file = \"users\"\nauth_threads = 1\n\
             [store]\nmaildir_root = \"mail\"\n\
             [tls]\ncert = \"a.pem\"\nkey = \"a.key\"\n\
             [policy]\nallow_plaintext_auth = true\nexpire = 0\n\
             [[listener]]\naddress = \"127.0.0.1:{port}\"\n\
             [[listener]]\naddress = \"127.0.0.1:{tls_port}\"\ntls = \"implicit\"\n\
             cert = \"b.pem\"\nkey = \"b.key\"\n"
        ),
    )
    .unwrap();
    let mut server = Running(
        Command::new(BIN)
            .args(["serve", "--config"])
            .arg(d.join("pop3.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut log = Lines::new(server.0.stderr.take().unwrap());
    log.until(&format!("127.0.0.1:{port}"));
    log.until(&format!("127.0.0.1:{tls_port}"));

    // Each listener its own certificate.
    assert_eq!(stls(port).1, cert_a);
    assert_eq!(implicit(tls_port).1, cert_b);
    // Sessions open across the reload: alice in plain text, bob over implicit TLS.
    let mut alice = Pop::new(connect(port));
    assert!(alice.login("alice", "alice-old").starts_with("+OK"));
    let (mut bob, _) = implicit(tls_port);
    assert!(bob.login("bob", "bob-old").starts_with("+OK"));

    std::fs::write(
        &users,
        "alice:{PLAIN}alice-new\nbob:{PLAIN}bob-new\ncarol:{PLAIN}carol-new\n",
    )
    .unwrap();
    let new_a = new_cert(d, "a");
    let new_b = new_cert(d, "b");
    server.signal("-HUP");
    log.until("reload: users file read");
    log.until("reload: certificate read");
    log.until("reload: certificate read");

    // The open sessions go on as they were.
    assert!(alice.cmd("STAT").starts_with("+OK 1 "));
    assert!(alice.cmd("RETR 1").starts_with("+OK"));
    assert!(alice.body().contains(&"hello alice".to_string()));
    assert!(bob.cmd("STAT").starts_with("+OK 1 "));
    assert!(bob.cmd("RETR 1").starts_with("+OK"));
    assert!(bob.body().contains(&"hello bob".to_string()));
    // New logins need the new password.
    let mut p = Pop::new(connect(port));
    assert!(p.login("carol", "carol-old").starts_with("-ERR"));
    let mut p = Pop::new(connect(port));
    assert!(p.login("carol", "carol-new").starts_with("+OK"));
    assert!(p.cmd("QUIT").starts_with("+OK"));
    // New connections get the new certificates, each listener its own.
    let (mut p, cert) = stls(port);
    assert_eq!(cert, new_a);
    // The file's policy is the server's.
    assert!(p.cmd("CAPA").starts_with("+OK"));
    let capa = p.body();
    assert!(capa.contains(&"EXPIRE 0".to_string()), "{capa:?}");
    let (_, cert) = implicit(tls_port);
    assert_eq!(cert, new_b);
    assert_ne!(new_b, cert_b);
    assert!(alice.cmd("QUIT").starts_with("+OK"));
    assert!(bob.cmd("QUIT").starts_with("+OK"));

    // A broken users file and a broken certificate: logged, and the previous ones stay.
    std::fs::write(&users, "carol:{NOSUCH}x\n").unwrap();
    std::fs::write(d.join("a.pem"), "not a certificate\n").unwrap();
    server.signal("-HUP");
    let why = log.until("reload: users file refused");
    assert!(
        why.contains("line 1: unsupported password scheme {NOSUCH}"),
        "{why}"
    );
    let why = log.until("reload: certificate refused");
    assert!(why.contains("a.pem"), "{why}");
    log.until("reload: certificate read");
    let mut p = Pop::new(connect(port));
    assert!(p.login("alice", "alice-new").starts_with("+OK"));
    assert!(p.cmd("QUIT").starts_with("+OK"));
    assert_eq!(stls(port).1, new_a);

    assert!(server.stop("-TERM").success());
}

/// The datagrams a `NOTIFY_SOCKET` receives.
struct Notify {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Notify {
    fn new(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Notify { socket, path }
    }

    fn next(&self) -> String {
        let mut buf = [0; 4096];
        let n = self.socket.recv(&mut buf).expect("a notification");
        text(&buf[..n])
    }
}

/// READY=1 once listening; RELOADING=1 with MONOTONIC_USEC on SIGHUP (as Type=notify-reload
/// wants) then READY=1; STOPPING=1 on SIGTERM.
#[test]
fn sd_notify_ready_reloading_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    maildirs(&d.join("mail"), &["alice"]);
    std::fs::write(d.join("users"), "alice:{PLAIN}pw\n").unwrap();
    let port = free_port();
    let notify = Notify::new(d);
    let mut server = Running(
        Command::new(BIN)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--maildir-root")
            .arg(d.join("mail"))
            .arg("--users")
            .arg(d.join("users"))
            .env("NOTIFY_SOCKET", &notify.path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ready = notify.next();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    // Ready means serving.
    let mut p = Pop::new(connect(port));
    assert!(p.cmd("QUIT").starts_with("+OK"));

    server.signal("-HUP");
    let reloading = notify.next();
    assert!(
        reloading.lines().any(|l| l == "RELOADING=1"),
        "{reloading:?}"
    );
    let usec = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
    assert!(usec.parse::<u64>().unwrap() > 0);
    let ready = notify.next();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(ready.contains("STATUS=reloaded"), "{ready:?}");

    server.signal("-TERM");
    let stopping = notify.next();
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert!(server.stop("-TERM").success());
}

/// Socket activation: listeners handed over through LISTEN_FDS (by systemd-socket-activate,
/// as systemd does) are served as they are, each as the configured listener of its name
/// (LISTEN_FDNAMES) says, and the configured addresses are not bound.
#[test]
fn socket_activation_serves_the_listeners_handed_over() {
    if !peer_available("systemd-socket-activate") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    maildirs(&d.join("mail"), &["alice"]);
    std::fs::write(d.join("users"), "alice:{PLAIN}pw\n").unwrap();
    let cert_b = new_cert(d, "b");
    let cert_a = new_cert(d, "a");
    let (port, tls_port, unused, unused_tls) = (free_port(), free_port(), free_port(), free_port());
    std::fs::write(
        d.join("pop3.toml"),
        format!(
            "[users]\npasswd_file = \"users\"\n\
             [store]\nmaildir_root = \"mail\"\n\
             [tls]\ncert = \"a.pem\"\nkey = \"a.key\"\n\
             [[listener]]\naddress = \"127.0.0.1:{unused}\"\nname = \"pop3\"\n\
             [[listener]]\naddress = \"127.0.0.1:{unused_tls}\"\ntls = \"implicit\"\n\
             name = \"pop3s\"\ncert = \"b.pem\"\nkey = \"b.key\"\n"
        ),
    )
    .unwrap();
    let notify = Notify::new(d);
    let mut server = Running(
        Command::new("systemd-socket-activate")
            .args(["-l", &format!("127.0.0.1:{port}")])
            .args(["-l", &format!("127.0.0.1:{tls_port}")])
            .arg("--fdname=pop3:pop3s")
            .arg(format!("-ENOTIFY_SOCKET={}", notify.path.display()))
            .args([BIN, "serve", "--config"])
            .arg(d.join("pop3.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut log = Lines::new(server.0.stderr.take().unwrap());
    log.until(&format!("Listening on 127.0.0.1:{tls_port}"));
    // The first connection starts the server; it waits in the socket's queue meanwhile.
    let mut p = Pop::new(connect(port));
    let ready = notify.next();
    assert!(ready.contains("READY=1"), "{ready:?}");
    let line = log.until(&format!("127.0.0.1:{port}"));
    assert!(
        line.contains("socket_activated=true") && line.contains("pop3"),
        "{line}"
    );
    // "pop3": plain text with STLS and [tls]'s certificate.
    assert!(p.cmd("CAPA").starts_with("+OK"));
    assert!(p.body().contains(&"STLS".to_string()));
    assert!(p.cmd("QUIT").starts_with("+OK"));
    assert_eq!(stls(port).1, cert_a);
    // "pop3s": implicit TLS with its own certificate.
    let (mut p, cert) = implicit(tls_port);
    assert_eq!(cert, cert_b);
    assert!(p.login("alice", "pw").starts_with("+OK"));
    assert!(p.cmd("STAT").starts_with("+OK 1 "));
    assert!(p.cmd("QUIT").starts_with("+OK"));
    // The configured addresses were not bound.
    for unused in [unused, unused_tls] {
        assert!(TcpStream::connect(("127.0.0.1", unused)).is_err());
    }
    assert!(server.stop("-TERM").success());
}

/// The shipped units parse (`systemd-analyze verify`), and their socket names are those of the
/// shipped configuration's listeners.
#[test]
fn shipped_systemd_units_verify() {
    if !peer_available("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for unit in ["pop3.service", "pop3.socket", "pop3s.socket"] {
        let body = std::fs::read_to_string(contrib(&format!("systemd/{unit}"))).unwrap();
        // verify checks that ExecStart's program exists.
        let body = body.replace("/usr/local/bin/pop3", BIN);
        std::fs::write(dir.path().join(unit), body).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(["pop3.service", "pop3.socket", "pop3s.socket"])
        .current_dir(dir.path())
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    // systemd < 253 does not know Type=notify-reload (and says so); nothing else may be said.
    let other: Vec<&str> = err
        .lines()
        .filter(|l| !l.contains("notify-reload"))
        .collect();
    assert!(other.is_empty(), "{err}");
    let service = std::fs::read_to_string(contrib("systemd/pop3.service")).unwrap();
    for line in [
        "Type=notify-reload",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/vmail",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "Sockets=pop3.socket pop3s.socket",
    ] {
        assert!(service.contains(line), "{line}");
    }
    let example = std::fs::read_to_string(contrib("pop3.toml")).unwrap();
    assert!(example.contains("maildir_root = \"/var/vmail\""));
    for (unit, name) in [("pop3.socket", "pop3"), ("pop3s.socket", "pop3s")] {
        let socket = std::fs::read_to_string(contrib(&format!("systemd/{unit}"))).unwrap();
        assert!(
            socket.contains(&format!("FileDescriptorName={name}\n")),
            "{unit}"
        );
        assert!(example.contains(&format!("name = \"{name}\"\n")), "{name}");
    }
}
