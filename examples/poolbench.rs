//! Load generator for the connection-churn benchmark (`bench/pool_churn.py`), with
//! `mysql_async` as the client (the many-idle-clients scenario is
//! `bench/sharing.py` with `examples/sharebench.rs`). Every loop is bounded
//! in count and time; all traffic is on loopback.
//!
//! ```text
//! poolbench churn PORT SECS WORKERS USER PASS tls|plain
//!     WORKERS tasks loop: connect, SELECT 1, quit. Prints
//!     `conns=N errors=E secs=S rate=R` (R = connections/s).
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
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: poolbench churn ... (see the file's header)");
    std::process::exit(2);
}
