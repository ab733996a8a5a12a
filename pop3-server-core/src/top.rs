//! The `TOP` cut (RFC 1939 §7): a message's header, the blank line that ends it, and `n` lines
//! of its body, found as the octets stream by. [`TopCut`] is for stores that keep bodies with
//! CRLF line ends; the Maildir store's [`CrlfReader`](crate::maildir::CrlfReader) converts
//! line ends and cuts in one pass, by the same rules (one private `Limit`).

use memchr::memchr_iter;

/// Where a `TOP` cut stands: also the state of [`CrlfReader`](crate::maildir::CrlfReader)'s
/// cut, so that both follow one set of rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// The whole message (`RETR`).
    All,
    /// Still in the header; after the blank line, `body_lines` body lines are sent.
    Header { body_lines: u64 },
    /// In the body; `remaining` more lines are sent (always at least 1).
    Body { remaining: u64 },
    /// The requested lines are out: end of stream.
    Done,
}

impl Limit {
    /// Where the cut stands after a line ends; `empty` tells whether the line held nothing
    /// (or only the CR of its CRLF).
    pub(crate) fn after_line(self, empty: bool) -> Limit {
        match self {
            Limit::Header { body_lines: 0 } if empty => Limit::Done,
            Limit::Header { body_lines } if empty => Limit::Body {
                remaining: body_lines,
            },
            Limit::Body { remaining: 1 } => Limit::Done,
            Limit::Body { remaining } => Limit::Body {
                remaining: remaining - 1,
            },
            other => other,
        }
    }
}

/// Cuts a stream of CRLF message octets after the header, the blank line and `n` body lines
/// (RFC 1939 §7 `TOP`), chunk by chunk, with a few octets of state: the same rules as the
/// Maildir store's [`CrlfReader::top`](crate::maildir::CrlfReader::top) (a line ends at LF;
/// the header ends at the first empty line, one holding nothing or only the CR of its CRLF; a
/// message without one is all header). For a store that keeps bodies with CRLF line ends and
/// streams them as they are.
///
/// ```
/// use pop3_server_core::top::TopCut;
///
/// let message = b"Subject: x\r\n\r\nline 1\r\nline 2\r\n";
/// let mut cut = TopCut::top(1);
/// let sent = cut.admit(message);
/// assert_eq!(&message[..sent], b"Subject: x\r\n\r\nline 1\r\n");
/// assert!(cut.is_done());
/// ```
#[derive(Debug, Clone)]
pub struct TopCut {
    limit: Limit,
    /// Octets of the current line seen so far, before its LF.
    line_len: u64,
    /// The last octet seen was CR.
    prev_cr: bool,
}

impl TopCut {
    /// No cut: the whole message.
    pub fn all() -> TopCut {
        TopCut::with(Limit::All)
    }

    /// The header, the blank line and `body_lines` lines of the body.
    pub fn top(body_lines: u64) -> TopCut {
        TopCut::with(Limit::Header { body_lines })
    }

    fn with(limit: Limit) -> TopCut {
        TopCut {
            limit,
            line_len: 0,
            prev_cr: false,
        }
    }

    /// Whether the cut has been reached: nothing more is to be sent.
    pub fn is_done(&self) -> bool {
        self.limit == Limit::Done
    }

    /// How many octets of `data`, the next octets of the message, are sent; fewer than
    /// `data.len()` only when the cut falls inside `data` (then [`is_done`](Self::is_done)).
    pub fn admit(&mut self, data: &[u8]) -> usize {
        match self.limit {
            Limit::All => return data.len(),
            Limit::Done => return 0,
            _ => {}
        }
        let mut start = 0;
        for i in memchr_iter(b'\n', data) {
            let before = (i - start) as u64;
            let last_cr = if i > start {
                data[i - 1] == b'\r'
            } else {
                self.prev_cr
            };
            let len = self.line_len + before;
            let empty = len == 0 || (len == 1 && last_cr);
            self.line_len = 0;
            self.prev_cr = false;
            start = i + 1;
            self.limit = self.limit.after_line(empty);
            if self.limit == Limit::Done {
                return start;
            }
        }
        if start < data.len() {
            self.line_len += (data.len() - start) as u64;
            self.prev_cr = data[data.len() - 1] == b'\r';
        }
        data.len()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufReader, Read};

    use crate::maildir::CrlfReader;

    use super::*;

    /// Cuts `input` fed in pieces of `step` octets.
    fn cut(input: &[u8], lines: Option<u64>, step: usize) -> Vec<u8> {
        let mut top = lines.map_or_else(TopCut::all, TopCut::top);
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            let n = top.admit(piece);
            out.extend_from_slice(&piece[..n]);
            if n < piece.len() {
                assert!(top.is_done());
                break;
            }
        }
        out
    }

    /// The Maildir store's reader, the reference.
    fn reference(input: &[u8], lines: Option<u64>) -> Vec<u8> {
        let inner = BufReader::new(input);
        let mut out = Vec::new();
        match lines {
            None => CrlfReader::new(inner).read_to_end(&mut out),
            Some(n) => CrlfReader::top(inner, n).read_to_end(&mut out),
        }
        .unwrap();
        out
    }

    #[test]
    fn agrees_with_the_maildir_reader_at_every_split() {
        let samples: [&[u8]; 8] = [
            b"",
            b"A: 1\nB: 2\r\n\nl1\nl2\r\nl3",
            b"A: 1\nB: 2\n",
            b"\nbody\n",
            b"A\n\r\r\nB\n\nC\n",
            b"Subject: x\r\n\r\n.\r\n..\r\nlast\r\n",
            b"H: v\r\n\r\n\r\n\r\nx\r\n",
            b"\r\n",
        ];
        for sample in samples {
            let crlf = reference(sample, None);
            for lines in [None, Some(0), Some(1), Some(2), Some(3), Some(u64::MAX)] {
                let expected = reference(sample, lines);
                for step in 1..=crlf.len().max(1) {
                    assert_eq!(
                        cut(&crlf, lines, step),
                        expected,
                        "{sample:?} lines {lines:?} step {step}"
                    );
                }
            }
        }
    }
}
