//! A load generator for LMTP servers (RFC 2033): CONNECTIONS clients at once, each delivering
//! its share of MESSAGES messages of SIZE octets, one recipient each (users PREFIX0..N round
//! robin), `MAIL`, `RCPT` and `DATA` pipelined. Prints deliveries per second and MB/s; any
//! reply that is not the expected one fails the run.
//!
//! `lmtp-bench --addr 127.0.0.1:24 --connections 8 --messages 4000 --size 4000 --users 10`

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use clap::Parser;

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

/// One reply (the last line of a multi-line one), or an error.
fn reply(r: &mut BufReader<TcpStream>) -> Result<String, String> {
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(line);
        }
    }
}

fn expect(r: &mut BufReader<TcpStream>, code: &str) -> Result<(), String> {
    let line = reply(r)?;
    if line.starts_with(code) {
        Ok(())
    } else {
        Err(format!("expected {code}, got {}", line.trim_end()))
    }
}

fn client(args: &Args, first: usize, count: usize, body: &[u8]) -> Result<(), String> {
    let tcp = TcpStream::connect(&args.addr).map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut w = tcp.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(tcp);
    expect(&mut r, "220")?;
    w.write_all(b"LHLO bench.example.org\r\n")
        .map_err(|e| e.to_string())?;
    expect(&mut r, "250")?;
    for i in first..first + count {
        let rcpt = format!("{}{}@{}", args.user_prefix, i % args.users, args.domain);
        let head = format!("MAIL FROM:<bench@example.org>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n");
        w.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
        expect(&mut r, "250")?;
        expect(&mut r, "250")?;
        expect(&mut r, "354")?;
        let mut msg = format!("Subject: bench {i}\r\nMessage-ID: <{i}@bench>\r\n\r\n").into_bytes();
        msg.extend_from_slice(body);
        msg.extend_from_slice(b".\r\n");
        w.write_all(&msg).map_err(|e| e.to_string())?;
        expect(&mut r, "250")?;
    }
    w.write_all(b"QUIT\r\n").map_err(|e| e.to_string())?;
    expect(&mut r, "221")
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
