//! Policy correctness through the session: `LOGIN-DELAY` counts only logins that opened the
//! maildrop, every greeting has a fresh APOP timestamp, `CAPA` after login has the user's
//! values and `IMPLEMENTATION`, and `EXPIRE` advertises only what happens.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pop3_server_core::backend::{Authenticator, MailStore};
use pop3_server_core::block_on;
use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
use pop3_server_core::session::{
    Backend, Connection, MaildropLock, Policy, Retention, Session, Step,
};

const M1: &[u8] = b"Subject: one\r\n\r\nbody one\r\n";
const M2: &[u8] = b"Subject: two\r\n\r\nbody two\r\n";

fn policy() -> Policy {
    let mut p = Policy::default();
    p.rules.plaintext_auth = true;
    p.rules.auth_failure_delay = Duration::ZERO;
    p
}

fn memory() -> (MemoryStore, MemoryAuthenticator) {
    let store = MemoryStore::new();
    store.add_message("alice", "u1", M1);
    store.add_message("alice", "u2", M2);
    let auth = MemoryAuthenticator::new()
        .with_user("alice", "pw")
        .with_user("dave", "pw");
    (store, auth)
}

/// One connection's session at a given time, driven by hand.
struct T<A: Authenticator, S: MailStore> {
    session: Session<A, S>,
    now: Instant,
    greeting: String,
}

impl<A: Authenticator, S: MailStore> T<A, S> {
    fn at(backend: &Arc<Backend<A, S>>, now: Instant) -> Self {
        let mut t = T {
            session: Session::new(backend.clone(), &Connection::plain(false), now),
            now,
            greeting: String::new(),
        };
        t.greeting = t.send("");
        assert!(t.greeting.starts_with("+OK"), "{}", t.greeting);
        t
    }

    fn send(&mut self, input: &str) -> String {
        self.session.handle_input(input.as_bytes(), self.now);
        let mut all = Vec::new();
        for _ in 0..100_000 {
            assert_eq!(block_on(self.session.process(self.now)), Step::Continue);
            let mut out = Vec::new();
            self.session.poll_transmit(self.now, &mut out);
            if out.is_empty() {
                break;
            }
            all.extend(out);
        }
        String::from_utf8(all).unwrap()
    }

    fn login(&mut self, user: &str) -> String {
        self.send(&format!("USER {user}\r\nPASS pw\r\n"))
    }
}

const OK: &str = "+OK\r\n+OK Logged in.\r\n";
const TOO_SOON: &str = "+OK\r\n-ERR [LOGIN-DELAY] Logged in too recently\r\n";
const IN_USE: &str = "+OK\r\n-ERR [IN-USE] Maildrop is locked by another session\r\n";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The delay runs from the last login that opened the maildrop; once it has passed, the next
/// login succeeds.
#[test]
fn login_delay_expires_then_a_login_succeeds() {
    let (store, auth) = memory();
    let mut p = policy();
    p.login_delay = Some(300);
    let backend = Backend::new(auth, store, p);
    let t0 = Instant::now();
    let mut a = T::at(&backend, t0);
    assert_eq!(a.login("alice"), OK);
    a.send("QUIT\r\n");
    assert_eq!(T::at(&backend, t0 + secs(299)).login("alice"), TOO_SOON);
    // A refused login does not restart the delay either.
    let mut b = T::at(&backend, t0 + secs(300));
    assert_eq!(b.login("alice"), OK);
    b.send("QUIT\r\n");
    assert_eq!(T::at(&backend, t0 + secs(599)).login("alice"), TOO_SOON);
    assert_eq!(T::at(&backend, t0 + secs(600)).login("alice"), OK);
}

/// A login refused with `[IN-USE]` does not start the delay: the first session still counts,
/// and once it has passed another session logs in.
#[test]
fn a_login_refused_in_use_does_not_start_login_delay() {
    let (store, auth) = memory();
    let mut p = policy();
    p.login_delay = Some(300);
    p.maildrop_lock = MaildropLock::Exclusive;
    let backend = Backend::new(auth, store, p);
    let t0 = Instant::now();
    let mut a = T::at(&backend, t0);
    assert_eq!(a.login("alice"), OK);
    // Past the delay, while the first session still holds the maildrop.
    assert_eq!(T::at(&backend, t0 + secs(400)).login("alice"), IN_USE);
    a.send("QUIT\r\n");
    // Had the refused login counted, this one (100 s after it) would be too soon.
    assert_eq!(T::at(&backend, t0 + secs(500)).login("alice"), OK);
}

/// Nor does a login whose maildrop cannot be opened at all (here: there is none yet).
#[test]
fn a_login_without_a_maildrop_does_not_start_login_delay() {
    let (store, auth) = memory();
    let mut p = policy();
    p.login_delay = Some(300);
    let backend = Backend::new(auth, store.clone(), p);
    let t0 = Instant::now();
    assert_eq!(
        T::at(&backend, t0).login("dave"),
        "+OK\r\n-ERR [SYS/PERM] Maildrop not available\r\n"
    );
    store.add_user("dave");
    assert_eq!(T::at(&backend, t0 + secs(1)).login("dave"), OK);
    assert_eq!(T::at(&backend, t0 + secs(2)).login("dave"), TOO_SOON);
}

/// The APOP timestamp of the greeting (`<…@host>`, RFC 1939 §7).
fn timestamp(greeting: &str) -> &str {
    let start = greeting.find('<').expect("a timestamp");
    let end = greeting.rfind('>').expect("a timestamp");
    &greeting[start..=end]
}

/// RFC 1939 §7: the timestamp MUST be different each time the greeting is sent. Two
/// connections at the same instant get different ones, both in msg-id form.
#[test]
fn each_connection_has_a_fresh_apop_timestamp() {
    let (store, auth) = memory();
    let backend = Backend::new(auth, store, policy());
    let now = Instant::now();
    let greetings: Vec<String> = (0..8).map(|_| T::at(&backend, now).greeting).collect();
    let stamps: std::collections::HashSet<&str> = greetings.iter().map(|g| timestamp(g)).collect();
    assert_eq!(stamps.len(), greetings.len(), "{greetings:?}");
    for stamp in stamps {
        assert!(stamp.ends_with("@localhost>"), "{stamp}");
        // 16 random octets in hex.
        assert_eq!(stamp.len(), "<@localhost>".len() + 32, "{stamp}");
    }
    // And APOP works against the timestamp of its own connection only.
    let mut a = T::at(&backend, now);
    let b = T::at(&backend, now);
    let digest = |ts: &str| {
        let ts = pop3_proto::Timestamp::new(ts.to_string()).unwrap();
        let d = pop3_proto::sasl::apop_digest(&ts, b"pw").to_hex();
        format!("APOP alice {d}\r\n")
    };
    assert_eq!(
        a.send(&digest(timestamp(&b.greeting))),
        "-ERR [AUTH] Authentication failed\r\n"
    );
    let mut a = T::at(&backend, now);
    let ts = timestamp(&a.greeting).to_string();
    assert_eq!(a.send(&digest(&ts)), "+OK Logged in.\r\n");
}

/// RFC 2449 §6.5, §6.7, §6.9: after login `CAPA` has `IMPLEMENTATION` and this user's
/// `LOGIN-DELAY` and `EXPIRE`, without `USER` (the values do not vary per user here, so
/// before login they have none either); before login there is no `IMPLEMENTATION`.
#[test]
fn capa_after_login_has_implementation_and_the_users_values() {
    let (store, auth) = memory();
    let mut p = policy();
    p.login_delay = Some(900);
    p.expire = Retention::External(30);
    p.implementation = Some("pop3-test 1.0".into());
    let backend = Backend::new(auth, store, p);
    let mut t = T::at(&backend, Instant::now());
    let before = t.send("CAPA\r\n");
    assert!(before.contains("\r\nLOGIN-DELAY 900\r\n"), "{before}");
    assert!(before.contains("\r\nEXPIRE 30\r\n"), "{before}");
    assert!(!before.contains("IMPLEMENTATION"), "{before}");
    assert_eq!(t.login("alice"), OK);
    let after = t.send("CAPA\r\n");
    assert!(after.contains("\r\nLOGIN-DELAY 900\r\n"), "{after}");
    assert!(after.contains("\r\nEXPIRE 30\r\n"), "{after}");
    assert!(
        after.contains("\r\nIMPLEMENTATION pop3-test 1.0\r\n"),
        "{after}"
    );
    assert!(!after.contains(" USER\r\n"), "{after}");
}

/// What `EXPIRE` each retention advertises, before and after login.
fn expire_lines(expire: Retention) -> (Vec<String>, Vec<String>) {
    let (store, auth) = memory();
    let mut p = policy();
    p.expire = expire;
    let backend = Backend::new(auth, store, p);
    let mut t = T::at(&backend, Instant::now());
    let lines = |capa: String| -> Vec<String> {
        capa.lines()
            .filter(|l| l.starts_with("EXPIRE"))
            .map(str::to_string)
            .collect()
    };
    let before = lines(t.send("CAPA\r\n"));
    t.login("alice");
    (before, lines(t.send("CAPA\r\n")))
}

/// `EXPIRE` says what happens: `NEVER` by default (nothing here removes mail on its own),
/// `0` when the session enforces it, the days of an outside policy when one is declared, and
/// nothing at all when the embedder does not know.
#[test]
fn expire_advertises_what_the_policy_does() {
    let never = vec!["EXPIRE NEVER".to_string()];
    assert_eq!(expire_lines(Retention::default()), (never.clone(), never));
    let zero = vec!["EXPIRE 0".to_string()];
    assert_eq!(
        expire_lines(Retention::RemoveRetrieved),
        (zero.clone(), zero)
    );
    let days = vec!["EXPIRE 14".to_string()];
    assert_eq!(expire_lines(Retention::External(14)), (days.clone(), days));
    assert_eq!(
        expire_lines(Retention::Unadvertised),
        (Vec::new(), Vec::new())
    );
}

/// With the default (`EXPIRE NEVER`) mail that is retrieved and not deleted stays, however
/// the session ends.
#[test]
fn expire_never_keeps_retrieved_mail() {
    let (store, auth) = memory();
    let backend = Backend::new(auth, store.clone(), policy());
    let mut t = T::at(&backend, Instant::now());
    t.login("alice");
    t.send("RETR 1\r\nRETR 2\r\n");
    assert_eq!(t.send("QUIT\r\n"), "+OK Bye, 0 messages deleted\r\n");
    assert_eq!(store.uids("alice"), ["u1", "u2"]);
}

/// `EXPIRE 0` is enforced: what a session retrieved whole with RETR is removed at its QUIT
/// (TOP does not count); a session that ends without QUIT removes nothing.
#[test]
fn expire_zero_removes_retrieved_mail_at_quit() {
    let (store, auth) = memory();
    store.add_message("alice", "u3", M1);
    let mut p = policy();
    p.expire = Retention::RemoveRetrieved;
    let backend = Backend::new(auth, store.clone(), p);

    let mut t = T::at(&backend, Instant::now());
    t.login("alice");
    t.send("RETR 1\r\n");
    t.session.handle_eof(t.now);
    t.send("");
    assert!(t.session.is_closed());
    assert_eq!(store.uids("alice"), ["u1", "u2", "u3"]);

    let mut t = T::at(&backend, Instant::now());
    t.login("alice");
    assert!(t.send("RETR 1\r\n").contains("body one"));
    assert!(t.send("TOP 2 0\r\n").starts_with("+OK"));
    assert!(t.send("RSET\r\n").starts_with("+OK"));
    assert_eq!(t.send("DELE 3\r\n"), "+OK Message 3 deleted\r\n");
    assert_eq!(t.send("QUIT\r\n"), "+OK Bye, 2 messages deleted\r\n");
    assert_eq!(store.uids("alice"), ["u2"]);
}

/// An outside retention policy is only advertised: the server itself removes nothing.
#[test]
fn external_expire_removes_nothing_itself() {
    let (store, auth) = memory();
    let mut p = policy();
    p.expire = Retention::External(0);
    let backend = Backend::new(auth, store.clone(), p);
    let mut t = T::at(&backend, Instant::now());
    t.login("alice");
    t.send("RETR 1\r\nRETR 2\r\n");
    assert_eq!(t.send("QUIT\r\n"), "+OK Bye, 0 messages deleted\r\n");
    assert_eq!(store.uids("alice"), ["u1", "u2"]);
}
