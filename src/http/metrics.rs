//! `/metrics` (ours; MySQL Router has none): the snapshot in the OpenMetrics text format
//! that Prometheus scrapes, encoded by `prometheus-client`. Names carry the
//! `mysqlrouter_` prefix, counters end in `_total`, durations are seconds and sizes
//! bytes. Per route, and per destination of a route (`route`, `destination` labels).

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::api::RouterInfo;
use crate::stats::{Histogram, Snapshot, LATENCY_BUCKETS};

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

/// The snapshot, encoded at scrape time.
#[derive(Debug)]
struct Collect {
    snap: Snapshot,
    version: String,
    edition: String,
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, u64)],
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        if labels.is_empty() {
            ConstCounter::new(*v).encode(m)?;
            return Ok(());
        }
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, i64)],
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        // A metric without labels is one sample, written without `{}`.
        if labels.is_empty() {
            ConstGauge::new(*v).encode(m)?;
            return Ok(());
        }
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn histogram(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, Histogram)],
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in rows {
        // The encoder takes per-bucket counts and writes them cumulatively.
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(h.per_bucket.iter().copied())
            .collect();
        m.encode_family(labels)?.encode_histogram::<NoLabelSet>(
            h.sum_secs,
            h.count(),
            &buckets,
            None,
        )?;
    }
    Ok(())
}

/// A label value as the exposition format wants it (the encoder writes values as
/// given): backslash, double quote and newline escaped. Route names are config keys.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn route(name: &str) -> Labels {
    vec![("route", esc(name))]
}

impl prometheus_client::collector::Collector for Collect {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.snap;
        gauge(
            &mut enc,
            "mysqlrouter_build_info",
            "Version of the router (value 1).",
            &[(
                vec![
                    ("version", self.version.clone()),
                    ("edition", self.edition.clone()),
                ],
                1,
            )],
        )?;
        let started = s
            .started
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        gauge(
            &mut enc,
            "mysqlrouter_start_time_seconds",
            "Start time of the router, seconds since the Unix epoch.",
            &[(vec![], started)],
        )?;
        gauge(
            &mut enc,
            "mysqlrouter_connections",
            "Active client connections of all routes.",
            &[(vec![], s.current_total_connections as i64)],
        )?;
        gauge(
            &mut enc,
            "mysqlrouter_max_connections",
            "[DEFAULT] max_total_connections.",
            &[(vec![], s.max_total_connections as i64)],
        )?;
        // The connection pool (one per process, MySQL Router's `main`).
        let p = &s.pool.counters;
        gauge(
            &mut enc,
            "mysqlrouter_connection_pool_idle_server_connections",
            "Server connections idle in the connection pool (REST idleServerConnections).",
            &[(vec![], p.idle as i64)],
        )?;
        gauge(
            &mut enc,
            "mysqlrouter_connection_pool_stashed_server_connections",
            "Server connections of idle sessions stashed for sharing (REST stashedServerConnections).",
            &[(vec![], p.stashed as i64)],
        )?;
        gauge(
            &mut enc,
            "mysqlrouter_connection_pool_max_idle_server_connections",
            "[connection_pool] max_idle_server_connections.",
            &[(vec![], s.pool.max_idle_server_connections as i64)],
        )?;
        for (name, help, v) in [
            ("mysqlrouter_connection_pool_reused", "Clients logged in on a pooled server connection.", p.reused),
            ("mysqlrouter_connection_pool_opened", "Clients given a new server connection while pooling is on.", p.opened),
            ("mysqlrouter_connection_pool_parked", "Server connections reset and parked after their client quit.", p.parked),
            ("mysqlrouter_connection_pool_dropped", "Server connections the pool closed (full, reset failed, idle_timeout, closed by the server).", p.dropped),
        ] {
            counter(&mut enc, name, help, &[(vec![], v)])?;
        }
        let per_route = |f: &dyn Fn(&crate::stats::RouteSnapshot) -> i64| -> Vec<(Labels, i64)> {
            s.routes
                .iter()
                .map(|r| (route(&r.config.name), f(r)))
                .collect()
        };
        gauge(
            &mut enc,
            "mysqlrouter_route_accepting",
            "1 while the route's listeners accept clients.",
            &per_route(&|r| i64::from(r.accepting)),
        )?;
        gauge(
            &mut enc,
            "mysqlrouter_route_active_connections",
            "Active client connections of the route.",
            &per_route(&|r| r.active as i64),
        )?;
        gauge(
            &mut enc,
            "mysqlrouter_route_blocked_hosts",
            "Client hosts blocked by max_connect_errors.",
            &per_route(&|r| r.blocked_hosts.len() as i64),
        )?;
        let count_rows = |f: &dyn Fn(&crate::stats::RouteSnapshot) -> u64| -> Vec<(Labels, u64)> {
            s.routes
                .iter()
                .map(|r| (route(&r.config.name), f(r)))
                .collect()
        };
        counter(
            &mut enc,
            "mysqlrouter_route_connections",
            "Clients admitted by the route.",
            &count_rows(&|r| r.counters.total),
        )?;
        let mut refused = Vec::new();
        for r in &s.routes {
            let c = &r.counters;
            for (reason, v) in [
                ("max_connections", c.refused_limit),
                ("max_total_connections", c.refused_total_limit),
                ("blocked_host", c.refused_blocked),
                ("no_destination", c.refused_no_destination),
            ] {
                let mut l = route(&r.config.name);
                l.push(("reason", reason.to_string()));
                refused.push((l, v));
            }
        }
        counter(
            &mut enc,
            "mysqlrouter_route_refused_connections",
            "Clients turned away, by reason.",
            &refused,
        )?;
        counter(
            &mut enc,
            "mysqlrouter_route_handshake_failures",
            "Clients that failed their handshake (counted toward max_connect_errors).",
            &count_rows(&|r| r.counters.handshake_failures),
        )?;
        let mut bytes = Vec::new();
        for r in &s.routes {
            for (dir, v) in [
                ("client_to_server", r.counters.bytes_up),
                ("server_to_client", r.counters.bytes_down),
            ] {
                let mut l = route(&r.config.name);
                l.push(("direction", dir.to_string()));
                bytes.push((l, v));
            }
        }
        counter(
            &mut enc,
            "mysqlrouter_route_bytes",
            "Bytes relayed, by direction.",
            &bytes,
        )?;
        let dest_rows = |f: &dyn Fn(&crate::stats::DestSnapshot) -> u64| -> Vec<(Labels, u64)> {
            s.routes
                .iter()
                .flat_map(|r| {
                    r.destinations.iter().map(move |d| {
                        (
                            vec![("route", r.config.name.clone()), ("destination", d.key())],
                            f(d),
                        )
                    })
                })
                .collect()
        };
        let up: Vec<(Labels, i64)> = dest_rows(&|d| u64::from(!d.quarantined))
            .into_iter()
            .map(|(l, v)| (l, v as i64))
            .collect();
        gauge(
            &mut enc,
            "mysqlrouter_destination_up",
            "1 while the destination is not quarantined.",
            &up,
        )?;
        counter(
            &mut enc,
            "mysqlrouter_destination_quarantine_entries",
            "Times the destination entered the (process-wide) quarantine.",
            &dest_rows(&|d| d.quarantine_entries),
        )?;
        counter(
            &mut enc,
            "mysqlrouter_destination_switches",
            "Times a first-/next-available route switched its remembered destination to this one.",
            &dest_rows(&|d| d.switches_to),
        )?;
        // Role routes ([monitor]): the role each destination has now, and replica lag.
        let mut roles = Vec::new();
        let mut lags = Vec::new();
        for r in &s.routes {
            for d in &r.destinations {
                let labels = vec![("route", r.config.name.clone()), ("destination", d.key())];
                if let Some(role) = &d.role {
                    let mut l = labels.clone();
                    l.push(("role", role.clone()));
                    roles.push((l, 1));
                }
                if let Some(lag) = d.replication_lag {
                    lags.push((labels, lag.as_secs() as i64));
                }
            }
        }
        gauge(
            &mut enc,
            "mysqlrouter_destination_role",
            "1 for the role the monitor last saw (role routes only).",
            &roles,
        )?;
        gauge(
            &mut enc,
            "mysqlrouter_destination_replication_lag_seconds",
            "Replication lag the monitor last saw (role routes, replicas only).",
            &lags,
        )?;
        let lat: Vec<(Labels, Histogram)> = s
            .routes
            .iter()
            .flat_map(|r| {
                r.destinations.iter().map(move |d| {
                    (
                        vec![("route", r.config.name.clone()), ("destination", d.key())],
                        d.connect_latency.clone(),
                    )
                })
            })
            .collect();
        histogram(
            &mut enc,
            "mysqlrouter_destination_connect_duration_seconds",
            "Time to connect to the destination (successful connects).",
            &lat,
        )
    }
}

/// The exposition of one snapshot.
pub fn render(snap: &Snapshot, info: &RouterInfo) -> String {
    let mut reg = Registry::default();
    reg.register_collector(Box::new(Collect {
        snap: snap.clone(),
        version: info.version.clone(),
        edition: info.product_edition.clone(),
    }));
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &reg).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{DestSnapshot, RouteCounters, RouteSnapshot};
    use std::time::{Duration, SystemTime};

    #[test]
    fn label_values_are_escaped_and_names_follow_conventions() {
        let mut store = crate::config::Store::with_builtins(&[]);
        store.merge(
            crate::config::ini::parse(
                "[routing:x]\nbind_port=6446\ndestinations=db:3306\nrouting_strategy=round-robin\n",
            )
            .unwrap(), // ok: test code
        );
        let mut cfg = crate::config::validate(&store).unwrap().routes.remove(0); // ok: test code
        cfg.name = "a\"b\\c".into();
        let snap = Snapshot {
            started: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000),
            max_total_connections: 512,
            current_total_connections: 0,
            routes: vec![RouteSnapshot {
                config: cfg,
                accepting: true,
                active: 0,
                counters: RouteCounters {
                    total: 3,
                    ..Default::default()
                },
                blocked_hosts: vec![],
                destinations: vec![DestSnapshot {
                    host: "db".into(),
                    port: 3306,
                    quarantined: false,
                    quarantine_entries: 0,
                    switches_to: 0,
                    connect_latency: crate::stats::Histogram {
                        per_bucket: vec![0; LATENCY_BUCKETS.len() + 1],
                        sum_secs: 0.0,
                    },
                    role: None,
                    replication_lag: None,
                }],
                connections: vec![],
            }],
            pool: Default::default(),
        };
        let info = RouterInfo {
            process_id: 1,
            product_edition: "mysqlrouter-rs".into(),
            version: "0.1.0".into(),
            hostname: "h".into(),
            started_us: 0,
        };
        let text = render(&snap, &info);
        assert!(
            text.contains("mysqlrouter_route_connections_total{route=\"a\\\"b\\\\c\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("mysqlrouter_start_time_seconds 1000\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
