//! Hostile clients against the session, over in-memory bytes: memory stays bounded and
//! nothing panics, whatever arrives.

use std::time::{Duration, Instant};

use pop3_server_core::block_on;
use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
use pop3_server_core::session::{Backend, Connection, Policy, Session};

fn session() -> Session<MemoryAuthenticator, MemoryStore> {
    let store = MemoryStore::new();
    store.add_message("alice", "u1", b"Subject: x\r\n\r\nbody\r\n");
    let auth = MemoryAuthenticator::new().with_user("alice", "pw");
    let mut p = Policy::default();
    p.rules.plaintext_auth = true;
    p.rules.auth_failure_delay = Duration::ZERO;
    p.rules.max_consecutive_errors = u32::MAX;
    p.rules.high_water = 16 * 1024;
    Session::new(
        Backend::new(auth, store, p),
        &Connection::plain(false),
        Instant::now(),
    )
}

/// Feeds `chunks` like an adapter that reads only while the session wants input, and drains
/// the output only every `drain_every` rounds (0: never, a client that does not read).
/// Returns the largest input and output buffering seen.
fn feed(
    s: &mut Session<MemoryAuthenticator, MemoryStore>,
    chunks: impl Iterator<Item = Vec<u8>>,
    drain: bool,
) -> (usize, usize) {
    let now = Instant::now();
    let (mut max_in, mut max_out) = (0, 0);
    let mut out = Vec::new();
    for chunk in chunks {
        if !s.wants_input() {
            break;
        }
        s.handle_input(&chunk, now);
        block_on(s.process(now));
        max_in = max_in.max(s.server().buffered_input());
        max_out = max_out.max(s.server().pending_output());
        if drain {
            out.clear();
            s.poll_transmit(now, &mut out);
        }
    }
    (max_in, max_out)
}

#[test]
fn a_gigabyte_line_without_crlf_keeps_memory_bounded() {
    let mut s = session();
    let chunk = vec![b'A'; 64 * 1024];
    let (max_in, _) = feed(&mut s, std::iter::repeat_n(chunk, 16 * 1024), true);
    assert!(
        max_in <= 64 * 1024 + 4096,
        "held {max_in} octets of one line"
    );
    // The line ends; the session answers it and goes on.
    let now = Instant::now();
    s.handle_input(b"\r\nUSER alice\r\n", now);
    block_on(s.process(now));
    let mut out = Vec::new();
    s.poll_transmit(now, &mut out);
    assert!(String::from_utf8_lossy(&out).ends_with("-ERR Line too long\r\n+OK\r\n"));
}

#[test]
fn pipelined_commands_from_a_client_that_never_reads_keep_memory_bounded() {
    let mut s = session();
    let now = Instant::now();
    s.handle_input(b"USER alice\r\nPASS pw\r\n", now);
    block_on(s.process(now));
    let batch: Vec<u8> = b"RETR 1\r\nNOOP\r\nLIST\r\n".repeat(1000);
    // 100 000 commands offered; a client that never reads its replies.
    let (max_in, max_out) = feed(&mut s, std::iter::repeat_n(batch, 34), false);
    assert!(max_out <= 16 * 1024 + 1024, "output grew to {max_out}");
    assert!(max_in <= 4096 + 21 * 1000, "input grew to {max_in}");
    assert!(!s.wants_input(), "the session stops reading");
}

#[test]
fn nul_and_invalid_utf8_get_err_not_a_panic() {
    let mut s = session();
    let now = Instant::now();
    s.handle_input(
        b"US\0ER alice\r\n\xff\xfe\xfd\r\nUSER \xc3\x28\r\nPASS \0\r\nLIST \xff\r\n",
        now,
    );
    block_on(s.process(now));
    let mut out = Vec::new();
    s.poll_transmit(now, &mut out);
    let text = String::from_utf8_lossy(&out);
    // Every one of the five lines, USER with a name that is not UTF-8 included.
    assert_eq!(text.matches("-ERR").count(), 5, "{text}");
    assert!(!text.contains("\n+OK\r\n"), "{text}");
    assert!(!s.is_closed());
}
