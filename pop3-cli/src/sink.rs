//! Where fetched mail goes, durably and exactly once.
//!
//! Every message is identified by a key: the first 16 octets of SHA-256(host, user, UIDL), in
//! hex (a UIDL may hold `/` and `:`, which a file name cannot; the hash also keeps two accounts
//! apart in one Maildir). The key makes a rerun after a crash skip what is already stored,
//! however the earlier run ended.
//!
//! - **Maildir**: a message is written to `tmp/` (CRLF line ends turned into LF, as mail is
//!   stored on Unix), synced, renamed into `new/` under a name that carries its key
//!   (`….U<key>.host`), and `new/` is synced. That is done in batches ([`BATCH_MESSAGES`],
//!   [`BATCH_BYTES`], [`BATCH_AGE`]) with the files of a batch synced in parallel, so that
//!   the file system commits its journal once for many messages instead of twice for each
//!   (one fsync per message made fetching 3 to 4 times slower). A file reaches `new/` only
//!   after its data is durable, so a name in `new/` is always a whole message; a batch a kill
//!   interrupts is still in `tmp/` and is fetched again. On start the names in `new/` and `cur/` are
//!   scanned, so a message stored just before a kill is never fetched again even if nothing
//!   else recorded it (a mail reader moving it to `cur/` keeps the name). A file a kill left in
//!   `tmp/` is removed when its message is fetched again.
//! - **mbox** (mboxrd): appended under an exclusive lock ([`File::lock`], waited for). Before
//!   appending, the record gets `P <key> <offset>` (synced); after the append is synced,
//!   `D <key>` (synced). A `P` without its `D` on start means the append may be partial: the
//!   mbox is cut back to that offset and the message fetched again.
//!
//! The record (`.pop3-uidl-<host>-<user>` in the Maildir, `FILE.pop3-uidl-<host>-<user>` beside
//! an mbox) lists the keys stored (`D <key>`): the messages stored but maybe not yet deleted
//! from the server, and, for `--keep`, what was fetched before. It is synced before `QUIT`
//! ([`Sink::sync_record`]) and at the end rewritten atomically (temporary file, sync, rename,
//! directory sync) with only the keys still on the server. It is locked for the whole run, so
//! two fetches of one account into one destination cannot interleave.
//!
//! Why nothing is lost or duplicated: the DELEs are sent only for messages whose storage is
//! durable, and the server applies them only at the QUIT after all of them. A kill before that
//! QUIT leaves every message on the server; the stored ones are found by key on the next run
//! and deleted there instead of fetched again. A kill after the QUIT leaves the keys of deleted
//! messages in the record: harmless, they are dropped when the server no longer lists them.
//! Without UIDL support on the server a message has no stable identity, so a rerun after a
//! kill between store and QUIT can fetch it twice; `pop3 fetch` warns about this.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::target::record::{self, replace_file, safe};

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

/// The key in one of our Maildir file names (`….U<key>.host`), if it is one of ours.
fn key_in_name(name: &str) -> Option<&str> {
    name.split('.')
        .find_map(|part| part.rsplit_once('U').map(|(_, k)| k))
        .filter(|k| k.len() == 32 && k.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Turns CRLF into LF across chunk boundaries (a CR alone is kept): for the mbox and Maildir
/// here, and for the targets that hand a message on with LF line ends (`target::ToLf`).
#[derive(Debug, Default)]
pub(crate) struct Unixify {
    pending_cr: bool,
}

impl Unixify {
    /// Appends `data` to `out` with CRLF made LF: whole spans between the CRs (found with
    /// `memchr`) are copied at once. A CR that ends `data` is held until the next octet shows
    /// whether an LF follows it.
    pub(crate) fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let Some(&first) = data.first() else {
            return;
        };
        if std::mem::take(&mut self.pending_cr) && first != b'\n' {
            out.push(b'\r');
        }
        out.reserve(data.len());
        let mut start = 0;
        for cr in memchr::memchr_iter(b'\r', data) {
            match data.get(cr + 1) {
                // CRLF: the span ends before the CR; the LF starts the next one.
                Some(b'\n') => {
                    out.extend_from_slice(&data[start..cr]);
                    start = cr + 1;
                }
                // A CR alone stays in the span.
                Some(_) => {}
                None => {
                    out.extend_from_slice(&data[start..cr]);
                    start = data.len();
                    self.pending_cr = true;
                }
            }
        }
        out.extend_from_slice(&data[start..]);
    }

    /// The end of the message: a CR held back is written.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }
}

struct MaildirMessage {
    /// Written from [`Sink::scratch`] once that holds [`WRITE_CHUNK`] octets (and at the end).
    out: File,
    /// Octets written to `out`.
    len: u64,
    tmp: PathBuf,
    name: String,
    unix: Unixify,
}

/// A message written whole to `tmp/`, not yet durable.
struct Written {
    file: File,
    tmp: PathBuf,
    name: String,
    key: String,
}

/// A message being written to `tmp/` goes to its file in writes of about this size (most
/// messages in one); the buffer is [`Sink::scratch`], kept for the whole run.
const WRITE_CHUNK: usize = 256 * 1024;

/// A Maildir batch is made durable once it holds this many messages,
const BATCH_MESSAGES: usize = 64;
/// or this many octets,
const BATCH_BYTES: u64 = 16 << 20;
/// or its first message was written this long ago (a slow server still sees its messages
/// deleted soon after they arrive, and a kill costs little to fetch again).
const BATCH_AGE: Duration = Duration::from_secs(1);
/// Threads that sync the files of a batch at once: concurrent fsyncs share journal commits.
const SYNC_THREADS: usize = 16;

/// Syncs every file, `SYNC_THREADS` at a time.
fn sync_all(files: &[Written]) -> std::io::Result<()> {
    if files.len() <= 1 {
        return files.iter().try_for_each(|w| w.file.sync_all());
    }
    let per_thread = files.len().div_ceil(SYNC_THREADS);
    std::thread::scope(|s| {
        let threads: Vec<_> = files
            .chunks(per_thread)
            .map(|chunk| s.spawn(move || chunk.iter().try_for_each(|w| w.file.sync_all())))
            .collect();
        // Every thread is joined before the first error is returned.
        let results: Vec<_> = threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a sync thread panicked")))
            })
            .collect();
        results.into_iter().collect()
    })
}

enum Kind {
    Maildir {
        dir: PathBuf,
        current: Option<MaildirMessage>,
        /// Messages written to `tmp/` whole, to be made durable together.
        batch: Vec<Written>,
        batch_bytes: u64,
        batch_since: Option<Instant>,
        /// Files a killed run left in `tmp/`, by key.
        stale_tmp: HashMap<String, Vec<PathBuf>>,
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
    /// Open for appending, and locked for the run.
    record: File,
    /// Keys stored (durably) in this or an earlier run.
    done: HashSet<String>,
    hostname: String,
    /// Messages begun in this run.
    count: u64,
    /// Maildir: the current message's octets (LF line ends) not yet written to its file.
    scratch: Vec<u8>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        // The locks released explicitly: a child being forked elsewhere in the process (an
        // MDA of another account) shares the descriptors until it execs.
        let _ = self.record.unlock();
        if let Kind::Mbox { file, .. } = &self.kind {
            let _ = file.unlock();
        }
    }
}

impl Sink {
    /// Opens (creating) a Maildir.
    pub(crate) fn maildir(dir: &Path, host: &str, user: &str) -> Result<Sink, String> {
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(dir.join(sub))
                .map_err(|e| format!("cannot create the Maildir {}: {e}", dir.display()))?;
        }
        let record_path = dir.join(record_name(host, user));
        let (record, mut done) = open_record(&record_path, None)?;
        let read = |sub: &str| {
            fs::read_dir(dir.join(sub))
                .map_err(|e| format!("cannot read {}: {e}", dir.join(sub).display()))
        };
        for sub in ["new", "cur"] {
            for e in read(sub)?.flatten() {
                if let Some(k) = key_in_name(&e.file_name().to_string_lossy()) {
                    done.insert(k.to_string());
                }
            }
        }
        let mut stale_tmp: HashMap<String, Vec<PathBuf>> = HashMap::new();
        for e in read("tmp")?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(k) = key_in_name(&name) {
                // The Maildir rule: anything in tmp/ older than 36 hours is garbage.
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(36 * 3600));
                if old {
                    let _ = fs::remove_file(e.path());
                } else {
                    stale_tmp.entry(k.to_string()).or_default().push(e.path());
                }
            }
        }
        Ok(Sink {
            kind: Kind::Maildir {
                dir: dir.to_path_buf(),
                current: None,
                batch: Vec::new(),
                batch_bytes: 0,
                batch_since: None,
                stale_tmp,
            },
            record_path,
            record,
            done,
            hostname: local_hostname(),
            count: 0,
            scratch: Vec::new(),
        })
    }

    /// Opens (creating) an mbox, locked for this process until the sink is dropped.
    pub(crate) fn mbox(path: &Path, host: &str, user: &str) -> Result<Sink, String> {
        let file = record::open_append(path, "mbox")?;
        if !record::try_lock(&file, path)? {
            eprintln!(
                "pop3: waiting for the lock on {} (another program is writing it)",
                path.display()
            );
            file.lock()
                .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
        }
        let name = format!(
            "{}{}",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            // `FILE.pop3-uidl-…`
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
            count: 0,
            scratch: Vec::new(),
        })
    }

    /// Whether the message with this key is already stored.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.done.contains(key)
    }

    /// Starts storing a message.
    pub(crate) fn begin(&mut self, key: &str) -> std::io::Result<()> {
        match &mut self.kind {
            Kind::Maildir {
                dir,
                current,
                stale_tmp,
                ..
            } => {
                // A partial copy of this very message from a killed run.
                for old in stale_tmp.remove(key).unwrap_or_default() {
                    let _ = fs::remove_file(old);
                }
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                // Unique by time, process and a counter (`Q`, as Dovecot does).
                self.count += 1;
                let name = format!(
                    "{}.M{:06}P{}Q{}U{key}.{}",
                    now.as_secs(),
                    now.subsec_micros(),
                    std::process::id(),
                    self.count,
                    self.hostname
                );
                let tmp = dir.join("tmp").join(&name);
                let f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
                self.scratch.clear();
                *current = Some(MaildirMessage {
                    out: f,
                    len: 0,
                    tmp,
                    name,
                    unix: Unixify::default(),
                });
            }
            Kind::Mbox { file, out } => {
                let offset = file.seek(SeekFrom::End(0))?;
                // One write per line: a kill never leaves half of one (and see `open_record`).
                self.record
                    .write_all(format!("P {key} {offset}\n").as_bytes())?;
                self.record.sync_data()?;
                // A `From ` line must start a line, after a blank one.
                let gap = separator_gap(file, offset)?;
                file.write_all(gap)?;
                *out = Some((MboxWriter::new(), offset));
            }
        }
        Ok(())
    }

    /// Message octets (CRLF line ends, as POP3 delivers them).
    pub(crate) fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match &mut self.kind {
            Kind::Maildir {
                current: Some(m), ..
            } => {
                m.unix.feed(data, &mut self.scratch);
                if self.scratch.len() >= WRITE_CHUNK {
                    m.out.write_all(&self.scratch)?;
                    m.len += self.scratch.len() as u64;
                    self.scratch.clear();
                }
                Ok(())
            }
            Kind::Mbox {
                file,
                out: Some((w, _)),
            } => w.write(file, data),
            _ => Err(std::io::Error::other("no message started")),
        }
    }

    /// Ends the message: an mbox message is made durable and recorded now, a Maildir one with
    /// its batch ([`Sink::sync_record`] makes every finished message durable).
    pub(crate) fn finish(&mut self, key: &str) -> std::io::Result<()> {
        match &mut self.kind {
            Kind::Maildir {
                current,
                batch,
                batch_bytes,
                batch_since,
                ..
            } => {
                let Some(mut m) = current.take() else {
                    return Err(std::io::Error::other("no message started"));
                };
                m.unix.finish(&mut self.scratch);
                m.out.write_all(&self.scratch)?;
                m.len += self.scratch.len() as u64;
                self.scratch.clear();
                let file = m.out;
                *batch_bytes += m.len;
                batch_since.get_or_insert_with(Instant::now);
                batch.push(Written {
                    file,
                    tmp: m.tmp,
                    name: m.name,
                    key: key.to_string(),
                });
                let full = batch.len() >= BATCH_MESSAGES
                    || *batch_bytes >= BATCH_BYTES
                    || batch_since.is_some_and(|t| t.elapsed() >= BATCH_AGE);
                if full {
                    self.commit()?;
                }
                return Ok(());
            }
            Kind::Mbox { file, out } => {
                if let Some((mut w, _)) = out.take() {
                    w.end(file)?;
                }
                file.sync_data()?;
                self.record.write_all(format!("D {key}\n").as_bytes())?;
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
                self.scratch.clear();
                if let Some(m) = current.take() {
                    drop(m.out);
                    let _ = fs::remove_file(m.tmp);
                }
            }
            // The `P` entry without its `D` makes the next run cut the mbox back; do it now.
            Kind::Mbox { file, out } => {
                if let Some((_, offset)) = out.take()
                    && file.set_len(offset).is_ok()
                {
                    let _ = file.sync_all();
                }
            }
        }
    }

    /// Makes the record durable: called before `QUIT`, so that the stored messages the server
    /// may not have deleted are known to the next run.
    pub(crate) fn sync_record(&mut self) -> std::io::Result<()> {
        self.commit()?;
        self.record.flush()?;
        self.record.sync_data()
    }

    /// Makes the Maildir batch durable: its files synced, moved into `new/`, `new/` synced,
    /// then its keys recorded (the names in `new/` are the proof; the record lines are synced
    /// by [`Sink::sync_record`]). On an error the batch stays in `tmp/`, to be fetched again.
    fn commit(&mut self) -> std::io::Result<()> {
        let Kind::Maildir {
            dir,
            batch,
            batch_bytes,
            batch_since,
            ..
        } = &mut self.kind
        else {
            return Ok(());
        };
        *batch_bytes = 0;
        *batch_since = None;
        let batch = std::mem::take(batch);
        if batch.is_empty() {
            return Ok(());
        }
        sync_all(&batch)?;
        let new = dir.join("new");
        for w in &batch {
            fs::rename(&w.tmp, new.join(&w.name))?;
        }
        sync_dir(&new)?;
        let mut lines = String::new();
        for w in batch {
            lines.push_str(&format!("D {}\n", w.key));
            self.done.insert(w.key);
        }
        self.record.write_all(lines.as_bytes())
    }

    /// Rewrites the record with the stored keys still on the server (`live`), and removes
    /// what killed runs left in `tmp/` for messages that are stored or still on the server.
    pub(crate) fn compact(&mut self, live: &HashSet<String>) -> std::io::Result<()> {
        if let Kind::Maildir { stale_tmp, .. } = &mut self.kind {
            for (k, paths) in stale_tmp.drain() {
                if live.contains(&k) || self.done.contains(&k) {
                    for p in paths {
                        let _ = fs::remove_file(p);
                    }
                }
            }
        }
        let mut keys: Vec<&String> = self.done.iter().filter(|k| live.contains(*k)).collect();
        keys.sort();
        let data: String = keys.iter().map(|k| format!("D {k}\n")).collect();
        // The new file is not locked, but this process ends right after.
        replace_file(&self.record_path, data.as_bytes())
    }
}

/// What to write before a `From ` line appended at `offset`: nothing at the start of the file
/// or after a blank line, else enough line ends to make one.
fn separator_gap(file: &mut File, offset: u64) -> std::io::Result<&'static [u8]> {
    if offset == 0 {
        return Ok(b"");
    }
    let back = offset.min(2);
    file.seek(SeekFrom::Start(offset - back))?;
    let mut tail = [0u8; 2];
    let tail = &mut tail[..back as usize];
    file.read_exact(tail)?;
    Ok(match tail {
        [b'\n', b'\n'] => b"",
        [b'\n'] if offset == 1 => b"",
        [.., b'\n'] => b"\n",
        _ => b"\n\n",
    })
}

fn record_name(host: &str, user: &str) -> String {
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

/// Opens and locks the record, and reads it: keys with `D` are done. For an mbox, a `P`
/// without `D` is an append that may be partial: the mbox is cut back to where it began.
fn open_record(path: &Path, mbox: Option<&File>) -> Result<(File, HashSet<String>), String> {
    // Ignoring a cut `D` is safe: its `P` then stands, and the message is cut from the mbox
    // and fetched again.
    let (record, complete) = record::open_locked(path, "destination")?;
    let mut done = HashSet::new();
    let mut pending: Option<(String, u64)> = None;
    for line in complete.lines() {
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
    Ok((record, done))
}

/// Headers longer than this are not searched for the envelope sender.
const HEADER_LIMIT: usize = 64 * 1024;

/// Writes one message as mboxrd: a `From sender date` separator (the sender from
/// `Return-Path:`, else `From:`, else `MAILER-DAEMON`), LF line ends, `>` added to lines that
/// match `>*From `, and a blank line after. Holds at most the header (up to [`HEADER_LIMIT`])
/// and one header line; the body goes through in spans found with `memchr`, holding back only
/// a CR that ends a chunk and the start of a line that may yet turn out to be `>*From `.
struct MboxWriter {
    /// Whether the header is still being read (the separator is not written yet).
    in_header: bool,
    /// The header lines so far (mboxrd form), until the separator is written.
    header: Vec<u8>,
    /// In the header: the line begun in an earlier chunk.
    line: Vec<u8>,
    sender: Sender,
    /// In the body: how far the current line's start is known.
    start: LineStart,
    /// In the body: CRLF to LF.
    unix: Unixify,
    /// What one [`MboxWriter::write`] appends (kept for the next).
    out: Vec<u8>,
}

/// The sender of an mbox separator, picked out of the header as it goes by.
#[derive(Default)]
struct Sender {
    return_path: Option<String>,
    from: Option<String>,
}

impl Sender {
    /// A header line, without its line end: the first `Return-Path:` and `From:` are kept.
    fn header_line(&mut self, bare: &[u8]) {
        let field = |name: &str| {
            bare.len() > name.len() && bare[..name.len()].eq_ignore_ascii_case(name.as_bytes())
        };
        if field("Return-Path:") && self.return_path.is_none() {
            self.return_path = Some(address(&bare[12..]));
        } else if field("From:") && self.from.is_none() {
            self.from = Some(address(&bare[5..]));
        }
    }

    /// Appends the separator, `From sender date` (the sender from `Return-Path:`, else
    /// `From:`, else `MAILER-DAEMON`; the date now).
    fn separator(&mut self, out: &mut Vec<u8>) {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let sender = self
            .return_path
            .take()
            .or(self.from.take())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "MAILER-DAEMON".into());
        out.extend_from_slice(format!("From {sender} {}\n", asctime(secs)).as_bytes());
    }
}

/// The `From ` of an mboxrd `>*From ` line.
const FROM: &[u8] = b"From ";

/// Where the current body line stands for mboxrd quoting.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum LineStart {
    /// So far `gts` octets `>` then the first `from` octets of `From ` (held, not written):
    /// whether the line needs a `>` is not known yet.
    Open { gts: usize, from: usize },
    /// The start is written (quoted or not); the rest of the line goes through as it is.
    Decided,
}

impl MboxWriter {
    fn new() -> Self {
        MboxWriter {
            in_header: true,
            header: Vec::new(),
            line: Vec::new(),
            sender: Sender::default(),
            start: LineStart::Open { gts: 0, from: 0 },
            unix: Unixify::default(),
            out: Vec::new(),
        }
    }

    /// One complete header line (with its LF or CRLF): kept in the header, or, if it is the
    /// blank line (or the header is full), the separator and the header are written and the
    /// line after them.
    fn header_line(&mut self, out: &mut Vec<u8>, line: &[u8]) {
        let bare = line.strip_suffix(b"\n").unwrap_or(line);
        let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
        if !bare.is_empty() && self.header.len() < HEADER_LIMIT {
            self.sender.header_line(bare);
            emit_line(&mut self.header, line);
            return;
        }
        self.separator(out);
        emit_line(out, line);
    }

    fn separator(&mut self, out: &mut Vec<u8>) {
        if !std::mem::take(&mut self.in_header) {
            return;
        }
        self.sender.separator(out);
        out.extend_from_slice(&self.header);
        self.header = Vec::new();
    }

    /// Body octets: spans between the line starts that need a look (an LF followed by `>` or
    /// `F`) are copied at once, CRLF made LF on the way.
    fn body(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        while !data.is_empty() {
            if let LineStart::Open { mut gts, mut from } = self.start {
                let mut taken = 0;
                let quote = loop {
                    let Some(&b) = data.get(taken) else {
                        // The chunk ends inside what may be `>*From `: held for the next.
                        self.start = LineStart::Open { gts, from };
                        return;
                    };
                    if from == 0 && b == b'>' {
                        gts += 1;
                    } else if b == FROM[from] {
                        from += 1;
                        if from == FROM.len() {
                            taken += 1;
                            break true;
                        }
                    } else {
                        break false;
                    }
                    taken += 1;
                };
                data = &data[taken..];
                out.resize(out.len() + gts + usize::from(quote), b'>');
                out.extend_from_slice(&FROM[..from]);
                self.start = LineStart::Decided;
            }
            // Up to the first LF that starts a line that could need a `>`.
            let mut end = None;
            for nl in memchr::memchr_iter(b'\n', data) {
                if matches!(data.get(nl + 1), None | Some(b'>' | b'F')) {
                    end = Some(nl + 1);
                    break;
                }
            }
            match end {
                Some(end) => {
                    self.unix.feed(&data[..end], out);
                    data = &data[end..];
                    self.start = LineStart::Open { gts: 0, from: 0 };
                }
                None => {
                    self.unix.feed(data, out);
                    return;
                }
            }
        }
    }

    /// Message octets (any chunking): appends their mboxrd form to `out`.
    fn feed(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        while self.in_header {
            let Some(nl) = memchr::memchr(b'\n', data) else {
                self.line.extend_from_slice(data);
                return;
            };
            let (line, rest) = data.split_at(nl + 1);
            data = rest;
            if self.line.is_empty() {
                self.header_line(out, line);
            } else {
                let mut whole = std::mem::take(&mut self.line);
                whole.extend_from_slice(line);
                self.header_line(out, &whole);
                whole.clear();
                self.line = whole;
            }
        }
        self.body(data, out);
    }

    /// The end of the message: ends its last line, and adds the blank line after it.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.in_header && !self.line.is_empty() {
            let mut whole = std::mem::take(&mut self.line);
            whole.push(b'\n');
            self.header_line(out, &whole);
        }
        if !self.in_header {
            match std::mem::replace(&mut self.start, LineStart::Open { gts: 0, from: 0 }) {
                LineStart::Open { gts: 0, from: 0 } => {}
                // A last line without its LF: `>`s and part of `From `, not a `From ` line.
                LineStart::Open { gts, from } => {
                    out.resize(out.len() + gts, b'>');
                    out.extend_from_slice(&FROM[..from]);
                    out.push(b'\n');
                }
                LineStart::Decided => {
                    // A CR that ends the message ends its last line, as CRLF would.
                    self.unix.pending_cr = false;
                    out.push(b'\n');
                }
            }
        }
        self.separator(out);
        out.push(b'\n');
    }

    fn write(&mut self, f: &mut File, data: &[u8]) -> std::io::Result<()> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        self.feed(data, &mut out);
        let r = f.write_all(&out);
        self.out = out;
        r
    }

    fn end(&mut self, f: &mut File) -> std::io::Result<()> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        self.finish(&mut out);
        f.write_all(&out)
    }
}

/// The address in a `Return-Path:` or `From:` value: inside `<>` if there are any, else the
/// first word; empty (so `MAILER-DAEMON`) for `<>` or anything that would break the
/// separator line.
fn address(value: &[u8]) -> String {
    let v = String::from_utf8_lossy(value);
    let a = match (v.find('<'), v.rfind('>')) {
        (Some(i), Some(j)) if i < j => v[i + 1..j].trim(),
        _ => v.split_whitespace().next().unwrap_or_default(),
    };
    if a.len() <= 256 && a.bytes().all(|b| b.is_ascii_graphic()) {
        a.to_string()
    } else {
        String::new()
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

impl Sink {
    /// Records `keys` as stored without storing anything (`pop3 fetch --import-uidls`: another
    /// fetcher stored those messages), and syncs the record.
    pub(crate) fn record_stored(&mut self, keys: &[String]) -> std::io::Result<()> {
        let mut lines = String::new();
        for k in keys {
            if self.done.insert(k.clone()) {
                lines.push_str(&format!("D {k}\n"));
            }
        }
        self.record.write_all(lines.as_bytes())?;
        self.record.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn store(sink: &mut Sink, n: usize) -> String {
        let k = key("host", "user", &format!("uid{n}"));
        sink.begin(&k).unwrap();
        sink.write(format!("Subject: {n}\r\n\r\nbody\r\n").as_bytes())
            .unwrap();
        sink.finish(&k).unwrap();
        k
    }

    #[test]
    fn maildir_messages_reach_new_in_batches_and_all_by_sync_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = Sink::maildir(dir.path(), "host", "user").unwrap();
        let first: Vec<String> = (0..3).map(|n| store(&mut sink, n)).collect();
        // Not durable yet: still in tmp/, not recorded, not known as stored.
        assert_eq!(names(&dir.path().join("tmp")).len(), 3);
        assert!(names(&dir.path().join("new")).is_empty());
        assert!(!sink.has(&first[0]));
        for n in 3..BATCH_MESSAGES {
            store(&mut sink, n);
        }
        // A full batch is committed by the finish that fills it.
        assert_eq!(names(&dir.path().join("new")).len(), BATCH_MESSAGES);
        assert!(names(&dir.path().join("tmp")).is_empty());
        assert!(first.iter().all(|k| sink.has(k)));
        let last = store(&mut sink, BATCH_MESSAGES);
        assert!(!sink.has(&last));
        sink.sync_record().unwrap();
        assert!(sink.has(&last));
        let new = names(&dir.path().join("new"));
        assert_eq!(new.len(), BATCH_MESSAGES + 1);
        assert!(new.iter().any(|n| key_in_name(n) == Some(last.as_str())));
        let record = fs::read_to_string(dir.path().join(record_name("host", "user"))).unwrap();
        assert_eq!(record.lines().count(), BATCH_MESSAGES + 1);
        assert!(record.contains(&format!("D {last}\n")));
        // The content is whole, with LF line ends.
        let path = dir.path().join("new").join(
            new.iter()
                .find(|n| key_in_name(n) == Some(first[1].as_str()))
                .unwrap(),
        );
        assert_eq!(fs::read(path).unwrap(), b"Subject: 1\n\nbody\n");
    }

    #[test]
    fn a_maildir_batch_left_unsynced_is_fetched_again_and_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let k = {
            let mut sink = Sink::maildir(dir.path(), "host", "user").unwrap();
            store(&mut sink, 7)
            // Dropped without sync_record, as by a kill.
        };
        let mut sink = Sink::maildir(dir.path(), "host", "user").unwrap();
        assert!(!sink.has(&k), "a message only in tmp/ is not stored");
        assert_eq!(store(&mut sink, 7), k);
        sink.sync_record().unwrap();
        assert!(names(&dir.path().join("tmp")).is_empty());
        assert_eq!(names(&dir.path().join("new")).len(), 1);
    }

    #[test]
    fn asctime_is_right() {
        assert_eq!(asctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(asctime(1_795_874_400), "Sat Nov 28 14:00:00 2026");
    }

    #[test]
    fn our_names_carry_the_key() {
        let k = key("h", "u", "uid-1");
        let name = format!("1700000000.M000123P42Q7U{k}.host:2,S");
        assert_eq!(key_in_name(&name), Some(k.as_str()));
        assert_eq!(key_in_name("1700000000.M1P1.host,S=12:2,S"), None);
        assert_ne!(key("h", "u", "uid-1"), key("h", "u2", "uid-1"));
        // Length-prefixed parts: moving a character between them changes the key.
        assert_ne!(key("ab", "c", "x"), key("a", "bc", "x"));
    }

    #[test]
    fn a_cut_record_line_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let mbox_path = dir.path().join("mbox");
        std::fs::write(&mbox_path, b"From a x\n\nold\n\nFrom b y\n\nnew\n\n").unwrap();
        let record = dir.path().join("record");
        // The `D` of the message appended at 15 was cut before its line end.
        std::fs::write(&record, "D k0\nP k1 15\nD k1").unwrap();
        let mbox = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&mbox_path)
            .unwrap();
        let (mut f, done) = open_record(&record, Some(&mbox)).unwrap();
        assert_eq!(done, HashSet::from(["k0".to_string()]));
        assert_eq!(std::fs::read(&mbox_path).unwrap(), b"From a x\n\nold\n\n");
        // What is appended next starts on a line of its own.
        f.write_all(b"P k2 15\n").unwrap();
        drop(f);
        let text = std::fs::read_to_string(&record).unwrap();
        assert_eq!(text, "D k0\nP k1 15\nD k1\nP k2 15\n");
    }

    #[test]
    fn envelope_sender() {
        assert_eq!(address(b" <bounce@example.com>"), "bounce@example.com");
        assert_eq!(address(b" <>"), "");
        assert_eq!(address(b" Alice <alice@example.com>"), "alice@example.com");
        assert_eq!(address(b" bob@example.com (Bob)"), "bob@example.com");
        assert_eq!(address(b" <a b@example.com>"), "");
    }

    #[test]
    fn unixify_across_chunks() {
        let chunks: [&[u8]; 7] = [b"a\r", b"\nb\r", b"c\r\r", b"\n", b"\r", b"", b"x\r\n\r"];
        let (out, reference) = unixify_chunks(&chunks);
        assert_eq!(out, b"a\nb\rc\r\n\rx\n\r");
        assert_eq!(out, reference);
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

    /// The byte-at-a-time CRLF to LF of before the span version: the reference.
    #[derive(Default)]
    struct RefUnixify {
        pending_cr: bool,
    }

    impl RefUnixify {
        fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
            for &b in data {
                if std::mem::take(&mut self.pending_cr) && b != b'\n' {
                    out.push(b'\r');
                }
                if b == b'\r' {
                    self.pending_cr = true;
                } else {
                    out.push(b);
                }
            }
        }

        fn finish(&mut self, out: &mut Vec<u8>) {
            if std::mem::take(&mut self.pending_cr) {
                out.push(b'\r');
            }
        }
    }

    /// The line-at-a-time mboxrd writer of before the span version: the reference. Its lines
    /// go through [`emit_line`] (checked on its own by `mboxrd_quoting`), its header through
    /// [`Sender`], as the writer's header does.
    struct RefMbox {
        line: Vec<u8>,
        header: Option<Vec<u8>>,
        sender: Sender,
    }

    impl RefMbox {
        fn new() -> Self {
            RefMbox {
                line: Vec::new(),
                header: Some(Vec::new()),
                sender: Sender::default(),
            }
        }

        fn line(&mut self, out: &mut Vec<u8>, line: &[u8]) {
            if let Some(header) = &mut self.header {
                let bare = line.strip_suffix(b"\n").unwrap_or(line);
                let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
                if !bare.is_empty() && header.len() < HEADER_LIMIT {
                    self.sender.header_line(bare);
                    emit_line(header, line);
                    return;
                }
                self.separator(out);
            }
            emit_line(out, line);
        }

        fn separator(&mut self, out: &mut Vec<u8>) {
            let Some(header) = self.header.take() else {
                return;
            };
            self.sender.separator(out);
            out.extend_from_slice(&header);
        }

        fn write(&mut self, out: &mut Vec<u8>, mut data: &[u8]) {
            while let Some(nl) = data.iter().position(|&b| b == b'\n') {
                let (line, rest) = data.split_at(nl + 1);
                data = rest;
                let mut whole = std::mem::take(&mut self.line);
                whole.extend_from_slice(line);
                self.line(out, &whole);
            }
            self.line.extend_from_slice(data);
        }

        fn end(&mut self, out: &mut Vec<u8>) {
            if !self.line.is_empty() {
                let mut whole = std::mem::take(&mut self.line);
                whole.push(b'\n');
                self.line(out, &whole);
            }
            self.separator(out);
            out.push(b'\n');
        }
    }

    /// A small deterministic generator (xorshift64*), so that a failure can be replayed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// `data` cut at random places (empty chunks included).
    fn random_chunks<'a>(rng: &mut Rng, data: &'a [u8]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = (0..rng.below(8))
            .map(|_| rng.below(data.len() + 1))
            .collect();
        cuts.push(0);
        cuts.push(data.len());
        cuts.sort();
        cuts.windows(2).map(|w| &data[w[0]..w[1]]).collect()
    }

    /// Mail made of pieces that meet every case: CRs alone and before LFs, `>` runs, `From `
    /// whole and cut, header fields, blank lines.
    fn random_mail(rng: &mut Rng) -> Vec<u8> {
        const PIECES: &[&[u8]] = &[
            b"\r",
            b"\n",
            b"\r\n",
            b">",
            b">>",
            b"F",
            b"From",
            b"From ",
            b"rom ",
            b"x",
            b"Fromage",
            b" ",
            b"From: Alice <alice@example.com>\r\n",
            b"Return-Path: <bounce@example.com>\r\n",
            b"Subject: hi\r\n",
            b"\r\n\r\n",
            b"The quick brown fox\r\n",
        ];
        let mut mail = Vec::new();
        for _ in 0..rng.below(40) {
            mail.extend_from_slice(PIECES[rng.below(PIECES.len())]);
        }
        mail
    }

    fn unixify_chunks(chunks: &[&[u8]]) -> (Vec<u8>, Vec<u8>) {
        let (mut new, mut old) = (Unixify::default(), RefUnixify::default());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for c in chunks {
            new.feed(c, &mut a);
            old.feed(c, &mut b);
        }
        new.finish(&mut a);
        old.finish(&mut b);
        (a, b)
    }

    #[test]
    fn unixify_equals_the_reference_for_every_short_input_and_chunking() {
        // Every string over {CR, LF, a} up to 8 octets, cut at every set of places.
        let alphabet = [b'\r', b'\n', b'a'];
        for len in 0..=8u32 {
            for n in 0..3usize.pow(len) {
                let data: Vec<u8> = (0..len).map(|i| alphabet[n / 3usize.pow(i) % 3]).collect();
                for cuts in 0..1u32 << len.saturating_sub(1) {
                    let mut chunks = Vec::new();
                    let mut start = 0;
                    for i in 1..len as usize {
                        if cuts & 1 << (i - 1) != 0 {
                            chunks.push(&data[start..i]);
                            start = i;
                        }
                    }
                    chunks.push(&data[start..]);
                    let (a, b) = unixify_chunks(&chunks);
                    assert_eq!(a, b, "{data:?} in {chunks:?}");
                }
            }
        }
    }

    #[test]
    fn unixify_equals_the_reference_for_random_input_and_chunks() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let mail = random_mail(&mut rng);
            let chunks = random_chunks(&mut rng, &mail);
            let (a, b) = unixify_chunks(&chunks);
            assert_eq!(a, b, "{:?}", String::from_utf8_lossy(&mail));
        }
    }

    /// The separator's date (the last 24 octets of the first line) blanked: the two writers
    /// read the clock at different moments.
    fn without_date(mut out: Vec<u8>) -> Vec<u8> {
        if let Some(nl) = out.iter().position(|&b| b == b'\n')
            && nl >= 24
        {
            out[nl - 24..nl].fill(b'#');
        }
        out
    }

    fn mbox_chunks(chunks: &[&[u8]]) -> (Vec<u8>, Vec<u8>) {
        let (mut new, mut old) = (MboxWriter::new(), RefMbox::new());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for c in chunks {
            new.feed(c, &mut a);
            old.write(&mut b, c);
        }
        new.finish(&mut a);
        old.end(&mut b);
        (without_date(a), without_date(b))
    }

    #[test]
    fn mbox_writer_equals_the_reference_for_random_input_and_chunks() {
        let mut rng = Rng(0x0123_4567_89AB_CDEF);
        for _ in 0..20_000 {
            // Half of them past the header, so that the body sees the same pieces.
            let mut mail = Vec::new();
            if rng.below(2) == 0 {
                mail.extend_from_slice(b"From: a@b\r\n\r\n");
            }
            mail.extend(random_mail(&mut rng));
            let chunks = random_chunks(&mut rng, &mail);
            let (a, b) = mbox_chunks(&chunks);
            assert_eq!(
                String::from_utf8_lossy(&a),
                String::from_utf8_lossy(&b),
                "{:?} in {} chunks",
                String::from_utf8_lossy(&mail),
                chunks.len()
            );
        }
    }

    #[test]
    fn mbox_writer_octet_at_a_time_and_whole_agree() {
        let mail: &[u8] =
            b"Return-Path: <r@example.com>\r\nFrom: x\r\n\r\nFrom here\r\n>From there\r\n\
            >>>From \r\n>>From\r\n>\r\nFro\r\n\r\nF\rrom x\r\nbare\rcr\r\n>>From end\r";
        let whole = mbox_chunks(&[mail]);
        assert_eq!(whole.0, whole.1);
        let octets: Vec<&[u8]> = mail.chunks(1).collect();
        let one = mbox_chunks(&octets);
        assert_eq!(one.0, whole.0);
        let text = String::from_utf8(whole.0).unwrap();
        let (separator, rest) = text.split_once('\n').unwrap();
        assert!(separator.starts_with("From r@example.com "));
        assert_eq!(
            rest,
            "Return-Path: <r@example.com>\nFrom: x\n\n>From here\n>>From there\n\
            >>>>From \n>>From\n>\nFro\n\nF\rrom x\nbare\rcr\n>>>From end\n\n"
        );
    }

    #[test]
    fn mbox_writer_edge_cases() {
        let body = |mail: &[u8]| {
            let mut w = MboxWriter::new();
            let mut out = Vec::new();
            for c in mail.chunks(3) {
                w.feed(c, &mut out);
            }
            w.finish(&mut out);
            let text = String::from_utf8(out).unwrap();
            text.split_once('\n').unwrap().1.to_string()
        };
        // A last line without its line end is ended; a CR that ends it is its line end.
        assert_eq!(body(b"\r\nFrom x"), "\n>From x\n\n");
        assert_eq!(body(b"\r\n>>Fro"), "\n>>Fro\n\n");
        assert_eq!(body(b"\r\nabc\r"), "\nabc\n\n");
        assert_eq!(body(b"\r\n\r"), "\n\n\n");
        // A header without a body, and no message at all.
        assert_eq!(body(b"Subject: s\r\n"), "Subject: s\n\n");
        assert_eq!(body(b""), "\n");
        // A header line may need quoting too.
        assert_eq!(body(b">From x\r\n\r\nb\r\n"), ">>From x\n\nb\n\n");
        // Only `>*From ` at a line start: not `From` without its space, not after a space.
        assert_eq!(
            body(b"\r\nFrom\r\n From x\r\nx From y\r\n>>>From\t\r\n"),
            "\nFrom\n From x\nx From y\n>>>From\t\n\n"
        );
    }

    #[test]
    fn mbox_writer_past_the_header_limit_equals_the_reference() {
        let mut mail = Vec::new();
        for i in 0..2_000 {
            mail.extend_from_slice(format!("X-Field-{i}: {}\r\n", "v".repeat(40)).as_bytes());
        }
        mail.extend_from_slice(b"From: late@example.com\r\nFrom x\r\n\r\nFrom y\r\n");
        let mut rng = Rng(7);
        for _ in 0..20 {
            let chunks = random_chunks(&mut rng, &mail);
            let (a, b) = mbox_chunks(&chunks);
            assert!(a == b, "differs in {} chunks", chunks.len());
        }
    }
}
