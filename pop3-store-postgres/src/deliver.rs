//! The store as a delivery target ([`Deliver`]): the message is converted to CRLF line ends,
//! its body stored (in `bodies` chunks inside the same transaction as its row, or as an
//! object written and finished before the row's transaction starts), and its row inserted
//! with a new unique id. `Ok` comes after the commit: the message is durable (PostgreSQL's
//! commit, and for S3 the finished `PUT`). A failure leaves no row; an object written for a
//! failed delivery is an orphan that [`PgStore::gc`](crate::PgStore::gc) removes.

use pop3_proto::Uid;
use pop3_server_core::deliver::{Deliver, DeliverError, Delivered};

use crate::body::to_crlf;
use crate::{PgStore, Shared, blobs, random_hex};

/// Inserts a message row with a new unique id, `ID:RANDOM`, from the id's own sequence.
/// Returns the id and unique id.
pub(crate) const INSERT_NEW: &str = "INSERT INTO messages (id, user_name, uidl, size_crlf, blob_key) \
     SELECT n, $1, n::text || ':' || $2, $3, $4 \
     FROM (SELECT nextval(pg_get_serial_sequence('messages', 'id')) AS n) AS s \
     RETURNING id, uidl";

/// Stores `data` as chunks of message `id`, numbered from `first_seq`.
pub(crate) async fn insert_chunks(
    client: &tokio_postgres::Transaction<'_>,
    id: i64,
    first_seq: i32,
    data: &[u8],
    chunk_size: usize,
) -> Result<(), tokio_postgres::Error> {
    let statement = client
        .prepare("INSERT INTO bodies (message_id, seq, data) VALUES ($1, $2, $3)")
        .await?;
    // The inserts are sent together (tokio-postgres pipelines concurrent statements).
    let inserts = data.chunks(chunk_size).enumerate().map(|(seq, chunk)| {
        let seq = first_seq + seq as i32;
        let statement = &statement;
        async move { client.execute(statement, &[&id, &seq, &chunk]).await }
    });
    for result in futures_util::future::join_all(inserts).await {
        result?;
    }
    Ok(())
}

fn temporary(e: impl std::fmt::Display) -> DeliverError {
    DeliverError::Temporary(e.to_string())
}

async fn recipient(shared: &Shared, user: &str) -> Result<(), DeliverError> {
    let client = shared.pool.get().await.map_err(temporary)?;
    let db = |e: tokio_postgres::Error| temporary(crate::db_message(&e));
    let statement = client
        .prepare_cached("SELECT 1 FROM users WHERE name = $1 AND enabled")
        .await
        .map_err(db)?;
    let row = client.query_opt(&statement, &[&user]).await.map_err(db)?;
    row.map(|_| ()).ok_or(DeliverError::NoSuchUser)
}

async fn deliver(shared: &Shared, user: &str, message: &[u8]) -> Result<Delivered, DeliverError> {
    let mut data = to_crlf(message);
    let size = data.len() as u64;
    let size_i64 = i64::try_from(size).map_err(|_| DeliverError::TooBig)?;
    let random = random_hex(4);
    // Bodies in S3: the object first, so that a row never exists without it.
    let blob_key = match &shared.blobs {
        Some(store) => {
            recipient(shared, user).await?;
            let key = blobs::new_key();
            store
                .put(&key, std::mem::take(&mut data))
                .await
                .map_err(temporary)?;
            Some(key)
        }
        None => None,
    };
    let stored = async {
        let mut client = shared.pool.get().await.map_err(temporary)?;
        let db = |e: tokio_postgres::Error| temporary(crate::db_message(&e));
        let tx = client.transaction().await.map_err(db)?;
        // Locks the user's row against removal until the commit.
        let enabled = tx
            .query_opt(
                "SELECT 1 FROM users WHERE name = $1 AND enabled FOR KEY SHARE",
                &[&user],
            )
            .await
            .map_err(db)?;
        if enabled.is_none() {
            return Err(DeliverError::NoSuchUser);
        }
        let row = tx
            .query_one(INSERT_NEW, &[&user, &random, &size_i64, &blob_key])
            .await
            .map_err(db)?;
        let id: i64 = row.get(0);
        let uidl: String = row.get(1);
        if blob_key.is_none() {
            insert_chunks(&tx, id, 0, &data, shared.chunk_size)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(uidl)
    }
    .await;
    match stored {
        Ok(uidl) => {
            let uid = Uid::new(uidl.as_bytes())
                .map_err(|_| DeliverError::Permanent("invalid unique id".into()))?;
            Ok(Delivered::new(uid, size))
        }
        Err(e) => {
            if let (Some(store), Some(key)) = (&shared.blobs, &blob_key) {
                // Best effort; `gc` removes it otherwise.
                let _ = store.delete(key).await;
            }
            Err(e)
        }
    }
}

impl Deliver for PgStore {
    async fn recipient(&self, user: &str) -> Result<(), DeliverError> {
        let user = user.to_owned();
        let join = self.shared().handle.spawn({
            let shared = std::sync::Arc::clone(self.shared());
            async move { recipient(&shared, &user).await }
        });
        join.await.map_err(temporary)?
    }

    async fn deliver(&self, user: &str, message: &[u8]) -> Result<Delivered, DeliverError> {
        let (user, message) = (user.to_owned(), message.to_vec());
        let join = self.shared().handle.spawn({
            let shared = std::sync::Arc::clone(self.shared());
            async move { deliver(&shared, &user, &message).await }
        });
        join.await.map_err(temporary)?
    }
}
