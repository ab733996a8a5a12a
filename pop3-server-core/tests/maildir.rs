//! The Maildir store on temporary directories: layout, unique ids, sizes, the size cache,
//! snapshots, locking, commits that fail half-way, TOP, and user names that try to escape.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use pop3_server_core::maildir::{MaildirDrop, MaildirError, MaildirStore};

/// A store in a fresh temporary root with the maildir of `alice` (tmp, new, cur).
fn setup() -> (tempfile::TempDir, MaildirStore, PathBuf) {
    let root = tempfile::tempdir().expect("temporary directory");
    let user = root.path().join("alice");
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(user.join(sub)).expect("create maildir");
    }
    let store = MaildirStore::new(root.path());
    (root, store, user)
}

fn put(user: &Path, sub: &str, name: &str, content: &[u8]) -> PathBuf {
    let path = user.join(sub).join(name);
    fs::write(&path, content).expect("write message");
    path
}

fn read_all(mut r: impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    r.read_to_end(&mut out).expect("read message");
    out
}

fn retr(drop: &MaildirDrop, index: usize) -> Vec<u8> {
    read_all(drop.open_message(index).expect("open message"))
}

fn top(drop: &MaildirDrop, index: usize, lines: u64) -> Vec<u8> {
    read_all(drop.open_top(index, lines).expect("open top"))
}

fn uids(drop: &MaildirDrop) -> Vec<String> {
    drop.messages()
        .iter()
        .map(|m| m.uid.as_str().to_owned())
        .collect()
}

/// Every bare LF as CRLF: what a message must look like on the wire.
fn to_crlf(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &b) in input.iter().enumerate() {
        if b == b'\n' && (i == 0 || input[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn snapshot_lists_new_and_cur_in_delivery_order() {
    let (_root, store, user) = setup();
    put(&user, "cur", "1700000002.M5P1.host:2,S", b"third\n");
    put(&user, "new", "1700000001.M100000P1.host", b"second\n");
    put(&user, "new", "1700000001.M99P1.host", b"first\n");
    put(&user, "new", "999999999.M1P1.host", b"oldest\n");
    // Not messages: dot-files, tmp/, directories, symbolic links.
    put(&user, "cur", ".hidden:2,", b"hidden\n");
    put(&user, "tmp", "1700000003.M1P1.host", b"in delivery\n");
    fs::create_dir(user.join("cur").join("1700000004.M1P1.host")).expect("mkdir");
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        user.join("new").join("999999999.M1P1.host"),
        user.join("new").join("1700000005.M1P1.host"),
    )
    .expect("symlink");

    let drop = store.open("alice").expect("open");
    assert_eq!(
        uids(&drop),
        [
            "999999999.M1P1.host",
            "1700000001.M99P1.host",
            "1700000001.M100000P1.host",
            "1700000002.M5P1.host",
        ]
    );
    let bodies: Vec<Vec<u8>> = (0..4).map(|i| retr(&drop, i)).collect();
    assert_eq!(
        bodies,
        [
            b"oldest\r\n".to_vec(),
            b"first\r\n".to_vec(),
            b"second\r\n".to_vec(),
            b"third\r\n".to_vec()
        ]
    );
    assert!(matches!(
        drop.open_message(4),
        Err(MaildirError::NoSuchMessage(4))
    ));
}

#[test]
fn missing_subdirectories_are_created_and_missing_users_are_not() {
    let root = tempfile::tempdir().expect("temporary directory");
    fs::create_dir(root.path().join("bob")).expect("mkdir");
    let store = MaildirStore::new(root.path());
    let drop = store.open("bob").expect("open");
    assert!(drop.messages().is_empty());
    for sub in ["tmp", "new", "cur"] {
        assert!(root.path().join("bob").join(sub).is_dir(), "{sub}");
    }
    drop.commit(&[]).expect("empty commit");

    assert!(matches!(store.open("carol"), Err(MaildirError::NoMailbox)));
    assert!(!root.path().join("carol").exists());
    let creating = store.clone().create_missing(true);
    let drop = creating.open("carol").expect("open with creation");
    assert!(drop.messages().is_empty());
    assert!(root.path().join("carol").join("cur").is_dir());

    // A plain file where the maildir should be is no maildir.
    fs::write(root.path().join("dave"), b"").expect("write");
    assert!(matches!(
        creating.open("dave"),
        Err(MaildirError::NoMailbox)
    ));
}

#[cfg(unix)]
#[test]
fn symlinked_subdirectory_is_refused() {
    let (root, store, user) = setup();
    let elsewhere = root.path().join("elsewhere");
    fs::create_dir(&elsewhere).expect("mkdir");
    fs::remove_dir(user.join("cur")).expect("rmdir");
    std::os::unix::fs::symlink(&elsewhere, user.join("cur")).expect("symlink");
    assert!(matches!(
        store.open("alice"),
        Err(MaildirError::NotADirectory { .. })
    ));
}

#[test]
fn uidl_is_stable_across_flag_changes_moves_and_sessions() {
    let (_root, store, user) = setup();
    let long = format!("1700000000.{}.host", "x".repeat(80));
    put(&user, "new", "1700000001.M1P1.host,S=6", b"hello\n");
    put(&user, "cur", "1700000002.M1P1.host:2,S", b"world\n");
    put(&user, "cur", &format!("{long}:2,"), b"long\n");
    put(
        &user,
        "cur",
        "1700000003.M1P1.host with space:2,",
        b"spaced\n",
    );

    let first = store.open("alice").expect("open");
    let before = uids(&first);
    // Delivery order: the long name has the earliest time.
    assert_eq!(before[1], "1700000001.M1P1.host,S=6");
    assert_eq!(before[2], "1700000002.M1P1.host");
    // The over-long and the spaced names become 32 hex digits.
    for hashed in [&before[0], &before[3]] {
        assert_eq!(hashed.len(), 32, "{hashed}");
        assert!(hashed.bytes().all(|b| b.is_ascii_hexdigit()), "{hashed}");
    }
    assert_ne!(before[0], before[3]);
    drop(first);

    // Another client reads the mail: moves it to cur/ and changes flags.
    fs::rename(
        user.join("new/1700000001.M1P1.host,S=6"),
        user.join("cur/1700000001.M1P1.host,S=6:2,S"),
    )
    .expect("rename");
    fs::rename(
        user.join("cur/1700000002.M1P1.host:2,S"),
        user.join("cur/1700000002.M1P1.host:2,RS"),
    )
    .expect("rename");
    fs::rename(
        user.join("cur").join(format!("{long}:2,")),
        user.join("cur").join(format!("{long}:2,FS")),
    )
    .expect("rename");

    let second = store.open("alice").expect("reopen");
    assert_eq!(uids(&second), before);
    assert_eq!(retr(&second, 1), b"hello\r\n");
}

#[test]
fn renamed_during_session_is_found_again() {
    let (_root, store, user) = setup();
    put(&user, "new", "1700000001.M1P1.host", b"one\n");
    put(&user, "new", "1700000002.M1P1.host", b"two\n");
    let drop = store.open("alice").expect("open");

    fs::rename(
        user.join("new/1700000001.M1P1.host"),
        user.join("cur/1700000001.M1P1.host:2,S"),
    )
    .expect("rename");
    fs::rename(
        user.join("new/1700000002.M1P1.host"),
        user.join("cur/1700000002.M1P1.host:2,T"),
    )
    .expect("rename");
    assert_eq!(retr(&drop, 0), b"one\r\n");
    assert_eq!(top(&drop, 1, 0), b"two\r\n");

    // The renamed file is the one deleted.
    drop.commit(&[0]).expect("commit");
    assert_eq!(names_in(&user.join("cur")), ["1700000002.M1P1.host:2,T"]);
}

#[test]
fn removed_by_another_client() {
    let (_root, store, user) = setup();
    let gone = put(&user, "new", "1700000001.M1P1.host", b"one\n");
    put(&user, "new", "1700000002.M1P1.host", b"two\n");
    let drop = store.open("alice").expect("open");
    fs::remove_file(gone).expect("remove");
    match drop.open_message(0) {
        Err(MaildirError::MessageGone { uid }) => assert_eq!(uid.as_str(), "1700000001.M1P1.host"),
        other => panic!("expected MessageGone, got {other:?}"),
    }
    // Already gone counts as deleted.
    drop.commit(&[0, 1]).expect("commit");
    assert!(names_in(&user.join("new")).is_empty());
}

#[test]
fn sizes_equal_the_octets_sent() {
    let (_root, store, user) = setup();
    let mut big = Vec::new();
    for i in 0..20_000 {
        big.extend_from_slice(format!("line {i} of a long LF message\n").as_bytes());
        if i % 7 == 0 {
            big.extend_from_slice(b"crlf line\r\nbare cr\r here\n");
        }
    }
    let contents: [&[u8]; 8] = [
        b"Subject: lf\n\nbody\n",
        b"Subject: crlf\r\n\r\nbody\r\n",
        b"Subject: mixed\n\r\nbody\r\nmore\n",
        b"Subject: no final newline\n\nbody",
        b"",
        b"\n",
        b"bare\rcr\r\r\n\r",
        &big,
    ];
    for (i, content) in contents.iter().enumerate() {
        put(&user, "new", &format!("17000000{i:02}.M1P1.host"), content);
    }
    let drop = store.open("alice").expect("open");
    assert_eq!(drop.messages().len(), contents.len());
    for (i, content) in contents.iter().enumerate() {
        let sent = retr(&drop, i);
        assert_eq!(sent, to_crlf(content), "message {i}");
        assert_eq!(drop.messages()[i].size, sent.len() as u64, "message {i}");
    }
}

#[test]
fn size_fields_in_names() {
    let (_root, store, user) = setup();
    let content = b"Subject: x\n\nbody\n"; // 17 octets, 20 with CRLF
    // W= is trusted without reading the file: a deliberately different (but possible) value
    // shows it was used.
    put(&user, "cur", "1700000001.M1P1.host,S=17,W=25:2,S", content);
    // S= disagrees with the file: both fields are ignored and the size is computed.
    put(&user, "cur", "1700000002.M1P1.host,S=99,W=25:2,S", content);
    // W= below the file length is impossible: computed.
    put(&user, "cur", "1700000003.M1P1.host,W=3:2,", content);
    // S= alone: computed.
    put(&user, "new", "1700000004.M1P1.host,S=17", content);
    // Correct W= from Dovecot.
    put(&user, "new", "1700000005.M1P1.host,S=17,W=20", content);
    let drop = store.open("alice").expect("open");
    let sizes: Vec<u64> = drop.messages().iter().map(|m| m.size).collect();
    assert_eq!(sizes, [25, 20, 20, 20, 20]);
    assert_eq!(retr(&drop, 4).len(), 20);
}

#[test]
fn a_dovecot_named_file_changed_in_place_is_listed_right_in_the_next_session() {
    let (_root, store, user) = setup();
    let path = put(&user, "cur", "1700000001.M1P1.host,S=4,W=6:2,S", b"a\nb\n");
    let drop = store.open("alice").expect("open");
    assert_eq!(drop.messages()[0].size, 6);
    assert_eq!(retr(&drop, 0), b"a\r\nb\r\n");
    drop.commit(&[]).expect("commit");
    // The name still says S=4,W=6; the file no longer agrees.
    fs::write(&path, b"a\nb\nc\n").expect("rewrite");
    let drop = store.open("alice").expect("reopen");
    assert!(matches!(
        drop.open_message(0),
        Err(MaildirError::MessageChanged { .. })
    ));
    drop.commit(&[]).expect("commit");
    // The cache now outranks the name.
    let drop = store.open("alice").expect("reopen");
    assert_eq!(drop.messages()[0].size, 9);
    assert_eq!(retr(&drop, 0), b"a\r\nb\r\nc\r\n");
}

#[test]
fn size_cache_is_used_by_the_next_session() {
    let (_root, store, user) = setup();
    let path = put(&user, "new", "1700000001.M1P1.host", b"a\nb\n");
    let other = put(&user, "new", "1700000002.M1P1.host", b"x\n");
    let drop = store.open("alice").expect("open");
    assert_eq!(drop.messages()[0].size, 6);
    assert_eq!(drop.messages()[1].size, 3);
    drop.commit(&[]).expect("commit");
    assert!(user.join(".pop3d-sizes").is_file());

    // Same length, other line ends: only a cache can still say 6.
    fs::write(&path, b"ab\r\n").expect("rewrite");
    // Changed in place to another length (Maildir forbids it): the listing still trusts the
    // cache, but RETR notices, refuses to send other than the size listed, and corrects the
    // cache for the next session.
    fs::write(&other, b"x\r\ny\n").expect("rewrite");
    let drop = store.open("alice").expect("reopen");
    assert_eq!(drop.messages()[0].size, 6);
    assert_eq!(drop.messages()[1].size, 3);
    match drop.open_message(1) {
        Err(MaildirError::MessageChanged { uid }) => {
            assert_eq!(uid.as_str(), "1700000002.M1P1.host")
        }
        other => panic!("expected MessageChanged, got {other:?}"),
    }
    drop.commit(&[]).expect("commit");
    let drop = store.open("alice").expect("reopen");
    assert_eq!(drop.messages()[1].size, 6);
    assert_eq!(retr(&drop, 1), b"x\r\ny\r\n");
    drop.commit(&[]).expect("commit");

    // Without the cache the file is read again.
    fs::remove_file(user.join(".pop3d-sizes")).expect("remove cache");
    let drop = store.open("alice").expect("reopen");
    assert_eq!(drop.messages()[0].size, 4);
    drop.commit(&[]).expect("commit");

    // A damaged cache is ignored.
    fs::write(
        user.join(".pop3d-sizes"),
        b"pop3d-sizes 1\n99 4 1700000001.M1P1.host\ngarbage\n",
    )
    .expect("write cache");
    let drop = store.open("alice").expect("reopen");
    assert_eq!(drop.messages()[0].size, 4);
    assert_eq!(drop.messages()[1].size, 6);
}

#[test]
fn size_cache_forgets_removed_messages() {
    let (_root, store, user) = setup();
    put(&user, "new", "1700000001.M1P1.host", b"a\n");
    put(&user, "new", "1700000002.M1P1.host", b"b\n");
    store
        .open("alice")
        .expect("open")
        .commit(&[0])
        .expect("commit");
    // The next session prunes the entry of the deleted message.
    drop(store.open("alice").expect("reopen"));
    let cache = fs::read_to_string(user.join(".pop3d-sizes")).expect("read cache");
    assert!(!cache.contains("1700000001"), "{cache}");
    assert!(cache.contains("3 2 1700000002.M1P1.host"), "{cache}");
}

#[test]
fn deliveries_during_a_session_wait_for_the_next_one() {
    let (_root, store, user) = setup();
    put(&user, "new", "1700000001.M1P1.host", b"one\n");
    let drop = store.open("alice").expect("open");
    put(&user, "new", "1700000002.M1P1.host", b"two\n");
    put(&user, "cur", "1700000000.M1P1.host:2,", b"zero\n");
    assert_eq!(uids(&drop), ["1700000001.M1P1.host"]);
    drop.commit(&[0]).expect("commit");

    let drop = store.open("alice").expect("reopen");
    assert_eq!(
        uids(&drop),
        ["1700000000.M1P1.host", "1700000002.M1P1.host"]
    );
}

#[test]
fn second_session_is_refused_until_the_first_ends() {
    let (_root, store, user) = setup();
    put(&user, "new", "1700000001.M1P1.host", b"one\n");
    let first = store.open("alice").expect("open");
    assert!(matches!(store.open("alice"), Err(MaildirError::InUse)));
    // Another store object on the same root: same answer.
    let again = MaildirStore::new(store.root());
    assert!(matches!(again.open("alice"), Err(MaildirError::InUse)));
    // From another thread too.
    let store2 = store.clone();
    let other =
        std::thread::spawn(move || matches!(store2.open("alice"), Err(MaildirError::InUse)));
    assert!(other.join().expect("thread"));
    drop(first);

    let second = store.open("alice").expect("open after drop");
    assert!(matches!(store.open("alice"), Err(MaildirError::InUse)));
    // A failed commit releases the lock as well.
    fs::remove_file(user.join("new/1700000001.M1P1.host")).expect("remove");
    fs::create_dir_all(user.join("new/1700000001.M1P1.host/x")).expect("mkdir");
    assert!(second.commit(&[0]).is_err());
    store.open("alice").expect("open after failed commit");
}

#[test]
fn commit_that_fails_half_way() {
    let (_root, store, user) = setup();
    for i in 1..=5 {
        put(&user, "new", &format!("170000000{i}.M1P1.host"), b"m\n");
    }
    let drop = store.open("alice").expect("open");
    // Message 3 (index 2) can no longer be unlinked: a non-empty directory has its name.
    // (Permissions would not do: the tests may run as root.)
    let blocked = user.join("new/1700000003.M1P1.host");
    fs::remove_file(&blocked).expect("remove");
    fs::create_dir_all(blocked.join("inside")).expect("mkdir");

    let err = drop
        .commit(&[0, 2, 3, 3, 99])
        .expect_err("commit must fail");
    let failed: Vec<(usize, Option<String>)> = err
        .not_deleted
        .iter()
        .map(|n| (n.index, n.uid.as_ref().map(|u| u.as_str().to_owned())))
        .collect();
    assert_eq!(
        failed,
        [(2, Some("1700000003.M1P1.host".to_owned())), (99, None)]
    );
    assert!(matches!(err.not_deleted[0].error, MaildirError::Io { .. }));
    assert!(matches!(
        err.not_deleted[1].error,
        MaildirError::NoSuchMessage(99)
    ));
    assert!(err.sync_failed.is_none());
    // The marked messages around the failure are gone; unmarked ones are intact.
    assert_eq!(
        names_in(&user.join("new")),
        [
            "1700000002.M1P1.host",
            "1700000003.M1P1.host",
            "1700000005.M1P1.host"
        ]
    );
    assert!(blocked.join("inside").is_dir());
    for kept in ["1700000002.M1P1.host", "1700000005.M1P1.host"] {
        assert_eq!(fs::read(user.join("new").join(kept)).expect("read"), b"m\n");
    }
}

#[test]
fn user_names_cannot_leave_the_root() {
    let root = tempfile::tempdir().expect("temporary directory");
    let maildirs = root.path().join("maildirs");
    fs::create_dir(&maildirs).expect("mkdir");
    // Targets that a traversal could reach.
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(root.path().join("victim").join(sub)).expect("mkdir");
    }
    let store = MaildirStore::new(&maildirs).create_missing(true);
    let long = "a".repeat(300);
    for bad in [
        "",
        ".",
        "..",
        "../victim",
        "..\\victim",
        "a/b",
        "/etc",
        "a\0b",
        "alice\n",
        ".alice",
        long.as_str(),
    ] {
        assert!(
            matches!(store.open(bad), Err(MaildirError::InvalidUser)),
            "{bad:?}"
        );
    }
    assert!(names_in(&maildirs).is_empty());
    assert!(!root.path().join("victim").join(".pop3d-lock").exists());
    // The longest acceptable name works.
    store.open(&"a".repeat(255)).expect("255 octets");
}

#[test]
fn top_on_lf_and_crlf_messages() {
    let (_root, store, user) = setup();
    let lf = b"From: a\nSubject: lf\n\nl1\nl2\nl3\n";
    let crlf = b"From: a\r\nSubject: crlf\r\n\r\nl1\r\nl2\r\nl3\r\n";
    let unterminated = b"From: a\n\nl1\nl2";
    let header_only = b"From: a\nSubject: h\n";
    put(&user, "new", "1700000001.M1P1.host", lf);
    put(&user, "new", "1700000002.M1P1.host", crlf);
    put(&user, "new", "1700000003.M1P1.host", unterminated);
    put(&user, "new", "1700000004.M1P1.host", header_only);
    put(&user, "new", "1700000005.M1P1.host", b"");
    let drop = store.open("alice").expect("open");

    for index in [0, 1] {
        let whole = retr(&drop, index);
        let head_len = whole
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("blank line")
            + 4;
        assert_eq!(top(&drop, index, 0), whole[..head_len], "{index}");
        assert_eq!(
            top(&drop, index, 2),
            [&whole[..head_len], b"l1\r\nl2\r\n"].concat()
        );
        assert_eq!(top(&drop, index, 3), whole);
        assert_eq!(top(&drop, index, u64::MAX), whole);
    }
    assert_eq!(top(&drop, 2, 0), b"From: a\r\n\r\n");
    assert_eq!(top(&drop, 2, 1), b"From: a\r\n\r\nl1\r\n");
    assert_eq!(top(&drop, 2, 2), b"From: a\r\n\r\nl1\r\nl2");
    assert_eq!(top(&drop, 2, 9), retr(&drop, 2));
    assert_eq!(top(&drop, 3, 0), b"From: a\r\nSubject: h\r\n");
    assert_eq!(top(&drop, 4, 0), b"");
    assert_eq!(drop.messages()[4].size, 0);
}

/// The lock holds against another process, not only within this one: the test binary runs
/// itself as the second process.
#[test]
fn second_session_in_another_process_is_refused() {
    const CHILD_ROOT: &str = "POP3_MAILDIR_TEST_CHILD_ROOT";
    if let Some(root) = std::env::var_os(CHILD_ROOT) {
        // The child: the parent holds the lock.
        let store = MaildirStore::new(root);
        assert!(matches!(store.open("alice"), Err(MaildirError::InUse)));
        return;
    }
    let (root, store, _user) = setup();
    let run_child = || {
        std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "second_session_in_another_process_is_refused",
                "--test-threads=1",
            ])
            .env(CHILD_ROOT, root.path())
            .output()
            .expect("run child")
    };
    let held = store.open("alice").expect("open");
    let child = run_child();
    assert!(
        child.status.success(),
        "{}",
        String::from_utf8_lossy(&child.stdout)
    );
    // The child really checks: without the lock held, it fails.
    drop(held);
    assert!(!run_child().status.success());
}
