//! The events a session reports to its backend's observer (`pop3_server_core::observe`):
//! logins that succeed and fail (with the user as sent, the mechanism and the reason class,
//! never a secret), the bodies sent, and one summary per session with how it ended.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pop3_server_core::block_on;
use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
use pop3_server_core::observe::{EndReason, Event, FailureReason, Observer};
use pop3_server_core::session::{Backend, Connection, Policy, Session};

const M1: &[u8] = b"Subject: one\r\n\r\nbody one\r\n";
const M2: &[u8] = b"Subject: two\r\n\r\nbody two\r\nmore\r\n";

/// What an event said, owned, for the assertions.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Ok {
        user: String,
        mechanism: String,
    },
    Failed {
        user: String,
        mechanism: String,
        reason: FailureReason,
    },
    Sent {
        command: &'static str,
        octets: u64,
    },
    Ended {
        user: Option<String>,
        reason: EndReason,
        counts: [u64; 8],
    },
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Seen>>);

impl Observer for Recorder {
    fn event(&self, event: &Event<'_>) {
        let seen = match event {
            Event::LoginSucceeded(l) => Seen::Ok {
                user: l.user.into(),
                mechanism: l.mechanism.into(),
            },
            Event::LoginFailed(l) => Seen::Failed {
                user: l.user.into(),
                mechanism: l.mechanism.into(),
                reason: l.reason,
            },
            Event::MessageSent(m) => Seen::Sent {
                command: m.command.as_str(),
                octets: m.octets,
            },
            Event::SessionEnded(s) => Seen::Ended {
                user: s.user.map(Into::into),
                reason: s.reason,
                counts: [
                    s.top.into(),
                    s.top_octets,
                    s.retr.into(),
                    s.retr_octets,
                    s.deleted.into(),
                    s.committed.into(),
                    s.messages.into(),
                    s.size,
                ],
            },
            _ => return,
        };
        self.0.lock().unwrap().push(seen);
    }
}

fn setup(
    policy: impl FnOnce(&mut Policy),
) -> (
    Arc<Backend<MemoryAuthenticator, MemoryStore>>,
    Arc<Recorder>,
    MemoryStore,
) {
    let store = MemoryStore::new();
    store.add_message("alice", "u1", M1);
    store.add_message("alice", "u2", M2);
    let auth = MemoryAuthenticator::new().with_user("alice", "secret");
    let mut p = Policy::default();
    p.rules.plaintext_auth = true;
    p.rules.auth_failure_delay = Duration::ZERO;
    p.rules.max_auth_failures = 10;
    policy(&mut p);
    let recorder = Arc::new(Recorder::default());
    let backend = Backend::with_observer(auth, store.clone(), p, recorder.clone());
    (backend, recorder, store)
}

/// Feeds `input`, runs the session, gives its output.
fn run(s: &mut Session<MemoryAuthenticator, MemoryStore>, input: &str, now: Instant) -> String {
    s.handle_input(input.as_bytes(), now);
    let mut out = Vec::new();
    loop {
        block_on(s.process(now));
        let before = out.len();
        s.poll_transmit(now, &mut out);
        if out.len() == before && !s.is_streaming() {
            return String::from_utf8_lossy(&out).into_owned();
        }
    }
}

fn b64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                ABC[((n >> (18 - 6 * i)) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

fn failed(user: &str, mechanism: &str, reason: FailureReason) -> Seen {
    Seen::Failed {
        user: user.into(),
        mechanism: mechanism.into(),
        reason,
    }
}

#[test]
fn logins_bodies_and_the_summary() {
    let (backend, rec, store) = setup(|_| {});
    let now = Instant::now();
    let mut s = Session::new(backend, &Connection::plain(false), now);
    let plain_bad = b64(b"\0nobody\0hunter2");
    let out = run(
        &mut s,
        &format!(
            "USER alice\r\nPASS wrong\r\nUSER ghost\r\nPASS x\r\nAUTH PLAIN {plain_bad}\r\n\
             USER alice\r\nPASS secret\r\nRETR 1\r\nTOP 2 1\r\nDELE 1\r\nQUIT\r\n"
        ),
        now,
    );
    assert!(out.contains("+OK Bye, 1 messages deleted"), "{out}");
    drop(s);
    let seen = rec.0.lock().unwrap().clone();
    let top2 = b"Subject: two\r\n\r\nbody two\r\n".len() as u64;
    let size = (M1.len() + M2.len()) as u64;
    assert_eq!(
        seen,
        vec![
            // An unknown user and a wrong password: the same reason.
            failed("alice", "USER", FailureReason::Credentials),
            failed("ghost", "USER", FailureReason::Credentials),
            failed("nobody", "PLAIN", FailureReason::Credentials),
            Seen::Ok {
                user: "alice".into(),
                mechanism: "USER".into()
            },
            Seen::Sent {
                command: "retr",
                octets: M1.len() as u64
            },
            Seen::Sent {
                command: "top",
                octets: top2
            },
            Seen::Ended {
                user: Some("alice".into()),
                reason: EndReason::Quit,
                counts: [1, top2, 1, M1.len() as u64, 1, 1, 2, size],
            },
        ]
    );
    assert_eq!(store.message_count("alice"), 1);
    let all = format!("{seen:?}");
    assert!(!all.contains("hunter2") && !all.contains("secret") && !all.contains("wrong"));
}

#[test]
fn each_end_is_told() {
    let cases: [(&str, EndReason); 3] = [
        (
            "USER alice\r\nPASS secret\r\nDELE 1\r\n",
            EndReason::Dropped,
        ),
        ("QUIT\r\n", EndReason::Quit),
        ("USER alice\r\nPASS secret\r\n", EndReason::Autologout),
    ];
    for (input, reason) in cases {
        let (backend, rec, _) = setup(|_| {});
        let now = Instant::now();
        let mut s = Session::new(backend, &Connection::plain(false), now);
        run(&mut s, input, now);
        if reason == EndReason::Autologout {
            s.handle_timeout(now + Duration::from_secs(3600));
        }
        drop(s);
        let seen = rec.0.lock().unwrap().clone();
        let Some(Seen::Ended {
            reason: r, counts, ..
        }) = seen.last()
        else {
            panic!("{seen:?}")
        };
        assert_eq!(*r, reason, "{input:?}: {seen:?}");
        if reason == EndReason::Dropped {
            // Marked, never committed.
            assert_eq!(counts[4..6], [1, 0], "{seen:?}");
        }
    }
    // The server's stop.
    let (backend, rec, _) = setup(|_| {});
    let now = Instant::now();
    let mut s = Session::new(backend, &Connection::plain(false), now);
    s.shutdown();
    drop(s);
    assert!(matches!(
        rec.0.lock().unwrap().last(),
        Some(Seen::Ended {
            reason: EndReason::Shutdown,
            user: None,
            ..
        })
    ));
}

#[test]
fn a_failed_commit_and_the_refusals() {
    // A commit that fails.
    let (backend, rec, store) = setup(|_| {});
    store.fail_next_commit_after(0);
    let now = Instant::now();
    let mut s = Session::new(backend, &Connection::plain(false), now);
    let out = run(
        &mut s,
        "USER alice\r\nPASS secret\r\nDELE 1\r\nDELE 2\r\nQUIT\r\n",
        now,
    );
    assert!(out.contains("-ERR [SYS/TEMP]"), "{out}");
    drop(s);
    let seen = rec.0.lock().unwrap().clone();
    let Some(Seen::Ended { reason, counts, .. }) = seen.last() else {
        panic!("{seen:?}")
    };
    assert_eq!(*reason, EndReason::CommitFailed);
    assert_eq!(counts[4..6], [2, 0]);

    // LOGIN-DELAY: the second login is refused for it, not for its credentials.
    let (backend, rec, _) = setup(|p| p.login_delay = Some(3600));
    let now = Instant::now();
    for _ in 0..2 {
        let mut s = Session::new(backend.clone(), &Connection::plain(false), now);
        run(&mut s, "USER alice\r\nPASS secret\r\nQUIT\r\n", now);
    }
    let seen = rec.0.lock().unwrap().clone();
    assert!(
        seen.contains(&failed("alice", "USER", FailureReason::LoginDelay)),
        "{seen:?}"
    );
}

#[test]
fn a_sasl_failure_names_only_its_own_user() {
    let (backend, rec, _) = setup(|_| {});
    let now = Instant::now();
    let mut s = Session::new(backend, &Connection::plain(false), now);
    // A SCRAM exchange checks alice's credentials, then the client cancels it; the next
    // exchange breaks before naming anyone: its failure has no user, not alice.
    let first = b64(b"n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL");
    let out = run(&mut s, &format!("AUTH SCRAM-SHA-256 {first}\r\n"), now);
    assert!(out.ends_with("\r\n") && out.contains("\r\n+ "), "{out}");
    let out = run(&mut s, "*\r\nAUTH PLAIN\r\n!!!\r\n", now);
    assert!(out.contains("-ERR"), "{out}");
    let seen = rec.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![failed("", "PLAIN", FailureReason::Credentials)],
        "{out}"
    );
}
