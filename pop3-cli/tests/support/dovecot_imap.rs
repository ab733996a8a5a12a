//! A private Dovecot serving IMAP (for the IMAP APPEND target of `pop3 fetch`), and a small
//! blocking IMAP client to look at what arrived. Included by the integration tests with
//! `#[path = "support/dovecot_imap.rs"] mod dovecot_imap;`, and by the IMAP target's unit
//! tests (`src/imap_append/tests.rs`) with
//! `#[path = "../../tests/support/dovecot_imap.rs"] mod dovecot_imap;`.
//!
//! The server: `protocols = imap` on 127.0.0.1 in a temporary directory, STARTTLS on
//! [`Imapd::port`] (plaintext LOGIN allowed too), implicit TLS on [`Imapd::tls_port`] with a
//! self-signed `localhost` certificate, user `alice` with password `pw`, Maildir under the
//! directory. As root (Debian's Dovecot refuses to run logins as root and mail as uid 0) the
//! login processes run as `dovenull`, the internal ones as `dovecot`, the mail as 65534; as
//! another user everything runs as that user. (pop3-interop's POP3 Dovecot and
//! `support/peers.rs`'s LMTP one are arranged the same way; each writes its own
//! configuration, as they differ in everything else.)

#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pop3_interop::{
    DovecotUsers, Tls, dovecot_users, find_program, free_port, peer_available, set_mode,
};

/// The IMAP user and password.
pub(crate) const IMAP_USER: &str = "alice";
pub(crate) const IMAP_PASSWORD: &str = "pw";

/// A private Dovecot serving IMAP only, killed on drop.
pub(crate) struct Imapd {
    child: Child,
    dir: tempfile::TempDir,
    /// STARTTLS offered; plaintext LOGIN allowed too.
    pub(crate) port: u16,
    /// TLS from the first byte, certificate for `localhost`.
    pub(crate) tls_port: u16,
    tls: Tls,
}

impl Imapd {
    /// `None` when the interop tests are skipped (`POP3_SKIP_INTEROP=1`) or Dovecot's IMAP
    /// server is not installed.
    pub(crate) fn start() -> Option<Imapd> {
        Imapd::launch(false)
    }

    /// As [`Imapd::start`], but a Dovecot without its IMAP server fails the test instead of
    /// skipping it (the IMAP target's own tests).
    pub(crate) fn start_required() -> Option<Imapd> {
        Imapd::launch(true)
    }

    fn launch(imapd_required: bool) -> Option<Imapd> {
        if !peer_available("dovecot") {
            return None;
        }
        if !Path::new("/usr/lib/dovecot/imap-login").exists() {
            assert!(
                !imapd_required,
                "Dovecot's IMAP server is not installed: run .ci/install-peers.sh (dovecot-imapd)"
            );
            eprintln!(
                "Dovecot's IMAP server is not installed (dovecot-imapd, .ci/install-peers.sh): skipped"
            );
            return None;
        }
        let dovecot = find_program("dovecot").expect("dovecot");
        let tls = Tls::new();
        let dir = tempfile::Builder::new()
            .prefix("pop3-imapd")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        set_mode(d, 0o755);
        std::fs::create_dir_all(d.join("mail").join(IMAP_USER)).expect("mail dir");
        std::fs::write(
            d.join("passwd"),
            format!("{IMAP_USER}:{{PLAIN}}{IMAP_PASSWORD}::::::\n"),
        )
        .expect("passwd");
        std::fs::write(d.join("cert.pem"), &tls.cert_pem).expect("cert");
        std::fs::write(d.join("key.pem"), &tls.key_pem).expect("key");
        set_mode(&d.join("key.pem"), 0o600);
        for sub in ["run", "state"] {
            std::fs::create_dir_all(d.join(sub)).expect("dirs");
        }
        let DovecotUsers {
            settings: users,
            uid,
            gid,
        } = dovecot_users(&d.join("mail"));
        let (port, tls_port) = (free_port(), free_port());
        let p = d.display();
        let conf = format!(
            "base_dir = {p}/run\nstate_dir = {p}/state\nlog_path = {p}/dovecot.log\n\
             info_log_path = {p}/dovecot.log\n\
             protocols = imap\nlisten = 127.0.0.1\n{users}first_valid_uid = 1\nfirst_valid_gid = 1\n\
             ssl = yes\nssl_cert = <{p}/cert.pem\nssl_key = <{p}/key.pem\n\
             auth_mechanisms = plain login\ndisable_plaintext_auth = no\n\
             mail_location = maildir:{p}/mail/%u\n\
             passdb {{\n  driver = passwd-file\n  args = {p}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={p}/mail/%u\n}}\n\
             service imap-login {{\n  chroot =\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  \
             inet_listener imaps {{\n    address = 127.0.0.1\n    port = {tls_port}\n    ssl = yes\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n"
        );
        std::fs::write(d.join("dovecot.conf"), conf).expect("config");
        let child = Command::new(dovecot)
            .args(["-F", "-c"])
            .arg(d.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(d.join("stderr")).expect("stderr file"))
            .spawn()
            .expect("dovecot starts");
        let mut imapd = Imapd {
            child,
            dir,
            port,
            tls_port,
            tls,
        };
        imapd.wait_for_ports();
        Some(imapd)
    }

    fn wait_for_ports(&mut self) {
        let start = Instant::now();
        for port in [self.port, self.tls_port] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("dovecot exited ({status}):\n{}", self.log());
                }
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "dovecot does not listen on {port} after 30 s:\n{}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Dovecot's log and standard error.
    pub(crate) fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}{}", read("dovecot.log"), read("stderr"))
    }

    /// alice's Maildir.
    pub(crate) fn maildir(&self) -> PathBuf {
        self.dir.path().join("mail").join(IMAP_USER)
    }

    /// The server certificate (PEM), to trust.
    pub(crate) fn cert_pem(&self) -> &str {
        &self.tls.cert_pem
    }

    /// A plaintext session logged in as alice.
    pub(crate) fn login(&self) -> ImapClient {
        let mut c = ImapClient::connect(self.port);
        let ok = c.command(&format!("LOGIN {IMAP_USER} {IMAP_PASSWORD}"));
        assert!(
            ok.status.contains(" OK"),
            "LOGIN: {}\n{}",
            ok.status,
            self.log()
        );
        c
    }
}

impl Drop for Imapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One response line of the server, literals taken out: `text` has `{n}` where each literal
/// was, `literals` their octets, in order.
#[derive(Debug, Default)]
pub(crate) struct Line {
    pub(crate) text: String,
    pub(crate) literals: Vec<Vec<u8>>,
}

/// What a command got: the untagged lines and the tagged status line.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) untagged: Vec<Line>,
    pub(crate) status: String,
}

/// A message as FETCHed back: `BODY.PEEK[]` and `INTERNALDATE`.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) body: Vec<u8>,
    /// As the server wrote it: `01-Jul-2003 10:52:37 +0200`.
    pub(crate) internal_date: String,
}

impl Fetched {
    /// The internal date as a Unix time.
    pub(crate) fn timestamp(&self) -> i64 {
        chrono::DateTime::parse_from_str(self.internal_date.trim(), "%d-%b-%Y %H:%M:%S %z")
            .unwrap_or_else(|e| panic!("INTERNALDATE {:?}: {e}", self.internal_date))
            .timestamp()
    }
}

/// A blocking IMAP client for the tests' checks, over plain TCP on 127.0.0.1.
pub(crate) struct ImapClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: u32,
}

impl ImapClient {
    pub(crate) fn connect(port: u16) -> ImapClient {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let writer = tcp.try_clone().unwrap();
        let mut c = ImapClient {
            reader: BufReader::new(tcp),
            writer,
            tag: 0,
        };
        let greeting = c.line();
        assert!(greeting.text.starts_with("* OK"), "{}", greeting.text);
        c
    }

    /// One response line, with its literals.
    fn line(&mut self) -> Line {
        let mut out = Line::default();
        loop {
            let mut raw = Vec::new();
            self.reader.read_until(b'\n', &mut raw).unwrap();
            assert!(!raw.is_empty(), "the IMAP server closed the connection");
            let text = String::from_utf8_lossy(&raw).into_owned();
            let trimmed = text.trim_end_matches(['\r', '\n']);
            out.text.push_str(trimmed);
            // `{n}` at the end of a line: a literal of n octets follows.
            let literal = trimmed
                .strip_suffix('}')
                .and_then(|t| t.rsplit_once('{'))
                .and_then(|(_, n)| n.trim_end_matches('+').parse::<usize>().ok());
            match literal {
                Some(n) => {
                    let mut data = vec![0; n];
                    self.reader.read_exact(&mut data).unwrap();
                    out.literals.push(data);
                }
                None => return out,
            }
        }
    }

    /// Sends `command` with the next tag; reads up to its tagged status.
    pub(crate) fn command(&mut self, command: &str) -> Answer {
        self.tag += 1;
        let tag = format!("T{}", self.tag);
        self.writer
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .unwrap();
        let mut untagged = Vec::new();
        loop {
            let line = self.line();
            if let Some(rest) = line.text.strip_prefix(&format!("{tag} ")) {
                return Answer {
                    untagged,
                    status: format!(" {rest}"),
                };
            }
            untagged.push(line);
        }
    }

    /// Every message of `mailbox` (EXAMINE, read-only), in order.
    pub(crate) fn fetch_all(&mut self, mailbox: &str) -> Vec<Fetched> {
        let ok = self.command(&format!("EXAMINE \"{mailbox}\""));
        assert!(ok.status.starts_with(" OK"), "EXAMINE: {}", ok.status);
        let exists = ok
            .untagged
            .iter()
            .find_map(|l| {
                l.text
                    .strip_suffix(" EXISTS")?
                    .strip_prefix("* ")?
                    .parse()
                    .ok()
            })
            .unwrap_or(0usize);
        if exists == 0 {
            return Vec::new();
        }
        let answer = self.command("FETCH 1:* (INTERNALDATE BODY.PEEK[])");
        assert!(answer.status.starts_with(" OK"), "FETCH: {}", answer.status);
        let mut out = Vec::new();
        for mut line in answer.untagged {
            if !line.text.contains(" FETCH (") {
                continue;
            }
            let date = line
                .text
                .split_once("INTERNALDATE \"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(d, _)| d.to_string())
                .unwrap_or_else(|| panic!("no INTERNALDATE in {}", line.text));
            assert_eq!(line.literals.len(), 1, "{}", line.text);
            out.push(Fetched {
                body: line.literals.remove(0),
                internal_date: date,
            });
        }
        assert_eq!(out.len(), exists, "one FETCH a message");
        out
    }

    pub(crate) fn logout(mut self) {
        let _ = self.command("LOGOUT");
    }
}
