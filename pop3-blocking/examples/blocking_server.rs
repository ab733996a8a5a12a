//! A blocking POP3 server on 127.0.0.1 with an in-memory maildrop: user `alice`, password
//! `pw` (plaintext allowed: loopback only). Stops after `SECONDS` (default 300).
//!
//! `cargo run -p pop3-blocking --example blocking_server -- [SECONDS]`

use std::time::Duration;

use pop3_blocking::server::{ServerOptions, Shutdown, serve};
use pop3_server_core::memory::{MemoryAuthenticator, MemoryStore};
use pop3_server_core::session::{Backend, Policy};

fn main() -> std::io::Result<()> {
    let secs = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
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
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    println!(
        "POP3 on {} (alice / pw) for {secs} s",
        listener.local_addr()?
    );
    let shutdown = Shutdown::new();
    let timer = shutdown.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(secs));
        timer.trigger();
    });
    serve(listener, backend, None, ServerOptions::default(), &shutdown)
}
