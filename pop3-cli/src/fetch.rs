//! `pop3 fetch`: mail from POP3 servers into a delivery target (a Maildir, an mbox, an MDA;
//! see `target`), pipelined, and never lost.
//!
//! What is fetched is a list of [`Account`]s: the one a URL on the command line describes, or
//! those of the configuration file (`fetch_config`), fetched at once up to `--jobs`, each on a
//! thread of its own (a target may block), one account's failure never stopping the others.
//! `--daemon` polls them (`daemon`), `--import-uidls` records what another fetcher fetched
//! (`uidl_import`).
//!
//! The order of a run, and why a kill (SIGKILL, power loss) at any point is safe:
//!
//! 1. Open and lock the target and its record, before connecting: a second fetch of the same
//!    account into it fails or waits instead of interleaving.
//! 2. Connect (TLS as asked: STLS is required for `pop3://` unless `--tls none`), log in,
//!    `LIST` and `UIDL`. A message whose key (host, user, UIDL) the target already holds was
//!    delivered by an earlier run that did not get as far as its QUIT: it is not fetched
//!    again, only deleted (when the policy deletes it).
//! 3. `RETR` the rest, pipelined; each message is handed to the target, which takes it
//!    ([`Outcome::Stored`]: Maildir, in batches; mbox, synced as it ends; an MDA, when it
//!    exits 0, its key recorded and synced), defers it or refuses it (both leave it on the
//!    server). Nothing is deleted yet: a kill here leaves every message on the server and the
//!    stored ones recognisable.
//! 4. Make the target durable ([`Target::sync`]), then send the `DELE`s, only for messages
//!    stored durably (now or before), then `QUIT`: the server deletes only at that QUIT
//!    (RFC 1939 §6), so a kill before it deletes nothing, and the next run skips and deletes
//!    the stored ones.
//! 5. After the QUIT, rewrite the record (atomically) with the keys of stored messages still
//!    on the server (with `keep`, all of them). A kill before this step leaves keys of
//!    deleted messages, which are dropped when the server no longer lists them.
//!
//! Hence every message ends up exactly once in the target and, when the policy deletes, off
//! the server, as long as the server's UIDLs are stable (RFC 1939 §7 requires it). Without
//! UIDL a message has no identity across runs; a warning says so.
//!
//! `delete_after_days = N` keeps the date each UIDL was first seen in a state file
//! (`seen-<host>-<user>` in the state directory, rewritten atomically after `UIDL`) and
//! deletes a stored message once it was first seen N days ago.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pop3_proto::sasl::choose::{
    Channel, ChoiceError, Exposure, Have, LoginMethod, Offer, Preference, Refusal, choose, rank,
};
use pop3_proto::{MsgNum, Secret};
use pop3_tls::Trust;
use pop3_tokio::client::{Chunk, ClientOptions, Error as ClientError, Pop3Client, TlsMode};

use crate::fetch_config::{self, Account, Credentials, Policy};
use crate::sink::key;
use crate::target::{self, MessageInfo, Outcome, Owner, Target, TargetSpec};
use crate::{FetchArgs, TlsArg, url};

pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// The daemon's polling interval when neither the flag nor the file gives one.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// Accounts fetched at once when neither the flag nor the file says.
const DEFAULT_JOBS: usize = 4;

/// What a run fetches: the accounts, and the settings around them.
pub(crate) struct Plan {
    pub(crate) accounts: Vec<Account>,
    /// Accounts fetched at once.
    pub(crate) jobs: usize,
    /// The daemon's default polling interval.
    pub(crate) interval: Duration,
    pub(crate) state_dir: PathBuf,
    /// The configuration file read, if any: its accounts are named in messages.
    pub(crate) config: Option<PathBuf>,
}

/// The one account a URL on the command line describes.
fn account_from_flags(args: &FetchArgs, text: &str) -> Result<Account, Error> {
    let url = url::parse(text)?;
    let user = url
        .user
        .clone()
        .ok_or("the URL names no user (pop3://user@host)")?;
    let target = match (&args.maildir, &args.mbox, &args.mda) {
        (Some(dir), _, _) => TargetSpec::Maildir(dir.clone()),
        (_, Some(file), _) => TargetSpec::Mbox(file.clone()),
        (_, _, Some(cmd)) => TargetSpec::Mda(cmd.clone()),
        _ => return Err("no destination: --maildir DIR, --mbox FILE or --mda CMD".into()),
    };
    let credentials = if let Some(v) = &args.password_env {
        Credentials::Env(v.clone())
    } else if let Some(f) = &args.password_file {
        Credentials::File(f.clone())
    } else if let Some(c) = &args.password_command {
        Credentials::Command(c.clone())
    } else if let Some(c) = &args.oauth2_token_command {
        Credentials::OAuth2Command(c.clone())
    } else {
        Credentials::Prompt
    };
    Ok(Account {
        name: format!("{user}@{}", url.host),
        url_text: text.to_string(),
        user,
        url,
        credentials,
        tls: args.tls,
        ca_file: args.ca_file.clone(),
        insecure: args.insecure,
        policy: if args.keep {
            Policy::Keep
        } else {
            Policy::Delete
        },
        max_size: args.max_size.map(|s| s.0),
        limit: args.limit,
        interval: None,
        target,
    })
}

/// Reads what to fetch: the URL of the command line, or the configuration file's accounts
/// (those `--account` names), with `--keep`, `--limit` and `--max-size` over them.
pub(crate) fn plan(args: &FetchArgs) -> Result<Plan, Error> {
    let interval = |file: Option<Duration>| {
        args.interval
            .map(|i| i.0)
            .or(file)
            .unwrap_or(DEFAULT_INTERVAL)
    };
    if let Some(text) = &args.url {
        let account = account_from_flags(args, text)?;
        // A configuration file named with --config still gives the state directory.
        let config = args.config.as_deref().map(fetch_config::load).transpose()?;
        let state_dir = config
            .as_ref()
            .and_then(|c| c.state_dir.clone())
            .unwrap_or_else(fetch_config::default_state_dir);
        return Ok(Plan {
            accounts: vec![account],
            jobs: 1,
            interval: interval(config.as_ref().and_then(|c| c.interval)),
            state_dir,
            config: None,
        });
    }
    let path = match &args.config {
        Some(p) => p.clone(),
        None => {
            let p = fetch_config::default_path()
                .ok_or("no URL, and no configuration file ($HOME is not set)")?;
            if !p.exists() {
                return Err(format!(
                    "no URL, and no configuration file {}: run pop3 fetch URL --maildir DIR, or \
                     describe accounts there (see contrib/fetch.toml)",
                    p.display()
                )
                .into());
            }
            p
        }
    };
    let config = fetch_config::load(&path)?;
    let flags_of_a_url = [
        ("--maildir", args.maildir.is_some()),
        ("--mbox", args.mbox.is_some()),
        ("--mda", args.mda.is_some()),
        ("--password-env", args.password_env.is_some()),
        ("--password-file", args.password_file.is_some()),
        ("--password-command", args.password_command.is_some()),
        (
            "--oauth2-token-command",
            args.oauth2_token_command.is_some(),
        ),
        ("--tls", args.tls.is_some()),
        ("--ca-file", args.ca_file.is_some()),
        ("--insecure", args.insecure),
    ];
    if let Some((flag, _)) = flags_of_a_url.iter().find(|(_, given)| *given) {
        return Err(format!(
            "{flag} goes with a URL on the command line; the accounts of {} say it in the file",
            path.display()
        )
        .into());
    }
    let mut accounts = config.accounts.clone();
    if !args.account.is_empty() {
        for name in &args.account {
            if !accounts.iter().any(|a| &a.name == name) {
                let known: Vec<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
                return Err(format!(
                    "no account {name:?} in {} (it has: {})",
                    path.display(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )
                .into());
            }
        }
        accounts.retain(|a| args.account.contains(&a.name));
    }
    if accounts.is_empty() {
        return Err(format!("no accounts in {}", path.display()).into());
    }
    for a in &mut accounts {
        if args.keep {
            a.policy = Policy::Keep;
        }
        if args.limit.is_some() {
            a.limit = args.limit;
        }
        if let Some(s) = args.max_size {
            a.max_size = Some(s.0);
        }
    }
    Ok(Plan {
        accounts,
        jobs: args
            .jobs
            .map(usize::from)
            .or(config.jobs)
            .unwrap_or(DEFAULT_JOBS),
        interval: interval(config.interval),
        state_dir: config
            .state_dir
            .clone()
            .unwrap_or_else(fetch_config::default_state_dir),
        config: Some(path),
    })
}

/// `pop3 fetch`.
pub(crate) fn main(args: FetchArgs) -> ExitCode {
    match dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pop3: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: FetchArgs) -> Result<ExitCode, Error> {
    let plan = plan(&args)?;
    if args.print_config {
        let text = fetch_config::print(
            plan.jobs,
            Some(plan.interval),
            &plan.state_dir,
            &plan.accounts,
        )?;
        match &plan.config {
            Some(p) => println!("# pop3 fetch: the accounts of {}", p.display()),
            None => println!("# pop3 fetch: the account of the command line"),
        }
        println!("# (every default filled in, secrets redacted)");
        println!();
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(spec) = &args.import_uidls {
        crate::uidl_import::run(&plan, spec, args.quiet)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.daemon {
        return crate::daemon::run(args, plan);
    }
    Ok(run_once(&plan, args.quiet).exit_code())
}

/// How a run of one account ended, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Status {
    Ok,
    /// Some messages were deferred by the target (and stay on the server).
    Deferred,
    /// The run failed, or the target refused some messages.
    Failed,
}

impl Status {
    /// 0; 75 (`EX_TEMPFAIL`) when messages wait for the next run; 1 on a failure.
    pub(crate) fn exit_code(self) -> ExitCode {
        match self {
            Status::Ok => ExitCode::SUCCESS,
            Status::Deferred => ExitCode::from(75),
            Status::Failed => ExitCode::FAILURE,
        }
    }
}

/// Fetches every account of `plan`, `plan.jobs` at a time, each on a thread of its own;
/// prints a summary (or an error) per account as it ends. The worst status.
fn run_once(plan: &Plan, quiet: bool) -> Status {
    let named = plan.config.is_some();
    let next = AtomicUsize::new(0);
    let worst = std::sync::Mutex::new(Status::Ok);
    let stop = AtomicBool::new(false);
    let single = plan.accounts.len() == 1;
    std::thread::scope(|s| {
        for _ in 0..plan.jobs.min(plan.accounts.len()) {
            s.spawn(|| {
                while let Some(a) = plan.accounts.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let report = Report {
                        account: a.name.clone(),
                        prefix: named,
                        tracing: false,
                    };
                    let run = Run {
                        account: a,
                        state_dir: &plan.state_dir,
                        stop: &stop,
                        progress: single && !quiet && std::io::stderr().is_terminal(),
                        report: report.clone(),
                    };
                    let status = match fetch_blocking(&run) {
                        Ok(summary) => {
                            if !quiet {
                                println!("{}{}", report.prefix(), summary.line());
                            }
                            if let Some(e) = &summary.error {
                                eprintln!("pop3: error: {}{e}", report.prefix());
                            }
                            summary.status()
                        }
                        Err(e) => {
                            eprintln!("pop3: error: {}{e}", report.prefix());
                            Status::Failed
                        }
                    };
                    let mut w = worst.lock().unwrap_or_else(|e| e.into_inner());
                    *w = (*w).max(status);
                }
            });
        }
    });
    worst.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// Where the warnings of one account's run go: standard error, or the daemon's log.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) account: String,
    /// Name the account in messages (accounts of a configuration file).
    pub(crate) prefix: bool,
    /// Log through `tracing` (the daemon).
    pub(crate) tracing: bool,
}

impl Report {
    fn prefix(&self) -> String {
        if self.prefix {
            format!("{}: ", self.account)
        } else {
            String::new()
        }
    }

    pub(crate) fn warn(&self, msg: &str) {
        if self.tracing {
            tracing::warn!(account = %self.account, "{msg}");
        } else {
            eprintln!("pop3: warning: {}{msg}", self.prefix());
        }
    }
}

/// One run of one account.
pub(crate) struct Run<'a> {
    pub(crate) account: &'a Account,
    pub(crate) state_dir: &'a Path,
    /// Set to stop after the message being delivered (the daemon's SIGTERM).
    pub(crate) stop: &'a AtomicBool,
    /// Draw a progress bar on the terminal.
    pub(crate) progress: bool,
    pub(crate) report: Report,
}

/// What a run did.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    /// Messages the target took.
    pub(crate) fetched: usize,
    pub(crate) bytes: u64,
    pub(crate) secs: f64,
    /// Messages the target deferred (left on the server for the next run).
    pub(crate) deferred: usize,
    /// Messages the target refused (left on the server).
    pub(crate) failed: usize,
    /// Messages over `max_size` (left on the server).
    pub(crate) too_large: usize,
    pub(crate) deleted: usize,
    pub(crate) left: usize,
    /// Stopped early by a signal.
    pub(crate) stopped: bool,
    /// What went wrong after the connection was made; what was stored before was still
    /// deleted as the policy says.
    pub(crate) error: Option<String>,
}

impl Summary {
    /// `3 messages fetched (1.2 kB in 0.1 s), 0 deleted from the server, 3 left`, with the
    /// deferred, failed and too large ones when there are any.
    pub(crate) fn line(&self) -> String {
        let mut extra = String::new();
        if self.deferred > 0 {
            extra.push_str(&format!(
                ", {} deferred by the target (kept for the next run)",
                self.deferred
            ));
        }
        if self.failed > 0 {
            extra.push_str(&format!(", {} refused by the target", self.failed));
        }
        if self.too_large > 0 {
            extra.push_str(&format!(
                ", {} larger than max_size left on the server",
                self.too_large
            ));
        }
        if self.stopped {
            extra.push_str(", stopped by a signal");
        }
        format!(
            "{} messages fetched ({} in {:.1} s){extra}, {} deleted from the server, {} left",
            self.fetched,
            human(self.bytes as f64),
            self.secs,
            self.deleted,
            self.left
        )
    }

    pub(crate) fn status(&self) -> Status {
        if self.error.is_some() || self.failed > 0 {
            Status::Failed
        } else if self.deferred > 0 {
            Status::Deferred
        } else {
            Status::Ok
        }
    }
}

/// Runs one account's fetch on this thread, with a runtime of its own.
pub(crate) fn fetch_blocking(run: &Run<'_>) -> Result<Summary, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(fetch(run))
}

/// Runs a shell command and returns its first output line (a password or a token).
fn command_output(cmd: &str) -> Result<String, Error> {
    let out = std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()?;
    if !out.status.success() {
        return Err(format!("the command {cmd:?} failed").into());
    }
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .next()
        .unwrap_or_default()
        .to_string())
}

fn secret(a: &Account) -> Result<String, Error> {
    match &a.credentials {
        Credentials::Env(var) => std::env::var(var)
            .map_err(|_| format!("the environment variable {var} is not set").into()),
        Credentials::File(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            Ok(text.lines().next().unwrap_or_default().to_string())
        }
        Credentials::Command(cmd) | Credentials::OAuth2Command(cmd) => command_output(cmd),
        Credentials::Password(p) => Ok(p.to_string()),
        Credentials::Prompt => {
            if !std::io::stdin().is_terminal() {
                return Err(
                    "no password: use --password-env, --password-file or --password-command".into(),
                );
            }
            Ok(rpassword::prompt_password(format!(
                "Password for {}: ",
                a.user
            ))?)
        }
    }
}

fn tls_mode(a: &Account, report: &Report) -> Result<TlsMode, Error> {
    let trust = match (&a.ca_file, a.insecure) {
        (_, true) => {
            report.warn("--insecure: the server's certificate is not verified");
            Trust::DangerousAcceptAnyCertificate
        }
        (Some(ca), false) => Trust::CaPem(
            std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?,
        ),
        (None, false) => Trust::WebPki,
    };
    let mode = a.tls.unwrap_or(if a.url.secure {
        TlsArg::Implicit
    } else {
        TlsArg::Starttls
    });
    Ok(match mode {
        // The warning waits for the login method: it says what crosses the network readable.
        TlsArg::None => TlsMode::Plain,
        TlsArg::Implicit => TlsMode::Implicit(pop3_tls::client_config(&trust)?),
        TlsArg::Starttls => TlsMode::StartTls(pop3_tls::client_config(&trust)?),
    })
}

/// The `--tls none` warning for a login with `method`: what crosses the network readable.
fn plaintext_warning(method: LoginMethod) -> String {
    match method.exposure() {
        Exposure::Password => format!(
            "--tls none: the password ({method} sends it readable) and the mail cross the network unencrypted"
        ),
        Exposure::BearerToken => format!(
            "--tls none: the OAuth token ({method} sends it readable, and anyone who reads it can use it) and the mail cross the network unencrypted"
        ),
        // Only a proof of the password is sent (CRAM-MD5, SCRAM-SHA-256, APOP).
        Exposure::Proof => format!(
            "--tls none: the mail crosses the network unencrypted ({method} does not send the password itself)"
        ),
    }
}

/// Logs in with the mechanism the URL names, or the strongest the server offers that the
/// credentials and the connection allow (`pop3_proto::sasl::choose`).
async fn login(c: &mut Pop3Client, a: &Account, report: &Report) -> Result<(), Error> {
    let user = a.user.clone();
    let preference = match a.url.auth.as_deref() {
        None => Preference::Auto,
        Some(value) => Preference::from_url_auth(value)?,
    };
    let offer = Offer::from_capabilities(c.capabilities(), c.machine().apop_timestamp());
    let have = if matches!(a.credentials, Credentials::OAuth2Command(_)) {
        Have::TOKEN
    } else {
        Have::PASSWORD
    };
    // `--tls none` is the explicit consent to send a password or token without TLS.
    let channel = Channel {
        tls: c.is_tls(),
        allow_plaintext: matches!(a.tls, Some(TlsArg::None)),
    };
    let method = choose(&offer, have, channel, preference).map_err(|e| -> Error {
        match e {
            ChoiceError::ForcedUnusable {
                reason: Refusal::NeedsToken,
                ..
            } => format!("{e}: use --oauth2-token-command CMD").into(),
            ChoiceError::ForcedUnusable {
                reason: Refusal::NeedsPassword,
                ..
            } => format!("{e}, not --oauth2-token-command").into(),
            e => e.into(),
        }
    })?;
    if !channel.tls {
        report.warn(&plaintext_warning(method));
    }
    let secret = Secret::new(secret(a)?);
    let result = match method {
        LoginMethod::UserPass => c.login(&user, secret.expose_secret()).await,
        LoginMethod::Apop => c.apop(&user, secret.expose_secret()).await,
        m => {
            let creds = m
                .client_credentials(user, secret, Some(a.url.host.clone()), Some(a.url.port))
                .ok_or_else(|| format!("{m} is not a SASL mechanism"))?;
            c.auth(creds).await
        }
    };
    match result {
        Ok(()) => Ok(()),
        // The server said no: name what was tried, and what else could be.
        Err(e @ ClientError::Server(_)) => {
            let others: Vec<LoginMethod> = rank(&offer, have, channel)
                .usable
                .into_iter()
                .filter(|m| *m != method)
                .collect();
            Err(refused_login(method, &e, preference, &others).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Why a login failed, naming the method tried and, when it was chosen automatically and the
/// server offers others this client could use, how to pick one in the URL.
fn refused_login(
    method: LoginMethod,
    error: &dyn std::fmt::Display,
    preference: Preference,
    others: &[LoginMethod],
) -> String {
    let mut msg = format!("{method} was refused: {error}");
    if preference == Preference::Auto && !others.is_empty() {
        let names: Vec<&str> = others.iter().map(|m| m.url_auth()).collect();
        // A method that sends the password itself works whatever scheme the server stores
        // it in (a CRAM-MD5 or SCRAM secret may be missing): suggest that one.
        let example = others
            .iter()
            .find(|m| m.exposure() == Exposure::Password)
            .map_or(names[0], |m| m.url_auth());
        msg.push_str(&format!(
            " (chosen as the strongest offered; the server also offers {}: pick one with \
             ;AUTH= in the URL, e.g. pop3s://user;AUTH={example}@host)",
            names.join(", ")
        ));
    }
    msg
}

/// `512 B`, `12.3 kB`, `4.5 MB`.
fn human(bytes: f64) -> String {
    if bytes < 1e3 {
        format!("{bytes:.0} B")
    } else if bytes < 1e6 {
        format!("{:.1} kB", bytes / 1e3)
    } else {
        format!("{:.1} MB", bytes / 1e6)
    }
}

/// A progress line on a terminal: messages, megabytes, rate; redrawn at most ten times a
/// second.
struct Progress {
    on: bool,
    start: Instant,
    last_draw: Option<Instant>,
    total: usize,
    total_bytes: u64,
    done: usize,
    bytes: u64,
}

impl Progress {
    fn show(&mut self, force: bool) {
        if !self.on {
            return;
        }
        let now = Instant::now();
        if !force
            && self
                .last_draw
                .is_some_and(|t| now - t < Duration::from_millis(100))
        {
            return;
        }
        self.last_draw = Some(now);
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let width = 24;
        let filled = (self.bytes.min(self.total_bytes) * width as u64)
            .checked_div(self.total_bytes)
            .map_or(width, |f| f as usize);
        eprint!(
            "\r[{}{}] {}/{} messages, {} of {}, {}/s   ",
            "#".repeat(filled),
            " ".repeat(width - filled),
            self.done,
            self.total,
            human(self.bytes as f64),
            human(self.total_bytes as f64),
            human(self.bytes as f64 / secs)
        );
        let _ = std::io::stderr().flush();
    }
}

fn describe(e: ClientError, what: &str) -> Error {
    match e {
        ClientError::Server(line) => format!("{what}: the server said -ERR {}", line.text()).into(),
        ClientError::Closed => format!("{what}: the server closed the connection").into(),
        other @ ClientError::Certificate(_) => format!(
            "{what}: {other} (the server's certificate is not trusted: --ca-file PEM names its CA)"
        )
        .into(),
        other @ ClientError::Handshake {
            step: pop3_tokio::pop3_driver::client::TlsStep::Implicit,
            ..
        } => format!(
            "{what}: {other} (the server does not speak TLS here: pop3s:// expects TLS from the first byte; try pop3:// for STLS)"
        )
        .into(),
        // After STLS the message names the step and the server's own -ERR line, if any.
        other => format!("{what}: {other}").into(),
    }
}

/// The first-seen dates of an account's UIDLs (by key), for `delete_after_days`.
fn seen_path(state_dir: &Path, a: &Account) -> PathBuf {
    use crate::target::record::safe;
    state_dir.join(format!("seen-{}-{}", safe(&a.url.host), safe(&a.user)))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Reads the first-seen dates, adds `now` for the keys in `live` not seen before, forgets
/// those no longer on the server, and writes the file back (atomically).
fn update_seen(path: &Path, live: &HashSet<String>) -> Result<HashMap<String, u64>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display()).into()),
    };
    let mut seen: HashMap<String, u64> = text
        .lines()
        .filter_map(|l| {
            let (k, t) = l.split_once(' ')?;
            Some((k.to_string(), t.trim().parse().ok()?))
        })
        .filter(|(k, _)| live.contains(k))
        .collect();
    let now = now_secs();
    for k in live {
        seen.entry(k.clone()).or_insert(now);
    }
    let mut lines: Vec<String> = seen.iter().map(|(k, t)| format!("{k} {t}\n")).collect();
    lines.sort();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    crate::target::record::replace_file(path, lines.concat().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(seen)
}

/// One message to fetch.
struct Wanted {
    msg: MsgNum,
    key: String,
    uidl: Option<String>,
    size: u64,
}

/// Fetches one account: see the module's documentation for the order of things.
pub(crate) async fn fetch(run: &Run<'_>) -> Result<Summary, Error> {
    let a = run.account;
    let report = &run.report;
    let tls = tls_mode(a, report)?;
    let user = a.user.clone();
    let host = a.url.host.clone();
    // The target first: a locked or unwritable one fails before any login.
    let mut target: Box<dyn Target> = target::open(
        &a.target,
        &Owner {
            host: &host,
            user: &user,
            account: &a.name,
            state_dir: run.state_dir,
        },
    )?;
    let mut options = ClientOptions::new(tls);
    options.server_name = Some(host.clone());
    let addr = if host.contains(':') {
        format!("[{host}]:{}", a.url.port)
    } else {
        format!("{host}:{}", a.url.port)
    };
    let mut c = Pop3Client::connect(&addr, options).await.map_err(|e| match e {
        ClientError::TlsUnavailable => {
            "the server does not offer STLS; refusing to send the password in plain text (use --tls none to allow it)".into()
        }
        e => describe(e, &format!("cannot connect to {addr}")),
    })?;
    login(&mut c, a, report)
        .await
        .map_err(|e| format!("login failed: {e}"))?;
    let list = c.list().await.map_err(|e| describe(e, "LIST"))?;
    // Without UIDL nothing can be recognised again: every message counts as new.
    let uidl = match c.uidl().await {
        Ok(u) => u,
        Err(e) => {
            report.warn(&format!(
                "the server has no UIDL ({e}): messages cannot be recognised across runs{}",
                if a.policy == Policy::Delete {
                    ""
                } else {
                    ", so keep fetches them all again"
                }
            ));
            Vec::new()
        }
    };
    let uids: HashMap<MsgNum, String> = uidl
        .iter()
        .map(|u| (u.msg, u.uid.as_str().to_string()))
        .collect();
    let mut live = HashSet::new();
    for item in &list {
        if let Some(u) = uids.get(&item.msg) {
            live.insert(key(&host, &user, u));
        }
    }
    // The age of each message on the server, for delete_after_days.
    let seen = match a.policy {
        Policy::DeleteAfterDays(_) if !uids.is_empty() => {
            update_seen(&seen_path(run.state_dir, a), &live)?
        }
        _ => HashMap::new(),
    };
    let now = now_secs();
    let deletes = |k: &str| match a.policy {
        Policy::Delete => true,
        Policy::Keep => false,
        Policy::DeleteAfterDays(days) => seen
            .get(k)
            .is_some_and(|first| now.saturating_sub(*first) >= days.saturating_mul(86_400)),
    };
    let mut to_fetch = Vec::new();
    let mut to_delete = Vec::new();
    let mut summary = Summary::default();
    for item in &list {
        let uid = uids.get(&item.msg);
        let k = uid.map(|u| key(&host, &user, u));
        if let Some(k) = &k
            && target.has(k)
        {
            // Stored by an earlier run that did not get to delete it.
            if deletes(k) {
                to_delete.push(item.msg);
            }
            continue;
        }
        if let Some(max) = a.max_size
            && item.size > max
        {
            summary.too_large += 1;
            report.warn(&format!(
                "message {} ({}{}) is larger than max_size ({}): left on the server",
                item.msg,
                human(item.size as f64),
                uid.map(|u| format!(", UIDL {u}")).unwrap_or_default(),
                human(max as f64)
            ));
            continue;
        }
        let k = k.unwrap_or_else(|| key(&host, &user, &format!("no-uidl-{}", item.msg)));
        to_fetch.push(Wanted {
            msg: item.msg,
            key: k,
            uidl: uid.cloned(),
            size: item.size,
        });
    }
    if let Some(limit) = a.limit {
        to_fetch.truncate(limit);
    }
    if run.stop.load(Ordering::Relaxed) {
        to_fetch.clear();
        summary.stopped = true;
    }
    let mut progress = Progress {
        on: run.progress,
        start: Instant::now(),
        last_draw: None,
        total: to_fetch.len(),
        total_bytes: to_fetch.iter().map(|w| w.size).sum(),
        done: 0,
        bytes: 0,
    };
    let msgs: Vec<MsgNum> = to_fetch.iter().map(|w| w.msg).collect();
    let index: HashMap<MsgNum, usize> = msgs.iter().enumerate().map(|(i, m)| (*m, i)).collect();
    let mut started = None;
    let mut stored = Vec::new();
    let mut stopped = false;
    let r = c
        .fetch_many(&msgs, |m, chunk| {
            let w = index
                .get(&m)
                .map(|i| &to_fetch[*i])
                .ok_or_else(|| std::io::Error::other("a message that was not asked for"))?;
            if started != Some(m) {
                target.begin(&MessageInfo {
                    key: &w.key,
                    uidl: w.uidl.as_deref(),
                    size: w.size,
                })?;
                started = Some(m);
            }
            match chunk {
                Chunk::Data(d) => {
                    progress.bytes += d.len() as u64;
                    progress.show(false);
                    target.write(d)
                }
                Chunk::End => {
                    started = None;
                    let what = || {
                        format!(
                            "message {m}{}",
                            w.uidl
                                .as_deref()
                                .map(|u| format!(" (UIDL {u})"))
                                .unwrap_or_default()
                        )
                    };
                    match target.finish()? {
                        Outcome::Stored => stored.push(m),
                        Outcome::Deferred(why) => {
                            summary.deferred += 1;
                            report
                                .warn(&format!("{}: deferred, left on the server: {why}", what()));
                        }
                        Outcome::Failed(why) => {
                            summary.failed += 1;
                            report.warn(&format!(
                                "{}: not delivered, left on the server: {why}",
                                what()
                            ));
                        }
                    }
                    progress.done += 1;
                    progress.show(false);
                    if run.stop.load(Ordering::Relaxed) {
                        // Stops the batch; what was stored is still deleted, then QUIT.
                        stopped = true;
                        return Err(std::io::Error::other("stopping"));
                    }
                    Ok(())
                }
            }
        })
        .await;
    if progress.on {
        progress.show(true);
        eprintln!();
    }
    match r {
        Ok(()) => {}
        // A signal: the message in hand was finished; go on to delete and QUIT.
        Err(ClientError::Output(_)) if stopped => summary.stopped = true,
        // The connection is still good: delete what was stored, then report.
        Err(ClientError::Server(line)) => {
            target.abort();
            summary.error =
                Some(describe(ClientError::Server(line), "retrieving messages").to_string());
        }
        Err(e) => {
            target.abort();
            let _ = target.sync();
            return Err(describe(e, "retrieving messages"));
        }
    }
    // Before any DELE: the next run must know what is stored even if this one dies now.
    target
        .sync()
        .map_err(|e| format!("cannot write the record: {e}"))?;
    let key_of = |m: &MsgNum| index.get(m).map(|i| to_fetch[*i].key.as_str());
    to_delete.extend(
        stored
            .iter()
            .filter(|m| key_of(m).is_some_and(&deletes))
            .copied(),
    );
    to_delete.sort();
    if !to_delete.is_empty() {
        c.delete_many(&to_delete)
            .await
            .map_err(|e| describe(e, "DELE"))?;
    }
    // Deletions happen here, with every stored message already durable.
    c.quit()
        .await
        .map_err(|e| describe(e, "QUIT (deleting the fetched messages)"))?;
    for m in &to_delete {
        if let Some(u) = uids.get(m) {
            live.remove(&key(&host, &user, u));
        }
    }
    target
        .compact(&live)
        .map_err(|e| format!("cannot rewrite the record: {e}"))?;
    summary.fetched = stored.len();
    summary.bytes = progress.bytes;
    summary.secs = progress.start.elapsed().as_secs_f64();
    summary.deleted = to_delete.len();
    summary.left = list.len() - to_delete.len();
    Ok(summary)
}

#[cfg(test)]
mod login_error_tests {
    use super::*;

    #[test]
    fn a_refused_automatic_choice_names_the_method_and_the_alternatives() {
        let others = [
            LoginMethod::CramMd5,
            LoginMethod::Plain,
            LoginMethod::UserPass,
        ];
        let msg = refused_login(
            LoginMethod::ScramSha256,
            &"server said: -ERR [AUTH] Authentication failed",
            Preference::Auto,
            &others,
        );
        assert!(
            msg.starts_with("SCRAM-SHA-256 was refused: server said: -ERR [AUTH]"),
            "{msg}"
        );
        assert!(msg.contains("also offers CRAM-MD5, PLAIN, USER"), "{msg}");
        // The example is one that works whatever scheme the password is stored in.
        assert!(msg.contains(";AUTH=PLAIN@host"), "{msg}");
    }

    #[test]
    fn a_refused_forced_or_only_method_suggests_nothing() {
        let forced = refused_login(
            LoginMethod::UserPass,
            &"bad",
            Preference::Forced(LoginMethod::UserPass),
            &[LoginMethod::Plain],
        );
        assert_eq!(forced, "USER/PASS was refused: bad");
        let only = refused_login(LoginMethod::CramMd5, &"bad", Preference::Auto, &[]);
        assert_eq!(only, "CRAM-MD5 was refused: bad");
    }

    #[test]
    fn url_names_follow_rfc_2384() {
        assert_eq!(LoginMethod::UserPass.url_auth(), "USER");
        assert_eq!(LoginMethod::Apop.url_auth(), "+APOP");
        assert_eq!(LoginMethod::CramMd5.url_auth(), "CRAM-MD5");
        for m in [LoginMethod::UserPass, LoginMethod::Apop, LoginMethod::Plain] {
            assert_eq!(
                Preference::from_url_auth(m.url_auth()).unwrap(),
                Preference::Forced(m)
            );
        }
    }

    #[test]
    fn a_tls_failure_after_stls_names_the_step_and_the_servers_line() {
        use pop3_tokio::pop3_driver::client::TlsStep;
        let handshake = |step| ClientError::Handshake {
            step,
            reason: "received fatal alert: HandshakeFailure".into(),
            server_said: Some("-ERR STARTTLS failed: no certificate".into()),
        };
        let stls = describe(handshake(TlsStep::Stls), "cannot connect").to_string();
        assert!(stls.contains("after STLS"), "{stls}");
        assert!(
            stls.contains("-ERR STARTTLS failed: no certificate"),
            "{stls}"
        );
        assert!(!stls.contains("pop3s://"), "{stls}");
        let implicit = describe(handshake(TlsStep::Implicit), "cannot connect").to_string();
        assert!(implicit.contains("pop3s:// expects TLS"), "{implicit}");
    }
}
