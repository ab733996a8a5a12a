//! The README's `pop3 fetch` configuration examples are read by `pop3 fetch` as written.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

/// The ```toml blocks of the README that configure `pop3 fetch` accounts, unindented.
fn fetch_examples() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for line in readme.lines() {
        let indent = line.len() - line.trim_start().len();
        match &mut current {
            None if line.trim_start() == "```toml" => current = Some((indent, String::new())),
            Some((_, text)) if line.trim_start() == "```" => {
                blocks.push(std::mem::take(text));
                current = None;
            }
            Some((at, text)) => {
                text.push_str(line.get(*at..).unwrap_or(""));
                text.push('\n');
            }
            None => {}
        }
    }
    blocks
        .into_iter()
        .filter(|b| b.contains("[accounts."))
        .collect()
}

#[test]
fn the_readme_fetch_examples_are_valid_configurations() {
    let examples = fetch_examples();
    assert!(examples.len() >= 2, "the README lost its examples");
    for example in examples {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fetch.toml");
        std::fs::write(&path, &example).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_pop3"))
            .args(["fetch", "--print-config", "--config"])
            .arg(&path)
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{example}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout);
        for name in example
            .lines()
            .filter_map(|l| l.strip_prefix("[accounts.")?.strip_suffix(']'))
        {
            assert!(printed.contains(name), "{name} missing from:\n{printed}");
        }
    }
}
