//! The role monitor (`[monitor]`): keeps one connection per destination of the routes
//! that have a `role`, reads each server's role and replication lag every `interval`,
//! and publishes what it learned to the routes (which read it, never the reverse).
//!
//! [`state`] is the pure part (role and lag from the last probe results and the clock);
//! [`probe`] is the I/O. This file runs one task per destination, logs role changes
//! (WARNING) and probe failures (one ERROR per change of error), and offers a
//! [`Monitor::snapshot`] for the REST API and metrics.

pub mod probe;
pub mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::{Destination, MonitorConfig};
use state::{DestState, Role, View};

/// One destination as the REST API and metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationStatus {
    /// `host:port`.
    pub address: String,
    pub role: Role,
    /// Why the role is unknown (empty otherwise).
    pub reason: String,
    pub lag: Option<Duration>,
    /// The last probe failed with this error.
    pub last_error: Option<String>,
}

pub struct Monitor {
    cfg: MonitorConfig,
    dests: Vec<Destination>,
    states: Mutex<HashMap<String, DestState>>,
    /// Bumped after every probe round of any destination.
    changed: watch::Sender<u64>,
}

impl Monitor {
    /// A monitor of `dests` (duplicates are probed once).
    pub fn new(cfg: MonitorConfig, dests: &[Destination]) -> Arc<Monitor> {
        let mut unique: Vec<Destination> = Vec::new();
        for d in dests {
            if !unique.contains(d) {
                unique.push(d.clone());
            }
        }
        Arc::new(Monitor {
            cfg,
            states: Mutex::new(
                unique
                    .iter()
                    .map(|d| (d.address(), DestState::default()))
                    .collect(),
            ),
            dests: unique,
            changed: watch::channel(0).0,
        })
    }

    /// Results older than this are not trusted: a probe is due every `interval` and
    /// takes at most `connect_timeout + read_timeout`.
    pub fn stale_after(&self) -> Duration {
        self.cfg.interval + self.cfg.connect_timeout + self.cfg.read_timeout
    }

    pub fn interval(&self) -> Duration {
        self.cfg.interval
    }

    fn with_states<T>(&self, f: impl FnOnce(&mut HashMap<String, DestState>) -> T) -> T {
        let mut g = self.states.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// The destination `key` (`host:port`) as seen at `now`.
    pub fn view(&self, key: &str, now: Instant) -> View {
        let stale = self.stale_after();
        self.with_states(|s| {
            s.get(key)
                .map(|d| d.view(now, stale))
                .unwrap_or_else(|| DestState::default().view(now, stale))
        })
    }

    /// Changes after every probe round; routes re-evaluate their destinations then.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Every monitored destination's role, lag and last error, for REST and metrics.
    pub fn snapshot(&self) -> Vec<DestinationStatus> {
        let now = Instant::now();
        self.dests
            .iter()
            .map(|d| {
                let key = d.address();
                let v = self.view(&key, now);
                DestinationStatus {
                    address: key,
                    role: v.role,
                    reason: v.reason,
                    lag: v.lag,
                    last_error: v.last_error,
                }
            })
            .collect()
    }

    /// Starts one probe task per destination; they end (closing their connections
    /// with COM_QUIT) when `stop` turns true.
    pub fn spawn(
        self: &Arc<Self>,
        stop: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.dests
            .iter()
            .map(|d| {
                let me = self.clone();
                let d = d.clone();
                let stop = stop.clone();
                tokio::spawn(async move { me.run(d, stop).await })
            })
            .collect()
    }

    async fn run(self: Arc<Self>, d: Destination, mut stop: watch::Receiver<bool>) {
        let key = d.address();
        let mut prober = probe::Prober::new(&d, &self.cfg);
        let mut tick = tokio::time::interval(self.cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error: Option<String> = None;
        let mut last_role: Option<String> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                break;
            }
            let result = tokio::select! {
                r = prober.probe() => r,
                _ = stop.changed() => break,
            };
            let now = Instant::now();
            match &result {
                Ok(_) if last_error.is_some() => {
                    tracing::warn!(target: "monitor", "destination '{key}' answers the monitor again");
                    last_error = None;
                }
                Err(e) if last_error.as_deref() != Some(e.as_str()) => {
                    tracing::error!(target: "monitor", "cannot read the role of destination '{key}': {e}");
                    last_error = Some(e.clone());
                }
                _ => {}
            }
            let view = self.with_states(|s| {
                let st = s.entry(key.clone()).or_default();
                match result {
                    Ok(f) => st.record_ok(now, f),
                    Err(e) => st.record_error(now, e),
                }
                st.view(now, self.stale_after())
            });
            // The role name only: lag changes every second and has its own per-route lines.
            let role = match view.role {
                Role::Unknown => format!("UNKNOWN ({})", view.reason),
                r => r.name().to_string(),
            };
            if last_role.as_deref() != Some(role.as_str()) {
                match &last_role {
                    None => {
                        tracing::info!(target: "monitor", "destination '{key}' is {}", view.describe())
                    }
                    Some(old) => tracing::warn!(
                        target: "monitor",
                        "destination '{key}' changed role from {old} to {}",
                        view.describe()
                    ),
                }
                last_role = Some(role);
            }
            self.changed.send_modify(|g| *g += 1);
        }
        prober.close().await;
    }
}
