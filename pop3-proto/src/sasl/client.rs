//! The client side of the SASL mechanisms.

use std::fmt;

use zeroize::Zeroize;

use super::scram::{self, ScramKeys};
use super::{Mech, SCRAM_MAX_ITERATIONS, SCRAM_MIN_ITERATIONS, SaslError, oauth};
use crate::{Mechanism, Secret};

/// The longest PLAIN part a client sends: RFC 4616 §2 only obliges servers to take 255 octets.
const PLAIN_MAX: usize = 255;

/// What a client logs in with; the variant chooses the mechanism.
#[derive(Clone)]
#[non_exhaustive]
pub enum ClientCredentials {
    /// PLAIN (RFC 4616).
    Plain {
        /// The identity to act as, if not the user's own.
        authzid: Option<String>,
        /// The user name (authentication identity).
        user: String,
        /// The password.
        password: Secret<String>,
    },
    /// LOGIN (draft-murchison-sasl-login): user name, then password.
    Login {
        /// The user name.
        user: String,
        /// The password.
        password: Secret<String>,
    },
    /// CRAM-MD5 (RFC 2195).
    CramMd5 {
        /// The user name.
        user: String,
        /// The shared secret.
        password: Secret<String>,
    },
    /// SCRAM-SHA-256 (RFC 7677) without channel binding.
    ScramSha256 {
        /// The user name; SASLprep-ed before use.
        user: String,
        /// The password; SASLprep-ed before use.
        password: Secret<String>,
    },
    /// XOAUTH2 (Google, Microsoft).
    XOAuth2 {
        /// The user name (mail address).
        user: String,
        /// The OAuth 2.0 bearer token.
        token: Secret<String>,
    },
    /// OAUTHBEARER (RFC 7628).
    OAuthBearer {
        /// The user name, sent as the gs2 authzid.
        user: String,
        /// The OAuth 2.0 bearer token.
        token: Secret<String>,
        /// The server host name the client connected to.
        host: Option<String>,
        /// The port the client connected to.
        port: Option<u16>,
    },
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Show the mechanism and user only.
        let (mech, user) = match self {
            ClientCredentials::Plain { user, .. } => ("PLAIN", user),
            ClientCredentials::Login { user, .. } => ("LOGIN", user),
            ClientCredentials::CramMd5 { user, .. } => ("CRAM-MD5", user),
            ClientCredentials::ScramSha256 { user, .. } => ("SCRAM-SHA-256", user),
            ClientCredentials::XOAuth2 { user, .. } => ("XOAUTH2", user),
            ClientCredentials::OAuthBearer { user, .. } => ("OAUTHBEARER", user),
        };
        f.debug_struct("ClientCredentials")
            .field("mechanism", &mech)
            .field("user", user)
            .finish_non_exhaustive()
    }
}

enum State {
    /// Nothing sent yet.
    Start,
    /// PLAIN, XOAUTH2, OAUTHBEARER: the initial response is sent.
    SentInitial,
    LoginSentUser,
    LoginSentPassword,
    CramSent,
    ScramSentFirst {
        client_first_bare: String,
    },
    ScramSentFinal {
        expected_signature: [u8; 32],
    },
    ScramVerified,
    /// XOAUTH2, OAUTHBEARER: an error challenge was answered.
    OAuthErrorAnswered,
    Failed(SaslError),
}

/// A client's side of one SASL exchange. See the [module docs](super) for the flow.
pub struct ClientExchange {
    mech: Mech,
    creds: ClientCredentials,
    nonce: String,
    /// The prepared client-first message for client-first mechanisms, built at construction.
    initial: Option<Secret<Vec<u8>>>,
    state: State,
    server_error: Option<String>,
}

impl fmt::Debug for ClientExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientExchange")
            .field("mechanism", &self.mech.name())
            .finish_non_exhaustive()
    }
}

impl ClientExchange {
    /// A new exchange. `client_nonce` is fresh random printable ASCII (no `,`) from the caller,
    /// used by SCRAM and ignored otherwise. Invalid credentials do not fail here: the first
    /// `step` or `finish` reports them, and `initial_response` returns `None`. Use
    /// [`ClientExchange::try_new`] to learn of them at once.
    pub fn new(creds: ClientCredentials, client_nonce: &[u8]) -> Self {
        let mech = match &creds {
            ClientCredentials::Plain { .. } => Mech::Plain,
            ClientCredentials::Login { .. } => Mech::Login,
            ClientCredentials::CramMd5 { .. } => Mech::CramMd5,
            ClientCredentials::ScramSha256 { .. } => Mech::Scram,
            ClientCredentials::XOAuth2 { .. } => Mech::XOAuth2,
            ClientCredentials::OAuthBearer { .. } => Mech::OAuthBearer,
        };
        let mut ex = ClientExchange {
            mech,
            creds,
            nonce: String::from_utf8_lossy(client_nonce).into_owned(),
            initial: None,
            state: State::Start,
            server_error: None,
        };
        match ex.build_initial(client_nonce) {
            Ok(initial) => ex.initial = initial.map(Secret::new),
            Err(e) => ex.state = State::Failed(e),
        }
        ex
    }

    /// Like [`ClientExchange::new`], but invalid credentials or nonce are an error.
    pub fn try_new(creds: ClientCredentials, client_nonce: &[u8]) -> Result<Self, SaslError> {
        let ex = Self::new(creds, client_nonce);
        match &ex.state {
            State::Failed(e) => Err(e.clone()),
            _ => Ok(ex),
        }
    }

    /// The mechanism name to send with `AUTH`.
    pub fn mechanism(&self) -> Mechanism {
        // The names are constants that satisfy `Mechanism`'s rules, so this cannot fail.
        Mechanism::new(self.mech.name()).expect("constant mechanism names are valid")
    }

    /// The initial response, once, for the client-first mechanisms (PLAIN, SCRAM-SHA-256,
    /// XOAUTH2, OAUTHBEARER); `None` for LOGIN and CRAM-MD5, after it was taken, or when the
    /// credentials are invalid. Taking it marks it as sent.
    pub fn initial_response(&mut self) -> Option<Vec<u8>> {
        if !matches!(self.state, State::Start) {
            return None;
        }
        let data = self.initial.as_ref()?.expose_secret().clone();
        self.mark_initial_sent();
        Some(data)
    }

    /// Undoes [`ClientExchange::initial_response`]: the initial response was not sent inline
    /// (the `AUTH` line would exceed 255 octets, RFC 5034 §4), so the server's first, empty
    /// challenge gets it.
    pub fn defer_initial_response(&mut self) {
        if matches!(
            self.state,
            State::SentInitial | State::ScramSentFirst { .. }
        ) && self.initial.is_some()
        {
            self.state = State::Start;
        }
    }

    fn mark_initial_sent(&mut self) {
        self.state = match self.mech {
            Mech::Scram => State::ScramSentFirst {
                client_first_bare: self.client_first_bare(),
            },
            _ => State::SentInitial,
        };
    }

    fn client_first_bare(&self) -> String {
        // The initial response is `n,,` + bare.
        self.initial
            .as_ref()
            .and_then(|i| i.expose_secret().get(3..))
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    }

    /// Validates the credentials and builds the client-first message, if any.
    fn build_initial(&self, nonce: &[u8]) -> Result<Option<Vec<u8>>, SaslError> {
        let bad = SaslError::InvalidCredentials;
        let no_ctl = |s: &str| !s.bytes().any(|b| b < 0x20 || b == 0x7f);
        match &self.creds {
            ClientCredentials::Plain {
                authzid,
                user,
                password,
            } => {
                let authzid = authzid.as_deref().unwrap_or("");
                let pw = password.expose_secret();
                if user.is_empty() || pw.is_empty() {
                    return Err(bad("empty user name or password"));
                }
                if [authzid, user, pw].iter().any(|p| p.contains('\0')) {
                    return Err(bad("NUL in a PLAIN part"));
                }
                if [authzid, user, pw].iter().any(|p| p.len() > PLAIN_MAX) {
                    return Err(bad("PLAIN part longer than 255 octets"));
                }
                let mut m = Vec::with_capacity(authzid.len() + user.len() + pw.len() + 2);
                m.extend_from_slice(authzid.as_bytes());
                m.push(0);
                m.extend_from_slice(user.as_bytes());
                m.push(0);
                m.extend_from_slice(pw.as_bytes());
                Ok(Some(m))
            }
            ClientCredentials::Login { user, password } => {
                if user.is_empty() || !no_ctl(user) || password.expose_secret().contains('\0') {
                    return Err(bad("empty user name or control character"));
                }
                Ok(None)
            }
            ClientCredentials::CramMd5 { user, .. } => {
                if user.is_empty() || !no_ctl(user) {
                    return Err(bad("empty user name or control character"));
                }
                Ok(None)
            }
            ClientCredentials::ScramSha256 { user, password } => {
                if !scram::is_nonce(nonce) {
                    return Err(SaslError::InvalidParams(
                        "SCRAM client nonce must be printable ASCII without ','",
                    ));
                }
                let user = super::saslprep(user).ok_or(bad("user name SASLprep"))?;
                super::saslprep(password.expose_secret()).ok_or(bad("password SASLprep"))?;
                let msg = format!(
                    "n,,n={},r={}",
                    scram::escape_saslname(&user),
                    String::from_utf8_lossy(nonce)
                );
                Ok(Some(msg.into_bytes()))
            }
            ClientCredentials::XOAuth2 { user, token } => {
                if user.is_empty() || !no_ctl(user) || !oauth::is_token(token.expose_secret()) {
                    return Err(bad("bad user name or token"));
                }
                Ok(Some(oauth::xoauth2_message(user, token.expose_secret())))
            }
            ClientCredentials::OAuthBearer {
                user,
                token,
                host,
                port,
            } => {
                let host_ok = host
                    .as_deref()
                    .is_none_or(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()));
                if user.is_empty() || !no_ctl(user) || !oauth::is_token(token.expose_secret()) {
                    return Err(bad("bad user name or token"));
                }
                if !host_ok {
                    return Err(bad("bad host name"));
                }
                Ok(Some(oauth::oauthbearer_message(
                    user,
                    token.expose_secret(),
                    host.as_deref(),
                    *port,
                )))
            }
        }
    }

    fn fail(&mut self, e: SaslError) -> Result<Vec<u8>, SaslError> {
        self.state = State::Failed(e.clone());
        Err(e)
    }

    /// The response to a server challenge (decoded). An `Err` means the client should cancel
    /// with `*`; every later call fails too.
    pub fn step(&mut self, challenge: &[u8]) -> Result<Vec<u8>, SaslError> {
        let state = std::mem::replace(&mut self.state, State::Failed(SaslError::Incomplete));
        match (self.mech, state) {
            (_, State::Failed(e)) => self.fail(e),
            // A client-first mechanism whose initial response was not sent inline: the first
            // challenge (empty by RFC 5034 §4) is answered with it.
            (Mech::Plain | Mech::Scram | Mech::XOAuth2 | Mech::OAuthBearer, State::Start) => {
                match self.initial.as_ref() {
                    Some(i) => {
                        let data = i.expose_secret().clone();
                        self.mark_initial_sent();
                        Ok(data)
                    }
                    None => self.fail(SaslError::Incomplete),
                }
            }
            (Mech::XOAuth2 | Mech::OAuthBearer, State::SentInitial) => {
                // The token was refused: the challenge is a JSON error. XOAUTH2 answers with an
                // empty response, OAUTHBEARER with 0x01 (RFC 7628 §3.2.3); the server then fails.
                self.server_error = Some(String::from_utf8_lossy(challenge).into_owned());
                self.state = State::OAuthErrorAnswered;
                Ok(if self.mech == Mech::OAuthBearer {
                    vec![0x01]
                } else {
                    Vec::new()
                })
            }
            (Mech::Login, State::Start) => {
                self.state = State::LoginSentUser;
                Ok(self.login_user().into_bytes())
            }
            (Mech::Login, State::LoginSentUser) => {
                self.state = State::LoginSentPassword;
                Ok(self.secret().as_bytes().to_vec())
            }
            (Mech::CramMd5, State::Start) => {
                if challenge.is_empty() {
                    return self.fail(SaslError::MalformedChallenge("empty CRAM-MD5 challenge"));
                }
                let mut digest = super::cram_md5_digest(self.secret().as_bytes(), challenge);
                let resp = format!("{} {}", self.login_user(), super::hex_lower(&digest));
                digest.zeroize();
                self.state = State::CramSent;
                Ok(resp.into_bytes())
            }
            (Mech::Scram, State::ScramSentFirst { client_first_bare }) => {
                match self.scram_final(&client_first_bare, challenge) {
                    Ok((resp, expected_signature)) => {
                        self.state = State::ScramSentFinal { expected_signature };
                        Ok(resp)
                    }
                    Err(e) => self.fail(e),
                }
            }
            (Mech::Scram, State::ScramSentFinal { expected_signature }) => {
                match verify_server_final(challenge, &expected_signature) {
                    Ok(()) => {
                        self.state = State::ScramVerified;
                        // RFC 5034: the server-final data came as a challenge; answer empty.
                        Ok(Vec::new())
                    }
                    Err(e) => self.fail(e),
                }
            }
            _ => self.fail(SaslError::UnexpectedChallenge),
        }
    }

    fn login_user(&self) -> String {
        match &self.creds {
            ClientCredentials::Plain { user, .. }
            | ClientCredentials::Login { user, .. }
            | ClientCredentials::CramMd5 { user, .. }
            | ClientCredentials::ScramSha256 { user, .. }
            | ClientCredentials::XOAuth2 { user, .. }
            | ClientCredentials::OAuthBearer { user, .. } => user.clone(),
        }
    }

    fn secret(&self) -> &String {
        match &self.creds {
            ClientCredentials::Plain { password, .. }
            | ClientCredentials::Login { password, .. }
            | ClientCredentials::CramMd5 { password, .. }
            | ClientCredentials::ScramSha256 { password, .. } => password.expose_secret(),
            ClientCredentials::XOAuth2 { token, .. }
            | ClientCredentials::OAuthBearer { token, .. } => token.expose_secret(),
        }
    }

    /// Processes the server-first message: returns the client-final message and the server
    /// signature to expect.
    fn scram_final(
        &self,
        client_first_bare: &str,
        challenge: &[u8],
    ) -> Result<(Vec<u8>, [u8; 32]), SaslError> {
        let server_first = std::str::from_utf8(challenge)
            .map_err(|_| SaslError::MalformedChallenge("server-first is not UTF-8"))?;
        let sf = scram::parse_server_first(server_first)?;
        if !sf.nonce.starts_with(&self.nonce) || sf.nonce.len() == self.nonce.len() {
            return Err(SaslError::NonceMismatch);
        }
        if !(SCRAM_MIN_ITERATIONS..=SCRAM_MAX_ITERATIONS).contains(&sf.iterations) {
            return Err(SaslError::IterationCount(sf.iterations));
        }
        let mut password = super::saslprep(self.secret())
            .ok_or(SaslError::InvalidCredentials("password SASLprep"))?;
        let keys = ScramKeys::derive(password.as_bytes(), &sf.salt, sf.iterations);
        password.zeroize();
        // c=biws is base64("n,,"): no channel binding, no authzid.
        let final_wo = format!("c=biws,r={}", sf.nonce);
        let auth_message =
            scram::auth_message(client_first_bare.as_bytes(), challenge, final_wo.as_bytes());
        let mut client_signature = scram::hmac_sha256(&keys.stored_key, &[&auth_message]);
        let mut proof = scram::xor32(&keys.client_key, &client_signature);
        let expected = scram::hmac_sha256(&keys.server_key, &[&auth_message]);
        let msg = format!("{final_wo},p={}", super::b64_encode(&proof));
        client_signature.zeroize();
        proof.zeroize();
        Ok((msg.into_bytes(), expected))
    }

    /// Call when the server says `+OK`: `Err` unless the exchange completed. For SCRAM that
    /// means the server signature was received and verified (RFC 5802 §5); for XOAUTH2 and
    /// OAUTHBEARER, that no error challenge came.
    pub fn finish(&self) -> Result<(), SaslError> {
        match (&self.state, self.mech) {
            (State::Failed(e), _) => Err(e.clone()),
            (State::OAuthErrorAnswered, _) => Err(SaslError::OAuthRejected(
                self.server_error.clone().unwrap_or_default(),
            )),
            (State::SentInitial, Mech::Plain | Mech::XOAuth2 | Mech::OAuthBearer)
            | (State::LoginSentPassword, Mech::Login)
            | (State::CramSent, Mech::CramMd5)
            | (State::ScramVerified, Mech::Scram) => Ok(()),
            _ => Err(SaslError::Incomplete),
        }
    }

    /// The JSON error an XOAUTH2 or OAUTHBEARER server sent as a challenge, if any.
    pub fn server_error(&self) -> Option<&str> {
        self.server_error.as_deref()
    }
}

/// Checks the server-final message: `v=` + base64(ServerSignature), or `e=` + error.
fn verify_server_final(challenge: &[u8], expected: &[u8; 32]) -> Result<(), SaslError> {
    let msg = std::str::from_utf8(challenge)
        .map_err(|_| SaslError::MalformedChallenge("server-final is not UTF-8"))?;
    let first = msg.split(',').next().unwrap_or("");
    match scram::attr(first) {
        Some((b'e', err)) => Err(SaslError::ServerError(err.to_owned())),
        Some((b'v', sig)) => {
            let sig = super::b64_decode(sig.as_bytes())
                .ok_or(SaslError::MalformedChallenge("server-final: bad base64"))?;
            if super::ct_eq(&sig, expected) {
                Ok(())
            } else {
                Err(SaslError::ServerSignature)
            }
        }
        _ => Err(SaslError::MalformedChallenge("server-final: no verifier")),
    }
}
