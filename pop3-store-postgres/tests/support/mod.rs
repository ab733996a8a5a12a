//! Real servers for tests: a PostgreSQL cluster and an S3 server (moto), each started on
//! 127.0.0.1 and a free port, in a temporary directory, and stopped when the test process
//! ends. Self-contained (std only), so it can move to a shared test-support crate.
//!
//! - [`database`]: a fresh, empty database on the test binary's one cluster
//!   ([`PgCluster::shared`], started on first use). One `initdb` per binary, one
//!   `CREATE DATABASE` per test.
//! - [`PgCluster::start`]: a cluster of one's own (stopped when dropped), e.g. to stop it in
//!   the middle of a test.
//! - [`MotoServer::shared`]: an S3 server; [`MotoServer::create_bucket`].
//!
//! PostgreSQL's binaries are found through `POP3_PG_BINDIR`, then `pg_config --bindir`, then
//! the newest `/usr/lib/postgresql/*/bin`. Running as root (as CI does), `initdb` and
//! `postgres` run as the `postgres` user (`runuser`), since PostgreSQL refuses root. When the
//! binaries (or moto) are missing, the helpers print a loud `SKIPPED` line and return `None`:
//! the test returns early. `.ci/install-peers.sh` installs both.
//!
//! Every server is started under a small shell watchdog that stops it once the test process
//! is gone (statics are never dropped), then removes its directory.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running PostgreSQL cluster: superuser `postgres`, trust authentication on 127.0.0.1.
#[derive(Debug)]
pub struct PgCluster {
    bindir: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
    /// Stop the server when dropped (not for the shared one, which is never dropped).
    owned: bool,
}

/// A fresh database on the shared cluster: its connection URL. `None` (after printing
/// SKIPPED) when PostgreSQL is not installed.
pub fn database() -> Option<String> {
    PgCluster::shared().map(|c| c.create_database())
}

fn skipped(what: &str) {
    eprintln!(
        "\n==============================================================\n\
         SKIPPED: {what} (run .ci/install-peers.sh)\n\
         ==============================================================\n"
    );
}

/// The directory of `initdb`, `postgres`, `pg_ctl`, `createdb` and `pg_isready`.
pub fn pg_bindir() -> Option<PathBuf> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("POP3_PG_BINDIR").map(PathBuf::from)
        && has_initdb(&dir)
    {
        return Some(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_initdb(&dir) {
            return Some(dir);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_initdb(&bin).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// A new directory under the system's temporary directory, kept (the watchdog removes it).
fn temp_dir(prefix: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
    ));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}

/// The shell loop that stops the server whose pid is in `$server` once this process is gone
/// (or the server stopped by itself), then removes `dir`.
fn watchdog(start: &str, stop: &str, dir: &Path) -> String {
    format!(
        "{start} & server=$!\n\
         while [ -d /proc/{parent} ] && kill -0 $server 2>/dev/null; do sleep 0.5; done\n\
         {stop} 2>/dev/null\n\
         wait $server\n\
         rm -rf '{dir}'\n",
        parent = std::process::id(),
        dir = dir.display(),
    )
}

/// Waits for `child` on a thread of its own, so that it leaves no zombie when it ends.
fn reap(mut child: std::process::Child) {
    std::thread::spawn(move || child.wait());
}

impl PgCluster {
    /// The test binary's cluster, started on first use. `None` (after printing SKIPPED) when
    /// PostgreSQL is not installed; panics if it is installed but cannot start.
    pub fn shared() -> Option<&'static PgCluster> {
        static SHARED: OnceLock<Option<PgCluster>> = OnceLock::new();
        SHARED.get_or_init(|| PgCluster::start_with(false)).as_ref()
    }

    /// A cluster of its own, stopped when dropped.
    pub fn start() -> Option<PgCluster> {
        PgCluster::start_with(true)
    }

    fn start_with(owned: bool) -> Option<PgCluster> {
        let Some(bindir) = pg_bindir() else {
            skipped("PostgreSQL not installed");
            return None;
        };
        let as_postgres = is_root();
        let dir = temp_dir("pop3-pg");
        if as_postgres {
            let chowned = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status();
            if !chowned.is_ok_and(|s| s.success()) {
                skipped("PostgreSQL installed, but there is no `postgres` user to run it as");
                return None;
            }
        }
        let cluster = PgCluster {
            bindir,
            dir,
            port: free_port(),
            as_postgres,
            owned,
        };
        let data = cluster.dir.join("data");
        let out = cluster
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let postgres = format!(
            "'{bin}/postgres' -D '{data}' -p {port} -k '{dir}' -c listen_addresses=127.0.0.1 \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=300 >'{dir}/postgres.log' 2>&1",
            bin = cluster.bindir.display(),
            data = data.display(),
            port = cluster.port,
            dir = cluster.dir.display(),
        );
        let script = watchdog(&postgres, "kill -INT $server", &cluster.dir);
        let watchdog = cluster
            .shell(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        reap(watchdog);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(cluster.bindir.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-p"])
                .arg(cluster.port.to_string())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(cluster.dir.join("postgres.log")).unwrap_or_default();
                panic!("postgres did not start on port {}:\n{log}", cluster.port);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(cluster)
    }

    /// A command of the cluster's binaries, run as the cluster's owner.
    fn command(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn shell(&self, script: &str) -> Command {
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c"]);
            c
        } else {
            let mut c = Command::new("sh");
            c.arg("-c");
            c
        };
        c.arg(script);
        c
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the cluster (its data in `data/`, its log in `postgres.log`, its
    /// Unix socket).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The URL of `database` as the superuser over TCP.
    pub fn url(&self, database: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a new, empty database and returns its URL.
    pub fn create_database(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new(self.bindir.join("createdb"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .arg(&name)
            .output()
            .expect("run createdb");
        assert!(
            out.status.success(),
            "createdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(&name)
    }

    /// Stops the server now (fast shutdown: sessions are disconnected).
    pub fn stop(&self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["stop", "-m", "fast", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.owned {
            // The watchdog sees the server gone and removes the directory.
            self.stop();
        }
    }
}

/// A moto S3 server (`moto_server`, from `pip install 'moto[server]'`): any credentials are
/// accepted.
#[derive(Debug)]
pub struct MotoServer {
    port: u16,
}

impl MotoServer {
    /// The test binary's S3 server, started on first use; `None` (after printing SKIPPED)
    /// when moto is not installed.
    pub fn shared() -> Option<&'static MotoServer> {
        static SHARED: OnceLock<Option<MotoServer>> = OnceLock::new();
        SHARED.get_or_init(MotoServer::start).as_ref()
    }

    fn start() -> Option<MotoServer> {
        let program = if Command::new("moto_server")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            "moto_server".to_string()
        } else if Command::new("python3")
            .args(["-c", "import moto.server"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            "python3 -m moto.server".to_string()
        } else {
            skipped("moto (S3 server) not installed");
            return None;
        };
        let port = free_port();
        let dir = temp_dir("pop3-moto");
        let start = format!(
            "{program} -H 127.0.0.1 -p {port} >'{}/moto.log' 2>&1",
            dir.display()
        );
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(watchdog(&start, "kill $server", &dir))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        reap(watchdog);
        let server = MotoServer { port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.request("GET", "/").is_none() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join("moto.log")).unwrap_or_default();
                panic!("moto_server did not start on port {port}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(server)
    }

    /// The endpoint URL (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a bucket (path style; moto needs no signature).
    pub fn create_bucket(&self, bucket: &str) {
        let status = self
            .request("PUT", &format!("/{bucket}"))
            .expect("moto answers");
        assert!(
            status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200"),
            "{status}"
        );
    }

    /// Sends one bodiless request; returns the status line.
    fn request(&self, method: &str, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).ok()?;
        let text = String::from_utf8_lossy(&response);
        let line = text.lines().next()?.to_string();
        line.starts_with("HTTP/").then_some(line)
    }
}
