//! Admission bookkeeping of one route: connection slots (`max_connections` and the
//! process-wide `max_total_connections`) and handshake-error counters per client IP
//! (`max_connect_errors`). No I/O and no logging: the route decides what to say.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Why a client was not admitted, with the counts for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The route's `max_connections` is reached (`active` connections).
    Route { active: u64, max: u64 },
    /// The process's `max_total_connections` is reached.
    Total { total: u64, max: u64 },
}

/// One route's and one process slot; both are released when it drops, however the
/// connection ends.
#[derive(Debug)]
pub struct Permit<'a> {
    route: &'a AtomicU64,
    total: &'a AtomicU64,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.route.fetch_sub(1, Ordering::AcqRel);
        self.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug)]
pub struct Admission {
    /// 0 = no per-route limit.
    max_connections: u64,
    max_connect_errors: u64,
    active: AtomicU64,
    errors: Mutex<HashMap<IpAddr, u64>>,
}

impl Admission {
    pub fn new(max_connections: u64, max_connect_errors: u64) -> Self {
        Admission {
            max_connections,
            max_connect_errors,
            active: AtomicU64::new(0),
            errors: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a route slot and a process slot from `total` (limit `max_total`).
    pub fn admit<'a>(
        &'a self,
        total: &'a AtomicU64,
        max_total: u64,
    ) -> Result<Permit<'a>, Refusal> {
        let n = self.active.fetch_add(1, Ordering::AcqRel) + 1;
        if self.max_connections > 0 && n > self.max_connections {
            self.active.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Route {
                active: n - 1,
                max: self.max_connections,
            });
        }
        let t = total.fetch_add(1, Ordering::AcqRel) + 1;
        if t > max_total {
            self.active.fetch_sub(1, Ordering::AcqRel);
            total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Total {
                total: t - 1,
                max: max_total,
            });
        }
        Ok(Permit {
            route: &self.active,
            total,
        })
    }

    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Acquire)
    }

    fn errors(&self) -> MutexGuard<'_, HashMap<IpAddr, u64>> {
        // A poisoned lock only means a panic elsewhere; the counters are still valid.
        self.errors.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        self.errors()
            .get(&ip)
            .is_some_and(|n| *n >= self.max_connect_errors)
    }

    /// Counts a failed handshake; returns the new count and whether this one blocked
    /// the host.
    pub fn count_error(&self, ip: IpAddr) -> (u64, bool) {
        let mut m = self.errors();
        let n = m.entry(ip).or_insert(0);
        *n += 1;
        (*n, *n == self.max_connect_errors)
    }

    /// A completed handshake resets the host's counter, unless it is already blocked
    /// (a blocked host stays blocked until [`Admission::clear_blocked`]).
    pub fn reset(&self, ip: IpAddr) {
        let mut m = self.errors();
        if m.get(&ip).is_some_and(|n| *n < self.max_connect_errors) {
            m.remove(&ip);
        }
    }

    pub fn blocked_hosts(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self
            .errors()
            .iter()
            .filter(|(_, n)| **n >= self.max_connect_errors)
            .map(|(ip, _)| *ip)
            .collect();
        v.sort();
        v
    }

    /// Forgets all counters; returns the hosts that were blocked.
    pub fn clear_blocked(&self) -> Vec<IpAddr> {
        let blocked = self.blocked_hosts();
        self.errors().clear();
        blocked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn route_and_total_limits_and_release() {
        let a = Admission::new(2, 100);
        let total = AtomicU64::new(0);
        let p1 = a.admit(&total, 3).unwrap(); // ok: test code
        let p2 = a.admit(&total, 3).unwrap(); // ok: test code
        assert_eq!(
            a.admit(&total, 3).unwrap_err(),
            Refusal::Route { active: 2, max: 2 }
        );
        drop(p1);
        assert_eq!((a.active(), total.load(Ordering::SeqCst)), (1, 1));
        let b = Admission::new(0, 100);
        let q1 = b.admit(&total, 3).unwrap(); // ok: test code
        let _q2 = b.admit(&total, 3).unwrap(); // ok: test code
        assert_eq!(
            b.admit(&total, 3).unwrap_err(),
            Refusal::Total { total: 3, max: 3 }
        );
        assert_eq!(b.active(), 2, "a refused client holds no slot");
        drop((p2, q1, _q2));
        assert_eq!(
            (a.active(), b.active(), total.load(Ordering::SeqCst)),
            (0, 0, 0)
        );
    }

    /// 32 threads take a slot at the same moment and hold it until all have tried:
    /// exactly the limit get one, for the route limit and for the process limit, round
    /// after round; everything is released afterwards.
    #[test]
    fn concurrent_admission_never_exceeds_the_limit() {
        use std::sync::Barrier;
        const THREADS: usize = 32;
        // (route max_connections, process max_total_connections)
        for (route_max, total_max) in [(10, 1000), (0, 10)] {
            let a = Admission::new(route_max, 100);
            let total = AtomicU64::new(0);
            for round in 0..20 {
                let (start, tried) = (Barrier::new(THREADS), Barrier::new(THREADS));
                let admitted = AtomicU64::new(0);
                std::thread::scope(|s| {
                    for _ in 0..THREADS {
                        s.spawn(|| {
                            start.wait();
                            let p = a.admit(&total, total_max);
                            if p.is_ok() {
                                admitted.fetch_add(1, Ordering::SeqCst);
                            }
                            tried.wait();
                            drop(p);
                        });
                    }
                });
                assert_eq!(
                    admitted.load(Ordering::SeqCst),
                    10,
                    "round {round}, limits ({route_max}, {total_max})"
                );
                assert_eq!((a.active(), total.load(Ordering::SeqCst)), (0, 0));
            }
        }
    }

    #[test]
    fn blocking_reset_and_clear() {
        let a = Admission::new(0, 3);
        assert_eq!(a.count_error(IP), (1, false));
        a.reset(IP);
        assert_eq!(
            a.count_error(IP),
            (1, false),
            "reset by a completed handshake"
        );
        assert_eq!(a.count_error(IP), (2, false));
        assert!(!a.is_blocked(IP));
        assert_eq!(a.count_error(IP), (3, true));
        assert!(a.is_blocked(IP));
        a.reset(IP);
        assert!(a.is_blocked(IP), "a blocked host stays blocked");
        assert_eq!(a.blocked_hosts(), vec![IP]);
        assert_eq!(a.clear_blocked(), vec![IP]);
        assert!(!a.is_blocked(IP));
        assert!(a.blocked_hosts().is_empty());
    }
}
