//! Fuzz target `value_roundtrip`: see `logic::value_roundtrip` in fuzz/src/logic.rs.
#![no_main]

#[allow(dead_code)]
#[path = "../src/logic.rs"]
mod logic;

libfuzzer_sys::fuzz_target!(|data: &[u8]| logic::value_roundtrip(data));
