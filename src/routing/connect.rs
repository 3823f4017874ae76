//! Connecting to one destination: resolve (each time, no DNS for literals), then a TCP
//! connect per resolved address with `connect_timeout`. Errors are the attempt texts of
//! MySQL Router's "connecting to backend(s) ... failed" line.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::config::Destination;
use crate::logging::strerror;

fn ms(since: Instant) -> u128 {
    since.elapsed().as_millis()
}

pub async fn connect(d: &Destination, timeout: Duration) -> Result<TcpStream, String> {
    let start = Instant::now();
    let addrs: Vec<SocketAddr> = match d.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, d.port)],
        Err(_) => {
            match tokio::time::timeout(timeout, tokio::net::lookup_host((d.host.as_str(), d.port)))
                .await
            {
                Ok(Ok(a)) => a.collect(),
                Ok(Err(e)) => {
                    return Err(format!(
                        "resolve({}) failed after {}ms: {e}",
                        d.host,
                        ms(start)
                    ))
                }
                Err(_) => {
                    return Err(format!(
                        "resolve({}) failed after {}ms: Connection timed out",
                        d.host,
                        ms(start)
                    ))
                }
            }
        }
    };
    let mut last = format!(
        "resolve({}) failed after {}ms: no address",
        d.host,
        ms(start)
    );
    for a in addrs {
        let t = Instant::now();
        match tokio::time::timeout(timeout, TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = format!("connect({a}) failed after {}ms: {}", ms(t), strerror(&e)),
            Err(_) => {
                last = format!(
                    "connect({a}) failed after {}ms: Connection timed out",
                    ms(t)
                )
            }
        }
    }
    Err(last)
}
