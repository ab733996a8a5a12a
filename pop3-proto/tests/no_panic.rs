//! No input makes a decoder panic, and whatever a decoder accepts re-encodes to octets that
//! decode to the same value.

mod common;

use pop3_proto::body::DotUnstuffer;
use pop3_proto::decode::{self, ListingLine};
use pop3_proto::framing::{Framed, LineFramer};
use pop3_proto::{DecodeError, Encode};
use proptest::prelude::*;

/// Decode, encode, decode again: the value must survive.
fn stable<T: PartialEq + std::fmt::Debug + Encode>(
    input: &[u8],
    f: impl for<'a> Fn(&'a [u8]) -> nom::IResult<&'a [u8], T, DecodeError>,
) -> Result<(), TestCaseError> {
    if let Ok((rest, v)) = f(input) {
        prop_assert!(rest.len() < input.len());
        prop_assert!(input.ends_with(rest));
        let wire = v.to_bytes();
        let again = f(&wire);
        prop_assert_eq!(
            again,
            Ok((&b""[..], v)),
            "input {:?} wire {:?}",
            input,
            wire
        );
    }
    Ok(())
}

/// Content parsers (no line end) for lines that hold no encodable value of their own.
fn content_parsers(content: &[u8]) {
    let _ = decode::parse_command(content);
    let _ = decode::parse_status_line(content);
    let _ = decode::parse_greeting(content).map(|g| g.timestamp());
    let _ = decode::parse_continuation(content);
    let _ = decode::parse_sasl_response(content);
    let _ = decode::parse_stat(content);
    let _ = decode::parse_scan_listing(content);
    let _ = decode::parse_uid_listing(content);
    let _ = decode::parse_capability(content);
    let _ = decode::parse_lang_item(content);
    let _ = decode::classify_listing_line(content);
    let _ = decode::is_continuation(content);
}

/// Protocol-looking bytes: keywords, digits, spaces, dots, brackets and line ends, so that
/// inputs reach deep into the parsers, mixed with arbitrary octets.
fn pop3ish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            &b"USER "[..],
            b"PASS ",
            b"APOP ",
            b"LIST ",
            b"UIDL ",
            b"TOP ",
            b"RETR ",
            b"AUTH ",
            b"LANG ",
            b"+OK ",
            b"-ERR ",
            b"+ ",
            b"[IN-USE] ",
            b"[SYS/TEMP]",
            b"SASL ",
            b"LOGIN-DELAY ",
            b"EXPIRE ",
            b"NEVER",
            b" USER",
            b"UTF8",
            b"IMPLEMENTATION ",
            b"<1896.697@x.y>",
            b"=",
            b"*",
            b"dGVzdA==",
            b".",
            b"..",
            b"\r\n",
            b"\n",
            b"\r",
            b" ",
            b"  ",
            b"0",
            b"1",
            b"4294967296",
            b"18446744073709551616",
            b"\0",
            b"\xff",
        ])
        .prop_map(|s| s.to_vec()),
        prop::collection::vec(any::<u8>(), 1..4),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

fn any_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..128), pop3ish()]
}

proptest! {
    #![proptest_config(common::config(1000))]

    #[test]
    fn line_decoders_never_panic_and_are_stable(input in any_input()) {
        stable(&input, decode::command)?;
        stable(&input, decode::status_line)?;
        stable(&input, decode::greeting)?;
        stable(&input, decode::continuation)?;
        stable(&input, decode::sasl_response)?;
        stable(&input, decode::scan_listing)?;
        stable(&input, decode::uid_listing)?;
        let _ = decode::lang_item(&input);
        let _ = decode::capability(&input);
        let _ = decode::line(&input);
        if let Ok((rest, l)) = decode::listing_line(&input) {
            prop_assert!(rest.len() < input.len());
            if let ListingLine::Data(d) = l {
                content_parsers(d);
                // A listing item that parses survives a trip through its encoder.
                if let Ok(c) = decode::parse_capability(d) {
                    let wire = c.to_bytes();
                    let (_, back) = decode::listing_line(&wire).unwrap();
                    let ListingLine::Data(back) = back else { panic!("terminator") };
                    prop_assert_eq!(decode::parse_capability(back), Ok(c));
                }
                if let Ok(item) = decode::parse_lang_item(d) {
                    let wire = item.to_bytes();
                    let (_, back) = decode::listing_line(&wire).unwrap();
                    let ListingLine::Data(back) = back else { panic!("terminator") };
                    prop_assert_eq!(decode::parse_lang_item(back), Ok(item));
                }
            }
        }
        content_parsers(&input);
    }

    #[test]
    fn line_framer_never_panics_with_small_limits(
        input in any_input(),
        limit in 0usize..12,
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        at.extend([0, input.len()]);
        at.sort_unstable();
        at.dedup();
        let mut f = LineFramer::new(limit);
        let mut total = 0u64;
        for w in at.windows(2) {
            let mut chunk = &input[w[0]..w[1]];
            loop {
                let (used, found) = f.next_line(chunk);
                chunk = &chunk[used..];
                let more = match found {
                    Framed::Line(l) => {
                        total += l.len() as u64;
                        true
                    }
                    Framed::TooLong { len } => {
                        total += len;
                        true
                    }
                    Framed::NeedMore => false,
                };
                prop_assert!(f.buffered() <= limit.max(1));
                if !more {
                    break;
                }
            }
        }
        // Every octet up to the last LF was accounted for, once.
        let framed = input.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        prop_assert_eq!(total, framed as u64);
    }

    #[test]
    fn dot_unstuffer_never_panics(
        input in any_input(),
        limit in prop::option::of(0usize..16),
        step in 1usize..9,
    ) {
        let mut dec = DotUnstuffer::with_line_limit(limit);
        let mut out = Vec::new();
        for chunk in input.chunks(step) {
            match dec.decode_into(chunk, &mut out) {
                Ok((used, done)) => {
                    prop_assert!(used <= chunk.len());
                    if done { break; }
                    prop_assert_eq!(used, chunk.len());
                }
                Err(e) => {
                    prop_assert_eq!(Some(e.limit), limit);
                    break;
                }
            }
        }
        // Unstuffing never adds octets.
        prop_assert!(out.len() <= input.len());
    }
}
