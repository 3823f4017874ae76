//! `[routing:NAME]` sections: options, defaults, ranges and MySQL Router's messages.

use std::path::PathBuf;
use std::time::Duration;

use super::addr::{is_valid_host, join_host_port, parse_port, split_host_port};
use super::{ConfigError, DefaultConfig, Lookup, Notice, Section, Store};
use crate::logging::Level;

pub const KNOWN_OPTIONS: &[&str] = &[
    "bind_address",
    "bind_port",
    "socket",
    "destinations",
    "routing_strategy",
    "mode",
    "protocol",
    "connect_timeout",
    "client_connect_timeout",
    "max_connections",
    "max_connect_errors",
    "net_buffer_length",
    "thread_stack_size",
    "connect_retry_timeout",
    "connection_sharing",
    "connection_sharing_delay",
    "access_mode",
    "wait_for_my_writes",
    "wait_for_my_writes_timeout",
    "router_require_enforce",
    "client_ssl_mode",
    "client_ssl_cert",
    "client_ssl_key",
    "client_ssl_cipher",
    "client_ssl_curves",
    "client_ssl_dh_params",
    "client_ssl_ca",
    "client_ssl_capath",
    "client_ssl_crl",
    "client_ssl_crlpath",
    "client_ssl_session_cache_mode",
    "client_ssl_session_cache_size",
    "client_ssl_session_cache_timeout",
    "server_ssl_mode",
    "server_ssl_verify",
    "server_ssl_cert",
    "server_ssl_key",
    "server_ssl_cipher",
    "server_ssl_curves",
    "server_ssl_ca",
    "server_ssl_capath",
    "server_ssl_crl",
    "server_ssl_crlpath",
    "server_ssl_session_cache_mode",
    "server_ssl_session_cache_size",
    "server_ssl_session_cache_timeout",
    "role",
    "max_replication_lag",
    "disconnect_on_promoted_to_primary",
    "disconnect_on_metadata_unavailable",
    "disconnect_on_replication_lag",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Classic,
    X,
}

impl Protocol {
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Classic => 3306,
            Protocol::X => 33060,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    FirstAvailable,
    NextAvailable,
    RoundRobin,
    /// Role routes only (MySQL Router's, SECONDARY only): the secondaries in turn, the
    /// primary when no secondary is usable.
    RoundRobinWithFallback,
    /// Role routes only: the usable destination with the fewest active connections
    /// through this route (MaxScale readconnroute's balancing).
    LeastConnections,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::FirstAvailable => "first-available",
            Strategy::NextAvailable => "next-available",
            Strategy::RoundRobin => "round-robin",
            Strategy::RoundRobinWithFallback => "round-robin-with-fallback",
            Strategy::LeastConnections => "least-connections",
        }
    }
}

/// The server role a route sends its clients to (`role`, MySQL Router's names of the
/// metadata-cache URL's `role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteRole {
    Primary,
    Secondary,
    PrimaryAndSecondary,
}

impl RouteRole {
    pub fn name(self) -> &'static str {
        match self {
            RouteRole::Primary => "PRIMARY",
            RouteRole::Secondary => "SECONDARY",
            RouteRole::PrimaryAndSecondary => "PRIMARY_AND_SECONDARY",
        }
    }
}

/// The options of a route that follows server roles (needs `[monitor]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleOptions {
    pub role: RouteRole,
    /// A secondary whose replication lag is over this leaves the route; zero = no limit.
    pub max_replication_lag: Duration,
    /// SECONDARY routes: close sessions on a secondary that became the primary.
    pub disconnect_on_promoted_to_primary: bool,
    /// Close sessions on a destination whose role the monitor cannot tell any more.
    pub disconnect_on_metadata_unavailable: bool,
    /// Close sessions on a secondary whose lag went over `max_replication_lag`.
    pub disconnect_on_replication_lag: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    pub host: String,
    pub port: u16,
}

impl Destination {
    /// `host:port` (IPv6 in brackets): display form and quarantine key.
    pub fn address(&self) -> String {
        join_host_port(&self.host, self.port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// `routing:NAME` (or `routing`), as used in log lines.
    pub section: String,
    /// The key (`NAME`), empty for a bare `[routing]`.
    pub name: String,
    pub protocol: Protocol,
    pub destinations: Vec<Destination>,
    /// TCP endpoint to listen on, if any.
    pub bind: Option<(String, u16)>,
    pub socket: Option<PathBuf>,
    pub strategy: Strategy,
    pub connect_timeout: Duration,
    pub client_connect_timeout: Duration,
    pub max_connections: u32,
    pub max_connect_errors: u64,
    pub net_buffer_length: usize,
    /// `Some` when the route follows server roles (`role` is set).
    pub roles: Option<RoleOptions>,
    pub tls: super::tls::TlsConfig,
    /// `connection_sharing` (validated; see `sharing_ignored`).
    pub connection_sharing: bool,
    /// `connection_sharing_delay` (default 1 s).
    pub connection_sharing_delay: Duration,
}

fn invalid(msg: String) -> ConfigError {
    ConfigError::Invalid(msg)
}

fn parse_destinations(l: &Lookup, protocol: Protocol) -> Result<Vec<Destination>, ConfigError> {
    let Some(found) = l.get("destinations")? else {
        return Err(invalid(format!(
            "option destinations in [{}] is required",
            l.section.full_name()
        )));
    };
    let (raw, from) = (found.value.as_str(), found.from.as_str());
    if raw.is_empty() {
        return Err(invalid(format!(
            "option destinations in [{from}] needs a value"
        )));
    }
    let prefix = format!("option destinations in [{from}]: {raw} is invalid");
    if let Some((scheme, _)) = raw.split_once("://") {
        if scheme.eq_ignore_ascii_case("metadata-cache") {
            return Err(ConfigError::Unsupported(format!(
                "option destinations in [{from}]: metadata-cache destinations ('{raw}') are not supported by this router (InnoDB Cluster routing is not implemented); list static host:port destinations instead"
            )));
        }
        return Err(invalid(format!(
            "{prefix}: invalid URI scheme '{scheme}' for URI {raw}"
        )));
    }
    let mut out: Vec<Destination> = Vec::new();
    for item in raw.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(invalid(format!(
                "{prefix}: empty address found in destination list (was '{raw}')"
            )));
        }
        let bad = || invalid(format!("{prefix}: invalid destination address '{item}'"));
        let (host, port) = split_host_port(item).ok_or_else(bad)?;
        let port = match port {
            Some(p) => parse_port(p).ok_or_else(bad)?,
            None => protocol.default_port(),
        };
        if !is_valid_host(host) {
            return Err(bad());
        }
        let d = Destination {
            host: host.to_string(),
            port,
        };
        // Duplicates are dropped (MySQL Router 9.x): they would only skew round-robin.
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

fn parse_bind_address(l: &Lookup) -> Result<(String, Option<u16>), ConfigError> {
    let Some(found) = l.get("bind_address")? else {
        return Ok(("127.0.0.1".into(), None));
    };
    let (v, from) = (found.value.as_str(), found.from.as_str());
    let not_endpoint = || {
        invalid(format!(
            "option bind_address in [{from}]: '{v}' is not a valid endpoint"
        ))
    };
    let (host, port) = split_host_port(v).ok_or_else(not_endpoint)?;
    let port = match port {
        Some(p) => Some(parse_port(p).filter(|p| *p != 0).ok_or_else(not_endpoint)?),
        None => None,
    };
    if !is_valid_host(host) {
        return Err(invalid(format!(
            "option bind_address in [{from}]: '{host}' in '{v}' is not a valid IP-address or hostname"
        )));
    }
    Ok((host.to_string(), port))
}

fn parse_strategy(l: &Lookup, role: Option<RouteRole>) -> Result<Strategy, ConfigError> {
    let name = l.section.full_name();
    let mode = match l.get("mode")? {
        None => None,
        Some(f) if f.value.is_empty() => {
            return Err(invalid(format!(
                "option mode in [{}] needs a value",
                f.from
            )))
        }
        Some(f) => match f.value.to_ascii_lowercase().as_str() {
            "read-write" => Some(Strategy::FirstAvailable),
            "read-only" => Some(Strategy::RoundRobin),
            _ => {
                return Err(invalid(format!(
                    "option mode in [{}] is invalid; valid are read-write and read-only (was '{}')",
                    f.from, f.value
                )))
            }
        },
    };
    match l.get("routing_strategy")? {
        None => mode.ok_or_else(|| {
            invalid(format!("option routing_strategy in [{name}] is required"))
        }),
        Some(f) if f.value.is_empty() => Err(invalid(format!(
            "option routing_strategy in [{}] needs a value",
            f.from
        ))),
        Some(f) if role.is_some() => match f.value.to_ascii_lowercase().as_str() {
            "first-available" => Ok(Strategy::FirstAvailable),
            "round-robin" => Ok(Strategy::RoundRobin),
            "least-connections" => Ok(Strategy::LeastConnections),
            "round-robin-with-fallback" if role == Some(RouteRole::Secondary) => {
                Ok(Strategy::RoundRobinWithFallback)
            }
            // MySQL Router's text for metadata-cache routes.
            "round-robin-with-fallback" => Err(invalid(format!(
                "in [{}]: Strategy 'round-robin-with-fallback' is supported only for SECONDARY routing",
                f.from
            ))),
            _ => Err(invalid(format!(
                "option routing_strategy in [{}] is invalid; valid with role are first-available, round-robin, round-robin-with-fallback, and least-connections (was '{}')",
                f.from, f.value
            ))),
        },
        Some(f) => match f.value.to_ascii_lowercase().as_str() {
            "first-available" => Ok(Strategy::FirstAvailable),
            "next-available" => Ok(Strategy::NextAvailable),
            "round-robin" => Ok(Strategy::RoundRobin),
            _ => Err(invalid(format!(
                "option routing_strategy in [{}] is invalid; valid are first-available, next-available, and round-robin (was '{}')",
                f.from, f.value
            ))),
        },
    }
}

/// Validates one `[routing*]` section, in MySQL Router's option order so the first
/// failing option is the one reported.
pub fn validate(
    store: &Store,
    section: &Section,
    default: &DefaultConfig,
    notices: &mut Vec<Notice>,
) -> Result<RouteConfig, ConfigError> {
    let l = Lookup { store, section };
    let name = section.full_name();

    let protocol = match l.get("protocol")? {
        None => Protocol::Classic,
        Some(f) => match f.value.to_ascii_lowercase().as_str() {
            "classic" => Protocol::Classic,
            "x" => Protocol::X,
            _ => {
                return Err(invalid(format!(
                    "in [{}]: Invalid protocol name: '{}'",
                    f.from, f.value
                )))
            }
        },
    };
    let destinations = parse_destinations(&l, protocol)?;
    let bind_port = match l.get("bind_port")? {
        None => None,
        Some(f) if f.value.is_empty() => None,
        Some(f) => Some(
            super::parse_uint(&f.value, 1, 65535)
                .map(|p| p as u16)
                .ok_or_else(|| {
                    invalid(format!(
                        "option bind_port in [{}] needs value between 1 and 65535 inclusive, was '{}'",
                        f.from, f.value
                    ))
                })?,
        ),
    };
    let (bind_host, bind_addr_port) = parse_bind_address(&l)?;
    let socket = match l.get("socket")? {
        Some(f) if !f.value.is_empty() => {
            // sun_path holds 107 bytes plus the terminating NUL.
            if f.value.len() > 107 {
                return Err(invalid(format!(
                    "in [{}]: invalid socket '{}'",
                    f.from, f.value
                )));
            }
            Some(PathBuf::from(f.value))
        }
        _ => None,
    };
    let connect_timeout = l.uint("connect_timeout", 1, 65535, 5)?;
    let role = parse_role(&l)?;
    let strategy = parse_strategy(&l, role)?;
    let max_connections = l.uint("max_connections", 0, 65535, 0)? as u32;
    let client_connect_timeout = l.uint("client_connect_timeout", 2, 31_536_000, 9)?;
    let max_connect_errors = l.uint("max_connect_errors", 1, u32::MAX as u64, 100)?;
    let net_buffer_length = l.uint("net_buffer_length", 1024, 1_048_576, 16384)? as usize;
    l.uint("thread_stack_size", 1, 65535, 1024)?;
    if let Some(f) = l.get("connect_retry_timeout")? {
        let ok = f
            .value
            .parse::<f64>()
            .is_ok_and(|v| (0.0..=3600.0).contains(&v))
            && !f.value.starts_with(['+', '-']);
        if !ok {
            return Err(invalid(format!(
                "option connect_retry_timeout in [{}] needs value between 0 and 3600 inclusive, was '{}'",
                f.from, f.value
            )));
        }
    }
    if let Some(f) = l.get("access_mode")? {
        if f.value.eq_ignore_ascii_case("auto") {
            return Err(invalid(format!(
                "in [{}]: 'access_mode=auto' requires 'destinations=metadata-cache:...'",
                f.from
            )));
        } else if !f.value.is_empty() {
            return Err(invalid(format!(
                "option access_mode in [{}] is invalid; valid are auto (was '{}')",
                f.from, f.value
            )));
        }
    }
    let connection_sharing = l.boolean("connection_sharing")? == Some(true);
    let connection_sharing_delay = match l.get("connection_sharing_delay")? {
        // An empty value means the default (MySQL Router 9.7.4 starts with it).
        None => 1.0,
        Some(f) if f.value.trim().is_empty() => 1.0,
        Some(f) => f
            .value
            .parse::<f64>()
            .ok()
            .filter(|v| *v >= 0.0 && v.is_finite())
            .ok_or_else(|| {
                invalid(format!(
                    "option connection_sharing_delay in [{}] needs value between 0 and 1.79769e+308 inclusive, was '{}'",
                    f.from, f.value
                ))
            })?,
    };
    l.boolean("wait_for_my_writes")?;
    l.uint("wait_for_my_writes_timeout", 0, 3600, 2)?;
    l.boolean("router_require_enforce")?;
    for side in ["client", "server"] {
        l.boolean(&format!("{side}_ssl_session_cache_mode"))?;
        l.uint(
            &format!("{side}_ssl_session_cache_size"),
            1,
            2_147_483_647,
            1024,
        )?;
        l.uint(&format!("{side}_ssl_session_cache_timeout"), 0, 86400, 300)?;
    }
    let tls = super::tls::validate(&l, protocol)?;
    if let Some(message) = connection_sharing
        .then(|| sharing_ignored(&name, &tls))
        .flatten()
    {
        notices.push(Notice {
            domain: "routing_plugin",
            level: Level::Warning,
            message,
        });
    }
    let roles = parse_role_options(&l, role)?;

    let port = bind_addr_port.or(bind_port);
    let bind = port.map(|p| (bind_host, p));
    if bind.is_none() && socket.is_none() {
        return Err(invalid(format!(
            "in [{name}]: either bind_address or socket option needs to be supplied, or both"
        )));
    }
    if let Some((h, p)) = &bind {
        if destinations.iter().any(|d| d.port == *p && d.host == *h) {
            return Err(invalid(format!(
                "in [{name}]: Bind Address can not be part of destinations"
            )));
        }
    }
    if max_connections as u64 > default.max_total_connections {
        notices.push(Notice {
            domain: "routing_plugin",
            level: Level::Warning,
            message: format!(
                "Value configured for max_connections > max_total_connections ({max_connections} > {}). Will have no effect.",
                default.max_total_connections
            ),
        });
    }
    Ok(RouteConfig {
        section: name,
        name: section.key.clone().unwrap_or_default(),
        protocol,
        destinations,
        bind,
        socket,
        strategy,
        connect_timeout: Duration::from_secs(connect_timeout),
        client_connect_timeout: Duration::from_secs(client_connect_timeout),
        max_connections,
        max_connect_errors,
        net_buffer_length,
        roles,
        tls,
        connection_sharing,
        connection_sharing_delay: Duration::from_secs_f64(connection_sharing_delay.min(1e12)),
    })
}

/// Why `connection_sharing = 1` has no effect, in MySQL Router's words: PASSTHROUGH,
/// and PREFERRED with AS_CLIENT. Elsewhere it works (without a `[connection_pool]`
/// nothing is shared, and MySQL Router 9.7.4 says nothing about that either).
pub fn sharing_ignored(name: &str, tls: &super::tls::TlsConfig) -> Option<String> {
    use super::tls::{ClientSslMode, ServerSslMode};
    match (tls.client_mode, tls.server_mode) {
        (ClientSslMode::Passthrough, _) => Some(format!(
            "[{name}].connection_sharing=1 has been ignored, as client_ssl_mode=PASSTHROUGH."
        )),
        (ClientSslMode::Preferred, ServerSslMode::AsClient) => Some(format!(
            "[{name}].connection_sharing=1 has been ignored, as client_ssl_mode=PREFERRED and server_ssl_mode=AS_CLIENT."
        )),
        _ => None,
    }
}

/// `role`: MySQL Router's values and message (for the metadata-cache URL's `role`).
fn parse_role(l: &Lookup) -> Result<Option<RouteRole>, ConfigError> {
    let Some(f) = l.get("role")? else {
        return Ok(None);
    };
    match f.value.to_ascii_uppercase().as_str() {
        "PRIMARY" => Ok(Some(RouteRole::Primary)),
        "SECONDARY" => Ok(Some(RouteRole::Secondary)),
        "PRIMARY_AND_SECONDARY" => Ok(Some(RouteRole::PrimaryAndSecondary)),
        _ => Err(invalid(format!(
            "option role in [{}]: The role in '?role={}' does not contain one of the valid role names: PRIMARY, SECONDARY, PRIMARY_AND_SECONDARY",
            f.from, f.value
        ))),
    }
}

/// A `yes`/`no` option (MySQL Router's values for the metadata-cache URL's options).
fn yes_no(l: &Lookup, option: &str) -> Result<Option<(bool, String)>, ConfigError> {
    let Some(f) = l.get(option)? else {
        return Ok(None);
    };
    match f.value.to_ascii_lowercase().as_str() {
        "yes" => Ok(Some((true, f.from))),
        "no" => Ok(Some((false, f.from))),
        _ => Err(invalid(format!(
            "in [{}]: Invalid value for option '{option}'. Allowed are 'yes' and 'no'",
            f.from
        ))),
    }
}

fn parse_role_options(
    l: &Lookup,
    role: Option<RouteRole>,
) -> Result<Option<RoleOptions>, ConfigError> {
    let lag = l.get("max_replication_lag")?;
    let promoted = yes_no(l, "disconnect_on_promoted_to_primary")?;
    let unavailable = yes_no(l, "disconnect_on_metadata_unavailable")?;
    let on_lag = yes_no(l, "disconnect_on_replication_lag")?;
    let Some(role) = role else {
        // The role options mean nothing without a role: say so rather than ignore them.
        let set = [
            ("max_replication_lag", lag.map(|f| f.from)),
            (
                "disconnect_on_promoted_to_primary",
                promoted.as_ref().map(|p| p.1.clone()),
            ),
            (
                "disconnect_on_metadata_unavailable",
                unavailable.as_ref().map(|p| p.1.clone()),
            ),
            (
                "disconnect_on_replication_lag",
                on_lag.as_ref().map(|p| p.1.clone()),
            ),
        ];
        if let Some((opt, Some(from))) = set.into_iter().find(|(_, f)| f.is_some()) {
            if from == l.section.full_name() {
                return Err(invalid(format!(
                    "in [{from}]: option {opt} needs option role (PRIMARY, SECONDARY or PRIMARY_AND_SECONDARY)"
                )));
            }
        }
        return Ok(None);
    };
    if let Some((_, from)) = &promoted {
        if role != RouteRole::Secondary {
            return Err(invalid(format!(
                "in [{from}]: Option 'disconnect_on_promoted_to_primary' is valid only for role=SECONDARY"
            )));
        }
    }
    let max_replication_lag = l.uint("max_replication_lag", 0, 31_536_000, 0)?;
    Ok(Some(RoleOptions {
        role,
        max_replication_lag: Duration::from_secs(max_replication_lag),
        disconnect_on_promoted_to_primary: promoted.is_some_and(|p| p.0),
        disconnect_on_metadata_unavailable: unavailable.is_some_and(|p| p.0),
        disconnect_on_replication_lag: on_lag.is_some_and(|p| p.0),
    }))
}

fn is_wildcard(h: &str) -> bool {
    h == "0.0.0.0" || h == "::"
}

/// Two routes may not listen on the same `address:port` (or a wildcard on a used port),
/// nor on the same socket path.
pub fn check_against_earlier(r: &RouteConfig, earlier: &[RouteConfig]) -> Result<(), ConfigError> {
    for e in earlier {
        if let (Some((h, p)), Some((eh, ep))) = (&r.bind, &e.bind) {
            if p == ep && (h == eh || is_wildcard(h)) {
                return Err(invalid(format!(
                    "in [{}]: duplicate IP or name found in bind_address '{}'",
                    r.section,
                    join_host_port(h, *p)
                )));
            }
        }
        if r.socket.is_some() && r.socket == e.socket {
            return Err(invalid(format!(
                "in [{}]: duplicate socket '{}'",
                r.section,
                r.socket
                    .as_ref()
                    .map(|s| s.display().to_string())
                    .unwrap_or_default()
            )));
        }
    }
    Ok(())
}
