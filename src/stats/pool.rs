//! What the connection pool counts: how many server connections sit idle in it now
//! (MySQL Router's `idleServerConnections`), how many are stashed for sharing
//! (`stashedServerConnections`), and since start how many clients reused a pooled
//! connection, how many got a new one while pooling was on, how many connections were
//! parked and how many the pool closed instead of keeping.
//!
//! One process-wide [`PoolStats`] ([`STATS`]) updated by `session::pooled` (and by
//! sharing, for `stashed`) with relaxed atomics, once per pool event; the monitoring
//! layer reads a [`PoolSnapshot`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The pool's gauges and counters.
#[derive(Debug, Default)]
pub struct PoolStats {
    idle: AtomicU64,
    stashed: AtomicU64,
    reused: AtomicU64,
    opened: AtomicU64,
    parked: AtomicU64,
    dropped: AtomicU64,
}

/// The process's pool statistics.
pub static STATS: PoolStats = PoolStats::new();

fn sub(g: &AtomicU64, n: u64) {
    let _ = g.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(n)));
}

impl PoolStats {
    pub const fn new() -> Self {
        PoolStats {
            idle: AtomicU64::new(0),
            stashed: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            parked: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// A connection entered the pool (parked after its client left, or put back
    /// unused).
    pub fn entered(&self) {
        self.idle.fetch_add(1, Relaxed);
    }

    /// `n` connections left the pool (taken, expired or found closed).
    pub fn left(&self, n: u64) {
        sub(&self.idle, n);
    }

    /// A server connection was reset and parked after its client quit.
    pub fn parked(&self) {
        self.parked.fetch_add(1, Relaxed);
    }

    /// `n` server connections were closed by the pool instead of kept or handed out
    /// (pool full, reset failed, idle timeout, closed by the server).
    pub fn dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Relaxed);
    }

    /// A client was logged in on a pooled connection.
    pub fn reused(&self) {
        self.reused.fetch_add(1, Relaxed);
    }

    /// A client got a new server connection while pooling was on.
    pub fn opened(&self) {
        self.opened.fetch_add(1, Relaxed);
    }

    /// A session's server connection was stashed for sharing (`unstashed` when a
    /// client takes it back or it is closed).
    pub fn stashed(&self) {
        self.stashed.fetch_add(1, Relaxed);
    }

    pub fn unstashed(&self, n: u64) {
        sub(&self.stashed, n);
    }

    pub fn values(&self) -> PoolCounters {
        PoolCounters {
            idle: self.idle.load(Relaxed),
            stashed: self.stashed.load(Relaxed),
            reused: self.reused.load(Relaxed),
            opened: self.opened.load(Relaxed),
            parked: self.parked.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
        }
    }
}

/// The values of [`PoolStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolCounters {
    pub idle: u64,
    pub stashed: u64,
    pub reused: u64,
    pub opened: u64,
    pub parked: u64,
    pub dropped: u64,
}

/// The pool as the monitoring layer sees it: its configuration (MySQL Router's
/// `/connection_pool/main/config`) and its counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolSnapshot {
    /// `[connection_pool] max_idle_server_connections`.
    pub max_idle_server_connections: u64,
    /// `[connection_pool] idle_timeout`, in milliseconds.
    pub idle_timeout_ms: u64,
    pub counters: PoolCounters,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_follows_entries_and_exits_and_never_goes_negative() {
        let s = PoolStats::new();
        s.entered();
        s.entered();
        s.parked();
        s.left(1);
        assert_eq!(s.values().idle, 1);
        s.left(5);
        assert_eq!(s.values().idle, 0);
        s.dropped(2);
        s.reused();
        s.opened();
        s.stashed();
        s.unstashed(3);
        assert_eq!(
            s.values(),
            PoolCounters {
                idle: 0,
                stashed: 0,
                reused: 1,
                opened: 1,
                parked: 1,
                dropped: 2,
            }
        );
    }
}
