//! Known-answer tests of the parsers and encoders: commands, paths, parameters, replies.

use pop3_lmtp::decode::{self, DecodeError, ReplyReader};
use pop3_lmtp::{Command, Domain, Encode, Mailbox, Param, Path, Reply, Text, ValueError};

fn mb(s: &str) -> Mailbox {
    Mailbox::parse(s).unwrap()
}

fn is_incomplete<T, E: std::fmt::Debug>(r: Result<T, E>) -> bool {
    r.is_err_and(|e| format!("{e:?}").starts_with("Incomplete"))
}

fn cmd(line: &[u8]) -> Result<Command, DecodeError> {
    decode::parse_command(line)
}

#[test]
fn hello_commands() {
    assert_eq!(
        cmd(b"LHLO client.example.org"),
        Ok(Command::Lhlo(Domain::new("client.example.org").unwrap()))
    );
    assert_eq!(
        cmd(b"ehlo [192.0.2.1]"),
        Ok(Command::Ehlo(Domain::new("[192.0.2.1]").unwrap()))
    );
    assert_eq!(
        cmd(b"HeLo  my_host  "),
        Ok(Command::Helo(Domain::new("my_host").unwrap()))
    );
    assert_eq!(cmd(b"LHLO"), Err(DecodeError::MissingArgument));
    assert_eq!(cmd(b"LHLO bad..domain"), Err(DecodeError::InvalidDomain));
    assert_eq!(cmd(b"LHLO a b"), Err(DecodeError::InvalidDomain));
}

#[test]
fn mail_commands() {
    assert_eq!(
        cmd(b"MAIL FROM:<>"),
        Ok(Command::Mail {
            from: Path::Null,
            params: vec![]
        })
    );
    assert_eq!(
        cmd(b"mail from: <a@example.org>  SIZE=1000 body=8BITMIME "),
        Ok(Command::Mail {
            from: Path::Mailbox(mb("a@example.org")),
            params: vec![
                Param::new("SIZE", Some("1000")).unwrap(),
                Param::new("body", Some("8BITMIME")).unwrap()
            ]
        })
    );
    // A source route is accepted and dropped.
    assert_eq!(
        cmd(b"MAIL FROM:<@a.example,@b.example:joe@c.example>"),
        Ok(Command::Mail {
            from: Path::Mailbox(mb("joe@c.example")),
            params: vec![]
        })
    );
    assert_eq!(cmd(b"MAIL FROM:"), Err(DecodeError::MissingArgument));
    assert_eq!(cmd(b"MAIL TO:<a@b>"), Err(DecodeError::Syntax));
    assert_eq!(cmd(b"MAIL FROM:a@b"), Err(DecodeError::InvalidPath));
    assert_eq!(cmd(b"MAIL FROM:<a@b"), Err(DecodeError::InvalidPath));
    assert_eq!(cmd(b"MAIL FROM:<a@b>X"), Err(DecodeError::InvalidPath));
    assert_eq!(
        cmd(b"MAIL FROM:<a@b> SIZE=a=b"),
        Err(DecodeError::InvalidParameter)
    );
    assert_eq!(
        cmd(b"MAIL FROM:<a@b> =x"),
        Err(DecodeError::InvalidParameter)
    );
}

#[test]
fn rcpt_commands() {
    assert_eq!(
        cmd(b"RCPT TO:<\"john \\\"q\\\" doe\"@example.org>"),
        Ok(Command::Rcpt {
            to: Mailbox::new(
                "\"john \\\"q\\\" doe\"",
                Domain::new("example.org").unwrap()
            )
            .unwrap(),
            params: vec![]
        })
    );
    assert_eq!(
        cmd(b"RCPT TO:<PostMaster>"),
        Ok(Command::Rcpt {
            to: Mailbox::postmaster(),
            params: vec![]
        })
    );
    assert_eq!(
        cmd(b"RCPT TO:<postmaster@example.org> NOTIFY=NEVER"),
        Ok(Command::Rcpt {
            to: mb("postmaster@example.org"),
            params: vec![Param::new("NOTIFY", Some("NEVER")).unwrap()]
        })
    );
    assert_eq!(
        cmd(b"RCPT TO:<u@[IPv6:2001:db8::1]>"),
        Ok(Command::Rcpt {
            to: mb("u@[IPv6:2001:db8::1]"),
            params: vec![]
        })
    );
    for bad in [
        &b"RCPT TO:<>"[..],
        b"RCPT TO:<a b@c>",
        b"RCPT TO:<.a@c>",
        b"RCPT TO:<a.@c>",
        b"RCPT TO:<a..b@c>",
        b"RCPT TO:<a@>",
        b"RCPT TO:<@c>",
        b"RCPT TO:<a@c..d>",
        b"RCPT TO:<\"unterminated@c>",
        b"RCPT TO:<\xc3\xa9@c>",
    ] {
        assert_eq!(
            cmd(bad),
            Err(DecodeError::InvalidPath),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn simple_commands() {
    assert_eq!(cmd(b"DATA"), Ok(Command::Data));
    assert_eq!(cmd(b"data  "), Ok(Command::Data));
    assert_eq!(cmd(b"RSET"), Ok(Command::Rset));
    assert_eq!(cmd(b"QUIT"), Ok(Command::Quit));
    assert_eq!(cmd(b"StartTLS"), Ok(Command::StartTls));
    assert_eq!(cmd(b"NOOP"), Ok(Command::Noop(None)));
    assert_eq!(
        cmd(b"NOOP hello there"),
        Ok(Command::Noop(Some(Text::new("hello there").unwrap())))
    );
    assert_eq!(
        cmd(b"VRFY postmaster"),
        Ok(Command::Vrfy(Text::new("postmaster").unwrap()))
    );
    assert_eq!(cmd(b"VRFY"), Err(DecodeError::MissingArgument));
    assert_eq!(cmd(b"DATA x"), Err(DecodeError::UnexpectedArgument));
    assert_eq!(
        cmd(b"HELP me"),
        Ok(Command::Unknown {
            verb: Text::new("HELP").unwrap(),
            args: Text::new("me").unwrap()
        })
    );
    assert_eq!(cmd(b""), Err(DecodeError::Syntax));
    assert_eq!(cmd(b"NOOP \0"), Err(DecodeError::ForbiddenByte(0)));
    assert_eq!(cmd(b"NO\rOP"), Err(DecodeError::ForbiddenByte(b'\r')));
    assert_eq!(cmd(b"NOOP \xff"), Err(DecodeError::InvalidUtf8));
}

#[test]
fn command_framing() {
    let (rest, c) = decode::command(b"RSET\nQUIT\r\n").unwrap();
    assert_eq!((rest, c), (&b"QUIT\r\n"[..], Command::Rset));
    assert!(is_incomplete(decode::command(b"RSET")));
}

#[test]
fn commands_encode_and_reparse() {
    let cmds = [
        Command::Lhlo(Domain::new("a.example").unwrap()),
        Command::Ehlo(Domain::new("[192.0.2.1]").unwrap()),
        Command::Helo(Domain::new("h").unwrap()),
        Command::Mail {
            from: Path::Null,
            params: vec![Param::new("SIZE", Some("12")).unwrap()],
        },
        Command::Mail {
            from: Path::Mailbox(mb("\"a b\"@c.example")),
            params: vec![Param::new("BODY", Some("8BITMIME")).unwrap()],
        },
        Command::Rcpt {
            to: mb("x@y.example"),
            params: vec![Param::new("NOTIFY", None::<String>).unwrap()],
        },
        Command::Rcpt {
            to: Mailbox::postmaster(),
            params: vec![],
        },
        Command::Data,
        Command::Rset,
        Command::Noop(None),
        Command::Noop(Some(Text::new("x y").unwrap())),
        Command::Quit,
        Command::Vrfy(Text::new("joe").unwrap()),
        Command::StartTls,
        Command::Unknown {
            verb: Text::new("XFOO").unwrap(),
            args: Text::new("").unwrap(),
        },
    ];
    let expected: [&[u8]; 15] = [
        b"LHLO a.example\r\n",
        b"EHLO [192.0.2.1]\r\n",
        b"HELO h\r\n",
        b"MAIL FROM:<> SIZE=12\r\n",
        b"MAIL FROM:<\"a b\"@c.example> BODY=8BITMIME\r\n",
        b"RCPT TO:<x@y.example> NOTIFY\r\n",
        b"RCPT TO:<Postmaster>\r\n",
        b"DATA\r\n",
        b"RSET\r\n",
        b"NOOP\r\n",
        b"NOOP x y\r\n",
        b"QUIT\r\n",
        b"VRFY joe\r\n",
        b"STARTTLS\r\n",
        b"XFOO\r\n",
    ];
    for (c, want) in cmds.iter().zip(expected) {
        let bytes = c.to_bytes();
        assert_eq!(bytes, want, "{c:?}");
        let (rest, back) = decode::command(&bytes).unwrap();
        assert!(rest.is_empty());
        assert_eq!(&back, c);
    }
}

#[test]
fn value_constructors_refuse_injection() {
    assert_eq!(Domain::new("a\r\nb"), Err(ValueError::Domain));
    assert_eq!(
        Mailbox::new("a\r\nRCPT", Domain::new("b").unwrap()),
        Err(ValueError::LocalPart)
    );
    assert_eq!(Text::new("a\nb"), Err(ValueError::Text));
    assert_eq!(Param::new("X", Some("a\r\n")), Err(ValueError::Parameter));
    assert_eq!(Param::new("-X", None::<&str>), Err(ValueError::Parameter));
    assert_eq!(Reply::new(199, None, "x"), Err(ValueError::ReplyCode));
    assert_eq!(
        Reply::new(250, Some((2, 1000, 0)), "x"),
        Err(ValueError::ReplyCode)
    );
    assert_eq!(Reply::new(250, None, "a\rb"), Err(ValueError::Text));
    assert_eq!(Mailbox::parse("a@b c"), Err(ValueError::Mailbox));
}

#[test]
fn mailbox_accessors() {
    let m = mb("\"a\\\\b c\"@example.org");
    assert_eq!(m.local_part(), "\"a\\\\b c\"");
    assert_eq!(m.local_part_unquoted(), "a\\b c");
    assert_eq!(Path::Mailbox(m).to_string(), "<\"a\\\\b c\"@example.org>");
    assert_eq!(Path::Null.to_string(), "<>");
    assert!(Domain::new("[1.2.3.4]").unwrap().is_address_literal());
    assert_eq!(Mailbox::postmaster().domain(), None);
}

#[test]
fn reply_lines() {
    let l = decode::parse_reply_line(b"250").unwrap();
    assert_eq!(
        (l.code, l.last, l.enhanced, l.text.as_str()),
        (250, true, None, "")
    );
    let l = decode::parse_reply_line(b"250-").unwrap();
    assert_eq!((l.last, l.text.as_str()), (false, ""));
    let l = decode::parse_reply_line(b"451 4.3.0 try later").unwrap();
    assert_eq!(l.enhanced, Some((4, 3, 0)));
    assert_eq!(l.text, "try later");
    // An enhanced code whose class is not the code's is text.
    let l = decode::parse_reply_line(b"250 5.0.0 odd").unwrap();
    assert_eq!((l.enhanced, l.text.as_str()), (None, "5.0.0 odd"));
    // So is one that is not followed by a space.
    let l = decode::parse_reply_line(b"250 2.0.0x").unwrap();
    assert_eq!(l.enhanced, None);
    let l = decode::parse_reply_line(b"250 2.0.0").unwrap();
    assert_eq!((l.enhanced, l.text.as_str()), (Some((2, 0, 0)), ""));
    let l = decode::parse_reply_line(b"250 caf\xc3\xa9 \xff").unwrap();
    assert_eq!(l.text, "caf\u{e9} \u{fffd}");
    for bad in [
        &b"25"[..],
        b"2500",
        b"150 x",
        b"650 x",
        b"abc",
        b"250x",
        b"250 \0",
    ] {
        assert!(decode::parse_reply_line(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn multi_line_replies() {
    let input = b"250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\nrest";
    let (rest, r) = decode::reply(input).unwrap();
    assert_eq!(rest, b"rest");
    assert_eq!(r.code, 250);
    assert_eq!(
        r.lines,
        ["mx.example", "PIPELINING", "SIZE 1000", "8BITMIME"]
    );
    assert!(is_incomplete(decode::reply(b"250-a\r\n250 b")));
    assert!(decode::reply(b"250-a\r\n251 b\r\n").is_err());

    let mut reader = ReplyReader::new(10, 2);
    assert_eq!(reader.push_line(b"250-a"), Ok(None));
    assert!(reader.in_progress());
    assert_eq!(reader.push_line(b"250-b"), Ok(None));
    assert_eq!(reader.push_line(b"250 c"), Err(DecodeError::TooManyLines));
    assert!(!reader.in_progress());
    assert_eq!(
        reader.push_line(b"250 0123456789"),
        Err(DecodeError::LineTooLong)
    );
}

#[test]
fn replies_encode() {
    let cases: [(Reply, &[u8]); 5] = [
        (Reply::new(250, None, "").unwrap(), b"250\r\n"),
        (
            Reply::new(250, Some((2, 1, 5)), "").unwrap(),
            b"250 2.1.5\r\n",
        ),
        (
            Reply::new(550, Some((5, 1, 1)), "User unknown").unwrap(),
            b"550 5.1.1 User unknown\r\n",
        ),
        (
            Reply {
                code: 250,
                enhanced: None,
                lines: vec!["mx".into(), "".into(), "SIZE 10".into()],
            },
            b"250-mx\r\n250-\r\n250 SIZE 10\r\n",
        ),
        (
            Reply {
                code: 451,
                enhanced: Some((4, 3, 0)),
                lines: vec!["evil\r\n250 ok".into()],
            },
            b"451 4.3.0 evil  250 ok\r\n",
        ),
    ];
    for (r, want) in cases {
        assert_eq!(r.to_bytes(), want, "{r:?}");
        let (_, back) = decode::reply(want).unwrap();
        assert_eq!(back.code, r.code);
        assert_eq!(back.enhanced, r.enhanced);
    }
    let r = Reply::new(452, Some((4, 5, 3)), "Too many").unwrap();
    assert!(r.is_transient() && !r.is_permanent() && !r.is_positive());
    assert_eq!(r.to_string(), "452 4.5.3 Too many");
}
