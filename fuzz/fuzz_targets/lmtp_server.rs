//! Fuzz target `lmtp_server`: see `lmtp_logic::lmtp_server` in fuzz/src/lmtp_logic.rs.
#![no_main]

#[allow(dead_code)]
#[path = "../src/lmtp_logic.rs"]
mod lmtp_logic;

libfuzzer_sys::fuzz_target!(|data: &[u8]| lmtp_logic::lmtp_server(data));
