//! The Maildir mail store: `ROOT/USER/{cur,new,tmp}`, shared with Dovecot, Courier and mutt.
//!
//! A synchronous API over `std::fs`:
//! [`MaildirStore::open_with_lock`] validates the user name, locks the user's maildir (shared
//! or exclusive, see [Locking](#locking)) and takes the snapshot that is the POP3 maildrop for
//! the session; [`MaildirDrop`] lists it, streams
//! messages with CRLF line ends, and [`MaildirDrop::commit`] removes the messages marked
//! deleted (the UPDATE state).
//!
//! # Layout and compatibility
//!
//! The maildir of user `u` is `ROOT/u`, with the standard `tmp/`, `new/` and `cur/`. A user
//! directory that does not exist is [`MaildirError::NoMailbox`] unless
//! [`MaildirStore::create_missing`] is set: the store does not decide which users exist
//! (the authenticator does), and creating directories for names that merely passed
//! authentication would leave clutter for every misconfigured name. A missing `tmp/`, `new/`
//! or `cur/` inside an existing user directory is created (mode 0700), as other Maildir
//! software does. These three must be real directories, not symbolic links, and message files
//! must be regular files: symbolic links there are ignored, since a user who can write their
//! maildir could otherwise make a server running as root read any file.
//!
//! Messages are only read and, at commit, unlinked: nothing is moved or renamed, so flags,
//! `new/` versus `cur/`, and the index files of Dovecot or Courier are left alone. The store
//! keeps two dot-files in the user's maildir, which Maildir readers skip: `.pop3d-lock` (see
//! below) and `.pop3d-sizes`, the size cache.
//!
//! # Snapshot and order
//!
//! The snapshot is every regular file in `new/` and `cur/` whose name does not start with a
//! dot, read once at open: messages delivered later are not part of it and appear in the next
//! session. `new/` is listed before `cur/` so that a message moved from one to the other while
//! the listing runs is seen at least once; a unique name seen twice is one message. Messages
//! are ordered by unique name, comparing runs of digits as numbers: names begin with the
//! delivery time in seconds (then, for Dovecot and Courier, `.M` and the microseconds), so
//! this is delivery order.
//!
//! # Unique ids
//!
//! The UIDL of a message is its unique name: the file name before the first `:` (which starts
//! the `:2,FLAGS` part). It does not change when another client changes flags or moves the
//! file from `new/` to `cur/`, and it is the same in every session. A unique name that is not
//! a legal POP3 unique-id (more than 70 octets, or octets outside 0x21..=0x7E) is replaced by
//! the first 16 octets of its SHA-256, in 32 lower-case hex digits: equally stable.
//!
//! # Sizes
//!
//! [`MessageInfo::size`] is the number of octets [`MaildirDrop::open_message`] yields: every
//! line end counted as CRLF (RFC 1939 §11). It is found, in this order:
//!
//! 1. The size cache, `.pop3d-sizes`, which records for a unique name the file's length and
//!    its size.
//! 2. Dovecot's `S=` and `W=` fields in the unique name (`…,S=1234,W=1260:2,S`): the file's
//!    length and exactly this size, unless the values are impossible together (`W=` below
//!    `S=` or above twice it). `W=` without `S=` counts only if the file's length makes it
//!    possible. `S=` alone (Courier) says nothing about line ends.
//! 3. Reading the file and counting its bare LFs; the result goes into the cache, which is
//!    rewritten atomically (written under another name, synced, renamed) when it changed.
//!
//! Maildir files are never rewritten in place (a change of flags or folder is a rename that
//! keeps the unique name), so the unique name identifies the content and opening a maildrop
//! needs no `stat` of each message: a listing of `new/` and `cur/` and the cache. That is what
//! makes a session of a large maildrop cheap (a `stat` per message was 44% of the server's
//! time in short sessions of 500-message maildrops). A file that is changed in place anyway
//! is caught when it is retrieved: its length is not the one recorded, so `RETR` fails with
//! [`MaildirError::MessageChanged`] instead of sending a size other than the one listed, and
//! its cache entry is corrected for the next session.
//!
//! # Locking
//!
//! Each session holds a `flock`-style lock on `.pop3d-lock` in the user's maildir, in the
//! [`MaildropLock`] mode it was opened with:
//!
//! - [`MaildropLock::Exclusive`] ([`MaildirStore::open`]): an exclusive lock
//!   ([`File::try_lock`]); the open fails with [`MaildirError::InUse`] while any other session
//!   holds the lock, in this process or another, in either mode.
//! - [`MaildropLock::Snapshot`]: a shared lock ([`File::try_lock_shared`]), which any number
//!   of snapshot sessions hold at once; it fails with `InUse` only while an exclusive session
//!   holds the lock (a server configured for exclusive sessions sharing the maildir root). The
//!   sessions share nothing else: each has its own snapshot, and a commit unlinks only the
//!   files of the messages its session marked, a file already gone counting as removed (see
//!   [Commit](#commit)). Unique names never change, so neither do UIDLs.
//!
//! The lock belongs to the [`MaildirDrop`] and is released when it is dropped or committed,
//! whatever ends the session. A busy lock is tried again for a short while
//! ([`MaildirStore::lock_wait`], 100 ms by default) before `InUse`: when the process spawns
//! a program, the child holds a copy of every descriptor, and so every lock, until it
//! executes the program, so a lock can outlive its session by a moment. The lock file itself
//! is never removed (removing it would let a waiting session lock a file nobody else sees).
//! Other software does not take this lock; it does not need to, since the store never changes
//! a file another program could be changing.
//!
//! # Commit
//!
//! [`MaildirDrop::commit`] unlinks the marked messages one by one. Each unlink is atomic, so a
//! crash half-way leaves every message not yet unlinked complete and in place. A failure does
//! not stop the commit: the other marked messages are still removed and every failure is
//! reported in [`CommitError`]. Unmarked messages are never touched. A marked message that no
//! longer exists (another session or client removed it: the unlink finds no file under its
//! unique name in `new/` or `cur/`) counts as removed, and a marked message that another
//! client moved from `new/` to `cur/` or renamed for its flags is found by its unique name and
//! removed (see [Renamed files](#renamed-files)). Afterwards the directories
//! that lost entries are synced, so the removals survive a power loss.
//!
//! # Renamed files
//!
//! Another client (an IMAP server, mutt) may rename a message while a session runs, to change
//! its flags or move it to `cur/`. When a message is not found under the name it had, the
//! store lists `new/` and `cur/` again and finds it by unique name; if it is gone, reading it
//! gives [`MaildirError::MessageGone`].

mod cache;
mod crlf;
mod deliver;
mod name;

pub use crlf::{CrlfReader, crlf_size};

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use pop3_proto::Uid;

use crate::backend::MaildropLock;
use cache::{Cached, SizeCache};
use name::{delivery_order, os_bytes, size_hints, uid_for, unique_part, valid_user};

/// The lock file in each user's maildir. A dot-file, so Maildir readers skip it.
const LOCK_FILE: &str = ".pop3d-lock";
/// How many times a message is looked for (listing the directories again in between) before
/// it counts as gone.
const LOCATE_ATTEMPTS: usize = 3;
/// How long a busy lock is retried by default.
const DEFAULT_LOCK_WAIT: Duration = Duration::from_millis(100);
/// The pause between two attempts to take a busy lock.
const LOCK_RETRY: Duration = Duration::from_millis(10);
/// The read buffer of a [`MessageReader`].
const READ_BUFFER: usize = 32 * 1024;

/// A stream of one message (or of its top, for `TOP`) with CRLF line ends.
pub type MessageReader = CrlfReader<BufReader<File>>;

/// Why the maildir could not be opened or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaildirError {
    /// The user name could reach outside the root, or is not a plain directory name: empty,
    /// over 255 octets, containing `/`, `\`, NUL or a control character, or starting with `.`.
    /// The name is not repeated here, so this error can be logged as it is.
    #[error("invalid user name")]
    InvalidUser,
    /// There is no maildir for this user.
    #[error("the user has no maildir")]
    NoMailbox,
    /// Another session holds the maildrop (RFC 2449 `[IN-USE]`).
    #[error("the maildrop is in use by another session")]
    InUse,
    /// No message has this index in the snapshot.
    #[error("no message at index {0}")]
    NoSuchMessage(usize),
    /// The message was in the snapshot but has since been removed by another client.
    #[error("message {uid} has been removed by another client")]
    MessageGone {
        /// Its unique id.
        uid: Uid,
    },
    /// The message file was changed in place since the snapshot (Maildir forbids it), so its
    /// listed size is wrong; the next session lists its new size.
    #[error(
        "message {uid} was changed by another program; it can be retrieved in the next session"
    )]
    MessageChanged {
        /// Its unique id.
        uid: Uid,
    },
    /// A path that must be a directory is something else (a symbolic link, a file).
    #[error("{}: not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A file-system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory it was about.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Some marked messages were not removed, or the removals may not be durable.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} marked message(s) not deleted{}",
    not_deleted.len(),
    if sync_failed.is_some() { "; syncing the directories failed" } else { "" }
)]
#[non_exhaustive]
pub struct CommitError {
    /// The marked messages that are still there, in index order.
    pub not_deleted: Vec<NotDeleted>,
    /// Syncing a directory after the removals failed: the removals happened, but may not
    /// survive a crash of the machine.
    pub sync_failed: Option<MaildirError>,
}

/// A marked message that [`MaildirDrop::commit`] could not remove.
#[derive(Debug)]
#[non_exhaustive]
pub struct NotDeleted {
    /// Its index in the snapshot.
    pub index: usize,
    /// Its unique id; `None` for an index outside the snapshot.
    pub uid: Option<Uid>,
    /// Why it is still there.
    pub error: MaildirError,
}

/// One message of the snapshot: its UIDL, and the exact number of octets
/// [`MaildirDrop::open_message`] yields (CRLF line ends, before byte-stuffing).
pub use crate::backend::MessageInfo;

/// A tree of maildirs, one per user: `ROOT/USER/{cur,new,tmp}`.
#[derive(Debug, Clone)]
pub struct MaildirStore {
    root: PathBuf,
    create_missing: bool,
    lock_wait: Duration,
}

impl MaildirStore {
    /// The store whose user maildirs are the directories directly under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        MaildirStore {
            root: root.into(),
            create_missing: false,
            lock_wait: DEFAULT_LOCK_WAIT,
        }
    }

    /// Whether [`open`](Self::open) creates the maildir of a user who has none (mode 0700)
    /// instead of failing with [`MaildirError::NoMailbox`]. Off by default.
    pub fn create_missing(mut self, create: bool) -> Self {
        self.create_missing = create;
        self
    }

    /// How long [`open`](Self::open) keeps trying to take a busy lock before it answers
    /// [`MaildirError::InUse`] (100 ms by default; zero tries once). The calling thread sleeps
    /// meanwhile.
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Locks the maildir of `user` exclusively and takes its snapshot:
    /// [`open_with_lock`](Self::open_with_lock) with [`MaildropLock::Exclusive`].
    pub fn open(&self, user: &str) -> Result<MaildirDrop, MaildirError> {
        self.open_with_lock(user, MaildropLock::Exclusive)
    }

    /// Locks the maildir of `user` in the `lock` mode (see [Locking](self#locking)) and takes
    /// its snapshot.
    ///
    /// Reads every message whose size is neither in its name nor in the size cache; this is
    /// the slow part the first time a maildir with many LF-only messages is opened.
    pub fn open_with_lock(
        &self,
        user: &str,
        lock: MaildropLock,
    ) -> Result<MaildirDrop, MaildirError> {
        if !valid_user(user) {
            return Err(MaildirError::InvalidUser);
        }
        let dir = self.root.join(user);
        match fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(MaildirError::NoMailbox),
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.create_missing => {
                create_dir(&dir)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(MaildirError::NoMailbox),
            Err(e) => return Err(io_error(&dir, e)),
        }
        let lock = take_lock(&dir, lock, self.lock_wait)?;
        for sub in ["tmp", "new", "cur"] {
            ensure_dir(&dir.join(sub))?;
        }

        let listed = list_messages(&dir)?;
        let old_cache = cache::load(&dir);
        let mut found = Vec::with_capacity(listed.len());
        let (mut hits, mut computed) = (0, false);
        for (unique, path) in listed {
            // `None`: removed since the listing, so not part of the snapshot.
            if let Some((sizes, source)) = message_size(&unique, &path, &old_cache)? {
                hits += usize::from(source == Source::Cache);
                computed |= source == Source::Computed;
                found.push((unique, path, sizes, source));
            }
        }
        // The cache changes if a size was computed or an entry is for a message now gone.
        if computed || hits != old_cache.len() {
            let new_cache: SizeCache = found
                .iter()
                .filter(|f| f.3 != Source::Name)
                .map(|f| (f.0.clone(), f.2))
                .collect();
            // Only a cache: failing to write it costs the next session time, nothing else.
            let _ = cache::store(&dir, &new_cache);
        }

        let ids: Vec<Uid> = found.iter().map(|f| uid_for(&f.0)).collect();
        // Two unique names with one hashed id is all but impossible; a UIDL listing must not
        // repeat an id, so the later one waits for the next session. Unique names are
        // distinct, so only a hashed id can repeat one.
        let hashed = ids
            .iter()
            .zip(&found)
            .any(|(id, f)| id.as_str().as_bytes() != f.0.as_slice());
        let mut seen = hashed.then(HashSet::new);
        let mut messages = Vec::with_capacity(found.len());
        let mut uniques = Vec::with_capacity(found.len());
        let mut paths = Vec::with_capacity(found.len());
        let mut lengths = Vec::with_capacity(found.len());
        for ((unique, path, sizes, _), uid) in found.into_iter().zip(ids) {
            if let Some(seen) = &mut seen
                && !seen.insert(uid.clone())
            {
                continue;
            }
            messages.push(MessageInfo {
                uid,
                size: sizes.crlf,
            });
            uniques.push(unique);
            paths.push(path);
            lengths.push(sizes.physical);
        }
        Ok(MaildirDrop {
            dir,
            messages,
            uniques,
            lengths,
            paths: Mutex::new(paths),
            _lock: lock,
        })
    }
}

/// The maildrop of one session: the snapshot taken at open.
///
/// Indexes are 0-based positions in [`messages`](Self::messages) (message number − 1). The
/// lock (shared or exclusive) is held until this value is dropped or committed.
#[derive(Debug)]
pub struct MaildirDrop {
    dir: PathBuf,
    messages: Vec<MessageInfo>,
    /// The unique name of each message, to find it again after a rename.
    uniques: Vec<Vec<u8>>,
    /// The length each message file had (or was recorded with): another length when it is
    /// retrieved means it was changed in place.
    lengths: Vec<u64>,
    /// Where each message was last seen. Updated when a rename is discovered.
    paths: Mutex<Vec<PathBuf>>,
    _lock: File,
}

impl MaildirDrop {
    /// The messages of the snapshot, in delivery order.
    pub fn messages(&self) -> &[MessageInfo] {
        &self.messages
    }

    /// The user's maildir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Streams message `index` with CRLF line ends: exactly [`MessageInfo::size`] octets.
    pub fn open_message(&self, index: usize) -> Result<MessageReader, MaildirError> {
        let file = self.open_file(index)?;
        let length = file
            .metadata()
            .map_err(|e| io_error(&self.path(index), e))?
            .len();
        if length != self.lengths[index] {
            self.changed(index, &file);
            return Err(MaildirError::MessageChanged {
                uid: self.messages[index].uid.clone(),
            });
        }
        Ok(CrlfReader::new(BufReader::with_capacity(READ_BUFFER, file)))
    }

    /// Streams the header of message `index`, the blank line after it, and `body_lines`
    /// lines of its body, with CRLF line ends (RFC 1939 `TOP`). With more lines than the body
    /// has, or no blank line, this is the whole message.
    pub fn open_top(&self, index: usize, body_lines: u64) -> Result<MessageReader, MaildirError> {
        let file = self.open_file(index)?;
        Ok(CrlfReader::top(
            BufReader::with_capacity(READ_BUFFER, file),
            body_lines,
        ))
    }

    /// Removes the messages at the indexes in `delete` (duplicates are ignored), then releases
    /// the lock. See the [module documentation](self#commit) for what happens on failure.
    pub fn commit(self, delete: &[usize]) -> Result<(), CommitError> {
        let mut marked = delete.to_vec();
        marked.sort_unstable();
        marked.dedup();
        let mut not_deleted = Vec::new();
        let mut changed_dirs: Vec<PathBuf> = Vec::new();
        for index in marked {
            match self.remove(index) {
                Ok(Some(dir)) => {
                    if !changed_dirs.contains(&dir) {
                        changed_dirs.push(dir);
                    }
                }
                Ok(None) => {}
                Err(error) => not_deleted.push(NotDeleted {
                    index,
                    uid: self.messages.get(index).map(|m| m.uid.clone()),
                    error,
                }),
            }
        }
        let mut sync_failed = None;
        for dir in &changed_dirs {
            if let Err(e) = sync_dir(dir) {
                sync_failed.get_or_insert(io_error(dir, e));
            }
        }
        if not_deleted.is_empty() && sync_failed.is_none() {
            Ok(())
        } else {
            Err(CommitError {
                not_deleted,
                sync_failed,
            })
        }
    }

    /// Records the sizes of message `index`, found changed in place, in the size cache, so
    /// that the next session lists it right. Best effort: it is only a cache.
    fn changed(&self, index: usize, file: &File) {
        let Ok(file) = file.try_clone() else { return };
        let Ok((physical, crlf)) = crlf_size(BufReader::with_capacity(READ_BUFFER, file)) else {
            return;
        };
        let mut cache = cache::load(&self.dir);
        cache.insert(self.uniques[index].clone(), Cached { physical, crlf });
        let _ = cache::store(&self.dir, &cache);
    }

    fn path(&self, index: usize) -> PathBuf {
        self.paths.lock().unwrap_or_else(PoisonError::into_inner)[index].clone()
    }

    /// Lists `new/` and `cur/` again and records where each message of the snapshot is now.
    fn relocate(&self) -> Result<(), MaildirError> {
        let mut listed: HashMap<Vec<u8>, PathBuf> = list_messages(&self.dir)?.into_iter().collect();
        let mut paths = self.paths.lock().unwrap_or_else(PoisonError::into_inner);
        for (unique, path) in self.uniques.iter().zip(paths.iter_mut()) {
            if let Some(found) = listed.remove(unique) {
                *path = found;
            }
        }
        Ok(())
    }

    fn check_index(&self, index: usize) -> Result<(), MaildirError> {
        if index < self.messages.len() {
            Ok(())
        } else {
            Err(MaildirError::NoSuchMessage(index))
        }
    }

    fn open_file(&self, index: usize) -> Result<File, MaildirError> {
        self.check_index(index)?;
        for attempt in 1..=LOCATE_ATTEMPTS {
            let path = self.path(index);
            match open_regular(&path) {
                Ok(file) => return Ok(file),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if attempt < LOCATE_ATTEMPTS {
                        self.relocate()?;
                    }
                }
                Err(e) => return Err(io_error(&path, e)),
            }
        }
        Err(MaildirError::MessageGone {
            uid: self.messages[index].uid.clone(),
        })
    }

    /// Unlinks message `index`; returns the directory it was in, or `None` if it was
    /// already gone.
    fn remove(&self, index: usize) -> Result<Option<PathBuf>, MaildirError> {
        self.check_index(index)?;
        for attempt in 1..=LOCATE_ATTEMPTS {
            let path = self.path(index);
            match fs::remove_file(&path) {
                Ok(()) => return Ok(path.parent().map(Path::to_path_buf)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if attempt < LOCATE_ATTEMPTS {
                        self.relocate()?;
                    }
                }
                Err(e) => return Err(io_error(&path, e)),
            }
        }
        Ok(None)
    }
}

fn io_error(path: &Path, source: io::Error) -> MaildirError {
    MaildirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The message files of `dir/new` and `dir/cur`: unique name and path, in delivery order,
/// each unique name once. `new/` is listed first, so a file moved to `cur/` during the
/// listing is seen at least once; `cur/` wins a name seen in both.
///
/// Nothing is `stat`ed: the file type comes with the listing (on Linux and the BSDs; else one
/// `lstat` per entry).
fn list_messages(dir: &Path) -> Result<Vec<(Vec<u8>, PathBuf)>, MaildirError> {
    let mut listed = Vec::new();
    for (in_cur, sub) in [(false, "new"), (true, "cur")] {
        let subdir = dir.join(sub);
        let entries = fs::read_dir(&subdir).map_err(|e| io_error(&subdir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&subdir, e))?;
            let file_name = entry.file_name();
            let bytes = os_bytes(&file_name);
            if bytes.is_empty() || bytes[0] == b'.' {
                continue;
            }
            // Does not follow symbolic links: those are skipped with directories and the rest.
            let file_type = match entry.file_type() {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&entry.path(), e)),
            };
            if !file_type.is_file() {
                continue;
            }
            listed.push((unique_part(&bytes).to_vec(), in_cur, entry.path()));
        }
    }
    // Equal names end up side by side, the one in cur/ last.
    listed.sort_unstable_by(|a, b| {
        delivery_order(&a.0, &b.0)
            .then_with(|| a.0.cmp(&b.0))
            .then(a.1.cmp(&b.1))
    });
    let mut unique: Vec<(Vec<u8>, PathBuf)> = Vec::with_capacity(listed.len());
    for (name, _, path) in listed {
        match unique.last_mut() {
            Some(last) if last.0 == name => last.1 = path,
            _ => unique.push((name, path)),
        }
    }
    Ok(unique)
}

/// Where a message's size came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Cache,
    Name,
    Computed,
}

/// The CRLF size of a listed message and the length of its file, and where they came from
/// (see the module documentation for the order of sources). `None` if the file has
/// disappeared.
fn message_size(
    unique: &[u8],
    path: &Path,
    old_cache: &SizeCache,
) -> Result<Option<(Cached, Source)>, MaildirError> {
    if let Some(cached) = old_cache.get(unique) {
        return Ok(Some((*cached, Source::Cache)));
    }
    // W= is possible for a file of length `length` if it counts at most one CR per octet.
    let possible = |crlf: u64, length: u64| crlf >= length && crlf - length <= length;
    let hints = size_hints(unique);
    match (hints.physical, hints.crlf) {
        (Some(physical), Some(crlf)) if possible(crlf, physical) => {
            return Ok(Some((Cached { physical, crlf }, Source::Name)));
        }
        (None, Some(crlf)) => match fs::symlink_metadata(path) {
            Ok(meta) if possible(crlf, meta.len()) => {
                let physical = meta.len();
                return Ok(Some((Cached { physical, crlf }, Source::Name)));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(path, e)),
        },
        _ => {}
    }
    let opened = match open_regular(path) {
        Ok(opened) => opened,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, e)),
    };
    let (physical, crlf) = crlf_size(opened).map_err(|e| io_error(path, e))?;
    Ok(Some((Cached { physical, crlf }, Source::Computed)))
}

/// Opens `path` for reading only if it is a regular file, not a symbolic link. On Unix the
/// opened file is checked to be the one examined, so a link swapped in between is refused
/// too. Anything else reads as [`io::ErrorKind::NotFound`]: for a message, it is not there.
fn open_regular(path: &Path) -> io::Result<File> {
    let not_found = || io::Error::new(io::ErrorKind::NotFound, "not a regular file");
    let before = fs::symlink_metadata(path)?;
    if !before.is_file() {
        return Err(not_found());
    }
    let file = File::open(path)?;
    let after = file.metadata()?;
    if !after.is_file() {
        return Err(not_found());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if (before.dev(), before.ino()) != (after.dev(), after.ino()) {
            return Err(not_found());
        }
    }
    Ok(file)
}

/// Opens (creating it if needed) and locks the lock file of the maildir `dir`: shared for
/// [`MaildropLock::Snapshot`], exclusive for [`MaildropLock::Exclusive`].
fn take_lock(dir: &Path, mode: MaildropLock, wait: Duration) -> Result<File, MaildirError> {
    let path = dir.join(LOCK_FILE);
    let err = |e| io_error(&path, e);
    // Opening a FIFO would block: look before opening.
    match fs::symlink_metadata(&path) {
        Ok(meta) if !meta.is_file() => {
            return Err(err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the lock file is not a regular file",
            )));
        }
        _ => {}
    }
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // `create_new` never follows a symbolic link planted under this name.
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            match options.open(&path) {
                Ok(file) => file,
                // Another session created it first.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    File::open(&path).map_err(err)?
                }
                Err(e) => return Err(err(e)),
            }
        }
        Err(e) => return Err(err(e)),
    };
    let deadline = Instant::now() + wait;
    loop {
        let taken = match mode {
            MaildropLock::Snapshot => file.try_lock_shared(),
            MaildropLock::Exclusive => file.try_lock(),
        };
        match taken {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(LOCK_RETRY);
            }
            Err(fs::TryLockError::WouldBlock) => return Err(MaildirError::InUse),
            Err(fs::TryLockError::Error(e)) => return Err(err(e)),
        }
    }
}

fn create_dir(path: &Path) -> Result<(), MaildirError> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(io_error(path, e)),
        _ => Ok(()),
    }
}

/// Makes sure `path` is a directory (not a symbolic link to one), creating it if missing.
fn ensure_dir(path: &Path) -> Result<(), MaildirError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(MaildirError::NotADirectory {
                path: path.to_path_buf(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(path, e)),
    }
    create_dir(path)?;
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(MaildirError::NotADirectory {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(io_error(path, e)),
    }
}

/// Makes the removal of entries of directory `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Directories cannot be opened as files here; the removals are as durable as the
        // platform makes them.
        let _ = dir;
        Ok(())
    }
}

mod store;
