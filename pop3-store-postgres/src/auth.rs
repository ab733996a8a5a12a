//! The store as an [`Authenticator`]: the `users` table, whose `password` column holds
//! passwd-file password strings, checked by `pop3-server-core`'s passwd code (every scheme
//! of a Dovecot passwd-file: `{PLAIN}`, `{SHA512-CRYPT}`, `{ARGON2ID}`, `{BLF-CRYPT}`,
//! `{CRAM-MD5}`, `{SCRAM-SHA-256}`...).
//!
//! A disabled user, an unknown one and a row whose password string cannot be parsed all fail
//! exactly like a wrong password. So that the time taken does not tell them apart either, a
//! password for a user without a usable entry is checked against a decoy (the last entry of a
//! costly scheme seen, or a SHA512-CRYPT hash at first), result discarded. Costly checks run
//! on the runtime's blocking pool.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use pop3_proto::sasl::{CredentialAnswer, CredentialRequest};
use pop3_proto::{ApopDigest, Mechanism, Timestamp};
use pop3_server_core::backend::{Authenticator, StoreError};
use pop3_server_core::passwd::{self, AuthKind, PasswdEntry, Scheme};

use zeroize::Zeroizing;

use crate::{PgStore, Shared, temporary};

/// Bits of [`Shared::caps`]: some enabled user's scheme allows this.
pub(crate) struct Caps;

impl Caps {
    const SCRAM: u8 = 1;
    const CRAM: u8 = 2;
    const APOP: u8 = 4;
}

/// The decoy used before any costly entry was seen: `{SHA512-CRYPT}` of a throw-away
/// password, Dovecot's default scheme.
const DEFAULT_DECOY: &str = "{SHA512-CRYPT}$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1";

/// Re-reads which schemes the enabled users have (see [`PgStore::refresh_mechanisms`]).
pub(crate) async fn refresh_caps(shared: &Shared) -> Result<(), StoreError> {
    let client = shared.client().await?;
    let rows = client
        .query(
            "SELECT DISTINCT upper(split_part(substring(password FROM '^\\{([^}]*)\\}'), '.', 1)) \
             FROM users WHERE enabled",
            &[],
        )
        .await
        .map_err(temporary)?;
    let mut caps = 0;
    for row in rows {
        let scheme: Option<String> = row.get(0);
        caps |= match scheme.as_deref() {
            Some("PLAIN" | "CLEAR" | "CLEARTEXT") => Caps::SCRAM | Caps::CRAM | Caps::APOP,
            Some("CRAM-MD5" | "HMAC-MD5") => Caps::CRAM,
            Some("SCRAM-SHA-256") => Caps::SCRAM,
            _ => 0,
        };
    }
    shared.caps.store(caps, Ordering::Relaxed);
    Ok(())
}

/// `user`'s entry: `None` if unknown, disabled, or not parseable.
async fn entry(shared: &Shared, user: &str) -> Result<Option<Arc<PasswdEntry>>, StoreError> {
    let client = shared.client().await?;
    // Prepared once per pooled connection: a login costs one round trip.
    let statement = client
        .prepare_cached("SELECT password FROM users WHERE name = $1 AND enabled")
        .await
        .map_err(temporary)?;
    let row = client
        .query_opt(&statement, &[&user])
        .await
        .map_err(temporary)?;
    Ok(row.and_then(|row| {
        let password: String = row.get(0);
        PasswdEntry::parse(user, &password).ok().map(Arc::new)
    }))
}

/// Runs `f` on the blocking pool if `costly`, else right here.
async fn maybe_blocking<T: Send + 'static>(
    costly: bool,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    if costly {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| StoreError::Temporary(format!("password check failed: {e}")))
    } else {
        Ok(f())
    }
}

/// Checks `password` for `user`, through the decoy for a user without an entry.
async fn check_password(
    shared: &Shared,
    user: &str,
    password: Vec<u8>,
) -> Result<bool, StoreError> {
    let password = Zeroizing::new(password);
    let (target, known) = match entry(shared, user).await? {
        Some(e) => {
            if e.scheme().is_costly() {
                *shared.decoy.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&e));
            }
            (e, true)
        }
        None => (decoy(shared), false),
    };
    maybe_blocking(target.scheme().is_costly(), move || {
        std::hint::black_box(target.verify_password(&password)) && known
    })
    .await
}

fn decoy(shared: &Shared) -> Arc<PasswdEntry> {
    let mut slot = shared.decoy.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(slot.get_or_insert_with(|| {
        Arc::new(
            PasswdEntry::parse("decoy", DEFAULT_DECOY).unwrap_or_else(|_| {
                // Unreachable with the sha-crypt feature (always on here); stay usable anyway.
                PasswdEntry::parse("decoy", "{PLAIN}decoy").expect("a valid PLAIN entry")
            }),
        )
    }))
}

impl Authenticator for PgStore {
    async fn verify_password(&self, user: &str, password: &[u8]) -> Result<bool, StoreError> {
        let (user, password) = (user.to_owned(), password.to_vec());
        self.spawn(move |shared| async move { check_password(&shared, &user, password).await })
            .await
    }

    async fn verify_apop(
        &self,
        user: &str,
        timestamp: &Timestamp,
        digest: &ApopDigest,
    ) -> Result<bool, StoreError> {
        let name = user.to_owned();
        let found = self
            .spawn(move |shared| async move { entry(&shared, &name).await })
            .await?;
        Ok(found.is_some_and(|e| e.verify_apop(timestamp, digest)))
    }

    async fn sasl(&self, request: &CredentialRequest) -> Result<CredentialAnswer, StoreError> {
        match request {
            CredentialRequest::Password { user, password, .. } => {
                let (user, password) = (user.clone(), password.expose_secret().as_bytes().to_vec());
                let ok = self
                    .spawn(
                        move |shared| async move { check_password(&shared, &user, password).await },
                    )
                    .await?;
                Ok(CredentialAnswer::Verified(ok))
            }
            CredentialRequest::CramMd5 { user, .. } | CredentialRequest::Scram { user } => {
                let name = user.clone();
                let found = self
                    .spawn(move |shared| async move { entry(&shared, &name).await })
                    .await?;
                // Deriving SCRAM keys from a {PLAIN} password is a PBKDF2 run.
                let costly = matches!(request, CredentialRequest::Scram { .. })
                    && found.as_ref().is_some_and(|e| e.scheme() == Scheme::Plain);
                if costly {
                    let request = request.clone();
                    self.spawn(move |_| async move {
                        maybe_blocking(true, move || {
                            passwd::sasl_answer(found.as_deref(), &request)
                        })
                        .await
                    })
                    .await
                } else {
                    Ok(passwd::sasl_answer(found.as_deref(), request))
                }
            }
            other => Ok(passwd::sasl_answer(None, other)),
        }
    }

    fn mechanisms(&self) -> Vec<Mechanism> {
        let caps = self.shared().caps.load(Ordering::Relaxed);
        passwd::mechanisms(|kind| match kind {
            AuthKind::ScramSha256 => caps & Caps::SCRAM != 0,
            AuthKind::CramMd5 => caps & Caps::CRAM != 0,
            _ => false,
        })
    }

    fn apop(&self) -> bool {
        self.shared().caps.load(Ordering::Relaxed) & Caps::APOP != 0
    }
}
