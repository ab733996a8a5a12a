//! `contrib/fail2ban/pop3.conf` against logs that the real `pop3 serve` wrote, checked with
//! the real `fail2ban-regex` (Debian's `fail2ban`, installed by `.ci/install-peers.sh`):
//! every failed login matches, with the client's address, and nothing else does.

mod support;

use std::path::Path;
use std::process::Command;

use support::{Options, PASSWORD, Server, USER, base64};

const FILTER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/fail2ban/pop3.conf");

/// Whether `fail2ban-regex` runs here. Outside CI a machine without it skips these tests,
/// loudly; under CI (`CI` set) its absence fails them: CI must install it.
fn have_fail2ban() -> bool {
    let ok = Command::new("fail2ban-regex")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "fail2ban-regex is missing under CI: .ci/install-peers.sh installs it (Debian package fail2ban)"
        );
        eprintln!(
            "\n!!!!!!!! SKIPPED: fail2ban-regex is not installed (Debian package fail2ban; \
             .ci/install-peers.sh installs it): contrib/fail2ban/pop3.conf is NOT tested !!!!!!!!\n"
        );
    }
    ok
}

/// What `fail2ban-regex -v LOG FILTER` found: the lines matched, and the address of each
/// match.
struct Verdict {
    matched: usize,
    lines: usize,
    addresses: Vec<String>,
    output: String,
}

fn fail2ban_regex(log: &Path) -> Verdict {
    let out = Command::new("fail2ban-regex")
        .arg("-v")
        .arg(log)
        .arg(FILTER)
        .output()
        .unwrap();
    let output =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "fail2ban-regex failed:\n{output}");
    // "Lines: 13 lines, 0 ignored, 3 matched, 10 missed"
    let summary = output
        .lines()
        .find(|l| l.starts_with("Lines: "))
        .unwrap_or_else(|| panic!("no summary line:\n{output}"));
    let number_before = |word: &str| -> usize {
        let words: Vec<&str> = summary.split_whitespace().collect();
        let i = words
            .iter()
            .position(|w| w.trim_end_matches(',') == word)
            .unwrap_or_else(|| panic!("{word:?} in {summary:?}"));
        words[i - 1].parse().unwrap()
    };
    // Under the failregex, one "|      ADDRESS  DATE" line per match.
    let addresses = output
        .lines()
        .skip_while(|l| !l.starts_with("Failregex:"))
        .take_while(|l| !l.starts_with("Ignoreregex:"))
        .filter_map(|l| l.strip_prefix("|      "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    Verdict {
        matched: number_before("matched"),
        lines: number_before("lines"),
        addresses,
        output,
    }
}

/// Logs in and out: a session that must not match.
fn good_login(server: &Server, sasl: bool) {
    let mut c = server.connect();
    let reply = if sasl {
        c.auth_plain(USER, PASSWORD)
    } else {
        c.user_pass(USER, PASSWORD)
    };
    assert!(reply.starts_with("+OK"), "{reply}");
    assert!(c.cmd("QUIT").starts_with("+OK"));
}

#[test]
fn every_failed_login_matches_and_no_successful_one_does() {
    if !have_fail2ban() {
        return;
    }
    let server = Server::start(Options::default());
    good_login(&server, false);
    // Each failure is answered after the server's delay: all at once, one connection each.
    type Attempt = fn(&mut support::Client) -> Vec<String>;
    let attempts: Vec<(&str, Attempt)> = vec![
        ("USER/PASS, unknown user", |c| {
            vec![c.user_pass("nobody", "x")]
        }),
        ("USER/PASS, wrong password", |c| {
            vec![c.user_pass(USER, "wrong")]
        }),
        ("AUTH PLAIN, unknown user", |c| {
            vec![c.auth_plain("nobody", "x")]
        }),
        ("AUTH PLAIN, wrong password", |c| {
            vec![c.auth_plain(USER, "wrong")]
        }),
        ("APOP, wrong digest", |c| {
            vec![c.cmd(&format!("APOP {USER} 0123456789abcdef0123456789abcdef"))]
        }),
        ("AUTH PLAIN in two steps, wrong password", |c| {
            let go = c.cmd("AUTH PLAIN");
            assert!(go.starts_with('+'), "{go}");
            vec![c.cmd(&base64(format!("\0{USER}\0wrong").as_bytes()))]
        }),
        // A name that tries to put another address and reason on the line: it is logged
        // quoted, after the client's real address, which is what the filter takes.
        ("AUTH PLAIN, a forging user name", |c| {
            vec![c.auth_plain("x\" remote_ip=10.9.8.7 reason=credentials", "x")]
        }),
        ("two wrong passwords on one connection", |c| {
            vec![c.user_pass(USER, "wrong1"), c.user_pass(USER, "wrong2")]
        }),
    ];
    let expected: usize = 9;
    let threads: Vec<_> = attempts
        .into_iter()
        .map(|(what, attempt)| {
            let port = server.port;
            std::thread::spawn(move || {
                let mut c = support::Client::connect(port);
                for reply in attempt(&mut c) {
                    assert!(reply.starts_with("-ERR"), "{what}: {reply}");
                }
                assert!(c.cmd("QUIT").starts_with("+OK"), "{what}");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    good_login(&server, true);
    server.wait_for_lines("login succeeded", 2);
    let log = server.wait_for_lines("session ended", 10);
    let failures = log
        .lines()
        .filter(|l| l.contains("login failed") && l.contains("reason=credentials"))
        .count();
    assert_eq!(failures, expected, "{log}");

    let verdict = fail2ban_regex(&server.log_path());
    assert_eq!(
        verdict.matched, expected,
        "every failed login, and nothing else:\n{}\n--- log:\n{log}",
        verdict.output
    );
    assert!(verdict.lines >= log.lines().count(), "{}", verdict.output);
    assert_eq!(verdict.addresses.len(), expected, "{}", verdict.output);
    assert!(
        verdict.addresses.iter().all(|a| a == "127.0.0.1"),
        "only the client's real address: {:?}\n{}",
        verdict.addresses,
        verdict.output
    );
}

#[test]
fn a_log_of_successful_logins_matches_nothing() {
    if !have_fail2ban() {
        return;
    }
    // LOGIN-DELAY refuses the second login of the user: refused, but not for its
    // credentials, so it must not count against the client either.
    let server = Server::start(Options {
        args: &["--login-delay", "3600"],
        ..Options::default()
    });
    good_login(&server, false);
    let mut c = server.connect();
    let refused = c.auth_plain(USER, PASSWORD);
    assert!(refused.starts_with("-ERR [LOGIN-DELAY]"), "{refused}");
    assert!(c.cmd("QUIT").starts_with("+OK"));
    let log = server.wait_for_lines("session ended", 2);
    assert_eq!(log.matches("login succeeded").count(), 1, "{log}");
    assert_eq!(log.matches("reason=login_delay").count(), 1, "{log}");

    let verdict = fail2ban_regex(&server.log_path());
    assert_eq!(verdict.matched, 0, "{}\n--- log:\n{log}", verdict.output);
    assert!(verdict.lines >= 6, "{}", verdict.output);
}
