//! The live connections of one route, for MySQL Router's `/routes/NAME/connections`.
//!
//! Each connection owns a [`Live`] record: fixed facts written once, and the two
//! [`Tally`]s the relay bumps as bytes move (one writer each, relaxed stores). The route
//! keeps an index of the records, touched twice per connection (register, drop); a
//! snapshot copies the values out under that index's lock and never waits on a
//! connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use crate::relay::Tally;

/// One client connection's record.
#[derive(Debug)]
pub struct Live {
    pub source: String,
    pub destination: String,
    /// When the router started connecting to a server (µs since the epoch).
    pub started_us: u64,
    /// When the session was established, i.e. the handshake completed (0: not yet).
    connected_us: AtomicU64,
    /// Client → server.
    pub up: Tally,
    /// Server → client.
    pub down: Tally,
}

impl Live {
    pub fn connected(&self, at_us: u64) {
        self.connected_us.store(at_us, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ConnSnapshot {
        let opt = |v: u64| (v != 0).then_some(v);
        ConnSnapshot {
            source: self.source.clone(),
            destination: self.destination.clone(),
            bytes_up: self.up.bytes(),
            bytes_down: self.down.bytes(),
            started_us: self.started_us,
            connected_us: opt(self.connected_us.load(Ordering::Relaxed)),
            last_sent_us: opt(self.up.last_us()),
            last_received_us: opt(self.down.last_us()),
        }
    }
}

/// A copy of one connection's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnSnapshot {
    pub source: String,
    pub destination: String,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub started_us: u64,
    pub connected_us: Option<u64>,
    pub last_sent_us: Option<u64>,
    pub last_received_us: Option<u64>,
}

/// The index of a route's live connections, and the bytes of those that ended (kept
/// under the same lock, so that a connection's bytes move from one to the other at
/// once and byte totals never go backwards).
#[derive(Debug, Default)]
pub struct Connections {
    next: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    live: HashMap<u64, Arc<Live>>,
    closed_up: u64,
    closed_down: u64,
}

/// Removes its connection from the index when dropped, however the connection ends.
#[derive(Debug)]
pub struct Registration<'a> {
    id: u64,
    owner: &'a Connections,
    pub live: Arc<Live>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut g = self.owner.lock();
        if let Some(l) = g.live.remove(&self.id) {
            g.closed_up += l.up.bytes();
            g.closed_down += l.down.bytes();
        }
    }
}

impl Connections {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere; the index is still valid.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn register(
        &self,
        source: String,
        destination: String,
        started_us: u64,
    ) -> Registration<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let live = Arc::new(Live {
            source,
            destination,
            started_us,
            connected_us: AtomicU64::new(0),
            up: Tally::default(),
            down: Tally::default(),
        });
        self.lock().live.insert(id, live.clone());
        Registration {
            id,
            owner: self,
            live,
        }
    }

    /// The live connections, oldest first.
    pub fn snapshot(&self) -> Vec<ConnSnapshot> {
        let mut v: Vec<(u64, ConnSnapshot)> = self
            .lock()
            .live
            .iter()
            .map(|(id, l)| (*id, l.snapshot()))
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v.into_iter().map(|(_, c)| c).collect()
    }

    /// Bytes (up, down) of all connections, ended and live.
    pub fn bytes(&self) -> (u64, u64) {
        let g = self.lock();
        g.live
            .values()
            .fold((g.closed_up, g.closed_down), |(u, d), l| {
                (u + l.up.bytes(), d + l.down.bytes())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_lives_as_long_as_the_connection() {
        let c = Connections::default();
        let a = c.register("127.0.0.1:1".into(), "127.0.0.1:3306".into(), 5);
        let b = c.register("127.0.0.1:2".into(), "127.0.0.1:3306".into(), 6);
        a.live.up.add(10, 100);
        a.live.connected(7);
        let s = c.snapshot();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].source, "127.0.0.1:1");
        assert_eq!(
            (s[0].bytes_up, s[0].last_sent_us, s[0].connected_us),
            (10, Some(100), Some(7))
        );
        assert_eq!(
            (s[1].connected_us, s[1].last_sent_us, s[1].last_received_us),
            (None, None, None)
        );
        assert_eq!(c.bytes(), (10, 0));
        drop(a);
        assert_eq!(c.snapshot().len(), 1);
        assert_eq!(
            c.bytes(),
            (10, 0),
            "an ended connection's bytes stay counted"
        );
        drop(b);
        assert!(c.snapshot().is_empty());
    }
}
