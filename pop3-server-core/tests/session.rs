//! The maildrop semantics, through the session over in-memory bytes (no sockets).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pop3_server_core::backend::{Authenticator, MailStore, StoreError};
use pop3_server_core::block_on;
use pop3_server_core::maildir::MaildirStore;
use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
use pop3_server_core::session::{
    Backend, Connection, MaildropLock, Policy, Retention, Session, Step,
};

const M1: &[u8] = b"Subject: one\r\nFrom: a@example.com\r\n\r\nline 1\r\n.dot line\r\nline 3\r\n";
const M2: &[u8] = b"Subject: two\r\n\r\nbody two\r\n";
const M3: &[u8] = b"Subject: three\r\n\r\nbody three\r\n";

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
    store.add_message("alice", "u3", M3);
    store.add_user("bob");
    let auth = MemoryAuthenticator::new()
        .with_user("alice", "secret pass")
        .with_user("bob", "bob");
    (store, auth)
}

struct T<A: Authenticator, S: MailStore> {
    session: Session<A, S>,
    now: Instant,
}

impl<A: Authenticator, S: MailStore> T<A, S> {
    fn new(backend: Arc<Backend<A, S>>, conn: Connection) -> Self {
        let now = Instant::now();
        let mut t = T {
            session: Session::new(backend, &conn, now),
            now,
        };
        let greeting = t.out();
        assert!(greeting.starts_with("+OK"), "{greeting}");
        t
    }

    fn out(&mut self) -> String {
        let mut out = Vec::new();
        self.session.poll_transmit(self.now, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Sends lines, runs the session, returns everything it wrote.
    fn send(&mut self, input: &str) -> String {
        self.session.handle_input(input.as_bytes(), self.now);
        let mut all = String::new();
        for _ in 0..100_000 {
            let step = block_on(self.session.process(self.now));
            assert_eq!(step, Step::Continue);
            let o = self.out();
            if o.is_empty() {
                break;
            }
            all.push_str(&o);
        }
        all
    }

    fn login(&mut self) {
        let r = self.send("USER alice\r\nPASS secret pass\r\n");
        assert_eq!(r, "+OK\r\n+OK Logged in.\r\n");
    }
}

fn mem_session() -> (T<MemoryAuthenticator, MemoryStore>, MemoryStore) {
    let (store, auth) = memory();
    let backend = Backend::new(auth, store.clone(), policy());
    (T::new(backend, Connection::plain(false)), store)
}

#[test]
fn deleted_messages_vanish_from_every_command() {
    let (mut t, _) = mem_session();
    t.login();
    assert_eq!(t.send("DELE 2\r\n"), "+OK Message 2 deleted\r\n");
    assert_eq!(
        t.send("STAT\r\n"),
        format!("+OK 2 {}\r\n", M1.len() + M3.len())
    );
    assert_eq!(
        t.send("LIST\r\n"),
        format!(
            "+OK 2 messages\r\n1 {}\r\n3 {}\r\n.\r\n",
            M1.len(),
            M3.len()
        )
    );
    assert_eq!(
        t.send("UIDL\r\n"),
        "+OK 2 messages\r\n1 u1\r\n3 u3\r\n.\r\n"
    );
    for cmd in ["LIST 2", "UIDL 2", "RETR 2", "TOP 2 0", "DELE 2"] {
        let r = t.send(&format!("{cmd}\r\n"));
        assert_eq!(r, "-ERR Message already deleted\r\n", "{cmd}");
    }
    // Message numbers stay fixed: 3 is still 3.
    assert_eq!(t.send("LIST 3\r\n"), format!("+OK 3 {}\r\n", M3.len()));
}

#[test]
fn zero_and_out_of_range_numbers_are_refused() {
    let (mut t, _) = mem_session();
    t.login();
    for cmd in ["LIST 4", "RETR 4", "TOP 4 1", "DELE 99", "UIDL 4294967295"] {
        assert_eq!(
            t.send(&format!("{cmd}\r\n")),
            "-ERR No such message\r\n",
            "{cmd}"
        );
    }
    for cmd in [
        "LIST 0",
        "RETR 0",
        "DELE 0",
        "TOP 0 1",
        "RETR 4294967296",
        "RETR -1",
    ] {
        let r = t.send(&format!("{cmd}\r\n"));
        assert!(r.starts_with("-ERR"), "{cmd}: {r}");
    }
    assert_eq!(
        t.send("STAT\r\n"),
        format!("+OK 3 {}\r\n", M1.len() + M2.len() + M3.len())
    );
}

#[test]
fn retr_and_top_are_byte_exact_and_stuffed() {
    let (mut t, _) = mem_session();
    t.login();
    let r = t.send("RETR 1\r\n");
    assert_eq!(
        r,
        format!(
            "+OK {} octets\r\nSubject: one\r\nFrom: a@example.com\r\n\r\nline 1\r\n..dot line\r\nline 3\r\n.\r\n",
            M1.len()
        )
    );
    // TOP n 0: the headers and the blank line only.
    assert_eq!(
        t.send("TOP 1 0\r\n"),
        "+OK Top of message follows\r\nSubject: one\r\nFrom: a@example.com\r\n\r\n.\r\n"
    );
    assert_eq!(
        t.send("TOP 1 2\r\n"),
        "+OK Top of message follows\r\nSubject: one\r\nFrom: a@example.com\r\n\r\nline 1\r\n..dot line\r\n.\r\n"
    );
    // More lines than the body has: the whole message.
    let whole = t.send("TOP 1 100\r\n");
    assert!(whole.ends_with("line 3\r\n.\r\n"), "{whole}");
}

#[test]
fn rset_unmarks_and_quit_commits_only_marked() {
    let (mut t, store) = mem_session();
    t.login();
    t.send("DELE 1\r\nDELE 2\r\n");
    assert_eq!(t.send("RSET\r\n"), "+OK 3 messages\r\n");
    assert_eq!(
        t.send("STAT\r\n"),
        format!("+OK 3 {}\r\n", M1.len() + M2.len() + M3.len())
    );
    t.send("DELE 3\r\n");
    assert_eq!(t.send("QUIT\r\n"), "+OK Bye, 1 messages deleted\r\n");
    assert!(t.session.is_closed());
    assert_eq!(store.uids("alice"), ["u1", "u2"]);
    assert!(!store.is_locked("alice"));
}

#[test]
fn no_update_on_dropped_connection_autologout_or_shutdown() {
    // Dropped connection.
    let (mut t, store) = mem_session();
    t.login();
    t.send("DELE 1\r\n");
    t.session.handle_eof(t.now);
    t.send("");
    assert!(t.session.is_closed());
    assert_eq!(store.message_count("alice"), 3);
    assert!(!store.is_locked("alice"), "lock released on EOF");

    // Autologout.
    let (mut t, store) = mem_session();
    t.login();
    t.send("DELE 1\r\n");
    let deadline = t.session.poll_timeout().unwrap();
    t.session.handle_timeout(deadline);
    assert!(t.session.is_closed());
    assert_eq!(store.message_count("alice"), 3);
    assert!(!store.is_locked("alice"), "lock released on autologout");

    // Shutdown.
    let (mut t, store) = mem_session();
    t.login();
    t.send("DELE 1\r\n");
    t.session.shutdown();
    assert!(t.session.is_closed());
    assert_eq!(store.message_count("alice"), 3);
    assert!(!store.is_locked("alice"), "lock released on shutdown");

    // The session object dropped mid-session.
    let (mut t, store) = mem_session();
    t.login();
    t.send("DELE 1\r\n");
    drop(t);
    assert_eq!(store.message_count("alice"), 3);
    assert!(!store.is_locked("alice"), "lock released on drop");
}

#[test]
fn failed_commit_answers_sys_temp_and_loses_nothing() {
    let (mut t, store) = mem_session();
    t.login();
    t.send("DELE 1\r\nDELE 3\r\n");
    store.fail_next_commit_after(1);
    assert_eq!(
        t.send("QUIT\r\n"),
        "-ERR [SYS/TEMP] Some deleted messages not removed\r\n"
    );
    assert!(t.session.is_closed());
    // The unmarked message is intact; what was not yet removed is still there.
    let uids = store.uids("alice");
    assert!(uids.contains(&"u2".to_string()));
    assert!(uids.contains(&"u3".to_string()));
    assert!(!store.is_locked("alice"));
}

#[test]
fn second_session_gets_in_use_and_lock_is_released() {
    let (store, auth) = memory();
    let mut p = policy();
    p.maildrop_lock = MaildropLock::Exclusive;
    let backend = Backend::new(auth, store.clone(), p);
    let mut a = T::new(backend.clone(), Connection::plain(false));
    a.login();
    let mut b = T::new(backend.clone(), Connection::plain(false));
    let r = b.send("USER alice\r\nPASS secret pass\r\n");
    assert_eq!(
        r,
        "+OK\r\n-ERR [IN-USE] Maildrop is locked by another session\r\n"
    );
    a.send("QUIT\r\n");
    let mut c = T::new(backend, Connection::plain(false));
    c.login();
}

#[test]
fn bad_credentials_get_auth_code_and_unknown_users_look_the_same() {
    let (mut t, _) = mem_session();
    let wrong = t.send("USER alice\r\nPASS nope\r\n");
    let mut t2 = mem_session().0;
    let unknown = t2.send("USER mallory\r\nPASS nope\r\n");
    assert_eq!(wrong, "+OK\r\n-ERR [AUTH] Authentication failed\r\n");
    assert_eq!(unknown, wrong);
    // APOP and SASL too.
    let r = t2.send("AUTH PLAIN AGFsaWNlAHdyb25n\r\n");
    assert_eq!(r, "-ERR [AUTH] Authentication failed\r\n");
}

#[test]
fn auth_failures_are_delayed_and_limited() {
    let (store, auth) = memory();
    let mut p = policy();
    p.rules.auth_failure_delay = Duration::from_secs(2);
    p.rules.max_auth_failures = 2;
    let backend = Backend::new(auth, store, p);
    let mut t = T::new(backend, Connection::plain(false));
    assert_eq!(t.send("USER alice\r\nPASS x\r\n"), "+OK\r\n");
    let at = t.session.poll_timeout().unwrap();
    assert_eq!(at, t.now + Duration::from_secs(2));
    t.now = at;
    t.session.handle_timeout(at);
    assert_eq!(t.send(""), "-ERR [AUTH] Authentication failed\r\n");
    assert_eq!(t.send("USER alice\r\nPASS y\r\n"), "+OK\r\n");
    let at = t.session.poll_timeout().unwrap();
    t.now = at;
    t.session.handle_timeout(at);
    assert_eq!(t.out(), "-ERR [AUTH] Authentication failed\r\n");
    assert!(t.session.is_closed(), "closed after the limit");
}

struct BrokenAuth;

impl Authenticator for BrokenAuth {
    async fn verify_password(&self, _: &str, _: &[u8]) -> Result<bool, StoreError> {
        Err(StoreError::Temporary("database down".into()))
    }
    async fn verify_apop(
        &self,
        _: &str,
        _: &pop3_proto::Timestamp,
        _: &pop3_proto::ApopDigest,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Temporary("database down".into()))
    }
    async fn sasl(
        &self,
        _: &pop3_proto::sasl::CredentialRequest,
    ) -> Result<pop3_proto::sasl::CredentialAnswer, StoreError> {
        Err(StoreError::Temporary("database down".into()))
    }
    fn mechanisms(&self) -> Vec<pop3_proto::Mechanism> {
        Vec::new()
    }
    fn apop(&self) -> bool {
        false
    }
}

#[test]
fn backend_trouble_is_sys_temp() {
    let (store, _) = memory();
    let backend = Backend::new(BrokenAuth, store, policy());
    let mut t = T::new(backend, Connection::plain(false));
    assert_eq!(
        t.send("USER alice\r\nPASS secret pass\r\n"),
        "+OK\r\n-ERR [SYS/TEMP] Authentication service unavailable\r\n"
    );
}

#[test]
fn login_delay_is_advertised_and_enforced() {
    let (store, auth) = memory();
    let mut p = policy();
    p.login_delay = Some(300);
    p.expire = Retention::External(30);
    let backend = Backend::new(auth, store, p);
    let mut t = T::new(backend.clone(), Connection::plain(false));
    let capa = t.send("CAPA\r\n");
    assert!(capa.contains("\r\nLOGIN-DELAY 300\r\n"), "{capa}");
    assert!(capa.contains("\r\nEXPIRE 30\r\n"), "{capa}");
    t.login();
    t.send("QUIT\r\n");
    let mut t = T::new(backend, Connection::plain(false));
    assert_eq!(
        t.send("USER alice\r\nPASS secret pass\r\n"),
        "+OK\r\n-ERR [LOGIN-DELAY] Logged in too recently\r\n"
    );
}

#[test]
fn plaintext_auth_only_over_tls_by_default() {
    let (store, auth) = memory();
    let backend = Backend::new(auth, store, Policy::default());
    let mut t = T::new(backend.clone(), Connection::plain(true));
    let capa = t.send("CAPA\r\n");
    assert!(capa.contains("STLS\r\n"), "{capa}");
    assert!(!capa.contains("\r\nUSER\r\n"), "{capa}");
    assert!(!capa.contains("PLAIN") && !capa.contains("LOGIN"), "{capa}");
    assert!(capa.contains("SASL SCRAM-SHA-256 CRAM-MD5\r\n"), "{capa}");
    let r = t.send("USER alice\r\n");
    assert!(
        r.starts_with("-ERR [AUTH] Plaintext authentication disallowed"),
        "{r}"
    );
    // Over TLS everything is offered and USER/PASS works.
    let mut t = T::new(backend, Connection::tls());
    let capa = t.send("CAPA\r\n");
    assert!(
        capa.contains("\r\nUSER\r\n") && capa.contains("PLAIN LOGIN"),
        "{capa}"
    );
    assert!(!capa.contains("STLS"), "{capa}");
    t.login();
}

#[test]
fn stls_after_login_is_refused() {
    let (store, auth) = memory();
    let backend = Backend::new(auth, store, policy());
    let mut t = T::new(backend, Connection::plain(true));
    t.login();
    let capa = t.send("CAPA\r\n");
    assert!(!capa.contains("STLS"), "{capa}");
    assert_eq!(
        t.send("STLS\r\n"),
        "-ERR Command not valid in this state\r\n"
    );
}

#[test]
fn resp_codes_advertised_are_sent() {
    let (mut t, _) = mem_session();
    let capa = t.send("CAPA\r\n");
    assert!(capa.contains("RESP-CODES\r\n") && capa.contains("AUTH-RESP-CODE\r\n"));
    assert!(t.send("USER alice\r\nPASS bad\r\n").contains("-ERR [AUTH]"));
}

#[test]
fn message_count_and_size_limits() {
    let (store, auth) = memory();
    let mut p = policy();
    p.max_messages = Some(2);
    let backend = Backend::new(auth.clone(), store.clone(), p);
    let mut t = T::new(backend, Connection::plain(false));
    t.login();
    assert_eq!(
        t.send("STAT\r\n"),
        format!("+OK 2 {}\r\n", M1.len() + M2.len())
    );
    assert_eq!(t.send("RETR 3\r\n"), "-ERR No such message\r\n");
    t.send("QUIT\r\n");
    let mut p = policy();
    p.max_maildrop_size = Some((M1.len() + 1) as u64);
    let backend = Backend::new(auth, store, p);
    let mut t = T::new(backend, Connection::plain(false));
    t.login();
    assert_eq!(t.send("STAT\r\n"), format!("+OK 1 {}\r\n", M1.len()));
}

#[test]
fn huge_listing_streams_under_backpressure() {
    let store = MemoryStore::new();
    for i in 0..100_000 {
        store.add_message("big", &format!("uid{i}"), b"x\r\n");
    }
    let auth = MemoryAuthenticator::new().with_user("big", "pw");
    let mut p = policy();
    p.rules.high_water = 8 * 1024;
    let backend = Backend::new(auth, store, p);
    let mut t = T::new(backend, Connection::plain(false));
    t.send("USER big\r\nPASS pw\r\n");
    t.session.handle_input(b"UIDL\r\n", t.now);
    let mut total = 0usize;
    let mut lines = 0usize;
    for _ in 0..10_000 {
        block_on(t.session.process(t.now));
        let mut out = Vec::new();
        t.session.poll_transmit(t.now, &mut out);
        assert!(out.len() <= 8 * 1024 + 128, "output bounded: {}", out.len());
        if out.is_empty() {
            break;
        }
        total += out.len();
        lines += out.iter().filter(|&&b| b == b'\n').count();
    }
    assert_eq!(lines, 100_000 + 2);
    assert!(total > 1_000_000);
}

#[cfg(feature = "all-schemes")]
#[test]
fn passwd_file_users_log_in_through_the_session() {
    use pop3_server_core::passwd::PasswdFile;
    use std::path::Path;

    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/passwd");
    let passwd = PasswdFile::load(fixtures.join("users.passwd")).unwrap();
    let store = MemoryStore::new();
    for user in ["plain", "sha512", "blf", "scram"] {
        store.add_message(user, "m1", M2);
    }
    let backend = Backend::new(passwd, store, policy());
    for (user, pass) in [
        ("plain", "plain pass"),
        ("sha512", "sha512 pass"),
        ("blf", "blowfish pass"),
        ("scram", "scram pass"),
    ] {
        let mut t = T::new(backend.clone(), Connection::plain(false));
        let r = t.send(&format!("USER {user}\r\nPASS {pass}\r\nSTAT\r\nQUIT\r\n"));
        assert_eq!(
            r,
            format!(
                "+OK\r\n+OK Logged in.\r\n+OK 1 {}\r\n+OK Bye, 0 messages deleted\r\n",
                M2.len()
            ),
            "{user}"
        );
        let mut t = T::new(backend.clone(), Connection::plain(false));
        let r = t.send(&format!("USER {user}\r\nPASS wrong\r\n"));
        assert!(
            r.ends_with("-ERR [AUTH] Authentication failed\r\n"),
            "{user}"
        );
    }
}

#[test]
fn maildir_through_the_session_sends_lf_files_as_crlf() {
    let root = tempfile::tempdir().unwrap();
    let md = root.path().join("carol");
    for d in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(d)).unwrap();
    }
    std::fs::write(
        md.join("new/1700000000.M1P1.host"),
        b"Subject: lf\n\nhello\n.dot\n",
    )
    .unwrap();
    std::fs::write(
        md.join("cur/1700000001.M2P2.host:2,S"),
        b"Subject: crlf\r\n\r\nbye\r\n",
    )
    .unwrap();
    let auth = MemoryAuthenticator::new().with_user("carol", "pw");
    let mut p = policy();
    p.maildrop_lock = MaildropLock::Exclusive;
    let backend = Backend::new(auth, MaildirStore::new(root.path()), p);
    let mut t = T::new(backend.clone(), Connection::plain(false));
    t.send("USER carol\r\nPASS pw\r\n");
    let lf = "Subject: lf\r\n\r\nhello\r\n.dot\r\n";
    assert_eq!(
        t.send("LIST\r\n"),
        format!("+OK 2 messages\r\n1 {}\r\n2 22\r\n.\r\n", lf.len())
    );
    assert_eq!(
        t.send("UIDL\r\n"),
        "+OK 2 messages\r\n1 1700000000.M1P1.host\r\n2 1700000001.M2P2.host\r\n.\r\n"
    );
    assert_eq!(
        t.send("RETR 1\r\n"),
        format!(
            "+OK {} octets\r\nSubject: lf\r\n\r\nhello\r\n..dot\r\n.\r\n",
            lf.len()
        )
    );
    // A second session for the same user is refused while this one holds the lock.
    let mut t2 = T::new(backend.clone(), Connection::plain(false));
    assert!(t2.send("USER carol\r\nPASS pw\r\n").contains("[IN-USE]"));
    t.send("DELE 1\r\nQUIT\r\n");
    let mut t3 = T::new(backend, Connection::plain(false));
    t3.send("USER carol\r\nPASS pw\r\n");
    assert_eq!(
        t3.send("UIDL\r\n"),
        "+OK 1 messages\r\n1 1700000001.M2P2.host\r\n.\r\n"
    );
}

#[test]
fn sasl_scram_through_the_session() {
    // The server side of SCRAM against the session's memory authenticator: drive the
    // client machine's SASL exchange by hand over the session's bytes.
    use pop3_proto::client::{Client, ClientConfig, Event};
    use pop3_proto::sasl::ClientCredentials;
    let (store, auth) = memory();
    let backend = Backend::new(auth, store, policy());
    let now = Instant::now();
    let mut session = Session::new(backend, &Connection::plain(false), now);
    let mut client = Client::new(ClientConfig::default(), now);
    let mut logged_in = false;
    let mut started = false;
    for _ in 0..20 {
        let mut s2c = Vec::new();
        block_on(session.process(now));
        session.poll_transmit(now, &mut s2c);
        client.handle_input(&s2c, now);
        while let Some(ev) = client.poll_event() {
            if let Event::Ok { line, .. } = ev {
                logged_in |= line.text().as_bytes() == b"Logged in.";
            }
        }
        if !started && client.state() == pop3_proto::client::ClientState::Authorization {
            client
                .auth(
                    ClientCredentials::ScramSha256 {
                        user: "alice".into(),
                        password: pop3_proto::Secret::new("secret pass".into()),
                    },
                    b"clientnonce123",
                )
                .unwrap();
            started = true;
        }
        let mut c2s = Vec::new();
        client.poll_transmit(now, &mut c2s);
        session.handle_input(&c2s, now);
    }
    assert!(logged_in);
}
