//! Destination choice: which destinations a new client tries, in which order, and how
//! the route's memory (round-robin index, sticky destination) moves. Pure: no sockets,
//! no clock; quarantine is a predicate passed in by the caller.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::config::Strategy;

/// The candidates for one client, and the route state they were computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Destination indexes in the order to try.
    pub order: Vec<usize>,
    /// The sticky index seen when planning (first-/next-available).
    pub start: usize,
}

/// A switch of the remembered destination, for the failover log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    pub from: usize,
    pub to: usize,
}

#[derive(Debug)]
pub struct Policy {
    strategy: Strategy,
    n: usize,
    /// round-robin: the next start index.
    rr: AtomicUsize,
    /// first-/next-available: the remembered destination (`n` = past the end).
    sticky: Mutex<usize>,
}

impl Policy {
    pub fn new(strategy: Strategy, n: usize) -> Self {
        Policy {
            strategy,
            n,
            rr: AtomicUsize::new(0),
            sticky: Mutex::new(0),
        }
    }

    fn sticky(&self) -> std::sync::MutexGuard<'_, usize> {
        self.sticky.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The order in which a new client tries the destinations. Quarantined ones stay in
    /// the list (the connect loop skips them and names them in the error line), but
    /// round-robin starts at a destination that is not quarantined when there is one.
    pub fn plan(&self, quarantined: impl Fn(usize) -> bool) -> Plan {
        let n = self.n;
        if n == 0 {
            return Plan {
                order: vec![],
                start: 0,
            };
        }
        match self.strategy {
            Strategy::RoundRobin => {
                // Advance past quarantined entries so the rotation stays even over the
                // healthy ones.
                let mut start = self.rr.fetch_add(1, Ordering::Relaxed) % n;
                for _ in 0..n {
                    if !quarantined(start) {
                        break;
                    }
                    start = self.rr.fetch_add(1, Ordering::Relaxed) % n;
                }
                Plan {
                    order: (0..n).map(|i| (start + i) % n).collect(),
                    start,
                }
            }
            Strategy::FirstAvailable => {
                let start = *self.sticky();
                Plan {
                    order: (0..n).map(|i| (start + i) % n).collect(),
                    start,
                }
            }
            Strategy::NextAvailable => {
                let start = *self.sticky();
                Plan {
                    order: (start.min(n)..n).collect(),
                    start,
                }
            }
        }
    }

    /// A client of `plan` connected to destination `idx`. Returns the switch of the
    /// remembered destination, if this moved it.
    pub fn connected(&self, plan: &Plan, idx: usize) -> Option<Switch> {
        if self.strategy == Strategy::RoundRobin {
            return None;
        }
        let mut s = self.sticky();
        // Only the client that planned from the current state may move it: a slower
        // client that planned before a failover must not move it back.
        if *s == plan.start && idx != *s {
            let from = *s;
            *s = idx;
            return Some(Switch { from, to: idx });
        }
        None
    }

    /// Every destination of `plan` failed. next-available then never returns.
    pub fn exhausted(&self, plan: &Plan) {
        if self.strategy == Strategy::NextAvailable {
            let mut s = self.sticky();
            if *s == plan.start {
                *s = self.n;
            }
        }
    }

    /// The remembered destination (first-/next-available), `None` past the end.
    pub fn current(&self) -> Option<usize> {
        let s = *self.sticky();
        (s < self.n).then_some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn none(_: usize) -> bool {
        false
    }

    #[test]
    fn round_robin_rotates_and_skips_quarantined() {
        let p = Policy::new(Strategy::RoundRobin, 3);
        let starts: Vec<usize> = (0..4).map(|_| p.plan(none).order[0]).collect();
        assert_eq!(starts, vec![0, 1, 2, 0]);
        assert_eq!(p.plan(none).order, vec![1, 2, 0]);
        let q = |i: usize| i == 2;
        let starts: Vec<usize> = (0..4).map(|_| p.plan(q).order[0]).collect();
        assert_eq!(starts, vec![0, 1, 0, 1]);
    }

    #[test]
    fn first_available_is_sticky_and_wraps_once() {
        let p = Policy::new(Strategy::FirstAvailable, 3);
        let plan = p.plan(none);
        assert_eq!(plan.order, vec![0, 1, 2]);
        // s0 failed, s1 answered
        assert_eq!(p.connected(&plan, 1), Some(Switch { from: 0, to: 1 }));
        let plan = p.plan(none);
        assert_eq!(plan.order, vec![1, 2, 0]);
        // s0 is back, but we stay on s1 until it fails
        assert_eq!(p.connected(&plan, 1), None);
        assert_eq!(p.current(), Some(1));
        // s1 and s2 fail, wrap to s0
        let plan = p.plan(none);
        assert_eq!(p.connected(&plan, 0), Some(Switch { from: 1, to: 0 }));
    }

    #[test]
    fn stale_plan_does_not_move_back() {
        let p = Policy::new(Strategy::FirstAvailable, 2);
        let old = p.plan(none);
        let new = p.plan(none);
        assert!(p.connected(&new, 1).is_some());
        assert_eq!(p.connected(&old, 0), None);
        assert_eq!(p.current(), Some(1));
    }

    #[test]
    fn next_available_never_goes_back() {
        let p = Policy::new(Strategy::NextAvailable, 3);
        let plan = p.plan(none);
        p.connected(&plan, 1);
        assert_eq!(p.plan(none).order, vec![1, 2]);
        let plan = p.plan(none);
        p.exhausted(&plan);
        assert_eq!(p.plan(none).order, Vec::<usize>::new());
        assert_eq!(p.current(), None);
    }

    #[test]
    fn many_clients_round_robin_evenly() {
        let p = Arc::new(Policy::new(Strategy::RoundRobin, 3));
        let counts = Arc::new(Mutex::new([0usize; 3]));
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let (p, c) = (p.clone(), counts.clone());
                std::thread::spawn(move || {
                    for _ in 0..300 {
                        let first = p.plan(none).order[0];
                        c.lock().unwrap()[first] += 1; // ok: test code
                    }
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap()); // ok: test code
        assert_eq!(*counts.lock().unwrap(), [800, 800, 800]); // ok: test code
    }

    #[test]
    fn many_clients_fail_over_once() {
        let p = Arc::new(Policy::new(Strategy::FirstAvailable, 3));
        let switches = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let (p, s) = (p.clone(), switches.clone());
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        let plan = p.plan(none);
                        // s0 is down: everyone ends on s1
                        let idx = plan.order.iter().copied().find(|i| *i != 0).unwrap(); // ok: test code
                        if p.connected(&plan, idx).is_some() {
                            s.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap()); // ok: test code
        assert_eq!(switches.load(Ordering::SeqCst), 1);
        assert_eq!(p.current(), Some(1));
    }
}
