//! Where `pop3 fetch` delivers: one trait, [`Target`], with a module per kind (DESIGN §6).
//!
//! The fetch loop sees only the trait: it asks whether a message is already delivered
//! ([`Target::has`]), streams each new one through [`Target::begin`], [`Target::write`] (the
//! octets as POP3 delivers them: CRLF line ends, dot-unstuffed) and [`Target::finish`], makes
//! what was accepted durable with [`Target::sync`] before it sends any `DELE`, and at the end
//! tells the target which keys are still on the server ([`Target::compact`]).
//!
//! - [`local`]: a Maildir or an mbox (the `sink` module), durable on the local disk;
//! - [`mda`]: a command (`procmail -d %u`) fed the whole message, spooled first, on its
//!   standard input, its exit status the answer;
//! - [`forward`]: LMTP or SMTP to a recipient (on `pop3-lmtp`'s client machine), the `250` the
//!   answer;
//! - [`imap`]: IMAP APPEND into a mailbox, the tagged `OK` the answer.
//!
//! A network target learns what it needs from the message itself: [`Envelope`] picks the
//! envelope sender (`Return-Path:`) out of the header as it streams by, the IMAP target the
//! date, and [`MessageInfo::size`] gives the size the server announced.
//!
//! What a kill can do to each (SIGKILL between the target's acceptance and the record's
//! fsync): Maildir, mbox and IMAP deliver exactly once (IMAP by a pending record and a search
//! of the mailbox before appending again); an MDA, LMTP or SMTP server that accepted a message
//! in that window gets it again on the next run, since neither protocol can be asked whether a
//! message arrived (the MDA is given the key, `%k` and `POP3_FETCH_KEY`, to drop such a
//! duplicate itself). `tests/fetch_kill.rs` and `tests/fetch_imap.rs` measure it.
//!
//! The calls are synchronous: the fetch loop runs each account on a thread of its own, so a
//! target may block (a pipe to a slow MDA, a network round trip) without holding up another
//! account. Only the POP3 connection of that account waits.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

pub(crate) mod forward;
pub(crate) mod imap;
pub(crate) mod local;
pub(crate) mod mda;
pub(crate) mod record;

/// What a target is told about a message it begins.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MessageInfo<'a> {
    /// The dedup key: a hash of (host, user, UIDL), see `sink::key`.
    pub(crate) key: &'a str,
    /// The server's UIDL, when it has them.
    pub(crate) uidl: Option<&'a str>,
    /// The size the server announced in `LIST` (CRLF octets; a hint, not a promise).
    pub(crate) size: u64,
}

/// What became of a message at [`Target::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Accepted: durable at the latest when the next [`Target::sync`] returns, after which the
    /// fetch may delete it from the server.
    Stored,
    /// The target asks to be tried again later (an MDA's exit 75, `EX_TEMPFAIL`; an LMTP or
    /// SMTP 4xx): the message stays on the server for the next run.
    Deferred(String),
    /// The target refused the message (another exit status; a 5xx): it stays on the server
    /// and the run reports a failure.
    Failed(String),
}

/// A delivery target. An `Err` from a method is a failure of the target itself (a full
/// disk, a lost connection): the fetch stops, deleting only what was stored before it.
pub(crate) trait Target: Send {
    /// Whether the message with this key was delivered by this or an earlier run.
    fn has(&self, key: &str) -> bool;

    /// Starts a message.
    fn begin(&mut self, msg: &MessageInfo<'_>) -> io::Result<()>;

    /// The next octets of the message begun: CRLF line ends, dot-unstuffed, split anywhere.
    fn write(&mut self, data: &[u8]) -> io::Result<()>;

    /// Ends the message begun: whether the target took it.
    fn finish(&mut self) -> io::Result<Outcome>;

    /// Drops the message begun (the server stopped sending it): nothing of it may be
    /// delivered.
    fn abort(&mut self);

    /// Makes every message finished as [`Outcome::Stored`] durable and recorded. Called before
    /// any `DELE`.
    fn sync(&mut self) -> io::Result<()>;

    /// The run is over: `live` holds the keys of the messages still on the server, the only
    /// ones the record must remember.
    fn compact(&mut self, live: &HashSet<String>) -> io::Result<()>;

    /// Records `keys` as delivered without delivering anything (`--import-uidls`: another
    /// fetcher delivered them). Durable when it returns.
    fn import(&mut self, keys: &[String]) -> io::Result<()>;
}

/// Where an account's mail goes, as configured.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TargetSpec {
    /// A Maildir directory.
    Maildir(PathBuf),
    /// An mbox file (mboxrd).
    Mbox(PathBuf),
    /// A shell command, `%u` the user, `%a` the account, `%k` the message's key.
    Mda(String),
    /// `lmtp://host:24` or `lmtp:///path/to/socket`, to `recipient`.
    Lmtp { url: String, recipient: String },
    /// `smtp://host:25` (or `smtps://`), to `recipient`.
    Smtp { url: String, recipient: String },
    /// `imaps://user@host/MAILBOX`, with its credentials and TLS settings.
    Imap(imap::ImapSpec),
}

impl TargetSpec {
    /// `maildir ~/Mail`, for messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            TargetSpec::Maildir(p) => format!("maildir {}", p.display()),
            TargetSpec::Mbox(p) => format!("mbox {}", p.display()),
            TargetSpec::Mda(c) => format!("mda {c:?}"),
            TargetSpec::Lmtp { url, recipient } => format!("lmtp {url} for {recipient}"),
            TargetSpec::Smtp { url, recipient } => format!("smtp {url} for {recipient}"),
            TargetSpec::Imap(spec) => format!("imap {}", spec.url),
        }
    }
}

/// Who is fetched, for the targets that record or substitute it.
pub(crate) struct Owner<'a> {
    /// The POP3 server's host, as in the URL.
    pub(crate) host: &'a str,
    /// The POP3 user.
    pub(crate) user: &'a str,
    /// The account's name (`%a`).
    pub(crate) account: &'a str,
    /// Where targets without a place of their own keep their record (the MDA's).
    pub(crate) state_dir: &'a Path,
}

/// Opens (and locks) the target, before any connection is made: a locked or unwritable
/// destination fails the run before a login.
pub(crate) fn open(spec: &TargetSpec, owner: &Owner<'_>) -> Result<Box<dyn Target>, String> {
    match spec {
        TargetSpec::Maildir(dir) => Ok(Box::new(local::Local::maildir(dir, owner)?)),
        TargetSpec::Mbox(file) => Ok(Box::new(local::Local::mbox(file, owner)?)),
        TargetSpec::Mda(cmd) => Ok(Box::new(mda::Mda::open(cmd, owner)?)),
        TargetSpec::Lmtp { .. } | TargetSpec::Smtp { .. } => {
            Ok(Box::new(forward::Forward::open(spec, owner)?))
        }
        TargetSpec::Imap(imap) => Ok(Box::new(imap::Imap::open(imap, owner)?)),
    }
}

/// The message begun (a target's `current`, taken or borrowed), or the error of a
/// [`Target::write`] or [`Target::finish`] without a [`Target::begin`].
pub(crate) fn begun<T>(current: Option<T>) -> io::Result<T> {
    current.ok_or_else(|| io::Error::other("no message started"))
}

/// Turns CRLF into LF across chunk boundaries (a CR alone is kept), a span at a time: the
/// converter of the local mbox and Maildir, for the targets that hand a message on with LF.
pub(crate) use crate::sink::Unixify as ToLf;

/// Headers longer than this are not searched by [`Envelope`].
const HEADER_LIMIT: usize = 64 * 1024;

/// The envelope sender a forwarding target needs, read from the header as the message streams
/// by (`Return-Path:`, the address inside `<>`; `<>` gives an empty sender).
#[derive(Debug, Default)]
pub(crate) struct Envelope {
    /// The header so far (up to the blank line or [`HEADER_LIMIT`]).
    header: Vec<u8>,
    done: bool,
}

impl Envelope {
    /// The next octets of the message.
    pub(crate) fn feed(&mut self, data: &[u8]) {
        if self.done {
            return;
        }
        let room = HEADER_LIMIT - self.header.len();
        self.header.extend_from_slice(&data[..data.len().min(room)]);
        if memchr::memmem::find(&self.header, b"\n\r\n").is_some()
            || memchr::memmem::find(&self.header, b"\n\n").is_some()
            || self.header.starts_with(b"\r\n")
            || self.header.len() >= HEADER_LIMIT
        {
            self.done = true;
        }
    }

    /// The unfolded value of the first header field called `name`.
    fn field(&self, name: &str) -> Option<String> {
        let mut value: Option<String> = None;
        for line in self.header.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                break;
            }
            if let Some(v) = &mut value {
                if line[0] == b' ' || line[0] == b'\t' {
                    v.push_str(&String::from_utf8_lossy(line));
                    continue;
                }
                break;
            }
            if line.len() > name.len()
                && line[name.len()] == b':'
                && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            {
                value = Some(String::from_utf8_lossy(&line[name.len() + 1..]).into_owned());
            }
        }
        value.map(|v| v.trim().to_string())
    }

    /// The envelope sender from `Return-Path:`: `Some("")` for `<>`, `None` without one.
    pub(crate) fn sender(&self) -> Option<String> {
        let v = self.field("Return-Path")?;
        Some(match (v.find('<'), v.rfind('>')) {
            (Some(i), Some(j)) if i < j => v[i + 1..j].trim().to_string(),
            _ => v.split_whitespace().next().unwrap_or_default().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_from_the_header() {
        let mut e = Envelope::default();
        for chunk in [
            &b"Received: x\r\nReturn-Pa"[..],
            b"th: <bounce@example.com>\r\nDate: Thu, 1 Jan 2026\r\n 10:00:00 +0000\r\n",
            b"\r\nReturn-Path: <body@example.com>\r\n",
        ] {
            e.feed(chunk);
        }
        assert_eq!(e.sender().as_deref(), Some("bounce@example.com"));
        let mut e = Envelope::default();
        e.feed(b"Return-Path: <>\r\n\r\nbody\r\n");
        assert_eq!(e.sender().as_deref(), Some(""));
    }
}
