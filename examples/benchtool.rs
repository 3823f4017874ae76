//! Load generator and synthetic backend for `bench/run.sh`. Every loop is bounded in
//! count and time; all traffic is on loopback.
//!
//! ```text
//! benchtool server  PORT                 MySQL-speaking synthetic backend (greeting, OK,
//!                                        then: "BULK <n>" streams n bytes, else echo)
//! benchtool bulk    PORT BYTES           one transfer from the synthetic backend → GB/s
//! benchtool ping    PORT COUNT           COUNT small round trips → p50/p99 µs
//! benchtool connrate PORT[,PORT..] SECS [tls]
//!                                        16 workers: connect (TLS: any certificate)
//!                                        +SELECT 1+quit to MariaDB → conn/s
//! benchtool hold    PORT N [PID]         hold N handshaken connections; print router RSS
//!                                        per connection (PID) and ping each one
//! ```

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const GREETING: &[u8] = b"\x0a5.5.5-10.11.6-MariaDB-synthetic\0\x01\0\0\0abcdefgh\0\xff\xf7\x08\x02\0\xff\x81\x15\0\0\0\0\0\0\x0f\0\0\0ijklmnopqrst\0mysql_native_password\0";

fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    p.push(seq);
    p.extend_from_slice(payload);
    p
}

async fn read_packet(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).await?;
    let len = u32::from_le_bytes([h[0], h[1], h[2], 0]) as usize;
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).await?;
    Ok(p)
}

fn handshake_response() -> Vec<u8> {
    let mut p = 0x000f_a68du32.to_le_bytes().to_vec(); // CLIENT_PROTOCOL_41 | ...
    p.extend_from_slice(&0x0100_0000u32.to_le_bytes());
    p.push(33);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(b"bench\0\0");
    packet(1, &p)
}

async fn serve_one(mut s: TcpStream) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    s.write_all(&packet(0, GREETING)).await?;
    read_packet(&mut s).await?;
    s.write_all(&packet(2, &[0, 0, 0, 2, 0, 0, 0])).await?;
    let chunk = vec![0x5au8; 256 * 1024];
    loop {
        let p = match read_packet(&mut s).await {
            Ok(p) => p,
            Err(_) => return Ok(()),
        };
        if let Some(n) = p.strip_prefix(b"BULK ") {
            let mut left: u64 = String::from_utf8_lossy(n).trim().parse().unwrap_or(0);
            while left > 0 {
                let k = left.min(chunk.len() as u64) as usize;
                s.write_all(&chunk[..k]).await?;
                left -= k as u64;
            }
        } else {
            s.write_all(&packet(1, &p)).await?;
        }
    }
}

async fn server(port: u16) {
    let l = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    loop {
        if let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve_one(s));
        }
    }
}

async fn connect_handshaken(port: u16) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.set_nodelay(true)?;
    read_packet(&mut s).await?;
    s.write_all(&handshake_response()).await?;
    let ok = read_packet(&mut s).await?;
    if ok.first() != Some(&0) {
        return Err(std::io::Error::other("no OK"));
    }
    Ok(s)
}

async fn bulk(port: u16, bytes: u64) {
    let mut s = connect_handshaken(port).await.expect("connect");
    s.write_all(&packet(0, format!("BULK {bytes}").as_bytes()))
        .await
        .unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let t = Instant::now();
    let mut got = 0u64;
    while got < bytes {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "EOF after {got} bytes");
        got += n as u64;
    }
    println!("{:.3}", bytes as f64 / t.elapsed().as_secs_f64() / 1e9);
}

async fn ping(port: u16, count: usize) {
    let mut s = connect_handshaken(port).await.expect("connect");
    let msg = packet(0, b"0123456789abcdef");
    let mut lat = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        s.write_all(&msg).await.unwrap();
        read_packet(&mut s).await.unwrap();
        lat.push(t.elapsed().as_nanos() as f64 / 1000.0);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize];
    println!("{:.1} {:.1}", q(0.50), q(0.99));
}

async fn connrate(ports: Vec<u16>, secs: u64, tls: bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for w in 0..16 {
        let ports = ports.clone();
        tasks.push(tokio::spawn(async move {
            use mysql_async::prelude::Queryable;
            let mut n = 0u64;
            let mut i = w;
            while Instant::now() < deadline {
                let port = ports[i % ports.len()];
                i += 1;
                let opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
                    .ip_or_hostname("127.0.0.1")
                    .tcp_port(port)
                    .user(Some("t"))
                    .pass(Some("t"))
                    .prefer_socket(false)
                    .ssl_opts(tls.then(|| {
                        mysql_async::SslOpts::default().with_danger_accept_invalid_certs(true)
                    }))
                    .into();
                match mysql_async::Conn::new(opts).await {
                    Ok(mut c) => {
                        if c.query_drop("SELECT 1").await.is_ok() {
                            n += 1;
                        }
                        let _ = c.disconnect().await;
                    }
                    // The first failure of a worker that never succeeded says why.
                    Err(e) if n == 0 && i == w + 1 => eprintln!("connect failed: {e}"),
                    Err(_) => {}
                }
            }
            n
        }));
    }
    let t = Instant::now();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap_or(0);
    }
    println!("{:.0}", total as f64 / t.elapsed().as_secs_f64());
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0)
}

async fn hold(port: u16, n: usize, pid: Option<u32>) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let before = pid.map(rss_kib).unwrap_or(0);
    let mut conns = Vec::with_capacity(n);
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await;
            tokio::time::timeout(Duration::from_secs(60), connect_handshaken(port)).await
        }));
    }
    let mut failed = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(Ok(s))) => conns.push(s),
            _ => failed += 1,
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = pid.map(rss_kib).unwrap_or(0);
    // A query on each held connection.
    let mut ok = 0;
    for s in conns.iter_mut() {
        let msg = packet(0, b"SELECT 1");
        if s.write_all(&msg).await.is_ok()
            && tokio::time::timeout(Duration::from_secs(10), read_packet(s))
                .await
                .is_ok_and(|r| r.is_ok())
        {
            ok += 1;
        }
    }
    let per_conn = if conns.is_empty() {
        0.0
    } else {
        (after.saturating_sub(before)) as f64 * 1024.0 / conns.len() as f64
    };
    println!("held={} failed={failed} relayed={ok} rss_before_kib={before} rss_after_kib={after} bytes_per_conn={per_conn:.0}", conns.len());
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match arg(0).as_str() {
        "server" => rt.block_on(server(arg(1).parse().unwrap())),
        "bulk" => rt.block_on(bulk(arg(1).parse().unwrap(), arg(2).parse().unwrap())),
        "ping" => rt.block_on(ping(arg(1).parse().unwrap(), arg(2).parse().unwrap())),
        "connrate" => rt.block_on(connrate(
            arg(1).split(',').map(|p| p.parse().unwrap()).collect(),
            arg(2).parse().unwrap(),
            args.get(3).is_some_and(|t| t == "tls"),
        )),
        "hold" => rt.block_on(hold(
            arg(1).parse().unwrap(),
            arg(2).parse().unwrap(),
            args.get(3).and_then(|p| p.parse().ok()),
        )),
        _ => {
            eprintln!("usage: benchtool server|bulk|ping|connrate|hold ...");
            std::process::exit(2);
        }
    }
}
