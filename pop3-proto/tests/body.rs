//! The multi-line body codec: known answers, the terminator split at every position, line
//! limits, and properties over random bodies and random chunkings.

mod common;

use pop3_proto::body::{BodyLineTooLong, DotStuffer, DotUnstuffer, Unstuffed};
use proptest::prelude::*;

/// Dot-stuffs `body` the simple way, as an oracle: a `.` at the start of the body or right
/// after CRLF is doubled; a CRLF is added unless the body is empty or ends with one.
fn reference_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &b) in body.iter().enumerate() {
        if b == b'.' && (i == 0 || body[..i].ends_with(b"\r\n")) {
            out.push(b'.');
        }
        out.push(b);
    }
    if !body.is_empty() && !body.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The body as it comes back: with exactly one CRLF added if it lacked a final one.
fn expected_body(body: &[u8]) -> Vec<u8> {
    let mut v = body.to_vec();
    if !v.is_empty() && !v.ends_with(b"\r\n") {
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// Cuts `data` at the given offsets (taken modulo its length, sorted, deduplicated).
fn chunks<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|c| {
            if data.is_empty() {
                0
            } else {
                c % (data.len() + 1)
            }
        })
        .collect();
    at.push(0);
    at.push(data.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| &data[w[0]..w[1]]).collect()
}

fn stuff_chunked(body: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut enc = DotStuffer::new();
    let mut out = Vec::new();
    for c in chunks(body, cuts) {
        enc.encode(c, &mut out);
    }
    enc.finish(&mut out);
    out
}

/// Decodes `wire` fed in the given chunks. Returns the body, whether the terminator was
/// seen, and how many octets were consumed in total.
fn unstuff_chunked(
    dec: &mut DotUnstuffer,
    wire: &[u8],
    cuts: &[usize],
) -> Result<(Vec<u8>, bool, usize), BodyLineTooLong> {
    let mut body = Vec::new();
    let mut consumed = 0;
    for c in chunks(wire, cuts) {
        let (used, done) = dec.decode_into(c, &mut body)?;
        consumed += used;
        if done {
            assert!(dec.is_done());
            return Ok((body, true, consumed));
        }
        assert_eq!(used, c.len(), "input left over before the end");
    }
    Ok((body, false, consumed))
}

fn unstuff_all(wire: &[u8]) -> (Vec<u8>, bool, usize) {
    unstuff_chunked(&mut DotUnstuffer::new(), wire, &[]).unwrap()
}

#[test]
fn known_answers_for_stuffing() {
    let table: &[(&[u8], &[u8])] = &[
        (b"", b".\r\n"),
        (b"\r\n", b"\r\n.\r\n"),
        (b".", b"..\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"..x\r\n", b"...x\r\n.\r\n"),
        (b"a.b\r\n", b"a.b\r\n.\r\n"),
        (b"no final line end", b"no final line end\r\n.\r\n"),
        (b"bare\nLF\n.x", b"bare\nLF\n.x\r\n.\r\n"),
        (b"bare\r.x", b"bare\r.x\r\n.\r\n"),
        (b"ends in CR\r", b"ends in CR\r\r\n.\r\n"),
        (
            b"Subject: x\r\n\r\n.hidden\r\n",
            b"Subject: x\r\n\r\n..hidden\r\n.\r\n",
        ),
    ];
    for (body, wire) in table {
        assert_eq!(
            stuff_chunked(body, &[]),
            *wire,
            "{:?}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(reference_stuff(body), *wire);
        let (got, done, used) = unstuff_all(wire);
        assert!(done);
        assert_eq!(used, wire.len());
        assert_eq!(got, expected_body(body));
    }
}

#[test]
fn known_answers_for_unstuffing() {
    let table: &[(&[u8], &[u8], &[u8])] = &[
        // (wire, body, remainder)
        (b".\r\n", b"", b""),
        (b".\r\nNEXT", b"", b"NEXT"),
        (b"a\r\n.\r\n+OK\r\n", b"a\r\n", b"+OK\r\n"),
        (b"..\r\n.\r\n", b".\r\n", b""),
        // A line with an unstuffed leading dot: the dot is dropped (RFC 1939 §3).
        (b".x\r\n.\r\n", b"x\r\n", b""),
        // ".\r" followed by something other than LF is data, not the end.
        (b".\rx\r\n.\r\n", b"\rx\r\n", b""),
        (b"a\r\n.\r.\r\n.\r\n", b"a\r\n\r.\r\n", b""),
        (b".\r\r\n.\r\n", b"\r\r\n", b""),
        // A bare LF does not start a line; neither does a bare CR.
        (b"a\n.\r\n.\r\n", b"a\n.\r\n", b""),
        (b"a\r.\r\n.\r\n", b"a\r.\r\n", b""),
        (b"\r\n\r\n.\r\n", b"\r\n\r\n", b""),
    ];
    for (wire, body, rest) in table {
        let (got, done, used) = unstuff_all(wire);
        assert!(done, "{:?}", String::from_utf8_lossy(wire));
        assert_eq!(got, *body, "{:?}", String::from_utf8_lossy(wire));
        assert_eq!(&wire[used..], *rest);
    }
    // No terminator yet: everything is consumed and the body is not done.
    for wire in [
        &b"a\r\n"[..],
        b"a\r\n.",
        b"a\r\n.\r",
        b".\r",
        b"",
        b"a\r\n.\rb",
    ] {
        let mut dec = DotUnstuffer::new();
        let (_, done, used) = unstuff_chunked(&mut dec, wire, &[]).unwrap();
        assert!(!done);
        assert!(!dec.is_done());
        assert_eq!(used, wire.len());
    }
}

#[test]
fn terminator_split_at_every_position() {
    let body = b"Line one\r\n..dot\r\n.\rcr\r\nlast";
    let wire = [&stuff_chunked(body, &[])[..], b"+OK next\r\n"].concat();
    let expected = expected_body(body);
    let end = wire.len() - b"+OK next\r\n".len();
    for a in 0..=wire.len() {
        for b in a..=wire.len() {
            let mut dec = DotUnstuffer::new();
            let (got, done, used) = unstuff_chunked(&mut dec, &wire, &[a, b]).unwrap();
            assert!(done, "cuts {a} {b}");
            assert_eq!(got, expected, "cuts {a} {b}");
            assert_eq!(used, end, "cuts {a} {b}");
        }
    }
}

#[test]
fn byte_by_byte_decoding_matches_whole_decoding() {
    let wire: &[u8] = b"..a\r\n.\r\r\n\r\n.\rb\r\n\n.\r\n.x\r\n.\r\ntail";
    let (whole, done, used) = unstuff_all(wire);
    assert!(done);
    let cuts: Vec<usize> = (0..wire.len()).collect();
    let (bytewise, done2, used2) = unstuff_chunked(&mut DotUnstuffer::new(), wire, &cuts).unwrap();
    assert!(done2);
    assert_eq!(bytewise, whole);
    assert_eq!(used2, used);
    assert_eq!(&wire[used..], b"tail");
    assert_eq!(whole, b".a\r\n\r\r\n\r\n\rb\r\n\n.\r\nx\r\n");
}

#[test]
fn next_hands_out_input_slices_and_ends() {
    let mut dec = DotUnstuffer::new();
    let wire = b"abc\r\n..def\r\n.\r\nrest";
    let mut pos = 0;
    let mut parts = Vec::new();
    loop {
        let (used, found) = dec.next(&wire[pos..]).unwrap();
        pos += used;
        match found {
            Unstuffed::Data(d) => parts.push(d.to_vec()),
            Unstuffed::End => break,
            Unstuffed::NeedMore => panic!("terminator not found"),
        }
    }
    assert_eq!(parts.concat(), b"abc\r\n.def\r\n");
    assert_eq!(&wire[pos..], b"rest");
    // Once done, it stays done and consumes nothing.
    assert_eq!(dec.next(b"more"), Ok((0, Unstuffed::End)));
    dec.reset();
    assert!(!dec.is_done());
    let mut out = Vec::new();
    assert_eq!(dec.decode_into(b"x\r\n.\r\n", &mut out), Ok((6, true)));
    assert_eq!(out, b"x\r\n");
}

#[test]
fn line_limit_reports_body_line_too_long() {
    // Limit 10: "12345678\r\n" is exactly 10 octets, "123456789\r\n" is 11.
    let mut dec = DotUnstuffer::with_line_limit(Some(10));
    let mut out = Vec::new();
    assert_eq!(
        dec.decode_into(b"12345678\r\n..2345678\r\n.\r\n", &mut out),
        Ok((24, true))
    );
    assert_eq!(out, b"12345678\r\n.2345678\r\n");

    for cuts in [vec![], (0..40).collect::<Vec<_>>(), vec![5, 9, 10]] {
        let mut dec = DotUnstuffer::with_line_limit(Some(10));
        let r = unstuff_chunked(&mut dec, b"ok\r\n123456789\r\n.\r\n", &cuts);
        assert_eq!(r, Err(BodyLineTooLong { limit: 10 }), "cuts {cuts:?}");
        // The error sticks.
        let mut out = Vec::new();
        assert_eq!(
            dec.decode_into(b"x\r\n.\r\n", &mut out),
            Err(BodyLineTooLong { limit: 10 })
        );
    }
    // A long line without an end fails as soon as it passes the limit.
    let mut dec = DotUnstuffer::with_line_limit(Some(100));
    let mut out = Vec::new();
    let mut failed = false;
    for _ in 0..20 {
        match dec.decode_into(&[b'x'; 10], &mut out) {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.limit, 100);
                failed = true;
                break;
            }
        }
    }
    assert!(failed);
    assert!(out.len() <= 110, "held {} octets", out.len());
    // Without a limit, the same long line is fine.
    let long = [vec![b'x'; 100_000], b"\r\n.\r\n".to_vec()].concat();
    let (got, done, _) = unstuff_all(&long);
    assert!(done);
    assert_eq!(got.len(), 100_002);
    let mut dec = DotUnstuffer::with_line_limit(None);
    assert!(dec.decode_into(&long, &mut Vec::new()).unwrap().1);
}

#[test]
fn stuffer_reset_and_line_start() {
    let mut enc = DotStuffer::new();
    assert!(enc.at_line_start());
    let mut out = Vec::new();
    enc.encode(b"abc", &mut out);
    assert!(!enc.at_line_start());
    enc.encode(b"\r", &mut out);
    enc.encode(b"\n", &mut out);
    assert!(enc.at_line_start());
    enc.encode(b".", &mut out);
    enc.finish(&mut out);
    assert_eq!(out, b"abc\r\n..\r\n.\r\n");
    // finish resets: the next body starts at a line start.
    assert!(enc.at_line_start());
    let mut out = Vec::new();
    enc.encode(b".x", &mut out);
    enc.finish(&mut out);
    assert_eq!(out, b"..x\r\n.\r\n");
    // Empty chunks change nothing, on either side.
    let mut out = Vec::new();
    for c in [&b"a\r"[..], b"", b"\n", b"", b".", b"", b"\r", b"\n"] {
        enc.encode(c, &mut out);
    }
    enc.finish(&mut out);
    assert_eq!(out, b"a\r\n..\r\n.\r\n");
    let mut dec = DotUnstuffer::new();
    let mut body = Vec::new();
    for c in [
        &b"a\r"[..],
        b"",
        b"\n",
        b"",
        b".",
        b"",
        b".",
        b"\r",
        b"",
        b"\n",
    ] {
        assert_eq!(dec.decode_into(c, &mut body).unwrap().0, c.len());
    }
    assert!(!dec.is_done());
    assert_eq!(dec.decode_into(b".\r\n", &mut body), Ok((3, true)));
    assert_eq!(body, b"a\r\n.\r\n");
}

/// Bodies rich in the octets that matter: `.`, CR, LF.
fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => Just(b'.'),
            4 => Just(b'\r'),
            4 => Just(b'\n'),
            2 => Just(b'a'),
            1 => any::<u8>(),
        ],
        0..200,
    )
}

fn cuts_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(any::<usize>(), 0..12)
}

proptest! {
    #![proptest_config(common::config(256))]

    /// Stuffing does not depend on chunking and matches the oracle; unstuffing under any
    /// chunking gives the body back, and leaves what follows the terminator unconsumed.
    #[test]
    fn stuff_then_unstuff_is_identity(
        body in body_strategy(),
        enc_cuts in cuts_strategy(),
        dec_cuts in cuts_strategy(),
        trailer in prop::collection::vec(any::<u8>(), 0..20),
        limit in prop::option::of(Just(1000usize)),
    ) {
        let wire = stuff_chunked(&body, &enc_cuts);
        prop_assert_eq!(&wire, &reference_stuff(&body));
        let stream = [&wire[..], &trailer[..]].concat();
        let mut dec = DotUnstuffer::with_line_limit(limit);
        let (got, done, used) = unstuff_chunked(&mut dec, &stream, &dec_cuts).unwrap();
        prop_assert!(done);
        prop_assert_eq!(got, expected_body(&body));
        prop_assert_eq!(used, wire.len());
    }

    /// Byte-by-byte feeding, on both sides.
    #[test]
    fn byte_by_byte_round_trip(body in body_strategy()) {
        let every: Vec<usize> = (0..=body.len() + 8).collect();
        let wire = stuff_chunked(&body, &every);
        prop_assert_eq!(&wire, &reference_stuff(&body));
        let every: Vec<usize> = (0..=wire.len()).collect();
        let (got, done, used) =
            unstuff_chunked(&mut DotUnstuffer::new(), &wire, &every).unwrap();
        prop_assert!(done);
        prop_assert_eq!(got, expected_body(&body));
        prop_assert_eq!(used, wire.len());
    }

    /// Any input decodes to the same result whatever the chunking.
    #[test]
    fn unstuffing_is_chunking_independent(
        wire in body_strategy(),
        cuts in cuts_strategy(),
    ) {
        let whole = unstuff_chunked(&mut DotUnstuffer::new(), &wire, &[]).unwrap();
        let chunked = unstuff_chunked(&mut DotUnstuffer::new(), &wire, &cuts).unwrap();
        prop_assert_eq!(whole, chunked);
    }

    /// The line limit fails exactly when some body line (CRLF included) is longer than it.
    #[test]
    fn line_limit_is_exact(
        body in prop::collection::vec(
            prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a')], 0..120),
        limit in 1usize..30,
        cuts in cuts_strategy(),
    ) {
        let expected = expected_body(&body);
        let longest = {
            let mut longest = 0;
            let mut start = 0;
            for (i, w) in expected.windows(2).enumerate() {
                if w == b"\r\n" {
                    longest = longest.max(i + 2 - start);
                    start = i + 2;
                }
            }
            longest.max(expected.len() - start)
        };
        let wire = stuff_chunked(&body, &[]);
        let mut dec = DotUnstuffer::with_line_limit(Some(limit));
        let r = unstuff_chunked(&mut dec, &wire, &cuts);
        if longest > limit {
            prop_assert_eq!(r, Err(BodyLineTooLong { limit }));
        } else {
            let (got, done, _) = r.unwrap();
            prop_assert!(done);
            prop_assert_eq!(got, expected);
        }
    }
}
