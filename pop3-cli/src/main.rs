//! `pop3`: a POP3 server over Maildir (`pop3 serve`) and a mail fetcher that never loses a
//! message (`pop3 fetch`). See `pop3 --help`.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

mod config;
mod demo;
mod fetch;
mod metrics;
mod observe;
mod reload;
mod serve;
mod sink;
mod systemd;
mod url;

#[derive(Parser, Debug)]
#[command(name = "pop3", version, about = "POP3 server and mail fetcher")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve Maildirs over POP3. With no arguments: a demo in ./pop3-demo/.
    Serve(ServeArgs),
    /// Fetch mail from a POP3 server into a Maildir or an mbox.
    ///
    /// Each message is durable in the destination before its DELE is sent, and deletions take
    /// effect only at the QUIT after all of them: a fetch killed at any moment and run again
    /// ends with every message exactly once. The login mechanism is the URL's `;AUTH=` or the
    /// strongest the server offers (SCRAM-SHA-256, CRAM-MD5, PLAIN, USER/PASS); without a
    /// password option the password is asked for on the terminal.
    Fetch(FetchArgs),
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
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
struct FetchArgs {
    /// `pop3://[user[;AUTH=mechanism]@]host[:port]` or `pop3s://...`
    url: String,
    /// Store into this Maildir (created if missing).
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "mbox",
        required_unless_present = "mbox"
    )]
    maildir: Option<PathBuf>,
    /// Append to this mbox (mboxrd), under a lock.
    #[arg(long, value_name = "FILE")]
    mbox: Option<PathBuf>,
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
    /// No progress and no summary.
    #[arg(long)]
    quiet: bool,
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
        Cmd::Fetch(args) => fetch::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pop3: error: {e}");
            ExitCode::FAILURE
        }
    }
}
