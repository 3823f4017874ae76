//! The routes as the monitoring layer sees them: a [`Source`] of snapshots.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use super::{Route, Shared};
use crate::config::pool::PoolConfig;
use crate::stats::{PoolSnapshot, Snapshot, Source};

pub struct View {
    pub routes: Vec<Arc<Route>>,
    pub shared: Arc<Shared>,
    pub started: SystemTime,
    /// `[connection_pool]` as configured.
    pub pool: PoolConfig,
}

impl Source for View {
    fn snapshot(&self, connections_of: Option<&str>) -> Snapshot {
        Snapshot {
            started: self.started,
            max_total_connections: self.shared.max_total,
            current_total_connections: self.shared.total.load(Ordering::Relaxed),
            routes: self
                .routes
                .iter()
                .map(|r| r.snapshot(connections_of == Some(r.cfg.name.as_str())))
                .collect(),
            pool: PoolSnapshot {
                max_idle_server_connections: self.pool.max_idle_server_connections.into(),
                idle_timeout_ms: self.pool.idle_timeout.as_millis() as u64,
                counters: crate::stats::pool::STATS.values(),
            },
        }
    }
}
