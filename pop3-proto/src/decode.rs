//! Parsers (nom 8) over one framed line.
//!
//! Each `fn name(line) -> IResult<&[u8], T, DecodeError>` takes input that begins with one
//! line, ends it at CRLF (a bare LF is accepted, as real peers send it), and returns the rest
//! of the input with the value, so they compose with the framer and are testable as
//! `(input, remainder, value)` tables. Input without a line end is
//! `Err(nom::Err::Incomplete(_))`. The `parse_*` functions take one line's content, with the
//! line end already removed (and, for multi-line listings, the dot-stuffing undone).
//!
//! Keywords are case-insensitive. Responses are read leniently where real servers are sloppy
//! (extra spaces, missing text, `+OK 2 messages (320 octets)` before a listing) and strictly
//! where safety depends on it: numbers, unique-ids, base64 and APOP timestamps.

use base64::Engine as _;
use nom::IResult;
use nom::Parser;
use nom::bytes::complete::{tag_no_case, take_while1};
use nom::character::complete::digit1;
use nom::combinator::{all_consuming, opt};
use nom::sequence::preceded;

use crate::types::*;

/// Why a line could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input holds no complete line (what callers map `nom::Err::Incomplete` to).
    #[error("incomplete line")]
    Incomplete,
    /// The line does not have the form this parser expects.
    #[error("syntax error")]
    Syntax,
    /// A required argument is missing.
    #[error("missing argument")]
    MissingArgument,
    /// An argument was given where none is allowed, or too many were given.
    #[error("unexpected argument")]
    UnexpectedArgument,
    /// A number is not a decimal number in range.
    #[error("invalid number")]
    InvalidNumber,
    /// Message number 0 (messages are numbered from 1).
    #[error("message number 0")]
    ZeroMessageNumber,
    /// SASL data is not valid base64 (RFC 5034 §4).
    #[error("invalid base64")]
    InvalidBase64,
    /// A byte that may not appear here (NUL, a bare CR).
    #[error("forbidden byte 0x{0:02x}")]
    ForbiddenByte(u8),
    /// A unique-id that is not 1 to 70 octets of 0x21..=0x7E.
    #[error("invalid unique-id")]
    InvalidUid,
    /// An argument that is malformed (mechanism name, APOP digest, ...).
    #[error("invalid argument")]
    InvalidArgument,
}

impl<I> nom::error::ParseError<I> for DecodeError {
    fn from_error_kind(_input: I, _kind: nom::error::ErrorKind) -> Self {
        DecodeError::Syntax
    }

    fn append(_input: I, _kind: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
}

type Res<'a, T> = IResult<&'a [u8], T, DecodeError>;

fn fail<T>(e: DecodeError) -> Result<T, nom::Err<DecodeError>> {
    Err(nom::Err::Error(e))
}

/// Splits off one line: returns `(rest, content)` where `content` excludes the CRLF (or LF).
pub fn line(input: &[u8]) -> Res<'_, &[u8]> {
    match memchr::memchr(b'\n', input) {
        None => Err(nom::Err::Incomplete(nom::Needed::Unknown)),
        Some(lf) => {
            let end = if lf > 0 && input[lf - 1] == b'\r' {
                lf - 1
            } else {
                lf
            };
            Ok((&input[lf + 1..], &input[..end]))
        }
    }
}

/// Runs a content parser on the first line of `input`, rejecting NUL and bare CR first.
fn on_line<'a, T>(
    input: &'a [u8],
    f: impl FnOnce(&'a [u8]) -> Result<T, DecodeError>,
) -> Res<'a, T> {
    let (rest, content) = line(input)?;
    check_content(content).map_err(nom::Err::Error)?;
    match f(content) {
        Ok(v) => Ok((rest, v)),
        Err(e) => fail(e),
    }
}

fn check_content(content: &[u8]) -> Result<(), DecodeError> {
    match memchr::memchr2(0, b'\r', content) {
        Some(i) => Err(DecodeError::ForbiddenByte(content[i])),
        None => Ok(()),
    }
}

/// Runs a nom parser over complete content and maps errors.
fn complete<'a, T>(
    content: &'a [u8],
    p: impl Parser<&'a [u8], Output = T, Error = DecodeError>,
) -> Result<T, DecodeError> {
    match all_consuming(p).parse(content) {
        Ok((_, v)) => Ok(v),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(e),
        Err(nom::Err::Incomplete(_)) => Err(DecodeError::Syntax),
    }
}

fn spaces(i: &[u8]) -> Res<'_, &[u8]> {
    take_while1(|b| b == b' ').parse(i)
}

fn trim_end_spaces(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' '] = s {
        s = rest;
    }
    s
}

fn token(i: &[u8]) -> Res<'_, &[u8]> {
    take_while1(|b| b != b' ').parse(i)
}

/// Splits `content` into whitespace-separated tokens (one or more spaces between them).
fn tokens(content: &[u8]) -> impl Iterator<Item = &[u8]> {
    content.split(|&b| b == b' ').filter(|t| !t.is_empty())
}

/// `1*DIGIT` as a `u64`; overflow is an error, not a wrap (Dovecot 8ce201908d).
pub(crate) fn number(digits: &[u8]) -> Result<u64, DecodeError> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(DecodeError::InvalidNumber);
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
            .ok_or(DecodeError::InvalidNumber)
    })
}

fn u64_p(i: &[u8]) -> Res<'_, u64> {
    let (rest, d) = digit1(i)?;
    match number(d) {
        Ok(n) => Ok((rest, n)),
        Err(e) => fail(e),
    }
}

pub(crate) fn msg_num(digits: &[u8]) -> Result<MsgNum, DecodeError> {
    let n = number(digits)?;
    let n = u32::try_from(n).map_err(|_| DecodeError::InvalidNumber)?;
    MsgNum::new(n).map_err(|_| DecodeError::ZeroMessageNumber)
}

fn msg_p(i: &[u8]) -> Res<'_, MsgNum> {
    let (rest, d) = digit1(i)?;
    match msg_num(d) {
        Ok(n) => Ok((rest, n)),
        Err(e) => fail(e),
    }
}

fn base64_data(b64: &[u8]) -> Result<Vec<u8>, DecodeError> {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| DecodeError::InvalidBase64)
}

// ---------------------------------------------------------------------------------------------
// Commands

/// A command line (RFC 1939 §3, RFC 2449 §3):
///
/// ```text
/// command = keyword *(SP param) CRLF    ; 255 octets maximum
/// keyword = 3*4VCHAR                    ; case-insensitive
/// ```
///
/// Arguments are separated by one or more spaces and trailing spaces are ignored, except for
/// `PASS`, whose argument is the rest of the line, spaces included (RFC 1939 §7).
pub fn command(input: &[u8]) -> Res<'_, Command> {
    on_line(input, parse_command)
}

/// [`command`] over one line's content (no CRLF).
pub fn parse_command(content: &[u8]) -> Result<Command, DecodeError> {
    let (kw, rest) = match memchr::memchr(b' ', content) {
        Some(sp) => (&content[..sp], Some(&content[sp + 1..])),
        None => (content, None),
    };
    if kw.is_empty() {
        return Err(DecodeError::Syntax);
    }
    // The arguments with surrounding spaces removed; `None` if there are none.
    let args = rest
        .map(trim_end_spaces)
        .map(|r| &r[r.iter().take_while(|&&b| b == b' ').count()..])
        .filter(|r| !r.is_empty());
    let no_args = |c: Command| match args {
        None => Ok(c),
        Some(_) => Err(DecodeError::UnexpectedArgument),
    };
    let up = kw.to_ascii_uppercase();
    match up.as_slice() {
        b"QUIT" => no_args(Command::Quit),
        b"STAT" => no_args(Command::Stat),
        b"NOOP" => no_args(Command::Noop),
        b"RSET" => no_args(Command::Rset),
        b"CAPA" => no_args(Command::Capa),
        b"STLS" => no_args(Command::Stls),
        b"UTF8" => no_args(Command::Utf8),
        b"LIST" => opt_msg(args).map(Command::List),
        b"UIDL" => opt_msg(args).map(Command::Uidl),
        b"RETR" => one_msg(args).map(Command::Retr),
        b"DELE" => one_msg(args).map(Command::Dele),
        b"TOP" => {
            let a = args.ok_or(DecodeError::MissingArgument)?;
            let mut t = tokens(a);
            let msg = msg_num(t.next().ok_or(DecodeError::MissingArgument)?)?;
            let lines = number(t.next().ok_or(DecodeError::MissingArgument)?)?;
            match t.next() {
                Some(_) => Err(DecodeError::UnexpectedArgument),
                None => Ok(Command::Top { msg, lines }),
            }
        }
        b"USER" => {
            let a = args.ok_or(DecodeError::MissingArgument)?;
            Atom::new(a)
                .map(Command::User)
                .map_err(|_| DecodeError::UnexpectedArgument)
        }
        // The password is everything after "PASS ", spaces included; it may be empty.
        b"PASS" => {
            let r = rest.ok_or(DecodeError::MissingArgument)?;
            Text::new(r)
                .map(|t| Command::Pass(Secret::new(t)))
                .map_err(|_| DecodeError::InvalidArgument)
        }
        b"APOP" => {
            let a = args.ok_or(DecodeError::MissingArgument)?;
            let mut t = tokens(a);
            let name = Atom::new(t.next().ok_or(DecodeError::MissingArgument)?)
                .map_err(|_| DecodeError::InvalidArgument)?;
            let digest = apop_digest(t.next().ok_or(DecodeError::MissingArgument)?)?;
            match t.next() {
                Some(_) => Err(DecodeError::UnexpectedArgument),
                None => Ok(Command::Apop {
                    name,
                    digest: Secret::new(digest),
                }),
            }
        }
        b"AUTH" => {
            let Some(a) = args else {
                return Ok(Command::Auth(None));
            };
            let mut t = tokens(a);
            let mech = t.next().ok_or(DecodeError::MissingArgument)?;
            let mechanism = Mechanism::new(mech).map_err(|_| DecodeError::InvalidArgument)?;
            let initial_response = match t.next() {
                None => None,
                Some(b"=") => Some(Secret::new(Vec::new())),
                Some(b64) => Some(Secret::new(base64_data(b64)?)),
            };
            match t.next() {
                Some(_) => Err(DecodeError::UnexpectedArgument),
                None => Ok(Command::Auth(Some(AuthCommand {
                    mechanism,
                    initial_response,
                }))),
            }
        }
        b"LANG" => match args {
            None => Ok(Command::Lang(None)),
            Some(a) => Atom::new(a)
                .map(|t| Command::Lang(Some(t)))
                .map_err(|_| DecodeError::UnexpectedArgument),
        },
        _ => {
            let keyword = Keyword::new(kw).map_err(|_| DecodeError::Syntax)?;
            let args = match rest {
                None => None,
                Some(r) => Some(Text::new(r).map_err(|_| DecodeError::Syntax)?),
            };
            Ok(Command::Unknown { keyword, args })
        }
    }
}

fn opt_msg(args: Option<&[u8]>) -> Result<Option<MsgNum>, DecodeError> {
    args.map(|a| {
        let mut t = tokens(a);
        let n = msg_num(t.next().ok_or(DecodeError::MissingArgument)?)?;
        match t.next() {
            Some(_) => Err(DecodeError::UnexpectedArgument),
            None => Ok(n),
        }
    })
    .transpose()
}

fn one_msg(args: Option<&[u8]>) -> Result<MsgNum, DecodeError> {
    opt_msg(args)?.ok_or(DecodeError::MissingArgument)
}

fn apop_digest(hex: &[u8]) -> Result<ApopDigest, DecodeError> {
    if hex.len() != 32 {
        return Err(DecodeError::InvalidArgument);
    }
    let mut out = [0u8; 16];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let nib = |c: u8| (c as char).to_digit(16).ok_or(DecodeError::InvalidArgument);
        *o = u8::try_from(nib(pair[0])? * 16 + nib(pair[1])?)
            .map_err(|_| DecodeError::InvalidArgument)?;
    }
    Ok(ApopDigest(out))
}

/// A client line in a SASL exchange (RFC 5034 §4): base64 data, or `*` to cancel.
///
/// ```text
/// client-response = *4base64-char "*" / base64 CRLF   ; an empty line is an empty response
/// ```
pub fn sasl_response(input: &[u8]) -> Res<'_, SaslResponse> {
    on_line(input, parse_sasl_response)
}

/// [`sasl_response`] over one line's content.
pub fn parse_sasl_response(content: &[u8]) -> Result<SaslResponse, DecodeError> {
    match content {
        b"*" => Ok(SaslResponse::Cancel),
        // "=" is only defined for the initial response; accept it here as empty too.
        b"=" => Ok(SaslResponse::Data(Secret::new(Vec::new()))),
        b64 => base64_data(b64).map(|d| SaslResponse::Data(Secret::new(d))),
    }
}

// ---------------------------------------------------------------------------------------------
// Responses

/// A status line (RFC 1939 §3, RFC 2449 §8):
///
/// ```text
/// single-line = status [SP text] CRLF    ; 512 octets maximum
/// status      = "+OK" / "-ERR"
/// text        = ["[" resp-code "]" [SP]] *schar
/// resp-code   = resp-level *("/" resp-level)
/// ```
///
/// The status is matched case-insensitively; the text is kept verbatim after one space.
pub fn status_line(input: &[u8]) -> Res<'_, StatusLine> {
    on_line(input, parse_status_line)
}

/// [`status_line`] over one line's content.
pub fn parse_status_line(content: &[u8]) -> Result<StatusLine, DecodeError> {
    let status = (
        nom::branch::alt((
            tag_no_case(&b"+OK"[..]).map(|_| Status::Ok),
            tag_no_case(&b"-ERR"[..]).map(|_| Status::Err),
        )),
        opt(preceded(
            nom::bytes::complete::tag(&b" "[..]),
            nom::combinator::rest,
        )),
    );
    let (status, rest) = complete(content, status)?;
    let rest = rest.unwrap_or_default();
    let (code, text) = match leading_code(rest) {
        Some((code, text)) => (Some(code), text),
        None => (None, rest),
    };
    let text = Text::new(text).map_err(|_| DecodeError::Syntax)?;
    Ok(StatusLine::new_unchecked(status, code, text))
}

/// A `[code]` at the start of `text`, and the text after it and one optional space.
pub(crate) fn leading_code(text: &[u8]) -> Option<(ResponseCode, &[u8])> {
    let inner_and_rest = text.strip_prefix(b"[")?;
    let close = memchr::memchr(b']', inner_and_rest)?;
    let code = ResponseCode::from_bytes(&inner_and_rest[..close])?;
    let after = &inner_and_rest[close + 1..];
    Some((code, after.strip_prefix(b" ").unwrap_or(after)))
}

/// The greeting: a status line whose text may hold an APOP timestamp (RFC 1939 §4, §7).
pub fn greeting(input: &[u8]) -> Res<'_, Greeting> {
    on_line(input, parse_greeting)
}

/// [`greeting`] over one line's content.
pub fn parse_greeting(content: &[u8]) -> Result<Greeting, DecodeError> {
    parse_status_line(content).map(Greeting::new)
}

/// Whether `bytes` is an APOP timestamp: `<` local `@` domain `>`, printable ASCII without
/// `<`, `>` or spaces inside (RFC 822 msg-id, as RFC 2449 §3 requires; CVE-2007-1558).
pub(crate) fn is_timestamp(bytes: &[u8]) -> bool {
    let Some(inner) = bytes.strip_prefix(b"<").and_then(|b| b.strip_suffix(b">")) else {
        return false;
    };
    let Some(at) = memchr::memchr(b'@', inner) else {
        return false;
    };
    at > 0
        && at + 1 < inner.len()
        && bytes.len() <= Timestamp::MAX_LEN
        && inner
            .iter()
            .all(|&b| (0x21..=0x7e).contains(&b) && b != b'<' && b != b'>')
}

/// The first valid APOP timestamp in `text`, found in linear time (a regular expression did
/// this in quadratic time in CPython, CVE-2018-1060).
pub(crate) fn find_timestamp(text: &[u8]) -> Option<&[u8]> {
    let mut from = 0;
    while let Some(lt) = memchr::memchr(b'<', &text[from..]).map(|i| from + i) {
        let gt = lt + memchr::memchr(b'>', &text[lt..])?;
        // Start at the last '<' before this '>', so each byte is looked at a bounded number
        // of times.
        let lt = lt + memchr::memrchr(b'<', &text[lt..gt]).unwrap_or(0);
        if is_timestamp(&text[lt..=gt]) {
            return Some(&text[lt..=gt]);
        }
        from = gt + 1;
    }
    None
}

/// A SASL server challenge (RFC 5034 §4): `continue-req = "+" SP [base64] CRLF`.
///
/// A bare `+` is accepted as an empty challenge. Invalid base64 is an error: the client must
/// then cancel with `*`.
pub fn continuation(input: &[u8]) -> Res<'_, Continuation> {
    on_line(input, parse_continuation)
}

/// [`continuation`] over one line's content.
pub fn parse_continuation(content: &[u8]) -> Result<Continuation, DecodeError> {
    let b64 = match content {
        [b'+'] => &[][..],
        [b'+', b' ', rest @ ..] => trim_end_spaces(rest),
        _ => return Err(DecodeError::Syntax),
    };
    base64_data(b64).map(|d| Continuation(Secret::new(d)))
}

/// Whether a status line content is a SASL continuation (`+` then space or end), as opposed
/// to `+OK`.
pub fn is_continuation(content: &[u8]) -> bool {
    matches!(content, [b'+'] | [b'+', b' ', ..])
}

/// The text of a `+OK` reply to `STAT`: `count SP size`, anything after ignored (RFC 1939 §5).
pub fn parse_stat(text: &[u8]) -> Result<Stat, DecodeError> {
    let mut t = tokens(text);
    let count = number(t.next().ok_or(DecodeError::MissingArgument)?)?;
    let size = number(t.next().ok_or(DecodeError::MissingArgument)?)?;
    Ok(Stat { count, size })
}

/// A scan listing line (RFC 1939 §5): `msg SP size [SP info]`, in a multi-line `LIST` reply.
pub fn scan_listing(input: &[u8]) -> Res<'_, ScanListing> {
    on_line(input, parse_scan_listing)
}

/// [`scan_listing`] over one line's content, or the text of a `+OK` reply to `LIST n`.
pub fn parse_scan_listing(content: &[u8]) -> Result<ScanListing, DecodeError> {
    let p = (
        opt(spaces),
        msg_p,
        spaces,
        u64_p,
        opt((spaces, opt(nom::combinator::rest))),
    );
    complete(content, p).map(|(_, msg, _, size, _)| ScanListing { msg, size })
}

/// A unique-id listing line (RFC 1939 §7): `msg SP unique-id`, in a multi-line `UIDL` reply.
pub fn uid_listing(input: &[u8]) -> Res<'_, UidListing> {
    on_line(input, parse_uid_listing)
}

/// [`uid_listing`] over one line's content, or the text of a `+OK` reply to `UIDL n`.
pub fn parse_uid_listing(content: &[u8]) -> Result<UidListing, DecodeError> {
    let p = (opt(spaces), msg_p, spaces, token, opt(spaces));
    let (_, msg, _, uid, _) = complete(content, p)?;
    let uid = Uid::new(uid).map_err(|_| DecodeError::InvalidUid)?;
    Ok(UidListing { msg, uid })
}

/// A capability line of the `CAPA` reply (RFC 2449 §5):
///
/// ```text
/// capability = capa-tag *(SP param) CRLF   ; 512 octets maximum
/// capa-tag   = 1*cchar                     ; case-insensitive
/// ```
///
/// Never fails on a line with a tag: what is not a known capability with valid parameters is
/// [`Capability::Other`].
pub fn capability(input: &[u8]) -> Res<'_, Capability> {
    on_line(input, parse_capability)
}

/// [`capability`] over one line's content.
pub fn parse_capability(content: &[u8]) -> Result<Capability, DecodeError> {
    if let Some(c) = capability_typed(content) {
        return Ok(c);
    }
    let mut t = tokens(content);
    let tag = Atom::new(t.next().ok_or(DecodeError::Syntax)?).map_err(|_| DecodeError::Syntax)?;
    let params = t
        .map(|p| Atom::new(p).map_err(|_| DecodeError::Syntax))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Capability::Other(OtherCapability::new_unchecked(
        tag, params,
    )))
}

/// The typed capability `content` names, if it is a known tag with valid parameters.
pub(crate) fn capability_typed(content: &[u8]) -> Option<Capability> {
    let mut t = tokens(content);
    let tag = t.next()?.to_ascii_uppercase();
    let params: Vec<&[u8]> = t.collect();
    let is_user = |p: &[u8]| p.eq_ignore_ascii_case(b"USER");
    let per_user = |p: &[&[u8]]| match p {
        [] => Some(false),
        [u] if is_user(u) => Some(true),
        _ => None,
    };
    let bare = |c: Capability| params.is_empty().then_some(c);
    match tag.as_slice() {
        b"TOP" => bare(Capability::Top),
        b"USER" => bare(Capability::User),
        b"RESP-CODES" => bare(Capability::RespCodes),
        b"AUTH-RESP-CODE" => bare(Capability::AuthRespCode),
        b"PIPELINING" => bare(Capability::Pipelining),
        b"UIDL" => bare(Capability::Uidl),
        b"STLS" => bare(Capability::Stls),
        b"LANG" => bare(Capability::Lang),
        b"SASL" => params
            .iter()
            .map(|p| Mechanism::new(*p).ok())
            .collect::<Option<Vec<_>>>()
            .map(Capability::Sasl),
        b"LOGIN-DELAY" => {
            let (n, rest) = params.split_first()?;
            Some(Capability::LoginDelay {
                secs: number(n).ok()?,
                per_user: per_user(rest)?,
            })
        }
        b"EXPIRE" => {
            let (n, rest) = params.split_first()?;
            let policy = if n.eq_ignore_ascii_case(b"NEVER") {
                Expire::Never
            } else {
                Expire::Days(number(n).ok()?)
            };
            Some(Capability::Expire {
                policy,
                per_user: per_user(rest)?,
            })
        }
        b"UTF8" => Some(Capability::Utf8 {
            user: per_user(&params)?,
        }),
        b"IMPLEMENTATION" => {
            // The text is the rest of the (untrimmed) line after the tag and one space.
            let untrimmed = &content[content.iter().take_while(|&&b| b == b' ').count()..];
            let after = &untrimmed[b"IMPLEMENTATION".len()..];
            Some(Capability::Implementation(
                Text::new(after.strip_prefix(b" ").unwrap_or(after)).ok()?,
            ))
        }
        _ => None,
    }
}

/// One line of a multi-line `LANG` reply (RFC 6856 §3): `lang-tag [SP description]`.
pub fn lang_item(input: &[u8]) -> Res<'_, LangItem> {
    on_line(input, parse_lang_item)
}

/// [`lang_item`] over one line's content.
pub fn parse_lang_item(content: &[u8]) -> Result<LangItem, DecodeError> {
    let (tag, description) = match memchr::memchr(b' ', content) {
        Some(sp) => (&content[..sp], &content[sp + 1..]),
        None => (content, &[][..]),
    };
    Ok(LangItem {
        tag: Atom::new(tag).map_err(|_| DecodeError::Syntax)?,
        description: Text::new(description).map_err(|_| DecodeError::Syntax)?,
    })
}

/// One line of a multi-line listing (`LIST`, `UIDL`, `CAPA`, `LANG`), after framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListingLine<'a> {
    /// A data line, its leading stuffed dot removed.
    Data(&'a [u8]),
    /// The terminating `.` line.
    End,
}

/// Classifies a multi-line listing line and undoes its dot-stuffing (RFC 1939 §3).
pub fn listing_line(input: &[u8]) -> Res<'_, ListingLine<'_>> {
    let (rest, content) = line(input)?;
    Ok((rest, classify_listing_line(content)))
}

/// [`listing_line`] over one line's content.
pub fn classify_listing_line(content: &[u8]) -> ListingLine<'_> {
    match content {
        b"." => ListingLine::End,
        [b'.', rest @ ..] => ListingLine::Data(rest),
        _ => ListingLine::Data(content),
    }
}
