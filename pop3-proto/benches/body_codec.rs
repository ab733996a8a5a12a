//! Throughput of the multi-line body codec (`pop3_proto::body`) against a plain memcpy of the
//! same bytes, the physical limit of any codec that has to move them.
//!
//! Three inputs, built deterministically here so runs are comparable:
//! - `typical_100k`: a 100 KiB mail, headers and text lines of varied length, ~3% of lines
//!   starting with `.`;
//! - `base64_50m`: a 50 MiB message whose body is one base64 attachment in 76-character lines;
//! - `all_dots_4m`: the decoder's and encoder's worst case, every line (of 1..=76 octets)
//!   starting with `.`.
//!
//! Throughput is counted in octets of the body for the encoder and for memcpy, and in octets of
//! the wire form (stuffed, with terminator) for the decoder, which is what each one reads.
//!
//! Run: `cargo bench -p pop3-proto --bench body_codec`.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use pop3_proto::body::{DotStuffer, DotUnstuffer, Unstuffed};

/// xorshift64*: deterministic, dependency-free pseudo-random numbers for the inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "the",
    "mail",
    "server",
    "message",
    "POP3",
    "download",
    "and",
    "of",
    "to",
    "a",
    "in",
    "is",
    "that",
    "for",
    "on",
    "with",
    "as",
    "was",
    "it",
    "be",
    "by",
    "this",
    "are",
    "from",
    "quarterly",
    "report",
    "attached",
    "please",
    "find",
    "regards",
    "meeting",
    "tomorrow",
];

fn headers(rng: &mut Rng, out: &mut Vec<u8>, content_type: &str) {
    for hop in 0..6 {
        out.extend_from_slice(
            format!(
                "Received: from relay{hop}.example.org (relay{hop}.example.org [192.0.2.{}])\r\n\tby mx.example.net with ESMTPS id {:016x}\r\n\tfor <user@example.net>; Sat, 28 Nov 2026 10:{hop:02}:00 +0000\r\n",
                rng.range(1, 254),
                rng.next()
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b"From: Alice Example <alice@example.org>\r\n");
    out.extend_from_slice(b"To: Bob Example <bob@example.net>\r\n");
    out.extend_from_slice(b"Subject: Quarterly report and meeting notes\r\n");
    out.extend_from_slice(b"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n");
    out.extend_from_slice(format!("Message-ID: <{:016x}@example.org>\r\n", rng.next()).as_bytes());
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    out.extend_from_slice(format!("Content-Type: {content_type}\r\n\r\n").as_bytes());
}

/// A text line of 0..=78 octets, plus CRLF; about 3% start with a dot.
fn text_line(rng: &mut Rng, out: &mut Vec<u8>) {
    let target = rng.range(0, 78);
    let start = out.len();
    if rng.range(0, 99) < 3 {
        out.push(b'.');
    }
    while out.len() - start < target {
        if out.len() > start && out[out.len() - 1] != b'.' {
            out.push(b' ');
        }
        out.extend_from_slice(WORDS[rng.range(0, WORDS.len() - 1)].as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

fn typical(size: usize) -> Vec<u8> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(size + 128);
    headers(&mut rng, &mut out, "text/plain; charset=utf-8");
    while out.len() < size {
        text_line(&mut rng, &mut out);
    }
    out
}

fn base64_attachment(size: usize) -> Vec<u8> {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut out = Vec::with_capacity(size + 128);
    headers(&mut rng, &mut out, "multipart/mixed; boundary=\"b1\"");
    out.extend_from_slice(b"--b1\r\nContent-Type: text/plain\r\n\r\n");
    for _ in 0..10 {
        text_line(&mut rng, &mut out);
    }
    out.extend_from_slice(
        b"--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    );
    while out.len() < size {
        for _ in 0..76 {
            out.push(B64[(rng.next() >> 58) as usize]);
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"--b1--\r\n");
    out
}

fn all_dots(size: usize) -> Vec<u8> {
    let mut rng = Rng(0x94D0_49BB_1331_11EB);
    let mut out = Vec::with_capacity(size + 128);
    while out.len() < size {
        out.push(b'.');
        for _ in 1..rng.range(1, 76) {
            out.push(b'a' + (rng.next() % 26) as u8);
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn stuffed(body: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    let mut enc = DotStuffer::new();
    enc.encode(body, &mut wire);
    enc.finish(&mut wire);
    wire
}

fn bench_input(group: &mut BenchmarkGroup<'_, WallTime>, body: &[u8]) {
    let wire = stuffed(body);

    // Check once, outside the timing, that the decoder really returns the body.
    let mut check = Vec::new();
    let (used, done) = DotUnstuffer::new().decode_into(&wire, &mut check).unwrap();
    assert!(done && used == wire.len() && check == body);

    group.throughput(Throughput::Bytes(body.len() as u64));
    let mut dst = vec![0u8; body.len()];
    group.bench_function("memcpy", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(body));
            black_box(&dst);
        })
    });

    let mut out = Vec::with_capacity(wire.len());
    group.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            let mut enc = DotStuffer::new();
            enc.encode(black_box(body), &mut out);
            enc.finish(&mut out);
            black_box(&out);
        })
    });

    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("decode_next", |b| {
        b.iter(|| {
            let mut dec = DotUnstuffer::new();
            let mut input = black_box(&wire[..]);
            let mut total = 0usize;
            loop {
                let (used, found) = dec.next(input).unwrap();
                input = &input[used..];
                match found {
                    Unstuffed::Data(d) => total += black_box(d).len(),
                    Unstuffed::End | Unstuffed::NeedMore => break,
                }
            }
            total
        })
    });

    let mut out = Vec::with_capacity(wire.len());
    group.bench_function("decode_into", |b| {
        b.iter(|| {
            out.clear();
            let r = DotUnstuffer::new().decode_into(black_box(&wire), &mut out);
            black_box(&out);
            r
        })
    });
}

fn body_codec(c: &mut Criterion) {
    let inputs: [(&str, Vec<u8>, Duration); 3] = [
        ("typical_100k", typical(100 * 1024), Duration::from_secs(2)),
        (
            "base64_50m",
            base64_attachment(50 * 1024 * 1024),
            Duration::from_secs(4),
        ),
        (
            "all_dots_4m",
            all_dots(4 * 1024 * 1024),
            Duration::from_secs(2),
        ),
    ];
    for (name, body, time) in &inputs {
        let mut group = c.benchmark_group(*name);
        group
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(*time);
        bench_input(&mut group, body);
        group.finish();
    }
}

criterion_group!(benches, body_codec);
criterion_main!(benches);
