//! The fuzz targets' logic, in one place: each `fuzz_targets/*.rs` calls one function here,
//! and `pop3-proto/tests/fuzz_corpus.rs` replays every committed corpus and regression input
//! through the same function on stable Rust (`#[path]`-included by both), so a crash found
//! once stays a test.
//!
//! Every function takes the raw fuzz input and panics (assert) when a property is violated.

use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use pop3_proto::body::{DotStuffer, DotUnstuffer, Unstuffed};
use pop3_proto::client::{Client, ClientConfig, Event};
use pop3_proto::decode::{self, ListingLine};
use pop3_proto::encode::encode_listing_line;
use pop3_proto::framing::{Framed, LineFramer};
use pop3_proto::sasl::{ClientCredentials, CredentialAnswer, CredentialRequest, ScramCredentials};
use pop3_proto::server::{LoginRequest, Request, Server, ServerConfig, ServerEvent};
use pop3_proto::{
    Capability, Command, Continuation, Encode, Greeting, LangItem, SaslResponse, ScanListing, Stat,
    StatusLine, UidListing,
};
use pop3_proto::{MsgNum, ResponseCode, Secret, Uid};

/// The names of the targets, as directories under `fuzz/corpus/` and `fuzz/regressions/`.
pub(crate) const TARGETS: [&str; 6] = [
    "command_decode",
    "response_decode",
    "body_roundtrip",
    "client_session",
    "server_session",
    "value_roundtrip",
];

/// Runs the logic of the target called `name` on `data`.
pub(crate) fn run(name: &str, data: &[u8]) {
    match name {
        "command_decode" => command_decode(data),
        "response_decode" => response_decode(data),
        "body_roundtrip" => body_roundtrip(data),
        "client_session" => client_session(data),
        "server_session" => server_session(data),
        "value_roundtrip" => value_roundtrip(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

/// `rest` must be a suffix of `input` (parsers hand back the unread remainder).
fn assert_suffix(input: &[u8], rest: &[u8]) {
    assert!(
        input.ends_with(rest),
        "remainder is not a suffix of the input"
    );
}

/// A parser of `decode` over one line: remainder and value.
type LineParser<T, E> = fn(&[u8]) -> Result<(&[u8], T), E>;

/// Decodes a full line with `p`, expecting exactly `want` and nothing left over.
fn reparse<T, E>(bytes: &[u8], p: LineParser<T, E>, want: &T)
where
    T: PartialEq + std::fmt::Debug,
    E: std::fmt::Debug,
{
    let (rest, got) = p(bytes).unwrap_or_else(|e| {
        panic!(
            "encoded {:?} does not decode: {e:?}",
            String::from_utf8_lossy(bytes)
        )
    });
    assert!(rest.is_empty(), "encoding of {want:?} left {rest:?}");
    assert_eq!(&got, want, "wire {:?}", String::from_utf8_lossy(bytes));
}

/// A listing item written with its dot-stuffing is unstuffed by `listing_line` and then
/// parsed by `parse`.
fn reparse_listing<T, E>(bytes: &[u8], parse: fn(&[u8]) -> Result<T, E>, want: &T)
where
    T: PartialEq + std::fmt::Debug,
    E: std::fmt::Debug,
{
    let (rest, line) = decode::listing_line(bytes).expect("an encoded listing line frames");
    assert!(rest.is_empty());
    let ListingLine::Data(content) = line else {
        panic!("item {want:?} encoded as the terminator");
    };
    let got = parse(content).unwrap_or_else(|e| panic!("item {want:?} does not parse: {e:?}"));
    assert_eq!(&got, want, "wire {:?}", String::from_utf8_lossy(bytes));
}

/// The text of a `+OK` single-line reply, parsed back as a status line.
fn ok_text(bytes: &[u8]) -> Vec<u8> {
    let (rest, line) = decode::status_line(bytes).expect("an encoded reply is a status line");
    assert!(rest.is_empty() && line.is_ok() && line.code().is_none());
    line.text().as_bytes().to_vec()
}

fn command_roundtrip(c: &Command) {
    reparse(&c.to_bytes(), decode::command, c);
}

fn sasl_roundtrip(r: &SaslResponse) {
    reparse(&r.to_bytes(), decode::sasl_response, r);
}

/// Target `command_decode`: bytes into the command-side parsers; whatever they accept
/// re-encodes to something that decodes to the same value.
pub(crate) fn command_decode(data: &[u8]) {
    if let Ok((rest, c)) = decode::command(data) {
        assert_suffix(data, rest);
        command_roundtrip(&c);
    }
    if let Ok(c) = decode::parse_command(data) {
        command_roundtrip(&c);
    }
    if let Ok((rest, r)) = decode::sasl_response(data) {
        assert_suffix(data, rest);
        sasl_roundtrip(&r);
    }
    if let Ok(r) = decode::parse_sasl_response(data) {
        sasl_roundtrip(&r);
    }
}

/// Target `response_decode`: bytes into every response parser; whatever they accept
/// re-encodes to something that decodes to the same value.
pub(crate) fn response_decode(data: &[u8]) {
    if let Ok((rest, s)) = decode::status_line(data) {
        assert_suffix(data, rest);
        reparse(&s.to_bytes(), decode::status_line, &s);
    }
    if let Ok((rest, g)) = decode::greeting(data) {
        assert_suffix(data, rest);
        reparse(&g.to_bytes(), decode::greeting, &g);
        if let Some(ts) = g.timestamp() {
            // The timestamp is a part of the text, and a valid one.
            assert!(
                g.line()
                    .text()
                    .as_bytes()
                    .windows(ts.as_bytes().len())
                    .any(|w| w == ts.as_bytes())
            );
            assert!(pop3_proto::Timestamp::new(ts.as_bytes()).is_ok());
        }
    }
    if let Ok((rest, c)) = decode::continuation(data) {
        assert_suffix(data, rest);
        reparse(&c.to_bytes(), decode::continuation, &c);
    }
    if let Ok((rest, l)) = decode::scan_listing(data) {
        assert_suffix(data, rest);
        reparse(&l.to_bytes(), decode::scan_listing, &l);
    }
    if let Ok((rest, l)) = decode::uid_listing(data) {
        assert_suffix(data, rest);
        reparse(&l.to_bytes(), decode::uid_listing, &l);
    }
    if let Ok((rest, c)) = decode::capability(data) {
        assert_suffix(data, rest);
        reparse_listing(&c.to_bytes(), decode::parse_capability, &c);
    }
    if let Ok((rest, l)) = decode::lang_item(data) {
        assert_suffix(data, rest);
        reparse_listing(&l.to_bytes(), decode::parse_lang_item, &l);
    }
    if let Ok((rest, line)) = decode::listing_line(data) {
        assert_suffix(data, rest);
        match line {
            // `encode_listing_line` takes validated octets: no CR (a LF cannot be there).
            ListingLine::Data(content) if !content.contains(&b'\r') => {
                let mut wire = Vec::new();
                encode_listing_line(content, &mut wire);
                let (rest2, again) = decode::listing_line(&wire).expect("encoded line frames");
                assert!(rest2.is_empty());
                assert_eq!(again, ListingLine::Data(content));
            }
            ListingLine::End | ListingLine::Data(_) => {}
        }
    }
    if let Ok(s) = decode::parse_stat(data) {
        let text = ok_text(&s.to_bytes());
        assert_eq!(decode::parse_stat(&text), Ok(s));
    }
}

/// Chunk lengths (1..=256) taken in turn from `sizes`, or one chunk when it is empty.
fn chunks<'a>(data: &'a [u8], sizes: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = data;
    let mut i = 0;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = if sizes.is_empty() {
            rest.len()
        } else {
            (usize::from(sizes[i % sizes.len()]) + 1).min(rest.len())
        };
        i += 1;
        let (c, r) = rest.split_at(n);
        rest = r;
        Some(c)
    })
}

/// Target `body_roundtrip`: dot-stuffing then dot-unstuffing over arbitrary chunkings gives
/// the body back (with a CRLF added when it did not end in one), and arbitrary bytes fed to
/// the unstuffer and the line framer with small limits neither panic nor buffer without
/// bound.
pub(crate) fn body_roundtrip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let (Ok(enc_sizes), Ok(dec_sizes), Ok(limit), Ok(use_next)) = (
        Vec::<u8>::arbitrary(&mut u),
        Vec::<u8>::arbitrary(&mut u),
        u.int_in_range(1..=64usize),
        bool::arbitrary(&mut u),
    ) else {
        return;
    };
    let body = u.take_rest();

    // Encode over the chunking, then decode the wire (and whatever follows it) over another.
    let mut wire = Vec::new();
    let mut enc = DotStuffer::new();
    for c in chunks(body, &enc_sizes) {
        enc.encode(c, &mut wire);
    }
    let ends_at_line_start = body.is_empty() || body.ends_with(b"\r\n");
    assert_eq!(enc.at_line_start(), ends_at_line_start);
    enc.finish(&mut wire);
    let mut want = body.to_vec();
    if !ends_at_line_start {
        want.extend_from_slice(b"\r\n");
    }
    let body_len = wire.len();
    wire.extend_from_slice(b"NEXT\r\n");

    let mut dec = DotUnstuffer::new();
    let mut got = Vec::new();
    let mut consumed = 0;
    let mut done = false;
    for c in chunks(&wire, &dec_sizes) {
        let used = if use_next {
            let mut pos = 0;
            loop {
                let (used, found) = dec.next(&c[pos..]).expect("no limit, no error");
                pos += used;
                match found {
                    Unstuffed::Data(d) => got.extend_from_slice(d),
                    Unstuffed::End => {
                        done = true;
                        break;
                    }
                    Unstuffed::NeedMore => break,
                }
            }
            pos
        } else {
            let (used, end) = dec.decode_into(c, &mut got).expect("no limit, no error");
            done = end;
            used
        };
        consumed += used;
        if done {
            break;
        }
        assert_eq!(used, c.len(), "input left over before the end");
    }
    assert!(done && dec.is_done(), "terminator not found");
    assert_eq!(consumed, body_len, "consumed past or before the terminator");
    assert_eq!(got, want, "body changed by stuffing and unstuffing");

    unstuff_raw(body, &dec_sizes, limit);
    frame_raw(body, &enc_sizes, limit);
}

/// Arbitrary bytes through a line-limited unstuffer: no panic, never more output than input,
/// every line handed out within the limit, and a failure is final.
fn unstuff_raw(data: &[u8], sizes: &[u8], limit: usize) {
    let mut dec = DotUnstuffer::with_line_limit(Some(limit));
    let mut out = Vec::new();
    let mut consumed = 0;
    let mut failed = false;
    'chunks: for c in chunks(data, sizes) {
        let mut pos = 0;
        while pos <= c.len() {
            match dec.next(&c[pos..]) {
                Err(e) => {
                    assert_eq!(e.limit, limit);
                    failed = true;
                    break 'chunks;
                }
                Ok((used, found)) => {
                    assert!(pos + used <= c.len());
                    pos += used;
                    consumed += used;
                    match found {
                        Unstuffed::Data(d) => out.extend_from_slice(d),
                        Unstuffed::End => break 'chunks,
                        Unstuffed::NeedMore => {
                            assert_eq!(pos, c.len(), "NeedMore with input left");
                            break;
                        }
                    }
                }
            }
        }
    }
    assert!(out.len() <= consumed, "more octets out than in");
    if failed {
        assert!(dec.next(b"x\r\n").is_err(), "a failed decoder recovered");
    } else {
        for line in out.split_inclusive(|&b| b == b'\n') {
            assert!(
                line.len() <= limit,
                "line of {} over limit {limit}",
                line.len()
            );
        }
    }
}

/// Arbitrary bytes through a small-limit framer: lines are exact slices of the stream within
/// the limit, over-long lines are counted in full, and at most `limit` octets are buffered.
fn frame_raw(data: &[u8], sizes: &[u8], limit: usize) {
    let mut framer = LineFramer::new(limit);
    // Offset in `data` of the first octet of the line being framed.
    let mut line_start = 0usize;
    let mut offset = 0usize;
    for c in chunks(data, sizes) {
        let mut pos = 0;
        loop {
            let (used, found) = framer.next_line(&c[pos..]);
            assert!(pos + used <= c.len());
            pos += used;
            let end = offset + pos;
            match found {
                Framed::Line(l) => {
                    assert!(l.len() <= limit, "line over the limit");
                    assert_eq!(l, &data[line_start..end], "line is not the stream's octets");
                    assert_eq!(l.last(), Some(&b'\n'));
                    line_start = end;
                }
                Framed::TooLong { len } => {
                    assert!(len > limit as u64, "short line reported too long");
                    assert_eq!(line_start as u64 + len, end as u64, "wrong too-long length");
                    assert_eq!(data[end - 1], b'\n');
                    line_start = end;
                }
                Framed::NeedMore => {
                    assert_eq!(pos, c.len(), "NeedMore with input left");
                    break;
                }
            }
            assert!(framer.buffered() <= limit, "buffered past the limit");
        }
        assert!(framer.buffered() <= limit, "buffered past the limit");
        offset += c.len();
    }
    assert_eq!(
        framer.has_partial(),
        line_start < data.len(),
        "partial line state disagrees with the stream"
    );
}

/// Target `value_roundtrip`: an arbitrary valid value encodes to octets that decode to the
/// same value.
pub(crate) fn value_roundtrip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(kind) = u.int_in_range(0..=9u8) else {
        return;
    };
    // Values the generator cannot build from these octets are skipped, like libFuzzer's
    // rejected inputs.
    let _ = value_of_kind(kind, &mut u);
}

fn value_of_kind(kind: u8, u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    match kind {
        0 => command_roundtrip(&Command::arbitrary(u)?),
        1 => {
            let s = StatusLine::arbitrary(u)?;
            reparse(&s.to_bytes(), decode::status_line, &s);
        }
        2 => {
            let g = Greeting::arbitrary(u)?;
            reparse(&g.to_bytes(), decode::greeting, &g);
        }
        3 => {
            let c = Capability::arbitrary(u)?;
            reparse_listing(&c.to_bytes(), decode::parse_capability, &c);
        }
        4 => {
            let l = UidListing::arbitrary(u)?;
            reparse(&l.to_bytes(), decode::uid_listing, &l);
            let mut reply = Vec::new();
            l.encode_reply(&mut reply);
            assert_eq!(decode::parse_uid_listing(&ok_text(&reply)), Ok(l));
        }
        5 => {
            let l = ScanListing::arbitrary(u)?;
            reparse(&l.to_bytes(), decode::scan_listing, &l);
            let mut reply = Vec::new();
            l.encode_reply(&mut reply);
            assert_eq!(decode::parse_scan_listing(&ok_text(&reply)), Ok(l));
        }
        6 => {
            let c = Continuation::arbitrary(u)?;
            reparse(&c.to_bytes(), decode::continuation, &c);
        }
        7 => sasl_roundtrip(&SaslResponse::arbitrary(u)?),
        8 => {
            let l = LangItem::arbitrary(u)?;
            reparse_listing(&l.to_bytes(), decode::parse_lang_item, &l);
        }
        _ => {
            let s = Stat::arbitrary(u)?;
            assert_eq!(decode::parse_stat(&ok_text(&s.to_bytes())), Ok(s));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Session targets: the client and server machines driven by arbitrary sequences of operations
// (input chunk, enqueue, reply, time step, EOF, TLS switch). The properties: no panic, and
// memory bounded by the configured limits whatever the peer sends.

#[derive(Debug, Arbitrary)]
enum ClientOp {
    Input(Vec<u8>),
    Send(Command),
    Auth(u8),
    Transmit,
    Sleep(u16),
    Eof,
    TlsEstablished,
}

/// Bound on what the client may hold: its line limits plus the last input chunk.
fn client_bound(config: &ClientConfig, last_chunk: usize) -> usize {
    config
        .limits
        .sasl
        .max(config.limits.listing)
        .max(config.limits.status)
        + last_chunk
        + 4096
}

pub(crate) fn client_session(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let start = Instant::now();
    let mut now = start;
    let config = ClientConfig::default();
    let mut client = Client::new(config.clone(), now);
    let mut out = Vec::new();
    for _ in 0..64 {
        let Ok(op) = ClientOp::arbitrary(&mut u) else {
            break;
        };
        let mut last = 0;
        match op {
            ClientOp::Input(bytes) => {
                last = bytes.len();
                client.handle_input(&bytes, now);
            }
            ClientOp::Send(cmd) => {
                let _ = client.send(cmd);
            }
            ClientOp::Auth(which) => {
                let user = "user".to_string();
                let password = Secret::new("pass word".to_string());
                let creds = match which % 6 {
                    0 => ClientCredentials::Plain {
                        authzid: None,
                        user,
                        password,
                    },
                    1 => ClientCredentials::Login { user, password },
                    2 => ClientCredentials::CramMd5 { user, password },
                    3 => ClientCredentials::ScramSha256 { user, password },
                    4 => ClientCredentials::XOAuth2 {
                        user,
                        token: password,
                    },
                    _ => ClientCredentials::OAuthBearer {
                        user,
                        token: password,
                        host: None,
                        port: None,
                    },
                };
                let _ = client.auth(creds, b"fuzznonce");
            }
            ClientOp::Transmit => {
                out.clear();
                client.poll_transmit(now, &mut out);
            }
            ClientOp::Sleep(secs) => {
                now += Duration::from_secs(u64::from(secs));
                client.handle_timeout(now);
            }
            ClientOp::Eof => client.handle_eof(now),
            ClientOp::TlsEstablished => client.tls_established(now),
        }
        let mut events = 0usize;
        while let Some(ev) = client.poll_event() {
            events += 1;
            if let Event::BodyChunk { bytes, .. } = ev {
                assert!(!bytes.is_empty());
            }
            assert!(events < 1_000_000, "event loop does not end");
        }
        assert!(
            client.buffered() <= client_bound(&config, last),
            "client holds {} octets",
            client.buffered()
        );
    }
}

#[derive(Debug, Arbitrary)]
enum ServerOp {
    Input(Vec<u8>),
    Transmit,
    Sleep(u16),
    Eof,
    TlsEstablished,
    Shutdown,
}

/// How the fuzzed application answers a server event.
fn answer(
    server: &mut Server,
    ev: ServerEvent,
    u: &mut Unstructured<'_>,
    now: Instant,
    body: &mut Vec<u8>,
) {
    let pick = u8::arbitrary(u).unwrap_or(0);
    // Lines that are not UTF-8 are refused before they reach the backend.
    match &ev {
        ServerEvent::Login(LoginRequest::Pass { user, password }) => {
            assert!(
                std::str::from_utf8(user.as_bytes()).is_ok(),
                "user {user:?}"
            );
            assert!(std::str::from_utf8(password.expose_secret().as_bytes()).is_ok());
        }
        ServerEvent::Login(LoginRequest::Apop { user, .. }) => {
            assert!(
                std::str::from_utf8(user.as_bytes()).is_ok(),
                "user {user:?}"
            );
        }
        _ => {}
    }
    match ev {
        ServerEvent::Login(
            LoginRequest::Pass { .. } | LoginRequest::Apop { .. } | LoginRequest::Sasl { .. },
        ) => {
            let _ = match pick % 4 {
                0 => server.accept_login(),
                1 => server.reject_login(Some(ResponseCode::InUse), "busy", now),
                2 => server.reject_login(Some(ResponseCode::SysTemp), "later", now),
                _ => server.reject_login(None, "bad", now),
            };
        }
        ServerEvent::Login(_) => {
            let _ = server.reject_login(None, "bad", now);
        }
        ServerEvent::SaslCheck(req) => {
            let a = match req {
                CredentialRequest::Scram { .. } if pick % 2 == 0 => CredentialAnswer::Scram(Some(
                    ScramCredentials::derive(b"pass word", b"salt", 4096),
                )),
                CredentialRequest::Scram { .. } => CredentialAnswer::Scram(None),
                CredentialRequest::Token { .. } => CredentialAnswer::Token(if pick % 2 == 0 {
                    Ok(())
                } else {
                    Err(pop3_proto::sasl::OAuthError::new("invalid_token"))
                }),
                _ => CredentialAnswer::Verified(pick % 2 == 0),
            };
            let _ = server.sasl_answer(a);
        }
        ServerEvent::Request(r) => match (r, pick % 3) {
            (_, 0) => {
                let _ = server.reply(StatusLine::err("no").unwrap_or_else(|_| unreachable!()));
            }
            (Request::Stat, _) => {
                let _ = server.reply_stat(Stat { count: 1, size: 10 });
            }
            (Request::List(Some(msg)), _) => {
                let _ = server.reply_scan(ScanListing { msg, size: 10 });
            }
            (Request::Uidl(Some(msg)), _) => {
                let uid = Uid::new("u1").unwrap_or_else(|_| unreachable!());
                let _ = server.reply_uid(&UidListing { msg, uid });
            }
            (Request::List(None) | Request::Uidl(None), _) => {
                let _ = server.begin_multiline("");
                let msg = MsgNum::new(1).unwrap_or_else(|_| unreachable!());
                let _ = server.write_scan(ScanListing { msg, size: 1 });
                let _ = server.end_multiline();
            }
            (Request::Retr(_) | Request::Top { .. }, _) => {
                let _ = server.begin_multiline("");
                *body = Vec::<u8>::arbitrary(u).unwrap_or_default();
            }
            _ => {
                let _ = server.reply(StatusLine::ok("").unwrap_or_else(|_| unreachable!()));
            }
        },
        _ => {}
    }
}

pub(crate) fn server_session(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut now = Instant::now();
    let mut config = ServerConfig::default();
    config.rules.plaintext_auth = true;
    config.stls_offered = true;
    config.sasl_nonce = b"fuzz".to_vec();
    config.rules.high_water = 4096;
    config.apop_timestamp = pop3_proto::Timestamp::new("<1.2@fuzz>").ok();
    let high = config.rules.high_water;
    let limit = config.limits.sasl;
    let mut server = Server::new(config, now);
    let mut body: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for _ in 0..64 {
        let Ok(op) = ServerOp::arbitrary(&mut u) else {
            break;
        };
        let mut last = 0;
        match op {
            // Like an adapter: read only while the machine wants input.
            ServerOp::Input(bytes) if server.wants_input() => {
                last = bytes.len();
                server.handle_input(&bytes, now);
            }
            ServerOp::Input(_) => {}
            ServerOp::Transmit => {
                out.clear();
                server.poll_transmit(now, &mut out);
            }
            ServerOp::Sleep(secs) => {
                now += Duration::from_secs(u64::from(secs));
                server.handle_timeout(now);
                // Every timer that was due has fired: an adapter sleeping until the next
                // deadline must not be woken again at once, for ever.
                assert!(
                    server.is_closed() || server.poll_timeout().is_some_and(|d| d > now),
                    "deadline {:?} not after now",
                    server.poll_timeout().map(|d| d - now)
                );
            }
            ServerOp::Eof => server.handle_eof(now),
            ServerOp::TlsEstablished => server.tls_established(),
            ServerOp::Shutdown => server.close(),
        }
        for _ in 0..10_000 {
            if !body.is_empty() {
                match server.write_body(&body) {
                    Ok(n) => {
                        body.drain(..n);
                        if body.is_empty() {
                            let _ = server.end_multiline();
                        }
                    }
                    Err(_) => body.clear(),
                }
            }
            let Some(ev) = server.poll_event() else { break };
            answer(&mut server, ev, &mut u, now, &mut body);
        }
        // Output is bounded by the high-water mark plus one reply's worth; input by what the
        // caller fed since wants_input() was last true.
        assert!(
            server.pending_output() <= high + 8192,
            "server output {} octets",
            server.pending_output()
        );
        assert!(
            server.buffered_input() <= limit + last + 8192,
            "server input {}",
            server.buffered_input()
        );
    }
}
