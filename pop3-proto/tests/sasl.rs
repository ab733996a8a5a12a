//! SASL exchanges: RFC test vectors, client and server wired back to back, hostile input.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use pop3_proto::sasl::{
    ClientCredentials, ClientExchange, CredentialAnswer, CredentialRequest, FailureReason,
    Identity, OAuthError, SaslError, SaslFailure, ScramCredentials, ServerExchange, ServerParams,
    ServerStep, apop_digest, cram_md5_digest, verify_apop, verify_cram_md5,
};
use pop3_proto::{ApopDigest, Mechanism, Secret, Timestamp};
use proptest::prelude::*;

fn secret(s: &str) -> Secret<String> {
    Secret::new(s.to_owned())
}

fn mech(name: &str) -> Mechanism {
    Mechanism::new(name).unwrap()
}

fn challenge(step: ServerStep) -> Vec<u8> {
    match step {
        ServerStep::Challenge(c) => c,
        other => panic!("expected a challenge, got {other:?}"),
    }
}

fn failure(step: ServerStep) -> SaslFailure {
    match step {
        ServerStep::Failure(f) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn success(step: ServerStep) -> Identity {
    match step {
        ServerStep::Success(id) => id,
        other => panic!("expected success, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// RFC vectors

#[test]
fn apop_rfc1939_example() {
    let ts = Timestamp::new(b"<1896.697170952@dbc.mtview.ca.us>".to_vec()).unwrap();
    let d = apop_digest(&ts, b"tanstaaf");
    assert_eq!(d.to_hex(), "c4c9334bac560ecc979e58001b3e22fb");
    assert!(verify_apop(&ts, b"tanstaaf", &d));
    assert!(!verify_apop(&ts, b"tanstaaF", &d));
    let mut flipped = d.0;
    flipped[15] ^= 1;
    assert!(!verify_apop(&ts, b"tanstaaf", &ApopDigest(flipped)));
    let other = Timestamp::new(b"<1896.697170953@dbc.mtview.ca.us>".to_vec()).unwrap();
    assert!(!verify_apop(&other, b"tanstaaf", &d));
}

const CRAM_CHALLENGE: &[u8] = b"<1896.697170952@postoffice.reston.mci.net>";

#[test]
fn cram_md5_rfc2195_client() {
    let d = cram_md5_digest(b"tanstaaftanstaaf", CRAM_CHALLENGE);
    assert_eq!(
        d,
        [
            0xb9, 0x13, 0xa6, 0x02, 0xc7, 0xed, 0xa7, 0xa4, 0x95, 0xb4, 0xe6, 0xe7, 0x33, 0x4d,
            0x38, 0x90
        ]
    );
    let mut c = ClientExchange::new(
        ClientCredentials::CramMd5 {
            user: "tim".into(),
            password: secret("tanstaaftanstaaf"),
        },
        b"",
    );
    assert_eq!(c.mechanism().as_str(), "CRAM-MD5");
    assert_eq!(c.initial_response(), None);
    assert_eq!(c.finish(), Err(SaslError::Incomplete));
    assert_eq!(
        c.step(CRAM_CHALLENGE).unwrap(),
        b"tim b913a602c7eda7a495b4e6e7334d3890"
    );
    assert_eq!(c.finish(), Ok(()));
    // A second challenge is a protocol violation.
    assert_eq!(c.step(b"more"), Err(SaslError::UnexpectedChallenge));
}

#[test]
fn cram_md5_rfc2195_server() {
    let params = ServerParams::new("1896.697170952", "postoffice.reston.mci.net");
    let mut s = ServerExchange::new(&mech("cram-md5"), params).unwrap();
    assert_eq!(challenge(s.start(None)), CRAM_CHALLENGE);
    let req = s.respond(b"tim b913a602c7eda7a495b4e6e7334d3890");
    let ServerStep::Check(CredentialRequest::CramMd5 {
        user,
        challenge,
        digest,
    }) = req
    else {
        panic!("expected a CRAM-MD5 check, got {req:?}");
    };
    assert_eq!(user, "tim");
    assert_eq!(challenge, CRAM_CHALLENGE);
    assert!(verify_cram_md5(b"tanstaaftanstaaf", &challenge, &digest));
    assert!(!verify_cram_md5(b"tanstaaf", &challenge, &digest));
    let id = success(s.answer(CredentialAnswer::Verified(true)));
    assert_eq!(
        id,
        Identity {
            user: "tim".into(),
            authzid: None
        }
    );
    // Done: anything more is out of order.
    assert_eq!(failure(s.respond(b"")).reason, FailureReason::OutOfOrder);
}

const SCRAM_CLIENT_FIRST: &[u8] = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SCRAM_SERVER_FIRST: &[u8] =
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const SCRAM_CLIENT_FINAL: &[u8] = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SCRAM_SERVER_FINAL: &[u8] = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
const SCRAM_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";

fn scram_client(user: &str, password: &str) -> ClientExchange {
    ClientExchange::try_new(
        ClientCredentials::ScramSha256 {
            user: user.into(),
            password: secret(password),
        },
        b"rOprNGfwEbeRWgbNEkqO",
    )
    .unwrap()
}

fn rfc7677_credentials() -> ScramCredentials {
    let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    ScramCredentials::derive(b"pencil", &salt, 4096)
}

#[test]
fn scram_sha256_rfc7677_client() {
    let mut c = scram_client("user", "pencil");
    assert_eq!(c.mechanism().as_str(), "SCRAM-SHA-256");
    assert_eq!(c.initial_response().unwrap(), SCRAM_CLIENT_FIRST);
    assert_eq!(c.initial_response(), None, "taken once");
    assert_eq!(c.finish(), Err(SaslError::Incomplete));
    assert_eq!(c.step(SCRAM_SERVER_FIRST).unwrap(), SCRAM_CLIENT_FINAL);
    assert_eq!(
        c.finish(),
        Err(SaslError::Incomplete),
        "no server signature yet"
    );
    assert_eq!(c.step(SCRAM_SERVER_FINAL).unwrap(), b"");
    assert_eq!(c.finish(), Ok(()));
}

#[test]
fn scram_sha256_rfc7677_server() {
    let params = ServerParams::new(SCRAM_SERVER_NONCE, "mail.example");
    let mut s = ServerExchange::new(&mech("SCRAM-SHA-256"), params).unwrap();
    match s.start(Some(SCRAM_CLIENT_FIRST)) {
        ServerStep::Check(CredentialRequest::Scram { user }) => assert_eq!(user, "user"),
        other => panic!("expected a SCRAM check, got {other:?}"),
    }
    let first = challenge(s.answer(CredentialAnswer::Scram(Some(rfc7677_credentials()))));
    assert_eq!(first, SCRAM_SERVER_FIRST);
    assert_eq!(challenge(s.respond(SCRAM_CLIENT_FINAL)), SCRAM_SERVER_FINAL);
    let id = success(s.respond(b""));
    assert_eq!(id.user, "user");
    assert_eq!(id.authzid, None);
}

#[test]
fn scram_credentials_derive_from_password_prepares() {
    let salt = b"salt";
    // RFC 4013 §3: U+00AA maps to "a" under NFKC, and soft hyphen maps to nothing.
    let a = ScramCredentials::derive_from_password("\u{aa}b\u{ad}c", salt, 4096).unwrap();
    let b = ScramCredentials::derive(b"abc", salt, 4096);
    assert_eq!(a.stored_key, b.stored_key);
    assert_eq!(a.server_key, b.server_key);
    assert_ne!(
        a.stored_key,
        ScramCredentials::derive(b"abd", salt, 4096).stored_key
    );
    // U+0007 is a prohibited control character.
    assert!(ScramCredentials::derive_from_password("a\u{7}", salt, 4096).is_err());
}

#[test]
fn plain_rfc4616_examples() {
    // RFC 4616 §4: "\0tim\0tanstaaftanstaaf" and "Ursel\0Kurt\0xipj3plmq".
    let mut c = ClientExchange::new(
        ClientCredentials::Plain {
            authzid: None,
            user: "tim".into(),
            password: secret("tanstaaftanstaaf"),
        },
        b"",
    );
    assert_eq!(c.mechanism().as_str(), "PLAIN");
    assert_eq!(c.initial_response().unwrap(), b"\0tim\0tanstaaftanstaaf");
    assert_eq!(c.finish(), Ok(()));
    let mut c = ClientExchange::new(
        ClientCredentials::Plain {
            authzid: Some("Ursel".into()),
            user: "Kurt".into(),
            password: secret("xipj3plmq"),
        },
        b"",
    );
    let ir = c.initial_response().unwrap();
    assert_eq!(ir, b"Ursel\0Kurt\0xipj3plmq");

    let mut s = ServerExchange::new(&mech("PLAIN"), ServerParams::new("n", "h")).unwrap();
    match s.start(Some(&ir)) {
        ServerStep::Check(CredentialRequest::Password {
            authzid,
            user,
            password,
        }) => {
            assert_eq!(authzid.as_deref(), Some("Ursel"));
            assert_eq!(user, "Kurt");
            assert_eq!(password.expose_secret(), "xipj3plmq");
        }
        other => panic!("expected a password check, got {other:?}"),
    }
    let id = success(s.answer(CredentialAnswer::Verified(true)));
    assert_eq!(id.user, "Kurt");
    assert_eq!(id.authzid.as_deref(), Some("Ursel"));
}

const RFC7628_INITIAL_B64: &str = "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB";
const RFC7628_ERROR_B64: &str = "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWd1cmF0aW9uIn0=";
const RFC7628_TOKEN: &str = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==";

fn rfc7628_client() -> ClientExchange {
    ClientExchange::try_new(
        ClientCredentials::OAuthBearer {
            user: "user@example.com".into(),
            token: secret(RFC7628_TOKEN),
            host: Some("server.example.com".into()),
            port: Some(143),
        },
        b"",
    )
    .unwrap()
}

fn rfc7628_server() -> ServerExchange {
    let mut params = ServerParams::new("n", "server.example.com");
    params.port = Some(143);
    ServerExchange::new(&mech("OAUTHBEARER"), params).unwrap()
}

#[test]
fn oauthbearer_rfc7628_success() {
    let mut c = rfc7628_client();
    let ir = c.initial_response().unwrap();
    assert_eq!(ir, B64.decode(RFC7628_INITIAL_B64).unwrap());
    let mut s = rfc7628_server();
    match s.start(Some(&ir)) {
        ServerStep::Check(CredentialRequest::Token { user, token }) => {
            assert_eq!(user, "user@example.com");
            assert_eq!(token.expose_secret(), RFC7628_TOKEN);
        }
        other => panic!("expected a token check, got {other:?}"),
    }
    assert_eq!(
        success(s.answer(CredentialAnswer::Token(Ok(())))).user,
        "user@example.com"
    );
    assert_eq!(c.finish(), Ok(()));
    assert_eq!(c.server_error(), None);
}

#[test]
fn oauthbearer_rfc7628_error_flow() {
    let mut c = rfc7628_client();
    let ir = c.initial_response().unwrap();
    let mut s = rfc7628_server();
    assert!(matches!(s.start(Some(&ir)), ServerStep::Check(_)));
    let mut err = OAuthError::new("invalid_token");
    err.scope = Some("example_scope".into());
    err.openid_configuration = Some("https://example.com/.well-known/openid-configuration".into());
    let json = challenge(s.answer(CredentialAnswer::Token(Err(err))));
    assert_eq!(json, B64.decode(RFC7628_ERROR_B64).unwrap());
    // RFC 7628 §3.2.3: the client answers with a single 0x01 ("AQ==").
    let dummy = c.step(&json).unwrap();
    assert_eq!(B64.encode(&dummy), "AQ==");
    assert_eq!(c.server_error(), Some(std::str::from_utf8(&json).unwrap()));
    let f = failure(s.respond(&dummy));
    assert_eq!(f.reason, FailureReason::BadCredentials);
    assert!(matches!(c.finish(), Err(SaslError::OAuthRejected(j)) if j.contains("invalid_token")));
}

#[test]
fn oauthbearer_server_checks_host_and_port_and_ignores_unknown_keys() {
    let msg = |host: &str, port: u16| {
        format!(
            "n,a=u,\x01xcustom=whatever\x01host={host}\x01port={port}\x01auth=Bearer tok\x01\x01"
        )
    };
    let mut s = rfc7628_server();
    assert!(matches!(
        s.start(Some(msg("SERVER.example.com", 143).as_bytes())),
        ServerStep::Check(CredentialRequest::Token { .. })
    ));
    for (host, port) in [("evil.example", 143), ("server.example.com", 993)] {
        let mut s = rfc7628_server();
        let json = challenge(s.start(Some(msg(host, port).as_bytes())));
        assert!(
            std::str::from_utf8(&json)
                .unwrap()
                .contains("invalid_request")
        );
        assert_eq!(
            failure(s.respond(&[1])).reason,
            FailureReason::EndpointMismatch
        );
    }
    // Without host and port in the message, nothing to check.
    let mut s = rfc7628_server();
    assert!(matches!(
        s.start(Some(b"n,a=u,\x01auth=Bearer tok\x01\x01")),
        ServerStep::Check(_)
    ));
}

#[test]
fn oauthbearer_server_rejects_malformed() {
    for bad in [
        &b""[..],
        b"n,a=u,",
        b"n,a=u,\x01auth=Bearer tok\x01", // no closing ^A
        b"n,a=u,\x01host=h\x01\x01",      // no auth
        b"n,a=u,\x01auth=Basic dXNlcjpwYXNz\x01\x01", // not a bearer token
        b"n,a=u,\x01auth=Bearer \x01\x01", // empty token
        b"x,a=u,\x01auth=Bearer tok\x01\x01", // bad gs2 flag
        b"n,,\x01auth=Bearer tok\x01\x01", // no user name
        b"n,a=u=,\x01auth=Bearer tok\x01\x01", // bad escaping
        b"n,a=u,\x01auth=Bearer t\x01auth=Bearer t\x01\x01", // duplicate auth
        b"n,a=u,\x01auth=Bearer t\xff\x01\x01", // not UTF-8
    ] {
        let mut s = rfc7628_server();
        assert_eq!(
            failure(s.start(Some(bad))).reason,
            FailureReason::Malformed,
            "{bad:?}"
        );
    }
    let mut s = rfc7628_server();
    assert_eq!(
        failure(s.start(Some(b"p=tls-unique,a=u,\x01auth=Bearer t\x01\x01"))).reason,
        FailureReason::Unsupported
    );
}

#[test]
fn xoauth2_messages_and_error_flow() {
    let mut c = ClientExchange::new(
        ClientCredentials::XOAuth2 {
            user: "someuser@example.com".into(),
            token: secret("ya29.vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg"),
        },
        b"",
    );
    assert_eq!(c.mechanism().as_str(), "XOAUTH2");
    let ir = c.initial_response().unwrap();
    // Google's documented example.
    assert_eq!(
        ir,
        b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg\x01\x01"
    );
    let mut s = ServerExchange::new(&mech("XOAUTH2"), ServerParams::new("n", "h")).unwrap();
    match s.start(Some(&ir)) {
        ServerStep::Check(CredentialRequest::Token { user, token }) => {
            assert_eq!(user, "someuser@example.com");
            assert_eq!(
                token.expose_secret(),
                "ya29.vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg"
            );
        }
        other => panic!("expected a token check, got {other:?}"),
    }
    let mut err = OAuthError::new("401");
    err.scope = Some("https://mail.google.com/".into());
    let json = challenge(s.answer(CredentialAnswer::Token(Err(err))));
    assert_eq!(
        json,
        br#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#
    );
    // XOAUTH2: the client answers the error with an empty response.
    assert_eq!(c.step(&json).unwrap(), b"");
    assert_eq!(c.server_error(), Some(std::str::from_utf8(&json).unwrap()));
    assert_eq!(
        failure(s.respond(b"")).reason,
        FailureReason::BadCredentials
    );
    assert!(c.finish().is_err());
    // A second challenge after the error is a violation.
    assert_eq!(c.step(b"{}"), Err(SaslError::UnexpectedChallenge));
}

// ---------------------------------------------------------------------------------------------
// Back-to-back exchanges

const CLIENT_NONCE: &[u8] = b"fyko+d2lbbFgONRv9qkxdawL";
const SERVER_NONCE: &str = "3rfcNHYJY1ZVvWVs7j";

#[derive(Debug)]
struct Outcome {
    server: Result<Identity, SaslFailure>,
    /// `finish()` after +OK, or the client's own error when it cancelled.
    client: Result<(), SaslError>,
    round_trips: usize,
}

/// Runs a client and a server against each other. `inline`: the initial response goes on the
/// AUTH line; otherwise it is deferred to the empty challenge, as for a long line.
fn run(
    creds: ClientCredentials,
    params: ServerParams,
    inline: bool,
    mut app: impl FnMut(CredentialRequest) -> CredentialAnswer,
) -> Outcome {
    let mut client = ClientExchange::try_new(creds, CLIENT_NONCE).unwrap();
    let mut server = ServerExchange::new(&client.mechanism(), params).unwrap();
    let ir = client.initial_response();
    if !inline && ir.is_some() {
        client.defer_initial_response();
    }
    let mut step = server.start(if inline { ir.as_deref() } else { None });
    let mut round_trips = 0;
    loop {
        assert!(round_trips < 10, "exchange does not terminate");
        step = match step {
            ServerStep::Challenge(c) => {
                round_trips += 1;
                match client.step(&c) {
                    Ok(r) => server.respond(&r),
                    // The client cancels with `*`; the server answers -ERR.
                    Err(e) => {
                        return Outcome {
                            server: Err(SaslFailure {
                                reason: FailureReason::Malformed,
                                detail: "client cancelled",
                            }),
                            client: Err(e),
                            round_trips,
                        };
                    }
                }
            }
            ServerStep::Check(req) => server.answer(app(req)),
            ServerStep::Success(id) => {
                return Outcome {
                    server: Ok(id),
                    client: client.finish(),
                    round_trips,
                };
            }
            ServerStep::Failure(f) => {
                return Outcome {
                    server: Err(f),
                    client: Ok(()),
                    round_trips,
                };
            }
        }
    }
}

fn params() -> ServerParams {
    ServerParams::new(SERVER_NONCE, "pop.example.org")
}

/// The application: one user "alice" with password "wonderland" and token "tok-alice".
fn app(req: CredentialRequest) -> CredentialAnswer {
    match req {
        CredentialRequest::Password { user, password, .. } => {
            CredentialAnswer::Verified(user == "alice" && password.expose_secret() == "wonderland")
        }
        CredentialRequest::CramMd5 {
            user,
            challenge,
            digest,
        } => CredentialAnswer::Verified(
            user == "alice" && verify_cram_md5(b"wonderland", &challenge, &digest),
        ),
        CredentialRequest::Scram { user } => CredentialAnswer::Scram(
            (user == "alice")
                .then(|| ScramCredentials::derive(b"wonderland", b"alice's salt 16b", 4096)),
        ),
        CredentialRequest::Token { user, token } => {
            CredentialAnswer::Token(if user == "alice" && token.expose_secret() == "tok-alice" {
                Ok(())
            } else {
                Err(OAuthError::new("invalid_token"))
            })
        }
        other => panic!("unknown request {other:?}"),
    }
}

fn all_creds(user: &str, password: &str) -> Vec<ClientCredentials> {
    let token = if password == "wonderland" {
        "tok-alice"
    } else {
        "tok-wrong"
    };
    vec![
        ClientCredentials::Plain {
            authzid: None,
            user: user.into(),
            password: secret(password),
        },
        ClientCredentials::Login {
            user: user.into(),
            password: secret(password),
        },
        ClientCredentials::CramMd5 {
            user: user.into(),
            password: secret(password),
        },
        ClientCredentials::ScramSha256 {
            user: user.into(),
            password: secret(password),
        },
        ClientCredentials::XOAuth2 {
            user: user.into(),
            token: secret(token),
        },
        ClientCredentials::OAuthBearer {
            user: user.into(),
            token: secret(token),
            host: Some("pop.example.org".into()),
            port: Some(995),
        },
    ]
}

#[test]
fn every_mechanism_succeeds_inline_and_deferred() {
    for inline in [true, false] {
        for creds in all_creds("alice", "wonderland") {
            let name = format!("{creds:?} inline={inline}");
            let o = run(creds, params(), inline, app);
            assert_eq!(o.server.as_ref().unwrap().user, "alice", "{name}");
            assert_eq!(o.client, Ok(()), "{name}");
        }
    }
}

#[test]
fn round_trip_counts() {
    // Challenges per mechanism with the initial response inline: PLAIN 0, LOGIN 2, CRAM 1,
    // SCRAM 2 (server-first, server-final), XOAUTH2 0, OAUTHBEARER 0.
    let counts: Vec<usize> = all_creds("alice", "wonderland")
        .into_iter()
        .map(|c| run(c, params(), true, app).round_trips)
        .collect();
    assert_eq!(counts, [0, 2, 1, 2, 0, 0]);
    // Deferred, the client-first ones take one more (the empty challenge).
    let counts: Vec<usize> = all_creds("alice", "wonderland")
        .into_iter()
        .map(|c| run(c, params(), false, app).round_trips)
        .collect();
    assert_eq!(counts, [1, 2, 1, 3, 1, 1]);
}

#[test]
fn every_mechanism_fails_on_wrong_password_and_unknown_user() {
    for (user, password) in [("alice", "wrong"), ("mallory", "wonderland")] {
        for creds in all_creds(user, password) {
            let name = format!("{creds:?} password={password}");
            let o = run(creds, params(), true, app);
            assert_eq!(
                o.server.unwrap_err().reason,
                FailureReason::BadCredentials,
                "{name}"
            );
        }
    }
}

#[test]
fn scram_unknown_user_looks_like_wrong_password() {
    // The server-first message for an unknown user has the same shape as a real one.
    let first_for = |user: &str, nonce: &str, key: Option<&[u8]>| {
        let mut p = ServerParams::new(nonce, "h");
        p.scram_fake_key = key.map(|k| Secret::new(k.to_vec()));
        let mut s = ServerExchange::new(&mech("SCRAM-SHA-256"), p).unwrap();
        let cf = format!("n,,n={user},r=abc");
        assert!(matches!(s.start(Some(cf.as_bytes())), ServerStep::Check(_)));
        let creds = app(CredentialRequest::Scram { user: user.into() });
        String::from_utf8(challenge(s.answer(creds))).unwrap()
    };
    let real = first_for("alice", "n1", None);
    let fake = first_for("mallory", "n1", None);
    let shape = |s: &str| {
        s.split(',')
            .map(|a| (a[..2].to_owned(), a.len()))
            .collect::<Vec<_>>()
    };
    assert_eq!(shape(&real), shape(&fake));
    assert!(fake.ends_with(",i=4096"));
    // With a server key, the fake salt is stable across sessions, like a real one...
    let key = Some(&b"server secret"[..]);
    let salt = |s: &str| s.split(',').nth(1).unwrap().to_owned();
    assert_eq!(
        salt(&first_for("mallory", "n1", key)),
        salt(&first_for("mallory", "n2", key))
    );
    assert_ne!(
        salt(&first_for("mallory", "n1", key)),
        salt(&first_for("eve", "n1", key))
    );
    // ...and without one it follows the nonce.
    assert_ne!(
        salt(&first_for("mallory", "n1", None)),
        salt(&first_for("mallory", "n2", None))
    );
}

#[test]
fn scram_tampered_server_signature_fails_client() {
    let mut c = scram_client("user", "pencil");
    c.initial_response().unwrap();
    c.step(SCRAM_SERVER_FIRST).unwrap();
    let mut sig = B64.decode(&SCRAM_SERVER_FINAL[2..]).unwrap();
    sig[0] ^= 0x80;
    let tampered = format!("v={}", B64.encode(&sig));
    assert_eq!(c.step(tampered.as_bytes()), Err(SaslError::ServerSignature));
    assert_eq!(c.finish(), Err(SaslError::ServerSignature));
    // Further challenges keep failing.
    assert_eq!(c.step(SCRAM_SERVER_FINAL), Err(SaslError::ServerSignature));
}

#[test]
fn scram_server_that_does_not_know_the_password_is_caught() {
    // A server holding other credentials still gets the client to send a proof, but its
    // server signature cannot verify.
    let mut c = scram_client("user", "pencil");
    let mut s = ServerExchange::new(
        &mech("SCRAM-SHA-256"),
        ServerParams::new(SCRAM_SERVER_NONCE, "h"),
    )
    .unwrap();
    assert!(matches!(
        s.start(Some(&c.initial_response().unwrap())),
        ServerStep::Check(_)
    ));
    let mut creds = rfc7677_credentials();
    creds.server_key[0] ^= 1;
    let first = challenge(s.answer(CredentialAnswer::Scram(Some(creds))));
    let fin = challenge(s.respond(&c.step(&first).unwrap()));
    assert_eq!(c.step(&fin), Err(SaslError::ServerSignature));
}

#[test]
fn scram_client_rejects_bad_server_first() {
    let cases: &[(&[u8], SaslError)] = &[
        (
            b"r=XXXXrNGfwEbeRWgbNEkqO%hvY,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            SaslError::NonceMismatch,
        ),
        (
            b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            SaslError::NonceMismatch,
        ),
        (
            b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4095",
            SaslError::IterationCount(4095),
        ),
        (
            b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4000000000",
            SaslError::IterationCount(4_000_000_000),
        ),
    ];
    for (msg, want) in cases {
        let mut c = scram_client("user", "pencil");
        c.initial_response().unwrap();
        assert_eq!(
            c.step(msg).as_ref(),
            Err(want),
            "{}",
            String::from_utf8_lossy(msg)
        );
        assert_eq!(c.finish().as_ref(), Err(want));
    }
    for msg in [
        &b""[..],
        b"m=ext,r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=not base64!,i=4096",
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==",
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1",
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=04096",
        b"r=rOprNGfwEbeRWgbNEkqOxyz,i=4096,s=W22ZaJ0SNY7soEsUEjb6gQ==",
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,garbage",
        b"r=rOprNGfwEbeRWgbNEkqO\xff,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    ] {
        let mut c = scram_client("user", "pencil");
        c.initial_response().unwrap();
        assert!(
            matches!(c.step(msg), Err(SaslError::MalformedChallenge(_))),
            "{}",
            String::from_utf8_lossy(msg)
        );
    }
}

#[test]
fn scram_client_server_error_and_bad_final() {
    let at_final = || {
        let mut c = scram_client("user", "pencil");
        c.initial_response().unwrap();
        c.step(SCRAM_SERVER_FIRST).unwrap();
        c
    };
    assert_eq!(
        at_final().step(b"e=invalid-proof"),
        Err(SaslError::ServerError("invalid-proof".into()))
    );
    for bad in [&b""[..], b"v=!!!", b"x=abc", b"v"] {
        assert!(matches!(
            at_final().step(bad),
            Err(SaslError::MalformedChallenge(_))
        ));
    }
    // A truncated signature is a mismatch or bad base64, not a panic.
    assert_eq!(
        at_final().step(b"v=6rriTRBi"),
        Err(SaslError::ServerSignature)
    );
    assert_eq!(
        at_final().step(b"v=6rriTRBi23WpRR/wt"),
        Err(SaslError::MalformedChallenge("server-final: bad base64"))
    );
    assert_eq!(
        at_final().step(b"v=6rriTRBi23WpRR/wtup+mA=="),
        Err(SaslError::ServerSignature)
    );
    // Extensions after the verifier are allowed.
    let mut c = at_final();
    let with_ext = [SCRAM_SERVER_FINAL, b",x=ext"].concat();
    assert_eq!(c.step(&with_ext).unwrap(), b"");
    assert_eq!(c.finish(), Ok(()));
}

fn scram_server_at_final() -> ServerExchange {
    let mut s = ServerExchange::new(
        &mech("SCRAM-SHA-256"),
        ServerParams::new(SCRAM_SERVER_NONCE, "h"),
    )
    .unwrap();
    assert!(matches!(
        s.start(Some(SCRAM_CLIENT_FIRST)),
        ServerStep::Check(_)
    ));
    challenge(s.answer(CredentialAnswer::Scram(Some(rfc7677_credentials()))));
    s
}

#[test]
fn scram_server_rejects_bad_client_final() {
    let good = std::str::from_utf8(SCRAM_CLIENT_FINAL).unwrap();
    let malformed = [
        good.replace("c=biws", "c=eSws"), // "y,," but the client sent "n,,"
        good.replace("c=biws", "c=!!"),
        good.replace("rOprNGfw", "rOprNGfx"), // nonce changed
        good.replace(",p=", ",q="),
        good.replace("dHzbZapWIk4jUhN+", "dHzb"), // short proof
        good.replace("c=biws,", ""),
        good.replace(",r=", ",x=1,r="), // wrong order
        String::new(),
    ];
    for bad in &malformed {
        let mut s = scram_server_at_final();
        assert_eq!(
            failure(s.respond(bad.as_bytes())).reason,
            FailureReason::Malformed,
            "{bad}"
        );
    }
    // A wrong proof of the right shape.
    let mut proof = B64
        .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
        .unwrap();
    proof[31] ^= 1;
    let wrong = good.replace(
        "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        &B64.encode(&proof),
    );
    let mut s = scram_server_at_final();
    assert_eq!(
        failure(s.respond(wrong.as_bytes())).reason,
        FailureReason::BadCredentials
    );
    // After the server-final, only an empty response completes the exchange.
    let mut s = scram_server_at_final();
    challenge(s.respond(SCRAM_CLIENT_FINAL));
    assert_eq!(failure(s.respond(b"x")).reason, FailureReason::Malformed);
}

#[test]
fn scram_server_rejects_bad_client_first() {
    let start = |msg: &[u8]| {
        let mut s =
            ServerExchange::new(&mech("SCRAM-SHA-256"), ServerParams::new("srv", "h")).unwrap();
        s.start(Some(msg))
    };
    for bad in [
        &b""[..],
        b"n,,",
        b"x,,n=user,r=abc",
        b"n,,n=user",
        b"n,,r=abc,n=user",
        b"n,,n=,r=abc",
        b"n,,n=us=er,r=abc",
        b"n,,n=user,r=a,bc",
        b"n,b=x,n=user,r=abc",
        b"n,,n=user\xff,r=abc",
        b"n,,n=us\x07er,r=abc", // prohibited by SASLprep
    ] {
        assert_eq!(
            failure(start(bad)).reason,
            FailureReason::Malformed,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(
        failure(start(b"p=tls-unique,,n=user,r=abc")).reason,
        FailureReason::Unsupported
    );
    assert_eq!(
        failure(start(b"n,,m=x,n=user,r=abc")).reason,
        FailureReason::Unsupported
    );
    // "y" (client could bind, thinks we can't) and extensions are fine.
    assert!(matches!(
        start(b"y,,n=user,r=abc,x=ext"),
        ServerStep::Check(_)
    ));
}

#[test]
fn scram_escaping_saslprep_and_authzid() {
    // RFC 4013 §3: "I<U+00AD>X" prepares to "IX"; ',' and '=' are escaped on the wire.
    let mut c = ClientExchange::try_new(
        ClientCredentials::ScramSha256 {
            user: "a,b=I\u{ad}X".into(),
            password: secret("p\u{ad}w"),
        },
        CLIENT_NONCE,
    )
    .unwrap();
    let ir = c.initial_response().unwrap();
    assert_eq!(ir, [&b"n,,n=a=2Cb=3DIX,r="[..], CLIENT_NONCE].concat());
    let mut s = ServerExchange::new(&mech("SCRAM-SHA-256"), params()).unwrap();
    match s.start(Some(&ir)) {
        ServerStep::Check(CredentialRequest::Scram { user }) => assert_eq!(user, "a,b=IX"),
        other => panic!("{other:?}"),
    }
    // The server stores credentials of the prepared password "pw".
    let first = challenge(
        s.answer(CredentialAnswer::Scram(Some(ScramCredentials::derive(
            b"pw", b"salt", 4096,
        )))),
    );
    let fin = challenge(s.respond(&c.step(&first).unwrap()));
    assert_eq!(c.step(&fin).unwrap(), b"");
    assert_eq!(success(s.respond(b"")).user, "a,b=IX");
    assert_eq!(c.finish(), Ok(()));

    // An authzid in the gs2 header is reported; c= must then carry the same header.
    let mut s = ServerExchange::new(
        &mech("SCRAM-SHA-256"),
        ServerParams::new(SCRAM_SERVER_NONCE, "h"),
    )
    .unwrap();
    assert!(matches!(
        s.start(Some(b"n,a=bo=2Cb,n=user,r=rOprNGfwEbeRWgbNEkqO")),
        ServerStep::Check(_)
    ));
    challenge(s.answer(CredentialAnswer::Scram(Some(rfc7677_credentials()))));
    // The RFC proof was computed for "n,,", so it no longer matches: c= is checked first.
    assert_eq!(
        failure(s.respond(SCRAM_CLIENT_FINAL)).reason,
        FailureReason::Malformed
    );
}

#[test]
fn scram_client_bad_nonce_or_credentials() {
    for nonce in [&b""[..], b"a,b", b"a b", b"\xff"] {
        let r = ClientExchange::try_new(
            ClientCredentials::ScramSha256 {
                user: "u".into(),
                password: secret("p"),
            },
            nonce,
        );
        assert!(matches!(r, Err(SaslError::InvalidParams(_))), "{nonce:?}");
    }
    let mut c = ClientExchange::new(
        ClientCredentials::ScramSha256 {
            user: "u\u{7}".into(),
            password: secret("p"),
        },
        CLIENT_NONCE,
    );
    assert_eq!(c.initial_response(), None);
    assert!(matches!(c.step(b""), Err(SaslError::InvalidCredentials(_))));
    assert!(matches!(c.finish(), Err(SaslError::InvalidCredentials(_))));
}

#[test]
fn plain_server_accepts_255_octet_parts_and_rejects_malformed() {
    let long = "x".repeat(255);
    let msg = format!("{long}\0{long}\0{long}");
    let mut s = ServerExchange::new(&mech("PLAIN"), params()).unwrap();
    match s.start(Some(msg.as_bytes())) {
        ServerStep::Check(CredentialRequest::Password {
            user,
            password,
            authzid,
        }) => {
            assert_eq!(user, long);
            assert_eq!(password.expose_secret(), &long);
            assert_eq!(authzid.as_deref(), Some(&long[..]));
        }
        other => panic!("{other:?}"),
    }
    let huge = "x".repeat(1025);
    for bad in [
        "".to_owned(),
        "userpassword".to_owned(),
        "\0user".to_owned(),
        "\0user\0pass\0".to_owned(),
        "a\0user\0pass\0extra".to_owned(),
        "\0\0pass".to_owned(),
        "\0user\0".to_owned(),
        format!("\0{huge}\0pw"),
        "\0us\u{7}er\0pw".to_owned(),
    ] {
        let mut s = ServerExchange::new(&mech("PLAIN"), params()).unwrap();
        assert_eq!(
            failure(s.start(Some(bad.as_bytes()))).reason,
            FailureReason::Malformed,
            "{bad:?}"
        );
    }
    let mut s = ServerExchange::new(&mech("PLAIN"), params()).unwrap();
    assert_eq!(
        failure(s.start(Some(b"\0user\0p\xffw"))).reason,
        FailureReason::Malformed
    );
    // Without an initial response: an empty challenge, then the message.
    let mut s = ServerExchange::new(&mech("PLAIN"), params()).unwrap();
    assert_eq!(challenge(s.start(None)), b"");
    assert!(matches!(
        s.respond(b"\0alice\0wonderland"),
        ServerStep::Check(_)
    ));
}

#[test]
fn plain_client_rejects_bad_parts() {
    for (authzid, user, pw) in [
        (None, "us\0er", "pw"),
        (None, "user", "p\0w"),
        (Some("a\0z"), "user", "pw"),
        (None, "", "pw"),
        (None, "user", ""),
    ] {
        let r = ClientExchange::try_new(
            ClientCredentials::Plain {
                authzid: authzid.map(Into::into),
                user: user.into(),
                password: secret(pw),
            },
            b"",
        );
        assert!(matches!(r, Err(SaslError::InvalidCredentials(_))));
    }
    let r = ClientExchange::try_new(
        ClientCredentials::Plain {
            authzid: None,
            user: "u".repeat(256),
            password: secret("pw"),
        },
        b"",
    );
    assert!(r.is_err());
    // After the initial response, a PLAIN challenge is unexpected.
    let mut c = ClientExchange::new(
        ClientCredentials::Plain {
            authzid: None,
            user: "u".into(),
            password: secret("p"),
        },
        b"",
    );
    c.initial_response().unwrap();
    assert_eq!(c.step(b""), Err(SaslError::UnexpectedChallenge));
}

#[test]
fn login_exchange_and_initial_username() {
    let mut c = ClientExchange::new(
        ClientCredentials::Login {
            user: "alice".into(),
            password: secret("wonderland"),
        },
        b"",
    );
    assert_eq!(c.initial_response(), None);
    let mut s = ServerExchange::new(&mech("LOGIN"), params()).unwrap();
    let ch = challenge(s.start(None));
    assert_eq!(ch, b"Username:");
    let r = c.step(&ch).unwrap();
    assert_eq!(r, b"alice");
    let ch = challenge(s.respond(&r));
    assert_eq!(ch, b"Password:");
    assert_eq!(c.finish(), Err(SaslError::Incomplete));
    let r = c.step(&ch).unwrap();
    assert_eq!(r, b"wonderland");
    assert!(matches!(
        s.respond(&r),
        ServerStep::Check(CredentialRequest::Password { .. })
    ));
    assert_eq!(
        success(s.answer(CredentialAnswer::Verified(true))).user,
        "alice"
    );
    assert_eq!(c.finish(), Ok(()));
    assert_eq!(c.step(b"Again:"), Err(SaslError::UnexpectedChallenge));

    // The user name as an initial response skips the first challenge.
    let mut s = ServerExchange::new(&mech("LOGIN"), params()).unwrap();
    assert_eq!(challenge(s.start(Some(b"alice"))), b"Password:");
    match s.respond(b"wonderland") {
        ServerStep::Check(CredentialRequest::Password { user, .. }) => assert_eq!(user, "alice"),
        other => panic!("{other:?}"),
    }
    let mut s = ServerExchange::new(&mech("LOGIN"), params()).unwrap();
    assert_eq!(
        failure(s.start(Some(b"\xff"))).reason,
        FailureReason::Malformed
    );
}

#[test]
fn cram_md5_server_rejects_malformed_and_initial_response() {
    let mut s = ServerExchange::new(&mech("CRAM-MD5"), params()).unwrap();
    assert_eq!(
        failure(s.start(Some(b"x"))).reason,
        FailureReason::UnexpectedInitialResponse
    );
    for bad in [
        &b""[..],
        b"tim",
        b"tim b913a602c7eda7a495b4e6e7334d389",
        b"tim b913a602c7eda7a495b4e6e7334d3890a",
        b"tim b913a602c7eda7a495b4e6e7334d389g",
        b" b913a602c7eda7a495b4e6e7334d3890",
        b"tim\xff b913a602c7eda7a495b4e6e7334d3890",
    ] {
        let mut s = ServerExchange::new(&mech("CRAM-MD5"), params()).unwrap();
        challenge(s.start(None));
        assert_eq!(
            failure(s.respond(bad)).reason,
            FailureReason::Malformed,
            "{bad:?}"
        );
    }
    // Upper-case hex and a user name with a space are accepted.
    let mut s = ServerExchange::new(&mech("CRAM-MD5"), params()).unwrap();
    challenge(s.start(None));
    match s.respond(b"tim smith B913A602C7EDA7A495B4E6E7334D3890") {
        ServerStep::Check(CredentialRequest::CramMd5 { user, digest, .. }) => {
            assert_eq!(user, "tim smith");
            assert_eq!(digest[0], 0xb9);
        }
        other => panic!("{other:?}"),
    }
    // The client refuses an empty challenge.
    let mut c = ClientExchange::new(
        ClientCredentials::CramMd5 {
            user: "tim".into(),
            password: secret("x"),
        },
        b"",
    );
    assert!(matches!(c.step(b""), Err(SaslError::MalformedChallenge(_))));
}

#[test]
fn server_new_validates() {
    assert_eq!(
        ServerExchange::new(&mech("DIGEST-MD5"), params()).unwrap_err(),
        SaslError::UnsupportedMechanism
    );
    for name in ServerExchange::supported() {
        assert!(ServerExchange::new(&mech(name), params()).is_ok(), "{name}");
        assert!(ServerExchange::new(&mech(&name.to_lowercase()), params()).is_ok());
    }
    assert!(matches!(
        ServerExchange::new(&mech("CRAM-MD5"), ServerParams::new("a@b", "h")),
        Err(SaslError::InvalidParams(_))
    ));
    assert!(matches!(
        ServerExchange::new(&mech("CRAM-MD5"), ServerParams::new("n", "")),
        Err(SaslError::InvalidParams(_))
    ));
    assert!(matches!(
        ServerExchange::new(&mech("SCRAM-SHA-256"), ServerParams::new("a,b", "h")),
        Err(SaslError::InvalidParams(_))
    ));
}

#[test]
fn server_steps_out_of_order() {
    // answer before any check
    let mut s = ServerExchange::new(&mech("PLAIN"), params()).unwrap();
    assert_eq!(
        failure(s.answer(CredentialAnswer::Verified(true))).reason,
        FailureReason::OutOfOrder
    );
    // the wrong kind of answer
    let mut s = ServerExchange::new(&mech("PLAIN"), params()).unwrap();
    assert!(matches!(s.start(Some(b"\0a\0b")), ServerStep::Check(_)));
    assert_eq!(
        failure(s.answer(CredentialAnswer::Scram(None))).reason,
        FailureReason::OutOfOrder
    );
    // start twice
    let mut s = ServerExchange::new(&mech("LOGIN"), params()).unwrap();
    challenge(s.start(None));
    assert_eq!(failure(s.start(None)).reason, FailureReason::OutOfOrder);
    // respond while a check is pending
    let mut s = ServerExchange::new(&mech("PLAIN"), params()).unwrap();
    assert!(matches!(s.start(Some(b"\0a\0b")), ServerStep::Check(_)));
    assert_eq!(failure(s.respond(b"x")).reason, FailureReason::OutOfOrder);
    // after failure, nothing succeeds
    assert_eq!(
        failure(s.answer(CredentialAnswer::Verified(true))).reason,
        FailureReason::OutOfOrder
    );
}

#[test]
fn deferred_initial_response_answers_the_empty_challenge() {
    let mut c = rfc7628_client();
    let ir = c.initial_response().unwrap();
    c.defer_initial_response();
    assert_eq!(c.step(b"").unwrap(), ir);
    // Now it counts as sent: a further challenge is the error flow.
    assert_eq!(c.step(b"{}").unwrap(), [1]);
}

#[test]
fn debug_output_hides_secrets() {
    let creds = ClientCredentials::Plain {
        authzid: None,
        user: "alice".into(),
        password: secret("hunter2"),
    };
    assert!(!format!("{creds:?}").contains("hunter2"));
    let mut s = ServerExchange::new(&mech("PLAIN"), params()).unwrap();
    let step = s.start(Some(b"\0alice\0hunter2"));
    assert!(!format!("{step:?}").contains("hunter2"));
    let c = rfc7677_credentials();
    let dbg = format!("{c:?}");
    assert!(dbg.contains("W22ZaJ0SNY7soEsUEjb6gQ=="));
    assert!(!dbg.contains("stored_key"));
}

// ---------------------------------------------------------------------------------------------
// Hostile input never panics

fn any_server(i: usize) -> ServerExchange {
    let name = ServerExchange::supported()[i % ServerExchange::supported().len()];
    ServerExchange::new(&mech(name), params()).unwrap()
}

proptest! {
    #[test]
    fn server_survives_arbitrary_responses(
        i in 0usize..6,
        initial in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
        responses in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..4),
    ) {
        let mut s = any_server(i);
        let mut step = s.start(initial.as_deref());
        for r in &responses {
            step = match step {
                ServerStep::Check(req) => s.answer(app(req)),
                _ => s.respond(r),
            };
        }
        let _ = step;
    }

    #[test]
    fn client_survives_arbitrary_challenges(
        i in 0usize..6,
        challenges in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..4),
    ) {
        let mut c = ClientExchange::new(all_creds("alice", "wonderland").swap_remove(i), CLIENT_NONCE);
        let _ = c.initial_response();
        for ch in &challenges {
            let _ = c.step(ch);
        }
        let _ = c.finish();
    }

}

proptest! {
    // Each accepted mutation costs a 4096-round PBKDF2: keep the case count modest.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn scram_server_first_mutations_never_verify(pos in 0usize..86, byte in any::<u8>()) {
        let mut msg = SCRAM_SERVER_FIRST.to_vec();
        prop_assume!(msg[pos] != byte);
        msg[pos] = byte;
        let mut c = scram_client("user", "pencil");
        c.initial_response().unwrap();
        if c.step(&msg).is_ok() {
            // Whatever was accepted, the RFC server signature no longer matches.
            prop_assert!(c.step(SCRAM_SERVER_FINAL).is_err());
            prop_assert!(c.finish().is_err());
        }
    }
}
