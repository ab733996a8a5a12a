//! Lists and prints the messages of a POP3 account, blocking.
//!
//! `cargo run -p pop3-blocking --example blocking_client -- HOST:PORT USER PASSWORD [plain|stls|tls]`

use pop3_blocking::client::{ClientOptions, Pop3Client, TlsMode};
use pop3_tls::{Trust, client_config};

fn main() -> Result<(), Box<dyn std::error::Error>> {
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
    let mut client = Pop3Client::connect(addr, ClientOptions::new(mode))?;
    client.login(user, password)?;
    for item in client.list()? {
        println!("--- message {} ({} octets)", item.msg, item.size);
        client.retr_to(item.msg, &mut std::io::stdout())?;
    }
    client.quit()?;
    Ok(())
}
