//! Hostile input to every parser that reads what outsiders send or write: a structured
//! mutator (stable toolchain; cargo-fuzz needs nightly) over the committed corpus in
//! `tests/fuzz_corpus/<target>/`. Each execution takes a corpus entry, applies 1–6
//! mutations (bit flips, interesting bytes, MySQL length-field lies, inserts, deletes,
//! duplications, splices with another entry; the HTTP and password-file targets also
//! insert tokens of their dictionaries) and runs the target under `catch_unwind`; the
//! terminating handshake and the raw HTTP connection also run under a time bound (a
//! hang is a failure). A failing input is written to `target/fuzz-crashes/` and its
//! hex is in the panic message; a fixed one stays in the corpus as a seed.
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

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8], dict: &[&[u8]]) {
    let n = 1 + rng.below(6);
    for _ in 0..n {
        let len = input.len();
        // A target's dictionary: tokens its parser gives meaning to (none: the other
        // targets, whose mutation sequence this leaves as it was).
        if !dict.is_empty() && rng.below(4) == 0 {
            let at = rng.below(len + 1);
            let token = dict[rng.below(dict.len())];
            input.splice(at..at, token.iter().copied());
            continue;
        }
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
    fuzz_with(target, &[], f)
}

/// [`fuzz`] with a dictionary of tokens the mutator also inserts.
fn fuzz_with(target: &str, dict: &[&[u8]], f: impl Fn(&[u8]) -> Result<(), String>) {
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
                mutate(&mut rng, &mut i, other, dict);
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

#[test]
fn fuzz_compressed_frames() {
    // The compressed protocol the router speaks with a client (session::compress):
    // first byte zlib/zstd, the rest what the client sends. Reading must end with the
    // bytes or an error, never a panic, a hang or more than the frames say.
    use mysqlrouter::session::compress::{Codec, Compressed};
    use tokio::io::AsyncReadExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    fuzz_with(
        "compressed",
        &[&[0x78, 0x9c], &[0x28, 0xb5, 0x2f, 0xfd]],
        |input| {
            let Some((&which, wire)) = input.split_first() else {
                return Ok(());
            };
            let codec = if which & 1 == 0 {
                Codec::Zlib
            } else {
                Codec::Zstd(3)
            };
            rt.block_on(async {
                let mut r = Compressed::new(wire, codec);
                let mut out = Vec::new();
                let got = tokio::time::timeout(Duration::from_secs(2), r.read_to_end(&mut out))
                    .await
                    .map_err(|_| "hang".to_string())?;
                // Every frame's uncompressed size is at most 16 MiB and frames need 7 bytes.
                if got.is_ok() && out.len() > (wire.len() / 7 + 1) * 0xFF_FFFF {
                    return Err(format!("{} bytes out of {}", out.len(), wire.len()));
                }
                Ok(())
            })
        },
    );
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
            let hs = mysqlrouter::session::terminate::handshake(
                client,
                mysqlrouter::session::terminate::ServerSide::Fresh(server),
                || async { None },
                "127.0.0.1:3306",
                "127.0.0.1",
                &cfg,
                &ctx,
            );
            match tokio::time::timeout(Duration::from_secs(2), hs).await {
                Ok(_) => Ok(()),
                Err(_) => Err("the handshake did not end with both peers closed".into()),
            }
        })
    });
}

/// The monitoring HTTP layer: MySQL Router's REST API and `/metrics` (`Api::handle`)
/// over a snapshot of routes, destinations and live connections whose numbers the
/// input picks (extremes included), in three configurations: everything behind a
/// realm; the realm on `[http_server]` too (paths no endpoint serves); swagger and
/// metrics open.
mod http_fuzz {
    use std::net::IpAddr;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, SystemTime};

    use base64::Engine;
    use mysqlrouter::config;
    use mysqlrouter::http::api::{Api, Reply, Request, RouterInfo};
    use mysqlrouter::http::auth::Realms;
    use mysqlrouter::http::passwd;
    use mysqlrouter::stats::pool::PoolCounters;
    use mysqlrouter::stats::{
        ConnSnapshot, DestSnapshot, Histogram, PoolSnapshot, RouteCounters, RouteSnapshot,
        Snapshot, Source, LATENCY_BUCKETS,
    };

    use super::Rng;

    pub const USER: &str = "alice";
    pub const PASSWORD: &str = "pw";

    /// Tokens the request parser, the router and the header parsers give meaning to.
    pub const DICT: &[&[u8]] = &[
        b"/api/20190715",
        b"/routes/",
        b"/status",
        b"/connections",
        b"/destinations",
        b"/blockedHosts",
        b"/swagger.json",
        b"/metrics",
        b"/connection_pool",
        b"/main/config",
        b"/main/status",
        b"%",
        b"%2f",
        b"%2F",
        b"%00",
        b"%ff",
        b"%c3%28",
        b"%e2%82",
        b"?",
        b"&",
        b"=",
        b"/",
        b"//",
        b"..",
        b"Basic ",
        b"basic",
        b"Bearer ",
        b"YWxpY2U6cHc=",
        b"YWxpY2U6",
        b"Ojo6",
        b"====",
        b"Authorization: ",
        b"If-Modified-Since: ",
        b"Tue, 24 Nov 2026 15:55:19 GMT",
        b"99999999999999999999",
        b"9223372036854775807",
        b"-1",
        b"GMT",
        b", ",
        b":",
        b" ",
        b"\n",
        b"GET",
        b"POST",
    ];

    struct Fake(Mutex<Snapshot>);

    impl Source for Fake {
        fn snapshot(&self, connections_of: Option<&str>) -> Snapshot {
            let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
            for r in &mut s.routes {
                if connections_of != Some(r.config.name.as_str()) {
                    r.connections.clear();
                }
            }
            s
        }
    }

    /// One configuration's API and the snapshot behind it.
    pub struct Setup {
        pub api: Arc<Api>,
        source: Arc<Fake>,
        template: Vec<RouteSnapshot>,
        /// Every path is behind the realm (200 needs the right credentials).
        pub all_guarded: bool,
    }

    const ROUTES: &str = "[routing:rw]\nbind_address = 127.0.0.1\nbind_port = 1\n\
        destinations = 127.0.0.1:2,[::1]:3\nrouting_strategy = first-available\n\n\
        [routing:ro]\nsocket = /tmp/fuzz-ro.sock\ndestinations = db.example:4\n\
        routing_strategy = round-robin\nprotocol = x\n\n\
        [routing:r_1]\nbind_port = 5\ndestinations = 127.0.0.1:6\nrouting_strategy = next-available\n\n";

    pub fn setups(dir: &std::path::Path) -> Vec<Setup> {
        let pw = dir.join("users");
        // PBKDF2 with one round: a wrong password costs microseconds, not a KDF.
        let h = passwd::hash(PASSWORD, passwd::Kdf::Pbkdf2Sha256, 1).unwrap();
        std::fs::write(&pw, format!("{USER}:{h}\ncarol:$1$unusable$hash\n")).unwrap();
        let realm = format!(
            "[http_server]\nport = 8081\n@SERVER@\n[http_auth_realm:r]\nbackend = b\nmethod = basic\nname = Some \"Realm\"\n\n\
             [http_auth_backend:b]\nbackend = file\nfilename = {}\n\n\
             [rest_router]\nrequire_realm = r\n\n[rest_routing]\nrequire_realm = r\n\n\
             [connection_pool]\nmax_idle_server_connections = 8\n\n\
             [rest_connection_pool]\nrequire_realm = r\n\n",
            pw.display()
        );
        let variants = [
            (
                "",
                "[rest_api]\nrequire_realm = r\n\n[metrics]\nrequire_realm = r\n",
                false,
            ),
            (
                "require_realm = r\n",
                "[rest_api]\nrequire_realm = r\n\n[metrics]\nrequire_realm = r\n",
                true,
            ),
            ("", "[rest_api]\n\n[metrics]\n", false),
        ];
        variants
            .iter()
            .map(|(server, open, all_guarded)| {
                let text = format!("{ROUTES}{}{open}", realm.replace("@SERVER@", server));
                let mut store = config::store::Store::with_builtins(&config::builtin_defaults());
                store.merge(config::ini::parse(&text).unwrap());
                let cfg = config::validate(&store).unwrap();
                let http = cfg.http.clone().unwrap();
                let realms = Realms::load(&http.realms, &http.backends).unwrap();
                let template: Vec<RouteSnapshot> = cfg
                    .routes
                    .iter()
                    .map(|rc| RouteSnapshot {
                        config: rc.clone(),
                        accepting: true,
                        active: 0,
                        counters: RouteCounters::default(),
                        blocked_hosts: Vec::new(),
                        destinations: rc
                            .destinations
                            .iter()
                            .map(|d| DestSnapshot {
                                host: d.host.clone(),
                                port: d.port,
                                quarantined: false,
                                quarantine_entries: 0,
                                switches_to: 0,
                                connect_latency: Histogram::default(),
                                role: None,
                                replication_lag: None,
                            })
                            .collect(),
                        connections: Vec::new(),
                    })
                    .collect();
                let source = Arc::new(Fake(Mutex::new(Snapshot {
                    started: SystemTime::UNIX_EPOCH,
                    max_total_connections: 0,
                    current_total_connections: 0,
                    routes: template.clone(),
                    pool: Default::default(),
                })));
                let info = RouterInfo {
                    process_id: 4242,
                    product_edition: "Community".into(),
                    version: "9.7.4".into(),
                    hostname: "fuzz".into(),
                    started_us: 1_795_535_719_082_607,
                };
                Setup {
                    api: Arc::new(Api::new(http, realms, source.clone(), info)),
                    source,
                    template,
                    all_guarded: *all_guarded,
                }
            })
            .collect()
    }

    /// A count: small, large, or 2^48 at most (a counter that never wraps).
    fn count(rng: &mut Rng) -> u64 {
        match rng.below(5) {
            0 => 0,
            1 => 1,
            2 => 1 << 32,
            3 => 1 << 48,
            _ => rng.next() % (1 << 48),
        }
    }

    /// A time in µs since the epoch: 0, the epoch's first µs, now-ish, 9999-12-31.
    fn time_us(rng: &mut Rng) -> u64 {
        const MAX: u64 = 253_402_300_799_999_999;
        match rng.below(5) {
            0 => 0,
            1 => 1,
            2 => 1_795_535_719_082_607,
            3 => MAX,
            _ => rng.next() % MAX,
        }
    }

    impl Setup {
        /// Sets the snapshot's numbers from `seed`.
        pub fn vary(&self, seed: u64) {
            let mut rng = Rng(seed | 1);
            let mut routes = self.template.clone();
            for r in &mut routes {
                r.accepting = rng.below(4) != 0;
                r.active = count(&mut rng);
                r.counters = RouteCounters {
                    total: count(&mut rng),
                    refused_limit: count(&mut rng),
                    refused_total_limit: count(&mut rng),
                    refused_blocked: count(&mut rng),
                    refused_no_destination: count(&mut rng),
                    handshake_failures: count(&mut rng),
                    bytes_up: count(&mut rng),
                    bytes_down: count(&mut rng),
                };
                r.blocked_hosts = (0..rng.below(3))
                    .map(|i| {
                        if i % 2 == 0 {
                            IpAddr::from([127, 0, 0, rng.next() as u8])
                        } else {
                            IpAddr::from((rng.next() as u128).to_be_bytes())
                        }
                    })
                    .collect();
                if rng.below(8) == 0 {
                    r.destinations.clear();
                }
                for d in &mut r.destinations {
                    d.quarantined = rng.below(2) == 0;
                    d.quarantine_entries = count(&mut rng);
                    d.switches_to = count(&mut rng);
                    d.connect_latency = Histogram {
                        per_bucket: (0..=LATENCY_BUCKETS.len())
                            .map(|_| count(&mut rng) >> 8)
                            .collect(),
                        sum_secs: count(&mut rng) as f64 / 1e6,
                    };
                    d.role = match rng.below(3) {
                        0 => None,
                        1 => Some("PRIMARY".into()),
                        _ => Some("SECONDARY".into()),
                    };
                    d.replication_lag =
                        (rng.below(2) == 0).then(|| Duration::from_micros(count(&mut rng)));
                }
                r.connections = (0..rng.below(4))
                    .map(|_| {
                        let opt = |rng: &mut Rng| (rng.below(3) != 0).then(|| time_us(rng));
                        ConnSnapshot {
                            source: format!("127.0.0.1:{}", rng.next() as u16),
                            destination: "[::1]:3".into(),
                            bytes_up: count(&mut rng),
                            bytes_down: count(&mut rng),
                            started_us: time_us(&mut rng),
                            connected_us: opt(&mut rng),
                            last_sent_us: opt(&mut rng),
                            last_received_us: opt(&mut rng),
                        }
                    })
                    .collect();
            }
            let mut s = self.source.0.lock().unwrap_or_else(|p| p.into_inner());
            s.max_total_connections = count(&mut rng);
            s.current_total_connections = count(&mut rng);
            s.routes = routes;
            s.pool = PoolSnapshot {
                max_idle_server_connections: count(&mut rng),
                idle_timeout_ms: count(&mut rng),
                counters: PoolCounters {
                    idle: count(&mut rng),
                    stashed: count(&mut rng),
                    reused: count(&mut rng),
                    opened: count(&mut rng),
                    parked: count(&mut rng),
                    dropped: count(&mut rng),
                },
            };
        }
    }

    /// Whether an `Authorization` value carries `alice:pw` in base64 anywhere (an
    /// over-approximation of what Basic authentication accepts).
    pub fn carries_the_password(auth: Option<&str>) -> bool {
        auth.is_some_and(|a| {
            a.split_ascii_whitespace().any(|t| {
                base64::engine::general_purpose::STANDARD
                    .decode(t)
                    .is_ok_and(|d| d == format!("{USER}:{PASSWORD}").as_bytes())
            })
        })
    }

    /// What every answer must satisfy.
    pub fn check(setup: &Setup, req: &Request<'_>, reply: &Reply) -> Result<(), String> {
        let header = |name: &str| {
            reply
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        if ![200, 304, 400, 401, 404, 405, 500].contains(&reply.status) {
            return Err(format!("status {}", reply.status));
        }
        if reply.status == 401
            && !header("WWW-Authenticate").is_some_and(|v| v.starts_with("basic realm=\""))
        {
            return Err(format!("401 without WWW-Authenticate: {reply:?}"));
        }
        if setup.all_guarded
            && matches!(reply.status, 200 | 304 | 500)
            && !carries_the_password(req.authorization)
        {
            return Err(format!(
                "{} without the password: {req:?} -> {reply:?}",
                reply.status
            ));
        }
        let ct = header("Content-Type").unwrap_or("");
        if reply.status != 304 && (ct == "application/json" || ct == "application/problem+json") {
            if let Err(e) = serde_json::from_slice::<serde_json::Value>(&reply.body) {
                return Err(format!("{ct} body is not JSON ({e}): {req:?}"));
            }
        }
        if reply.status == 200 && req.path == "/metrics" && !reply.body.ends_with(b"# EOF\n") {
            return Err("metrics without # EOF".into());
        }
        Ok(())
    }

    /// Input: a configuration digit, the method, the path (with `?query`), then
    /// `Name: value` header lines.
    pub fn request_parts(input: &[u8]) -> (usize, Vec<String>) {
        let variant = input.first().map_or(0, |b| (*b as usize) % 3);
        let text = String::from_utf8_lossy(input.get(1..).unwrap_or_default()).into_owned();
        (variant, text.split('\n').map(str::to_string).collect())
    }
}

fn fnv(input: &[u8]) -> u64 {
    input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// `Api::handle` on arbitrary requests: methods, paths with percent-encoding, query
/// strings, `Authorization` (junk base64, other schemes), `If-Modified-Since` (junk
/// dates, huge years). No panic; statuses MySQL Router uses; 401 carries
/// WWW-Authenticate; where everything is behind the realm nothing but the right
/// password gets an answer; JSON bodies parse.
#[test]
fn fuzz_http_api() {
    use mysqlrouter::http::api::Request;
    let dir = std::env::temp_dir().join(format!("fuzz-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let setups = http_fuzz::setups(&dir);
    fuzz_with("http_api", http_fuzz::DICT, |input| {
        let (variant, lines) = http_fuzz::request_parts(input);
        let setup = &setups[variant];
        setup.vary(fnv(input));
        let method = lines.first().map_or("", |s| s.as_str());
        let target = lines.get(1).map_or("", |s| s.as_str());
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let header = |name: &str| {
            lines.iter().skip(2).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
        };
        let req = Request {
            method,
            path,
            query,
            authorization: header("authorization"),
            if_modified_since: header("if-modified-since"),
        };
        let reply = setup.api.handle(&req);
        http_fuzz::check(setup, &req, &reply)
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// Raw bytes to the real HTTP stack (hyper and our glue, `serve_connection`) over an
/// in-memory stream: whatever arrives, the connection ends (the input then EOF) within
/// 5 s, nothing panics on the server's threads, and every answer is HTTP/1.x.
#[test]
fn fuzz_http_raw() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const THREADS: &str = "fuzz-http-raw";
    static PANICS: AtomicU64 = AtomicU64::new(0);
    static ANSWERED: AtomicU64 = AtomicU64::new(0);
    // A panic inside the handler becomes a 500 (the blocking task's JoinError): count
    // those on this target's threads instead.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some(THREADS) {
            PANICS.fetch_add(1, Ordering::Relaxed);
        }
        previous(info);
    }));
    let dir = std::env::temp_dir().join(format!("fuzz-http-raw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let setups = http_fuzz::setups(&dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name(THREADS)
        .build()
        .unwrap();
    let mut raw_dict: Vec<&[u8]> = http_fuzz::DICT.to_vec();
    raw_dict.extend_from_slice(&[
        b"\r\n" as &[u8],
        b"\r\n\r\n",
        b" HTTP/1.1\r\n",
        b"HTTP/1.0",
        b"Content-Length: ",
        b"Transfer-Encoding: chunked\r\n",
        b"Connection: close\r\n",
        b"Expect: 100-continue\r\n",
        b"0\r\n\r\n",
        b"ffffffffffffffff\r\n",
    ]);
    fuzz_with("http_raw", &raw_dict, |input| {
        let setup = &setups[input.first().map_or(0, |b| (*b as usize) % 3)];
        setup.vary(fnv(input));
        let api = Arc::clone(&setup.api);
        let before = PANICS.load(Ordering::Relaxed);
        let answer = rt.block_on(async {
            let (mut client, server) = tokio::io::duplex(1 << 20);
            let served = tokio::spawn(mysqlrouter::http::server::serve_connection(server, api));
            client
                .write_all(input.get(1..).unwrap_or_default())
                .await
                .ok();
            client.shutdown().await.ok();
            let mut out = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut out));
            match read.await {
                // A panic in the connection's task is caught by tokio: it is in the
                // JoinError.
                Ok(_) => match tokio::time::timeout(Duration::from_secs(5), served).await {
                    Ok(Ok(())) => Ok(out),
                    Ok(Err(e)) => Err(format!("serve_connection failed: {e}")),
                    Err(_) => Err("serve_connection did not end after its client left".into()),
                },
                Err(_) => Err("the connection did not end after the input".to_string()),
            }
        })?;
        if PANICS.load(Ordering::Relaxed) != before {
            return Err("a panic on the server's threads".into());
        }
        if !answer.is_empty() {
            ANSWERED.fetch_add(1, Ordering::Relaxed);
        }
        if !answer.is_empty() && !answer.starts_with(b"HTTP/1.") {
            return Err(format!(
                "not an HTTP answer: {:?}",
                String::from_utf8_lossy(&answer[..answer.len().min(200)])
            ));
        }
        Ok(())
    });
    // Most inputs are mutated requests that still get an answer (the client
    // half-closes after its bytes, which must not drop the request: MySQL Router
    // answers such clients, and hyper's default did not).
    let answered = ANSWERED.load(Ordering::Relaxed);
    eprintln!("fuzz http_raw: {answered} executions got an HTTP answer");
    assert!(answered > 0, "no input got an answer");
    // Still serving: a well-formed request, then a half-close, gets its 200.
    let auth = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{}:{}", http_fuzz::USER, http_fuzz::PASSWORD)
        )
    );
    let req =
        format!("GET /api/20190715/routes HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n");
    let out = rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        tokio::spawn(mysqlrouter::http::server::serve_connection(
            server,
            setups[0].api.clone(),
        ));
        client.write_all(req.as_bytes()).await.unwrap();
        client.shutdown().await.unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        out
    });
    assert!(
        out.starts_with(b"HTTP/1.1 200 Ok\r\n"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `mysqlrouter_passwd` files and the KDF verification behind HTTP Basic auth: any
/// file text parses or is refused (never a panic); a parsed file renders to text that
/// parses back to the same accounts; every hash, however broken, verifies to
/// Match/Mismatch/Unusable without a panic. The work factor is what makes a KDF slow,
/// not what a parser gets wrong, so PBKDF2 iteration counts above 16 are verified as
/// 16 (the rest of the hash as it is), and sha-crypt hashes (1,000 rounds at least, by
/// the format) are verified on one input in 64 and only up to 5,000 rounds.
#[test]
fn fuzz_password_file() {
    use mysqlrouter::http::passwd::{verify, PasswdFile};
    let dict: &[&[u8]] = &[
        b"$5$",
        b"$6$",
        b"$pbkdf2-sha256$",
        b"$pbkdf2-sha512$",
        b"rounds=",
        b"rounds=1000$",
        b"$",
        b":",
        b"\n",
        b"\r\n",
        b".",
        b"/",
        b"=",
        b"4294967295",
        b"18446744073709551616",
    ];
    fuzz_with("passwd", dict, |input| {
        let text = String::from_utf8_lossy(input);
        let Ok(file) = PasswdFile::parse(&text) else {
            return Ok(());
        };
        let again = PasswdFile::parse(&file.render())
            .map_err(|e| format!("the rendered file does not parse: {e}"))?;
        let users = |f: &PasswdFile| f.entries.iter().map(|(u, _)| u.clone()).collect::<Vec<_>>();
        if users(&again) != users(&file) {
            return Err(format!("accounts changed: {file:?} -> {again:?}"));
        }
        let sample_sha_crypt = fnv(input) % 64 == 0;
        for (_, hash) in &file.entries {
            let mut fields: Vec<String> = hash.split('$').map(str::to_string).collect();
            match fields.get(1).map(String::as_str) {
                Some("5") | Some("6") => {
                    let rounds = fields
                        .get(2)
                        .and_then(|f| f.strip_prefix("rounds="))
                        .map_or(Some(5000), |r| r.parse::<u64>().ok());
                    if !sample_sha_crypt || rounds.is_some_and(|r| r > 5000) {
                        continue;
                    }
                }
                Some("pbkdf2-sha256") | Some("pbkdf2-sha512")
                    if fields
                        .get(2)
                        .and_then(|r| r.parse::<u64>().ok())
                        .is_some_and(|r| r > 16) =>
                {
                    fields[2] = "16".into();
                }
                _ => {}
            }
            let _ = verify("pw", &fields.join("$"));
        }
        Ok(())
    });
}
