//! What the monitor knows of one destination, and what follows from it. Pure: the
//! probes' results and the clock come in as arguments; no I/O, no clock of its own.
//!
//! Roles:
//! * PRIMARY: a Group Replication member in role PRIMARY and ONLINE; a synced Galera node
//!   that is writable; otherwise a writable server (`read_only` and `super_read_only`
//!   off) that does not replicate.
//! * SECONDARY: an ONLINE Group Replication secondary; a synced read-only Galera node; a
//!   read-only server with a replication channel. Its lag is `Seconds_Behind_Master`;
//!   when the server cannot tell (SQL or I/O thread stopped: NULL), the lag counts from
//!   the last moment its data was known current, so a stopped replica ages.
//! * UNKNOWN (fail closed for role routes): no answer, a login error, an answer older than
//!   the staleness limit, a group member that is not ONLINE, a Galera node not synced,
//!   a read-only server that does not replicate, a writable server that replicates.

use std::time::{Duration, Instant};

use crate::config::{RoleOptions, RouteRole};

/// One replication channel, as `SHOW REPLICA STATUS` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFacts {
    pub io_running: bool,
    pub sql_running: bool,
    pub seconds_behind: Option<u64>,
}

/// This server's row in `performance_schema.replication_group_members`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupFacts {
    pub role: String,
    pub state: String,
}

/// `wsrep_ready` and `wsrep_local_state` (4 = Synced) of a Galera node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaleraFacts {
    pub ready: bool,
    pub local_state: u32,
}

/// What one successful probe read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Facts {
    pub read_only: bool,
    pub super_read_only: bool,
    pub replica: Option<ReplicaFacts>,
    pub group: Option<GroupFacts>,
    pub galera: Option<GaleraFacts>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Secondary,
    Unknown,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Primary => "PRIMARY",
            Role::Secondary => "SECONDARY",
            Role::Unknown => "UNKNOWN",
        }
    }
}

/// A destination as the monitor sees it at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub role: Role,
    /// Why the role is UNKNOWN; empty otherwise.
    pub reason: String,
    /// SECONDARY: how far behind; `None` when not known.
    pub lag: Option<Duration>,
    /// A Galera primary: several writers at once are normal there.
    pub multi_writer: bool,
    /// The last probe error, if the last probe failed.
    pub last_error: Option<String>,
    /// Not probed yet (start-up): UNKNOWN, but nothing to report about.
    pub pending: bool,
}

impl View {
    fn unknown(reason: String, last_error: Option<String>) -> View {
        View {
            role: Role::Unknown,
            reason,
            lag: None,
            multi_writer: false,
            last_error,
            pending: false,
        }
    }

    /// `PRIMARY`, `SECONDARY (lag 3s)` or `UNKNOWN (why)`, for log lines.
    pub fn describe(&self) -> String {
        match self.role {
            Role::Primary => "PRIMARY".into(),
            Role::Secondary => match self.lag {
                Some(l) => format!("SECONDARY (lag {}s)", l.as_secs()),
                None => "SECONDARY (lag unknown)".into(),
            },
            Role::Unknown => format!("UNKNOWN ({})", self.reason),
        }
    }
}

/// The last probe results of one destination.
#[derive(Debug, Clone, Default)]
pub struct DestState {
    last_ok: Option<(Instant, Facts)>,
    /// The error of the last probe, when it failed (cleared by a success).
    last_error: Option<(Instant, String)>,
    /// When the replica's data was last known current (probe time minus its lag).
    fresh_at: Option<Instant>,
}

impl DestState {
    pub fn record_ok(&mut self, now: Instant, facts: Facts) {
        if let Some(r) = &facts.replica {
            if let (true, true, Some(s)) = (r.io_running, r.sql_running, r.seconds_behind) {
                self.fresh_at = Some(now.checked_sub(Duration::from_secs(s)).unwrap_or(now));
            }
        } else {
            self.fresh_at = None;
        }
        self.last_ok = Some((now, facts));
        self.last_error = None;
    }

    pub fn record_error(&mut self, now: Instant, error: String) {
        self.last_error = Some((now, error));
    }

    /// The destination at `now`; results older than `stale_after` are not trusted.
    pub fn view(&self, now: Instant, stale_after: Duration) -> View {
        let err = self.last_error.as_ref().map(|(_, e)| e.clone());
        let Some((at, facts)) = &self.last_ok else {
            return match err {
                Some(e) => View::unknown(format!("monitor: {e}"), Some(e)),
                None => View {
                    pending: true,
                    ..View::unknown("not probed yet".into(), None)
                },
            };
        };
        if let Some(e) = err {
            return View::unknown(format!("monitor: {e}"), Some(e));
        }
        let age = now.saturating_duration_since(*at);
        if age > stale_after {
            return View::unknown(format!("no probe answer for {}s", age.as_secs()), None);
        }
        let writable = !facts.read_only && !facts.super_read_only;
        let secondary = |lag: Option<Duration>| View {
            role: Role::Secondary,
            reason: String::new(),
            lag,
            multi_writer: false,
            last_error: None,
            pending: false,
        };
        let primary = |multi_writer: bool| View {
            role: Role::Primary,
            reason: String::new(),
            lag: None,
            multi_writer,
            last_error: None,
            pending: false,
        };
        if let Some(g) = &facts.group {
            if !g.state.eq_ignore_ascii_case("ONLINE") {
                return View::unknown(format!("group member is {}", g.state), None);
            }
            return match g.role.to_ascii_uppercase().as_str() {
                "PRIMARY" => primary(false),
                "SECONDARY" => secondary(Some(Duration::ZERO)),
                other => View::unknown(format!("group member role '{other}'"), None),
            };
        }
        if let Some(g) = &facts.galera {
            if !g.ready || g.local_state != 4 {
                return View::unknown(
                    format!(
                        "Galera node not synced (wsrep_local_state {})",
                        g.local_state
                    ),
                    None,
                );
            }
            return if writable {
                primary(true)
            } else {
                secondary(Some(Duration::ZERO))
            };
        }
        match (&facts.replica, writable) {
            (None, true) => primary(false),
            (None, false) => View::unknown("read-only and not replicating".into(), None),
            (Some(_), true) => View::unknown(
                "writable but replicating (set read_only on replicas)".into(),
                None,
            ),
            (Some(r), false) => {
                let lag = match (r.io_running, r.sql_running, r.seconds_behind) {
                    (true, true, Some(s)) => Some(Duration::from_secs(s)),
                    _ => self.fresh_at.map(|f| now.saturating_duration_since(f)),
                };
                secondary(lag)
            }
        }
    }
}

/// How a destination can serve a route's new clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    Primary { multi_writer: bool },
    Secondary,
}

fn lag_ok(view: &View, max: Duration) -> Result<(), String> {
    if max.is_zero() {
        return Ok(());
    }
    match view.lag {
        Some(l) if l <= max => Ok(()),
        Some(l) => Err(format!(
            "replication lag {}s is over max_replication_lag ({}s)",
            l.as_secs(),
            max.as_secs()
        )),
        None => Err(format!(
            "replication lag unknown (max_replication_lag {}s)",
            max.as_secs()
        )),
    }
}

/// Whether a destination may take a new client of a route that wants `role`
/// (`fallback`: round-robin-with-fallback, which may use the primary), or why not.
pub fn fits(
    view: &View,
    role: RouteRole,
    max_lag: Duration,
    fallback: bool,
) -> Result<Serves, String> {
    let as_primary = Serves::Primary {
        multi_writer: view.multi_writer,
    };
    match (view.role, role) {
        (Role::Unknown, _) => Err(format!("role unknown: {}", view.reason)),
        (Role::Primary, RouteRole::Primary | RouteRole::PrimaryAndSecondary) => Ok(as_primary),
        (Role::Primary, RouteRole::Secondary) if fallback => Ok(as_primary),
        (Role::Primary, RouteRole::Secondary) => Err("is PRIMARY".into()),
        (Role::Secondary, RouteRole::Primary) => Err(format!("is {}", view.describe())),
        (Role::Secondary, _) => lag_ok(view, max_lag).map(|_| Serves::Secondary),
    }
}

/// Whether the sessions of a route on a destination must be closed, and why.
pub fn must_close(view: &View, opts: &RoleOptions) -> Option<String> {
    match (view.role, opts.role) {
        (Role::Unknown, _) if opts.disconnect_on_metadata_unavailable => {
            Some(format!("its role is unknown ({})", view.reason))
        }
        (Role::Unknown, _) => None,
        (Role::Secondary, RouteRole::Primary) => {
            Some(format!("it is no longer PRIMARY (now {})", view.describe()))
        }
        (Role::Primary, RouteRole::Secondary) if opts.disconnect_on_promoted_to_primary => {
            Some("it was promoted to PRIMARY".into())
        }
        (Role::Secondary, RouteRole::Secondary | RouteRole::PrimaryAndSecondary)
            if opts.disconnect_on_replication_lag =>
        {
            lag_ok(view, opts.max_replication_lag).err()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALE: Duration = Duration::from_secs(5);

    fn replica(io: bool, sql: bool, behind: Option<u64>) -> Facts {
        Facts {
            read_only: true,
            replica: Some(ReplicaFacts {
                io_running: io,
                sql_running: sql,
                seconds_behind: behind,
            }),
            ..Facts::default()
        }
    }

    fn opts(role: RouteRole) -> RoleOptions {
        RoleOptions {
            role,
            max_replication_lag: Duration::from_secs(3),
            disconnect_on_promoted_to_primary: false,
            disconnect_on_metadata_unavailable: false,
            disconnect_on_replication_lag: false,
        }
    }

    #[test]
    fn writable_without_replication_is_primary() {
        let t0 = Instant::now();
        let mut s = DestState::default();
        s.record_ok(t0, Facts::default());
        assert_eq!(s.view(t0, STALE).role, Role::Primary);
        // super_read_only alone makes it read-only (MySQL)
        s.record_ok(
            t0,
            Facts {
                super_read_only: true,
                ..Facts::default()
            },
        );
        assert_eq!(s.view(t0, STALE).role, Role::Unknown);
    }

    #[test]
    fn read_only_replica_is_secondary_with_its_lag() {
        let t0 = Instant::now();
        let mut s = DestState::default();
        s.record_ok(t0, replica(true, true, Some(2)));
        let v = s.view(t0, STALE);
        assert_eq!(v.role, Role::Secondary);
        assert_eq!(v.lag, Some(Duration::from_secs(2)));
    }

    #[test]
    fn stopped_sql_thread_ages_from_last_fresh_moment() {
        let t0 = Instant::now();
        let mut s = DestState::default();
        s.record_ok(t0, replica(true, true, Some(0)));
        // SQL thread stopped: the server reports NULL
        let t1 = t0 + Duration::from_secs(1);
        s.record_ok(t1, replica(true, false, None));
        assert_eq!(s.view(t1, STALE).lag, Some(Duration::from_secs(1)));
        let t4 = t0 + Duration::from_secs(4);
        s.record_ok(t4, replica(true, false, None));
        let v = s.view(t4, STALE);
        assert_eq!(v.lag, Some(Duration::from_secs(4)));
        let o = opts(RouteRole::Secondary);
        assert!(fits(&v, RouteRole::Secondary, o.max_replication_lag, false)
            .unwrap_err()
            .contains("over max_replication_lag (3s)"));
        // no limit: still usable
        assert_eq!(
            fits(&v, RouteRole::Secondary, Duration::ZERO, false),
            Ok(Serves::Secondary)
        );
        // caught up again
        let t5 = t0 + Duration::from_secs(5);
        s.record_ok(t5, replica(true, true, Some(0)));
        assert_eq!(
            fits(
                &s.view(t5, STALE),
                RouteRole::Secondary,
                o.max_replication_lag,
                false
            ),
            Ok(Serves::Secondary)
        );
    }

    #[test]
    fn never_fresh_replica_has_unknown_lag() {
        let t0 = Instant::now();
        let mut s = DestState::default();
        s.record_ok(t0, replica(false, false, None));
        let v = s.view(t0, STALE);
        assert_eq!(v.role, Role::Secondary);
        assert_eq!(v.lag, None);
        assert!(fits(&v, RouteRole::Secondary, Duration::from_secs(1), false).is_err());
    }

    #[test]
    fn errors_and_staleness_fail_closed() {
        let t0 = Instant::now();
        let mut s = DestState::default();
        let v = s.view(t0, STALE);
        assert_eq!((v.role, v.pending), (Role::Unknown, true));
        s.record_ok(t0, Facts::default());
        assert!(!s.view(t0, STALE).pending);
        let late = t0 + STALE + Duration::from_secs(1);
        let v = s.view(late, STALE);
        assert_eq!(v.role, Role::Unknown);
        assert!(v.reason.contains("no probe answer for 6s"), "{}", v.reason);
        s.record_error(late, "Access denied".into());
        let v = s.view(late, STALE);
        assert_eq!(v.role, Role::Unknown);
        assert_eq!(v.last_error.as_deref(), Some("Access denied"));
        assert!(fits(&v, RouteRole::PrimaryAndSecondary, Duration::ZERO, true).is_err());
        s.record_ok(late, Facts::default());
        assert_eq!(s.view(late, STALE).role, Role::Primary);
    }

    #[test]
    fn writable_replica_and_idle_read_only_are_unknown() {
        let t0 = Instant::now();
        let mut s = DestState::default();
        let mut f = replica(true, true, Some(0));
        f.read_only = false;
        s.record_ok(t0, f);
        assert_eq!(s.view(t0, STALE).role, Role::Unknown);
        s.record_ok(
            t0,
            Facts {
                read_only: true,
                ..Facts::default()
            },
        );
        assert_eq!(s.view(t0, STALE).role, Role::Unknown);
    }

    #[test]
    fn group_replication_member_state_and_role() {
        let t0 = Instant::now();
        let mut s = DestState::default();
        let gr = |role: &str, state: &str| Facts {
            read_only: role != "PRIMARY",
            super_read_only: role != "PRIMARY",
            group: Some(GroupFacts {
                role: role.into(),
                state: state.into(),
            }),
            ..Facts::default()
        };
        s.record_ok(t0, gr("PRIMARY", "ONLINE"));
        assert_eq!(s.view(t0, STALE).role, Role::Primary);
        s.record_ok(t0, gr("SECONDARY", "ONLINE"));
        assert_eq!(s.view(t0, STALE).role, Role::Secondary);
        s.record_ok(t0, gr("SECONDARY", "RECOVERING"));
        let v = s.view(t0, STALE);
        assert_eq!(v.role, Role::Unknown);
        assert!(v.reason.contains("RECOVERING"));
    }

    #[test]
    fn galera_synced_writers_are_multi_writer_primaries() {
        let t0 = Instant::now();
        let mut s = DestState::default();
        let g = |state| Facts {
            galera: Some(GaleraFacts {
                ready: true,
                local_state: state,
            }),
            ..Facts::default()
        };
        s.record_ok(t0, g(4));
        let v = s.view(t0, STALE);
        assert_eq!((v.role, v.multi_writer), (Role::Primary, true));
        s.record_ok(t0, g(2));
        assert_eq!(s.view(t0, STALE).role, Role::Unknown);
    }

    #[test]
    fn fits_per_route_role() {
        let t0 = Instant::now();
        let mut p = DestState::default();
        p.record_ok(t0, Facts::default());
        let p = p.view(t0, STALE);
        let mut r = DestState::default();
        r.record_ok(t0, replica(true, true, Some(0)));
        let r = r.view(t0, STALE);
        let z = Duration::ZERO;
        assert!(fits(&p, RouteRole::Primary, z, false).is_ok());
        assert!(fits(&r, RouteRole::Primary, z, false).is_err());
        assert!(fits(&p, RouteRole::Secondary, z, false).is_err());
        assert!(fits(&p, RouteRole::Secondary, z, true).is_ok());
        assert_eq!(
            fits(&r, RouteRole::Secondary, z, false),
            Ok(Serves::Secondary)
        );
        assert!(fits(&p, RouteRole::PrimaryAndSecondary, z, false).is_ok());
        assert!(fits(&r, RouteRole::PrimaryAndSecondary, z, false).is_ok());
    }

    #[test]
    fn sessions_close_per_options() {
        let t0 = Instant::now();
        let mut p = DestState::default();
        p.record_ok(t0, Facts::default());
        let p = p.view(t0, STALE);
        let mut r = DestState::default();
        r.record_ok(t0, replica(true, true, Some(10)));
        let r = r.view(t0, STALE);
        let unknown = DestState::default().view(t0, STALE);

        // demoted primary: always closed on a PRIMARY route
        assert!(must_close(&r, &opts(RouteRole::Primary))
            .unwrap() // ok: test code
            .contains("no longer PRIMARY"));
        assert_eq!(must_close(&p, &opts(RouteRole::Primary)), None);
        // promoted secondary: only when asked
        let mut o = opts(RouteRole::Secondary);
        assert_eq!(must_close(&p, &o), None);
        o.disconnect_on_promoted_to_primary = true;
        assert!(must_close(&p, &o).is_some());
        // lag over the limit: only when asked
        assert_eq!(must_close(&r, &o), None);
        o.disconnect_on_replication_lag = true;
        assert!(must_close(&r, &o)
            .unwrap() // ok: test code
            .contains("over max_replication_lag"));
        // unknown: only when asked
        assert_eq!(must_close(&unknown, &o), None);
        o.disconnect_on_metadata_unavailable = true;
        assert!(must_close(&unknown, &o).is_some());
    }
}
