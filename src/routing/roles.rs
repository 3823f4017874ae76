//! Routes with a `role`: which destinations may take a new client (from the monitor's
//! view, through the pure [`crate::monitor::state::fits`] and the policy), and the
//! route's follower task that logs destinations joining and leaving the route, split
//! brain, and closes the sessions on a destination that stopped serving the role.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::policy::{Plan, RoleProblem};
use super::Route;
use crate::config::{RouteRole, Strategy};
use crate::monitor::state::{fits, must_close, Serves, View};
use crate::monitor::Monitor;

/// Waits until the session's destination is told to close its sessions; never for a
/// route without a role.
pub(super) async fn kicked(rx: &mut Option<watch::Receiver<u64>>) {
    match rx {
        Some(rx) => {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await
            }
        }
        None => std::future::pending().await,
    }
}

impl Route {
    fn views(&self, m: &Monitor, now: Instant) -> Vec<View> {
        self.keys.iter().map(|k| m.view(k, now)).collect()
    }

    fn fits_all(&self, views: &[View]) -> Vec<Result<Serves, String>> {
        let Some(ro) = &self.cfg.roles else {
            return vec![];
        };
        let fallback = self.cfg.strategy == Strategy::RoundRobinWithFallback;
        views
            .iter()
            .map(|v| fits(v, ro.role, ro.max_replication_lag, fallback))
            .collect()
    }

    /// For a role route: the plan, with the reasons of the destinations left out
    /// added to `attempts`. `None` for a route without a role.
    pub(super) fn role_plan(&self, attempts: &mut Vec<String>) -> Option<Plan> {
        let ro = self.cfg.roles.as_ref()?;
        let Some(m) = &self.shared.monitor else {
            attempts.push("no [monitor] to tell the servers' roles".into());
            return Some(Plan {
                order: vec![],
                start: 0,
            });
        };
        let fit = self.fits_all(&self.views(m, Instant::now()));
        let serves: Vec<Option<Serves>> = fit.iter().map(|f| f.clone().ok()).collect();
        let active: Vec<u64> = self
            .active
            .iter()
            .map(|a| a.load(Ordering::Acquire))
            .collect();
        let (plan, problem) =
            self.policy
                .plan_roles(&serves, &active, ro.role == RouteRole::Primary);
        for (i, f) in fit.iter().enumerate() {
            if let Err(why) = f {
                attempts.push(format!("connect(/* {} */): {why}", self.keys[i]));
            }
        }
        if let Some(RoleProblem::SplitBrain(w)) = problem {
            attempts.push(format!(
                "split brain: {} are all writable and none of them was this route's primary",
                self.names(&w)
            ));
        }
        if plan.order.is_empty() {
            attempts.push(format!("no destination serves role {}", ro.role.name()));
        }
        Some(plan)
    }

    fn names(&self, idx: &[usize]) -> String {
        idx.iter()
            .map(|&i| format!("'{}'", self.keys[i]))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Runs while the route accepts: after each monitor round, logs destinations that
    /// join or leave the route and split brain (once per change), and closes sessions
    /// on destinations that must not keep them.
    pub(super) async fn follow_roles(self: Arc<Self>, m: Arc<Monitor>) {
        let Some(ro) = self.cfg.roles.clone() else {
            return;
        };
        let sec = self.cfg.section.clone();
        let mut changed = m.subscribe();
        let mut stop = self.shared.stop_accepting.clone();
        let mut was_ok: Vec<Option<bool>> = vec![None; self.keys.len()];
        // A split brain is reported once it outlasts a probe interval: during a
        // switchover the old primary's last probe may predate its demotion.
        let mut split_since: Option<Instant> = None;
        let mut split_warned = false;
        let mut none_before = false;
        loop {
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            let now = Instant::now();
            let views = self.views(&m, now);
            if views.iter().any(|v| v.pending) {
                // Start-up: wait for a first answer (or error) from every destination.
                continue;
            }
            let fit = self.fits_all(&views);
            for (i, f) in fit.iter().enumerate() {
                let key = &self.keys[i];
                let ok = f.is_ok();
                // The first evaluation is not a change (the monitor logged each role).
                if was_ok[i].is_some_and(|w| w != ok) {
                    match f {
                        Ok(_) => tracing::warn!(
                            target: "routing",
                            "[{sec}] destination '{key}' serves role {} again: {}",
                            ro.role.name(),
                            views[i].describe()
                        ),
                        Err(why) => tracing::warn!(
                            target: "routing",
                            "[{sec}] destination '{key}' does not serve role {}: {why}",
                            ro.role.name()
                        ),
                    }
                }
                was_ok[i] = Some(ok);
                if ok {
                    continue;
                }
                if let Some(why) = must_close(&views[i], &ro) {
                    let n = self.active[i].load(Ordering::Acquire);
                    if n > 0 {
                        tracing::warn!(
                            target: "routing",
                            "[{sec}] closing {n} connection(s) to '{key}': {why}"
                        );
                        self.kick[i].send_modify(|g| *g += 1);
                    }
                }
            }
            let none = !fit.iter().any(|f| f.is_ok());
            if none && !none_before {
                let why: Vec<String> = fit
                    .iter()
                    .enumerate()
                    .filter_map(|(i, f)| {
                        f.as_ref().err().map(|e| format!("'{}' {e}", self.keys[i]))
                    })
                    .collect();
                tracing::warn!(
                    target: "routing",
                    "[{sec}] no destination serves role {}, new clients get error 2003: {}",
                    ro.role.name(),
                    why.join("; ")
                );
            }
            none_before = none;
            if ro.role == RouteRole::Primary {
                let writers: Vec<usize> = fit
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| {
                        matches!(
                            f,
                            Ok(Serves::Primary {
                                multi_writer: false
                            })
                        )
                    })
                    .map(|(i, _)| i)
                    .collect();
                let kept = self.policy.note_primaries(&writers);
                if writers.len() > 1 {
                    let since = *split_since.get_or_insert(now);
                    if !split_warned && now.duration_since(since) >= m.interval() {
                        let keep = kept
                            .map(|c| format!("keeping '{}'", self.keys[c]))
                            .unwrap_or_else(|| "refusing new clients".into());
                        tracing::warn!(
                            target: "routing",
                            "[{sec}] split brain: {} are all writable; {keep} until one remains",
                            self.names(&writers)
                        );
                        split_warned = true;
                    }
                } else {
                    if split_warned {
                        tracing::warn!(target: "routing", "[{sec}] split brain is over");
                    }
                    split_since = None;
                    split_warned = false;
                }
            }
        }
    }
}
