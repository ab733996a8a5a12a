//! The values: replies, commands, paths and their parts.
//!
//! Constructors validate, so a CR, LF or NUL in an address, a domain or a parameter is
//! unrepresentable and encoding a [`Command`] cannot inject a line. [`Reply`] has public
//! fields (it is what a server said, or what a store wants said); its encoder replaces any
//! line end or NUL in a text line with a space.

use std::fmt;

use crate::decode;

/// Why a value could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// Not an RFC 5321 `Domain` or `address-literal`.
    #[error("invalid domain")]
    Domain,
    /// Not an RFC 5321 `Local-part` (`Dot-string` or `Quoted-string`).
    #[error("invalid local part")]
    LocalPart,
    /// Not an RFC 5321 `Mailbox`.
    #[error("invalid mailbox")]
    Mailbox,
    /// Not an RFC 5321 `esmtp-keyword` or `esmtp-value`.
    #[error("invalid parameter")]
    Parameter,
    /// A reply code outside 200..=599, or an enhanced code out of range.
    #[error("invalid reply code")]
    ReplyCode,
    /// Text holding CR, LF or NUL.
    #[error("invalid text")]
    Text,
}

/// An RFC 5321 `Domain` (`sub-domain *("." sub-domain)`, with `_` tolerated) or an
/// `address-literal` (`[192.0.2.1]`, `[IPv6:...]`), as sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    /// Validates `s` as a domain or address literal.
    ///
    /// ```
    /// use pop3_lmtp::Domain;
    /// assert!(Domain::new("mx.example.org").is_ok());
    /// assert!(Domain::new("[192.0.2.1]").is_ok());
    /// assert!(Domain::new("bad domain").is_err());
    /// ```
    pub fn new(s: impl Into<String>) -> Result<Domain, ValueError> {
        let s = s.into();
        if decode::is_domain(s.as_bytes()) {
            Ok(Domain(s))
        } else {
            Err(ValueError::Domain)
        }
    }

    /// The domain as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it is an address literal (`[...]`).
    pub fn is_address_literal(&self) -> bool {
        self.0.starts_with('[')
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An RFC 5321 `Mailbox`: `Local-part "@" (Domain / address-literal)`, or the special
/// recipient `<Postmaster>` (RFC 5321 §4.1.1.3), which has no domain.
///
/// The local part is kept in its wire form: a `Dot-string` as is, a `Quoted-string` with its
/// quotes and backslashes, so a mailbox encodes back to the octets it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mailbox {
    local: String,
    domain: Option<Domain>,
}

impl Mailbox {
    /// A mailbox from a local part in wire form (`john.doe`, `"john doe"`) and a domain.
    ///
    /// ```
    /// use pop3_lmtp::{Domain, Mailbox};
    /// let m = Mailbox::new("\"john doe\"", Domain::new("example.org").unwrap()).unwrap();
    /// assert_eq!(m.to_string(), "\"john doe\"@example.org");
    /// assert_eq!(m.local_part_unquoted(), "john doe");
    /// assert!(Mailbox::new("a b", Domain::new("example.org").unwrap()).is_err());
    /// ```
    pub fn new(local: impl Into<String>, domain: Domain) -> Result<Mailbox, ValueError> {
        let local = local.into();
        if decode::is_local_part(local.as_bytes()) {
            Ok(Mailbox {
                local,
                domain: Some(domain),
            })
        } else {
            Err(ValueError::LocalPart)
        }
    }

    /// Parses `local@domain` (no angle brackets).
    ///
    /// ```
    /// use pop3_lmtp::Mailbox;
    /// let m = Mailbox::parse("alice@example.org").unwrap();
    /// assert_eq!(m.local_part(), "alice");
    /// assert_eq!(m.domain().unwrap().as_str(), "example.org");
    /// ```
    pub fn parse(s: &str) -> Result<Mailbox, ValueError> {
        decode::parse_mailbox(s.as_bytes()).map_err(|_| ValueError::Mailbox)
    }

    /// The recipient `<Postmaster>` without a domain (RFC 5321 §4.1.1.3).
    pub fn postmaster() -> Mailbox {
        Mailbox {
            local: "Postmaster".into(),
            domain: None,
        }
    }

    pub(crate) fn from_parts(local: String, domain: Option<Domain>) -> Mailbox {
        Mailbox { local, domain }
    }

    /// The local part in wire form (quotes and backslashes of a `Quoted-string` kept).
    pub fn local_part(&self) -> &str {
        &self.local
    }

    /// The local part with a `Quoted-string`'s quotes and backslash escapes removed.
    pub fn local_part_unquoted(&self) -> String {
        match self
            .local
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
        {
            None => self.local.clone(),
            Some(inner) => {
                let mut out = String::with_capacity(inner.len());
                let mut escaped = false;
                for c in inner.chars() {
                    if escaped || c != '\\' {
                        out.push(c);
                        escaped = false;
                    } else {
                        escaped = true;
                    }
                }
                out
            }
        }
    }

    /// The domain; `None` only for [`Mailbox::postmaster`].
    pub fn domain(&self) -> Option<&Domain> {
        self.domain.as_ref()
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.domain {
            Some(d) => write!(f, "{}@{}", self.local, d),
            None => f.write_str(&self.local),
        }
    }
}

/// A reverse path (`MAIL FROM`): a mailbox, or the null path `<>` of bounces
/// (RFC 5321 §4.5.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Path {
    /// `<>`.
    Null,
    /// `<mailbox>`.
    Mailbox(Mailbox),
}

impl Path {
    /// The mailbox, unless the path is null.
    pub fn mailbox(&self) -> Option<&Mailbox> {
        match self {
            Path::Null => None,
            Path::Mailbox(m) => Some(m),
        }
    }
}

impl fmt::Display for Path {
    /// `<>` or `<local@domain>`, as in a `Return-Path:` header.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Null => f.write_str("<>"),
            Path::Mailbox(m) => write!(f, "<{m}>"),
        }
    }
}

/// An ESMTP parameter of `MAIL` or `RCPT` (RFC 5321 §4.1.2):
/// `esmtp-keyword ["=" esmtp-value]`. The keyword is kept as sent; compare it with
/// [`Param::is`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Param {
    keyword: String,
    value: Option<String>,
}

impl Param {
    /// A parameter; the keyword is `(ALPHA / DIGIT) *(ALPHA / DIGIT / "-")`, the value
    /// `1*(%d33-60 / %d62-126)`.
    ///
    /// ```
    /// use pop3_lmtp::Param;
    /// let p = Param::new("SIZE", Some("1024")).unwrap();
    /// assert!(p.is("size"));
    /// assert!(Param::new("SIZE", Some("a=b")).is_err());
    /// ```
    pub fn new(
        keyword: impl Into<String>,
        value: Option<impl Into<String>>,
    ) -> Result<Param, ValueError> {
        let keyword = keyword.into();
        let value = value.map(Into::into);
        let kw_ok = keyword
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && keyword
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let value_ok = value.as_ref().is_none_or(|v| {
            !v.is_empty() && v.bytes().all(|b| (33..=126).contains(&b) && b != b'=')
        });
        if kw_ok && value_ok {
            Ok(Param { keyword, value })
        } else {
            Err(ValueError::Parameter)
        }
    }

    /// The keyword, as sent.
    pub fn keyword(&self) -> &str {
        &self.keyword
    }

    /// The value, if any.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }

    /// Whether the keyword is `keyword` (case-insensitive).
    pub fn is(&self, keyword: &str) -> bool {
        self.keyword.eq_ignore_ascii_case(keyword)
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={}", self.keyword, v),
            None => f.write_str(&self.keyword),
        }
    }
}

/// Free text of a command argument (`VRFY`, `NOOP`, an unknown command's arguments):
/// printable, without CR, LF or NUL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Text(String);

impl Text {
    /// Validates `s`: no CR, LF or NUL.
    pub fn new(s: impl Into<String>) -> Result<Text, ValueError> {
        let s = s.into();
        if s.bytes().any(|b| matches!(b, 0 | b'\r' | b'\n')) {
            Err(ValueError::Text)
        } else {
            Ok(Text(s))
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An LMTP or SMTP command (RFC 2033, RFC 5321 §4.1, RFC 3207).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `LHLO domain` (RFC 2033 §4.1).
    Lhlo(Domain),
    /// `EHLO domain`.
    Ehlo(Domain),
    /// `HELO domain`.
    Helo(Domain),
    /// `MAIL FROM:<reverse-path> [params]`.
    Mail {
        /// The reverse path.
        from: Path,
        /// ESMTP parameters (`SIZE=`, `BODY=`, ...).
        params: Vec<Param>,
    },
    /// `RCPT TO:<forward-path> [params]`.
    Rcpt {
        /// The recipient.
        to: Mailbox,
        /// ESMTP parameters.
        params: Vec<Param>,
    },
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP [text]`.
    Noop(Option<Text>),
    /// `QUIT`.
    Quit,
    /// `VRFY string`.
    Vrfy(Text),
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// Any other verb, with the rest of its line.
    Unknown {
        /// The verb, as sent.
        verb: Text,
        /// Everything after the verb and its space.
        args: Text,
    },
}

/// An enhanced status code (RFC 3463): `class.subject.detail`, class 2, 4 or 5.
pub type EnhancedCode = (u8, u16, u16);

/// A reply (RFC 5321 §4.2): a three-digit code, an optional enhanced status code
/// (RFC 2034, repeated on every line on the wire) and one or more text lines (`250-` lines
/// continue, `250 ` ends).
///
/// `lines` holds each line's text after the code and the enhanced code. It is never empty
/// when parsed; an empty vector encodes as one line with no text. Encoding replaces CR, LF
/// and NUL in a line with a space, so a store's message cannot inject a reply.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reply {
    /// The reply code, 200..=599.
    pub code: u16,
    /// The enhanced status code, if any.
    pub enhanced: Option<EnhancedCode>,
    /// The text of each line.
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply, validated: `code` in 200..=599, the enhanced class equal to the
    /// first digit of `code`, subject and detail at most 999, and `text` without CR, LF or
    /// NUL.
    ///
    /// ```
    /// use pop3_lmtp::Reply;
    /// let r = Reply::new(550, Some((5, 1, 1)), "User unknown").unwrap();
    /// assert!(r.is_permanent());
    /// assert_eq!(r.to_string(), "550 5.1.1 User unknown");
    /// assert!(Reply::new(550, Some((4, 1, 1)), "x").is_err());
    /// ```
    pub fn new(
        code: u16,
        enhanced: Option<EnhancedCode>,
        text: impl Into<String>,
    ) -> Result<Reply, ValueError> {
        if !(200..=599).contains(&code) {
            return Err(ValueError::ReplyCode);
        }
        if let Some((c, s, d)) = enhanced
            && (u16::from(c) != code / 100 || s > 999 || d > 999)
        {
            return Err(ValueError::ReplyCode);
        }
        let text = text.into();
        if text.bytes().any(|b| matches!(b, 0 | b'\r' | b'\n')) {
            return Err(ValueError::Text);
        }
        Ok(Reply {
            code,
            enhanced,
            lines: vec![text],
        })
    }

    /// A reply from trusted constants.
    pub(crate) fn fixed(code: u16, enhanced: Option<EnhancedCode>, text: &str) -> Reply {
        Reply {
            code,
            enhanced,
            lines: vec![text.to_owned()],
        }
    }

    /// 2xx: positive completion.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx: positive intermediate (`354` to `DATA`).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4xx: transient failure (try again later).
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx (or anything else that is not 2xx, 3xx or 4xx): permanent failure.
    pub fn is_permanent(&self) -> bool {
        !(self.is_positive() || self.is_intermediate() || self.is_transient())
    }

    /// The text lines joined with a space.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }
}

impl fmt::Display for Reply {
    /// The reply on one line: `code [x.y.z] text` (lines joined with a space).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some((c, s, d)) = self.enhanced {
            write!(f, " {c}.{s}.{d}")?;
        }
        let text = self.text();
        if !text.is_empty() {
            write!(f, " {text}")?;
        }
        Ok(())
    }
}
