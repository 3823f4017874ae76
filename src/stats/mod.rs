//! What the router counts, and the snapshots the monitoring layer reads.
//!
//! Routing owns the counters ([`RouteStats`], [`DestStats`], the live-connection records of
//! [`connections`]) and updates them with relaxed atomics, once per connection (bytes
//! and last-activity times per read, on the connection's own record). The HTTP layer
//! never touches a connection: it asks a [`Source`] for a [`Snapshot`], plain values
//! copied at one moment.

pub mod connections;
pub mod pool;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::config::RouteConfig;
pub use connections::{ConnSnapshot, Connections, Live};
pub use pool::PoolSnapshot;

/// Upper bounds (seconds) of the connect-latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Why a client was turned away before it reached a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The route's `max_connections`.
    Limit,
    /// `[DEFAULT] max_total_connections`.
    TotalLimit,
    /// The client's host is blocked (`max_connect_errors`).
    BlockedHost,
    /// No destination could be connected.
    NoDestination,
}

/// Counters of one route.
#[derive(Debug, Default)]
pub struct RouteStats {
    /// Clients admitted (past the blocked-host check and the limits), as MySQL Router's
    /// `totalConnections`.
    pub total: AtomicU64,
    refused: [AtomicU64; 4],
    pub handshake_failures: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl RouteStats {
    pub fn admitted(&self) {
        bump(&self.total);
    }

    pub fn refused(&self, why: Refused) {
        bump(&self.refused[why as usize]);
    }

    pub fn handshake_failed(&self) {
        bump(&self.handshake_failures);
    }

    pub fn values(&self) -> RouteCounters {
        let r = |why: Refused| self.refused[why as usize].load(Ordering::Relaxed);
        RouteCounters {
            total: self.total.load(Ordering::Relaxed),
            refused_limit: r(Refused::Limit),
            refused_total_limit: r(Refused::TotalLimit),
            refused_blocked: r(Refused::BlockedHost),
            refused_no_destination: r(Refused::NoDestination),
            handshake_failures: self.handshake_failures.load(Ordering::Relaxed),
            bytes_up: 0,
            bytes_down: 0,
        }
    }
}

/// Counters of one destination of one route.
#[derive(Debug, Default)]
pub struct DestStats {
    /// Times the route's remembered destination switched to this one.
    pub switches_to: AtomicU64,
    /// Successful connects by latency bucket (the last one is `+Inf`).
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
}

impl DestStats {
    pub fn switched_to(&self) {
        bump(&self.switches_to);
    }

    /// A connect that succeeded after `took`.
    pub fn connected(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        bump(&self.buckets[i]);
        self.latency_sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn latency(&self) -> Histogram {
        let per: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        Histogram {
            per_bucket: per,
            sum_secs: self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// A copy of a histogram: counts per bucket (not cumulative; the last is `+Inf`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub per_bucket: Vec<u64>,
    pub sum_secs: f64,
}

impl Histogram {
    pub fn count(&self) -> u64 {
        self.per_bucket.iter().sum()
    }

    /// `(upper bound, cumulative count)` pairs, `+Inf` last, as exposition formats want.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut acc = 0;
        LATENCY_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.per_bucket.iter())
            .map(|(b, n)| {
                acc += n;
                (b, acc)
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteCounters {
    pub total: u64,
    pub refused_limit: u64,
    pub refused_total_limit: u64,
    pub refused_blocked: u64,
    pub refused_no_destination: u64,
    pub handshake_failures: u64,
    /// Bytes client → server and server → client, ended and live connections together
    /// (filled from the route's [`Connections`]).
    pub bytes_up: u64,
    pub bytes_down: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DestSnapshot {
    pub host: String,
    pub port: u16,
    pub quarantined: bool,
    /// Times this destination entered the (process-wide) quarantine.
    pub quarantine_entries: u64,
    pub switches_to: u64,
    pub connect_latency: Histogram,
    /// The server's role, once routes know roles (`None`: not monitored).
    pub role: Option<String>,
    /// How far the replica lags, when the monitor knows it.
    pub replication_lag: Option<std::time::Duration>,
}

impl DestSnapshot {
    pub fn key(&self) -> String {
        crate::config::addr::join_host_port(&self.host, self.port)
    }
}

#[derive(Debug, Clone)]
pub struct RouteSnapshot {
    pub config: RouteConfig,
    /// The route's listeners are open.
    pub accepting: bool,
    pub active: u64,
    pub counters: RouteCounters,
    pub blocked_hosts: Vec<IpAddr>,
    pub destinations: Vec<DestSnapshot>,
    /// Filled only when asked for (it walks the route's live connections).
    pub connections: Vec<ConnSnapshot>,
}

impl RouteSnapshot {
    /// MySQL Router's health rule: alive while the route accepts clients and has
    /// destinations. (9.7.4, verified: a first-available route whose only destination
    /// is quarantined keeps listening and stays alive; round-robin and next-available
    /// routes stop listening when all theirs are, and so turn dead.)
    pub fn is_alive(&self) -> bool {
        self.accepting && !self.destinations.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub started: SystemTime,
    pub max_total_connections: u64,
    pub current_total_connections: u64,
    pub routes: Vec<RouteSnapshot>,
    /// The connection pool (MySQL Router has one, named `main`).
    pub pool: PoolSnapshot,
}

/// What the monitoring layer may ask of the running router.
pub trait Source: Send + Sync {
    /// All routes, in configuration order; with their live connections if
    /// `connections_of` names the route.
    fn snapshot(&self, connections_of: Option<&str>) -> Snapshot;
}

/// Microseconds since the Unix epoch, the clock of connection records. Called per
/// relayed read, so it is one vDSO `clock_gettime` and integer arithmetic.
pub fn now_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into the timespec it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_cumulative_with_inf_last() {
        let d = DestStats::default();
        d.connected(Duration::from_micros(300));
        d.connected(Duration::from_millis(3));
        d.connected(Duration::from_secs(9));
        let h = d.latency();
        assert_eq!(h.count(), 3);
        let c = h.cumulative();
        assert_eq!(c.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(c[0], (0.0005, 1));
        assert_eq!(c[3], (0.005, 2));
        assert_eq!(c[c.len() - 2].1, 2);
        assert_eq!(c[c.len() - 1], (f64::INFINITY, 3));
        assert!((h.sum_secs - 9.0033).abs() < 1e-9);
    }

    #[test]
    fn now_us_is_the_wall_clock() {
        let sys = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap() // ok: test code
            .as_micros() as u64;
        assert!(now_us().abs_diff(sys) < 1_000_000);
    }

    #[test]
    fn refusals_are_counted_by_reason() {
        let s = RouteStats::default();
        s.refused(Refused::Limit);
        s.refused(Refused::NoDestination);
        s.refused(Refused::NoDestination);
        s.admitted();
        let v = s.values();
        assert_eq!(
            (v.refused_limit, v.refused_total_limit, v.refused_blocked),
            (1, 0, 0)
        );
        assert_eq!((v.refused_no_destination, v.total), (2, 1));
    }
}
