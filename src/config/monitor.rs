//! `[monitor]`: the account and timings of the role monitor (opt-in; routes with a
//! `role` need it). The password comes from `password_file` (preferred) or `password`.

use std::path::Path;
use std::time::Duration;

use super::{ConfigError, Lookup, Notice, Section, Store};
use crate::logging::Level;

pub const KNOWN_OPTIONS: &[&str] = &[
    "user",
    "password",
    "password_file",
    "interval",
    "connect_timeout",
    "read_timeout",
    "ssl_mode",
];

/// TLS on the monitor's connections (MySQL client's `--ssl-mode` names). The server's
/// certificate is not verified (as with the client's PREFERRED and REQUIRED). The default
/// is DISABLED: PREFERRED learns that a server has no TLS only by trying, and the server
/// counts that first try as an aborted connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorSsl {
    Disabled,
    /// TLS when the server offers it, plain otherwise.
    Preferred,
    /// TLS or no connection.
    Required,
}

/// A password that never prints itself (so it cannot reach a log by `{:?}`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorConfig {
    pub user: String,
    pub password: Secret,
    /// Time between two probes of one destination.
    pub interval: Duration,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub ssl_mode: MonitorSsl,
}

fn invalid(msg: String) -> ConfigError {
    ConfigError::Invalid(msg)
}

/// The section's own value of `option` (no `[DEFAULT]` fallback: `[DEFAULT] user` is
/// the operating-system user the router runs as, not a MySQL account).
fn own(section: &Section, option: &str) -> Option<String> {
    section
        .options
        .iter()
        .find(|(n, _)| n == option)
        .map(|(_, v)| v.clone())
}

/// Whether `path` can be read by users other than its owner and group (mode o+r).
fn world_readable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

/// Validates `[monitor]`. `files` are the configuration files, checked for world
/// readability when the password is written in them.
pub fn validate(
    store: &Store,
    sections: &[&Section],
    files: &[std::path::PathBuf],
    notices: &mut Vec<Notice>,
) -> Result<Option<MonitorConfig>, ConfigError> {
    let s = match sections {
        [] => return Ok(None),
        [s] => *s,
        _ => return Err(invalid("[monitor] already loaded.".into())),
    };
    if s.key.is_some() {
        return Err(invalid(format!(
            "[{}]: the monitor section takes no key; use [monitor]",
            s.full_name()
        )));
    }
    let l = Lookup { store, section: s };
    let user = match own(s, "user") {
        Some(u) if !u.is_empty() => u,
        Some(_) => return Err(invalid("option user in [monitor] needs a value".into())),
        None => return Err(invalid("option user in [monitor] is required".into())),
    };
    let password = match (own(s, "password_file"), own(s, "password")) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "in [monitor]: set either password_file or password, not both".into(),
            ))
        }
        (Some(path), None) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                invalid(format!(
                    "option password_file in [monitor]: cannot read '{path}': {e}"
                ))
            })?;
            // The first line, without its line end: `echo secret > file` works.
            text.lines().next().unwrap_or_default().to_string()
        }
        (None, Some(p)) => {
            let readable: Vec<String> = files
                .iter()
                .filter(|f| world_readable(f))
                .map(|f| f.display().to_string())
                .collect();
            if !readable.is_empty() {
                notices.push(Notice {
                    domain: "monitor",
                    level: Level::Warning,
                    message: format!(
                        "[monitor] password is set in a configuration file that other users can read ({}); use password_file with mode 0600 instead",
                        readable.join(", ")
                    ),
                });
            }
            p
        }
        (None, None) => {
            return Err(invalid(
                "in [monitor]: option password_file (or password) is required".into(),
            ))
        }
    };
    let interval = l.uint("interval", 1, 3600, 1)?;
    let connect_timeout = l.uint("connect_timeout", 1, 65535, 5)?;
    let read_timeout = l.uint("read_timeout", 1, 65535, 5)?;
    let ssl_mode = match own(s, "ssl_mode") {
        None => MonitorSsl::Disabled,
        Some(v) => match v.to_ascii_uppercase().as_str() {
            "DISABLED" => MonitorSsl::Disabled,
            "PREFERRED" => MonitorSsl::Preferred,
            "REQUIRED" => MonitorSsl::Required,
            _ => {
                return Err(invalid(format!(
                    "invalid value '{v}' for option ssl_mode in [monitor]. Allowed are: DISABLED,PREFERRED,REQUIRED."
                )))
            }
        },
    };
    Ok(Some(MonitorConfig {
        user,
        password: Secret(password),
        interval: Duration::from_secs(interval),
        connect_timeout: Duration::from_secs(connect_timeout),
        read_timeout: Duration::from_secs(read_timeout),
        ssl_mode,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_does_not_print() {
        let s = Secret("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
