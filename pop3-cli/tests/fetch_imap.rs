//! `pop3 fetch` with an `imap = "imap[s]://…"` target in its configuration file, from
//! `pop3 serve` into a real Dovecot over IMAP APPEND: every message arrives byte for byte
//! (CRLF, as FETCH BODY[] gives it back) with its original date as the internal date, and is
//! deleted from the POP3 server only once appended; a missing mailbox or a refused login
//! deletes nothing; a message a run handed over without seeing the answer ("pending") is
//! looked for before it is appended again, with a Message-ID or without; and runs killed at
//! random points leave every message in the mailbox exactly once.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod support;
use support::{
    Server, on_server, run_fetch, set_maildrop, spawn_fetch, stderr, stdout, write_config,
};

#[path = "support/dovecot_imap.rs"]
mod dovecot_imap;
use dovecot_imap::{IMAP_PASSWORD, Imapd};

/// A message as POP3 serves it: CRLF line ends.
fn crlf(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len() + m.len() / 16);
    for &b in m {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Writes `home/fetch.toml`: one account `mv` of `server` into `imap`, with `extra` lines
/// (the imap_* keys, a policy); gives its path.
fn config(home: &Path, server: &Server, imap: &str, extra: &str) -> PathBuf {
    write_config(home, server, "mv", &format!("imap = \"{imap}\"\n{extra}"))
}

/// [`config`] into alice's INBOX at `imapd` over plaintext IMAP (`imap_allow_plaintext`),
/// with `extra` lines.
fn plaintext_inbox_config(home: &Path, server: &Server, imapd: &Imapd, extra: &str) -> PathBuf {
    let imap = format!("imap://alice@127.0.0.1:{}/INBOX", imapd.port);
    let keys = format!(
        "imap_password_command = \"echo {IMAP_PASSWORD}\"\nimap_allow_plaintext = true\n{extra}"
    );
    config(home, server, &imap, &keys)
}

/// The IMAP server's certificate, written where `imap_ca_file` can name it.
fn imap_ca(home: &Path, imapd: &Imapd) -> PathBuf {
    let path = home.join("imap-ca.pem");
    std::fs::write(&path, imapd.cert_pem()).unwrap();
    path
}

/// Unix time of an RFC 3339 date, for the expected internal dates.
fn ts(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// What is delivered and how the internal dates come out: the first `Received:` date wins
/// over `Date:` (offsets kept), no date at all gives the time of the APPEND; dot lines, 8-bit
/// text, an empty body and a larger message cross unchanged.
fn dated_messages() -> Vec<(Vec<u8>, Option<i64>)> {
    let mut big =
        b"Date: Sat, 14 Feb 2026 23:59:59 +1300\nSubject: big\nMessage-ID: <big@test>\n\n".to_vec();
    for i in 0..6000 {
        if i % 9 == 0 {
            big.push(b'.');
        }
        big.extend_from_slice(format!("line {i} of the larger message, café\n").as_bytes());
    }
    vec![
        (
            b"Received: from mx.example.org by pop.example.net;\n\tTue, 1 Jul 2003 10:52:37 +0200 (CEST)\n\
              Received: from older; Mon, 30 Jun 2003 08:00:00 -0000\n\
              Date: Mon, 30 Jun 2003 07:59:00 +0000\nSubject: received\nMessage-ID: <r@test>\n\nbody\n"
                .to_vec(),
            Some(ts("2003-07-01T10:52:37+02:00")),
        ),
        (
            b"Date: Fri, 21 Nov 1997 09:55:06 -0600\nSubject: dated\nMessage-ID: <d@test>\n\nbody\n"
                .to_vec(),
            Some(ts("1997-11-21T09:55:06-06:00")),
        ),
        (
            b"Subject: undated\nMessage-ID: <u@test>\n\nno date at all\n".to_vec(),
            None,
        ),
        (
            "Date: Thu, 1 Jan 2026 10:00:00 +0000\nSubject: dots and 8-bit, Grüße\n\
             Message-ID: <x@test>\n\nhello\n.leading dot\n.\n..two\n...\nÉté, 日本語\nend\n"
                .as_bytes()
                .to_vec(),
            Some(ts("2026-01-01T10:00:00+00:00")),
        ),
        (
            b"Date: Wed, 31 Dec 2025 12:00:00 -0500\nSubject: empty body\n\n".to_vec(),
            Some(ts("2025-12-31T12:00:00-05:00")),
        ),
        (big, Some(ts("2026-02-14T23:59:59+13:00"))),
    ]
}

/// Over implicit TLS (the test CA trusted with imap_ca_file): `keep` appends every message
/// and leaves it on the POP3 server; the next run without it appends nothing again and
/// deletes them all; the one after has nothing to do. What Dovecot holds is each message
/// byte for byte, once, with its original date.
#[test]
fn appended_byte_exact_with_original_dates_then_deleted() {
    let Some(imapd) = Imapd::start() else { return };
    let server = Server::start_tls();
    let messages = dated_messages();
    let raw: Vec<Vec<u8>> = messages.iter().map(|(m, _)| m.clone()).collect();
    set_maildrop(&server, &raw, "P7.imaptest");
    let n = messages.len();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let ca = imap_ca(h, &imapd);
    let imap = format!("imaps://alice@localhost:{}/INBOX", imapd.tls_port);
    let keys = format!(
        "imap_password_command = \"echo {IMAP_PASSWORD}\"\nimap_ca_file = \"{}\"\n",
        ca.display()
    );
    let started = now();
    let out = run_fetch(h, &config(h, &server, &imap, &format!("{keys}keep = true")));
    assert!(out.status.success(), "{}\n{}", stderr(&out), imapd.log());
    assert!(
        stdout(&out).contains(&format!("{n} messages fetched")),
        "{out:?}"
    );
    assert_eq!(on_server(&server), n, "keep: all left on the POP3 server");
    let record = h.join("state/pop3/imap-127.0.0.1-alice");
    assert_eq!(
        std::fs::read_to_string(&record).unwrap().lines().count(),
        n,
        "one key a message"
    );
    let check = |what: &str| {
        let mut c = imapd.login();
        let back = c.fetch_all("INBOX");
        c.logout();
        assert_eq!(back.len(), n, "{what}: {n} messages in the mailbox");
        for (m, date) in &messages {
            let want = crlf(m);
            let found: Vec<_> = back.iter().filter(|f| f.body == want).collect();
            assert_eq!(
                found.len(),
                1,
                "{what}: {:?} is in the mailbox once, byte for byte",
                String::from_utf8_lossy(&m[..m.len().min(60)])
            );
            match date {
                Some(t) => assert_eq!(found[0].timestamp(), *t, "{}", found[0].internal_date),
                // The APPEND's time.
                None => assert!(
                    (started - 5..now() + 5).contains(&found[0].timestamp()),
                    "{}",
                    found[0].internal_date
                ),
            }
        }
    };
    check("after the first run");
    // Without keep: nothing appended again, everything deleted.
    let config = config(h, &server, &imap, &keys);
    let out = run_fetch(h, &config);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("0 messages fetched")
            && stdout(&out).contains(&format!("{n} deleted from the server, 0 left")),
        "{out:?}"
    );
    assert_eq!(on_server(&server), 0);
    assert_eq!(std::fs::read_to_string(&record).unwrap(), "");
    check("after the second run");
    // Nothing left to do: no IMAP connection is even made.
    let logins = imapd.log().matches("Login: user=<alice>").count();
    let out = run_fetch(h, &config);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("0 messages fetched"), "{out:?}");
    assert_eq!(
        imapd.log().matches("Login: user=<alice>").count(),
        logins,
        "no IMAP login without mail to deliver:\n{}",
        imapd.log()
    );
    check("after the third run");
}

/// A mailbox that does not exist (over STARTTLS): every message refused, nothing deleted from
/// the POP3 server, a non-zero exit, and a report that says to create the mailbox (which is
/// not created). A refused IMAP login stops the run, deleting nothing. Once the mailbox
/// exists, the next run delivers everything and deletes it.
#[test]
fn a_missing_mailbox_or_a_refused_login_deletes_nothing() {
    let Some(imapd) = Imapd::start() else { return };
    let server = Server::start_tls();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let ca = imap_ca(h, &imapd);
    let n = support::MESSAGES.len();
    let missing = format!("imap://alice@localhost:{}/NoSuchBox", imapd.port);
    let keys = |pw: &str| {
        format!(
            "imap_password_command = \"echo {pw}\"\nimap_ca_file = \"{}\"\n",
            ca.display()
        )
    };
    let out = run_fetch(h, &config(h, &server, &missing, &keys(IMAP_PASSWORD)));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("not delivered, left on the server: the mailbox \"NoSuchBox\" does not exist")
            && e.contains("create it")
            && e.contains("TRYCREATE"),
        "{e}"
    );
    assert!(
        stdout(&out).contains(&format!("{n} refused by the target")),
        "{out:?}"
    );
    assert_eq!(on_server(&server), n, "nothing deleted");
    assert!(!imapd.maildir().join(".NoSuchBox").exists(), "not created");

    // A wrong IMAP password: the run stops at the first message, nothing deleted.
    let inbox = format!("imap://alice@localhost:{}/INBOX", imapd.port);
    let out = run_fetch(h, &config(h, &server, &inbox, &keys("wrong")));
    assert!(!out.status.success(), "{out:?}");
    assert!(
        stderr(&out).contains("IMAP login failed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(on_server(&server), n, "nothing deleted");
    let mut c = imapd.login();
    assert!(c.fetch_all("INBOX").is_empty());

    // Created: delivered and deleted.
    let ok = c.command("CREATE NoSuchBox");
    assert!(ok.status.starts_with(" OK"), "{}", ok.status);
    let out = run_fetch(h, &config(h, &server, &missing, &keys(IMAP_PASSWORD)));
    assert!(out.status.success(), "{}\n{}", stderr(&out), imapd.log());
    assert!(
        stdout(&out).contains(&format!("{n} deleted from the server, 0 left")),
        "{out:?}"
    );
    assert_eq!(on_server(&server), 0);
    let mut bodies: Vec<Vec<u8>> = c
        .fetch_all("NoSuchBox")
        .into_iter()
        .map(|f| f.body)
        .collect();
    bodies.sort();
    let mut want: Vec<Vec<u8>> = support::MESSAGES
        .iter()
        .map(|m| crlf(m.as_bytes()))
        .collect();
    want.sort();
    assert_eq!(bodies, want);
    c.logout();
}

/// A random number below `n` (no generator crate needed for a test's jitter).
fn random_below(n: u64) -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        % n
}

/// How many messages Dovecot has stored in alice's INBOX (its Maildir's files).
fn stored_in(imapd: &Imapd) -> usize {
    ["new", "cur"]
        .iter()
        .map(|d| {
            std::fs::read_dir(imapd.maildir().join(d))
                .map(|r| r.count())
                .unwrap_or(0)
        })
        .sum()
}

/// The Message-IDs in the mailbox, and how often each is there.
fn message_ids(imapd: &Imapd) -> HashMap<String, usize> {
    let mut c = imapd.login();
    let back = c.fetch_all("INBOX");
    c.logout();
    let mut ids = HashMap::new();
    for f in back {
        let text = String::from_utf8_lossy(&f.body).into_owned();
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .unwrap_or_else(|| panic!("no Message-ID in {text:?}"))
            .to_string();
        *ids.entry(id).or_insert(0) += 1;
    }
    ids
}

/// `pop3 fetch` SIGKILLed at random points five times while it appends 50 messages over
/// plaintext IMAP (0–120 ms after the run's first APPEND landed: an append takes a few ms,
/// the start of a run some 200), then run to the end: every message is in the mailbox
/// exactly once, none lost, none twice, and all are gone from the POP3 server. (Dovecot
/// finishes storing a message whose last octet it received after the client died; before
/// the pending record lines and the search, such a message arrived twice: 0 to 4 duplicates
/// in five kills.)
#[test]
fn killed_runs_deliver_every_message_exactly_once() {
    let Some(imapd) = Imapd::start() else { return };
    let server = Server::start_tls();
    const N: usize = 50;
    let messages: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let mut m = format!(
                "Date: Mon, 2 Feb 2026 10:{:02}:00 +0000\nSubject: message {i}\nMessage-ID: <{i}@kill.test>\n\n",
                i % 60
            )
            .into_bytes();
            for l in 0..(50 + 40 * (i % 7)) {
                m.extend_from_slice(format!("message {i} line {l}: some text to send\n").as_bytes());
            }
            m
        })
        .collect();
    set_maildrop(&server, &messages, "P7.imaptest");
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let config = plaintext_inbox_config(h, &server, &imapd, "");
    let record = h.join("state/pop3/imap-127.0.0.1-alice");
    let mut stored_pending = 0;
    let mut progress = Vec::new();
    for _ in 0..5 {
        let mut child = spawn_fetch(h, &config);
        // The start (TLS, two logins) takes longer than the appends that follow (a few ms
        // each): the clock starts when this run's first APPEND has landed.
        let before = stored_in(&imapd);
        let started = Instant::now();
        while stored_in(&imapd) == before
            && child.try_wait().unwrap().is_none()
            && started.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        let first = started.elapsed();
        let delay = random_below(121);
        std::thread::sleep(Duration::from_millis(delay));
        // SIGKILL.
        let _ = child.kill();
        let status = child.wait().unwrap();
        let ids = message_ids(&imapd);
        let arrived: usize = ids.values().sum();
        // The last pending line, with its Message-ID: the message in hand at the kill, or the
        // one before whose delivered line was not yet written. Already in the mailbox, it is
        // one the next run must find rather than append (the server may have stored it after
        // the client died, before or without an OK the client saw).
        let record = std::fs::read_to_string(&record).unwrap_or_default();
        let in_hand = record
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("P "))
            .and_then(|l| l.split_once(' '))
            .map(|(key, id)| (key.to_string(), id.to_string()));
        let in_hand = match in_hand {
            Some((key, id)) if !record.contains(&format!("D {key}\n")) => {
                let there = ids.contains_key(&id);
                stored_pending += usize::from(there);
                format!(
                    "{id} pending, {}",
                    if there { "stored" } else { "not stored" }
                )
            }
            _ => "none pending".to_string(),
        };
        progress.push(format!(
            "first APPEND (or the end) after {first:?}, killed {delay} ms later ({status}): \
             {arrived} in the mailbox, {} on the POP3 server; {in_hand}",
            on_server(&server)
        ));
    }
    progress.push(format!(
        "pending messages already in the mailbox, for the next run to find: {stored_pending}"
    ));
    // To the end. The POP3 server may still hold the killed session's maildrop lock for a
    // moment: a run that finds it locked is tried again.
    let start = Instant::now();
    loop {
        let t = Instant::now();
        let out = run_fetch(h, &config);
        if out.status.success() {
            progress.push(format!(
                "the last run: {:?}, {}",
                t.elapsed(),
                stdout(&out).trim()
            ));
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}\n{progress:#?}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let ids = message_ids(&imapd);
    let lost: Vec<usize> = (0..N)
        .filter(|i| !ids.contains_key(&format!("<{i}@kill.test>")))
        .collect();
    assert!(lost.is_empty(), "lost: {lost:?}\n{progress:#?}");
    assert_eq!(ids.len(), N, "nothing but the test's messages: {ids:?}");
    let mut twice: Vec<(&String, &usize)> = ids.iter().filter(|(_, c)| **c > 1).collect();
    twice.sort();
    eprintln!("{progress:#?}");
    assert!(
        twice.is_empty(),
        "in the mailbox more than once: {twice:?}\n{progress:#?}"
    );
    assert_eq!(on_server(&server), 0, "all deleted from the POP3 server");
    // A last run: nothing new.
    let out = run_fetch(h, &config);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("0 messages fetched"), "{out:?}");
    assert_eq!(message_ids(&imapd).values().sum::<usize>(), N);
    let record = std::fs::read_to_string(&record).unwrap();
    assert_eq!(record, "", "nothing left to remember");
}

/// A run that dies after the server stored a message but before the record says so leaves
/// the key pending (`P <key> …`); the next run looks for the message in the mailbox before it
/// appends it again. Simulated by turning a run's `D` lines into `P` lines: the messages
/// still in the mailbox, with a Message-ID or without one (found by size, date and subject,
/// then compared whole), are not appended again; the one that is no longer there is. Each
/// message ends up in the mailbox exactly once, and recorded as delivered.
#[test]
fn pending_messages_are_looked_for_before_appending_again() {
    let Some(imapd) = Imapd::start() else { return };
    let server = Server::start_tls();
    let messages: Vec<Vec<u8>> = vec![
        b"Date: Mon, 2 Feb 2026 10:00:00 +0000\nSubject: no id, dated\n\nbody\n".to_vec(),
        b"Date: Mon, 2 Feb 2026 10:00:00 +0000\nSubject: no id, dated\n\nbody, another\n".to_vec(),
        b"Subject: =?UTF-8?Q?caf=C3=A9?=\nFrom: a@example.org\n\nno id, no date\n".to_vec(),
        b"From: b@example.org\n\nno id, no date, no subject\n".to_vec(),
        b"Date: Mon, 2 Feb 2026 10:00:00 +0000\nSubject: with id\nMessage-ID: <p@test>\n\nbody\n"
            .to_vec(),
    ];
    set_maildrop(&server, &messages, "P7.imaptest");
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let config = plaintext_inbox_config(h, &server, &imapd, "keep = true");
    let bodies = || {
        let mut c = imapd.login();
        let back = c.fetch_all("INBOX");
        c.logout();
        back.into_iter().map(|f| f.body).collect::<Vec<_>>()
    };
    let exactly_once = |what: &str| {
        let back = bodies();
        for m in &messages {
            let n = back.iter().filter(|b| **b == crlf(m)).count();
            assert_eq!(n, 1, "{what}: {:?}", String::from_utf8_lossy(m));
        }
        assert_eq!(back.len(), messages.len(), "{what}");
    };
    let out = run_fetch(h, &config);
    assert!(out.status.success(), "{}\n{}", stderr(&out), imapd.log());
    exactly_once("after the first run");
    // The third message is gone from the mailbox (a run died before its APPEND landed).
    let gone = crlf(&messages[2]);
    let at = bodies().iter().position(|b| *b == gone).unwrap() + 1;
    let mut c = imapd.login();
    for cmd in [
        "SELECT INBOX".to_string(),
        format!("STORE {at} +FLAGS.SILENT (\\Deleted)"),
        "EXPUNGE".to_string(),
    ] {
        let a = c.command(&cmd);
        assert!(a.status.starts_with(" OK"), "{cmd}: {}", a.status);
    }
    c.logout();
    assert_eq!(bodies().len(), messages.len() - 1);
    // Every key pending, as a run killed between each APPEND and its record line leaves it.
    let record = h.join("state/pop3/imap-127.0.0.1-alice");
    let text = std::fs::read_to_string(&record).unwrap();
    assert_eq!(text.lines().count(), messages.len(), "{text}");
    let pending: String = text
        .lines()
        .map(|l| format!("P {} x\n", l.strip_prefix("D ").unwrap()))
        .collect();
    std::fs::write(&record, pending).unwrap();
    let out = run_fetch(h, &config);
    assert!(out.status.success(), "{}\n{}", stderr(&out), imapd.log());
    assert!(
        stdout(&out).contains(&format!("{} messages fetched", messages.len())),
        "{out:?}"
    );
    exactly_once("after the run that found them pending");
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(
        text.lines().count() == messages.len() && text.lines().all(|l| l.starts_with("D ")),
        "all delivered: {text}"
    );
    // And nothing more to do.
    let out = run_fetch(h, &config);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("0 messages fetched"), "{out:?}");
    exactly_once("after the last run");
}
