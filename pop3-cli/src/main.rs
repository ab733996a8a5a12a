//! `pop3`: a POP3 server over Maildir (`pop3 serve`) and a mail fetcher that never loses a
//! message (`pop3 fetch`). See `pop3 --help`.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod demo;
mod fetch;
mod serve;
mod sink;
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
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
struct ServeArgs {
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
    /// Most connections at once (per listener).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_connections: usize,
    /// Most password checks hashed at once, on threads of their own (default: one per CPU):
    /// a storm of logins against costly schemes never stalls sessions already downloading.
    #[arg(long, value_name = "N")]
    auth_threads: Option<usize>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
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
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Serve(args) => serve::run(args),
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
