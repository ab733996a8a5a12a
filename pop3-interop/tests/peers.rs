//! Real clients against our server: curl (`pop3://`, `pop3s://`, `--ssl-reqd` for STLS; LIST,
//! RETR, custom `-X` commands) and Python's poplib (USER/PASS, APOP, `stls()`, CAPA, STAT,
//! LIST, UIDL, TOP, RETR, DELE, RSET, QUIT), all byte-exact.

use std::process::Command;
use std::time::Duration;

use pop3_interop::{ServerKind, Tls, python, skip_without, start_server};
use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
use pop3_server_core::session::{Backend, Policy};

const M1: &[u8] =
    b"Subject: one\r\nFrom: a@example.com\r\n\r\nhello\r\n.leading dot\r\n.\r\nend\r\n";
const M2: &[u8] = b"Subject: two\r\n\r\nsecond message\r\n";

fn store() -> MemoryStore {
    let s = MemoryStore::new();
    s.add_message("alice", "uid-one", M1);
    s.add_message("alice", "uid-two", M2);
    s
}

fn policy() -> Policy {
    let mut p = Policy::default();
    // curl's and poplib's USER/PASS without TLS, as on a loopback test setup.
    p.plaintext_auth = true;
    p.auth_failure_delay = Duration::from_millis(10);
    p
}

fn curl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn curl_against_our_server() {
    if skip_without("curl") {
        return;
    }
    let tls = Tls::new();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &tls.cert_pem).unwrap();
    let ca = ca.to_str().unwrap();
    let store = store();
    let backend = Backend::new(
        MemoryAuthenticator::new().with_user("alice", "pw"),
        store.clone(),
        policy(),
    );
    let server = start_server(ServerKind::Tokio, backend, &tls);
    let (p, t) = (server.plain.port(), server.tls.port());
    let plain = format!("pop3://127.0.0.1:{p}/");
    // LIST and RETR in plain text.
    let list = curl(&[&plain, "-u", "alice:pw"]);
    assert_eq!(
        list,
        format!("1 {}\r\n2 {}\r\n", M1.len(), M2.len()).as_bytes()
    );
    assert_eq!(curl(&[&format!("{plain}1"), "-u", "alice:pw"]), M1);
    // Custom commands.
    assert_eq!(
        curl(&[&plain, "-u", "alice:pw", "-X", "UIDL"]),
        b"1 uid-one\r\n2 uid-two\r\n"
    );
    assert_eq!(
        curl(&[&plain, "-u", "alice:pw", "-X", "TOP 1 0"]),
        b"Subject: one\r\nFrom: a@example.com\r\n\r\n"
    );
    // STLS required (--ssl-reqd) and implicit TLS (pop3s), verifying our certificate.
    let resolve_p = format!("localhost:{p}:127.0.0.1");
    let resolve_t = format!("localhost:{t}:127.0.0.1");
    let stls = curl(&[
        &format!("pop3://localhost:{p}/2"),
        "--ssl-reqd",
        "--cacert",
        ca,
        "--resolve",
        &resolve_p,
        "-u",
        "alice:pw",
    ]);
    assert_eq!(stls, M2);
    let pop3s = curl(&[
        &format!("pop3s://localhost:{t}/1"),
        "--cacert",
        ca,
        "--resolve",
        &resolve_t,
        "-u",
        "alice:pw",
    ]);
    assert_eq!(pop3s, M1);
    // DELE through curl: -X DELE with --no-body (-I), then the message is gone.
    curl(&[&format!("{plain}1"), "-u", "alice:pw", "-X", "DELE", "-I"]);
    assert_eq!(store.uids("alice"), ["uid-two"]);
}

#[test]
fn poplib_against_our_server() {
    if skip_without("python3") {
        return;
    }
    let tls = Tls::new();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &tls.cert_pem).unwrap();
    let store = store();
    let backend = Backend::new(
        MemoryAuthenticator::new().with_user("alice", "pw"),
        store.clone(),
        policy(),
    );
    let server = start_server(ServerKind::Blocking, backend, &tls);
    let script = format!(
        r#"
import json, poplib, ssl
port = {port}
out = {{}}
ctx = ssl.create_default_context(cafile={ca:?})
p = poplib.POP3("localhost", port, timeout=20)
out["welcome_has_timestamp"] = b"<" in p.getwelcome()
out["capa"] = sorted(p.capa().keys())
p.stls(context=ctx)
out["capa_tls"] = sorted(p.capa().keys())
p.user("alice")
p.pass_("pw")
out["stat"] = list(p.stat())
out["list"] = [l.decode() for l in p.list()[1]]
out["uidl"] = [l.decode() for l in p.uidl()[1]]
out["top"] = b"\r\n".join(p.top(1, 0)[1]).decode()
out["retr1"] = b"\r\n".join(p.retr(1)[1]).decode()
p.dele(2)
out["after_dele"] = [l.decode() for l in p.list()[1]]
p.rset()
p.dele(1)
out["quit"] = p.quit().decode()
q = poplib.POP3("localhost", port, timeout=20)
q.apop("alice", "pw")
out["apop_uidl"] = [l.decode() for l in q.uidl()[1]]
try:
    q.retr(5)
    out["retr5"] = "ok"
except poplib.error_proto as e:
    out["retr5"] = str(e)
q.quit()
print(json.dumps(out))
"#,
        port = server.plain.port(),
        ca = ca.to_str().unwrap(),
    );
    let out = python(&script);
    let expect = |key: &str, value: &str| {
        let needle = format!("\"{key}\": {value}");
        assert!(
            out.contains(&needle),
            "poplib {key}: want {needle} in {out}"
        );
    };
    expect("welcome_has_timestamp", "true");
    expect(
        "capa",
        r#"["AUTH-RESP-CODE", "PIPELINING", "RESP-CODES", "SASL", "STLS", "TOP", "UIDL", "USER"]"#,
    );
    expect(
        "capa_tls",
        r#"["AUTH-RESP-CODE", "PIPELINING", "RESP-CODES", "SASL", "TOP", "UIDL", "USER"]"#,
    );
    expect("stat", &format!("[2, {}]", M1.len() + M2.len()));
    expect("list", &format!(r#"["1 {}", "2 {}"]"#, M1.len(), M2.len()));
    expect("uidl", r#"["1 uid-one", "2 uid-two"]"#);
    expect("top", r#""Subject: one\r\nFrom: a@example.com\r\n""#);
    expect(
        "retr1",
        r#""Subject: one\r\nFrom: a@example.com\r\n\r\nhello\r\n.leading dot\r\n.\r\nend""#,
    );
    expect("after_dele", &format!(r#"["1 {}"]"#, M1.len()));
    expect("apop_uidl", r#"["1 uid-two"]"#);
    expect("retr5", r#""b'-ERR No such message'""#);
    assert_eq!(store.uids("alice"), ["uid-two"]);
}
