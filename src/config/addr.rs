//! `host[:port]` parsing shared by `destinations` and `bind_address`.

use std::net::{IpAddr, Ipv6Addr};

/// Splits `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address.
/// Returns the host (without brackets) and the port text, if any. `None` when the
/// brackets do not match.
pub fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let close = rest.find(']')?;
        let host = &rest[..close];
        let after = &rest[close + 1..];
        if after.is_empty() {
            return Some((host, None));
        }
        return after.strip_prefix(':').map(|p| (host, Some(p)));
    }
    match s.matches(':').count() {
        0 => Some((s, None)),
        1 => s.split_once(':').map(|(h, p)| (h, Some(p))),
        // More than one colon without brackets: an IPv6 address without a port.
        _ => Some((s, None)),
    }
}

/// Plain decimal digits in `0..=65535`.
pub fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u32>().ok().and_then(|v| u16::try_from(v).ok())
}

/// A literal IP address or an RFC 1123 hostname.
pub fn is_valid_host(h: &str) -> bool {
    if h.parse::<IpAddr>().is_ok() {
        return true;
    }
    if h.contains(':') {
        return h.parse::<Ipv6Addr>().is_ok();
    }
    let h = h.strip_suffix('.').unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `host:port` for display and as the quarantine key; IPv6 in brackets.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits() {
        assert_eq!(split_host_port("a:1"), Some(("a", Some("1"))));
        assert_eq!(split_host_port("a"), Some(("a", None)));
        assert_eq!(split_host_port("[::1]:5"), Some(("::1", Some("5"))));
        assert_eq!(split_host_port("[::1]"), Some(("::1", None)));
        assert_eq!(split_host_port("::1"), Some(("::1", None)));
        assert_eq!(split_host_port("[::1"), None);
        assert_eq!(split_host_port("[::1]x"), None);
    }

    #[test]
    fn hosts_and_ports() {
        assert!(is_valid_host("db-1.example.com"));
        assert!(is_valid_host("::1"));
        assert!(!is_valid_host("a_b"));
        assert!(!is_valid_host("{#mysqld1}"));
        assert!(!is_valid_host(""));
        assert_eq!(parse_port("65535"), Some(65535));
        assert_eq!(parse_port("65536"), None);
        assert_eq!(parse_port("+1"), None);
        assert_eq!(join_host_port("::1", 3), "[::1]:3");
    }
}
