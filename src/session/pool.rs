//! The pool of idle server connections, as policy: which parked connection a new
//! client may take, when one has stayed too long, how many may be kept. Pure (time is
//! passed in), so it is unit-tested with a fake clock; the sockets, the reset before
//! parking and the liveness check live in [`super::pooled`].
//!
//! A connection is parked under a [`Key`]: the destination, whether the server hop is
//! TLS, and the capabilities its first client negotiated with the server. The server
//! keeps those capabilities for the connection's life (COM_CHANGE_USER does not
//! renegotiate them) and they decide the grammar of every response, so a new client
//! may only take a connection whose capabilities equal its own.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::protocol::caps::flag;

/// What a pooled connection must match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// `host:port` of the destination.
    pub destination: String,
    /// The router → server hop is TLS.
    pub server_tls: bool,
    /// The client's capabilities as the server saw them (see [`grammar_caps`]).
    pub caps: u64,
}

/// The capabilities of a HandshakeResponse41 that matter after the handshake: all of
/// them (low 32 bits and MariaDB's extended bits from the filler) except those that
/// only describe the handshake itself (TLS, a schema in the response, attributes).
pub fn grammar_caps(response: &[u8]) -> Option<u64> {
    let lo = u32::from_le_bytes(response.get(..4)?.try_into().ok()?) as u64;
    let ext = u32::from_le_bytes(response.get(28..32)?.try_into().ok()?) as u64;
    let handshake_only = flag::SSL | flag::CONNECT_WITH_DB | flag::CONNECT_ATTRS;
    Some((lo & !handshake_only) | (ext << 32))
}

struct Entry<T> {
    key: Key,
    since: Instant,
    conn: T,
}

/// Parked connections of one I/O worker, most recently parked last.
pub struct Pool<T> {
    entries: VecDeque<Entry<T>>,
    idle_timeout: Duration,
}

impl<T> Pool<T> {
    pub fn new(idle_timeout: Duration) -> Self {
        Pool {
            entries: VecDeque::new(),
            idle_timeout,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Parks `conn` (the caller holds a [`Budget`] slot for it).
    pub fn park(&mut self, key: Key, conn: T, now: Instant) {
        self.entries.push_back(Entry {
            key,
            since: now,
            conn,
        });
    }

    /// Takes the most recently parked connection whose key satisfies `matches` and that
    /// has not outstayed the idle timeout (the warmest one: the others may time out).
    pub fn take(&mut self, matches: impl Fn(&Key, &T) -> bool, now: Instant) -> Option<(Key, T)> {
        let i = self
            .entries
            .iter()
            .rposition(|e| matches(&e.key, &e.conn) && !self.expired(e, now))?;
        let e = self.entries.remove(i)?;
        Some((e.key, e.conn))
    }

    /// Like [`Pool::take`], also a connection older than the idle timeout (one the
    /// sweeper kept because a shared session needs it).
    pub fn take_kept(&mut self, matches: impl Fn(&Key, &T) -> bool) -> Option<(Key, T)> {
        let i = self
            .entries
            .iter()
            .rposition(|e| matches(&e.key, &e.conn))?;
        let e = self.entries.remove(i)?;
        Some((e.key, e.conn))
    }

    /// Removes and returns the connections that outstayed the idle timeout, except
    /// those `keep` says are still needed (see `pooled`: the idle connections an
    /// unlinked shared session may need).
    pub fn expire(&mut self, now: Instant, keep: impl Fn(&Key, &T) -> bool) -> Vec<T> {
        let timeout = self.idle_timeout;
        let mut out = Vec::new();
        let mut rest = VecDeque::with_capacity(self.entries.len());
        for e in self.entries.drain(..) {
            if now.saturating_duration_since(e.since) >= timeout && !keep(&e.key, &e.conn) {
                out.push(e.conn);
            } else {
                rest.push_back(e);
            }
        }
        self.entries = rest;
        out
    }

    /// How many parked connections satisfy `f`.
    pub fn count(&self, f: impl Fn(&Key, &T) -> bool) -> usize {
        self.entries.iter().filter(|e| f(&e.key, &e.conn)).count()
    }

    /// Removes and returns the connections for which `gone` says so (e.g. the server
    /// closed them).
    pub fn remove_where(&mut self, mut gone: impl FnMut(&T, Instant) -> bool) -> Vec<T> {
        let mut out = Vec::new();
        let mut keep = VecDeque::with_capacity(self.entries.len());
        for e in self.entries.drain(..) {
            if gone(&e.conn, e.since) {
                out.push(e.conn);
            } else {
                keep.push_back(e);
            }
        }
        self.entries = keep;
        out
    }

    /// When the oldest parked connection times out.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.entries.front().map(|e| e.since + self.idle_timeout)
    }

    fn expired(&self, e: &Entry<T>, now: Instant) -> bool {
        now.saturating_duration_since(e.since) >= self.idle_timeout
    }
}

/// The process-wide bound on parked connections (`max_idle_server_connections`),
/// shared by the workers' pools.
#[derive(Debug)]
pub struct Budget {
    max: usize,
    used: AtomicUsize,
}

impl Budget {
    pub fn new(max: usize) -> Self {
        Budget {
            max,
            used: AtomicUsize::new(0),
        }
    }

    /// Reserves a slot; `false` when the pool is full.
    pub fn try_reserve(&self) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Takes a slot even over the bound (a shared session's last idle connection of its
    /// account: see `pooled::stash`).
    pub fn force_reserve(&self) {
        self.used.fetch_add(1, Ordering::AcqRel);
    }

    /// Gives a slot back (its connection was taken, expired or found dead).
    pub fn release(&self, n: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            });
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(d: &str, caps: u64) -> Key {
        Key {
            destination: d.into(),
            server_tls: false,
            caps,
        }
    }

    #[test]
    fn takes_the_warmest_matching_connection() {
        let t0 = Instant::now();
        let mut p = Pool::new(Duration::from_secs(5));
        p.park(key("a:1", 1), "a-old", t0);
        p.park(key("b:1", 1), "b", t0 + Duration::from_secs(1));
        p.park(key("a:1", 1), "a-new", t0 + Duration::from_secs(2));
        p.park(key("a:1", 2), "a-other-caps", t0 + Duration::from_secs(3));
        let want = key("a:1", 1);
        let now = t0 + Duration::from_secs(3);
        assert_eq!(p.take(|k, _| *k == want, now).map(|x| x.1), Some("a-new"));
        assert_eq!(p.take(|k, _| *k == want, now).map(|x| x.1), Some("a-old"));
        assert_eq!(p.take(|k, _| *k == want, now), None);
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn never_hands_out_an_expired_connection_and_expires_it() {
        let t0 = Instant::now();
        let mut p = Pool::new(Duration::from_secs(5));
        p.park(key("a:1", 1), 1, t0);
        p.park(key("a:1", 1), 2, t0 + Duration::from_secs(3));
        let at5 = t0 + Duration::from_secs(5);
        assert_eq!(p.next_expiry(), Some(at5));
        // At 5 s the first is expired, the second not.
        assert_eq!(p.take(|_, _| true, at5).map(|x| x.1), Some(2));
        p.park(key("a:1", 1), 3, at5);
        assert_eq!(p.expire(at5, |_, _| false), vec![1]);
        assert_eq!(
            p.expire(at5 + Duration::from_secs(4), |_, _| false),
            Vec::<i32>::new()
        );
        assert_eq!(
            p.expire(at5 + Duration::from_secs(5), |_, _| false),
            vec![3]
        );
        assert!(p.is_empty());
    }

    #[test]
    fn zero_idle_timeout_keeps_nothing_usable() {
        let t0 = Instant::now();
        let mut p = Pool::new(Duration::ZERO);
        p.park(key("a:1", 1), 1, t0);
        assert_eq!(p.take(|_, _| true, t0), None);
        assert_eq!(p.expire(t0, |_, _| false), vec![1]);
    }

    #[test]
    fn expiry_spares_what_is_still_needed() {
        let t0 = Instant::now();
        let mut p = Pool::new(Duration::from_secs(1));
        p.park(key("a:1", 1), 1, t0);
        p.park(key("b:1", 1), 2, t0);
        let later = t0 + Duration::from_secs(2);
        assert_eq!(p.expire(later, |k, _| k.destination == "a:1"), vec![2]);
        assert_eq!(p.count(|_, c| *c == 1), 1);
        let b = Budget::new(1);
        assert!(b.try_reserve());
        b.force_reserve();
        assert_eq!(b.used(), 2);
    }

    #[test]
    fn removes_dead_connections() {
        let t0 = Instant::now();
        let mut p = Pool::new(Duration::from_secs(5));
        for i in 0..4 {
            p.park(key("a:1", 1), i, t0);
        }
        assert_eq!(p.remove_where(|c, _| c % 2 == 1), vec![1, 3]);
        assert_eq!(p.take(|_, _| true, t0).map(|x| x.1), Some(2));
    }

    #[test]
    fn budget_bounds_parked_connections() {
        let b = Budget::new(2);
        assert!(b.try_reserve());
        assert!(b.try_reserve());
        assert!(!b.try_reserve());
        b.release(1);
        assert!(b.try_reserve());
        b.release(5);
        assert_eq!(b.used(), 0);
        assert!(!Budget::new(0).try_reserve());
    }

    #[test]
    fn grammar_caps_ignore_handshake_only_bits() {
        let mut r = vec![0u8; 32];
        let caps =
            (flag::PROTOCOL_41 | flag::DEPRECATE_EOF | flag::SSL | flag::CONNECT_WITH_DB) as u32;
        r[..4].copy_from_slice(&caps.to_le_bytes());
        r[28..32].copy_from_slice(&4u32.to_le_bytes());
        let g = grammar_caps(&r).unwrap(); // ok: test code
        assert_eq!(g, flag::PROTOCOL_41 | flag::DEPRECATE_EOF | (4 << 32));
        assert_eq!(grammar_caps(&r[..20]), None);
    }
}
