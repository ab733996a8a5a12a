//! The PostgreSQL store against a real PostgreSQL (tests/support starts one per test binary;
//! each test gets its own database). Driven with `pop3_server_core::block_on`, outside any
//! tokio runtime, as the blocking server drives it, unless a test says otherwise.

mod reading;
mod support;

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pop3_proto::sasl::{CredentialAnswer, CredentialRequest, apop_digest, cram_md5_digest};
use pop3_proto::{Secret, Timestamp};
use pop3_server_core::backend::{
    Authenticator, MailStore, Maildrop, MaildropLock, MessageReader, StoreError,
};
use pop3_server_core::block_on;
use pop3_server_core::deliver::{Deliver, DeliverError};
use pop3_server_core::maildir::MaildirStore;
use pop3_server_core::passwd::PasswdFile;
use pop3_server_core::session::{Backend, Connection, Policy, Session, Step};
use pop3_store_postgres::{PgConfig, PgError, PgStore};
use reading::{reference, retr};

const LEASE: Duration = Duration::from_secs(2);

/// A migrated store on a fresh database, with small chunks and a short lease.
fn store() -> Option<(PgStore, String)> {
    let url = support::database()?;
    let store = open_store(&url);
    block_on(store.migrate()).expect("migrate");
    Some((store, url))
}

fn open_store(url: &str) -> PgStore {
    let config = PgConfig::new(url)
        .with_lease(LEASE)
        .with_chunk_size(1024)
        .with_pool_size(4);
    PgStore::new(config).expect("store")
}

fn add_user(store: &PgStore, user: &str, password: &str) {
    block_on(store.add_user(user, password, true)).expect("add user");
}

fn uids(drop: &impl Maildrop) -> Vec<String> {
    drop.messages()
        .iter()
        .map(|m| String::from_utf8_lossy(m.uid.as_bytes()).into_owned())
        .collect()
}

fn message(n: usize) -> Vec<u8> {
    format!("Subject: message {n}\nFrom: a@example.com\n\nbody of {n}\n").into_bytes()
}

#[test]
fn migrations_run_once_even_when_frontends_start_together() {
    let Some(url) = support::database() else {
        return;
    };
    let stores: Vec<PgStore> = (0..3).map(|_| open_store(&url)).collect();
    let threads: Vec<_> = stores
        .iter()
        .cloned()
        .map(|s| std::thread::spawn(move || block_on(s.migrate())))
        .collect();
    let mut applied: Vec<Vec<i32>> = threads
        .into_iter()
        .map(|t| t.join().unwrap().expect("migrate"))
        .collect();
    applied.sort();
    assert_eq!(applied, vec![vec![], vec![], vec![1]]);
    assert_eq!(block_on(stores[0].migrate()).unwrap(), Vec::<i32>::new());
}

#[test]
fn snapshot_sessions_see_their_login_and_delete_only_their_marks() {
    let Some((store, _)) = store() else { return };
    add_user(&store, "alice", "{PLAIN}pw");
    let mut delivered = Vec::new();
    for n in 1..=3 {
        delivered.push(block_on(store.deliver("alice", &message(n))).unwrap().uid);
    }
    let a = block_on(store.open("alice", MaildropLock::Snapshot)).unwrap();
    assert_eq!(a.messages().len(), 3);
    // Delivered after A's login: not in A's snapshot, in B's.
    let fourth = block_on(store.deliver("alice", &message(4))).unwrap();
    assert_eq!(a.messages().len(), 3);
    let b = block_on(store.open("alice", MaildropLock::Snapshot)).unwrap();
    assert_eq!(b.messages().len(), 4);
    assert_eq!(b.messages()[3].uid, fourth.uid);
    let sizes: Vec<u64> = b.messages().iter().map(|m| m.size).collect();
    let expected: Vec<u64> = (1..=4)
        .map(|n| reference(&message(n), None).len() as u64)
        .collect();
    assert_eq!(sizes, expected);

    // A removes 1 and 2; B removes 2 (already gone: skipped) and 4.
    block_on(a.commit(vec![0, 1])).unwrap();
    let c = block_on(store.open("alice", MaildropLock::Snapshot)).unwrap();
    assert_eq!(
        uids(&c),
        vec![delivered[2].to_string(), fourth.uid.to_string()]
    );
    block_on(b.commit(vec![1, 3])).unwrap();
    let d = block_on(store.open("alice", MaildropLock::Snapshot)).unwrap();
    assert_eq!(uids(&d), vec![delivered[2].to_string()]);

    // C still lists message 4, removed meanwhile: reading it fails, committing succeeds.
    let mut c = c;
    assert!(block_on(c.open_message(1, None)).is_err());
    block_on(c.commit(vec![1])).unwrap();
    let e = block_on(store.open("alice", MaildropLock::Snapshot)).unwrap();
    assert_eq!(e.messages().len(), 1);
}

#[test]
fn unknown_user_has_no_maildrop() {
    let Some((store, _)) = store() else { return };
    let opened = block_on(store.open("nobody", MaildropLock::Snapshot));
    assert_eq!(opened.unwrap_err(), StoreError::NotFound);
    let opened = block_on(store.open("nobody", MaildropLock::Exclusive));
    assert_eq!(opened.unwrap_err(), StoreError::NotFound);
    assert_eq!(
        block_on(store.recipient("nobody")),
        Err(DeliverError::NoSuchUser)
    );
    assert_eq!(
        block_on(store.deliver("nobody", b"x\n")).unwrap_err(),
        DeliverError::NoSuchUser
    );
    // The failed exclusive open left no lease behind.
    add_user(&store, "nobody", "{PLAIN}x");
    block_on(store.open("nobody", MaildropLock::Snapshot)).unwrap();
}

#[test]
fn retr_streams_byte_exact_crlf_and_top_cuts_after_n_lines() {
    let Some((store, _)) = store() else { return };
    add_user(&store, "alice", "{PLAIN}pw");
    // Several 1 KiB chunks, LF and CRLF line ends mixed, dots, a bare CR, no final line end.
    let mut big = b"Subject: big\nX-Mixed: yes\r\n\n".to_vec();
    for i in 0..400 {
        big.extend_from_slice(format!("line {i} .\n").as_bytes());
        if i % 7 == 0 {
            big.extend_from_slice(b".leading dot\r\n");
        }
        if i % 50 == 0 {
            big.extend_from_slice(b"bare\rCR\n");
        }
    }
    big.extend_from_slice(b"last line without end");
    let samples: Vec<Vec<u8>> = vec![
        big,
        b"Subject: no body".to_vec(),
        b"A: 1\nB: 2\n".to_vec(),
        b"\nbody only\n".to_vec(),
        Vec::new(),
    ];
    let mut uids = Vec::new();
    for sample in &samples {
        let stored = block_on(store.deliver("alice", sample)).unwrap();
        assert_eq!(stored.size, reference(sample, None).len() as u64);
        uids.push(stored.uid);
    }
    let mut drop = block_on(store.open("alice", MaildropLock::Snapshot)).unwrap();
    for (i, sample) in samples.iter().enumerate() {
        let crlf = reference(sample, None);
        assert_eq!(drop.messages()[i].size, crlf.len() as u64);
        assert_eq!(drop.messages()[i].uid, uids[i]);
        for step in [1, 7, 1000, 4096, 100_000] {
            if step == 1 && crlf.len() > 2000 {
                continue;
            }
            assert_eq!(
                retr(&mut drop, i, None, step),
                crlf,
                "message {i} step {step}"
            );
        }
        for lines in [0, 1, 2, 5, 399, 10_000] {
            assert_eq!(
                retr(&mut drop, i, Some(lines), 333),
                reference(sample, Some(lines)),
                "message {i} TOP {lines}"
            );
        }
    }
}

/// RETR of messages `range` of `drop` gives `samples` byte-exact (read 4 KiB at a time).
fn assert_retr(drop: &mut impl Maildrop, samples: &[Vec<u8>], range: std::ops::Range<usize>) {
    for i in range {
        assert_eq!(
            retr(drop, i, None, 4096),
            reference(&samples[i], None),
            "message {i}"
        );
    }
}

/// A message of about `size` octets whose lines name it.
fn sized_message(n: usize, size: usize) -> Vec<u8> {
    let mut m = format!("Subject: message {n}\n\n").into_bytes();
    while m.len() < size {
        m.extend_from_slice(format!("line of message {n} at {}\n", m.len()).as_bytes());
    }
    m
}

#[test]
fn reading_in_order_reads_the_next_bodies_ahead_within_one_batch() {
    let Some((store, _)) = store() else { return };
    add_user(&store, "alice", "{PLAIN}pw");
    // Small ones, an empty one, one over a batch (512 KiB), small ones again.
    let sizes = [3_000, 40_000, 0, 90_000, 600_000, 2_000, 5_000, 7_000];
    let samples: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(n, &size)| {
            if size == 0 {
                Vec::new()
            } else {
                sized_message(n, size)
            }
        })
        .collect();
    for sample in &samples {
        block_on(store.deliver("alice", sample)).unwrap();
    }
    let all: Vec<usize> = (0..samples.len()).collect();

    // Read in order, from the start: every body byte-exact, in any read size.
    let mut drop = block_on(store.open("alice", MaildropLock::Snapshot)).unwrap();
    for (i, sample) in samples.iter().enumerate() {
        let step = [1000, 4096, 65_536][i % 3];
        assert_eq!(
            retr(&mut drop, i, None, step),
            reference(sample, None),
            "message {i}"
        );
    }

    // What RETR 1 read ahead is what this session's snapshot promised, even once another
    // session has removed it: messages 2..4 came with 1 (each whole, within 512 KiB); the
    // fifth is too big to come along, so it is read when asked, and is gone by then.
    let mut reader = block_on(store.open("alice", MaildropLock::Snapshot)).unwrap();
    assert_retr(&mut reader, &samples, 0..1);
    let other = block_on(store.open("alice", MaildropLock::Snapshot)).unwrap();
    block_on(other.commit(all.clone())).unwrap();
    assert_retr(&mut reader, &samples, 1..4);
    assert!(block_on(reader.open_message(4, None)).is_err());
    assert!(block_on(reader.open_message(5, None)).is_err());

    // Out of order (the first RETR is not message 1) nothing is read ahead; nor by TOP.
    for sample in &samples {
        block_on(store.deliver("alice", sample)).unwrap();
    }
    let mut random = block_on(store.open("alice", MaildropLock::Snapshot)).unwrap();
    let mut top = block_on(store.open("alice", MaildropLock::Snapshot)).unwrap();
    assert_eq!(
        retr(&mut random, 5, None, 4096),
        reference(&samples[5], None)
    );
    assert_eq!(
        retr(&mut top, 0, Some(3), 4096),
        reference(&samples[0], Some(3))
    );
    let other = block_on(store.open("alice", MaildropLock::Snapshot)).unwrap();
    block_on(other.commit(all)).unwrap();
    assert!(block_on(random.open_message(6, None)).is_err());
    assert!(block_on(top.open_message(1, None)).is_err());
}

#[test]
fn read_ahead_comes_out_of_one_allowance_for_all_sessions() {
    let Some((_, url)) = store() else { return };
    let store = PgStore::new(
        PgConfig::new(&url)
            .with_chunk_size(1024)
            .with_read_ahead(100_000),
    )
    .expect("store");
    add_user(&store, "alice", "{PLAIN}pw");
    let samples: Vec<Vec<u8>> = (0..5).map(|n| sized_message(n, 30_000)).collect();
    let deliver_all = || {
        for sample in &samples {
            block_on(store.deliver("alice", sample)).unwrap();
        }
    };
    let remove_all = || {
        let other = block_on(store.open("alice", MaildropLock::Snapshot)).unwrap();
        block_on(other.commit((0..samples.len()).collect())).unwrap();
    };
    deliver_all();
    // A takes three of the next bodies (about 93 kB of the 100 kB); B, after it, none.
    let mut a = block_on(store.open("alice", MaildropLock::Snapshot)).unwrap();
    let mut b = block_on(store.open("alice", MaildropLock::Snapshot)).unwrap();
    assert_retr(&mut a, &samples, 0..1);
    assert_retr(&mut b, &samples, 0..1);
    remove_all();
    assert_retr(&mut a, &samples, 1..4);
    assert!(block_on(a.open_message(4, None)).is_err());
    assert!(block_on(b.open_message(1, None)).is_err());
    drop((a, b));

    // Taken or dropped, the octets went back: the next session reads ahead again.
    deliver_all();
    let mut c = block_on(store.open("alice", MaildropLock::Snapshot)).unwrap();
    assert_retr(&mut c, &samples, 0..1);
    remove_all();
    assert_retr(&mut c, &samples, 1..4);

    // No allowance, no read-ahead.
    let none = PgStore::new(PgConfig::new(&url).with_read_ahead(0)).expect("store");
    deliver_all();
    let mut d = block_on(none.open("alice", MaildropLock::Snapshot)).unwrap();
    assert_retr(&mut d, &samples, 0..1);
    remove_all();
    assert!(block_on(d.open_message(1, None)).is_err());
}

#[test]
fn mail_stored_under_another_chunk_size_reads_byte_exact() {
    let Some((small, url)) = store() else { return };
    let large = PgStore::new(PgConfig::new(&url).with_chunk_size(65_536)).expect("store");
    add_user(&small, "alice", "{PLAIN}pw");
    // Over 512 KiB in 64 KiB chunks with a short last one, which the first batch's octet
    // bound lets through ahead of the chunk before it; small ones around it.
    let samples = [
        sized_message(0, 2_000),
        sized_message(1, 580_000),
        sized_message(2, 70_000),
        sized_message(3, 3_000),
    ];
    for (i, sample) in samples.iter().enumerate() {
        let by = if i % 2 == 1 { &large } else { &small };
        block_on(by.deliver("alice", sample)).unwrap();
    }
    let crlf = reference(&samples[1], None).len();
    assert!(crlf > 9 * 65_536 && crlf % 65_536 < 40_000, "{crlf}");
    for reader in [&small, &large] {
        let mut drop = block_on(reader.open("alice", MaildropLock::Snapshot)).unwrap();
        for (i, sample) in samples.iter().enumerate() {
            assert_eq!(
                retr(&mut drop, i, None, 8192),
                reference(sample, None),
                "message {i}"
            );
            assert_eq!(
                retr(&mut drop, i, Some(2), 8192),
                reference(sample, Some(2))
            );
        }
        // RETR alone, in order: with read-ahead.
        let mut drop = block_on(reader.open("alice", MaildropLock::Snapshot)).unwrap();
        assert_retr(&mut drop, &samples, 0..samples.len());
    }
}

#[test]
fn uidls_are_stable_and_never_reused() {
    let Some((store, url)) = store() else { return };
    add_user(&store, "alice", "{PLAIN}pw");
    let first = block_on(store.deliver("alice", &message(1))).unwrap().uid;
    let second = block_on(store.deliver("alice", &message(2))).unwrap().uid;
    assert_ne!(first, second);
    for uid in [&first, &second] {
        assert!(uid.as_bytes().contains(&b':'), "{uid}");
    }
    // The same in every session, and from another frontend.
    let other = open_store(&url);
    for s in [&store, &other] {
        let drop = block_on(s.open("alice", MaildropLock::Snapshot)).unwrap();
        assert_eq!(uids(&drop), vec![first.to_string(), second.to_string()]);
    }
    // The newest message removed, a new one delivered: its UIDL is new.
    let drop = block_on(store.open("alice", MaildropLock::Snapshot)).unwrap();
    block_on(drop.commit(vec![1])).unwrap();
    let third = block_on(store.deliver("alice", &message(3))).unwrap().uid;
    assert_ne!(third, second);
    assert_ne!(third, first);
    let drop = block_on(other.open("alice", MaildropLock::Snapshot)).unwrap();
    assert_eq!(uids(&drop), vec![first.to_string(), third.to_string()]);
}

#[test]
fn exclusive_sessions_hold_a_renewed_lease() {
    let Some((a, url)) = store() else { return };
    let b = open_store(&url);
    add_user(&a, "alice", "{PLAIN}pw");
    block_on(a.deliver("alice", &message(1))).unwrap();

    let held = block_on(a.open("alice", MaildropLock::Exclusive)).unwrap();
    assert_eq!(
        block_on(b.open("alice", MaildropLock::Exclusive)).unwrap_err(),
        StoreError::InUse
    );
    assert_eq!(
        block_on(a.open("alice", MaildropLock::Exclusive)).unwrap_err(),
        StoreError::InUse
    );
    // A snapshot session may not join an exclusive one.
    assert_eq!(
        block_on(b.open("alice", MaildropLock::Snapshot)).unwrap_err(),
        StoreError::InUse
    );
    // Longer than the lease: the renewal keeps it.
    std::thread::sleep(LEASE + LEASE / 2);
    assert_eq!(
        block_on(b.open("alice", MaildropLock::Exclusive)).unwrap_err(),
        StoreError::InUse
    );
    // Dropping releases it (in the background: wait a little).
    drop(held);
    let reopened = retry(|| block_on(b.open("alice", MaildropLock::Exclusive)));
    // A commit releases it too.
    block_on(reopened.commit(vec![0])).unwrap();
    let after = block_on(a.open("alice", MaildropLock::Snapshot)).unwrap();
    assert!(after.messages().is_empty());
}

/// Retries `open` for up to a second while it answers InUse.
fn retry<T>(mut open: impl FnMut() -> Result<T, StoreError>) -> T {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match open() {
            Ok(v) => return v,
            Err(StoreError::InUse) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("open: {e}"),
        }
    }
}

#[test]
fn a_crashed_frontends_lease_expires_and_is_taken_over() {
    let Some((a, url)) = store() else { return };
    add_user(&a, "alice", "{PLAIN}pw");
    block_on(a.deliver("alice", &message(1))).unwrap();
    // Frontend B takes the lease and "crashes": no renewal, no release.
    let b = open_store(&url);
    let held = block_on(b.open("alice", MaildropLock::Exclusive)).unwrap();
    b.stop_lease_renewal();
    std::mem::forget(held);
    let started = Instant::now();
    assert_eq!(
        block_on(a.open("alice", MaildropLock::Exclusive)).unwrap_err(),
        StoreError::InUse
    );
    std::thread::sleep(LEASE + Duration::from_millis(300));
    let taken =
        block_on(a.open("alice", MaildropLock::Exclusive)).expect("expired lease taken over");
    assert!(started.elapsed() >= LEASE);
    assert_eq!(taken.messages().len(), 1);
}

#[test]
fn a_commit_after_losing_the_lease_deletes_nothing() {
    let Some((a, url)) = store() else { return };
    add_user(&a, "alice", "{PLAIN}pw");
    block_on(a.deliver("alice", &message(1))).unwrap();
    block_on(a.deliver("alice", &message(2))).unwrap();
    let b = open_store(&url);
    let stale = block_on(b.open("alice", MaildropLock::Exclusive)).unwrap();
    b.stop_lease_renewal();
    std::thread::sleep(LEASE + Duration::from_millis(300));
    // Expired, not yet taken: the commit still fails.
    let stale_2 = block_on(a.open("alice", MaildropLock::Exclusive)).unwrap();
    assert!(matches!(
        block_on(stale.commit(vec![0])),
        Err(StoreError::Temporary(_))
    ));
    assert_eq!(stale_2.messages().len(), 2);
    // The new holder's commit works.
    block_on(stale_2.commit(vec![1])).unwrap();
    let now = block_on(a.open("alice", MaildropLock::Snapshot)).unwrap();
    assert_eq!(now.messages().len(), 1);

    // And a lease that expired without anyone taking it is lost all the same.
    let c = open_store(&url);
    let lost = block_on(c.open("alice", MaildropLock::Exclusive)).unwrap();
    c.stop_lease_renewal();
    std::thread::sleep(LEASE + Duration::from_millis(300));
    assert!(matches!(
        block_on(lost.commit(vec![0])),
        Err(StoreError::Temporary(_))
    ));
    let now = block_on(a.open("alice", MaildropLock::Snapshot)).unwrap();
    assert_eq!(now.messages().len(), 1);
}

fn fixtures() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../pop3-server-core/tests/fixtures/passwd"
    ))
}

/// `user password` pairs of the passwd fixtures.
fn fixture_passwords() -> Vec<(String, String)> {
    std::fs::read_to_string(fixtures().join("passwords.tsv"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(u, p)| (u.to_owned(), p.to_owned()))
        .collect()
}

#[test]
fn authenticator_checks_every_passwd_scheme_and_refuses_disabled_users() {
    let Some((store, _)) = store() else { return };
    let file = PasswdFile::load(fixtures().join("users.passwd")).unwrap();
    let text = std::fs::read_to_string(fixtures().join("users.passwd")).unwrap();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut fields = line.split(':');
        let (user, password) = (fields.next().unwrap(), fields.next().unwrap());
        add_user(&store, user, password);
    }
    for (user, password) in fixture_passwords() {
        assert!(
            block_on(store.verify_password(&user, password.as_bytes())).unwrap(),
            "{user}"
        );
        assert!(
            !block_on(store.verify_password(&user, b"wrong")).unwrap(),
            "{user}"
        );
        // SASL PLAIN goes the same way.
        let answer = block_on(store.sasl(&CredentialRequest::Password {
            authzid: None,
            user: user.clone(),
            password: Secret::new(password.clone()),
        }))
        .unwrap();
        assert!(matches!(answer, CredentialAnswer::Verified(true)), "{user}");
        // CRAM-MD5 for the schemes that keep what it needs.
        let entry = file.get(&user).unwrap();
        let digest = cram_md5_digest(password.as_bytes(), b"<1.2@host>");
        let answer = block_on(store.sasl(&CredentialRequest::CramMd5 {
            user: user.clone(),
            challenge: b"<1.2@host>".to_vec(),
            digest,
        }))
        .unwrap();
        let can = entry.supports(pop3_server_core::passwd::AuthKind::CramMd5);
        assert!(
            matches!(answer, CredentialAnswer::Verified(ok) if ok == can),
            "{user}"
        );
        // SCRAM: the stored (or derived) secret, as the passwd-file gives it.
        let answer =
            block_on(store.sasl(&CredentialRequest::Scram { user: user.clone() })).unwrap();
        let CredentialAnswer::Scram(got) = answer else {
            panic!("{user}: {answer:?}")
        };
        let expected = entry.scram_sha256();
        assert_eq!(
            got.map(|s| s.stored_key),
            expected.map(|s| s.stored_key),
            "{user}"
        );
    }
    assert!(!block_on(store.verify_password("nobody", b"plain pass")).unwrap());

    // APOP needs the plaintext.
    let ts = Timestamp::new(b"<42.1@example.com>".to_vec()).unwrap();
    let digest = apop_digest(&ts, b"plain pass");
    assert!(block_on(store.verify_apop("plain", &ts, &digest)).unwrap());
    let digest = apop_digest(&ts, b"sha512 pass");
    assert!(!block_on(store.verify_apop("sha512", &ts, &digest)).unwrap());

    // The mechanisms follow the stored schemes.
    let names = |s: &PgStore| -> Vec<String> {
        s.mechanisms()
            .iter()
            .map(|m| m.as_str().to_owned())
            .collect()
    };
    assert_eq!(
        names(&store),
        ["SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"]
    );
    assert!(store.apop());

    // A disabled user is refused like a wrong password, and gets no mail.
    block_on(store.add_user("plain", "{PLAIN}plain pass", false)).unwrap();
    assert!(!block_on(store.verify_password("plain", b"plain pass")).unwrap());
    let digest = apop_digest(&ts, b"plain pass");
    assert!(!block_on(store.verify_apop("plain", &ts, &digest)).unwrap());
    assert_eq!(
        block_on(store.recipient("plain")),
        Err(DeliverError::NoSuchUser)
    );
    assert!(block_on(store.recipient("sha512")).is_ok());

    // A password string the authenticator cannot use is refused when added.
    let bad = block_on(store.add_user("x", "{NOPE}x", true));
    assert!(matches!(bad, Err(PgError::Config(_))), "{bad:?}");
}

#[test]
fn a_whole_pop3_session_runs_on_the_store() {
    let Some((store, _)) = store() else { return };
    add_user(&store, "alice", "{PLAIN}secret pass");
    let m1 = b"Subject: one\nFrom: a@example.com\n\nline 1\n.dot line\nline 3\n";
    let m2 = b"Subject: two\r\n\r\nbody two\r\n";
    let u1 = block_on(store.deliver("alice", m1)).unwrap().uid;
    let u2 = block_on(store.deliver("alice", m2)).unwrap().uid;
    block_on(store.refresh_mechanisms()).unwrap();

    let mut policy = Policy::default();
    policy.rules.plaintext_auth = true;
    policy.rules.auth_failure_delay = Duration::ZERO;
    let backend = Backend::new(store.clone(), store.clone(), policy);
    let now = Instant::now();
    let mut session = Session::new(Arc::clone(&backend), &Connection::plain(false), now);
    let mut all = Vec::new();
    session.poll_transmit(now, &mut all);
    session.handle_input(
        b"CAPA\r\nUSER alice\r\nPASS secret pass\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 2 0\r\nDELE 1\r\nSTAT\r\nQUIT\r\n",
        now,
    );
    for _ in 0..10_000 {
        assert_eq!(block_on(session.process(now)), Step::Continue);
        let before = all.len();
        session.poll_transmit(now, &mut all);
        if all.len() == before && session.is_closed() {
            break;
        }
    }
    let out = String::from_utf8_lossy(&all);
    let s1 = reference(m1, None).len();
    let s2 = m2.len();
    for expected in [
        "SASL SCRAM-SHA-256 CRAM-MD5 PLAIN LOGIN\r\n".to_string(),
        "+OK Logged in.\r\n".to_string(),
        format!("+OK 2 {}\r\n", s1 + s2),
        format!("1 {s1}\r\n2 {s2}\r\n.\r\n"),
        format!("1 {u1}\r\n2 {u2}\r\n.\r\n"),
        "Subject: one\r\nFrom: a@example.com\r\n\r\nline 1\r\n..dot line\r\nline 3\r\n.\r\n"
            .to_string(),
        "Subject: two\r\n\r\n.\r\n".to_string(),
        format!("+OK 1 {s2}\r\n"),
    ] {
        assert!(out.contains(&expected), "{expected:?} not in {out}");
    }
    assert!(out.ends_with("\r\n"), "{out}");
    assert!(session.is_closed());
    let after = block_on(store.open("alice", MaildropLock::Snapshot)).unwrap();
    assert_eq!(uids(&after), vec![u2.to_string()]);
}

#[test]
fn works_inside_a_tokio_runtime_too() {
    let Some(url) = support::database() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = PgStore::new(PgConfig::new(&url)).unwrap();
        assert_eq!(store.migrate().await.unwrap(), vec![1]);
        store.add_user("alice", "{PLAIN}pw", true).await.unwrap();
        let stored = store.deliver("alice", b"Subject: x\n\nhi\n").await.unwrap();
        let mut drop = store.open("alice", MaildropLock::Snapshot).await.unwrap();
        assert_eq!(drop.messages()[0].uid, stored.uid);
        let mut reader = drop.open_message(0, None).await.unwrap();
        let mut buf = [0u8; 64];
        let n = reader.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"Subject: x\r\n\r\nhi\r\n");
        assert!(store.verify_password("alice", b"pw").await.unwrap());
    });
}

/// A Maildir tree with two users' mail, as Dovecot or the Maildir store wrote it.
fn maildir_tree(root: &Path) {
    for user in ["plain", "sha512"] {
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(root.join(user).join(sub)).unwrap();
        }
    }
    let files: [(&str, &str, &[u8]); 4] = [
        (
            "plain",
            "new/1700000000.M1P1.host,S=26,W=29",
            b"Subject: a\n\nfirst message\n",
        ),
        (
            "plain",
            "cur/1700000001.M2P1.host:2,S",
            b"Subject: b\r\n\r\nsecond\r\n",
        ),
        (
            "plain",
            "cur/1700000002.M3P1.host:2,",
            b"Subject: c\n\n.dot\nend",
        ),
        (
            "sha512",
            "new/1700000003.M4P1.host",
            b"Subject: d\n\nfor sha512\n",
        ),
    ];
    for (user, name, body) in files {
        std::fs::write(root.join(user).join(name), body).unwrap();
    }
}

#[test]
fn import_keeps_uidls_and_is_idempotent() {
    let Some((store, _)) = store() else { return };
    let root = tempfile::tempdir().unwrap();
    maildir_tree(root.path());
    let passwd = fixtures().join("users.passwd");
    let maildirs = MaildirStore::new(root.path());
    let mut before = Vec::new();
    for user in ["plain", "sha512"] {
        let drop = maildirs
            .open_with_lock(user, MaildropLock::Snapshot)
            .unwrap();
        for i in 0..drop.messages().len() {
            let info = drop.messages()[i].clone();
            let mut reader = drop.open_message(i).unwrap();
            let mut body = Vec::new();
            reader.read_to_end(&mut body).unwrap();
            before.push((user, info, body));
        }
    }

    let report = block_on(store.import_maildir(root.path(), &passwd)).unwrap();
    let users = PasswdFile::load(&passwd).unwrap().len() as u64;
    assert_eq!(report.users_added, users);
    assert_eq!(report.users_existing, 0);
    assert_eq!(report.users_without_maildir, users - 2);
    assert_eq!(report.messages_added, 4);
    assert_eq!(report.messages_existing, 0);

    let again = block_on(store.import_maildir(root.path(), &passwd)).unwrap();
    assert_eq!(again.users_added, 0);
    assert_eq!(again.users_existing, users);
    assert_eq!(again.messages_added, 0);
    assert_eq!(again.messages_existing, 4);

    for user in ["plain", "sha512"] {
        let mut drop = block_on(store.open(user, MaildropLock::Snapshot)).unwrap();
        let expected: Vec<_> = before.iter().filter(|b| b.0 == user).collect();
        assert_eq!(drop.messages().len(), expected.len());
        for (i, (_, info, body)) in expected.iter().enumerate() {
            assert_eq!(&drop.messages()[i], info, "{user} {i}");
            assert_eq!(&retr(&mut drop, i, None, 4096), body, "{user} {i}");
        }
    }
    // The passwords came along as they were.
    for (user, password) in fixture_passwords() {
        if user == "argon2id" {
            continue; // slow unoptimised; covered by the authenticator test
        }
        assert!(
            block_on(store.verify_password(&user, password.as_bytes())).unwrap(),
            "{user}"
        );
    }
    // New mail gets a UIDL no Maildir name can have.
    let new = block_on(store.deliver("plain", b"Subject: new\n\nx\n")).unwrap();
    assert!(new.uid.as_bytes().contains(&b':'));
    let drop = block_on(store.open("plain", MaildropLock::Snapshot)).unwrap();
    assert_eq!(drop.messages().len(), 4);
}

#[test]
fn gc_in_postgres_mode_removes_only_leftovers() {
    let Some((store, url)) = store() else { return };
    add_user(&store, "alice", "{PLAIN}pw");
    block_on(store.deliver("alice", &message(1))).unwrap();
    // A lease left long ago by a dead frontend.
    let b = open_store(&url);
    std::mem::forget(block_on(b.open("alice", MaildropLock::Exclusive)).unwrap());
    b.stop_lease_renewal();
    std::thread::sleep(LEASE + Duration::from_millis(300));
    let report = block_on(store.gc(Duration::ZERO)).unwrap();
    assert_eq!(report.body_rows_removed, 0);
    assert_eq!(report.leases_removed, 1);
    assert_eq!(report.blobs_seen, 0);
    let mut drop = block_on(store.open("alice", MaildropLock::Snapshot)).unwrap();
    assert_eq!(retr(&mut drop, 0, None, 4096), reference(&message(1), None));
}

#[test]
fn config_errors_are_reported() {
    let bad = PgStore::new(PgConfig::new("postgresql://x/y").with_pool_size(0));
    assert!(matches!(bad, Err(PgError::Config(_))));
    let bad = PgStore::new(PgConfig::new("not a url ="));
    assert!(matches!(bad, Err(PgError::Config(_))));
    // A database that is not there: a temporary failure, not a hang.
    let port = support::free_port();
    let store = PgStore::new(PgConfig::new(format!(
        "postgresql://postgres@127.0.0.1:{port}/x"
    )))
    .unwrap();
    assert!(matches!(
        block_on(store.open("alice", MaildropLock::Snapshot)),
        Err(StoreError::Temporary(_))
    ));
    assert!(matches!(
        block_on(store.migrate()),
        Err(PgError::Database(_))
    ));
}
