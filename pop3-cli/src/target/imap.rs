//! IMAP APPEND: each message is appended to a mailbox on an IMAP server
//! (`imap = "imaps://user@imap.gmail.com/INBOX"`), and deleted from the POP3 server only once
//! that server answered the APPEND with its tagged `OK`.
//!
//! The IMAP session is [`crate::imap_append`]'s: LOGIN with a password, OAUTHBEARER or
//! XOAUTH2 with a bearer token, `imaps://` TLS from the first byte, `imap://` STARTTLS
//! (required unless `imap_allow_plaintext`). The credentials are the IMAP side's own
//! (`imap_password_command`, `imap_password_file` or `imap_oauth2_token_command`), obtained
//! afresh at each connection (a token command may hand out a new token), never the POP3
//! account's.
//!
//! - The connection is made at the first message to deliver, not at [`open`](Imap::open): a
//!   run with nothing new (a daemon's usual poll) never logs in to the IMAP server, and
//!   `--import-uidls` needs no connection at all. What can be checked without one (the URL,
//!   its user name, the CA file) is checked at `open`, before the POP3 login.
//! - A message is buffered while it arrives (an IMAP literal needs its size up front) and
//!   appended at [`Target::finish`], with the date of its first `Received:` header (else its
//!   `Date:`) as the internal date ([`internal_date_of`]), so that mail clients sorting by
//!   arrival show the original order.
//! - The tagged `OK`: [`Outcome::Stored`]. A `NO`: [`Outcome::Failed`] with the server's
//!   text (the message stays on the POP3 server); a missing mailbox is not created (a typo
//!   would file mail where nobody looks) but named in the report. A connection that fails (or
//!   a connect that fails) is tried once more on a new connection; a second failure is an
//!   `Err`: the fetch stops, deleting only what was stored before. A refused login is an
//!   `Err` at once.
//! - The record lives in the state directory (`imap-<host>-<user>`, the POP3 account's), as
//!   the MDA's and the forwarders' do.
//!
//! Exactly once. IMAP has no way to recognise a message appended twice, and the server goes
//! on storing a message whose last octet it received even when the client is gone (it notices
//! only when it answers). So the window in which a run that dies (SIGKILL, a crash, a power
//! cut) leaves a message stored but not recorded is not the instant between the tagged `OK`
//! and the record's write but most of what an APPEND takes; and a connection that breaks
//! after the server stored the message but before its `OK` arrived leaves the same doubt.
//! Without more, `tests/fetch_imap.rs`'s five SIGKILLs during 50 appends to Dovecot left 0 to
//! 4 duplicates. So:
//!
//! - Before each APPEND the key goes into the record as *pending* (`P <key> <Message-ID>`,
//!   synced), and after the `OK` as delivered (`D <key>`). The `D` line is written (and
//!   synced) with the next message's pending line, or at [`Target::sync`], before any `DELE`:
//!   one sync a message, as before; a crash in between leaves the key pending, which is safe.
//! - A message whose key is pending (handed over by a run that died, or earlier in this run
//!   on a connection that broke) is first looked for in the mailbox
//!   ([`ImapTarget::contains`]: `EXAMINE`, then `UID SEARCH HEADER Message-ID "<id>"`; for a
//!   message without a Message-ID a search by size, `Date:` and `Subject:` whose hits are
//!   fetched and compared with it whole). Found: recorded as delivered, [`Outcome::Stored`],
//!   nothing appended. Not found: appended. The search costs round trips only for pending
//!   keys, so only after a crash or a broken connection.
//! - The residual risks (see `imap_append`'s `identity` submodule): a *different* message
//!   with the same Message-ID already in the mailbox makes a pending one count as delivered
//!   (it is not appended, and is deleted from the POP3 server); likewise two identical
//!   messages without a Message-ID. A server that rewrites messages on APPEND makes the
//!   comparison miss (a duplicate, never a loss); so does a search
//!   that runs while the dead run's server session is still storing the message (it has
//!   milliseconds, the next run takes longer to get there); and a mailbox one may append to
//!   but not read cannot be searched, so there a pending message is appended again.
//!
//! The [`Target`] calls are synchronous, and made from inside the fetch's own (async) runtime
//! on the account's thread, where no second runtime may block. So the target owns a
//! current-thread tokio runtime, and each IMAP step runs on it from a scoped helper thread
//! ([`Imap::block`]) while the account's thread waits, as it waits for an MDA.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::path::PathBuf;

use pop3_tls::Trust;
use zeroize::Zeroizing;

use super::record::{Record, safe};
use super::{MessageInfo, Outcome, Owner, Target};
use crate::imap_append::{
    Identity, ImapAuth, ImapError, ImapTarget, ImapUrl, TlsSettings, internal_date_of,
};

/// The most a message's buffer reserves up front from the announced size.
const RESERVE_LIMIT: u64 = 16 * 1024 * 1024;

/// How the IMAP credentials are obtained (the user name is the URL's).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ImapCredentials {
    /// `imap_password_command`: the first line a shell command prints, for LOGIN.
    PasswordCommand(String),
    /// `imap_password_file`: the file's first line, for LOGIN.
    PasswordFile(PathBuf),
    /// `imap_oauth2_token_command`: an OAuth 2 bearer token from a shell command's first line,
    /// for OAUTHBEARER or XOAUTH2.
    OAuth2TokenCommand(String),
}

/// An `imap` target as configured.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct ImapSpec {
    /// `imaps://user@host[:port]/MAILBOX` (or `imap://`, STARTTLS).
    pub(crate) url: String,
    pub(crate) credentials: ImapCredentials,
    /// `imap_ca_file`: trust the CAs in this PEM file instead of Mozilla's roots.
    pub(crate) ca_file: Option<PathBuf>,
    /// `imap_allow_plaintext`: an `imap://` session without STARTTLS.
    pub(crate) allow_plaintext: bool,
}

/// The IMAP APPEND target.
pub(crate) struct Imap {
    url: ImapUrl,
    credentials: ImapCredentials,
    tls: TlsSettings,
    record: Record,
    /// Runs the IMAP session; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    /// The logged-in session, made at the first message.
    conn: Option<ImapTarget>,
    /// The message begun: its key and octets (CRLF).
    current: Option<(String, Vec<u8>)>,
}

impl Imap {
    /// Checks the URL and the TLS settings, and opens the record of `owner`. No connection.
    pub(crate) fn open(spec: &ImapSpec, owner: &Owner<'_>) -> Result<Imap, String> {
        let url = ImapUrl::parse(&spec.url).map_err(|e| e.to_string())?;
        if url.user.is_none() {
            return Err(format!(
                "the IMAP URL {} names no user: write imaps://user@host/MAILBOX",
                spec.url
            ));
        }
        let trust = match &spec.ca_file {
            Some(ca) => Trust::CaPem(
                std::fs::read(ca)
                    .map_err(|e| format!("cannot read imap_ca_file {}: {e}", ca.display()))?,
            ),
            None => Trust::WebPki,
        };
        // A CA file that holds no certificate fails here, not at the first message.
        pop3_tls::client_config(&trust).map_err(|e| format!("imap_ca_file: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the IMAP runtime: {e}"))?;
        let path = owner
            .state_dir
            .join(format!("imap-{}-{}", safe(owner.host), safe(owner.user)));
        Ok(Imap {
            url,
            credentials: spec.credentials.clone(),
            tls: TlsSettings {
                trust,
                allow_plaintext: spec.allow_plaintext,
            },
            record: Record::open(&path)?,
            runtime: Some(runtime),
            conn: None,
            current: None,
        })
    }

    /// Runs `f` to completion on the target's runtime, from a helper thread: the calling
    /// thread may be inside the fetch's own runtime, where blocking on another is refused.
    fn block<T: Send>(runtime: &tokio::runtime::Runtime, f: impl Future<Output = T> + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| runtime.block_on(f))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// The password or token, as configured: asked for at each connection.
    fn auth(&self) -> Result<ImapAuth, String> {
        let first_line =
            |text: &str| Zeroizing::new(text.lines().next().unwrap_or_default().to_string());
        let run = |cmd: &str, what: &str| -> Result<Zeroizing<String>, String> {
            let out = std::process::Command::new("sh")
                .args(["-c", cmd])
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::inherit())
                .output()
                .map_err(|e| format!("cannot run the {what} {cmd:?}: {e}"))?;
            if !out.status.success() {
                return Err(format!("the {what} {cmd:?} failed ({})", out.status));
            }
            let text =
                Zeroizing::new(String::from_utf8(out.stdout).map_err(|_| {
                    format!("the {what} {cmd:?} printed something that is not UTF-8")
                })?);
            Ok(first_line(&text))
        };
        let auth = match &self.credentials {
            ImapCredentials::PasswordCommand(cmd) => {
                ImapAuth::Password(run(cmd, "imap_password_command")?)
            }
            ImapCredentials::PasswordFile(file) => {
                let text = Zeroizing::new(std::fs::read_to_string(file).map_err(|e| {
                    format!("cannot read imap_password_file {}: {e}", file.display())
                })?);
                ImapAuth::Password(first_line(&text))
            }
            ImapCredentials::OAuth2TokenCommand(cmd) => {
                ImapAuth::OAuth2Token(run(cmd, "imap_oauth2_token_command")?)
            }
        };
        match &auth {
            ImapAuth::Password(s) | ImapAuth::OAuth2Token(s) if s.is_empty() => {
                Err("the IMAP password (or token) is empty".into())
            }
            _ => Ok(auth),
        }
    }

    /// Connects and logs in, unless connected.
    fn connect(&mut self) -> Result<(), ImapError> {
        if self.conn.is_some() {
            return Ok(());
        }
        let auth = self.auth().map_err(ImapError::Auth)?;
        let runtime = self.runtime.as_ref().expect("the runtime lives until drop");
        let conn = Self::block(
            runtime,
            ImapTarget::connect(&self.url, auth, self.tls.clone()),
        )?;
        self.conn = Some(conn);
        Ok(())
    }

    /// One try: connects if need be, and appends; when `look_first`, only if the mailbox
    /// does not hold the message already (or cannot be searched). `Ok(true)`: it was there.
    fn try_append(&mut self, message: &[u8], look_first: bool) -> Result<bool, ImapError> {
        self.connect()?;
        let runtime = self.runtime.as_ref().expect("the runtime lives until drop");
        let conn = self.conn.as_mut().expect("connected");
        let date = internal_date_of(message);
        let result = Self::block(runtime, async {
            if look_first {
                match conn.contains(message).await {
                    Ok(true) => return Ok(true),
                    Ok(false) => {}
                    // Cannot tell (a mailbox one may append to but not read; a missing one,
                    // which the APPEND then names): appended, as without a record.
                    Err(ImapError::Rejected(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            conn.append(message, date).await.map(|()| false)
        });
        if result.as_ref().is_err_and(ImapError::is_connection_error) {
            // Out of step or gone: never used again.
            self.conn = None;
        }
        result
    }

    /// Says LOGOUT and closes the connection, if there is one.
    fn logout(&mut self) {
        if let (Some(conn), Some(runtime)) = (self.conn.take(), self.runtime.as_ref()) {
            let _ = Self::block(runtime, conn.logout());
        }
    }

    /// Where the messages go, for reports: `imap://alice@host:143/INBOX`.
    fn place(&self) -> String {
        format!(
            "{}://{}@{}:{}/{}",
            if self.url.implicit_tls {
                "imaps"
            } else {
                "imap"
            },
            self.url.user.as_deref().unwrap_or_default(),
            self.url.host,
            self.url.port,
            self.url.mailbox
        )
    }
}

impl Drop for Imap {
    fn drop(&mut self) {
        self.logout();
        // Dropping a runtime inside another one's context is refused: shut it down without
        // waiting (nothing runs on it between calls).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Target for Imap {
    fn has(&self, key: &str) -> bool {
        self.record.has(key)
    }

    fn begin(&mut self, msg: &MessageInfo<'_>) -> io::Result<()> {
        let reserve = usize::try_from(msg.size.min(RESERVE_LIMIT)).unwrap_or(0);
        self.current = Some((msg.key.to_string(), Vec::with_capacity(reserve)));
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let (_, buf) = self
            .current
            .as_mut()
            .ok_or_else(|| io::Error::other("no message started"))?;
        buf.extend_from_slice(data);
        Ok(())
    }

    fn finish(&mut self) -> io::Result<Outcome> {
        let (key, message) = self
            .current
            .take()
            .ok_or_else(|| io::Error::other("no message started"))?;
        // Pending: an earlier run handed it over and died (or lost its connection) before the
        // answer; it may be in the mailbox. Otherwise it becomes pending now, durably, before
        // a single octet of it goes out (with the delivered keys noted so far).
        let pending = self.record.pending(&key).is_some();
        if !pending {
            let identity = Identity::of(&message).describe();
            self.record.set_pending(&key, &identity)?;
        }
        let mut result = self.try_append(&message, pending);
        if result.as_ref().is_err_and(ImapError::is_connection_error) {
            // Once more on a new connection (a server restart, an idle timeout). The server
            // may have stored the message before the connection broke: looked for first.
            result = self.try_append(&message, true);
        }
        match result {
            Ok(_found) => {
                // Appended, or found there: delivered. Written and synced with the next
                // pending line, at the latest at `sync`, before any DELE.
                self.record.note(&key);
                Ok(Outcome::Stored)
            }
            Err(e) if e.is_mailbox_missing() => Ok(Outcome::Failed(format!(
                "the mailbox {:?} does not exist on the IMAP server ({}): create it, or fix the \
                 imap URL {} ({e})",
                self.url.mailbox,
                self.url.host,
                self.place()
            ))),
            Err(e @ (ImapError::Rejected(_) | ImapError::InvalidMessage(_))) => {
                Ok(Outcome::Failed(format!("{}: {e}", self.place())))
            }
            Err(e) => Err(io::Error::other(format!("{}: {e}", self.place()))),
        }
    }

    fn abort(&mut self) {
        self.current = None;
    }

    fn sync(&mut self) -> io::Result<()> {
        // The delivered keys not yet written with a pending line.
        self.record.flush()
    }

    fn compact(&mut self, live: &HashSet<String>) -> io::Result<()> {
        self.logout();
        self.record.compact(live)
    }

    fn import(&mut self, keys: &[String]) -> io::Result<()> {
        self.record.add(keys)
    }
}
