//! Replays the fuzz corpora on stable Rust: every file under `fuzz/corpus/<target>/` (seeds
//! and minimised interesting inputs) and `fuzz/regressions/<target>/` (every crash ever
//! found) goes through the same logic as the libFuzzer target, so `cargo test --all-features`
//! keeps each one a regression test without nightly or cargo-fuzz. Both directories of every
//! target must exist (a missing one fails, never skips); a file named `README` in them is
//! documentation, not an input.

#![cfg(feature = "arbitrary")]

use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/logic.rs"]
mod logic;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The directories that hold the inputs of a target, under `fuzz/`.
const INPUT_DIRS: [&str; 2] = ["corpus", "regressions"];

/// Whether `path` is a directory's documentation (`README`, `README.md`...), not an input.
fn is_readme(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == "README" || n.starts_with("README."))
}

/// The input files directly under `dir`, sorted, without its README; panics if `dir` is not
/// a readable directory (a missing directory must fail the test, not empty it).
fn files(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e} (every fuzz target needs it)", dir.display()));
    let mut v: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file() && !is_readme(p))
        .collect();
    v.sort();
    v
}

/// Runs every corpus and regression file of `target`; returns how many there were.
fn replay(target: &str) -> usize {
    let mut n = 0;
    for sub in INPUT_DIRS {
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

/// Targets of other crates, whose inputs their own tests replay
/// (pop3-lmtp/tests/fuzz_corpus.rs).
const OTHER_TARGETS: [&str; 2] = ["lmtp_server", "lmtp_client"];

/// `fuzz/corpus/` and `fuzz/regressions/` hold a directory for every target (each with a
/// tracked file, so that git keeps it), and nothing else.
#[test]
fn every_target_has_its_input_directories() {
    for sub in INPUT_DIRS {
        let dir = fuzz_dir().join(sub);
        assert!(dir.is_dir(), "{} is missing", dir.display());
        for t in logic::TARGETS {
            let d = dir.join(t);
            assert!(d.is_dir(), "{} is missing", d.display());
            let tracked = std::fs::read_dir(&d)
                .expect("readable directory")
                .any(|e| e.expect("readable directory entry").path().is_file());
            assert!(
                tracked,
                "{} holds no file, so git would not keep it",
                d.display()
            );
        }
        for e in std::fs::read_dir(&dir).expect("readable directory") {
            let path = e.expect("readable directory entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            assert!(
                (path.is_dir()
                    && (logic::TARGETS.contains(&name) || OTHER_TARGETS.contains(&name)))
                    || is_readme(&path),
                "{} is not the directory of a fuzz target",
                path.display()
            );
        }
    }
}

/// The README of a regressions directory is skipped; any other file is an input.
#[test]
fn readme_is_not_an_input() {
    assert!(is_readme(Path::new("regressions/body_roundtrip/README")));
    assert!(is_readme(Path::new("README.md")));
    assert!(!is_readme(Path::new("corpus/body_roundtrip/seed-00")));
    assert!(!is_readme(Path::new("crash-README")));
    let dir = fuzz_dir().join("regressions").join("body_roundtrip");
    assert!(dir.join("README").is_file());
    assert!(files(&dir).iter().all(|p| !is_readme(p)));
}

#[test]
#[should_panic(expected = "every fuzz target needs it")]
fn missing_input_directory_fails() {
    files(&fuzz_dir().join("regressions").join("no_such_target"));
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
