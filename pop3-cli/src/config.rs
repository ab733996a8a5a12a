//! `pop3 serve --config FILE`: the TOML configuration file, and `--check-config FILE`.
//!
//! Every flag of `pop3 serve` has a key here (flags given on the command line win over the
//! file), plus what flags cannot say: several listeners, each with its own TLS mode and
//! certificate. Unknown keys are errors, reported with their line and column. Relative paths
//! in the file are relative to the file's directory. `contrib/pop3.toml` documents every key.
//!
//! The file is merged into [`ServeArgs`], which stays the one description of a server that
//! `serve::run` reads.

use std::fmt;
use std::path::{Path, PathBuf};

use clap::ArgMatches;
use clap::parser::ValueSource;
use pop3_server_core::session::Retention;
use serde::{Deserialize, Serialize};

use crate::{LogFormat, LogLevel, MaildropLockArg, ServeArgs};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// How a listener uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TlsMode {
    /// Plain text, no `STLS`.
    None,
    /// Plain text, `STLS` offered (needs a certificate).
    Starttls,
    /// TLS from the first byte (RFC 8314; needs a certificate).
    Implicit,
}

/// One `[[listener]]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Listener {
    /// `host:port` to bind (ignored under socket activation).
    pub(crate) address: String,
    /// Default: `starttls` when a certificate is configured, else `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tls: Option<TlsMode>,
    /// Matched against systemd's `FileDescriptorName=` under socket activation. Default:
    /// `pop3s` for implicit TLS, else `pop3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    /// This listener's own certificate chain (PEM), instead of `[tls]`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cert: Option<PathBuf>,
    /// This listener's own private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<PathBuf>,
}

/// A listener with every choice made.
#[derive(Debug, Clone)]
pub(crate) struct ListenerSpec {
    pub(crate) address: String,
    pub(crate) tls: TlsMode,
    pub(crate) name: String,
    /// The certificate and key this listener uses (its own or the default); `None` for
    /// `tls = "none"`.
    pub(crate) cert: Option<(PathBuf, PathBuf)>,
}

/// `expire`: what happens to mail left on the server, advertised as `EXPIRE` (RFC 2449 §6.7):
/// `never` (the default), `0` (mail retrieved in a session is removed at its QUIT, by this
/// server), or a number of days (another program removes mail that old).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExpireArg {
    Never,
    Days(u64),
}

impl std::str::FromStr for ExpireArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("never") {
            return Ok(ExpireArg::Never);
        }
        s.parse()
            .map(ExpireArg::Days)
            .map_err(|_| format!("{s:?}: expected \"never\" or a number of days"))
    }
}

impl fmt::Display for ExpireArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpireArg::Never => f.write_str("never"),
            ExpireArg::Days(d) => write!(f, "{d}"),
        }
    }
}

impl From<ExpireArg> for Retention {
    fn from(e: ExpireArg) -> Self {
        match e {
            ExpireArg::Never => Retention::Never,
            ExpireArg::Days(0) => Retention::RemoveRetrieved,
            ExpireArg::Days(days) => Retention::External(days),
        }
    }
}

impl Serialize for ExpireArg {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ExpireArg::Never => s.serialize_str("never"),
            ExpireArg::Days(d) => s.serialize_u64(*d),
        }
    }
}

impl<'de> Deserialize<'de> for ExpireArg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EXPECTED: &str = "expected \"never\" or a number of days";
        number_or_text(
            d,
            "\"never\" or a number of days",
            EXPECTED,
            ExpireArg::Days,
            |v| match v {
                "never" => Ok(ExpireArg::Never),
                _ => Err(EXPECTED.into()),
            },
        )
    }
}

/// Deserializes a value a file may write as a TOML integer or as a string (`30` or
/// `"never"`, `90` or `"5m"`): `number` makes it of an integer that is not negative, `text` of
/// a string. `expecting` says what was expected, `negative` is the error for an integer below
/// zero.
pub(crate) fn number_or_text<'de, D: serde::Deserializer<'de>, T>(
    d: D,
    expecting: &'static str,
    negative: &'static str,
    number: fn(u64) -> T,
    text: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error> {
    struct Visitor<T> {
        expecting: &'static str,
        negative: &'static str,
        number: fn(u64) -> T,
        text: fn(&str) -> Result<T, String>,
    }
    impl<T> serde::de::Visitor<'_> for Visitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
            Ok((self.number)(v))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
            u64::try_from(v)
                .map(self.number)
                .map_err(|_| E::custom(self.negative))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            (self.text)(v).map_err(E::custom)
        }
    }
    d.deserialize_any(Visitor {
        expecting,
        negative,
        number,
        text,
    })
}

/// The file, as written: every key optional.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    #[serde(default)]
    users: Users,
    #[serde(default)]
    store: Store,
    #[serde(default, skip_serializing_if = "Tls::is_empty")]
    tls: Tls,
    #[serde(default)]
    policy: Policy,
    #[serde(default)]
    log: Log,
    #[serde(default, skip_serializing_if = "Metrics::is_empty")]
    metrics: Metrics,
    #[serde(default, skip_serializing_if = "Lmtp::is_empty")]
    lmtp: Lmtp,
    #[serde(default, rename = "listener", skip_serializing_if = "Vec::is_empty")]
    listeners: Vec<Listener>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Users {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    passwd_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth_threads: Option<usize>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Store {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    maildir_root: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    postgres: Option<pop3_store_postgres::PgConfig>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Tls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<PathBuf>,
}

impl Tls {
    fn is_empty(&self) -> bool {
        self.cert.is_none() && self.key.is_none()
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Policy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allow_plaintext_auth: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idle_timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command_timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_connections: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    login_timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_unauthenticated_per_ip: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_sessions_per_user: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    login_delay: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expire: Option<ExpireArg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    maildrop_lock: Option<MaildropLockArg>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Log {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    format: Option<LogFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    level: Option<LogLevel>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Metrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
}

impl Metrics {
    fn is_empty(&self) -> bool {
        self.listen.is_none()
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Lmtp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_message_size: Option<u64>,
}

impl Lmtp {
    fn is_empty(&self) -> bool {
        self.listen.is_none() && self.max_message_size.is_none()
    }
}

/// `FILE:LINE:COLUMN: message` for the octet offset `at` of `text` (`FILE: message` without
/// one): the errors of `pop3 serve`'s and `pop3 fetch`'s configuration files.
pub(crate) fn located(path: &Path, text: &str, at: Option<usize>, message: &str) -> String {
    let Some(at) = at else {
        return format!("{}: {}", path.display(), message.trim_end());
    };
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{}:{line}:{column}: {}", path.display(), message.trim_end())
}

/// Parses the text of a configuration file.
pub(crate) fn parse(path: &Path, text: &str) -> Result<ConfigFile, String> {
    toml::from_str(text).map_err(|e| located(path, text, e.span().map(|s| s.start), e.message()))
}

/// Reads and parses a configuration file, its relative paths made relative to its directory.
fn load(path: &Path) -> Result<ConfigFile, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the configuration {}: {e}", path.display()))?;
    let mut file = parse(path, &text)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let fix = |p: &mut Option<PathBuf>| {
        if let Some(p) = p {
            *p = dir.join(&*p);
        }
    };
    fix(&mut file.users.passwd_file);
    fix(&mut file.store.maildir_root);
    fix(&mut file.tls.cert);
    fix(&mut file.tls.key);
    for l in &mut file.listeners {
        fix(&mut l.cert);
        fix(&mut l.key);
    }
    Ok(file)
}

/// The `[store]` of the configuration file at `path`: its Maildir root and its PostgreSQL
/// store (for `pop3 deliver`, `migrate`, `import` and `gc`).
pub(crate) fn store_of_file(
    path: &Path,
) -> Result<(Option<PathBuf>, Option<pop3_store_postgres::PgConfig>), String> {
    load(path)
        .map(|file| (file.store.maildir_root, file.store.postgres))
        .map_err(|e| e.to_string())
}

/// Reads `args.config` (if any) into `args`, except what the command line gave.
pub(crate) fn apply(args: &mut ServeArgs, matches: &ArgMatches) -> Result<(), Error> {
    let Some(path) = args.config.clone() else {
        return Ok(());
    };
    let file = load(&path)?;
    merge(args, matches, file)
}

/// Whether the flag with this id was given on the command line.
fn given(matches: &ArgMatches, id: &str) -> bool {
    matches.value_source(id) == Some(ValueSource::CommandLine)
}

fn merge(args: &mut ServeArgs, matches: &ArgMatches, file: ConfigFile) -> Result<(), Error> {
    // `set!(field, value)`: the file's value, unless the flag `--field` was given.
    macro_rules! set {
        ($field:ident, $value:expr) => {
            if !given(matches, stringify!($field))
                && let Some(v) = $value
            {
                args.$field = v;
            }
        };
    }
    macro_rules! set_some {
        ($field:ident, $value:expr) => {
            set!($field, $value.map(Some))
        };
    }
    let ConfigFile {
        users,
        store,
        tls,
        policy,
        log,
        metrics,
        lmtp,
        listeners,
    } = file;
    set_some!(users, users.passwd_file);
    set_some!(auth_threads, users.auth_threads);
    if store.postgres.is_some() && store.maildir_root.is_some() {
        return Err("[store]: maildir_root and postgres are two different stores: give one".into());
    }
    set_some!(maildir_root, store.maildir_root);
    if given(matches, "postgres") {
        args.postgres_config = args
            .postgres
            .clone()
            .map(pop3_store_postgres::PgConfig::new);
    } else if !given(matches, "maildir_root") {
        args.postgres_config = store.postgres;
    }
    if tls.cert.is_some() != tls.key.is_some() {
        return Err("[tls] needs both cert and key".into());
    }
    if !given(matches, "cert") && !given(matches, "key") {
        set_some!(cert, tls.cert);
        set_some!(key, tls.key);
    }
    set!(allow_plaintext_auth, policy.allow_plaintext_auth);
    set!(idle_timeout, policy.idle_timeout);
    set!(command_timeout, policy.command_timeout);
    set!(max_connections, policy.max_connections);
    set!(login_timeout, policy.login_timeout);
    set!(
        max_unauthenticated_per_ip,
        policy.max_unauthenticated_per_ip
    );
    set!(max_sessions_per_user, policy.max_sessions_per_user);
    set_some!(login_delay, policy.login_delay);
    set_some!(expire, policy.expire);
    set_some!(maildrop_lock, policy.maildrop_lock);
    set!(log_format, log.format);
    set!(log_level, log.level);
    set_some!(metrics_listen, metrics.listen);
    set_some!(lmtp_listen, lmtp.listen);
    set!(lmtp_max_message_size, lmtp.max_message_size);
    if !given(matches, "listen") && !given(matches, "tls_listen") {
        args.listeners = listeners;
    }
    Ok(())
}

/// The listeners to serve: `--listen`/`--tls-listen` if given, else the file's; each with
/// its TLS mode, name and certificate decided.
pub(crate) fn listeners(args: &ServeArgs) -> Result<Vec<ListenerSpec>, Error> {
    let from_flags = args
        .listen
        .iter()
        .map(|a| Listener {
            address: a.clone(),
            ..Listener::default()
        })
        .chain(args.tls_listen.iter().map(|a| Listener {
            address: a.clone(),
            tls: Some(TlsMode::Implicit),
            ..Listener::default()
        }));
    let all: Vec<Listener> = if args.listen.is_empty() && args.tls_listen.is_empty() {
        args.listeners.clone()
    } else {
        from_flags.collect()
    };
    let default_cert = args.cert.clone().zip(args.key.clone());
    all.into_iter()
        .enumerate()
        .map(|(i, l)| {
            let what = format!("listener {} ({})", i + 1, l.address);
            check_address(&l.address).map_err(|e| format!("{what}: {e}"))?;
            let own = match (l.cert, l.key) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => return Err(format!("{what}: give both cert and key, or neither").into()),
            };
            let cert = own.or_else(|| default_cert.clone());
            let tls = l.tls.unwrap_or(if cert.is_some() {
                TlsMode::Starttls
            } else {
                TlsMode::None
            });
            if tls != TlsMode::None && cert.is_none() {
                let hint = if l.tls == Some(TlsMode::Implicit) && args.listeners.is_empty() {
                    "--tls-listen needs --cert and --key"
                } else {
                    "a certificate is needed: cert and key in [tls] or in the listener"
                };
                return Err(format!("{what}: {hint}").into());
            }
            Ok(ListenerSpec {
                name: l.name.unwrap_or_else(|| {
                    if tls == TlsMode::Implicit {
                        "pop3s".into()
                    } else {
                        "pop3".into()
                    }
                }),
                cert: if tls == TlsMode::None { None } else { cert },
                address: l.address,
                tls,
            })
        })
        .collect()
}

/// `host:port` with a numeric port (the host may be a name, an IPv4 address or a bracketed
/// IPv6 address).
fn check_address(address: &str) -> Result<(), String> {
    if address.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    match address.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty() && !host.contains(':') && port.parse::<u16>().is_ok() =>
        {
            Ok(())
        }
        _ => Err("expected host:port, such as 0.0.0.0:110 or [::]:995".into()),
    }
}

/// The configuration `args` describes, in the file's form (for `--check-config`).
fn effective(args: &ServeArgs, listeners: &[ListenerSpec]) -> ConfigFile {
    ConfigFile {
        users: Users {
            passwd_file: args.users.clone(),
            auth_threads: args.auth_threads,
        },
        store: Store {
            maildir_root: args.maildir_root.clone(),
            postgres: args
                .postgres_config
                .as_ref()
                .map(pop3_store_postgres::PgConfig::redacted),
        },
        tls: Tls {
            cert: args.cert.clone(),
            key: args.key.clone(),
        },
        policy: Policy {
            allow_plaintext_auth: Some(args.allow_plaintext_auth),
            idle_timeout: Some(args.idle_timeout),
            command_timeout: Some(args.command_timeout),
            max_connections: Some(args.max_connections),
            login_timeout: Some(args.login_timeout),
            max_unauthenticated_per_ip: Some(args.max_unauthenticated_per_ip),
            max_sessions_per_user: Some(args.max_sessions_per_user),
            login_delay: args.login_delay,
            expire: Some(args.expire.unwrap_or(ExpireArg::Never)),
            maildrop_lock: Some(args.maildrop_lock.unwrap_or(MaildropLockArg::Snapshot)),
        },
        log: Log {
            format: Some(args.log_format),
            level: Some(args.log_level),
        },
        metrics: Metrics {
            listen: args.metrics_listen.clone(),
        },
        lmtp: Lmtp {
            listen: args.lmtp_listen.clone(),
            max_message_size: args
                .lmtp_listen
                .as_ref()
                .map(|_| args.lmtp_max_message_size),
        },
        listeners: listeners
            .iter()
            .map(|l| {
                let (cert, key) = l.cert.clone().unzip();
                Listener {
                    address: l.address.clone(),
                    tls: Some(l.tls),
                    name: Some(l.name.clone()),
                    cert,
                    key,
                }
            })
            .collect(),
    }
}

/// `pop3 serve --check-config FILE`: reads the file and the flags as `serve` would, checks
/// the files it names (the users, the certificates, the maildir root), prints the effective
/// configuration (paths, never key material or passwords) and fails on the first problem.
pub(crate) fn check(mut args: ServeArgs, matches: &ArgMatches) -> Result<(), Error> {
    let path = args
        .check_config
        .clone()
        .ok_or("--check-config FILE is required")?;
    args.config = Some(path.clone());
    apply(&mut args, matches)?;
    let listeners = listeners(&args)?;
    let text = toml::to_string_pretty(&effective(&args, &listeners))?;
    println!(
        "# pop3 serve: the effective configuration of {}",
        path.display()
    );
    println!("# (the file, with the command-line flags over it)");
    println!();
    print!("{text}");
    println!();
    let mut problems = Vec::new();
    if listeners.is_empty() {
        println!("# no listener: socket activation (LISTEN_FDS) must hand them over");
    }
    match &args.users {
        None => problems.push("no users: [users] passwd_file (or --users) is required".into()),
        Some(users) => match pop3_server_core::passwd::PasswdFile::load(users) {
            Ok(file) => println!("# users: {} in {}", file.len(), users.display()),
            Err(e) => problems.push(format!("users {}: {e}", users.display())),
        },
    }
    match &args.maildir_root {
        None => {
            problems.push("no store: [store] maildir_root (or --maildir-root) is required".into())
        }
        Some(root) if root.is_dir() => println!("# maildir root: {}", root.display()),
        Some(root) => problems.push(format!("maildir root {}: not a directory", root.display())),
    }
    let mut seen = Vec::new();
    for (cert, key) in listeners.iter().filter_map(|l| l.cert.as_ref()) {
        if seen.contains(&(cert, key)) {
            continue;
        }
        seen.push((cert, key));
        match read_certified_key(cert, key) {
            Ok(n) => println!(
                "# certificate {} ({n} in the chain), key {}: they match",
                cert.display(),
                key.display()
            ),
            Err(e) => problems.push(e),
        }
    }
    let _ = std::io::Write::flush(&mut std::io::stdout());
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\npop3: error: ").into())
    }
}

/// Reads and checks a certificate chain and its key; the number of certificates.
pub(crate) fn read_certified_key(cert: &Path, key: &Path) -> Result<usize, String> {
    let c = std::fs::read(cert).map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
    let k = std::fs::read(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
    let k = zeroize::Zeroizing::new(k);
    pop3_tls::certified_key(&c, &k)
        .map(|ck| ck.cert.len())
        .map_err(|e| {
            format!(
                "certificate {} with key {}: {e}",
                cert.display(),
                key.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags `merge` takes from the file (by clap id), `--listen`/`--tls-listen` being the
    /// `[[listener]]`s.
    const MAPPED: &[&str] = &[
        "postgres",
        "lmtp_listen",
        "lmtp_max_message_size",
        "listen",
        "tls_listen",
        "maildir_root",
        "users",
        "cert",
        "key",
        "allow_plaintext_auth",
        "idle_timeout",
        "command_timeout",
        "max_connections",
        "login_timeout",
        "max_unauthenticated_per_ip",
        "max_sessions_per_user",
        "auth_threads",
        "log_format",
        "log_level",
        "metrics_listen",
        "login_delay",
        "expire",
        "maildrop_lock",
    ];

    /// A new flag of `pop3 serve` needs its key: in `merge`, in `effective`, and documented in
    /// contrib/pop3.toml.
    #[test]
    fn every_serve_flag_has_a_key_and_is_documented() {
        use clap::CommandFactory;
        let example =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/pop3.toml"))
                .unwrap();
        let cli = crate::Cli::command();
        let serve = cli.find_subcommand("serve").unwrap();
        for arg in serve.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if ["config", "check-config", "help"].contains(&long) {
                continue;
            }
            let id = arg.get_id().as_str();
            assert!(MAPPED.contains(&id), "--{long} has no configuration key");
            assert!(
                example.contains(&format!("--{long}")),
                "contrib/pop3.toml does not document --{long}"
            );
        }
    }

    #[test]
    fn errors_carry_line_and_column() {
        let text = "[policy]\nidle_timeout = 5\nbogus = 1\n";
        let e = parse(Path::new("f.toml"), text).unwrap_err();
        assert!(e.starts_with("f.toml:3:1: unknown field `bogus`"), "{e}");
        let e = parse(Path::new("f.toml"), "[policy]\nidle_timeout = \"x\"\n").unwrap_err();
        assert!(e.starts_with("f.toml:2:16: "), "{e}");
        let e = parse(Path::new("f.toml"), "[policy]\nexpire = \"soon\"\n").unwrap_err();
        assert!(e.contains("\"never\" or a number of days"), "{e}");
    }

    #[test]
    fn expire_reads_never_or_days() {
        let f = parse(Path::new("f"), "[policy]\nexpire = \"never\"\n").unwrap();
        assert_eq!(f.policy.expire, Some(ExpireArg::Never));
        let f = parse(Path::new("f"), "[policy]\nexpire = 30\n").unwrap();
        assert_eq!(f.policy.expire, Some(ExpireArg::Days(30)));
    }

    #[test]
    fn addresses() {
        for ok in ["0.0.0.0:110", "[::]:995", "localhost:110", "127.0.0.1:0"] {
            assert!(check_address(ok).is_ok(), "{ok}");
        }
        for bad in ["110", "localhost", ":110", "::1:110", "host:port"] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }
}
