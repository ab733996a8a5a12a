//! The limits before login, over real loopback sockets, on every server adapter (tokio,
//! blocking, futures on smol and on async-std): they are written once, in the driver and the
//! session, so each adapter must show the same.
//!
//! - the per-address limit refuses the 33rd unauthenticated connection from one IP with the
//!   core's `-ERR [SYS/TEMP]` while another IP is served, and a login frees the place;
//! - the login timeout closes a connection that never logs in (silent, busy, or one that never
//!   starts its TLS handshake), never one that did;
//! - a full listener evicts the oldest connection that has not logged in, never a logged-in
//!   session, and refuses the newcomer once every session has logged in;
//! - the 11th concurrent session of one user gets `-ERR [IN-USE]`;
//! - each refusal, eviction and limit reaches the backend's observer as its typed event.
//!
//! Clients speak POP3 by hand over `std::net` (bound to 127.0.0.x source addresses with
//! socket2: Linux routes all of 127/8 to the loopback interface). Every read has a timeout
//! and every scenario is bounded. The 1,100-connection floods run against the `pop3` binary
//! (`pop3-cli/tests/limits.rs`).

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pop3_interop::{RunningServer, ServerKind, Tls, bounded, start_server_with};
use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
use pop3_server_core::observe::{Event, Observer};
use pop3_server_core::session::{Backend, Policy};
use pop3_tokio::server::ServerOptions;

const SCENARIO_LIMIT: Duration = Duration::from_secs(90);
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// Users alice, bob and carol (password `secret`), each with one message; the events of
/// the limits go to the returned [`Recorder`].
fn server(
    kind: ServerKind,
    tls: &Tls,
    policy: Policy,
    options: ServerOptions,
) -> (RunningServer, Arc<Recorder>) {
    let mut auth = MemoryAuthenticator::new();
    let store = MemoryStore::new();
    for user in ["alice", "bob", "carol"] {
        auth = auth.with_user(user, "secret");
        store.add_message(
            user,
            "m1",
            format!("Subject: {user}\r\n\r\nhi\r\n").as_bytes(),
        );
    }
    let events = Arc::new(Recorder::default());
    let backend = Backend::with_observer(auth, store, policy, events.clone());
    (start_server_with(kind, backend, tls, options), events)
}

/// The events about limits, as `what client-ip reason` lines.
#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<String>>);

impl Observer for Recorder {
    fn event(&self, event: &Event<'_>) {
        let ip = event
            .connection()
            .remote
            .map_or("-".to_string(), |a| a.ip().to_string());
        let line = match event {
            Event::Refused(_, reason) => format!("refused {ip} {}", reason.as_str()),
            Event::Evicted(_) => format!("evicted {ip}"),
            Event::LoginFailed(l) => format!("login_failed {ip} {}", l.reason.as_str()),
            Event::SessionEnded(s) => format!("ended {ip} {}", s.reason.as_str()),
            _ => return,
        };
        self.0.lock().unwrap().push(line);
    }
}

impl Recorder {
    /// How many events so far read `line`.
    fn count(&self, line: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|l| *l == line).count()
    }

    /// Waits (at most 10 s) until `count(line)` is `n`, and fails if it is not.
    fn expect(&self, line: &str, n: usize) {
        let start = Instant::now();
        while self.count(line) != n && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let all = self.0.lock().unwrap().clone();
        assert_eq!(self.count(line), n, "{line:?} in {all:#?}");
    }
}

fn policy() -> Policy {
    let mut p = Policy::default();
    p.rules.plaintext_auth = true;
    p
}

/// A connection from the source address `127.0.0.<src>`.
struct Conn {
    s: TcpStream,
    r: BufReader<TcpStream>,
}

impl Conn {
    /// Connects from `127.0.0.<src>` without reading anything.
    fn connect(src: u8, to: SocketAddr) -> Conn {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        let from = SocketAddr::from((Ipv4Addr::new(127, 0, 0, src), 0));
        sock.bind(&from.into()).expect("bind the source address");
        sock.connect_timeout(&to.into(), READ_TIMEOUT)
            .expect("connect");
        let s: TcpStream = sock.into();
        s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        let r = BufReader::new(s.try_clone().unwrap());
        Conn { s, r }
    }

    /// Connects from `127.0.0.<src>` and reads the greeting, which must be `+OK`.
    fn open(src: u8, to: SocketAddr) -> Conn {
        let mut c = Conn::connect(src, to);
        let greeting = c.line();
        assert!(greeting.starts_with("+OK"), "greeting: {greeting:?}");
        c
    }

    /// One line (empty at EOF).
    fn line(&mut self) -> String {
        let mut l = Vec::new();
        match self.r.read_until(b'\n', &mut l) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("read a line: {e}"),
        }
        String::from_utf8_lossy(&l).into_owned()
    }

    /// Sends `cmd` and returns the status line of the reply.
    fn cmd(&mut self, cmd: &str) -> String {
        self.s.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        self.line()
    }

    fn login(&mut self, user: &str) -> String {
        let u = self.cmd(&format!("USER {user}"));
        assert!(u.starts_with("+OK"), "USER: {u}");
        self.cmd("PASS secret")
    }

    fn must_login(&mut self, user: &str) {
        let pass = self.login(user);
        assert!(pass.starts_with("+OK"), "PASS: {pass}");
    }

    /// Logs in, downloads message 1 and quits.
    fn download(mut self, user: &str) {
        self.must_login(user);
        assert!(self.cmd("STAT").starts_with("+OK 1 "));
        assert!(self.cmd("RETR 1").starts_with("+OK"));
        let mut body = String::new();
        loop {
            let l = self.line();
            assert!(!l.is_empty(), "EOF inside RETR");
            if l == ".\r\n" {
                break;
            }
            body.push_str(&l);
        }
        assert!(body.contains(&format!("Subject: {user}")), "{body}");
        assert!(self.cmd("QUIT").starts_with("+OK"));
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
        self.s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        closed
    }

    /// The server's refusal: one line, then the end of the connection.
    fn refusal(mut self) -> String {
        let line = self.line();
        assert!(
            self.closed_within(Duration::from_secs(10)),
            "a refused connection is closed"
        );
        line
    }
}

/// Runs `scenario` against each adapter, concurrently, each bounded in time.
fn each_adapter(name: &str, scenario: fn(ServerKind)) {
    let runs: Vec<_> = ServerKind::ALL
        .into_iter()
        .map(|kind| {
            let label = format!("{kind:?}: {name}");
            std::thread::spawn(move || bounded(&label, SCENARIO_LIMIT, move || scenario(kind)))
        })
        .collect();
    for r in runs {
        if let Err(p) = r.join() {
            std::panic::resume_unwind(p);
        }
    }
}

#[test]
fn the_33rd_unauthenticated_connection_from_one_address_is_refused() {
    each_adapter("per-address limit", |kind| {
        let tls = Tls::new();
        let options = ServerOptions::default();
        assert_eq!(options.max_unauthenticated_per_ip, 32, "the default");
        let (srv, events) = server(kind, &tls, policy(), options);
        let mut idle: Vec<Conn> = (0..32).map(|_| Conn::open(2, srv.plain)).collect();
        // The 33rd from 127.0.0.2: the core's typed refusal, then the end.
        let refused = Conn::connect(2, srv.plain).refusal();
        assert_eq!(
            refused, "-ERR [SYS/TEMP] Too many connections from your address\r\n",
            "{kind:?}"
        );
        // Another address is served meanwhile.
        Conn::open(3, srv.plain).download("alice");
        // A connection that logs in no longer counts against its address: its place goes
        // to a newcomer (so the refused one did not take it), and only that one place.
        idle[0].must_login("bob");
        idle.push(Conn::open(2, srv.plain));
        let refused = Conn::connect(2, srv.plain).refusal();
        assert!(
            refused.starts_with("-ERR [SYS/TEMP]"),
            "{kind:?}: {refused}"
        );
        events.expect("refused 127.0.0.2 too_many_from_address", 2);
        assert_eq!(events.count("refused 127.0.0.3 too_many_from_address"), 0);
        drop(idle);
        srv.stop();
    });
}

#[test]
fn the_login_timeout_closes_connections_that_never_log_in() {
    each_adapter("login timeout", |kind| {
        let tls = Tls::new();
        let mut p = policy();
        p.rules.login_timeout = Duration::from_secs(1);
        let (srv, events) = server(kind, &tls, p, ServerOptions::default());
        let start = Instant::now();
        let mut silent = Conn::open(2, srv.plain);
        let mut busy = Conn::open(3, srv.plain);
        let mut logged_in = Conn::open(4, srv.plain);
        logged_in.must_login("alice");
        // Connected to the implicit-TLS port, never starting the handshake.
        let mut no_handshake = Conn::connect(5, srv.tls);
        // Busy is no better than silent: CAPA every 200 ms, until the server closes.
        let busy_closed = loop {
            let reply = busy.cmd("CAPA");
            if reply.is_empty() {
                break start.elapsed();
            }
            while busy.line() != ".\r\n" {}
            assert!(start.elapsed() < Duration::from_secs(10), "{kind:?}: busy");
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(silent.closed_within(Duration::from_secs(10)), "{kind:?}");
        assert!(
            no_handshake.closed_within(Duration::from_secs(10)),
            "{kind:?}"
        );
        let elapsed = start.elapsed();
        assert!(
            busy_closed >= Duration::from_millis(900) && elapsed < Duration::from_secs(10),
            "{kind:?}: closed after {busy_closed:?} and {elapsed:?}"
        );
        // The logged-in session outlives the login timeout.
        std::thread::sleep(Duration::from_millis(300));
        assert!(logged_in.cmd("STAT").starts_with("+OK 1 "), "{kind:?}");
        assert!(logged_in.cmd("QUIT").starts_with("+OK"));
        events.expect("ended 127.0.0.2 login_timeout", 1);
        events.expect("ended 127.0.0.3 login_timeout", 1);
        events.expect("ended 127.0.0.4 quit", 1);
        srv.stop();
    });
}

#[test]
fn a_full_listener_evicts_the_oldest_unauthenticated_never_a_logged_in_session() {
    each_adapter("eviction", |kind| {
        let tls = Tls::new();
        let mut options = ServerOptions::default();
        options.max_connections = 6;
        let (srv, events) = server(kind, &tls, policy(), options);
        let mut alice = Conn::open(2, srv.plain);
        alice.must_login("alice");
        let mut bob = Conn::open(2, srv.plain);
        bob.must_login("bob");
        let mut waiting: Vec<Conn> = (0..4).map(|_| Conn::open(3, srv.plain)).collect();
        // Full: a newcomer gets in, and the oldest that has not logged in is closed.
        let mut newcomer = Conn::open(4, srv.plain);
        assert!(
            waiting[0].closed_within(Duration::from_secs(10)),
            "{kind:?}: the oldest unauthenticated connection was not evicted"
        );
        waiting.remove(0);
        events.expect("evicted 127.0.0.3", 1);
        events.expect("ended 127.0.0.3 evicted", 1);
        for c in &mut waiting {
            assert!(
                c.cmd("CAPA").starts_with("+OK"),
                "{kind:?}: evicted too many"
            );
            while c.line() != ".\r\n" {}
        }
        // Once everyone has logged in, there is nobody to evict: the newcomer is refused.
        newcomer.must_login("carol");
        for c in &mut waiting {
            c.must_login("carol");
        }
        let refused = Conn::connect(5, srv.plain).refusal();
        assert_eq!(
            refused, "-ERR [SYS/TEMP] Too many connections\r\n",
            "{kind:?}"
        );
        events.expect("refused 127.0.0.5 too_many_connections", 1);
        // Every logged-in session is still there.
        for c in [&mut alice, &mut bob, &mut newcomer]
            .into_iter()
            .chain(waiting.iter_mut())
        {
            assert!(
                c.cmd("STAT").starts_with("+OK 1 "),
                "{kind:?}: evicted after login"
            );
        }
        // A session that ends gives its place back.
        assert!(alice.cmd("QUIT").starts_with("+OK"));
        assert!(alice.closed_within(Duration::from_secs(10)));
        let start = Instant::now();
        loop {
            let mut c = Conn::connect(5, srv.plain);
            let first = c.line();
            if first.starts_with("+OK") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{kind:?}: {first}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        srv.stop();
    });
}

#[test]
fn the_11th_concurrent_session_of_one_user_gets_in_use() {
    each_adapter("per-user limit", |kind| {
        let tls = Tls::new();
        let p = policy();
        assert_eq!(p.max_sessions_per_user, Some(10), "the default");
        let (srv, events) = server(kind, &tls, p, ServerOptions::default());
        let mut ten: Vec<Conn> = (0..10)
            .map(|_| {
                let mut c = Conn::open(2, srv.plain);
                c.must_login("alice");
                c
            })
            .collect();
        let mut eleventh = Conn::open(2, srv.plain);
        assert_eq!(
            eleventh.login("alice"),
            "-ERR [IN-USE] Too many sessions for this user\r\n",
            "{kind:?}"
        );
        events.expect("login_failed 127.0.0.2 too_many_sessions", 1);
        // Another user is not affected.
        Conn::open(2, srv.plain).download("bob");
        // One of the ten leaves: the same connection may try again (IN-USE is no failed
        // password), and gets in.
        let mut first = ten.remove(0);
        assert!(first.cmd("QUIT").starts_with("+OK"));
        assert!(first.closed_within(Duration::from_secs(10)));
        eleventh.must_login("alice");
        assert!(eleventh.cmd("STAT").starts_with("+OK 1 "));
        // A session that drops without QUIT gives its place back too.
        drop(ten.pop());
        let start = Instant::now();
        loop {
            let mut c = Conn::open(2, srv.plain);
            if c.login("alice").starts_with("+OK") {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{kind:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(ten);
        srv.stop();
    });
}
