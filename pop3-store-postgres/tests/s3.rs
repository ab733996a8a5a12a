//! Bodies in an S3-compatible store (moto, started by tests/support), metadata in a real
//! PostgreSQL: blob before row, streaming reads, removal at QUIT, the orphan sweeper, import.

#![cfg(feature = "s3")]

mod reading;
mod support;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutOptions, PutPayload};
use pop3_server_core::backend::{MailStore, Maildrop, MaildropLock, StoreError};
use pop3_server_core::block_on;
use pop3_server_core::deliver::{Deliver, DeliverError};
use pop3_store_postgres::{Bodies, PgConfig, PgStore};
use reading::{reference, retr};
use support::MotoServer;

struct Fixture {
    store: PgStore,
    url: String,
    bucket: Bucket,
}

/// Direct access to the bucket, as an operator would have.
struct Bucket {
    s3: AmazonS3,
    rt: tokio::runtime::Runtime,
}

impl Bucket {
    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.rt.block_on(async {
            self.s3
                .list(Some(&ObjectPath::from("bodies")))
                .map_ok(|m| m.location.to_string())
                .try_collect()
                .await
                .unwrap()
        });
        keys.sort();
        keys
    }

    fn put(&self, key: &str, data: &[u8]) {
        self.rt.block_on(async {
            self.s3
                .put_opts(
                    &ObjectPath::from(key),
                    PutPayload::from(data.to_vec()),
                    PutOptions::default(),
                )
                .await
                .unwrap();
        });
    }
}

fn bodies(moto: &MotoServer, bucket: &str) -> Bodies {
    let text = format!(
        "kind = \"s3\"\nendpoint = \"{}\"\nbucket = \"{bucket}\"\naccess_key = \"test\"\n\
         secret_key = \"test\"\nallow_http = true\n",
        moto.endpoint()
    );
    toml::from_str(&text).expect("S3 bodies configuration")
}

fn fixture() -> Option<Fixture> {
    let moto = MotoServer::shared()?;
    let url = support::database()?;
    static N: AtomicU32 = AtomicU32::new(0);
    let bucket = format!(
        "b{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    moto.create_bucket(&bucket);
    let config = PgConfig::new(&url)
        .with_bodies(bodies(moto, &bucket))
        .with_chunk_size(1024);
    let store = PgStore::new(config).expect("store");
    block_on(store.migrate()).expect("migrate");
    let s3 = AmazonS3Builder::new()
        .with_endpoint(moto.endpoint())
        .with_bucket_name(&bucket)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_allow_http(true)
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    Some(Fixture {
        store,
        url,
        bucket: Bucket { s3, rt },
    })
}

/// Waits up to two seconds for `cond`.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

fn big_message() -> Vec<u8> {
    let mut m = b"Subject: big\nFrom: a@example.com\n\n".to_vec();
    for i in 0..2000 {
        m.extend_from_slice(format!("line {i}\n").as_bytes());
        if i % 100 == 0 {
            m.extend_from_slice(b".dot\r\n");
        }
    }
    m
}

#[test]
fn bodies_in_s3_stream_and_go_with_their_rows() {
    let Some(f) = fixture() else { return };
    block_on(f.store.add_user("alice", "{PLAIN}pw", true)).unwrap();
    let big = big_message();
    let small = b"Subject: small\n\nhello\n".to_vec();
    let stored_big = block_on(f.store.deliver("alice", &big)).unwrap();
    let stored_small = block_on(f.store.deliver("alice", &small)).unwrap();
    assert_eq!(stored_big.size, reference(&big, None).len() as u64);
    assert_eq!(f.bucket.keys().len(), 2);

    let mut drop = block_on(f.store.open("alice", MaildropLock::Snapshot)).unwrap();
    assert_eq!(drop.messages()[0].uid, stored_big.uid);
    assert_eq!(drop.messages()[1].uid, stored_small.uid);
    assert_eq!(retr(&mut drop, 0, None, 777), reference(&big, None));
    assert_eq!(retr(&mut drop, 1, None, 777), reference(&small, None));
    for lines in [0, 1, 150, 100_000] {
        assert_eq!(
            retr(&mut drop, 0, Some(lines), 777),
            reference(&big, Some(lines))
        );
    }
    // QUIT removes the row, and the object soon after.
    block_on(drop.commit(vec![0])).unwrap();
    assert!(eventually(|| f.bucket.keys().len() == 1));
    let mut drop = block_on(f.store.open("alice", MaildropLock::Snapshot)).unwrap();
    assert_eq!(drop.messages().len(), 1);
    assert_eq!(retr(&mut drop, 0, None, 777), reference(&small, None));
}

#[test]
fn the_object_is_written_before_its_row_and_never_a_row_without_it() {
    let Some(f) = fixture() else { return };
    block_on(f.store.add_user("alice", "{PLAIN}pw", true)).unwrap();
    // Slow the row down, and look at the bucket meanwhile.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (client, conn) = rt
        .block_on(tokio_postgres::connect(&f.url, tokio_postgres::NoTls))
        .unwrap();
    rt.spawn(conn);
    rt.block_on(client.batch_execute(
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS \
           $$ BEGIN PERFORM pg_sleep(1.5); RETURN NEW; END $$; \
         CREATE TRIGGER slow BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION slow();",
    ))
    .unwrap();
    let store = f.store.clone();
    let delivery =
        std::thread::spawn(move || block_on(store.deliver("alice", b"Subject: x\n\ny\n")));
    assert!(eventually(|| f.bucket.keys().len() == 1), "object first");
    let drop = block_on(f.store.open("alice", MaildropLock::Snapshot)).unwrap();
    assert!(drop.messages().is_empty(), "row after the object");
    let stored = delivery.join().unwrap().unwrap();
    let drop = block_on(f.store.open("alice", MaildropLock::Snapshot)).unwrap();
    assert_eq!(drop.messages()[0].uid, stored.uid);
    rt.block_on(client.batch_execute("DROP TRIGGER slow ON messages"))
        .unwrap();

    // The object store is down: the delivery fails and leaves no row.
    let dead = PgConfig::new(&f.url).with_bodies(
        toml::from_str(&format!(
            "kind = \"s3\"\nendpoint = \"http://127.0.0.1:{}\"\nbucket = \"b\"\n\
             access_key = \"k\"\nsecret_key = \"s\"\nallow_http = true\n",
            support::free_port()
        ))
        .unwrap(),
    );
    let dead = PgStore::new(dead).unwrap();
    let failed = block_on(dead.deliver("alice", b"Subject: lost\n\nz\n"));
    assert!(
        matches!(failed, Err(DeliverError::Temporary(_))),
        "{failed:?}"
    );
    let drop = block_on(f.store.open("alice", MaildropLock::Snapshot)).unwrap();
    assert_eq!(drop.messages().len(), 1);
    // Reading a message whose object vanished is a temporary failure, not garbage.
    let mut drop = drop;
    for key in f.bucket.keys() {
        f.bucket.rt.block_on(async {
            use object_store::ObjectStoreExt as _;
            f.bucket.s3.delete(&ObjectPath::from(key)).await.unwrap();
        });
    }
    assert!(matches!(
        block_on(drop.open_message(0, None)),
        Err(StoreError::Temporary(_))
    ));
}

#[test]
fn gc_removes_old_orphans_only() {
    let Some(f) = fixture() else { return };
    block_on(f.store.add_user("alice", "{PLAIN}pw", true)).unwrap();
    let kept = b"Subject: kept\n\nstill here\n";
    block_on(f.store.deliver("alice", kept)).unwrap();
    f.bucket
        .put("bodies/orphan-1", b"left by a failed delivery");
    f.bucket.put("bodies/orphan-2", b"left by a crash");
    f.bucket.put("elsewhere/not-ours", b"outside the prefix");
    assert_eq!(f.bucket.keys().len(), 3);

    // Too young to be swept.
    let report = block_on(f.store.gc(Duration::from_secs(3600))).unwrap();
    assert_eq!((report.blobs_seen, report.blobs_removed), (3, 0));
    // Old enough: the orphans go, the message's object stays.
    let report = block_on(f.store.gc(Duration::ZERO)).unwrap();
    assert_eq!((report.blobs_seen, report.blobs_removed), (3, 2));
    assert_eq!(f.bucket.keys().len(), 1);
    let mut drop = block_on(f.store.open("alice", MaildropLock::Snapshot)).unwrap();
    assert_eq!(retr(&mut drop, 0, None, 777), reference(kept, None));
    let report = block_on(f.store.gc(Duration::ZERO)).unwrap();
    assert_eq!(report.blobs_removed, 0);
    // Nothing outside `bodies/` is touched.
    f.bucket.rt.block_on(async {
        use object_store::ObjectStoreExt as _;
        f.bucket
            .s3
            .head(&ObjectPath::from("elsewhere/not-ours"))
            .await
            .unwrap();
    });
}

#[test]
fn import_into_s3_keeps_uidls_and_is_idempotent() {
    let Some(f) = fixture() else { return };
    let root = tempfile::tempdir().unwrap();
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(root.path().join("alice").join(sub)).unwrap();
    }
    let names = ["1700000000.M1P1.host", "1700000001.M2P1.host"];
    std::fs::write(
        root.path().join("alice/new").join(names[0]),
        b"Subject: a\n\none\n",
    )
    .unwrap();
    std::fs::write(
        root.path()
            .join("alice/cur")
            .join(format!("{}:2,S", names[1])),
        b"Subject: b\n\ntwo\n",
    )
    .unwrap();
    let passwd = root.path().join("passwd");
    std::fs::write(&passwd, "alice:{PLAIN}pw\nbob:{PLAIN}pw2\n").unwrap();

    let report = block_on(f.store.import_maildir(root.path(), &passwd)).unwrap();
    assert_eq!((report.users_added, report.messages_added), (2, 2));
    let report = block_on(f.store.import_maildir(root.path(), Path::new(&passwd))).unwrap();
    assert_eq!((report.users_existing, report.messages_existing), (2, 2));
    assert_eq!(report.messages_added, 0);
    assert_eq!(f.bucket.keys().len(), 2);
    let mut drop = block_on(f.store.open("alice", MaildropLock::Snapshot)).unwrap();
    let uids: Vec<String> = drop.messages().iter().map(|m| m.uid.to_string()).collect();
    assert_eq!(uids, names);
    assert_eq!(retr(&mut drop, 1, None, 777), b"Subject: b\r\n\r\ntwo\r\n");
}
