//! `pop3 fetch`: mail from a POP3 server into a Maildir or an mbox, pipelined, and never lost
//! (see `sink` for how each message is stored durably and exactly once).

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::time::Instant;

use pop3_proto::sasl::ClientCredentials;
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
        TlsArg::None => {
            eprintln!(
                "pop3: warning: --tls none: the password and the mail cross the network unencrypted"
            );
            TlsMode::Plain
        }
        TlsArg::Implicit => TlsMode::Implicit(pop3_tls::client_config(&trust)?),
        TlsArg::Starttls => TlsMode::StartTls(pop3_tls::client_config(&trust)?),
    })
}

/// Logs in with the mechanism the URL names, or the strongest the server offers.
async fn login(c: &mut Pop3Client, args: &FetchArgs, url: &PopUrl) -> Result<(), Error> {
    let user = url
        .user
        .clone()
        .ok_or("the URL names no user (pop3://user@host)")?;
    let mechs: Vec<String> = c
        .machine()
        .sasl_mechanisms()
        .iter()
        .map(|m| m.as_str().to_string())
        .collect();
    let offered = |m: &str| mechs.iter().any(|x| x == m);
    if let Some(cmd) = &args.oauth2_token_command {
        let token = Secret::new(command_output(cmd)?);
        let creds = if offered("OAUTHBEARER") && !offered("XOAUTH2")
            || url.auth.as_deref() == Some("OAUTHBEARER")
        {
            ClientCredentials::OAuthBearer {
                user,
                token,
                host: Some(url.host.clone()),
                port: Some(url.port),
            }
        } else {
            ClientCredentials::XOAuth2 { user, token }
        };
        return Ok(c.auth(creds).await?);
    }
    let pass = password(args, &user)?;
    let wanted = match url.auth.as_deref() {
        None | Some("*") => {
            if offered("SCRAM-SHA-256") {
                "SCRAM-SHA-256"
            } else if offered("CRAM-MD5") {
                "CRAM-MD5"
            } else if offered("PLAIN") {
                "PLAIN"
            } else {
                "USER"
            }
        }
        Some(m) => m,
    };
    let secret = || Secret::new(pass.clone());
    let user2 = user.clone();
    match wanted.to_ascii_uppercase().as_str() {
        "+APOP" => c.apop(&user, &pass).await?,
        "USER" => c.login(&user, &pass).await?,
        "PLAIN" => {
            c.auth(ClientCredentials::Plain {
                authzid: None,
                user: user2,
                password: secret(),
            })
            .await?
        }
        "LOGIN" => {
            c.auth(ClientCredentials::Login {
                user: user2,
                password: secret(),
            })
            .await?
        }
        "CRAM-MD5" => {
            c.auth(ClientCredentials::CramMd5 {
                user: user2,
                password: secret(),
            })
            .await?
        }
        "SCRAM-SHA-256" => {
            c.auth(ClientCredentials::ScramSha256 {
                user: user2,
                password: secret(),
            })
            .await?
        }
        other => return Err(format!("unsupported mechanism {other}").into()),
    }
    Ok(())
}

/// A progress line on a terminal.
struct Progress {
    on: bool,
    start: Instant,
    total: usize,
    done: usize,
    bytes: u64,
}

impl Progress {
    fn show(&self) {
        if self.on {
            let secs = self.start.elapsed().as_secs_f64().max(1e-3);
            eprint!(
                "\r{}/{} messages, {:.1} MB, {:.1} MB/s   ",
                self.done,
                self.total,
                self.bytes as f64 / 1e6,
                self.bytes as f64 / 1e6 / secs
            );
            let _ = std::io::stderr().flush();
        }
    }
}

fn describe(e: ClientError, what: &str) -> Error {
    match e {
        ClientError::Server(line) => format!("{what}: the server said -ERR {}", line.text()).into(),
        other if other.to_string().contains("invalid peer certificate") => format!(
            "{what}: {other} (the server's certificate is not trusted: --ca-file PEM names its CA)"
        )
        .into(),
        other => format!("{what}: {other}").into(),
    }
}

async fn fetch(args: FetchArgs, url: PopUrl) -> Result<(), Error> {
    let mut options = ClientOptions::new(tls_mode(&args, &url)?);
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
    let user = url.user.clone().unwrap_or_default();
    let mut sink = match (&args.maildir, &args.mbox) {
        (Some(dir), _) => Sink::maildir(dir, &url.host, &user)?,
        (None, Some(file)) => Sink::mbox(file, &url.host, &user)?,
        (None, None) => return Err("no destination: --maildir DIR or --mbox FILE".into()),
    };
    let list = c.list().await.map_err(|e| describe(e, "LIST"))?;
    // Without UIDL nothing can be recognised again: every message counts as new.
    let uidl = c.uidl().await.unwrap_or_default();
    let uid_of = |m: MsgNum| {
        uidl.iter()
            .find(|u| u.msg == m)
            .map(|u| u.uid.as_str().to_string())
    };
    let mut live = HashSet::new();
    let mut to_fetch = Vec::new();
    let mut to_delete = Vec::new();
    for item in &list {
        let k = uid_of(item.msg).map(|u| key(&url.host, &user, &u));
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
        to_fetch.push((item.msg, k, item.size));
    }
    if let Some(limit) = args.limit {
        to_fetch.truncate(limit);
    }
    let mut progress = Progress {
        on: !args.quiet && std::io::stderr().is_terminal(),
        start: Instant::now(),
        total: to_fetch.len(),
        done: 0,
        bytes: 0,
    };
    let msgs: Vec<MsgNum> = to_fetch.iter().map(|(m, _, _)| *m).collect();
    let keys: Vec<String> = to_fetch
        .iter()
        .map(|(m, k, _)| {
            k.clone()
                .unwrap_or_else(|| key(&url.host, &user, &format!("msg-{m}")))
        })
        .collect();
    let mut started = None;
    let mut stored = Vec::new();
    let r = c
        .fetch_many(&msgs, |m, chunk| {
            let idx = msgs.iter().position(|x| *x == m).unwrap_or(0);
            match chunk {
                Chunk::Data(d) => {
                    if started != Some(m) {
                        sink.begin(&keys[idx])?;
                        started = Some(m);
                    }
                    progress.bytes += d.len() as u64;
                    sink.write(d)
                }
                Chunk::End => {
                    if started != Some(m) {
                        sink.begin(&keys[idx])?;
                    }
                    started = None;
                    sink.finish(&keys[idx])?;
                    stored.push(m);
                    progress.done += 1;
                    progress.show();
                    Ok(())
                }
            }
        })
        .await;
    if progress.on {
        eprintln!();
    }
    if let Err(e) = r {
        sink.abort();
        return Err(describe(e, "retrieving messages"));
    }
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
            if let Some(u) = uid_of(*m) {
                live.remove(&key(&url.host, &user, &u));
            }
        }
    }
    sink.compact(&live)?;
    if !args.quiet {
        let secs = progress.start.elapsed().as_secs_f64();
        let deleted = if args.keep { 0 } else { to_delete.len() };
        println!(
            "{} messages fetched ({:.1} MB in {:.1} s), {} deleted from the server, {} left",
            stored.len(),
            progress.bytes as f64 / 1e6,
            secs,
            deleted,
            list.len() - deleted
        );
    }
    Ok(())
}
