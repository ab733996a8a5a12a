//! The backend traits an embedder implements: where the users are ([`Authenticator`]) and
//! where the mail is ([`MailStore`], [`Maildrop`], [`MessageReader`]).
//!
//! They are async-fn traits whose futures are `Send` and tied to no runtime: the tokio and
//! futures adapters await them, the blocking adapter drives them with a small executor. A
//! backend that does blocking file I/O (like the shipped Maildir store) is fine for the
//! blocking adapter and for small installations; a large async deployment can implement the
//! traits over its runtime's own I/O.

use std::future::Future;

use pop3_proto::sasl::{CredentialAnswer, CredentialRequest};
use pop3_proto::{ApopDigest, Mechanism, Timestamp, Uid};

/// A backend failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The maildrop is locked by another session (`-ERR [IN-USE]`, RFC 2449 §8.1.2); see
    /// [`MaildropLock`].
    #[error("maildrop in use")]
    InUse,
    /// There is no maildrop for this user.
    #[error("no such maildrop")]
    NotFound,
    /// A failure that may go away (`-ERR [SYS/TEMP]`, RFC 3206).
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// A failure that needs someone to act (`-ERR [SYS/PERM]`, RFC 3206).
    #[error("permanent failure: {0}")]
    Permanent(String),
}

/// One message of a maildrop snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// Its unique-id (UIDL), stable across sessions.
    pub uid: Uid,
    /// Its exact size in octets as transmitted: CRLF line ends, before dot-stuffing.
    pub size: u64,
}

/// How sessions of one user share the maildrop: the server's
/// [`Policy::maildrop_lock`](crate::session::Policy::maildrop_lock), which the session hands
/// to [`MailStore::open`].
///
/// RFC 1939 (§4, §8) has the server lock the maildrop for the session, so that nothing is
/// changed or removed before UPDATE; a second session then gets `-ERR [IN-USE]` (RFC 2449
/// §8.1.2). That is [`MaildropLock::Exclusive`]. Clients that leave mail on the server on
/// several devices (a phone and a laptop polling the same account) then take turns being
/// refused, so the default is [`MaildropLock::Snapshot`], which is also Dovecot's default
/// (`pop3_lock_session = no`): each session works on the maildrop as it was at login, and
/// removes at QUIT only what it marked. It departs from RFC 1939's lock in one way only: a
/// message can vanish under a session because another session of the same user removed it
/// (reading it may then fail; marking it and committing succeed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MaildropLock {
    /// Sessions of one user run at once. Each sees the snapshot taken at its login (numbers,
    /// sizes and unique-ids fixed for the session, unique-ids the same in every session);
    /// `DELE` then `QUIT` removes only the messages this session marked; a marked message
    /// that another session (or program) removed meanwhile is skipped, and the commit
    /// succeeds. The default.
    #[default]
    Snapshot,
    /// One session per maildrop: a second one is refused with `-ERR [IN-USE]` until the first
    /// ends (RFC 1939's lock).
    Exclusive,
}

/// Where the mail is.
///
/// # The contract of a store
///
/// - [`open`](Self::open) takes the snapshot that fixes message numbers, sizes and
///   unique-ids for the session. A message's unique-id (UIDL) never changes, in this session
///   or any other, whatever else changes (flags, folders).
/// - With [`MaildropLock::Exclusive`], `open` refuses with [`StoreError::InUse`] while another
///   session has the maildrop open, in either mode, and keeps others out until the
///   [`Maildrop`] is dropped or committed.
/// - With [`MaildropLock::Snapshot`], `open` does not refuse because other snapshot sessions
///   have the maildrop open (it may still refuse with [`StoreError::InUse`] while an
///   exclusive one has: that one was promised to be alone). Messages that arrive or are
///   removed afterwards do not change the snapshot; [`Maildrop::open_message`] of a message
///   removed meanwhile may fail.
/// - [`Maildrop::commit`] is idempotent for each message, in both modes: a listed message
///   that is already gone (another session or program removed it) counts as removed, not as
///   a failure. It removes nothing that it was not given.
///
/// The session does the rest (marks, RSET, nothing applied without QUIT), whatever the store.
pub trait MailStore: Send + Sync + 'static {
    /// An open maildrop.
    type Maildrop: Maildrop;

    /// Opens `user`'s maildrop, taking the snapshot that fixes message numbers for the
    /// session, under the `lock` mode's rules (see the [trait documentation](MailStore)): with
    /// [`MaildropLock::Exclusive`], a maildrop already open elsewhere is
    /// [`StoreError::InUse`].
    fn open(
        &self,
        user: &str,
        lock: MaildropLock,
    ) -> impl Future<Output = Result<Self::Maildrop, StoreError>> + Send;
}

/// An open maildrop. Dropping it releases its lock (if it took one) without changing anything.
pub trait Maildrop: Send + 'static {
    /// Streams one message.
    type Reader: MessageReader;

    /// The snapshot taken when it was opened, in message-number order.
    fn messages(&self) -> &[MessageInfo];

    /// Opens message `index` (0-based) for reading: the whole message, or for `top: Some(n)`
    /// the headers, the blank line and `n` body lines (RFC 1939 §7).
    fn open_message(
        &mut self,
        index: usize,
        top: Option<u64>,
    ) -> impl Future<Output = Result<Self::Reader, StoreError>> + Send;

    /// Removes the messages at these indexes (UPDATE, RFC 1939 §6). A message already gone
    /// (removed by another session or program since the snapshot) counts as removed: that is
    /// success. On failure nothing that was not listed may be removed, and what was not
    /// removed stays intact.
    fn commit(self, delete: Vec<usize>) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A message's octets, CRLF line ends, not dot-stuffed.
pub trait MessageReader: Send {
    /// Reads into `buf`; `Ok(0)` at the end.
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = std::io::Result<usize>> + Send;
}

/// Where the users are.
pub trait Authenticator: Send + Sync + 'static {
    /// Checks a `USER`/`PASS` password. Unknown users and wrong passwords must look the same
    /// (answer `false`, in comparable time).
    fn verify_password(
        &self,
        user: &str,
        password: &[u8],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Checks an APOP digest against this connection's timestamp. `false` when the stored
    /// secret cannot do APOP.
    fn verify_apop(
        &self,
        user: &str,
        timestamp: &Timestamp,
        digest: &ApopDigest,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Answers a SASL mechanism's credential check.
    fn sasl(
        &self,
        request: &CredentialRequest,
    ) -> impl Future<Output = Result<CredentialAnswer, StoreError>> + Send;

    /// The SASL mechanisms this backend can serve (the server's plaintext policy then filters
    /// them).
    fn mechanisms(&self) -> Vec<Mechanism>;

    /// Whether APOP can work for at least some users.
    fn apop(&self) -> bool;

    /// Whether `user` may act as `authzid` (a SASL authorization identity). Default: only as
    /// themselves.
    fn authorize(&self, user: &str, authzid: &str) -> bool {
        user == authzid
    }
}
