//! The passwd-file as an [`Authenticator`] backend. Each mechanism works for the users whose
//! stored scheme allows it (APOP and CRAM-MD5 need the plaintext or Dovecot's CRAM-MD5
//! contexts, SCRAM needs the plaintext or stored SCRAM keys); for the others it fails exactly
//! like a wrong password.
//!
//! Password checks against costly schemes, and SCRAM derivation from a `{PLAIN}` password,
//! run on the file's [`Offload`](crate::offload::Offload) (see
//! [`PasswdFile::with_offload`]). If the offloader fails (the job panicked, or the pool was
//! shut down) the answer is [`StoreError::Temporary`], never a verdict on the password.

use pop3_proto::sasl::{
    CredentialAnswer, CredentialRequest, OAuthError, ScramCredentials, verify_apop,
};
use pop3_proto::{ApopDigest, Mechanism, Timestamp};

use super::{AuthKind, PasswdFile};
use crate::backend::{Authenticator, StoreError};
use crate::offload::OffloadError;

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
            .and_then(|e| e.plaintext())
            .is_some_and(|secret| verify_apop(timestamp, secret, digest)))
    }

    async fn sasl(&self, request: &CredentialRequest) -> Result<CredentialAnswer, StoreError> {
        Ok(match request {
            CredentialRequest::Password { user, password, .. } => CredentialAnswer::Verified(
                self.verify_password_offloaded(user, password.expose_secret().as_bytes())
                    .await
                    .map_err(unavailable)?,
            ),
            CredentialRequest::CramMd5 {
                user,
                challenge,
                digest,
            } => CredentialAnswer::Verified(
                self.get(user)
                    .is_some_and(|e| e.cram_md5_verify(challenge, digest)),
            ),
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
            // A passwd-file holds no OAuth tokens.
            CredentialRequest::Token { .. } => {
                CredentialAnswer::Token(Err(OAuthError::new("invalid_token")))
            }
            _ => CredentialAnswer::Verified(false),
        })
    }

    fn mechanisms(&self) -> Vec<Mechanism> {
        let any = |k: AuthKind| self.entries().any(|e| e.supports(k));
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

    fn apop(&self) -> bool {
        self.entries().any(|e| e.supports(AuthKind::Apop))
    }
}
