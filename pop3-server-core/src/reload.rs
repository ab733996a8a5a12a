//! Backends replaced while the server runs.
//!
//! [`Reloadable`] holds a value behind a lock that is taken only long enough to clone an
//! [`Arc`]: each call goes to the value current when it starts, and a
//! [`replace`](Reloadable::replace) is seen by the calls that start after it. As an
//! [`Authenticator`], it lets a server re-read its users (a passwd-file, say, on `SIGHUP`)
//! without restarting: sessions already logged in are not touched, and the next login checks
//! against the new users.
//!
//! ```
//! use pop3_server_core::passwd::PasswdFile;
//! use pop3_server_core::reload::Reloadable;
//!
//! let users = Reloadable::new(PasswdFile::parse("alice:{PLAIN}old\n")?);
//! // ... give `Backend::new` the `users`, then on a reload:
//! match PasswdFile::parse("alice:{PLAIN}new\n") {
//!     Ok(file) => {
//!         users.replace(file);
//!     }
//!     Err(e) => eprintln!("keeping the users as they were: {e}"),
//! }
//! assert!(users.current().verify_password("alice", b"new"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::{Arc, RwLock};

use pop3_proto::sasl::{CredentialAnswer, CredentialRequest};
use pop3_proto::{ApopDigest, Mechanism, Timestamp};

use crate::backend::{Authenticator, StoreError};

/// A value that can be replaced while it is in use. See the module docs.
pub struct Reloadable<T> {
    current: RwLock<Arc<T>>,
}

impl<T> Reloadable<T> {
    /// Starts with `value`.
    pub fn new(value: T) -> Self {
        Reloadable {
            current: RwLock::new(Arc::new(value)),
        }
    }

    /// The value calls starting now use.
    pub fn current(&self) -> Arc<T> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Makes `value` current for the calls that start from now on, and returns the value it
    /// replaces (calls already running finish with it).
    pub fn replace(&self, value: T) -> Arc<T> {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *current, Arc::new(value))
    }
}

impl<T: fmt::Debug> fmt::Debug for Reloadable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Reloadable").field(&self.current()).finish()
    }
}

/// Every call goes to the authenticator current when the call starts.
impl<T: Authenticator> Authenticator for Reloadable<T> {
    async fn verify_password(&self, user: &str, password: &[u8]) -> Result<bool, StoreError> {
        self.current().verify_password(user, password).await
    }

    async fn verify_apop(
        &self,
        user: &str,
        timestamp: &Timestamp,
        digest: &ApopDigest,
    ) -> Result<bool, StoreError> {
        self.current().verify_apop(user, timestamp, digest).await
    }

    async fn sasl(&self, request: &CredentialRequest) -> Result<CredentialAnswer, StoreError> {
        self.current().sasl(request).await
    }

    fn mechanisms(&self) -> Vec<Mechanism> {
        self.current().mechanisms()
    }

    fn apop(&self) -> bool {
        self.current().apop()
    }

    fn authorize(&self, user: &str, authzid: &str) -> bool {
        self.current().authorize(user, authzid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryAuthenticator;

    #[test]
    fn calls_after_a_replace_see_the_new_value() {
        let auth = Reloadable::new(MemoryAuthenticator::new().with_user("alice", "old"));
        let check = |pw: &[u8]| crate::block_on(auth.verify_password("alice", pw)).unwrap();
        assert!(check(b"old"));
        let before = auth.current();
        let old = auth.replace(MemoryAuthenticator::new().with_user("alice", "new"));
        assert!(Arc::ptr_eq(&before, &old));
        assert!(!check(b"old"));
        assert!(check(b"new"));
        // A holder of the old value (a call in flight) still has it whole.
        assert!(crate::block_on(before.verify_password("alice", b"old")).unwrap());
    }
}
