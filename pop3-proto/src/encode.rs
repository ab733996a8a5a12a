//! Encoders: every value writes itself, with its CRLF, into a caller-owned `Vec<u8>`.
//!
//! Values are validated on construction, so encoding cannot fail and cannot inject a line
//! end. Items of multi-line listings are dot-stuffed as they are written.

use base64::Engine as _;

use crate::types::*;

/// A value that can be written as POP3 octets.
pub trait Encode {
    /// Appends the value's octets, line end included, to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// The value's octets in a new vector.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

const CRLF: &[u8] = b"\r\n";

/// The line that ends every multi-line response: `.` CRLF.
pub const TERMINATOR: &[u8] = b".\r\n";

fn push_base64(data: &[u8], out: &mut Vec<u8>) {
    let engine = &base64::engine::general_purpose::STANDARD;
    let start = out.len();
    out.resize(
        start + base64::encoded_len(data.len(), true).unwrap_or(0),
        0,
    );
    let n = engine
        .encode_slice(data, &mut out[start..])
        .unwrap_or_default();
    out.truncate(start + n);
}

fn push_u64(n: u64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

impl Encode for Command {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.keyword());
        match self {
            Command::User(name) => {
                out.push(b' ');
                out.extend_from_slice(name.as_bytes());
            }
            Command::Pass(pass) => {
                out.push(b' ');
                out.extend_from_slice(pass.expose_secret().as_bytes());
            }
            Command::Apop { name, digest } => {
                out.push(b' ');
                out.extend_from_slice(name.as_bytes());
                out.push(b' ');
                out.extend_from_slice(digest.expose_secret().to_hex().as_bytes());
            }
            Command::List(Some(n))
            | Command::Uidl(Some(n))
            | Command::Retr(n)
            | Command::Dele(n) => {
                out.push(b' ');
                push_u64(n.get().into(), out);
            }
            Command::Top { msg, lines } => {
                out.push(b' ');
                push_u64(msg.get().into(), out);
                out.push(b' ');
                push_u64(*lines, out);
            }
            Command::Auth(Some(auth)) => {
                out.push(b' ');
                out.extend_from_slice(auth.mechanism.as_bytes());
                if let Some(ir) = &auth.initial_response {
                    out.push(b' ');
                    if ir.expose_secret().is_empty() {
                        out.push(b'=');
                    } else {
                        push_base64(ir.expose_secret(), out);
                    }
                }
            }
            Command::Lang(Some(range)) => {
                out.push(b' ');
                out.extend_from_slice(range.as_bytes());
            }
            Command::Unknown {
                args: Some(args), ..
            } => {
                out.push(b' ');
                out.extend_from_slice(args.as_bytes());
            }
            Command::Quit
            | Command::Stat
            | Command::List(None)
            | Command::Noop
            | Command::Rset
            | Command::Uidl(None)
            | Command::Capa
            | Command::Stls
            | Command::Auth(None)
            | Command::Utf8
            | Command::Lang(None)
            | Command::Unknown { args: None, .. } => {}
        }
        out.extend_from_slice(CRLF);
    }
}

impl Encode for SaslResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            SaslResponse::Cancel => out.push(b'*'),
            SaslResponse::Data(d) => push_base64(d.expose_secret(), out),
        }
        out.extend_from_slice(CRLF);
    }
}

impl Encode for StatusLine {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(match self.status() {
            Status::Ok => b"+OK",
            Status::Err => b"-ERR",
        });
        if let Some(code) = self.code() {
            out.extend_from_slice(b" [");
            out.extend_from_slice(code.as_bytes());
            out.push(b']');
        }
        if !self.text().is_empty() {
            out.push(b' ');
            out.extend_from_slice(self.text().as_bytes());
        }
        out.extend_from_slice(CRLF);
    }
}

impl Encode for Greeting {
    fn encode(&self, out: &mut Vec<u8>) {
        self.line().encode(out);
    }
}

impl Encode for Continuation {
    fn encode(&self, out: &mut Vec<u8>) {
        // RFC 5034 §4: the empty challenge is exactly "+ ".
        out.extend_from_slice(b"+ ");
        push_base64(self.0.expose_secret(), out);
        out.extend_from_slice(CRLF);
    }
}

impl Encode for Stat {
    /// The `+OK count size` reply.
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"+OK ");
        push_u64(self.count, out);
        out.push(b' ');
        push_u64(self.size, out);
        out.extend_from_slice(CRLF);
    }
}

impl Encode for ScanListing {
    /// The listing line `msg size` (in a multi-line `LIST`).
    fn encode(&self, out: &mut Vec<u8>) {
        push_u64(self.msg.get().into(), out);
        out.push(b' ');
        push_u64(self.size, out);
        out.extend_from_slice(CRLF);
    }
}

impl Encode for UidListing {
    /// The listing line `msg uid` (in a multi-line `UIDL`).
    fn encode(&self, out: &mut Vec<u8>) {
        push_u64(self.msg.get().into(), out);
        out.push(b' ');
        out.extend_from_slice(self.uid.as_bytes());
        out.extend_from_slice(CRLF);
    }
}

impl ScanListing {
    /// The single-line `+OK msg size` reply to `LIST msg`.
    pub fn encode_reply(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"+OK ");
        self.encode(out);
    }
}

impl UidListing {
    /// The single-line `+OK msg uid` reply to `UIDL msg`.
    pub fn encode_reply(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"+OK ");
        self.encode(out);
    }
}

/// Writes `content` as one line of a multi-line response, dot-stuffed (RFC 1939 §3). The
/// content must hold no CR or LF: pass the octets of a validated value.
pub fn encode_listing_line(content: &[u8], out: &mut Vec<u8>) {
    if content.first() == Some(&b'.') {
        out.push(b'.');
    }
    out.extend_from_slice(content);
    out.extend_from_slice(CRLF);
}

pub(crate) fn encode_other_capability(c: &OtherCapability, out: &mut Vec<u8>) {
    out.extend_from_slice(c.tag().as_bytes());
    for p in c.params() {
        out.push(b' ');
        out.extend_from_slice(p.as_bytes());
    }
}

impl Capability {
    /// The capability line's content, without stuffing or CRLF.
    fn encode_content(&self, out: &mut Vec<u8>) {
        let per_user = |out: &mut Vec<u8>, yes: bool| {
            if yes {
                out.extend_from_slice(b" USER");
            }
        };
        match self {
            Capability::Top => out.extend_from_slice(b"TOP"),
            Capability::User => out.extend_from_slice(b"USER"),
            Capability::Sasl(mechs) => {
                out.extend_from_slice(b"SASL");
                for m in mechs {
                    out.push(b' ');
                    out.extend_from_slice(m.as_bytes());
                }
            }
            Capability::RespCodes => out.extend_from_slice(b"RESP-CODES"),
            Capability::AuthRespCode => out.extend_from_slice(b"AUTH-RESP-CODE"),
            Capability::LoginDelay { secs, per_user: u } => {
                out.extend_from_slice(b"LOGIN-DELAY ");
                push_u64(*secs, out);
                per_user(out, *u);
            }
            Capability::Pipelining => out.extend_from_slice(b"PIPELINING"),
            Capability::Expire {
                policy,
                per_user: u,
            } => {
                out.extend_from_slice(b"EXPIRE ");
                match policy {
                    Expire::Days(d) => push_u64(*d, out),
                    Expire::Never => out.extend_from_slice(b"NEVER"),
                }
                per_user(out, *u);
            }
            Capability::Uidl => out.extend_from_slice(b"UIDL"),
            Capability::Implementation(t) => {
                out.extend_from_slice(b"IMPLEMENTATION");
                if !t.is_empty() {
                    out.push(b' ');
                    out.extend_from_slice(t.as_bytes());
                }
            }
            Capability::Stls => out.extend_from_slice(b"STLS"),
            Capability::Utf8 { user } => {
                out.extend_from_slice(b"UTF8");
                per_user(out, *user);
            }
            Capability::Lang => out.extend_from_slice(b"LANG"),
            Capability::Other(o) => encode_other_capability(o, out),
        }
    }
}

impl Encode for Capability {
    /// The capability line, dot-stuffed, for a multi-line `CAPA` reply.
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        self.encode_content(out);
        if out.get(start) == Some(&b'.') {
            out.insert(start, b'.');
        }
        out.extend_from_slice(CRLF);
    }
}

impl Encode for LangItem {
    /// The listing line `tag [description]`, dot-stuffed, for a multi-line `LANG` reply.
    fn encode(&self, out: &mut Vec<u8>) {
        if self.tag.as_bytes().first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(self.tag.as_bytes());
        if !self.description.is_empty() {
            out.push(b' ');
            out.extend_from_slice(self.description.as_bytes());
        }
        out.extend_from_slice(CRLF);
    }
}
