//! Replays the fuzz corpora on stable Rust: every file under `fuzz/corpus/<target>/` (seeds
//! and minimised interesting inputs) and `fuzz/regressions/<target>/` (every crash ever
//! found) goes through the same logic as the libFuzzer target, so `cargo test --all-features`
//! keeps each one a regression test without nightly or cargo-fuzz.

#![cfg(feature = "arbitrary")]

use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/logic.rs"]
mod logic;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files directly under `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// Runs every corpus and regression file of `target`; returns how many there were.
fn replay(target: &str) -> usize {
    let mut n = 0;
    for sub in ["corpus", "regressions"] {
        for path in files(&fuzz_dir().join(sub).join(target)) {
            let data = std::fs::read(&path).expect("readable corpus file");
            let r = std::panic::catch_unwind(|| logic::run(target, &data));
            assert!(r.is_ok(), "{target}: input {} fails", path.display());
            n += 1;
        }
    }
    n
}

#[test]
fn targets_are_the_fuzz_crates_binaries() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz manifest");
    for t in logic::TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{t}\"")),
            "{t} is not a fuzz target"
        );
    }
}

#[test]
fn command_decode_corpus() {
    // The committed seeds alone are dozens of files: an empty walk means a broken path.
    assert!(replay("command_decode") >= 10);
}

#[test]
fn response_decode_corpus() {
    assert!(replay("response_decode") >= 10);
}

#[test]
fn body_roundtrip_corpus() {
    assert!(replay("body_roundtrip") >= 4);
}

#[test]
fn value_roundtrip_corpus() {
    assert!(replay("value_roundtrip") >= 10);
}

/// RFC examples and degenerate inputs (empty, lone CR or LF, NUL, a terminator) through
/// every target, independent of what the corpus directories hold.
#[test]
fn logic_accepts_rfc_examples_and_survives_garbage() {
    logic::command_decode(b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n");
    logic::response_decode(b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n");
    logic::body_roundtrip(b"\x00\x00\x00\x00.\r\n..\r\nx");
    for garbage in [
        &b""[..],
        b"\r",
        b"\n",
        b"\0\0\0",
        b"\xff\xfe\r\n.\r\n",
        b"+OK [\r\n",
    ] {
        for t in logic::TARGETS {
            logic::run(t, garbage);
        }
    }
}

#[test]
#[should_panic(expected = "unknown fuzz target")]
fn unknown_target_is_refused() {
    logic::run("no_such_target", b"");
}

#[test]
fn client_session_corpus() {
    assert!(replay("client_session") >= 4);
}

#[test]
fn server_session_corpus() {
    assert!(replay("server_session") >= 4);
}
