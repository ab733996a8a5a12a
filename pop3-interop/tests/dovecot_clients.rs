//! Our client adapters (pop3-tokio, pop3-blocking, pop3-futures on smol and on async-std)
//! against a private Dovecot (Debian's dovecot-core and dovecot-pop3d) over plain text, STLS
//! and implicit TLS: USER/PASS, APOP and every SASL mechanism both sides have, LIST, UIDL,
//! every message retrieved byte-exactly, TOP, and DELE/RSET/QUIT as a second session sees
//! them.

use std::net::SocketAddr;
use std::sync::Arc;

use pop3_interop::{
    ClientKind, Dovecot, Login, Mode, Op, Tls, lf_to_crlf, offered_sasl, peer_available,
    run_client, stored_messages, top_of,
};
use pop3_proto::Secret;
use pop3_proto::sasl::ClientCredentials;

/// The mechanisms our client implements and the Dovecot configuration enables.
const MECHANISMS: [&str; 4] = ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"];

/// What Dovecot sends for a stored message: LF as CRLF, and a line end added to a last line
/// that has none (the terminating `.` must start a line).
fn on_wire(m: &[u8]) -> Vec<u8> {
    let mut v = lf_to_crlf(m);
    if !v.ends_with(b"\r\n") {
        v.extend_from_slice(b"\r\n");
    }
    v
}

fn login(which: &str) -> Login {
    let (user, pw) = ("alice".to_string(), Secret::new("pw".to_string()));
    match which {
        "USER" => Login::UserPass(user, "pw".into()),
        "APOP" => Login::Apop(user, "pw".into()),
        "PLAIN" => Login::Sasl(ClientCredentials::Plain {
            authzid: None,
            user,
            password: pw,
        }),
        "LOGIN" => Login::Sasl(ClientCredentials::Login { user, password: pw }),
        "CRAM-MD5" => Login::Sasl(ClientCredentials::CramMd5 { user, password: pw }),
        "SCRAM-SHA-256" => Login::Sasl(ClientCredentials::ScramSha256 { user, password: pw }),
        other => panic!("no login {other}"),
    }
}

fn addr(dovecot: &Dovecot, mode: Mode) -> SocketAddr {
    let port = if mode == Mode::Implicit {
        dovecot.tls_port
    } else {
        dovecot.port
    };
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn dovecot_offers_our_mechanisms_in_every_mode() {
    if !peer_available("dovecot") {
        return;
    }
    let tls = Tls::new();
    let dovecot = Dovecot::start(&stored_messages(), &tls);
    for mode in Mode::ALL {
        let offered = offered_sasl(mode, addr(&dovecot, mode), tls.client.clone())
            .unwrap_or_else(|e| panic!("{mode:?}: {e}\n{}", dovecot.log()));
        for m in MECHANISMS {
            assert!(
                offered.iter().any(|o| o == m),
                "{mode:?}: Dovecot offers {offered:?}, not {m}"
            );
        }
    }
}

#[test]
fn our_clients_read_dovecot_byte_exactly() {
    if !peer_available("dovecot") {
        return;
    }
    let tls = Tls::new();
    let stored = stored_messages();
    let dovecot = Dovecot::start(&stored, &tls);
    let wire: Vec<Arc<Vec<u8>>> = stored.iter().map(|m| Arc::new(on_wire(m))).collect();
    // STAT and LIST count the message itself, without the line end added for the
    // terminating dot (RFC 1939 §11: the size is the octets of the message).
    let sizes: Vec<u64> = stored.iter().map(|m| lf_to_crlf(m).len() as u64).collect();
    let logins = ["USER", "APOP"].into_iter().chain(MECHANISMS);
    let mut sessions = 0;
    for client in ClientKind::ALL {
        for mode in Mode::ALL {
            for (i, how) in logins.clone().enumerate() {
                let mut ops = vec![
                    Op::Stat(wire.len() as u64, sizes.iter().sum()),
                    Op::List(sizes.clone()),
                    Op::Uidl(dovecot.names.clone()),
                ];
                // Every message through the callback; the 2 MB one only in the first login
                // of each client and mode (it is the same code path every time), through the
                // writer as well.
                for (n, m) in wire.iter().enumerate() {
                    if m.len() < 100_000 || i == 0 {
                        ops.push(Op::Retr(n as u32 + 1, m.clone()));
                    }
                }
                if i == 0 {
                    ops.push(Op::RetrTo(5, wire[4].clone()));
                }
                // Pipelined (Dovecot advertises PIPELINING), once per client and mode.
                if i == 1 {
                    ops.push(Op::FetchMany(
                        (1..=wire.len() as u32).zip(wire.iter().cloned()).collect(),
                    ));
                }
                ops.extend([
                    Op::Top(1, 0, top_of(&wire[0], 0)),
                    Op::Top(1, 2, top_of(&wire[0], 2)),
                    Op::Top(3, 5, wire[2].to_vec()),
                    Op::Noop,
                    Op::Quit,
                ]);
                let label = format!("{client:?} client, {mode:?}, {how}");
                let stats = run_client(
                    client,
                    mode,
                    addr(&dovecot, mode),
                    tls.client.clone(),
                    login(how),
                    ops,
                )
                .unwrap_or_else(|e| panic!("{label}: {e}\nDovecot log:\n{}", dovecot.log()));
                assert!(
                    stats.largest_chunk <= 64 * 1024,
                    "{label}: a body chunk of {} octets",
                    stats.largest_chunk
                );
                sessions += 1;
            }
        }
    }
    assert_eq!(sessions, 4 * 3 * 6);
    assert_clean_log(&dovecot);
    // Nothing was deleted.
    assert_eq!(dovecot.message_files(), stored.len());
}

#[test]
fn dovecot_commits_our_deletions_only_on_quit() {
    if !peer_available("dovecot") {
        return;
    }
    let tls = Tls::new();
    let stored = stored_messages();
    let dovecot = Dovecot::start(&stored, &tls);
    let names = dovecot.names.clone();
    let uids = |keep: &[usize]| keep.iter().map(|&i| names[i].clone()).collect::<Vec<_>>();
    let run = |client, mode, ops: Vec<Op>| {
        run_client(
            client,
            mode,
            addr(&dovecot, mode),
            tls.client.clone(),
            login("USER"),
            ops,
        )
        .unwrap_or_else(|e| panic!("{client:?} {mode:?}: {e}\n{}", dovecot.log()))
    };
    // DELE without QUIT (the client is dropped): nothing is deleted.
    run(
        ClientKind::Smol,
        Mode::Implicit,
        vec![Op::Dele(1), Op::Dele(2)],
    );
    run(
        ClientKind::Tokio,
        Mode::StartTls,
        vec![Op::Uidl(uids(&[0, 1, 2, 3, 4])), Op::Quit],
    );
    // DELE, RSET, DELE, QUIT: only the second DELE counts.
    run(
        ClientKind::Blocking,
        Mode::StartTls,
        vec![Op::Dele(1), Op::Rset, Op::Dele(2), Op::Quit],
    );
    run(
        ClientKind::AsyncStd,
        Mode::Plain,
        vec![
            Op::Uidl(uids(&[0, 2, 3, 4])),
            Op::Retr(2, Arc::new(on_wire(&stored[2]))),
            Op::DeleteMany(vec![1, 4]),
            Op::Quit,
        ],
    );
    run(
        ClientKind::Tokio,
        Mode::Implicit,
        vec![
            Op::Uidl(uids(&[2, 3])),
            Op::Stat(
                2,
                (lf_to_crlf(&stored[2]).len() + lf_to_crlf(&stored[3]).len()) as u64,
            ),
            Op::Quit,
        ],
    );
    assert_eq!(dovecot.message_files(), 2);
    assert_clean_log(&dovecot);
}

/// Dovecot logged no error, warning or panic (such as a client that broke the protocol) and
/// every session it logged ended with the client's QUIT or disconnect.
fn assert_clean_log(dovecot: &Dovecot) {
    let log = dovecot.log();
    for bad in ["Error:", "Panic:", "Fatal:", "Warning:", "Too many invalid"] {
        // Dovecot warns at startup about the login directories of our private base_dir.
        let hits: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(bad) && !l.contains("Corrected permissions"))
            .collect();
        assert!(hits.is_empty(), "Dovecot logged {bad}\n{}", hits.join("\n"));
    }
}
