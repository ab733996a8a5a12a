//! Inputs from the security history of POP3 implementations: huge arguments, a greeting made
//! to make a timestamp search quadratic, base64 with padding in the middle, odd keywords.
//! Each must give a clean result quickly (a quadratic scan of these sizes would not finish).

use pop3_proto::decode;
use pop3_proto::{Command, DecodeError, MsgNum};

const MIB: usize = 1024 * 1024;

fn with_crlf(mut v: Vec<u8>) -> Vec<u8> {
    v.extend_from_slice(b"\r\n");
    v
}

#[test]
fn arguments_of_every_size_parse_or_fail_cleanly() {
    for n in [0, 1, 40, 254, 255, 256, 511, 512, 513, 8 * 1024, MIB] {
        let arg = vec![b'a'; n];
        let user = with_crlf([&b"USER "[..], &arg].concat());
        let pass = with_crlf([&b"PASS "[..], &arg].concat());
        let list = with_crlf([&b"LIST "[..], &vec![b'9'; n]].concat());
        match decode::command(&user) {
            Ok((_, Command::User(a))) => assert_eq!(a.as_bytes().len(), n),
            other => assert!(n == 0 && other == Err(nom::Err::Error(DecodeError::MissingArgument))),
        }
        let Ok((_, Command::Pass(p))) = decode::command(&pass) else {
            panic!("PASS of {n}")
        };
        assert_eq!(p.expose_secret().as_bytes().len(), n);
        let expected = match n {
            0 => Ok(Command::List(None)),
            1 => Ok(Command::List(Some(MsgNum::new(9).unwrap()))),
            _ => Err(DecodeError::InvalidNumber),
        };
        assert_eq!(
            decode::command(&list).map(|(_, c)| c),
            expected.map_err(nom::Err::Error)
        );
    }
}

#[test]
fn number_edge_cases_from_dovecot_and_fetchmail() {
    // TOP's line count is a u64: large counts are valid (the whole message is sent).
    assert_eq!(
        decode::command(b"TOP 1 99999999999\r\n").map(|(_, c)| c),
        Ok(Command::Top {
            msg: MsgNum::new(1).unwrap(),
            lines: 99_999_999_999
        })
    );
    // Sizes above 2^32 in listings (curl's fake STAT) are fine as u64.
    let s = decode::parse_stat(b"1 4294967296").unwrap();
    assert_eq!(s.size, 1 << 32);
    let l = decode::parse_scan_listing(b"1 4772185884").unwrap();
    assert_eq!(l.size, 4_772_185_884);
    // A negative message number in a LIST response (CVE-2001-1009) is refused.
    assert!(decode::parse_scan_listing(b"-1 100").is_err());
    assert!(decode::parse_uid_listing(b"-1 abc").is_err());
}

#[test]
fn timestamp_search_is_linear_on_hostile_greetings() {
    let cases: Vec<(Vec<u8>, Option<&[u8]>)> = vec![
        (vec![b'<'; MIB], None),
        (b"<a@".repeat(MIB / 3), None),
        (b"<>".repeat(MIB / 2), None),
        (b"<a@b".repeat(MIB / 4), None),
        ([vec![b'<'; MIB], b"a@b>".to_vec()].concat(), Some(b"<a@b>")),
        (
            [b"<x>".repeat(MIB / 3), b"<a@b>".to_vec()].concat(),
            Some(b"<a@b>"),
        ),
        (
            [vec![b'>'; MIB], b"<a@b>".to_vec()].concat(),
            Some(b"<a@b>"),
        ),
    ];
    for (text, expected) in cases {
        let line = [&b"+OK "[..], &text].concat();
        let g = decode::parse_greeting(&line).unwrap();
        let ts = g.timestamp();
        assert_eq!(ts.as_ref().map(|t| t.as_bytes()), expected);
    }
}

#[test]
fn base64_is_strict() {
    for bad in [
        &b"YQ==YQ=="[..],
        b"Y=Q=",
        b"YQ=",
        b"YQ===",
        b"-_-_",
        b"YQ==\t",
        b"YW Jj",
        b"\xc3\xa9",
    ] {
        let line = with_crlf(bad.to_vec());
        assert_eq!(
            decode::sasl_response(&line).map(|(_, r)| r),
            Err(nom::Err::Error(DecodeError::InvalidBase64)),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
        let cont = with_crlf([&b"+ "[..], bad].concat());
        assert!(decode::continuation(&cont).is_err());
        let auth = with_crlf([&b"AUTH PLAIN "[..], bad].concat());
        assert!(decode::command(&auth).is_err());
    }
    // Arbitrarily large challenges and responses decode (RFC 5034 §4); the framer bounds them.
    let big = vec![b'A'; 4 * MIB];
    let (_, c) = decode::continuation(&with_crlf([&b"+ "[..], &big].concat())).unwrap();
    assert_eq!(c.0.expose_secret().len(), 3 * MIB);
}

#[test]
fn odd_keywords_are_kept_or_refused_cleanly() {
    let (_, c) = decode::command(b"US:ER x\r\n").unwrap();
    assert_eq!(c.keyword(), b"US:ER");
    assert!(matches!(c, Command::Unknown { .. }));
    for bad in [
        &b"US\0ER\r\n"[..],
        b"\xc3\x9cSER x\r\n",
        b"\x1b[31mQUIT\r\n",
    ] {
        assert!(
            decode::command(bad).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}
