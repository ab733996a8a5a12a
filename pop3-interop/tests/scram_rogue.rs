//! SCRAM-SHA-256 is mutual authentication (RFC 5802 §5): the client logs in only once the
//! server has proved, with its server signature, that it knows the password. Checked on every
//! client adapter (pop3-tokio, pop3-blocking, pop3-futures on smol and on async-std) against a
//! rogue server written by hand (`std::net`) that runs a real SCRAM exchange up to the
//! server-final message and then cheats:
//!
//! - `+OK` without any server-final message;
//! - a server-final message whose signature `v=` is wrong (one bit flipped: a server that does
//!   not know the password cannot do better);
//! - a server-final `e=` error followed by `+OK` if the client answers;
//! - a server-final that is neither (`x=...`), and a challenge after a valid one.
//!
//! Each time `auth` fails with `Error::Protocol(ClientError::Sasl(..))` naming the reason, and
//! the client sends nothing more on that connection: not `*`, not `QUIT`, no other command (a
//! `STAT`, a `QUIT` or a second login the caller tries afterwards is refused locally). The
//! rogue server sees the client-final message, then only the connection closing.
//!
//! Why not even `QUIT`: the server has just failed to prove who it is, so it may be an
//! impostor; in AUTHORIZATION a `QUIT` commits nothing (RFC 1939 §6: no UPDATE state without a
//! login), so it has nothing to offer the client, and refusing everything after a failed
//! mutual authentication also rules out a second, weaker login (PLAIN, USER/PASS) that would
//! hand the password itself to that server. Closing the connection is the whole goodbye.
//!
//! A control run with the honest server-final logs in and gets `STAT` through, so the rogue
//! server is a faithful SCRAM server up to its cheat.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use pop3_interop::{AsyncStd, ClientKind, bounded, one_connection};
use pop3_proto::client::ClientError;
use pop3_proto::decode::{parse_command, parse_sasl_response};
use pop3_proto::sasl::{
    ClientCredentials, CredentialAnswer, CredentialRequest, ScramCredentials, ServerExchange,
    ServerParams, ServerStep,
};
use pop3_proto::{Command, Continuation, Encode, Mechanism, SaslResponse, Secret, Stat};
use pop3_tokio::client::{ClientOptions, Error, TlsMode};

/// How long one scenario may take, all waits included.
const SCENARIO_LIMIT: Duration = Duration::from_secs(60);
/// The timeout of every raw socket.
const IO_LIMIT: Duration = Duration::from_secs(10);

const USER: &str = "alice";
const PASSWORD: &str = "correct horse";

/// What the rogue server does in place of an honest server-final message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cheat {
    /// None: the honest server-final, then `+OK` (the control).
    Honest,
    /// `+OK` right after the client-final message.
    OkWithoutFinal,
    /// The server-final with its signature altered.
    WrongSignature,
    /// `e=invalid-proof` as the server-final challenge.
    ErrorFinal,
    /// A server-final without `v=` or `e=`.
    GarbageFinal,
    /// The honest server-final, then another challenge instead of `+OK`.
    ExtraChallenge,
}

/// What the rogue server saw after the client-final message, and whether it got that far.
#[derive(Debug)]
struct Seen {
    reached_final: bool,
    /// Every line the client sent after its client-final message, until it closed.
    after: Vec<String>,
}

fn challenge(data: &[u8]) -> Vec<u8> {
    Continuation(Secret::new(data.to_vec())).to_bytes()
}

/// The SCRAM server side of one connection, with `cheat`.
fn rogue(cheat: Cheat) -> (SocketAddr, JoinHandle<Seen>) {
    one_connection(IO_LIMIT, move |mut r, mut w| {
        let mut line = || {
            let mut l = String::new();
            match r.read_line(&mut l) {
                Ok(0) | Err(_) => None,
                Ok(_) => Some(l.trim_end_matches(['\r', '\n']).to_string()),
            }
        };
        let mut seen = Seen {
            reached_final: false,
            after: Vec::new(),
        };
        w.write_all(b"+OK rogue POP3 ready\r\n").expect("greeting");
        let mech = Mechanism::new("SCRAM-SHA-256").expect("mechanism");
        let mut exchange = ServerExchange::new(
            &mech,
            ServerParams::new(b"3rfcNHYJY1ZVvWVs7j".to_vec(), "localhost"),
        )
        .expect("server exchange");
        // Until AUTH: CAPA (and anything else) answered plainly.
        let ir = loop {
            let Some(cmd) = line() else { return seen };
            match parse_command(cmd.as_bytes()) {
                Ok(Command::Capa) => w
                    .write_all(b"+OK\r\nSASL SCRAM-SHA-256\r\nUSER\r\n.\r\n")
                    .expect("CAPA reply"),
                Ok(Command::Auth(Some(a))) if a.mechanism == mech => {
                    break a.initial_response.map(|d| d.expose_secret().clone());
                }
                _ => w.write_all(b"-ERR not here\r\n").expect("reply"),
            }
        };
        let mut step = exchange.start(ir.as_deref());
        if let ServerStep::Check(CredentialRequest::Scram { .. }) = step {
            let creds = ScramCredentials::derive_from_password(PASSWORD, b"rogue salt 16 b.", 4096)
                .expect("credentials");
            step = exchange.answer(CredentialAnswer::Scram(Some(creds)));
        }
        // The server-first message, and the client-final message in reply.
        let ServerStep::Challenge(server_first) = step else {
            panic!("no server-first: {step:?}")
        };
        w.write_all(&challenge(&server_first))
            .expect("server-first");
        let Some(client_final) = line() else {
            return seen;
        };
        let Ok(SaslResponse::Data(client_final)) = parse_sasl_response(client_final.as_bytes())
        else {
            panic!("no client-final: {client_final:?}")
        };
        let ServerStep::Challenge(server_final) = exchange.respond(client_final.expose_secret())
        else {
            panic!("the client's proof did not verify")
        };
        seen.reached_final = true;
        match cheat {
            Cheat::Honest | Cheat::ExtraChallenge => w
                .write_all(&challenge(&server_final))
                .expect("server-final"),
            Cheat::OkWithoutFinal => w.write_all(b"+OK logged in\r\n").expect("+OK"),
            Cheat::WrongSignature => {
                // `v=` + base64 of 32 octets: flip a bit of the first octet's base64 digit.
                let mut forged = server_final.clone();
                forged[2] = if forged[2] == b'A' { b'B' } else { b'A' };
                w.write_all(&challenge(&forged))
                    .expect("forged server-final")
            }
            Cheat::ErrorFinal => w
                .write_all(&challenge(b"e=invalid-proof"))
                .expect("e= server-final"),
            Cheat::GarbageFinal => w
                .write_all(&challenge(b"x=whatever"))
                .expect("garbage server-final"),
        }
        // Whatever the client sends now is recorded; a client that goes on is let in.
        while let Some(l) = line() {
            let reply: &[u8] = match (cheat, seen.after.len()) {
                (Cheat::ExtraChallenge, 0) => b"+ bW9yZQ==\r\n",
                (_, _) if l.starts_with("STAT") => b"+OK 0 0\r\n",
                (_, _) if l.starts_with("QUIT") => b"+OK bye\r\n",
                _ => b"+OK logged in\r\n",
            };
            seen.after.push(l);
            w.write_all(reply).expect("reply");
        }
        seen
    })
}

/// The results of `auth`, then `STAT`, then `QUIT` on one adapter.
type Results = (Result<(), Error>, Result<Stat, Error>, Result<(), Error>);

/// Connects on the adapter `kind`, logs in with SCRAM-SHA-256, then tries `STAT` and `QUIT`.
/// The client is dropped (the connection closed) before returning.
fn session(kind: ClientKind, addr: SocketAddr) -> Results {
    let a = addr.to_string();
    let mut o = ClientOptions::new(TlsMode::Plain);
    o.connect_timeout = IO_LIMIT;
    let creds = ClientCredentials::ScramSha256 {
        user: USER.into(),
        password: Secret::new(PASSWORD.into()),
    };
    macro_rules! run {
        ($c:ident, $aw:tt) => {{
            let auth = run!(@ $c.auth(creds), $aw);
            let stat = run!(@ $c.stat(), $aw);
            let quit = run!(@ $c.quit(), $aw);
            (auth, stat, quit)
        }};
        (@ $e:expr, sync) => { $e };
        (@ $e:expr, async) => { $e.await };
    }
    match kind {
        ClientKind::Tokio => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut c = pop3_tokio::client::Pop3Client::connect(&a, o)
                    .await
                    .expect("connect");
                run!(c, async)
            })
        }
        ClientKind::Blocking => {
            let mut c = pop3_blocking::client::Pop3Client::connect(&a, o).expect("connect");
            run!(c, sync)
        }
        ClientKind::Smol => smol::block_on(async {
            let mut c = pop3_futures::client::Pop3Client::<
                smol::net::TcpStream,
                pop3_futures::Smol,
            >::connect(&a, o)
            .await
            .expect("connect");
            run!(c, async)
        }),
        ClientKind::AsyncStd => async_std::task::block_on(async {
            let tcp = async_std::net::TcpStream::connect(&a)
                .await
                .expect("connect");
            tcp.set_nodelay(true).expect("nodelay");
            let mut c = pop3_futures::client::Pop3Client::connect_stream(tcp, o, AsyncStd)
                .await
                .expect("connect");
            run!(c, async)
        }),
    }
}

fn scenario(kind: ClientKind, cheat: Cheat) -> (Results, Seen) {
    bounded(&format!("{kind:?} {cheat:?}"), SCENARIO_LIMIT, move || {
        let (addr, server) = rogue(cheat);
        let results = session(kind, addr);
        (results, server.join().expect("the rogue server"))
    })
}

#[test]
fn the_honest_server_final_logs_in() {
    for kind in ClientKind::ALL {
        let ((auth, stat, quit), seen) = scenario(kind, Cheat::Honest);
        auth.unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert_eq!(stat.expect("STAT").count, 0, "{kind:?}");
        quit.expect("QUIT");
        assert!(seen.reached_final, "{kind:?}");
        // The empty answer to the server-final challenge, then the commands.
        assert_eq!(seen.after, ["", "STAT", "QUIT"], "{kind:?}");
    }
}

#[test]
fn a_server_that_does_not_prove_the_password_gets_nothing_more() {
    let cases = [
        (Cheat::OkWithoutFinal, "incomplete"),
        (Cheat::WrongSignature, "signature did not verify"),
        (Cheat::ErrorFinal, "invalid-proof"),
        (Cheat::GarbageFinal, "no verifier"),
        (Cheat::ExtraChallenge, "unexpected SASL challenge"),
    ];
    for (cheat, reason) in cases {
        for kind in ClientKind::ALL {
            let label = format!("{kind:?} {cheat:?}");
            let ((auth, stat, quit), seen) = scenario(kind, cheat);
            match &auth {
                Err(Error::Protocol(ClientError::Sasl(why))) => {
                    assert!(why.contains(reason), "{label}: {why}")
                }
                other => panic!("{label}: the client accepted or failed otherwise: {other:?}"),
            }
            // Later commands are refused by the client itself.
            assert!(
                matches!(stat, Err(Error::Protocol(ClientError::Closed))),
                "{label}: STAT {stat:?}"
            );
            assert!(
                matches!(quit, Err(Error::Protocol(ClientError::Closed))),
                "{label}: QUIT {quit:?}"
            );
            assert!(seen.reached_final, "{label}");
            let expected: &[&str] = if cheat == Cheat::ExtraChallenge {
                // Only the empty answer to the (valid) server-final, part of the exchange.
                &[""]
            } else {
                &[]
            };
            assert_eq!(seen.after, expected, "{label}: the client went on");
        }
    }
}
