//! The bounded line framer: limits, resumption after an over-long line, bounded memory, and
//! lines split across many calls.

mod common;

use pop3_proto::decode;
use pop3_proto::framing::{Framed, LineFramer, LineLimits};
use proptest::prelude::*;

/// What the framer produced, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Line(Vec<u8>),
    TooLong(u64),
}

/// Feeds `chunks` one after the other, collecting every line and over-long report. Also checks
/// the memory bound after every call.
fn frame(framer: &mut LineFramer, chunks: &[&[u8]]) -> Vec<Out> {
    let mut out = Vec::new();
    for chunk in chunks {
        let mut input = *chunk;
        loop {
            let limit = framer.limit();
            let (used, found) = framer.next_line(input);
            assert!(used <= input.len());
            let done = match found {
                Framed::Line(l) => {
                    assert!(l.len() <= limit, "line of {} > limit {limit}", l.len());
                    assert!(l.ends_with(b"\n"));
                    out.push(Out::Line(l.to_vec()));
                    false
                }
                Framed::TooLong { len } => {
                    assert!(len > limit as u64);
                    out.push(Out::TooLong(len));
                    false
                }
                Framed::NeedMore => {
                    assert_eq!(used, input.len());
                    true
                }
            };
            assert!(framer.buffered() < framer.limit().max(1));
            input = &input[used..];
            if done {
                break;
            }
        }
    }
    out
}

/// The oracle: split at LF, lines longer than `limit` become `TooLong`.
fn reference(data: &[u8], limit: usize) -> Vec<Out> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' {
            let line = &data[start..=i];
            out.push(if line.len() <= limit {
                Out::Line(line.to_vec())
            } else {
                Out::TooLong(line.len() as u64)
            });
            start = i + 1;
        }
    }
    out
}

fn line(s: &[u8]) -> Out {
    Out::Line(s.to_vec())
}

#[test]
fn exactly_at_the_limit_and_one_over() {
    // "ABCDEFGH\r\n" is 10 octets.
    let mut f = LineFramer::new(10);
    assert_eq!(frame(&mut f, &[b"ABCDEFGH\r\n"]), [line(b"ABCDEFGH\r\n")]);
    assert_eq!(frame(&mut f, &[b"ABCDEFGHI\r\n"]), [Out::TooLong(11)]);
    // The same, split so that the framer must buffer.
    assert_eq!(
        frame(&mut f, &[b"ABCD", b"EFGH\r", b"\n"]),
        [line(b"ABCDEFGH\r\n")]
    );
    assert_eq!(
        frame(&mut f, &[b"ABCD", b"EFGHI\r", b"\n"]),
        [Out::TooLong(11)]
    );
    // Ten octets without LF is already over: the LF makes eleven.
    assert_eq!(
        frame(&mut f, &[b"ABCDEFGHIJ", b"\nOK\r\n"]),
        [Out::TooLong(11), line(b"OK\r\n")]
    );
    // A bare LF line end counts as one octet.
    assert_eq!(frame(&mut f, &[b"ABCDEFGHI\n"]), [line(b"ABCDEFGHI\n")]);
}

#[test]
fn rfc_limits() {
    let l = LineLimits::default();
    assert_eq!(l, LineLimits::DEFAULT);
    assert_eq!(l.command, 255);
    assert_eq!(l.status, 512);
    assert_eq!(l.body, None);
    // A 255-octet command line passes, 256 does not.
    let mut cmd = b"PASS ".to_vec();
    cmd.extend(std::iter::repeat_n(b'x', 255 - 5 - 2));
    cmd.extend_from_slice(b"\r\n");
    assert_eq!(cmd.len(), 255);
    let mut f = LineFramer::new(l.command);
    let out = frame(&mut f, &[&cmd]);
    assert_eq!(out, [Out::Line(cmd.clone())]);
    cmd.insert(5, b'y');
    assert_eq!(frame(&mut f, &[&cmd]), [Out::TooLong(256)]);
}

#[test]
fn resumes_at_the_next_lf_after_an_over_long_line() {
    let mut f = LineFramer::new(16);
    let long = [vec![b'x'; 100], b"\r\nSTAT\r\nQUIT\r\n".to_vec()].concat();
    let out = frame(&mut f, &[&long]);
    assert_eq!(
        out,
        [Out::TooLong(102), line(b"STAT\r\n"), line(b"QUIT\r\n")]
    );
    // The same over many small chunks.
    let chunks: Vec<&[u8]> = long.chunks(7).collect();
    assert_eq!(frame(&mut f, &chunks), out);
    // Each framed line parses.
    let Out::Line(stat) = &out[1] else { panic!() };
    assert!(decode::command(stat).is_ok());
}

#[test]
fn memory_stays_bounded_while_a_10_mb_line_is_fed() {
    let limit = 512;
    let mut f = LineFramer::new(limit);
    let chunk = vec![b'A'; 64 * 1024];
    let mut fed: u64 = 0;
    while fed < 10 * 1024 * 1024 {
        let (used, found) = f.next_line(&chunk);
        assert_eq!(found, Framed::NeedMore);
        assert_eq!(used, chunk.len());
        assert!(f.buffered() <= limit);
        assert!(f.has_partial());
        fed += chunk.len() as u64;
    }
    // Odd-sized chunks too, including empty ones.
    for n in [0, 1, 511, 512, 513, 3] {
        let (used, found) = f.next_line(&chunk[..n]);
        assert_eq!((used, found), (n, Framed::NeedMore));
        assert!(f.buffered() <= limit);
        fed += n as u64;
    }
    let (used, found) = f.next_line(b"\r\nNOOP\r\n");
    assert_eq!(used, 2);
    assert_eq!(found, Framed::TooLong { len: fed + 2 });
    assert!(!f.has_partial());
    let (_, found) = f.next_line(b"NOOP\r\n");
    assert_eq!(found, Framed::Line(b"NOOP\r\n"));
}

#[test]
fn a_line_split_across_many_calls() {
    let mut f = LineFramer::new(255);
    let cmd = b"TOP 12345 67890\r\n";
    for (i, b) in cmd.iter().enumerate() {
        let (used, found) = f.next_line(std::slice::from_ref(b));
        assert_eq!(used, 1);
        if i + 1 < cmd.len() {
            assert_eq!(found, Framed::NeedMore);
            assert_eq!(f.buffered(), i + 1);
        } else {
            assert_eq!(found, Framed::Line(&cmd[..]));
        }
    }
    assert_eq!(f.buffered(), 0);
    assert!(!f.has_partial());
}

#[test]
fn reset_and_set_limit() {
    let mut f = LineFramer::new(255);
    assert_eq!(f.next_line(b"USER mro").1, Framed::NeedMore);
    assert!(f.has_partial());
    f.reset();
    assert!(!f.has_partial());
    assert_eq!(f.next_line(b"QUIT\r\n").1, Framed::Line(b"QUIT\r\n"));
    // Raising the limit for SASL keeps the partial line.
    assert_eq!(f.next_line(b"AUTH PLAIN ").1, Framed::NeedMore);
    f.set_limit(64 * 1024);
    assert_eq!(f.limit(), 64 * 1024);
    let ir = vec![b'A'; 1000];
    assert_eq!(f.next_line(&ir).1, Framed::NeedMore);
    let (_, found) = f.next_line(b"\r\n");
    let Framed::Line(l) = found else {
        panic!("{found:?}")
    };
    assert_eq!(l.len(), 11 + 1000 + 2);
    // Lowering the limit below a buffered partial line makes it over-long.
    f.set_limit(1 << 20);
    assert_eq!(f.next_line(&[b'B'; 100]).1, Framed::NeedMore);
    f.set_limit(50);
    assert_eq!(f.next_line(b"\r\n").1, Framed::TooLong { len: 102 });
    // Limit 0 is treated as 1: only an empty LF line fits.
    let mut f = LineFramer::new(0);
    assert_eq!(f.limit(), 1);
    assert_eq!(
        frame(&mut f, &[b"\n\r\nx\n"]),
        [line(b"\n"), Out::TooLong(2), Out::TooLong(2)]
    );
}

proptest! {
    #![proptest_config(common::config(512))]

    /// Under any chunking and any limit, the framer produces exactly the oracle's lines and
    /// never buffers a whole limit's worth.
    #[test]
    fn framing_matches_the_oracle(
        data in prop::collection::vec(
            prop_oneof![4 => Just(b'\n'), 1 => Just(b'\r'), 8 => any::<u8>()], 0..300),
        limit in 1usize..40,
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        at.extend([0, data.len()]);
        at.sort_unstable();
        at.dedup();
        let chunks: Vec<&[u8]> = at.windows(2).map(|w| &data[w[0]..w[1]]).collect();
        let mut f = LineFramer::new(limit);
        prop_assert_eq!(frame(&mut f, &chunks), reference(&data, limit));
        // What is left is exactly the partial last line (if it fits).
        let tail = data.len() - data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if tail < limit {
            prop_assert_eq!(f.buffered(), tail);
        }
        prop_assert_eq!(f.has_partial(), tail > 0);
    }
}
