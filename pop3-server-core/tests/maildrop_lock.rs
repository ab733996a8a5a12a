//! Sessions that share a maildrop (`Policy::maildrop_lock`), on both shipped stores, through
//! the session over in-memory bytes: snapshot sessions run side by side and each removes only
//! what it marked; exclusive sessions keep answering `[IN-USE]`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pop3_server_core::backend::{Authenticator, MailStore};
use pop3_server_core::block_on;
use pop3_server_core::maildir::{MaildirError, MaildirStore};
use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
use pop3_server_core::session::{Backend, Connection, MaildropLock, Policy, Session, Step};

/// Unique names in delivery order: the UIDLs on both stores.
const UIDS: [&str; 5] = [
    "1700000001.M1P1.host",
    "1700000002.M2P1.host",
    "1700000003.M3P1.host",
    "1700000004.M4P1.host",
    "1700000005.M5P1.host",
];

fn body(i: usize) -> Vec<u8> {
    format!("Subject: message {i}\r\n\r\nbody {i}\r\n").into_bytes()
}

fn policy(lock: MaildropLock) -> Policy {
    let mut p = Policy::default();
    p.rules.plaintext_auth = true;
    p.rules.auth_failure_delay = Duration::ZERO;
    p.maildrop_lock = lock;
    p
}

fn auth() -> MemoryAuthenticator {
    MemoryAuthenticator::new().with_user("alice", "pw")
}

/// One connection's session, driven by hand.
struct T<A: Authenticator, S: MailStore> {
    session: Session<A, S>,
    now: Instant,
}

impl<A: Authenticator, S: MailStore> T<A, S> {
    fn new(backend: &Arc<Backend<A, S>>) -> Self {
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

    fn login(backend: &Arc<Backend<A, S>>) -> Self {
        let mut t = T::new(backend);
        assert_eq!(
            t.send("USER alice\r\nPASS pw\r\n"),
            "+OK\r\n+OK Logged in.\r\n"
        );
        t
    }
}

/// What keeps a store's files alive for the test (the Maildir's temporary directory).
type Guard = Option<tempfile::TempDir>;

/// A store of one of the two kinds holding `UIDS`, and what is left in it.
trait Store: MailStore + Clone {
    fn with_messages() -> (Self, Guard);
    /// The unique-ids left, in order.
    fn left(&self) -> Vec<String>;
    /// Delivers one more message.
    fn deliver(&self, uid: &str, body: &[u8]);
}

impl Store for MemoryStore {
    fn with_messages() -> (Self, Guard) {
        let store = MemoryStore::new();
        for (i, uid) in UIDS.iter().enumerate() {
            store.add_message("alice", uid, &body(i + 1));
        }
        (store, None)
    }

    fn left(&self) -> Vec<String> {
        self.uids("alice")
    }

    fn deliver(&self, uid: &str, body: &[u8]) {
        self.add_message("alice", uid, body);
    }
}

impl Store for MaildirStore {
    fn with_messages() -> (Self, Guard) {
        let root = tempfile::tempdir().unwrap();
        let md = root.path().join("alice");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(md.join(sub)).unwrap();
        }
        for (i, uid) in UIDS.iter().enumerate() {
            std::fs::write(md.join("new").join(uid), body(i + 1)).unwrap();
        }
        let store = MaildirStore::new(root.path()).lock_wait(Duration::ZERO);
        (store, Some(root))
    }

    fn left(&self) -> Vec<String> {
        let mut left: Vec<String> = ["new", "cur"]
            .iter()
            .flat_map(|sub| std::fs::read_dir(self.root().join("alice").join(sub)).unwrap())
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .map(|name| name.split(':').next().unwrap().to_string())
            .collect();
        left.sort();
        left
    }

    fn deliver(&self, uid: &str, body: &[u8]) {
        let md = self.root().join("alice");
        std::fs::write(md.join("tmp").join(uid), body).unwrap();
        std::fs::rename(md.join("tmp").join(uid), md.join("new").join(uid)).unwrap();
    }
}

fn backend<S: Store>(store: &S, lock: MaildropLock) -> Arc<Backend<MemoryAuthenticator, S>> {
    Backend::new(auth(), store.clone(), policy(lock))
}

fn uids_except(gone: &[usize]) -> Vec<String> {
    (1..=UIDS.len())
        .filter(|n| !gone.contains(n))
        .map(|n| UIDS[n - 1].to_string())
        .collect()
}

fn uidl_listing(numbers: &[usize]) -> String {
    let mut s = format!("+OK {} messages\r\n", numbers.len());
    for &n in numbers {
        s.push_str(&format!("{n} {}\r\n", UIDS[n - 1]));
    }
    s + ".\r\n"
}

/// Two sessions of one user at once, each deleting some messages: both log in, both commit,
/// and what is gone is the union of what each marked. Each sees its own snapshot throughout,
/// with the same unique-ids.
fn two_sessions_delete_the_union<S: Store>() {
    let (store, _dir) = S::with_messages();
    let backend = backend(&store, MaildropLock::Snapshot);
    let mut a = T::login(&backend);
    let mut b = T::login(&backend);
    let all = uidl_listing(&[1, 2, 3, 4, 5]);
    assert_eq!(a.send("UIDL\r\n"), all);
    assert_eq!(b.send("UIDL\r\n"), all);
    assert_eq!(
        a.send("DELE 1\r\nDELE 2\r\n"),
        "+OK Message 1 deleted\r\n+OK Message 2 deleted\r\n"
    );
    assert_eq!(b.send("DELE 4\r\n"), "+OK Message 4 deleted\r\n");
    assert_eq!(b.send("QUIT\r\n"), "+OK Bye, 1 messages deleted\r\n");
    assert_eq!(store.left(), uids_except(&[4]));
    // A's snapshot is as it was at its login: message 4 is still listed, under its number
    // and unique-id.
    assert_eq!(a.send("UIDL\r\n"), uidl_listing(&[3, 4, 5]));
    assert_eq!(a.send("UIDL 4\r\n"), format!("+OK 4 {}\r\n", UIDS[3]));
    assert_eq!(a.send("QUIT\r\n"), "+OK Bye, 2 messages deleted\r\n");
    assert_eq!(store.left(), uids_except(&[1, 2, 4]));
    // The next session numbers what is left from 1, with the same unique-ids.
    let mut c = T::login(&backend);
    assert_eq!(
        c.send("UIDL\r\n"),
        format!("+OK 2 messages\r\n1 {}\r\n2 {}\r\n.\r\n", UIDS[2], UIDS[4])
    );
}

#[test]
fn two_sessions_delete_the_union_memory() {
    two_sessions_delete_the_union::<MemoryStore>();
}

#[test]
fn two_sessions_delete_the_union_maildir() {
    two_sessions_delete_the_union::<MaildirStore>();
}

/// A session that deletes what another already removed: its commit succeeds, and removes
/// nothing it did not mark.
fn deleting_what_another_removed<S: Store>() {
    let (store, _dir) = S::with_messages();
    let backend = backend(&store, MaildropLock::Snapshot);
    let mut a = T::login(&backend);
    let mut b = T::login(&backend);
    b.send("DELE 2\r\nDELE 3\r\n");
    assert_eq!(b.send("QUIT\r\n"), "+OK Bye, 2 messages deleted\r\n");
    a.send("DELE 2\r\n");
    assert_eq!(a.send("QUIT\r\n"), "+OK Bye, 1 messages deleted\r\n");
    assert!(a.session.is_closed());
    assert_eq!(store.left(), uids_except(&[2, 3]));
}

#[test]
fn deleting_what_another_removed_memory() {
    deleting_what_another_removed::<MemoryStore>();
}

#[test]
fn deleting_what_another_removed_maildir() {
    deleting_what_another_removed::<MaildirStore>();
}

/// A phone that leaves mail on the server and a laptop that deletes it, polling the same
/// account at overlapping times: neither is ever refused, the phone never loses track (the
/// unique-ids it saw stay the same), and the laptop's deletions are the only ones.
fn phone_keeps_laptop_deletes<S: Store>() {
    let (store, _dir) = S::with_messages();
    let backend = backend(&store, MaildropLock::Snapshot);
    let mut phone = T::login(&backend);
    let mut laptop = T::login(&backend);
    // The phone downloads everything and keeps it; the laptop downloads and deletes it.
    let phone_uidl = phone.send("UIDL\r\n");
    for n in 1..=UIDS.len() {
        let r = phone.send(&format!("RETR {n}\r\n"));
        assert!(r.contains(&format!("body {n}\r\n")), "{r}");
        let r = laptop.send(&format!("RETR {n}\r\nDELE {n}\r\n"));
        assert!(r.ends_with(&format!("+OK Message {n} deleted\r\n")), "{r}");
    }
    assert_eq!(laptop.send("QUIT\r\n"), "+OK Bye, 5 messages deleted\r\n");
    assert_eq!(phone.send("UIDL\r\n"), phone_uidl);
    assert_eq!(phone.send("QUIT\r\n"), "+OK Bye, 0 messages deleted\r\n");
    assert!(store.left().is_empty());

    // New mail: the phone sees it first and keeps it, while the laptop is logged in.
    store.deliver("1700000006.M6P1.host", b"Subject: six\r\n\r\nsix\r\n");
    let mut laptop = T::login(&backend);
    let mut phone = T::login(&backend);
    assert_eq!(
        phone.send("UIDL\r\n"),
        "+OK 1 messages\r\n1 1700000006.M6P1.host\r\n.\r\n"
    );
    assert!(phone.send("RETR 1\r\n").contains("six\r\n"));
    assert_eq!(phone.send("QUIT\r\n"), "+OK Bye, 0 messages deleted\r\n");
    assert_eq!(store.left(), ["1700000006.M6P1.host"]);
    assert_eq!(
        laptop.send("UIDL\r\nDELE 1\r\nQUIT\r\n"),
        "+OK 1 messages\r\n1 1700000006.M6P1.host\r\n.\r\n\
         +OK Message 1 deleted\r\n+OK Bye, 1 messages deleted\r\n"
    );
    assert!(store.left().is_empty());
}

#[test]
fn phone_keeps_laptop_deletes_memory() {
    phone_keeps_laptop_deletes::<MemoryStore>();
}

#[test]
fn phone_keeps_laptop_deletes_maildir() {
    phone_keeps_laptop_deletes::<MaildirStore>();
}

/// `exclusive` keeps RFC 1939's lock: a second session is refused with `[IN-USE]` until the
/// first ends, however it ends.
fn exclusive_answers_in_use<S: Store>() {
    let (store, _dir) = S::with_messages();
    let backend = backend(&store, MaildropLock::Exclusive);
    let mut a = T::login(&backend);
    let mut b = T::new(&backend);
    assert_eq!(
        b.send("USER alice\r\nPASS pw\r\n"),
        "+OK\r\n-ERR [IN-USE] Maildrop is locked by another session\r\n"
    );
    a.send("DELE 1\r\nQUIT\r\n");
    let mut c = T::login(&backend);
    c.session.shutdown();
    drop(c);
    T::login(&backend);
    assert_eq!(store.left(), uids_except(&[1]));
}

#[test]
fn exclusive_answers_in_use_memory() {
    exclusive_answers_in_use::<MemoryStore>();
}

#[test]
fn exclusive_answers_in_use_maildir() {
    exclusive_answers_in_use::<MaildirStore>();
}

/// Servers with different modes on one store (two processes on one maildir root, say): an
/// exclusive session is alone, so snapshot sessions are refused while it runs, and an
/// exclusive one is refused while snapshot sessions run.
fn exclusive_and_snapshot_sessions_exclude_each_other<S: Store>() {
    let (store, _dir) = S::with_messages();
    let snapshot = backend(&store, MaildropLock::Snapshot);
    let exclusive = backend(&store, MaildropLock::Exclusive);
    let in_use = "+OK\r\n-ERR [IN-USE] Maildrop is locked by another session\r\n";
    let mut alone = T::login(&exclusive);
    assert_eq!(T::new(&snapshot).send("USER alice\r\nPASS pw\r\n"), in_use);
    alone.send("QUIT\r\n");
    let mut s1 = T::login(&snapshot);
    let mut s2 = T::login(&snapshot);
    assert_eq!(T::new(&exclusive).send("USER alice\r\nPASS pw\r\n"), in_use);
    s1.send("QUIT\r\n");
    assert_eq!(T::new(&exclusive).send("USER alice\r\nPASS pw\r\n"), in_use);
    s2.send("QUIT\r\n");
    T::login(&exclusive);
}

#[test]
fn exclusive_and_snapshot_sessions_exclude_each_other_memory() {
    exclusive_and_snapshot_sessions_exclude_each_other::<MemoryStore>();
}

#[test]
fn exclusive_and_snapshot_sessions_exclude_each_other_maildir() {
    exclusive_and_snapshot_sessions_exclude_each_other::<MaildirStore>();
}

/// RFC 2449 defines no capability for the lock mode: `CAPA` is the same in both modes,
/// before and after login, so it claims neither.
#[test]
fn capa_is_the_same_in_both_modes() {
    let (store, _) = MemoryStore::with_messages();
    let capa = |lock| {
        let backend = backend(&store, lock);
        let mut t = T::new(&backend);
        let before = t.send("CAPA\r\n");
        t.send("USER alice\r\nPASS pw\r\n");
        let after = t.send("CAPA\r\n");
        t.send("QUIT\r\n");
        (before, after)
    };
    let snapshot = capa(MaildropLock::Snapshot);
    assert_eq!(snapshot, capa(MaildropLock::Exclusive));
    for text in [&snapshot.0, &snapshot.1] {
        let upper = text.to_uppercase();
        assert!(
            !upper.contains("LOCK") && !upper.contains("EXCLUSIVE"),
            "{text}"
        );
    }
}

/// Maildir: another program moves a message from `new/` to `cur/` (and sets a flag) after
/// the snapshot: its UIDL is unchanged, it can be read, and marking it removes it under its
/// new name. A message another session removed cannot be read (`-ERR`, the session goes on),
/// and marking it still commits.
#[test]
fn maildir_moved_and_removed_messages_in_snapshot_sessions() {
    let (store, _dir) = MaildirStore::with_messages();
    let md = store.root().join("alice");
    let backend = backend(&store, MaildropLock::Snapshot);
    let mut a = T::login(&backend);
    let mut b = T::login(&backend);
    std::fs::rename(
        md.join("new").join(UIDS[0]),
        md.join("cur").join(format!("{}:2,S", UIDS[0])),
    )
    .unwrap();
    assert_eq!(a.send("UIDL 1\r\n"), format!("+OK 1 {}\r\n", UIDS[0]));
    assert!(a.send("RETR 1\r\n").contains("body 1\r\n"));
    b.send("DELE 2\r\nQUIT\r\n");
    let r = a.send("RETR 2\r\n");
    assert!(r.starts_with("-ERR"), "{r}");
    assert!(!a.session.is_closed());
    assert_eq!(
        a.send("DELE 1\r\nDELE 2\r\nQUIT\r\n"),
        "+OK Message 1 deleted\r\n+OK Message 2 deleted\r\n+OK Bye, 2 messages deleted\r\n"
    );
    assert_eq!(store.left(), uids_except(&[1, 2]));
    assert!(!has_file(&md.join("cur"), UIDS[0]));
}

fn has_file(dir: &Path, unique: &str) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().starts_with(unique))
}

/// The Maildir store's own API: shared locks for snapshot opens, exclusive for the others,
/// and a commit of a message already removed succeeds.
#[test]
fn maildir_open_with_lock_modes() {
    let (store, _dir) = MaildirStore::with_messages();
    let first = store
        .open_with_lock("alice", MaildropLock::Snapshot)
        .unwrap();
    let second = store
        .open_with_lock("alice", MaildropLock::Snapshot)
        .unwrap();
    assert!(matches!(store.open("alice"), Err(MaildirError::InUse)));
    assert_eq!(first.messages(), second.messages());
    second.commit(&[0, 4]).unwrap();
    first.commit(&[0]).unwrap();
    assert_eq!(store.left(), uids_except(&[1, 5]));
    let alone = store.open("alice").unwrap();
    assert!(matches!(
        store.open_with_lock("alice", MaildropLock::Snapshot),
        Err(MaildirError::InUse)
    ));
    drop(alone);
    store
        .open_with_lock("alice", MaildropLock::Snapshot)
        .unwrap();
}
