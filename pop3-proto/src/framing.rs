//! Bounded line framing.
//!
//! [`LineFramer`] cuts a byte stream into lines at LF (the line handed out keeps its CRLF, so
//! it can go straight to a parser of [`crate::decode`]). Each line has a limit; a longer line
//! is reported as [`Framed::TooLong`] once its end arrives, framing resumes after it, and its
//! excess is never held in memory: at most `limit` octets are ever buffered.
//!
//! [`LineLimits`] holds the limits a peer applies to each kind of line.

/// Line length limits, in octets including CRLF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LineLimits {
    /// Command lines: RFC 2449 §4 requires servers to accept 255.
    pub command: usize,
    /// Status lines and the greeting: 512 (RFC 1939 §3, RFC 2449 §4).
    pub status: usize,
    /// SASL lines (challenges, responses, `AUTH` with an initial response). RFC 5034 §4 asks
    /// for arbitrarily large ones; this bounds the memory a peer can make us hold.
    pub sasl: usize,
    /// Lines of multi-line listings (`LIST`, `UIDL`, `CAPA`, `LANG`).
    pub listing: usize,
    /// Lines of message bodies (`RETR`, `TOP`). `None`: no limit, as real mail has long lines;
    /// bodies are streamed, never buffered by line.
    pub body: Option<usize>,
}

impl LineLimits {
    /// The limits of the RFCs, with 64 KiB for SASL and 8 KiB for listing lines.
    pub const DEFAULT: LineLimits = LineLimits {
        command: 255,
        status: 512,
        sasl: 64 * 1024,
        listing: 8 * 1024,
        body: None,
    };
}

impl Default for LineLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What [`LineFramer::next_line`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framed<'a> {
    /// A complete line, CRLF (or LF) included.
    Line(&'a [u8]),
    /// A line longer than the limit has ended; it was discarded. `len` is its full length.
    TooLong {
        /// The length of the discarded line, line end included.
        len: u64,
    },
    /// All input was consumed without completing a line.
    NeedMore,
}

/// An incremental line framer with a length limit.
///
/// ```
/// use pop3_proto::framing::{Framed, LineFramer};
/// let mut framer = LineFramer::new(255);
/// let mut input: &[u8] = b"STAT\r\nLI";
/// let (used, framed) = framer.next_line(input);
/// assert_eq!(framed, Framed::Line(b"STAT\r\n"));
/// input = &input[used..];
/// let (used, framed) = framer.next_line(input);
/// assert_eq!((used, framed), (2, Framed::NeedMore));
/// let (_, framed) = framer.next_line(b"ST\r\n");
/// assert_eq!(framed, Framed::Line(b"LIST\r\n"));
/// ```
#[derive(Debug, Clone)]
pub struct LineFramer {
    buf: Vec<u8>,
    limit: usize,
    /// Octets of an over-long line seen so far, when discarding one.
    discarding: Option<u64>,
    /// `buf` holds a line already handed out, to be cleared on the next call.
    handed_out: bool,
}

impl LineFramer {
    /// A framer whose lines may be at most `limit` octets, line end included.
    pub fn new(limit: usize) -> Self {
        LineFramer {
            buf: Vec::new(),
            limit: limit.max(1),
            discarding: None,
            handed_out: false,
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Changes the limit, for example from the command limit to the SASL limit while an
    /// `AUTH` exchange runs. A partial line already buffered is kept.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.max(1);
    }

    /// Whether a partial line is buffered (or an over-long one is being discarded).
    pub fn has_partial(&self) -> bool {
        (!self.handed_out && !self.buf.is_empty()) || self.discarding.is_some()
    }

    /// Octets held for a partial line.
    pub fn buffered(&self) -> usize {
        if self.handed_out { 0 } else { self.buf.len() }
    }

    /// Drops any partial line (for example at a TLS switch).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.discarding = None;
        self.handed_out = false;
    }

    /// Takes octets from `input` until one line is complete. Returns how many octets it used
    /// and what it found. A returned line borrows either `input` (no copy, when the whole line
    /// is there) or the framer's buffer.
    pub fn next_line<'a>(&'a mut self, input: &'a [u8]) -> (usize, Framed<'a>) {
        if self.handed_out {
            self.buf.clear();
            self.handed_out = false;
        }
        let lf = memchr::memchr(b'\n', input);
        if let Some(seen) = self.discarding {
            return match lf {
                Some(i) => {
                    self.discarding = None;
                    (
                        i + 1,
                        Framed::TooLong {
                            len: seen + i as u64 + 1,
                        },
                    )
                }
                None => {
                    self.discarding = Some(seen + input.len() as u64);
                    (input.len(), Framed::NeedMore)
                }
            };
        }
        let have = self.buf.len();
        match lf {
            Some(i) if have + i < self.limit => {
                if have == 0 {
                    (i + 1, Framed::Line(&input[..=i]))
                } else {
                    self.buf.extend_from_slice(&input[..=i]);
                    self.handed_out = true;
                    (i + 1, Framed::Line(&self.buf))
                }
            }
            Some(i) => {
                self.buf.clear();
                (
                    i + 1,
                    Framed::TooLong {
                        len: (have + i + 1) as u64,
                    },
                )
            }
            None if have + input.len() < self.limit => {
                self.buf.extend_from_slice(input);
                (input.len(), Framed::NeedMore)
            }
            None => {
                // Over the limit without a line end: stop buffering, discard until LF.
                self.buf.clear();
                self.discarding = Some((have + input.len()) as u64);
                (input.len(), Framed::NeedMore)
            }
        }
    }
}
