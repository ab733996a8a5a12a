//! Which login method a client uses: the decision, made once, in the core.
//!
//! A POP3 server says how it may be logged in to: the `SASL` line of `CAPA` (RFC 5034 §3),
//! the `USER` capability (RFC 2449 §6.1) and, for APOP, a timestamp in its greeting
//! (RFC 1939 §7). [`choose`] weighs that [`Offer`] against what the client [`Have`]s (a
//! password, an OAuth token) and the [`Channel`] (TLS or not, and whether the user explicitly
//! allowed secrets to cross it in the clear), and returns the [`LoginMethod`] to use, or a
//! [`ChoiceError`] that names what was offered and why each was refused. [`rank`] gives the
//! whole ranking.
//!
//! The rules:
//!
//! - **Order** ([`LoginMethod::PREFERENCE`]): with a password, SCRAM-SHA-256, CRAM-MD5,
//!   PLAIN, USER/PASS, LOGIN; with an OAuth token, OAUTHBEARER, XOAUTH2; with both, the token
//!   mechanisms come after SCRAM-SHA-256 and before CRAM-MD5 (SCRAM proves the password and
//!   authenticates the server without sending anything reusable; a bearer token is a reusable
//!   secret, but a scoped one that expires, unlike a password).
//! - **TLS**: a method that sends the password readable (PLAIN, LOGIN, USER/PASS) or a bearer
//!   token (XOAUTH2, OAUTHBEARER) is used only over TLS, or when [`Channel::allow_plaintext`]
//!   says the user explicitly accepted it; see [`LoginMethod::exposure`]. This holds for a
//!   forced method too.
//! - **APOP** is never chosen automatically (it rests on MD5 and a server-side plaintext
//!   password, and CVE-2007-1558 recovers passwords from it); only
//!   `Preference::Forced(LoginMethod::Apop)` (`;AUTH=+APOP` in a POP URL) uses it.
//! - **Forced** (`;AUTH=mechanism` in a POP URL, RFC 2384 §3, read by
//!   [`Preference::from_url_auth`]): used if the server offers it and it is usable with the
//!   client's credentials on this channel; otherwise an error says which, and nothing else is
//!   tried in its place.
//!
//! ```
//! use pop3_proto::sasl::choose::{
//!     Channel, ChoiceError, Exposure, Have, LoginMethod, Offer, Preference, choose,
//! };
//! use pop3_proto::{Capability, Mechanism};
//!
//! // CAPA said `USER` and `SASL PLAIN CRAM-MD5`; the greeting had no APOP timestamp.
//! let caps = [
//!     Capability::User,
//!     Capability::Sasl(vec![Mechanism::new("PLAIN")?, Mechanism::new("CRAM-MD5")?]),
//! ];
//! let offer = Offer::from_capabilities(Some(&caps), None);
//!
//! // The strongest offered method that a password can do.
//! let method = choose(&offer, Have::PASSWORD, Channel::tls(), Preference::Auto)?;
//! assert_eq!(method, LoginMethod::CramMd5);
//! assert_eq!(method.exposure(), Exposure::Proof);
//!
//! // `pop3s://alice;AUTH=PLAIN@host`: honoured over TLS...
//! let forced = Preference::from_url_auth("PLAIN")?;
//! assert_eq!(choose(&offer, Have::PASSWORD, Channel::tls(), forced)?, LoginMethod::Plain);
//! // ...but not in the clear unless the user allowed it.
//! let err = choose(&offer, Have::PASSWORD, Channel::plaintext(), forced).unwrap_err();
//! assert!(matches!(err, ChoiceError::ForcedUnusable { .. }));
//! assert_eq!(
//!     err.to_string(),
//!     "PLAIN was asked for, but it needs TLS (it sends the password readable)"
//! );
//! assert!(LoginMethod::Plain.sends_password_readable());
//!
//! // Nothing a token can do here: the error names each offered method and the reason.
//! let err = choose(&offer, Have::TOKEN, Channel::tls(), Preference::Auto).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "no acceptable login method: CRAM-MD5 needs a password; PLAIN needs a password; \
//!      USER/PASS needs a password"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use super::{ClientCredentials, Mech};
use crate::{Capability, Mechanism, Secret, Timestamp};

/// A way for a client to log in: a SASL mechanism this crate implements, `USER`/`PASS`, or
/// `APOP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoginMethod {
    /// SASL SCRAM-SHA-256 (RFC 7677): a password proof; the server proves itself too.
    ScramSha256,
    /// SASL OAUTHBEARER (RFC 7628): an OAuth 2.0 bearer token.
    OAuthBearer,
    /// SASL XOAUTH2 (Google, Microsoft): an OAuth 2.0 bearer token.
    XOAuth2,
    /// SASL CRAM-MD5 (RFC 2195): an HMAC-MD5 of a server challenge keyed with the password.
    CramMd5,
    /// SASL PLAIN (RFC 4616): the password, base64-encoded.
    Plain,
    /// `USER` and `PASS` (RFC 1939 §7): the password as a command argument.
    UserPass,
    /// SASL LOGIN (draft-murchison-sasl-login): user name, then password, base64-encoded.
    Login,
    /// `APOP` (RFC 1939 §7): an MD5 digest of the greeting's timestamp and the password.
    Apop,
}

/// What a login method puts on the wire, and so what an eavesdropper on a connection without
/// TLS learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exposure {
    /// Only a proof computed from the password (CRAM-MD5, SCRAM-SHA-256, APOP): the password
    /// itself is not sent, though the exchange may still be attacked offline.
    Proof,
    /// The password itself, readable (PLAIN, LOGIN, USER/PASS: base64 is not encryption).
    Password,
    /// An OAuth bearer token (XOAUTH2, OAUTHBEARER): whoever reads it can use it until it
    /// expires.
    BearerToken,
}

impl Exposure {
    /// Whether a method with this exposure needs TLS, or the user's explicit consent, to be
    /// used: true for [`Exposure::Password`] and [`Exposure::BearerToken`].
    pub const fn needs_tls(self) -> bool {
        !matches!(self, Exposure::Proof)
    }
}

/// The kind of secret a login method needs from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Credential {
    /// A password (or shared secret).
    Password,
    /// An OAuth 2.0 bearer token.
    Token,
}

impl LoginMethod {
    /// The methods [`choose`] considers, most preferred first. [`LoginMethod::Apop`] is not
    /// among them: it is used only when asked for.
    pub const PREFERENCE: [LoginMethod; 7] = [
        LoginMethod::ScramSha256,
        LoginMethod::OAuthBearer,
        LoginMethod::XOAuth2,
        LoginMethod::CramMd5,
        LoginMethod::Plain,
        LoginMethod::UserPass,
        LoginMethod::Login,
    ];

    /// Every method, in [`LoginMethod::PREFERENCE`] order, then [`LoginMethod::Apop`].
    pub const ALL: [LoginMethod; 8] = [
        LoginMethod::ScramSha256,
        LoginMethod::OAuthBearer,
        LoginMethod::XOAuth2,
        LoginMethod::CramMd5,
        LoginMethod::Plain,
        LoginMethod::UserPass,
        LoginMethod::Login,
        LoginMethod::Apop,
    ];

    const fn from_mech(mech: Mech) -> Self {
        match mech {
            Mech::Scram => LoginMethod::ScramSha256,
            Mech::OAuthBearer => LoginMethod::OAuthBearer,
            Mech::XOAuth2 => LoginMethod::XOAuth2,
            Mech::CramMd5 => LoginMethod::CramMd5,
            Mech::Plain => LoginMethod::Plain,
            Mech::Login => LoginMethod::Login,
        }
    }

    const fn mech(self) -> Option<Mech> {
        match self {
            LoginMethod::ScramSha256 => Some(Mech::Scram),
            LoginMethod::OAuthBearer => Some(Mech::OAuthBearer),
            LoginMethod::XOAuth2 => Some(Mech::XOAuth2),
            LoginMethod::CramMd5 => Some(Mech::CramMd5),
            LoginMethod::Plain => Some(Mech::Plain),
            LoginMethod::Login => Some(Mech::Login),
            LoginMethod::UserPass | LoginMethod::Apop => None,
        }
    }

    /// The name for messages: the SASL mechanism name, `USER/PASS` or `APOP`.
    pub const fn name(self) -> &'static str {
        match self.mech() {
            Some(m) => m.name(),
            None => match self {
                LoginMethod::Apop => "APOP",
                _ => "USER/PASS",
            },
        }
    }

    /// How a POP URL names this method in `;AUTH=` (RFC 2384): `USER`, `+APOP`, or the SASL
    /// name; [`Preference::from_url_auth`] reads it back.
    pub const fn url_auth(self) -> &'static str {
        match self {
            LoginMethod::UserPass => "USER",
            LoginMethod::Apop => "+APOP",
            m => m.name(),
        }
    }

    /// The SASL mechanism to send with `AUTH`; `None` for USER/PASS and APOP.
    pub fn mechanism(self) -> Option<Mechanism> {
        // The names are constants that satisfy `Mechanism`'s rules.
        self.mech().and_then(|m| Mechanism::new(m.name()).ok())
    }

    /// The method for a SASL mechanism name, if this crate's client implements it.
    pub fn from_mechanism(mechanism: &Mechanism) -> Option<Self> {
        Mech::from_name(mechanism.as_str()).map(Self::from_mech)
    }

    /// Whether this is a SASL mechanism (sent with `AUTH`).
    pub const fn is_sasl(self) -> bool {
        self.mech().is_some()
    }

    /// The secret the method needs.
    pub const fn credential(self) -> Credential {
        match self {
            LoginMethod::OAuthBearer | LoginMethod::XOAuth2 => Credential::Token,
            _ => Credential::Password,
        }
    }

    /// What the method sends over the connection: the password readable (PLAIN, LOGIN,
    /// USER/PASS), a bearer token (XOAUTH2, OAUTHBEARER), or only a proof (CRAM-MD5,
    /// SCRAM-SHA-256, APOP).
    pub const fn exposure(self) -> Exposure {
        match self {
            LoginMethod::Plain | LoginMethod::Login | LoginMethod::UserPass => Exposure::Password,
            LoginMethod::OAuthBearer | LoginMethod::XOAuth2 => Exposure::BearerToken,
            LoginMethod::ScramSha256 | LoginMethod::CramMd5 | LoginMethod::Apop => Exposure::Proof,
        }
    }

    /// Whether the method sends the password readable on the wire (PLAIN, LOGIN, USER/PASS).
    /// Token methods send no password, but a bearer token: see [`LoginMethod::exposure`].
    pub const fn sends_password_readable(self) -> bool {
        matches!(self.exposure(), Exposure::Password)
    }

    /// The [`ClientCredentials`] for a SASL method: `secret` is the password, or the token for
    /// XOAUTH2 and OAUTHBEARER; `host` and `port` (the server connected to) go into
    /// OAUTHBEARER only. `None` for USER/PASS and APOP, which are not SASL.
    pub fn client_credentials(
        self,
        user: impl Into<String>,
        secret: Secret<String>,
        host: Option<String>,
        port: Option<u16>,
    ) -> Option<ClientCredentials> {
        let user = user.into();
        Some(match self {
            LoginMethod::ScramSha256 => ClientCredentials::ScramSha256 {
                user,
                password: secret,
            },
            LoginMethod::CramMd5 => ClientCredentials::CramMd5 {
                user,
                password: secret,
            },
            LoginMethod::Plain => ClientCredentials::Plain {
                authzid: None,
                user,
                password: secret,
            },
            LoginMethod::Login => ClientCredentials::Login {
                user,
                password: secret,
            },
            LoginMethod::XOAuth2 => ClientCredentials::XOAuth2 {
                user,
                token: secret,
            },
            LoginMethod::OAuthBearer => ClientCredentials::OAuthBearer {
                user,
                token: secret,
                host,
                port,
            },
            LoginMethod::UserPass | LoginMethod::Apop => return None,
        })
    }
}

impl fmt::Display for LoginMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<&ClientCredentials> for LoginMethod {
    fn from(creds: &ClientCredentials) -> Self {
        match creds {
            ClientCredentials::Plain { .. } => LoginMethod::Plain,
            ClientCredentials::Login { .. } => LoginMethod::Login,
            ClientCredentials::CramMd5 { .. } => LoginMethod::CramMd5,
            ClientCredentials::ScramSha256 { .. } => LoginMethod::ScramSha256,
            ClientCredentials::XOAuth2 { .. } => LoginMethod::XOAuth2,
            ClientCredentials::OAuthBearer { .. } => LoginMethod::OAuthBearer,
        }
    }
}

/// What the server offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    /// The mechanisms of the `SASL` capability, as sent (ones this crate does not implement
    /// included: they are reported as such).
    pub sasl: Vec<Mechanism>,
    /// Whether `USER`/`PASS` is available (the `USER` capability).
    pub user: bool,
    /// Whether APOP is available (the greeting carried a timestamp).
    pub apop: bool,
}

impl Offer {
    /// The offer of a server from its `CAPA` reply (`None`: it has none) and its greeting's
    /// APOP timestamp. Every `SASL` line counts. A server without `CAPA` predates RFC 2449 and
    /// is taken to accept `USER`/`PASS`; one with `CAPA` accepts it only if it lists `USER`.
    pub fn from_capabilities(
        capabilities: Option<&[Capability]>,
        apop_timestamp: Option<&Timestamp>,
    ) -> Self {
        let Some(caps) = capabilities else {
            return Offer {
                sasl: Vec::new(),
                user: true,
                apop: apop_timestamp.is_some(),
            };
        };
        let sasl = caps
            .iter()
            .filter_map(|c| match c {
                Capability::Sasl(m) => Some(m.iter().cloned()),
                _ => None,
            })
            .flatten()
            .collect();
        Offer {
            sasl,
            user: caps.contains(&Capability::User),
            apop: apop_timestamp.is_some(),
        }
    }

    /// Whether the server offers `method`.
    pub fn offers(&self, method: LoginMethod) -> bool {
        match method {
            LoginMethod::UserPass => self.user,
            LoginMethod::Apop => self.apop,
            m => self
                .sasl
                .iter()
                .any(|s| LoginMethod::from_mechanism(s) == Some(m)),
        }
    }

    /// Everything offered, each once: the SASL mechanisms in the server's order, then
    /// USER/PASS and APOP.
    pub fn candidates(&self) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = Vec::new();
        for m in &self.sasl {
            let c = match LoginMethod::from_mechanism(m) {
                Some(method) => Candidate::Method(method),
                None => Candidate::Unsupported(m.clone()),
            };
            if !out.contains(&c) {
                out.push(c);
            }
        }
        if self.user {
            out.push(Candidate::Method(LoginMethod::UserPass));
        }
        if self.apop {
            out.push(Candidate::Method(LoginMethod::Apop));
        }
        out
    }
}

/// What the client has to log in with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Have {
    /// A password.
    pub password: bool,
    /// An OAuth 2.0 bearer token.
    pub token: bool,
}

impl Have {
    /// A password only.
    pub const PASSWORD: Have = Have {
        password: true,
        token: false,
    };
    /// An OAuth token only.
    pub const TOKEN: Have = Have {
        password: false,
        token: true,
    };
    /// Both a password and an OAuth token.
    pub const BOTH: Have = Have {
        password: true,
        token: true,
    };

    /// Whether the client has the kind of secret `credential`.
    pub const fn has(self, credential: Credential) -> bool {
        match credential {
            Credential::Password => self.password,
            Credential::Token => self.token,
        }
    }
}

/// The connection the login goes over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Channel {
    /// Whether the connection is encrypted (implicit TLS, or after `STLS`).
    pub tls: bool,
    /// The user's explicit consent to send a readable password or a bearer token without TLS.
    /// Never a default: set it only from an explicit option.
    pub allow_plaintext: bool,
}

impl Channel {
    /// An encrypted connection.
    pub const fn tls() -> Self {
        Channel {
            tls: true,
            allow_plaintext: false,
        }
    }

    /// An unencrypted connection, without consent to expose secrets.
    pub const fn plaintext() -> Self {
        Channel {
            tls: false,
            allow_plaintext: false,
        }
    }

    /// An unencrypted connection over which the user explicitly allowed readable passwords
    /// and bearer tokens.
    pub const fn plaintext_allowed() -> Self {
        Channel {
            tls: false,
            allow_plaintext: true,
        }
    }

    /// Whether a method with `exposure` may be used over this channel.
    pub const fn permits(self, exposure: Exposure) -> bool {
        self.tls || self.allow_plaintext || !exposure.needs_tls()
    }
}

/// Which method the caller wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Preference {
    /// The most preferred acceptable method (never APOP).
    #[default]
    Auto,
    /// This method and no other (`;AUTH=` in a POP URL). The only way to get APOP.
    Forced(LoginMethod),
}

impl Preference {
    /// The `;AUTH=` value of a POP URL (RFC 2384 §3), in any case: `*` is
    /// [`Preference::Auto`], `+APOP` is APOP, a SASL mechanism this crate implements is that
    /// mechanism, and `USER` (an extension of this crate) is USER/PASS. Anything else is
    /// [`ChoiceError::UnknownMethod`].
    pub fn from_url_auth(value: &str) -> Result<Self, ChoiceError> {
        let upper = value.to_ascii_uppercase();
        let method = match upper.as_str() {
            "*" => return Ok(Preference::Auto),
            "+APOP" => LoginMethod::Apop,
            "USER" => LoginMethod::UserPass,
            other => Mechanism::new(other)
                .ok()
                .as_ref()
                .and_then(LoginMethod::from_mechanism)
                .ok_or_else(|| ChoiceError::UnknownMethod(value.to_string()))?,
        };
        Ok(Preference::Forced(method))
    }
}

/// Something the server offers: a method this crate can use, or a SASL mechanism it does not
/// implement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Candidate {
    /// A method this crate implements.
    Method(LoginMethod),
    /// A SASL mechanism this crate does not implement (GSSAPI, DIGEST-MD5, ...).
    Unsupported(Mechanism),
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Candidate::Method(m) => f.write_str(m.name()),
            Candidate::Unsupported(m) => f.write_str(m.as_str()),
        }
    }
}

/// Why a method was not chosen. Its `Display` is a phrase that follows the method's name:
/// "PLAIN needs TLS (it sends the password readable)".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// A SASL mechanism this crate does not implement.
    NotImplemented,
    /// The server does not offer it (for a forced method).
    NotOffered,
    /// It needs a password and the client has none.
    NeedsPassword,
    /// It needs an OAuth token and the client has none.
    NeedsToken,
    /// It would expose a secret (what it sends) on a connection without TLS, and the user did
    /// not allow that.
    NeedsTls(Exposure),
    /// APOP: used only when asked for.
    OnlyWhenAsked,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::NotImplemented => "is not implemented",
            Refusal::NotOffered => "is not offered by the server",
            Refusal::NeedsPassword => "needs a password",
            Refusal::NeedsToken => "needs an OAuth token",
            Refusal::NeedsTls(Exposure::Password) => "needs TLS (it sends the password readable)",
            Refusal::NeedsTls(Exposure::BearerToken) => {
                "needs TLS (it sends the bearer token readable)"
            }
            Refusal::NeedsTls(Exposure::Proof) => "needs TLS",
            Refusal::OnlyWhenAsked => "is used only when asked for",
        })
    }
}

/// An offered method that was not chosen, and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Refused {
    /// What the server offered.
    pub candidate: Candidate,
    /// Why it was refused.
    pub reason: Refusal,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.candidate, self.reason)
    }
}

/// The server's offer ranked: what can be used, best first, and what cannot, with reasons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranking {
    /// The acceptable methods, most preferred first; [`choose`] takes the first.
    pub usable: Vec<LoginMethod>,
    /// Every other offered method: those this crate implements in [`LoginMethod::ALL`]
    /// order, then the unsupported SASL mechanisms in the server's order.
    pub refused: Vec<Refused>,
}

/// Why no login method could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChoiceError {
    /// Nothing offered is acceptable; `refused` lists everything offered, each with its
    /// reason (empty: the server offers no login method at all).
    #[error("{}", no_acceptable(refused))]
    NoneAcceptable {
        /// Each offered method and why it was refused.
        refused: Vec<Refused>,
    },
    /// The forced method is not offered by the server.
    #[error(
        "{method} was asked for, but the server does not offer it ({})",
        offers(offered)
    )]
    ForcedNotOffered {
        /// The forced method.
        method: LoginMethod,
        /// What the server does offer.
        offered: Vec<Candidate>,
    },
    /// The forced method is offered but cannot be used with these credentials on this
    /// channel.
    #[error("{method} was asked for, but it {reason}")]
    ForcedUnusable {
        /// The forced method.
        method: LoginMethod,
        /// Why it cannot be used.
        reason: Refusal,
    },
    /// A method name that this crate does not know (from [`Preference::from_url_auth`]).
    #[error(
        "unknown login method {0:?} (known: SCRAM-SHA-256, CRAM-MD5, PLAIN, LOGIN, XOAUTH2, OAUTHBEARER, USER, +APOP)"
    )]
    UnknownMethod(String),
}

fn no_acceptable(refused: &[Refused]) -> String {
    if refused.is_empty() {
        return "no acceptable login method: the server offers none".into();
    }
    let reasons: Vec<String> = refused.iter().map(Refused::to_string).collect();
    format!("no acceptable login method: {}", reasons.join("; "))
}

fn offers(offered: &[Candidate]) -> String {
    if offered.is_empty() {
        return "it offers no login method".into();
    }
    let names: Vec<String> = offered.iter().map(Candidate::to_string).collect();
    format!("it offers {}", names.join(", "))
}

/// Why `method` cannot be used with `have` over `channel` (whether it is offered aside).
fn unusable(method: LoginMethod, have: Have, channel: Channel) -> Option<Refusal> {
    if !have.has(method.credential()) {
        return Some(match method.credential() {
            Credential::Password => Refusal::NeedsPassword,
            Credential::Token => Refusal::NeedsToken,
        });
    }
    let exposure = method.exposure();
    (!channel.permits(exposure)).then_some(Refusal::NeedsTls(exposure))
}

/// Ranks what `offer` holds for a client that has `have`, over `channel`: see the
/// [module docs](self) for the rules.
pub fn rank(offer: &Offer, have: Have, channel: Channel) -> Ranking {
    let mut ranking = Ranking::default();
    for method in LoginMethod::ALL {
        if !offer.offers(method) {
            continue;
        }
        let reason = if method == LoginMethod::Apop {
            Some(Refusal::OnlyWhenAsked)
        } else {
            unusable(method, have, channel)
        };
        match reason {
            None => ranking.usable.push(method),
            Some(reason) => ranking.refused.push(Refused {
                candidate: Candidate::Method(method),
                reason,
            }),
        }
    }
    for candidate in offer.candidates() {
        if matches!(candidate, Candidate::Unsupported(_)) {
            ranking.refused.push(Refused {
                candidate,
                reason: Refusal::NotImplemented,
            });
        }
    }
    ranking
}

/// The method to log in with: the most preferred acceptable one, or the forced one if it is
/// offered and usable. See the [module docs](self) for the rules.
pub fn choose(
    offer: &Offer,
    have: Have,
    channel: Channel,
    preference: Preference,
) -> Result<LoginMethod, ChoiceError> {
    match preference {
        Preference::Auto => {
            let ranking = rank(offer, have, channel);
            ranking
                .usable
                .first()
                .copied()
                .ok_or(ChoiceError::NoneAcceptable {
                    refused: ranking.refused,
                })
        }
        Preference::Forced(method) => {
            if !offer.offers(method) {
                return Err(ChoiceError::ForcedNotOffered {
                    method,
                    offered: offer.candidates(),
                });
            }
            match unusable(method, have, channel) {
                Some(reason) => Err(ChoiceError::ForcedUnusable { method, reason }),
                None => Ok(method),
            }
        }
    }
}
