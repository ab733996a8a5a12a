//! The IMAP APPEND target against a real Dovecot (`protocols = imap`, started by the test on
//! 127.0.0.1 in a temporary directory), and against small scripted servers ("rogue" servers
//! on a std thread) for what Dovecot cannot show without an OAuth introspection server: the
//! exact XOAUTH2/OAUTHBEARER payloads, the error challenge, a server without STARTTLS, and a
//! `NO` instead of the `+` to a synchronising literal.
//!
//! Messages are checked by FETCHing `BODY.PEEK[]` and `INTERNALDATE` back over IMAP (what a
//! user's client sees, CRLF-exact), and the one with a NUL byte also in the Maildir file.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use imap_next::imap_types::fetch::{MessageDataItem, MessageDataItemName};
use imap_next::imap_types::response::Data;
use pop3_interop::{lf_to_crlf, stored_messages};

use super::*;

#[path = "../../tests/support/dovecot_imap.rs"]
mod dovecot_imap;
use dovecot_imap::Imapd;

/// Every test's bound: a hung server or client fails the test instead of hanging it.
const LIMIT: Duration = Duration::from_secs(90);

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("the test took longer than its limit")
}

/// What the IMAP target's tests ask of the shared Dovecot (`tests/support/dovecot_imap.rs`).
impl Imapd {
    /// `imap://alice@127.0.0.1:port/<mailbox>` (plain port, STARTTLS offered).
    fn url(&self, mailbox: &str) -> ImapUrl {
        ImapUrl::parse(&format!("imap://alice@127.0.0.1:{}/{mailbox}", self.port)).unwrap()
    }

    /// `imaps://alice@localhost:tls_port/<mailbox>`.
    fn tls_url(&self, mailbox: &str) -> ImapUrl {
        ImapUrl::parse(&format!(
            "imaps://alice@localhost:{}/{mailbox}",
            self.tls_port
        ))
        .unwrap()
    }

    fn trust(&self) -> Trust {
        Trust::CaPem(self.cert_pem().as_bytes().to_vec())
    }

    /// Connects with alice's password, plaintext allowed (loopback).
    async fn plain(&self, mailbox: &str) -> ImapTarget {
        ImapTarget::connect(&self.url(mailbox), password("pw"), plaintext())
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.log()))
    }
}

fn password(pw: &str) -> ImapAuth {
    ImapAuth::Password(Zeroizing::new(pw.to_string()))
}

fn token(t: &str) -> ImapAuth {
    ImapAuth::OAuth2Token(Zeroizing::new(t.to_string()))
}

fn plaintext() -> TlsSettings {
    TlsSettings {
        trust: Trust::WebPki,
        allow_plaintext: true,
    }
}

/// A message as fetched back: its bytes and internal date.
struct Fetched {
    body: Vec<u8>,
    internal_date: DateTime,
}

/// SELECTs (read-only) `mailbox` on `target`'s connection and FETCHes every message's
/// `BODY.PEEK[]` and `INTERNALDATE`, in order.
async fn fetch_all(target: &mut ImapTarget, mailbox: &str) -> Vec<Fetched> {
    let done = target
        .run(CommandBody::examine(mailbox_on_the_wire(mailbox).unwrap()).unwrap())
        .await
        .expect("EXAMINE");
    assert!(done.is_ok(), "EXAMINE {mailbox}: {}", done.text());
    let items = vec![
        MessageDataItemName::BodyExt {
            section: None,
            partial: None,
            peek: true,
        },
        MessageDataItemName::InternalDate,
    ];
    let done = target
        .run(CommandBody::fetch("1:*", items, false).unwrap())
        .await
        .expect("FETCH");
    assert!(done.is_ok(), "FETCH: {}", done.text());
    let mut out = Vec::new();
    for data in done.data {
        let Data::Fetch { items, .. } = data else {
            continue;
        };
        let (mut body, mut internal_date) = (None, None);
        for item in items.into_inner() {
            match item {
                MessageDataItem::BodyExt {
                    section: None,
                    data,
                    ..
                } => body = data.into_option().map(|c| c.into_owned()),
                MessageDataItem::InternalDate(d) => internal_date = Some(d),
                _ => {}
            }
        }
        out.push(Fetched {
            body: body.expect("BODY[]"),
            internal_date: internal_date.expect("INTERNALDATE"),
        });
    }
    out
}

/// pop3-interop's test messages (dots at line starts, 8-bit and NUL octets, no final line end,
/// an empty body, a 2 MB message) as a POP3 client hands them over: CRLF.
fn wire_messages() -> Vec<Vec<u8>> {
    stored_messages().iter().map(|m| lf_to_crlf(m)).collect()
}

/// The Maildir files of `folder` ("" for INBOX), in no particular order.
fn maildir_files(maildir: &Path, folder: &str) -> Vec<Vec<u8>> {
    let dir = if folder.is_empty() {
        maildir.to_path_buf()
    } else {
        maildir.join(format!(".{folder}"))
    };
    let names: Vec<PathBuf> = ["new", "cur"]
        .iter()
        .flat_map(|s| std::fs::read_dir(dir.join(s)).into_iter().flatten())
        .flatten()
        .map(|e| e.path())
        .collect();
    names.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: {} bytes back for {} sent, first difference at {at}: got {:?}, want {:?}",
            got.len(),
            want.len(),
            String::from_utf8_lossy(&got[at.saturating_sub(20)..(at + 20).min(got.len())]),
            String::from_utf8_lossy(&want[at.saturating_sub(20)..(at + 20).min(want.len())]),
        );
    }
}

/// Every test message, over plaintext with LITERAL+, over STARTTLS with synchronising
/// literals only, and over implicit TLS, comes back byte for byte (CRLF) in FETCH BODY[].
#[tokio::test]
async fn dovecot_append_is_byte_exact_over_every_transport() {
    let Some(imapd) = Imapd::start_required() else {
        return;
    };
    bounded(async {
        let messages = wire_messages();
        let mut verify = imapd.plain("INBOX").await;
        for folder in ["Starttls", "Implicit"] {
            let done = verify
                .run(CommandBody::create(mailbox_on_the_wire(folder).unwrap()).unwrap())
                .await
                .unwrap();
            assert!(done.is_ok(), "CREATE: {}", done.text());
        }

        // imap:// on loopback, plaintext allowed: Dovecot offers LITERAL+ after login.
        let mut plain = imapd.plain("INBOX").await;
        assert!(!plain.stream.is_tls());
        assert!(plain.has(&Capability::LiteralPlus), "{:?}", plain.caps);
        for m in &messages {
            plain
                .append(m, None)
                .await
                .unwrap_or_else(|e| panic!("append: {e}\n{}", imapd.log()));
        }
        plain.logout().await.unwrap();

        // imap:// with STARTTLS (required), synchronising literals.
        let tls = TlsSettings {
            trust: imapd.trust(),
            allow_plaintext: false,
        };
        let mut url = imapd.url("Starttls");
        url.host = "localhost".into(); // the certificate's name
        let mut starttls = ImapTarget::connect(&url, password("pw"), tls.clone())
            .await
            .unwrap_or_else(|e| panic!("STARTTLS connect: {e}\n{}", imapd.log()));
        assert!(starttls.stream.is_tls());
        starttls.set_sync_literals_only(true);
        for m in &messages {
            starttls.append(m, None).await.unwrap();
        }
        starttls.logout().await.unwrap();

        // imaps://.
        let mut implicit = ImapTarget::connect(&imapd.tls_url("Implicit"), password("pw"), tls)
            .await
            .unwrap_or_else(|e| panic!("imaps connect: {e}\n{}", imapd.log()));
        assert!(implicit.stream.is_tls());
        for m in &messages {
            implicit.append(m, None).await.unwrap();
        }
        implicit.logout().await.unwrap();

        for (folder, maildir_folder) in [
            ("INBOX", ""),
            ("Starttls", "Starttls"),
            ("Implicit", "Implicit"),
        ] {
            let back = fetch_all(&mut verify, folder).await;
            assert_eq!(back.len(), messages.len(), "{folder}");
            for (i, (m, f)) in messages.iter().zip(&back).enumerate() {
                if m.contains(&0) {
                    // IMAP4rev1 cannot carry NUL in a literal: Dovecot's FETCH BODY[] turns it
                    // into 0x80. It went in as a literal8 (BINARY); the Maildir file holds it.
                    let file = maildir_files(&imapd.maildir(), maildir_folder)
                        .into_iter()
                        .find(|f| f.starts_with(b"Subject: 8bit"))
                        .expect("the 8-bit message's file");
                    assert_same(&file, &stored_messages()[i], &format!("{folder} file {i}"));
                    continue;
                }
                assert_same(&f.body, m, &format!("{folder} message {i}"));
            }
        }
        verify.logout().await.unwrap();
    })
    .await;
}

/// The internal date is the first Received:'s date, else the Date:'s (as an instant: a Maildir
/// keeps it as the file's time, so the server shows it in its own zone).
#[tokio::test]
async fn dovecot_keeps_the_original_date_as_internal_date() {
    let Some(imapd) = Imapd::start_required() else {
        return;
    };
    bounded(async {
        let received = b"Received: from mx.example.org by pop.example.net;\r\n\
                         \tTue, 1 Jul 2003 10:52:37 +0200 (CEST)\r\n\
                         Received: from older; Mon, 30 Jun 2003 08:00:00 -0000\r\n\
                         Date: Mon, 30 Jun 2003 07:59:00 +0000\r\n\
                         Subject: received\r\n\r\nbody\r\n"
            .to_vec();
        let dated =
            b"Date: Fri, 21 Nov 1997 09:55:06 -0600\r\nSubject: dated\r\n\r\nbody\r\n".to_vec();
        let undated = b"Subject: undated\r\n\r\nbody\r\n".to_vec();
        let want = [
            chrono::DateTime::parse_from_rfc3339("2003-07-01T10:52:37+02:00").unwrap(),
            chrono::DateTime::parse_from_rfc3339("1997-11-21T09:55:06-06:00").unwrap(),
        ];
        let mut target = imapd.plain("INBOX").await;
        let before = std::time::SystemTime::now();
        for m in [&received, &dated, &undated] {
            target.append(m, internal_date_of(m)).await.unwrap();
        }
        let back = fetch_all(&mut target, "INBOX").await;
        assert_eq!(back.len(), 3);
        for (f, want) in back.iter().zip(want) {
            assert_eq!(f.internal_date.as_ref().timestamp(), want.timestamp());
        }
        // No date at all: the server's clock at the APPEND.
        let now = before
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let undated_at = back[2].internal_date.as_ref().timestamp();
        assert!(
            (now - 5..now + 60).contains(&undated_at),
            "{undated_at} vs {now}"
        );
        target.logout().await.unwrap();
    })
    .await;
}

/// A mailbox that does not exist is `Rejected` with `[TRYCREATE]` (and not created), with
/// LITERAL+ and with synchronising literals, and the connection stays usable; a mailbox name
/// with non-ASCII goes as modified UTF-7 (Dovecot's Maildir++ folder is named so).
#[tokio::test]
async fn dovecot_missing_and_non_ascii_mailboxes() {
    let Some(imapd) = Imapd::start_required() else {
        return;
    };
    bounded(async {
        let m = b"Subject: x\r\n\r\nx\r\n";
        for sync in [false, true] {
            let mut target = imapd.plain("Nope").await;
            target.set_sync_literals_only(sync);
            for _ in 0..2 {
                let e = target.append(m, None).await.unwrap_err();
                assert!(matches!(e, ImapError::Rejected(_)), "{e:?}");
                assert!(e.is_mailbox_missing(), "{e}");
                assert!(!e.is_connection_error());
            }
            // Still in step with the server.
            let done = target.run(CommandBody::Noop).await.unwrap();
            assert!(done.is_ok(), "NOOP: {}", done.text());
            target.logout().await.unwrap();
        }
        assert!(!imapd.maildir().join(".Nope").exists());

        let mut admin = imapd.plain("INBOX").await;
        let done = admin
            .run(CommandBody::create(mailbox_on_the_wire("Reçus Été 📬").unwrap()).unwrap())
            .await
            .unwrap();
        assert!(done.is_ok(), "CREATE: {}", done.text());
        let url = ImapUrl::parse(&format!(
            "imap://alice@127.0.0.1:{}/Re%C3%A7us%20%C3%89t%C3%A9%20%F0%9F%93%AC",
            imapd.port
        ))
        .unwrap();
        let mut target = ImapTarget::connect(&url, password("pw"), plaintext())
            .await
            .unwrap();
        target.append(m, None).await.unwrap();
        target.logout().await.unwrap();
        // Dovecot's Maildir++ layout: `.` + the modified UTF-7 name.
        let folder = "Re&AOc-us &AMk-t&AOk- &2D3c7A-";
        assert_eq!(
            maildir_files(&imapd.maildir(), folder),
            vec![b"Subject: x\n\nx\n".to_vec()]
        );
        admin.logout().await.unwrap();
    })
    .await;
}

/// `contains` finds what was appended, by Message-ID, and without one by size, date and
/// subject and then the whole message; it finds nothing before, nor a near miss: another
/// Message-ID (one that contains the other too), the same header and another size, the same
/// size and another header. It sees messages appended after its mailbox was opened, and a
/// mailbox it cannot open is `Rejected` with the connection still usable.
#[tokio::test]
async fn dovecot_contains_what_was_appended_and_no_near_miss() {
    let Some(imapd) = Imapd::start_required() else {
        return;
    };
    bounded(async {
        let with_id = b"Date: Mon, 2 Feb 2026 10:00:00 +0000\r\nSubject: one\r\n\
                        Message-ID: <11@contains.test>\r\n\r\nbody\r\n"
            .to_vec();
        let dated =
            b"Date: Mon, 2 Feb 2026 10:00:00 +0000\r\nSubject: two\r\n\r\nbody\r\n".to_vec();
        // Folded, encoded, 8-bit, bare LF: only the size to search by.
        let odd =
            "Subject: =?UTF-8?Q?caf=C3=A9?=\r\nFrom: a\r\n b@example.org\r\n\r\nÉté\nbare\r\n"
                .as_bytes()
                .to_vec();
        let header_only = b"From: c@example.org\r\nSubject: header only".to_vec();
        let all = [&with_id, &dated, &odd, &header_only];
        let mut looker = imapd.plain("INBOX").await;
        for m in all {
            assert!(!looker.contains(m).await.unwrap(), "nothing there yet");
        }
        let mut target = imapd.plain("INBOX").await;
        for m in all {
            target.append(m, internal_date_of(m)).await.unwrap();
        }
        // The looker's mailbox was opened before the appends.
        for m in all {
            assert!(
                looker.contains(m).await.unwrap(),
                "{:?}",
                String::from_utf8_lossy(m)
            );
        }
        let near_misses = [
            String::from_utf8(with_id.clone())
                .unwrap()
                .replace("<11@", "<1@")
                .into_bytes(),
            b"Date: Mon, 2 Feb 2026 10:00:00 +0000\r\nSubject: two\r\n\r\nbody!\r\n".to_vec(),
            b"Date: Mon, 2 Feb 2026 10:00:00 +0000\r\nSubject: twO\r\n\r\nbody\r\n".to_vec(),
            b"Date: Mon, 2 Feb 2026 10:00:00 +0000\r\nSubject: two\r\n\r\nbodY\r\n".to_vec(),
            b"From: c@example.org\r\nSubject: header onlY".to_vec(),
        ];
        for m in &near_misses {
            assert!(
                !looker.contains(m).await.unwrap(),
                "{:?}",
                String::from_utf8_lossy(m)
            );
        }
        // Nothing but the appends.
        assert_eq!(fetch_all(&mut target, "INBOX").await.len(), all.len());
        target.logout().await.unwrap();
        looker.logout().await.unwrap();

        let mut missing = imapd.plain("Nope").await;
        let e = missing.contains(&with_id).await.unwrap_err();
        assert!(matches!(e, ImapError::Rejected(_)), "{e:?}");
        let e = missing.append(&with_id, None).await.unwrap_err();
        assert!(e.is_mailbox_missing(), "{e}");
        missing.logout().await.unwrap();
    })
    .await;
}

/// A wrong password is an authentication error; an untrusted certificate a TLS error; both
/// are told apart from a rejected message.
#[tokio::test]
async fn dovecot_wrong_password_and_untrusted_certificate() {
    let Some(imapd) = Imapd::start_required() else {
        return;
    };
    bounded(async {
        let e = ImapTarget::connect(&imapd.url("INBOX"), password("wrong"), plaintext())
            .await
            .unwrap_err();
        assert!(matches!(e, ImapError::Auth(_)), "{e:?}");
        assert!(!e.is_connection_error());

        // Mozilla's roots do not include the test's self-signed certificate.
        let webpki = TlsSettings {
            trust: Trust::WebPki,
            allow_plaintext: false,
        };
        let e = ImapTarget::connect(&imapd.tls_url("INBOX"), password("pw"), webpki.clone())
            .await
            .unwrap_err();
        assert!(matches!(e, ImapError::Tls(_)), "{e:?}");
        let mut url = imapd.url("INBOX");
        url.host = "localhost".into();
        let e = ImapTarget::connect(&url, password("pw"), webpki)
            .await
            .unwrap_err();
        assert!(matches!(e, ImapError::Tls(_)), "{e:?}");

        // A token for a server without OAUTHBEARER/XOAUTH2.
        let e = ImapTarget::connect(&imapd.url("INBOX"), token("t"), plaintext())
            .await
            .unwrap_err();
        assert!(
            matches!(e, ImapError::Auth(ref t) if t.contains("XOAUTH2")),
            "{e:?}"
        );
    })
    .await;
}

/// A scripted IMAP server on a std thread: `script` gets the connection; what it returns (or
/// its panic) comes back from [`Rogue::finish`].
struct Rogue<T> {
    port: u16,
    thread: std::thread::JoinHandle<T>,
}

/// One accepted connection of a [`Rogue`] server.
struct Peer {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Peer {
    /// The next line from the client, without its CRLF.
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read");
        assert!(line.ends_with("\r\n"), "not a CRLF line: {line:?}");
        line.truncate(line.len() - 2);
        line
    }

    fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).expect("write");
    }

    /// Reads `n` bytes (a literal).
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        std::io::Read::read_exact(&mut self.reader, &mut buf).expect("literal");
        buf
    }

    /// Answers a LOGOUT.
    fn logout(&mut self) {
        let line = self.line();
        let tag = line
            .strip_suffix(" LOGOUT")
            .unwrap_or_else(|| panic!("{line:?}"));
        self.send(&format!("* BYE bye\r\n{tag} OK done\r\n"));
    }
}

fn rogue<T: Send + 'static>(script: impl FnOnce(&mut Peer) -> T + Send + 'static) -> Rogue<T> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let mut peer = Peer {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        script(&mut peer)
    });
    Rogue { port, thread }
}

impl<T> Rogue<T> {
    fn url(&self, user: &str) -> ImapUrl {
        ImapUrl::parse(&format!("imap://{user}@127.0.0.1:{}/INBOX", self.port)).unwrap()
    }

    fn finish(self) -> T {
        match self.thread.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

/// XOAUTH2 with SASL-IR: the initial response on the AUTHENTICATE line is exactly
/// base64(`user=…^Aauth=Bearer …^A^A`).
#[tokio::test]
async fn xoauth2_initial_response_is_exact() {
    bounded(async {
        let server = rogue(|p| {
            p.send("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN AUTH=XOAUTH2] rogue\r\n");
            let line = p.line();
            assert_eq!(
                line,
                "A1 AUTHENTICATE XOAUTH2 dXNlcj1hbGljZUBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB0b2stMTIzAQE="
            );
            p.send("A1 OK [CAPABILITY IMAP4rev1 LITERAL+] welcome\r\n");
            p.logout();
        });
        let url = server.url("alice%40example.com");
        let target = ImapTarget::connect(&url, token("tok-123"), plaintext()).await.unwrap();
        assert!(target.has(&Capability::LiteralPlus));
        target.logout().await.unwrap();
        server.finish();
    })
    .await;
}

/// OAUTHBEARER is preferred over XOAUTH2; without SASL-IR the response follows the `+`; the
/// GS2 header escapes `=` and `,` in the user name (RFC 7628 §3.1).
#[tokio::test]
async fn oauthbearer_preferred_and_exact_after_continuation() {
    bounded(async {
        let server = rogue(|p| {
            p.send("* OK rogue without capabilities in the greeting\r\n");
            assert_eq!(p.line(), "A1 CAPABILITY");
            p.send("* CAPABILITY IMAP4rev1 AUTH=XOAUTH2 AUTH=OAUTHBEARER\r\nA1 OK done\r\n");
            assert_eq!(p.line(), "A2 AUTHENTICATE OAUTHBEARER");
            p.send("+ \r\n");
            let response = p.line();
            p.send("A2 OK logged in\r\n");
            // No capabilities in the OK: asked for again.
            assert_eq!(p.line(), "A3 CAPABILITY");
            p.send("* CAPABILITY IMAP4rev1\r\nA3 OK done\r\n");
            p.logout();
            response
        });
        let port = server.port;
        let target = ImapTarget::connect(&server.url("a%3Db%2Cc"), token("tok-123"), plaintext())
            .await
            .unwrap();
        target.logout().await.unwrap();
        let response = server.finish();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&response)
            .unwrap();
        assert_eq!(
            decoded,
            format!(
                "n,a=a=3Db=2Cc,\x01host=127.0.0.1\x01port={port}\x01auth=Bearer tok-123\x01\x01"
            )
            .into_bytes()
        );
    })
    .await;
}

/// The RFC 7628 §4.1 and Google's XOAUTH2 documentation examples, byte for byte.
#[test]
fn sasl_payloads_match_the_published_examples() {
    let b64 = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
    assert_eq!(
        b64(&oauthbearer_response(
            "user@example.com",
            "server.example.com",
            143,
            "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
        )),
        "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
    );
    assert_eq!(
        b64(&xoauth2_response(
            "someuser@example.com",
            "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
        )),
        "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
    );
}

/// A refused token: the server's error challenge is answered (`^A` for OAUTHBEARER, empty
/// for XOAUTH2) and the result is an authentication error carrying the challenge's JSON.
#[tokio::test]
async fn refused_token_is_an_auth_error_with_the_servers_reason() {
    for (mechanism, answer) in [("OAUTHBEARER", "AQ=="), ("XOAUTH2", "")] {
        bounded(async {
            let server = rogue(move |p| {
                p.send(&format!(
                    "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH={mechanism}] rogue\r\n"
                ));
                let line = p.line();
                assert!(
                    line.starts_with(&format!("A1 AUTHENTICATE {mechanism} ")),
                    "{line}"
                );
                p.send("+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJtYWlsIn0=\r\n");
                assert_eq!(p.line(), answer);
                p.send("A1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n");
            });
            let e = ImapTarget::connect(&server.url("alice"), token("expired"), plaintext())
                .await
                .unwrap_err();
            server.finish();
            let ImapError::Auth(text) = &e else {
                panic!("{e:?}")
            };
            assert!(text.contains("AUTHENTICATIONFAILED"), "{text}");
            assert!(
                text.contains(r#"{"status":"invalid_token","scope":"mail"}"#),
                "{text}"
            );
        })
        .await;
    }
}

/// imap:// without STARTTLS on offer, plaintext not allowed: refused before any credential
/// leaves, whether it is a password or a token.
#[tokio::test]
async fn no_starttls_means_no_credentials_sent() {
    for auth in [password("secret"), token("secret")] {
        bounded(async {
            let server = rogue(|p| {
                p.send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR] rogue\r\n");
                // Whatever the client sends until it hangs up: no secret in it.
                let mut all = String::new();
                while p.reader.read_line(&mut all).map(|n| n > 0).unwrap_or(false) {}
                all
            });
            let tls = TlsSettings {
                trust: Trust::WebPki,
                allow_plaintext: false,
            };
            let e = ImapTarget::connect(&server.url("alice"), auth, tls)
                .await
                .unwrap_err();
            assert!(matches!(e, ImapError::TlsRequired(_)), "{e:?}");
            let sent = server.finish();
            assert!(
                !sent.contains("secret") && !sent.contains("AUTHENTICATE"),
                "{sent:?}"
            );
        })
        .await;
    }
}

/// Without LITERAL+ the client waits for the `+` before the message; a `NO` in place of the `+`
/// is `Rejected`, and the next command is still understood (imap-next alone would stay
/// waiting for the `+`). LITERAL- allows `{n+}` up to 4096 bytes only.
#[tokio::test]
async fn synchronising_literals_and_a_no_instead_of_the_continuation() {
    bounded(async {
        let server = rogue(|p| {
            p.send("* OK [CAPABILITY IMAP4rev1 LITERAL-] rogue\r\n");
            assert_eq!(p.line(), "A1 LOGIN alice pw");
            p.send("A1 OK [CAPABILITY IMAP4rev1 LITERAL-] in\r\n");
            // 1: refused before the literal.
            assert_eq!(p.line(), "A2 APPEND Archive {5}");
            p.send("A2 NO [TRYCREATE] no such mailbox\r\n");
            // 2: accepted: the literal follows the `+` only.
            assert_eq!(p.line(), "A3 APPEND Archive {5}");
            p.send("+ go\r\n");
            assert_eq!(p.bytes(5), b"hello");
            assert_eq!(p.line(), "");
            p.send("* 1 EXISTS\r\nA3 OK [APPENDUID 1 1] done\r\n");
            // 3: small enough for LITERAL-: no `+` awaited.
            let line = p.line();
            assert_eq!(
                line,
                "A4 APPEND Archive \"01-Jul-2003 10:52:37 +0200\" {5+}"
            );
            assert_eq!(p.bytes(5), b"small");
            assert_eq!(p.line(), "");
            p.send("A4 OK done\r\n");
            // 4: larger than 4096 bytes: synchronising again.
            assert_eq!(p.line(), "A5 APPEND Archive {5000}");
            p.send("+ go\r\n");
            assert_eq!(p.bytes(5000), vec![b'x'; 5000]);
            assert_eq!(p.line(), "");
            p.send("A5 OK done\r\n");
            p.logout();
        });
        let url =
            ImapUrl::parse(&format!("imap://alice@127.0.0.1:{}/Archive", server.port)).unwrap();
        let mut target = ImapTarget::connect(&url, password("pw"), plaintext())
            .await
            .unwrap();
        // As if the server had no LITERAL- at all.
        target.set_sync_literals_only(true);
        let e = target.append(b"hello", None).await.unwrap_err();
        assert!(e.is_mailbox_missing(), "{e:?}");
        assert_eq!(
            e.to_string(),
            "the IMAP server refused the message: [TRYCREATE] no such mailbox"
        );
        target.append(b"hello", None).await.unwrap();
        target.set_sync_literals_only(false);
        let date = internal_date_of(b"Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n\r\n");
        target.append(b"small", date).await.unwrap();
        target.append(&[b'x'; 5000], None).await.unwrap();
        target.logout().await.unwrap();
        server.finish();
    })
    .await;
}

/// A server that goes away mid-APPEND is a connection error, not a rejection.
#[tokio::test]
async fn a_server_hanging_up_is_a_connection_error() {
    bounded(async {
        let server = rogue(|p| {
            p.send("* OK [CAPABILITY IMAP4rev1 LITERAL+] rogue\r\n");
            assert_eq!(p.line(), "A1 LOGIN alice pw");
            p.send("A1 OK [CAPABILITY IMAP4rev1 LITERAL+] in\r\n");
            assert_eq!(p.line(), "A2 APPEND INBOX {5+}");
            p.send("* BYE shutting down\r\n");
        });
        let mut target = ImapTarget::connect(&server.url("alice"), password("pw"), plaintext())
            .await
            .unwrap();
        let e = target.append(b"hello", None).await.unwrap_err();
        assert!(e.is_connection_error(), "{e:?}");
        assert!(
            matches!(e, ImapError::Closed(ref t) if t.contains("shutting down")),
            "{e:?}"
        );
        server.finish();
    })
    .await;
}
