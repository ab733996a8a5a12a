//! `pop3 fetch` SIGKILLed at random points while it delivers 100 messages through each
//! target that is not a local file (Maildir and mbox: `cli.rs`; IMAP: `fetch_imap.rs`): an
//! MDA (real procmail into a Maildir, and a shell script that syncs each file), Dovecot's
//! LMTP server and an SMTP server (Python's aiosmtpd). After the kills a run goes to the end,
//! then: every message is at the target, byte for byte, and none is lost; the POP3 server is
//! empty (nothing deleted that was not delivered, everything delivered deleted).
//!
//! Exactly once holds for every kill but one that lands in a window the fetch cannot close
//! alone, where the target has the message and the key is not yet recorded:
//!
//! - LMTP and SMTP (`target/forward.rs`, `Forward::deliver`): from the server's commit (on
//!   the final `.`; Dovecot writes and fsyncs the message, then answers `250`) through
//!   `session.run(..)` reading that answer to `self.record.add(..)`'s `sync_data`. A kill
//!   there leaves the message at the server and not in the record: the next run sends it
//!   again, and neither protocol lets a client ask whether an earlier session's message
//!   arrived.
//! - An MDA (`target/mda.rs`, `Mda::finish`): from its start (`spawn()`, on the whole
//!   message spooled to a file) through `child.wait()` to `self.record.add(..)`. The SIGKILL
//!   of `pop3 fetch` does not reach the MDA, which delivers anyway: the window is the MDA's
//!   whole run, so most kills land in it. (The MDA is told the key, `POP3_FETCH_KEY`, to drop
//!   such a duplicate itself.) A kill before it starts leaves nothing at the MDA: no cut copy
//!   (`mda_killed_mid_message_delivers_no_cut_copy`).
//!
//! One run hands one message at a time to the target, so a kill leaves at most one copy
//! more: that is asserted, and the copies more are counted and printed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

mod support;
use support::{Server, maildrop, run_fetch, set_maildrop, spawn_fetch, write_config};

#[path = "support/peers.rs"]
mod peers;
use peers::{Aiosmtpd, DovecotLmtp, forwarded_to_alice};

/// Messages per test.
const N: usize = 100;
/// Kills per test (the first while the run starts, the others while it delivers).
const KILLS: u64 = 6;

/// A small deterministic generator (SplitMix64), seeded per kill.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A duration from `lo` to `hi`.
    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_micros() as u64;
        lo + Duration::from_micros(self.next() % (span + 1))
    }
}

/// The test's messages (LF line ends, as a Maildir stores them), each with its own
/// `Message-ID: <i@domain>` and `Subject:`, of some 1 to 4 KB.
fn messages(domain: &str) -> Vec<Vec<u8>> {
    (0..N)
        .map(|i| {
            let mut m = format!(
                "Date: Mon, 2 Feb 2026 10:{:02}:00 +0000\nMessage-ID: <{i}@{domain}>\n\
                 Subject: message {i} of {domain}\n\n",
                i % 60
            )
            .into_bytes();
            for l in 0..(20 + 15 * (i % 5)) {
                m.extend_from_slice(
                    format!("message {i} line {l}: some text to deliver\n").as_bytes(),
                );
            }
            m
        })
        .collect()
}

/// `pop3 serve` (pop3s) with alice's maildrop holding `msgs`.
fn serve(msgs: &[Vec<u8>]) -> Server {
    let server = Server::start_tls();
    set_maildrop(&server, msgs, "P5.killtest");
    server
}

/// Messages left in alice's maildrop.
fn on_server(server: &Server) -> usize {
    on_server_ids(server).len()
}

/// The numbers of the messages left in alice's maildrop (file names `….M<i>P5.killtest`).
fn on_server_ids(server: &Server) -> HashSet<usize> {
    let md = maildrop(server);
    let mut ids = HashSet::new();
    for d in ["new", "cur"] {
        for e in std::fs::read_dir(md.join(d)).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            let i = name
                .split_once(".M")
                .and_then(|(_, rest)| rest.split_once("P5."))
                .and_then(|(i, _)| i.parse().ok())
                .unwrap_or_else(|| panic!("a file of no test message on the server: {name}"));
            ids.insert(i);
        }
    }
    ids
}

/// Where the messages went: each message found there (line ends made LF), as read back.
trait Place {
    /// Each message (its file name, its octets).
    fn messages(&self) -> Vec<(String, Vec<u8>)>;

    /// How many messages there are (a file still being written included), cheaply.
    fn count(&self) -> usize;
}

/// How many entries the directories hold.
fn entries(dirs: &[PathBuf]) -> usize {
    dirs.iter()
        .map(|d| std::fs::read_dir(d).map_or(0, Iterator::count))
        .sum()
}

/// What a target holds of the messages of one domain.
#[derive(Default)]
struct Copies {
    /// Whole copies, by message number.
    whole: HashMap<usize, usize>,
    /// Copies that are not byte for byte a message sent (cut by a kill), described.
    cut: Vec<String>,
}

/// The copies at `place` of the messages `want` with a Message-ID in `domain`; a message
/// without a Message-ID counts as cut.
fn copies(place: &dyn Place, domain: &str, want: &[Vec<u8>]) -> Copies {
    let mut got = Copies::default();
    for (name, m) in place.messages() {
        let text = String::from_utf8_lossy(&m).into_owned();
        let id = text
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix("Message-ID: <")?.strip_suffix('>'))
            .and_then(|id| id.split_once('@'))
            .and_then(|(i, d)| Some((i.parse::<usize>().ok()?, d)));
        match id {
            Some((_, d)) if d != domain => {}
            Some((i, _)) if want.get(i) == Some(&m) => *got.whole.entry(i).or_insert(0) += 1,
            _ => got.cut.push(format!(
                "{name}: {} octets, {:?}",
                m.len(),
                text.chars().take(120).collect::<String>()
            )),
        }
    }
    got
}

/// Runs the fetch of `target` to the end, retrying while the POP3 server still holds the
/// maildrop lock of a killed session; gives its stdout.
fn run_to_the_end(home: &Path, config: &Path, log: &mut Vec<String>) -> String {
    let start = Instant::now();
    loop {
        let t = Instant::now();
        let out = run_fetch(home, config);
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() {
            log.push(format!("run to the end: {:?}, {stdout}", t.elapsed()));
            return stdout;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        log.push(format!("a run failed ({}): {}", out.status, err.trim()));
        assert!(start.elapsed() < Duration::from_secs(20), "{log:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `place` holds `count` messages or `child` ended.
fn wait_for_count(place: &dyn Place, count: usize, child: &mut Child) {
    let start = Instant::now();
    while place.count() < count && child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(30), "the fetch hangs");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether a kill may leave a cut copy at the target.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// No: the target takes a message only once it has all of it (LMTP, SMTP: the final
    /// `.`).
    Never,
    /// Yes: a target that hands a message over as it arrives, where a SIGKILL of `pop3
    /// fetch` before the last octets ends the input early. No target does now (the MDA did,
    /// through a pipe, until `target/mda.rs` spooled the message before starting it:
    /// `mda_killed_mid_message_delivers_no_cut_copy`). Counted with the duplicates: a kill
    /// gives a cut copy or a duplicate, never both.
    Mda,
}

/// The test of one target: `target` the config lines, `place` what the target holds.
fn kill_and_finish(name: &str, seed: u64, target: &str, place: &dyn Place, cut: Cut) {
    // Calibration: an unkilled run of other messages (another server, another state),
    // timed to its first delivery and to its end.
    let cal_msgs = messages("calibrate.test");
    let cal = serve(&cal_msgs);
    let cal_home = tempfile::tempdir().unwrap();
    let cal_config = write_config(cal_home.path(), &cal, "kill", target);
    let t = Instant::now();
    let mut child = spawn_fetch(cal_home.path(), &cal_config);
    wait_for_count(place, place.count() + 1, &mut child);
    let first = t.elapsed();
    let status = child.wait().unwrap();
    let total = t.elapsed();
    assert!(status.success(), "{name}: the calibration run failed");
    let cal_copies = copies(place, "calibrate.test", &cal_msgs);
    assert!(
        cal_copies.whole.len() == N
            && cal_copies.whole.values().all(|&c| c == 1)
            && cal_copies.cut.is_empty(),
        "{name}: an unkilled run delivers each message exactly once: {:?}",
        cal_copies.cut
    );
    assert_eq!(on_server(&cal), 0);
    drop(cal);
    // An unkilled run spends `first` starting (TLS, login, UIDL) and `per_message`
    // delivering each message.
    let per_message = (total - first) / N as u32;

    let msgs = messages("kill.test");
    let server = serve(&msgs);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let config = write_config(h, &server, "kill", target);
    let mut log = vec![format!(
        "{name}: an unkilled run of {N}: first delivery after {first:?}, done after {total:?}"
    )];
    let mut landed = 0;
    for k in 0..KILLS {
        let mut rng = Rng(seed.wrapping_mul(1000).wrapping_add(k));
        let before = place.count();
        let t = Instant::now();
        let mut child = spawn_fetch(h, &config);
        // The first kill while the run starts; the others once it delivered from 1 to 12
        // messages, then at any point of the next two.
        if k == 0 {
            std::thread::sleep(rng.between(Duration::ZERO, first));
        } else {
            let n = 1 + rng.next() as usize % 12;
            wait_for_count(place, before + n, &mut child);
            std::thread::sleep(rng.between(Duration::ZERO, 2 * per_message));
        }
        let running = child.try_wait().unwrap().is_none();
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let at = t.elapsed();
        landed += u64::from(running);
        // Let an MDA the kill left running finish, and the POP3 server see the end of the
        // session (and release the maildrop).
        std::thread::sleep(Duration::from_millis(100));
        let now = place.count();
        log.push(format!(
            "kill {k} after {at:?} ({}): {} delivered, {now} at the target, {} on the POP3 \
             server",
            if running {
                "while running".to_string()
            } else {
                format!("had ended, {status}")
            },
            now - before,
            on_server(&server),
        ));
        // Nothing deleted that is not at the target.
        let left = on_server_ids(&server);
        let there = copies(place, "kill.test", &msgs).whole;
        let gone: Vec<usize> = (0..N)
            .filter(|i| !left.contains(i) && !there.contains_key(i))
            .collect();
        assert!(
            gone.is_empty(),
            "deleted, not delivered: {gone:?}\n{log:#?}"
        );
    }
    run_to_the_end(h, &config, &mut log);
    let got = copies(place, "kill.test", &msgs);
    let lost: Vec<usize> = (0..N).filter(|i| !got.whole.contains_key(i)).collect();
    let duplicates: usize = got.whole.values().map(|c| c - 1).sum();
    let mut more: Vec<usize> = got
        .whole
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(i, _)| *i)
        .collect();
    more.sort_unstable();
    log.push(format!(
        "{name}: {landed} kills landed; duplicates: {duplicates} (of messages {more:?}); cut copies: {:#?}",
        got.cut
    ));
    eprintln!("{log:#?}");
    assert!(lost.is_empty(), "lost: {lost:?}\n{log:#?}");
    assert!(landed >= 3, "the kills must land inside the runs: {log:#?}");
    assert!(
        cut == Cut::Mda || got.cut.is_empty(),
        "nothing cut: {log:#?}"
    );
    assert!(
        (duplicates + got.cut.len()) as u64 <= landed,
        "at most one copy more a kill: {log:#?}"
    );
    assert_eq!(
        on_server(&server),
        0,
        "the POP3 server is emptied: {log:#?}"
    );
    // A last run: nothing new, nothing more at the target.
    let out = run_fetch(h, &config);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 messages fetched"),
        "{out:?}"
    );
    let again = copies(place, "kill.test", &msgs);
    assert_eq!(again.whole, got.whole);
    assert_eq!(again.cut.len(), got.cut.len());
}

/// The files of directories, line ends made LF.
fn files_in(dirs: &[PathBuf]) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_file()
                && let Ok(data) = std::fs::read(&p)
            {
                v.push((p.display().to_string(), lf(&data)));
            }
        }
    }
    v
}

/// CRLF made LF.
fn lf(data: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(data)
        .replace("\r\n", "\n")
        .into_bytes()
}

/// A Maildir that procmail (or the script) writes into: its `new/` and `cur/`, or a plain
/// directory of files.
struct Dir(Vec<PathBuf>);

impl Place for Dir {
    fn messages(&self) -> Vec<(String, Vec<u8>)> {
        files_in(&self.0)
    }

    fn count(&self) -> usize {
        entries(&self.0)
    }
}

#[test]
fn mda_procmail_killed_runs_lose_nothing() {
    if !Path::new("/usr/bin/procmail").exists() {
        eprintln!("procmail is not installed: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("Maildir");
    let rc = dir.path().join("procmailrc");
    std::fs::write(
        &rc,
        format!(
            "DEFAULT={}/\nLOGFILE={}\n",
            md.display(),
            dir.path().join("procmail.log").display()
        ),
    )
    .unwrap();
    let place = Dir(vec![md.join("new"), md.join("cur")]);
    kill_and_finish(
        "procmail",
        1,
        &format!("mda = \"procmail -m {}\"", rc.display()),
        &place,
        Cut::Never,
    );
}

#[test]
fn mda_script_killed_runs_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // Each message in a file of its own, synced before the exit: the window between the
    // message written and the exit status read is the sync's.
    let script = format!(
        "f={}/$(date +%s%N).$$; cat > \"$f\" && sync \"$f\"",
        out.display()
    );
    kill_and_finish(
        "script",
        2,
        &format!("mda = {}", toml_string(&script)),
        &Dir(vec![out]),
        Cut::Never,
    );
}

/// A SIGKILL of `pop3 fetch` as soon as the MDA of a message of 1 MB started (the MDA waits a
/// second before it reads: fed through a pipe, most of the message would be unwritten): the
/// MDA, which the kill does not reach, must not deliver a cut message. It once did, fed
/// through a pipe as the message arrived: the kill closed the pipe early and the MDA took the
/// end of its input for the end of the message. Now `target/mda.rs` spools the message (LF
/// line ends) to an unlinked temporary file as it arrives and starts the MDA at
/// `Mda::finish` with that file as its standard input: the MDA seen starting has the whole
/// message, and a kill leaves at most a whole duplicate.
#[test]
fn mda_killed_mid_message_delivers_no_cut_copy() {
    let mut m = b"Message-ID: <0@cut.test>\nSubject: big\n\n".to_vec();
    let mut l = 0;
    while m.len() < 1 << 20 {
        m.extend_from_slice(
            format!("line {l} of a message that is much larger than a pipe\n").as_bytes(),
        );
        l += 1;
    }
    let msgs = vec![m];
    let server = serve(&msgs);
    let dir = tempfile::tempdir().unwrap();
    let (out, flags) = (dir.path().join("out"), dir.path().join("flags"));
    std::fs::create_dir(&out).unwrap();
    std::fs::create_dir(&flags).unwrap();
    let script = format!(
        "touch {1}/started; sleep 1; cat > {0}/$$ && sync {0}/$$; touch {1}/done.$$",
        out.display(),
        flags.display()
    );
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let config = write_config(
        h,
        &server,
        "kill",
        &format!("mda = {}", toml_string(&script)),
    );
    let mut child = spawn_fetch(h, &config);
    let start = Instant::now();
    while !flags.join("started").exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the fetch ended before the MDA started"
        );
        assert!(start.elapsed() < Duration::from_secs(20), "no MDA started");
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    // The MDA goes on: wait for it to end.
    while std::fs::read_dir(&flags).unwrap().count() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the MDA never ended"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut log = Vec::new();
    run_to_the_end(h, &config, &mut log);
    let place = Dir(vec![out]);
    let got = copies(&place, "cut.test", &msgs);
    assert!(
        got.cut.is_empty(),
        "a cut copy was delivered: {:?}",
        got.cut
    );
    assert!(matches!(got.whole.get(&0), Some(1 | 2)), "{log:?}");
    assert_eq!(on_server(&server), 0);
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// alice's Maildir at Dovecot: her messages, each without the three header fields Dovecot
/// puts first (`Return-Path:`, `Delivered-To:`, `Received:` and its continuation lines).
impl Place for DovecotLmtp {
    fn count(&self) -> usize {
        let md = self.maildir();
        entries(&[md.join("new"), md.join("cur")])
    }

    fn messages(&self) -> Vec<(String, Vec<u8>)> {
        let md = self.maildir();
        files_in(&[md.join("new"), md.join("cur")])
            .into_iter()
            .map(|(name, m)| (name, forwarded_to_alice(&m)))
            .collect()
    }
}

#[test]
fn lmtp_dovecot_killed_runs_lose_nothing() {
    let Some(dovecot) = DovecotLmtp::start() else {
        eprintln!("Dovecot's LMTP server (dovecot-lmtpd) is not installed: skipped");
        return;
    };
    let target = format!(
        "lmtp = \"lmtp://127.0.0.1:{}\"\nrecipient = \"alice@example.org\"",
        dovecot.port
    );
    kill_and_finish("lmtp", 3, &target, &dovecot, Cut::Never);
}

/// What aiosmtpd received: each message's data as it came.
impl Place for Aiosmtpd {
    fn count(&self) -> usize {
        self.message_files().len()
    }

    fn messages(&self) -> Vec<(String, Vec<u8>)> {
        self.message_files()
            .into_iter()
            .map(|p| (p.display().to_string(), lf(&std::fs::read(&p).unwrap())))
            .collect()
    }
}

#[test]
fn smtp_aiosmtpd_killed_runs_lose_nothing() {
    let Some(sink) = Aiosmtpd::start("plain") else {
        eprintln!("python3 with aiosmtpd is not installed: skipped");
        return;
    };
    let target = format!(
        "smtp = \"smtp://127.0.0.1:{}\"\nrecipient = \"alice@example.org\"",
        sink.port
    );
    kill_and_finish("smtp", 4, &target, &sink, Cut::Never);
}
