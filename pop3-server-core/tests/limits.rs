//! The limits the session enforces itself, through the session over in-memory bytes (no
//! sockets): sessions per user (`-ERR [IN-USE]`) and the login timeout, which every driver
//! gets, a hand-written one included.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pop3_server_core::block_on;
use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
use pop3_server_core::session::{Backend, Connection, Policy, Session};

type B = Backend<MemoryAuthenticator, MemoryStore>;

fn backend(policy: Policy) -> Arc<B> {
    let store = MemoryStore::new();
    store.add_message("alice", "u1", b"Subject: one\r\n\r\nbody\r\n");
    store.add_user("bob");
    let auth = MemoryAuthenticator::new()
        .with_user("alice", "pw")
        .with_user("bob", "pw");
    Backend::new(auth, store, policy)
}

fn policy() -> Policy {
    let mut p = Policy::default();
    p.rules.plaintext_auth = true;
    p.rules.auth_failure_delay = Duration::ZERO;
    p
}

struct T {
    session: Session<MemoryAuthenticator, MemoryStore>,
    now: Instant,
}

impl T {
    fn new(backend: &Arc<B>) -> T {
        let now = Instant::now();
        let mut t = T {
            session: Session::new(backend.clone(), &Connection::plain(false), now),
            now,
        };
        assert!(t.send("").starts_with("+OK"));
        t
    }

    /// Sends lines, runs the session, returns everything it wrote.
    fn send(&mut self, input: &str) -> String {
        self.session.handle_input(input.as_bytes(), self.now);
        let _ = block_on(self.session.process(self.now));
        let mut out = Vec::new();
        self.session.poll_transmit(self.now, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn login(&mut self, user: &str) -> String {
        self.send(&format!("USER {user}\r\nPASS pw\r\n"))
    }
}

const IN_USE: &str = "+OK\r\n-ERR [IN-USE] Too many sessions for this user\r\n";
const LOGGED_IN: &str = "+OK\r\n+OK Logged in.\r\n";

#[test]
fn sessions_per_user_are_limited_and_every_end_gives_the_place_back() {
    assert_eq!(Policy::default().max_sessions_per_user, Some(10));
    let mut p = policy();
    p.max_sessions_per_user = Some(2);
    let b = backend(p);
    let mut a1 = T::new(&b);
    assert_eq!(a1.login("alice"), LOGGED_IN);
    let mut a2 = T::new(&b);
    assert_eq!(a2.login("alice"), LOGGED_IN);
    // The third: good credentials, refused with IN-USE, at once (no failure delay, no count
    // towards the failure limit).
    let mut a3 = T::new(&b);
    for _ in 0..5 {
        assert_eq!(a3.login("alice"), IN_USE);
    }
    assert!(!a3.session.is_closed());
    // Wrong credentials learn nothing of it.
    assert_eq!(
        T::new(&b).send("USER alice\r\nPASS nope\r\n"),
        "+OK\r\n-ERR [AUTH] Authentication failed\r\n"
    );
    // Another user is not affected.
    assert_eq!(T::new(&b).login("bob"), LOGGED_IN);
    // QUIT gives the place back: the refused session may try again and get in.
    assert!(a1.send("QUIT\r\n").starts_with("+OK"));
    assert_eq!(a3.login("alice"), LOGGED_IN);
    assert_eq!(T::new(&b).login("alice"), IN_USE);
    // So does a session ended by the server (shutdown, autologout) ...
    a2.session.shutdown();
    let mut a4 = T::new(&b);
    assert_eq!(a4.login("alice"), LOGGED_IN);
    // ... and one dropped with its connection.
    drop(a3);
    assert_eq!(T::new(&b).login("alice"), LOGGED_IN);
    drop(a4);
}

#[test]
fn no_limit_on_sessions_per_user_when_none() {
    let mut p = policy();
    p.max_sessions_per_user = None;
    let b = backend(p);
    let all: Vec<T> = (0..50)
        .map(|_| {
            let mut t = T::new(&b);
            assert_eq!(t.login("alice"), LOGGED_IN);
            t
        })
        .collect();
    assert_eq!(all.len(), 50);
}

#[test]
fn the_login_timeout_closes_a_session_that_does_not_log_in() {
    let mut p = policy();
    p.rules.login_timeout = Duration::from_secs(5);
    let b = backend(p);
    // Not logged in: the deadline is the login timeout, and it closes the session silently.
    let mut t = T::new(&b);
    assert_eq!(
        t.send("CAPA\r\n").lines().next(),
        Some("+OK Capability list follows")
    );
    assert_eq!(
        t.session.poll_timeout(),
        Some(t.now + Duration::from_secs(5))
    );
    let at = t.now + Duration::from_secs(5);
    t.session.handle_timeout(at);
    assert!(t.session.is_closed());
    t.now = at;
    assert_eq!(t.send(""), "");
    // Logged in: the autologout alone remains.
    let mut t = T::new(&b);
    assert_eq!(t.login("alice"), LOGGED_IN);
    t.session.handle_timeout(t.now + Duration::from_secs(6));
    assert!(!t.session.is_closed());
    assert_eq!(
        t.session.poll_timeout(),
        Some(t.now + Policy::default().rules.idle_timeout)
    );
}
