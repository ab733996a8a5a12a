//! # pop3-server-core
//!
//! Server policy on top of `pop3-proto`: the maildrop snapshot, deletion marks applied only on
//! QUIT, locking, authentication policy and limits, and the storage and authentication
//! backends (Maildir, in-memory, Dovecot-style passwd-file) that embedders can replace.
//!
//! - [`backend`]: the traits an embedder implements ([`backend::Authenticator`],
//!   [`backend::MailStore`]).
//! - [`deliver`]: how new mail gets in ([`deliver::Deliver`]), for LMTP and MDAs.
//! - [`session`]: one connection's session, which adapters drive.
//! - [`maildir`], [`passwd`], [`memory`]: the shipped backends.
//! - [`observe`]: the events of a server (logins, logouts, connections) for logs and
//!   metrics, reported to an [`observe::Observer`].
//! - [`offload`]: runs CPU-heavy work (password hashing) off the async runtime's threads,
//!   without depending on a runtime.
//! - [`top`]: the `TOP` cut of a message streamed with CRLF line ends, for stores.
//! - [`reload`]: an authenticator replaced while the server runs (users re-read on `SIGHUP`).
//!
//! ```
//! use std::time::Instant;
//! use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
//! use pop3_server_core::session::{Backend, Connection, Policy, Session};
//!
//! let store = MemoryStore::new();
//! store.add_message("alice", "m1", b"Subject: hi\r\n\r\nHello\r\n");
//! let auth = MemoryAuthenticator::new().with_user("alice", "secret");
//! let mut policy = Policy::default();
//! policy.rules.plaintext_auth = true; // this example has no TLS
//! let backend = Backend::new(auth, store, policy);
//!
//! let now = Instant::now();
//! let mut session = Session::new(backend, &Connection::plain(false), now);
//! session.handle_input(b"USER alice\r\nPASS secret\r\nSTAT\r\nQUIT\r\n", now);
//! let mut out = Vec::new();
//! // Any executor will do; the futures are runtime-agnostic.
//! pop3_server_core::block_on(session.process(now));
//! session.poll_transmit(now, &mut out);
//! assert!(String::from_utf8_lossy(&out).contains("+OK 1 22\r\n"));
//! assert!(session.is_closed());
//! ```

#![forbid(unsafe_code)]

pub mod backend;
pub mod deliver;
mod executor;
pub mod maildir;
pub mod memory;
pub mod observe;
pub mod offload;
pub mod passwd;
pub mod reload;
pub mod session;
pub mod top;

pub use executor::block_on;
