//! The message data of `DATA`: incremental dot-stuffing (client) and dot-unstuffing
//! (server), RFC 5321 §4.5.2.
//!
//! Both carry a few bits of state across calls, so the terminating `CRLF . CRLF` split at any
//! octet is found, and neither ever holds a whole body. Both normalise line ends to CRLF: a
//! bare LF is read as a line end (real clients and local senders produce them) and becomes
//! CRLF; a bare CR not followed by LF is ordinary data and passes through unchanged.
//!
//! [`canonical`] gives the form a body takes after a round trip through both.

/// Turns a message body (CRLF or LF line ends) into `DATA` octets: CRLF line ends, a `.`
/// doubled at the start of every line, and, from [`DotStuffer::finish`], a final CRLF if the
/// body did not end with a line end, then `.` CRLF.
///
/// ```
/// use pop3_lmtp::body::DotStuffer;
/// let mut s = DotStuffer::new();
/// let mut out = Vec::new();
/// s.push(b".hidden\nline\r", &mut out);
/// s.push(b"\n.", &mut out);
/// s.finish(&mut out);
/// assert_eq!(out, b"..hidden\r\nline\r\n..\r\n.\r\n");
/// ```
#[derive(Debug, Clone)]
pub struct DotStuffer {
    line_start: bool,
    last_cr: bool,
    written: u64,
}

impl Default for DotStuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl DotStuffer {
    /// A stuffer at the start of a body.
    pub fn new() -> Self {
        DotStuffer {
            line_start: true,
            last_cr: false,
            written: 0,
        }
    }

    /// Octets written to `out` so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Stuffs the next piece of the body into `out`.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        while !input.is_empty() {
            if self.line_start && input[0] == b'.' {
                out.push(b'.');
            }
            match memchr::memchr(b'\n', input) {
                Some(i) => {
                    let seg = &input[..i];
                    out.extend_from_slice(seg);
                    let cr_before = match seg.last() {
                        Some(&b) => b == b'\r',
                        None => self.last_cr,
                    };
                    if cr_before {
                        out.push(b'\n');
                    } else {
                        out.extend_from_slice(b"\r\n");
                    }
                    self.line_start = true;
                    self.last_cr = false;
                    input = &input[i + 1..];
                }
                None => {
                    out.extend_from_slice(input);
                    self.last_cr = input.last() == Some(&b'\r');
                    self.line_start = false;
                    input = &[];
                }
            }
        }
        self.written += (out.len() - start) as u64;
    }

    /// Ends the body: CRLF if the last line had no line end, then `.` CRLF.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let start = out.len();
        if !self.line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(crate::encode::TERMINATOR);
        self.line_start = true;
        self.last_cr = false;
        self.written += (out.len() - start) as u64;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnState {
    /// At the start of a line.
    LineStart,
    /// A `.` began the line.
    Dot,
    /// `.` CR began the line.
    DotCr,
    /// Within a line.
    Mid,
    /// Within a line, after a CR not yet written (it may begin the line end).
    MidCr,
}

/// Reads `DATA` octets up to the terminating `.` line: removes the dot-stuffing, turns line
/// ends into CRLF (a bare LF is read as a line end) and appends the message to a buffer,
/// never beyond a limit, while counting every octet of the message.
///
/// ```
/// use pop3_lmtp::body::DotUnstuffer;
/// let mut u = DotUnstuffer::new();
/// let mut body = Vec::new();
/// assert_eq!(u.push(b"..a\nb\r\n.", &mut body, 1024), None);
/// assert_eq!(u.push(b"\r\nQUIT\r\n", &mut body, 1024), Some(2));
/// assert_eq!(body, b".a\r\nb\r\n");
/// assert_eq!(u.total(), 7);
/// ```
#[derive(Debug, Clone)]
pub struct DotUnstuffer {
    state: UnState,
    total: u64,
}

impl Default for DotUnstuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl DotUnstuffer {
    /// An unstuffer at the start of the data.
    pub fn new() -> Self {
        DotUnstuffer {
            state: UnState::LineStart,
            total: 0,
        }
    }

    /// Octets of message found so far (CRLF form), including any not appended because of
    /// the limit.
    pub fn total(&self) -> u64 {
        self.total
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>, limit: usize) {
        self.total += bytes.len() as u64;
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Reads `input`. Returns `Some(n)` when the terminator ends within it, `n` being the
    /// octets used (terminator included; what follows is the next command), else `None`
    /// (all of it used). Appends the message to `out` as long as `out` stays within `limit`
    /// octets; compare [`DotUnstuffer::total`] with the limit to see whether it was cut.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>, limit: usize) -> Option<usize> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                UnState::LineStart => {
                    if input[i] == b'.' {
                        self.state = UnState::Dot;
                        i += 1;
                    } else {
                        self.state = UnState::Mid;
                    }
                }
                UnState::Dot => match input[i] {
                    b'\n' => {
                        self.state = UnState::LineStart;
                        return Some(i + 1);
                    }
                    b'\r' => {
                        self.state = UnState::DotCr;
                        i += 1;
                    }
                    // The stuffed dot is dropped; the rest of the line is data.
                    _ => self.state = UnState::Mid,
                },
                UnState::DotCr => {
                    if input[i] == b'\n' {
                        self.state = UnState::LineStart;
                        return Some(i + 1);
                    }
                    // `.` CR then more: the CR is the line's first data octet.
                    self.state = UnState::MidCr;
                }
                UnState::MidCr => {
                    if input[i] == b'\n' {
                        self.emit(b"\r\n", out, limit);
                        self.state = UnState::LineStart;
                        i += 1;
                    } else {
                        self.emit(b"\r", out, limit);
                        self.state = UnState::Mid;
                    }
                }
                UnState::Mid => {
                    let rest = &input[i..];
                    match memchr::memchr(b'\n', rest) {
                        Some(lf) => {
                            let seg = &rest[..lf];
                            let seg = seg.strip_suffix(b"\r").unwrap_or(seg);
                            self.emit(seg, out, limit);
                            self.emit(b"\r\n", out, limit);
                            self.state = UnState::LineStart;
                            i += lf + 1;
                        }
                        None => {
                            match rest.strip_suffix(b"\r") {
                                Some(seg) => {
                                    self.emit(seg, out, limit);
                                    self.state = UnState::MidCr;
                                }
                                None => self.emit(rest, out, limit),
                            }
                            i = input.len();
                        }
                    }
                }
            }
        }
        None
    }
}

/// The form `body` takes after [`DotStuffer`] then [`DotUnstuffer`]: every line end CRLF
/// (a bare LF becomes CRLF), and CRLF appended when a non-empty body does not end with a
/// line end.
///
/// ```
/// assert_eq!(pop3_lmtp::body::canonical(b"a\nb"), b"a\r\nb\r\n");
/// assert_eq!(pop3_lmtp::body::canonical(b""), b"");
/// ```
pub fn canonical(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 2);
    let mut prev = None;
    for &b in body {
        if b == b'\n' && prev != Some(b'\r') {
            out.push(b'\r');
        }
        out.push(b);
        prev = Some(b);
    }
    if !body.is_empty() && prev != Some(b'\n') {
        out.extend_from_slice(b"\r\n");
    }
    out
}
