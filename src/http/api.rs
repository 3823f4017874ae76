//! Requests → answers, as MySQL Router's REST API gives them (paths, status codes and
//! reason phrases, problem JSON, the order of checks: method, then realm, then query
//! parameters, then the resource), plus our `/metrics`. No I/O: the answer is built from
//! a [`Snapshot`] taken per request.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::auth::{Check, Realms};
use super::{metrics, swagger, time};
use crate::config::http::{Endpoints, HttpConfig};
use crate::config::Protocol;
use crate::stats::{RouteSnapshot, Source};

pub const BASE: &str = "/api/20190715";

/// The parts of a request the API looks at.
#[derive(Debug, Default, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub if_modified_since: Option<&'a str>,
}

/// An answer: status, MySQL Router's reason phrase, headers, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub reason: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    fn new(
        status: u16,
        reason: &'static str,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> Reply {
        Reply {
            status,
            reason,
            headers: vec![("Content-Type", content_type.to_string())],
            body: body.into(),
        }
    }

    fn json(status: u16, reason: &'static str, v: &Value) -> Reply {
        Reply::new(status, reason, "application/json", v.to_string())
    }

    fn problem(status: u16, reason: &'static str, v: &Value) -> Reply {
        Reply::new(status, reason, "application/problem+json", v.to_string())
    }

    fn not_found_html() -> Reply {
        Reply::new(
            404,
            "Not Found",
            "text/html",
            "<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>\n</BODY></HTML>\n",
        )
    }

    fn unauthorized(realm_name: &str) -> Reply {
        let mut r = Reply::new(401, "Unauthorized", "text/html; charset=ISO-8859-1", "");
        r.headers
            .push(("WWW-Authenticate", format!("basic realm=\"{realm_name}\"")));
        r
    }
}

/// Facts about the process for `/router/status`.
#[derive(Debug, Clone)]
pub struct RouterInfo {
    pub process_id: u32,
    pub product_edition: String,
    pub version: String,
    pub hostname: String,
    /// Start time, µs since the epoch.
    pub started_us: u64,
}

/// What `/routes/NAME/...` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RouteItem {
    Status,
    Config,
    Health,
    Destinations,
    Connections,
    BlockedHosts,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    Swagger,
    RouterStatus,
    RoutingStatus,
    Routes,
    Route(String, RouteItem),
    /// `/connection_pool`: the pools (this router has one, `main`, as MySQL Router).
    Pools,
    /// `/connection_pool/NAME/status` (`true`) or `/config` (`false`).
    Pool(String, bool),
    Metrics,
}

/// The name of the connection pool, as MySQL Router calls its only one.
pub const POOL_NAME: &str = "main";

pub struct Api {
    cfg: HttpConfig,
    realms: Realms,
    source: Arc<dyn Source>,
    info: RouterInfo,
    swagger: String,
}

/// `%xx` escapes of a path segment decoded (route names in URLs).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Api {
    pub fn new(cfg: HttpConfig, realms: Realms, source: Arc<dyn Source>, info: RouterInfo) -> Api {
        let swagger = swagger::document(swagger::Plugins {
            connection_pool: cfg.rest_connection_pool.is_some(),
            router: cfg.rest_router.is_some(),
            routing: cfg.rest_routing.is_some(),
        });
        Api {
            cfg,
            realms,
            source,
            info,
            swagger,
        }
    }

    /// Which endpoint a path names, and its realm; `None` for no endpoint.
    fn route(&self, path: &str) -> Option<(Endpoint, &Endpoints)> {
        if path == "/metrics" {
            return self.cfg.metrics.as_ref().map(|e| (Endpoint::Metrics, e));
        }
        let rest = path.strip_prefix(BASE)?;
        if let (Some(e), "/swagger.json") = (&self.cfg.rest_api, rest) {
            return Some((Endpoint::Swagger, e));
        }
        if let (Some(e), "/router/status") = (&self.cfg.rest_router, rest) {
            return Some((Endpoint::RouterStatus, e));
        }
        if let Some(e) = &self.cfg.rest_connection_pool {
            if let Some(p) = pool_endpoint(rest) {
                return Some((p, e));
            }
        }
        let e = self.cfg.rest_routing.as_ref()?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        match rest {
            "/routing/status" => return Some((Endpoint::RoutingStatus, e)),
            "/routes" => return Some((Endpoint::Routes, e)),
            _ => {}
        }
        let (name, item) = rest.strip_prefix("/routes/")?.split_once('/')?;
        let item = match item {
            "status" => RouteItem::Status,
            "config" => RouteItem::Config,
            "health" => RouteItem::Health,
            "destinations" => RouteItem::Destinations,
            "connections" => RouteItem::Connections,
            "blockedHosts" => RouteItem::BlockedHosts,
            _ => return None,
        };
        if name.is_empty() {
            return None;
        }
        Some((Endpoint::Route(percent_decode(name), item), e))
    }

    fn problem_not_found(path: &str) -> Reply {
        Reply::problem(
            404,
            "Not Found",
            &json!({"instance": path, "title": "URI not found", "status": 404}),
        )
    }

    pub fn handle(&self, req: &Request<'_>) -> Reply {
        let Some((endpoint, guard)) = self.route(req.path) else {
            let in_api = self.cfg.rest_api.is_some()
                && (req.path == BASE || req.path.starts_with(&format!("{BASE}/")));
            if in_api {
                return Self::problem_not_found(req.path);
            }
            if let Some(realm) = &self.cfg.server.require_realm {
                if let Some(r) = self.refusal(realm, req) {
                    return r;
                }
            }
            return Reply::not_found_html();
        };
        if req.method != "GET" {
            let mut r = Reply::problem(
                405,
                "Method Not Allowed",
                &json!({"detail": "only HTTP Methods GET are supported", "title": "HTTP Method not allowed", "status": 405}),
            );
            r.headers.insert(0, ("Allow", "GET".into()));
            return r;
        }
        if let Some(realm) = &guard.require_realm {
            if let Some(r) = self.refusal(realm, req) {
                return r;
            }
        }
        if req.query.is_some_and(|q| !q.is_empty()) && endpoint != Endpoint::Metrics {
            return Reply::problem(
                400,
                "Bad Request",
                &json!({"detail": "parameters not allowed", "title": "validation error", "status": 400}),
            );
        }
        match endpoint {
            Endpoint::Swagger => self.last_modified(req, self.swagger.clone()),
            Endpoint::RouterStatus => {
                let i = &self.info;
                let body = json!({
                    "processId": i.process_id,
                    "productEdition": i.product_edition,
                    "timeStarted": time::iso8601_us(i.started_us),
                    "version": i.version,
                    "hostname": i.hostname,
                })
                .to_string();
                self.last_modified(req, body)
            }
            Endpoint::RoutingStatus => {
                let s = self.source.snapshot(None);
                Reply::json(
                    200,
                    "Ok",
                    &json!({
                        "maxTotalConnections": s.max_total_connections,
                        "currentTotalConnections": s.current_total_connections,
                    }),
                )
            }
            Endpoint::Routes => {
                let mut names: Vec<String> = self
                    .source
                    .snapshot(None)
                    .routes
                    .into_iter()
                    .map(|r| r.config.name)
                    .collect();
                names.sort();
                let items: Vec<Value> = names.into_iter().map(|n| json!({"name": n})).collect();
                Reply::json(200, "Ok", &json!({"items": items}))
            }
            Endpoint::Route(name, item) => {
                let snap = self
                    .source
                    .snapshot((item == RouteItem::Connections).then_some(name.as_str()));
                match snap.routes.into_iter().find(|r| r.config.name == name) {
                    Some(r) => route_reply(&r, item),
                    None => Self::problem_not_found(req.path),
                }
            }
            Endpoint::Pools => Reply::json(200, "Ok", &json!({"items": [{"name": POOL_NAME}]})),
            Endpoint::Pool(name, status) => {
                if name != POOL_NAME {
                    return Self::problem_not_found(req.path);
                }
                let p = self.source.snapshot(None).pool;
                // Field order as MySQL Router 9.7.4 sends them.
                let v = match status {
                    true => json!({
                        "idleServerConnections": p.counters.idle,
                        "stashedServerConnections": p.counters.stashed,
                    }),
                    false => json!({
                        "maxIdleServerConnections": p.max_idle_server_connections,
                        "idleTimeoutInMs": p.idle_timeout_ms,
                    }),
                };
                Reply::json(200, "Ok", &v)
            }
            Endpoint::Metrics => {
                let s = self.source.snapshot(None);
                Reply::new(
                    200,
                    "Ok",
                    metrics::CONTENT_TYPE,
                    metrics::render(&s, &self.info),
                )
            }
        }
    }

    /// The answer for a request the realm does not let through, if any.
    fn refusal(&self, realm: &str, req: &Request<'_>) -> Option<Reply> {
        match self.realms.check(realm, req.authorization) {
            Check::Granted => None,
            Check::Denied { realm_name } => Some(Reply::unauthorized(&realm_name)),
            Check::BadScheme => Some(Reply::new(
                400,
                "Bad Request",
                "text/html; charset=ISO-8859-1",
                "",
            )),
        }
    }

    /// A static answer with `Last-Modified` = start time, and MySQL Router's
    /// `If-Modified-Since` rule: 304 unless the header is a date before the start.
    fn last_modified(&self, req: &Request<'_>, body: String) -> Reply {
        let started = self.info.started_us / 1_000_000;
        if let Some(ims) = req.if_modified_since {
            let newer = time::parse_http_date(ims).is_some_and(|t| started > t);
            if !newer {
                return Reply::new(304, "Not Modified", "application/json", "");
            }
        }
        let mut r = Reply::new(200, "Ok", "application/json", body);
        r.headers.push(("Last-Modified", time::http_date(started)));
        r
    }
}

/// `/connection_pool[/]` and `/connection_pool/NAME/{status,config}` (MySQL Router
/// 9.7.4: the list takes a trailing slash, the items do not).
fn pool_endpoint(rest: &str) -> Option<Endpoint> {
    let tail = rest.strip_prefix("/connection_pool")?;
    if tail.is_empty() || tail == "/" {
        return Some(Endpoint::Pools);
    }
    let (name, item) = tail.strip_prefix('/')?.split_once('/')?;
    if name.is_empty() {
        return None;
    }
    let status = match item {
        "status" => true,
        "config" => false,
        _ => return None,
    };
    Some(Endpoint::Pool(percent_decode(name), status))
}

fn route_reply(r: &RouteSnapshot, item: RouteItem) -> Reply {
    let ok = |v: Value| Reply::json(200, "Ok", &v);
    match item {
        RouteItem::Status => ok(json!({
            "activeConnections": r.active,
            "totalConnections": r.counters.total,
            "blockedHosts": r.blocked_hosts.len(),
        })),
        RouteItem::Config => ok(Value::Object(route_config(r))),
        RouteItem::Health => {
            let alive = r.is_alive();
            if alive {
                ok(json!({"isAlive": true}))
            } else {
                Reply::json(500, "Internal Error", &json!({"isAlive": false}))
            }
        }
        RouteItem::Destinations => {
            let items: Vec<Value> = r
                .destinations
                .iter()
                .map(|d| match &d.role {
                    // Role routes (ours) add the monitor's view; plain routes keep
                    // MySQL Router's two fields.
                    Some(role) => json!({
                        "address": d.host,
                        "port": d.port,
                        "role": role,
                        "replicationLagSeconds": d.replication_lag.map(|l| l.as_secs()),
                    }),
                    None => json!({"address": d.host, "port": d.port}),
                })
                .collect();
            ok(json!({"items": items}))
        }
        RouteItem::Connections => {
            let items: Vec<Value> = r
                .connections
                .iter()
                .map(|c| {
                    // As MySQL Router 9.7.4 answers (measured: a client sending a
                    // 10 kB query grows bytesToServer); only its swagger.json
                    // descriptions of the two fields are swapped.
                    let mut m = Map::new();
                    m.insert("bytesFromServer".into(), c.bytes_down.into());
                    m.insert("bytesToServer".into(), c.bytes_up.into());
                    m.insert("sourceAddress".into(), c.source.clone().into());
                    m.insert("destinationAddress".into(), c.destination.clone().into());
                    m.insert("timeStarted".into(), time::iso8601_us(c.started_us).into());
                    for (k, v) in [
                        ("timeConnectedToServer", c.connected_us),
                        ("timeLastSentToServer", c.last_sent_us),
                        ("timeLastReceivedFromServer", c.last_received_us),
                    ] {
                        if let Some(v) = v {
                            m.insert(k.into(), time::iso8601_us(v).into());
                        }
                    }
                    Value::Object(m)
                })
                .collect();
            ok(json!({"items": items}))
        }
        RouteItem::BlockedHosts => {
            let items: Vec<String> = r.blocked_hosts.iter().map(|h| h.to_string()).collect();
            ok(json!({"items": items}))
        }
    }
}

fn route_config(r: &RouteSnapshot) -> Map<String, Value> {
    let c = &r.config;
    let mut m = Map::new();
    // A socket-only route shows MySQL Router's defaults (verified with 9.7.4).
    let (host, port) = c.bind.clone().unwrap_or_else(|| ("127.0.0.1".into(), 0));
    m.insert("bindAddress".into(), host.into());
    m.insert("bindPort".into(), port.into());
    m.insert(
        "clientConnectTimeoutInMs".into(),
        (c.client_connect_timeout.as_millis() as u64).into(),
    );
    m.insert(
        "destinationConnectTimeoutInMs".into(),
        (c.connect_timeout.as_millis() as u64).into(),
    );
    m.insert("maxActiveConnections".into(), c.max_connections.into());
    m.insert("maxConnectErrors".into(), c.max_connect_errors.into());
    m.insert(
        "protocol".into(),
        match c.protocol {
            Protocol::Classic => "classic",
            Protocol::X => "x",
        }
        .into(),
    );
    if let Some(s) = &c.socket {
        m.insert("socket".into(), s.display().to_string().into());
    }
    m.insert("routingStrategy".into(), c.strategy.name().into());
    m
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn connection_pool_paths() {
        use super::{pool_endpoint, Endpoint};
        assert_eq!(pool_endpoint("/connection_pool"), Some(Endpoint::Pools));
        assert_eq!(pool_endpoint("/connection_pool/"), Some(Endpoint::Pools));
        assert_eq!(
            pool_endpoint("/connection_pool/main/status"),
            Some(Endpoint::Pool("main".into(), true))
        );
        assert_eq!(
            pool_endpoint("/connection_pool/m%61in/config"),
            Some(Endpoint::Pool("main".into(), false))
        );
        for p in [
            "/connection_pool/main/",
            "/connection_pool/main",
            "/connection_pool/main/x",
            "/connection_pool//status",
            "/connection_poolx",
            "/routes",
        ] {
            assert_eq!(pool_endpoint(p), None, "{p}");
        }
    }

    #[test]
    fn route_names_are_percent_decoded() {
        assert_eq!(percent_decode("r%77"), "rw");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("plain"), "plain");
    }
}
