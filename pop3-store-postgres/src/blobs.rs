//! Message bodies in an S3-compatible object store (feature `s3`): one object per message,
//! `bodies/` and 32 random hex digits, written whole before its row, streamed when read.
//!
//! Without the feature, [`Blobs`] is a type with no values and a configuration that names
//! S3 is refused when the store is built.

use bytes::Bytes;
use futures_util::stream::BoxStream;

use crate::config::Bodies;

/// A download: the pieces of one object.
pub(crate) type BlobStream = BoxStream<'static, Result<Bytes, String>>;

/// One object of the store, as `gc` sees it.
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub(crate) struct Listed {
    pub(crate) key: String,
    pub(crate) modified: std::time::SystemTime,
}

/// The folder of the bucket that holds the bodies.
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub(crate) const PREFIX: &str = "bodies";

/// A new object key.
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub(crate) fn new_key() -> String {
    format!("{PREFIX}/{}", crate::random_hex(16))
}

#[cfg(feature = "s3")]
mod imp {
    use std::sync::Arc;

    use futures_util::{StreamExt as _, TryStreamExt as _};
    use object_store::aws::AmazonS3Builder;
    use object_store::path::Path;
    use object_store::{GetOptions, ObjectStore, PutOptions, PutPayload};

    use super::{BlobStream, Bodies, Listed, PREFIX};

    /// The object store of the bodies.
    pub(crate) struct Blobs {
        store: Arc<dyn ObjectStore>,
    }

    impl Blobs {
        /// The store `bodies` names, `None` for bodies in PostgreSQL.
        pub(crate) fn new(bodies: &Bodies) -> Result<Option<Blobs>, String> {
            let Bodies::S3 {
                endpoint,
                bucket,
                region,
                access_key,
                secret_key,
                allow_http,
            } = bodies
            else {
                return Ok(None);
            };
            let store = AmazonS3Builder::new()
                .with_endpoint(endpoint)
                .with_bucket_name(bucket)
                .with_region(region)
                .with_access_key_id(access_key)
                .with_secret_access_key(secret_key)
                .with_allow_http(*allow_http)
                .with_virtual_hosted_style_request(false)
                .build()
                .map_err(|e| format!("S3 bodies: {e}"))?;
            Ok(Some(Blobs {
                store: Arc::new(store),
            }))
        }

        /// Writes an object; returns once the store has it.
        pub(crate) async fn put(&self, key: &str, data: Vec<u8>) -> Result<(), String> {
            self.store
                .put_opts(
                    &Path::from(key),
                    PutPayload::from(data),
                    PutOptions::default(),
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }

        /// Starts a download; `None` if there is no such object.
        pub(crate) async fn get(&self, key: &str) -> Result<Option<BlobStream>, String> {
            match self
                .store
                .get_opts(&Path::from(key), GetOptions::default())
                .await
            {
                Ok(got) => Ok(Some(got.into_stream().map_err(|e| e.to_string()).boxed())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        }

        /// Removes an object; one already gone counts as removed.
        pub(crate) async fn delete(&self, key: &str) -> Result<(), String> {
            let path = Path::from(key);
            let mut results = self
                .store
                .delete_stream(futures_util::stream::once(async move { Ok(path) }).boxed());
            while let Some(result) = results.next().await {
                match result {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(())
        }

        /// Every object under `bodies/`.
        pub(crate) fn list(
            &self,
        ) -> futures_util::stream::BoxStream<'static, Result<Listed, String>> {
            self.store
                .list(Some(&Path::from(PREFIX)))
                .map_ok(|meta| Listed {
                    key: meta.location.to_string(),
                    modified: meta.last_modified.into(),
                })
                .map_err(|e| e.to_string())
                .boxed()
        }
    }
}

#[cfg(not(feature = "s3"))]
mod imp {
    use super::{BlobStream, Bodies, Listed};

    /// No object store in this build: no values.
    pub(crate) enum Blobs {}

    impl Blobs {
        pub(crate) fn new(bodies: &Bodies) -> Result<Option<Blobs>, String> {
            match bodies {
                Bodies::Postgres => Ok(None),
                _ => Err(
                    "bodies in S3 need the `s3` feature of pop3-store-postgres, \
                          not enabled in this build"
                        .into(),
                ),
            }
        }

        pub(crate) async fn put(&self, _key: &str, _data: Vec<u8>) -> Result<(), String> {
            match *self {}
        }

        pub(crate) async fn get(&self, _key: &str) -> Result<Option<BlobStream>, String> {
            match *self {}
        }

        pub(crate) async fn delete(&self, _key: &str) -> Result<(), String> {
            match *self {}
        }

        pub(crate) fn list(
            &self,
        ) -> futures_util::stream::BoxStream<'static, Result<Listed, String>> {
            match *self {}
        }
    }
}

pub(crate) use imp::Blobs;
