//! The process-wide quarantine of unreachable destinations, shared by all routes.
//!
//! [`QuarantineBook`] is the pure bookkeeping (error counters, who is quarantined);
//! [`Quarantine`] wraps it for concurrent use, logs every transition once, wakes routes
//! when the set changes, and runs the re-probe loop (plain TCP connect, no MySQL
//! handshake, so servers do not count the probe as a failed login more than needed).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::Destination;

/// What a report changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Unchanged,
    Entered,
    Left,
}

#[derive(Debug, Default, Clone)]
struct Entry {
    errors: u32,
    since: Option<Instant>,
}

/// Error counters and quarantine membership, keyed by `host:port`. No I/O, no clock of
/// its own: callers pass `now`.
#[derive(Debug)]
pub struct QuarantineBook {
    threshold: u32,
    entries: HashMap<String, Entry>,
    /// How often each destination entered quarantine (for metrics).
    entered: HashMap<String, u64>,
}

impl QuarantineBook {
    pub fn new(threshold: u32) -> Self {
        QuarantineBook {
            threshold: threshold.max(1),
            entries: HashMap::new(),
            entered: HashMap::new(),
        }
    }

    /// A connect or resolve to `key` failed.
    pub fn report_failure(&mut self, key: &str, now: Instant) -> Transition {
        let e = self.entries.entry(key.to_string()).or_default();
        if e.since.is_some() {
            return Transition::Unchanged;
        }
        e.errors = e.errors.saturating_add(1);
        if e.errors >= self.threshold {
            e.since = Some(now);
            *self.entered.entry(key.to_string()).or_insert(0) += 1;
            Transition::Entered
        } else {
            Transition::Unchanged
        }
    }

    /// A connect to `key` (or a probe of it) succeeded.
    pub fn report_success(&mut self, key: &str) -> Transition {
        match self.entries.remove(key) {
            Some(Entry { since: Some(_), .. }) => Transition::Left,
            _ => Transition::Unchanged,
        }
    }

    pub fn is_quarantined(&self, key: &str) -> bool {
        self.entries.get(key).is_some_and(|e| e.since.is_some())
    }

    /// How many times `key` entered quarantine since start.
    pub fn times_entered(&self, key: &str) -> u64 {
        self.entered.get(key).copied().unwrap_or(0)
    }

    pub fn quarantined(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.since.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        v.sort();
        v
    }

    /// How long `key` has been quarantined.
    pub fn quarantined_for(&self, key: &str, now: Instant) -> Option<Duration> {
        self.entries
            .get(key)
            .and_then(|e| e.since)
            .map(|s| now.saturating_duration_since(s))
    }
}

/// The shared quarantine. Routes watch [`Quarantine::subscribe`] to learn that the set
/// changed (to close or reopen their listeners).
pub struct Quarantine {
    book: Mutex<QuarantineBook>,
    /// Destinations by key, for re-probing (hostnames are resolved again each time).
    known: Mutex<HashMap<String, Destination>>,
    interval: Duration,
    changed: watch::Sender<u64>,
}

impl Quarantine {
    pub fn new(threshold: u32, interval: Duration) -> Self {
        Quarantine {
            book: Mutex::new(QuarantineBook::new(threshold)),
            known: Mutex::new(HashMap::new()),
            interval,
            changed: watch::channel(0).0,
        }
    }

    fn with_book<T>(&self, f: impl FnOnce(&mut QuarantineBook) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-update; the counters
        // are still usable.
        let mut g = self.book.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    pub fn register(&self, d: &Destination) {
        let mut k = self.known.lock().unwrap_or_else(|p| p.into_inner());
        k.entry(d.address()).or_insert_with(|| d.clone());
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn is_quarantined(&self, key: &str) -> bool {
        self.with_book(|b| b.is_quarantined(key))
    }

    /// (quarantined now, times entered) of each key, under one lock.
    pub fn states(&self, keys: &[String]) -> Vec<(bool, u64)> {
        self.with_book(|b| {
            keys.iter()
                .map(|k| (b.is_quarantined(k), b.times_entered(k)))
                .collect()
        })
    }

    pub fn all_quarantined(&self, keys: &[String]) -> bool {
        self.with_book(|b| keys.iter().all(|k| b.is_quarantined(k)))
    }

    /// Records a failed connect; `route` and `error` are for the log line.
    pub fn report_failure(&self, route: &str, key: &str, error: &str) {
        let t = self.with_book(|b| b.report_failure(key, Instant::now()));
        if t == Transition::Entered {
            tracing::debug!(target: "routing", "[{route}] add destination '{key}' to quarantine");
            tracing::warn!(
                target: "routing",
                "[{route}] destination '{key}' is unreachable and was quarantined: {error}"
            );
            self.changed.send_modify(|g| *g += 1);
        }
    }

    pub fn report_success(&self, key: &str) {
        if self.with_book(|b| b.report_success(key)) == Transition::Left {
            self.left(key, None);
        }
    }

    fn left(&self, key: &str, after: Option<Duration>) {
        tracing::debug!(
            target: "",
            "Destination candidate '{key}' is available, remove it from quarantine"
        );
        match after {
            Some(d) => tracing::warn!(
                target: "routing",
                "destination '{key}' is reachable again and left quarantine after {}",
                humantime::format_duration(Duration::from_secs(d.as_secs().max(1)))
            ),
            None => tracing::warn!(
                target: "routing",
                "destination '{key}' is reachable again and left quarantine"
            ),
        }
        self.changed.send_modify(|g| *g += 1);
    }

    /// Re-probes quarantined destinations every interval until `stop` turns true.
    pub async fn probe_loop(&self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            let keys = self.with_book(|b| b.quarantined());
            for key in keys {
                let dest = {
                    let k = self.known.lock().unwrap_or_else(|p| p.into_inner());
                    k.get(&key).cloned()
                };
                let Some(dest) = dest else { continue };
                if probe(&dest).await {
                    let now = Instant::now();
                    let (t, after) = self.with_book(|b| {
                        let after = b.quarantined_for(&key, now);
                        (b.report_success(&key), after)
                    });
                    if t == Transition::Left {
                        self.left(&key, after);
                    }
                }
            }
        }
    }
}

/// One TCP connect to each resolved address, 1 s each; true if any answered.
async fn probe(d: &Destination) -> bool {
    let timeout = Duration::from_secs(1);
    let addrs =
        match tokio::time::timeout(timeout, tokio::net::lookup_host((d.host.as_str(), d.port)))
            .await
        {
            Ok(Ok(a)) => a.collect::<Vec<_>>(),
            _ => return false,
        };
    for a in addrs {
        if let Ok(Ok(_s)) = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(a)).await {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_and_recovery() {
        let mut b = QuarantineBook::new(2);
        let t0 = Instant::now();
        assert_eq!(b.report_failure("a:1", t0), Transition::Unchanged);
        assert!(!b.is_quarantined("a:1"));
        assert_eq!(b.report_failure("a:1", t0), Transition::Entered);
        assert!(b.is_quarantined("a:1"));
        // further failures do not re-enter
        assert_eq!(b.report_failure("a:1", t0), Transition::Unchanged);
        assert_eq!(
            b.quarantined_for("a:1", t0 + Duration::from_secs(3)),
            Some(Duration::from_secs(3))
        );
        assert_eq!(b.quarantined(), vec!["a:1".to_string()]);
        assert_eq!(b.report_success("a:1"), Transition::Left);
        assert!(!b.is_quarantined("a:1"));
        assert_eq!(b.report_success("a:1"), Transition::Unchanged);
    }

    #[test]
    fn success_resets_counter() {
        let mut b = QuarantineBook::new(2);
        let t0 = Instant::now();
        b.report_failure("a:1", t0);
        assert_eq!(b.report_success("a:1"), Transition::Unchanged);
        assert_eq!(b.report_failure("a:1", t0), Transition::Unchanged);
    }

    #[test]
    fn concurrent_reports_enter_once() {
        let q = std::sync::Arc::new(Quarantine::new(1, Duration::from_secs(1)));
        let mut rx = q.subscribe();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        q.report_failure("r", "x:1", "refused");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap(); // ok: test code
        }
        assert!(q.is_quarantined("x:1"));
        // exactly one change notification for one transition
        assert_eq!(*rx.borrow_and_update(), 1);
    }
}
