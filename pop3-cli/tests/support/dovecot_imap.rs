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
//! another user everything runs as that user: pop3-interop's [`Dovecot`] with
//! [`DovecotService::Imap`], the same set-up as its POP3 one. (`support/peers.rs`'s LMTP
//! Dovecot writes its own configuration: it has no login service, no TLS and delivers.)

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pop3_interop::{Dovecot, DovecotService, Tls, peer_available};

/// The IMAP user and password.
pub(crate) const IMAP_USER: &str = "alice";
pub(crate) const IMAP_PASSWORD: &str = "pw";

/// A private Dovecot serving IMAP only, killed on drop (pop3-interop's [`Dovecot`] running
/// [`DovecotService::Imap`]).
pub(crate) struct Imapd {
    dovecot: Dovecot,
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
        let tls = Tls::new();
        let dovecot = Dovecot::start_service(DovecotService::Imap, &[], &tls);
        Some(Imapd {
            port: dovecot.port,
            tls_port: dovecot.tls_port,
            dovecot,
            tls,
        })
    }

    /// Dovecot's log and standard error.
    pub(crate) fn log(&self) -> String {
        self.dovecot.log()
    }

    /// alice's Maildir.
    pub(crate) fn maildir(&self) -> PathBuf {
        self.dovecot.maildir()
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
