//! Fuzz target `client_session`: see `logic::client_session` in fuzz/src/logic.rs.
#![no_main]

#[allow(dead_code)]
#[path = "../src/logic.rs"]
mod logic;

libfuzzer_sys::fuzz_target!(|data: &[u8]| logic::client_session(data));
