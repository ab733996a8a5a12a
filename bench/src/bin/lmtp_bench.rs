//! A load generator for LMTP servers (RFC 2033): CONNECTIONS clients at once, each delivering
//! its share of MESSAGES messages of SIZE octets, one recipient each (users PREFIX0..N round
//! robin), `MAIL`, `RCPT` and `DATA` pipelined; the commands, the dot-stuffing and the replies
//! are `pop3-lmtp`'s. Prints deliveries per second and MB/s; any
//! reply that is not the expected one fails the run.
//!
//! `lmtp-bench --addr 127.0.0.1:24 --connections 8 --messages 4000 --size 4000 --users 10`

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use clap::Parser;
use pop3_lmtp::body::DotStuffer;
use pop3_lmtp::decode::{self, ReplyReader};
use pop3_lmtp::{Command, Domain, Encode, Mailbox, Path};

#[derive(Parser, Debug)]
#[command(about = "Load generator for LMTP servers")]
struct Args {
    /// Server address, host:port.
    #[arg(long)]
    addr: String,
    /// Connections at once.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Messages in all.
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// Size of each message, octets.
    #[arg(long, default_value_t = 4000)]
    size: usize,
    /// Recipients are PREFIX0@DOMAIN, PREFIX1@DOMAIN, ...
    #[arg(long, default_value = "user")]
    user_prefix: String,
    /// How many distinct recipients.
    #[arg(long, default_value_t = 1)]
    users: usize,
    /// The recipients' domain.
    #[arg(long, default_value = "example.org")]
    domain: String,
}

/// One connection's wire: commands encoded and replies read by `pop3-lmtp`.
struct Wire {
    r: BufReader<TcpStream>,
    w: TcpStream,
    replies: ReplyReader,
}

impl Wire {
    /// The next whole reply; an error unless its code is `code`.
    fn expect(&mut self, code: u16) -> Result<(), String> {
        loop {
            let mut line = Vec::new();
            if self
                .r
                .read_until(b'\n', &mut line)
                .map_err(|e| e.to_string())?
                == 0
            {
                return Err("connection closed".into());
            }
            let (_, content) = decode::line(&line).map_err(|e| format!("{e:?}"))?;
            if let Some(reply) = self.replies.push_line(content).map_err(|e| e.to_string())? {
                return if reply.code == code {
                    Ok(())
                } else {
                    Err(format!("expected {code}, got {reply}"))
                };
            }
        }
    }

    fn send(&mut self, commands: &[Command]) -> Result<(), String> {
        let mut out = Vec::new();
        for c in commands {
            c.encode(&mut out);
        }
        self.w.write_all(&out).map_err(|e| e.to_string())
    }
}

fn client(args: &Args, first: usize, count: usize, body: &[u8]) -> Result<(), String> {
    let tcp = TcpStream::connect(&args.addr).map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut wire = Wire {
        w: tcp.try_clone().map_err(|e| e.to_string())?,
        r: BufReader::new(tcp),
        replies: ReplyReader::new(4096, 100),
    };
    let domain = |d: &str| Domain::new(d).map_err(|e| e.to_string());
    let from =
        Path::Mailbox(Mailbox::new("bench", domain("example.org")?).map_err(|e| e.to_string())?);
    wire.expect(220)?;
    wire.send(&[Command::Lhlo(domain("bench.example.org")?)])?;
    wire.expect(250)?;
    for i in first..first + count {
        let to = Mailbox::new(
            format!("{}{}", args.user_prefix, i % args.users),
            domain(&args.domain)?,
        )
        .map_err(|e| e.to_string())?;
        // MAIL, RCPT and DATA pipelined (RFC 2920).
        wire.send(&[
            Command::Mail {
                from: from.clone(),
                params: Vec::new(),
            },
            Command::Rcpt {
                to,
                params: Vec::new(),
            },
            Command::Data,
        ])?;
        wire.expect(250)?;
        wire.expect(250)?;
        wire.expect(354)?;
        let mut msg = Vec::with_capacity(body.len() + 64);
        let mut stuffer = DotStuffer::new();
        stuffer.push(
            format!("Subject: bench {i}\r\nMessage-ID: <{i}@bench>\r\n\r\n").as_bytes(),
            &mut msg,
        );
        stuffer.push(body, &mut msg);
        stuffer.finish(&mut msg);
        wire.w.write_all(&msg).map_err(|e| e.to_string())?;
        wire.expect(250)?;
    }
    wire.send(&[Command::Quit])?;
    wire.expect(221)
}

fn main() {
    let args = Args::parse();
    let line = "The quick brown fox jumps over the lazy dog, line of mail.\r\n";
    let body = line.repeat(args.size / line.len()).into_bytes();
    let per = args.messages / args.connections;
    let start = Instant::now();
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.connections)
            .map(|c| {
                let (args, body) = (&args, &body);
                s.spawn(move || client(args, c * per, per, body))
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().expect("client thread").err())
            .collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let delivered = per * args.connections - failures.len() * per;
    println!(
        "lmtp: {delivered} deliveries in {secs:.2} s: {:.0} deliveries/s, {:.1} MB/s, {} connections, {} failed",
        delivered as f64 / secs,
        (delivered * body.len()) as f64 / secs / 1e6,
        args.connections,
        failures.len()
    );
    if let Some(f) = failures.first() {
        eprintln!("lmtp-bench: {f}");
        std::process::exit(1);
    }
}
