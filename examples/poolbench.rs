//! Load generator for the connection-pool benchmarks (`bench/pool_churn.py`,
//! `bench/pool_scenario.py`), with `mysql_async` as the client. Every loop is bounded
//! in count and time; all traffic is on loopback.
//!
//! ```text
//! poolbench churn PORT SECS WORKERS USER PASS tls|plain
//!     WORKERS tasks loop: connect, SELECT 1, quit. Prints
//!     `conns=N errors=E secs=S rate=R` (R = connections/s).
//! poolbench scenario PORT CLIENTS SECS USER PASS RAMP_SECS SERVER_PORTS SERVER_USER SERVER_PASS
//!     CLIENTS connections (opened over RAMP_SECS), each sending `SELECT 1` every
//!     1-5 s (uniform) until SECS after the ramp; meanwhile every second each server
//!     of SERVER_PORTS (comma-separated, direct) is asked for Threads_connected.
//!     Prints one `key=value` line: connected, connect_errors, queries, query_errors,
//!     p50_ms, p99_ms, max_ms, threads_max=<max per server>, threads_last=...
//! ```

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

fn opts(port: u16, user: &str, pass: &str, tls: bool) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(pass))
        .prefer_socket(false)
        .ssl_opts(
            tls.then(|| mysql_async::SslOpts::default().with_danger_accept_invalid_certs(true)),
        )
        .into()
}

/// Raises the soft descriptor limit to the hard one (the scenario holds thousands).
fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read only the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

async fn churn(port: u16, secs: f64, workers: usize, user: String, pass: String, tls: bool) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (done, errors, first_error) = (done.clone(), errors.clone(), first_error.clone());
        let o = opts(port, &user, &pass, tls);
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let r = async {
                    let mut c = mysql_async::Conn::new(o.clone()).await?;
                    c.query_drop("SELECT 1").await?;
                    c.disconnect().await
                };
                match tokio::time::timeout(Duration::from_secs(10), r).await {
                    Ok(Ok(())) => {
                        done.fetch_add(1, Relaxed);
                    }
                    Ok(Err(e)) => {
                        errors.fetch_add(1, Relaxed);
                        first_error
                            .lock()
                            .unwrap()
                            .get_or_insert_with(|| e.to_string());
                    }
                    Err(_) => {
                        errors.fetch_add(1, Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        if let Err(e) = t.await {
            // mysql_async panics on some authentication exchanges (e.g. an RSA key it
            // cannot parse): say so instead of counting nothing.
            eprintln!("client task failed: {e}");
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let n = done.load(Relaxed);
    if let Some(e) = first_error.lock().unwrap().take() {
        eprintln!("first error: {e}");
    }
    println!(
        "conns={n} errors={} secs={secs:.2} rate={:.1}",
        errors.load(Relaxed),
        n as f64 / secs
    );
}

/// xorshift64*: per-client jitter without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [lo, hi) milliseconds.
    fn between_ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

struct Args {
    port: u16,
    clients: usize,
    secs: f64,
    user: String,
    pass: String,
    ramp: f64,
    servers: Vec<u16>,
    server_user: String,
    server_pass: String,
}

async fn threads_connected(c: &mut mysql_async::Conn) -> Option<u64> {
    let row: Option<(String, String)> = c
        .query_first("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
        .await
        .ok()?;
    row?.1.parse().ok()
}

async fn scenario(a: Args) {
    raise_nofile();
    let start = Instant::now();
    let ramp = Duration::from_secs_f64(a.ramp);
    let end = start + ramp + Duration::from_secs_f64(a.secs);
    // Hard stop: everything ends by then, whatever the servers do.
    let hard_stop = end + Duration::from_secs(30);
    let connected = Arc::new(AtomicU64::new(0));
    let connect_errors = Arc::new(AtomicU64::new(0));
    let queries = Arc::new(AtomicU64::new(0));
    let query_errors = Arc::new(AtomicU64::new(0));
    let lat_us: Arc<Mutex<Vec<u32>>> = Arc::new(Mutex::new(Vec::new()));
    let first_error = Arc::new(Mutex::new(None::<String>));

    // Sampler: Threads_connected of each server, every second.
    let sampler = {
        let (servers, u, p) = (
            a.servers.clone(),
            a.server_user.clone(),
            a.server_pass.clone(),
        );
        tokio::spawn(async move {
            let mut conns = Vec::new();
            for port in &servers {
                conns.push(
                    mysql_async::Conn::new(opts(*port, &u, &p, false))
                        .await
                        .ok(),
                );
            }
            let mut max = vec![0u64; servers.len()];
            let mut last = vec![0u64; servers.len()];
            let mut series: Vec<Vec<u64>> = vec![Vec::new(); servers.len()];
            while Instant::now() < end && Instant::now() < hard_stop {
                for (i, c) in conns.iter_mut().enumerate() {
                    if let Some(c) = c.as_mut() {
                        if let Some(n) = threads_connected(c).await {
                            max[i] = max[i].max(n);
                            last[i] = n;
                            series[i].push(n);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            for c in conns.into_iter().flatten() {
                let _ = c.disconnect().await;
            }
            (max, last, series)
        })
    };

    let mut tasks = Vec::with_capacity(a.clients);
    for i in 0..a.clients {
        let o = opts(a.port, &a.user, &a.pass, false);
        let (connected, connect_errors, queries, query_errors, lat_us, first_error) = (
            connected.clone(),
            connect_errors.clone(),
            queries.clone(),
            query_errors.clone(),
            lat_us.clone(),
            first_error.clone(),
        );
        let at = start + ramp.mul_f64(i as f64 / a.clients.max(1) as f64);
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1).wrapping_mul(0x1000_0001));
            tokio::time::sleep_until(at.into()).await;
            let c = tokio::time::timeout(Duration::from_secs(20), mysql_async::Conn::new(o)).await;
            let mut c = match c {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    connect_errors.fetch_add(1, Relaxed);
                    first_error
                        .lock()
                        .unwrap()
                        .get_or_insert_with(|| format!("connect: {e}"));
                    return;
                }
                Err(_) => {
                    connect_errors.fetch_add(1, Relaxed);
                    return;
                }
            };
            connected.fetch_add(1, Relaxed);
            let mut mine = Vec::new();
            // The first query after a random pause, then every 1-5 s.
            tokio::time::sleep(rng.between_ms(0, 5000)).await;
            while Instant::now() < end {
                let t = Instant::now();
                let r =
                    tokio::time::timeout(Duration::from_secs(10), c.query_drop("SELECT 1")).await;
                match r {
                    Ok(Ok(())) => {
                        queries.fetch_add(1, Relaxed);
                        mine.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    Ok(Err(e)) => {
                        query_errors.fetch_add(1, Relaxed);
                        first_error
                            .lock()
                            .unwrap()
                            .get_or_insert_with(|| format!("query: {e}"));
                    }
                    Err(_) => {
                        query_errors.fetch_add(1, Relaxed);
                    }
                }
                let pause = rng.between_ms(1000, 5000);
                if Instant::now() + pause >= end {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            lat_us.lock().unwrap().extend(mine);
            let _ = tokio::time::timeout(Duration::from_secs(5), c.disconnect()).await;
        }));
    }
    for t in tasks {
        let _ = tokio::time::timeout_at(hard_stop.into(), t).await;
    }
    let (max, last, series) = sampler.await.unwrap_or_default();
    let mut lat = std::mem::take(&mut *lat_us.lock().unwrap());
    lat.sort_unstable();
    let q = |p: f64| {
        lat.get(((lat.len().max(1) - 1) as f64 * p) as usize)
            .map_or(0.0, |v| *v as f64 / 1000.0)
    };
    if let Some(e) = first_error.lock().unwrap().take() {
        eprintln!("first error: {e}");
    }
    let join = |v: &[u64]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    for (i, s) in series.iter().enumerate() {
        eprintln!(
            "Threads_connected of server {} per second: {}",
            a.servers[i],
            join(s)
        );
    }
    println!(
        "connected={} connect_errors={} queries={} query_errors={} p50_ms={:.3} p99_ms={:.3} max_ms={:.3} threads_max={} threads_last={}",
        connected.load(Relaxed),
        connect_errors.load(Relaxed),
        queries.load(Relaxed),
        query_errors.load(Relaxed),
        q(0.50),
        q(0.99),
        q(1.0),
        join(&max),
        join(&last),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let num = |i: usize| -> f64 { arg(i).parse().unwrap_or_else(|_| usage()) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match arg(0).as_str() {
        "churn" => rt.block_on(churn(
            num(1) as u16,
            num(2),
            num(3) as usize,
            arg(4),
            arg(5),
            arg(6) == "tls",
        )),
        "scenario" => rt.block_on(scenario(Args {
            port: num(1) as u16,
            clients: num(2) as usize,
            secs: num(3),
            user: arg(4),
            pass: arg(5),
            ramp: num(6),
            servers: arg(7).split(',').filter_map(|p| p.parse().ok()).collect(),
            server_user: arg(8),
            server_pass: arg(9),
        })),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: poolbench churn|scenario ... (see the file's header)");
    std::process::exit(2);
}
