//! Delivery into a Maildir ([`Deliver`] for [`MaildirStore`]): the Maildir protocol. The
//! message is written under a new unique name in `tmp/`, synced, renamed into `new/`, and
//! `new/` is synced; only then is it delivered. A crash before the rename leaves a file in
//! `tmp/` that no reader lists.
//!
//! Files are stored with LF line ends, as Dovecot, Courier and procmail store them, and the
//! unique name carries Dovecot's `,S=` (file length) and `,W=` (CRLF size) fields, so that the
//! next POP3 session knows the message's size without reading it.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::name::{uid_for, valid_user};
use super::{MaildirStore, ensure_dir, sync_dir};
use crate::deliver::{Deliver, DeliverError, Delivered};

/// Deliveries by this process: the `Q` part of unique names, so that two deliveries in the
/// same microsecond still get different names.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// `message` with every CRLF turned into LF (a bare CR is kept), and its size with every line
/// end counted as CRLF.
fn to_lf(message: &[u8]) -> (Vec<u8>, u64) {
    let mut out = Vec::with_capacity(message.len());
    let mut line_ends = 0u64;
    let mut start = 0;
    for i in memchr::memchr_iter(b'\n', message) {
        let end = if i > start && message[i - 1] == b'\r' {
            i - 1
        } else {
            i
        };
        out.extend_from_slice(&message[start..end]);
        out.push(b'\n');
        line_ends += 1;
        start = i + 1;
    }
    out.extend_from_slice(&message[start..]);
    let size = out.len() as u64 + line_ends;
    (out, size)
}

/// This host's name for unique names, with the characters Maildir reserves (`/`, `:`) and
/// anything unprintable replaced, as the Maildir specification asks.
fn host_part() -> String {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host: String = raw
        .trim()
        .chars()
        .map(|c| match c {
            '/' => "\\057".to_string(),
            ':' => "\\072".to_string(),
            ',' => "\\054".to_string(),
            c if c.is_ascii_graphic() => c.to_string(),
            _ => String::new(),
        })
        .collect();
    if host.is_empty() {
        "localhost".to_string()
    } else {
        host
    }
}

fn io_failure(what: &str, e: io::Error) -> DeliverError {
    DeliverError::Temporary(format!("{what}: {e}"))
}

impl MaildirStore {
    /// The user's maildir, if the user can receive mail (see [`Deliver::recipient`]).
    fn delivery_dir(&self, user: &str) -> Result<std::path::PathBuf, DeliverError> {
        if !valid_user(user) {
            return Err(DeliverError::NoSuchUser);
        }
        let dir = self.root().join(user);
        match fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => Ok(dir),
            Ok(_) => Err(DeliverError::NoSuchUser),
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.create_missing => Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(DeliverError::NoSuchUser),
            Err(e) => Err(io_failure("cannot read the maildir", e)),
        }
    }

    /// [`Deliver::deliver`] on the calling thread.
    pub fn deliver_now(&self, user: &str, message: &[u8]) -> Result<Delivered, DeliverError> {
        let dir = self.delivery_dir(user)?;
        for sub in ["", "tmp", "new", "cur"] {
            ensure_dir(&dir.join(sub)).map_err(|e| DeliverError::Temporary(e.to_string()))?;
        }
        let (data, size) = to_lf(message);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let unique = format!(
            "{}.M{}P{}Q{}.{},S={},W={}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed),
            host_part(),
            data.len(),
            size
        );
        let tmp = dir.join("tmp").join(&unique);
        let new = dir.join("new").join(&unique);
        let written = (|| {
            let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            file.write_all(&data)?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io_failure("cannot write the message", e));
        }
        // A hard link refuses to replace an existing file, unlike rename; the name is unique
        // anyway, so rename is enough and works on every file system.
        if let Err(e) = fs::rename(&tmp, &new) {
            let _ = fs::remove_file(&tmp);
            return Err(io_failure("cannot move the message into new/", e));
        }
        sync_dir(&dir.join("new")).map_err(|e| io_failure("cannot sync new/", e))?;
        Ok(Delivered::new(uid_for(unique.as_bytes()), size))
    }
}

impl Deliver for MaildirStore {
    async fn recipient(&self, user: &str) -> Result<(), DeliverError> {
        self.delivery_dir(user).map(|_| ())
    }

    async fn deliver(&self, user: &str, message: &[u8]) -> Result<Delivered, DeliverError> {
        self.deliver_now(user, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MaildropLock;

    #[test]
    fn line_ends_become_lf_and_the_size_counts_crlf() {
        assert_eq!(to_lf(b"a\r\nb\nc"), (b"a\nb\nc".to_vec(), 7));
        assert_eq!(to_lf(b"a\rb\r\n"), (b"a\rb\n".to_vec(), 5));
        assert_eq!(to_lf(b""), (Vec::new(), 0));
    }

    #[test]
    fn a_delivered_message_is_in_the_next_snapshot_with_its_uid_and_size() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("alice")).unwrap();
        let store = MaildirStore::new(root.path());
        let before = store
            .open_with_lock("alice", MaildropLock::Snapshot)
            .unwrap();
        let body = b"Subject: one\r\n\r\n8-bit \xe9t\xe9\r\n.dot\r\n";
        let first = store.deliver_now("alice", body).unwrap();
        let second = store.deliver_now("alice", b"Subject: two\n\nx\n").unwrap();
        assert_ne!(first.uid, second.uid);
        assert!(
            before.messages().is_empty(),
            "an open snapshot does not change"
        );
        drop(before);
        let drop = store
            .open_with_lock("alice", MaildropLock::Snapshot)
            .unwrap();
        let listed: Vec<_> = drop
            .messages()
            .iter()
            .map(|m| (m.uid.clone(), m.size))
            .collect();
        assert_eq!(
            listed,
            vec![(first.uid.clone(), body.len() as u64), (second.uid, 19)]
        );
        let mut read = Vec::new();
        io::Read::read_to_end(&mut drop.open_message(0).unwrap(), &mut read).unwrap();
        assert_eq!(read, body);
        assert!(
            fs::read_dir(root.path().join("alice/tmp"))
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[test]
    fn unknown_and_invalid_users_are_refused_and_nothing_is_created() {
        let root = tempfile::tempdir().unwrap();
        let store = MaildirStore::new(root.path());
        assert_eq!(
            store.deliver_now("bob", b"x\n"),
            Err(DeliverError::NoSuchUser)
        );
        assert_eq!(
            store.deliver_now("../x", b"x\n"),
            Err(DeliverError::NoSuchUser)
        );
        assert_eq!(
            crate::block_on(store.recipient("bob")),
            Err(DeliverError::NoSuchUser)
        );
        assert!(fs::read_dir(root.path()).unwrap().next().is_none());
        let store = store.create_missing(true);
        crate::block_on(store.recipient("bob")).unwrap();
        store.deliver_now("bob", b"x\n").unwrap();
        assert!(root.path().join("bob/new").is_dir());
    }
}
