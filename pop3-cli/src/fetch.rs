//! `pop3 fetch`: mail from a POP3 server into a Maildir or an mbox, pipelined, and never lost.
//!
//! The order of a run, and why a kill (SIGKILL, power loss) at any point is safe:
//!
//! 1. Open and lock the destination and its record (`sink`), before connecting: a second
//!    fetch of the same account into it fails or waits instead of interleaving.
//! 2. Connect (TLS as asked: STLS is required for `pop3://` unless `--tls none`), log in,
//!    `LIST` and `UIDL`. A message whose key (host, user, UIDL) the destination already
//!    holds was stored by an earlier run that did not get as far as its QUIT: it is not
//!    fetched again, only deleted (without `--keep`).
//! 3. `RETR` the rest, pipelined; each message is made durable (Maildir: `tmp/`, fsync,
//!    rename into `new/`, fsync of `new/`, in batches of messages; mbox: append, fsync as it
//!    ends) and its key recorded. Nothing is deleted yet: a kill here leaves every message on
//!    the server and the stored ones recognisable.
//! 4. Sync the record, then send the `DELE`s, only for messages stored durably (now or
//!    before), then `QUIT`: the server deletes only at that QUIT (RFC 1939 §6), so a kill
//!    before it deletes nothing, and the next run skips and deletes the stored ones.
//! 5. After the QUIT, rewrite the record (atomically) with the keys of stored messages still
//!    on the server (with `--keep`, all of them). A kill before this step leaves keys of
//!    deleted messages, which are dropped when the server no longer lists them.
//!
//! Hence every message ends up exactly once in the destination and, without `--keep`, off
//! the server, as long as the server's UIDLs are stable (RFC 1939 §7 requires it). Without
//! UIDL a message has no identity across runs; a warning says so.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use pop3_proto::sasl::choose::{
    Channel, ChoiceError, Exposure, Have, LoginMethod, Offer, Preference, Refusal, choose, rank,
};
use pop3_proto::{MsgNum, Secret};
use pop3_tls::Trust;
use pop3_tokio::client::{Chunk, ClientOptions, Error as ClientError, Pop3Client, TlsMode};

use crate::sink::{Sink, key};
use crate::url::{self, PopUrl};
use crate::{FetchArgs, TlsArg};

type Error = Box<dyn std::error::Error + Send + Sync>;

pub(crate) fn run(args: FetchArgs) -> Result<(), Error> {
    let url = url::parse(&args.url)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(fetch(args, url))
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

fn password(args: &FetchArgs, user: &str) -> Result<String, Error> {
    if let Some(var) = &args.password_env {
        return std::env::var(var)
            .map_err(|_| format!("the environment variable {var} is not set").into());
    }
    if let Some(file) = &args.password_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        return Ok(text.lines().next().unwrap_or_default().to_string());
    }
    if let Some(cmd) = &args.password_command {
        return command_output(cmd);
    }
    if !std::io::stdin().is_terminal() {
        return Err(
            "no password: use --password-env, --password-file or --password-command".into(),
        );
    }
    Ok(rpassword::prompt_password(format!(
        "Password for {user}: "
    ))?)
}

fn tls_mode(args: &FetchArgs, url: &PopUrl) -> Result<TlsMode, Error> {
    let trust = match (&args.ca_file, args.insecure) {
        (_, true) => {
            eprintln!("pop3: warning: --insecure: the server's certificate is not verified");
            Trust::DangerousAcceptAnyCertificate
        }
        (Some(ca), false) => Trust::CaPem(
            std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?,
        ),
        (None, false) => Trust::WebPki,
    };
    let mode = args.tls.unwrap_or(if url.secure {
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
            "pop3: warning: --tls none: the password ({method} sends it readable) and the mail cross the network unencrypted"
        ),
        Exposure::BearerToken => format!(
            "pop3: warning: --tls none: the OAuth token ({method} sends it readable, and anyone who reads it can use it) and the mail cross the network unencrypted"
        ),
        // Only a proof of the password is sent (CRAM-MD5, SCRAM-SHA-256, APOP).
        Exposure::Proof => format!(
            "pop3: warning: --tls none: the mail crosses the network unencrypted ({method} does not send the password itself)"
        ),
    }
}

/// Logs in with the mechanism the URL names, or the strongest the server offers that the
/// credentials and the connection allow (`pop3_proto::sasl::choose`).
async fn login(c: &mut Pop3Client, args: &FetchArgs, url: &PopUrl) -> Result<(), Error> {
    let user = url
        .user
        .clone()
        .ok_or("the URL names no user (pop3://user@host)")?;
    let preference = match url.auth.as_deref() {
        None => Preference::Auto,
        Some(value) => Preference::from_url_auth(value)?,
    };
    let offer = Offer::from_capabilities(c.capabilities(), c.machine().apop_timestamp());
    let token_source = args.oauth2_token_command.as_deref();
    let have = if token_source.is_some() {
        Have::TOKEN
    } else {
        Have::PASSWORD
    };
    // `--tls none` is the explicit consent to send a password or token without TLS.
    let channel = Channel {
        tls: c.is_tls(),
        allow_plaintext: matches!(args.tls, Some(TlsArg::None)),
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
        eprintln!("{}", plaintext_warning(method));
    }
    let secret = Secret::new(match token_source {
        Some(cmd) => command_output(cmd)?,
        None => password(args, &user)?,
    });
    let result = match method {
        LoginMethod::UserPass => c.login(&user, secret.expose_secret()).await,
        LoginMethod::Apop => c.apop(&user, secret.expose_secret()).await,
        m => {
            let creds = m
                .client_credentials(user, secret, Some(url.host.clone()), Some(url.port))
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
        other @ ClientError::Handshake(_) => format!(
            "{what}: {other} (the server does not speak TLS here: pop3s:// expects TLS from the first byte; try pop3:// for STLS)"
        )
        .into(),
        other => format!("{what}: {other}").into(),
    }
}

fn open_sink(args: &FetchArgs, url: &PopUrl, user: &str) -> Result<Sink, Error> {
    Ok(match (&args.maildir, &args.mbox) {
        (Some(dir), _) => Sink::maildir(dir, &url.host, user)?,
        (None, Some(file)) => Sink::mbox(file, &url.host, user)?,
        (None, None) => return Err("no destination: --maildir DIR or --mbox FILE".into()),
    })
}

async fn fetch(args: FetchArgs, url: PopUrl) -> Result<(), Error> {
    let tls = tls_mode(&args, &url)?;
    // The destination first: a locked or unwritable one fails before any login.
    let user = url
        .user
        .clone()
        .ok_or("the URL names no user (pop3://user@host)")?;
    let mut sink = open_sink(&args, &url, &user)?;
    let mut options = ClientOptions::new(tls);
    options.server_name = Some(url.host.clone());
    let addr = if url.host.contains(':') {
        format!("[{}]:{}", url.host, url.port)
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let mut c = Pop3Client::connect(&addr, options).await.map_err(|e| match e {
        ClientError::TlsUnavailable => {
            "the server does not offer STLS; refusing to send the password in plain text (use --tls none to allow it)".into()
        }
        e => describe(e, &format!("cannot connect to {addr}")),
    })?;
    login(&mut c, &args, &url)
        .await
        .map_err(|e| format!("login failed: {e}"))?;
    let list = c.list().await.map_err(|e| describe(e, "LIST"))?;
    // Without UIDL nothing can be recognised again: every message counts as new.
    let uidl = match c.uidl().await {
        Ok(u) => u,
        Err(e) => {
            eprintln!(
                "pop3: warning: the server has no UIDL ({e}): messages cannot be recognised across runs{}",
                if args.keep {
                    ", so --keep fetches them all again"
                } else {
                    ""
                }
            );
            Vec::new()
        }
    };
    let uids: HashMap<MsgNum, String> = uidl
        .iter()
        .map(|u| (u.msg, u.uid.as_str().to_string()))
        .collect();
    let mut live = HashSet::new();
    let mut to_fetch = Vec::new();
    let mut to_delete = Vec::new();
    for item in &list {
        let k = uids.get(&item.msg).map(|u| key(&url.host, &user, u));
        if let Some(k) = &k {
            live.insert(k.clone());
            if sink.has(k) {
                // Stored by an earlier run that did not get to delete it.
                if !args.keep {
                    to_delete.push(item.msg);
                }
                continue;
            }
        }
        let k = k.unwrap_or_else(|| key(&url.host, &user, &format!("no-uidl-{}", item.msg)));
        to_fetch.push((item.msg, k, item.size));
    }
    if let Some(limit) = args.limit {
        to_fetch.truncate(limit);
    }
    let mut progress = Progress {
        on: !args.quiet && std::io::stderr().is_terminal(),
        start: Instant::now(),
        last_draw: None,
        total: to_fetch.len(),
        total_bytes: to_fetch.iter().map(|(_, _, size)| *size).sum(),
        done: 0,
        bytes: 0,
    };
    let msgs: Vec<MsgNum> = to_fetch.iter().map(|(m, _, _)| *m).collect();
    let index: HashMap<MsgNum, usize> = msgs.iter().enumerate().map(|(i, m)| (*m, i)).collect();
    let mut started = None;
    let mut stored = Vec::new();
    let r = c
        .fetch_many(&msgs, |m, chunk| {
            let k = index
                .get(&m)
                .map(|i| to_fetch[*i].1.as_str())
                .ok_or_else(|| std::io::Error::other("a message that was not asked for"))?;
            if started != Some(m) {
                sink.begin(k)?;
                started = Some(m);
            }
            match chunk {
                Chunk::Data(d) => {
                    progress.bytes += d.len() as u64;
                    progress.show(false);
                    sink.write(d)
                }
                Chunk::End => {
                    started = None;
                    sink.finish(k)?;
                    stored.push(m);
                    progress.done += 1;
                    progress.show(false);
                    Ok(())
                }
            }
        })
        .await;
    if progress.on {
        progress.show(true);
        eprintln!();
    }
    let mut failure = None;
    match r {
        Ok(()) => {}
        // The connection is still good: delete what was stored, then report.
        Err(ClientError::Server(line)) => {
            sink.abort();
            failure = Some(describe(ClientError::Server(line), "retrieving messages"));
        }
        Err(e) => {
            sink.abort();
            let _ = sink.sync_record();
            return Err(describe(e, "retrieving messages"));
        }
    }
    // Before any DELE: the next run must know what is stored even if this one dies now.
    sink.sync_record()
        .map_err(|e| format!("cannot write the record: {e}"))?;
    if !args.keep {
        to_delete.extend(stored.iter().copied());
        to_delete.sort();
        c.delete_many(&to_delete)
            .await
            .map_err(|e| describe(e, "DELE"))?;
    }
    // Deletions happen here, with every stored message already durable.
    c.quit()
        .await
        .map_err(|e| describe(e, "QUIT (deleting the fetched messages)"))?;
    if !args.keep {
        for m in &to_delete {
            if let Some(u) = uids.get(m) {
                live.remove(&key(&url.host, &user, u));
            }
        }
    }
    sink.compact(&live)
        .map_err(|e| format!("cannot rewrite the record: {e}"))?;
    let deleted = if args.keep { 0 } else { to_delete.len() };
    if !args.quiet {
        let secs = progress.start.elapsed().as_secs_f64();
        println!(
            "{} messages fetched ({} in {:.1} s), {} deleted from the server, {} left",
            stored.len(),
            human(progress.bytes as f64),
            secs,
            deleted,
            list.len() - deleted
        );
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
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
}
