//! Our three client adapters against Dovecot (Debian's dovecot-core and dovecot-pop3d, a
//! private configuration in a temporary directory) over plain text, STLS and implicit TLS:
//! every message retrieved byte-exactly, with USER/PASS and SASL PLAIN, LOGIN, CRAM-MD5 and
//! SCRAM-SHA-256.

use std::sync::Arc;

use pop3_interop::{ClientKind, Dovecot, Login, Mode, Op, Tls, run_client, skip_without};
use pop3_proto::Secret;
use pop3_proto::sasl::ClientCredentials;

/// Messages as stored (LF line ends, as Dovecot writes them).
fn messages() -> Vec<Vec<u8>> {
    let mut big = b"Subject: big\nFrom: b@example.com\n\n".to_vec();
    for i in 0..40_000 {
        if i % 9 == 0 {
            big.extend_from_slice(b".");
        }
        big.extend_from_slice(format!("line {i} of the large message, é 8-bit text\n").as_bytes());
    }
    vec![
        b"Subject: first\nFrom: a@example.com\n\nhello\n.leading dot\n.\n..two\nend\n".to_vec(),
        b"Subject: second\n\nshort\n".to_vec(),
        big,
    ]
}

/// What Dovecot sends for a stored message: its LF line ends as CRLF.
fn on_wire(m: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(m.len() + m.len() / 20);
    for &b in m {
        if b == b'\n' {
            v.push(b'\r');
        }
        v.push(b);
    }
    v
}

fn creds(which: &str) -> Login {
    let user = || "alice".to_string();
    let password = || Secret::new("pw".to_string());
    match which {
        "USER" => Login::UserPass(user(), "pw".into()),
        "PLAIN" => Login::Sasl(ClientCredentials::Plain {
            authzid: None,
            user: user(),
            password: password(),
        }),
        "LOGIN" => Login::Sasl(ClientCredentials::Login {
            user: user(),
            password: password(),
        }),
        "CRAM-MD5" => Login::Sasl(ClientCredentials::CramMd5 {
            user: user(),
            password: password(),
        }),
        _ => Login::Sasl(ClientCredentials::ScramSha256 {
            user: user(),
            password: password(),
        }),
    }
}

#[test]
fn our_clients_against_dovecot() {
    if skip_without("dovecot") {
        return;
    }
    let tls = Tls::new();
    let stored = messages();
    let refs: Vec<&[u8]> = stored.iter().map(Vec::as_slice).collect();
    let dovecot = Dovecot::start(&refs, &tls);
    let wire: Vec<Arc<Vec<u8>>> = stored.iter().map(|m| Arc::new(on_wire(m))).collect();
    let sizes: Vec<u64> = wire.iter().map(|m| m.len() as u64).collect();
    let mut combos = 0;
    for client in [ClientKind::Tokio, ClientKind::Blocking, ClientKind::Smol] {
        for mode in [Mode::Plain, Mode::StartTls, Mode::Implicit] {
            for mech in ["USER", "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"] {
                let port = if mode == Mode::Implicit {
                    dovecot.tls_port
                } else {
                    dovecot.port
                };
                let addr = format!("127.0.0.1:{port}").parse().unwrap();
                let ops = vec![
                    Op::Stat(3, sizes.iter().sum()),
                    Op::List(sizes.clone()),
                    Op::Retr(1, wire[0].clone()),
                    Op::Retr(2, wire[1].clone()),
                    Op::Retr(3, wire[2].clone()),
                    Op::Top(
                        1,
                        1,
                        b"Subject: first\r\nFrom: a@example.com\r\n\r\nhello\r\n".to_vec(),
                    ),
                    Op::Noop,
                    Op::Quit,
                ];
                let label = format!("{client:?} {mode:?} {mech}");
                run_client(client, mode, addr, &tls, &creds(mech), &ops)
                    .unwrap_or_else(|e| panic!("{label}: {e}\n{}", dovecot.log()));
                combos += 1;
            }
        }
    }
    assert_eq!(combos, 45);
    // DELE then QUIT: a second session sees the deletion, and the file is gone.
    let addr = format!("127.0.0.1:{}", dovecot.tls_port).parse().unwrap();
    run_client(
        ClientKind::Tokio,
        Mode::Implicit,
        addr,
        &tls,
        &creds("PLAIN"),
        &[Op::Dele(2), Op::Quit],
    )
    .unwrap();
    run_client(
        ClientKind::Blocking,
        Mode::Implicit,
        addr,
        &tls,
        &creds("USER"),
        &[Op::List(vec![sizes[0], sizes[2]]), Op::Quit],
    )
    .unwrap();
    let left = std::fs::read_dir(dovecot.maildir().join("cur"))
        .unwrap()
        .count()
        + std::fs::read_dir(dovecot.maildir().join("new"))
            .unwrap()
            .count();
    assert_eq!(left, 2);
}
