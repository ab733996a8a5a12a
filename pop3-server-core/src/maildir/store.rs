//! The Maildir store as a [`MailStore`] backend. Its file I/O is blocking and short (one
//! directory listing at open, buffered reads of one message): fine for the blocking adapter and
//! moderate loads on the async ones.

use super::{CommitError, MaildirDrop, MaildirError, MaildirStore, MessageInfo, MessageReader};
use crate::backend::{self, MailStore, MaildropLock, StoreError};

fn store_error(e: MaildirError) -> StoreError {
    match e {
        MaildirError::InUse => StoreError::InUse,
        MaildirError::NoMailbox | MaildirError::InvalidUser => StoreError::NotFound,
        // A message another client removed, or an I/O failure: worth trying again later.
        other => StoreError::Temporary(other.to_string()),
    }
}

fn commit_error(e: CommitError) -> StoreError {
    StoreError::Temporary(e.to_string())
}

impl MailStore for MaildirStore {
    type Maildrop = MaildirDrop;

    async fn open(&self, user: &str, lock: MaildropLock) -> Result<MaildirDrop, StoreError> {
        MaildirStore::open_with_lock(self, user, lock).map_err(store_error)
    }
}

impl backend::Maildrop for MaildirDrop {
    type Reader = MessageReader;

    fn messages(&self) -> &[MessageInfo] {
        MaildirDrop::messages(self)
    }

    async fn open_message(
        &mut self,
        index: usize,
        top: Option<u64>,
    ) -> Result<MessageReader, StoreError> {
        match top {
            None => MaildirDrop::open_message(self, index),
            Some(n) => MaildirDrop::open_top(self, index, n),
        }
        .map_err(store_error)
    }

    async fn commit(self, delete: Vec<usize>) -> Result<(), StoreError> {
        MaildirDrop::commit(self, &delete).map_err(commit_error)
    }
}

impl backend::MessageReader for MessageReader {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::io::Read::read(self, buf)
    }
}
