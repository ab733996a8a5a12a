//! The session log of `pop3 serve`: one event per fact, with the stable messages and field
//! names of `pop3-cli/src/observe.rs`, in `--log-format text` and `json`, and never a secret.

mod support;

use support::{Client, MESSAGES, Options, PASSWORD, Server, USER, base64, served_size};

/// Passwords the failed logins send: none may reach the log.
const WRONG: &str = "hunter2-Wrong-Pass";
const WRONG_SASL: &str = "Another-Secret-pw";

/// What the scripted sessions did, to find their lines.
struct Script {
    /// The client port of the session that logged in and QUIT.
    good: u16,
    /// The client port of the session whose logins failed.
    bad: u16,
    top_octets: u64,
}

/// A login that works (USER/PASS), RETR 1, TOP 2 0, DELE 1 and 3, QUIT; then a session with
/// two failed logins (a wrong password, then an unknown user over AUTH PLAIN), QUIT.
fn script(server: &Server) -> Script {
    let mut c = server.connect();
    let good = c.port();
    assert!(c.user_pass(USER, PASSWORD).starts_with("+OK"));
    assert_eq!(c.multiline("RETR 1").len() as u64, served_size(MESSAGES[0]));
    let top = c.multiline("TOP 2 0");
    assert!(c.cmd("DELE 1").starts_with("+OK"));
    assert!(c.cmd("DELE 3").starts_with("+OK"));
    assert!(c.cmd("QUIT").starts_with("+OK"));

    let mut c = server.connect();
    let bad = c.port();
    assert!(c.user_pass(USER, WRONG).starts_with("-ERR"));
    assert!(c.auth_plain("nobody", WRONG_SASL).starts_with("-ERR"));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    Script {
        good,
        bad,
        top_octets: top.len() as u64,
    }
}

fn total_size() -> u64 {
    MESSAGES.iter().map(|m| served_size(m)).sum()
}

/// No password, nor the AUTH PLAIN credentials encoded, anywhere in the log.
fn assert_no_secret(log: &str) {
    for secret in [
        PASSWORD.to_string(),
        WRONG.to_string(),
        WRONG_SASL.to_string(),
        base64(format!("\0nobody\0{WRONG_SASL}").as_bytes()),
    ] {
        assert!(!log.contains(&secret), "{secret:?} in the log:\n{log}");
    }
}

/// The one line of `log` with `message` for the client on `port`.
fn line<'a>(log: &'a str, message: &str, port: u16) -> Vec<&'a str> {
    let tag = format!(" {message} remote_ip=127.0.0.1 remote_port={port} ");
    log.lines().filter(|l| l.contains(&tag)).collect()
}

/// The text of `line` after `from`, with the number after `auth_us=`/`duration_ms=` (which
/// vary) replaced by `N`.
fn fields(line: &str, from: &str) -> String {
    let rest = &line[line
        .find(from)
        .unwrap_or_else(|| panic!("{from:?} in {line}"))..];
    rest.split(' ')
        .map(|f| match f.split_once('=') {
            Some((k @ ("auth_us" | "duration_ms"), v)) => {
                assert!(v.parse::<u64>().is_ok(), "{line}");
                format!("{k}=N")
            }
            _ => f.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn text_log_lines_and_fields() {
    let server = Server::start(Options {
        tls: true,
        args: &["--log-level", "debug"],
        ..Options::default()
    });
    let s = script(&server);
    // Over TLS: implicit, and STLS (which `pop3 fetch` requires for pop3://).
    let tls_port = server.tls_port.unwrap();
    server.fetch(&format!("pop3s://{USER}@127.0.0.1:{tls_port}"));
    server.fetch(&format!("pop3://{USER}@127.0.0.1:{}", server.port));
    server.wait_for_lines("login succeeded", 3);
    // The test's readiness probes are sessions too (the one on the TLS port fails its
    // handshake).
    let log = server.wait_for_lines("session ended", 5);
    let port = server.port;

    let accepted = line(&log, "connection accepted", s.good);
    assert_eq!(accepted.len(), 1, "{log}");
    assert!(
        accepted[0].contains(" DEBUG connection accepted "),
        "{}",
        accepted[0]
    );
    assert_eq!(
        fields(accepted[0], "remote_ip="),
        format!(
            "remote_ip=127.0.0.1 remote_port={} local_ip=127.0.0.1 local_port={port} tls=false",
            s.good
        )
    );

    let ok = line(&log, "login succeeded", s.good);
    assert_eq!(ok.len(), 1, "{log}");
    assert!(ok[0].contains(" INFO login succeeded "), "{}", ok[0]);
    assert_eq!(
        fields(ok[0], "user="),
        format!("user=\"{USER}\" mechanism=USER tls=none auth_us=N")
    );

    let failed = line(&log, "login failed", s.bad);
    assert_eq!(failed.len(), 2, "{log}");
    assert!(
        failed.iter().all(|l| l.contains(" INFO login failed ")),
        "{log}"
    );
    assert_eq!(
        fields(failed[0], "remote_ip="),
        format!(
            "remote_ip=127.0.0.1 remote_port={} local_ip=127.0.0.1 local_port={port} user=\"{USER}\" mechanism=USER reason=credentials tls=none auth_us=N",
            s.bad
        )
    );
    // The unknown user is the same reason as the wrong password.
    assert_eq!(
        fields(failed[1], "user="),
        "user=\"nobody\" mechanism=PLAIN reason=credentials tls=none auth_us=N"
    );

    let sent = line(&log, "message sent", s.good);
    assert_eq!(sent.len(), 2, "{log}");
    assert!(sent[0].contains(" DEBUG "), "{}", sent[0]);
    assert_eq!(
        fields(sent[0], "command="),
        format!("command=retr octets={}", served_size(MESSAGES[0]))
    );
    assert_eq!(
        fields(sent[1], "command="),
        format!("command=top octets={}", s.top_octets)
    );

    let ended = line(&log, "session ended", s.good);
    assert_eq!(ended.len(), 1, "{log}");
    assert!(ended[0].contains(" INFO session ended "), "{}", ended[0]);
    assert_eq!(
        fields(ended[0], "user="),
        format!(
            "user=\"{USER}\" reason=quit tls=none duration_ms=N top=1 top_octets={} retr=1 retr_octets={} deleted=2 committed=2 messages=3 size={}",
            s.top_octets,
            served_size(MESSAGES[0]),
            total_size()
        )
    );
    let ended = line(&log, "session ended", s.bad);
    assert_eq!(ended.len(), 1, "{log}");
    assert_eq!(
        fields(ended[0], "user="),
        "user=\"\" reason=quit tls=none duration_ms=N top=0 top_octets=0 retr=0 retr_octets=0 deleted=0 committed=0 messages=0 size=0"
    );
    assert_eq!(line(&log, "connection closed", s.good).len(), 1, "{log}");

    // `pop3 fetch` over implicit TLS and over STLS: the version negotiated.
    let tls_logins: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" login succeeded ") && l.contains(" tls=TLSv1.3 "))
        .collect();
    assert_eq!(tls_logins.len(), 2, "{log}");
    assert!(
        tls_logins
            .iter()
            .any(|l| l.contains(&format!(" local_port={tls_port} "))),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(" stls done ") && l.contains(" tls=TLSv1.3")),
        "{log}"
    );
    assert_no_secret(&log);
}

/// The JSON object of the one line with `message` for the client on `port`: its `fields`
/// (and its level is `level`).
fn event(log: &str, level: &str, message: &str, port: u16) -> serde_json::Value {
    let found: Vec<serde_json::Value> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))
        })
        .filter(|v| v["fields"]["message"] == message && v["fields"]["remote_port"] == port)
        .collect();
    assert_eq!(found.len(), 1, "{message} for {port}:\n{log}");
    assert_eq!(found[0]["level"], level, "{}", found[0]);
    found[0]["fields"].clone()
}

#[test]
fn json_log_events_and_fields() {
    let server = Server::start(Options {
        args: &["--log-format", "json", "--log-level", "debug"],
        ..Options::default()
    });
    let s = script(&server);
    // The test's readiness probe is a session too.
    let log = server.wait_for_lines("\"session ended\"", 3);
    let port = server.port;

    let accepted = event(&log, "DEBUG", "connection accepted", s.good);
    assert_eq!(
        accepted,
        serde_json::json!({
            "message": "connection accepted",
            "remote_ip": "127.0.0.1",
            "remote_port": s.good,
            "local_ip": "127.0.0.1",
            "local_port": port,
            "tls": false,
        })
    );

    let mut ok = event(&log, "INFO", "login succeeded", s.good);
    assert!(ok["auth_us"].is_u64(), "{ok}");
    ok["auth_us"] = 0.into();
    assert_eq!(
        ok,
        serde_json::json!({
            "message": "login succeeded",
            "remote_ip": "127.0.0.1",
            "remote_port": s.good,
            "local_ip": "127.0.0.1",
            "local_port": port,
            "user": USER,
            "mechanism": "USER",
            "tls": "none",
            "auth_us": 0,
        })
    );

    let failed: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["fields"]["message"] == "login failed")
        .map(|v| v["fields"].clone())
        .collect();
    assert_eq!(failed.len(), 2, "{log}");
    for (f, (user, mechanism)) in failed.iter().zip([(USER, "USER"), ("nobody", "PLAIN")]) {
        assert_eq!(f["remote_ip"], "127.0.0.1", "{f}");
        assert_eq!(f["remote_port"], s.bad, "{f}");
        assert_eq!(f["user"], user, "{f}");
        assert_eq!(f["mechanism"], mechanism, "{f}");
        assert_eq!(f["reason"], "credentials", "{f}");
        assert!(f["auth_us"].is_u64(), "{f}");
    }

    let mut ended = event(&log, "INFO", "session ended", s.good);
    assert!(ended["duration_ms"].is_u64(), "{ended}");
    ended["duration_ms"] = 0.into();
    assert_eq!(
        ended,
        serde_json::json!({
            "message": "session ended",
            "remote_ip": "127.0.0.1",
            "remote_port": s.good,
            "local_ip": "127.0.0.1",
            "local_port": port,
            "user": USER,
            "reason": "quit",
            "tls": "none",
            "duration_ms": 0,
            "top": 1,
            "top_octets": s.top_octets,
            "retr": 1,
            "retr_octets": served_size(MESSAGES[0]),
            "deleted": 2,
            "committed": 2,
            "messages": 3,
            "size": total_size(),
        })
    );
    let ended = event(&log, "INFO", "session ended", s.bad);
    assert_eq!(ended["user"], "", "{ended}");
    assert_eq!(ended["reason"], "quit", "{ended}");
    assert_no_secret(&log);
}

/// A connection that breaks without QUIT ends as `drop`, and its marks are not committed.
#[test]
fn a_dropped_session_is_summarised_as_such() {
    let server = Server::start(Options::default());
    let mut c = Client::connect(server.port);
    let port = c.port();
    assert!(c.user_pass(USER, PASSWORD).starts_with("+OK"));
    assert!(c.cmd("DELE 2").starts_with("+OK"));
    drop(c);
    let log = server.wait_for_lines(&format!("remote_port={port} "), 2);
    let ended = server.wait_for_lines(" session ended ", 2);
    let ended = line(&ended, "session ended", port);
    assert_eq!(ended.len(), 1, "{log}");
    assert_eq!(
        fields(ended[0], "user="),
        format!(
            "user=\"{USER}\" reason=drop tls=none duration_ms=N top=0 top_octets=0 retr=0 retr_octets=0 deleted=1 committed=0 messages=3 size={}",
            total_size()
        )
    );
}
