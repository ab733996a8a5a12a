//! Maildir and mbox: the `sink` module (durable local storage with its record) behind
//! [`Target`].

use std::collections::HashSet;
use std::io;
use std::path::Path;

use super::{MessageInfo, Outcome, Owner, Target, begun};
use crate::sink::Sink;

/// A Maildir or an mbox.
pub(crate) struct Local {
    sink: Sink,
    /// The key of the message begun.
    current: Option<String>,
}

impl Local {
    /// A Maildir (created if missing).
    pub(crate) fn maildir(dir: &Path, owner: &Owner<'_>) -> Result<Local, String> {
        Ok(Local {
            sink: Sink::maildir(dir, owner.host, owner.user)?,
            current: None,
        })
    }

    /// An mbox (created if missing), locked while the target lives.
    pub(crate) fn mbox(file: &Path, owner: &Owner<'_>) -> Result<Local, String> {
        Ok(Local {
            sink: Sink::mbox(file, owner.host, owner.user)?,
            current: None,
        })
    }
}

impl Target for Local {
    fn has(&self, key: &str) -> bool {
        self.sink.has(key)
    }

    fn begin(&mut self, msg: &MessageInfo<'_>) -> io::Result<()> {
        self.sink.begin(msg.key)?;
        self.current = Some(msg.key.to_string());
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.sink.write(data)
    }

    fn finish(&mut self) -> io::Result<Outcome> {
        let key = begun(self.current.take())?;
        // An mbox message is durable now, a Maildir one with its batch (at the latest at
        // `sync`).
        self.sink.finish(&key)?;
        Ok(Outcome::Stored)
    }

    fn abort(&mut self) {
        self.current = None;
        self.sink.abort();
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sink.sync_record()
    }

    fn compact(&mut self, live: &HashSet<String>) -> io::Result<()> {
        self.sink.compact(live)
    }

    fn import(&mut self, keys: &[String]) -> io::Result<()> {
        self.sink.record_stored(keys)
    }
}
