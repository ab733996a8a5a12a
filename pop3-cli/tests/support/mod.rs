//! What the tests of the server's logs, metrics and fail2ban filter share: a `pop3 serve`
//! child whose log goes to a file, and a small POP3 client over a `TcpStream`; and what the
//! tests of `pop3 fetch` share: its configuration file of accounts of that server, its runs,
//! and alice's maildrop on the server. (The servers `pop3 fetch` delivers to are in
//! `dovecot_imap.rs` and `peers.rs`, each included with `#[path]` by the tests that need it.)

#![allow(dead_code)]

pub(crate) use pop3_interop::free_port;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_pop3");

/// The test user and password.
pub(crate) const USER: &str = "alice";
pub(crate) const PASSWORD: &str = "s3cret-Pa55";

/// The messages in alice's Maildir, as stored (LF line ends).
pub(crate) const MESSAGES: [&str; 3] = [
    "Subject: one\n\nfirst body\n",
    "Subject: two\nX-Long: yes\n\nsecond body\nline two\n",
    "Subject: three\n\nthird\n",
];

/// A message's size as served (CRLF line ends).
pub(crate) fn served_size(m: &str) -> u64 {
    m.replace('\n', "\r\n").len() as u64
}

fn wait_for_port(port: u16, child: &mut Child, log: &Path) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "pop3 serve exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// A `pop3 serve` child on 127.0.0.1 whose stderr (the log) goes to a file; killed on drop.
pub(crate) struct Server {
    child: Child,
    pub(crate) port: u16,
    /// The implicit-TLS port, if `--tls-listen` was asked for.
    pub(crate) tls_port: Option<u16>,
    pub(crate) metrics_port: Option<u16>,
    pub(crate) dir: tempfile::TempDir,
}

/// What to start.
#[derive(Default)]
pub(crate) struct Options<'a> {
    /// `--tls-listen` too, with a self-signed certificate.
    pub(crate) tls: bool,
    /// `--metrics-listen`.
    pub(crate) metrics: bool,
    /// More arguments.
    pub(crate) args: &'a [&'a str],
}

impl Server {
    /// A server with pop3s too, on [`Server::tls_port`]: what `pop3 fetch` fetches from.
    pub(crate) fn start_tls() -> Server {
        Server::start(Options {
            tls: true,
            ..Options::default()
        })
    }

    pub(crate) fn start(opts: Options<'_>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let md = dir.path().join("mail").join(USER);
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(md.join(sub)).unwrap();
        }
        for (i, m) in MESSAGES.iter().enumerate() {
            let name = format!("new/{}.M{i}P9.test", 1_700_000_000 + i);
            std::fs::write(md.join(name), m).unwrap();
        }
        std::fs::write(
            dir.path().join("users"),
            format!("{USER}:{{PLAIN}}{PASSWORD}\n"),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("pop3.log")).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--maildir-root")
            .arg(dir.path().join("mail"))
            .arg("--users")
            .arg(dir.path().join("users"))
            .arg("--allow-plaintext-auth")
            .args(opts.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let tls_port = opts.tls.then(|| {
            let cert = pop3_tls::self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
            std::fs::write(dir.path().join("cert.pem"), cert.cert_pem).unwrap();
            std::fs::write(dir.path().join("key.pem"), cert.key_pem).unwrap();
            let p = free_port();
            cmd.args(["--tls-listen", &format!("127.0.0.1:{p}")])
                .arg("--cert")
                .arg(dir.path().join("cert.pem"))
                .arg("--key")
                .arg(dir.path().join("key.pem"));
            p
        });
        let metrics_port = opts.metrics.then(|| {
            let p = free_port();
            cmd.args(["--metrics-listen", &format!("127.0.0.1:{p}")]);
            p
        });
        let mut child = cmd.spawn().unwrap();
        let log = dir.path().join("pop3.log");
        for p in [Some(port), tls_port, metrics_port].into_iter().flatten() {
            wait_for_port(p, &mut child, &log);
        }
        Server {
            child,
            port,
            tls_port,
            metrics_port,
            dir,
        }
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.path().join("pop3.log")
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap()
    }

    /// Waits until `n` lines of the log contain `needle`, and gives the log.
    pub(crate) fn wait_for_lines(&self, needle: &str, n: usize) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.lines().filter(|l| l.contains(needle)).count() >= n {
                return log;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "fewer than {n} lines with {needle:?} in the log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn connect(&self) -> Client {
        Client::connect(self.port)
    }

    /// `pop3 fetch URL --keep` into a fresh Maildir, trusting the server's certificate;
    /// panics unless it succeeds.
    pub(crate) fn fetch(&self, url: &str) {
        let dest = tempfile::tempdir().unwrap();
        let out = Command::new(BIN)
            .arg("fetch")
            .arg(url)
            .arg("--ca-file")
            .arg(self.dir.path().join("cert.pem"))
            .args([
                "--password-env",
                "POP3_TEST_PW",
                "--keep",
                "--quiet",
                "--maildir",
            ])
            .arg(dest.path().join("md"))
            .env("POP3_TEST_PW", PASSWORD)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pop3 fetch {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A line-at-a-time POP3 client.
pub(crate) struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// The greeting.
    pub(crate) greeting: String,
}

impl Client {
    pub(crate) fn connect(port: u16) -> Client {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let writer = tcp.try_clone().unwrap();
        let mut c = Client {
            reader: BufReader::new(tcp),
            writer,
            greeting: String::new(),
        };
        c.greeting = c.line();
        assert!(c.greeting.starts_with("+OK"), "{}", c.greeting);
        c
    }

    /// The client's own port: the server logs it as `remote_port`.
    pub(crate) fn port(&self) -> u16 {
        self.writer.local_addr().unwrap().port()
    }

    pub(crate) fn line(&mut self) -> String {
        let mut l = String::new();
        self.reader.read_line(&mut l).unwrap();
        l
    }

    /// Sends `command`, gives the status line.
    pub(crate) fn cmd(&mut self, command: &str) -> String {
        self.writer
            .write_all(format!("{command}\r\n").as_bytes())
            .unwrap();
        self.line()
    }

    /// Sends `command`, expects `+OK` and a multi-line body: gives the body (dot-unstuffed,
    /// CRLF).
    pub(crate) fn multiline(&mut self, command: &str) -> Vec<u8> {
        let status = self.cmd(command);
        assert!(status.starts_with("+OK"), "{command}: {status}");
        let mut body = Vec::new();
        loop {
            let mut l = Vec::new();
            self.reader.read_until(b'\n', &mut l).unwrap();
            assert!(!l.is_empty(), "{command}: the server closed mid-body");
            if l == b".\r\n" {
                return body;
            }
            body.extend_from_slice(l.strip_prefix(b".").unwrap_or(&l));
        }
    }

    /// USER and PASS; gives PASS's status line.
    pub(crate) fn user_pass(&mut self, user: &str, password: &str) -> String {
        let ok = self.cmd(&format!("USER {user}"));
        assert!(ok.starts_with("+OK"), "USER: {ok}");
        self.cmd(&format!("PASS {password}"))
    }

    /// `AUTH PLAIN` with an initial response; gives the status line.
    pub(crate) fn auth_plain(&mut self, user: &str, password: &str) -> String {
        let creds = base64(format!("\0{user}\0{password}").as_bytes());
        self.cmd(&format!("AUTH PLAIN {creds}"))
    }
}

/// Standard base64 with padding.
pub(crate) fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `name value` pairs of a Prometheus text exposition, keyed by the sample's name and labels
/// as written (`pop3_logins_total{mechanism="USER",result="ok"}`).
pub(crate) fn parse_metrics(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// `GET path` over HTTP/1.1 on 127.0.0.1:`port`: the status line, the head and the body.
pub(crate) fn http_get(port: u16, path: &str) -> (String, String, String) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_string();
    (status, head.to_string(), body.to_string())
}

/// How long a command run by [`run`] may take.
pub(crate) const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs `cmd` to the end, killing it (and failing the test) after [`RUN_LIMIT`].
pub(crate) fn run(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

impl Server {
    /// The server's process id (to signal it).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGHUP (the users file and certificates are re-read) and waits for the log to
    /// say so.
    pub(crate) fn reload(&self) {
        let before = self.log().matches("users file read").count();
        let status = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.wait_for_lines("users file read", before + 1);
    }
}

/// Waits (up to 20 s) until something accepts connections on 127.0.0.1:`port`.
pub(crate) fn wait_for_listener(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// A command's standard error, as text.
pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A command's standard output, as text.
pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// alice's maildrop on `server`.
pub(crate) fn maildrop(server: &Server) -> PathBuf {
    server.dir.path().join("mail").join(USER)
}

/// How many messages are left in alice's maildrop.
pub(crate) fn on_server(server: &Server) -> usize {
    let md = maildrop(server);
    ["new", "cur"]
        .iter()
        .map(|d| std::fs::read_dir(md.join(d)).unwrap().count())
        .sum()
}

/// Replaces alice's maildrop with `messages` (LF line ends, as a Maildir stores them), the
/// i-th in `new/<time>.M<i><suffix>`.
pub(crate) fn set_maildrop(server: &Server, messages: &[Vec<u8>], suffix: &str) {
    let md = maildrop(server);
    for d in ["new", "cur"] {
        for e in std::fs::read_dir(md.join(d)).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
    }
    for (i, m) in messages.iter().enumerate() {
        let name = format!("new/{}.M{i}{suffix}", 1_700_000_000 + i);
        std::fs::write(md.join(name), m).unwrap();
    }
}

/// An account `name` of `pop3 fetch`'s configuration file: alice on `server` over implicit
/// TLS, its certificate trusted, with the `rest` lines.
pub(crate) fn account(server: &Server, name: &str, rest: &str) -> String {
    format!(
        "[accounts.{name}]\nurl = \"pop3s://alice@127.0.0.1:{}\"\nca_file = \"{}\"\n{rest}\n",
        server.tls_port.unwrap(),
        server.dir.path().join("cert.pem").display()
    )
}

/// Writes `path` readable by its owner only (as a file with a password must be).
pub(crate) fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    chmod(path, 0o600);
}

pub(crate) fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Writes `home/fetch.toml`: one [`account`] `name` of `server`, its password by
/// `password_command`, with the `target` lines (a target, a policy); gives its path.
pub(crate) fn write_config(home: &Path, server: &Server, name: &str, target: &str) -> PathBuf {
    let path = home.join("fetch.toml");
    let rest = format!("password_command = \"echo {PASSWORD}\"\n{target}");
    std::fs::write(&path, account(server, name, &rest)).unwrap();
    path
}

/// `pop3 fetch --config FILE`, its state under `home`.
pub(crate) fn fetch_command(home: &Path, config: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("fetch")
        .arg("--config")
        .arg(config)
        .env("HOME", home)
        .env("XDG_STATE_HOME", home.join("state"));
    cmd
}

/// Runs [`fetch_command`] to the end (within [`RUN_LIMIT`]).
pub(crate) fn run_fetch(home: &Path, config: &Path) -> Output {
    run(&mut fetch_command(home, config))
}

/// Starts [`fetch_command`], its output discarded (to be killed).
pub(crate) fn spawn_fetch(home: &Path, config: &Path) -> Child {
    fetch_command(home, config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}
