//! Lists and prints the messages of a POP3 account.
//!
//! `cargo run -p pop3-tokio --example tokio_client -- HOST:PORT USER PASSWORD [plain|stls|tls]`
//! (default `tls`, verified against Mozilla's roots).

use pop3_tls::{Trust, client_config};
use pop3_tokio::client::{ClientOptions, Pop3Client, TlsMode};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, user, password, rest @ ..] = args.as_slice() else {
        eprintln!("usage: client HOST:PORT USER PASSWORD [plain|stls|tls]");
        std::process::exit(2);
    };
    let tls = client_config(&Trust::WebPki)?;
    let mode = match rest.first().map(String::as_str) {
        Some("plain") => TlsMode::Plain,
        Some("stls") => TlsMode::StartTls(tls),
        _ => TlsMode::Implicit(tls),
    };
    let mut client = Pop3Client::connect(addr, ClientOptions::new(mode)).await?;
    client.login(user, password).await?;
    let stat = client.stat().await?;
    println!("{} messages, {} octets", stat.count, stat.size);
    for item in client.list().await? {
        println!("--- message {} ({} octets)", item.msg, item.size);
        let mut stdout = tokio::io::stdout();
        client.retr_to(item.msg, &mut stdout).await?;
    }
    client.quit().await?;
    Ok(())
}
