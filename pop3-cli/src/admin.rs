//! The PostgreSQL store's maintenance commands: `pop3 migrate` (apply the schema's
//! migrations), `pop3 import` (copy a Maildir root and its passwd-file into the store, keeping
//! every message's UIDL) and `pop3 gc` (remove S3 bodies whose message is gone). Each takes the
//! store from a `pop3 serve` configuration file (`[store.postgres]`) or from `--postgres URL`.

use std::path::PathBuf;
use std::time::Duration;

use pop3_store_postgres::{PgConfig, PgStore};

use crate::fetch_config::Interval;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Which PostgreSQL store.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("store").required(true).multiple(false)))]
pub(crate) struct StoreArgs {
    /// The store of this `pop3 serve` configuration file (`[store.postgres]`).
    #[arg(long, value_name = "FILE", group = "store")]
    config: Option<PathBuf>,
    /// The PostgreSQL database (a libpq URL, `postgresql://user@host/db`).
    #[arg(long, value_name = "URL", group = "store")]
    postgres: Option<String>,
}

impl StoreArgs {
    fn config(&self) -> Result<PgConfig, Error> {
        if let Some(url) = &self.postgres {
            return Ok(PgConfig::new(url.clone()));
        }
        let path = self
            .config
            .as_ref()
            .expect("clap requires --config or --postgres");
        match crate::config::store_of_file(path)? {
            (_, Some(pg)) => Ok(pg),
            _ => Err(format!("{}: no [store.postgres]", path.display()).into()),
        }
    }

    /// The store, on a runtime of its own, schema migrated.
    fn open(&self) -> Result<(tokio::runtime::Runtime, PgStore), Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let store = PgStore::with_handle(self.config()?, runtime.handle().clone())?;
        let applied = runtime.block_on(store.migrate())?;
        if !applied.is_empty() {
            eprintln!("pop3: schema migrations applied: {applied:?}");
        }
        Ok((runtime, store))
    }
}

/// `pop3 migrate`'s arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct MigrateArgs {
    #[command(flatten)]
    store: StoreArgs,
}

/// `pop3 import`'s arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct ImportArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The Maildir root to copy: user U's maildrop is DIR/U.
    #[arg(long, value_name = "DIR")]
    maildir_root: PathBuf,
    /// The Dovecot-style passwd-file of its users (passwords copied as they are, in any
    /// scheme).
    #[arg(long, value_name = "FILE")]
    users: PathBuf,
}

/// `pop3 gc`'s arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct GcArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Only bodies older than this are candidates (a body is written before its row: a
    /// delivery in progress must not lose it): `90s`, `30m`, `1h`, `2d`.
    #[arg(long, value_name = "AGE", default_value = "1h")]
    min_age: Interval,
}

/// `pop3 migrate`: applies the schema's missing migrations (also done by `pop3 serve` at
/// start) and says which.
pub(crate) fn migrate(args: MigrateArgs) -> Result<(), Error> {
    let (_runtime, _store) = args.store.open()?;
    println!("the schema is up to date");
    Ok(())
}

/// `pop3 import`: users and messages into the store, UIDLs kept; running it twice adds
/// nothing the second time.
pub(crate) fn import(args: ImportArgs) -> Result<(), Error> {
    let (runtime, store) = args.store.open()?;
    let r = runtime.block_on(store.import_maildir(&args.maildir_root, &args.users))?;
    println!(
        "users: {} added, {} already there, {} without a maildir; messages: {} added, {} already there, {} gone meanwhile",
        r.users_added,
        r.users_existing,
        r.users_without_maildir,
        r.messages_added,
        r.messages_existing,
        r.messages_gone
    );
    Ok(())
}

/// `pop3 gc`: removes bodies no message refers to any more.
pub(crate) fn gc(args: GcArgs) -> Result<(), Error> {
    let (runtime, store) = args.store.open()?;
    let min_age: Duration = args.min_age.0;
    let r = runtime.block_on(store.gc(min_age))?;
    println!(
        "bodies: {} seen in the object store, {} orphans removed; {} orphan body rows and {} expired leases removed",
        r.blobs_seen, r.blobs_removed, r.body_rows_removed, r.leases_removed
    );
    Ok(())
}
