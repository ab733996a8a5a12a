//! The multi-line body codec: incremental dot-stuffing and dot-unstuffing (RFC 1939 §3).
//!
//! A line starts at the beginning of the body and after every CRLF. The encoder
//! ([`DotStuffer`]) doubles a `.` that begins a line and ends the body with `.` CRLF (adding a
//! CRLF first when the body lacks one); the decoder ([`DotUnstuffer`]) removes one leading `.`
//! per line and stops at the `CRLF . CRLF` terminator, wherever the chunks are cut. Bare CR and
//! bare LF are data, not line ends, so whatever octets were stored come back identically.
//!
//! Both carry a few bytes of state between calls and never hold a body: the decoder hands out
//! slices of its input, the encoder appends to a caller-owned buffer. Both find line starts
//! with a SIMD `memmem` search for `CRLF .`, so ordinary lines cost no per-line work: this is
//! the hot loop of every download.

use memchr::memmem::Finder;

/// The octets whose presence forces work: a line that starts with a dot.
const CRLF_DOT: &[u8] = b"\r\n.";

fn finder() -> Finder<'static> {
    Finder::new(CRLF_DOT)
}

/// What the decoder found in its input; see [`DotUnstuffer::next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unstuffed<'a> {
    /// Body octets, in order.
    Data(&'a [u8]),
    /// The terminator `.` CRLF has been consumed: the body is complete.
    End,
    /// The input is used up; call again with more.
    NeedMore,
}

/// A body line was longer than the decoder's limit. The body is abandoned: the decoder returns
/// this error from then on, and the connection cannot be resynchronised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("body line longer than {limit} octets")]
pub struct BodyLineTooLong {
    /// The limit that was exceeded.
    pub limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecState {
    /// At the start of a line (body start, or after CRLF).
    LineStart,
    /// Inside a line; the last octet was not CR.
    Mid,
    /// Inside a line; the last octet was CR.
    Cr,
    /// A line started with `.`, which was consumed.
    Dot,
    /// A line started with `.` CR, both consumed.
    DotCr,
    /// The terminator was consumed.
    Done,
    /// A line exceeded the limit.
    Failed,
}

/// The incremental dot-unstuffing decoder for one multi-line body.
///
/// ```
/// use pop3_proto::body::{DotUnstuffer, Unstuffed};
/// let mut dec = DotUnstuffer::new();
/// let mut body = Vec::new();
/// // The terminator split across two reads, and a stuffed dot.
/// for chunk in [&b"Subject: x\r\n\r\n..dots\r\n."[..], &b"\r\nNEXT"[..]] {
///     let (used, done) = dec.decode_into(chunk, &mut body).unwrap();
///     if done {
///         assert_eq!(&chunk[used..], b"NEXT");
///     }
/// }
/// assert_eq!(body, b"Subject: x\r\n\r\n.dots\r\n");
/// ```
#[derive(Debug, Clone)]
pub struct DotUnstuffer {
    state: DecState,
    finder: Finder<'static>,
    line_limit: Option<usize>,
    /// Octets of the current line so far (only tracked with a limit).
    line_len: usize,
    /// The last body octet was a CR, so an LF at the start of the next data ends a line.
    prev_cr: bool,
}

impl Default for DotUnstuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl DotUnstuffer {
    /// A decoder at the start of a body, with no line limit.
    pub fn new() -> Self {
        DotUnstuffer {
            state: DecState::LineStart,
            finder: finder(),
            line_limit: None,
            line_len: 0,
            prev_cr: false,
        }
    }

    /// A decoder that fails when a body line (CRLF included, stuffing excluded) is longer than
    /// `limit` octets.
    pub fn with_line_limit(limit: Option<usize>) -> Self {
        DotUnstuffer {
            line_limit: limit,
            ..Self::new()
        }
    }

    /// Starts a new body, keeping the limit.
    pub fn reset(&mut self) {
        self.state = DecState::LineStart;
        self.line_len = 0;
        self.prev_cr = false;
    }

    /// Whether the terminator has been seen.
    pub fn is_done(&self) -> bool {
        self.state == DecState::Done
    }

    /// Decodes from `input`: returns how many octets it consumed and what it found. Body data
    /// is a slice of `input` (no copy), except for a single CR held back across a call
    /// boundary. Call until it returns `NeedMore` (all input used) or `End`.
    pub fn next<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Unstuffed<'a>), BodyLineTooLong> {
        let (used, out) = self.step(input);
        if let (Some(limit), Unstuffed::Data(d)) = (self.line_limit, out) {
            self.check_limit(limit, d)?;
        }
        if self.state == DecState::Failed {
            return Err(BodyLineTooLong {
                limit: self.line_limit.unwrap_or(0),
            });
        }
        Ok((used, out))
    }

    fn check_limit(&mut self, limit: usize, data: &[u8]) -> Result<(), BodyLineTooLong> {
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', data) {
            // Only CRLF ends a line: a bare LF is data, as everywhere in the body.
            let after_cr = if nl > 0 {
                data[nl - 1] == b'\r'
            } else {
                self.prev_cr
            };
            if !after_cr {
                continue;
            }
            if self.line_len + nl + 1 - start > limit {
                self.state = DecState::Failed;
                return Err(BodyLineTooLong { limit });
            }
            self.line_len = 0;
            start = nl + 1;
        }
        self.line_len += data.len() - start;
        if let Some(&last) = data.last() {
            self.prev_cr = last == b'\r';
        }
        // A stuffed dot was consumed after this data: it belongs to the next line's count,
        // which does not include stuffing. Nothing to add.
        if self.line_len > limit {
            self.state = DecState::Failed;
            return Err(BodyLineTooLong { limit });
        }
        Ok(())
    }

    fn step<'a>(&mut self, input: &'a [u8]) -> (usize, Unstuffed<'a>) {
        let mut i = 0;
        loop {
            match self.state {
                DecState::Done => return (i, Unstuffed::End),
                DecState::Failed => return (i, Unstuffed::NeedMore),
                _ if i == input.len() => return (i, Unstuffed::NeedMore),
                DecState::LineStart => {
                    if input[i] == b'.' {
                        i += 1;
                        self.state = DecState::Dot;
                    } else {
                        self.state = DecState::Mid;
                    }
                }
                DecState::Dot => {
                    if input[i] == b'\r' {
                        i += 1;
                        self.state = DecState::DotCr;
                    } else {
                        // The dot was stuffing: drop it, the line goes on.
                        self.state = DecState::Mid;
                    }
                }
                DecState::DotCr => {
                    if input[i] == b'\n' {
                        self.state = DecState::Done;
                        return (i + 1, Unstuffed::End);
                    }
                    // ".\r" then something else: the dot was stuffing, the CR is data.
                    self.state = DecState::Cr;
                    return (i, Unstuffed::Data(b"\r"));
                }
                DecState::Cr if input[i] == b'\n' => {
                    // The CRLF completes across the boundary: a line starts after it.
                    self.state = DecState::LineStart;
                    return (i + 1, Unstuffed::Data(&input[i..=i]));
                }
                DecState::Mid | DecState::Cr => return self.scan(input, i),
            }
        }
    }

    /// Scans from `s`, inside a line, to the next line that starts with a dot.
    fn scan<'a>(&mut self, input: &'a [u8], s: usize) -> (usize, Unstuffed<'a>) {
        match self.finder.find(&input[s..]) {
            Some(p) => {
                let end = s + p + 2;
                self.state = DecState::Dot;
                (end + 1, Unstuffed::Data(&input[s..end]))
            }
            None => {
                let data = &input[s..];
                self.state = match data {
                    [.., b'\r', b'\n'] => DecState::LineStart,
                    [.., b'\r'] => DecState::Cr,
                    _ => DecState::Mid,
                };
                (input.len(), Unstuffed::Data(data))
            }
        }
    }

    /// Decodes from `input`, appending body octets to `out`. Returns how many octets of
    /// `input` were consumed and whether the body is complete; octets after the terminator
    /// are not consumed.
    pub fn decode_into(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, bool), BodyLineTooLong> {
        let mut pos = 0;
        loop {
            let (used, found) = self.next(&input[pos..])?;
            pos += used;
            match found {
                Unstuffed::Data(d) => out.extend_from_slice(d),
                Unstuffed::End => return Ok((pos, true)),
                Unstuffed::NeedMore => return Ok((pos, false)),
            }
        }
    }
}

/// The incremental dot-stuffing encoder for one multi-line body.
///
/// ```
/// use pop3_proto::body::DotStuffer;
/// let mut enc = DotStuffer::new();
/// let mut wire = Vec::new();
/// enc.encode(b".hidden\r\nlast line without CRLF", &mut wire);
/// enc.finish(&mut wire);
/// assert_eq!(wire, b"..hidden\r\nlast line without CRLF\r\n.\r\n");
/// ```
#[derive(Debug, Clone)]
pub struct DotStuffer {
    at_line_start: bool,
    last_cr: bool,
    finder: Finder<'static>,
}

impl Default for DotStuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl DotStuffer {
    /// An encoder at the start of a body.
    pub fn new() -> Self {
        DotStuffer {
            at_line_start: true,
            last_cr: false,
            finder: finder(),
        }
    }

    /// Starts a new body.
    pub fn reset(&mut self) {
        self.at_line_start = true;
        self.last_cr = false;
    }

    /// Appends `input`, dot-stuffed, to `out`.
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if input.is_empty() {
            return;
        }
        out.reserve(input.len() + 8);
        let mut s = 0;
        if self.at_line_start && input[0] == b'.' {
            out.push(b'.');
        } else if self.last_cr && input.starts_with(b"\n.") {
            out.extend_from_slice(b"\n.");
            s = 1;
        }
        let base = s;
        for p in self.finder.find_iter(&input[base..]) {
            let end = base + p + 2;
            out.extend_from_slice(&input[s..end]);
            out.push(b'.');
            s = end;
        }
        out.extend_from_slice(&input[s..]);
        self.at_line_start = input.ends_with(b"\r\n") || (self.last_cr && input == b"\n");
        self.last_cr = input.ends_with(b"\r");
    }

    /// Ends the body: a CRLF if it did not end with one, then the terminator `.` CRLF.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(crate::encode::TERMINATOR);
        self.reset();
    }

    /// Whether the body so far ends at a line start (empty, or ending in CRLF).
    pub fn at_line_start(&self) -> bool {
        self.at_line_start
    }
}
