//! Random server input never reaches authentication success unless the server's answers are the
//! valid ones, for every client mechanism (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256, XOAUTH2,
//! OAUTHBEARER), and never takes the client machine to TRANSACTION without a valid exchange.
//!
//! The `no panic` properties of `sasl.rs` show that hostile input is survived; these show that
//! it is refused:
//!
//! - the exchange alone ([`ClientExchange`]): `finish()` (the client's verdict on `+OK`) is
//!   `Ok` exactly when the challenges have the mechanism's shape (none for PLAIN, XOAUTH2 and
//!   OAUTHBEARER, whose servers prove nothing; two for LOGIN; one non-empty for CRAM-MD5), and
//!   for SCRAM-SHA-256 only when the server-final message carries the server signature computed
//!   here, independently, from the password (RFC 5802 §3): random bytes, well-formed
//!   server-first messages followed by random, forged or mutated signatures never pass;
//! - the whole client machine ([`Client`]): after `AUTH`, a random sequence of server lines
//!   (challenges of random octets, well-formed SCRAM server-first and server-final messages,
//!   `+OK`, `-ERR`, garbage), delivered in random pieces, gives the `+OK` of the `AUTH` (and
//!   TRANSACTION) exactly when the lines before that `+OK` are a valid exchange.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use pop3_proto::Secret;
use pop3_proto::client::{Client, ClientConfig, ClientState, Event};
use pop3_proto::sasl::{ClientCredentials, ClientExchange, verify_cram_md5};
use proptest::prelude::*;
use sha2::Sha256;
use std::time::Instant;

const USER: &str = "alice";
const PASSWORD: &str = "pencil";
/// The client's SCRAM nonce.
const NONCE: &str = "fyko+d2lbbFgONRv9qkxdawL";

/// The mechanisms, by index into [`creds`].
const MECHS: [&str; 6] = [
    "PLAIN",
    "LOGIN",
    "CRAM-MD5",
    "SCRAM-SHA-256",
    "XOAUTH2",
    "OAUTHBEARER",
];
const SCRAM: usize = 3;

fn creds(i: usize) -> ClientCredentials {
    let password = || Secret::new(PASSWORD.to_string());
    let user = USER.to_string();
    match MECHS[i] {
        "PLAIN" => ClientCredentials::Plain {
            authzid: None,
            user,
            password: password(),
        },
        "LOGIN" => ClientCredentials::Login {
            user,
            password: password(),
        },
        "CRAM-MD5" => ClientCredentials::CramMd5 {
            user,
            password: password(),
        },
        "SCRAM-SHA-256" => ClientCredentials::ScramSha256 {
            user,
            password: password(),
        },
        "XOAUTH2" => ClientCredentials::XOAuth2 {
            user,
            token: Secret::new("ya29.token".into()),
        },
        _ => ClientCredentials::OAuthBearer {
            user,
            token: Secret::new("ya29.token".into()),
            host: Some("pop.example.com".into()),
            port: Some(995),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// SCRAM computed here, from RFC 5802 §3, without the crate's own code

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The server-first message for `suffix` (appended to the client nonce), `salt`, `iterations`.
fn server_first(suffix: &str, salt: &[u8], iterations: u32) -> String {
    format!("r={NONCE}{suffix},s={},i={iterations}", B64.encode(salt))
}

/// The server signature a server that knows `password` sends after `server_first`.
fn server_signature(password: &str, server_first: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    let server_key = hmac(&salted, b"Server Key");
    let nonce = server_first
        .split(',')
        .next()
        .and_then(|r| r.strip_prefix("r="))
        .expect("r= first");
    let auth_message = format!("n={USER},r={NONCE},{server_first},c=biws,r={nonce}");
    hmac(&server_key, auth_message.as_bytes())
}

fn server_final(signature: &[u8]) -> Vec<u8> {
    format!("v={}", B64.encode(signature)).into_bytes()
}

/// A server-first message the client accepts (its nonce extends the client's), with a random
/// suffix, salt and a small iteration count.
fn valid_server_first() -> impl Strategy<Value = (String, Vec<u8>, u32)> {
    (
        "[A-Za-z0-9+/]{1,24}",
        proptest::collection::vec(any::<u8>(), 1..24),
        4096u32..4160,
    )
        .prop_map(|(suffix, salt, i)| (server_first(&suffix, &salt, i), salt, i))
}

/// What a server sends in place of the server-final message.
#[derive(Debug, Clone)]
enum Final {
    /// Random octets.
    Bytes(Vec<u8>),
    /// `v=` and 32 random octets: a server that does not know the password, guessing.
    Forged([u8; 32]),
    /// The right signature with one bit flipped.
    Mutated(usize, u8),
    /// `e=` and a random value.
    Error(String),
    /// The right signature computed from another password.
    OtherPassword(String),
}

fn any_final() -> impl Strategy<Value = Final> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Final::Bytes),
        any::<[u8; 32]>().prop_map(Final::Forged),
        (0usize..32, 0u8..8).prop_map(|(i, b)| Final::Mutated(i, b)),
        "[ -~]{0,20}".prop_map(Final::Error),
        "[a-z]{1,10}"
            .prop_filter("not the password", |p| p != PASSWORD)
            .prop_map(Final::OtherPassword),
    ]
}

fn final_bytes(f: &Final, sf: &str, salt: &[u8], i: u32) -> Vec<u8> {
    match f {
        Final::Bytes(b) => b.clone(),
        Final::Forged(sig) => server_final(sig),
        Final::Mutated(at, bit) => {
            let mut sig = server_signature(PASSWORD, sf, salt, i);
            sig[*at] ^= 1 << bit;
            server_final(&sig)
        }
        Final::Error(e) => format!("e={e}").into_bytes(),
        Final::OtherPassword(p) => server_final(&server_signature(p, sf, salt, i)),
    }
}

// ---------------------------------------------------------------------------------------------
// The exchange alone

/// Whether `challenges` are a valid shape for mechanism `i` (not SCRAM), the initial response
/// sent inline.
fn valid_shape(i: usize, challenges: &[Vec<u8>]) -> bool {
    match MECHS[i] {
        "PLAIN" | "XOAUTH2" | "OAUTHBEARER" => challenges.is_empty(),
        "LOGIN" => challenges.len() == 2,
        "CRAM-MD5" => challenges.len() == 1 && !challenges[0].is_empty(),
        _ => false,
    }
}

proptest! {
    #![proptest_config(common::config(512))]

    /// Challenges of random octets: the verdict is success exactly for the mechanism's valid
    /// shape (for SCRAM-SHA-256, never), and a CRAM-MD5 success answered the challenge with
    /// the right digest.
    #[test]
    fn random_challenges_succeed_only_in_the_valid_shape(
        i in 0usize..MECHS.len(),
        challenges in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..5),
    ) {
        let mut c = ClientExchange::try_new(creds(i), NONCE.as_bytes()).unwrap();
        let _ = c.initial_response();
        let mut responses = Vec::new();
        let mut failed = false;
        for ch in &challenges {
            match c.step(ch) {
                Ok(r) => responses.push(r),
                Err(_) => failed = true,
            }
        }
        let ok = c.finish().is_ok();
        prop_assert_eq!(ok, !failed && valid_shape(i, &challenges), "{} {:?}", MECHS[i], challenges);
        if ok && MECHS[i] == "CRAM-MD5" {
            let resp = String::from_utf8(responses[0].clone()).unwrap();
            let hex = resp.strip_prefix("alice ").expect("user name first");
            let digest: Vec<u8> = (0..16)
                .map(|k| u8::from_str_radix(&hex[2 * k..2 * k + 2], 16).unwrap())
                .collect();
            prop_assert!(verify_cram_md5(PASSWORD.as_bytes(), &challenges[0], &digest.try_into().unwrap()));
        }
    }

    /// The initial response deferred to the first challenge (a long AUTH line): then exactly
    /// one more challenge than inline.
    #[test]
    fn deferred_initial_response_shifts_the_shape_by_one(
        i in prop::sample::select(vec![0usize, 4, 5]),
        challenges in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..4),
    ) {
        let mut c = ClientExchange::try_new(creds(i), NONCE.as_bytes()).unwrap();
        let ir = c.initial_response();
        c.defer_initial_response();
        let mut failed = false;
        for (k, ch) in challenges.iter().enumerate() {
            match c.step(ch) {
                Ok(r) if k == 0 => prop_assert_eq!(Some(r), ir.clone()),
                Ok(_) => {}
                Err(_) => failed = true,
            }
        }
        prop_assert_eq!(c.finish().is_ok(), !failed && challenges.len() == 1);
    }
}

proptest! {
    // Each case that gets past the server-first message costs PBKDF2 rounds on both sides.
    #![proptest_config(common::config(48))]

    /// A well-formed server-first message, then anything but the right signature: never
    /// success, whatever follows.
    #[test]
    fn scram_succeeds_only_with_the_server_signature_of_the_password(
        (sf, salt, iterations) in valid_server_first(),
        fin in proptest::option::of(any_final()),
        more in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..2),
    ) {
        let mut c = ClientExchange::try_new(creds(SCRAM), NONCE.as_bytes()).unwrap();
        c.initial_response().unwrap();
        prop_assert!(c.step(sf.as_bytes()).is_ok(), "a valid server-first is taken");
        // `None`: no server-final at all (`+OK` right after the client-final).
        if let Some(fin) = &fin {
            let _ = c.step(&final_bytes(fin, &sf, &salt, iterations));
        }
        for m in &more {
            let _ = c.step(m);
        }
        prop_assert!(c.finish().is_err(), "{:?} accepted", fin);
    }

    /// The control: the right signature, and nothing after it, is success.
    #[test]
    fn scram_succeeds_with_the_right_signature(
        (sf, salt, iterations) in valid_server_first(),
        extra in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
    ) {
        let mut c = ClientExchange::try_new(creds(SCRAM), NONCE.as_bytes()).unwrap();
        c.initial_response().unwrap();
        c.step(sf.as_bytes()).unwrap();
        let sig = server_signature(PASSWORD, &sf, &salt, iterations);
        prop_assert_eq!(c.step(&server_final(&sig)).unwrap(), Vec::<u8>::new());
        if let Some(extra) = &extra {
            // A challenge after the verified server-final breaks the exchange.
            prop_assert!(c.step(extra).is_err());
        }
        prop_assert_eq!(c.finish().is_ok(), extra.is_none());
    }

    /// Random octets in place of the server-first message (and after): never success.
    #[test]
    fn scram_random_challenges_never_succeed(
        challenges in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..5),
    ) {
        let mut c = ClientExchange::try_new(creds(SCRAM), NONCE.as_bytes()).unwrap();
        c.initial_response().unwrap();
        for ch in &challenges {
            let _ = c.step(ch);
        }
        prop_assert!(c.finish().is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// The whole client machine

/// A line from the server while `AUTH` is in flight.
#[derive(Debug, Clone)]
enum Line {
    /// `+ ` and the base64 of random octets (`+` alone when empty).
    Challenge(Vec<u8>),
    /// A well-formed SCRAM server-first message, as a challenge.
    ServerFirst(String, Vec<u8>, u32),
    /// A SCRAM server-final message, as a challenge, for the last `ServerFirst` before it.
    ServerFinal(Final),
    /// The right SCRAM server-final for the last `ServerFirst` before it.
    RightFinal,
    /// `+OK`.
    Ok,
    /// `-ERR`.
    Err,
    /// A line of random octets that does not start with `+`.
    Garbage(Vec<u8>),
}

fn any_line(scram: bool) -> BoxedStrategy<Line> {
    let common = prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..120).prop_map(Line::Challenge),
        1 => Just(Line::Challenge(Vec::new())),
        4 => Just(Line::Ok),
        1 => Just(Line::Err),
        1 => proptest::collection::vec(any::<u8>(), 0..60).prop_map(|mut g| {
            g.retain(|b| *b != b'\r' && *b != b'\n');
            g.insert(0, b'x');
            Line::Garbage(g)
        }),
    ];
    if scram {
        prop_oneof![
            4 => common,
            3 => valid_server_first().prop_map(|(sf, salt, i)| Line::ServerFirst(sf, salt, i)),
            3 => any_final().prop_map(Line::ServerFinal),
        ]
        .boxed()
    } else {
        common.boxed()
    }
}

/// The wire bytes of `lines`, and, for the oracle, the decoded challenge of each challenge line
/// (`None` for the others).
fn wire(lines: &[Line]) -> (Vec<u8>, Vec<Option<Vec<u8>>>) {
    let mut out = Vec::new();
    let mut decoded = Vec::new();
    let mut first: Option<(String, Vec<u8>, u32)> = None;
    for l in lines {
        let data = match l {
            Line::Challenge(d) => Some(d.clone()),
            Line::ServerFirst(sf, salt, i) => {
                first = Some((sf.clone(), salt.clone(), *i));
                Some(sf.clone().into_bytes())
            }
            Line::ServerFinal(f) => Some(match &first {
                Some((sf, salt, i)) => final_bytes(f, sf, salt, *i),
                None => final_bytes(f, "r=x,s=AA==,i=4096", b"\0", 4096),
            }),
            Line::RightFinal => Some(match &first {
                Some((sf, salt, i)) => server_final(&server_signature(PASSWORD, sf, salt, *i)),
                None => b"v=AA==".to_vec(),
            }),
            Line::Ok => {
                out.extend_from_slice(b"+OK welcome\r\n");
                None
            }
            Line::Err => {
                out.extend_from_slice(b"-ERR no\r\n");
                None
            }
            Line::Garbage(g) => {
                out.extend_from_slice(g);
                out.extend_from_slice(b"\r\n");
                None
            }
        };
        if let Some(d) = &data {
            if d.is_empty() {
                out.extend_from_slice(b"+\r\n");
            } else {
                out.extend_from_slice(b"+ ");
                out.extend_from_slice(B64.encode(d).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        decoded.push(data);
    }
    (out, decoded)
}

/// Whether the lines before the first non-challenge line are a valid exchange for mechanism
/// `i` and that line is `+OK`. `inline`: the initial response went on the AUTH line.
fn valid_exchange(i: usize, inline: bool, lines: &[Line], decoded: &[Option<Vec<u8>>]) -> bool {
    let n = decoded.iter().take_while(|d| d.is_some()).count();
    if !matches!(lines.get(n), Some(Line::Ok)) {
        return false;
    }
    // A deferred initial response takes one challenge first, whatever it is.
    let skip = usize::from(!inline && MECHS[i] != "LOGIN" && MECHS[i] != "CRAM-MD5");
    if n < skip {
        return false;
    }
    let challenges: Vec<Vec<u8>> = decoded[skip..n].iter().flatten().cloned().collect();
    if MECHS[i] == "SCRAM-SHA-256" {
        // The right server-final after a valid server-first, and nothing else.
        return n == skip + 2
            && matches!(lines[skip], Line::ServerFirst(..))
            && matches!(lines[skip + 1], Line::RightFinal);
    }
    valid_shape(i, &challenges)
}

/// Runs `AUTH` on a client machine and feeds it `bytes` in pieces cut at `cuts`: whether the
/// `AUTH` got its `+OK` (the machine logged in), and the state at the end.
fn drive(i: usize, inline: bool, bytes: &[u8], cuts: &[usize]) -> (bool, ClientState) {
    let now = Instant::now();
    let mut config = ClientConfig::default();
    if !inline {
        // Every initial response is then too long for the AUTH line.
        config.max_command_line = 24;
    }
    let mut c = Client::new(config, now);
    c.handle_input(b"+OK ready\r\n", now);
    while c.poll_event().is_some() {}
    let h = c.auth(creds(i), NONCE.as_bytes()).unwrap();
    let mut sent = Vec::new();
    c.poll_transmit(now, &mut sent);
    let mut logged_in = false;
    let mut at = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|k| k % (bytes.len() + 1)).collect();
    cuts.push(bytes.len());
    cuts.sort_unstable();
    for cut in cuts {
        c.handle_input(&bytes[at..cut], now);
        at = cut;
        while let Some(ev) = c.poll_event() {
            if let Event::Ok { handle, .. } = ev
                && handle == h
            {
                logged_in = true;
                assert_eq!(c.state(), ClientState::Transaction);
            }
        }
        c.poll_transmit(now, &mut sent);
    }
    (logged_in, c.state())
}

proptest! {
    #![proptest_config(common::config(256))]

    /// PLAIN, LOGIN, CRAM-MD5, XOAUTH2, OAUTHBEARER: random server lines log in exactly when
    /// they are a valid exchange.
    #[test]
    fn machine_logs_in_only_after_a_valid_exchange(
        i in prop::sample::select(vec![0usize, 1, 2, 4, 5]),
        inline in any::<bool>(),
        lines in proptest::collection::vec(any_line(false), 0..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let (bytes, decoded) = wire(&lines);
        let (logged_in, _) = drive(i, inline, &bytes, &cuts);
        prop_assert_eq!(logged_in, valid_exchange(i, inline, &lines, &decoded), "{} {:?}", MECHS[i], lines);
    }

    /// The valid exchanges, made on purpose: they do log in (the control for the property
    /// above, whose random lines are rarely valid).
    #[test]
    fn machine_logs_in_after_the_valid_shapes(
        i in prop::sample::select(vec![0usize, 1, 2, 4, 5]),
        inline in any::<bool>(),
        challenges in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..60), 3),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let deferred = usize::from(!inline && !matches!(MECHS[i], "LOGIN" | "CRAM-MD5"));
        let count = match MECHS[i] {
            "LOGIN" => 2,
            "CRAM-MD5" => 1,
            _ => 0,
        } + deferred;
        let mut lines: Vec<Line> = challenges[..count].iter().cloned().map(Line::Challenge).collect();
        lines.push(Line::Ok);
        let (bytes, decoded) = wire(&lines);
        prop_assert!(valid_exchange(i, inline, &lines, &decoded));
        let (logged_in, state) = drive(i, inline, &bytes, &cuts);
        prop_assert!(logged_in, "{} {:?}", MECHS[i], lines);
        prop_assert_eq!(state, ClientState::Transaction);
    }
}

proptest! {
    #![proptest_config(common::config(48))]

    /// SCRAM-SHA-256: random lines, well-formed server-first messages and forged server-final
    /// messages never log in; only the right server-final does.
    #[test]
    fn machine_scram_logs_in_only_with_the_right_signature(
        inline in any::<bool>(),
        (sf, salt, i) in valid_server_first(),
        depth in 0usize..3,
        fin in any_final(),
        lines in proptest::collection::vec(any_line(true), 0..6),
        right in any::<bool>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        // Random lines alone rarely get far: start them, often, after a server-first message
        // the client takes (and a server-final that is not the right one).
        let mut lines: Vec<Line> = match depth {
            0 => Vec::new(),
            1 => vec![Line::ServerFirst(sf, salt, i)],
            _ => vec![Line::ServerFirst(sf, salt, i), Line::ServerFinal(fin)],
        }
        .into_iter()
        .chain(lines)
        .collect();
        if depth > 0 && !inline {
            lines.insert(0, Line::Challenge(Vec::new()));
        }
        if right {
            // Sometimes the honest exchange, possibly followed or preceded by noise.
            let at = lines.len() / 2;
            let (sf, salt, i) = (server_first("srv", b"salt", 4096), b"salt".to_vec(), 4096);
            let mut honest = Vec::new();
            if !inline {
                honest.push(Line::Challenge(Vec::new()));
            }
            honest.extend([Line::ServerFirst(sf, salt, i), Line::RightFinal, Line::Ok]);
            lines.splice(at..at, honest);
        }
        let (bytes, decoded) = wire(&lines);
        let (logged_in, _) = drive(SCRAM, inline, &bytes, &cuts);
        prop_assert_eq!(logged_in, valid_exchange(SCRAM, inline, &lines, &decoded), "{:?}", lines);
    }
}

#[test]
fn machine_scram_honest_exchange_logs_in() {
    for inline in [true, false] {
        let sf = server_first("srv", b"salt", 4096);
        let mut lines = Vec::new();
        if !inline {
            lines.push(Line::Challenge(Vec::new()));
        }
        lines.extend([
            Line::ServerFirst(sf, b"salt".to_vec(), 4096),
            Line::RightFinal,
            Line::Ok,
        ]);
        let (bytes, decoded) = wire(&lines);
        assert!(valid_exchange(SCRAM, inline, &lines, &decoded));
        assert_eq!(
            drive(SCRAM, inline, &bytes, &[]),
            (true, ClientState::Transaction)
        );
    }
}

/// After a refused exchange nothing logs in later either: a `+OK` to nothing is unsolicited.
#[test]
fn machine_scram_ok_without_server_final_ends_the_session() {
    let sf = server_first("srv", b"salt", 4096);
    let lines = [
        Line::ServerFirst(sf, b"salt".to_vec(), 4096),
        Line::Ok,
        Line::Ok,
    ];
    let (bytes, _) = wire(&lines);
    assert_eq!(
        drive(SCRAM, true, &bytes, &[]),
        (false, ClientState::Closed)
    );
}
