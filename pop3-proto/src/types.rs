//! Typed POP3 values: commands, responses and their validated parts.
//!
//! Every constructor validates, so a value of these types can always be encoded into a legal
//! POP3 line: a CR, LF or NUL inside an argument is unrepresentable, message numbers are
//! non-zero, unique ids are 1 to 70 octets of `0x21..=0x7E`, and secrets (passwords, APOP
//! digests, SASL data) sit in [`Secret`], whose `Debug` output hides them.

use std::fmt;
use std::num::NonZeroU32;

use zeroize::Zeroize;

/// Why a value could not be constructed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The value is empty but must not be.
    #[error("value is empty")]
    Empty,
    /// The value contains a byte that is not allowed here (CR, LF, NUL, or a space in an atom).
    #[error("value contains the forbidden byte 0x{0:02x}")]
    ForbiddenByte(u8),
    /// The value is longer than the protocol allows.
    #[error("value is longer than {0} octets")]
    TooLong(usize),
    /// A message number of zero (messages are numbered from 1, RFC 1939 §4).
    #[error("message numbers start at 1")]
    ZeroMessageNumber,
    /// A command keyword or capability tag that names a known, typed item: use its variant.
    #[error("keyword names a known item; use its typed variant")]
    KnownKeyword,
    /// The value does not have the required shape (for example an APOP timestamp without `@`).
    #[error("value is malformed")]
    Malformed,
}

fn check_bytes(bytes: &[u8], forbid_space: bool) -> Result<(), ValueError> {
    match bytes
        .iter()
        .find(|&&b| b == b'\r' || b == b'\n' || b == 0 || (forbid_space && b == b' '))
    {
        Some(&b) => Err(ValueError::ForbiddenByte(b)),
        None => Ok(()),
    }
}

macro_rules! bytes_newtype_common {
    ($name:ident) => {
        impl $name {
            /// The octets of this value.
            pub fn as_bytes(&self) -> &[u8] {
                &self.0
            }

            /// Consumes the value and returns its octets.
            pub fn into_bytes(self) -> Vec<u8> {
                self.0
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "{}({:?})",
                    stringify!($name),
                    String::from_utf8_lossy(&self.0)
                )
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&String::from_utf8_lossy(&self.0))
            }
        }

        impl TryFrom<&str> for $name {
            type Error = ValueError;
            fn try_from(value: &str) -> Result<Self, ValueError> {
                Self::new(value.as_bytes().to_vec())
            }
        }

        impl TryFrom<&[u8]> for $name {
            type Error = ValueError;
            fn try_from(value: &[u8]) -> Result<Self, ValueError> {
                Self::new(value.to_vec())
            }
        }

        impl TryFrom<Vec<u8>> for $name {
            type Error = ValueError;
            fn try_from(value: Vec<u8>) -> Result<Self, ValueError> {
                Self::new(value)
            }
        }
    };
}

/// A non-empty argument without CR, LF, NUL or space: a user name, a mechanism argument.
///
/// Octets above 0x7F are allowed (UTF-8 user names, RFC 6856).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Atom(Vec<u8>);

impl Atom {
    /// Validates and wraps `bytes`.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, ValueError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(ValueError::Empty);
        }
        check_bytes(&bytes, true)?;
        Ok(Atom(bytes))
    }
}
bytes_newtype_common!(Atom);

/// Free text on one line: any octets but CR, LF and NUL; may be empty and may hold spaces.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Text(Vec<u8>);

impl Text {
    /// Validates and wraps `bytes`.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, ValueError> {
        let bytes = bytes.into();
        check_bytes(&bytes, false)?;
        Ok(Text(bytes))
    }

    /// The empty text.
    pub const fn empty() -> Self {
        Text(Vec::new())
    }

    /// Whether the text has no octets.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
bytes_newtype_common!(Text);

impl Zeroize for Text {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

/// A message number: 1-based, fixed for the session (RFC 1939 §4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgNum(NonZeroU32);

impl MsgNum {
    /// Message number `n`, or an error for zero.
    pub const fn new(n: u32) -> Result<Self, ValueError> {
        match NonZeroU32::new(n) {
            Some(n) => Ok(MsgNum(n)),
            None => Err(ValueError::ZeroMessageNumber),
        }
    }

    /// The number.
    pub const fn get(self) -> u32 {
        self.0.get()
    }

    /// The zero-based index of this message (`n - 1`), for indexing a maildrop listing.
    pub const fn index(self) -> usize {
        (self.0.get() - 1) as usize
    }
}

impl fmt::Debug for MsgNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MsgNum({})", self.0)
    }
}

impl fmt::Display for MsgNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl TryFrom<u32> for MsgNum {
    type Error = ValueError;
    fn try_from(n: u32) -> Result<Self, ValueError> {
        MsgNum::new(n)
    }
}

impl From<MsgNum> for u32 {
    fn from(n: MsgNum) -> u32 {
        n.get()
    }
}

/// A unique-id: 1 to 70 octets in `0x21..=0x7E` (RFC 1939 §7).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(Vec<u8>);

impl Uid {
    /// The longest unique-id RFC 1939 allows.
    pub const MAX_LEN: usize = 70;

    /// Validates and wraps `bytes`.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, ValueError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(ValueError::Empty);
        }
        if bytes.len() > Self::MAX_LEN {
            return Err(ValueError::TooLong(Self::MAX_LEN));
        }
        if let Some(&b) = bytes.iter().find(|b| !(0x21..=0x7e).contains(*b)) {
            return Err(ValueError::ForbiddenByte(b));
        }
        Ok(Uid(bytes))
    }

    /// The unique-id as a string (it is always ASCII).
    pub fn as_str(&self) -> &str {
        // Validated ASCII on construction, so this never fails.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}
bytes_newtype_common!(Uid);

/// A SASL mechanism name (RFC 4422 §3.1: 1 to 20 of `A-Z 0-9 - _`), stored in upper case
/// because mechanism names compare case-insensitively.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mechanism(Vec<u8>);

impl Mechanism {
    /// The longest mechanism name RFC 4422 allows.
    pub const MAX_LEN: usize = 20;

    /// Validates `bytes` (any case) and stores them in upper case.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, ValueError> {
        let mut bytes = bytes.into();
        if bytes.is_empty() {
            return Err(ValueError::Empty);
        }
        if bytes.len() > Self::MAX_LEN {
            return Err(ValueError::TooLong(Self::MAX_LEN));
        }
        if let Some(&b) = bytes
            .iter()
            .find(|b| !(b.is_ascii_alphanumeric() || **b == b'-' || **b == b'_'))
        {
            return Err(ValueError::ForbiddenByte(b));
        }
        bytes.make_ascii_uppercase();
        Ok(Mechanism(bytes))
    }

    /// The name, in upper case.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}
bytes_newtype_common!(Mechanism);

/// The keyword of a command that this crate does not know, kept as data so that a server can
/// answer it and a client can send extensions. It is 1 to 64 octets of `0x21..=0x7E` and never
/// one of the known keywords (those have typed variants).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Keyword(Vec<u8>);

impl Keyword {
    /// Longest keyword accepted. RFC 2449 says keywords are 3 or 4 characters; private
    /// extensions are allowed some slack.
    pub const MAX_LEN: usize = 64;

    /// Validates and wraps `bytes`.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, ValueError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(ValueError::Empty);
        }
        if bytes.len() > Self::MAX_LEN {
            return Err(ValueError::TooLong(Self::MAX_LEN));
        }
        if let Some(&b) = bytes.iter().find(|b| !(0x21..=0x7e).contains(*b)) {
            return Err(ValueError::ForbiddenByte(b));
        }
        if KNOWN_COMMANDS
            .iter()
            .any(|k| k.as_bytes().eq_ignore_ascii_case(&bytes))
        {
            return Err(ValueError::KnownKeyword);
        }
        Ok(Keyword(bytes))
    }
}
bytes_newtype_common!(Keyword);

/// The keywords of every command with a typed [`Command`] variant.
pub const KNOWN_COMMANDS: [&str; 17] = [
    "USER", "PASS", "APOP", "QUIT", "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL",
    "CAPA", "STLS", "AUTH", "UTF8", "LANG",
];

/// A value that must not leak into logs: passwords, APOP digests, SASL data.
///
/// `Debug` prints `Secret(..)`; the value is zeroized when dropped. Equality is not constant
/// time: never use it to check a credential.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T: Zeroize>(T);

impl<T: Zeroize> Secret<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret value. Named so that every use stands out in review.
    pub fn expose_secret(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl<T: Zeroize> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

/// The APOP digest: MD5 of timestamp and shared secret, 16 octets, sent as lower-case hex
/// (RFC 1939 §7).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ApopDigest(pub [u8; 16]);

impl Zeroize for ApopDigest {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

impl ApopDigest {
    /// The digest as 32 lower-case hexadecimal characters.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(32);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        s
    }
}

pub(crate) const HEX: &[u8; 16] = b"0123456789abcdef";

/// SASL data after base64 decoding: an initial response, a client response or a server
/// challenge.
pub type SaslData = Secret<Vec<u8>>;

/// A POP3 command (RFC 1939, 2449, 2595, 5034, 6856).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `USER name` (RFC 1939 §7).
    User(Atom),
    /// `PASS string`: the rest of the line, spaces included (RFC 1939 §7).
    Pass(Secret<Text>),
    /// `APOP name digest` (RFC 1939 §7).
    Apop {
        /// The mailbox name.
        name: Atom,
        /// MD5(timestamp ‖ secret).
        digest: Secret<ApopDigest>,
    },
    /// `QUIT`.
    Quit,
    /// `STAT`.
    Stat,
    /// `LIST [msg]`.
    List(Option<MsgNum>),
    /// `RETR msg`.
    Retr(MsgNum),
    /// `DELE msg`.
    Dele(MsgNum),
    /// `NOOP`.
    Noop,
    /// `RSET`.
    Rset,
    /// `TOP msg n`: the headers, the blank line and `lines` lines of the body.
    Top {
        /// The message.
        msg: MsgNum,
        /// How many body lines.
        lines: u64,
    },
    /// `UIDL [msg]`.
    Uidl(Option<MsgNum>),
    /// `CAPA` (RFC 2449 §5).
    Capa,
    /// `STLS` (RFC 2595 §4).
    Stls,
    /// `AUTH [mechanism [initial-response]]` (RFC 5034 §4). Without a mechanism, it asks for
    /// the list of mechanisms (an older form many clients still send).
    Auth(Option<AuthCommand>),
    /// `UTF8` (RFC 6856 §2).
    Utf8,
    /// `LANG [lang-range]` (RFC 6856 §3); `*` selects the server's default.
    Lang(Option<Atom>),
    /// A command this crate does not know, kept as data.
    Unknown {
        /// The keyword as sent.
        keyword: Keyword,
        /// Everything after the keyword and its space, if there was a space.
        args: Option<Text>,
    },
}

/// The mechanism and optional initial response of an `AUTH` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCommand {
    /// The SASL mechanism.
    pub mechanism: Mechanism,
    /// The initial response, decoded; `Some` of empty data is sent as `=` (RFC 5034 §4).
    pub initial_response: Option<SaslData>,
}

impl Command {
    /// The command's keyword as it is sent (upper case for known commands).
    pub fn keyword(&self) -> &[u8] {
        match self {
            Command::User(_) => b"USER",
            Command::Pass(_) => b"PASS",
            Command::Apop { .. } => b"APOP",
            Command::Quit => b"QUIT",
            Command::Stat => b"STAT",
            Command::List(_) => b"LIST",
            Command::Retr(_) => b"RETR",
            Command::Dele(_) => b"DELE",
            Command::Noop => b"NOOP",
            Command::Rset => b"RSET",
            Command::Top { .. } => b"TOP",
            Command::Uidl(_) => b"UIDL",
            Command::Capa => b"CAPA",
            Command::Stls => b"STLS",
            Command::Auth(_) => b"AUTH",
            Command::Utf8 => b"UTF8",
            Command::Lang(_) => b"LANG",
            Command::Unknown { keyword, .. } => keyword.as_bytes(),
        }
    }

    /// Whether a successful reply to this command is multi-line (RFC 1939, 2449, 6856).
    ///
    /// `AUTH` without a mechanism is answered with the list of mechanisms, one per line, as
    /// servers do for that older form. `Unknown` commands are taken to be single-line: a
    /// client that sends an extension with a multi-line reply must say so itself.
    pub fn expects_multiline(&self) -> bool {
        matches!(
            self,
            Command::List(None)
                | Command::Uidl(None)
                | Command::Retr(_)
                | Command::Top { .. }
                | Command::Capa
                | Command::Lang(None)
                | Command::Auth(None)
        )
    }
}

/// A SASL client line during an `AUTH` exchange (RFC 5034 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslResponse {
    /// A response, decoded from base64 (an empty line is an empty response).
    Data(SaslData),
    /// `*`: the client cancels the exchange.
    Cancel,
}

/// `+OK` or `-ERR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// `+OK`.
    Ok,
    /// `-ERR`.
    Err,
}

/// An extended response code (RFC 2449 §8, RFC 3206), compared case-insensitively.
///
/// Known codes are typed; hierarchical detail below a known code is ignored, as RFC 2449 §8
/// requires of clients; anything else is kept verbatim in [`ResponseCode::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResponseCode {
    /// `[IN-USE]`: authenticated, but the maildrop is locked (RFC 2449 §8.1.2).
    InUse,
    /// `[LOGIN-DELAY]`: logging in too soon after the last login (RFC 2449 §8.1.1).
    LoginDelay,
    /// `[SYS/TEMP]`: a temporary system failure (RFC 3206 §4).
    SysTemp,
    /// `[SYS/PERM]`: a permanent system failure (RFC 3206 §4).
    SysPerm,
    /// `[SYS]` with no or an unknown second level (RFC 3206 §4).
    Sys,
    /// `[AUTH]`: a credentials problem (RFC 3206 §5).
    Auth,
    /// `[UTF8]`: the message needs UTF-8 mode (RFC 6856 §5).
    Utf8,
    /// Any other code, kept verbatim (without the brackets).
    Other(CodeText),
}

/// The verbatim text of an unknown response code: levels of `%x21-2E / %x30-5C / %x5E-7F`
/// joined by `/` (RFC 2449 §3), that do not name a known code.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CodeText(Vec<u8>);

impl CodeText {
    /// Validates `bytes` as a response code that is not one of the known codes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, ValueError> {
        let bytes = bytes.into();
        if !is_code_syntax(&bytes) {
            return Err(ValueError::Malformed);
        }
        if ResponseCode::known(&bytes).is_some() {
            return Err(ValueError::KnownKeyword);
        }
        Ok(CodeText(bytes))
    }
}
bytes_newtype_common!(CodeText);

pub(crate) fn is_resp_char(b: u8) -> bool {
    matches!(b, 0x21..=0x2e | 0x30..=0x5c | 0x5e..=0x7f)
}

pub(crate) fn is_code_syntax(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes
            .split(|&b| b == b'/')
            .all(|level| !level.is_empty() && level.iter().all(|&b| is_resp_char(b)))
}

impl ResponseCode {
    /// The known code that `raw` (without brackets) names, if any.
    pub(crate) fn known(raw: &[u8]) -> Option<ResponseCode> {
        let mut levels = raw.split(|&b| b == b'/');
        let first = levels.next()?;
        let eq = |a: &[u8], b: &str| a.eq_ignore_ascii_case(b.as_bytes());
        if eq(first, "IN-USE") {
            Some(ResponseCode::InUse)
        } else if eq(first, "LOGIN-DELAY") {
            Some(ResponseCode::LoginDelay)
        } else if eq(first, "AUTH") {
            Some(ResponseCode::Auth)
        } else if eq(first, "UTF8") {
            Some(ResponseCode::Utf8)
        } else if eq(first, "SYS") {
            Some(match levels.next() {
                Some(l) if eq(l, "TEMP") => ResponseCode::SysTemp,
                Some(l) if eq(l, "PERM") => ResponseCode::SysPerm,
                _ => ResponseCode::Sys,
            })
        } else {
            None
        }
    }

    /// The code from its text without brackets: a known code, or `Other`. `None` when the text
    /// is not a syntactically valid code.
    pub fn from_bytes(raw: &[u8]) -> Option<ResponseCode> {
        if !is_code_syntax(raw) {
            return None;
        }
        Some(Self::known(raw).unwrap_or_else(|| ResponseCode::Other(CodeText(raw.to_vec()))))
    }

    /// The code's text, without brackets.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            ResponseCode::InUse => b"IN-USE",
            ResponseCode::LoginDelay => b"LOGIN-DELAY",
            ResponseCode::SysTemp => b"SYS/TEMP",
            ResponseCode::SysPerm => b"SYS/PERM",
            ResponseCode::Sys => b"SYS",
            ResponseCode::Auth => b"AUTH",
            ResponseCode::Utf8 => b"UTF8",
            ResponseCode::Other(t) => t.as_bytes(),
        }
    }
}

/// A status line: `+OK` or `-ERR`, an optional response code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    status: Status,
    code: Option<ResponseCode>,
    text: Text,
}

impl StatusLine {
    /// A status line. Without a code, `text` must not itself begin with a valid `[code]`,
    /// which would be read back as a response code.
    pub fn new(status: Status, code: Option<ResponseCode>, text: Text) -> Result<Self, ValueError> {
        if code.is_none() && crate::decode::leading_code(text.as_bytes()).is_some() {
            return Err(ValueError::Malformed);
        }
        Ok(StatusLine { status, code, text })
    }

    pub(crate) fn new_unchecked(status: Status, code: Option<ResponseCode>, text: Text) -> Self {
        StatusLine { status, code, text }
    }

    /// `+OK text`.
    ///
    /// ```
    /// use pop3_proto::{StatusLine, Status};
    /// let line = StatusLine::ok("maildrop has 2 messages").unwrap();
    /// assert_eq!(line.status(), Status::Ok);
    /// ```
    pub fn ok(text: impl Into<Vec<u8>>) -> Result<Self, ValueError> {
        Self::new(Status::Ok, None, Text::new(text)?)
    }

    /// `-ERR text`.
    pub fn err(text: impl Into<Vec<u8>>) -> Result<Self, ValueError> {
        Self::new(Status::Err, None, Text::new(text)?)
    }

    /// `-ERR [code] text`.
    pub fn err_with_code(code: ResponseCode, text: impl Into<Vec<u8>>) -> Result<Self, ValueError> {
        Self::new(Status::Err, Some(code), Text::new(text)?)
    }

    /// `+OK` or `-ERR`.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Whether this is `+OK`.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// The response code, if any.
    pub fn code(&self) -> Option<&ResponseCode> {
        self.code.as_ref()
    }

    /// The text after the status (and the code), verbatim.
    pub fn text(&self) -> &Text {
        &self.text
    }
}

/// An APOP timestamp from the greeting: `<` printable ASCII containing `@` `>` (RFC 1939 §7,
/// RFC 2449 §3: it MUST be an RFC 822 msg-id). Checked strictly, because a crafted one is the
/// core of the APOP attack CVE-2007-1558.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Timestamp(Vec<u8>);

impl Timestamp {
    /// The longest timestamp accepted.
    pub const MAX_LEN: usize = 256;

    /// Validates `bytes`, brackets included.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, ValueError> {
        let bytes = bytes.into();
        if bytes.len() > Self::MAX_LEN {
            return Err(ValueError::TooLong(Self::MAX_LEN));
        }
        if !crate::decode::is_timestamp(&bytes) {
            return Err(ValueError::Malformed);
        }
        Ok(Timestamp(bytes))
    }
}
bytes_newtype_common!(Timestamp);

/// The server greeting: a status line, with an APOP timestamp in its text when the server
/// offers APOP (RFC 1939 §4, §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    line: StatusLine,
}

impl Greeting {
    /// A greeting from a status line.
    pub fn new(line: StatusLine) -> Self {
        Greeting { line }
    }

    /// `+OK text <timestamp>`.
    pub fn ok_with_timestamp(
        text: &[u8],
        timestamp: Option<&Timestamp>,
    ) -> Result<Self, ValueError> {
        let mut t = text.to_vec();
        if let Some(ts) = timestamp {
            if !t.is_empty() {
                t.push(b' ');
            }
            t.extend_from_slice(ts.as_bytes());
        }
        Ok(Greeting {
            line: StatusLine::ok(t)?,
        })
    }

    /// The status line.
    pub fn line(&self) -> &StatusLine {
        &self.line
    }

    /// The APOP timestamp, if the text holds a valid one.
    pub fn timestamp(&self) -> Option<Timestamp> {
        crate::decode::find_timestamp(self.line.text().as_bytes()).map(|t| Timestamp(t.to_vec()))
    }
}

/// A scan listing: `msg size` (RFC 1939 §5), in a multi-line `LIST` or a single `LIST n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScanListing {
    /// The message number.
    pub msg: MsgNum,
    /// The size in octets as transmitted (CRLF line ends, before dot-stuffing).
    pub size: u64,
}

/// The reply to `STAT`: `+OK count size` (RFC 1939 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stat {
    /// Number of messages not marked deleted.
    pub count: u64,
    /// Their total size in octets.
    pub size: u64,
}

/// A unique-id listing: `msg uid` (RFC 1939 §7).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UidListing {
    /// The message number.
    pub msg: MsgNum,
    /// Its unique-id.
    pub uid: Uid,
}

/// An `EXPIRE` policy (RFC 2449 §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expire {
    /// Messages are kept this many days after retrieval; 0 means they are removed at QUIT.
    Days(u64),
    /// Messages are never removed by the server.
    Never,
}

/// A capability line of the `CAPA` reply (RFC 2449 §6, RFC 2595, RFC 5034, RFC 6856).
///
/// Known tags are typed; anything else, including a known tag with parameters that do not
/// parse, is kept as [`Capability::Other`], so one odd line never fails the list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// `TOP`.
    Top,
    /// `USER`.
    User,
    /// `SASL mech...` (RFC 5034 §3).
    Sasl(Vec<Mechanism>),
    /// `RESP-CODES`.
    RespCodes,
    /// `AUTH-RESP-CODE` (RFC 3206 §6).
    AuthRespCode,
    /// `LOGIN-DELAY secs [USER]`.
    LoginDelay {
        /// Minimum seconds between logins.
        secs: u64,
        /// `USER`: the value may differ per user.
        per_user: bool,
    },
    /// `PIPELINING`.
    Pipelining,
    /// `EXPIRE days|NEVER [USER]`.
    Expire {
        /// The policy.
        policy: Expire,
        /// `USER`: the value may differ per user.
        per_user: bool,
    },
    /// `UIDL`.
    Uidl,
    /// `IMPLEMENTATION text`.
    Implementation(Text),
    /// `STLS` (RFC 2595 §4).
    Stls,
    /// `UTF8 [USER]` (RFC 6856 §2).
    Utf8 {
        /// `USER`: UTF-8 user names and passwords are accepted.
        user: bool,
    },
    /// `LANG` (RFC 6856 §3).
    Lang,
    /// Any other capability, kept verbatim.
    Other(OtherCapability),
}

/// A capability this crate does not type: its tag and parameters as sent.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct OtherCapability {
    tag: Atom,
    params: Vec<Atom>,
}

impl OtherCapability {
    /// A capability line that does not parse as a known one.
    pub fn new(tag: Atom, params: Vec<Atom>) -> Result<Self, ValueError> {
        let other = OtherCapability { tag, params };
        let mut line = Vec::new();
        crate::encode::encode_other_capability(&other, &mut line);
        match crate::decode::capability_typed(&line) {
            Some(_) => Err(ValueError::KnownKeyword),
            None => Ok(other),
        }
    }

    pub(crate) fn new_unchecked(tag: Atom, params: Vec<Atom>) -> Self {
        OtherCapability { tag, params }
    }

    /// The tag as sent.
    pub fn tag(&self) -> &Atom {
        &self.tag
    }

    /// The parameters as sent.
    pub fn params(&self) -> &[Atom] {
        &self.params
    }
}

impl fmt::Debug for OtherCapability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtherCapability")
            .field("tag", &self.tag)
            .field("params", &self.params)
            .finish()
    }
}

/// A SASL challenge from the server: `+ base64` (RFC 5034 §4), decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continuation(pub SaslData);

/// One line of the multi-line `LANG` reply: a language tag and an optional description
/// (RFC 6856 §3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LangItem {
    /// The language tag.
    pub tag: Atom,
    /// The description; may be empty.
    pub description: Text,
}
