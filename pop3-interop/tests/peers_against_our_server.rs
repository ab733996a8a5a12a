//! Real clients against our server adapters: curl (`pop3://` LIST, RETR, `-X UIDL`,
//! `-X 'TOP 1 0'`, `-X DELE`, SASL and APOP login options, `--ssl-reqd` for STLS, `pop3s://`)
//! and Python's poplib (USER/PASS, APOP, `stls()`, implicit TLS, CAPA, STAT, LIST, UIDL, TOP,
//! RETR, DELE, RSET, QUIT), all byte-exact, against every server adapter. Two of them serve a
//! Maildir with a passwd-file, the other two the in-memory store; the messages are the ones
//! Dovecot serves in `dovecot_clients.rs`, so the expectations are the same.
//!
//! The curl and poplib sessions run again (`postgres::*`) against every server adapter on a
//! `PgStore` (bodies in PostgreSQL) holding the same user and messages, with the same
//! assertions; only the unique ids differ (PostgreSQL assigns them at delivery). A fresh
//! database per test; without PostgreSQL those tests print SKIPPED and pass.

#[path = "../../pop3-store-postgres/tests/support/mod.rs"]
mod pg;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pop3_interop::{
    LIMIT, Mail, RunningServer, ServerKind, Storage, Tls, lf_to_crlf, peer_available, run_program,
    start_server, stored_messages, top_of, write_maildir,
};
use pop3_server_core::maildir::MaildirStore;
use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
use pop3_server_core::passwd::PasswdFile;
use pop3_server_core::session::{Backend, Policy};

/// What a POP3 client receives for a stored message: CRLF line ends, and a line end after a
/// last line that has none (the terminating dot must start a line).
fn on_wire(m: &[u8]) -> Vec<u8> {
    let mut v = lf_to_crlf(m);
    if !v.ends_with(b"\r\n") {
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// One server adapter with alice's maildrop (password `pw`), STLS and implicit TLS.
struct Fixture {
    server: RunningServer,
    dir: tempfile::TempDir,
    /// The stored messages (LF).
    stored: Vec<Vec<u8>>,
    /// Their UIDLs.
    uids: Vec<String>,
    /// The maildrop's UIDLs now (any backend).
    current: Box<dyn Fn() -> Vec<String>>,
}

impl Fixture {
    /// On `Storage::Memory`, the tokio and async-std servers serve a Maildir, the others the
    /// in-memory store; on `Storage::Postgres`, every one serves a PgStore.
    fn new(kind: ServerKind, tls: &Tls, storage: &Storage) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let stored = stored_messages();
        let mut policy = Policy::default();
        // curl's and poplib's USER/PASS before STLS, as on a loopback test setup.
        policy.rules.plaintext_auth = true;
        policy.rules.auth_failure_delay = Duration::from_millis(10);
        let mut uids = write_maildir(&dir.path().join("mail"), "alice", &stored);
        let (server, current): (_, Box<dyn Fn() -> Vec<String>>) = match (storage, kind) {
            // The same messages delivered (LF files, as an MDA would hand them over); the
            // unique ids are the ones PostgreSQL assigned.
            (Storage::Postgres(_), _) => {
                let messages: Vec<(&str, &str, &[u8])> = stored
                    .iter()
                    .zip(&uids)
                    .map(|(m, uid)| ("alice", uid.as_str(), m.as_slice()))
                    .collect();
                let mail = Mail::new(storage, &[("alice", "pw")], &messages);
                uids = mail.uids("alice");
                (
                    mail.start(kind, policy, tls),
                    Box::new(move || mail.current("alice")),
                )
            }
            // A Maildir of LF files and a Dovecot passwd-file, as Dovecot has them.
            (Storage::Memory, ServerKind::Tokio | ServerKind::AsyncStd) => {
                let auth = PasswdFile::parse("alice:{PLAIN}pw::::::\n").expect("passwd");
                let root = dir.path().join("mail");
                let backend = Backend::new(auth, MaildirStore::new(&root), policy);
                let mail = root.join("alice");
                (
                    start_server(kind, backend, tls),
                    Box::new(move || maildir_uids(&mail)),
                )
            }
            (Storage::Memory, ServerKind::Blocking | ServerKind::Smol) => {
                let store = MemoryStore::new();
                for (m, uid) in stored.iter().zip(&uids) {
                    store.add_message("alice", uid, &lf_to_crlf(m));
                }
                let backend = Backend::new(
                    MemoryAuthenticator::new().with_user("alice", "pw"),
                    store.clone(),
                    policy,
                );
                (
                    start_server(kind, backend, tls),
                    Box::new(move || store.uids("alice")),
                )
            }
        };
        std::fs::write(dir.path().join("ca.pem"), &tls.cert_pem).expect("ca");
        Fixture {
            server,
            dir,
            stored,
            uids,
            current,
        }
    }

    fn ca(&self) -> String {
        self.dir.path().join("ca.pem").display().to_string()
    }

    /// The LIST sizes: the message's octets with CRLF, without the added final line end.
    fn sizes(&self) -> Vec<usize> {
        self.stored.iter().map(|m| lf_to_crlf(m).len()).collect()
    }
}

/// The unique names in a Maildir (file names up to the `:` of the flags), sorted as
/// delivered (the names start with increasing timestamps).
fn maildir_uids(mail: &Path) -> Vec<String> {
    let mut v: Vec<String> = ["new", "cur"]
        .iter()
        .flat_map(|s| std::fs::read_dir(mail.join(s)).into_iter().flatten())
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.split(':').next().unwrap_or_default().to_string()
        })
        .collect();
    v.sort();
    v
}

fn curl(args: &[&str]) -> Vec<u8> {
    let out = run_program(
        Command::new("curl")
            .args(["-sS", "--max-time", "60"])
            .args(args),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "curl {args:?}: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn curl_against(kind: ServerKind, storage: Storage) {
    if !peer_available("curl") {
        return;
    }
    let tls = Tls::new();
    let f = Fixture::new(kind, &tls, &storage);
    let (p, t) = (f.server.plain.port(), f.server.tls.port());
    let plain = format!("pop3://127.0.0.1:{p}/");
    let wire: Vec<Vec<u8>> = f.stored.iter().map(|m| on_wire(m)).collect();
    let label = format!("curl x {kind:?} server on {storage}");
    // LIST, every RETR, UIDL and TOP in plain text.
    let list: String = f
        .sizes()
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{} {s}\r\n", i + 1))
        .collect();
    assert_eq!(
        String::from_utf8_lossy(&curl(&[&plain, "-u", "alice:pw"])),
        list,
        "{label}: LIST"
    );
    for (i, m) in wire.iter().enumerate() {
        let got = curl(&[&format!("{plain}{}", i + 1), "-u", "alice:pw"]);
        assert!(got == *m, "{label}: RETR {} differs", i + 1);
    }
    let uidl: String = f
        .uids
        .iter()
        .enumerate()
        .map(|(i, u)| format!("{} {u}\r\n", i + 1))
        .collect();
    assert_eq!(
        String::from_utf8_lossy(&curl(&[&plain, "-u", "alice:pw", "-X", "UIDL"])),
        uidl,
        "{label}: UIDL"
    );
    assert_eq!(
        curl(&[&plain, "-u", "alice:pw", "-X", "TOP 1 0"]),
        top_of(&wire[0], 0),
        "{label}: TOP 1 0"
    );
    // Each login curl can do: its SASL choices and APOP.
    for opt in [
        "AUTH=PLAIN",
        "AUTH=LOGIN",
        "AUTH=CRAM-MD5",
        "AUTH=+APOP",
        "AUTH=*",
    ] {
        let got = curl(&[
            &format!("{plain}2"),
            "-u",
            "alice:pw",
            "--login-options",
            opt,
        ]);
        assert!(got == wire[1], "{label}: RETR 2 after {opt}");
    }
    // A wrong password is refused (curl: 67, login denied).
    let out = run_program(
        Command::new("curl").args(["-sS", "--max-time", "60", &plain, "-u", "alice:nope"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(67), "{label}: wrong password");
    // STLS required (--ssl-reqd) and implicit TLS (pop3s), verifying our certificate.
    let ca = f.ca();
    let resolve_p = format!("localhost:{p}:127.0.0.1");
    let resolve_t = format!("localhost:{t}:127.0.0.1");
    let stls = curl(&[
        &format!("pop3://localhost:{p}/2"),
        "--ssl-reqd",
        "--cacert",
        &ca,
        "--resolve",
        &resolve_p,
        "-u",
        "alice:pw",
    ]);
    assert!(stls == wire[1], "{label}: RETR 2 after STLS");
    let pop3s = curl(&[
        &format!("pop3s://localhost:{t}/5"),
        "--cacert",
        &ca,
        "--resolve",
        &resolve_t,
        "-u",
        "alice:pw",
    ]);
    assert!(pop3s == wire[4], "{label}: RETR 5 (2 MB) over pop3s");
    // An untrusted certificate is refused.
    let out = run_program(
        Command::new("curl").args([
            "-sS",
            "--max-time",
            "60",
            &format!("pop3s://localhost:{t}/1"),
            "--resolve",
            &resolve_t,
            "-u",
            "alice:pw",
        ]),
        LIMIT,
    );
    assert!(!out.status.success(), "{label}: untrusted certificate");
    // DELE (with --no-body, as curl's manual says), then a new session lists one less.
    curl(&[&format!("{plain}1"), "-u", "alice:pw", "-X", "DELE", "-I"]);
    assert_eq!((f.current)(), f.uids[1..], "{label}: after DELE");
    let list: String = f.sizes()[1..]
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{} {s}\r\n", i + 1))
        .collect();
    assert_eq!(
        String::from_utf8_lossy(&curl(&[&plain, "-u", "alice:pw"])),
        list,
        "{label}: LIST after DELE"
    );
}

/// The poplib session: every result as JSON, bytes as latin-1 strings so 8-bit octets survive.
const POPLIB: &str = r#"
import json, poplib, ssl, sys
port, tls_port, cafile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = lambda b: b.decode("latin-1")
lines = lambda r: [s(l) for l in r[1]]
out = {}
ctx = ssl.create_default_context(cafile=cafile)
p = poplib.POP3("localhost", port, timeout=30)
out["welcome"] = s(p.getwelcome())
out["capa"] = sorted(p.capa().keys())
out["stls"] = s(p.stls(context=ctx))
out["capa_tls"] = sorted(p.capa().keys())
p.user("alice")
p.pass_("pw")
out["stat"] = list(p.stat())
out["list"] = lines(p.list())
out["uidl"] = lines(p.uidl())
out["top"] = lines(p.top(1, 0))
out["retr"] = [lines(p.retr(i + 1)) for i in range(out["stat"][0])]
p.dele(2)
out["list_after_dele"] = lines(p.list())
p.rset()
out["list_after_rset"] = lines(p.list())
p.dele(1)
out["quit"] = s(p.quit())
q = poplib.POP3("localhost", port, timeout=30)
q.apop("alice", "pw")
out["apop_uidl"] = lines(q.uidl())
try:
    q.retr(99)
    out["retr99"] = "ok"
except poplib.error_proto as e:
    out["retr99"] = s(e.args[0])
q.quit()
r = poplib.POP3_SSL("localhost", tls_port, context=ctx, timeout=30)
r.user("alice")
r.pass_("pw")
out["implicit_stat"] = list(r.stat())
r.quit()
print(json.dumps(out))
"#;

fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| char::from(c)).collect()
}

/// What poplib's `retr` returns for a message: its lines without CRLF, dot-unstuffed.
fn poplib_lines(wire: &[u8]) -> Vec<String> {
    let body = wire.strip_suffix(b"\r\n").unwrap_or(wire);
    body.split(|&b| b == b'\n')
        .map(|l| latin1(l.strip_suffix(b"\r").unwrap_or(l)))
        .collect()
}

fn poplib_against(kind: ServerKind, storage: Storage) {
    if !peer_available("python3") {
        return;
    }
    let tls = Tls::new();
    let f = Fixture::new(kind, &tls, &storage);
    let label = format!("poplib x {kind:?} server on {storage}");
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("session.py");
    std::fs::write(&script, POPLIB).expect("script");
    let out = run_program(
        Command::new("python3")
            .arg(&script)
            .arg(f.server.plain.port().to_string())
            .arg(f.server.tls.port().to_string())
            .arg(f.ca()),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "{label}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{label}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    let wire: Vec<Vec<u8>> = f.stored.iter().map(|m| on_wire(m)).collect();
    let sizes = f.sizes();
    let listing = |skip: Option<usize>| -> Vec<String> {
        sizes
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .map(|(i, s)| format!("{} {s}", i + 1))
            .collect()
    };
    let expect = |key: &str, want: serde_json::Value| {
        assert_eq!(v[key], want, "{label}: {key}");
    };
    let welcome = v["welcome"].as_str().unwrap_or_default();
    assert!(
        welcome.starts_with("+OK") && welcome.contains('<') && welcome.contains('>'),
        "{label}: greeting without an APOP timestamp: {welcome}"
    );
    let capa: Vec<String> = serde_json::from_value(v["capa"].clone()).expect("capa");
    for c in [
        "STLS",
        "TOP",
        "UIDL",
        "USER",
        "SASL",
        "PIPELINING",
        "RESP-CODES",
    ] {
        assert!(
            capa.iter().any(|x| x == c),
            "{label}: CAPA {capa:?} lacks {c}"
        );
    }
    let capa_tls: Vec<String> = serde_json::from_value(v["capa_tls"].clone()).expect("capa");
    assert!(
        !capa_tls.iter().any(|x| x == "STLS"),
        "{label}: STLS offered again after STLS: {capa_tls:?}"
    );
    assert!(v["stls"].as_str().unwrap_or_default().starts_with("+OK"));
    expect(
        "stat",
        serde_json::json!([wire.len(), sizes.iter().sum::<usize>()]),
    );
    expect("list", serde_json::json!(listing(None)));
    let uidl: Vec<String> = f
        .uids
        .iter()
        .enumerate()
        .map(|(i, u)| format!("{} {u}", i + 1))
        .collect();
    expect("uidl", serde_json::json!(uidl));
    expect("top", serde_json::json!(poplib_lines(&top_of(&wire[0], 0))));
    let retr: Vec<Vec<String>> = wire.iter().map(|m| poplib_lines(m)).collect();
    // Compare message by message: a whole-array diff of 2 MB is unreadable.
    for (i, want) in retr.iter().enumerate() {
        assert!(
            v["retr"][i] == serde_json::json!(want),
            "{label}: RETR {} differs",
            i + 1
        );
    }
    expect("list_after_dele", serde_json::json!(listing(Some(1))));
    expect("list_after_rset", serde_json::json!(listing(None)));
    assert!(v["quit"].as_str().unwrap_or_default().starts_with("+OK"));
    expect(
        "apop_uidl",
        serde_json::json!(
            uidl[1..]
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    // Renumbered after the deletion.
                    format!("{} {}", i + 1, l.split_once(' ').map_or("", |x| x.1))
                })
                .collect::<Vec<_>>()
        ),
    );
    assert!(
        v["retr99"].as_str().unwrap_or_default().starts_with("-ERR"),
        "{label}: RETR 99: {}",
        v["retr99"]
    );
    expect(
        "implicit_stat",
        serde_json::json!([wire.len() - 1, sizes[1..].iter().sum::<usize>()]),
    );
    assert_eq!((f.current)(), f.uids[1..], "{label}: after QUIT");
}

/// A fresh database for a `postgres::*` test; `None` (after a SKIPPED line) without PostgreSQL.
fn postgres() -> Option<Storage> {
    pg::database().map(Storage::Postgres)
}

/// Each test twice, with the same assertions: `NAME` on a Maildir or the in-memory store
/// (see [`Fixture::new`]) and `postgres::PG_NAME` on a PgStore (`$run(args..., storage)`).
macro_rules! on_both_stores {
    ($($name:ident, $pg_name:ident => $run:ident($($arg:expr),*);)*) => {
        $(
            #[test]
            fn $name() {
                $run($($arg,)* Storage::Memory);
            }
        )*
        mod postgres {
            use super::*;
            $(
                #[test]
                fn $pg_name() {
                    if let Some(storage) = postgres() {
                        $run($($arg,)* storage);
                    }
                }
            )*
        }
    };
}

on_both_stores! {
    curl_against_the_tokio_server_on_a_maildir, curl_against_the_tokio_server =>
        curl_against(ServerKind::Tokio);
    curl_against_the_blocking_server, curl_against_the_blocking_server =>
        curl_against(ServerKind::Blocking);
    curl_against_the_futures_server_on_smol, curl_against_the_futures_server_on_smol =>
        curl_against(ServerKind::Smol);
    curl_against_the_futures_server_on_async_std_on_a_maildir,
        curl_against_the_futures_server_on_async_std => curl_against(ServerKind::AsyncStd);
    poplib_against_the_tokio_server_on_a_maildir, poplib_against_the_tokio_server =>
        poplib_against(ServerKind::Tokio);
    poplib_against_the_blocking_server, poplib_against_the_blocking_server =>
        poplib_against(ServerKind::Blocking);
    poplib_against_the_futures_server_on_smol, poplib_against_the_futures_server_on_smol =>
        poplib_against(ServerKind::Smol);
    poplib_against_the_futures_server_on_async_std_on_a_maildir,
        poplib_against_the_futures_server_on_async_std => poplib_against(ServerKind::AsyncStd);
    passwords_need_stls_first_with_the_default_policy,
        passwords_need_stls_first_with_the_default_policy => passwords_need_stls_first();
}

/// With the default policy (no passwords in the clear without TLS), poplib and curl must
/// STLS first: before it USER/PASS and SASL PLAIN are refused, after it they work.
fn passwords_need_stls_first(storage: Storage) {
    if !peer_available("python3") || !peer_available("curl") {
        return;
    }
    let tls = Tls::new();
    let mail = Mail::new(
        &storage,
        &[("alice", "pw")],
        &[("alice", "u1", b"Subject: one\r\n\r\nbody\r\n")],
    );
    let mut policy = Policy::default();
    policy.rules.auth_failure_delay = Duration::from_millis(10);
    assert!(!policy.rules.plaintext_auth);
    let server = mail.start(ServerKind::Tokio, policy, &tls);
    let port = server.plain.port();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &tls.cert_pem).expect("ca");
    let script = dir.path().join("stls.py");
    std::fs::write(
        &script,
        r#"
import json, poplib, ssl, sys
out = {}
p = poplib.POP3("localhost", int(sys.argv[1]), timeout=30)
try:
    p.user("alice")
    p.pass_("pw")
    out["clear"] = "accepted"
except poplib.error_proto as e:
    out["clear"] = e.args[0].decode("latin-1")
p.quit()
p = poplib.POP3("localhost", int(sys.argv[1]), timeout=30)
p.stls(context=ssl.create_default_context(cafile=sys.argv[2]))
p.user("alice")
p.pass_("pw")
out["stat"] = list(p.stat())
p.quit()
print(json.dumps(out))
"#,
    )
    .expect("script");
    let out = run_program(
        Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(&ca),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "poplib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        v["clear"].as_str().unwrap_or_default().starts_with("-ERR"),
        "poplib: USER/PASS in the clear: {}",
        v["clear"]
    );
    assert_eq!(v["stat"], serde_json::json!([1, 22]), "poplib after STLS");
    // curl: SASL PLAIN in the clear is refused (67: login denied), after STLS it works.
    let url = format!("pop3://localhost:{port}/1");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let base = [
        "-sS",
        "--max-time",
        "60",
        "--resolve",
        &resolve,
        "-u",
        "alice:pw",
    ];
    let clear = run_program(
        Command::new("curl")
            .args(base)
            .args([&url, "--login-options", "AUTH=PLAIN"]),
        LIMIT,
    );
    assert_eq!(clear.status.code(), Some(67), "curl: PLAIN in the clear");
    let ca = ca.display().to_string();
    let body = curl(&[
        &url,
        "--ssl-reqd",
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
        "-u",
        "alice:pw",
        "--login-options",
        "AUTH=PLAIN",
    ]);
    assert_eq!(body, b"Subject: one\r\n\r\nbody\r\n");
}
