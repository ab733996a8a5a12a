//! Where fetched mail goes, durably and exactly once.
//!
//! Every message is identified by a key: the first 16 octets of SHA-256(host, user, UIDL), in
//! hex. The key makes a rerun after a crash skip what is already stored, however the earlier
//! run ended:
//!
//! - **Maildir**: a message is written to `tmp/`, synced, renamed into `new/` under a name
//!   that carries its key (`….U<key>.host`), and the directory is synced. On start the names in
//!   `new/` and `cur/` are scanned, so a message stored just before a kill is never fetched
//!   again, even if nothing else recorded it.
//! - **mbox** (mboxrd): appended under an exclusive lock. Before appending, the record gets
//!   `P <key> <offset>` (synced); after the append is synced, `D <key>`. A `P` without its `D`
//!   on start means the append may be partial: the mbox is truncated back to the offset and the
//!   message fetched again.
//!
//! The record (`.pop3-uidl-<host>-<user>` beside the destination) also remembers, for
//! `--keep`, what was fetched before; at the end it is rewritten (temporary file, sync, rename,
//! directory sync) with only the keys still on the server.
//!
//! Deletions are sent only for messages whose storage is durable, and take effect only with
//! the QUIT after all of them: a kill at any point leaves every message either on the server,
//! or stored (and skipped next time), or both — never neither, never twice.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// The dedup key of a message.
pub(crate) fn key(host: &str, user: &str, uidl: &str) -> String {
    let mut h = Sha256::new();
    for part in [host, user, uidl] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` atomically with `data`.
fn replace_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

enum Kind {
    Maildir {
        dir: PathBuf,
        current: Option<(BufWriter<File>, PathBuf, String)>,
    },
    Mbox {
        file: File,
        /// The message being appended, and where it began.
        out: Option<(MboxWriter, u64)>,
    },
}

/// A destination with its record.
pub(crate) struct Sink {
    kind: Kind,
    record_path: PathBuf,
    record: File,
    /// Keys stored (durably) in this or an earlier run.
    done: HashSet<String>,
    hostname: String,
}

impl Sink {
    /// Opens (creating) a Maildir.
    pub(crate) fn maildir(dir: &Path, host: &str, user: &str) -> Result<Sink, String> {
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(dir.join(sub))
                .map_err(|e| format!("cannot create the Maildir {}: {e}", dir.display()))?;
        }
        // A fetch killed while writing leaves its message in tmp/, never in new/: it was not
        // stored, so it is fetched again; the partial file is ours (our name) and goes.
        if let Ok(entries) = fs::read_dir(dir.join("tmp")) {
            for e in entries.flatten() {
                if maildir_key(&e.file_name().to_string_lossy()).is_some() {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        let record_path = dir.join(record_name(host, user));
        let (record, mut done) = open_record(&record_path, None)?;
        for sub in ["new", "cur"] {
            let entries = fs::read_dir(dir.join(sub))
                .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(k) = maildir_key(&name) {
                    done.insert(k.to_string());
                }
            }
        }
        Ok(Sink {
            kind: Kind::Maildir {
                dir: dir.to_path_buf(),
                current: None,
            },
            record_path,
            record,
            done,
            hostname: local_hostname(),
        })
    }

    /// Opens (creating) an mbox, locked for this process until the sink is dropped.
    pub(crate) fn mbox(path: &Path, host: &str, user: &str) -> Result<Sink, String> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| format!("cannot open the mbox {}: {e}", path.display()))?;
        file.try_lock()
            .map_err(|_| format!("the mbox {} is locked by another program", path.display()))?;
        let name = format!(
            "{}.{}",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            record_name(host, user)
        );
        let record_path = path.with_file_name(name);
        let (record, done) = open_record(&record_path, Some(&file))?;
        Ok(Sink {
            kind: Kind::Mbox { file, out: None },
            record_path,
            record,
            done,
            hostname: local_hostname(),
        })
    }

    /// Whether the message with this key is already stored.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.done.contains(key)
    }

    /// Starts storing a message.
    pub(crate) fn begin(&mut self, key: &str) -> std::io::Result<()> {
        match &mut self.kind {
            Kind::Maildir { dir, current } => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let name = format!(
                    "{}.M{}P{}U{key}.{}",
                    now.as_secs(),
                    now.subsec_micros(),
                    std::process::id(),
                    self.hostname
                );
                let path = dir.join("tmp").join(&name);
                *current = Some((BufWriter::new(File::create(&path)?), path, name));
            }
            Kind::Mbox { file, out } => {
                let offset = file.seek(SeekFrom::End(0))?;
                writeln!(self.record, "P {key} {offset}")?;
                self.record.sync_data()?;
                let mut w = MboxWriter::new();
                w.start(file)?;
                *out = Some((w, offset));
            }
        }
        Ok(())
    }

    /// Message octets (CRLF line ends, as POP3 delivers them).
    pub(crate) fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match &mut self.kind {
            Kind::Maildir {
                current: Some((w, _, _)),
                ..
            } => w.write_all(data),
            Kind::Mbox {
                file,
                out: Some((w, _)),
            } => w.write(file, data),
            _ => Err(std::io::Error::other("no message started")),
        }
    }

    /// Makes the message durable and records it.
    pub(crate) fn finish(&mut self, key: &str) -> std::io::Result<()> {
        match &mut self.kind {
            Kind::Maildir { dir, current } => {
                let Some((w, tmp, name)) = current.take() else {
                    return Err(std::io::Error::other("no message started"));
                };
                let f = w.into_inner().map_err(|e| e.into_error())?;
                f.sync_all()?;
                fs::rename(&tmp, dir.join("new").join(&name))?;
                sync_dir(&dir.join("new"))?;
                writeln!(self.record, "D {key}")?;
            }
            Kind::Mbox { file, out } => {
                if let Some((mut w, _)) = out.take() {
                    w.end(file)?;
                }
                file.sync_data()?;
                writeln!(self.record, "D {key}")?;
                self.record.sync_data()?;
            }
        }
        self.done.insert(key.to_string());
        Ok(())
    }

    /// Drops a message that could not be completed.
    pub(crate) fn abort(&mut self) {
        match &mut self.kind {
            Kind::Maildir { current, .. } => {
                if let Some((_, tmp, _)) = current.take() {
                    let _ = fs::remove_file(tmp);
                }
            }
            // The `P` entry without its `D` makes the next run cut the mbox back; do it now.
            Kind::Mbox { file, out } => {
                if let Some((_, offset)) = out.take() {
                    let _ = file.set_len(offset);
                }
            }
        }
    }

    /// Rewrites the record with the stored keys still on the server (`live`).
    pub(crate) fn compact(&mut self, live: &HashSet<String>) -> std::io::Result<()> {
        let mut keys: Vec<&String> = self.done.iter().filter(|k| live.contains(*k)).collect();
        keys.sort();
        let data: String = keys.iter().map(|k| format!("D {k}\n")).collect();
        replace_file(&self.record_path, data.as_bytes())
    }
}

/// The key in a Maildir name written by this fetcher (`….P<pid>U<key>.host`), if any.
fn maildir_key(name: &str) -> Option<&str> {
    name.split('.')
        .find_map(|part| part.split_once('U').map(|(_, k)| k))
        .filter(|k| k.len() == 32 && k.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn record_name(host: &str, user: &str) -> String {
    let safe = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
    };
    format!(".pop3-uidl-{}-{}", safe(host), safe(user))
}

fn local_hostname() -> String {
    let h = fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "localhost".into());
    // Maildir names use '/' and ':' specially; keep the host part plain.
    h.trim()
        .chars()
        .map(|c| {
            if c == '/' || c == ':' || c == '.' {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// Reads the record: keys with `D` are done. For an mbox, a `P` without `D` is an append that
/// may be partial: the mbox is cut back to where it began.
fn open_record(path: &Path, mbox: Option<&File>) -> Result<(File, HashSet<String>), String> {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let mut done = HashSet::new();
    let mut pending: Option<(String, u64)> = None;
    for line in text.lines() {
        let mut parts = line.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("D"), Some(k), _) => {
                if pending.as_ref().is_some_and(|(p, _)| p == k) {
                    pending = None;
                }
                done.insert(k.to_string());
            }
            (Some("P"), Some(k), Some(off)) => {
                pending = off.parse().ok().map(|o| (k.to_string(), o))
            }
            _ => {}
        }
    }
    if let (Some(file), Some((_, offset))) = (mbox, pending)
        && file.metadata().map(|m| m.len()).unwrap_or(0) > offset
    {
        file.set_len(offset)
            .map_err(|e| format!("cannot cut a partial message from the mbox: {e}"))?;
        file.sync_all().map_err(|e| e.to_string())?;
    }
    let record = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot write the record {}: {e}", path.display()))?;
    Ok((record, done))
}

/// Writes one message as mboxrd: a `From ` separator, LF line ends, `>` added to lines that
/// match `>*From `, and a blank line after. Holds at most one line.
struct MboxWriter {
    line: Vec<u8>,
}

impl MboxWriter {
    fn new() -> Self {
        MboxWriter { line: Vec::new() }
    }

    fn start(&mut self, f: &mut File) -> std::io::Result<()> {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        writeln!(f, "From MAILER-DAEMON {}", asctime(secs))
    }

    fn write(&mut self, f: &mut File, mut data: &[u8]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(data.len() + 16);
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&data[..=nl]);
            data = &data[nl + 1..];
            emit_line(&mut out, &self.line);
            self.line.clear();
        }
        self.line.extend_from_slice(data);
        f.write_all(&out)
    }

    fn end(&mut self, f: &mut File) -> std::io::Result<()> {
        let mut out = Vec::new();
        if !self.line.is_empty() {
            self.line.push(b'\n');
            emit_line(&mut out, &self.line);
            self.line.clear();
        }
        out.push(b'\n');
        f.write_all(&out)
    }
}

/// One line (ending in LF, maybe CRLF) in mboxrd form.
fn emit_line(out: &mut Vec<u8>, line: &[u8]) {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let quoted = body
        .iter()
        .position(|&b| b != b'>')
        .is_some_and(|i| body[i..].starts_with(b"From "));
    if quoted {
        out.push(b'>');
    }
    out.extend_from_slice(body);
    out.push(b'\n');
}

/// `Thu Nov 28 14:00:00 2026`, UTC.
fn asctime(secs: u64) -> String {
    let days = secs / 86_400;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(mo - 1) as usize];
    format!("{weekday} {month} {d:2} {h:02}:{m:02}:{s:02} {y}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asctime_is_right() {
        assert_eq!(asctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(asctime(1_795_874_400), "Sat Nov 28 14:00:00 2026");
    }

    #[test]
    fn mboxrd_quoting() {
        let mut out = Vec::new();
        for l in [
            &b"From me\r\n"[..],
            b">From x\r\n",
            b">>From y\n",
            b"Fromage\r\n",
            b" From z\r\n",
        ] {
            emit_line(&mut out, l);
        }
        assert_eq!(out, b">From me\n>>From x\n>>>From y\nFromage\n From z\n");
    }
}
