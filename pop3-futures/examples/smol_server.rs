//! A POP3 server on smol, 127.0.0.1, in-memory maildrop: user `alice`, password `pw`
//! (plaintext allowed: loopback only).
//!
//! `cargo run -p pop3-futures --example smol_server`

use pop3_futures::Smol;
use pop3_futures::server::{ServerOptions, serve};
use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
use pop3_server_core::session::{Backend, Policy};

fn main() -> std::io::Result<()> {
    smol::block_on(async {
        let store = MemoryStore::new();
        store.add_message(
            "alice",
            "msg-1",
            b"Subject: Hello\r\n\r\nFirst message.\r\n",
        );
        let mut policy = Policy::default();
        policy.rules.plaintext_auth = true;
        let backend = Backend::new(
            MemoryAuthenticator::new().with_user("alice", "pw"),
            store,
            policy,
        );
        let listener = smol::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("POP3 on {} (alice / pw)", listener.local_addr()?);
        serve(
            listener,
            backend,
            None,
            ServerOptions::default(),
            Smol,
            std::future::pending(),
        )
        .await
    })
}
