//! In-memory backends, for tests of this crate and of embedders: a [`MemoryStore`] of
//! maildrops and a [`MemoryAuthenticator`] of plaintext passwords (which can do every
//! mechanism).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use pop3_proto::sasl::{
    CredentialAnswer, CredentialRequest, OAuthError, ScramCredentials, verify_apop, verify_cram_md5,
};
use pop3_proto::{ApopDigest, Mechanism, Timestamp, Uid};
use subtle::ConstantTimeEq;

use crate::backend::*;

#[derive(Debug, Default)]
struct Mailbox {
    messages: Vec<(Uid, Arc<Vec<u8>>)>,
    /// A session holds it with [`MaildropLock::Exclusive`].
    exclusive: bool,
    /// How many sessions hold it with [`MaildropLock::Snapshot`].
    snapshots: usize,
}

#[derive(Debug, Default)]
struct StoreInner {
    boxes: HashMap<String, Mailbox>,
    /// Fail the next commit after deleting this many messages (for tests of failed commits).
    fail_commit_after: Option<usize>,
}

/// Maildrops held in memory. Cloning shares the same store.
///
/// Both [`MaildropLock`] modes: an exclusive session keeps every other session out (and is
/// refused while any is in); snapshot sessions run side by side, each on the messages as they
/// were at its login (which it can still read after another session removed them), and a
/// commit skips what another session already removed.
///
/// ```
/// use pop3_server_core::memory::MemoryStore;
/// let store = MemoryStore::new();
/// store.add_message("alice", "uid-1", b"Subject: hi\r\n\r\nHello\r\n");
/// assert_eq!(store.message_count("alice"), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<StoreInner>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, StoreInner> {
        // A panic elsewhere while holding the lock leaves plain data behind: keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a message (CRLF line ends expected) to `user`'s maildrop, creating it.
    /// Messages added while a session has the maildrop open are not in its snapshot.
    ///
    /// # Panics
    /// If `uid` is not a valid unique-id.
    pub fn add_message(&self, user: &str, uid: &str, message: &[u8]) {
        #[allow(clippy::expect_used)]
        let uid = Uid::new(uid).expect("valid unique-id");
        self.lock()
            .boxes
            .entry(user.to_string())
            .or_default()
            .messages
            .push((uid, Arc::new(message.to_vec())));
    }

    /// Creates an empty maildrop for `user`.
    pub fn add_user(&self, user: &str) {
        self.lock().boxes.entry(user.to_string()).or_default();
    }

    /// How many messages `user` has.
    pub fn message_count(&self, user: &str) -> usize {
        self.lock().boxes.get(user).map_or(0, |b| b.messages.len())
    }

    /// The unique-ids of `user`'s messages.
    pub fn uids(&self, user: &str) -> Vec<String> {
        self.lock()
            .boxes
            .get(user)
            .map(|b| {
                b.messages
                    .iter()
                    .map(|(u, _)| u.as_str().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `user`'s maildrop is open in a session, in either [`MaildropLock`] mode.
    pub fn is_locked(&self, user: &str) -> bool {
        self.open_sessions(user) > 0
    }

    /// How many sessions have `user`'s maildrop open, in either [`MaildropLock`] mode.
    pub fn open_sessions(&self, user: &str) -> usize {
        self.lock()
            .boxes
            .get(user)
            .map_or(0, |b| usize::from(b.exclusive) + b.snapshots)
    }

    /// Makes the next commit fail after removing `n` of its messages.
    pub fn fail_next_commit_after(&self, n: usize) {
        self.lock().fail_commit_after = Some(n);
    }
}

/// An open [`MemoryStore`] maildrop.
#[derive(Debug)]
pub struct MemoryMaildrop {
    store: MemoryStore,
    user: String,
    lock: MaildropLock,
    snapshot: Vec<(Uid, Arc<Vec<u8>>)>,
    infos: Vec<MessageInfo>,
}

impl Drop for MemoryMaildrop {
    fn drop(&mut self) {
        if let Some(b) = self.store.lock().boxes.get_mut(&self.user) {
            match self.lock {
                MaildropLock::Exclusive => b.exclusive = false,
                MaildropLock::Snapshot => b.snapshots = b.snapshots.saturating_sub(1),
            }
        }
    }
}

impl MailStore for MemoryStore {
    type Maildrop = MemoryMaildrop;

    async fn open(&self, user: &str, lock: MaildropLock) -> Result<MemoryMaildrop, StoreError> {
        let snapshot = {
            let mut inner = self.lock();
            let b = inner.boxes.get_mut(user).ok_or(StoreError::NotFound)?;
            match lock {
                MaildropLock::Exclusive if b.exclusive || b.snapshots > 0 => {
                    return Err(StoreError::InUse);
                }
                MaildropLock::Exclusive => b.exclusive = true,
                MaildropLock::Snapshot if b.exclusive => return Err(StoreError::InUse),
                MaildropLock::Snapshot => b.snapshots += 1,
            }
            b.messages.clone()
        };
        let infos = snapshot
            .iter()
            .map(|(uid, m)| MessageInfo {
                uid: uid.clone(),
                size: m.len() as u64,
            })
            .collect();
        Ok(MemoryMaildrop {
            store: self.clone(),
            user: user.to_string(),
            lock,
            snapshot,
            infos,
        })
    }
}

/// Reads one in-memory message.
#[derive(Debug)]
pub struct MemoryReader {
    data: Arc<Vec<u8>>,
    pos: usize,
    end: usize,
}

impl MessageReader for MemoryReader {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.end - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The length of the headers, the blank line and `lines` body lines of a CRLF message.
pub fn top_len(message: &[u8], lines: u64) -> usize {
    let mut end = match memchr::memmem::find(message, b"\r\n\r\n") {
        Some(p) => p + 4,
        // No body: the whole message is headers.
        None => return message.len(),
    };
    for _ in 0..lines {
        match memchr::memchr(b'\n', &message[end..]) {
            Some(p) => end += p + 1,
            None => return message.len(),
        }
    }
    end
}

impl Maildrop for MemoryMaildrop {
    type Reader = MemoryReader;

    fn messages(&self) -> &[MessageInfo] {
        &self.infos
    }

    async fn open_message(
        &mut self,
        index: usize,
        top: Option<u64>,
    ) -> Result<MemoryReader, StoreError> {
        let (_, data) = self
            .snapshot
            .get(index)
            .ok_or_else(|| StoreError::Permanent("no such message".into()))?;
        let end = match top {
            Some(n) => top_len(data, n),
            None => data.len(),
        };
        Ok(MemoryReader {
            data: data.clone(),
            pos: 0,
            end,
        })
    }

    async fn commit(self, delete: Vec<usize>) -> Result<(), StoreError> {
        let mut inner = self.store.lock();
        let mut budget = inner.fail_commit_after.take();
        let uids: Vec<Uid> = delete
            .iter()
            .filter_map(|&i| self.snapshot.get(i).map(|(u, _)| u.clone()))
            .collect();
        let Some(b) = inner.boxes.get_mut(&self.user) else {
            return Err(StoreError::Temporary("maildrop vanished".into()));
        };
        for uid in uids {
            if let Some(left) = budget.as_mut() {
                if *left == 0 {
                    return Err(StoreError::Temporary("injected commit failure".into()));
                }
                *left -= 1;
            }
            // Already gone (another session removed it): nothing to do, and no failure.
            b.messages.retain(|(u, _)| *u != uid);
        }
        Ok(())
    }
}

/// Users with plaintext passwords, held in memory: every mechanism works for them.
#[derive(Debug, Clone, Default)]
pub struct MemoryAuthenticator {
    users: HashMap<String, String>,
}

impl MemoryAuthenticator {
    /// No users.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a user.
    pub fn add_user(&mut self, user: &str, password: &str) {
        self.users.insert(user.to_string(), password.to_string());
    }

    /// Builder form of [`MemoryAuthenticator::add_user`].
    pub fn with_user(mut self, user: &str, password: &str) -> Self {
        self.add_user(user, password);
        self
    }

    fn password(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(String::as_str)
    }
}

impl Authenticator for MemoryAuthenticator {
    async fn verify_password(&self, user: &str, password: &[u8]) -> Result<bool, StoreError> {
        // Compare against something even for unknown users, so both take the same path.
        let stored = self.password(user);
        let ok: bool = stored.unwrap_or("").as_bytes().ct_eq(password).into();
        Ok(ok && stored.is_some())
    }

    async fn verify_apop(
        &self,
        user: &str,
        timestamp: &Timestamp,
        digest: &ApopDigest,
    ) -> Result<bool, StoreError> {
        Ok(self
            .password(user)
            .is_some_and(|p| verify_apop(timestamp, p.as_bytes(), digest)))
    }

    async fn sasl(&self, request: &CredentialRequest) -> Result<CredentialAnswer, StoreError> {
        Ok(match request {
            CredentialRequest::Password { user, password, .. } => CredentialAnswer::Verified(
                self.verify_password(user, password.expose_secret().as_bytes())
                    .await?,
            ),
            CredentialRequest::CramMd5 {
                user,
                challenge,
                digest,
            } => CredentialAnswer::Verified(
                self.password(user)
                    .is_some_and(|p| verify_cram_md5(p.as_bytes(), challenge, digest)),
            ),
            CredentialRequest::Scram { user } => {
                CredentialAnswer::Scram(self.password(user).map(|p| {
                    // A per-user salt, stable so that repeated logins look alike.
                    let salt = format!("pop3-memory-{user}");
                    ScramCredentials::derive(p.as_bytes(), salt.as_bytes(), 4096)
                }))
            }
            // In memory, a user's token is their password.
            CredentialRequest::Token { user, token } => CredentialAnswer::Token(
                if self.password(user) == Some(token.expose_secret().as_str()) {
                    Ok(())
                } else {
                    Err(OAuthError::new("invalid_token"))
                },
            ),
            _ => CredentialAnswer::Verified(false),
        })
    }

    fn mechanisms(&self) -> Vec<Mechanism> {
        [
            "SCRAM-SHA-256",
            "CRAM-MD5",
            "PLAIN",
            "LOGIN",
            "XOAUTH2",
            "OAUTHBEARER",
        ]
        .iter()
        .filter_map(|m| Mechanism::new(*m).ok())
        .collect()
    }

    fn apop(&self) -> bool {
        true
    }
}
