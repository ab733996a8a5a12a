//! `pop3`: a POP3 server over Maildir (`pop3 serve`) and a mail fetcher that never loses a
//! message (`pop3 fetch`). See `pop3 --help`.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

mod admin;
mod config;
mod daemon;
mod deliver;
mod demo;
mod fetch;
mod fetch_config;
mod imap_append;
mod lmtp;
mod metrics;
mod observe;
mod reload;
mod serve;
mod signals;
mod sink;
mod systemd;
mod target;
mod uidl_import;
mod url;

#[derive(Parser, Debug)]
#[command(name = "pop3", version, about = "POP3 server and mail fetcher")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Cmd {
    /// Serve Maildirs over POP3. With no arguments: a demo in ./pop3-demo/.
    Serve(ServeArgs),
    /// Fetch mail from POP3 servers into a Maildir, an mbox or an MDA.
    ///
    /// With a URL, that account (the flags say the rest); without one, every account of the
    /// configuration file (~/.config/pop3/fetch.toml; see contrib/fetch.toml), several at once,
    /// or those --account names. Each message is durable in the target before its DELE is
    /// sent, and deletions take effect only at the QUIT after all of them: a fetch killed at
    /// any moment and run again ends with every message exactly once. The login mechanism is
    /// the URL's `;AUTH=` or the strongest the server offers (SCRAM-SHA-256, CRAM-MD5, PLAIN,
    /// USER/PASS); without a password option the password is asked for on the terminal. Exit
    /// status: 0; 75 when an MDA deferred messages (left on the server); 1 on any failure.
    Fetch(FetchArgs),
    /// Deliver one message from standard input into a user's maildrop (an MDA).
    ///
    /// For Postfix's `mailbox_command`, procmail, fetchmail or getmail. The message is durable
    /// before the exit status 0; otherwise nothing is stored and the status says why
    /// (sysexits.h): 67 no such user, 65 too big, 75 try again later, 69 failed, 78 bad
    /// configuration. A leading mbox `From ` line is dropped.
    Deliver(deliver::DeliverArgs),
    /// Apply the PostgreSQL store's schema migrations (`pop3 serve` also does at start).
    Migrate(admin::MigrateArgs),
    /// Copy a Maildir root and its passwd-file into the PostgreSQL store, keeping every
    /// message's UIDL (clients that leave mail on the server download nothing again); running
    /// it twice adds nothing.
    Import(admin::ImportArgs),
    /// Remove message bodies in the object store that no message refers to any more.
    Gc(admin::GcArgs),
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum LogFormat {
    Text,
    Json,
}

/// Least severe log events written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Settings from this TOML file (see contrib/pop3.toml); flags given here win over it.
    /// SIGHUP re-reads the users file and the certificates it names.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check this configuration file (and the files it names), print the effective
    /// configuration and exit: 0 when it is good.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    /// Plain-text listener (repeatable); offers STLS when a certificate is configured.
    #[arg(long = "listen", value_name = "ADDR")]
    listen: Vec<String>,
    /// Implicit-TLS listener (repeatable).
    #[arg(long = "tls-listen", value_name = "ADDR")]
    tls_listen: Vec<String>,
    /// User U's maildrop is the Maildir DIR/U.
    #[arg(long, value_name = "DIR")]
    maildir_root: Option<PathBuf>,
    /// Keep users and mail in this PostgreSQL database (a libpq URL,
    /// `postgresql://user@host/db`) instead of Maildirs and a users file; the schema is
    /// migrated at start. `[store.postgres]` in the configuration file has every setting
    /// (pool size, bodies in S3, lease length).
    #[arg(long, value_name = "URL", conflicts_with_all = ["maildir_root", "users"])]
    postgres: Option<String>,
    /// The configuration file's PostgreSQL store (or `--postgres`'s).
    #[arg(skip)]
    postgres_config: Option<pop3_store_postgres::PgConfig>,
    /// Dovecot-style passwd-file of users.
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,
    /// TLS certificate chain, PEM.
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// TLS private key, PEM.
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    /// Accept passwords over connections without TLS.
    #[arg(long)]
    allow_plaintext_auth: bool,
    /// Autologout after this many idle seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    idle_timeout: u64,
    /// Close a client that takes longer than this many seconds to send one command line.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    command_timeout: u64,
    /// Most connections at once (per listener). When full, the oldest connection that has
    /// not logged in is closed to make room; logged-in sessions are never closed for it.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_connections: usize,
    /// Close a connection that has not logged in this many seconds after it connected.
    #[arg(long, value_name = "SECS",
        default_value_t = pop3_server_core::session::SessionRules::default().login_timeout.as_secs())]
    login_timeout: u64,
    /// Most connections from one IP address that have not logged in (per listener); more
    /// are refused with `-ERR [SYS/TEMP]`.
    #[arg(long, value_name = "N",
        default_value_t = pop3_tokio::server::ServerOptions::default().max_unauthenticated_per_ip)]
    max_unauthenticated_per_ip: usize,
    /// Most sessions of one user logged in at once (0: no limit); one more login gets
    /// `-ERR [IN-USE]`.
    #[arg(long, value_name = "N",
        default_value_t = pop3_server_core::session::Policy::default().max_sessions_per_user.unwrap_or(0))]
    max_sessions_per_user: usize,
    /// Most password checks hashed at once, on threads of their own (default: one per CPU):
    /// a storm of logins against costly schemes never stalls sessions already downloading.
    #[arg(long, value_name = "N")]
    auth_threads: Option<usize>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Least severe log events written: `info` has a line per login, failed login and
    /// session end; `debug` adds connections closed, STLS, messages sent.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    log_level: LogLevel,
    /// Serve Prometheus metrics over plain HTTP on this address (`GET /metrics`); keep it
    /// on a private address or behind a firewall.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Minimum seconds between two logins of one user (advertised as LOGIN-DELAY, enforced
    /// with `-ERR [LOGIN-DELAY]`).
    #[arg(long, value_name = "SECS")]
    login_delay: Option<u64>,
    /// What happens to mail left on the server, advertised as EXPIRE [default: never]: `0`,
    /// mail retrieved in a session is removed at its QUIT; DAYS, another program (a cron
    /// job) removes mail that old, as `pop3 serve` itself does not.
    #[arg(long, value_name = "never|DAYS")]
    expire: Option<config::ExpireArg>,
    /// How sessions of one user share the maildrop [default: snapshot]: `snapshot`, each
    /// session works on the maildrop as it was at its login and QUIT removes only what it
    /// marked (a phone and a laptop can both poll, as with Dovecot's default); `exclusive`,
    /// one session at a time, the others refused with `-ERR [IN-USE]`.
    #[arg(long, value_enum, value_name = "MODE")]
    maildrop_lock: Option<MaildropLockArg>,
    /// Accept mail by LMTP (RFC 2033) on this address, for the users of the users file; keep
    /// it on loopback or a private network (LMTP has no authentication). Mail is
    /// acknowledged only once it is durable.
    #[arg(long, value_name = "ADDR")]
    lmtp_listen: Option<String>,
    /// The largest message LMTP accepts, in octets (advertised as SIZE).
    #[arg(long, value_name = "OCTETS",
        default_value_t = pop3_lmtp::server::Config::default().max_message_size)]
    lmtp_max_message_size: u64,
    /// The configuration file's listeners (when the flags give none).
    #[arg(skip)]
    listeners: Vec<config::Listener>,
}

/// `--maildrop-lock`: [`pop3_server_core::backend::MaildropLock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum MaildropLockArg {
    /// Sessions run side by side, each on its own snapshot.
    Snapshot,
    /// One session at a time; the others get `[IN-USE]`.
    Exclusive,
}

impl From<MaildropLockArg> for pop3_server_core::backend::MaildropLock {
    fn from(arg: MaildropLockArg) -> Self {
        match arg {
            MaildropLockArg::Snapshot => Self::Snapshot,
            MaildropLockArg::Exclusive => Self::Exclusive,
        }
    }
}

/// How the fetch protects the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum TlsArg {
    /// TLS from the first byte (the default for pop3s://).
    Implicit,
    /// STLS, required (the default for pop3://).
    Starttls,
    /// No TLS at all (passwords readable on the network).
    None,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("secret").multiple(false)))]
#[command(group(clap::ArgGroup::new("target").multiple(false)))]
struct FetchArgs {
    /// `pop3://[user[;AUTH=mechanism]@]host[:port]` or `pop3s://...`; without it, the
    /// accounts of the configuration file.
    #[arg(conflicts_with = "account")]
    url: Option<String>,
    /// Store into this Maildir (created if missing).
    #[arg(long, value_name = "DIR", group = "target")]
    maildir: Option<PathBuf>,
    /// Append to this mbox (mboxrd), under a lock.
    #[arg(long, value_name = "FILE", group = "target")]
    mbox: Option<PathBuf>,
    /// Deliver each message to this command's standard input (`sh -c`; `%u` is the user, `%k` the message's key, also in POP3_FETCH_KEY):
    /// exit 0 delivered, 75 try again later, anything else failed.
    #[arg(long, value_name = "CMD", group = "target")]
    mda: Option<String>,
    /// Leave messages on the server; fetch only those not fetched before.
    #[arg(long)]
    keep: bool,
    /// Password from this environment variable.
    #[arg(long, value_name = "VAR", group = "secret")]
    password_env: Option<String>,
    /// Password from the first line of this file.
    #[arg(long, value_name = "FILE", group = "secret")]
    password_file: Option<PathBuf>,
    /// Password from the output of this command.
    #[arg(long, value_name = "CMD", group = "secret")]
    password_command: Option<String>,
    /// OAuth 2 bearer token from the output of this command (XOAUTH2 or OAUTHBEARER).
    #[arg(long, value_name = "CMD", group = "secret")]
    oauth2_token_command: Option<String>,
    /// TLS mode (default: implicit for pop3s://, starttls for pop3://).
    #[arg(long, value_enum)]
    tls: Option<TlsArg>,
    /// Trust the CA certificates in this PEM file instead of the usual roots.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// Do not verify the server's certificate.
    #[arg(long)]
    insecure: bool,
    /// Fetch at most N messages.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Leave messages larger than this on the server (reported): octets, or 512k, 20M, 1G.
    #[arg(long, value_name = "SIZE")]
    max_size: Option<fetch_config::Size>,
    /// No progress and no summary.
    #[arg(long)]
    quiet: bool,
    /// The accounts file [default: $XDG_CONFIG_HOME/pop3/fetch.toml, that is
    /// ~/.config/pop3/fetch.toml]; see contrib/fetch.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Fetch only this account of the configuration file (repeatable).
    #[arg(long, value_name = "NAME")]
    account: Vec<String>,
    /// Accounts fetched at once [default: the file's `jobs`, else 4].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
    /// Print the accounts as read (every default filled in, secrets redacted) and exit.
    #[arg(long)]
    print_config: bool,
    /// Keep running: poll each account every `interval` (with jitter, backing off after
    /// errors); SIGHUP re-reads the configuration, SIGTERM or SIGINT stops after the current
    /// message.
    #[arg(long)]
    daemon: bool,
    /// The daemon's polling interval (an account's `interval` wins) [default: the file's
    /// `interval`, else 5m].
    #[arg(long, value_name = "DURATION", requires = "daemon")]
    interval: Option<fetch_config::Interval>,
    /// Record the UIDLs another fetcher already fetched, so that they are not fetched again,
    /// and exit: `mpop:FILE` (mpop's uidls_file, ~/.mpop_uidls) or `fetchmail:FILE`
    /// (~/.fetchids). Only the entries of the account's host and user are taken.
    #[arg(long, value_name = "KIND:FILE", conflicts_with_all = ["daemon", "print_config"])]
    import_uidls: Option<String>,
    /// The daemon's log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// The daemon's least severe log events.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    log_level: LogLevel,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Cmd::Serve(mut args) => {
            // Which flags were given, so that they win over the configuration file.
            let given = matches
                .subcommand_matches("serve")
                .expect("the serve subcommand's matches");
            if args.check_config.is_some() {
                config::check(args, given)
            } else {
                config::apply(&mut args, given).and_then(|()| serve::run(args))
            }
        }
        Cmd::Fetch(args) => return fetch::main(args),
        Cmd::Deliver(args) => return deliver::run(args),
        Cmd::Migrate(args) => admin::migrate(args),
        Cmd::Import(args) => admin::import(args),
        Cmd::Gc(args) => admin::gc(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pop3: error: {e}");
            ExitCode::FAILURE
        }
    }
}
