//! Known-answer tests for command lines: `(input, remainder, value)` tables, the error each
//! malformed line gets, and decode-encode-decode round trips over every accepted input.

use pop3_proto::{
    ApopDigest, Atom, AuthCommand, Command, DecodeError, Encode, Keyword, Mechanism, MsgNum,
    Secret, Text, decode,
};

fn m(n: u32) -> MsgNum {
    MsgNum::new(n).unwrap()
}

fn atom(s: &[u8]) -> Atom {
    Atom::new(s).unwrap()
}

fn pass(s: &[u8]) -> Command {
    Command::Pass(Secret::new(Text::new(s).unwrap()))
}

fn mech(s: &str) -> Mechanism {
    Mechanism::new(s).unwrap()
}

fn auth(mechanism: &str, ir: Option<&[u8]>) -> Command {
    Command::Auth(Some(AuthCommand {
        mechanism: mech(mechanism),
        initial_response: ir.map(|d| Secret::new(d.to_vec())),
    }))
}

fn unknown(kw: &str, args: Option<&[u8]>) -> Command {
    Command::Unknown {
        keyword: Keyword::new(kw).unwrap(),
        args: args.map(|a| Text::new(a).unwrap()),
    }
}

/// Parses 32 hex characters; an independent oracle for the decoder's digest parsing.
fn digest(hex: &str) -> ApopDigest {
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    ApopDigest(out)
}

/// The RFC 1939 §7 digest of `<1896.697170952@dbc.mtview.ca.us>tanstaaf`.
const RFC_DIGEST: &str = "c4c9334bac560ecc979e58001b3e22fb";

fn apop(name: &[u8], hex: &str) -> Command {
    Command::Apop {
        name: atom(name),
        digest: Secret::new(digest(hex)),
    }
}

fn ok_table() -> Vec<(&'static [u8], &'static [u8], Command)> {
    vec![
        // RFC 1939 example exchanges (§4 to §7).
        (b"USER mrose\r\n", b"", Command::User(atom(b"mrose"))),
        (b"USER frated\r\n", b"", Command::User(atom(b"frated"))),
        (b"PASS secret\r\n", b"", pass(b"secret")),
        (b"PASS tanstaaf\r\n", b"", pass(b"tanstaaf")),
        (
            b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n",
            b"",
            apop(b"mrose", RFC_DIGEST),
        ),
        (b"STAT\r\n", b"", Command::Stat),
        (b"LIST\r\n", b"", Command::List(None)),
        (b"LIST 2\r\n", b"", Command::List(Some(m(2)))),
        (b"LIST 3\r\n", b"", Command::List(Some(m(3)))),
        (b"RETR 1\r\n", b"", Command::Retr(m(1))),
        (b"DELE 1\r\n", b"", Command::Dele(m(1))),
        (b"DELE 2\r\n", b"", Command::Dele(m(2))),
        (b"NOOP\r\n", b"", Command::Noop),
        (b"RSET\r\n", b"", Command::Rset),
        (
            b"TOP 1 10\r\n",
            b"",
            Command::Top {
                msg: m(1),
                lines: 10,
            },
        ),
        (
            b"TOP 100 3\r\n",
            b"",
            Command::Top {
                msg: m(100),
                lines: 3,
            },
        ),
        (b"UIDL\r\n", b"", Command::Uidl(None)),
        (b"UIDL 2\r\n", b"", Command::Uidl(Some(m(2)))),
        (b"UIDL 3\r\n", b"", Command::Uidl(Some(m(3)))),
        (b"QUIT\r\n", b"", Command::Quit),
        // RFC 2449, 2595, 5034, 6856.
        (b"CAPA\r\n", b"", Command::Capa),
        (b"STLS\r\n", b"", Command::Stls),
        (b"AUTH\r\n", b"", Command::Auth(None)),
        (b"AUTH CRAM-MD5\r\n", b"", auth("CRAM-MD5", None)),
        (
            b"AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n",
            b"",
            auth("PLAIN", Some(b"test\0test\0test")),
        ),
        (b"AUTH PLAIN =\r\n", b"", auth("PLAIN", Some(b""))),
        (b"auth plain\r\n", b"", auth("PLAIN", None)),
        (b"AUTH X-OAUTH2_V2\r\n", b"", auth("X-OAUTH2_V2", None)),
        (b"UTF8\r\n", b"", Command::Utf8),
        (b"LANG\r\n", b"", Command::Lang(None)),
        (b"LANG fr\r\n", b"", Command::Lang(Some(atom(b"fr")))),
        (b"LANG *\r\n", b"", Command::Lang(Some(atom(b"*")))),
        // Keywords are case-insensitive.
        (b"quit\r\n", b"", Command::Quit),
        (b"QuIt\r\n", b"", Command::Quit),
        (b"stat\r\n", b"", Command::Stat),
        (b"list 1\r\n", b"", Command::List(Some(m(1)))),
        (
            b"Top 1 10\r\n",
            b"",
            Command::Top {
                msg: m(1),
                lines: 10,
            },
        ),
        (b"uidl\r\n", b"", Command::Uidl(None)),
        (b"user mrose\r\n", b"", Command::User(atom(b"mrose"))),
        (b"pass secret\r\n", b"", pass(b"secret")),
        (b"capa\r\n", b"", Command::Capa),
        (b"stls\r\n", b"", Command::Stls),
        (b"utf8\r\n", b"", Command::Utf8),
        // Bare LF, extra and trailing spaces.
        (b"QUIT\n", b"", Command::Quit),
        (b"LIST 1  \r\n", b"", Command::List(Some(m(1)))),
        (b"LIST   1\r\n", b"", Command::List(Some(m(1)))),
        (b"LIST \r\n", b"", Command::List(None)),
        (b"QUIT \r\n", b"", Command::Quit),
        (
            b"TOP  1   10 \r\n",
            b"",
            Command::Top {
                msg: m(1),
                lines: 10,
            },
        ),
        (b"USER  mrose \r\n", b"", Command::User(atom(b"mrose"))),
        // Leading zeros and the extremes of the number ranges.
        (b"RETR 007\r\n", b"", Command::Retr(m(7))),
        (b"LIST 0001\r\n", b"", Command::List(Some(m(1)))),
        (
            b"LIST 4294967295\r\n",
            b"",
            Command::List(Some(m(u32::MAX))),
        ),
        (
            b"TOP 1 18446744073709551615\r\n",
            b"",
            Command::Top {
                msg: m(1),
                lines: u64::MAX,
            },
        ),
        (
            b"TOP 1 0\r\n",
            b"",
            Command::Top {
                msg: m(1),
                lines: 0,
            },
        ),
        // PASS keeps the rest of the line whole, spaces included, and may be empty.
        (
            b"PASS my secret pass phrase\r\n",
            b"",
            pass(b"my secret pass phrase"),
        ),
        // One space separates; the next one is part of the password.
        (b"PASS  spaced out  \r\n", b"", pass(b" spaced out  ")),
        (b"PASS \r\n", b"", pass(b"")),
        (b"PASS \xe4\xf6\xfc\r\n", b"", pass(b"\xe4\xf6\xfc")),
        // 8-bit user names (RFC 6856 UTF-8).
        (
            b"USER j\xc3\xbcrgen\r\n",
            b"",
            Command::User(atom(b"j\xc3\xbcrgen")),
        ),
        // Upper-case hex in the APOP digest is accepted.
        (
            b"APOP mrose C4C9334BAC560ECC979E58001B3E22FB\r\n",
            b"",
            apop(b"mrose", RFC_DIGEST),
        ),
        // Unknown commands are kept as data, arguments verbatim.
        (b"XTND XMIT\r\n", b"", unknown("XTND", Some(b"XMIT"))),
        (b"XYZZY\r\n", b"", unknown("XYZZY", None)),
        (b"X-FOO a  b \r\n", b"", unknown("X-FOO", Some(b"a  b "))),
        (b"LAST\r\n", b"", unknown("LAST", None)),
        // The remainder is the next pipelined command, untouched.
        (b"STAT\r\nQUIT\r\n", b"QUIT\r\n", Command::Stat),
        (b"RETR 1\r\nRETR 2\r\n", b"RETR 2\r\n", Command::Retr(m(1))),
        (b"NOOP\nQU", b"QU", Command::Noop),
    ]
}

#[test]
fn commands_decode_to_known_values() {
    for (input, rest, value) in ok_table() {
        assert_eq!(
            decode::command(input),
            Ok((rest, value)),
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn commands_round_trip_decode_encode_decode() {
    for (input, _, value) in ok_table() {
        let bytes = value.to_bytes();
        assert!(bytes.ends_with(b"\r\n"));
        assert_eq!(
            decode::command(&bytes),
            Ok((&b""[..], value)),
            "input {:?}, encoded {:?}",
            String::from_utf8_lossy(input),
            String::from_utf8_lossy(&bytes)
        );
    }
}

#[test]
fn commands_encode_canonically() {
    let table: Vec<(Command, &[u8])> = vec![
        (Command::User(atom(b"mrose")), b"USER mrose\r\n"),
        (pass(b"a b "), b"PASS a b \r\n"),
        (
            apop(b"mrose", RFC_DIGEST),
            b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n",
        ),
        (Command::List(None), b"LIST\r\n"),
        (Command::List(Some(m(2))), b"LIST 2\r\n"),
        (
            Command::Top {
                msg: m(1),
                lines: 10,
            },
            b"TOP 1 10\r\n",
        ),
        (Command::Auth(None), b"AUTH\r\n"),
        (auth("plain", Some(b"")), b"AUTH PLAIN =\r\n"),
        (
            auth("PLAIN", Some(b"test\0test\0test")),
            b"AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n",
        ),
        (unknown("XTND", Some(b"XMIT")), b"XTND XMIT\r\n"),
        (unknown("XTND", Some(b"")), b"XTND \r\n"),
        (Command::Lang(Some(atom(b"*"))), b"LANG *\r\n"),
    ];
    for (value, wire) in table {
        assert_eq!(value.to_bytes(), wire, "{value:?}");
    }
}

#[test]
fn rfc_apop_digest_parses_to_its_bytes() {
    let (_, cmd) = decode::command(b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n").unwrap();
    let Command::Apop { name, digest } = cmd else {
        panic!("not APOP: {cmd:?}");
    };
    assert_eq!(name.as_bytes(), b"mrose");
    assert_eq!(digest.expose_secret().0[0], 0xc4);
    assert_eq!(digest.expose_secret().0[15], 0xfb);
    assert_eq!(digest.expose_secret().to_hex(), RFC_DIGEST);
}

fn err_table() -> Vec<(&'static [u8], DecodeError)> {
    use DecodeError::*;
    vec![
        // Message numbers: zero, signs, overflow of u32, huge, trailing junk.
        (b"LIST 0\r\n", ZeroMessageNumber),
        (b"LIST 000\r\n", ZeroMessageNumber),
        (b"LIST -1\r\n", InvalidNumber),
        (b"LIST +1\r\n", InvalidNumber),
        (b"LIST 4294967296\r\n", InvalidNumber),
        // 2^32 + 477218588: wraps to a plausible number if overflow is not checked.
        (b"LIST 4772185884\r\n", InvalidNumber),
        (b"LIST 123456789012345678901234567890\r\n", InvalidNumber),
        (b"LIST 1x\r\n", InvalidNumber),
        (b"LIST 0x10\r\n", InvalidNumber),
        (b"LIST \xb9\r\n", InvalidNumber),
        (b"LIST \xd9\xa1\r\n", InvalidNumber),
        (b"TOP 1 \xef\xbc\x91\r\n", InvalidNumber),
        (b"LIST 1 2\r\n", UnexpectedArgument),
        (b"LIST 1 junk\r\n", UnexpectedArgument),
        (b"UIDL 0\r\n", ZeroMessageNumber),
        (b"UIDL one\r\n", InvalidNumber),
        (b"RETR\r\n", MissingArgument),
        (b"RETR \r\n", MissingArgument),
        (b"RETR 0\r\n", ZeroMessageNumber),
        (b"RETR 1 2\r\n", UnexpectedArgument),
        (b"RETR 99999999999999999999\r\n", InvalidNumber),
        (b"DELE\r\n", MissingArgument),
        (b"DELE -1\r\n", InvalidNumber),
        (b"TOP\r\n", MissingArgument),
        (b"TOP 1\r\n", MissingArgument),
        (b"TOP 1 \r\n", MissingArgument),
        (b"TOP 1 -1\r\n", InvalidNumber),
        (b"TOP 0 1\r\n", ZeroMessageNumber),
        (b"TOP 1 2 3\r\n", UnexpectedArgument),
        (b"TOP 1 18446744073709551616\r\n", InvalidNumber),
        (b"TOP x 1\r\n", InvalidNumber),
        // Commands without arguments.
        (b"QUIT now\r\n", UnexpectedArgument),
        (b"STAT 1\r\n", UnexpectedArgument),
        (b"NOOP x\r\n", UnexpectedArgument),
        (b"RSET 1\r\n", UnexpectedArgument),
        (b"CAPA x\r\n", UnexpectedArgument),
        (b"STLS x\r\n", UnexpectedArgument),
        (b"UTF8 x\r\n", UnexpectedArgument),
        // USER / PASS / APOP.
        (b"USER\r\n", MissingArgument),
        (b"USER \r\n", MissingArgument),
        (b"USER a b\r\n", UnexpectedArgument),
        (b"PASS\r\n", MissingArgument),
        (b"APOP\r\n", MissingArgument),
        (b"APOP mrose\r\n", MissingArgument),
        (b"APOP mrose xyz\r\n", InvalidArgument),
        (
            b"APOP mrose c4c9334bac560ecc979e58001b3e22f\r\n",
            InvalidArgument,
        ),
        (
            b"APOP mrose c4c9334bac560ecc979e58001b3e22fbb\r\n",
            InvalidArgument,
        ),
        (
            b"APOP mrose g4c9334bac560ecc979e58001b3e22fb\r\n",
            InvalidArgument,
        ),
        (
            b"APOP mrose +4c9334bac560ecc979e58001b3e22fb\r\n",
            InvalidArgument,
        ),
        (
            b"APOP mrose c4c9334bac560ecc979e58001b3e22fb x\r\n",
            UnexpectedArgument,
        ),
        // AUTH.
        (b"AUTH PLAIN !!!!\r\n", InvalidBase64),
        (b"AUTH PLAIN dGVzdA\r\n", InvalidBase64),
        (b"AUTH PLAIN ==\r\n", InvalidBase64),
        (b"AUTH PL@IN\r\n", InvalidArgument),
        (b"AUTH ABCDEFGHIJKLMNOPQRSTU\r\n", InvalidArgument),
        (b"AUTH PLAIN = x\r\n", UnexpectedArgument),
        // LANG takes one range.
        (b"LANG en fr\r\n", UnexpectedArgument),
        // NUL, bare CR, bytes that cannot be in a keyword, empty lines.
        (b"USER a\0b\r\n", ForbiddenByte(0)),
        (b"\0\r\n", ForbiddenByte(0)),
        (b"USER a\rb\r\n", ForbiddenByte(b'\r')),
        (b"QUIT\r\r\n", ForbiddenByte(b'\r')),
        (b"PASS a\0b\r\n", ForbiddenByte(0)),
        (b"\xffQUIT\r\n", Syntax),
        (b"QU\xc3\x8fT\r\n", Syntax),
        (b"\r\n", Syntax),
        (b"\n", Syntax),
        (b" QUIT\r\n", Syntax),
        (b"QUIT\tx\r\n", Syntax),
        (
            b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n",
            Syntax,
        ),
    ]
}

#[test]
fn malformed_commands_get_the_right_error() {
    for (input, err) in err_table() {
        assert_eq!(
            decode::command(input),
            Err(nom::Err::Error(err)),
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn a_line_without_lf_is_incomplete() {
    for input in [
        &b""[..],
        b"QUIT",
        b"QUIT\r",
        b"PASS secret with spaces",
        b"\r",
        b"LIST 4294967296",
    ] {
        assert!(
            matches!(decode::command(input), Err(nom::Err::Incomplete(_))),
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn parse_command_takes_content_without_line_end() {
    assert_eq!(
        decode::parse_command(b"TOP 2 5"),
        Ok(Command::Top {
            msg: m(2),
            lines: 5
        })
    );
    assert_eq!(
        decode::parse_command(b"LIST 0"),
        Err(DecodeError::ZeroMessageNumber)
    );
}

#[test]
fn keyword_and_multiline_classification() {
    let (_, c) = decode::command(b"top 1 2\r\n").unwrap();
    assert_eq!(c.keyword(), b"TOP");
    let (_, c) = decode::command(b"xTnD\r\n").unwrap();
    assert_eq!(c.keyword(), b"xTnD");
    let multi: Vec<bool> = [
        &b"LIST\r\n"[..],
        b"LIST 1\r\n",
        b"UIDL\r\n",
        b"UIDL 1\r\n",
        b"RETR 1\r\n",
        b"TOP 1 0\r\n",
        b"CAPA\r\n",
        b"LANG\r\n",
        b"LANG en\r\n",
        b"STAT\r\n",
        b"XTND XMIT\r\n",
        b"AUTH\r\n",
        b"AUTH PLAIN\r\n",
    ]
    .iter()
    .map(|i| decode::command(i).unwrap().1.expects_multiline())
    .collect();
    assert_eq!(
        multi,
        [
            true, false, true, false, true, true, true, true, false, false, false, true, false
        ]
    );
}

#[test]
fn secrets_do_not_appear_in_debug_output() {
    let cases: [(&[u8], &str); 4] = [
        (b"PASS tanstaaf\r\n", "tanstaaf"),
        (b"PASS hunter2 with spaces\r\n", "hunter2"),
        (
            b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n",
            "c4c9334b",
        ),
        // "dGVzdAB0ZXN0AHRlc3Q=" is "test\0test\0test".
        (b"AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n", "test"),
    ];
    for (input, secret) in cases {
        let (_, cmd) = decode::command(input).unwrap();
        let debug = format!("{cmd:?}");
        let pretty = format!("{cmd:#?}");
        assert!(debug.contains("Secret(..)"), "{debug}");
        assert!(!debug.contains(secret), "{debug}");
        assert!(!pretty.contains(secret), "{pretty}");
    }
    // The APOP digest bytes do not show in decimal either.
    let (_, cmd) = decode::command(b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n").unwrap();
    assert!(!format!("{cmd:?}").contains("196"));
    // The wrapper itself, and the secret is still reachable on purpose.
    let s = Secret::new(Text::new("tanstaaf").unwrap());
    assert_eq!(format!("{s:?}"), "Secret(..)");
    assert_eq!(s.expose_secret().as_bytes(), b"tanstaaf");
}
