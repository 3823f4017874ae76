//! Binding a route's listening sockets: TCP (SO_REUSEADDR, backlog 1024) and unix
//! sockets (mode 0777, stale files replaced).

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use socket2::{Domain, Socket, Type};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;

use crate::logging::strerror;

const BACKLOG: i32 = 1024;

fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // `::` takes IPv4 too (Linux default), like MySQL Router.
        let _ = s.set_only_v6(false);
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

/// Why a route could not listen; `Display` is MySQL Router's message.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("Failed setting up acceptor on '{endpoint}': {reason}")]
    Acceptor { endpoint: String, reason: String },
    #[error("Socket file {0} already in use by another process")]
    SocketInUse(String),
    #[error("Failed removing socket file {path}: {reason}")]
    StaleSocket { path: String, reason: String },
    #[error("Failed setting permissions on {path}: {reason}")]
    Permissions { path: String, reason: String },
}

fn acceptor(endpoint: impl ToString, e: &std::io::Error) -> BindError {
    BindError::Acceptor {
        endpoint: endpoint.to_string(),
        reason: strerror(e),
    }
}

/// Binds `host:port` (non-blocking), trying each resolved address in turn; the first
/// that works wins (each failure is logged as a warning, as MySQL Router does).
pub fn bind_tcp(route: &str, host: &str, port: u16) -> Result<TcpListener, BindError> {
    let shown = crate::config::addr::join_host_port(host, port);
    let addrs: Vec<SocketAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
            .map_err(|e| acceptor(&shown, &e))?
            .collect(),
    };
    let mut last = String::from("no address");
    for a in addrs {
        match bind_one(a) {
            Ok(l) => return Ok(l),
            Err(e) => {
                last = strerror(&e);
                tracing::warn!(target: "routing", "[{route}] failed to bind({a}): {last}");
            }
        }
    }
    Err(BindError::Acceptor {
        endpoint: shown,
        reason: last,
    })
}

/// Binds a unix socket. A leftover file nobody listens on is replaced (with a warning);
/// a live one is refused.
pub fn bind_unix(route: &str, path: &Path) -> Result<UnixListener, BindError> {
    let shown = path.display().to_string();
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(BindError::SocketInUse(shown));
        }
        tracing::warn!(
            target: "routing",
            "[{route}] Socket file {shown} already exists, but seems to be unused. Deleting and retrying..."
        );
        std::fs::remove_file(path).map_err(|e| BindError::StaleSocket {
            path: shown.clone(),
            reason: strerror(&e),
        })?;
    }
    let l = UnixListener::bind(path).map_err(|e| acceptor(&shown, &e))?;
    l.set_nonblocking(true).map_err(|e| acceptor(&shown, &e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).map_err(|e| {
        BindError::Permissions {
            path: shown.clone(),
            reason: strerror(&e),
        }
    })?;
    Ok(l)
}
