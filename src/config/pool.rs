//! `[connection_pool]`: the pool of idle server connections (MySQL Router's options,
//! defaults, ranges and messages), and the route options that decide whether a route
//! may use it.

use std::time::Duration;

use super::{ConfigError, Lookup, Section, Store};

pub const KNOWN_OPTIONS: &[&str] = &["max_idle_server_connections", "idle_timeout"];

/// `[connection_pool]` as configured; without the section, nothing is pooled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Idle server connections kept, over all destinations (0 = pooling off, the
    /// default as in MySQL Router; bootstrap writes 64).
    pub max_idle_server_connections: u32,
    /// How long a connection stays in the pool unused (default 5 s).
    pub idle_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_idle_server_connections: 0,
            idle_timeout: Duration::from_secs(5),
        }
    }
}

impl PoolConfig {
    /// Whether anything is ever pooled.
    pub fn enabled(&self) -> bool {
        self.max_idle_server_connections > 0
    }
}

/// Reads `[connection_pool]` (at most one, unkeyed, as the store guarantees for
/// single sections); MySQL Router's range messages.
pub(crate) fn validate(store: &Store, sections: &[&Section]) -> Result<PoolConfig, ConfigError> {
    let Some(section) = sections.first() else {
        return Ok(PoolConfig::default());
    };
    let l = Lookup { store, section };
    // An empty value means the default (MySQL Router 9.7.4 starts with `option =`).
    let uint = |option: &str, default: u64| -> Result<u64, ConfigError> {
        match l.get(option)? {
            Some(f) if f.value.trim().is_empty() => Ok(default),
            _ => l.uint(option, 0, u32::MAX as u64, default),
        }
    };
    let max = uint("max_idle_server_connections", 0)? as u32;
    let idle = uint("idle_timeout", 5)?;
    Ok(PoolConfig {
        max_idle_server_connections: max,
        idle_timeout: Duration::from_secs(idle),
    })
}
