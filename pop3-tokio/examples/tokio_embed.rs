//! Embedding the server with a custom mail store: a read-only directory of `.eml` files,
//! one user. Implementing [`MailStore`], [`Maildrop`] and [`MessageReader`] is all it takes;
//! the session keeps the POP3 semantics (numbering, deletion marks, UPDATE only on QUIT).
//!
//! `cargo run -p pop3-tokio --example tokio_embed -- DIR`

use std::path::PathBuf;
use std::sync::Arc;

use pop3_proto::Uid;
use pop3_server_core::backend::{
    MailStore, Maildrop, MaildropLock, MessageInfo, MessageReader, StoreError,
};
use pop3_server_core::memory::MemoryAuthenticator;
use pop3_server_core::session::{Backend, Policy};
use pop3_tokio::server::{ServerOptions, serve};

/// Every `*.eml` file of a directory, for any user; deletions are refused (read-only).
struct EmlDir(PathBuf);

struct EmlDrop {
    files: Vec<(PathBuf, Vec<u8>)>,
    infos: Vec<MessageInfo>,
}

struct Bytes(Arc<Vec<u8>>, usize);

impl MessageReader for Bytes {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0.len() - self.1);
        buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
        self.1 += n;
        Ok(n)
    }
}

impl MailStore for EmlDir {
    type Maildrop = EmlDrop;

    // Read-only, so sessions may share it whatever the lock mode: none can change anything.
    // A store that removes mail refuses a second session under `MaildropLock::Exclusive`
    // with `StoreError::InUse` (see the `MailStore` docs).
    async fn open(&self, _user: &str, _lock: MaildropLock) -> Result<EmlDrop, StoreError> {
        let mut files = Vec::new();
        let entries =
            std::fs::read_dir(&self.0).map_err(|e| StoreError::Temporary(e.to_string()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "eml") {
                let data =
                    std::fs::read(&path).map_err(|e| StoreError::Temporary(e.to_string()))?;
                // POP3 sizes count CRLF line ends; these files are assumed to use them.
                files.push((path, data));
            }
        }
        files.sort();
        let infos = files
            .iter()
            .enumerate()
            .map(|(i, (_, d))| MessageInfo {
                uid: Uid::new(format!("eml-{i}")).expect("valid uid"),
                size: d.len() as u64,
            })
            .collect();
        Ok(EmlDrop { files, infos })
    }
}

impl Maildrop for EmlDrop {
    type Reader = Bytes;

    fn messages(&self) -> &[MessageInfo] {
        &self.infos
    }

    async fn open_message(&mut self, index: usize, top: Option<u64>) -> Result<Bytes, StoreError> {
        let data = &self.files.get(index).ok_or(StoreError::NotFound)?.1;
        let len = match top {
            Some(n) => pop3_server_core::memory::top_len(data, n),
            None => data.len(),
        };
        Ok(Bytes(Arc::new(data[..len].to_vec()), 0))
    }

    async fn commit(self, delete: Vec<usize>) -> Result<(), StoreError> {
        if delete.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Permanent("this store is read-only".into()))
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let mut policy = Policy::default();
    policy.rules.plaintext_auth = true;
    let backend = Backend::new(
        MemoryAuthenticator::new().with_user("me", "pw"),
        EmlDir(dir.into()),
        policy,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!(
        "serving the .eml files of the directory on {} (me / pw)",
        listener.local_addr()?
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve(listener, backend, None, ServerOptions::default(), shutdown).await
}
