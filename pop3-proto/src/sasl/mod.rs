//! SASL mechanisms (RFC 4422, RFC 5034 for POP3) as sans-IO step exchanges, client and server,
//! plus the APOP digest (RFC 1939 §7).
//!
//! No I/O, no clocks, no randomness: every nonce comes from the caller, so every exchange is
//! deterministic and testable against the RFC vectors. Data in and out is *decoded*: the codec
//! does the base64 of the wire lines, and `*` (cancel) is handled by the state machines.
//!
//! # Public API
//!
//! Digests:
//! - [`apop_digest`]`(timestamp, secret) -> ApopDigest`: `MD5(timestamp ‖ secret)`.
//! - [`verify_apop`]`(timestamp, secret, digest) -> bool`: constant time.
//! - [`cram_md5_digest`]`(secret, challenge) -> [u8; 16]`: HMAC-MD5 (RFC 2195);
//!   [`verify_cram_md5`] compares in constant time.
//!
//! Client ([`ClientExchange`]), mechanisms PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256, XOAUTH2,
//! OAUTHBEARER chosen by the [`ClientCredentials`] variant:
//! - `ClientExchange::new(creds, client_nonce)`: infallible; invalid credentials (a NUL in a
//!   PLAIN part, a failed SASLprep, a bad SCRAM nonce...) make `initial_response` return
//!   `None` and `step`/`finish` return the error. [`ClientExchange::try_new`] reports it at once.
//! - `mechanism() -> Mechanism`.
//! - `initial_response() -> Option<Vec<u8>>`: `Some` once for PLAIN, SCRAM-SHA-256, XOAUTH2
//!   and OAUTHBEARER; taking it marks it sent. If the line would be too long (RFC 5034 §4),
//!   call `defer_initial_response()`: the first (empty) challenge is then answered with it.
//! - `step(challenge) -> Result<Vec<u8>, SaslError>`: the response to a challenge. An `Err`
//!   means: cancel with `*`, or drop the connection, as the client machine
//!   ([`crate::client::Client`]) does: it ends the session and sends nothing more.
//! - `finish() -> Result<(), SaslError>`: call on `+OK`. For SCRAM it fails unless the server
//!   signature arrived and verified; for XOAUTH2/OAUTHBEARER it fails after an error challenge.
//! - `server_error() -> Option<&str>`: the JSON of an XOAUTH2/OAUTHBEARER error challenge (the
//!   client answered it with an empty response, or `0x01` for OAUTHBEARER, RFC 7628 §3.2.3).
//!
//! Server ([`ServerExchange`]):
//! - `ServerExchange::new(&mechanism, ServerParams) -> Result<Self, SaslError>`;
//!   [`ServerExchange::supported`] lists the mechanism names.
//! - `start(initial_response: Option<&[u8]>) -> ServerStep`, then `respond(response)` for each
//!   client line and `answer(CredentialAnswer)` for each [`ServerStep::Check`].
//! - [`ServerStep`]: `Challenge(bytes)` to send as `+ base64`, `Check(CredentialRequest)` for
//!   the application, `Success(Identity)` (`+OK`), `Failure(SaslFailure)` (`-ERR`).
//! - [`CredentialRequest`] → [`CredentialAnswer`]: `Password` (PLAIN, LOGIN) → `Verified`;
//!   `CramMd5` → `Verified`; `Scram { user }` → `Scram(Option<ScramCredentials>)` (`None`: an
//!   unknown user, the exchange goes on with fake credentials and fails at the proof, exactly
//!   like a wrong password); `Token` (XOAUTH2, OAUTHBEARER) → `Token(Result<(), OAuthError>)`
//!   (`Err`: the JSON error challenge, then failure after the client's dummy response).
//!
//! Choosing the client's method from what the server offers: [`choose`].
//!
//! Passwords and tokens travel in [`Secret`] (zeroized on drop); SCRAM keys are zeroized too.
//! Bad input from the peer is a typed error or failure, never a panic.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

use crate::{ApopDigest, Timestamp};

pub mod choose;
mod client;
mod oauth;
mod scram;
mod server;

pub use client::{ClientCredentials, ClientExchange};
pub use oauth::OAuthError;
pub use scram::{SCRAM_MAX_ITERATIONS, SCRAM_MIN_ITERATIONS, ScramCredentials};
pub use server::{
    CredentialAnswer, CredentialRequest, FailureReason, Identity, SaslFailure, ServerExchange,
    ServerParams, ServerStep,
};

#[cfg(doc)]
use crate::Secret;

/// The mechanisms implemented here, shared by both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mech {
    Plain,
    Login,
    CramMd5,
    Scram,
    XOAuth2,
    OAuthBearer,
}

impl Mech {
    /// Every mechanism, strongest first.
    const ALL: [Mech; 6] = [
        Mech::Scram,
        Mech::OAuthBearer,
        Mech::XOAuth2,
        Mech::CramMd5,
        Mech::Plain,
        Mech::Login,
    ];

    const fn name(self) -> &'static str {
        match self {
            Mech::Plain => "PLAIN",
            Mech::Login => "LOGIN",
            Mech::CramMd5 => "CRAM-MD5",
            Mech::Scram => "SCRAM-SHA-256",
            Mech::XOAuth2 => "XOAUTH2",
            Mech::OAuthBearer => "OAUTHBEARER",
        }
    }

    fn from_name(name: &str) -> Option<Mech> {
        Mech::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// A client-side SASL error, or invalid parameters for an exchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaslError {
    /// The mechanism is not implemented here.
    #[error("unsupported SASL mechanism")]
    UnsupportedMechanism,
    /// The credentials cannot be sent with this mechanism (the text says why).
    #[error("invalid credentials: {0}")]
    InvalidCredentials(&'static str),
    /// Invalid server parameters (the text says why).
    #[error("invalid SASL parameters: {0}")]
    InvalidParams(&'static str),
    /// A challenge arrived when the mechanism expects none.
    #[error("unexpected SASL challenge")]
    UnexpectedChallenge,
    /// The server's challenge does not parse (the text says why).
    #[error("malformed SASL challenge: {0}")]
    MalformedChallenge(&'static str),
    /// The SCRAM server nonce does not extend the client nonce.
    #[error("SCRAM server nonce does not extend the client nonce")]
    NonceMismatch,
    /// The SCRAM iteration count is below 4096 or above the client's bound.
    #[error("SCRAM iteration count {0} not accepted")]
    IterationCount(u32),
    /// The SCRAM server signature did not verify: the server does not know the password.
    #[error("SCRAM server signature did not verify")]
    ServerSignature,
    /// The SCRAM server sent `e=`: its error value.
    #[error("SCRAM server error: {0}")]
    ServerError(String),
    /// The server rejected the OAuth token; its JSON error.
    #[error("OAuth token rejected: {0}")]
    OAuthRejected(String),
    /// `+OK` arrived before the exchange was complete.
    #[error("SASL exchange incomplete")]
    Incomplete,
}

/// `MD5(timestamp ‖ secret)` (RFC 1939 §7).
pub fn apop_digest(timestamp: &Timestamp, secret: &[u8]) -> ApopDigest {
    use md5::Digest as _;
    let mut h = md5::Md5::new();
    h.update(timestamp.as_bytes());
    h.update(secret);
    ApopDigest(h.finalize().into())
}

/// Whether `digest` is the APOP digest of `timestamp` and `secret`, compared in constant time.
pub fn verify_apop(timestamp: &Timestamp, secret: &[u8], digest: &ApopDigest) -> bool {
    ct_eq(&apop_digest(timestamp, secret).0, &digest.0)
}

/// HMAC-MD5 keyed with `secret` over `challenge` (RFC 2195, RFC 2104).
pub fn cram_md5_digest(secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    // HMAC takes keys of any length, so this never fails; the fallback keeps it panic-free.
    let Ok(mut mac) = <hmac::Hmac<md5::Md5> as KeyInit>::new_from_slice(secret) else {
        return [0; 16];
    };
    mac.update(challenge);
    mac.finalize().into_bytes().into()
}

/// Whether `digest` is the CRAM-MD5 digest of `challenge` under `secret`, in constant time.
pub fn verify_cram_md5(secret: &[u8], challenge: &[u8], digest: &[u8; 16]) -> bool {
    ct_eq(&cram_md5_digest(secret, challenge), digest)
}

/// Constant-time equality (the length is not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

pub(crate) fn b64_encode(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Strict base64 (canonical padding, no stray characters).
pub(crate) fn b64_decode(data: &[u8]) -> Option<Vec<u8>> {
    STANDARD.decode(data).ok()
}

/// SASLprep (RFC 4013); `None` for prohibited characters or an empty result.
pub(crate) fn saslprep(s: &str) -> Option<String> {
    match stringprep::saslprep(s) {
        Ok(p) if !p.is_empty() => Some(p.into_owned()),
        _ => None,
    }
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(crate::types::HEX[usize::from(b >> 4)]));
        s.push(char::from(crate::types::HEX[usize::from(b & 0xf)]));
    }
    s
}

/// Parses hexadecimal of either case into exactly `N` bytes.
pub(crate) fn parse_hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}
