//! Fuzz target `body_roundtrip`: see `logic::body_roundtrip` in fuzz/src/logic.rs.
#![no_main]

#[allow(dead_code)]
#[path = "../src/logic.rs"]
mod logic;

libfuzzer_sys::fuzz_target!(|data: &[u8]| logic::body_roundtrip(data));
