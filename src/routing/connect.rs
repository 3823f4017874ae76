//! Connecting to one destination: resolve (each time, no DNS for literals), then a TCP
//! connect per resolved address with `connect_timeout`. Errors are the attempt texts of
//! MySQL Router's "connecting to backend(s) ... failed" line.
//!
//! A connect that fails because this process is out of descriptors or memory says so
//! ([`Failure::local`]): that is no fault of the destination and must not quarantine it.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::config::Destination;
use crate::logging::strerror;

fn ms(since: Instant) -> u128 {
    since.elapsed().as_millis()
}

/// Why a connect failed: the attempt text, and whether the cause is local.
#[derive(Debug)]
pub struct Failure {
    pub text: String,
    /// The router itself is out of descriptors or memory (EMFILE, ENFILE, ENOBUFS,
    /// ENOMEM).
    pub local: bool,
}

impl From<String> for Failure {
    fn from(text: String) -> Self {
        Failure { text, local: false }
    }
}

pub async fn connect(d: &Destination, timeout: Duration) -> Result<TcpStream, Failure> {
    let start = Instant::now();
    let addrs: Vec<SocketAddr> = match d.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, d.port)],
        Err(_) => {
            match tokio::time::timeout(timeout, tokio::net::lookup_host((d.host.as_str(), d.port)))
                .await
            {
                Ok(Ok(a)) => a.collect(),
                Ok(Err(e)) => {
                    return Err(
                        format!("resolve({}) failed after {}ms: {e}", d.host, ms(start)).into(),
                    )
                }
                Err(_) => {
                    return Err(format!(
                        "resolve({}) failed after {}ms: Connection timed out",
                        d.host,
                        ms(start)
                    )
                    .into())
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
            Ok(Err(e)) => {
                let text = format!("connect({a}) failed after {}ms: {}", ms(t), strerror(&e));
                if super::shed::out_of_resources(&e) {
                    return Err(Failure { text, local: true });
                }
                last = text;
            }
            Err(_) => {
                last = format!(
                    "connect({a}) failed after {}ms: Connection timed out",
                    ms(t)
                )
            }
        }
    }
    Err(last.into())
}
