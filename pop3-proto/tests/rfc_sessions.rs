//! The example sessions of RFC 1939, RFC 2449, RFC 5034 and RFC 2595, replayed against the
//! machines: the client must send exactly the RFC's client lines when fed the RFC's server
//! lines, and the server must answer the RFC's client lines in the RFC's shape.

use std::time::{Duration, Instant};

use pop3_proto::client::{Client, ClientConfig, ClientState, Event};
use pop3_proto::sasl::{ClientCredentials, CredentialAnswer, CredentialRequest};
use pop3_proto::server::{LoginRequest, Server, ServerConfig, ServerEvent, ServerState};
use pop3_proto::*;

fn drain(client: &mut Client) -> Vec<String> {
    let mut v = Vec::new();
    while let Some(ev) = client.poll_event() {
        v.push(match ev {
            Event::BodyChunk { bytes, .. } => format!("Body({})", String::from_utf8_lossy(bytes)),
            other => format!("{other:?}"),
        });
    }
    v
}

fn sent(client: &mut Client, now: Instant) -> String {
    let mut out = Vec::new();
    client.poll_transmit(now, &mut out);
    String::from_utf8(out).unwrap()
}

const MSG1: &str = "Subject: one\r\n\r\nfirst\r\n";
const MSG2: &str = "Subject: two\r\n\r\nsecond\r\n";

/// RFC 1939 §10, the example POP3 session, from the client's side.
#[test]
fn rfc1939_example_session_client() {
    let now = Instant::now();
    let mut c = Client::new(ClientConfig::default(), now);
    c.handle_input(
        b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n",
        now,
    );
    drain(&mut c);
    c.apop(Atom::new("mrose").unwrap(), b"tanstaaf").unwrap();
    assert_eq!(
        sent(&mut c, now),
        "APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"
    );
    c.handle_input(b"+OK mrose's maildrop has 2 messages (320 octets)\r\n", now);
    drain(&mut c);
    assert_eq!(c.state(), ClientState::Transaction);

    c.stat().unwrap();
    assert_eq!(sent(&mut c, now), "STAT\r\n");
    c.handle_input(b"+OK 2 320\r\n", now);
    let ev = drain(&mut c);
    assert!(ev[1].contains("Stat { count: 2, size: 320 }"), "{ev:?}");

    c.list(None).unwrap();
    assert_eq!(sent(&mut c, now), "LIST\r\n");
    c.handle_input(
        b"+OK 2 messages (320 octets)\r\n1 120\r\n2 200\r\n.\r\n",
        now,
    );
    let ev = drain(&mut c);
    assert!(
        ev[1].contains("ScanListing { msg: MsgNum(1), size: 120 }"),
        "{ev:?}"
    );
    assert!(
        ev[2].contains("ScanListing { msg: MsgNum(2), size: 200 }"),
        "{ev:?}"
    );
    assert!(ev[3].starts_with("Done"), "{ev:?}");

    for (n, msg) in [(1, MSG1), (2, MSG2)] {
        c.retr(MsgNum::new(n).unwrap()).unwrap();
        assert_eq!(sent(&mut c, now), format!("RETR {n}\r\n"));
        c.handle_input(
            format!("+OK {} octets\r\n{msg}.\r\n", msg.len()).as_bytes(),
            now,
        );
        let ev = drain(&mut c);
        assert_eq!(ev[1], format!("Body({msg})"));
        c.dele(MsgNum::new(n).unwrap()).unwrap();
        assert_eq!(sent(&mut c, now), format!("DELE {n}\r\n"));
        c.handle_input(format!("+OK message {n} deleted\r\n").as_bytes(), now);
        drain(&mut c);
    }
    c.quit().unwrap();
    assert_eq!(sent(&mut c, now), "QUIT\r\n");
    assert_eq!(c.state(), ClientState::Update);
    c.handle_input(
        b"+OK dewey POP3 server signing off (maildrop empty)\r\n",
        now,
    );
    let ev = drain(&mut c);
    assert_eq!(ev.last().unwrap(), "Closed { error: None }");
}

/// RFC 1939 §10 from the server's side: the same client lines get replies of the RFC's shape.
#[test]
fn rfc1939_example_session_server() {
    let now = Instant::now();
    let mut config = ServerConfig::default();
    config.apop_timestamp = Some(Timestamp::new("<1896.697170952@dbc.mtview.ca.us>").unwrap());
    let mut s = Server::new(config, now);
    let mut out = Vec::new();
    s.poll_transmit(now, &mut out);
    assert_eq!(
        out,
        b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
    );
    s.handle_input(b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n", now);
    match s.poll_event() {
        Some(ServerEvent::Login(LoginRequest::Apop {
            timestamp, digest, ..
        })) => {
            assert!(sasl::verify_apop(
                &timestamp,
                b"tanstaaf",
                digest.expose_secret()
            ));
            s.accept_login().unwrap();
        }
        other => panic!("{other:?}"),
    }
    s.handle_input(b"STAT\r\nLIST\r\nRETR 1\r\nDELE 1\r\nQUIT\r\n", now);
    use pop3_proto::server::Request;
    let mut deleted = false;
    while let Some(ev) = s.poll_event() {
        match ev {
            ServerEvent::Request(Request::Stat) => s
                .reply_stat(Stat {
                    count: 2,
                    size: 320,
                })
                .unwrap(),
            ServerEvent::Request(Request::List(None)) => {
                s.begin_multiline("2 messages (320 octets)").unwrap();
                for (n, size) in [(1, 120), (2, 200)] {
                    s.write_scan(ScanListing {
                        msg: MsgNum::new(n).unwrap(),
                        size,
                    })
                    .unwrap();
                }
                s.end_multiline().unwrap();
            }
            ServerEvent::Request(Request::Retr(_)) => {
                s.begin_multiline("120 octets").unwrap();
                assert_eq!(s.write_body(MSG1.as_bytes()).unwrap(), MSG1.len());
                s.end_multiline().unwrap();
            }
            ServerEvent::Request(Request::Dele(_)) => {
                deleted = true;
                s.reply(StatusLine::ok("message 1 deleted").unwrap())
                    .unwrap();
            }
            ServerEvent::Request(Request::Quit) => {
                assert!(deleted);
                s.reply(StatusLine::ok("dewey POP3 server signing off").unwrap())
                    .unwrap();
            }
            _ => {}
        }
    }
    out.clear();
    s.poll_transmit(now, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            "+OK Logged in.\r\n+OK 2 320\r\n+OK 2 messages (320 octets)\r\n1 120\r\n2 200\r\n.\r\n\
             +OK 120 octets\r\n{MSG1}.\r\n+OK message 1 deleted\r\n+OK dewey POP3 server signing off\r\n"
        )
    );
    assert!(s.is_closed());
}

/// RFC 1939 §7: USER/PASS, and TOP and UIDL examples.
#[test]
fn rfc1939_user_pass_top_uidl_client() {
    let now = Instant::now();
    let mut c = Client::new(ClientConfig::default(), now);
    c.handle_input(b"+OK POP3 server ready\r\n", now);
    drain(&mut c);
    c.user(Atom::new("frated").unwrap()).unwrap();
    assert_eq!(sent(&mut c, now), "USER frated\r\n");
    c.handle_input(b"-ERR sorry, no mailbox for frated here\r\n", now);
    let ev = drain(&mut c);
    assert!(ev[0].starts_with("Err"), "{ev:?}");
    c.user(Atom::new("mrose").unwrap()).unwrap();
    sent(&mut c, now);
    c.handle_input(b"+OK mrose is a real hoopy frood\r\n", now);
    drain(&mut c);
    c.pass(Secret::new(Text::new("secret").unwrap())).unwrap();
    assert_eq!(sent(&mut c, now), "PASS secret\r\n");
    c.handle_input(b"+OK mrose's maildrop has 2 messages (320 octets)\r\n", now);
    drain(&mut c);
    c.top(MsgNum::new(1).unwrap(), 10).unwrap();
    assert_eq!(sent(&mut c, now), "TOP 1 10\r\n");
    c.handle_input(b"+OK\r\nSubject: x\r\n\r\nbody\r\n.\r\n", now);
    let ev = drain(&mut c);
    assert_eq!(ev[1], "Body(Subject: x\r\n\r\nbody\r\n)");
    c.top(MsgNum::new(100).unwrap(), 3).unwrap();
    sent(&mut c, now);
    c.handle_input(b"-ERR no such message\r\n", now);
    assert!(drain(&mut c)[0].starts_with("Err"));
    c.uidl(None).unwrap();
    assert_eq!(sent(&mut c, now), "UIDL\r\n");
    c.handle_input(
        b"+OK\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n.\r\n",
        now,
    );
    let ev = drain(&mut c);
    assert!(ev[1].contains("whqtswO00WBw418f9t5JxYwZ"), "{ev:?}");
    assert!(ev[2].contains("QhdPYR:00WBw1Ph7x7"), "{ev:?}");
    c.uidl(Some(MsgNum::new(2).unwrap())).unwrap();
    assert_eq!(sent(&mut c, now), "UIDL 2\r\n");
    c.handle_input(b"+OK 2 QhdPYR:00WBw1Ph7x7\r\n", now);
    let ev = drain(&mut c);
    assert!(
        ev[1].contains("UidlItem") && ev[1].contains("MsgNum(2)"),
        "{ev:?}"
    );
}

/// RFC 2449 §5: the CAPA example.
#[test]
fn rfc2449_capa_example() {
    let now = Instant::now();
    let mut c = Client::new(ClientConfig::default(), now);
    c.handle_input(b"+OK POP3 server ready\r\n", now);
    drain(&mut c);
    c.capa().unwrap();
    assert_eq!(sent(&mut c, now), "CAPA\r\n");
    c.handle_input(
        b"+OK Capability list follows\r\nTOP\r\nUSER\r\nSASL CRAM-MD5 KERBEROS_V4\r\nRESP-CODES\r\n\
          LOGIN-DELAY 900\r\nPIPELINING\r\nEXPIRE 60\r\nUIDL\r\nIMPLEMENTATION Shlemazle-Plotz-v302\r\n.\r\n",
        now,
    );
    drain(&mut c);
    let caps = c.capabilities().unwrap().to_vec();
    assert_eq!(
        caps,
        vec![
            Capability::Top,
            Capability::User,
            Capability::Sasl(vec![
                Mechanism::new("CRAM-MD5").unwrap(),
                Mechanism::new("KERBEROS_V4").unwrap()
            ]),
            Capability::RespCodes,
            Capability::LoginDelay {
                secs: 900,
                per_user: false
            },
            Capability::Pipelining,
            Capability::Expire {
                policy: Expire::Days(60),
                per_user: false
            },
            Capability::Uidl,
            Capability::Implementation(Text::new("Shlemazle-Plotz-v302").unwrap()),
        ]
    );
    assert!(c.pipelining());
}

/// RFC 2449 §8.1: response codes on -ERR.
#[test]
fn rfc2449_response_code_examples() {
    let now = Instant::now();
    let mut c = Client::new(ClientConfig::default(), now);
    c.handle_input(b"+OK POP3 server ready\r\n", now);
    drain(&mut c);
    c.user(Atom::new("mrose").unwrap()).unwrap();
    sent(&mut c, now);
    c.handle_input(b"+OK\r\n", now);
    drain(&mut c);
    c.pass(Secret::new(Text::new("secret").unwrap())).unwrap();
    sent(&mut c, now);
    c.handle_input(
        b"-ERR [IN-USE] Do you have another POP session running?\r\n",
        now,
    );
    let ev = drain(&mut c);
    assert!(ev[0].contains("Some(InUse)"), "{ev:?}");
    c.user(Atom::new("mrose").unwrap()).unwrap();
    sent(&mut c, now);
    c.handle_input(b"+OK\r\n", now);
    drain(&mut c);
    c.pass(Secret::new(Text::new("secret").unwrap())).unwrap();
    sent(&mut c, now);
    c.handle_input(b"-ERR [LOGIN-DELAY] wait longer\r\n", now);
    assert!(drain(&mut c)[0].contains("Some(LoginDelay)"));
}

/// RFC 5034 §6: AUTH PLAIN with and without an initial response, and an unknown mechanism.
#[test]
fn rfc5034_examples() {
    let now = Instant::now();
    let creds = || ClientCredentials::Plain {
        authzid: Some("test".into()),
        user: "test".into(),
        password: Secret::new("test".into()),
    };
    // Client, initial response inline.
    let mut c = Client::new(ClientConfig::default(), now);
    c.handle_input(b"+OK POP3 server ready\r\n", now);
    drain(&mut c);
    c.auth(creds(), b"n").unwrap();
    assert_eq!(sent(&mut c, now), "AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n");
    c.handle_input(b"+OK Maildrop locked and ready\r\n", now);
    drain(&mut c);
    assert_eq!(c.state(), ClientState::Transaction);

    // Server: without an initial response, an empty challenge "+ " first.
    let mut config = ServerConfig::default();
    config.tls_active = true;
    let mut s = Server::new(config, now);
    let mut out = Vec::new();
    s.poll_transmit(now, &mut out);
    out.clear();
    s.handle_input(b"AUTH PLAIN\r\n", now);
    assert_eq!(s.poll_event(), None);
    s.poll_transmit(now, &mut out);
    assert_eq!(out, b"+ \r\n");
    s.handle_input(b"dGVzdAB0ZXN0AHRlc3Q=\r\n", now);
    match s.poll_event() {
        Some(ServerEvent::SaslCheck(CredentialRequest::Password {
            authzid,
            user,
            password,
        })) => {
            assert_eq!(authzid.as_deref(), Some("test"));
            assert_eq!(user, "test");
            assert_eq!(password.expose_secret(), "test");
            s.sasl_answer(CredentialAnswer::Verified(true)).unwrap();
        }
        other => panic!("{other:?}"),
    }
    match s.poll_event() {
        Some(ServerEvent::Login(LoginRequest::Sasl { identity, .. })) => {
            assert_eq!(identity.user, "test");
            s.accept_login().unwrap();
        }
        other => panic!("{other:?}"),
    }
    out.clear();
    s.poll_transmit(now, &mut out);
    assert_eq!(out, b"+OK Logged in.\r\n");
    assert_eq!(s.state(), ServerState::Transaction);
    // After a successful AUTH, another AUTH is refused (RFC 5034 §4).
    s.handle_input(b"AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n", now);
    while s.poll_event().is_some() {}
    out.clear();
    s.poll_transmit(now, &mut out);
    assert!(out.starts_with(b"-ERR"));

    // An unknown mechanism.
    let mut s = Server::new(ServerConfig::default(), now);
    s.handle_input(b"AUTH KERBEROS_V4\r\n", now);
    while s.poll_event().is_some() {}
    out.clear();
    s.poll_transmit(now, &mut out);
    assert!(out.ends_with(b"-ERR [AUTH] Unsupported authentication mechanism\r\n"));
}

/// RFC 2595 §4: STLS, then under TLS a second STLS is refused.
#[test]
fn rfc2595_stls_example() {
    let now = Instant::now();
    let mut config = ServerConfig::default();
    config.stls_offered = true;
    let mut s = Server::new(config, now);
    let mut out = Vec::new();
    s.poll_transmit(now, &mut out);
    out.clear();
    s.handle_input(b"STLS\r\n", now);
    assert_eq!(s.poll_event(), Some(ServerEvent::StartTls));
    s.poll_transmit(now, &mut out);
    assert_eq!(out, b"+OK Begin TLS negotiation now\r\n");
    s.tls_established();
    s.handle_input(b"STLS\r\n", now);
    while s.poll_event().is_some() {}
    out.clear();
    s.poll_transmit(now, &mut out);
    assert!(
        out.starts_with(b"-ERR"),
        "{}",
        String::from_utf8_lossy(&out)
    );

    // The client: STLS, handshake, then CAPA again.
    let mut c = Client::new(ClientConfig::default(), now);
    c.handle_input(b"+OK POP3 server ready\r\n", now);
    drain(&mut c);
    c.stls().unwrap();
    assert_eq!(sent(&mut c, now), "STLS\r\n");
    c.handle_input(b"+OK Begin TLS negotiation\r\n", now);
    let ev = drain(&mut c);
    assert!(ev.iter().any(|e| e.starts_with("StlsReady")), "{ev:?}");
    assert_eq!(
        sent(&mut c, now),
        "",
        "nothing is sent before the handshake"
    );
    c.tls_established(now + Duration::from_millis(1));
    c.capa().unwrap();
    assert_eq!(sent(&mut c, now), "CAPA\r\n");
}
