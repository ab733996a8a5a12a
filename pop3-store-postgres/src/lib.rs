//! # pop3-store-postgres
//!
//! A mail store for [`pop3_server_core`] in PostgreSQL: users, message metadata and (by
//! default) bodies in the database, bodies optionally in an S3-compatible object store. One
//! [`PgStore`] is every backend the server needs: [`MailStore`], [`Authenticator`] and
//! [`Deliver`], so several POP3 frontends (and LMTP listeners) can serve the same users from
//! one database.
//!
//! - **Snapshot sessions** ([`MaildropLock::Snapshot`], the default): the maildrop is read at
//!   login in one statement (`SELECT uidl, size_crlf ... ORDER BY id`); `STAT`, `LIST` and
//!   `UIDL` answer from it and never touch a body; `QUIT` deletes the marked messages in one
//!   transaction (`DELETE ... WHERE user_name = $1 AND uidl = ANY($2)`), messages already
//!   gone skipped. No database connection is held between commands: each operation takes a
//!   pooled connection and gives it back.
//! - **Exclusive sessions** ([`MaildropLock::Exclusive`]): a lease row per maildrop, with an
//!   expiry, renewed in the background; see [Leases](#leases).
//! - **Bodies** are stored with CRLF line ends, so their size is exactly what POP3 reports and
//!   `RETR` sends them as they are, chunk by chunk ([`PgConfig::chunk_size`] octets, one row
//!   of `bodies` each, or the pieces of an S3 download): a message is never whole in memory
//!   when read. `TOP n` stops reading after the header and `n` lines.
//! - **Read-ahead**: a client retrieving its messages in order (`RETR 1`, `RETR 2`, ...) gets
//!   the whole bodies of the next messages in the same query as the one it asked for, up to
//!   512 KiB in all, so a bulk download costs one query per 512 KiB rather than one per
//!   message (a query costs the database as much as about 40 kB of body does). What is read
//!   ahead comes out of one allowance for all sessions ([`PgConfig::read_ahead`], 64 MiB), so
//!   sessions that stop reading cannot hold more than that together; a body read ahead is
//!   served even if another session removes the message meanwhile, as the snapshot promised.
//! - **Unique ids** are assigned once, at delivery, as `ID:RANDOM` (the message's `bigserial`
//!   id, never reused, and 8 random hex digits). A Maildir unique name never contains `:`
//!   (that starts its flags), so mail imported from a Maildir with
//!   [`import_maildir`](PgStore::import_maildir), which keeps its unique ids, can never
//!   collide with new mail.
//! - **Schema**: versioned migrations inside the crate, applied by [`PgStore::migrate`]; see
//!   [`schema`].
//!
//! # Leases
//!
//! An exclusive open inserts `leases(user_name, holder, expires_at = now() + lease)` with
//! `ON CONFLICT DO UPDATE ... WHERE leases.expires_at < now()`: it wins if there is no lease or
//! only an expired one (a frontend that crashed), and gets [`StoreError::InUse`] otherwise.
//! The holder is unique to the session (`FRONTEND#N`). One background task per [`PgStore`]
//! renews every lease the frontend holds, every third of [`PgConfig::lease`], with a single
//! `UPDATE leases ... WHERE holder = ANY($1) AND expires_at > now()`. The commit checks the
//! lease in its transaction (`SELECT ... FOR UPDATE` of a row still ours and unexpired) and
//! deletes the messages and the lease only then; a session that lost its lease (it expired
//! and maybe someone else took it) gets [`StoreError::Temporary`] and nothing is deleted.
//! Dropping the [`PgDrop`] releases the lease. Times are the database's clock (`now()`), so
//! the frontends' clocks do not matter.
//!
//! A snapshot open is refused with [`StoreError::InUse`] while an unexpired lease exists (the
//! exclusive session was promised to be alone). Snapshot sessions themselves leave nothing in
//! the database, so an exclusive open does not see them: frontends sharing a database should
//! all use the same [`MaildropLock`] mode.
//!
//! # Runtime
//!
//! `tokio-postgres` needs a tokio reactor; the traits of `pop3-server-core` are runtime
//! agnostic, and the blocking server drives them with [`pop3_server_core::block_on`]. So a
//! [`PgStore`] owns a [`tokio::runtime::Handle`]: the current runtime's when it is built inside
//! one, otherwise a small runtime of its own (two worker threads, `pop3-pg`). Every database
//! and object-store operation is spawned on that handle and its `JoinHandle` awaited; a
//! `JoinHandle` wakes whatever executor polls it, so the store works the same under tokio,
//! smol or a plain thread. Costly password checks run on the runtime's blocking pool.
//!
//! # Why these crates
//!
//! - `tokio-postgres`: the native asynchronous PostgreSQL client of the Rust ecosystem
//!   (the `postgres` crate is a blocking wrapper around it); it pipelines statements,
//!   streams rows, and needs no C library.
//! - `deadpool-postgres`: a small pool built for it, whose connections are checked out for
//!   one operation and recycled; statement caching per connection (`prepare_cached`).
//!   (bb8 would do as well; deadpool has fewer moving parts and no background reaper task.)
//! - `object_store` (feature `s3`): the Apache Arrow project's object-store client; its S3
//!   implementation talks to every S3-compatible server, streams downloads, and retries.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use pop3_server_core::session::{Backend, Policy};
//! use pop3_store_postgres::{PgConfig, PgStore};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = PgConfig::new("postgresql://pop3@127.0.0.1/mail");
//! let store = PgStore::new(config)?;
//! // Any executor will do: the store runs its I/O on its own tokio runtime.
//! let applied = pop3_server_core::block_on(store.migrate())?;
//! println!("applied migrations {applied:?}");
//! // The same store authenticates and serves the mail.
//! let backend = Backend::new(store.clone(), store, Policy::default());
//! # let _: Arc<_> = backend;
//! # Ok(())
//! # }
//! ```
//!
//! [`MailStore`]: pop3_server_core::backend::MailStore
//! [`Authenticator`]: pop3_server_core::backend::Authenticator
//! [`Deliver`]: pop3_server_core::deliver::Deliver
//! [`MaildropLock::Snapshot`]: pop3_server_core::backend::MaildropLock::Snapshot
//! [`MaildropLock::Exclusive`]: pop3_server_core::backend::MaildropLock::Exclusive
//! [`MaildropLock`]: pop3_server_core::backend::MaildropLock
//! [`StoreError::InUse`]: pop3_server_core::backend::StoreError::InUse
//! [`StoreError::Temporary`]: pop3_server_core::backend::StoreError::Temporary

#![forbid(unsafe_code)]

mod auth;
mod blobs;
mod body;
mod config;
mod deliver;
mod maint;
pub mod schema;
mod store;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use pop3_server_core::backend::StoreError;
use pop3_server_core::passwd::PasswdEntry;
use tokio::runtime::{Handle, Runtime};
use tokio_postgres::NoTls;

pub use config::{
    Bodies, DEFAULT_CHUNK_SIZE, DEFAULT_LEASE, DEFAULT_POOL_SIZE, DEFAULT_READ_AHEAD, PgConfig,
};
pub use maint::{GcReport, ImportReport};
pub use store::{PgDrop, PgReader};

use blobs::Blobs;

/// How long an operation waits for a pooled connection, or for a new one to be made, before
/// it fails with [`StoreError::Temporary`].
const POOL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the store could not be set up or maintained ([`PgStore::new`], [`PgStore::migrate`],
/// [`PgStore::gc`], [`PgStore::import_maildir`]). The POP3 operations report
/// [`StoreError`] instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// The configuration cannot work.
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// The database failed or refused.
    #[error("database: {0}")]
    Database(String),
    /// The object store failed.
    #[error("object store: {0}")]
    Blobs(String),
    /// The database's schema is newer than this build knows: upgrade this frontend.
    #[error("the database schema is version {found}, newer than this build knows ({known})")]
    SchemaTooNew {
        /// The version recorded in `schema_migrations`.
        found: i32,
        /// The newest version this build has.
        known: i32,
    },
    /// The passwd-file given to [`PgStore::import_maildir`] is unreadable or malformed.
    #[error(transparent)]
    Passwd(#[from] pop3_server_core::passwd::PasswdError),
    /// A message of the Maildir could not be read (the import stops; running it again
    /// resumes).
    #[error("maildir of {user}: {reason}")]
    Maildir {
        /// Whose maildir.
        user: String,
        /// What failed.
        reason: String,
    },
    /// The store's background task was cancelled (its runtime shut down).
    #[error("store task failed: {0}")]
    Task(String),
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> PgError {
        PgError::Database(db_message(&e))
    }
}

impl From<deadpool_postgres::PoolError> for PgError {
    fn from(e: deadpool_postgres::PoolError) -> PgError {
        PgError::Database(e.to_string())
    }
}

/// A database error's text, with the server's message when there is one.
pub(crate) fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// A failure of a POP3 operation that may go away (`-ERR [SYS/TEMP]`).
pub(crate) fn temporary(e: impl fmt::Display) -> StoreError {
    StoreError::Temporary(e.to_string())
}

/// A PostgreSQL-backed mail store, authenticator and delivery target. Cloning is cheap: the
/// clones share the pool, the runtime and the lease renewal.
///
/// ```no_run
/// use pop3_server_core::backend::{MailStore, Maildrop, MaildropLock};
/// use pop3_server_core::deliver::Deliver;
/// use pop3_store_postgres::{PgConfig, PgStore};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PgStore::new(PgConfig::new("host=/run/postgresql dbname=mail"))?;
/// pop3_server_core::block_on(async {
///     store.migrate().await?;
///     store.add_user("alice", "{PLAIN}secret", true).await?;
///     let stored = store.deliver("alice", b"Subject: hi\n\nHello\n").await?;
///     let drop = store.open("alice", MaildropLock::Snapshot).await?;
///     assert_eq!(drop.messages()[0].uid, stored.uid);
///     assert_eq!(drop.messages()[0].size, 22);
///     Ok(())
/// })
/// # }
/// ```
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("frontend", &self.inner.shared.frontend)
            .field("s3", &self.inner.shared.blobs.is_some())
            .field("lease", &self.inner.shared.lease)
            .finish_non_exhaustive()
    }
}

struct Inner {
    shared: Arc<Shared>,
    renewal: tokio::task::AbortHandle,
    /// Declared last: shut down after everything else is dropped.
    _runtime: Option<OwnedRuntime>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

/// A runtime the store made for itself; shut down without waiting (and without the panic
/// that dropping a runtime inside another one causes).
struct OwnedRuntime(Option<Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// What the spawned operations use. Holds no runtime, so dropping it anywhere is fine.
pub(crate) struct Shared {
    pub(crate) pool: Pool,
    pub(crate) handle: Handle,
    pub(crate) chunk_size: usize,
    /// Octets of read-ahead still free for all sessions ([`PgConfig::read_ahead`]).
    pub(crate) read_ahead: Arc<std::sync::atomic::AtomicUsize>,
    pub(crate) lease: Duration,
    pub(crate) blobs: Option<Blobs>,
    /// This store's name in `leases.holder`.
    pub(crate) frontend: String,
    next_holder: AtomicU64,
    /// The leases held: holder → user.
    pub(crate) held: Mutex<HashMap<String, String>>,
    /// What the users' stored schemes allow (bits of [`auth::Caps`]).
    pub(crate) caps: AtomicU8,
    /// The entry an unknown user's password is checked against (result discarded).
    pub(crate) decoy: Mutex<Option<Arc<PasswdEntry>>>,
}

impl Shared {
    /// A holder name for a new lease.
    pub(crate) fn new_holder(&self) -> String {
        let n = self.next_holder.fetch_add(1, Ordering::Relaxed);
        format!("{}#{n}", self.frontend)
    }

    pub(crate) fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(temporary)
    }
}

impl PgStore {
    /// A store for `config`, on the current tokio runtime if called inside one, otherwise
    /// on a runtime of its own (see [Runtime](crate#runtime)). Connects lazily: a database
    /// that is down shows at the first operation (call [`migrate`](Self::migrate) to find
    /// out at start).
    ///
    /// Built inside a current-thread runtime, the store's work runs on that runtime: do not
    /// then block that runtime's thread on one of the store's futures (with
    /// [`block_on`](pop3_server_core::block_on)), which would wait for itself. Build it
    /// outside any runtime, or use [`with_handle`](Self::with_handle) with a multi-thread
    /// one, for blocking use.
    pub fn new(config: PgConfig) -> Result<PgStore, PgError> {
        match Handle::try_current() {
            Ok(handle) => PgStore::build(config, handle, None),
            Err(_) => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("pop3-pg")
                    .enable_all()
                    .build()
                    .map_err(|e| PgError::Config(format!("cannot start a runtime: {e}")))?;
                let handle = rt.handle().clone();
                PgStore::build(config, handle, Some(OwnedRuntime(Some(rt))))
            }
        }
    }

    /// A store for `config` whose operations run on `handle`'s runtime (which must have its
    /// I/O and time drivers enabled, and outlive the store's use).
    pub fn with_handle(config: PgConfig, handle: Handle) -> Result<PgStore, PgError> {
        PgStore::build(config, handle, None)
    }

    fn build(
        config: PgConfig,
        handle: Handle,
        runtime: Option<OwnedRuntime>,
    ) -> Result<PgStore, PgError> {
        config.validate().map_err(PgError::Config)?;
        let _entered = handle.enter();
        let mut pg = tokio_postgres::Config::from_str(&config.url)
            .map_err(|e| PgError::Config(format!("database url: {e}")))?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(POOL_TIMEOUT);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("pop3");
        }
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(|e| PgError::Config(e.to_string()))?;
        let blobs = Blobs::new(&config.bodies).map_err(PgError::Config)?;
        let shared = Arc::new(Shared {
            pool,
            handle: handle.clone(),
            chunk_size: config.chunk_size,
            read_ahead: Arc::new(std::sync::atomic::AtomicUsize::new(config.read_ahead)),
            lease: config.lease,
            blobs,
            frontend: frontend_name(),
            next_holder: AtomicU64::new(0),
            held: Mutex::new(HashMap::new()),
            caps: AtomicU8::new(0),
            decoy: Mutex::new(None),
        });
        let renewal = handle.spawn(store::renew_leases(Arc::downgrade(&shared)));
        Ok(PgStore {
            inner: Arc::new(Inner {
                shared,
                renewal: renewal.abort_handle(),
                _runtime: runtime,
            }),
        })
    }

    /// The runtime the store's operations run on.
    pub fn handle(&self) -> &Handle {
        &self.inner.shared.handle
    }

    /// The name this store writes in `leases.holder` (before `#N`): host, process and a
    /// random part, unique to this `PgStore`.
    pub fn frontend(&self) -> &str {
        &self.inner.shared.frontend
    }

    /// Stops renewing this store's leases, for good: they expire [`PgConfig::lease`] after
    /// their last renewal, and their sessions' commits then fail. This is what a crash looks
    /// like to the other frontends; tests use it, and a frontend that must stop at once
    /// without committing may.
    pub fn stop_lease_renewal(&self) {
        self.inner.renewal.abort();
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Runs `work` on the store's runtime and awaits it from any executor.
    pub(crate) fn spawn<T, F>(
        &self,
        work: impl FnOnce(Arc<Shared>) -> F,
    ) -> impl Future<Output = Result<T, StoreError>> + Send + 'static
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        spawn_on(&self.inner.shared, work)
    }

    /// [`spawn`](Self::spawn) for the maintenance operations, which report [`PgError`].
    pub(crate) fn spawn_maint<T, F>(
        &self,
        work: impl FnOnce(Arc<Shared>) -> F,
    ) -> impl Future<Output = Result<T, PgError>> + Send + 'static
    where
        T: Send + 'static,
        F: Future<Output = Result<T, PgError>> + Send + 'static,
    {
        let join = self
            .inner
            .shared
            .handle
            .spawn(work(Arc::clone(&self.inner.shared)));
        async move { join.await.map_err(|e| PgError::Task(e.to_string()))? }
    }

    /// Applies the migrations this database has not had (see [`schema`]), in one
    /// transaction under an advisory lock, and returns the versions applied now (empty when
    /// the schema was up to date). Safe to call from several frontends at once. Also reads
    /// which authentication mechanisms the users' password schemes allow (see
    /// [`refresh_mechanisms`](Self::refresh_mechanisms)).
    pub fn migrate(&self) -> impl Future<Output = Result<Vec<i32>, PgError>> + Send + 'static {
        self.spawn_maint(|shared| async move {
            let applied = maint::migrate(&shared).await?;
            auth::refresh_caps(&shared)
                .await
                .map_err(|e| PgError::Database(e.to_string()))?;
            Ok(applied)
        })
    }

    /// Re-reads which SASL mechanisms and whether APOP the stored password schemes allow
    /// (the [`Authenticator`](pop3_server_core::backend::Authenticator)'s `mechanisms` and
    /// `apop`, which must answer without a query). Done by [`migrate`](Self::migrate) and
    /// then every minute in the background; until the first time, only PLAIN and LOGIN are
    /// offered.
    pub fn refresh_mechanisms(
        &self,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        self.spawn(|shared| async move { auth::refresh_caps(&shared).await })
    }

    /// Adds a user, or replaces the password and `enabled` of an existing one. `password` is
    /// stored as given, in any passwd-file scheme (`{SHA512-CRYPT}$6$...`, `{PLAIN}secret`);
    /// it is checked first, and a string that the authenticator could not use is refused
    /// with [`PgError::Config`]. The mechanisms this store offers are refreshed (see
    /// [`refresh_mechanisms`](Self::refresh_mechanisms)).
    pub fn add_user(
        &self,
        user: &str,
        password: &str,
        enabled: bool,
    ) -> impl Future<Output = Result<(), PgError>> + Send + 'static {
        let checked = PasswdEntry::parse(user, password)
            .map(|_| ())
            .map_err(|e| PgError::Config(format!("user {user}: {e}")));
        let (user, password) = (user.to_owned(), password.to_owned());
        self.spawn_maint(move |shared| async move {
            checked?;
            let client = shared.pool.get().await?;
            client
                .execute(
                    "INSERT INTO users (name, password, enabled) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE \
                     SET password = EXCLUDED.password, enabled = EXCLUDED.enabled",
                    &[&user, &password, &enabled],
                )
                .await?;
            drop(client);
            auth::refresh_caps(&shared)
                .await
                .map_err(|e| PgError::Database(e.to_string()))?;
            Ok(())
        })
    }

    /// Removes orphans: objects under `bodies/` of the S3 store older than `min_age` that no
    /// message row names, and (in either mode) body rows whose message is gone, and leases
    /// expired for more than `min_age`. A delivery writes its object before its row, so
    /// `min_age` must be longer than any delivery can take (an hour is plenty); an object
    /// whose row exists is never removed.
    pub fn gc(&self, min_age: Duration) -> impl Future<Output = Result<GcReport, PgError>> + Send {
        self.spawn_maint(move |shared| async move { maint::gc(&shared, min_age).await })
    }

    /// Copies the users of a Dovecot-style passwd-file (their password strings as they are)
    /// and every message of their maildirs `root/USER` into the store, keeping each message's
    /// unique id (the one the Maildir store gave POP3 clients so far, so they do not fetch
    /// everything again). Idempotent: users and messages already in the store are left alone
    /// (`ON CONFLICT DO NOTHING`), so running it twice, or again after a failure, is safe.
    /// Users of the file without a maildir get no messages.
    ///
    /// The maildirs are opened as snapshot sessions (shared locks), so a server still serving
    /// them may run meanwhile; messages delivered to them afterwards are copied by the next
    /// run. File reads are blocking and run on the store's runtime: this is an administrative
    /// command, not for a serving frontend's hot path.
    pub fn import_maildir(
        &self,
        root: &std::path::Path,
        passwd: &std::path::Path,
    ) -> impl Future<Output = Result<ImportReport, PgError>> + Send + 'static {
        let (root, passwd) = (root.to_path_buf(), passwd.to_path_buf());
        self.spawn_maint(move |shared| async move { maint::import(&shared, &root, &passwd).await })
    }
}

/// Runs `work` on `shared`'s runtime; the future awaits its `JoinHandle`.
pub(crate) fn spawn_on<T, F>(
    shared: &Arc<Shared>,
    work: impl FnOnce(Arc<Shared>) -> F,
) -> impl Future<Output = Result<T, StoreError>> + Send + 'static
where
    T: Send + 'static,
    F: Future<Output = Result<T, StoreError>> + Send + 'static,
{
    let join = shared.handle.spawn(work(Arc::clone(shared)));
    async move {
        join.await
            .map_err(|e| StoreError::Temporary(format!("store task failed: {e}")))?
    }
}

/// `HOST:PID:RANDOM`: unique to one [`PgStore`], and telling an operator which machine
/// holds a lease.
fn frontend_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '#')
        .take(64)
        .collect();
    format!("{}:{}:{}", host, std::process::id(), random_hex(4))
}

/// `bytes` random octets in lower-case hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    // The OS generator does not fail on supported systems; a zero suffix would still be
    // unique enough with the id before it.
    let _ = getrandom::fill(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}
