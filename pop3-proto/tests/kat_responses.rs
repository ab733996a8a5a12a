//! Known-answer tests for server lines (status lines, greetings, SASL lines, listings,
//! capabilities, LANG items) from the RFC examples and from real servers, with
//! decode-encode-decode round trips over every accepted input.

use std::fmt::Debug;

use pop3_proto::decode::{self, ListingLine};
use pop3_proto::{
    Atom, Capability, CodeText, Continuation, DecodeError, Encode, Expire, Greeting, LangItem,
    Mechanism, MsgNum, OtherCapability, ResponseCode, SaslResponse, ScanListing, Secret, Stat,
    Status, StatusLine, Text, Timestamp, Uid, UidListing, ValueError,
};

type Table<T> = Vec<(&'static [u8], &'static [u8], T)>;
type Parsed<'a, T> = nom::IResult<&'a [u8], T, DecodeError>;

fn m(n: u32) -> MsgNum {
    MsgNum::new(n).unwrap()
}

fn sl(status: Status, code: Option<ResponseCode>, text: &[u8]) -> StatusLine {
    StatusLine::new(status, code, Text::new(text).unwrap()).unwrap()
}

fn ok(text: &[u8]) -> StatusLine {
    sl(Status::Ok, None, text)
}

fn err(text: &[u8]) -> StatusLine {
    sl(Status::Err, None, text)
}

fn err_code(code: ResponseCode, text: &[u8]) -> StatusLine {
    sl(Status::Err, Some(code), text)
}

fn other_code(s: &str) -> ResponseCode {
    ResponseCode::Other(CodeText::new(s).unwrap())
}

fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// Checks a `(input, remainder, value)` table against a decoder.
fn check<T: PartialEq + Debug + Clone>(
    table: &Table<T>,
    f: impl Fn(&'static [u8]) -> Parsed<'static, T>,
) {
    for (input, rest, value) in table {
        assert_eq!(
            f(input),
            Ok((*rest, value.clone())),
            "input {:?}",
            lossy(input)
        );
    }
}

/// Checks that each input fails with the given error.
fn check_err<T: PartialEq + Debug>(
    table: &[(&'static [u8], DecodeError)],
    f: impl Fn(&'static [u8]) -> Parsed<'static, T>,
) {
    for (input, e) in table {
        assert_eq!(
            f(input),
            Err(nom::Err::Error(*e)),
            "input {:?}",
            lossy(input)
        );
    }
}

/// Encodes each value and decodes it again with `f`, which must give back the value.
fn round_trip<T: PartialEq + Debug + Clone>(
    table: &Table<T>,
    encode: impl Fn(&T) -> Vec<u8>,
    f: impl Fn(&[u8]) -> Result<T, DecodeError>,
) {
    for (input, _, value) in table {
        let bytes = encode(value);
        assert_eq!(
            f(&bytes).as_ref(),
            Ok(value),
            "input {:?}, encoded {:?}",
            lossy(input),
            lossy(&bytes)
        );
    }
}

/// Decodes a whole single line (nothing may remain).
fn whole<'a, T>(r: Parsed<'a, T>) -> Result<T, DecodeError> {
    match r {
        Ok((b"", v)) => Ok(v),
        Ok((rest, _)) => panic!("unconsumed {:?}", lossy(rest)),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(e),
        Err(nom::Err::Incomplete(_)) => Err(DecodeError::Incomplete),
    }
}

/// Decodes one multi-line listing line, dot-stuffing undone, with a content parser.
fn listing<T>(
    bytes: &[u8],
    parse: impl Fn(&[u8]) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    match whole(decode::listing_line(bytes))? {
        ListingLine::Data(d) => parse(d),
        ListingLine::End => panic!("an item encoded as the terminator: {:?}", lossy(bytes)),
    }
}

// ---------------------------------------------------------------------------------------------
// Status lines

fn status_table() -> Table<StatusLine> {
    vec![
        // RFC 1939 examples.
        (
            b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n",
            b"",
            ok(b"POP3 server ready <1896.697170952@dbc.mtview.ca.us>"),
        ),
        (
            b"+OK mrose's maildrop has 2 messages (320 octets)\r\n",
            b"",
            ok(b"mrose's maildrop has 2 messages (320 octets)"),
        ),
        (
            b"-ERR sorry, no mailbox for frated here\r\n",
            b"",
            err(b"sorry, no mailbox for frated here"),
        ),
        (
            b"+OK mrose is a real hoopy frood\r\n",
            b"",
            ok(b"mrose is a real hoopy frood"),
        ),
        (
            b"-ERR maildrop already locked\r\n",
            b"",
            err(b"maildrop already locked"),
        ),
        (
            b"+OK maildrop has 1 message (369 octets)\r\n",
            b"",
            ok(b"maildrop has 1 message (369 octets)"),
        ),
        (b"+OK 2 320\r\n", b"", ok(b"2 320")),
        (
            b"+OK 2 messages (320 octets)\r\n",
            b"",
            ok(b"2 messages (320 octets)"),
        ),
        (b"+OK 2 200\r\n", b"", ok(b"2 200")),
        (
            b"-ERR no such message, only 2 messages in maildrop\r\n",
            b"",
            err(b"no such message, only 2 messages in maildrop"),
        ),
        (b"+OK 120 octets\r\n", b"", ok(b"120 octets")),
        (b"+OK message 1 deleted\r\n", b"", ok(b"message 1 deleted")),
        (
            b"-ERR message 2 already deleted\r\n",
            b"",
            err(b"message 2 already deleted"),
        ),
        (b"+OK\r\n", b"", ok(b"")),
        (
            b"+OK maildrop has 2 messages (320 octets)\r\n",
            b"",
            ok(b"maildrop has 2 messages (320 octets)"),
        ),
        (b"-ERR no such message\r\n", b"", err(b"no such message")),
        (
            b"+OK 2 QhdPYR:00WBw1Ph7x7\r\n",
            b"",
            ok(b"2 QhdPYR:00WBw1Ph7x7"),
        ),
        (
            b"+OK dewey POP3 server signing off\r\n",
            b"",
            ok(b"dewey POP3 server signing off"),
        ),
        (
            b"+OK dewey POP3 server signing off (maildrop empty)\r\n",
            b"",
            ok(b"dewey POP3 server signing off (maildrop empty)"),
        ),
        (
            b"+OK dewey POP3 server signing off (2 messages left)\r\n",
            b"",
            ok(b"dewey POP3 server signing off (2 messages left)"),
        ),
        // RFC 2449 §5, §8; RFC 2595 §4; RFC 3206.
        (
            b"+OK Capability list follows\r\n",
            b"",
            ok(b"Capability list follows"),
        ),
        (
            b"-ERR [IN-USE] Do you have another POP session running?\r\n",
            b"",
            err_code(
                ResponseCode::InUse,
                b"Do you have another POP session running?",
            ),
        ),
        (
            b"-ERR [LOGIN-DELAY] wait longer\r\n",
            b"",
            err_code(ResponseCode::LoginDelay, b"wait longer"),
        ),
        (
            b"+OK Begin TLS negotiation\r\n",
            b"",
            ok(b"Begin TLS negotiation"),
        ),
        (
            b"-ERR [SYS/TEMP] Temporary failure\r\n",
            b"",
            err_code(ResponseCode::SysTemp, b"Temporary failure"),
        ),
        (
            b"-ERR [SYS/PERM] Mailbox is corrupt\r\n",
            b"",
            err_code(ResponseCode::SysPerm, b"Mailbox is corrupt"),
        ),
        (
            b"-ERR [AUTH] Invalid login\r\n",
            b"",
            err_code(ResponseCode::Auth, b"Invalid login"),
        ),
        (
            b"-ERR [UTF8] message needs UTF8\r\n",
            b"",
            err_code(ResponseCode::Utf8, b"message needs UTF8"),
        ),
        // Real servers: case, missing or sloppy text, extra spaces, 8-bit text.
        (b"+ok\r\n", b"", ok(b"")),
        (b"-err\r\n", b"", err(b"")),
        (b"+Ok Dovecot ready.\r\n", b"", ok(b"Dovecot ready.")),
        (b"+OK \r\n", b"", ok(b"")),
        (b"+OK\n", b"", ok(b"")),
        (b"+OK hello  \r\n", b"", ok(b"hello  ")),
        (b"+OK  two leading\r\n", b"", ok(b" two leading")),
        (b"+OK 3 messages\r\n", b"", ok(b"3 messages")),
        (
            b"-ERR Passwort ung\xc3\xbcltig\r\n",
            b"",
            err(b"Passwort ung\xc3\xbcltig"),
        ),
        // Response codes: case, hierarchy, unknown codes, things that are not codes.
        (
            b"-ERR [in-use] locked\r\n",
            b"",
            err_code(ResponseCode::InUse, b"locked"),
        ),
        (
            b"-ERR [IN-USE/session] locked\r\n",
            b"",
            err_code(ResponseCode::InUse, b"locked"),
        ),
        (
            b"-ERR [SYS/TEMP/DISK] full\r\n",
            b"",
            err_code(ResponseCode::SysTemp, b"full"),
        ),
        (
            b"-ERR [SYS] down\r\n",
            b"",
            err_code(ResponseCode::Sys, b"down"),
        ),
        (
            b"-ERR [SYS/OTHER] down\r\n",
            b"",
            err_code(ResponseCode::Sys, b"down"),
        ),
        (
            b"-ERR [X-FOO/bar] odd\r\n",
            b"",
            err_code(other_code("X-FOO/bar"), b"odd"),
        ),
        (
            b"-ERR [IN-USE]\r\n",
            b"",
            err_code(ResponseCode::InUse, b""),
        ),
        (
            b"-ERR [IN-USE]x\r\n",
            b"",
            err_code(ResponseCode::InUse, b"x"),
        ),
        (
            b"-ERR [IN-USE]  two\r\n",
            b"",
            err_code(ResponseCode::InUse, b" two"),
        ),
        (b"-ERR [] empty\r\n", b"", err(b"[] empty")),
        (b"-ERR [not a code] x\r\n", b"", err(b"[not a code] x")),
        (b"-ERR [a//b] x\r\n", b"", err(b"[a//b] x")),
        (b"-ERR [UNTERMINATED x\r\n", b"", err(b"[UNTERMINATED x")),
        // The remainder is the next line.
        (b"+OK\r\n1 120\r\n", b"1 120\r\n", ok(b"")),
    ]
}

#[test]
fn status_lines_decode_to_known_values() {
    check(&status_table(), decode::status_line);
}

#[test]
fn status_lines_round_trip() {
    round_trip(&status_table(), Encode::to_bytes, |b| {
        whole(decode::status_line(b))
    });
}

#[test]
fn malformed_status_lines_are_rejected() {
    use DecodeError::*;
    let table: &[(&[u8], DecodeError)] = &[
        (b"+OKAY\r\n", Syntax),
        (b"OK\r\n", Syntax),
        (b"\r\n", Syntax),
        (b"+ OK\r\n", Syntax),
        (b"-ERROR\r\n", Syntax),
        (b"+OK\tx\r\n", Syntax),
        (b"* OK IMAP\r\n", Syntax),
        (b"+OK a\0b\r\n", ForbiddenByte(0)),
        (b"+OK a\rb\r\n", ForbiddenByte(b'\r')),
        (b"+OK\r\r\n", ForbiddenByte(b'\r')),
    ];
    check_err(table, decode::status_line);
    check_err(table, decode::greeting);
    assert!(matches!(
        decode::status_line(b"+OK ready"),
        Err(nom::Err::Incomplete(_))
    ));
}

#[test]
fn status_lines_encode_canonically() {
    let table: Vec<(StatusLine, &[u8])> = vec![
        (ok(b""), b"+OK\r\n"),
        (err(b"no"), b"-ERR no\r\n"),
        (
            StatusLine::err_with_code(ResponseCode::InUse, "locked").unwrap(),
            b"-ERR [IN-USE] locked\r\n",
        ),
        (err_code(ResponseCode::SysTemp, b""), b"-ERR [SYS/TEMP]\r\n"),
        (err_code(other_code("x-a/b"), b"t"), b"-ERR [x-a/b] t\r\n"),
    ];
    for (v, wire) in table {
        assert_eq!(v.to_bytes(), wire, "{v:?}");
    }
}

#[test]
fn status_line_constructors_validate() {
    // Text that would read back as a response code needs the code made explicit.
    assert_eq!(
        StatusLine::err("[IN-USE] locked"),
        Err(ValueError::Malformed)
    );
    assert!(StatusLine::err("[not a code] x").is_ok());
    assert_eq!(
        StatusLine::ok("a\r\nb"),
        Err(ValueError::ForbiddenByte(b'\r'))
    );
    assert_eq!(StatusLine::ok("a\0"), Err(ValueError::ForbiddenByte(0)));
    assert_eq!(CodeText::new("IN-USE"), Err(ValueError::KnownKeyword));
    assert_eq!(CodeText::new("sys/x"), Err(ValueError::KnownKeyword));
    assert_eq!(CodeText::new("a]b"), Err(ValueError::Malformed));
    assert_eq!(CodeText::new("a b"), Err(ValueError::Malformed));
    assert_eq!(CodeText::new(""), Err(ValueError::Malformed));
    assert_eq!(CodeText::new("a/"), Err(ValueError::Malformed));
    assert_eq!(
        ResponseCode::from_bytes(b"Sys/Perm"),
        Some(ResponseCode::SysPerm)
    );
    assert_eq!(ResponseCode::from_bytes(b"a b"), None);
}

// ---------------------------------------------------------------------------------------------
// Greetings

const RFC_TS: &[u8] = b"<1896.697170952@dbc.mtview.ca.us>";

fn greeting_table() -> Table<(Greeting, Option<&'static [u8]>)> {
    let g = |l: StatusLine| Greeting::new(l);
    vec![
        (
            b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n",
            b"",
            (
                g(ok(b"POP3 server ready <1896.697170952@dbc.mtview.ca.us>")),
                Some(RFC_TS),
            ),
        ),
        (
            b"+OK POP3 server ready\r\n",
            b"",
            (g(ok(b"POP3 server ready")), None),
        ),
        (b"+OK\r\n", b"", (g(ok(b"")), None)),
        (
            b"+OK ready <1896.697170952@dbc.mtview.ca.us> today\r\n",
            b"",
            (
                g(ok(b"ready <1896.697170952@dbc.mtview.ca.us> today")),
                Some(RFC_TS),
            ),
        ),
        (
            b"+OK <x> then <a@b>\r\n",
            b"",
            (g(ok(b"<x> then <a@b>")), Some(b"<a@b>")),
        ),
        (b"+OK <a<b@c>\r\n", b"", (g(ok(b"<a<b@c>")), Some(b"<b@c>"))),
        // Not timestamps: no '@', nothing before or after it, a space inside, 8-bit.
        (b"+OK <no-at>\r\n", b"", (g(ok(b"<no-at>")), None)),
        (b"+OK <@b>\r\n", b"", (g(ok(b"<@b>")), None)),
        (b"+OK <a@>\r\n", b"", (g(ok(b"<a@>")), None)),
        (b"+OK <a @b>\r\n", b"", (g(ok(b"<a @b>")), None)),
        (b"+OK <\xc3\xa9@b>\r\n", b"", (g(ok(b"<\xc3\xa9@b>")), None)),
        (b"+OK <a@b\r\n", b"", (g(ok(b"<a@b")), None)),
        (
            b"-ERR [SYS/TEMP] too busy\r\n",
            b"",
            (g(err_code(ResponseCode::SysTemp, b"too busy")), None),
        ),
    ]
}

fn greeting_with_ts(input: &[u8]) -> Parsed<'_, (Greeting, Option<&'static [u8]>)> {
    decode::greeting(input).map(|(rest, g)| {
        let ts = g.timestamp().map(|t| &*t.as_bytes().to_vec().leak());
        (rest, (g, ts))
    })
}

#[test]
fn greetings_decode_with_their_timestamp() {
    check(&greeting_table(), greeting_with_ts);
}

#[test]
fn greetings_round_trip() {
    round_trip(
        &greeting_table(),
        |(g, _)| g.to_bytes(),
        |b| whole(greeting_with_ts(b)),
    );
}

#[test]
fn a_greeting_built_with_a_timestamp_finds_it() {
    let ts = Timestamp::new(RFC_TS).unwrap();
    let g = Greeting::ok_with_timestamp(b"POP3 server ready", Some(&ts)).unwrap();
    assert_eq!(
        g.to_bytes(),
        b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
    );
    assert_eq!(g.timestamp(), Some(ts.clone()));
    let bare = Greeting::ok_with_timestamp(b"", Some(&ts)).unwrap();
    assert_eq!(
        bare.to_bytes(),
        b"+OK <1896.697170952@dbc.mtview.ca.us>\r\n"
    );
}

#[test]
fn timestamps_are_checked_strictly() {
    assert!(Timestamp::new("<a@b>").is_ok());
    for bad in [
        &b"a@b"[..],
        b"<a@b",
        b"a@b>",
        b"<ab>",
        b"<@b>",
        b"<a@>",
        b"<a b@c>",
        b"<a<b@c>",
        b"<a@b\x7f>",
        b"",
    ] {
        assert_eq!(
            Timestamp::new(bad),
            Err(ValueError::Malformed),
            "{:?}",
            lossy(bad)
        );
    }
    let mut long = b"<".to_vec();
    long.extend(std::iter::repeat_n(b'a', 250));
    long.extend_from_slice(b"@b.c>");
    assert_eq!(long.len(), 256);
    assert!(Timestamp::new(long.clone()).is_ok());
    long.insert(1, b'a');
    assert_eq!(Timestamp::new(long), Err(ValueError::TooLong(256)));
}

// ---------------------------------------------------------------------------------------------
// SASL lines

fn cont(d: &[u8]) -> Continuation {
    Continuation(Secret::new(d.to_vec()))
}

fn continuation_table() -> Table<Continuation> {
    vec![
        // RFC 5034 §6, CRAM-MD5.
        (
            b"+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n",
            b"",
            cont(b"<1896.697170952@postoffice.reston.mci.net>"),
        ),
        (b"+ \r\n", b"", cont(b"")),
        (b"+\r\n", b"", cont(b"")),
        (b"+ YQ==  \r\n", b"", cont(b"a")),
        (b"+ AHRlc3QAdGVzdA==\n", b"", cont(b"\0test\0test")),
        (b"+ \r\n*\r\n", b"*\r\n", cont(b"")),
    ]
}

#[test]
fn continuations_decode_to_known_values() {
    check(&continuation_table(), decode::continuation);
    use DecodeError::*;
    check_err(
        &[
            (b"+OK\r\n", Syntax),
            (b"+x\r\n", Syntax),
            (b"-ERR\r\n", Syntax),
            (b"\r\n", Syntax),
            (b"+ !!!\r\n", InvalidBase64),
            (b"+ YQ\r\n", InvalidBase64),
            (b"+ Y Q==\r\n", InvalidBase64),
            (b"+ YQ==\0\r\n", ForbiddenByte(0)),
        ],
        decode::continuation,
    );
}

#[test]
fn continuations_round_trip_and_encode_canonically() {
    round_trip(&continuation_table(), Encode::to_bytes, |b| {
        whole(decode::continuation(b))
    });
    assert_eq!(cont(b"").to_bytes(), b"+ \r\n");
    assert_eq!(cont(b"a").to_bytes(), b"+ YQ==\r\n");
}

#[test]
fn continuation_is_told_apart_from_ok() {
    assert!(decode::is_continuation(b"+ abc"));
    assert!(decode::is_continuation(b"+ "));
    assert!(decode::is_continuation(b"+"));
    assert!(!decode::is_continuation(b"+OK"));
    assert!(!decode::is_continuation(b"+ok"));
    assert!(!decode::is_continuation(b"-ERR"));
    assert!(!decode::is_continuation(b""));
}

fn sasl_table() -> Table<SaslResponse> {
    let data = |d: &[u8]| SaslResponse::Data(Secret::new(d.to_vec()));
    vec![
        // RFC 5034 §6, CRAM-MD5.
        (
            b"dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n",
            b"",
            data(b"tim b913a602c7eda7a495b4e6e7334d3890"),
        ),
        (b"*\r\n", b"", SaslResponse::Cancel),
        (b"\r\n", b"", data(b"")),
        (b"=\r\n", b"", data(b"")),
        (b"AHRlc3QAdGVzdA==\r\n", b"", data(b"\0test\0test")),
        (b"YQ==\nQUIT\r\n", b"QUIT\r\n", data(b"a")),
    ]
}

#[test]
fn sasl_responses_decode_to_known_values() {
    check(&sasl_table(), decode::sasl_response);
    use DecodeError::*;
    check_err(
        &[
            (b"**\r\n", InvalidBase64),
            (b"abc\r\n", InvalidBase64),
            (b" YQ==\r\n", InvalidBase64),
            (b"YQ== \r\n", InvalidBase64),
            (b"YR==\r\n", InvalidBase64),
            (b"YQ\0==\r\n", ForbiddenByte(0)),
        ],
        decode::sasl_response,
    );
}

#[test]
fn sasl_responses_round_trip_and_encode_canonically() {
    round_trip(&sasl_table(), Encode::to_bytes, |b| {
        whole(decode::sasl_response(b))
    });
    assert_eq!(SaslResponse::Cancel.to_bytes(), b"*\r\n");
    assert_eq!(
        SaslResponse::Data(Secret::new(Vec::new())).to_bytes(),
        b"\r\n"
    );
}

#[test]
fn sasl_data_does_not_appear_in_debug_output() {
    let (_, r) =
        decode::sasl_response(b"dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n").unwrap();
    let (_, c) =
        decode::continuation(b"+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n")
            .unwrap();
    for debug in [format!("{r:?}"), format!("{c:?}")] {
        assert!(debug.contains("Secret(..)"), "{debug}");
        assert!(!debug.contains("tim"), "{debug}");
        assert!(!debug.contains("1896"), "{debug}");
        assert!(!debug.contains("116"), "{debug}");
    }
}

// ---------------------------------------------------------------------------------------------
// STAT, scan listings, unique-id listings

#[test]
fn stat_replies_decode_to_known_values() {
    let table: &[(&[u8], Stat)] = &[
        (
            b"2 320",
            Stat {
                count: 2,
                size: 320,
            },
        ),
        (
            b"2 320 extra info",
            Stat {
                count: 2,
                size: 320,
            },
        ),
        (
            b" 2  320 ",
            Stat {
                count: 2,
                size: 320,
            },
        ),
        (b"0 0", Stat { count: 0, size: 0 }),
        (
            b"18446744073709551615 18446744073709551615",
            Stat {
                count: u64::MAX,
                size: u64::MAX,
            },
        ),
    ];
    for (text, value) in table {
        assert_eq!(decode::parse_stat(text), Ok(*value), "{:?}", lossy(text));
        // As a whole reply, and back.
        let mut wire = b"+OK ".to_vec();
        wire.extend_from_slice(text);
        wire.extend_from_slice(b"\r\n");
        let (_, line) = decode::status_line(&wire).unwrap();
        assert_eq!(decode::parse_stat(line.text().as_bytes()), Ok(*value));
        let (_, again) = decode::status_line(&value.to_bytes()).unwrap();
        assert!(again.is_ok());
        assert_eq!(decode::parse_stat(again.text().as_bytes()), Ok(*value));
    }
    assert_eq!(
        Stat {
            count: 2,
            size: 320
        }
        .to_bytes(),
        b"+OK 2 320\r\n"
    );
    use DecodeError::*;
    for (text, e) in [
        (&b""[..], MissingArgument),
        (b"2", MissingArgument),
        (b"  2  ", MissingArgument),
        (b"two 320", InvalidNumber),
        (b"2 -1", InvalidNumber),
        (b"2 +1", InvalidNumber),
        (b"2 320octets", InvalidNumber),
        (b"18446744073709551616 0", InvalidNumber),
    ] {
        assert_eq!(decode::parse_stat(text), Err(e), "{:?}", lossy(text));
    }
}

fn scan(msg: u32, size: u64) -> ScanListing {
    ScanListing { msg: m(msg), size }
}

fn scan_table() -> Table<ScanListing> {
    vec![
        (b"1 120\r\n", b"", scan(1, 120)),
        (b"2 200\r\n.\r\n", b".\r\n", scan(2, 200)),
        (b"1 120 extra info\r\n", b"", scan(1, 120)),
        (b"3 4096 (seen)\r\n", b"", scan(3, 4096)),
        (b" 1 120\r\n", b"", scan(1, 120)),
        (b"1  120  \r\n", b"", scan(1, 120)),
        (b"1 120\n", b"", scan(1, 120)),
        (b"007 0\r\n", b"", scan(7, 0)),
        (
            b"4294967295 18446744073709551615\r\n",
            b"",
            scan(u32::MAX, u64::MAX),
        ),
    ]
}

#[test]
fn scan_listings_decode_to_known_values() {
    check(&scan_table(), decode::scan_listing);
    use DecodeError::*;
    check_err(
        &[
            (b"0 120\r\n", ZeroMessageNumber),
            (b"1\r\n", Syntax),
            (b"1 \r\n", Syntax),
            (b"1 x\r\n", Syntax),
            (b"x 1\r\n", Syntax),
            (b"-1 5\r\n", Syntax),
            (b"1 -5\r\n", Syntax),
            (b"1 120x\r\n", Syntax),
            (b"\r\n", Syntax),
            (b"4294967296 1\r\n", InvalidNumber),
            (b"4772185884 1\r\n", InvalidNumber),
            (b"1 18446744073709551616\r\n", InvalidNumber),
            (b"1 1\0\r\n", ForbiddenByte(0)),
        ],
        decode::scan_listing,
    );
}

#[test]
fn scan_listings_round_trip_as_lines_and_replies() {
    let t = scan_table();
    round_trip(&t, Encode::to_bytes, |b| whole(decode::scan_listing(b)));
    round_trip(&t, Encode::to_bytes, |b| {
        listing(b, decode::parse_scan_listing)
    });
    // The single-line reply to `LIST n` (RFC 1939: "+OK 2 200").
    round_trip(
        &t,
        |v| {
            let mut out = Vec::new();
            v.encode_reply(&mut out);
            out
        },
        |b| {
            let line = whole(decode::status_line(b))?;
            assert!(line.is_ok());
            decode::parse_scan_listing(line.text().as_bytes())
        },
    );
    let mut reply = Vec::new();
    scan(2, 200).encode_reply(&mut reply);
    assert_eq!(reply, b"+OK 2 200\r\n");
    assert_eq!(scan(1, 120).to_bytes(), b"1 120\r\n");
}

fn uidl(msg: u32, uid: &[u8]) -> UidListing {
    UidListing {
        msg: m(msg),
        uid: Uid::new(uid).unwrap(),
    }
}

const UID70: &[u8] = b"0123456789012345678901234567890123456789012345678901234567890123456789";

fn uid_table() -> Table<UidListing> {
    vec![
        // RFC 1939 §7.
        (
            b"1 whqtswO00WBw418f9t5JxYwZ\r\n",
            b"",
            uidl(1, b"whqtswO00WBw418f9t5JxYwZ"),
        ),
        (
            b"2 QhdPYR:00WBw1Ph7x7\r\n.\r\n",
            b".\r\n",
            uidl(2, b"QhdPYR:00WBw1Ph7x7"),
        ),
        (b"1 uid \r\n", b"", uidl(1, b"uid")),
        (b" 1  uid\r\n", b"", uidl(1, b"uid")),
        (b"3 !~\n", b"", uidl(3, b"!~")),
        (
            b"1 0123456789012345678901234567890123456789012345678901234567890123456789\r\n",
            b"",
            uidl(1, UID70),
        ),
    ]
}

#[test]
fn uid_listings_decode_to_known_values() {
    check(&uid_table(), decode::uid_listing);
    use DecodeError::*;
    check_err(
        &[
            (
                b"1 01234567890123456789012345678901234567890123456789012345678901234567890\r\n",
                InvalidUid,
            ),
            (b"1 a\x7fb\r\n", InvalidUid),
            (b"1 \xc3\xa9\r\n", InvalidUid),
            (b"1 a b\r\n", Syntax),
            (b"1\r\n", Syntax),
            (b"1 \r\n", Syntax),
            (b"0 a\r\n", ZeroMessageNumber),
            (b"4294967296 a\r\n", InvalidNumber),
        ],
        decode::uid_listing,
    );
}

#[test]
fn uid_listings_round_trip_as_lines_and_replies() {
    let t = uid_table();
    round_trip(&t, Encode::to_bytes, |b| whole(decode::uid_listing(b)));
    round_trip(&t, Encode::to_bytes, |b| {
        listing(b, decode::parse_uid_listing)
    });
    round_trip(
        &t,
        |v| {
            let mut out = Vec::new();
            v.encode_reply(&mut out);
            out
        },
        |b| {
            let line = whole(decode::status_line(b))?;
            decode::parse_uid_listing(line.text().as_bytes())
        },
    );
    let mut reply = Vec::new();
    uidl(2, b"QhdPYR:00WBw1Ph7x7").encode_reply(&mut reply);
    assert_eq!(reply, b"+OK 2 QhdPYR:00WBw1Ph7x7\r\n");
}

// ---------------------------------------------------------------------------------------------
// Capabilities

fn other(tag: &str, params: &[&str]) -> Capability {
    Capability::Other(
        OtherCapability::new(
            Atom::new(tag).unwrap(),
            params.iter().map(|p| Atom::new(*p).unwrap()).collect(),
        )
        .unwrap(),
    )
}

fn sasl(mechs: &[&str]) -> Capability {
    Capability::Sasl(mechs.iter().map(|s| Mechanism::new(*s).unwrap()).collect())
}

fn capa_table() -> Table<Capability> {
    vec![
        // The RFC 2449 §5 example.
        (b"TOP\r\n", b"", Capability::Top),
        (b"USER\r\n", b"", Capability::User),
        (
            b"SASL CRAM-MD5 KERBEROS_V4\r\n",
            b"",
            sasl(&["CRAM-MD5", "KERBEROS_V4"]),
        ),
        (b"RESP-CODES\r\n", b"", Capability::RespCodes),
        (
            b"LOGIN-DELAY 900\r\n",
            b"",
            Capability::LoginDelay {
                secs: 900,
                per_user: false,
            },
        ),
        (b"PIPELINING\r\n", b"", Capability::Pipelining),
        (
            b"EXPIRE 60\r\n",
            b"",
            Capability::Expire {
                policy: Expire::Days(60),
                per_user: false,
            },
        ),
        (b"UIDL\r\n", b"", Capability::Uidl),
        (
            b"IMPLEMENTATION Shlemazle-Plotz-v302\r\n",
            b"",
            Capability::Implementation(Text::new("Shlemazle-Plotz-v302").unwrap()),
        ),
        // RFC 2595, 3206, 6856.
        (b"STLS\r\n", b"", Capability::Stls),
        (b"AUTH-RESP-CODE\r\n", b"", Capability::AuthRespCode),
        (b"LANG\r\n", b"", Capability::Lang),
        (b"UTF8\r\n", b"", Capability::Utf8 { user: false }),
        (b"UTF8 USER\r\n", b"", Capability::Utf8 { user: true }),
        // Real servers: case, trailing spaces, per-user values, odd parameters.
        (b"top\r\n", b"", Capability::Top),
        (b"TOP \r\n", b"", Capability::Top),
        (b" UIDL  \r\n", b"", Capability::Uidl),
        (b"Sasl plain login\r\n", b"", sasl(&["PLAIN", "LOGIN"])),
        (b"SASL PLAIN LOGIN\r\n", b"", sasl(&["PLAIN", "LOGIN"])),
        (b"SASL\r\n", b"", sasl(&[])),
        (b"utf8 user\r\n", b"", Capability::Utf8 { user: true }),
        (
            b"LOGIN-DELAY 900 USER\r\n",
            b"",
            Capability::LoginDelay {
                secs: 900,
                per_user: true,
            },
        ),
        (
            b"EXPIRE NEVER USER\r\n",
            b"",
            Capability::Expire {
                policy: Expire::Never,
                per_user: true,
            },
        ),
        (
            b"expire never\r\n",
            b"",
            Capability::Expire {
                policy: Expire::Never,
                per_user: false,
            },
        ),
        (
            b"EXPIRE 0\r\n",
            b"",
            Capability::Expire {
                policy: Expire::Days(0),
                per_user: false,
            },
        ),
        (
            b"IMPLEMENTATION  Dovecot  2.3 \r\n",
            b"",
            Capability::Implementation(Text::new(" Dovecot  2.3 ").unwrap()),
        ),
        (
            b"implementation x\r\n",
            b"",
            Capability::Implementation(Text::new("x").unwrap()),
        ),
        (
            b"IMPLEMENTATION\r\n",
            b"",
            Capability::Implementation(Text::empty()),
        ),
        // Unknown capabilities and known tags with parameters that do not parse: `Other`.
        (b"X-FOO bar baz\r\n", b"", other("X-FOO", &["bar", "baz"])),
        (b"XTND\r\n", b"", other("XTND", &[])),
        (b"LOGIN-DELAY abc\r\n", b"", other("LOGIN-DELAY", &["abc"])),
        (b"LOGIN-DELAY\r\n", b"", other("LOGIN-DELAY", &[])),
        (
            b"LOGIN-DELAY 9 9\r\n",
            b"",
            other("LOGIN-DELAY", &["9", "9"]),
        ),
        (
            b"LOGIN-DELAY 99999999999999999999\r\n",
            b"",
            other("LOGIN-DELAY", &["99999999999999999999"]),
        ),
        (b"EXPIRE soon\r\n", b"", other("EXPIRE", &["soon"])),
        (b"EXPIRE 60 FOO\r\n", b"", other("EXPIRE", &["60", "FOO"])),
        (b"UTF8 FOO\r\n", b"", other("UTF8", &["FOO"])),
        (b"TOP extra\r\n", b"", other("TOP", &["extra"])),
        (b"SASL PLAIN X@Y\r\n", b"", other("SASL", &["PLAIN", "X@Y"])),
        (
            b"x-\xc3\xa9t\xc3\xa9 a\r\n",
            b"",
            other("x-\u{e9}t\u{e9}", &["a"]),
        ),
        (b"TOP\r\nUSER\r\n", b"USER\r\n", Capability::Top),
    ]
}

#[test]
fn capabilities_decode_to_known_values() {
    check(&capa_table(), decode::capability);
    use DecodeError::*;
    check_err(
        &[
            (b"\r\n", Syntax),
            (b"   \r\n", Syntax),
            (b"TOP\0\r\n", ForbiddenByte(0)),
        ],
        decode::capability,
    );
}

#[test]
fn capabilities_round_trip_through_a_listing_line() {
    round_trip(&capa_table(), Encode::to_bytes, |b| {
        listing(b, decode::parse_capability)
    });
    let table: Vec<(Capability, &[u8])> = vec![
        (sasl(&["cram-md5", "plain"]), b"SASL CRAM-MD5 PLAIN\r\n"),
        (
            Capability::LoginDelay {
                secs: 900,
                per_user: true,
            },
            b"LOGIN-DELAY 900 USER\r\n",
        ),
        (
            Capability::Expire {
                policy: Expire::Never,
                per_user: false,
            },
            b"EXPIRE NEVER\r\n",
        ),
        (
            Capability::Implementation(Text::empty()),
            b"IMPLEMENTATION\r\n",
        ),
        // A line that starts with a dot is stuffed.
        (other(".hidden", &["x"]), b"..hidden x\r\n"),
    ];
    for (v, wire) in table {
        assert_eq!(v.to_bytes(), wire, "{v:?}");
    }
}

#[test]
fn other_capability_refuses_known_forms() {
    let a = |s: &str| Atom::new(s).unwrap();
    assert_eq!(
        OtherCapability::new(a("TOP"), vec![]),
        Err(ValueError::KnownKeyword)
    );
    assert_eq!(
        OtherCapability::new(a("expire"), vec![a("never")]),
        Err(ValueError::KnownKeyword)
    );
    assert_eq!(
        OtherCapability::new(a("IMPLEMENTATION"), vec![a("x")]),
        Err(ValueError::KnownKeyword)
    );
    assert!(OtherCapability::new(a("TOP"), vec![a("x")]).is_ok());
}

#[test]
fn a_whole_rfc_2449_capa_reply_parses() {
    let wire: &[u8] = b"+OK Capability list follows\r\nTOP\r\nUSER\r\n\
        SASL CRAM-MD5 KERBEROS_V4\r\nRESP-CODES\r\nLOGIN-DELAY 900\r\nPIPELINING\r\n\
        EXPIRE 60\r\nUIDL\r\nIMPLEMENTATION Shlemazle-Plotz-v302\r\n.\r\n";
    let (mut rest, first) = decode::status_line(wire).unwrap();
    assert!(first.is_ok());
    let mut caps = Vec::new();
    loop {
        let (r, l) = decode::listing_line(rest).unwrap();
        rest = r;
        match l {
            ListingLine::Data(d) => caps.push(decode::parse_capability(d).unwrap()),
            ListingLine::End => break,
        }
    }
    assert!(rest.is_empty());
    let expected: Vec<Capability> = capa_table().into_iter().take(9).map(|t| t.2).collect();
    assert_eq!(caps, expected);
}

// ---------------------------------------------------------------------------------------------
// LANG items and listing lines

fn lang(tag: &str, desc: &[u8]) -> LangItem {
    LangItem {
        tag: Atom::new(tag).unwrap(),
        description: Text::new(desc).unwrap(),
    }
}

fn lang_table() -> Table<LangItem> {
    vec![
        // RFC 6856 §3.
        (b"en English\r\n", b"", lang("en", b"English")),
        (
            b"en-boont English Boontling dialect\r\n",
            b"",
            lang("en-boont", b"English Boontling dialect"),
        ),
        (b"de Deutsch\r\n", b"", lang("de", b"Deutsch")),
        (b"es Espa\xc3\xb1ol\r\n", b"", lang("es", b"Espa\xc3\xb1ol")),
        (b"i-default\r\n", b"", lang("i-default", b"")),
        (b"sv  Svenska \r\n", b"", lang("sv", b" Svenska ")),
        (b"it Italiano\r\n.\r\n", b".\r\n", lang("it", b"Italiano")),
    ]
}

#[test]
fn lang_items_decode_and_round_trip() {
    check(&lang_table(), decode::lang_item);
    round_trip(&lang_table(), Encode::to_bytes, |b| {
        listing(b, decode::parse_lang_item)
    });
    check_err(
        &[
            (b"\r\n", DecodeError::Syntax),
            (b"en\0\r\n", DecodeError::ForbiddenByte(0)),
        ],
        decode::lang_item,
    );
    assert_eq!(lang(".x", b"").to_bytes(), b"..x\r\n");
}

#[test]
fn listing_lines_are_classified_and_unstuffed() {
    let table: Table<ListingLine<'static>> = vec![
        (b".\r\n", b"", ListingLine::End),
        (b".\n", b"", ListingLine::End),
        (b".\r\n+OK\r\n", b"+OK\r\n", ListingLine::End),
        (b"..\r\n", b"", ListingLine::Data(b".")),
        (b"..foo\r\n", b"", ListingLine::Data(b".foo")),
        (b".foo\r\n", b"", ListingLine::Data(b"foo")),
        (b"1 120\r\n", b"", ListingLine::Data(b"1 120")),
        (b"\r\n", b"", ListingLine::Data(b"")),
        (b". \r\n", b"", ListingLine::Data(b" ")),
        (b"1 120\r\n.\r\n", b".\r\n", ListingLine::Data(b"1 120")),
    ];
    check(&table, decode::listing_line);
    for i in [&b"."[..], b".\r", b"1 120", b""] {
        assert!(matches!(
            decode::listing_line(i),
            Err(nom::Err::Incomplete(_))
        ));
    }
    // The encoder stuffs exactly the lines that need it.
    let mut out = Vec::new();
    pop3_proto::encode::encode_listing_line(b".", &mut out);
    pop3_proto::encode::encode_listing_line(b"a.", &mut out);
    pop3_proto::encode::encode_listing_line(b"", &mut out);
    out.extend_from_slice(pop3_proto::encode::TERMINATOR);
    assert_eq!(out, b"..\r\na.\r\n\r\n.\r\n");
    let mut rest = &out[..];
    let mut lines = Vec::new();
    loop {
        let (r, l) = decode::listing_line(rest).unwrap();
        rest = r;
        if l == ListingLine::End {
            break;
        }
        lines.push(l);
    }
    assert_eq!(
        lines,
        [
            ListingLine::Data(b"."),
            ListingLine::Data(b"a."),
            ListingLine::Data(b"")
        ]
    );
}
