//! Hardening over real sockets, against every server adapter (tokio, blocking, futures on smol
//! and on async-std) and, for STLS response injection, every client adapter:
//!
//! - slow clients (a byte a second, or reading a byte a second) are cut off by the timers while
//!   other sessions are served at full speed;
//! - repeated failed logins meet the delay and the limit;
//! - STLS injection is refused in both directions;
//! - invalid UTF-8 and NUL bytes anywhere in a command get `-ERR` and the session goes on.
//!
//! Raw `std::net` clients speak the protocol by hand, so nothing in the workspace's client
//! can hide a server fault. Every read and write has a timeout and every scenario is bounded.
//!
//! The tests of our servers run twice: on the in-memory store, and (`postgres::*`) on a
//! `PgStore` with the bodies in PostgreSQL, seeded with the same users and messages (a fresh
//! database per test; without PostgreSQL those print SKIPPED and pass). The STLS injection by
//! a server runs against a hand-written fake server, so there is no store to vary.

#[path = "../../pop3-store-postgres/tests/support/mod.rs"]
mod pg;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pop3_interop::{
    ClientKind, Login, Mail, Mode, Op, RunningServer, ServerKind, Storage, Tls, bounded, run_client,
};
use pop3_server_core::session::Policy;

const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
const FAILURE_DELAY: Duration = Duration::from_millis(500);
const SCENARIO_LIMIT: Duration = Duration::from_secs(90);

fn small(i: usize) -> Vec<u8> {
    format!("Subject: {i}\r\n\r\nmessage {i}\r\n.dot line\r\n").into_bytes()
}

/// alice: three small messages; reader: one 16 MB message. Both with password `secret`.
fn mail(storage: &Storage) -> Mail {
    let smalls: Vec<Vec<u8>> = (0..3).map(small).collect();
    let big = big();
    Mail::new(
        storage,
        &[("alice", "secret"), ("reader", "secret")],
        &[
            ("alice", "a0", &smalls[0]),
            ("alice", "a1", &smalls[1]),
            ("alice", "a2", &smalls[2]),
            ("reader", "big", &big),
        ],
    )
}

/// A server adapter on `mail`, with short timers and few login attempts.
fn server(mail: &Mail, kind: ServerKind, tls: &Tls) -> RunningServer {
    let mut policy = Policy::default();
    policy.rules.plaintext_auth = true;
    policy.rules.command_timeout = COMMAND_TIMEOUT;
    policy.rules.idle_timeout = IDLE_TIMEOUT;
    policy.rules.auth_failure_delay = FAILURE_DELAY;
    policy.rules.max_auth_failures = 3;
    mail.start(kind, policy, tls)
}

fn big() -> Vec<u8> {
    let mut m = b"Subject: big\r\n\r\n".to_vec();
    while m.len() < 16 << 20 {
        m.extend_from_slice(b"a line of a large message, read one octet a second\r\n");
    }
    m
}

struct Conn {
    s: TcpStream,
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        let r = BufReader::new(s.try_clone().unwrap());
        let mut c = Conn { s, r };
        let greeting = c.line();
        assert!(greeting.starts_with(b"+OK"), "{greeting:?}");
        c
    }

    fn line(&mut self) -> Vec<u8> {
        let mut l = Vec::new();
        self.r.read_until(b'\n', &mut l).expect("read a line");
        l
    }

    /// Sends `cmd` and returns the status line of the reply.
    fn cmd(&mut self, cmd: &[u8]) -> String {
        self.s.write_all(cmd).unwrap();
        String::from_utf8_lossy(&self.line()).into_owned()
    }

    fn login(&mut self, user: &str) {
        assert!(
            self.cmd(format!("USER {user}\r\n").as_bytes())
                .starts_with("+OK")
        );
        let pass = self.cmd(b"PASS secret\r\n");
        assert!(pass.starts_with("+OK"), "{pass}");
    }

    /// Reads a multi-line body after its status line, unstuffed.
    fn body(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let l = self.line();
            assert!(!l.is_empty(), "EOF inside a multi-line reply");
            if l == b".\r\n" {
                return body;
            }
            body.extend_from_slice(l.strip_prefix(b".").unwrap_or(&l));
        }
    }

    /// Whether the server has closed the connection (EOF or reset), waiting at most `wait`.
    fn closed_within(&mut self, wait: Duration) -> bool {
        self.s.set_read_timeout(Some(wait)).unwrap();
        let mut b = [0u8; 1];
        let closed = match self.r.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        };
        self.s
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        closed
    }
}

/// A full session as alice: every message, byte-exact.
fn normal_session(addr: SocketAddr) {
    let mut c = Conn::open(addr);
    c.login("alice");
    assert!(c.cmd(b"STAT\r\n").starts_with("+OK 3 "));
    for i in 0..3 {
        assert!(
            c.cmd(format!("RETR {}\r\n", i + 1).as_bytes())
                .starts_with("+OK")
        );
        assert_eq!(c.body(), small(i));
    }
    assert!(c.cmd(b"QUIT\r\n").starts_with("+OK"));
}

/// Sends `first`, then one `x` a second, until the server closes: returns how long that took.
fn trickle(addr: SocketAddr, first: &'static [u8]) -> Duration {
    let mut c = Conn::open(addr);
    let start = Instant::now();
    let mut bytes = first.iter().copied().chain(std::iter::repeat(b'x'));
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "a client sending a byte a second was never cut off"
        );
        let b = bytes.next().unwrap_or(b'x');
        if c.s.write_all(&[b]).is_err() || c.closed_within(Duration::from_secs(1)) {
            return start.elapsed();
        }
    }
}

/// Logs in as reader, asks for the 16 MB message and reads it a byte a second for longer than
/// the idle timeout; returns how many octets arrived before the server closed.
fn slow_reader(addr: SocketAddr) -> usize {
    let mut c = Conn::open(addr);
    c.login("reader");
    c.s.write_all(b"RETR 1\r\n").unwrap();
    let slow_for = IDLE_TIMEOUT + Duration::from_secs(3);
    let start = Instant::now();
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while start.elapsed() < slow_for {
        c.r.read_exact(&mut b).unwrap();
        got.push(b[0]);
        std::thread::sleep(Duration::from_secs(1));
    }
    // Now read as fast as possible: what was sent before the cut, then the end.
    let mut rest = Vec::new();
    let _ = c.r.read_to_end(&mut rest);
    got.extend_from_slice(&rest);
    assert!(
        !got.ends_with(b"\r\n.\r\n"),
        "the whole message reached a client reading a byte a second"
    );
    got.len()
}

fn slow_clients_are_cut_off(storage: Storage) {
    let tls = Tls::new();
    let mail = mail(&storage);
    let runs: Vec<_> = ServerKind::ALL
        .into_iter()
        .map(|kind| {
            let srv = server(&mail, kind, &tls);
            let addr = srv.plain;
            let t = std::thread::spawn(move || {
                bounded(
                    &format!("{kind:?} slow clients"),
                    SCENARIO_LIMIT,
                    move || {
                        let started = Instant::now();
                        let tricklers: Vec<_> = [&b"USER alice"[..], b"CAPA", b"", b"PASS"]
                            .into_iter()
                            .map(|first| std::thread::spawn(move || trickle(addr, first)))
                            .collect();
                        let reader = std::thread::spawn(move || slow_reader(addr));
                        // Other clients meanwhile: served in full, long before any slow one is cut.
                        std::thread::sleep(Duration::from_millis(300));
                        for _ in 0..10 {
                            normal_session(addr);
                        }
                        let normal_done = started.elapsed();
                        let cut: Vec<Duration> =
                            tricklers.into_iter().map(|t| t.join().unwrap()).collect();
                        let read = reader.join().unwrap();
                        (normal_done, cut, read)
                    },
                )
            });
            (kind, srv, t)
        })
        .collect();
    for (kind, srv, t) in runs {
        let (normal_done, cut, read) = t.join().unwrap();
        eprintln!(
            "{kind:?} on {storage}: 10 normal sessions done after {normal_done:?}; tricklers \
             cut after {cut:?}; slow reader got {read} octets of {}",
            big().len()
        );
        for c in &cut {
            assert!(
                *c >= COMMAND_TIMEOUT - Duration::from_millis(500),
                "{kind:?}: a trickler was closed before the command timeout ({c:?})"
            );
            assert!(
                *c > normal_done,
                "{kind:?}: the normal sessions ({normal_done:?}) were not all served before \
                 a slow client was cut ({c:?})"
            );
        }
        srv.stop();
    }
}

fn failed_logins_are_delayed(storage: Storage) {
    let tls = Tls::new();
    let mail = mail(&storage);
    for kind in ServerKind::ALL {
        let srv = server(&mail, kind, &tls);
        let addr = srv.plain;
        bounded(
            &format!("{kind:?} failed logins"),
            SCENARIO_LIMIT,
            move || {
                let mut c = Conn::open(addr);
                for attempt in 1..=3 {
                    assert!(c.cmd(b"USER alice\r\n").starts_with("+OK"));
                    let sent = Instant::now();
                    let reply = c.cmd(b"PASS wrong\r\n");
                    let waited = sent.elapsed();
                    assert!(reply.starts_with("-ERR [AUTH]"), "{kind:?}: {reply}");
                    assert!(
                        waited >= FAILURE_DELAY,
                        "{kind:?}: failure {attempt} answered after {waited:?}"
                    );
                }
                assert!(
                    c.closed_within(Duration::from_secs(5)),
                    "{kind:?}: still open after 3 failures"
                );
                // Others are not locked out by it: the right password works at once.
                let mut ok = Conn::open(addr);
                ok.login("alice");
                assert!(ok.cmd(b"QUIT\r\n").starts_with("+OK"));
            },
        );
        srv.stop();
    }
}

fn invalid_octets_get_err(storage: Storage) {
    let tls = Tls::new();
    let mail = mail(&storage);
    let bad: [&[u8]; 8] = [
        b"US\0ER alice\r\n",
        b"USER \xff\xfe\r\n",
        b"\xc3\x28\r\n",
        b"\0\r\n",
        b"CAPA\0\r\n",
        b"USER al\0ice\r\n",
        b"\xed\xa0\x80\r\n",
        b"NOOP \x80\r\n",
    ];
    for kind in ServerKind::ALL {
        let srv = server(&mail, kind, &tls);
        let addr = srv.plain;
        bounded(&format!("{kind:?} bad octets"), SCENARIO_LIMIT, move || {
            // In AUTHORIZATION: at most 9 errors in a row, then a good command.
            let mut c = Conn::open(addr);
            for b in &bad {
                let reply = c.cmd(b);
                assert!(reply.starts_with("-ERR"), "{kind:?}: {b:?} got {reply}");
            }
            c.login("alice");
            // In TRANSACTION, with arguments too.
            for b in [
                &b"RETR \xff\r\n"[..],
                b"RETR 1\0\r\n",
                b"TOP 1 \xc3\r\n",
                b"DELE \0\r\n",
                b"UIDL \xe2\x82\r\n",
            ] {
                let reply = c.cmd(b);
                assert!(reply.starts_with("-ERR"), "{kind:?}: {b:?} got {reply}");
            }
            assert!(c.cmd(b"STAT\r\n").starts_with("+OK 3 "));
            assert!(c.cmd(b"QUIT\r\n").starts_with("+OK"));
        });
        srv.stop();
    }
}

fn stls_injection_by_a_client_is_discarded(storage: Storage) {
    let tls = Tls::new();
    let mail = mail(&storage);
    for kind in ServerKind::ALL {
        let srv = server(&mail, kind, &tls);
        let (addr, client_cfg) = (srv.plain, tls.client.clone());
        bounded(
            &format!("{kind:?} STLS injection"),
            SCENARIO_LIMIT,
            move || {
                let mut c = Conn::open(addr);
                // One write: the commands after STLS arrive with it, before the handshake.
                let reply = c.cmd(b"STLS\r\nUSER alice\r\nPASS secret\r\n");
                assert!(reply.starts_with("+OK"), "{kind:?}: {reply}");
                let conn =
                    rustls::ClientConnection::new(client_cfg, "localhost".try_into().unwrap())
                        .unwrap();
                let mut tls = rustls::StreamOwned::new(conn, c.s.try_clone().unwrap());
                // Had the injected USER and PASS been kept, this session would be logged in.
                tls.write_all(b"STAT\r\nPASS secret\r\nCAPA\r\n").unwrap();
                let mut r = BufReader::new(tls);
                let mut l = String::new();
                r.read_line(&mut l).unwrap();
                assert!(l.starts_with("-ERR"), "{kind:?}: STAT after STLS: {l}");
                l.clear();
                r.read_line(&mut l).unwrap();
                assert!(l.starts_with("-ERR"), "{kind:?}: PASS without USER: {l}");
                l.clear();
                r.read_line(&mut l).unwrap();
                assert!(l.starts_with("+OK"), "{kind:?}: CAPA over TLS: {l}");
            },
        );
        srv.stop();
    }
}

/// A hand-written STLS server: after `+OK` to STLS it sends `injected` in the same write, then
/// really starts TLS and serves an empty maildrop to anyone. A client that ignored the
/// injection would log in and succeed.
fn fake_stls_server(tls: &Tls, injected: &'static [u8]) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let cfg = tls.server.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let _ = serve_fake(s, cfg, injected);
            });
        }
    });
    addr
}

fn serve_fake(
    mut s: TcpStream,
    cfg: Arc<rustls::ServerConfig>,
    injected: &[u8],
) -> std::io::Result<()> {
    s.write_all(b"+OK fake\r\n")?;
    loop {
        let line = read_line(&mut s)?;
        match line.to_ascii_uppercase().as_str() {
            "CAPA" => s.write_all(b"+OK\r\nSTLS\r\nUSER\r\n.\r\n")?,
            "STLS" => {
                s.write_all(&[&b"+OK begin TLS\r\n"[..], injected].concat())?;
                break;
            }
            _ => s.write_all(b"-ERR STLS first\r\n")?,
        }
    }
    let conn = rustls::ServerConnection::new(cfg).map_err(std::io::Error::other)?;
    let mut t = rustls::StreamOwned::new(conn, s);
    loop {
        let line = read_line(&mut t)?;
        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "CAPA" => b"+OK\r\nUSER\r\n.\r\n",
            "USER" | "PASS" | "NOOP" => b"+OK\r\n",
            "STAT" => b"+OK 0 0\r\n",
            "QUIT" => {
                t.write_all(b"+OK bye\r\n")?;
                return Ok(());
            }
            _ => b"-ERR\r\n",
        };
        t.write_all(reply)?;
    }
}

/// One line without its CRLF, read an octet at a time (nothing past the line is consumed).
fn read_line(s: &mut impl Read) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if s.read(&mut b)? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        line.push(b[0]);
        if line.len() > 1000 {
            return Err(ErrorKind::InvalidData.into());
        }
    }
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).into_owned())
}

#[test]
fn stls_injection_by_a_server_fails_every_client() {
    let tls = Tls::new();
    let honest = fake_stls_server(&tls, b"");
    let injecting = fake_stls_server(&tls, b"+OK injected\r\n");
    let login = || Login::UserPass("alice".into(), "secret".into());
    let ops = || vec![Op::Stat(0, 0), Op::Quit];
    for kind in ClientKind::ALL {
        // The fake server is a working server: without the injection, the session succeeds.
        run_client(
            kind,
            Mode::StartTls,
            honest,
            tls.client.clone(),
            login(),
            ops(),
        )
        .unwrap_or_else(|e| panic!("{kind:?} against the honest fake server: {e}"));
        let err = run_client(
            kind,
            Mode::StartTls,
            injecting,
            tls.client.clone(),
            login(),
            ops(),
        )
        .expect_err("a client went on after an injected response");
        assert!(
            err.to_lowercase().contains("inject"),
            "{kind:?}: the error does not name the injection: {err}"
        );
    }
}

/// Makes the next commit on `mail` fail: the in-memory store removes one message, then fails;
/// in PostgreSQL a trigger fails every DELETE of a message, and since the commit is one
/// transaction, nothing is removed. Returns the messages (indexes of `small`) kept.
fn fail_next_commit(mail: &Mail, storage: &Storage) -> Vec<usize> {
    match storage {
        Storage::Memory => {
            mail.memory_store()
                .expect("an in-memory store")
                .fail_next_commit_after(1);
            vec![1, 2]
        }
        Storage::Postgres(url) => {
            psql(
                url,
                "CREATE FUNCTION interop_fail() RETURNS trigger LANGUAGE plpgsql AS \
                 $$BEGIN RAISE EXCEPTION 'injected storage failure'; END$$; \
                 CREATE TRIGGER interop_fail BEFORE DELETE ON messages \
                 FOR EACH ROW EXECUTE FUNCTION interop_fail();",
            );
            vec![0, 1, 2]
        }
    }
}

/// Undoes [`fail_next_commit`] (the in-memory store's failure is one-shot).
fn heal(storage: &Storage) {
    if let Storage::Postgres(url) = storage {
        psql(
            url,
            "DROP TRIGGER interop_fail ON messages; DROP FUNCTION interop_fail();",
        );
    }
}

fn psql(url: &str, sql: &str) {
    let bindir = pg::pg_bindir().expect("PostgreSQL binaries");
    let out = std::process::Command::new(bindir.join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn a_storage_error_during_commit(storage: Storage) {
    let tls = Tls::new();
    for kind in ServerKind::ALL {
        // A fresh maildrop per adapter (on PostgreSQL: emptied and delivered again).
        let mail = mail(&storage);
        let uids = mail.uids("alice");
        let srv = server(&mail, kind, &tls);
        let addr = srv.plain;
        let (m, st) = (mail.clone(), storage.clone());
        let kept = bounded(
            &format!("{kind:?} failed commit on {storage}"),
            SCENARIO_LIMIT,
            move || {
                let mut c = Conn::open(addr);
                c.login("alice");
                assert!(c.cmd(b"DELE 1\r\n").starts_with("+OK"));
                assert!(c.cmd(b"DELE 3\r\n").starts_with("+OK"));
                let kept = fail_next_commit(&m, &st);
                let quit = c.cmd(b"QUIT\r\n");
                heal(&st);
                assert!(quit.starts_with("-ERR [SYS/TEMP]"), "{kind:?}: {quit}");
                assert!(c.closed_within(Duration::from_secs(5)));
                // The unmarked message and the marked ones not removed are still there, whole.
                let mut c = Conn::open(addr);
                c.login("alice");
                let stat = c.cmd(b"STAT\r\n");
                assert!(
                    stat.starts_with(&format!("+OK {} ", kept.len())),
                    "{kind:?}: {stat}"
                );
                for (n, &i) in kept.iter().enumerate() {
                    let uidl = c.cmd(format!("UIDL {}\r\n", n + 1).as_bytes());
                    let want = format!(" {}\r\n", m.uids("alice")[i]);
                    assert!(uidl.ends_with(&want), "{kind:?}: {uidl}");
                    assert!(
                        c.cmd(format!("RETR {}\r\n", n + 1).as_bytes())
                            .starts_with("+OK")
                    );
                    assert_eq!(c.body(), small(i));
                }
                assert!(c.cmd(b"QUIT\r\n").starts_with("+OK"));
                kept
            },
        );
        let want: Vec<String> = kept.iter().map(|&i| uids[i].clone()).collect();
        assert_eq!(mail.current("alice"), want);
        srv.stop();
    }
}

/// A fresh database for a `postgres::*` test; `None` (after a SKIPPED line) without PostgreSQL.
fn postgres() -> Option<Storage> {
    pg::database().map(Storage::Postgres)
}

/// Each test twice, with the same assertions: `NAME` on the in-memory store and
/// `postgres::NAME` on a PgStore (`$run(storage)`).
macro_rules! on_both_stores {
    ($($name:ident => $run:ident;)*) => {
        $(
            #[test]
            fn $name() {
                $run(Storage::Memory);
            }
        )*
        mod postgres {
            use super::*;
            $(
                #[test]
                fn $name() {
                    if let Some(storage) = postgres() {
                        $run(storage);
                    }
                }
            )*
        }
    };
}

on_both_stores! {
    slow_clients_are_cut_off_by_the_timers_without_slowing_others => slow_clients_are_cut_off;
    failed_logins_are_delayed_then_the_connection_is_closed => failed_logins_are_delayed;
    invalid_utf8_and_nul_anywhere_get_err_and_the_session_goes_on => invalid_octets_get_err;
    stls_injection_by_a_client_is_discarded_by_every_server => stls_injection_by_a_client_is_discarded;
    a_storage_error_during_commit_answers_sys_temp_and_loses_nothing => a_storage_error_during_commit;
}
