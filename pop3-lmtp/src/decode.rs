//! Parsers (nom 8) over one framed line, and the multi-line reply reader.
//!
//! Like `pop3_proto::decode`, each `fn name(input) -> IResult<&[u8], T, DecodeError>` takes
//! input that begins with one line, ends it at CRLF (a bare LF is accepted), and returns the
//! rest of the input with the value; input without a line end is
//! `Err(nom::Err::Incomplete(_))`. The `parse_*` functions take one line's content, line end
//! removed. NUL and a bare CR in a line are refused ([`DecodeError::ForbiddenByte`]).
//!
//! Verbs and the `FROM:` / `TO:` keywords are case-insensitive. Paths follow RFC 5321
//! §4.1.2 strictly (a `Dot-string` or `Quoted-string` local part, a domain or address
//! literal, a source route accepted and dropped), with two common lenient readings: spaces
//! after `FROM:` / `TO:` and `_` in domain labels.

use nom::IResult;
use nom::Parser;
use nom::branch::alt;
use nom::bytes::complete::{tag, tag_no_case, take_while, take_while1};
use nom::combinator::{opt, recognize};
use nom::multi::{many0, separated_list1};
use nom::sequence::{delimited, pair, preceded};

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
    /// An argument was given where none is allowed.
    #[error("unexpected argument")]
    UnexpectedArgument,
    /// A path or mailbox that is not RFC 5321 syntax.
    #[error("invalid path")]
    InvalidPath,
    /// A domain that is not RFC 5321 syntax.
    #[error("invalid domain")]
    InvalidDomain,
    /// An ESMTP parameter that is not RFC 5321 syntax.
    #[error("invalid parameter")]
    InvalidParameter,
    /// Octets that are not UTF-8 where text is expected.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// A reply line that does not begin with a three-digit code 200..=599.
    #[error("invalid reply code")]
    InvalidReplyCode,
    /// The lines of a multi-line reply carry different codes.
    #[error("reply code changed within a multi-line reply")]
    MixedReplyCodes,
    /// A multi-line reply with more lines than allowed.
    #[error("too many reply lines")]
    TooManyLines,
    /// A line over the limit.
    #[error("line too long")]
    LineTooLong,
    /// A byte that may not appear here (NUL, a bare CR).
    #[error("forbidden byte 0x{0:02x}")]
    ForbiddenByte(u8),
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

/// Refuses NUL and CR in a line's content.
pub(crate) fn check_content(content: &[u8]) -> Result<(), DecodeError> {
    match memchr::memchr2(0, b'\r', content) {
        Some(i) => Err(DecodeError::ForbiddenByte(content[i])),
        None => Ok(()),
    }
}

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

fn utf8(b: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(b).map_err(|_| DecodeError::InvalidUtf8)
}

fn trim_spaces(mut s: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' '] = s {
        s = rest;
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Addresses (RFC 5321 §4.1.2)

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// `Dot-string = Atom *("." Atom)`
fn dot_string(i: &[u8]) -> Res<'_, &[u8]> {
    recognize(separated_list1(tag(&b"."[..]), take_while1(is_atext))).parse(i)
}

/// `Quoted-string = DQUOTE *QcontentSMTP DQUOTE`, `QcontentSMTP = qtextSMTP /
/// quoted-pairSMTP`, `qtextSMTP = %d32-33 / %d35-91 / %d93-126`,
/// `quoted-pairSMTP = %d92 %d32-126`.
fn quoted_string(i: &[u8]) -> Res<'_, &[u8]> {
    let qtext = take_while1(|b: u8| (32..=126).contains(&b) && b != b'"' && b != b'\\');
    let qpair = recognize(pair(
        tag(&b"\\"[..]),
        take_while_m_n_1(|b: u8| (32..=126).contains(&b)),
    ));
    recognize(delimited(
        tag(&b"\""[..]),
        many0(alt((qtext, qpair))),
        tag(&b"\""[..]),
    ))
    .parse(i)
}

fn take_while_m_n_1(f: impl Fn(u8) -> bool) -> impl Fn(&[u8]) -> Res<'_, &[u8]> {
    move |i: &[u8]| match i.first() {
        Some(&b) if f(b) => Ok((&i[1..], &i[..1])),
        _ => fail(DecodeError::Syntax),
    }
}

/// `Local-part = Dot-string / Quoted-string`
fn local_part(i: &[u8]) -> Res<'_, &[u8]> {
    alt((dot_string, quoted_string)).parse(i)
}

/// `sub-domain = Let-dig [Ldh-str]` (with `_` tolerated, as real host names carry it).
fn sub_domain(i: &[u8]) -> Res<'_, &[u8]> {
    take_while1(|b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_').parse(i)
}

/// `Domain = sub-domain *("." sub-domain)` / `address-literal = "[" 1*dcontent "]"`
/// (`dcontent = %d33-90 / %d94-126`, the general form, which covers IPv4 and `IPv6:`).
fn domain(i: &[u8]) -> Res<'_, &[u8]> {
    let literal = recognize(delimited(
        tag(&b"["[..]),
        take_while1(|b: u8| (33..=90).contains(&b) || (94..=126).contains(&b)),
        tag(&b"]"[..]),
    ));
    alt((
        literal,
        recognize(separated_list1(tag(&b"."[..]), sub_domain)),
    ))
    .parse(i)
}

/// Whether `s` is a whole RFC 5321 `Domain` or `address-literal`.
pub(crate) fn is_domain(s: &[u8]) -> bool {
    matches!(domain(s), Ok((rest, _)) if rest.is_empty())
}

/// Whether `s` is a whole RFC 5321 `Local-part`.
pub(crate) fn is_local_part(s: &[u8]) -> bool {
    matches!(local_part(s), Ok((rest, _)) if rest.is_empty())
}

fn owned(b: &[u8]) -> String {
    // Every octet the address parsers accept is ASCII.
    String::from_utf8_lossy(b).into_owned()
}

/// `Mailbox = Local-part "@" ( Domain / address-literal )`
fn mailbox(i: &[u8]) -> Res<'_, Mailbox> {
    let (i, (local, _, dom)) = (local_part, tag(&b"@"[..]), domain).parse(i)?;
    Ok((
        i,
        Mailbox::from_parts(
            owned(local),
            Some(Domain::new(owned(dom)).map_err(|_| nom::Err::Error(DecodeError::InvalidDomain))?),
        ),
    ))
}

/// A whole `Mailbox` (`local@domain`, no angle brackets).
pub fn parse_mailbox(s: &[u8]) -> Result<Mailbox, DecodeError> {
    match mailbox(s) {
        Ok(([], m)) => Ok(m),
        _ => Err(DecodeError::InvalidPath),
    }
}

/// `A-d-l = At-domain *( "," At-domain )`, `At-domain = "@" Domain`: a source route,
/// accepted and ignored (RFC 5321 §4.1.2, appendix C).
fn source_route(i: &[u8]) -> Res<'_, &[u8]> {
    recognize(pair(
        separated_list1(tag(&b","[..]), preceded(tag(&b"@"[..]), domain)),
        tag(&b":"[..]),
    ))
    .parse(i)
}

/// `Path = "<" [ A-d-l ":" ] Mailbox ">"`
fn path_mailbox(i: &[u8]) -> Res<'_, Mailbox> {
    delimited(
        tag(&b"<"[..]),
        preceded(opt(source_route), mailbox),
        tag(&b">"[..]),
    )
    .parse(i)
}

/// `Reverse-path = Path / "<>"` (RFC 5321 §4.1.2).
///
/// ```
/// use pop3_lmtp::{decode, Path};
/// assert_eq!(decode::reverse_path(b"<>").unwrap(), (&b""[..], Path::Null));
/// let (_, p) = decode::reverse_path(b"<@relay.example:bob@example.org>").unwrap();
/// assert_eq!(p.to_string(), "<bob@example.org>");
/// ```
pub fn reverse_path(i: &[u8]) -> Res<'_, Path> {
    alt((
        tag(&b"<>"[..]).map(|_| Path::Null),
        path_mailbox.map(Path::Mailbox),
    ))
    .parse(i)
    .map_err(|e| e.map(|_| DecodeError::InvalidPath))
}

/// `Forward-path = Path`, or `"<Postmaster>"` (case-insensitive, RFC 5321 §4.1.1.3).
///
/// ```
/// use pop3_lmtp::{decode, Mailbox};
/// let (_, m) = decode::forward_path(b"<\"john doe\"@example.org>").unwrap();
/// assert_eq!(m.local_part_unquoted(), "john doe");
/// assert_eq!(decode::forward_path(b"<postmaster>").unwrap().1, Mailbox::postmaster());
/// assert!(decode::forward_path(b"<>").is_err());
/// ```
pub fn forward_path(i: &[u8]) -> Res<'_, Mailbox> {
    alt((
        tag_no_case(&b"<postmaster>"[..]).map(|_| Mailbox::postmaster()),
        path_mailbox,
    ))
    .parse(i)
    .map_err(|e| e.map(|_| DecodeError::InvalidPath))
}

/// `esmtp-param = esmtp-keyword ["=" esmtp-value]`
fn esmtp_param(i: &[u8]) -> Res<'_, Param> {
    let keyword = recognize(pair(
        take_while_m_n_1(|b: u8| b.is_ascii_alphanumeric()),
        take_while(|b: u8| b.is_ascii_alphanumeric() || b == b'-'),
    ));
    let value = take_while1(|b: u8| (33..=126).contains(&b) && b != b'=');
    let (rest, (k, v)) = pair(keyword, opt(preceded(tag(&b"="[..]), value))).parse(i)?;
    match Param::new(owned(k), v.map(owned)) {
        Ok(p) => Ok((rest, p)),
        Err(_) => fail(DecodeError::InvalidParameter),
    }
}

/// `Mail-parameters = esmtp-param *(SP esmtp-param)`, after the path: each parameter
/// preceded by one or more spaces, trailing spaces ignored.
fn params(content: &[u8]) -> Result<Vec<Param>, DecodeError> {
    if !content.is_empty() && content[0] != b' ' {
        return Err(DecodeError::InvalidPath);
    }
    let mut out = Vec::new();
    for p in content.split(|&b| b == b' ').filter(|p| !p.is_empty()) {
        match esmtp_param(p) {
            Ok(([], param)) => out.push(param),
            _ => return Err(DecodeError::InvalidParameter),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Commands

/// A command line (RFC 5321 §4.1.1, RFC 2033 §4.1):
///
/// ```text
/// lhlo = "LHLO" SP Domain CRLF            ; also EHLO, HELO (address literals allowed)
/// mail = "MAIL FROM:" Reverse-path [SP Mail-parameters] CRLF
/// rcpt = "RCPT TO:" ( "<Postmaster@" Domain ">" / "<Postmaster>" / Forward-path )
///        [SP Rcpt-parameters] CRLF
/// data = "DATA" CRLF                      ; also RSET, QUIT, STARTTLS
/// noop = "NOOP" [ SP String ] CRLF
/// vrfy = "VRFY" SP String CRLF
/// ```
///
/// Verbs are case-insensitive; spaces after `FROM:`/`TO:` and trailing spaces are
/// tolerated. Any other verb is [`Command::Unknown`].
///
/// ```
/// use pop3_lmtp::{decode, Command, Path};
/// let (rest, cmd) = decode::command(b"mail from:<> BODY=8BITMIME\r\nDATA\r\n").unwrap();
/// assert!(matches!(cmd, Command::Mail { from: Path::Null, ref params } if params.len() == 1));
/// assert_eq!(rest, b"DATA\r\n");
/// ```
pub fn command(input: &[u8]) -> Res<'_, Command> {
    on_line(input, parse_command)
}

/// [`command`] over one line's content (no CRLF).
pub fn parse_command(content: &[u8]) -> Result<Command, DecodeError> {
    check_content(content)?;
    let (verb, args) = match memchr::memchr(b' ', content) {
        Some(i) => (&content[..i], &content[i + 1..]),
        None => (content, &b""[..]),
    };
    let upper = verb.to_ascii_uppercase();
    let no_args = |c: Command| {
        if trim_spaces(args).is_empty() {
            Ok(c)
        } else {
            Err(DecodeError::UnexpectedArgument)
        }
    };
    match upper.as_slice() {
        b"LHLO" => hello(args).map(Command::Lhlo),
        b"EHLO" => hello(args).map(Command::Ehlo),
        b"HELO" => hello(args).map(Command::Helo),
        b"MAIL" => {
            let rest = keyword_colon(args, b"FROM:")?;
            let (rest, from) = reverse_path(rest).map_err(|_| DecodeError::InvalidPath)?;
            Ok(Command::Mail {
                from,
                params: params(rest)?,
            })
        }
        b"RCPT" => {
            let rest = keyword_colon(args, b"TO:")?;
            let (rest, to) = forward_path(rest).map_err(|_| DecodeError::InvalidPath)?;
            Ok(Command::Rcpt {
                to,
                params: params(rest)?,
            })
        }
        b"DATA" => no_args(Command::Data),
        b"RSET" => no_args(Command::Rset),
        b"QUIT" => no_args(Command::Quit),
        b"STARTTLS" => no_args(Command::StartTls),
        b"NOOP" => {
            let a = trim_spaces(args);
            if a.is_empty() {
                Ok(Command::Noop(None))
            } else {
                Ok(Command::Noop(Some(text(a)?)))
            }
        }
        b"VRFY" => {
            let a = trim_spaces(args);
            if a.is_empty() {
                Err(DecodeError::MissingArgument)
            } else {
                Ok(Command::Vrfy(text(a)?))
            }
        }
        _ => {
            if verb.is_empty() {
                return Err(DecodeError::Syntax);
            }
            Ok(Command::Unknown {
                verb: text(verb)?,
                args: text(args)?,
            })
        }
    }
}

fn text(b: &[u8]) -> Result<Text, DecodeError> {
    Text::new(utf8(b)?).map_err(|_| DecodeError::Syntax)
}

fn hello(args: &[u8]) -> Result<Domain, DecodeError> {
    let a = trim_spaces(args);
    if a.is_empty() {
        return Err(DecodeError::MissingArgument);
    }
    if is_domain(a) {
        Domain::new(owned(a)).map_err(|_| DecodeError::InvalidDomain)
    } else {
        Err(DecodeError::InvalidDomain)
    }
}

/// `FROM:` / `TO:` (case-insensitive), then optional spaces.
fn keyword_colon<'a>(args: &'a [u8], kw: &'static [u8]) -> Result<&'a [u8], DecodeError> {
    let r: Res<'a, &'a [u8]> = preceded(tag_no_case(kw), take_while(|b| b == b' ')).parse(args);
    match r {
        Ok(([], _)) => Err(DecodeError::MissingArgument),
        Ok((rest, _)) => Ok(rest),
        Err(_) => Err(DecodeError::Syntax),
    }
}

// ---------------------------------------------------------------------------------------------
// Replies

/// One line of a reply: `Reply-code [ SP / "-" ] [ textstring ]` (RFC 5321 §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyLine {
    /// The code.
    pub code: u16,
    /// `false` for a `250-` line (more follow), `true` for the last one.
    pub last: bool,
    /// The enhanced status code that begins the text, when its class is the code's first
    /// digit.
    pub enhanced: Option<EnhancedCode>,
    /// The text after the code and the enhanced code (invalid UTF-8 replaced).
    pub text: String,
}

/// A reply line:
///
/// ```text
/// Reply-line = *( Reply-code "-" [ textstring ] CRLF )
///              Reply-code [ SP textstring ] CRLF
/// Reply-code = %x32-35 %x30-35 %x30-39
/// ```
///
/// Read leniently: a code alone is a last line with no text, text that is not UTF-8 is kept
/// with replacement characters. An RFC 2034 enhanced code (`x.y.z` with `x` the code's
/// first digit) at the start of the text is split off.
///
/// ```
/// use pop3_lmtp::decode;
/// let (_, l) = decode::reply_line(b"250-2.1.5 Ok\r\n").unwrap();
/// assert_eq!((l.code, l.last, l.enhanced, l.text.as_str()), (250, false, Some((2, 1, 5)), "Ok"));
/// ```
pub fn reply_line(input: &[u8]) -> Res<'_, ReplyLine> {
    on_line(input, parse_reply_line)
}

/// [`reply_line`] over one line's content (no CRLF).
pub fn parse_reply_line(content: &[u8]) -> Result<ReplyLine, DecodeError> {
    check_content(content)?;
    let code = match content {
        [a @ b'2'..=b'5', b @ b'0'..=b'9', c @ b'0'..=b'9', ..] => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return Err(DecodeError::InvalidReplyCode),
    };
    let (last, text) = match &content[3..] {
        [] => (true, &b""[..]),
        [b'-', rest @ ..] => (false, rest),
        [b' ', rest @ ..] => (true, rest),
        _ => return Err(DecodeError::InvalidReplyCode),
    };
    let (enhanced, text) = match enhanced_code(text) {
        Some((e, rest)) if u16::from(e.0) == code / 100 => (Some(e), rest),
        _ => (None, text),
    };
    Ok(ReplyLine {
        code,
        last,
        enhanced,
        text: String::from_utf8_lossy(text).into_owned(),
    })
}

/// `class "." subject "." detail` (RFC 3463 §2): `class = "2"/"4"/"5"`,
/// `subject = 1*3digit`, `detail = 1*3digit`, followed by a space or the end.
fn enhanced_code(text: &[u8]) -> Option<(EnhancedCode, &[u8])> {
    fn num(s: &[u8]) -> Option<(u16, &[u8])> {
        let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || n > 3 {
            return None;
        }
        let v = s[..n]
            .iter()
            .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
        Some((v, &s[n..]))
    }
    let class = match text.first() {
        Some(c @ (b'2' | b'4' | b'5')) => c - b'0',
        _ => return None,
    };
    let rest = text.get(1..)?.strip_prefix(b".")?;
    let (subject, rest) = num(rest)?;
    let rest = rest.strip_prefix(b".")?;
    let (detail, rest) = num(rest)?;
    let rest = match rest {
        [] => rest,
        [b' ', r @ ..] => r,
        _ => return None,
    };
    Some(((class, subject, detail), rest))
}

/// A whole reply, all its lines: `Err(Incomplete)` until its last line is there.
///
/// ```
/// use pop3_lmtp::decode;
/// let (rest, r) = decode::reply(b"250-mx.example\r\n250 PIPELINING\r\n").unwrap();
/// assert!(rest.is_empty());
/// assert_eq!(r.lines, ["mx.example", "PIPELINING"]);
/// ```
pub fn reply(mut input: &[u8]) -> Res<'_, Reply> {
    let mut reader = ReplyReader::new(usize::MAX, usize::MAX);
    loop {
        let (rest, content) = line(input)?;
        input = rest;
        match reader.push_line(content) {
            Ok(Some(r)) => return Ok((input, r)),
            Ok(None) => {}
            Err(e) => return fail(e),
        }
    }
}

/// Assembles multi-line replies from lines, within a line count limit.
///
/// ```
/// use pop3_lmtp::decode::ReplyReader;
/// let mut r = ReplyReader::new(512, 100);
/// assert_eq!(r.push_line(b"250-first").unwrap(), None);
/// let reply = r.push_line(b"250 2.0.0 second").unwrap().unwrap();
/// assert_eq!(reply.lines, ["first", "second"]);
/// assert_eq!(reply.enhanced, Some((2, 0, 0)));
/// ```
#[derive(Debug, Clone)]
pub struct ReplyReader {
    max_line: usize,
    max_lines: usize,
    partial: Option<Reply>,
}

impl ReplyReader {
    /// A reader that refuses lines longer than `max_line` octets (without the line end) and
    /// replies of more than `max_lines` lines.
    pub fn new(max_line: usize, max_lines: usize) -> Self {
        ReplyReader {
            max_line,
            max_lines: max_lines.max(1),
            partial: None,
        }
    }

    /// Whether the lines of a reply have begun without its last line.
    pub fn in_progress(&self) -> bool {
        self.partial.is_some()
    }

    /// Takes one line's content (no line end); returns the reply its last line completes.
    /// The code of the last line is the reply's; a change of code within a reply is an
    /// error. The enhanced code is the last line's.
    pub fn push_line(&mut self, content: &[u8]) -> Result<Option<Reply>, DecodeError> {
        if content.len() > self.max_line {
            self.partial = None;
            return Err(DecodeError::LineTooLong);
        }
        let l = match parse_reply_line(content) {
            Ok(l) => l,
            Err(e) => {
                self.partial = None;
                return Err(e);
            }
        };
        let mut reply = match self.partial.take() {
            Some(p) if p.code != l.code => return Err(DecodeError::MixedReplyCodes),
            Some(p) if p.lines.len() >= self.max_lines => return Err(DecodeError::TooManyLines),
            Some(p) => p,
            None => Reply {
                code: l.code,
                enhanced: None,
                lines: Vec::new(),
            },
        };
        reply.lines.push(l.text);
        reply.enhanced = l.enhanced;
        if l.last {
            Ok(Some(reply))
        } else {
            self.partial = Some(reply);
            Ok(None)
        }
    }
}
