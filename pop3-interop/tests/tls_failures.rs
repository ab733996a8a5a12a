//! A TLS handshake that fails is reported with its step and with what the server said in
//! plain text, on every client adapter (pop3-tokio, pop3-blocking, pop3-futures on smol and on
//! async-std), against rogue servers written by hand (`std::net`):
//!
//! - a server that accepts `STLS`, then fails its own TLS: a fatal alert and
//!   `-ERR STARTTLS failed: no certificate` in plain text (in one write, or in two), or the
//!   `-ERR` alone. The error is `Error::Handshake { step: TlsStep::Stls, .. }`, names STLS and
//!   carries the server's `-ERR` line;
//! - a plain-text server where implicit TLS was expected: `step: TlsStep::Implicit`, and the
//!   greeting it sent instead of TLS.

use std::io::{BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::thread::JoinHandle;
use std::time::Duration;

use pop3_interop::{AsyncStd, ClientKind, Tls, bounded, one_connection};
use pop3_tokio::client::{ClientOptions, Error, TlsMode};
use pop3_tokio::pop3_driver::client::TlsStep;

/// How long one scenario may take, all waits included.
const SCENARIO_LIMIT: Duration = Duration::from_secs(60);
/// The timeout of every raw socket.
const IO_LIMIT: Duration = Duration::from_secs(10);

/// A fatal `handshake_failure` alert record (TLS 1.2 record version, as TLS 1.3 uses too).
const ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];
const REFUSAL: &str = "-ERR STARTTLS failed: no certificate";

/// How the rogue server fails its TLS after `+OK` to `STLS`.
#[derive(Debug, Clone, Copy)]
enum Failure {
    /// The alert and the `-ERR` line in one write.
    AlertThenErr,
    /// The alert, a pause, then the `-ERR` line: the client must wait for it.
    AlertPauseErr,
    /// The `-ERR` line only, where the client expects the ServerHello.
    ErrOnly,
}

/// Connects with `tls` on the adapter `kind`; the client is dropped at once.
fn connect(kind: ClientKind, addr: SocketAddr, tls: TlsMode) -> Result<(), Error> {
    let a = addr.to_string();
    let mut o = ClientOptions::new(tls);
    o.server_name = Some("localhost".into());
    o.connect_timeout = IO_LIMIT;
    match kind {
        ClientKind::Tokio => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(pop3_tokio::client::Pop3Client::connect(&a, o))
                .map(drop)
        }
        ClientKind::Blocking => pop3_blocking::client::Pop3Client::connect(&a, o).map(drop),
        ClientKind::Smol => smol::block_on(pop3_futures::client::Pop3Client::<
            smol::net::TcpStream,
            pop3_futures::Smol,
        >::connect(&a, o))
        .map(drop),
        ClientKind::AsyncStd => async_std::task::block_on(async {
            let tcp = async_std::net::TcpStream::connect(&a).await?;
            tcp.set_nodelay(true)?;
            pop3_futures::client::Pop3Client::connect_stream(tcp, o, AsyncStd)
                .await
                .map(drop)
        }),
    }
}

/// Reads one TLS record (the ClientHello), so that closing later is a FIN, not a reset.
fn read_record(r: &mut impl Read) -> Vec<u8> {
    let mut header = [0u8; 5];
    r.read_exact(&mut header).expect("a TLS record header");
    assert_eq!(header[0], 0x16, "a handshake record: {header:?}");
    let mut body = vec![0u8; usize::from(u16::from_be_bytes([header[3], header[4]]))];
    r.read_exact(&mut body).expect("the TLS record");
    body
}

/// Reads until the client closes (or the timeout), so that the client never sees a reset.
fn drain(r: &mut impl Read) {
    let mut sink = [0u8; 4096];
    while matches!(r.read(&mut sink), Ok(n) if n > 0) {}
}

/// A server that offers and accepts `STLS`, then fails its TLS as `failure` says.
fn stls_rogue(failure: Failure) -> (SocketAddr, JoinHandle<Vec<String>>) {
    one_connection(IO_LIMIT, move |mut r, mut w| {
        let mut commands = Vec::new();
        w.write_all(b"+OK rogue POP3 ready\r\n").expect("greeting");
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).expect("a command") == 0 {
                return commands;
            }
            let cmd = line.trim_end().to_string();
            commands.push(cmd.clone());
            match cmd.as_str() {
                "CAPA" => w
                    .write_all(b"+OK\r\nSTLS\r\nUSER\r\n.\r\n")
                    .expect("CAPA reply"),
                "STLS" => break,
                _ => w.write_all(b"-ERR no\r\n").expect("reply"),
            }
        }
        w.write_all(b"+OK begin TLS negotiation\r\n")
            .expect("STLS reply");
        read_record(&mut r);
        let err_line = format!("{REFUSAL}\r\n");
        match failure {
            Failure::AlertThenErr => {
                let mut both = ALERT.to_vec();
                both.extend_from_slice(err_line.as_bytes());
                w.write_all(&both).expect("alert and -ERR");
            }
            Failure::AlertPauseErr => {
                w.write_all(&ALERT).expect("alert");
                w.flush().expect("flush");
                std::thread::sleep(Duration::from_millis(100));
                w.write_all(err_line.as_bytes()).expect("-ERR");
            }
            Failure::ErrOnly => w.write_all(err_line.as_bytes()).expect("-ERR"),
        }
        let _ = w.shutdown(Shutdown::Write);
        drain(&mut r);
        commands
    })
}

#[test]
fn a_tls_failure_after_stls_names_stls_and_the_servers_err_line() {
    let tls = Tls::new();
    for failure in [
        Failure::AlertThenErr,
        Failure::AlertPauseErr,
        Failure::ErrOnly,
    ] {
        for kind in ClientKind::ALL {
            let client_tls = tls.client.clone();
            let label = format!("{kind:?} {failure:?}");
            let (error, commands) = bounded(&label.clone(), SCENARIO_LIMIT, move || {
                let (addr, server) = stls_rogue(failure);
                let r = connect(kind, addr, TlsMode::StartTls(client_tls));
                (r, server.join().expect("the rogue server"))
            });
            assert_eq!(commands, ["CAPA", "STLS"], "{label}");
            let error = error.expect_err(&label);
            match &error {
                Error::Handshake {
                    step: TlsStep::Stls,
                    server_said: Some(said),
                    ..
                } => assert_eq!(said, REFUSAL, "{label}"),
                other => panic!("{label}: {other:?}"),
            }
            let message = error.to_string();
            assert!(message.contains("STLS"), "{label}: {message}");
            assert!(message.contains(REFUSAL), "{label}: {message}");
        }
    }
}

#[test]
fn implicit_tls_to_a_plain_text_server_shows_what_it_sent() {
    let tls = Tls::new();
    for kind in ClientKind::ALL {
        let client_tls = tls.client.clone();
        let label = format!("{kind:?}");
        let error = bounded(&label.clone(), SCENARIO_LIMIT, move || {
            let (addr, server) = one_connection(IO_LIMIT, |mut r, mut w| {
                w.write_all(b"+OK plain POP3 ready\r\n").expect("greeting");
                drain(&mut r);
            });
            let r = connect(kind, addr, TlsMode::Implicit(client_tls));
            server.join().expect("the plain server");
            r
        });
        let error = error.expect_err(&label);
        match &error {
            Error::Handshake {
                step: TlsStep::Implicit,
                server_said: Some(said),
                ..
            } => assert_eq!(said, "+OK plain POP3 ready", "{label}"),
            other => panic!("{label}: {other:?}"),
        }
        assert!(!error.to_string().contains("STLS"), "{label}: {error}");
    }
}
