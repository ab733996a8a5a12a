//! The record of a target that keeps no mail itself (an MDA): the keys it accepted, one
//! `D <key>` line each, as the Maildir record of `sink` (so the two read alike).
//!
//! A line is appended and synced when the target accepted the message durably, before the
//! fetch sends its `DELE`: a run killed afterwards finds the key and does not deliver the
//! message again. The file is locked for the run (a second fetch of the account into the
//! same target fails at once) and at the end rewritten atomically with the keys still on the
//! server. A last line without its line end was cut by a crash and is not trusted.
//!
//! A target that cannot tell whether a message it handed over was kept (an IMAP APPEND whose
//! server goes on storing the message after the client died) also writes a `P <key>
//! <identity>` line, synced, *before* it hands the message over: the key is "pending" until a
//! `D <key>` line follows. A run that finds a key pending asks the target whether the message
//! is there before delivering it again ([`Record::pending`]). Such a target may also
//! [`note`](Record::note) a key delivered without syncing at once: the pending line already
//! covers a crash, and the `D` line goes out with the next write ([`Record::set_pending`],
//! [`Record::flush`]). The MDA and the forwarders write only `D` lines, synced each time.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// A locked record file and the keys in it.
#[derive(Debug)]
pub(crate) struct Record {
    path: PathBuf,
    file: File,
    done: HashSet<String>,
    /// Keys handed over but not known to be kept, with the identity written for them.
    pending: HashMap<String, String>,
    /// `D` lines noted but not yet written ([`Record::note`]).
    unwritten: String,
}

impl Record {
    /// Opens (creating it and its directory) and locks the record at `path`.
    pub(crate) fn open(path: &Path) -> Result<Record, String> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let (file, complete) = open_locked(path, "target")?;
        let mut done = HashSet::new();
        let mut pending = HashMap::new();
        for line in complete.lines() {
            if let Some(k) = line
                .strip_prefix("D ")
                .map(str::trim)
                .filter(|k| !k.is_empty())
            {
                done.insert(k.to_string());
            } else if let Some(rest) = line.strip_prefix("P ") {
                let (k, identity) = rest.trim().split_once(' ').unwrap_or((rest.trim(), ""));
                if !k.is_empty() {
                    pending.insert(k.to_string(), identity.to_string());
                }
            }
        }
        // Delivered wins over pending, whatever the order of the lines.
        pending.retain(|k, _| !done.contains(k));
        Ok(Record {
            path: path.to_path_buf(),
            file,
            done,
            pending,
            unwritten: String::new(),
        })
    }

    /// Whether `key` is recorded as delivered.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.done.contains(key)
    }

    /// The identity written with `key` if it is pending: handed over by an earlier run (or
    /// earlier in this one) that did not learn whether the target kept it.
    pub(crate) fn pending(&self, key: &str) -> Option<&str> {
        self.pending.get(key).map(String::as_str)
    }

    /// Records `keys` and syncs the file.
    pub(crate) fn add(&mut self, keys: &[String]) -> std::io::Result<()> {
        for k in keys {
            self.note(k);
        }
        self.flush()
    }

    /// Records `key` as delivered and syncs the file: for a target that took the message
    /// durably (an MDA's exit 0, a `250`), before the fetch may send the `DELE`.
    pub(crate) fn accept(&mut self, key: &str) -> std::io::Result<()> {
        self.note(key);
        self.flush()
    }

    /// Records `key` as delivered (no longer pending), in memory at once and in the file
    /// with the next [`set_pending`](Record::set_pending), [`flush`](Record::flush) or
    /// [`add`](Record::add). For keys whose pending line is on disk: a crash before the
    /// write leaves them pending, not forgotten.
    pub(crate) fn note(&mut self, key: &str) {
        self.pending.remove(key);
        if self.done.insert(key.to_string()) {
            self.unwritten.push_str(&format!("D {key}\n"));
        }
    }

    /// Records `key` as pending with `identity` (what identifies the message at the target,
    /// for people reading the file: its line breaks and spaces become `_`), together with
    /// the keys noted so far, and syncs the file.
    pub(crate) fn set_pending(&mut self, key: &str, identity: &str) -> std::io::Result<()> {
        let identity: String = identity
            .chars()
            .map(|c| {
                if c.is_whitespace() || c.is_control() {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        self.unwritten.push_str(&format!("P {key} {identity}\n"));
        self.flush()?;
        self.pending.insert(key.to_string(), identity);
        Ok(())
    }

    /// Writes and syncs what was [`note`](Record::note)d.
    pub(crate) fn flush(&mut self) -> std::io::Result<()> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        self.file.write_all(self.unwritten.as_bytes())?;
        self.unwritten.clear();
        self.file.sync_data()
    }

    /// Rewrites the record (atomically) with only the keys in `live`, delivered and pending.
    pub(crate) fn compact(&mut self, live: &HashSet<String>) -> std::io::Result<()> {
        self.done.retain(|k| live.contains(k));
        self.pending.retain(|k, _| live.contains(k));
        let mut keys: Vec<&String> = self.done.iter().collect();
        keys.sort();
        let mut data: String = keys.iter().map(|k| format!("D {k}\n")).collect();
        let mut pending: Vec<(&String, &String)> = self.pending.iter().collect();
        pending.sort();
        for (k, identity) in pending {
            data.push_str(&format!("P {k} {identity}\n"));
        }
        replace_file(&self.path, data.as_bytes())?;
        // The new file holds everything noted. (It is not locked, but the run ends here.)
        self.unwritten.clear();
        Ok(())
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        // What was noted and not yet written: best effort (it is pending on disk anyway).
        let _ = self.flush();
        // Released explicitly: a child being forked elsewhere in the process (an MDA of
        // another account) shares the descriptor until it execs, and would hold the lock that
        // long after the close.
        let _ = self.file.unlock();
    }
}

/// The record-keeping methods of [`Target`](super::Target) for a target that records each
/// message it delivers, synced, as it is accepted ([`Record::accept`]), in its field `record`
/// (the MDA and the forwarders): `has`, `sync` (nothing left to do), `compact` and `import`.
macro_rules! synced_record_methods {
    () => {
        fn has(&self, key: &str) -> bool {
            self.record.has(key)
        }

        fn sync(&mut self) -> std::io::Result<()> {
            // Each acceptance was recorded and synced as it came.
            Ok(())
        }

        fn compact(&mut self, live: &std::collections::HashSet<String>) -> std::io::Result<()> {
            self.record.compact(live)
        }

        fn import(&mut self, keys: &[String]) -> std::io::Result<()> {
            self.record.add(keys)
        }
    };
}
pub(crate) use synced_record_methods;

/// Opens (creating it) and locks the record file at `path`, for a fetch into a `what`
/// ("target", "destination": the word the error names), and reads its complete lines. A last
/// line without its line end was cut short (a crash inside the write): it is not trusted, and
/// it is ended in the file so that the next line does not run into it.
pub(crate) fn open_locked(path: &Path, what: &str) -> Result<(File, String), String> {
    let mut file = open_append(path, "record")?;
    if !try_lock(&file, path)? {
        return Err(format!(
            "another pop3 fetch of this account into this {what} is running ({} is locked)",
            path.display()
        ));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| format!("cannot read the record {}: {e}", path.display()))?;
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    if complete != text.len() {
        file.write_all(b"\n")
            .and_then(|()| file.sync_data())
            .map_err(|e| format!("cannot write the record {}: {e}", path.display()))?;
        text.truncate(complete);
    }
    Ok((file, text))
}

/// Opens `path` to read and to append, creating it; `what` it is (`record`, `mbox`) names it
/// in the error.
pub(crate) fn open_append(path: &Path, what: &str) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| format!("cannot open the {what} {}: {e}", path.display()))
}

/// Takes the exclusive lock on `file` (at `path`) if it is free: `false` if another holds it.
pub(crate) fn try_lock(file: &File, path: &Path) -> Result<bool, String> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// Replaces `path` atomically with `data`: a temporary file beside it, synced, renamed over
/// it, and the directory synced.
pub(crate) fn replace_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    File::open(parent.unwrap_or(Path::new(".")))?.sync_all()
}

/// A host or user name made safe for a file name.
pub(crate) fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_reopening_and_compaction_keeps_the_live_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/record");
        {
            let mut r = Record::open(&path).unwrap();
            r.add(&["a".into(), "b".into()]).unwrap();
            assert!(Record::open(&path).unwrap_err().contains("is running"));
        }
        // A cut last line is not trusted.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"D c").unwrap();
        drop(f);
        let mut r = Record::open(&path).unwrap();
        assert!(r.has("a") && r.has("b") && !r.has("c"));
        r.compact(&HashSet::from(["b".to_string()])).unwrap();
        drop(r);
        assert_eq!(fs::read_to_string(&path).unwrap(), "D b\n");
    }

    #[test]
    fn pending_keys_until_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record");
        let read = || fs::read_to_string(&path).unwrap();
        {
            let mut r = Record::open(&path).unwrap();
            r.set_pending("a", "<a@x>").unwrap();
            assert_eq!(read(), "P a <a@x>\n", "synced before the hand-over");
            assert_eq!(r.pending("a"), Some("<a@x>"));
            assert!(!r.has("a"));
            // Noted: delivered at once in memory, on disk with the next pending line.
            r.note("a");
            assert!(r.has("a") && r.pending("a").is_none());
            assert_eq!(read(), "P a <a@x>\n");
            r.set_pending("b", "size=12;date=Mon, 2\nFeb").unwrap();
            assert_eq!(read(), "P a <a@x>\nD a\nP b size=12;date=Mon,_2_Feb\n");
            r.set_pending("c", "").unwrap();
            r.note("c");
            // Dropped (as a run that ends in an error): what was noted is written.
        }
        let mut r = Record::open(&path).unwrap();
        assert!(r.has("a") && r.has("c") && !r.has("b"));
        assert_eq!(r.pending("a"), None, "delivered wins");
        assert_eq!(r.pending("b"), Some("size=12;date=Mon,_2_Feb"));
        // A crash before the D line: the key is still pending, not forgotten.
        r.set_pending("d", "<d@x>").unwrap();
        r.note("d");
        let crashed = dir.path().join("crashed");
        fs::copy(&path, &crashed).unwrap();
        assert_eq!(Record::open(&crashed).unwrap().pending("d"), Some("<d@x>"));
        r.flush().unwrap();
        assert!(read().ends_with("P d <d@x>\nD d\n"));
        // Compaction keeps the live keys, delivered and pending.
        r.compact(&HashSet::from(["a".to_string(), "b".to_string()]))
            .unwrap();
        drop(r);
        assert_eq!(read(), "D a\nP b size=12;date=Mon,_2_Feb\n");
    }
}
