//! A drop-in replacement for MySQL Router (static routing).
//!
//! `main.rs` is thin; [`app`] wires the pieces: [`config`] (files → typed config),
//! [`logging`] (MySQL Router's log), [`routing`] (listeners, strategies, connect),
//! [`quarantine`] (shared destination health), [`monitor`] (server roles and lag), [`relay`] (byte forwarding),
//! [`protocol`] (the few MySQL frames the router writes) and [`process`] (pid file,
//! privileges, systemd).

pub mod app;
pub mod cli;
pub mod config;
pub mod http;
pub mod logging;
pub mod monitor;
pub mod passwd_cli;
pub mod process;
pub mod protocol;
pub mod quarantine;
pub mod relay;
pub mod routing;
pub mod session;
pub mod stats;

/// Shown in `--version` in place of Oracle's build comment.
pub const PROJECT_NAME: &str = "mysqlrouter-rs";

/// Version shown in the SYSTEM start/stop lines.
pub fn version_string() -> String {
    format!("{} ({})", env!("CARGO_PKG_VERSION"), PROJECT_NAME)
}
