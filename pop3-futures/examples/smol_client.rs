//! Lists the messages of a POP3 account and prints their sizes, on smol.
//!
//! `cargo run -p pop3-futures --example smol_client -- HOST:PORT USER PASSWORD [plain|stls|tls]`

use pop3_futures::client::{ClientOptions, Pop3Client, TlsMode};
use pop3_tls::{Trust, client_config};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, user, password, rest @ ..] = args.as_slice() else {
        eprintln!("usage: smol_client HOST:PORT USER PASSWORD [plain|stls|tls]");
        std::process::exit(2);
    };
    let tls = client_config(&Trust::WebPki)?;
    let mode = match rest.first().map(String::as_str) {
        Some("plain") => TlsMode::Plain,
        Some("stls") => TlsMode::StartTls(tls),
        _ => TlsMode::Implicit(tls),
    };
    smol::block_on(async {
        let mut client = Pop3Client::connect(addr, ClientOptions::new(mode)).await?;
        client.login(user, password).await?;
        for item in client.list().await? {
            let size = client.retr_with(item.msg, |_| Ok(())).await?;
            println!("message {}: {size} octets", item.msg);
        }
        client.quit().await?;
        Ok(())
    })
}
