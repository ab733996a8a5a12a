//! SCRAM-SHA-256 primitives (RFC 5802, RFC 7677): key derivation, message attributes,
//! username escaping.

use std::fmt;

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use super::{SaslError, b64_encode};

type HmacSha256 = hmac::Hmac<Sha256>;

/// The smallest iteration count a client accepts (RFC 7677 §4: at least 4096).
pub const SCRAM_MIN_ITERATIONS: u32 = 4096;

/// The largest iteration count a client accepts: a bound on the work a hostile server can make
/// the client do (600 000 is OWASP's 2023 advice for PBKDF2-HMAC-SHA256; this leaves room).
pub const SCRAM_MAX_ITERATIONS: u32 = 10_000_000;

/// What a SCRAM-SHA-256 server stores for a user (RFC 5802 §3): the salt, the iteration count,
/// `StoredKey = H(HMAC(SaltedPassword, "Client Key"))` and
/// `ServerKey = HMAC(SaltedPassword, "Server Key")`.
///
/// The keys are zeroized on drop and hidden from `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    /// The salt.
    pub salt: Vec<u8>,
    /// The PBKDF2 iteration count.
    pub iterations: u32,
    /// `StoredKey`.
    pub stored_key: [u8; 32],
    /// `ServerKey`.
    pub server_key: [u8; 32],
}

impl ScramCredentials {
    /// Derives the credentials from a password that is already prepared (SASLprep, RFC 4013),
    /// as the client prepares it. See [`ScramCredentials::derive_from_password`] to prepare it
    /// here.
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> Self {
        let keys = ScramKeys::derive(password, salt, iterations);
        ScramCredentials {
            salt: salt.to_vec(),
            iterations,
            stored_key: keys.stored_key,
            server_key: keys.server_key,
        }
    }

    /// SASLprep-s `password` (stored-string rules, RFC 4013), then derives the credentials.
    pub fn derive_from_password(
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, SaslError> {
        let mut prepared =
            super::saslprep(password).ok_or(SaslError::InvalidCredentials("password SASLprep"))?;
        let creds = Self::derive(prepared.as_bytes(), salt, iterations);
        prepared.zeroize();
        Ok(creds)
    }
}

impl Drop for ScramCredentials {
    fn drop(&mut self) {
        self.stored_key.zeroize();
        self.server_key.zeroize();
    }
}

impl fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("salt", &b64_encode(&self.salt))
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// The client-side keys: everything derived from `SaltedPassword`.
pub(crate) struct ScramKeys {
    pub(crate) client_key: [u8; 32],
    pub(crate) stored_key: [u8; 32],
    pub(crate) server_key: [u8; 32],
}

impl ScramKeys {
    pub(crate) fn derive(password: &[u8], salt: &[u8], iterations: u32) -> Self {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut salted);
        let client_key = hmac_sha256(&salted, &[b"Client Key"]);
        let server_key = hmac_sha256(&salted, &[b"Server Key"]);
        salted.zeroize();
        ScramKeys {
            client_key,
            stored_key: sha256(&client_key),
            server_key,
        }
    }
}

impl Drop for ScramKeys {
    fn drop(&mut self) {
        self.client_key.zeroize();
        self.stored_key.zeroize();
        self.server_key.zeroize();
    }
}

/// HMAC-SHA-256 of the concatenation of `parts`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length, so this never fails; the fallback keeps it panic-free.
    let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(key) else {
        return [0; 32];
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// `AuthMessage = client-first-message-bare "," server-first-message "," client-final-message-without-proof`.
pub(crate) fn auth_message(
    client_first_bare: &[u8],
    server_first: &[u8],
    final_wo: &[u8],
) -> Vec<u8> {
    let mut m =
        Vec::with_capacity(client_first_bare.len() + server_first.len() + final_wo.len() + 2);
    m.extend_from_slice(client_first_bare);
    m.push(b',');
    m.extend_from_slice(server_first);
    m.push(b',');
    m.extend_from_slice(final_wo);
    m
}

/// Escapes a SASLprep-ed name for `n=` / `a=` (RFC 5802 §5.1: `,` → `=2C`, `=` → `=3D`).
pub(crate) fn escape_saslname(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            ',' => out.push_str("=2C"),
            '=' => out.push_str("=3D"),
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`escape_saslname`]; any other `=` sequence, or a raw `,`, is malformed.
pub(crate) fn unescape_saslname(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(['=', ',']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("=2C") {
            out.push(',');
        } else if tail.starts_with("=3D") {
            out.push('=');
        } else {
            return None;
        }
        rest = &tail[3..];
    }
    out.push_str(rest);
    Some(out)
}

/// A SCRAM nonce: printable ASCII except `,` (RFC 5802 §7).
pub(crate) fn is_nonce(n: &[u8]) -> bool {
    !n.is_empty() && n.iter().all(|&b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Splits `attr=value` with a one-letter attribute name.
pub(crate) fn attr(part: &str) -> Option<(u8, &str)> {
    let b = part.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b'=' {
        Some((b[0], &part[2..]))
    } else {
        None
    }
}

/// The parsed server-first-message (RFC 5802 §7).
pub(crate) struct ServerFirst<'a> {
    pub(crate) nonce: &'a str,
    pub(crate) salt: Vec<u8>,
    pub(crate) iterations: u32,
}

pub(crate) fn parse_server_first(msg: &str) -> Result<ServerFirst<'_>, SaslError> {
    let bad = SaslError::MalformedChallenge;
    let mut parts = msg.split(',');
    let first = parts.next().ok_or(bad("empty server-first"))?;
    if first.starts_with("m=") {
        return Err(bad("unsupported mandatory extension"));
    }
    let nonce = match attr(first) {
        Some((b'r', n)) if is_nonce(n.as_bytes()) => n,
        _ => return Err(bad("server-first: no nonce")),
    };
    let salt = match parts.next().and_then(attr) {
        Some((b's', s)) => super::b64_decode(s.as_bytes()).ok_or(bad("server-first: bad salt"))?,
        _ => return Err(bad("server-first: no salt")),
    };
    let iterations = match parts.next().and_then(attr) {
        Some((b'i', i)) => parse_u32(i).ok_or(bad("server-first: bad iteration count"))?,
        _ => return Err(bad("server-first: no iteration count")),
    };
    // Extensions may follow; each must still look like an attribute.
    if parts.any(|p| attr(p).is_none()) {
        return Err(bad("server-first: trailing garbage"));
    }
    Ok(ServerFirst {
        nonce,
        salt,
        iterations,
    })
}

/// A positive decimal number without sign or leading zero.
pub(crate) fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

pub(crate) fn xor32(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = x ^ y;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saslname_escaping_round_trips() {
        let raw = "a,b=c==,";
        let esc = escape_saslname(raw);
        assert_eq!(esc, "a=2Cb=3Dc=3D=3D=2C");
        assert_eq!(unescape_saslname(&esc).as_deref(), Some(raw));
        assert_eq!(unescape_saslname("a=2c"), None);
        assert_eq!(unescape_saslname("a="), None);
        assert_eq!(unescape_saslname("a,b"), None);
    }

    #[test]
    fn iteration_numbers() {
        assert_eq!(parse_u32("4096"), Some(4096));
        assert_eq!(parse_u32("04096"), None);
        assert_eq!(parse_u32("-1"), None);
        assert_eq!(parse_u32("99999999999"), None);
    }
}
