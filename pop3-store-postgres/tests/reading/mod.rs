//! Reading messages back in the store's tests (`store.rs`, `s3.rs`): a RETR/TOP read to the
//! end in reads of a given size, and the reference it must equal.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufReader, Read};

use pop3_server_core::backend::{Maildrop, MessageReader};
use pop3_server_core::block_on;
use pop3_server_core::maildir::CrlfReader;

/// Reads `reader` to its end, `step` octets at most per read.
pub fn read_all(reader: &mut impl MessageReader, step: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; step];
    loop {
        let n = block_on(reader.read(&mut buf)).expect("read");
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// RETR (`top: None`) or TOP of message `index`, read `step` octets at a time.
pub fn retr(drop: &mut impl Maildrop, index: usize, top: Option<u64>, step: usize) -> Vec<u8> {
    let mut reader = block_on(drop.open_message(index, top)).expect("open message");
    read_all(&mut reader, step)
}

/// What the Maildir store's reader makes of `message` (the reference for CRLF and TOP).
pub fn reference(message: &[u8], top: Option<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    let inner = BufReader::new(message);
    match top {
        None => CrlfReader::new(inner).read_to_end(&mut out),
        Some(n) => CrlfReader::top(inner, n).read_to_end(&mut out),
    }
    .unwrap();
    out
}
