//! `arbitrary::Arbitrary` for every value type, producing only valid values (feature
//! `arbitrary`), for fuzzing and property tests.

use arbitrary::{Arbitrary, Result, Unstructured};

use crate::types::*;

/// Bytes from `u`, each mapped into the allowed set by `ok`, at most `max` of them.
fn bytes_where(
    u: &mut Unstructured<'_>,
    min: usize,
    max: usize,
    ok: impl Fn(u8) -> bool,
    fallback: u8,
) -> Result<Vec<u8>> {
    let len = u.int_in_range(min..=max)?;
    let mut v = Vec::with_capacity(len);
    for _ in 0..len {
        let b = u8::arbitrary(u)?;
        v.push(if ok(b) { b } else { fallback });
    }
    Ok(v)
}

fn not_line_end(b: u8) -> bool {
    b != b'\r' && b != b'\n' && b != 0
}

impl<'a> Arbitrary<'a> for Atom {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let v = bytes_where(u, 1, 40, |b| not_line_end(b) && b != b' ', b'a')?;
        Atom::new(v).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

impl<'a> Arbitrary<'a> for Text {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let v = bytes_where(u, 0, 60, not_line_end, b' ')?;
        Text::new(v).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

impl<'a> Arbitrary<'a> for MsgNum {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        MsgNum::new(u.int_in_range(1..=u32::MAX)?).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

impl<'a> Arbitrary<'a> for Uid {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let v = bytes_where(u, 1, Uid::MAX_LEN, |b| (0x21..=0x7e).contains(&b), b'x')?;
        Uid::new(v).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

impl<'a> Arbitrary<'a> for Mechanism {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let v = bytes_where(
            u,
            1,
            Mechanism::MAX_LEN,
            |b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_',
            b'M',
        )?;
        Mechanism::new(v).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

impl<'a> Arbitrary<'a> for Keyword {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let mut v = bytes_where(u, 1, 8, |b| (0x21..=0x7e).contains(&b), b'X')?;
        if Keyword::new(v.clone()).is_err() {
            v.insert(0, b'X');
        }
        Keyword::new(v).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

impl<'a, T: zeroize::Zeroize + Arbitrary<'a>> Arbitrary<'a> for Secret<T> {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        T::arbitrary(u).map(Secret::new)
    }
}

impl<'a> Arbitrary<'a> for ApopDigest {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(ApopDigest(<[u8; 16]>::arbitrary(u)?))
    }
}

impl<'a> Arbitrary<'a> for AuthCommand {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(AuthCommand {
            mechanism: Mechanism::arbitrary(u)?,
            initial_response: Option::<Secret<Vec<u8>>>::arbitrary(u)?,
        })
    }
}

impl<'a> Arbitrary<'a> for Command {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0..=17u8)? {
            0 => Command::User(Atom::arbitrary(u)?),
            1 => Command::Pass(Secret::arbitrary(u)?),
            2 => Command::Apop {
                name: Atom::arbitrary(u)?,
                digest: Secret::arbitrary(u)?,
            },
            3 => Command::Quit,
            4 => Command::Stat,
            5 => Command::List(Option::arbitrary(u)?),
            6 => Command::Retr(MsgNum::arbitrary(u)?),
            7 => Command::Dele(MsgNum::arbitrary(u)?),
            8 => Command::Noop,
            9 => Command::Rset,
            10 => Command::Top {
                msg: MsgNum::arbitrary(u)?,
                lines: u64::arbitrary(u)?,
            },
            11 => Command::Uidl(Option::arbitrary(u)?),
            12 => Command::Capa,
            13 => Command::Stls,
            14 => Command::Auth(Option::arbitrary(u)?),
            15 => Command::Utf8,
            16 => Command::Lang(Option::arbitrary(u)?),
            _ => Command::Unknown {
                keyword: Keyword::arbitrary(u)?,
                args: Option::arbitrary(u)?,
            },
        })
    }
}

impl<'a> Arbitrary<'a> for SaslResponse {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(if bool::arbitrary(u)? {
            SaslResponse::Cancel
        } else {
            SaslResponse::Data(Secret::arbitrary(u)?)
        })
    }
}

impl<'a> Arbitrary<'a> for Status {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(if bool::arbitrary(u)? {
            Status::Ok
        } else {
            Status::Err
        })
    }
}

impl<'a> Arbitrary<'a> for CodeText {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let levels = u.int_in_range(1..=3)?;
        let mut v = Vec::new();
        for i in 0..levels {
            if i > 0 {
                v.push(b'/');
            }
            v.extend(bytes_where(u, 1, 12, crate::types::is_resp_char, b'X')?);
        }
        match CodeText::new(v.clone()) {
            Ok(c) => Ok(c),
            Err(_) => {
                v.insert(0, b'X');
                CodeText::new(v).map_err(|_| arbitrary::Error::IncorrectFormat)
            }
        }
    }
}

impl<'a> Arbitrary<'a> for ResponseCode {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0..=7u8)? {
            0 => ResponseCode::InUse,
            1 => ResponseCode::LoginDelay,
            2 => ResponseCode::SysTemp,
            3 => ResponseCode::SysPerm,
            4 => ResponseCode::Sys,
            5 => ResponseCode::Auth,
            6 => ResponseCode::Utf8,
            _ => ResponseCode::Other(CodeText::arbitrary(u)?),
        })
    }
}

impl<'a> Arbitrary<'a> for StatusLine {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let status = Status::arbitrary(u)?;
        let code = Option::<ResponseCode>::arbitrary(u)?;
        let text = Text::arbitrary(u)?;
        StatusLine::new(status, code.clone(), text.clone())
            .or_else(|_| {
                // Text that would read back as a code: make the code explicit.
                let mut t = vec![b'x'];
                t.extend_from_slice(text.as_bytes());
                StatusLine::new(status, code, Text::new(t)?)
            })
            .map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

impl<'a> Arbitrary<'a> for Timestamp {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let ok = |b: u8| (0x21..=0x7e).contains(&b) && b != b'<' && b != b'>' && b != b'@';
        let mut v = vec![b'<'];
        v.extend(bytes_where(u, 1, 40, ok, b'1')?);
        v.push(b'@');
        v.extend(bytes_where(u, 1, 40, ok, b'h')?);
        v.push(b'>');
        Timestamp::new(v).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

impl<'a> Arbitrary<'a> for Greeting {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        if bool::arbitrary(u)? {
            let text = bytes_where(u, 0, 40, |b| (0x20..=0x7e).contains(&b) && b != b'<', b' ')?;
            let mut text = text;
            text.insert(0, b'P');
            Greeting::ok_with_timestamp(&text, Some(&Timestamp::arbitrary(u)?))
                .map_err(|_| arbitrary::Error::IncorrectFormat)
        } else {
            Ok(Greeting::new(StatusLine::arbitrary(u)?))
        }
    }
}

impl<'a> Arbitrary<'a> for Continuation {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Continuation(Secret::arbitrary(u)?))
    }
}

impl<'a> Arbitrary<'a> for ScanListing {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(ScanListing {
            msg: MsgNum::arbitrary(u)?,
            size: u64::arbitrary(u)?,
        })
    }
}

impl<'a> Arbitrary<'a> for Stat {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Stat {
            count: u64::arbitrary(u)?,
            size: u64::arbitrary(u)?,
        })
    }
}

impl<'a> Arbitrary<'a> for UidListing {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(UidListing {
            msg: MsgNum::arbitrary(u)?,
            uid: Uid::arbitrary(u)?,
        })
    }
}

impl<'a> Arbitrary<'a> for Expire {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(if bool::arbitrary(u)? {
            Expire::Never
        } else {
            Expire::Days(u64::arbitrary(u)?)
        })
    }
}

impl<'a> Arbitrary<'a> for OtherCapability {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let mut tag = Atom::arbitrary(u)?;
        let params = Vec::<Atom>::arbitrary(u)?;
        if let Ok(o) = OtherCapability::new(tag.clone(), params.clone()) {
            return Ok(o);
        }
        let mut t = b"X-".to_vec();
        t.extend_from_slice(tag.as_bytes());
        tag = Atom::new(t).map_err(|_| arbitrary::Error::IncorrectFormat)?;
        OtherCapability::new(tag, params).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

impl<'a> Arbitrary<'a> for Capability {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0..=13u8)? {
            0 => Capability::Top,
            1 => Capability::User,
            2 => Capability::Sasl(Vec::arbitrary(u)?),
            3 => Capability::RespCodes,
            4 => Capability::AuthRespCode,
            5 => Capability::LoginDelay {
                secs: u64::arbitrary(u)?,
                per_user: bool::arbitrary(u)?,
            },
            6 => Capability::Pipelining,
            7 => Capability::Expire {
                policy: Expire::arbitrary(u)?,
                per_user: bool::arbitrary(u)?,
            },
            8 => Capability::Uidl,
            9 => Capability::Implementation(Text::arbitrary(u)?),
            10 => Capability::Stls,
            11 => Capability::Utf8 {
                user: bool::arbitrary(u)?,
            },
            12 => Capability::Lang,
            _ => Capability::Other(OtherCapability::arbitrary(u)?),
        })
    }
}

impl<'a> Arbitrary<'a> for LangItem {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(LangItem {
            tag: Atom::arbitrary(u)?,
            description: Text::arbitrary(u)?,
        })
    }
}
