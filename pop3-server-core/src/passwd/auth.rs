//! The passwd-file as an [`Authenticator`] backend. Each mechanism works for the users whose
//! stored scheme allows it (APOP and CRAM-MD5 need the plaintext or Dovecot's CRAM-MD5
//! contexts, SCRAM needs the plaintext or stored SCRAM keys); for the others it fails exactly
//! like a wrong password.
//!
//! Password checks against costly schemes, and SCRAM derivation from a `{PLAIN}` password,
//! run on the file's [`Offload`](crate::offload::Offload) (see
//! [`PasswdFile::with_offload`]). If the offloader fails (the job panicked, or the pool was
//! shut down) the answer is [`StoreError::Temporary`], never a verdict on the password.

use pop3_proto::sasl::{CredentialAnswer, CredentialRequest, OAuthError, ScramCredentials};
use pop3_proto::{ApopDigest, Mechanism, Timestamp};

use super::{AuthKind, PasswdEntry, PasswdFile};
use crate::backend::{Authenticator, StoreError};
use crate::offload::OffloadError;

/// The SASL mechanisms a passwd-format store can serve, given whether at least one user's
/// stored scheme allows each kind of authentication ([`PasswdEntry::supports`]): SCRAM-SHA-256
/// and CRAM-MD5 only when some user can use them, then PLAIN and LOGIN. For stores other
/// than [`PasswdFile`] that keep passwd-file password strings (a database column).
pub fn mechanisms(any: impl Fn(AuthKind) -> bool) -> Vec<Mechanism> {
    let mut names = Vec::new();
    if any(AuthKind::ScramSha256) {
        names.push("SCRAM-SHA-256");
    }
    if any(AuthKind::CramMd5) {
        names.push("CRAM-MD5");
    }
    names.extend(["PLAIN", "LOGIN"]);
    names
        .iter()
        .filter_map(|m| Mechanism::new(*m).ok())
        .collect()
}

/// Answers a SASL credential check against one user's entry (`None`: unknown user), on the
/// calling thread: the [`Authenticator::sasl`] of a passwd-format store. A password check
/// costs what the entry's scheme costs (run it off an async worker when
/// [`Scheme::is_costly`](super::Scheme::is_costly)), and an unknown user answers `false` at
/// once: a caller that must hide which users exist verifies a decoy entry first, as
/// [`PasswdFile`] does. A user whose scheme cannot serve the mechanism fails like a wrong
/// password; SCRAM for such a user (or an unknown one) answers `None`, so the exchange goes
/// on with fake credentials and fails at its end.
pub fn sasl_answer(entry: Option<&PasswdEntry>, request: &CredentialRequest) -> CredentialAnswer {
    match request {
        CredentialRequest::Password { password, .. } => CredentialAnswer::Verified(
            entry.is_some_and(|e| e.verify_password(password.expose_secret().as_bytes())),
        ),
        CredentialRequest::CramMd5 {
            challenge, digest, ..
        } => {
            CredentialAnswer::Verified(entry.is_some_and(|e| e.cram_md5_verify(challenge, digest)))
        }
        CredentialRequest::Scram { .. } => {
            CredentialAnswer::Scram(entry.and_then(PasswdEntry::scram_sha256).map(|s| {
                ScramCredentials {
                    salt: s.salt.clone(),
                    iterations: s.iterations,
                    stored_key: s.stored_key,
                    server_key: s.server_key,
                }
            }))
        }
        // A passwd-format store holds no OAuth tokens.
        CredentialRequest::Token { .. } => {
            CredentialAnswer::Token(Err(OAuthError::new("invalid_token")))
        }
        _ => CredentialAnswer::Verified(false),
    }
}

/// An offloader failure, as the session reports it (`-ERR [SYS/TEMP]`).
fn unavailable(error: OffloadError) -> StoreError {
    StoreError::Temporary(format!("password check failed: {error}"))
}

impl Authenticator for PasswdFile {
    async fn verify_password(&self, user: &str, password: &[u8]) -> Result<bool, StoreError> {
        self.verify_password_offloaded(user, password)
            .await
            .map_err(unavailable)
    }

    async fn verify_apop(
        &self,
        user: &str,
        timestamp: &Timestamp,
        digest: &ApopDigest,
    ) -> Result<bool, StoreError> {
        Ok(self
            .get(user)
            .is_some_and(|e| e.verify_apop(timestamp, digest)))
    }

    async fn sasl(&self, request: &CredentialRequest) -> Result<CredentialAnswer, StoreError> {
        Ok(match request {
            CredentialRequest::Password { user, password, .. } => CredentialAnswer::Verified(
                self.verify_password_offloaded(user, password.expose_secret().as_bytes())
                    .await
                    .map_err(unavailable)?,
            ),
            CredentialRequest::CramMd5 { user, .. } => sasl_answer(self.get(user), request),
            // None for an unknown user (or one whose scheme cannot do SCRAM): the exchange
            // goes on with fake credentials and fails like a wrong password.
            CredentialRequest::Scram { user } => CredentialAnswer::Scram(
                self.scram_sha256_offloaded(user)
                    .await
                    .map_err(unavailable)?
                    .map(|s| ScramCredentials {
                        salt: s.salt.clone(),
                        iterations: s.iterations,
                        stored_key: s.stored_key,
                        server_key: s.server_key,
                    }),
            ),
            other => sasl_answer(None, other),
        })
    }

    fn mechanisms(&self) -> Vec<Mechanism> {
        mechanisms(|k: AuthKind| self.entries().any(|e| e.supports(k)))
    }

    fn apop(&self) -> bool {
        self.entries().any(|e| e.supports(AuthKind::Apop))
    }
}
