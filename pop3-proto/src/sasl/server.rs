//! The server side of the SASL mechanisms.

use std::fmt;

use zeroize::Zeroize;

use super::oauth::{self, OAuthError};
use super::scram::{self, ScramCredentials};
use super::{Mech, SaslError, b64_decode, b64_encode, ct_eq};
use crate::{Mechanism, Secret};

/// The longest PLAIN part accepted. RFC 4616 §2 requires at least 255 octets; long passphrases
/// get some slack, and the bound keeps a hostile client from sending megabytes.
const PLAIN_MAX: usize = 1024;

/// What the server side of an exchange needs from the caller.
#[derive(Clone)]
pub struct ServerParams {
    /// Fresh random printable ASCII for this exchange (no `,`, `<`, `>` or `@`); at least 18
    /// octets is advisable. It is the CRAM-MD5 challenge's unique part and the SCRAM server
    /// nonce suffix.
    pub nonce: Vec<u8>,
    /// The server's host name: the CRAM-MD5 challenge is `<nonce@hostname>`, and an
    /// OAUTHBEARER `host` value must match it (case-insensitively) unless it is empty.
    pub hostname: String,
    /// The server's port: an OAUTHBEARER `port` value must match it when both are given.
    pub port: Option<u16>,
    /// A server-wide secret, stable across sessions, from which the fake SCRAM salt of an
    /// unknown user is derived. With it, repeated attempts see the same salt for the same
    /// unknown name, as they would for a real user. Without it the salt comes from the nonce and
    /// changes every time, which lets a client that tries twice tell unknown names apart.
    /// Fake salts are 16 octets: give real users 16-octet salts too, so both look alike.
    pub scram_fake_key: Option<Secret<Vec<u8>>>,
    /// The iteration count announced for an unknown SCRAM user: use the one real users have.
    pub scram_fake_iterations: u32,
}

impl ServerParams {
    /// Parameters with a nonce and host name; no port, no fake-salt key, 4096 fake iterations.
    pub fn new(nonce: impl Into<Vec<u8>>, hostname: impl Into<String>) -> Self {
        ServerParams {
            nonce: nonce.into(),
            hostname: hostname.into(),
            port: None,
            scram_fake_key: None,
            scram_fake_iterations: scram::SCRAM_MIN_ITERATIONS,
        }
    }
}

impl fmt::Debug for ServerParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerParams")
            .field("hostname", &self.hostname)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Who logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The authenticated user (authentication identity), SASLprep-ed where the mechanism
    /// says so (PLAIN, LOGIN, SCRAM).
    pub user: String,
    /// The identity the user asked to act as, if any. The application must decide whether
    /// `user` may act as it; the exchange does not.
    pub authzid: Option<String>,
}

/// What the server sends next, or the outcome.
#[derive(Debug)]
pub enum ServerStep {
    /// Send this challenge (`+ base64`) and pass the client's response to `respond`.
    Challenge(Vec<u8>),
    /// Ask the application, then call `answer`.
    Check(CredentialRequest),
    /// Authenticated: send `+OK`.
    Success(Identity),
    /// Failed: send `-ERR`.
    Failure(SaslFailure),
}

/// A question for the application about the credentials a client presented.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialRequest {
    /// PLAIN or LOGIN: is this the user's password? Answer [`CredentialAnswer::Verified`].
    /// The user name, password and authzid are SASLprep-ed (RFC 4616 §2, RFC 5034 §4): compare
    /// against a stored password prepared the same way.
    Password {
        /// The identity to act as, if the client gave one.
        authzid: Option<String>,
        /// The user name.
        user: String,
        /// The password.
        password: Secret<String>,
    },
    /// CRAM-MD5: recompute with the user's secret, e.g. with
    /// [`verify_cram_md5`](super::verify_cram_md5), and answer [`CredentialAnswer::Verified`].
    CramMd5 {
        /// The user name.
        user: String,
        /// The challenge that was sent.
        challenge: Vec<u8>,
        /// The client's HMAC-MD5 digest.
        digest: [u8; 16],
    },
    /// SCRAM-SHA-256: the user's stored credentials. Answer [`CredentialAnswer::Scram`]
    /// (`None` for an unknown user).
    Scram {
        /// The user name (SASLprep-ed).
        user: String,
    },
    /// XOAUTH2 or OAUTHBEARER: is this token valid for this user? Answer
    /// [`CredentialAnswer::Token`].
    Token {
        /// The user name.
        user: String,
        /// The bearer token.
        token: Secret<String>,
    },
}

/// The application's answer to a [`CredentialRequest`].
#[derive(Debug)]
pub enum CredentialAnswer {
    /// For `Password` and `CramMd5`: whether the credentials are right.
    Verified(bool),
    /// For `Scram`: the stored credentials, or `None` for an unknown user (the exchange then
    /// goes on with fake credentials and fails at the proof, like a wrong password).
    Scram(Option<ScramCredentials>),
    /// For `Token`: `Ok` to accept; `Err` sends the JSON error challenge, then fails.
    Token(Result<(), OAuthError>),
}

/// Why the server side failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureReason {
    /// The client's message does not parse (or failed SASLprep).
    Malformed,
    /// Wrong password, unknown user, bad proof or rejected token: deliberately one reason.
    BadCredentials,
    /// An initial response for a mechanism that takes none (RFC 5034 §4).
    UnexpectedInitialResponse,
    /// The client asked for something not implemented: channel binding, a mandatory extension.
    Unsupported,
    /// The OAUTHBEARER `host` or `port` does not match this server (RFC 7628 §3.2).
    EndpointMismatch,
    /// `start`, `respond` or `answer` was called out of turn, or with the wrong answer kind.
    OutOfOrder,
}

/// A failed exchange: a typed reason and a short text for the logs (never sent to the client
/// verbatim, never containing secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SASL failure ({reason:?}): {detail}")]
pub struct SaslFailure {
    /// Why.
    pub reason: FailureReason,
    /// Details for the logs.
    pub detail: &'static str,
}

struct ScramCtx {
    identity: Identity,
    gs2_header: Vec<u8>,
    client_first_bare: String,
    client_nonce: String,
}

enum State {
    Start,
    /// An empty challenge was sent for a client-first mechanism.
    AwaitInitial,
    LoginUser,
    LoginPassword {
        user: String,
    },
    CramResponse,
    AwaitVerified {
        identity: Identity,
    },
    AwaitScramCredentials(ScramCtx),
    ScramAwaitFinal {
        ctx: ScramCtx,
        creds: ScramCredentials,
        fake: bool,
        server_first: String,
    },
    ScramAwaitAck {
        identity: Identity,
    },
    AwaitToken {
        identity: Identity,
    },
    AwaitDummy {
        reason: FailureReason,
    },
    Done,
}

/// A server's side of one SASL exchange. See the [module docs](super) for the flow.
pub struct ServerExchange {
    mech: Mech,
    params: ServerParams,
    state: State,
}

impl fmt::Debug for ServerExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerExchange")
            .field("mechanism", &self.mech)
            .finish_non_exhaustive()
    }
}

fn failure(reason: FailureReason, detail: &'static str) -> ServerStep {
    ServerStep::Failure(SaslFailure { reason, detail })
}

fn malformed(detail: &'static str) -> ServerStep {
    failure(FailureReason::Malformed, detail)
}

/// Printable ASCII without the bytes that would break a `<nonce@host>` or SCRAM framing.
fn is_cram_part(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'@' | b','))
}

fn prep(s: &str) -> Option<String> {
    super::saslprep(s)
}

impl ServerExchange {
    /// The mechanisms implemented, strongest first.
    pub fn supported() -> &'static [&'static str] {
        const NAMES: [&str; 6] = {
            let mut names = [""; 6];
            let mut i = 0;
            while i < 6 {
                names[i] = Mech::ALL[i].name();
                i += 1;
            }
            names
        };
        &NAMES
    }

    /// A new exchange for `mechanism`. Fails for a mechanism not in [`Self::supported`], or
    /// when the nonce or host name cannot be used by it.
    pub fn new(mechanism: &Mechanism, params: ServerParams) -> Result<Self, SaslError> {
        let mech = Mech::from_name(mechanism.as_str()).ok_or(SaslError::UnsupportedMechanism)?;
        match mech {
            Mech::CramMd5
                if !is_cram_part(&params.nonce) || !is_cram_part(params.hostname.as_bytes()) =>
            {
                return Err(SaslError::InvalidParams(
                    "CRAM-MD5 needs a printable nonce and host name",
                ));
            }
            Mech::Scram if !scram::is_nonce(&params.nonce) => {
                return Err(SaslError::InvalidParams(
                    "SCRAM nonce must be printable ASCII without ','",
                ));
            }
            _ => {}
        }
        Ok(ServerExchange {
            mech,
            params,
            state: State::Start,
        })
    }

    /// Starts the exchange with the client's initial response, if the `AUTH` line had one.
    pub fn start(&mut self, initial_response: Option<&[u8]>) -> ServerStep {
        if !matches!(self.state, State::Start) {
            return self.out_of_order();
        }
        let step = match (self.mech, initial_response) {
            (Mech::CramMd5, None) => {
                self.state = State::CramResponse;
                ServerStep::Challenge(self.cram_challenge())
            }
            (Mech::CramMd5, Some(_)) => failure(
                FailureReason::UnexpectedInitialResponse,
                "CRAM-MD5 takes no initial response",
            ),
            (Mech::Login, None) => {
                self.state = State::LoginUser;
                ServerStep::Challenge(b"Username:".to_vec())
            }
            // Some clients send the user name as a LOGIN initial response
            // (draft-murchison-sasl-login §2 allows it).
            (Mech::Login, Some(user)) => self.login_user(user),
            (_, None) => {
                // RFC 5034 §4: a client-first mechanism without initial response gets "+ ".
                self.state = State::AwaitInitial;
                ServerStep::Challenge(Vec::new())
            }
            (_, Some(data)) => self.client_first(data),
        };
        self.settle(step)
    }

    /// The client's response to the last challenge (decoded).
    pub fn respond(&mut self, response: &[u8]) -> ServerStep {
        let state = std::mem::replace(&mut self.state, State::Done);
        let step = match state {
            State::AwaitInitial => self.client_first(response),
            State::LoginUser => self.login_user(response),
            State::LoginPassword { user } => {
                match std::str::from_utf8(response).ok().and_then(prep) {
                    Some(password) => {
                        let identity = Identity {
                            user: user.clone(),
                            authzid: None,
                        };
                        self.state = State::AwaitVerified { identity };
                        ServerStep::Check(CredentialRequest::Password {
                            authzid: None,
                            user,
                            password: Secret::new(password),
                        })
                    }
                    None => malformed("LOGIN password is not valid UTF-8 or fails SASLprep"),
                }
            }
            State::CramResponse => self.cram_response(response),
            State::ScramAwaitFinal {
                ctx,
                creds,
                fake,
                server_first,
            } => self.scram_final(ctx, &creds, fake, &server_first, response),
            State::ScramAwaitAck { identity } => {
                if response.is_empty() {
                    ServerStep::Success(identity)
                } else {
                    malformed("non-empty response after SCRAM server-final")
                }
            }
            // RFC 7628 §3.2.3: the client's dummy response (0x01) ends a failed exchange.
            State::AwaitDummy { reason } => failure(reason, "OAuth token rejected"),
            other => {
                self.state = other;
                return self.out_of_order();
            }
        };
        self.settle(step)
    }

    /// The application's answer to the last [`ServerStep::Check`].
    pub fn answer(&mut self, answer: CredentialAnswer) -> ServerStep {
        let state = std::mem::replace(&mut self.state, State::Done);
        let step = match (state, answer) {
            (State::AwaitVerified { identity }, CredentialAnswer::Verified(true)) => {
                ServerStep::Success(identity)
            }
            (State::AwaitVerified { .. }, CredentialAnswer::Verified(false)) => {
                failure(FailureReason::BadCredentials, "wrong password")
            }
            (State::AwaitScramCredentials(ctx), CredentialAnswer::Scram(creds)) => {
                self.scram_first(ctx, creds)
            }
            (State::AwaitToken { identity }, CredentialAnswer::Token(Ok(()))) => {
                ServerStep::Success(identity)
            }
            (State::AwaitToken { .. }, CredentialAnswer::Token(Err(e))) => {
                self.state = State::AwaitDummy {
                    reason: FailureReason::BadCredentials,
                };
                ServerStep::Challenge(e.to_json(self.mech == Mech::XOAuth2))
            }
            _ => return self.out_of_order(),
        };
        self.settle(step)
    }

    fn out_of_order(&mut self) -> ServerStep {
        self.state = State::Done;
        failure(FailureReason::OutOfOrder, "SASL exchange step out of order")
    }

    /// After a final step nothing more is accepted.
    fn settle(&mut self, step: ServerStep) -> ServerStep {
        if matches!(step, ServerStep::Success(_) | ServerStep::Failure(_)) {
            self.state = State::Done;
        }
        step
    }

    fn cram_challenge(&self) -> Vec<u8> {
        let mut c = Vec::with_capacity(self.params.nonce.len() + self.params.hostname.len() + 3);
        c.push(b'<');
        c.extend_from_slice(&self.params.nonce);
        c.push(b'@');
        c.extend_from_slice(self.params.hostname.as_bytes());
        c.push(b'>');
        c
    }

    fn login_user(&mut self, user: &[u8]) -> ServerStep {
        match std::str::from_utf8(user).ok().and_then(prep) {
            Some(user) => {
                self.state = State::LoginPassword { user };
                ServerStep::Challenge(b"Password:".to_vec())
            }
            None => malformed("LOGIN user name is not valid UTF-8 or fails SASLprep"),
        }
    }

    fn cram_response(&mut self, response: &[u8]) -> ServerStep {
        // `user SP digest`; the user name may itself hold spaces, the digest never.
        let Some(sp) = response.iter().rposition(|&b| b == b' ') else {
            return malformed("CRAM-MD5 response has no space");
        };
        let (user, digest) = (&response[..sp], &response[sp + 1..]);
        let Some(digest) = super::parse_hex::<16>(digest) else {
            return malformed("CRAM-MD5 digest is not 32 hex digits");
        };
        let Some(user) = std::str::from_utf8(user).ok().filter(|u| !u.is_empty()) else {
            return malformed("CRAM-MD5 user name is empty or not UTF-8");
        };
        let identity = Identity {
            user: user.to_owned(),
            authzid: None,
        };
        self.state = State::AwaitVerified { identity };
        ServerStep::Check(CredentialRequest::CramMd5 {
            user: user.to_owned(),
            challenge: self.cram_challenge(),
            digest,
        })
    }

    /// The first client message of PLAIN, SCRAM, XOAUTH2 or OAUTHBEARER.
    fn client_first(&mut self, data: &[u8]) -> ServerStep {
        match self.mech {
            Mech::Plain => self.plain(data),
            Mech::Scram => self.scram_client_first(data),
            Mech::XOAuth2 | Mech::OAuthBearer => self.oauth(data),
            // LOGIN and CRAM-MD5 never reach here.
            Mech::Login | Mech::CramMd5 => self.out_of_order(),
        }
    }

    fn plain(&mut self, data: &[u8]) -> ServerStep {
        let mut parts = data.split(|&b| b == 0);
        let (Some(authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return malformed("PLAIN message needs exactly two NULs");
        };
        if user.is_empty() || password.is_empty() {
            return malformed("PLAIN user name or password is empty");
        }
        if [authzid, user, password]
            .iter()
            .any(|p| p.len() > PLAIN_MAX)
        {
            return malformed("PLAIN part too long");
        }
        let utf8 = |b: &[u8]| std::str::from_utf8(b).ok().and_then(prep);
        let authzid = match authzid {
            [] => None,
            a => match utf8(a) {
                Some(a) => Some(a),
                None => return malformed("PLAIN authzid fails UTF-8 or SASLprep"),
            },
        };
        let (Some(user), Some(password)) = (utf8(user), utf8(password)) else {
            return malformed("PLAIN user name or password fails UTF-8 or SASLprep");
        };
        self.state = State::AwaitVerified {
            identity: Identity {
                user: user.clone(),
                authzid: authzid.clone(),
            },
        };
        ServerStep::Check(CredentialRequest::Password {
            authzid,
            user,
            password: Secret::new(password),
        })
    }

    fn oauth(&mut self, data: &[u8]) -> ServerStep {
        let Ok(text) = std::str::from_utf8(data) else {
            return malformed("OAuth message is not UTF-8");
        };
        let msg = if self.mech == Mech::XOAuth2 {
            match oauth::parse_xoauth2(text) {
                Some(m) => m,
                None => return malformed("XOAUTH2 message does not parse"),
            }
        } else {
            match oauth::parse_oauthbearer(text) {
                Ok(m) => m,
                Err(true) => {
                    return failure(FailureReason::Unsupported, "channel binding requested");
                }
                Err(false) => return malformed("OAUTHBEARER message does not parse"),
            }
        };
        let user = if msg.authzid_escaped {
            scram::unescape_saslname(msg.user)
        } else {
            Some(msg.user.to_owned())
        };
        // The user name is required: without it there is no identity to report.
        let Some(user) = user.filter(|u| !u.is_empty()) else {
            return malformed("OAuth message has no user name");
        };
        let host_ok = msg.host.is_none_or(|h| {
            self.params.hostname.is_empty() || h.eq_ignore_ascii_case(&self.params.hostname)
        });
        let port_ok = match (msg.port, self.params.port) {
            (Some(p), Some(ours)) => p.parse::<u16>().ok() == Some(ours),
            _ => true,
        };
        if !host_ok || !port_ok {
            // RFC 7628 §3.2.2: fail through the error challenge, like a rejected token.
            self.state = State::AwaitDummy {
                reason: FailureReason::EndpointMismatch,
            };
            return ServerStep::Challenge(OAuthError::new("invalid_request").to_json(false));
        }
        let identity = Identity {
            user: user.clone(),
            authzid: None,
        };
        self.state = State::AwaitToken { identity };
        ServerStep::Check(CredentialRequest::Token {
            user,
            token: Secret::new(msg.token.to_owned()),
        })
    }

    fn scram_client_first(&mut self, data: &[u8]) -> ServerStep {
        let Ok(text) = std::str::from_utf8(data) else {
            return malformed("SCRAM client-first is not UTF-8");
        };
        // gs2-header = gs2-cbind-flag "," [ authzid ] ","
        let Some((cbind, rest)) = text.split_once(',') else {
            return malformed("SCRAM client-first has no gs2 header");
        };
        match cbind {
            // "y": the client could bind but thinks we can't; we indeed don't offer -PLUS.
            "n" | "y" => {}
            c if c.starts_with("p=") => {
                return failure(
                    FailureReason::Unsupported,
                    "SCRAM channel binding requested",
                );
            }
            _ => return malformed("SCRAM gs2 channel-binding flag"),
        }
        let Some((authzid, bare)) = rest.split_once(',') else {
            return malformed("SCRAM gs2 header is not terminated");
        };
        let authzid = match authzid {
            "" => None,
            a => match a
                .strip_prefix("a=")
                .and_then(scram::unescape_saslname)
                .and_then(|a| prep(&a))
            {
                Some(a) => Some(a),
                None => return malformed("SCRAM authzid"),
            },
        };
        let gs2_header = text.as_bytes()[..text.len() - bare.len()].to_vec();
        let mut parts = bare.split(',');
        let first = parts.next().unwrap_or("");
        if first.starts_with("m=") {
            return failure(FailureReason::Unsupported, "SCRAM mandatory extension");
        }
        let user = match scram::attr(first) {
            Some((b'n', u)) => match scram::unescape_saslname(u).and_then(|u| prep(&u)) {
                Some(u) => u,
                None => return malformed("SCRAM user name"),
            },
            _ => return malformed("SCRAM client-first has no user name"),
        };
        let client_nonce = match parts.next().and_then(scram::attr) {
            Some((b'r', n)) if scram::is_nonce(n.as_bytes()) => n.to_owned(),
            _ => return malformed("SCRAM client-first has no valid nonce"),
        };
        if parts.any(|p| scram::attr(p).is_none()) {
            return malformed("SCRAM client-first has trailing garbage");
        }
        self.state = State::AwaitScramCredentials(ScramCtx {
            identity: Identity {
                user: user.clone(),
                authzid,
            },
            gs2_header,
            client_first_bare: bare.to_owned(),
            client_nonce,
        });
        ServerStep::Check(CredentialRequest::Scram { user })
    }

    fn scram_first(&mut self, ctx: ScramCtx, creds: Option<ScramCredentials>) -> ServerStep {
        let (creds, fake) = match creds {
            Some(c) => (c, false),
            None => (self.fake_scram(&ctx.identity.user), true),
        };
        let server_first = format!(
            "r={}{},s={},i={}",
            ctx.client_nonce,
            String::from_utf8_lossy(&self.params.nonce),
            b64_encode(&creds.salt),
            creds.iterations
        );
        let challenge = server_first.clone().into_bytes();
        self.state = State::ScramAwaitFinal {
            ctx,
            creds,
            fake,
            server_first,
        };
        ServerStep::Challenge(challenge)
    }

    /// Credentials for an unknown user, derived deterministically so that the exchange looks
    /// like a real one; the proof is then refused whatever it is.
    fn fake_scram(&self, user: &str) -> ScramCredentials {
        let key: &[u8] = match &self.params.scram_fake_key {
            Some(k) => k.expose_secret(),
            None => &self.params.nonce,
        };
        let derive = |label: &[u8]| scram::hmac_sha256(key, &[label, user.as_bytes()]);
        let mut salt = derive(b"pop3-proto fake salt\0");
        let creds = ScramCredentials {
            salt: salt[..16].to_vec(),
            iterations: self.params.scram_fake_iterations,
            stored_key: derive(b"pop3-proto fake stored key\0"),
            server_key: derive(b"pop3-proto fake server key\0"),
        };
        salt.zeroize();
        creds
    }

    fn scram_final(
        &mut self,
        ctx: ScramCtx,
        creds: &ScramCredentials,
        fake: bool,
        server_first: &str,
        response: &[u8],
    ) -> ServerStep {
        let Ok(text) = std::str::from_utf8(response) else {
            return malformed("SCRAM client-final is not UTF-8");
        };
        // The proof is the last attribute; base64 has no ',' so the last ',' precedes it.
        let Some((without_proof, proof)) = text.rsplit_once(',') else {
            return malformed("SCRAM client-final has no proof");
        };
        let proof = match scram::attr(proof) {
            Some((b'p', p)) => b64_decode(p.as_bytes()),
            _ => None,
        };
        let Some(proof) = proof.and_then(|p| <[u8; 32]>::try_from(p).ok()) else {
            return malformed("SCRAM proof is not 32 octets of base64");
        };
        let mut parts = without_proof.split(',');
        let cbind = match parts.next().and_then(scram::attr) {
            Some((b'c', c)) => b64_decode(c.as_bytes()),
            _ => None,
        };
        if cbind.as_deref() != Some(&ctx.gs2_header[..]) {
            return malformed("SCRAM channel binding does not match the gs2 header");
        }
        let full_nonce = format!(
            "{}{}",
            ctx.client_nonce,
            String::from_utf8_lossy(&self.params.nonce)
        );
        match parts.next().and_then(scram::attr) {
            Some((b'r', n)) if n == full_nonce => {}
            _ => return malformed("SCRAM nonce does not match"),
        }
        if parts.any(|p| scram::attr(p).is_none()) {
            return malformed("SCRAM client-final has garbage");
        }
        let auth_message = scram::auth_message(
            ctx.client_first_bare.as_bytes(),
            server_first.as_bytes(),
            without_proof.as_bytes(),
        );
        let mut client_signature = scram::hmac_sha256(&creds.stored_key, &[&auth_message]);
        let mut client_key = scram::xor32(&proof, &client_signature);
        let proof_ok = ct_eq(&scram::sha256(&client_key), &creds.stored_key);
        client_signature.zeroize();
        client_key.zeroize();
        if !proof_ok || fake {
            return failure(FailureReason::BadCredentials, "SCRAM proof does not verify");
        }
        let signature = scram::hmac_sha256(&creds.server_key, &[&auth_message]);
        self.state = State::ScramAwaitAck {
            identity: ctx.identity,
        };
        ServerStep::Challenge(format!("v={}", b64_encode(&signature)).into_bytes())
    }
}
