//! Client side of `bench/sharing.py`: many mostly idle sessions, each sending a short
//! query every 1–5 s. Bounded in clients, time and queries; loopback only.
//!
//! ```text
//! sharebench PORT CLIENTS RAMP_SECS RUN_SECS USER PASS tls|plain
//! ```
//!
//! Connects CLIENTS sessions spread over RAMP_SECS (each sends `SELECT 1` right after
//! connecting), then for RUN_SECS every session sleeps a random 1–5 s and sends
//! `SELECT 1`, timing it. Prints one line: `clients=.. connected=.. queries=.. errors=..
//! p50_us=.. p99_us=.. max_us=..`.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

fn arg(i: usize) -> String {
    std::env::args().nth(i).unwrap_or_else(|| {
        eprintln!("usage: sharebench PORT CLIENTS RAMP_SECS RUN_SECS USER PASS tls|plain");
        std::process::exit(2)
    })
}

fn num(i: usize) -> u64 {
    arg(i).parse().unwrap_or_else(|_| {
        eprintln!("argument {i} is not a number");
        std::process::exit(2)
    })
}

/// A small xorshift, seeded per session (no dependency for random sleeps).
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn main() {
    let (port, clients, ramp, secs) = (num(1) as u16, num(2), num(3), num(4));
    let (user, pass, tls) = (arg(5), arg(6), arg(7) == "tls");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("tokio: {e}");
            std::process::exit(1)
        });
    let (lat, errors, connected) = rt.block_on(async move {
        let start = Instant::now();
        let stop = start + Duration::from_secs(ramp + secs);
        let mut set = tokio::task::JoinSet::new();
        for i in 0..clients {
            let (user, pass) = (user.clone(), pass.clone());
            set.spawn(async move {
                let at = start + Duration::from_secs_f64(ramp as f64 * i as f64 / clients as f64);
                tokio::time::sleep_until(at.into()).await;
                let ssl = mysql_async::SslOpts::default()
                    .with_danger_accept_invalid_certs(true)
                    .with_danger_skip_domain_validation(true);
                let opts = mysql_async::OptsBuilder::default()
                    .ip_or_hostname("127.0.0.1")
                    .tcp_port(port)
                    .user(Some(user))
                    .pass(Some(pass))
                    .prefer_socket(false)
                    .ssl_opts(tls.then_some(ssl));
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut c = match tokio::time::timeout(
                    Duration::from_secs(30),
                    mysql_async::Conn::new(opts),
                )
                .await
                {
                    Ok(Ok(c)) => c,
                    _ => return (lat, 1, false),
                };
                if c.query_drop("SELECT 1").await.is_err() {
                    errors += 1;
                }
                let mut rng =
                    0x9E37_79B9_7F4A_7C15u64 ^ (i + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
                loop {
                    let pause = Duration::from_millis(1000 + next(&mut rng) % 4000);
                    if Instant::now() + pause >= stop {
                        break;
                    }
                    tokio::time::sleep(pause).await;
                    let t = Instant::now();
                    match tokio::time::timeout(Duration::from_secs(30), c.query_drop("SELECT 1"))
                        .await
                    {
                        Ok(Ok(())) => lat.push(t.elapsed().as_micros() as u64),
                        _ => errors += 1,
                    }
                }
                let _ = c.disconnect().await;
                (lat, errors, true)
            });
        }
        let (mut lat, mut errors, mut connected) = (Vec::new(), 0, 0);
        while let Some(r) = set.join_next().await {
            if let Ok((l, e, ok)) = r {
                lat.extend(l);
                errors += e;
                connected += ok as u64;
            } else {
                errors += 1;
            }
        }
        (lat, errors, connected)
    });
    let mut lat = lat;
    lat.sort_unstable();
    let q = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "clients={clients} connected={connected} queries={} errors={errors} p50_us={} p99_us={} max_us={}",
        lat.len(),
        q(0.50),
        q(0.99),
        lat.last().copied().unwrap_or(0)
    );
}
