//! Replays the LMTP fuzz corpora on stable Rust: every file under `fuzz/corpus/lmtp_*/`
//! (seeds: real sessions) and `fuzz/regressions/lmtp_*/` (every crash ever found) goes
//! through the same logic as the libFuzzer target (`fuzz/src/lmtp_logic.rs`), so
//! `cargo test -p pop3-lmtp` keeps each one a regression test without nightly or
//! cargo-fuzz. Both directories of every target must exist (a missing one fails, never
//! skips); a file named `README` in them is documentation, not an input.

use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/lmtp_logic.rs"]
mod lmtp_logic;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn is_readme(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == "README" || n.starts_with("README."))
}

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

fn replay(target: &str) -> usize {
    let mut n = 0;
    for sub in ["corpus", "regressions"] {
        for path in files(&fuzz_dir().join(sub).join(target)) {
            let data = std::fs::read(&path).expect("readable corpus file");
            let r = std::panic::catch_unwind(|| lmtp_logic::run_lmtp(target, &data));
            assert!(r.is_ok(), "{target}: input {} fails", path.display());
            n += 1;
        }
    }
    n
}

#[test]
fn targets_are_the_fuzz_crates_binaries() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz manifest");
    for t in lmtp_logic::LMTP_TARGETS {
        assert!(manifest.contains(&format!("name = \"{t}\"")), "{t}");
        assert!(
            fuzz_dir()
                .join("regressions")
                .join(t)
                .join("README")
                .is_file()
        );
    }
}

#[test]
fn lmtp_server_corpus() {
    assert!(replay("lmtp_server") >= 5);
}

#[test]
fn lmtp_client_corpus() {
    assert!(replay("lmtp_client") >= 5);
}

/// Degenerate inputs through both targets, independent of the corpus directories.
#[test]
fn logic_survives_garbage() {
    for garbage in [
        &b""[..],
        b"\x00",
        b"\xff\xff",
        b"\x00\x00\x00\xff\r\n.\r\n",
        b"\xbf\x00\x00\x20LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b>\r\nDATA\r\n",
    ] {
        for t in lmtp_logic::LMTP_TARGETS {
            lmtp_logic::run_lmtp(t, garbage);
        }
    }
}

#[test]
#[should_panic(expected = "unknown fuzz target")]
fn unknown_target_is_refused() {
    lmtp_logic::run_lmtp("no_such_target", b"");
}
