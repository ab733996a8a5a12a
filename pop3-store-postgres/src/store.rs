//! The store as a [`MailStore`]: snapshots, leases, streaming readers, commits.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pop3_proto::Uid;
use pop3_server_core::backend::{self, MailStore, MaildropLock, MessageInfo, StoreError};
use pop3_server_core::top::TopCut;

use crate::blobs::BlobStream;
use crate::{PgStore, Shared, auth, spawn_on, temporary};

/// How often the background task re-reads which mechanisms the stored schemes allow.
const CAPS_REFRESH: Duration = Duration::from_secs(60);

/// Takes the snapshot of `user`'s maildrop in one statement: the user's row joined with its
/// messages (none: no such user), and whether an unexpired lease exists.
const SNAPSHOT: &str = "SELECT m.id, m.uidl, m.size_crlf, \
         EXISTS (SELECT 1 FROM leases l WHERE l.user_name = u.name AND l.expires_at > now()) \
     FROM users u LEFT JOIN messages m ON m.user_name = u.name \
     WHERE u.name = $1 ORDER BY m.id";

/// Takes the lease of `$1` for holder `$2` unless an unexpired one exists.
const TAKE_LEASE: &str = "INSERT INTO leases (user_name, holder, expires_at) \
     VALUES ($1, $2, now() + make_interval(secs => $3)) \
     ON CONFLICT (user_name) DO UPDATE \
     SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
     WHERE leases.expires_at < now() \
     RETURNING holder";

const RELEASE_LEASE: &str = "DELETE FROM leases WHERE user_name = $1 AND holder = $2";

/// A snapshot as read: ids, infos, and whether a lease was live.
struct Snapshot {
    ids: Vec<i64>,
    messages: Vec<MessageInfo>,
    leased: bool,
}

async fn snapshot(shared: &Shared, user: &str) -> Result<Snapshot, StoreError> {
    let client = shared.client().await?;
    let statement = client.prepare_cached(SNAPSHOT).await.map_err(temporary)?;
    let rows = client
        .query(&statement, &[&user])
        .await
        .map_err(temporary)?;
    if rows.is_empty() {
        return Err(StoreError::NotFound);
    }
    let mut snap = Snapshot {
        ids: Vec::with_capacity(rows.len()),
        messages: Vec::with_capacity(rows.len()),
        leased: false,
    };
    for row in rows {
        snap.leased |= row.get::<_, bool>(3);
        let Some(id) = row.get::<_, Option<i64>>(0) else {
            continue;
        };
        let uidl: String = row.get(1);
        let size: i64 = row.get(2);
        let uid = Uid::new(uidl.as_bytes())
            .map_err(|_| StoreError::Permanent(format!("message {id} has an invalid unique id")))?;
        snap.ids.push(id);
        snap.messages.push(MessageInfo {
            uid,
            size: u64::try_from(size).unwrap_or(0),
        });
    }
    Ok(snap)
}

impl MailStore for PgStore {
    type Maildrop = PgDrop;

    async fn open(&self, user: &str, lock: MaildropLock) -> Result<PgDrop, StoreError> {
        let name = user.to_owned();
        match lock {
            MaildropLock::Exclusive => {
                let holder = self.shared().new_holder();
                let h = holder.clone();
                let snap = self
                    .spawn(move |shared| async move {
                        let lease_secs = shared.lease.as_secs_f64();
                        let client = shared.client().await?;
                        let taken = client
                            .query_opt(TAKE_LEASE, &[&name, &h, &lease_secs])
                            .await
                            .map_err(temporary)?;
                        if taken.is_none() {
                            return Err(StoreError::InUse);
                        }
                        drop(client);
                        match snapshot(&shared, &name).await {
                            Ok(snap) => Ok(snap),
                            Err(e) => {
                                if let Ok(client) = shared.client().await {
                                    let _ = client.execute(RELEASE_LEASE, &[&name, &h]).await;
                                }
                                Err(e)
                            }
                        }
                    })
                    .await?;
                let lease = LeaseGuard::new(self.shared(), user, holder);
                Ok(PgDrop::new(self.clone(), user, snap, Some(lease)))
            }
            // `MaildropLock` may grow; anything else is a snapshot.
            _ => {
                let snap = self
                    .spawn(move |shared| async move { snapshot(&shared, &name).await })
                    .await?;
                if snap.leased {
                    return Err(StoreError::InUse);
                }
                Ok(PgDrop::new(self.clone(), user, snap, None))
            }
        }
    }
}

/// An exclusive session's lease: renewed while registered in [`Shared::held`], released
/// when dropped unless the commit already removed it.
struct LeaseGuard {
    shared: Arc<Shared>,
    user: String,
    holder: String,
    /// The commit deleted the row.
    released: bool,
}

impl LeaseGuard {
    fn new(shared: &Arc<Shared>, user: &str, holder: String) -> LeaseGuard {
        shared.held().insert(holder.clone(), user.to_owned());
        LeaseGuard {
            shared: Arc::clone(shared),
            user: user.to_owned(),
            holder,
            released: false,
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.shared.held().remove(&self.holder);
        if self.released {
            return;
        }
        let (user, holder) = (self.user.clone(), self.holder.clone());
        let shared = Arc::clone(&self.shared);
        // Best effort: if it fails (or the runtime is gone) the lease expires.
        drop(self.shared.handle.spawn(async move {
            if let Ok(client) = shared.pool.get().await {
                let _ = client.execute(RELEASE_LEASE, &[&user, &holder]).await;
            }
        }));
    }
}

/// The background task of a [`PgStore`]: renews every lease it holds in one statement, every
/// third of the lease, and refreshes the mechanism list now and then. Ends when the store is
/// dropped (or [`PgStore::stop_lease_renewal`]).
pub(crate) async fn renew_leases(shared: Weak<Shared>) {
    let period = match shared.upgrade() {
        Some(s) => s.lease / 3,
        None => return,
    };
    let mut caps_due = Instant::now();
    loop {
        {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let holders: Vec<String> = shared.held().keys().cloned().collect();
            if !holders.is_empty() {
                let secs = shared.lease.as_secs_f64();
                if let Ok(client) = shared.pool.get().await {
                    // Leases not renewed here are lost: their commits will fail.
                    let _ = client
                        .execute(
                            "UPDATE leases SET expires_at = now() + make_interval(secs => $2) \
                             WHERE holder = ANY($1) AND expires_at > now()",
                            &[&holders, &secs],
                        )
                        .await;
                }
            }
            if Instant::now() >= caps_due {
                caps_due = Instant::now() + CAPS_REFRESH;
                let _ = auth::refresh_caps(&shared).await;
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// An open maildrop of a [`PgStore`]: the snapshot taken at login, and for an exclusive
/// session its lease. Holds no database connection.
pub struct PgDrop {
    store: PgStore,
    user: String,
    ids: Vec<i64>,
    messages: Vec<MessageInfo>,
    lease: Option<LeaseGuard>,
    ahead: ReadAhead,
}

/// Whole bodies of the messages after the one last retrieved, read in the same query as it
/// (see [`PgDrop::open_message`](backend::Maildrop::open_message)): a client that retrieves
/// its messages in order then costs one query per [`BATCH_OCTETS`] of mail instead of one
/// per message. The octets come out of the store's allowance ([`PgConfig::read_ahead`]) and
/// go back to it when the bodies are taken or dropped.
///
/// [`PgConfig::read_ahead`]: crate::PgConfig::read_ahead
struct ReadAhead {
    /// The index of the last message opened by `RETR`.
    last_retr: Option<usize>,
    /// Bodies read ahead, by message index, ascending, with their octets; these add up to
    /// at most [`BATCH_OCTETS`].
    bodies: std::collections::VecDeque<(usize, Vec<Chunk>, usize)>,
    /// What is left of the store's allowance, shared by its sessions.
    allowance: Arc<AtomicUsize>,
}

impl ReadAhead {
    fn new(allowance: Arc<AtomicUsize>) -> ReadAhead {
        ReadAhead {
            last_retr: None,
            bodies: Default::default(),
            allowance,
        }
    }

    /// Takes up to `want` octets of the allowance; what it got.
    fn reserve(&self, want: usize) -> usize {
        let left = self
            .allowance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                Some(left - left.min(want))
            })
            .unwrap_or_else(|left| left);
        left.min(want)
    }

    /// Gives `octets` back to the allowance.
    fn release(&self, octets: usize) {
        if octets > 0 {
            self.allowance.fetch_add(octets, Ordering::AcqRel);
        }
    }

    /// The body of message `index` if it was read ahead. What comes before it is dropped;
    /// a miss drops everything (the client is not reading in order).
    fn take(&mut self, index: usize) -> Option<Vec<Chunk>> {
        while let Some(&(next, _, octets)) = self.bodies.front() {
            if next > index {
                break;
            }
            let (_, chunks, _) = self.bodies.pop_front()?;
            self.release(octets);
            if next == index {
                return Some(chunks);
            }
        }
        self.clear();
        None
    }

    fn clear(&mut self) {
        let held = self.bodies.drain(..).map(|(_, _, octets)| octets).sum();
        self.release(held);
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.clear();
    }
}

impl std::fmt::Debug for PgDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDrop")
            .field("user", &self.user)
            .field("messages", &self.messages.len())
            .field("exclusive", &self.lease.is_some())
            .finish()
    }
}

impl PgDrop {
    fn new(store: PgStore, user: &str, snap: Snapshot, lease: Option<LeaseGuard>) -> PgDrop {
        let ahead = ReadAhead::new(Arc::clone(&store.shared().read_ahead));
        PgDrop {
            store,
            user: user.to_owned(),
            ids: snap.ids,
            messages: snap.messages,
            lease,
            ahead,
        }
    }

    /// The user whose maildrop this is.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// A reader of message `id` (`size` octets) whose first chunks are `first`; the rest of
    /// its rows of `bodies` are read when needed.
    fn reader(&self, id: i64, size: u64, top: Option<u64>, first: Vec<Chunk>) -> PgReader {
        let next_seq = i32::try_from(first.len()).unwrap_or(i32::MAX);
        // Chunks per later query, from the size this message was stored with (it may have
        // been delivered under another `chunk_size`).
        let per_query = first.first().map_or(1, |chunk| {
            i32::try_from((BATCH_OCTETS / chunk.data().len().max(1)).max(1)).unwrap_or(1)
        });
        PgReader {
            shared: Arc::clone(self.store.shared()),
            source: Source::Pg {
                id,
                next_seq,
                per_query,
            },
            fetched: 0,
            queued: first.into(),
            buf: None,
            pos: 0,
            size,
            cut: top.map_or_else(TopCut::all, TopCut::top),
            ended: false,
        }
    }

    /// The first batch of each of these messages, by message id, in order (one query).
    async fn query_bodies(&self, wanted: Vec<i64>) -> Result<Vec<(i64, Vec<Chunk>)>, StoreError> {
        self.store
            .spawn(move |shared| async move {
                let client = shared.client().await?;
                let statement = client
                    .prepare_cached(
                        "SELECT message_id, seq, data FROM bodies \
                         WHERE message_id = ANY($1) AND seq < $2 \
                         AND (seq = 0 OR (seq + 1)::bigint * octet_length(data) <= $3)",
                    )
                    .await
                    .map_err(temporary)?;
                let mut rows = client
                    .query(&statement, &[&wanted, &batch(shared.chunk_size), &BATCH])
                    .await
                    .map_err(temporary)?
                    .into_iter()
                    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row)))
                    .collect::<Result<Vec<(i64, i32, _)>, tokio_postgres::Error>>()
                    .map_err(temporary)?;
                // Ordered here: an ORDER BY can make the server copy every row through a
                // sort when its planner prefers a bitmap scan.
                rows.sort_unstable_by_key(|&(message_id, seq, _)| (message_id, seq));
                let mut bodies: Vec<(i64, Vec<Row>)> = Vec::new();
                for (message_id, seq, row) in rows {
                    let data = Chunk::row(row, 2)?;
                    match bodies.last_mut() {
                        Some((last, chunks)) if *last == message_id => chunks.push((seq, data)),
                        _ => bodies.push((message_id, vec![(seq, data)])),
                    }
                }
                Ok(bodies
                    .into_iter()
                    .map(|(message_id, chunks)| (message_id, contiguous(chunks)))
                    .collect())
            })
            .await
    }
}

/// The first chunk of a message and where the rest comes from.
enum Opened {
    Pg(Vec<Chunk>),
    Blob(BlobStream),
}

/// How many octets of a body one query reads at most (whole chunks, at least one): a
/// message of up to this size takes one round trip, and a larger one one round trip per this
/// many octets. It is also what a session holds at most: its reader's
/// chunks and the bodies read ahead for it ([`ReadAhead`]).
const BATCH_OCTETS: usize = 512 * 1024;

/// [`BATCH_OCTETS`] as the queries take it.
const BATCH: i64 = BATCH_OCTETS as i64;

/// One piece of a body as it arrived, not copied: the `data` column of a row of `bodies`
/// (the row keeps the buffer it was received in), or a piece of an object-store download.
enum Chunk {
    Row(tokio_postgres::Row, usize),
    Blob(Bytes),
}

impl Chunk {
    /// Column `column` of `row`, which must be a `bytea`.
    fn row(row: tokio_postgres::Row, column: usize) -> Result<Chunk, StoreError> {
        row.try_get::<_, &[u8]>(column).map_err(temporary)?;
        Ok(Chunk::Row(row, column))
    }

    fn data(&self) -> &[u8] {
        match self {
            // Checked when made: never the empty default.
            Chunk::Row(row, column) => row.try_get(*column).unwrap_or_default(),
            Chunk::Blob(bytes) => bytes,
        }
    }
}

/// A row of `bodies` as read: its `seq` and its data.
type Row = (i32, Chunk);

/// The chunks of one message from seq 0 on, as long as none is missing (a first batch is
/// bounded by octets, `(seq + 1) * length <= BATCH`, which a short last chunk can pass while
/// the chunk before it did not: then it is read again later, in order).
fn contiguous(mut chunks: Vec<Row>) -> Vec<Chunk> {
    chunks.sort_unstable_by_key(|&(seq, _)| seq);
    chunks
        .into_iter()
        .zip(0..)
        .take_while(|((seq, _), expected)| seq == expected)
        .map(|((_, data), _)| data)
        .collect()
}

/// At most this many messages are read ahead in one query.
const MAX_AHEAD: usize = 64;

/// Chunks per query for chunks of `chunk_size` octets.
fn batch(chunk_size: usize) -> i32 {
    i32::try_from((BATCH_OCTETS / chunk_size.max(1)).max(1)).unwrap_or(1)
}

impl backend::Maildrop for PgDrop {
    type Reader = PgReader;

    fn messages(&self) -> &[MessageInfo] {
        &self.messages
    }

    async fn open_message(
        &mut self,
        index: usize,
        top: Option<u64>,
    ) -> Result<PgReader, StoreError> {
        let (Some(&id), Some(info)) = (self.ids.get(index), self.messages.get(index)) else {
            return Err(StoreError::Temporary(format!(
                "no message at index {index}"
            )));
        };
        let size = info.size;
        let retr = top.is_none();
        // In order: this RETR follows the previous one, or is the session's first and is of
        // message 1. A client picking single messages gets nothing read ahead.
        let sequential = retr && index.checked_sub(1) == self.ahead.last_retr;
        if retr {
            self.ahead.last_retr = Some(index);
        }
        if let Some(chunks) = self.ahead.take(index) {
            return Ok(self.reader(id, size, top, chunks));
        }
        if self.store.shared().blobs.is_none() {
            // Bodies in PostgreSQL: the message's first chunks, and for a client reading in
            // order the whole bodies of the next messages that fit in the same batch.
            let mut wanted = vec![id];
            let granted = if sequential {
                self.ahead.reserve(
                    BATCH_OCTETS - BATCH_OCTETS.min(usize::try_from(size).unwrap_or(usize::MAX)),
                )
            } else {
                0
            };
            if granted > 0 {
                let mut room = granted as u64;
                for (next_id, next) in self.ids.iter().zip(&self.messages).skip(index + 1) {
                    if next.size > room || wanted.len() > MAX_AHEAD {
                        break;
                    }
                    room -= next.size;
                    wanted.push(*next_id);
                }
            }
            let followers = wanted.len() - 1;
            let mut bodies = match self.query_bodies(wanted).await {
                Ok(bodies) => bodies.into_iter().peekable(),
                Err(e) => {
                    self.ahead.release(granted);
                    return Err(e);
                }
            };
            let first = bodies.next_if(|(message_id, _)| *message_id == id);
            let mut kept = 0;
            if let Some((_, first)) = first {
                // A follower is kept only if it came whole (rows of a message are written
                // and removed in one transaction, so it did unless it was removed since the
                // snapshot: then its own RETR reports it). An empty one has no rows.
                for next in index + 1..=index + followers {
                    let (Some(&next_id), Some(info)) =
                        (self.ids.get(next), self.messages.get(next))
                    else {
                        break;
                    };
                    let chunks = bodies
                        .next_if(|(message_id, _)| *message_id == next_id)
                        .map(|(_, chunks)| chunks)
                        .unwrap_or_default();
                    let octets: usize = chunks.iter().map(|c| c.data().len()).sum();
                    if octets as u64 != info.size || kept + octets > granted {
                        break;
                    }
                    kept += octets;
                    self.ahead.bodies.push_back((next, chunks, octets));
                }
                self.ahead.release(granted - kept);
                return Ok(self.reader(id, size, top, first));
            }
            self.ahead.release(granted);
            // No chunks: an empty body, a message removed since the snapshot, or one whose
            // body is in an object store; the query below tells which.
        }
        let opened = self
            .store
            .spawn(move |shared| async move {
                let client = shared.client().await?;
                // The message's body reference and its first chunks, in one round trip.
                let statement = client
                    .prepare_cached(
                        "SELECT m.blob_key, b.seq, b.data FROM messages m \
                         LEFT JOIN bodies b ON b.message_id = m.id AND b.seq < $2 \
                         AND (b.seq = 0 OR (b.seq + 1)::bigint * octet_length(b.data) <= $3) \
                         WHERE m.id = $1 ORDER BY b.seq",
                    )
                    .await
                    .map_err(temporary)?;
                let rows = client
                    .query(&statement, &[&id, &batch(shared.chunk_size), &BATCH])
                    .await
                    .map_err(temporary)?;
                drop(client);
                let Some(row) = rows.first() else {
                    return Err(StoreError::Temporary(
                        "the message has been removed by another session".into(),
                    ));
                };
                match (row.get::<_, Option<String>>(0), &shared.blobs) {
                    (Some(key), Some(blobs)) => match blobs.get(&key).await {
                        Ok(Some(stream)) => Ok(Opened::Blob(stream)),
                        Ok(None) => Err(StoreError::Temporary(
                            "the message body is missing from the object store".into(),
                        )),
                        Err(e) => Err(StoreError::Temporary(e)),
                    },
                    (Some(_), None) => Err(StoreError::Permanent(
                        "the message body is in an object store, but none is configured".into(),
                    )),
                    (None, _) => {
                        let mut chunks = Vec::new();
                        for row in rows {
                            if let Some(seq) =
                                row.try_get::<_, Option<i32>>(1).map_err(temporary)?
                            {
                                chunks.push((seq, Chunk::row(row, 2)?));
                            }
                        }
                        Ok(Opened::Pg(contiguous(chunks)))
                    }
                }
            })
            .await?;
        match opened {
            Opened::Pg(first) => Ok(self.reader(id, size, top, first)),
            Opened::Blob(stream) => Ok(PgReader {
                shared: Arc::clone(self.store.shared()),
                source: Source::Blob(Some(stream)),
                fetched: 0,
                queued: Default::default(),
                buf: None,
                pos: 0,
                size,
                cut: top.map_or_else(TopCut::all, TopCut::top),
                ended: false,
            }),
        }
    }

    async fn commit(mut self, delete: Vec<usize>) -> Result<(), StoreError> {
        let mut marked = delete;
        marked.sort_unstable();
        marked.dedup();
        let uidls: Vec<String> = marked
            .iter()
            .filter_map(|&i| self.messages.get(i))
            .map(|m| String::from_utf8_lossy(m.uid.as_bytes()).into_owned())
            .collect();
        let holder = self.lease.as_ref().map(|l| l.holder.clone());
        if uidls.is_empty() {
            // Nothing to delete; the lease (if any) is released by the drop.
            return Ok(());
        }
        let user = self.user.clone();
        let removed_blobs = self
            .store
            .spawn(move |shared| async move {
                let mut client = shared.client().await?;
                let tx = client.transaction().await.map_err(temporary)?;
                if let Some(holder) = &holder {
                    let ours = tx
                        .query_opt(
                            "SELECT 1 FROM leases WHERE user_name = $1 AND holder = $2 \
                             AND expires_at > now() FOR UPDATE",
                            &[&user, holder],
                        )
                        .await
                        .map_err(temporary)?;
                    if ours.is_none() {
                        return Err(StoreError::Temporary(
                            "the maildrop lease was lost; nothing was deleted".into(),
                        ));
                    }
                }
                let rows = tx
                    .query(
                        "DELETE FROM messages WHERE user_name = $1 AND uidl = ANY($2) \
                         RETURNING blob_key",
                        &[&user, &uidls],
                    )
                    .await
                    .map_err(temporary)?;
                if let Some(holder) = &holder {
                    tx.execute(RELEASE_LEASE, &[&user, holder])
                        .await
                        .map_err(temporary)?;
                }
                tx.commit().await.map_err(temporary)?;
                let keys: Vec<String> = rows
                    .iter()
                    .filter_map(|r| r.get::<_, Option<String>>(0))
                    .collect();
                Ok(keys)
            })
            .await?;
        if let Some(lease) = self.lease.as_mut() {
            lease.released = true;
        }
        if !removed_blobs.is_empty() {
            // The rows are gone: the objects are orphans now. Removed in the background;
            // whatever fails here, `gc` removes later.
            let shared = Arc::clone(self.store.shared());
            drop(self.store.shared().handle.spawn(async move {
                if let Some(blobs) = &shared.blobs {
                    for key in removed_blobs {
                        let _ = blobs.delete(&key).await;
                    }
                }
            }));
        }
        Ok(())
    }
}

/// Where a reader's next chunks come from.
enum Source {
    /// Rows of `bodies`, from `next_seq` on, `per_query` at a time.
    Pg {
        id: i64,
        next_seq: i32,
        per_query: i32,
    },
    /// An object-store download (`None` while a read of it is under way elsewhere).
    Blob(Option<BlobStream>),
}

/// Streams one message of a [`PgDrop`], chunk by chunk (one row of `bodies`, or one piece of
/// the download), taking a pooled connection for each chunk only. For `TOP` it stops after the
/// header and the requested lines.
pub struct PgReader {
    shared: Arc<Shared>,
    source: Source,
    /// The current chunk, and how much of it has been read.
    buf: Option<Chunk>,
    pos: usize,
    /// Chunks read ahead (one query reads several).
    queued: std::collections::VecDeque<Chunk>,
    /// Octets of the message taken from `queued` or the source so far.
    fetched: u64,
    /// The size in the snapshot.
    size: u64,
    cut: TopCut,
    ended: bool,
}

impl std::fmt::Debug for PgReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgReader")
            .field("fetched", &self.fetched)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl PgReader {
    /// The next chunk of the message, `None` at its end.
    async fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        let failed = |e: StoreError| io::Error::other(e.to_string());
        if let Some(chunk) = self.queued.pop_front() {
            return Ok(Some(chunk));
        }
        match &mut self.source {
            // Every octet the snapshot counted has come: no query to learn there is no more.
            Source::Pg { .. } if self.fetched >= self.size => Ok(None),
            Source::Pg {
                id,
                next_seq,
                per_query,
            } => {
                let (id, seq, per_query) = (*id, *next_seq, *per_query);
                let chunks = spawn_on(&self.shared, move |shared| async move {
                    let client = shared.client().await?;
                    let statement = client
                        .prepare_cached(
                            "SELECT seq, data FROM bodies WHERE message_id = $1 \
                             AND seq >= $2 AND seq < $2 + $3",
                        )
                        .await
                        .map_err(temporary)?;
                    let mut rows = Vec::new();
                    for row in client
                        .query(&statement, &[&id, &seq, &per_query])
                        .await
                        .map_err(temporary)?
                    {
                        rows.push((
                            row.try_get::<_, i32>(0).map_err(temporary)?,
                            Chunk::row(row, 1)?,
                        ));
                    }
                    rows.sort_unstable_by_key(|&(seq, _)| seq);
                    Ok(rows.into_iter().map(|(_, data)| data).collect::<Vec<_>>())
                })
                .await
                .map_err(failed)?;
                *next_seq =
                    next_seq.saturating_add(i32::try_from(chunks.len()).unwrap_or(i32::MAX));
                self.queued.extend(chunks);
                Ok(self.queued.pop_front())
            }
            Source::Blob(slot) => {
                let Some(mut stream) = slot.take() else {
                    return Err(io::Error::other("an earlier read was interrupted"));
                };
                let (stream, item) = spawn_on(&self.shared, move |_| async move {
                    use futures_util::StreamExt as _;
                    let item = stream.next().await;
                    Ok((stream, item))
                })
                .await
                .map_err(failed)?;
                *slot = Some(stream);
                match item {
                    None => Ok(None),
                    Some(Ok(bytes)) => Ok(Some(Chunk::Blob(bytes))),
                    Some(Err(e)) => Err(io::Error::other(e)),
                }
            }
        }
    }
}

impl backend::MessageReader for PgReader {
    async fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.ended || self.cut.is_done() || out.is_empty() {
                return Ok(0);
            }
            if let Some(chunk) = &self.buf {
                let rest = chunk.data().get(self.pos..).unwrap_or_default();
                if !rest.is_empty() {
                    let take = rest.len().min(out.len());
                    let n = self.cut.admit(&rest[..take]);
                    out[..n].copy_from_slice(&rest[..n]);
                    self.pos += n;
                    if n == 0 {
                        continue;
                    }
                    return Ok(n);
                }
            }
            match self.next_chunk().await? {
                Some(chunk) => {
                    self.fetched += chunk.data().len() as u64;
                    if self.fetched > self.size {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "the message is longer than its recorded size",
                        ));
                    }
                    self.buf = Some(chunk);
                    self.pos = 0;
                }
                None if self.fetched < self.size => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the message was removed while it was being read",
                    ));
                }
                None => self.ended = true,
            }
        }
    }
}
