//! Destination choice: which destinations a new client tries, in which order, and how
//! the route's memory (round-robin index, sticky destination) moves. Pure: no sockets,
//! no clock; quarantine is a predicate passed in by the caller, and for routes with a
//! `role` so is what each destination can serve (from the monitor) and its active
//! connections (for least-connections).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::config::Strategy;
use crate::monitor::state::Serves;

/// Why a role route has no candidate beyond the per-destination reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleProblem {
    /// Several writable destinations and none of them is the one the route had.
    SplitBrain(Vec<usize>),
}

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
    /// PRIMARY routes: the primary the route had (the split-brain rule keeps it).
    primary: Mutex<Option<usize>>,
}

impl Policy {
    pub fn new(strategy: Strategy, n: usize) -> Self {
        Policy {
            strategy,
            n,
            rr: AtomicUsize::new(0),
            sticky: Mutex::new(0),
            primary: Mutex::new(None),
        }
    }

    /// The writable destinations seen now: a single one becomes the route's primary.
    /// Returns the primary to use (`None` when there is none, or a split brain without
    /// the one the route had).
    pub fn note_primaries(&self, writers: &[usize]) -> Option<usize> {
        let mut p = self.primary.lock().unwrap_or_else(|e| e.into_inner());
        match writers {
            [] => None,
            [one] => {
                *p = Some(*one);
                Some(*one)
            }
            _ => p.filter(|had| writers.contains(had)),
        }
    }

    /// The primary a PRIMARY route had last.
    pub fn primary(&self) -> Option<usize> {
        *self.primary.lock().unwrap_or_else(|e| e.into_inner())
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
            Strategy::RoundRobin
            | Strategy::RoundRobinWithFallback
            | Strategy::LeastConnections => {
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

    /// The order for a client of a route with a role. `serves[i]` is what destination
    /// `i` can serve now (`None`: not usable); `active[i]` its connections through this
    /// route. A PRIMARY route (`primary_only`) uses one writable destination: the one it
    /// had when several are writable (split brain: `Err` when it had none of them).
    pub fn plan_roles(
        &self,
        serves: &[Option<Serves>],
        active: &[u64],
        primary_only: bool,
    ) -> (Plan, Option<RoleProblem>) {
        let usable: Vec<usize> = (0..self.n)
            .filter(|&i| serves.get(i).copied().flatten().is_some())
            .collect();
        let primaries: Vec<usize> = usable
            .iter()
            .copied()
            .filter(|&i| matches!(serves[i], Some(Serves::Primary { .. })))
            .collect();
        if primary_only {
            let multi = primaries
                .iter()
                .all(|&i| matches!(serves[i], Some(Serves::Primary { multi_writer: true })));
            // Galera: any synced writer will do; keep to one (the first, or the one we had).
            let chosen = match (multi, primaries.first()) {
                (true, Some(&first)) => {
                    let had = self.primary().filter(|h| primaries.contains(h));
                    let pick = had.unwrap_or(first);
                    self.note_primaries(&[pick])
                }
                _ => self.note_primaries(&primaries),
            };
            let problem = (chosen.is_none() && primaries.len() > 1)
                .then_some(RoleProblem::SplitBrain(primaries));
            return (
                Plan {
                    order: chosen.into_iter().collect(),
                    start: *self.sticky(),
                },
                problem,
            );
        }
        let pool: Vec<usize> = if self.strategy == Strategy::RoundRobinWithFallback {
            let secondaries: Vec<usize> = usable
                .iter()
                .copied()
                .filter(|&i| serves[i] == Some(Serves::Secondary))
                .collect();
            if secondaries.is_empty() {
                primaries
            } else {
                secondaries
            }
        } else {
            usable
        };
        let order = match (self.strategy, pool.len()) {
            (_, 0) => vec![],
            (Strategy::FirstAvailable | Strategy::NextAvailable, _) => pool,
            (Strategy::LeastConnections, k) => {
                // Fewest active first; ties in turn, so equal loads spread evenly.
                let r = self.rr.fetch_add(1, Ordering::Relaxed) % k;
                let mut v: Vec<(u64, usize, usize)> = pool
                    .iter()
                    .enumerate()
                    .map(|(pos, &i)| (active.get(i).copied().unwrap_or(0), (pos + k - r) % k, i))
                    .collect();
                v.sort();
                v.into_iter().map(|(_, _, i)| i).collect()
            }
            (_, k) => {
                let r = self.rr.fetch_add(1, Ordering::Relaxed) % k;
                (0..k).map(|j| pool[(r + j) % k]).collect()
            }
        };
        (
            Plan {
                order,
                start: *self.sticky(),
            },
            None,
        )
    }

    /// A client of `plan` connected to destination `idx`. Returns the switch of the
    /// remembered destination, if this moved it.
    pub fn connected(&self, plan: &Plan, idx: usize) -> Option<Switch> {
        if matches!(
            self.strategy,
            Strategy::RoundRobin | Strategy::RoundRobinWithFallback | Strategy::LeastConnections
        ) {
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

    const P: Option<Serves> = Some(Serves::Primary {
        multi_writer: false,
    });
    const S: Option<Serves> = Some(Serves::Secondary);

    #[test]
    fn primary_route_uses_the_one_primary() {
        let p = Policy::new(Strategy::FirstAvailable, 3);
        let (plan, problem) = p.plan_roles(&[S, P, None], &[0; 3], true);
        assert_eq!((plan.order.clone(), problem), (vec![1], None));
        assert_eq!(p.primary(), Some(1));
        let (plan, _) = p.plan_roles(&[None, S, None], &[0; 3], true);
        assert!(plan.order.is_empty());
    }

    #[test]
    fn split_brain_keeps_the_primary_it_had_or_refuses() {
        let p = Policy::new(Strategy::FirstAvailable, 3);
        p.plan_roles(&[None, P, S], &[0; 3], true);
        // s2 turns writable too: stay on s1
        let (plan, problem) = p.plan_roles(&[None, P, P], &[0; 3], true);
        assert_eq!((plan.order, problem), (vec![1], None));
        // a fresh route (remembers s0) with s1 and s2 writable refuses
        let q = Policy::new(Strategy::FirstAvailable, 3);
        let (plan, problem) = q.plan_roles(&[S, P, P], &[0; 3], true);
        assert!(plan.order.is_empty());
        assert_eq!(problem, Some(RoleProblem::SplitBrain(vec![1, 2])));
        // Galera writers are not a split brain
        let g = Some(Serves::Primary { multi_writer: true });
        let (plan, problem) = q.plan_roles(&[None, g, g], &[0; 3], true);
        assert_eq!((plan.order, problem), (vec![1], None));
    }

    #[test]
    fn round_robin_over_usable_secondaries() {
        let p = Policy::new(Strategy::RoundRobin, 4);
        let serves = [P, S, None, S];
        let firsts: Vec<usize> = (0..4)
            .map(|_| p.plan_roles(&serves, &[0; 4], false).0.order[0])
            .collect();
        assert_eq!(firsts, vec![0, 1, 3, 0]);
    }

    #[test]
    fn round_robin_with_fallback_uses_primary_only_without_secondaries() {
        let p = Policy::new(Strategy::RoundRobinWithFallback, 3);
        let (plan, _) = p.plan_roles(&[P, S, S], &[0; 3], false);
        assert!(!plan.order.contains(&0));
        let (plan, _) = p.plan_roles(&[P, None, None], &[0; 3], false);
        assert_eq!(plan.order, vec![0]);
    }

    #[test]
    fn least_connections_picks_fewest_and_spreads_ties() {
        let p = Policy::new(Strategy::LeastConnections, 3);
        let serves = [None, S, S];
        assert_eq!(p.plan_roles(&serves, &[0, 5, 2], false).0.order, vec![2, 1]);
        // equal loads: alternate
        let mut active = [0u64; 3];
        for _ in 0..10 {
            let first = p.plan_roles(&serves, &active, false).0.order[0];
            active[first] += 1;
        }
        assert_eq!(active, [0, 5, 5]);
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
