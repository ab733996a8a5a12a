//! Delivery of fetched messages into an IMAP mailbox with APPEND: the future
//! `imap = "imaps://user@imap.gmail.com/INBOX"` target of `pop3 fetch` (issue 15), for people
//! leaving Gmail's POP3 fetching who want their mail moved POP3 → IMAP, with OAuth 2 where the
//! IMAP server wants it.
//!
//! ```ignore
//! let url = ImapUrl::parse("imaps://me%40gmail.com@imap.gmail.com/INBOX")?;
//! let tls = TlsSettings { trust: Trust::WebPki, allow_plaintext: false };
//! let mut target = ImapTarget::connect(&url, ImapAuth::OAuth2Token(token), tls).await?;
//! target.append(&message, internal_date_of(&message)).await?; // Ok only after the tagged OK
//! target.logout().await?;
//! ```
//!
//! - IMAP itself is [imap-next]'s sans-IO client (command sending, literals and their
//!   continuation requests, the AUTHENTICATE exchange) over [imap-codec]'s encoder and parser;
//!   this module only drives it over tokio (a TCP stream, or tokio-rustls over one) with a
//!   timeout on every read and write. No IMAP is parsed or printed by hand here.
//! - TLS: `imaps://` is TLS from the first byte; `imap://` must upgrade with STARTTLS before
//!   anything else, unless [`TlsSettings::allow_plaintext`]. Certificates are checked as
//!   `pop3 fetch` checks them ([`pop3_tls::client_config`] and its [`Trust`]).
//! - Authentication: LOGIN with a password; with a bearer token OAUTHBEARER (RFC 7628) when the
//!   server lists `AUTH=OAUTHBEARER`, else XOAUTH2 (Google's, also Microsoft's), with the
//!   initial response on the command line when the server has SASL-IR. Neither a password nor
//!   a token is ever sent over a connection without TLS unless plaintext was allowed.
//! - APPEND uses a non-synchronising literal (`{n+}`) when the server has LITERAL+ (or LITERAL-
//!   and the message is at most 4096 bytes), otherwise waits for the server's `+` before
//!   the message. A message with NUL bytes goes as a `literal8` to a server with BINARY, and
//!   is refused otherwise.
//! - [`ImapTarget::contains`] asks whether a message is already in the mailbox (`EXAMINE`, then
//!   `UID SEARCH HEADER Message-ID`, or for a message without one a search by size, date and
//!   subject whose hits' headers are compared): what a run asks, before appending again, about
//!   a message that an earlier run (killed, or cut off from the server) handed over without
//!   seeing the answer. See the `identity` submodule for what counts as the same message.
//! - A missing mailbox (`NO [TRYCREATE]`) is [`ImapError::Rejected`]: it is *not* created.
//!   A typo in the configured mailbox would otherwise file mail, then deleted from the POP3
//!   server, into a folder nobody looks at; refusing keeps it on the POP3 server until the
//!   user fixes the name or creates the mailbox (a Gmail label is such a mailbox).
//!   [`ImapError::is_mailbox_missing`] tells this case apart for a helpful message.
//!
//! [imap-next]: https://docs.rs/imap-next
//! [imap-codec]: https://docs.rs/imap-codec

mod date;
mod header;
mod identity;
#[cfg(test)]
mod tests;
mod url;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use imap_next::client::{Client, Event, Options};
use imap_next::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_next::imap_types::command::{Command, CommandBody};
use imap_next::imap_types::core::{Literal, LiteralMode, Tag};
use imap_next::imap_types::extensions::binary::{Literal8, LiteralOrLiteral8};
use imap_next::imap_types::fetch::{MessageDataItem, MessageDataItemName};
use imap_next::imap_types::mailbox::Mailbox;
use imap_next::imap_types::response::{
    Capability, Code, CommandContinuationRequest, Data, GreetingKind, Status, StatusBody,
    StatusKind,
};
use imap_next::{Interrupt, Io, State};
use pop3_tls::Trust;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

pub(crate) use identity::Identity;
/// The IMAP date-time of an APPEND (RFC 3501 `date-time`): a `chrono::DateTime<FixedOffset>`
/// with whole seconds and a year from 0 to 9999, as imap-types wants it.
pub(crate) use imap_next::imap_types::datetime::DateTime;
pub(crate) use url::ImapUrl;

/// The internal date for the APPEND of `message`: the date of its first `Received:` header
/// (after the last `;`), else of its `Date:` header, parsed as RFC 5322 says (obsolete forms
/// included) with the zone offset kept; `None` when neither parses (the server then uses the
/// time of the APPEND). See the `date` submodule for the choice of parser.
pub(crate) fn internal_date_of(message: &[u8]) -> Option<DateTime> {
    date::internal_date_of(message)
}

/// How long one connect, TLS handshake, read or write may take before the connection is
/// given up as dead ([`ImapError::Timeout`]). Writes are timed per chunk the kernel accepts,
/// so a large message on a slow link is not cut off while it makes progress.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// The credentials for the IMAP server; the user name is the URL's.
pub(crate) enum ImapAuth {
    /// LOGIN with this password.
    Password(Zeroizing<String>),
    /// SASL OAUTHBEARER or XOAUTH2 with this OAuth 2 bearer (access) token, obtained as for
    /// POP3 (`--oauth2-token-command`).
    OAuth2Token(Zeroizing<String>),
}

impl fmt::Debug for ImapAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImapAuth::Password(_) => "Password(…)",
            ImapAuth::OAuth2Token(_) => "OAuth2Token(…)",
        })
    }
}

/// How the connection is secured.
#[derive(Debug, Clone)]
pub(crate) struct TlsSettings {
    /// Which server certificates are accepted (as `pop3 fetch`'s `--ca-file`/`--insecure`).
    pub(crate) trust: Trust,
    /// `imap://` without STARTTLS: the whole session, the password or token included, goes
    /// unencrypted. For loopback tests and explicit `--tls none`-style consent only. Without
    /// it an `imap://` server that does not offer STARTTLS is refused before any credential is
    /// sent ([`ImapError::TlsRequired`]).
    pub(crate) allow_plaintext: bool,
}

/// Why connecting to the IMAP server, logging in or appending failed.
///
/// [`ImapError::Rejected`] (the server answered the APPEND with `NO`) is about this message
/// or this mailbox; [`ImapError::is_connection_error`] errors are about the connection, and
/// the same APPEND may work on a new one later. The others need the configuration fixed.
#[derive(Debug)]
pub(crate) enum ImapError {
    /// The IMAP URL is malformed or lacks the user name.
    Url(String),
    /// Connecting, reading or writing failed.
    Io(std::io::Error),
    /// No answer within the time limit; the text says to what.
    Timeout(String),
    /// The TLS handshake failed (an untrusted or wrong certificate, say), or the TLS
    /// configuration could not be built.
    Tls(String),
    /// The server closed the connection, or said BYE (its text, if any).
    Closed(String),
    /// The server said something this client cannot follow (a malformed response, a BAD).
    Protocol(String),
    /// TLS is required but cannot be had: an `imap://` server without STARTTLS (or one that
    /// refused it) while [`TlsSettings::allow_plaintext`] is off.
    TlsRequired(String),
    /// Logging in failed: the credentials were refused (the server's text), or the server
    /// offers no mechanism for them (no OAUTHBEARER/XOAUTH2 for a token, LOGINDISABLED).
    Auth(String),
    /// The server answered the APPEND with `NO`: `[CODE] text` as the server sent it (such as
    /// `[TRYCREATE] Mailbox doesn't exist: Archive` or `[OVERQUOTA] …`). Nothing was stored.
    Rejected(String),
    /// The message cannot be sent over IMAP (NUL bytes to a server without BINARY).
    InvalidMessage(String),
}

impl ImapError {
    /// Whether this is about the connection (I/O, timeouts, TLS, the server going away or
    /// talking nonsense), so that the message stays where it is and a later try on a new
    /// connection is reasonable. (A certificate that does not verify counts here too, though
    /// it will not fix itself.)
    pub(crate) fn is_connection_error(&self) -> bool {
        matches!(
            self,
            ImapError::Io(_)
                | ImapError::Timeout(_)
                | ImapError::Tls(_)
                | ImapError::Closed(_)
                | ImapError::Protocol(_)
        )
    }

    /// Whether the APPEND was refused because the mailbox does not exist (`NO [TRYCREATE]`).
    pub(crate) fn is_mailbox_missing(&self) -> bool {
        matches!(self, ImapError::Rejected(text) if text.starts_with("[TRYCREATE]"))
    }
}

impl fmt::Display for ImapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImapError::Url(e) => f.write_str(e),
            ImapError::Io(e) => write!(f, "IMAP connection: {e}"),
            ImapError::Timeout(what) => write!(f, "IMAP server: no answer to {what}"),
            ImapError::Tls(e) => write!(f, "IMAP TLS: {e}"),
            ImapError::Closed(e) => write!(f, "the IMAP server closed the connection: {e}"),
            ImapError::Protocol(e) => write!(f, "IMAP protocol error: {e}"),
            ImapError::TlsRequired(e) => write!(f, "IMAP: TLS required: {e}"),
            ImapError::Auth(e) => write!(f, "IMAP login failed: {e}"),
            ImapError::Rejected(e) => write!(f, "the IMAP server refused the message: {e}"),
            ImapError::InvalidMessage(e) => write!(f, "IMAP: cannot append the message: {e}"),
        }
    }
}

impl std::error::Error for ImapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImapError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for ImapError {
    fn from(e: std::io::Error) -> Self {
        ImapError::Io(e)
    }
}

/// The transport under the IMAP client.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Only while STARTTLS swaps the one for the other.
    Gone,
}

impl Stream {
    fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ImapError> {
        let read = async {
            match self {
                Stream::Plain(s) => s.read(buf).await,
                Stream::Tls(s) => s.read(buf).await,
                Stream::Gone => Ok(0),
            }
        };
        match tokio::time::timeout(IO_TIMEOUT, read).await {
            Err(_) => Err(ImapError::Timeout("a command (reading)".into())),
            Ok(Err(e)) => Err(ImapError::Io(e)),
            Ok(Ok(0)) => Err(ImapError::Closed("end of stream".into())),
            Ok(Ok(n)) => Ok(n),
        }
    }

    /// Writes all of `bytes`, each chunk within [`IO_TIMEOUT`], and flushes (TLS buffers).
    async fn write_all(&mut self, mut bytes: &[u8]) -> Result<(), ImapError> {
        let timed_out = || ImapError::Timeout("a command (writing)".into());
        while !bytes.is_empty() {
            let write = async {
                match self {
                    Stream::Plain(s) => s.write(bytes).await,
                    Stream::Tls(s) => s.write(bytes).await,
                    Stream::Gone => Ok(0),
                }
            };
            match tokio::time::timeout(IO_TIMEOUT, write).await {
                Err(_) => return Err(timed_out()),
                Ok(Err(e)) => return Err(ImapError::Io(e)),
                Ok(Ok(0)) => return Err(ImapError::Closed("the connection refuses data".into())),
                Ok(Ok(n)) => bytes = &bytes[n..],
            }
        }
        let flush = async {
            match self {
                Stream::Plain(s) => s.flush().await,
                Stream::Tls(s) => s.flush().await,
                Stream::Gone => Ok(()),
            }
        };
        tokio::time::timeout(IO_TIMEOUT, flush)
            .await
            .map_err(|_| timed_out())??;
        Ok(())
    }

    async fn shutdown(&mut self) {
        let shutdown = async {
            let _ = match self {
                Stream::Plain(s) => s.shutdown().await,
                Stream::Tls(s) => s.shutdown().await,
                Stream::Gone => Ok(()),
            };
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), shutdown).await;
    }
}

/// How a command ended: its tagged status, and the untagged data that came before.
struct Completion {
    status: StatusBody<'static>,
    /// The untagged data (SEARCH and FETCH results); APPEND and LOGIN need only the status.
    data: Vec<Data<'static>>,
}

impl Completion {
    fn is_ok(&self) -> bool {
        self.status.kind == StatusKind::Ok
    }

    /// `[CODE] text` of the tagged status.
    fn text(&self) -> String {
        status_text(&self.status)
    }
}

fn status_text(status: &StatusBody<'_>) -> String {
    match &status.code {
        None => status.text.to_string(),
        Some(code) => format!("[{}] {}", code_name(code), status.text),
    }
}

/// The response code's name as on the wire, for messages (`TRYCREATE`, `OVERQUOTA`, ...).
fn code_name(code: &Code<'_>) -> String {
    match code {
        Code::TryCreate => "TRYCREATE".into(),
        Code::OverQuota => "OVERQUOTA".into(),
        Code::TooBig => "TOOBIG".into(),
        Code::Alert => "ALERT".into(),
        Code::Parse => "PARSE".into(),
        Code::ReadOnly => "READ-ONLY".into(),
        Code::Capability(_) => "CAPABILITY".into(),
        Code::AppendUid { uid_validity, uid } => format!("APPENDUID {uid_validity} {uid}"),
        Code::Other(other) => String::from_utf8_lossy(other.inner()).into_owned(),
        other => format!("{other:?}").to_uppercase(),
    }
}

/// An authenticated IMAP connection that appends messages into one mailbox.
pub(crate) struct ImapTarget {
    stream: Stream,
    client: Client,
    /// Bytes read from the stream, handed to the client.
    read_buf: Box<[u8]>,
    next_tag: u32,
    /// The server's current capabilities (they change with STARTTLS and login).
    caps: Vec<Capability<'static>>,
    /// The target mailbox, encoded for the wire.
    mailbox: Mailbox<'static>,
    /// Never send non-synchronising literals, whatever the server offers (tests).
    sync_literals_only: bool,
    /// The mailbox is open (read-only, EXAMINE) for [`ImapTarget::contains`].
    examined: bool,
}

impl fmt::Debug for ImapTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapTarget")
            .field("tls", &self.stream.is_tls())
            .field("mailbox", &self.mailbox)
            .finish_non_exhaustive()
    }
}

impl ImapTarget {
    /// Connects to the URL's server (implicit TLS for `imaps://`, STARTTLS for `imap://`
    /// unless [`TlsSettings::allow_plaintext`]), and logs in as the URL's user: LOGIN for a
    /// password, OAUTHBEARER (preferred) or XOAUTH2 for a token, as the server's CAPABILITY
    /// `AUTH=` list allows. The mailbox is not opened: APPEND needs none selected.
    pub(crate) async fn connect(
        url: &ImapUrl,
        auth: ImapAuth,
        tls: TlsSettings,
    ) -> Result<ImapTarget, ImapError> {
        let user = url.user.clone().ok_or_else(|| {
            ImapError::Url("the IMAP URL needs a user name (imaps://user@host/)".into())
        })?;
        let mailbox = mailbox_on_the_wire(&url.mailbox)?;
        let tcp = tokio::time::timeout(
            IO_TIMEOUT,
            TcpStream::connect((url.host.as_str(), url.port)),
        )
        .await
        .map_err(|_| ImapError::Timeout(format!("connecting to {}:{}", url.host, url.port)))??;
        let _ = tcp.set_nodelay(true);
        let stream = if url.implicit_tls {
            Stream::Tls(Box::new(tls_handshake(tcp, &url.host, &tls.trust).await?))
        } else {
            Stream::Plain(tcp)
        };
        let mut target = ImapTarget {
            stream,
            client: Client::new(Options::default()),
            read_buf: vec![0; 64 * 1024].into_boxed_slice(),
            next_tag: 0,
            caps: Vec::new(),
            mailbox,
            sync_literals_only: false,
            examined: false,
        };
        let preauth = target.greeting().await?;
        if !target.stream.is_tls() && !tls.allow_plaintext {
            target.starttls(&url.host, &tls.trust, preauth).await?;
        }
        if !preauth {
            target.login(&user, url, auth).await?;
        }
        Ok(target)
    }

    /// Appends `message` (CRLF line ends, as fetched from POP3) to the mailbox, with
    /// `internal_date` as its internal date (see [`internal_date_of`]) or the server's clock.
    /// Returns `Ok` only after the server's tagged OK: then the message is stored. A `NO` is
    /// [`ImapError::Rejected`] and leaves the connection usable for the next message.
    pub(crate) async fn append(
        &mut self,
        message: &[u8],
        internal_date: Option<DateTime>,
    ) -> Result<(), ImapError> {
        let non_sync = !self.sync_literals_only
            && (self.has(&Capability::LiteralPlus)
                || (self.has(&Capability::LiteralMinus) && message.len() <= 4096));
        let mode = if non_sync {
            LiteralMode::NonSync
        } else {
            LiteralMode::Sync
        };
        let literal = if Literal::validate(message).is_ok() {
            let mut literal = Literal::try_from(message.to_vec())
                .map_err(|e| ImapError::InvalidMessage(e.to_string()))?;
            literal.set_mode(mode);
            LiteralOrLiteral8::Literal(literal)
        } else if self.has(&Capability::Binary) {
            LiteralOrLiteral8::Literal8(Literal8 {
                data: Cow::Owned(message.to_vec()),
                mode,
            })
        } else {
            return Err(ImapError::InvalidMessage(
                "it contains NUL bytes and the server does not offer BINARY".into(),
            ));
        };
        let done = self
            .run(CommandBody::Append {
                mailbox: self.mailbox.clone(),
                flags: Vec::new(),
                date: internal_date,
                message: literal,
            })
            .await?;
        match done.status.kind {
            StatusKind::Ok => Ok(()),
            StatusKind::No => {
                // A NO instead of the `+` to a synchronising literal leaves imap-next waiting
                // for that `+`; the server, though, is done with the command and waits for
                // the next one. A fresh client state (the connection is at a command
                // boundary, nothing is buffered) is in step with it again.
                self.fresh_client();
                Err(ImapError::Rejected(done.text()))
            }
            StatusKind::Bad => {
                self.fresh_client();
                Err(ImapError::Protocol(format!("APPEND: BAD {}", done.text())))
            }
        }
    }

    /// Whether the mailbox holds `message` already (see [`Identity`] for what counts as the
    /// same message): the mailbox is opened read-only (`EXAMINE`, once per connection; it
    /// changes no flag, and APPENDs still go to it; later a NOOP shows what others appended
    /// since), then `UID SEARCH`ed for the message's
    /// identity, and for a message without a Message-ID each hit is FETCHed and compared
    /// with it. Costs two or three round trips; meant for a message that may have been
    /// appended by a run that did not see the answer.
    ///
    /// A `NO` or `BAD` (a missing mailbox, a mailbox one may append to but not read, a server
    /// that cannot search headers) is [`ImapError::Rejected`]: the caller cannot tell, and the
    /// connection stays usable.
    pub(crate) async fn contains(&mut self, message: &[u8]) -> Result<bool, ImapError> {
        let identity = Identity::of(message);
        if !self.examined {
            let body = CommandBody::examine(self.mailbox.clone())
                .map_err(|e| ImapError::Protocol(format!("EXAMINE: {e:?}")))?;
            let done = self.run(body).await?;
            if !done.is_ok() {
                self.fresh_client();
                return Err(ImapError::Rejected(format!("EXAMINE: {}", done.text())));
            }
            self.examined = true;
        } else {
            // What others appended since: a server may show a session new messages (and let
            // SEARCH see them) only at a command that allows it, such as NOOP.
            let done = self.run(CommandBody::Noop).await?;
            if !done.is_ok() {
                return Err(ImapError::Protocol(format!("NOOP: {}", done.text())));
            }
        }
        let done = self
            .run(CommandBody::search(None, identity.criteria(), true))
            .await?;
        if !done.is_ok() {
            self.fresh_client();
            return Err(ImapError::Rejected(format!("SEARCH: {}", done.text())));
        }
        let mut uids: Vec<u32> = done
            .data
            .into_iter()
            .filter_map(|d| match d {
                Data::Search(uids, ..) => Some(uids),
                _ => None,
            })
            .flatten()
            .map(|u| u.get())
            .collect();
        if !identity.needs_comparison() || uids.is_empty() {
            return Ok(!uids.is_empty());
        }
        // The newest candidates: a message appended by a run that died is among them.
        uids.sort_unstable();
        let newest = &uids[uids.len().saturating_sub(identity::CANDIDATES)..];
        let set = newest
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let item = MessageDataItemName::BodyExt {
            section: None,
            partial: None,
            peek: true,
        };
        let body = CommandBody::fetch(set.as_str(), vec![item], true)
            .map_err(|e| ImapError::Protocol(format!("UID FETCH {set}: {e:?}")))?;
        let done = self.run(body).await?;
        if !done.is_ok() {
            self.fresh_client();
            return Err(ImapError::Rejected(format!("FETCH: {}", done.text())));
        }
        let want = identity::normalise(message);
        Ok(done.data.into_iter().any(|d| match d {
            Data::Fetch { items, .. } => items.into_inner().into_iter().any(|item| match item {
                MessageDataItem::BodyExt {
                    section: None,
                    data,
                    ..
                } => data
                    .into_option()
                    .is_some_and(|m| identity::normalise(m.as_ref()) == want),
                _ => false,
            }),
            _ => false,
        }))
    }

    /// Says LOGOUT, waits (bounded) for the server's answer, and closes the connection.
    pub(crate) async fn logout(mut self) -> Result<(), ImapError> {
        let result = match self.run(CommandBody::Logout).await {
            Ok(done) if done.is_ok() => Ok(()),
            Ok(done) => Err(ImapError::Protocol(format!("LOGOUT: {}", done.text()))),
            // The BYE came and the server hung up before its tagged OK: that is a logout too.
            Err(ImapError::Closed(_)) => Ok(()),
            Err(e) => Err(e),
        };
        self.stream.shutdown().await;
        result
    }

    /// For tests: never send non-synchronising literals.
    #[cfg(test)]
    fn set_sync_literals_only(&mut self, on: bool) {
        self.sync_literals_only = on;
    }

    fn has(&self, cap: &Capability<'_>) -> bool {
        self.caps.iter().any(|c| c == cap)
    }

    fn has_auth(&self, mechanism: &AuthMechanism<'_>) -> bool {
        self.caps
            .iter()
            .any(|c| matches!(c, Capability::Auth(m) if m == mechanism))
    }

    fn fresh_client(&mut self) {
        let mut options = Options::default();
        options.discard_greeting = true;
        self.client = Client::new(options);
    }

    fn tag(&mut self) -> Tag<'static> {
        self.next_tag += 1;
        Tag::try_from(format!("A{}", self.next_tag)).expect("A<n> is a valid tag")
    }

    /// Reads the greeting; `true` for PREAUTH.
    async fn greeting(&mut self) -> Result<bool, ImapError> {
        match self.next_event().await? {
            Event::GreetingReceived { greeting } => {
                if let Some(Code::Capability(caps)) = greeting.code {
                    self.caps = caps.into_inner();
                }
                match greeting.kind {
                    GreetingKind::Ok => Ok(false),
                    GreetingKind::PreAuth => Ok(true),
                    GreetingKind::Bye => Err(ImapError::Closed(greeting.text.to_string())),
                }
            }
            other => Err(ImapError::Protocol(format!(
                "expected the greeting, got {other:?}"
            ))),
        }
    }

    /// Capabilities, asked for when the server did not volunteer them.
    async fn ensure_capabilities(&mut self) -> Result<(), ImapError> {
        if self.caps.is_empty() {
            let done = self.run(CommandBody::Capability).await?;
            if !done.is_ok() {
                return Err(ImapError::Protocol(format!("CAPABILITY: {}", done.text())));
            }
        }
        Ok(())
    }

    async fn starttls(
        &mut self,
        host: &str,
        trust: &Trust,
        preauth: bool,
    ) -> Result<(), ImapError> {
        if preauth {
            return Err(ImapError::TlsRequired(
                "the server logged us in before STARTTLS (PREAUTH), so the session cannot be \
                 encrypted: use imaps://"
                    .into(),
            ));
        }
        self.ensure_capabilities().await?;
        if !self.has(&Capability::StartTls) {
            return Err(ImapError::TlsRequired(
                "the server does not offer STARTTLS: use imaps:// (port 993)".into(),
            ));
        }
        let done = self.run(CommandBody::StartTLS).await?;
        if !done.is_ok() {
            return Err(ImapError::TlsRequired(format!(
                "STARTTLS refused: {}",
                done.text()
            )));
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            unreachable!("STARTTLS runs on a plain connection");
        };
        // Whatever the server sent after its OK (an injection before the handshake) is
        // dropped with the old client state: only what comes through TLS counts.
        self.stream = Stream::Tls(Box::new(tls_handshake(tcp, host, trust).await?));
        self.fresh_client();
        // RFC 3501 §6.2.1: forget the capabilities learnt before TLS.
        self.caps.clear();
        self.ensure_capabilities().await
    }

    async fn login(&mut self, user: &str, url: &ImapUrl, auth: ImapAuth) -> Result<(), ImapError> {
        self.ensure_capabilities().await?;
        let done = match &auth {
            ImapAuth::Password(password) => {
                if self.has(&Capability::LoginDisabled) {
                    return Err(ImapError::Auth(
                        "the server does not allow LOGIN on this connection (LOGINDISABLED)".into(),
                    ));
                }
                let body =
                    CommandBody::login(user.to_string(), password.to_string()).map_err(|e| {
                        ImapError::Auth(format!("the user name or password cannot be sent: {e:?}"))
                    })?;
                self.run(body).await?
            }
            ImapAuth::OAuth2Token(token) => {
                let (mechanism, response) = if self.has_auth(&AuthMechanism::OAuthBearer) {
                    (
                        AuthMechanism::OAuthBearer,
                        oauthbearer_response(user, &url.host, url.port, token),
                    )
                } else if self.has_auth(&AuthMechanism::XOAuth2) {
                    (AuthMechanism::XOAuth2, xoauth2_response(user, token))
                } else {
                    return Err(ImapError::Auth(
                        "the server offers neither AUTH=OAUTHBEARER nor AUTH=XOAUTH2 for an OAuth \
                         token"
                            .into(),
                    ));
                };
                self.authenticate(mechanism, response).await?
            }
        };
        if !done.is_ok() {
            return Err(ImapError::Auth(done.text()));
        }
        // The capabilities after login: from the OK's [CAPABILITY …], else asked for.
        self.caps.clear();
        if let Some(Code::Capability(caps)) = done.status.code {
            self.caps = caps.into_inner();
        }
        self.ensure_capabilities().await
    }

    /// AUTHENTICATE with an initial response (inline with SASL-IR, else after the first `+`).
    /// A further `+` is the server's error challenge (RFC 7628 §3.2.3, the same in XOAUTH2):
    /// answered as the mechanism says so that the server sends its tagged NO, whose text gets
    /// the challenge's JSON appended.
    async fn authenticate(
        &mut self,
        mechanism: AuthMechanism<'static>,
        response: Zeroizing<Vec<u8>>,
    ) -> Result<Completion, ImapError> {
        let tag = self.tag();
        let inline = self.has(&Capability::SaslIr);
        let body = if inline {
            CommandBody::authenticate_with_ir(mechanism.clone(), response.to_vec())
        } else {
            CommandBody::authenticate(mechanism.clone())
        };
        self.client.enqueue_command(Command {
            tag: tag.clone(),
            body,
        });
        let mut response_sent = inline;
        let mut challenge = None;
        loop {
            match self.next_event().await? {
                Event::AuthenticateStarted { .. } => {}
                Event::AuthenticateContinuationRequestReceived {
                    continuation_request,
                    ..
                } => {
                    let data = if response_sent {
                        challenge = Some(match continuation_request {
                            CommandContinuationRequest::Base64(b) => {
                                String::from_utf8_lossy(&b).into_owned()
                            }
                            CommandContinuationRequest::Basic(b) => b.text().to_string(),
                        });
                        // OAUTHBEARER: a lone ^A; XOAUTH2: an empty response.
                        match mechanism {
                            AuthMechanism::OAuthBearer => b"\x01".to_vec(),
                            _ => Vec::new(),
                        }
                    } else {
                        response_sent = true;
                        response.to_vec()
                    };
                    if self
                        .client
                        .set_authenticate_data(AuthenticateData::r#continue(data))
                        .is_err()
                    {
                        return Err(ImapError::Protocol("AUTHENTICATE out of step".into()));
                    }
                }
                Event::AuthenticateStatusReceived { status, .. } => {
                    let Status::Tagged(tagged) = status else {
                        return Err(ImapError::Protocol(format!(
                            "AUTHENTICATE ended without a tagged status: {status:?}"
                        )));
                    };
                    let mut status = tagged.body;
                    if let (Some(challenge), false) = (challenge, status.kind == StatusKind::Ok) {
                        let text = format!("{} ({challenge})", status.text);
                        status.text = text.try_into().unwrap_or(status.text);
                    }
                    return Ok(Completion {
                        status,
                        data: Vec::new(),
                    });
                }
                event => self.untagged(event)?,
            }
        }
    }

    /// Sends one command and collects everything up to its tagged status.
    async fn run(&mut self, body: CommandBody<'static>) -> Result<Completion, ImapError> {
        let tag = self.tag();
        let handle = self.client.enqueue_command(Command {
            tag: tag.clone(),
            body,
        });
        let mut data = Vec::new();
        loop {
            match self.next_event().await? {
                Event::CommandSent { .. } => {}
                // A BAD instead of the `+` to a synchronising literal.
                Event::CommandRejected {
                    handle: h, status, ..
                } if h == handle => {
                    let status = match status {
                        Status::Tagged(t) => t.body,
                        Status::Untagged(b) => b,
                        Status::Bye(bye) => return Err(ImapError::Closed(bye.text.to_string())),
                    };
                    return Ok(Completion { status, data });
                }
                Event::StatusReceived {
                    status: Status::Tagged(tagged),
                } if tagged.tag == tag => {
                    if let Some(Code::Capability(caps)) = &tagged.body.code {
                        self.caps = caps.as_ref().to_vec();
                    }
                    return Ok(Completion {
                        status: tagged.body,
                        data,
                    });
                }
                Event::DataReceived { data: d } => {
                    if let Data::Capability(caps) = &d {
                        self.caps = caps.as_ref().to_vec();
                    }
                    data.push(d);
                }
                event => self.untagged(event)?,
            }
        }
    }

    /// Events that may come between any command's start and end: untagged statuses are noted
    /// (a capability update) or ignored, a BYE ends the session, anything else is an error.
    fn untagged(&mut self, event: Event) -> Result<(), ImapError> {
        match event {
            Event::StatusReceived {
                status: Status::Untagged(body),
            } => {
                if let Some(Code::Capability(caps)) = body.code {
                    self.caps = caps.into_inner();
                }
                Ok(())
            }
            Event::StatusReceived {
                status: Status::Bye(bye),
            } => Err(ImapError::Closed(format!("BYE {}", bye.text))),
            Event::DataReceived { .. } => Ok(()),
            other => Err(ImapError::Protocol(format!("unexpected {other:?}"))),
        }
    }

    /// Drives the client until it has an event, doing the I/O it asks for.
    async fn next_event(&mut self) -> Result<Event, ImapError> {
        loop {
            match self.client.next() {
                Ok(event) => return Ok(event),
                Err(Interrupt::Io(Io::Output(bytes))) => self.stream.write_all(&bytes).await?,
                Err(Interrupt::Io(Io::NeedMoreInput)) => {
                    let n = self.stream.read(&mut self.read_buf).await?;
                    self.client.enqueue_input(&self.read_buf[..n]);
                }
                Err(Interrupt::Error(e)) => return Err(ImapError::Protocol(e.to_string())),
            }
        }
    }
}

async fn tls_handshake(
    tcp: TcpStream,
    host: &str,
    trust: &Trust,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ImapError> {
    let config: Arc<_> =
        pop3_tls::client_config(trust).map_err(|e| ImapError::Tls(e.to_string()))?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| ImapError::Tls(format!("{host:?} is not a valid server name: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    match tokio::time::timeout(IO_TIMEOUT, connector.connect(name, tcp)).await {
        Err(_) => Err(ImapError::Timeout("the TLS handshake".into())),
        Ok(Err(e)) => Err(ImapError::Tls(e.to_string())),
        Ok(Ok(s)) => Ok(s),
    }
}

/// The mailbox as sent: `INBOX` (any case) as the special name, others in modified UTF-7.
fn mailbox_on_the_wire(name: &str) -> Result<Mailbox<'static>, ImapError> {
    if name.eq_ignore_ascii_case("INBOX") {
        return Ok(Mailbox::Inbox);
    }
    Mailbox::try_from(url::mailbox_to_modified_utf7(name))
        .map_err(|e| ImapError::Url(format!("mailbox {name:?} cannot be sent: {e:?}")))
}

/// XOAUTH2's initial response (before base64, which the codec applies):
/// `user=<user>^Aauth=Bearer <token>^A^A`.
fn xoauth2_response(user: &str, token: &str) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(format!("user={user}\x01auth=Bearer {token}\x01\x01").into_bytes())
}

/// OAUTHBEARER's initial response (RFC 7628 §3.1, before base64): a GS2 header with the
/// authorisation identity (`,` and `=` escaped as `=2C`/`=3D`), then host, port and the token.
fn oauthbearer_response(user: &str, host: &str, port: u16, token: &str) -> Zeroizing<Vec<u8>> {
    let user = user.replace('=', "=3D").replace(',', "=2C");
    Zeroizing::new(
        format!("n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01")
            .into_bytes(),
    )
}
