//! Fuzz target `response_decode`: see `logic::response_decode` in fuzz/src/logic.rs.
#![no_main]

#[allow(dead_code)]
#[path = "../src/logic.rs"]
mod logic;

libfuzzer_sys::fuzz_target!(|data: &[u8]| logic::response_decode(data));
