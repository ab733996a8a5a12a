//! `pop3 fetch`'s configuration file: named accounts, each with its server, credentials, TLS,
//! policy and delivery target (`contrib/fetch.toml` documents every key).
//!
//! The file is `--config FILE`, else `$XDG_CONFIG_HOME/pop3/fetch.toml` (by default
//! `~/.config/pop3/fetch.toml`). Unknown keys are errors; every error names the file, the line
//! and column, and the key. Relative paths are relative to the file's directory, and `~/`
//! is the home directory. A `password` in the file is refused when the file can be read by
//! anyone but its owner, and so is a `password_file` others can read.
//!
//! The file is read into [`Account`]s, the one description of a fetch that `fetch` runs (a
//! URL on the command line makes one too, from the flags).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::TlsArg;
use crate::config::{located, number_or_text};
use crate::imap_append::ImapUrl;
use crate::target::TargetSpec;
use crate::target::imap::{ImapCredentials, ImapSpec};
use crate::url::{self, PopUrl};

/// How the password (or token) is obtained.
#[derive(Clone)]
pub(crate) enum Credentials {
    /// `--password-env VAR`.
    Env(String),
    /// The first line of this file.
    File(PathBuf),
    /// The first line a shell command prints.
    Command(String),
    /// An OAuth 2 bearer token from a shell command's first line.
    OAuth2Command(String),
    /// Written in the configuration file (readable by its owner only).
    Password(zeroize::Zeroizing<String>),
    /// Asked for on the terminal.
    Prompt,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Env(v) => write!(f, "Env({v:?})"),
            Credentials::File(p) => write!(f, "File({p:?})"),
            Credentials::Command(c) => write!(f, "Command({c:?})"),
            Credentials::OAuth2Command(c) => write!(f, "OAuth2Command({c:?})"),
            Credentials::Password(_) => f.write_str("Password(<redacted>)"),
            Credentials::Prompt => f.write_str("Prompt"),
        }
    }
}

/// What happens to fetched mail on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Deleted once stored (the default).
    Delete,
    /// Left there; only new mail is fetched.
    Keep,
    /// Left there, and deleted once stored and first seen this many days ago.
    DeleteAfterDays(u64),
}

/// One account, every choice made.
#[derive(Debug, Clone)]
pub(crate) struct Account {
    /// The name in the file (`[accounts.NAME]`), or `user@host` for a URL on the command line.
    pub(crate) name: String,
    /// The URL as given (for printing).
    pub(crate) url_text: String,
    pub(crate) url: PopUrl,
    /// The login name (the URL's, or `user`).
    pub(crate) user: String,
    pub(crate) credentials: Credentials,
    /// `None`: implicit for pop3s://, STLS for pop3://.
    pub(crate) tls: Option<TlsArg>,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) insecure: bool,
    pub(crate) policy: Policy,
    /// Messages larger than this (as `LIST` gives their size) are left on the server.
    pub(crate) max_size: Option<u64>,
    /// At most this many messages a run.
    pub(crate) limit: Option<usize>,
    /// The daemon's polling interval for this account.
    pub(crate) interval: Option<Duration>,
    pub(crate) target: TargetSpec,
}

/// The whole file, read.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Accounts fetched at once.
    pub(crate) jobs: Option<usize>,
    /// The daemon's default polling interval.
    pub(crate) interval: Option<Duration>,
    /// Where records without a place of their own and first-seen dates are kept.
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) accounts: Vec<Account>,
}

/// `5m`, `90s`, `1h30m`, `1h 30m`, `2d`, `2days`, or a number of seconds: what
/// [`humantime::parse_duration`] reads, and a bare number. Shown as `humantime` writes it
/// (`5m`, `1h 30m`, `2days`), which reads back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Interval(pub(crate) Duration);

impl std::str::FromStr for Interval {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Ok(secs) = t.parse::<u64>() {
            return Ok(Interval(Duration::from_secs(secs)));
        }
        humantime::parse_duration(t)
            .map(Interval)
            .map_err(|_| format!("{s:?}: expected a duration such as 90s, 5m, 1h30m or 1d"))
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        number_or_text(
            d,
            "a duration such as \"90s\", \"5m\", \"1h\" or a number of seconds",
            "a duration cannot be negative",
            |v| Interval(Duration::from_secs(v)),
            str::parse,
        )
    }
}

/// A size in octets: a number, or `512k`, `20M`, `1G` (powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Size(pub(crate) u64);

impl std::str::FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let bad = || format!("{s:?}: expected a size such as 500000, 512k, 20M or 1G");
        let (num, mult) = match t.char_indices().last() {
            Some((i, 'k' | 'K')) => (&t[..i], 1u64 << 10),
            Some((i, 'm' | 'M')) => (&t[..i], 1 << 20),
            Some((i, 'g' | 'G')) => (&t[..i], 1 << 30),
            _ => (t, 1),
        };
        num.trim()
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(mult))
            .map(Size)
            .ok_or_else(bad)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        number_or_text(
            d,
            "a size such as 500000, \"512k\", \"20M\" or \"1G\"",
            "a size cannot be negative",
            Size,
            str::parse,
        )
    }
}

/// The file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    jobs: Option<Spanned<usize>>,
    #[serde(default)]
    interval: Option<Spanned<Interval>>,
    #[serde(default)]
    state_dir: Option<PathBuf>,
    #[serde(default)]
    accounts: BTreeMap<String, Spanned<AccountFile>>,
}

/// One `[accounts.NAME]`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountFile {
    url: Spanned<String>,
    #[serde(default)]
    user: Option<Spanned<String>>,
    #[serde(default)]
    password: Option<Spanned<String>>,
    #[serde(default)]
    password_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    password_command: Option<Spanned<String>>,
    #[serde(default)]
    oauth2_token_command: Option<Spanned<String>>,
    #[serde(default)]
    tls: Option<TlsArg>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure: Option<bool>,
    #[serde(default)]
    keep: Option<Spanned<bool>>,
    #[serde(default)]
    delete: Option<Spanned<bool>>,
    #[serde(default)]
    delete_after_days: Option<Spanned<u64>>,
    #[serde(default)]
    max_size: Option<Size>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    interval: Option<Spanned<Interval>>,
    #[serde(default)]
    maildir: Option<Spanned<PathBuf>>,
    #[serde(default)]
    mbox: Option<Spanned<PathBuf>>,
    #[serde(default)]
    mda: Option<Spanned<String>>,
    #[serde(default)]
    lmtp: Option<Spanned<String>>,
    #[serde(default)]
    smtp: Option<Spanned<String>>,
    #[serde(default)]
    imap: Option<Spanned<String>>,
    #[serde(default)]
    recipient: Option<Spanned<String>>,
    #[serde(default)]
    imap_password_command: Option<Spanned<String>>,
    #[serde(default)]
    imap_password_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    imap_oauth2_token_command: Option<Spanned<String>>,
    #[serde(default)]
    imap_ca_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    imap_allow_plaintext: Option<Spanned<bool>>,
}

/// The default configuration file: `$XDG_CONFIG_HOME/pop3/fetch.toml`.
pub(crate) fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| home().map(|h| h.join(".config")))?;
    Some(base.join("pop3").join("fetch.toml"))
}

/// The default state directory: `$XDG_STATE_HOME/pop3` (`~/.local/state/pop3`).
pub(crate) fn default_state_dir() -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| home().map(|h| h.join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("pop3")
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// `~/x` is in the home directory; a relative path is relative to `dir`.
fn resolve(dir: &Path, p: &Path) -> PathBuf {
    if let Ok(rest) = p.strip_prefix("~")
        && let Some(h) = home()
    {
        return h.join(rest);
    }
    dir.join(p)
}

/// The permission bits of `path` when group or others may read it.
#[cfg(unix)]
fn readable_by_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o044 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn readable_by_others(_: &Path) -> Option<u32> {
    None
}

/// Reads the configuration file at `path`.
pub(crate) fn load(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the configuration {}: {e}", path.display()))?;
    parse(path, &text)
}

/// Parses the text of the configuration file at `path`.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Config, String> {
    let file: FileConfig = toml::from_str(text)
        .map_err(|e| located(path, text, e.span().map(|s| s.start), e.message()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let at = |span: std::ops::Range<usize>, key: &str, msg: &str| {
        located(path, text, Some(span.start), &format!("{key}: {msg}"))
    };
    if let Some(j) = &file.jobs
        && *j.get_ref() == 0
    {
        return Err(at(j.span(), "jobs", "must be at least 1"));
    }
    if let Some(i) = &file.interval
        && i.get_ref().0.is_zero()
    {
        return Err(at(i.span(), "interval", "must be more than 0 seconds"));
    }
    let mut accounts = Vec::new();
    for (name, spanned) in file.accounts {
        let span = spanned.span();
        let a = spanned.into_inner();
        let key = |k: &str| format!("accounts.{name}.{k}");
        let url_text = a.url.get_ref().clone();
        let mut url = url::parse(&url_text).map_err(|e| at(a.url.span(), &key("url"), &e))?;
        let user = match (&url.user, &a.user) {
            (Some(u), Some(given)) if u != given.get_ref() => {
                return Err(at(
                    given.span(),
                    &key("user"),
                    &format!("the URL names the user {u:?}: give it once"),
                ));
            }
            (Some(u), _) => u.clone(),
            (None, Some(u)) => u.get_ref().clone(),
            (None, None) => {
                return Err(at(
                    a.url.span(),
                    &key("url"),
                    "no user: write pop3s://user@host, or user = \"...\"",
                ));
            }
        };
        if user.is_empty() || user.contains(['\r', '\n', '\0']) {
            return Err(at(a.url.span(), &key("user"), "not a valid user name"));
        }
        url.user = Some(user.clone());
        let imap = imap_spec(&a, &name, dir, &at)?;
        // Credentials: at most one source.
        one_of(
            &[
                ("password", a.password.as_ref().map(Spanned::span)),
                ("password_file", a.password_file.as_ref().map(Spanned::span)),
                (
                    "password_command",
                    a.password_command.as_ref().map(Spanned::span),
                ),
                (
                    "oauth2_token_command",
                    a.oauth2_token_command.as_ref().map(Spanned::span),
                ),
            ],
            &key,
            &at,
        )?;
        let credentials = if let Some(p) = a.password {
            if let Some(mode) = readable_by_others(path) {
                return Err(at(
                    p.span(),
                    &key("password"),
                    &format!(
                        "a password in a file others can read (mode {mode:04o}): chmod 600 {}, or use password_command or password_file",
                        path.display()
                    ),
                ));
            }
            Credentials::Password(zeroize::Zeroizing::new(p.into_inner()))
        } else if let Some(f) = a.password_file {
            let file = resolve(dir, f.get_ref());
            if let Some(mode) = readable_by_others(&file) {
                return Err(at(
                    f.span(),
                    &key("password_file"),
                    &format!(
                        "{} can be read by others (mode {mode:04o}): chmod 600 it",
                        file.display()
                    ),
                ));
            }
            Credentials::File(file)
        } else if let Some(c) = a.password_command {
            Credentials::Command(c.into_inner())
        } else if let Some(c) = a.oauth2_token_command {
            Credentials::OAuth2Command(c.into_inner())
        } else {
            return Err(at(
                span,
                &format!("accounts.{name}"),
                "no credentials: password_command, password_file, oauth2_token_command or password",
            ));
        };
        // Policy: at most one.
        let policies: Vec<(&str, std::ops::Range<usize>)> = [
            ("keep", a.keep.as_ref().map(Spanned::span)),
            ("delete", a.delete.as_ref().map(Spanned::span)),
            (
                "delete_after_days",
                a.delete_after_days.as_ref().map(Spanned::span),
            ),
        ]
        .into_iter()
        .filter_map(|(k, s)| s.map(|s| (k, s)))
        .collect();
        if let [(first, _), (second, s), ..] = &policies[..] {
            return Err(at(
                s.clone(),
                &key(second),
                &format!("give one of keep, delete and delete_after_days (also {first})"),
            ));
        }
        let policy = match (&a.keep, &a.delete, &a.delete_after_days) {
            (Some(k), _, _) if *k.get_ref() => Policy::Keep,
            (Some(_), _, _) => Policy::Delete,
            (_, Some(d), _) if *d.get_ref() => Policy::Delete,
            (_, Some(_), _) => Policy::Keep,
            (_, _, Some(d)) => Policy::DeleteAfterDays(*d.get_ref()),
            _ => Policy::Delete,
        };
        if let Some(i) = &a.interval
            && i.get_ref().0.is_zero()
        {
            return Err(at(
                i.span(),
                &key("interval"),
                "must be more than 0 seconds",
            ));
        }
        // The target: exactly one.
        let targets: Vec<(&str, std::ops::Range<usize>)> = [
            ("maildir", a.maildir.as_ref().map(Spanned::span)),
            ("mbox", a.mbox.as_ref().map(Spanned::span)),
            ("mda", a.mda.as_ref().map(Spanned::span)),
            ("lmtp", a.lmtp.as_ref().map(Spanned::span)),
            ("smtp", a.smtp.as_ref().map(Spanned::span)),
            ("imap", a.imap.as_ref().map(Spanned::span)),
        ]
        .into_iter()
        .filter_map(|(k, s)| s.map(|s| (k, s)))
        .collect();
        let target_keys = "maildir, mbox, mda, lmtp, smtp or imap";
        match &targets[..] {
            [] => {
                return Err(at(
                    span,
                    &format!("accounts.{name}"),
                    &format!("no target: give one of {target_keys}"),
                ));
            }
            [(first, _), (second, s), ..] => {
                return Err(at(
                    s.clone(),
                    &key(second),
                    &format!("one target per account (also {first})"),
                ));
            }
            [_] => {}
        }
        let needs_recipient = a.lmtp.is_some() || a.smtp.is_some();
        let recipient = match (&a.recipient, needs_recipient) {
            (Some(r), false) => {
                return Err(at(
                    r.span(),
                    &key("recipient"),
                    "only an lmtp or smtp target has a recipient",
                ));
            }
            (None, true) => {
                let (k, s) = &targets[0];
                return Err(at(
                    s.clone(),
                    &key(k),
                    "needs recipient = \"address\" (the RCPT TO)",
                ));
            }
            (r, _) => r.as_ref().map(|r| r.get_ref().clone()),
        };
        let scheme_check = |value: &Spanned<String>, k: &str, schemes: &[&str]| {
            if schemes.iter().any(|s| value.get_ref().starts_with(s)) {
                Ok(value.get_ref().clone())
            } else {
                Err(at(
                    value.span(),
                    &key(k),
                    &format!("expected a URL starting with {}", schemes.join(" or ")),
                ))
            }
        };
        let target = if let Some(p) = &a.maildir {
            TargetSpec::Maildir(resolve(dir, p.get_ref()))
        } else if let Some(p) = &a.mbox {
            TargetSpec::Mbox(resolve(dir, p.get_ref()))
        } else if let Some(c) = &a.mda {
            if c.get_ref().trim().is_empty() {
                return Err(at(c.span(), &key("mda"), "an empty command"));
            }
            TargetSpec::Mda(c.get_ref().clone())
        } else if let Some(u) = &a.lmtp {
            TargetSpec::Lmtp {
                url: scheme_check(u, "lmtp", &["lmtp://"])?,
                recipient: recipient.unwrap_or_default(),
            }
        } else if let Some(u) = &a.smtp {
            TargetSpec::Smtp {
                url: scheme_check(u, "smtp", &["smtp://", "smtp+starttls://", "smtps://"])?,
                recipient: recipient.unwrap_or_default(),
            }
        } else if let Some(spec) = imap {
            TargetSpec::Imap(spec)
        } else {
            unreachable!("one target is given")
        };
        accounts.push(Account {
            name: name.clone(),
            url_text,
            url,
            user,
            credentials,
            tls: a.tls,
            ca_file: a.ca_file.map(|p| resolve(dir, &p)),
            insecure: a.insecure.unwrap_or(false),
            policy,
            max_size: a.max_size.map(|s| s.0),
            limit: a.limit,
            interval: a.interval.map(|i| i.into_inner().0),
            target,
        });
    }
    Ok(Config {
        jobs: file.jobs.map(Spanned::into_inner),
        interval: file.interval.map(|i| i.into_inner().0),
        state_dir: file.state_dir.map(|p| resolve(dir, &p)),
        accounts,
    })
}

/// An account in the file's form, its secrets redacted (`--print-config`).
#[derive(Serialize)]
struct AccountOut {
    url: String,
    user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oauth2_token_command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_env: Option<String>,
    tls: TlsArg,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
    insecure: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delete: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delete_after_days: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    #[serde(flatten)]
    target: TargetOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    recipient: Option<String>,
    #[serde(flatten)]
    imap: Option<ImapOut>,
}

#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum TargetOut {
    Maildir(PathBuf),
    Mbox(PathBuf),
    Mda(String),
    Lmtp(String),
    Smtp(String),
    Imap(String),
}

#[derive(Serialize)]
struct ConfigOut {
    jobs: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    state_dir: PathBuf,
    accounts: BTreeMap<String, AccountOut>,
}

/// The accounts and settings in the file's form, with every default filled in and every
/// secret redacted.
pub(crate) fn print(
    jobs: usize,
    interval: Option<Duration>,
    state_dir: &Path,
    accounts: &[Account],
) -> Result<String, String> {
    let mut out = ConfigOut {
        jobs,
        interval: interval.map(|i| Interval(i).to_string()),
        state_dir: state_dir.to_path_buf(),
        accounts: BTreeMap::new(),
    };
    for a in accounts {
        let (mut password, mut password_file, mut password_command, mut oauth) =
            (None, None, None, None);
        let mut password_env = None;
        match &a.credentials {
            Credentials::Password(_) => password = Some("<redacted>"),
            Credentials::File(p) => password_file = Some(p.clone()),
            Credentials::Command(c) => password_command = Some(c.clone()),
            Credentials::OAuth2Command(c) => oauth = Some(c.clone()),
            Credentials::Env(v) => password_env = Some(v.clone()),
            Credentials::Prompt => {}
        }
        let (keep, delete, delete_after_days) = match a.policy {
            Policy::Keep => (Some(true), None, None),
            Policy::Delete => (None, Some(true), None),
            Policy::DeleteAfterDays(d) => (None, None, Some(d)),
        };
        let (mut recipient, mut imap) = (None, None);
        let target = match &a.target {
            TargetSpec::Maildir(p) => TargetOut::Maildir(p.clone()),
            TargetSpec::Mbox(p) => TargetOut::Mbox(p.clone()),
            TargetSpec::Mda(c) => TargetOut::Mda(c.clone()),
            TargetSpec::Lmtp { url, recipient: r } => {
                recipient = Some(r.clone());
                TargetOut::Lmtp(url.clone())
            }
            TargetSpec::Smtp { url, recipient: r } => {
                recipient = Some(r.clone());
                TargetOut::Smtp(url.clone())
            }
            TargetSpec::Imap(spec) => {
                imap = Some(ImapOut::of(spec));
                TargetOut::Imap(spec.url.clone())
            }
        };
        let shown = AccountOut {
            url: a.url_text.clone(),
            user: a.user.clone(),
            password,
            password_file,
            password_command,
            oauth2_token_command: oauth,
            password_env,
            tls: a.tls.unwrap_or(if a.url.secure {
                TlsArg::Implicit
            } else {
                TlsArg::Starttls
            }),
            ca_file: a.ca_file.clone(),
            insecure: a.insecure,
            keep,
            delete,
            delete_after_days,
            max_size: a.max_size,
            limit: a.limit,
            interval: a.interval.map(|i| Interval(i).to_string()),
            target,
            recipient,
            imap,
        };
        out.accounts.insert(a.name.clone(), shown);
    }
    toml::to_string_pretty(&out).map_err(|e| e.to_string())
}

/// The `imap` target's own keys: the IMAP server's credentials (never the POP3 account's:
/// they are another server's) and TLS settings. `None` without an `imap` target, whose keys
/// are then refused.
fn imap_spec(
    a: &AccountFile,
    name: &str,
    dir: &Path,
    at: &dyn Fn(std::ops::Range<usize>, &str, &str) -> String,
) -> Result<Option<ImapSpec>, String> {
    let key = |k: &str| format!("accounts.{name}.{k}");
    let credentials = [
        (
            "imap_password_command",
            a.imap_password_command.as_ref().map(Spanned::span),
        ),
        (
            "imap_password_file",
            a.imap_password_file.as_ref().map(Spanned::span),
        ),
        (
            "imap_oauth2_token_command",
            a.imap_oauth2_token_command.as_ref().map(Spanned::span),
        ),
    ];
    let Some(u) = &a.imap else {
        let tls = [
            ("imap_ca_file", a.imap_ca_file.as_ref().map(Spanned::span)),
            (
                "imap_allow_plaintext",
                a.imap_allow_plaintext.as_ref().map(Spanned::span),
            ),
        ];
        let stray = given(&credentials).chain(given(&tls)).next();
        return match stray {
            Some((k, s)) => Err(at(s, &key(k), "only an imap target has this key")),
            None => Ok(None),
        };
    };
    if !["imap://", "imaps://"]
        .iter()
        .any(|s| u.get_ref().starts_with(s))
    {
        return Err(at(
            u.span(),
            &key("imap"),
            "expected a URL starting with imap:// or imaps://",
        ));
    }
    let parsed =
        ImapUrl::parse(u.get_ref()).map_err(|e| at(u.span(), &key("imap"), &e.to_string()))?;
    if parsed.user.is_none() {
        return Err(at(
            u.span(),
            &key("imap"),
            "no user: write imaps://user@host/MAILBOX (%40 for an @ in the user name)",
        ));
    }
    one_of(&credentials, &key, &at)?;
    let credentials = if let Some(c) = &a.imap_password_command {
        ImapCredentials::PasswordCommand(c.get_ref().clone())
    } else if let Some(f) = &a.imap_password_file {
        let file = resolve(dir, f.get_ref());
        if let Some(mode) = readable_by_others(&file) {
            return Err(at(
                f.span(),
                &key("imap_password_file"),
                &format!(
                    "{} can be read by others (mode {mode:04o}): chmod 600 it",
                    file.display()
                ),
            ));
        }
        ImapCredentials::PasswordFile(file)
    } else if let Some(c) = &a.imap_oauth2_token_command {
        ImapCredentials::OAuth2TokenCommand(c.get_ref().clone())
    } else {
        return Err(at(
            u.span(),
            &key("imap"),
            "needs the IMAP server's credentials: imap_password_command, imap_password_file or imap_oauth2_token_command",
        ));
    };
    Ok(Some(ImapSpec {
        url: u.get_ref().clone(),
        credentials,
        ca_file: a.imap_ca_file.as_ref().map(|p| resolve(dir, p.get_ref())),
        allow_plaintext: a
            .imap_allow_plaintext
            .as_ref()
            .is_some_and(|b| *b.get_ref()),
    }))
}

/// The keys of `keys` the file gives (each with the span of its value, if given), in order.
fn given<'k>(
    keys: &[(&'k str, Option<std::ops::Range<usize>>)],
) -> impl Iterator<Item = (&'k str, std::ops::Range<usize>)> {
    keys.iter()
        .filter_map(|(k, s)| s.as_ref().map(|s| (*k, s.clone())))
}

/// Refuses a second of the alternative `keys` (the sources of one credential), at its place:
/// `give one of a, b and c (also a)`.
fn one_of(
    keys: &[(&str, Option<std::ops::Range<usize>>)],
    key: &dyn Fn(&str) -> String,
    at: &dyn Fn(std::ops::Range<usize>, &str, &str) -> String,
) -> Result<(), String> {
    let mut set = given(keys);
    let (Some((first, _)), Some((second, s))) = (set.next(), set.next()) else {
        return Ok(());
    };
    let names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
    let (last, rest) = names.split_last().unwrap_or((&"", &[]));
    Err(at(
        s,
        &key(second),
        &format!("give one of {} and {last} (also {first})", rest.join(", ")),
    ))
}

/// An `imap` target's own keys, for `--print-config`.
#[derive(Serialize)]
struct ImapOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    imap_password_command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    imap_password_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    imap_oauth2_token_command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    imap_ca_file: Option<PathBuf>,
    imap_allow_plaintext: bool,
}

impl ImapOut {
    fn of(spec: &ImapSpec) -> ImapOut {
        let (mut command, mut file, mut token) = (None, None, None);
        match &spec.credentials {
            ImapCredentials::PasswordCommand(c) => command = Some(c.clone()),
            ImapCredentials::PasswordFile(f) => file = Some(f.clone()),
            ImapCredentials::OAuth2TokenCommand(c) => token = Some(c.clone()),
        }
        ImapOut {
            imap_password_command: command,
            imap_password_file: file,
            imap_oauth2_token_command: token,
            imap_ca_file: spec.ca_file.clone(),
            imap_allow_plaintext: spec.allow_plaintext,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Config, String> {
        parse(Path::new("/etc/f.toml"), text)
    }

    const GOOD: &str = r#"
jobs = 2
interval = "5m"

[accounts.work]
url = "pop3s://alice@mail.example.com"
password_command = "pass show work"
keep = true
maildir = "Mail/work"

[accounts.home]
url = "pop3://mail.example.org:1110"
user = "bob"
oauth2_token_command = "get-token"
tls = "starttls"
delete_after_days = 30
max_size = "20M"
interval = "1h30m"
mda = "procmail -d %u"
"#;

    #[test]
    fn a_good_file() {
        let c = parse_str(GOOD).unwrap();
        assert_eq!(c.jobs, Some(2));
        assert_eq!(c.interval, Some(Duration::from_secs(300)));
        let home = &c.accounts[0];
        assert_eq!(home.name, "home");
        assert_eq!(home.user, "bob");
        assert_eq!(home.url.port, 1110);
        assert_eq!(home.policy, Policy::DeleteAfterDays(30));
        assert_eq!(home.max_size, Some(20 << 20));
        assert_eq!(home.interval, Some(Duration::from_secs(5400)));
        assert_eq!(home.target, TargetSpec::Mda("procmail -d %u".into()));
        assert_eq!(home.tls, Some(TlsArg::Starttls));
        let work = &c.accounts[1];
        assert_eq!(work.user, "alice");
        assert_eq!(work.policy, Policy::Keep);
        assert_eq!(work.target, TargetSpec::Maildir("/etc/Mail/work".into()));
        let printed = print(2, c.interval, Path::new("/s"), &c.accounts).unwrap();
        assert!(printed.contains("[accounts.home]"), "{printed}");
        assert!(printed.contains("delete_after_days = 30"), "{printed}");
        assert!(printed.contains("interval = \"1h 30m\""), "{printed}");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = parse_str("[accounts.a]\nurl = \"pop3s://u@h\"\nbogus = 1\n").unwrap_err();
        assert!(
            e.starts_with("/etc/f.toml:3:1: unknown field `bogus`"),
            "{e}"
        );
        let e = parse_str(
            "[accounts.a]\nurl = \"imap://u@h\"\nmaildir = \"m\"\npassword_command = \"x\"\n",
        )
        .unwrap_err();
        assert!(
            e.starts_with("/etc/f.toml:2:7: accounts.a.url: invalid URL"),
            "{e}"
        );
        let e = parse_str(
            "[accounts.a]\nurl = \"pop3s://u@h\"\npassword_command = \"x\"\nmaildir = \"m\"\nmbox = \"b\"\n",
        )
        .unwrap_err();
        assert!(
            e.starts_with("/etc/f.toml:5:8: accounts.a.mbox: one target per account"),
            "{e}"
        );
        let e = parse_str(
            "[accounts.a]\nurl = \"pop3s://u@h\"\npassword_command = \"x\"\nkeep = true\ndelete = true\nmaildir = \"m\"\n",
        )
        .unwrap_err();
        assert!(
            e.contains(":5:10: accounts.a.delete: give one of keep"),
            "{e}"
        );
        let e = parse_str("[accounts.a]\nurl = \"pop3s://u@h\"\nmaildir = \"m\"\n").unwrap_err();
        assert!(e.contains(":1:1: accounts.a: no credentials"), "{e}");
        let e = parse_str(
            "[accounts.a]\nurl = \"pop3s://u@h\"\npassword_command = \"x\"\nlmtp = \"lmtp://h:24\"\n",
        )
        .unwrap_err();
        assert!(e.contains("accounts.a.lmtp: needs recipient"), "{e}");
        let e = parse_str(
            "[accounts.a]\nurl = \"pop3s://u@h\"\npassword_command = \"x\"\nmaildir = \"m\"\ninterval = \"5 parsecs\"\n",
        )
        .unwrap_err();
        assert!(e.contains(":5:12: ") && e.contains("90s, 5m"), "{e}");
        let e = parse_str(
            "[accounts.a]\nurl = \"pop3s://u@h\"\nuser = \"v\"\npassword_command = \"x\"\nmaildir = \"m\"\n",
        )
        .unwrap_err();
        assert!(e.contains(":3:8: accounts.a.user"), "{e}");
    }

    #[test]
    fn network_targets_parse() {
        let c = parse_str(
            "[accounts.a]\nurl = \"pop3s://u@h\"\npassword_command = \"x\"\nsmtp = \"smtp://localhost:25\"\nrecipient = \"me@example.com\"\n[accounts.b]\nurl = \"pop3s://u@h\"\npassword_command = \"x\"\nimap = \"imaps://me@host/INBOX\"\nimap_password_command = \"y\"\n",
        )
        .unwrap();
        assert_eq!(
            c.accounts[0].target,
            TargetSpec::Smtp {
                url: "smtp://localhost:25".into(),
                recipient: "me@example.com".into()
            }
        );
        assert_eq!(
            c.accounts[1].target,
            TargetSpec::Imap(ImapSpec {
                url: "imaps://me@host/INBOX".into(),
                credentials: ImapCredentials::PasswordCommand("y".into()),
                ca_file: None,
                allow_plaintext: false,
            })
        );
    }

    #[test]
    fn intervals_and_sizes() {
        for (s, secs) in [
            ("90", 90),
            ("90s", 90),
            ("5m", 300),
            ("1h30m", 5400),
            ("1h 30m", 5400),
            (" 5 min ", 300),
            ("2d", 172_800),
            ("2days", 172_800),
        ] {
            let i = s.parse::<Interval>().unwrap();
            assert_eq!(i.0.as_secs(), secs, "{s}");
            // Shown as it reads back.
            assert_eq!(i.to_string().parse::<Interval>(), Ok(i), "{s}");
        }
        assert_eq!(Interval(Duration::from_secs(300)).to_string(), "5m");
        assert_eq!(Interval(Duration::from_secs(5400)).to_string(), "1h 30m");
        for bad in ["", "m", "5x", "-1m", "1h30", "99999999999999999999d"] {
            assert!(bad.parse::<Interval>().is_err(), "{bad}");
        }
        assert_eq!("512k".parse::<Size>().unwrap().0, 512 * 1024);
        assert_eq!("100".parse::<Size>().unwrap().0, 100);
        assert!("x".parse::<Size>().is_err());
    }

    #[test]
    fn imap_target_keys() {
        let base = "[accounts.a]\nurl = \"pop3s://u@h\"\npassword_command = \"x\"\n";
        let c = parse_str(&format!(
            "{base}imap = \"imap://me%40example.com@127.0.0.1:1143/Archive\"\n\
             imap_oauth2_token_command = \"tok\"\nimap_ca_file = \"ca.pem\"\nimap_allow_plaintext = true\n"
        ))
        .unwrap();
        assert_eq!(
            c.accounts[0].target,
            TargetSpec::Imap(ImapSpec {
                url: "imap://me%40example.com@127.0.0.1:1143/Archive".into(),
                credentials: ImapCredentials::OAuth2TokenCommand("tok".into()),
                ca_file: Some("/etc/ca.pem".into()),
                allow_plaintext: true,
            })
        );
        let printed = print(1, None, Path::new("/s"), &c.accounts).unwrap();
        assert!(
            printed.contains("imap_oauth2_token_command = \"tok\"")
                && printed.contains("imap_allow_plaintext = true"),
            "{printed}"
        );
        for (extra, want) in [
            (
                "imap = \"imaps://me@h/INBOX\"\n",
                ":4:8: accounts.a.imap: needs the IMAP server's credentials",
            ),
            (
                "imap = \"imaps://h/INBOX\"\nimap_password_command = \"y\"\n",
                ":4:8: accounts.a.imap: no user",
            ),
            (
                "imap = \"imaps://me:pw@h/INBOX\"\nimap_password_command = \"y\"\n",
                ":4:8: accounts.a.imap: invalid IMAP URL",
            ),
            (
                "imap = \"imaps://me@h\"\nimap_password_command = \"y\"\nimap_oauth2_token_command = \"z\"\n",
                ":6:29: accounts.a.imap_oauth2_token_command: give one of",
            ),
            (
                "maildir = \"m\"\nimap_password_command = \"y\"\n",
                ":5:25: accounts.a.imap_password_command: only an imap target",
            ),
        ] {
            let e = parse_str(&format!("{base}{extra}")).unwrap_err();
            assert!(e.contains(want), "{extra}: {e}");
        }
    }
}
