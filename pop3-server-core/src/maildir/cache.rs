//! The per-maildir cache of CRLF sizes, so each message file is read for its size only once.
//!
//! File format (`.pop3d-sizes` in the user's maildir), text with one entry per line:
//!
//! ```text
//! pop3d-sizes 1
//! <crlf size> <physical size> <unique name>
//! ```
//!
//! An entry counts only when the file still has its physical size: Maildir messages are
//! never rewritten in place, so unique name and length identify the content. The cache is
//! only a cache: a missing, unreadable or damaged file (or line) is ignored and the sizes are
//! computed again. It is replaced atomically (write a new file, sync it, rename it over the
//! old one), so a crash leaves either the old or the new cache.
//!
//! Sessions that share a maildrop (snapshot mode) may replace it at the same moment. Each
//! writer writes a file of its own (`create_new`, after removing any file under the new name),
//! and every line of a file is right, so the worst outcome is a cache that lacks the other
//! writer's entries, or one read while its last line is being written (a line without its LF
//! is ignored): sizes computed again later, never a wrong size.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use super::name::parse_u64;

/// The cache file, in the user's maildir. A dot-file, so Maildir readers skip it.
pub(crate) const CACHE_FILE: &str = ".pop3d-sizes";
/// The name the new cache is written under before it is renamed over [`CACHE_FILE`].
const CACHE_NEW: &str = ".pop3d-sizes-new";
const HEADER: &[u8] = b"pop3d-sizes 1\n";
/// A cache larger than this is ignored rather than read (about a million entries).
const MAX_CACHE_LEN: u64 = 128 * 1024 * 1024;

/// One cached size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cached {
    pub(crate) physical: u64,
    pub(crate) crlf: u64,
}

/// Unique name → sizes.
pub(crate) type SizeCache = HashMap<Vec<u8>, Cached>;

/// Reads the cache in `dir`; anything unusable reads as empty or is skipped.
pub(crate) fn load(dir: &Path) -> SizeCache {
    let mut cache = SizeCache::new();
    let Ok(file) = File::open(dir.join(CACHE_FILE)) else {
        return cache;
    };
    match file.metadata() {
        Ok(meta) if meta.is_file() && meta.len() <= MAX_CACHE_LEN => {}
        _ => return cache,
    }
    let mut bytes = Vec::new();
    if file.take(MAX_CACHE_LEN).read_to_end(&mut bytes).is_err() || !bytes.starts_with(HEADER) {
        return cache;
    }
    // Only lines ended by LF: a cut-off last line could otherwise read as a shorter number.
    let body = &bytes[HEADER.len()..];
    let complete = match memchr::memrchr(b'\n', body) {
        Some(end) => &body[..end],
        None => return cache,
    };
    for line in complete.split(|&b| b == b'\n') {
        if let Some((unique, sizes)) = parse_line(line) {
            cache.insert(unique.to_vec(), sizes);
        }
    }
    cache
}

fn parse_line(line: &[u8]) -> Option<(&[u8], Cached)> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let crlf = parse_u64(parts.next()?)?;
    let physical = parse_u64(parts.next()?)?;
    let unique = parts.next()?;
    // Each bare LF adds one octet, so anything outside this range is damage.
    if unique.is_empty() || crlf < physical || crlf - physical > physical {
        return None;
    }
    Some((unique, Cached { physical, crlf }))
}

/// Replaces the cache in `dir` with `cache`. Names holding an LF cannot be stored and are
/// left out (their size is computed again next time).
pub(crate) fn store(dir: &Path, cache: &SizeCache) -> io::Result<()> {
    let new_path = dir.join(CACHE_NEW);
    // A leftover from a crash, or something planted there: never write through it.
    match fs::remove_file(&new_path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(&new_path)?;
    let mut out = BufWriter::new(file);
    out.write_all(HEADER)?;
    for (unique, sizes) in cache {
        if unique.contains(&b'\n') {
            continue;
        }
        write!(out, "{} {} ", sizes.crlf, sizes.physical)?;
        out.write_all(unique)?;
        out.write_all(b"\n")?;
    }
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_data()?;
    drop(file);
    fs::rename(&new_path, dir.join(CACHE_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(
            parse_line(b"12 10 1.M2P3.h x"),
            Some((
                &b"1.M2P3.h x"[..],
                Cached {
                    physical: 10,
                    crlf: 12
                }
            ))
        );
        assert_eq!(parse_line(b"9 10 a"), None);
        assert_eq!(parse_line(b"21 10 a"), None);
        assert_eq!(parse_line(b"12 10 "), None);
        assert_eq!(parse_line(b"12 10"), None);
        assert_eq!(parse_line(b"x 10 a"), None);
        assert_eq!(parse_line(b"0 0 a").map(|(_, c)| c.crlf), Some(0));
    }
}
