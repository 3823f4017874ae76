//! Hostile input to every parser that reads what outsiders send or write: a structured
//! mutator (stable toolchain; cargo-fuzz needs nightly) over the committed corpus in
//! `tests/fuzz_corpus/<target>/`. Each execution takes a corpus entry, applies 1–6
//! mutations (bit flips, interesting bytes, MySQL length-field lies, inserts, deletes,
//! duplications, splices with another entry) and runs the target under
//! `catch_unwind`; the terminating handshake also runs under a time bound (a hang is a
//! failure). A failing input is written to `target/fuzz-crashes/` and its hex is in
//! the panic message.
//!
//! Bounded for CI: each target runs `FUZZ_SECS` seconds (default 3) or `FUZZ_EXECS`
//! executions (default 1,000,000), whichever ends first, from seed `FUZZ_SEED`
//! (default fixed). The long run (docs/RELIABILITY.md):
//! `FUZZ_EXECS=10000000 FUZZ_SECS=3600 cargo test --release --test fuzz -- --nocapture --test-threads=1`.
//!
//! Inputs of the two-sided targets are chunks: a control byte (bit 7: 1 = from the
//! server, 0 = from the client; bits 0–6: length) followed by that many bytes, so that
//! mutations also move the boundaries where reads split the stream.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mysqlrouter::config::route::Protocol;
use mysqlrouter::protocol::caps::Caps;
use mysqlrouter::protocol::exchange::Exchange;
use mysqlrouter::protocol::handshake::{Tracker, Verdict};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[u8] = &[
    0, 1, 2, 3, 4, 0x0a, 0x0d, 0x1b, 0x20, 0x3d, 0x5b, 0x5d, 0x7b, 0x7d, 0x7f, 0x80, 0xfb, 0xfc,
    0xfd, 0xfe, 0xff,
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    let n = 1 + rng.below(6);
    for _ in 0..n {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            3 => {
                let i = rng.below(len + 1);
                let k = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..k).map(|_| rng.next() as u8).collect();
                input.splice(i..i, bytes);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let k = 1 + rng.below((len - i).min(32));
                input.drain(i..i + k);
            }
            5 if len > 0 => {
                let i = rng.below(len);
                let k = 1 + rng.below((len - i).min(64));
                let copy = input[i..i + k].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, copy);
            }
            // A length-field lie: 3 bytes of 0, 1, 0xffffff (16 MiB - 1) or random.
            6 if len >= 3 => {
                let i = rng.below(len - 2);
                let v: u32 = match rng.below(4) {
                    0 => 0,
                    1 => 1,
                    2 => 0xff_ffff,
                    _ => rng.next() as u32 & 0xff_ffff,
                };
                input[i..i + 3].copy_from_slice(&v.to_le_bytes()[..3]);
            }
            7 if !other.is_empty() => {
                let i = rng.below(other.len());
                let k = 1 + rng.below((other.len() - i).min(128));
                let at = rng.below(len + 1);
                input.splice(at..at, other[i..i + k].iter().copied());
            }
            _ if len > 1 => {
                // Cut the tail: a peer that stops mid-frame.
                input.truncate(rng.below(len));
            }
            _ => input.push(rng.next() as u8),
        }
    }
    input.truncate(64 * 1024);
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_corpus")
        .join(target);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    let v: Vec<Vec<u8>> = entries.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(!v.is_empty(), "empty corpus {}", dir.display());
    v
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `f` on mutated corpus entries within the bounds; panics with the first input
/// that panics `f` (or that `f` reports as a failure with `Err`).
fn fuzz(target: &str, f: impl Fn(&[u8]) -> Result<(), String>) {
    let seeds = corpus(target);
    let max_execs = env_u64("FUZZ_EXECS", 1_000_000);
    let max_time = Duration::from_secs(env_u64("FUZZ_SECS", 3));
    let mut rng = Rng(env_u64("FUZZ_SEED", 0x9e37_79b9_7f4a_7c15) ^ target.len() as u64 | 1);
    // Quiet the default hook: a panic is reported once, below, with its input.
    let start = Instant::now();
    let mut execs = 0u64;
    // The seeds themselves first.
    let mut queue: Vec<Vec<u8>> = seeds.clone();
    while execs < max_execs && (execs % 256 != 0 || start.elapsed() < max_time) {
        let input = match queue.pop() {
            Some(i) => i,
            None => {
                let mut i = seeds[rng.below(seeds.len())].clone();
                let other = &seeds[rng.below(seeds.len())];
                mutate(&mut rng, &mut i, other);
                i
            }
        };
        execs += 1;
        let outcome = catch_unwind(AssertUnwindSafe(|| f(&input)));
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(p) => Some(
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into()),
            ),
        };
        if let Some(why) = failure {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes");
            let _ = std::fs::create_dir_all(&dir);
            let file = dir.join(format!("{target}-{execs}.bin"));
            let _ = std::fs::write(&file, &input);
            panic!(
                "{target}: execution {execs} failed: {why}\ninput saved as {}\nhex: {}",
                file.display(),
                input.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "fuzz {target}: {execs} executions in {secs:.1} s ({:.0}/s), 0 failures",
        execs as f64 / secs.max(1e-9)
    );
    assert!(execs >= seeds.len() as u64);
}

/// Two-sided input: (from_server, bytes) chunks.
fn chunks(input: &[u8]) -> Vec<(bool, &[u8])> {
    let mut v = Vec::new();
    let mut i = 0;
    while i < input.len() {
        let ctl = input[i];
        let len = (ctl & 0x7f) as usize;
        let end = (i + 1 + len).min(input.len());
        v.push((ctl & 0x80 != 0, &input[i + 1..end]));
        i = end;
    }
    v
}

#[test]
fn fuzz_config_reader() {
    use mysqlrouter::config;
    fuzz("config", |input| {
        let text = String::from_utf8_lossy(input);
        if let Ok(sections) = config::ini::parse(&text) {
            let mut store = config::store::Store::with_builtins(&config::builtin_defaults());
            store.merge(sections);
            let _ = config::validate(&store);
        }
        Ok(())
    });
}

#[test]
fn fuzz_command_line() {
    fuzz("cli", |input| {
        let args: Vec<String> = input
            .split(|&b| b == 0 || b == b'\n')
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let _ = mysqlrouter::cli::parse(&args);
        Ok(())
    });
}

fn track(protocol: Protocol, input: &[u8]) -> Result<(), String> {
    let mut t = Tracker::new(protocol);
    let mut done: Option<Verdict> = None;
    for (from_server, bytes) in chunks(input) {
        let v = if from_server {
            t.on_server(bytes)
        } else {
            if protocol == Protocol::Classic && !t.client_turn() {
                continue;
            }
            t.on_client(bytes)
        };
        // A verdict, once given, stands.
        if let Some(d) = done {
            if v != d {
                return Err(format!("verdict changed from {d:?} to {v:?}"));
            }
        } else if v != Verdict::Continue {
            done = Some(v);
        }
    }
    let _ = t.close_is_failure();
    Ok(())
}

#[test]
fn fuzz_handshake_tracker_classic() {
    fuzz("handshake_classic", |input| track(Protocol::Classic, input));
}

#[test]
fn fuzz_handshake_tracker_x() {
    fuzz("handshake_x", |input| track(Protocol::X, input));
}

/// The classic decoder (frame splitter, response tracker, exchange). The first 8 bytes
/// are the negotiated capabilities.
#[test]
fn fuzz_protocol_decoder() {
    fuzz("exchange", |input| {
        if input.len() < 8 {
            return Ok(());
        }
        let caps = Caps(u64::from_le_bytes(input[..8].try_into().unwrap()));
        let mut x = Exchange::new(caps, 2);
        for (from_server, bytes) in chunks(&input[8..]) {
            let r = if from_server {
                x.on_server(bytes)
            } else {
                x.on_client(bytes)
            };
            if r.is_err() {
                break;
            }
            let _ = (x.at_safe_point(), x.client_may_send(), x.in_transaction());
        }
        Ok(())
    });
}

/// The terminating handshake (client_ssl_mode and server_ssl_mode DISABLED) over
/// in-memory streams: the client's and the server's bytes are what the input says,
/// then each side closes. It must end (within 2 s) without a panic, whatever it got.
#[test]
fn fuzz_terminating_handshake() {
    use mysqlrouter::config;
    use tokio::io::AsyncWriteExt;
    let text = "[routing:t]\nbind_port = 1\ndestinations = 127.0.0.1:2\nrouting_strategy = first-available\nclient_ssl_mode = DISABLED\nserver_ssl_mode = DISABLED\n";
    let mut store = config::store::Store::with_builtins(&config::builtin_defaults());
    store.merge(config::ini::parse(text).unwrap());
    let cfg = config::validate(&store).unwrap().routes[0].tls.clone();
    let ctx = mysqlrouter::session::tls::build(&cfg).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let server_addr = listener.local_addr().unwrap();
    fuzz("terminate", |input| {
        let (mut from_client, mut from_server_bytes) = (Vec::new(), Vec::new());
        for (from_server, bytes) in chunks(input) {
            if from_server {
                from_server_bytes.extend_from_slice(bytes);
            } else {
                from_client.extend_from_slice(bytes);
            }
        }
        rt.block_on(async {
            let (client, mut client_peer) = tokio::io::duplex(1 << 20);
            client_peer.write_all(&from_client).await.unwrap();
            client_peer.shutdown().await.unwrap();
            // The server side is a real socket (pooling hands TCP streams around): a
            // loopback pair whose far end sends the input's server bytes and closes.
            let server = tokio::net::TcpStream::connect(server_addr).await.unwrap();
            let (mut server_peer, _) = listener.accept().await.unwrap();
            let _ = server_peer.write_all(&from_server_bytes).await;
            let _ = server_peer.shutdown().await;
            let mut counts = mysqlrouter::relay::Counts::default();
            let hs = mysqlrouter::session::terminate::handshake(
                client,
                mysqlrouter::session::terminate::ServerSide::Fresh(server),
                || async { None },
                "127.0.0.1:3306",
                "127.0.0.1",
                &cfg,
                &ctx,
                &mut counts,
            );
            match tokio::time::timeout(Duration::from_secs(2), hs).await {
                Ok(_) => Ok(()),
                Err(_) => Err("the handshake did not end with both peers closed".into()),
            }
        })
    });
}
