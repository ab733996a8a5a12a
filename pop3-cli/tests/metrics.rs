//! `pop3 serve --metrics-listen`: a scripted session, then `GET /metrics` over HTTP, and the
//! counters moved as the session says.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use support::{MESSAGES, Options, PASSWORD, Server, USER, http_get, parse_metrics, served_size};

/// Scrapes until `done` says the metrics are complete (sessions end after their client has
/// its last reply), and gives them.
fn scrape_when(port: u16, done: impl Fn(&HashMap<String, f64>) -> bool) -> HashMap<String, f64> {
    let start = Instant::now();
    loop {
        let (status, _, body) = http_get(port, "/metrics");
        assert!(status.contains(" 200 "), "{status}");
        let m = parse_metrics(&body);
        if done(&m) {
            return m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the metrics never got there:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_scripted_session_moves_the_counters() {
    let server = Server::start(Options {
        tls: true,
        metrics: true,
        ..Options::default()
    });
    let metrics_port = server.metrics_port.unwrap();

    // Before anything: the endpoint answers, in the OpenMetrics text format.
    let (status, head, body) = http_get(metrics_port, "/metrics");
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains("# TYPE pop3_connections counter"), "{body}");
    let (status, _, _) = http_get(metrics_port, "/elsewhere");
    assert!(status.contains(" 404 "), "{status}");
    // The test's readiness probes connected to each port already: once their connections
    // are closed (their sessions ended before), the counts below are increments.
    let plain = format!("listener=\"127.0.0.1:{}\"", server.port);
    let tls = format!("listener=\"127.0.0.1:{}\"", server.tls_port.unwrap());
    let open = |l: &str| format!("pop3_connections_open{{{l}}}");
    let closed = |m: &HashMap<String, f64>| {
        m.get(&open(&plain)) == Some(&0.0) && m.get(&open(&tls)) == Some(&0.0)
    };
    let before = scrape_when(metrics_port, closed);

    // A session: a login, RETR, TOP, DELE, QUIT.
    let mut c = server.connect();
    assert!(c.user_pass(USER, PASSWORD).starts_with("+OK"));
    let body = c.multiline("RETR 1");
    assert_eq!(body.len() as u64, served_size(MESSAGES[0]));
    let top = c.multiline("TOP 2 0");
    assert!(top.starts_with(b"Subject: two\r\n"));
    assert!(c.cmd("DELE 1").starts_with("+OK"));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    // A failed login (AUTH PLAIN), then QUIT.
    let mut c = server.connect();
    assert!(c.auth_plain(USER, "wrong").starts_with("-ERR"));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    // A client that drops the connection after logging in.
    let mut c = server.connect();
    assert!(c.auth_plain(USER, PASSWORD).starts_with("+OK"));
    drop(c);
    // Not TLS on the implicit-TLS port: a failed handshake.
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", server.tls_port.unwrap())).unwrap();
    tcp.write_all(b"USER alice\r\n\r\n").unwrap();
    drop(tcp);

    let tls_failed = format!("pop3_tls_handshake_failures_total{{{tls},kind=\"protocol\"}}");
    let dropped = "pop3_sessions_total{reason=\"drop\"}";
    let grown = |m: &HashMap<String, f64>, k: &str| {
        m.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0)
    };
    let m = scrape_when(metrics_port, |m| {
        closed(m) && grown(m, &tls_failed) >= 1.0 && grown(m, dropped) >= 1.0
    });
    let get = |k: &str| {
        let now = m
            .get(k)
            .copied()
            .unwrap_or_else(|| panic!("no {k} in {m:#?}"));
        now - before.get(k).copied().unwrap_or(0.0)
    };

    assert_eq!(
        get("pop3_logins_total{mechanism=\"USER\",result=\"ok\"}"),
        1.0
    );
    assert_eq!(
        get("pop3_logins_total{mechanism=\"PLAIN\",result=\"ok\"}"),
        1.0
    );
    assert_eq!(
        get("pop3_logins_total{mechanism=\"PLAIN\",result=\"credentials\"}"),
        1.0
    );
    assert_eq!(get("pop3_auth_duration_seconds_count"), 3.0);
    assert_eq!(
        get("pop3_message_bytes_total{command=\"retr\"}"),
        served_size(MESSAGES[0]) as f64
    );
    assert_eq!(get("pop3_messages_sent_total{command=\"retr\"}"), 1.0);
    assert_eq!(
        get("pop3_message_bytes_total{command=\"top\"}"),
        top.len() as f64
    );
    assert_eq!(get("pop3_messages_sent_total{command=\"top\"}"), 1.0);
    assert_eq!(get("pop3_messages_deleted_total"), 1.0);
    assert_eq!(get("pop3_commit_failures_total"), 0.0);
    assert_eq!(get("pop3_sessions_total{reason=\"quit\"}"), 2.0);
    assert_eq!(get("pop3_sessions_total{reason=\"drop\"}"), 1.0);
    assert_eq!(get(&format!("pop3_connections_total{{{plain}}}")), 3.0);
    assert_eq!(m[&format!("pop3_connections_open{{{plain}}}")], 0.0);
    assert_eq!(get(&format!("pop3_connections_total{{{tls}}}")), 1.0);
    assert_eq!(m[&format!("pop3_connections_open{{{tls}}}")], 0.0);
    assert_eq!(get(&tls_failed), 1.0);
}
