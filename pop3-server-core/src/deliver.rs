//! Delivery: how new mail gets into a maildrop. [`Deliver`] is the store capability that the
//! LMTP listener, the `pop3 deliver` MDA and a fetcher's local targets all use, so that every
//! way in has the same guarantee: [`Deliver::deliver`] returns `Ok` only once the message is
//! durable (it survives a crash or a power cut from that moment), and a message is never
//! half-delivered: either the whole message is in the maildrop with its unique-id, or nothing is.
//!
//! The shipped implementations are the Maildir store (a file written in `tmp/`, synced, renamed
//! into `new/`, the directory synced: the Maildir protocol) and the PostgreSQL store of the
//! `pop3-store-postgres` crate.

use std::future::Future;

use pop3_proto::Uid;

/// Why a delivery (or a recipient) was refused. The LMTP listener maps these onto replies:
/// [`NoSuchUser`](DeliverError::NoSuchUser) is `550 5.1.1`, [`TooBig`](DeliverError::TooBig)
/// `552 5.3.4`, [`Temporary`](DeliverError::Temporary) `451 4.3.0` (the sender tries again),
/// [`Permanent`](DeliverError::Permanent) `554 5.3.0`; `pop3 deliver` onto the exit codes of
/// `sysexits.h` (`EX_NOUSER` 67, `EX_DATAERR` 65, `EX_TEMPFAIL` 75, `EX_UNAVAILABLE` 69).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeliverError {
    /// No such user (or a name that can never be one).
    #[error("no such user")]
    NoSuchUser,
    /// The message is larger than the store accepts.
    #[error("message too big")]
    TooBig,
    /// A failure that may go away: the message was not stored, try again later.
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// A failure that will not go away by itself: the message was not stored.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

impl DeliverError {
    /// Whether trying the same delivery again later may succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(self, DeliverError::Temporary(_))
    }
}

/// A message stored by [`Deliver::deliver`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivered {
    /// The unique-id (UIDL) the message was given. It is assigned once, at delivery, and
    /// never reused for another message of the same user.
    pub uid: Uid,
    /// Its size as POP3 counts it: octets with every line end as CRLF.
    pub size: u64,
}

impl Delivered {
    /// A delivery record (for implementations of [`Deliver`] outside this crate).
    pub fn new(uid: Uid, size: u64) -> Delivered {
        Delivered { uid, size }
    }
}

/// A store that accepts new mail.
///
/// # The contract
///
/// - [`deliver`](Self::deliver) returns `Ok` only after the message is durable; on `Err`,
///   nothing of it is visible to any session, now or after a crash.
/// - The message is given as octets with line ends CRLF or LF (a mix is allowed); the store
///   keeps the octets and may change only the line-end convention. A POP3 session later
///   sees it with CRLF line ends.
/// - A new message never appears in a snapshot already taken (see
///   [`MailStore`](crate::backend::MailStore)): it is in the next session's.
/// - Each call stores one copy: an LMTP transaction for three users calls it three times.
///   Retrying after a `Temporary` error can store the message twice only if the first call
///   succeeded and its answer was lost, as with every MTA.
///
/// ```
/// use pop3_server_core::deliver::Deliver;
/// use pop3_server_core::maildir::MaildirStore;
///
/// let root = tempfile::tempdir().unwrap();
/// std::fs::create_dir(root.path().join("alice")).unwrap();
/// let store = MaildirStore::new(root.path());
/// let stored = pop3_server_core::block_on(store.deliver("alice", b"Subject: hi\n\nHello\n"));
/// assert_eq!(stored.unwrap().size, 22); // 19 octets, 3 line ends counted as CRLF
/// ```
pub trait Deliver: Send + Sync + 'static {
    /// Whether `user` can receive mail: `Ok` if so, [`DeliverError::NoSuchUser`] if not. The
    /// LMTP listener asks at `RCPT TO`, so that a message for nobody is refused before its
    /// data is sent.
    fn recipient(&self, user: &str) -> impl Future<Output = Result<(), DeliverError>> + Send;

    /// Stores `message` in `user`'s maildrop, durably, and returns the unique-id it got.
    fn deliver(
        &self,
        user: &str,
        message: &[u8],
    ) -> impl Future<Output = Result<Delivered, DeliverError>> + Send;
}
