//! Streaming line-end conversion: every bare LF becomes CRLF, everything else passes through.
//!
//! POP3 counts and sends every line end as CRLF (RFC 1939 §3 and §11), but a Maildir written by
//! a Unix delivery agent usually stores LF. The reader here converts on the fly with a few
//! bytes of state, so a message is never held in memory, and [`crlf_size`] counts the same
//! octets without producing them. A CR not followed by LF is data and is left alone, so the
//! count is always `file length + number of LFs not preceded by CR`.

use std::io::{self, BufRead, Read};

use memchr::{memchr, memchr_iter};

use crate::top::Limit;

/// A [`Read`] adapter that turns every bare LF of `R` into CRLF, optionally stopping after the
/// header, the blank line and a number of body lines (the POP3 `TOP` command).
///
/// The octets it yields for a whole message are exactly [`crlf_size`] of the same input. A
/// message that does not end with a line end is yielded as it is (no line end is added: the
/// multi-line framing adds the CRLF before the terminating `.`).
#[derive(Debug)]
pub struct CrlfReader<R> {
    inner: R,
    /// The last octet consumed from `inner` was CR (so an LF right after it is not bare).
    prev_cr: bool,
    /// Octets consumed on the current line, before its LF.
    line_len: u64,
    /// A CR was emitted for a bare LF but the output buffer had no room for the LF.
    pending_lf: bool,
    limit: Limit,
}

impl<R: BufRead> CrlfReader<R> {
    /// Streams all of `inner`, converting bare LF to CRLF.
    pub fn new(inner: R) -> Self {
        Self::with_limit(inner, Limit::All)
    }

    /// Streams the header of `inner`, the blank line that ends it, and then at most
    /// `body_lines` lines of the body, converting bare LF to CRLF (RFC 1939 §7 `TOP`).
    ///
    /// The header ends at the first empty line; a message without one is all header and is
    /// yielded whole, as is a message whose body has fewer than `body_lines` lines.
    pub fn top(inner: R, body_lines: u64) -> Self {
        Self::with_limit(inner, Limit::Header { body_lines })
    }

    fn with_limit(inner: R, limit: Limit) -> Self {
        CrlfReader {
            inner,
            prev_cr: false,
            line_len: 0,
            pending_lf: false,
            limit,
        }
    }

    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Bookkeeping after an input LF was consumed; `empty` tells whether the line it ends
    /// held nothing (or only the CR of its CRLF).
    fn end_line(&mut self, empty: bool) {
        self.prev_cr = false;
        self.line_len = 0;
        self.limit = self.limit.after_line(empty);
    }
}

impl<R: BufRead> Read for CrlfReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < out.len() {
            if self.pending_lf {
                out[n] = b'\n';
                n += 1;
                self.pending_lf = false;
                continue;
            }
            if self.limit == Limit::Done {
                break;
            }
            let chunk = match self.inner.fill_buf() {
                Ok(chunk) => chunk,
                // Octets already placed in `out` were consumed from `inner`: hand them out
                // now; the error comes back on the next call.
                Err(_) if n > 0 => break,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                break;
            }
            let scan = &chunk[..chunk.len().min(out.len() - n)];
            match memchr(b'\n', scan) {
                None => {
                    let len = scan.len();
                    out[n..n + len].copy_from_slice(scan);
                    self.prev_cr = scan[len - 1] == b'\r';
                    self.line_len += len as u64;
                    n += len;
                    self.inner.consume(len);
                }
                Some(i) => {
                    out[n..n + i].copy_from_slice(&scan[..i]);
                    if i > 0 {
                        self.prev_cr = scan[i - 1] == b'\r';
                        self.line_len += i as u64;
                    }
                    n += i;
                    let empty = self.line_len == 0 || (self.line_len == 1 && self.prev_cr);
                    // `scan` was cut to the room left, so there is room for at least one more.
                    if !self.prev_cr {
                        out[n] = b'\r';
                        n += 1;
                    }
                    if n < out.len() {
                        out[n] = b'\n';
                        n += 1;
                    } else {
                        self.pending_lf = true;
                    }
                    self.inner.consume(i + 1);
                    self.end_line(empty);
                }
            }
        }
        Ok(n)
    }
}

/// The physical length of `input` and the number of octets it has once every bare LF is
/// CRLF: `(physical, crlf)`. Reads `input` to its end in fixed-size chunks.
pub fn crlf_size<R: Read>(mut input: R) -> io::Result<(u64, u64)> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut physical = 0u64;
    let mut bare_lf = 0u64;
    let mut prev_cr = false;
    loop {
        let got = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..got];
        for i in memchr_iter(b'\n', chunk) {
            let after_cr = if i == 0 {
                prev_cr
            } else {
                chunk[i - 1] == b'\r'
            };
            if !after_cr {
                bare_lf += 1;
            }
        }
        prev_cr = chunk[got - 1] == b'\r';
        physical += got as u64;
    }
    Ok((physical, physical + bare_lf))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads everything with output buffers of `step` octets, to cut at every position.
    fn read_all<R: BufRead>(mut r: CrlfReader<R>, step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; step];
        loop {
            let n = r.read(&mut buf).expect("in-memory read");
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// The obvious, whole-buffer conversion the streaming one must agree with.
    fn naive(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, &b) in input.iter().enumerate() {
            if b == b'\n' && (i == 0 || input[i - 1] != b'\r') {
                out.push(b'\r');
            }
            out.push(b);
        }
        out
    }

    #[test]
    fn matches_naive_conversion_at_every_cut() {
        let samples: [&[u8]; 7] = [
            b"",
            b"\n",
            b"a\nb\r\nc\rd\n\n\r\r\n",
            b"no newline at end",
            b"\r",
            b"\n\n\n\r\n\r",
            b"Subject: x\n\nbody\n.\n..\n",
        ];
        for input in samples {
            let expected = naive(input);
            let (physical, crlf) = crlf_size(input).expect("in-memory read");
            assert_eq!(physical, input.len() as u64);
            assert_eq!(crlf, expected.len() as u64, "{input:?}");
            for step in 1..=expected.len().max(1) + 1 {
                for cap in 1..=input.len().max(1) + 1 {
                    let r = CrlfReader::new(io::BufReader::with_capacity(cap, input));
                    assert_eq!(
                        read_all(r, step),
                        expected,
                        "{input:?} step {step} cap {cap}"
                    );
                }
            }
        }
    }

    #[test]
    fn top_counts_converted_lines() {
        let msg: &[u8] = b"A: 1\nB: 2\r\n\nl1\nl2\r\nl3";
        let cases: [(u64, &[u8]); 5] = [
            (0, b"A: 1\r\nB: 2\r\n\r\n"),
            (1, b"A: 1\r\nB: 2\r\n\r\nl1\r\n"),
            (2, b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n"),
            (3, b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3"),
            (u64::MAX, b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3"),
        ];
        for (lines, expected) in cases {
            for step in 1..8 {
                let r = CrlfReader::top(io::BufReader::with_capacity(3, msg), lines);
                assert_eq!(read_all(r, step), expected, "lines {lines} step {step}");
            }
        }
        // No blank line: the whole message is header.
        let r = CrlfReader::top(&b"A: 1\nB: 2\n"[..], 0);
        assert_eq!(read_all(r, 4), b"A: 1\r\nB: 2\r\n");
        // A blank first line: empty header.
        let r = CrlfReader::top(&b"\nbody\n"[..], 0);
        assert_eq!(read_all(r, 4), b"\r\n");
        // A CR alone on a line is not a blank line.
        let r = CrlfReader::top(&b"A\n\r\r\nB\n\nC\n"[..], 0);
        assert_eq!(read_all(r, 4), b"A\r\n\r\r\nB\r\n\r\n");
    }
}
