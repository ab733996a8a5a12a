//! `async-pop-fetch`: downloads every message of a maildrop with the third-party `async-pop`
//! crate, for `bench/clients.sh` to compare `pop3 fetch` with.
//!
//! Written as a user of that crate would: `connect_plain`, `login` (USER/PASS), `stat`, one
//! `retr` per message (the crate sends one command and waits for its whole reply), `quit`.
//!
//! `stat`, not `list`: async-pop 1.1.3 hangs on the first `retr` after a `list` whose reply
//! is longer than that `retr`'s (e.g. 2000 messages: a 22 kB LIST, then an 8 kB RETR). Its
//! stream remembers the byte count a partial parse asked for (`decode_needs`) and does not
//! reset it after a complete response, so it will not parse the next reply until that many
//! bytes have arrived; once the server gives up and closes, a read of 0 bytes is retried
//! forever (a busy loop).
//! Each message goes to `OUTDIR/N` with CRLF line ends as on the wire; the crate drops the
//! CRLF before the terminating `.`, so it is put back, which makes each file exactly as long
//! as the size the server lists. Nothing is deleted. Prints `N messages, B bytes`.
//!
//! `--nodelay` (diagnostic, not the crate's usual use): the crate writes each command and its
//! CRLF in two writes on a socket with Nagle's algorithm on, so the CRLF waits for the
//! server's delayed ACK (~40 ms on Linux) on every command; with this flag the socket is
//! opened here with `TCP_NODELAY` and handed to `async_pop::new`, to show the crate's speed
//! without that stall.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use async_pop::response::types::DataType;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "async-pop-fetch",
    about = "Fetch all messages with the async-pop crate"
)]
struct Args {
    /// Server address, host:port (plain TCP).
    addr: String,
    /// User name (USER).
    user: String,
    /// Password (PASS).
    password: String,
    /// Directory for the messages, one file per message (created if missing).
    outdir: PathBuf,
    /// Open the socket with TCP_NODELAY (see the crate documentation above).
    #[arg(long)]
    nodelay: bool,
}

type Error = Box<dyn std::error::Error>;

async fn run(args: Args) -> Result<(usize, u64), Error> {
    std::fs::create_dir_all(&args.outdir)?;
    let mut client = if args.nodelay {
        let socket = tokio::net::TcpStream::connect(args.addr.as_str()).await?;
        socket.set_nodelay(true)?;
        async_pop::new(socket).await?
    } else {
        async_pop::connect_plain(args.addr.as_str()).await?
    };
    client.login(&args.user, &args.password).await?;
    let count = client.stat().await?.counter().value()?;
    let mut bytes = 0u64;
    for n in 1..=count {
        let mut message = client.retr(n).await?.to_vec();
        message.extend_from_slice(b"\r\n");
        bytes += message.len() as u64;
        std::fs::write(args.outdir.join(n.to_string()), &message)?;
    }
    client.quit().await?;
    Ok((count, bytes))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("async-pop-fetch: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok((messages, bytes)) => {
            println!("{messages} messages, {bytes} bytes");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("async-pop-fetch: {e}");
            ExitCode::FAILURE
        }
    }
}
