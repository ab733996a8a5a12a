//! A POP3 server on 127.0.0.1 with an in-memory maildrop: user `alice`, password `pw`.
//! Plaintext passwords are allowed because it listens on loopback only.
//!
//! `cargo run -p pop3-tokio --example tokio_server`, then `curl pop3://127.0.0.1:PORT/1 -u alice:pw`.

use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
use pop3_server_core::session::{Backend, Policy};
use pop3_tokio::server::{ServerOptions, serve};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let store = MemoryStore::new();
    store.add_message(
        "alice",
        "msg-1",
        b"Subject: Hello\r\n\r\nFirst message.\r\n",
    );
    store.add_message(
        "alice",
        "msg-2",
        b"Subject: Again\r\n\r\n.A line that starts with a dot.\r\n",
    );
    let mut policy = Policy::default();
    policy.rules.plaintext_auth = true;
    let backend = Backend::new(
        MemoryAuthenticator::new().with_user("alice", "pw"),
        store,
        policy,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!(
        "POP3 on {} (alice / pw); Ctrl-C stops",
        listener.local_addr()?
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve(listener, backend, None, ServerOptions::default(), shutdown).await
}
