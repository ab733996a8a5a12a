//! Body octets: the CRLF conversion done once at delivery, and the `TOP` cut done while
//! streaming. Bodies are stored with CRLF line ends, so a stored body is exactly what `RETR`
//! sends and its length is the size POP3 reports; nothing is converted on the way out.

use memchr::memchr_iter;

/// `message` with every bare LF turned into CRLF (CRLF and a bare CR are kept as they are).
pub(crate) fn to_crlf(message: &[u8]) -> Vec<u8> {
    let bare = memchr_iter(b'\n', message)
        .filter(|&i| i == 0 || message[i - 1] != b'\r')
        .count();
    let mut out = Vec::with_capacity(message.len() + bare);
    let mut start = 0;
    for i in memchr_iter(b'\n', message) {
        if i == 0 || message[i - 1] != b'\r' {
            out.extend_from_slice(&message[start..i]);
            out.extend_from_slice(b"\r\n");
            start = i + 1;
        }
    }
    out.extend_from_slice(&message[start..]);
    out
}

/// Where a `TOP` cut stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// The whole message (`RETR`).
    All,
    /// Still in the header; after the blank line, `body_lines` body lines are sent.
    Header { body_lines: u64 },
    /// In the body; `remaining` more lines are sent (always at least 1).
    Body { remaining: u64 },
    /// The requested lines are out: end of stream.
    Done,
}

/// Cuts a stream of CRLF message octets after the header, the blank line and `n` body lines
/// (RFC 1939 §7 `TOP`), chunk by chunk, with a few octets of state: the same rules as the
/// Maildir store's `CrlfReader::top` (a line ends at LF; the header ends at the first empty
/// line, one holding nothing or only the CR of its CRLF; a message without one is all header).
#[derive(Debug, Clone)]
pub(crate) struct TopCut {
    limit: Limit,
    /// Octets of the current line seen so far, before its LF.
    line_len: u64,
    /// The last octet seen was CR.
    prev_cr: bool,
}

impl TopCut {
    /// No cut: the whole message.
    pub(crate) fn all() -> TopCut {
        TopCut::with(Limit::All)
    }

    /// The header, the blank line and `body_lines` lines of the body.
    pub(crate) fn top(body_lines: u64) -> TopCut {
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
    pub(crate) fn is_done(&self) -> bool {
        self.limit == Limit::Done
    }

    /// How many octets of `data`, the next octets of the message, are sent; fewer than
    /// `data.len()` only when the cut falls inside `data` (then [`is_done`](Self::is_done)).
    pub(crate) fn admit(&mut self, data: &[u8]) -> usize {
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
            self.limit = match self.limit {
                Limit::Header { body_lines: 0 } if empty => Limit::Done,
                Limit::Header { body_lines } if empty => Limit::Body {
                    remaining: body_lines,
                },
                Limit::Body { remaining: 1 } => Limit::Done,
                Limit::Body { remaining } => Limit::Body {
                    remaining: remaining - 1,
                },
                other => other,
            };
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

    use pop3_server_core::maildir::CrlfReader;

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
    fn crlf_conversion() {
        assert_eq!(to_crlf(b""), b"");
        assert_eq!(to_crlf(b"\n"), b"\r\n");
        assert_eq!(to_crlf(b"a\nb\r\nc\rd\n\n"), b"a\r\nb\r\nc\rd\r\n\r\n");
        assert_eq!(to_crlf(b"no end"), b"no end");
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
            let crlf = to_crlf(sample);
            assert_eq!(reference(sample, None), crlf);
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
