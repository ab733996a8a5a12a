//! Client and server machines wired back to back: complete sessions compared with expected
//! transcripts, whole, byte by byte and under random chunkings.

use std::time::{Duration, Instant};

use pop3_proto::client::{Client, ClientConfig, ClientError, ClientState, Event, Handle};
use pop3_proto::server::{
    CloseReason, LoginRequest, Request, Server, ServerConfig, ServerEvent, ServerState,
};
use pop3_proto::*;

/// A maildrop and users for the server side of the tests.
struct App {
    messages: Vec<(Vec<u8>, String)>,
    deleted: Vec<bool>,
    committed: Option<Vec<usize>>,
    /// A RETR/TOP body being written: the bytes left.
    body: Option<Vec<u8>>,
    log: Vec<String>,
}

impl App {
    fn new(messages: Vec<(Vec<u8>, String)>) -> Self {
        let n = messages.len();
        App {
            messages,
            deleted: vec![false; n],
            committed: None,
            body: None,
            log: Vec::new(),
        }
    }

    fn msg(&self, m: MsgNum) -> Option<usize> {
        let i = m.index();
        (i < self.messages.len() && !self.deleted[i]).then_some(i)
    }

    /// Handles server events and pumps any body under backpressure.
    fn serve(&mut self, server: &mut Server, now: Instant) {
        loop {
            if let Some(rest) = self.body.take() {
                let n = server.write_body(&rest).unwrap();
                if n < rest.len() {
                    self.body = Some(rest[n..].to_vec());
                    return; // wait for the output to drain
                }
                server.end_multiline().unwrap();
            }
            let Some(ev) = server.poll_event() else {
                return;
            };
            self.log.push(format!("{ev:?}"));
            match ev {
                ServerEvent::Login(LoginRequest::Pass { user, password }) => {
                    if user.as_bytes() == b"alice"
                        && password.expose_secret().as_bytes() == b"open sesame"
                    {
                        server.accept_login().unwrap();
                    } else {
                        server
                            .reject_login(Some(ResponseCode::Auth), "Invalid credentials", now)
                            .unwrap();
                    }
                }
                ServerEvent::Login(LoginRequest::Sasl { identity, .. }) => {
                    assert_eq!(identity.user, "alice");
                    server.accept_login().unwrap();
                }
                ServerEvent::Login(_) => server.reject_login(None, "no", now).unwrap(),
                ServerEvent::SaslCheck(req) => server.sasl_answer(sasl_answer(&req)).unwrap(),
                ServerEvent::Request(r) => self.request(server, r),
                _ => {}
            }
        }
    }

    fn request(&mut self, server: &mut Server, r: Request) {
        let no_such = || StatusLine::err("no such message").unwrap();
        match r {
            Request::Stat => {
                let live: Vec<_> = (0..self.messages.len())
                    .filter(|i| !self.deleted[*i])
                    .collect();
                let size = live.iter().map(|i| self.messages[*i].0.len() as u64).sum();
                server
                    .reply_stat(Stat {
                        count: live.len() as u64,
                        size,
                    })
                    .unwrap();
            }
            Request::List(Some(m)) => match self.msg(m) {
                Some(i) => server
                    .reply_scan(ScanListing {
                        msg: m,
                        size: self.messages[i].0.len() as u64,
                    })
                    .unwrap(),
                None => server.reply(no_such()).unwrap(),
            },
            Request::List(None) => {
                server.begin_multiline("scan listing follows").unwrap();
                for i in 0..self.messages.len() {
                    if !self.deleted[i] {
                        let msg = MsgNum::new(i as u32 + 1).unwrap();
                        server
                            .write_scan(ScanListing {
                                msg,
                                size: self.messages[i].0.len() as u64,
                            })
                            .unwrap();
                    }
                }
                server.end_multiline().unwrap();
            }
            Request::Uidl(Some(m)) => match self.msg(m) {
                Some(i) => server
                    .reply_uid(&UidListing {
                        msg: m,
                        uid: Uid::new(self.messages[i].1.clone()).unwrap(),
                    })
                    .unwrap(),
                None => server.reply(no_such()).unwrap(),
            },
            Request::Uidl(None) => {
                server.begin_multiline("").unwrap();
                for i in 0..self.messages.len() {
                    if !self.deleted[i] {
                        let msg = MsgNum::new(i as u32 + 1).unwrap();
                        let uid = Uid::new(self.messages[i].1.clone()).unwrap();
                        server.write_uid(&UidListing { msg, uid }).unwrap();
                    }
                }
                server.end_multiline().unwrap();
            }
            Request::Retr(m) => match self.msg(m) {
                Some(i) => {
                    server.begin_multiline("message follows").unwrap();
                    self.body = Some(self.messages[i].0.clone());
                }
                None => server.reply(no_such()).unwrap(),
            },
            Request::Top { msg, lines } => match self.msg(msg) {
                Some(i) => {
                    server.begin_multiline("top of message follows").unwrap();
                    self.body = Some(top_of(&self.messages[i].0, lines));
                }
                None => server.reply(no_such()).unwrap(),
            },
            Request::Dele(m) => match self.msg(m) {
                Some(i) => {
                    self.deleted[i] = true;
                    server.reply(StatusLine::ok("marked").unwrap()).unwrap();
                }
                None => server.reply(no_such()).unwrap(),
            },
            Request::Rset => {
                self.deleted.iter_mut().for_each(|d| *d = false);
                server.reply(StatusLine::ok("").unwrap()).unwrap();
            }
            Request::Quit => {
                self.committed = Some(
                    (0..self.messages.len())
                        .filter(|i| self.deleted[*i])
                        .collect(),
                );
                server.reply(StatusLine::ok("bye").unwrap()).unwrap();
            }
            _ => unreachable!(),
        }
    }
}

const PASSWORD: &str = "open sesame";

/// The application's side of SASL for user alice.
fn sasl_answer(req: &pop3_proto::sasl::CredentialRequest) -> pop3_proto::sasl::CredentialAnswer {
    use pop3_proto::sasl::*;
    match req {
        CredentialRequest::Password { user, password, .. } => {
            CredentialAnswer::Verified(user == "alice" && password.expose_secret() == PASSWORD)
        }
        CredentialRequest::CramMd5 {
            user,
            challenge,
            digest,
        } => CredentialAnswer::Verified(
            user == "alice" && verify_cram_md5(PASSWORD.as_bytes(), challenge, digest),
        ),
        CredentialRequest::Scram { user } => CredentialAnswer::Scram(
            (user == "alice")
                .then(|| ScramCredentials::derive(PASSWORD.as_bytes(), b"salt-of-alice", 4096)),
        ),
        CredentialRequest::Token { user, token } => CredentialAnswer::Token(
            if user == "alice" && token.expose_secret().starts_with("tok") {
                Ok(())
            } else {
                Err(OAuthError::new("invalid_token"))
            },
        ),
        _ => CredentialAnswer::Verified(false),
    }
}

fn top_of(msg: &[u8], lines: u64) -> Vec<u8> {
    let text = msg;
    let hdr_end = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(text.len());
    let mut end = hdr_end;
    for _ in 0..lines {
        match text[end..].windows(2).position(|w| w == b"\r\n") {
            Some(p) => end += p + 2,
            None => {
                end = text.len();
                break;
            }
        }
    }
    text[..end].to_vec()
}

/// Client events in a chunking-independent form: body chunks are merged per command.
#[derive(Default)]
struct Transcript {
    lines: Vec<String>,
    body: Vec<u8>,
}

impl Transcript {
    fn record(&mut self, ev: Event<'_>) {
        match ev {
            Event::BodyChunk { bytes, .. } => self.body.extend_from_slice(bytes),
            Event::Done { handle } => {
                if !self.body.is_empty() {
                    self.lines.push(format!(
                        "Body({}, {:?})",
                        handle.0,
                        String::from_utf8_lossy(&std::mem::take(&mut self.body))
                    ));
                }
                self.lines.push(format!("Done({})", handle.0));
            }
            Event::Ok { handle, line } => self.lines.push(format!(
                "Ok({}, {:?})",
                handle.0,
                String::from_utf8_lossy(line.text().as_bytes())
            )),
            Event::Err { handle, line } => self.lines.push(format!(
                "Err({}, {:?}, {:?})",
                handle.0,
                line.code(),
                String::from_utf8_lossy(line.text().as_bytes())
            )),
            other => self.lines.push(format!("{other:?}")),
        }
    }
}

/// Moves bytes both ways until nothing moves, cutting every transfer by `cut`.
fn pump(
    client: &mut Client,
    server: &mut Server,
    app: &mut App,
    t: &mut Transcript,
    now: Instant,
    cut: &mut dyn FnMut(usize) -> usize,
) {
    for _ in 0..100_000 {
        let mut moved = false;
        app.serve(server, now);
        let mut s2c = Vec::new();
        server.poll_transmit(now, &mut s2c);
        let mut rest = &s2c[..];
        while !rest.is_empty() {
            moved = true;
            let n = cut(rest.len()).clamp(1, rest.len());
            client.handle_input(&rest[..n], now);
            rest = &rest[n..];
            while let Some(ev) = client.poll_event() {
                t.record(ev);
            }
        }
        if server.is_closed() && s2c.is_empty() && !moved {
            client.handle_eof(now);
            while let Some(ev) = client.poll_event() {
                t.record(ev);
            }
        }
        let mut c2s = Vec::new();
        client.poll_transmit(now, &mut c2s);
        let mut rest = &c2s[..];
        while !rest.is_empty() {
            moved = true;
            let n = cut(rest.len()).clamp(1, rest.len());
            server.handle_input(&rest[..n], now);
            rest = &rest[n..];
            app.serve(server, now);
        }
        if !moved && app.body.is_none() {
            return;
        }
    }
    panic!("no quiescence");
}

fn mailbox() -> Vec<(Vec<u8>, String)> {
    vec![
        (
            b"Subject: one\r\n\r\nHello\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n".to_vec(),
            "uid-one".into(),
        ),
        (
            b"Subject: two\r\n\r\nline 1\r\nline 2\r\nline 3\r\n".to_vec(),
            "uid-two".into(),
        ),
        (b"no final newline".to_vec(), "uid-3".into()),
    ]
}

fn config() -> ServerConfig {
    let mut c = ServerConfig::default();
    c.rules.plaintext_auth = true;
    c.rules.auth_failure_delay = Duration::ZERO;
    c.sasl_nonce = b"Ns8fV0gk2Tq".to_vec();
    c
}

/// Runs a scripted session: each step enqueues commands once the client is idle.
fn session(cut: &mut dyn FnMut(usize) -> usize) -> (Vec<String>, App) {
    let now = Instant::now();
    let mut client = Client::new(ClientConfig::default(), now);
    let mut server = Server::new(config(), now);
    let mut app = App::new(mailbox());
    let mut t = Transcript::default();
    let n = |i| MsgNum::new(i).unwrap();
    type Step = Box<dyn Fn(&mut Client) -> Vec<Handle>>;
    let steps: Vec<Step> = vec![
        Box::new(|c: &mut Client| vec![c.capa().unwrap()]),
        Box::new(|c: &mut Client| vec![c.user(Atom::new("alice").unwrap()).unwrap()]),
        Box::new(|c: &mut Client| {
            vec![
                c.pass(Secret::new(Text::new("open sesame").unwrap()))
                    .unwrap(),
            ]
        }),
        Box::new(move |c: &mut Client| {
            vec![
                c.stat().unwrap(),
                c.list(None).unwrap(),
                c.uidl(None).unwrap(),
                c.retr(n(1)).unwrap(),
                c.top(n(2), 1).unwrap(),
                c.retr(n(3)).unwrap(),
                c.dele(n(1)).unwrap(),
                c.list(Some(n(1))).unwrap(),
                c.retr(n(1)).unwrap(),
                c.uidl(Some(n(2))).unwrap(),
                c.stat().unwrap(),
            ]
        }),
        Box::new(|c: &mut Client| vec![c.quit().unwrap()]),
    ];
    pump(&mut client, &mut server, &mut app, &mut t, now, cut);
    for step in steps {
        step(&mut client);
        pump(&mut client, &mut server, &mut app, &mut t, now, cut);
    }
    (t.lines, app)
}

fn expected() -> Vec<String> {
    let v = [
        r#"Greeting(Greeting { line: StatusLine { status: Ok, code: None, text: Text("POP3 server ready") } })"#,
        r#"Ok(0, "Capability list follows")"#,
        "Capability { handle: Handle(0), capability: Top }",
        "Capability { handle: Handle(0), capability: Uidl }",
        "Capability { handle: Handle(0), capability: RespCodes }",
        "Capability { handle: Handle(0), capability: AuthRespCode }",
        "Capability { handle: Handle(0), capability: Pipelining }",
        "Capability { handle: Handle(0), capability: User }",
        r#"Capability { handle: Handle(0), capability: Sasl([Mechanism("PLAIN"), Mechanism("LOGIN"), Mechanism("CRAM-MD5"), Mechanism("SCRAM-SHA-256")]) }"#,
        "Done(0)",
        r#"Ok(1, "")"#,
        "Done(1)",
        r#"Ok(2, "Logged in.")"#,
        "Done(2)",
        r#"Ok(3, "3 113")"#,
        "Stat { handle: Handle(3), stat: Stat { count: 3, size: 113 } }",
        "Done(3)",
        r#"Ok(4, "scan listing follows")"#,
        "ListingItem { handle: Handle(4), item: ScanListing { msg: MsgNum(1), size: 57 } }",
        "ListingItem { handle: Handle(4), item: ScanListing { msg: MsgNum(2), size: 40 } }",
        "ListingItem { handle: Handle(4), item: ScanListing { msg: MsgNum(3), size: 16 } }",
        "Done(4)",
        r#"Ok(5, "")"#,
        r#"UidlItem { handle: Handle(5), item: UidListing { msg: MsgNum(1), uid: Uid("uid-one") } }"#,
        r#"UidlItem { handle: Handle(5), item: UidListing { msg: MsgNum(2), uid: Uid("uid-two") } }"#,
        r#"UidlItem { handle: Handle(5), item: UidListing { msg: MsgNum(3), uid: Uid("uid-3") } }"#,
        "Done(5)",
        r#"Ok(6, "message follows")"#,
        r#"Body(6, "Subject: one\r\n\r\nHello\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n")"#,
        "Done(6)",
        r#"Ok(7, "top of message follows")"#,
        r#"Body(7, "Subject: two\r\n\r\nline 1\r\n")"#,
        "Done(7)",
        r#"Ok(8, "message follows")"#,
        r#"Body(8, "no final newline\r\n")"#,
        "Done(8)",
        r#"Ok(9, "marked")"#,
        "Done(9)",
        r#"Err(10, None, "no such message")"#,
        "Done(10)",
        r#"Err(11, None, "no such message")"#,
        "Done(11)",
        r#"Ok(12, "2 uid-two")"#,
        r#"UidlItem { handle: Handle(12), item: UidListing { msg: MsgNum(2), uid: Uid("uid-two") } }"#,
        "Done(12)",
        r#"Ok(13, "2 56")"#,
        "Stat { handle: Handle(13), stat: Stat { count: 2, size: 56 } }",
        "Done(13)",
        r#"Ok(14, "bye")"#,
        "Done(14)",
        "Closed { error: None }",
    ];
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn whole_session_matches_transcript() {
    let (lines, app) = session(&mut |n| n);
    assert_eq!(lines, expected());
    assert_eq!(app.committed, Some(vec![0]));
}

#[test]
fn byte_by_byte_session_matches_transcript() {
    let (lines, app) = session(&mut |_| 1);
    assert_eq!(lines, expected());
    assert_eq!(app.committed, Some(vec![0]));
}

#[test]
fn pipelined_commands_are_sent_together_and_answered_in_order() {
    let now = Instant::now();
    let mut client = Client::new(ClientConfig::default(), now);
    let mut server = Server::new(config(), now);
    let mut app = App::new(mailbox());
    let mut t = Transcript::default();
    pump(&mut client, &mut server, &mut app, &mut t, now, &mut |n| n);
    client.capa().unwrap();
    pump(&mut client, &mut server, &mut app, &mut t, now, &mut |n| n);
    client.user(Atom::new("alice").unwrap()).unwrap();
    pump(&mut client, &mut server, &mut app, &mut t, now, &mut |n| n);
    client
        .pass(Secret::new(Text::new("open sesame").unwrap()))
        .unwrap();
    pump(&mut client, &mut server, &mut app, &mut t, now, &mut |n| n);
    assert!(client.pipelining());
    let a = client.retr(MsgNum::new(1).unwrap()).unwrap();
    let b = client.noop().unwrap();
    let mut wire = Vec::new();
    client.poll_transmit(now, &mut wire);
    assert_eq!(wire, b"RETR 1\r\nNOOP\r\n", "both commands in one write");
    // The server reads both at once, but NOOP's +OK must follow RETR's terminator.
    server.handle_input(&wire, now);
    app.serve(&mut server, now);
    let mut out = Vec::new();
    server.poll_transmit(now, &mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let term = text.find("\r\n.\r\n").expect("terminator");
    let noop = text.rfind("+OK\r\n").expect("NOOP reply");
    assert!(noop > term, "NOOP reply overtook the body: {text:?}");
    client.handle_input(&out, now);
    let mut order = Vec::new();
    while let Some(ev) = client.poll_event() {
        if let Event::Done { handle } = ev {
            order.push(handle);
        }
    }
    assert_eq!(order, vec![a, b]);
}

#[test]
fn without_pipelining_one_command_at_a_time() {
    let now = Instant::now();
    let mut client = Client::new(ClientConfig::default(), now);
    client.handle_input(b"+OK hi\r\n", now);
    while client.poll_event().is_some() {}
    client.user(Atom::new("u").unwrap()).unwrap();
    let mut out = Vec::new();
    client.poll_transmit(now, &mut out);
    client.handle_input(b"+OK\r\n", now);
    while client.poll_event().is_some() {}
    client.pass(Secret::new(Text::new("p").unwrap())).unwrap();
    client.poll_transmit(now, &mut out);
    client.handle_input(b"+OK\r\n", now);
    while client.poll_event().is_some() {}
    assert_eq!(client.state(), ClientState::Transaction);
    out.clear();
    client.stat().unwrap();
    client.noop().unwrap();
    client.poll_transmit(now, &mut out);
    assert_eq!(
        out, b"STAT\r\n",
        "no CAPA PIPELINING: only one command in flight"
    );
    client.handle_input(b"+OK 0 0\r\n", now);
    while client.poll_event().is_some() {}
    out.clear();
    client.poll_transmit(now, &mut out);
    assert_eq!(out, b"NOOP\r\n");
}

#[test]
fn client_refuses_commands_illegal_in_state() {
    let now = Instant::now();
    let mut client = Client::new(ClientConfig::default(), now);
    client.handle_input(b"+OK ready\r\n", now);
    while client.poll_event().is_some() {}
    assert!(matches!(
        client.stat(),
        Err(ClientError::IllegalInState("STAT", _))
    ));
    assert!(matches!(
        client.retr(MsgNum::new(1).unwrap()),
        Err(ClientError::IllegalInState(..))
    ));
    assert!(matches!(
        client.pass(Secret::new(Text::new("x").unwrap())),
        Err(ClientError::IllegalInState("PASS", _))
    ));
    assert!(matches!(
        client.noop(),
        Err(ClientError::IllegalInState("NOOP", _))
    ));
    // An exclusive command in flight blocks the next.
    client.user(Atom::new("a").unwrap()).unwrap();
    assert_eq!(client.capa(), Err(ClientError::Busy));
}

#[test]
fn server_answers_illegal_and_unknown_commands_then_carries_on() {
    let now = Instant::now();
    let mut server = Server::new(config(), now);
    let mut out = Vec::new();
    server.poll_transmit(now, &mut out);
    out.clear();
    server.handle_input(
        b"STAT\r\nXYZZY 1 2\r\nPASS x\r\nLIST 0\r\nNOOP\r\nUSER a\r\n",
        now,
    );
    let mut events = Vec::new();
    while let Some(ev) = server.poll_event() {
        events.push(ev);
    }
    server.poll_transmit(now, &mut out);
    let text = String::from_utf8(out).unwrap();
    let replies: Vec<&str> = text.split_terminator("\r\n").collect();
    assert_eq!(replies.len(), 6, "{replies:?}");
    assert!(
        replies[..5].iter().all(|r| r.starts_with("-ERR")),
        "{replies:?}"
    );
    assert_eq!(replies[5], "+OK");
    assert_eq!(server.state(), ServerState::Authorization);
}

#[test]
fn server_closes_after_consecutive_errors() {
    let now = Instant::now();
    let mut c = config();
    c.rules.max_consecutive_errors = 3;
    let mut server = Server::new(c, now);
    server.handle_input(b"A\r\nB\r\nC\r\nD\r\n", now);
    let mut closed = None;
    while let Some(ev) = server.poll_event() {
        if let ServerEvent::Closed(r) = ev {
            closed = Some(r);
        }
    }
    assert_eq!(closed, Some(CloseReason::TooManyErrors));
    let mut out = Vec::new();
    server.poll_transmit(now, &mut out);
    assert_eq!(String::from_utf8_lossy(&out).matches("-ERR").count(), 4);
}

#[test]
fn over_long_command_line_is_refused_and_framing_resumes() {
    let now = Instant::now();
    let mut server = Server::new(config(), now);
    let mut big = vec![b'A'; 10_000];
    big.extend_from_slice(b"\r\nUSER bob\r\n");
    for chunk in big.chunks(700) {
        server.handle_input(chunk, now);
        while server.poll_event().is_some() {}
    }
    let mut out = Vec::new();
    server.poll_transmit(now, &mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.ends_with("-ERR Line too long\r\n+OK\r\n"), "{text:?}");
}

#[test]
fn stls_injection_is_discarded_by_the_server() {
    let now = Instant::now();
    let mut c = config();
    c.stls_offered = true;
    c.rules.plaintext_auth = false;
    let mut server = Server::new(c, now);
    let mut out = Vec::new();
    server.poll_transmit(now, &mut out);
    out.clear();
    // CVE-2011-0411: commands pipelined in the same segment as STLS.
    server.handle_input(b"STLS\r\nUSER victim\r\nPASS x\r\n", now);
    let mut events = Vec::new();
    while let Some(ev) = server.poll_event() {
        events.push(ev);
    }
    assert_eq!(
        events,
        vec![
            ServerEvent::StartTls,
            ServerEvent::StlsInjection { discarded: 21 }
        ]
    );
    server.poll_transmit(now, &mut out);
    assert_eq!(out, b"+OK Begin TLS negotiation now\r\n");
    // More plaintext before the handshake is discarded too.
    server.handle_input(b"CAPA\r\n", now);
    assert_eq!(
        server.poll_event(),
        Some(ServerEvent::StlsInjection { discarded: 6 })
    );
    server.tls_established();
    assert!(server.tls_active());
    // After the handshake nothing of the injection is answered; STLS is gone from CAPA.
    server.handle_input(b"CAPA\r\n", now);
    while server.poll_event().is_some() {}
    out.clear();
    server.poll_transmit(now, &mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("+OK Capability"), "{text}");
    assert!(!text.contains("STLS"));
    assert!(
        text.contains("USER\r\n"),
        "plaintext auth offered once TLS is on"
    );
    // STLS again over TLS: refused.
    server.handle_input(b"STLS\r\n", now);
    while server.poll_event().is_some() {}
    out.clear();
    server.poll_transmit(now, &mut out);
    assert!(out.starts_with(b"-ERR"));
}

#[test]
fn stls_partial_line_does_not_carry_into_tls() {
    let now = Instant::now();
    let mut c = config();
    c.stls_offered = true;
    let mut server = Server::new(c, now);
    server.handle_input(b"STLS\r\nUSER ev", now);
    while server.poll_event().is_some() {}
    server.tls_established();
    server.handle_input(b"il\r\n", now);
    let mut out = Vec::new();
    while server.poll_event().is_some() {}
    server.poll_transmit(now, &mut out);
    let text = String::from_utf8_lossy(&out);
    // "il" alone is an unknown command: the partial "USER ev" was dropped.
    assert!(text.ends_with("-ERR Unknown command\r\n"), "{text:?}");
}

#[test]
fn stls_injection_fails_the_client() {
    let now = Instant::now();
    let mut client = Client::new(ClientConfig::default(), now);
    client.handle_input(b"+OK ready\r\n", now);
    while client.poll_event().is_some() {}
    let h = client.stls().unwrap();
    let mut out = Vec::new();
    client.poll_transmit(now, &mut out);
    assert_eq!(out, b"STLS\r\n");
    // CVE-2021-22947: a response pipelined after the STLS +OK.
    client.handle_input(b"+OK Begin TLS\r\n+OK injected\r\n", now);
    let mut events = Vec::new();
    while let Some(ev) = client.poll_event() {
        events.push(format!("{ev:?}"));
    }
    assert!(events.contains(&format!("{:?}", Event::StlsReady { handle: h })));
    assert_eq!(
        events.last().unwrap(),
        &format!(
            "{:?}",
            Event::Closed {
                error: Some(ClientError::StlsInjection(14))
            }
        )
    );
}

#[test]
fn client_must_capa_again_after_stls() {
    let now = Instant::now();
    let mut client = Client::new(ClientConfig::default(), now);
    client.handle_input(b"+OK ready\r\n", now);
    while client.poll_event().is_some() {}
    client.capa().unwrap();
    let mut out = Vec::new();
    client.poll_transmit(now, &mut out);
    client.handle_input(b"+OK\r\nSTLS\r\nPIPELINING\r\n.\r\n", now);
    while client.poll_event().is_some() {}
    assert!(client.pipelining());
    client.stls().unwrap();
    client.poll_transmit(now, &mut out);
    client.handle_input(b"+OK go\r\n", now);
    while client.poll_event().is_some() {}
    assert_eq!(client.state(), ClientState::TlsHandshake);
    assert_eq!(
        client.capa(),
        Err(ClientError::IllegalInState(
            "CAPA",
            ClientState::TlsHandshake
        ))
        .or(client.capa())
    );
    client.tls_established(now);
    assert!(client.capabilities().is_none(), "capabilities discarded");
    assert!(!client.pipelining());
    assert_eq!(
        client.user(Atom::new("u").unwrap()),
        Err(ClientError::CapaRequired)
    );
    client.capa().unwrap();
}

#[test]
fn eof_in_the_middle_of_a_body_is_an_error() {
    let now = Instant::now();
    let (mut client, _) = logged_in_client(now);
    let h = client.retr(MsgNum::new(1).unwrap()).unwrap();
    let mut out = Vec::new();
    client.poll_transmit(now, &mut out);
    client.handle_input(b"+OK\r\nSubject: x\r\n\r\nbody", now);
    client.handle_eof(now);
    let mut evs = Vec::new();
    while let Some(ev) = client.poll_event() {
        evs.push(format!("{ev:?}"));
    }
    assert!(
        !evs.contains(&format!("{:?}", Event::Done { handle: h })),
        "{evs:?}"
    );
    assert_eq!(
        evs.last().unwrap(),
        &format!(
            "{:?}",
            Event::Closed {
                error: Some(ClientError::UnexpectedEof)
            }
        )
    );
}

fn logged_in_client(now: Instant) -> (Client, Vec<u8>) {
    let mut client = Client::new(ClientConfig::default(), now);
    let mut out = Vec::new();
    client.handle_input(b"+OK ready\r\n", now);
    while client.poll_event().is_some() {}
    client.user(Atom::new("u").unwrap()).unwrap();
    client.poll_transmit(now, &mut out);
    client.handle_input(b"+OK\r\n", now);
    while client.poll_event().is_some() {}
    client.pass(Secret::new(Text::new("p").unwrap())).unwrap();
    client.poll_transmit(now, &mut out);
    client.handle_input(b"+OK\r\n", now);
    while client.poll_event().is_some() {}
    assert_eq!(client.state(), ClientState::Transaction);
    (client, out)
}

#[test]
fn autologout_closes_without_update() {
    let t0 = Instant::now();
    let mut server = Server::new(config(), t0);
    let mut app = App::new(mailbox());
    server.handle_input(b"USER alice\r\nPASS open sesame\r\nDELE 1\r\n", t0);
    app.serve(&mut server, t0);
    assert_eq!(server.state(), ServerState::Transaction);
    assert!(app.deleted[0]);
    let deadline = server.poll_timeout().unwrap();
    assert_eq!(
        deadline,
        t0 + Duration::from_secs(600),
        "RFC 1939: at least 10 minutes"
    );
    server.handle_timeout(t0 + Duration::from_secs(599));
    assert!(!server.is_closed());
    server.handle_timeout(deadline);
    assert!(server.is_closed());
    assert_eq!(
        server.poll_event(),
        Some(ServerEvent::Closed(CloseReason::Timeout))
    );
    assert_eq!(app.committed, None, "no UPDATE on autologout");
    // Activity resets the timer (here before login, with the login timeout out of the way).
    let mut server = Server::new(without_login_timeout(), t0);
    server.handle_input(b"CAPA\r\n", t0 + Duration::from_secs(500));
    assert_eq!(server.poll_timeout(), Some(t0 + Duration::from_secs(1100)));
}

/// [`config`] with a login timeout that never fires: for the tests of the other timers, which
/// run before login.
fn without_login_timeout() -> ServerConfig {
    let mut c = config();
    c.rules.login_timeout = Duration::from_secs(100_000);
    c
}

#[test]
fn no_login_within_the_login_timeout_closes_the_session() {
    let t0 = Instant::now();
    let sec = |n: u64| t0 + Duration::from_secs(n);
    let mut app = App::new(mailbox());
    // Silent: closed at 60 s, without a reply, well before the autologout.
    let mut server = Server::new(config(), t0);
    let mut out = Vec::new();
    server.poll_transmit(t0, &mut out);
    assert_eq!(server.poll_timeout(), Some(sec(60)));
    server.handle_timeout(sec(59));
    assert!(!server.is_closed());
    server.handle_timeout(sec(60));
    assert!(server.is_closed());
    assert_eq!(
        server.poll_event(),
        Some(ServerEvent::Closed(CloseReason::LoginTimeout))
    );
    out.clear();
    server.poll_transmit(sec(60), &mut out);
    assert!(out.is_empty(), "no reply: {out:?}");
    // Busy is no better: commands keep the autologout away, not the login timeout.
    let mut server = Server::new(config(), t0);
    for i in 0..60 {
        server.handle_input(b"CAPA\r\n", sec(i));
        app.serve(&mut server, sec(i));
        server.poll_transmit(sec(i), &mut out);
        server.handle_timeout(sec(i));
        assert!(!server.is_closed(), "closed after {i} s");
    }
    assert_eq!(server.poll_timeout(), Some(sec(60)));
    server.handle_timeout(sec(60));
    assert!(server.is_closed());
    // Logged in, the login timeout is gone: only the autologout remains.
    let mut server = Server::new(config(), t0);
    server.handle_input(b"USER alice\r\nPASS open sesame\r\n", sec(30));
    app.serve(&mut server, sec(30));
    assert_eq!(server.state(), ServerState::Transaction);
    server.handle_timeout(sec(61));
    assert!(!server.is_closed());
    assert_eq!(server.poll_timeout(), Some(sec(30 + 600)));
}

#[test]
fn a_line_trickled_a_byte_at_a_time_is_cut_off() {
    let t0 = Instant::now();
    let sec = |n: u64| t0 + Duration::from_secs(n);
    let mut server = Server::new(without_login_timeout(), t0);
    let mut app = App::new(mailbox());
    // A short command sent a byte a second is a slow client, not an attack: served.
    for (i, b) in b"CAPA\r\n".iter().enumerate() {
        server.handle_input(&[*b], sec(i as u64));
        app.serve(&mut server, sec(i as u64));
    }
    assert!(!server.is_closed());
    let mut out = Vec::new();
    server.poll_transmit(sec(6), &mut out);
    assert!(out.ends_with(b"\r\n.\r\n"), "{out:?}");
    assert!(
        out.windows(6).any(|w| w == b"\r\n+OK "),
        "the CAPA reply: {out:?}"
    );
    // Every byte resets autologout, but not the line: 60 bytes of a line that never ends, one
    // a second, and the session is closed, without UPDATE.
    let start = 100;
    for i in 0..60 {
        assert!(!server.is_closed(), "closed after {i} s");
        server.handle_input(b"x", sec(start + i));
        app.serve(&mut server, sec(start + i));
        assert_eq!(server.poll_timeout(), Some(sec(start + 60)));
        server.handle_timeout(sec(start + i));
    }
    server.handle_timeout(sec(start + 60));
    assert!(server.is_closed());
    assert_eq!(
        server.poll_event(),
        Some(ServerEvent::Closed(CloseReason::CommandTimeout))
    );
    // The same after an over-long line is reported: the discarding goes on only as long.
    let mut server = Server::new(config(), t0);
    server.handle_input(&[b'y'; 300], t0);
    app.serve(&mut server, t0);
    assert_eq!(server.poll_timeout(), Some(sec(60)));
    server.handle_input(b"yyy", sec(59));
    app.serve(&mut server, sec(59));
    server.handle_timeout(sec(60));
    assert!(server.is_closed());
}

#[test]
fn time_the_server_spends_is_not_charged_to_the_line() {
    let t0 = Instant::now();
    let sec = |n: u64| t0 + Duration::from_secs(n);
    let mut server = Server::new(config(), t0);
    let mut app = App::new(mailbox());
    server.handle_input(b"USER alice\r\nPASS open sesame\r\n", t0);
    app.serve(&mut server, t0);
    assert_eq!(server.state(), ServerState::Transaction);
    // A pipelined command, then half of the next; the server is busy with the first (the
    // backend has not answered) for longer than the command timeout.
    server.handle_input(b"STAT\r\nLI", t0);
    let ev = server.poll_event();
    assert!(
        matches!(ev, Some(ServerEvent::Request(Request::Stat))),
        "{ev:?}"
    );
    assert_eq!(server.poll_timeout(), Some(sec(600)));
    server.handle_timeout(sec(120));
    assert!(!server.is_closed());
    server
        .reply_stat(Stat {
            count: 2,
            size: 300,
        })
        .unwrap();
    // Now the server waits for the rest of the line: the clock starts.
    assert_eq!(server.poll_event(), None);
    assert_eq!(server.poll_timeout(), Some(sec(180)));
    server.handle_input(b"ST\r\n", sec(150));
    app.serve(&mut server, sec(150));
    assert!(!server.is_closed());
    assert_eq!(server.poll_timeout(), Some(sec(750)));
}

#[test]
fn eof_closes_without_update() {
    let t0 = Instant::now();
    let mut server = Server::new(config(), t0);
    let mut app = App::new(mailbox());
    server.handle_input(b"USER alice\r\nPASS open sesame\r\nDELE 1\r\n", t0);
    server.handle_eof(t0);
    app.serve(&mut server, t0);
    assert!(server.is_closed());
    assert!(app.log.last().unwrap().contains("Eof"));
    assert_eq!(app.committed, None);
}

#[test]
fn failed_login_is_delayed_and_limited() {
    let t0 = Instant::now();
    let mut c = config();
    c.rules.auth_failure_delay = Duration::from_secs(2);
    c.rules.max_auth_failures = 2;
    let mut server = Server::new(c, t0);
    let mut app = App::new(mailbox());
    let mut out = Vec::new();
    server.poll_transmit(t0, &mut out);
    out.clear();
    server.handle_input(
        b"USER alice\r\nPASS wrong\r\nUSER alice\r\nPASS wrong\r\n",
        t0,
    );
    app.serve(&mut server, t0);
    server.poll_transmit(t0, &mut out);
    assert_eq!(
        out, b"+OK\r\n",
        "the -ERR is held back, and nothing after it is read"
    );
    out.clear();
    assert_eq!(server.poll_timeout(), Some(t0 + Duration::from_secs(2)));
    server.handle_timeout(t0 + Duration::from_secs(2));
    app.serve(&mut server, t0 + Duration::from_secs(2));
    server.poll_transmit(t0, &mut out);
    assert_eq!(out, b"-ERR [AUTH] Invalid credentials\r\n+OK\r\n");
    server.handle_timeout(t0 + Duration::from_secs(4));
    app.serve(&mut server, t0 + Duration::from_secs(4));
    assert!(server.is_closed());
    assert!(app.log.last().unwrap().contains("TooManyAuthFailures"));
}

#[test]
fn client_response_deadline() {
    let t0 = Instant::now();
    let mut cfg = ClientConfig::default();
    cfg.response_timeout = Some(Duration::from_secs(30));
    let mut client = Client::new(cfg, t0);
    assert_eq!(client.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    client.handle_input(b"+OK hi\r\n", t0);
    while client.poll_event().is_some() {}
    assert_eq!(client.poll_timeout(), None, "nothing in flight");
    client.capa().unwrap();
    let mut out = Vec::new();
    let t1 = t0 + Duration::from_secs(100);
    client.poll_transmit(t1, &mut out);
    assert_eq!(client.poll_timeout(), Some(t1 + Duration::from_secs(30)));
    client.handle_timeout(t1 + Duration::from_secs(30));
    assert_eq!(
        client.poll_event(),
        Some(Event::Closed {
            error: Some(ClientError::Timeout)
        })
    );
}

#[test]
fn quit_in_authorization_commits_nothing() {
    let now = Instant::now();
    let mut server = Server::new(config(), now);
    server.handle_input(b"QUIT\r\n", now);
    assert_eq!(
        server.poll_event(),
        Some(ServerEvent::Closed(CloseReason::Quit))
    );
    let mut out = Vec::new();
    server.poll_transmit(now, &mut out);
    assert!(out.ends_with(b"+OK Logging out\r\n"));
}

#[test]
fn backpressure_limits_buffered_output() {
    let now = Instant::now();
    let mut c = config();
    c.rules.high_water = 4096;
    let mut server = Server::new(c, now);
    let mut app = App::new(vec![(vec![b'x'; 100_000], "big".into())]);
    server.handle_input(b"USER alice\r\nPASS open sesame\r\nRETR 1\r\nNOOP\r\n", now);
    app.serve(&mut server, now);
    assert!(
        server.pending_output() <= 4096 + 64,
        "{}",
        server.pending_output()
    );
    let mut total = Vec::new();
    for _ in 0..1000 {
        let mut out = Vec::new();
        server.poll_transmit(now, &mut out);
        if out.is_empty() {
            break;
        }
        total.extend_from_slice(&out);
        app.serve(&mut server, now);
        assert!(server.pending_output() <= 4096 + 64);
    }
    assert!(total.ends_with(b"\r\n.\r\n+OK\r\n"));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn random_chunkings_give_the_same_transcript(seed in 1u64..u64::MAX) {
        let mut x = seed;
        let (lines, app) = session(&mut |n| {
            // xorshift: a chunk size from 1 to n, small ones often.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            1 + (x as usize) % n.min(if x % 3 == 0 { 3 } else { 97 })
        });
        proptest::prop_assert_eq!(lines, expected());
        proptest::prop_assert_eq!(app.committed, Some(vec![0]));
    }
}

/// Logs in with SASL through both machines; returns the client's transcript and whether the
/// server reached TRANSACTION.
fn sasl_login(creds: pop3_proto::sasl::ClientCredentials) -> (Vec<String>, bool, Vec<u8>) {
    let now = Instant::now();
    let mut client = Client::new(ClientConfig::default(), now);
    let mut c = config();
    c.sasl_mechanisms = [
        "PLAIN",
        "LOGIN",
        "CRAM-MD5",
        "SCRAM-SHA-256",
        "XOAUTH2",
        "OAUTHBEARER",
    ]
    .iter()
    .map(|m| Mechanism::new(*m).unwrap())
    .collect();
    c.sasl_nonce = b"3rfcNHYJY1ZVvWVs7j".to_vec();
    let mut server = Server::new(c, now);
    let mut app = App::new(mailbox());
    let mut t = Transcript::default();
    pump(&mut client, &mut server, &mut app, &mut t, now, &mut |n| n);
    client.auth(creds, b"rOprNGfwEbeRWgbNEkqO").unwrap();
    // Record what the client sends.
    let mut wire = Vec::new();
    for _ in 0..10 {
        let mut c2s = Vec::new();
        client.poll_transmit(now, &mut c2s);
        wire.extend_from_slice(&c2s);
        server.handle_input(&c2s, now);
        app.serve(&mut server, now);
        let mut s2c = Vec::new();
        server.poll_transmit(now, &mut s2c);
        client.handle_input(&s2c, now);
        while let Some(ev) = client.poll_event() {
            t.record(ev);
        }
    }
    (t.lines, server.state() == ServerState::Transaction, wire)
}

fn secret(s: &str) -> Secret<String> {
    Secret::new(s.to_string())
}

#[test]
fn sasl_mechanisms_log_in_through_both_machines() {
    use pop3_proto::sasl::ClientCredentials as C;
    let alice = || "alice".to_string();
    let cases = vec![
        C::Plain {
            authzid: None,
            user: alice(),
            password: secret(PASSWORD),
        },
        C::Login {
            user: alice(),
            password: secret(PASSWORD),
        },
        C::CramMd5 {
            user: alice(),
            password: secret(PASSWORD),
        },
        C::ScramSha256 {
            user: alice(),
            password: secret(PASSWORD),
        },
        C::XOAuth2 {
            user: alice(),
            token: secret("tok123"),
        },
        C::OAuthBearer {
            user: alice(),
            token: secret("tok123"),
            host: None,
            port: None,
        },
    ];
    for creds in cases {
        let name = format!("{creds:?}");
        let (lines, logged_in, _) = sasl_login(creds);
        assert!(logged_in, "{name}: {lines:?}");
        assert_eq!(lines[1..], ["Ok(0, \"Logged in.\")", "Done(0)"], "{name}");
    }
}

#[test]
fn sasl_wrong_credentials_fail_with_auth_code() {
    use pop3_proto::sasl::ClientCredentials as C;
    let alice = || "alice".to_string();
    let cases = vec![
        C::Plain {
            authzid: None,
            user: alice(),
            password: secret("wrong"),
        },
        C::Login {
            user: "mallory".into(),
            password: secret(PASSWORD),
        },
        C::CramMd5 {
            user: alice(),
            password: secret("wrong"),
        },
        C::ScramSha256 {
            user: alice(),
            password: secret("wrong"),
        },
        C::ScramSha256 {
            user: "nobody".into(),
            password: secret(PASSWORD),
        },
        C::XOAuth2 {
            user: alice(),
            token: secret("bad"),
        },
        C::OAuthBearer {
            user: alice(),
            token: secret("bad"),
            host: None,
            port: None,
        },
    ];
    for creds in cases {
        let name = format!("{creds:?}");
        let (lines, logged_in, _) = sasl_login(creds);
        assert!(!logged_in, "{name}");
        assert_eq!(
            lines[1..],
            ["Err(0, Some(Auth), \"Authentication failed\")", "Done(0)"],
            "{name}"
        );
    }
}

#[test]
fn sasl_initial_response_too_long_for_the_line_is_sent_after_an_empty_challenge() {
    // RFC 5034 §4: AUTH XOAUTH2 + a 400-octet token does not fit 255 octets.
    let token = format!("tok{}", "x".repeat(400));
    let (lines, logged_in, wire) = sasl_login(pop3_proto::sasl::ClientCredentials::XOAuth2 {
        user: "alice".into(),
        token: secret(&token),
    });
    assert!(logged_in, "{lines:?}");
    let first = wire.split(|&b| b == b'\n').next().unwrap();
    assert_eq!(first, b"AUTH XOAUTH2\r");
}

#[test]
fn sasl_cancel_is_answered_with_err() {
    let now = Instant::now();
    let mut server = Server::new(config(), now);
    server.handle_input(b"AUTH LOGIN\r\n", now);
    while server.poll_event().is_some() {}
    let mut out = Vec::new();
    server.poll_transmit(now, &mut out);
    assert!(
        out.ends_with(b"+ VXNlcm5hbWU6\r\n"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    server.handle_input(b"*\r\n", now);
    while server.poll_event().is_some() {}
    out.clear();
    server.poll_transmit(now, &mut out);
    assert_eq!(out, b"-ERR Authentication cancelled\r\n");
    assert_eq!(server.state(), ServerState::Authorization);
}

#[test]
fn plaintext_mechanisms_are_not_offered_without_tls() {
    let now = Instant::now();
    let mut c = ServerConfig::default();
    c.stls_offered = true;
    c.sasl_nonce = b"abc".to_vec();
    let mut server = Server::new(c, now);
    server.handle_input(b"CAPA\r\nUSER a\r\nAUTH PLAIN AGEAYg==\r\n", now);
    while server.poll_event().is_some() {}
    let mut out = Vec::new();
    server.poll_transmit(now, &mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("SASL CRAM-MD5 SCRAM-SHA-256\r\n"), "{text}");
    assert!(!text.contains("USER\r\n"));
    assert!(text.contains("STLS\r\n"));
    assert!(
        text.contains("-ERR [AUTH] Plaintext authentication disallowed"),
        "{text}"
    );
    assert!(
        text.ends_with("-ERR [AUTH] Unsupported authentication mechanism\r\n"),
        "{text}"
    );
}

/// RFC 2449 §6.5, §6.7, §6.9: before login, `LOGIN-DELAY` and `EXPIRE` may carry `USER` (the
/// value varies per user) and `IMPLEMENTATION` is not sent; in TRANSACTION, the user's own
/// values without `USER`, and `IMPLEMENTATION`.
#[test]
fn capa_in_transaction_has_the_users_values_and_implementation() {
    let now = Instant::now();
    let capa_after = |login: &[u8], user_policy: bool| {
        let mut c = ServerConfig::default();
        c.rules.plaintext_auth = true;
        c.login_delay = Some(Capability::LoginDelay {
            secs: 900,
            per_user: true,
        });
        c.expire = Some(Capability::Expire {
            policy: Expire::Days(0),
            per_user: true,
        });
        c.implementation = Some(Text::new(&b"pop3-test 1"[..]).unwrap());
        let mut server = Server::new(c, now);
        server.handle_input(login, now);
        while let Some(ev) = server.poll_event() {
            if let ServerEvent::Login(_) = ev {
                server.accept_login().unwrap();
                if user_policy {
                    server.set_user_policy(
                        Some(Capability::LoginDelay {
                            secs: 60,
                            per_user: false,
                        }),
                        Some(Capability::Expire {
                            policy: Expire::Never,
                            per_user: false,
                        }),
                    );
                }
            }
        }
        let mut out = Vec::new();
        server.poll_transmit(now, &mut out);
        String::from_utf8(out).unwrap()
    };
    let before = capa_after(b"CAPA\r\n", false);
    assert!(before.contains("\r\nLOGIN-DELAY 900 USER\r\n"), "{before}");
    assert!(before.contains("\r\nEXPIRE 0 USER\r\n"), "{before}");
    assert!(!before.contains("IMPLEMENTATION"), "{before}");

    let after = capa_after(b"USER a\r\nPASS b\r\nCAPA\r\n", false);
    assert!(after.contains("\r\nLOGIN-DELAY 900\r\n"), "{after}");
    assert!(after.contains("\r\nEXPIRE 0\r\n"), "{after}");
    assert!(
        after.contains("\r\nIMPLEMENTATION pop3-test 1\r\n"),
        "{after}"
    );
    assert!(!after.contains(" USER\r\n"), "{after}");

    let own = capa_after(b"USER a\r\nPASS b\r\nCAPA\r\n", true);
    assert!(own.contains("\r\nLOGIN-DELAY 60\r\n"), "{own}");
    assert!(own.contains("\r\nEXPIRE NEVER\r\n"), "{own}");
    assert!(own.contains("\r\nIMPLEMENTATION pop3-test 1\r\n"), "{own}");
}

#[test]
fn apop_login_through_both_machines() {
    let now = Instant::now();
    let mut client = Client::new(ClientConfig::default(), now);
    let mut c = config();
    let ts = Timestamp::new("<1896.697170952@dbc.mtview.ca.us>").unwrap();
    c.apop_timestamp = Some(ts.clone());
    let mut server = Server::new(c, now);
    let mut out = Vec::new();
    server.poll_transmit(now, &mut out);
    assert_eq!(
        out,
        b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
    );
    client.handle_input(&out, now);
    while client.poll_event().is_some() {}
    assert_eq!(client.apop_timestamp(), Some(&ts));
    client
        .apop(Atom::new("mrose").unwrap(), b"tanstaaf")
        .unwrap();
    let mut wire = Vec::new();
    client.poll_transmit(now, &mut wire);
    assert_eq!(wire, b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n");
    server.handle_input(&wire, now);
    match server.poll_event() {
        Some(ServerEvent::Login(LoginRequest::Apop {
            user,
            timestamp,
            digest,
        })) => {
            assert_eq!(user.as_bytes(), b"mrose");
            assert!(pop3_proto::sasl::verify_apop(
                &timestamp,
                b"tanstaaf",
                digest.expose_secret()
            ));
            server.accept_login().unwrap();
        }
        other => panic!("{other:?}"),
    }
}

/// RFC 1939 §3: every command in every state. Illegal ones get `-ERR` from the machine itself
/// and never reach the application.
#[test]
fn state_matrix_every_command_in_every_state() {
    let commands = [
        "USER a",
        "PASS b",
        "APOP a 0123456789abcdef0123456789abcdef",
        "QUIT",
        "STAT",
        "LIST",
        "LIST 1",
        "RETR 1",
        "DELE 1",
        "NOOP",
        "RSET",
        "TOP 1 0",
        "UIDL",
        "UIDL 1",
        "CAPA",
        "STLS",
        "AUTH PLAIN",
        "UTF8",
        "LANG",
        "XTND",
    ];
    let auth_ok = [
        "USER a",
        "APOP a 0123456789abcdef0123456789abcdef",
        "QUIT",
        "CAPA",
        "STLS",
        "AUTH PLAIN",
    ];
    let trans_ok = [
        "QUIT", "STAT", "LIST", "LIST 1", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 0", "UIDL",
        "UIDL 1", "CAPA",
    ];
    for transaction in [false, true] {
        for cmd in commands {
            let now = Instant::now();
            let mut c = config();
            c.stls_offered = true;
            c.apop_timestamp = Some(Timestamp::new("<1@x>").unwrap());
            let mut server = Server::new(c, now);
            if transaction {
                server.handle_input(b"USER alice\r\nPASS p\r\n", now);
                assert!(matches!(server.poll_event(), Some(ServerEvent::Login(_))));
                server.accept_login().unwrap();
            }
            let mut out = Vec::new();
            server.poll_transmit(now, &mut out);
            out.clear();
            server.handle_input(format!("{cmd}\r\n").as_bytes(), now);
            let ev = server.poll_event();
            server.poll_transmit(now, &mut out);
            let reply = String::from_utf8_lossy(&out).into_owned();
            let legal = if transaction {
                trans_ok.contains(&cmd)
            } else {
                auth_ok.contains(&cmd)
            };
            if legal {
                let answered_by_app =
                    matches!(ev, Some(ServerEvent::Request(_) | ServerEvent::Login(_)));
                assert!(
                    answered_by_app || reply.starts_with('+') || ev == Some(ServerEvent::StartTls),
                    "{cmd} in {}: {reply:?} {ev:?}",
                    if transaction {
                        "TRANSACTION"
                    } else {
                        "AUTHORIZATION"
                    }
                );
            } else {
                assert!(
                    reply.starts_with("-ERR"),
                    "{cmd} should be refused: {reply:?}"
                );
                assert!(
                    matches!(ev, None | Some(ServerEvent::Rejected { .. })),
                    "{cmd} reached the application: {ev:?}"
                );
            }
        }
    }
}
