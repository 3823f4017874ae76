//! Binding a route's listening sockets: TCP (SO_REUSEADDR, backlog 1024) and unix
//! sockets (mode 0777, stale sockets replaced).
//!
//! A unix socket's path may lie in a folder other users can write to, and the router
//! often runs as root: only a stale *socket* is removed (never a regular file or a
//! symbolic link found at that path), and the mode is set on the socket we bound,
//! through a descriptor opened without following links, never by path.

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

/// Binds a unix socket. A leftover socket nobody listens on is replaced (with a
/// warning); a live one is refused, and so is anything that is not a socket.
pub fn bind_unix(route: &str, path: &Path) -> Result<UnixListener, BindError> {
    let shown = path.display().to_string();
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(BindError::StaleSocket {
                path: shown,
                reason: "it is not a socket (refusing to replace a file or a symbolic link)".into(),
            });
        }
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
    set_socket_mode(path, 0o777).map_err(|reason| BindError::Permissions {
        path: shown.clone(),
        reason,
    })?;
    Ok(l)
}

/// chmod of the socket file at `path`, without following a link: opened `O_PATH |
/// O_NOFOLLOW`, checked to be a socket, then changed through `/proc/self/fd` (a socket
/// file cannot be opened for fchmod).
fn set_socket_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| strerror(&e))?;
    let meta = f.metadata().map_err(|e| strerror(&e))?;
    if !meta.file_type().is_socket() {
        return Err("it is no longer a socket".into());
    }
    let via = format!("/proc/self/fd/{}", f.as_raw_fd());
    std::fs::set_permissions(&via, std::fs::Permissions::from_mode(mode)).map_err(|e| strerror(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn unix_socket_is_0777_and_a_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap(); // ok: test code
        let p = dir.path().join("s.sock");
        let l = bind_unix("routing:t", &p).unwrap(); // ok: test code
        let m = std::fs::symlink_metadata(&p).unwrap(); // ok: test code
        assert!(m.file_type().is_socket());
        assert_eq!(m.permissions().mode() & 0o777, 0o777);
        // Live: refused.
        assert!(matches!(
            bind_unix("routing:t", &p),
            Err(BindError::SocketInUse(_))
        ));
        drop(l);
        // Stale: replaced.
        let _l = bind_unix("routing:t", &p).unwrap(); // ok: test code
    }

    #[test]
    fn a_file_or_a_link_at_the_socket_path_is_left_alone() {
        let dir = tempfile::tempdir().unwrap(); // ok: test code
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap(); // ok: test code
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap(); // ok: test code
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&victim, &link).unwrap(); // ok: test code
        for p in [&victim, &link] {
            let e = bind_unix("routing:t", p).unwrap_err().to_string();
            assert!(e.contains("not a socket"), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep"); // ok: test code
        let m = std::fs::metadata(&victim).unwrap(); // ok: test code
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert!(std::fs::symlink_metadata(&link)
            .unwrap() // ok: test code
            .file_type()
            .is_symlink());
    }

    #[test]
    fn the_mode_is_never_set_through_a_link() {
        let dir = tempfile::tempdir().unwrap(); // ok: test code
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap(); // ok: test code
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap(); // ok: test code
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap(); // ok: test code
        assert!(set_socket_mode(&link, 0o777).is_err());
        assert!(set_socket_mode(&victim, 0o777).is_err());
        let m = std::fs::metadata(&victim).unwrap(); // ok: test code
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
    }
}
