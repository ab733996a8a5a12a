//! Maintenance: migrations, the orphan sweeper, and the Maildir import.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt as _;
use pop3_server_core::backend::MaildropLock;
use pop3_server_core::maildir::{MaildirError, MaildirStore};
use pop3_server_core::passwd::PasswdFile;

use crate::blobs::{self, Blobs};
use crate::deliver::insert_chunks;
use crate::schema::{MIGRATION_LOCK, MIGRATIONS, latest};
use crate::{PgError, Shared};

pub(crate) async fn migrate(shared: &Shared) -> Result<Vec<i32>, PgError> {
    let mut client = shared.pool.get().await?;
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock({MIGRATION_LOCK}); \
         CREATE TABLE IF NOT EXISTS schema_migrations ( \
             version integer PRIMARY KEY, \
             applied_at timestamptz NOT NULL DEFAULT now())"
    ))
    .await?;
    let have: HashSet<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if let Some(&found) = have.iter().max()
        && found > latest()
    {
        return Err(PgError::SchemaTooNew {
            found,
            known: latest(),
        });
    }
    let mut applied = Vec::new();
    for &(version, sql) in MIGRATIONS {
        if have.contains(&version) {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        applied.push(version);
    }
    tx.commit().await?;
    Ok(applied)
}

/// What [`PgStore::gc`](crate::PgStore::gc) removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcReport {
    /// Objects listed under `bodies/` (S3 bodies only).
    pub blobs_seen: u64,
    /// Objects removed: older than the minimum age, and no message row names them.
    pub blobs_removed: u64,
    /// Rows of `bodies` whose message was gone.
    pub body_rows_removed: u64,
    /// Lease rows long expired (left by frontends that died).
    pub leases_removed: u64,
}

/// Objects examined per query for rows naming them.
const GC_BATCH: usize = 500;

pub(crate) async fn gc(shared: &Shared, min_age: Duration) -> Result<GcReport, PgError> {
    let mut report = GcReport::default();
    {
        let client = shared.pool.get().await?;
        report.body_rows_removed = client
            .execute(
                "DELETE FROM bodies b \
                 WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = b.message_id)",
                &[],
            )
            .await?;
        report.leases_removed = client
            .execute(
                "DELETE FROM leases WHERE expires_at < now() - make_interval(secs => $1)",
                &[&min_age.as_secs_f64()],
            )
            .await?;
    }
    if let Some(blobs) = &shared.blobs {
        let cutoff = SystemTime::now()
            .checked_sub(min_age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut listing = blobs.list();
        let mut batch = Vec::new();
        while let Some(listed) = listing.next().await {
            let listed = listed.map_err(PgError::Blobs)?;
            report.blobs_seen += 1;
            if listed.modified <= cutoff {
                batch.push(listed.key);
            }
            if batch.len() >= GC_BATCH {
                sweep(shared, blobs, &mut batch, &mut report).await?;
            }
        }
        sweep(shared, blobs, &mut batch, &mut report).await?;
    }
    Ok(report)
}

/// Removes the objects of `batch` that no row names.
async fn sweep(
    shared: &Shared,
    blobs: &Blobs,
    batch: &mut Vec<String>,
    report: &mut GcReport,
) -> Result<(), PgError> {
    if batch.is_empty() {
        return Ok(());
    }
    let client = shared.pool.get().await?;
    let named: HashSet<String> = client
        .query(
            "SELECT blob_key FROM messages WHERE blob_key = ANY($1)",
            &[&*batch],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    drop(client);
    for key in batch.drain(..) {
        if !named.contains(&key) {
            blobs.delete(&key).await.map_err(PgError::Blobs)?;
            report.blobs_removed += 1;
        }
    }
    Ok(())
}

/// What [`PgStore::import_maildir`](crate::PgStore::import_maildir) copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// Users added to `users`.
    pub users_added: u64,
    /// Users of the file already in `users` (left as they were).
    pub users_existing: u64,
    /// Users of the file without a maildir under the root.
    pub users_without_maildir: u64,
    /// Messages copied.
    pub messages_added: u64,
    /// Messages already in the store (same user and unique id), left as they were.
    pub messages_existing: u64,
    /// Messages removed from the maildir while the import ran.
    pub messages_gone: u64,
}

/// The user and password fields of each entry of a passwd-file, by the same rules as
/// [`PasswdFile::parse`] (which has already accepted the text).
fn passwd_fields(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|raw| raw.strip_suffix('\r').unwrap_or(raw))
        .filter(|line| !(line.trim().is_empty() || line.starts_with('#')))
        .filter_map(|line| {
            let (user, rest) = line.split_once(':')?;
            let password = rest.split(':').next().unwrap_or("");
            Some((user.to_owned(), password.to_owned()))
        })
        .collect()
}

pub(crate) async fn import(
    shared: &Shared,
    root: &Path,
    passwd: &Path,
) -> Result<ImportReport, PgError> {
    // Validates every line (schemes, duplicates) before anything is written.
    PasswdFile::load(passwd)?;
    let text = std::fs::read_to_string(passwd).map_err(|source| {
        pop3_server_core::passwd::PasswdError::Io {
            path: passwd.to_path_buf(),
            source,
        }
    })?;
    let users = passwd_fields(&text);
    let mut report = ImportReport::default();
    {
        let client = shared.pool.get().await?;
        for (user, password) in &users {
            let added = client
                .execute(
                    "INSERT INTO users (name, password) VALUES ($1, $2) \
                     ON CONFLICT (name) DO NOTHING",
                    &[user, password],
                )
                .await?;
            if added == 1 {
                report.users_added += 1;
            } else {
                report.users_existing += 1;
            }
        }
    }
    let maildirs = MaildirStore::new(root);
    for (user, _) in &users {
        import_user(shared, &maildirs, user, &mut report).await?;
    }
    Ok(report)
}

async fn import_user(
    shared: &Shared,
    maildirs: &MaildirStore,
    user: &str,
    report: &mut ImportReport,
) -> Result<(), PgError> {
    let failed = |reason: String| PgError::Maildir {
        user: user.to_owned(),
        reason,
    };
    let drop = match maildirs.open_with_lock(user, MaildropLock::Snapshot) {
        Ok(drop) => drop,
        Err(MaildirError::NoMailbox | MaildirError::InvalidUser) => {
            report.users_without_maildir += 1;
            return Ok(());
        }
        Err(e) => return Err(failed(e.to_string())),
    };
    let existing: HashSet<String> = {
        let client = shared.pool.get().await?;
        client
            .query("SELECT uidl FROM messages WHERE user_name = $1", &[&user])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    for (index, info) in drop.messages().iter().enumerate() {
        let uidl = String::from_utf8_lossy(info.uid.as_bytes()).into_owned();
        if existing.contains(&uidl) {
            report.messages_existing += 1;
            continue;
        }
        let reader = match drop.open_message(index) {
            Ok(reader) => reader,
            Err(MaildirError::MessageGone { .. }) => {
                report.messages_gone += 1;
                continue;
            }
            Err(e) => return Err(failed(e.to_string())),
        };
        let added = import_message(shared, user, &uidl, reader)
            .await
            .map_err(|e| match e {
                Imported::Db(e) => e,
                Imported::Read(e) => failed(format!("message {uidl}: {e}")),
            })?;
        if added {
            report.messages_added += 1;
        } else {
            report.messages_existing += 1;
        }
    }
    Ok(())
}

enum Imported {
    Db(PgError),
    Read(std::io::Error),
}

impl<E: Into<PgError>> From<E> for Imported {
    fn from(e: E) -> Imported {
        Imported::Db(e.into())
    }
}

/// Reads up to `buf.len()` octets, fewer only at the end.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(got) => n += got,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Copies one message (CRLF octets from `reader`) under `uidl`; `false` if the store already
/// had it.
async fn import_message(
    shared: &Shared,
    user: &str,
    uidl: &str,
    mut reader: impl Read,
) -> Result<bool, Imported> {
    if let Some(store) = &shared.blobs {
        let mut data = Vec::new();
        reader.read_to_end(&mut data).map_err(Imported::Read)?;
        let size = data.len() as i64;
        let key = blobs::new_key();
        store
            .put(&key, data)
            .await
            .map_err(|e| Imported::Db(PgError::Blobs(e)))?;
        let client = shared.pool.get().await?;
        let inserted = client
            .execute(
                "INSERT INTO messages (user_name, uidl, size_crlf, blob_key) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (user_name, uidl) DO NOTHING",
                &[&user, &uidl, &size, &key],
            )
            .await;
        if !matches!(inserted, Ok(1)) {
            // Imported meanwhile, or failed: the object is not needed.
            let _ = store.delete(&key).await;
        }
        return Ok(inserted? == 1);
    }
    let mut client = shared.pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "INSERT INTO messages (user_name, uidl, size_crlf) VALUES ($1, $2, 0) \
             ON CONFLICT (user_name, uidl) DO NOTHING RETURNING id",
            &[&user, &uidl],
        )
        .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let id: i64 = row.get(0);
    let mut buf = vec![0u8; shared.chunk_size];
    let mut size = 0i64;
    let mut seq = 0i32;
    loop {
        let n = read_full(&mut reader, &mut buf).map_err(Imported::Read)?;
        if n == 0 {
            break;
        }
        insert_chunks(&tx, id, seq, &buf[..n], shared.chunk_size)
            .await
            .map_err(PgError::from)?;
        size += n as i64;
        seq += 1;
        if n < buf.len() {
            break;
        }
    }
    tx.execute(
        "UPDATE messages SET size_crlf = $2 WHERE id = $1",
        &[&id, &size],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}
