//! Constructors validate: CR, LF and NUL are unrepresentable in arguments, message numbers are
//! non-zero, unique-ids are 1 to 70 octets of 0x21..=0x7E, mechanism names follow RFC 4422,
//! unknown keywords are never known ones, and secrets do not show in `Debug`.

use pop3_proto::{
    ApopDigest, Atom, Command, Keyword, Mechanism, MsgNum, Secret, Text, Uid, ValueError,
};

#[test]
fn line_breaking_bytes_are_unrepresentable() {
    for bad in [b'\r', b'\n', 0] {
        let v = [b'a', bad, b'b'];
        assert_eq!(Atom::new(v), Err(ValueError::ForbiddenByte(bad)));
        assert_eq!(Text::new(v), Err(ValueError::ForbiddenByte(bad)));
        assert_eq!(Uid::new(v), Err(ValueError::ForbiddenByte(bad)));
        assert_eq!(Keyword::new(v), Err(ValueError::ForbiddenByte(bad)));
        assert_eq!(Mechanism::new(v), Err(ValueError::ForbiddenByte(bad)));
    }
    assert_eq!(Atom::new("a b"), Err(ValueError::ForbiddenByte(b' ')));
    assert_eq!(Atom::new(""), Err(ValueError::Empty));
    // Text may hold spaces, 8-bit octets, and be empty: a password can.
    assert!(Text::new(&b" pass word \xff"[..]).is_ok());
    assert!(Text::new("").unwrap().is_empty());
    assert!(Atom::new("j\u{fc}rgen").is_ok());
    assert_eq!(Atom::try_from("x").unwrap().as_bytes(), b"x");
    assert_eq!(
        Text::try_from(&b"a\rb"[..]),
        Err(ValueError::ForbiddenByte(b'\r'))
    );
}

#[test]
fn message_numbers_start_at_one() {
    assert_eq!(MsgNum::new(0), Err(ValueError::ZeroMessageNumber));
    assert_eq!(MsgNum::try_from(0), Err(ValueError::ZeroMessageNumber));
    let n = MsgNum::new(1).unwrap();
    assert_eq!((n.get(), n.index()), (1, 0));
    let max = MsgNum::new(u32::MAX).unwrap();
    assert_eq!(u32::from(max), u32::MAX);
    assert_eq!(max.to_string(), "4294967295");
}

#[test]
fn unique_ids_are_1_to_70_printable_octets() {
    assert_eq!(Uid::new(""), Err(ValueError::Empty));
    assert!(Uid::new("!").is_ok());
    assert!(Uid::new("~").is_ok());
    assert!(Uid::new(vec![b'x'; 70]).is_ok());
    assert_eq!(Uid::new(vec![b'x'; 71]), Err(ValueError::TooLong(70)));
    assert_eq!(Uid::new("a b"), Err(ValueError::ForbiddenByte(b' ')));
    assert_eq!(Uid::new("a\x7f"), Err(ValueError::ForbiddenByte(0x7f)));
    assert_eq!(
        Uid::new(&b"\xc3\xa9"[..]),
        Err(ValueError::ForbiddenByte(0xc3))
    );
    assert_eq!(
        Uid::new("QhdPYR:00WBw1Ph7x7").unwrap().as_str(),
        "QhdPYR:00WBw1Ph7x7"
    );
}

#[test]
fn mechanisms_follow_rfc_4422_and_compare_in_upper_case() {
    let m = Mechanism::new("cram-md5").unwrap();
    assert_eq!(m.as_str(), "CRAM-MD5");
    assert_eq!(m, Mechanism::new("CRAM-MD5").unwrap());
    assert!(Mechanism::new("KERBEROS_V4").is_ok());
    assert!(Mechanism::new(vec![b'A'; 20]).is_ok());
    assert_eq!(Mechanism::new(vec![b'A'; 21]), Err(ValueError::TooLong(20)));
    assert_eq!(Mechanism::new("A.B"), Err(ValueError::ForbiddenByte(b'.')));
    assert_eq!(Mechanism::new(""), Err(ValueError::Empty));
}

#[test]
fn unknown_keywords_are_never_known_ones() {
    for known in pop3_proto::KNOWN_COMMANDS {
        assert_eq!(Keyword::new(known), Err(ValueError::KnownKeyword));
        assert_eq!(
            Keyword::new(known.to_ascii_lowercase()),
            Err(ValueError::KnownKeyword)
        );
    }
    assert!(Keyword::new("XTND").is_ok());
    assert!(Keyword::new("TOPS").is_ok());
    assert_eq!(Keyword::new(vec![b'X'; 65]), Err(ValueError::TooLong(64)));
    assert_eq!(
        Keyword::new(&b"X\xff"[..]),
        Err(ValueError::ForbiddenByte(0xff))
    );
}

#[test]
fn secrets_hide_in_debug() {
    let pw = Secret::new(Text::new("tanstaaf").unwrap());
    assert_eq!(format!("{pw:?}"), "Secret(..)");
    assert_eq!(format!("{pw:#?}"), "Secret(..)");
    let digest = ApopDigest([0xc4; 16]);
    let cmd = Command::Apop {
        name: Atom::new("mrose").unwrap(),
        digest: Secret::new(digest),
    };
    let debug = format!("{cmd:?}");
    assert!(debug.contains("mrose"), "{debug}");
    assert!(!debug.contains("196") && !debug.contains("c4"), "{debug}");
    let data: Secret<Vec<u8>> = Secret::from(b"hunter2".to_vec());
    assert!(!format!("{data:?}").contains("104"));
    assert_eq!(data.expose_secret(), b"hunter2");
    assert_eq!(digest.to_hex(), "c4".repeat(16));
}
