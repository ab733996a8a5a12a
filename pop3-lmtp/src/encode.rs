//! Encoders: every value writes itself, with its CRLF, into a caller-owned `Vec<u8>`.
//!
//! Commands are built from validated values, so encoding one cannot fail and cannot inject a
//! line end. A [`Reply`]'s text lines are public fields: CR, LF and NUL in them are written
//! as spaces.

use crate::types::*;

/// A value that can be written as LMTP/SMTP octets.
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

/// The line that ends the data of a message: `.` CRLF.
pub const TERMINATOR: &[u8] = b".\r\n";

fn path(p: &Path, out: &mut Vec<u8>) {
    out.push(b'<');
    if let Path::Mailbox(m) = p {
        out.extend_from_slice(m.to_string().as_bytes());
    }
    out.push(b'>');
}

fn params(ps: &[Param], out: &mut Vec<u8>) {
    for p in ps {
        out.push(b' ');
        out.extend_from_slice(p.to_string().as_bytes());
    }
}

impl Encode for Command {
    /// ```
    /// use pop3_lmtp::{Command, Encode, Mailbox, Param, Path};
    /// let cmd = Command::Mail {
    ///     from: Path::Mailbox(Mailbox::parse("a@example.org").unwrap()),
    ///     params: vec![Param::new("BODY", Some("8BITMIME")).unwrap()],
    /// };
    /// assert_eq!(cmd.to_bytes(), b"MAIL FROM:<a@example.org> BODY=8BITMIME\r\n");
    /// ```
    fn encode(&self, out: &mut Vec<u8>) {
        let word = |out: &mut Vec<u8>, verb: &str, arg: &str| {
            out.extend_from_slice(verb.as_bytes());
            out.push(b' ');
            out.extend_from_slice(arg.as_bytes());
        };
        match self {
            Command::Lhlo(d) => word(out, "LHLO", d.as_str()),
            Command::Ehlo(d) => word(out, "EHLO", d.as_str()),
            Command::Helo(d) => word(out, "HELO", d.as_str()),
            Command::Mail { from, params: ps } => {
                out.extend_from_slice(b"MAIL FROM:");
                path(from, out);
                params(ps, out);
            }
            Command::Rcpt { to, params: ps } => {
                out.extend_from_slice(b"RCPT TO:");
                path(&Path::Mailbox(to.clone()), out);
                params(ps, out);
            }
            Command::Data => out.extend_from_slice(b"DATA"),
            Command::Rset => out.extend_from_slice(b"RSET"),
            Command::Noop(None) => out.extend_from_slice(b"NOOP"),
            Command::Noop(Some(t)) => word(out, "NOOP", t.as_str()),
            Command::Quit => out.extend_from_slice(b"QUIT"),
            Command::Vrfy(t) => word(out, "VRFY", t.as_str()),
            Command::StartTls => out.extend_from_slice(b"STARTTLS"),
            Command::Unknown { verb, args } => {
                out.extend_from_slice(verb.as_str().as_bytes());
                if !args.as_str().is_empty() {
                    out.push(b' ');
                    out.extend_from_slice(args.as_str().as_bytes());
                }
            }
        }
        out.extend_from_slice(CRLF);
    }
}

impl Encode for Reply {
    /// Every line but the last as `code-`, the last as `code SP`, the enhanced code (if any)
    /// after the code on every line (RFC 2034 §4).
    ///
    /// ```
    /// use pop3_lmtp::{Encode, Reply};
    /// let r = Reply { code: 250, enhanced: Some((2, 0, 0)), lines: vec!["a".into(), "b".into()] };
    /// assert_eq!(r.to_bytes(), b"250-2.0.0 a\r\n250 2.0.0 b\r\n");
    /// ```
    fn encode(&self, out: &mut Vec<u8>) {
        let code = self.code.min(999);
        let n = self.lines.len().max(1);
        for i in 0..n {
            out.extend_from_slice(format!("{code:03}").as_bytes());
            out.push(if i + 1 == n { b' ' } else { b'-' });
            if let Some((c, s, d)) = self.enhanced {
                out.extend_from_slice(format!("{c}.{s}.{d}").as_bytes());
                if self.lines.get(i).is_some_and(|l| !l.is_empty()) {
                    out.push(b' ');
                }
            }
            if let Some(l) = self.lines.get(i) {
                out.extend(l.bytes().map(|b| {
                    if matches!(b, 0 | b'\r' | b'\n') {
                        b' '
                    } else {
                        b
                    }
                }));
            }
            // A last line with neither text nor enhanced code: `250 ` is valid, but the
            // space-less `250` is what most servers send.
            if i + 1 == n
                && self.enhanced.is_none()
                && self.lines.get(i).is_none_or(String::is_empty)
            {
                out.pop();
            }
            out.extend_from_slice(CRLF);
        }
    }
}
