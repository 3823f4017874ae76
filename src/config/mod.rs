//! Configuration: files → merged [`Store`] → validated, typed [`Config`].
//!
//! Everything here is pure apart from reading the files: the result is immutable and is
//! shared as `Arc<Config>` by the rest of the router. Errors carry MySQL Router's texts;
//! `main` prints them as `Error: <text>` and exits 1.

pub mod addr;
pub mod files;
pub mod http;
pub mod ini;
pub mod logger;
pub mod monitor;
pub mod pool;
pub mod route;
pub mod store;
pub mod tls;

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::cli::Override;
use crate::logging::Level;
pub use http::HttpConfig;
pub use logger::{LoggerConfig, SinkConfig, SinkKind};
pub use monitor::{MonitorConfig, MonitorSsl};
pub use route::{Destination, Protocol, RoleOptions, RouteConfig, RouteRole, Strategy};
pub use store::{Section, Store};

/// Compiled-in folders (Debian's layout), also the built-in `{..._folder}` variables.
pub mod folders {
    pub const LOGGING: &str = "/var/log/mysqlrouter";
    pub const PLUGIN: &str = "/usr/lib/mysqlrouter/plugin";
    pub const RUNTIME: &str = "/run/mysqlrouter";
    pub const CONFIG: &str = "/etc/mysqlrouter";
    pub const DATA: &str = "/var/lib/mysqlrouter";
}

/// A configuration problem. `Display` is the text after `Error: `.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Missing/unreadable/duplicate files.
    #[error("{0}")]
    File(String),
    /// Syntax of one file (MySQL Router adds the trailing period).
    #[error("Configuration error: {0}.")]
    Syntax(String),
    #[error("Loading plugin for config-section '[{0}]' failed: {1}")]
    UnknownSection(String, String),
    #[error("Error: The service is not configured to load or start any plugin. Exiting.")]
    NoPlugin,
    /// An option's value, or a rule between options or sections.
    #[error("Configuration error: {0}")]
    Invalid(String),
    /// A feature of MySQL Router this router does not implement.
    #[error("Configuration error: {0}")]
    Unsupported(String),
    /// An unknown option with `unknown_config_option = error`.
    #[error("option '{0}' is not supported")]
    UnknownOption(String),
}

/// What to do about options nobody reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownOption {
    Warning,
    Error,
}

/// A message found while loading, to be logged once logging is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub domain: &'static str,
    pub level: Level,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultConfig {
    /// `None`: not set (compiled-in folder); `Some("")`: console logging.
    pub logging_folder: Option<String>,
    pub runtime_folder: String,
    pub data_folder: String,
    pub pid_file: Option<String>,
    pub user: Option<String>,
    pub max_total_connections: u64,
    pub unknown_config_option: UnknownOption,
    /// How long SIGTERM waits for active connections before closing them.
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationStatusConfig {
    pub error_quarantine_threshold: u32,
    pub error_quarantine_interval: Duration,
}

impl Default for DestinationStatusConfig {
    fn default() -> Self {
        DestinationStatusConfig {
            error_quarantine_threshold: 1,
            error_quarantine_interval: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub files: Vec<PathBuf>,
    pub default: DefaultConfig,
    pub logger: LoggerConfig,
    pub routes: Vec<RouteConfig>,
    pub destination_status: DestinationStatusConfig,
    /// `[io] threads`: I/O worker threads, 0 = one per CPU.
    pub io_threads: usize,
    /// The monitoring HTTP server, if any of its sections is configured.
    pub http: Option<HttpConfig>,
    /// `[monitor]`: the role monitor, when configured.
    pub monitor: Option<MonitorConfig>,
    /// `[connection_pool]`: idle server connections kept for reuse.
    pub pool: pool::PoolConfig,
    pub notices: Vec<Notice>,
}

/// Sections of Oracle's packaged and bootstrap configs that we accept (so those files
/// load) but do not act on yet, with the options they know.
const ACCEPTED: &[(&str, &[&str])] = &[
    ("keepalive", &["interval", "runs"]),
    ("io", &["backend", "threads"]),
    ("rest_metadata_cache", &["require_realm"]),
];

const DEFAULT_KNOWN: &[&str] = &[
    "origin",
    "program",
    "logging_folder",
    "runtime_folder",
    "data_folder",
    "plugin_folder",
    "config_folder",
    "keyring_path",
    "master_key_path",
    "connect_timeout",
    "read_timeout",
    "dynamic_state",
    "client_ssl_cert",
    "client_ssl_key",
    "client_ssl_mode",
    "server_ssl_mode",
    "server_ssl_verify",
    "max_total_connections",
    "pid_file",
    "unknown_config_option",
    "user",
    "shutdown_timeout",
];

/// Built-in `[DEFAULT]` variables, overridable by the files.
pub fn builtin_defaults() -> Vec<(&'static str, String)> {
    let origin = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.display().to_string()))
        .unwrap_or_else(|| "/usr/bin".into());
    vec![
        ("program", "mysqlrouter".into()),
        ("origin", origin),
        ("logging_folder", folders::LOGGING.into()),
        ("plugin_folder", folders::PLUGIN.into()),
        ("runtime_folder", folders::RUNTIME.into()),
        ("config_folder", folders::CONFIG.into()),
        ("data_folder", folders::DATA.into()),
    ]
}

/// Reads the files and applies the overrides; only syntax errors here.
pub fn read_store(files: &[PathBuf], overrides: &[Override]) -> Result<Store, ConfigError> {
    let mut store = Store::with_builtins(&builtin_defaults());
    for path in files {
        let text = std::fs::read(path).map_err(|e| {
            ConfigError::File(format!(
                "The configuration file '{}' is not readable: {e}",
                path.display()
            ))
        })?;
        let text = String::from_utf8_lossy(&text);
        let parsed = ini::parse(&text).map_err(|e| ConfigError::Syntax(e.0))?;
        store.merge(parsed);
    }
    for o in overrides {
        store.set(&o.section, o.key.as_deref(), &o.option, &o.value);
    }
    Ok(store)
}

/// Loads and validates the configuration from files and overrides.
pub fn load(files: &[PathBuf], overrides: &[Override]) -> Result<Config, ConfigError> {
    let store = read_store(files, overrides)?;
    let mut config = validate_files(&store, files)?;
    config.files = files.to_vec();
    Ok(config)
}

/// Looks up one option of one section; interpolation errors become config errors.
pub(crate) struct Lookup<'a> {
    pub store: &'a Store,
    pub section: &'a Section,
}

impl Lookup<'_> {
    pub fn get(&self, option: &str) -> Result<Option<store::Found>, ConfigError> {
        self.store
            .get(self.section, option)
            .map_err(ConfigError::Invalid)
    }

    /// An integer option: plain decimal digits within `min..=max`.
    pub fn uint(&self, option: &str, min: u64, max: u64, default: u64) -> Result<u64, ConfigError> {
        match self.get(option)? {
            None => Ok(default),
            Some(f) => parse_uint(&f.value, min, max).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "option {option} in [{}] needs value between {min} and {max} inclusive, was '{}'",
                    f.from, f.value
                ))
            }),
        }
    }
}

impl Lookup<'_> {
    /// A boolean option: `0`, `1`, `false` or `true` (case-insensitive).
    pub fn boolean(&self, option: &str) -> Result<Option<bool>, ConfigError> {
        let Some(f) = self.get(option)? else {
            return Ok(None);
        };
        match f.value.to_ascii_lowercase().as_str() {
            "0" | "false" => Ok(Some(false)),
            "1" | "true" => Ok(Some(true)),
            _ => Err(ConfigError::Invalid(format!(
                "option {option} in [{}] needs a value of either 0, 1, false or true, was '{}'",
                f.from, f.value
            ))),
        }
    }
}

pub fn parse_uint(v: &str, min: u64, max: u64) -> Option<u64> {
    let v = v.trim_start();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u64>().ok().filter(|n| (min..=max).contains(n))
}

fn validate_default(store: &Store) -> Result<DefaultConfig, ConfigError> {
    let get = |o: &str| store.get_default(o).map_err(ConfigError::Invalid);
    let user_set = |o: &str| store.defaults.options.iter().any(|(n, _)| n == o);
    let unknown_config_option = match get("unknown_config_option")? {
        None => UnknownOption::Warning,
        Some(v) if v.eq_ignore_ascii_case("warning") => UnknownOption::Warning,
        Some(v) if v.eq_ignore_ascii_case("error") => UnknownOption::Error,
        Some(v) => {
            return Err(ConfigError::Syntax(format!(
                "Invalid value for DEFAULT.unknown_config_option: '{v}'. Allowed are: 'error' or 'warning'"
            )))
        }
    };
    let max_total_connections = match get("max_total_connections")? {
        None => 512,
        Some(v) => parse_uint(&v, 1, i64::MAX as u64).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "[DEFAULT].max_total_connections needs value between 1 and 9223372036854775807 inclusive, was '{v}'"
            ))
        })?,
    };
    // Oracle's router closes active connections at once on SIGTERM; 0 keeps that.
    let shutdown_timeout = match get("shutdown_timeout")? {
        None => Duration::ZERO,
        Some(v) => parse_uint(&v, 0, 3600)
            .map(Duration::from_secs)
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "option shutdown_timeout in [default] needs value between 0 and 3600 inclusive, was '{v}'"
                ))
            })?,
    };
    let pid_file = match get("pid_file")? {
        Some(v) if v.is_empty() => {
            return Err(ConfigError::Invalid("PID filename '' is illegal.".into()))
        }
        other => other,
    };
    // The built-in value serves `{logging_folder}`; for logging, "not set" is its own
    // case (the compiled-in folder), distinct from "set to empty" (console).
    let logging_folder = if user_set("logging_folder") {
        get("logging_folder")?
    } else {
        None
    };
    Ok(DefaultConfig {
        logging_folder,
        runtime_folder: get("runtime_folder")?.unwrap_or_else(|| folders::RUNTIME.into()),
        data_folder: get("data_folder")?.unwrap_or_else(|| folders::DATA.into()),
        pid_file,
        user: get("user")?.filter(|u| !u.is_empty()),
        max_total_connections,
        unknown_config_option,
        shutdown_timeout,
    })
}

fn validate_destination_status(
    store: &Store,
    sections: &[&Section],
) -> Result<DestinationStatusConfig, ConfigError> {
    match sections {
        [] => Ok(DestinationStatusConfig::default()),
        [s] => {
            let l = Lookup { store, section: s };
            Ok(DestinationStatusConfig {
                error_quarantine_threshold: l.uint("error_quarantine_threshold", 1, 65535, 1)?
                    as u32,
                error_quarantine_interval: Duration::from_secs(l.uint(
                    "error_quarantine_interval",
                    1,
                    3600,
                    1,
                )?),
            })
        }
        _ => Err(ConfigError::Invalid(
            "[destination_status] already loaded.".into(),
        )),
    }
}

fn known_options(name: &str) -> Option<&'static [&'static str]> {
    match name {
        "routing" => Some(route::KNOWN_OPTIONS),
        "logger" => Some(logger::LOGGER_OPTIONS),
        "consolelog" => Some(&["level", "timestamp_precision", "destination"]),
        "filelog" => Some(&["level", "timestamp_precision", "filename"]),
        "syslog" => Some(&["level", "timestamp_precision", "identity"]),
        "destination_status" => Some(&["error_quarantine_threshold", "error_quarantine_interval"]),
        "monitor" => Some(monitor::KNOWN_OPTIONS),
        "connection_pool" => Some(pool::KNOWN_OPTIONS),
        _ => ACCEPTED
            .iter()
            .chain(http::KNOWN)
            .find(|(n, _)| *n == name)
            .map(|(_, o)| *o),
    }
}

/// Validates a merged store into a [`Config`].
pub fn validate(store: &Store) -> Result<Config, ConfigError> {
    validate_files(store, &[])
}

/// [`validate`], knowing the files the store was read from (to warn about a
/// `[monitor] password` in a file other users can read).
pub fn validate_files(store: &Store, files: &[PathBuf]) -> Result<Config, ConfigError> {
    let plugin_folder = store
        .get_default("plugin_folder")
        .map_err(ConfigError::Invalid)?
        .unwrap_or_default();
    // Plugins first, as MySQL Router loads them before reading their options.
    for s in &store.sections {
        if s.name == "metadata_cache" {
            return Err(ConfigError::Unsupported(
                "[metadata_cache] is not supported by this router: InnoDB Cluster metadata-cache routing is not implemented; use static 'destinations' lists".into(),
            ));
        }
        if known_options(&s.name).is_none() {
            return Err(ConfigError::UnknownSection(
                s.name.clone(),
                format!(
                    "{plugin_folder}/{}.so: cannot open shared object file: No such file or directory",
                    s.name
                ),
            ));
        }
    }
    if store.sections.is_empty() {
        return Err(ConfigError::NoPlugin);
    }
    let default = validate_default(store)?;
    let logger = logger::validate(store, &default)?;
    let mut notices = Vec::new();

    let routing: Vec<&Section> = store
        .sections
        .iter()
        .filter(|s| s.name == "routing")
        .collect();
    let mut routes = Vec::with_capacity(routing.len());
    for s in &routing {
        let r = route::validate(store, s, &default, &mut notices)?;
        route::check_against_earlier(&r, &routes)?;
        routes.push(r);
    }
    let ds: Vec<&Section> = store
        .sections
        .iter()
        .filter(|s| s.name == "destination_status")
        .collect();
    let destination_status = validate_destination_status(store, &ds)?;
    let mon: Vec<&Section> = store
        .sections
        .iter()
        .filter(|s| s.name == "monitor")
        .collect();
    let monitor = monitor::validate(store, &mon, files, &mut notices)?;
    if monitor.is_none() {
        if let Some(r) = routes.iter().find(|r| r.roles.is_some()) {
            return Err(ConfigError::Invalid(format!(
                "in [{}]: option role needs a [monitor] section (user, password_file) to learn the servers' roles",
                r.section
            )));
        }
    }
    let pools: Vec<&Section> = store
        .sections
        .iter()
        .filter(|s| s.name == "connection_pool")
        .collect();
    let pool = pool::validate(store, &pools)?;
    let io_threads = match store.sections.iter().find(|s| s.name == "io") {
        Some(sec) => Lookup {
            store,
            section: sec,
        }
        .uint("threads", 0, 1024, 0)? as usize,
        None => 0,
    };

    let http = http::validate(store)?;

    for s in &store.sections {
        if s.name != "io" && ACCEPTED.iter().any(|(n, _)| *n == s.name) {
            notices.push(Notice {
                domain: "main",
                level: Level::Info,
                message: format!(
                    "[{}] is accepted for compatibility but not implemented by this router; its options have no effect",
                    s.full_name()
                ),
            });
        }
    }

    // Unknown options, reported as `section.option` (section name without key).
    let mut unknown = Vec::new();
    for s in &store.sections {
        let known = known_options(&s.name).unwrap_or(&[]);
        for (opt, _) in &s.options {
            if opt != "library" && !known.contains(&opt.as_str()) {
                unknown.push(format!("{}.{}", s.name, opt));
            }
        }
    }
    for (opt, _) in &store.defaults.options {
        let known_by_plugin = store
            .sections
            .iter()
            .any(|s| known_options(&s.name).is_some_and(|k| k.contains(&opt.as_str())));
        if opt != "library" && !DEFAULT_KNOWN.contains(&opt.as_str()) && !known_by_plugin {
            unknown.push(format!("DEFAULT.{opt}"));
        }
    }
    if let Some(first) = unknown.first() {
        if default.unknown_config_option == UnknownOption::Error {
            return Err(ConfigError::UnknownOption(first.clone()));
        }
    }
    notices.extend(unknown.into_iter().map(|u| Notice {
        domain: "main",
        level: Level::Warning,
        message: format!("option '{u}' is not supported"),
    }));

    Ok(Config {
        files: Vec::new(),
        default,
        logger,
        routes,
        destination_status,
        io_threads,
        http,
        monitor,
        pool,
        notices,
    })
}
