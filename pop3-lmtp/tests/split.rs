//! Chunking independence: the server machine gives the same output, and the store the same
//! messages, whatever the split of the same input (pipelined sessions cut at every byte
//! boundary, and at random points).

mod common;

use common::{config, session_chunks};
use proptest::prelude::*;

/// A pipelined session touching every path: commands, errors, data with dots, bare LF and
/// CR, 8-bit octets, an over-long line, mixed recipients, and QUIT.
const SESSION: &[u8] = b"LHLO c.test\r\nNOOP\r\nMAIL FROM:<s@x.test> BODY=8BITMIME\r\n\
RCPT TO:<a@x.test>\r\nRCPT TO:<unknown@x.test>\r\nRCPT TO:<dtemp@x.test>\r\nDATA\r\n\
Subject: t\r\n\r\n.\r\r\n..\r\n...x\r\nbare\nlf\r\ncr\rin\xff\x80\r\n.\r\n\
MAIL FROM:<>\r\nRCPT TO:<b@x.test>\r\nBOGUS\r\nDATA\r\n\r\n.\r\n\
NOOP xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n\
MAIL FROM:<> SIZE=999999\r\nMAIL FROM:<>\r\nRCPT TO:<c@x.test>\r\nDATA\r\n\
0123456789012345678901234567890123456789012345678901234567890123456789\r\n\
0123456789012345678901234567890123456789012345678901234567890123456789\r\n.\r\n\
VRFY x\r\nRSET\r\nQUIT\r\nNOOP\r\n";

fn small_config() -> pop3_lmtp::server::Config {
    let mut c = config();
    c.max_line = 64;
    c.max_message_size = 100;
    c
}

/// Messages the store received: (sender, recipients, body).
type Delivered = Vec<(pop3_lmtp::Path, Vec<pop3_lmtp::Mailbox>, Vec<u8>)>;

fn whole() -> (Vec<u8>, Delivered) {
    let (out, store) = session_chunks(small_config(), &[SESSION], false);
    (out, store.delivered)
}

#[test]
fn whole_session_transcript() {
    let (out, delivered) = whole();
    let text = String::from_utf8_lossy(&out);
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    assert_eq!(
        lines[6..],
        [
            "250 2.0.0 OK",
            "250 2.1.0 Sender OK",
            "250 2.1.5 Recipient OK",
            "550 5.1.1 <unknown@x.test> User unknown",
            "250 2.1.5 Recipient OK",
            "354 Start mail input; end with <CRLF>.<CRLF>",
            "250 2.0.0 <a@x.test> Delivered",
            "451 4.3.0 <dtemp@x.test> Temporary failure",
            "250 2.1.0 Sender OK",
            "250 2.1.5 Recipient OK",
            "500 5.5.1 Command unrecognized",
            "354 Start mail input; end with <CRLF>.<CRLF>",
            "250 2.0.0 <b@x.test> Delivered",
            "500 5.5.2 Line too long",
            "552 5.3.4 Message size exceeds fixed maximum message size",
            "250 2.1.0 Sender OK",
            "250 2.1.5 Recipient OK",
            "354 Start mail input; end with <CRLF>.<CRLF>",
            "552 5.3.4 <c@x.test> Message size exceeds fixed maximum message size",
            "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery",
            "250 2.0.0 OK",
            "221 2.0.0 mx.test closing connection",
        ]
    );
    assert_eq!(delivered.len(), 2);
    assert_eq!(
        delivered[0].2,
        b"Subject: t\r\n\r\n\r\r\n.\r\n..x\r\nbare\r\nlf\r\ncr\rin\xff\x80\r\n"
    );
    assert_eq!(delivered[1].2, b"\r\n");
}

#[test]
fn every_two_way_split_gives_the_same_output() {
    let want = whole();
    for i in 0..=SESSION.len() {
        let (a, b) = SESSION.split_at(i);
        let (out, store) = session_chunks(small_config(), &[a, b], false);
        assert_eq!((out, store.delivered), want, "split at {i}");
    }
}

#[test]
fn byte_at_a_time_gives_the_same_output() {
    let chunks: Vec<&[u8]> = SESSION.chunks(1).collect();
    let (out, store) = session_chunks(small_config(), &chunks, false);
    assert_eq!((out, store.delivered), whole());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_split_gives_the_same_output(mut cuts in proptest::collection::vec(0..=SESSION.len(), 0..40)) {
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut prev = 0;
        for c in cuts {
            chunks.push(&SESSION[prev..c]);
            prev = c;
        }
        chunks.push(&SESSION[prev..]);
        let (out, store) = session_chunks(small_config(), &chunks, false);
        prop_assert_eq!((out, store.delivered), whole());
    }

    /// Arbitrary bytes (biased towards protocol octets) split two ways give the same output.
    #[test]
    fn arbitrary_input_is_split_independent(
        input in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(b' '), any::<u8>(),
                        Just(b'D'), Just(b'A'), Just(b'T')],
            0..300),
        cut in any::<proptest::sample::Index>(),
    ) {
        let mut prefixed = SESSION[..SESSION.len() - 30].to_vec();
        prefixed.extend_from_slice(&input);
        let i = cut.index(prefixed.len() + 1);
        let (a, b) = prefixed.split_at(i);
        let one = session_chunks(small_config(), &[&prefixed], false);
        let two = session_chunks(small_config(), &[a, b], false);
        prop_assert_eq!((one.0, one.1.delivered), (two.0, two.1.delivered));
    }
}
