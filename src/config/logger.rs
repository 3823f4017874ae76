//! `[logger]` and the sink sections `[consolelog]`, `[filelog]`, `[syslog]`.

use std::path::PathBuf;

use super::{ConfigError, DefaultConfig, Lookup, Section, Store};
use crate::logging::{Level, Precision};

pub const LOGGER_OPTIONS: &[&str] = &["level", "sinks", "filename", "timestamp_precision"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// `/dev/stderr`, `/dev/stdout` or `/dev/null`.
    Console(String),
    File(PathBuf),
    Syslog,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    pub kind: SinkKind,
    pub level: Level,
    pub precision: Precision,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggerConfig {
    pub sinks: Vec<SinkConfig>,
    /// The folder to create (last component only) before opening file sinks.
    pub folder: Option<PathBuf>,
}

impl LoggerConfig {
    /// The most verbose level any sink wants: cheaper filtering at the call sites.
    pub fn max_level(&self) -> Level {
        self.sinks
            .iter()
            .map(|s| s.level)
            .max()
            .unwrap_or(Level::Warning)
    }
}

fn parse_level(v: &str) -> Result<Level, ConfigError> {
    Level::parse(v).ok_or_else(|| {
        ConfigError::Invalid(format!(
            "Log level '{}' is not valid. Valid values are: fatal, system, error, warning, info, note, and debug",
            v.to_ascii_lowercase()
        ))
    })
}

fn parse_precision(v: &str) -> Result<Precision, ConfigError> {
    Precision::parse(v).ok_or_else(|| {
        ConfigError::Invalid(format!(
            "Timestamp precision '{v}' is not valid. Valid values are: second, sec, s, millisecond, msec, ms, microsecond, usec, us, nanosecond, nsec, and ns"
        ))
    })
}

pub fn validate(store: &Store, default: &DefaultConfig) -> Result<LoggerConfig, ConfigError> {
    let loggers: Vec<&Section> = store
        .sections
        .iter()
        .filter(|s| s.name == "logger")
        .collect();
    if loggers.len() > 1 {
        return Err(ConfigError::Invalid(
            "There can be at most one [logger] section in the configuration".into(),
        ));
    }
    if loggers.iter().any(|s| s.key.is_some()) {
        return Err(ConfigError::Invalid(
            "Section 'logger' does not support keys".into(),
        ));
    }
    let defaults_only = Section::default();
    let logger = loggers.first().copied().unwrap_or(&defaults_only);
    let l = Lookup {
        store,
        section: logger,
    };
    let level = match l.get("level")? {
        Some(f) => parse_level(&f.value)?,
        None => Level::Warning,
    };
    let precision = match l.get("timestamp_precision")? {
        Some(f) => parse_precision(&f.value)?,
        None => Precision::Second,
    };
    let mut filename = l
        .get("filename")?
        .map(|f| f.value)
        .unwrap_or_else(|| "mysqlrouter.log".into());

    let folder = default
        .logging_folder
        .clone()
        .unwrap_or_else(|| super::folders::LOGGING.into());
    let sink_names: Vec<String> = match l.get("sinks")? {
        Some(f) => {
            let names: Vec<String> = f
                .value
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect();
            if names.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "sinks option does not contain any valid sink name, was '{}'",
                    f.value
                )));
            }
            names
        }
        None if folder.is_empty() => vec!["consolelog".into()],
        None => vec!["filelog".into()],
    };

    let mut sinks = Vec::new();
    for name in sink_names {
        let sec = store.sections.iter().find(|s| s.name == name);
        let own = |opt: &str| -> Result<Option<String>, ConfigError> {
            match sec {
                Some(s) => Ok(Lookup { store, section: s }.get(opt)?.map(|f| f.value)),
                None => Ok(None),
            }
        };
        let sink_level = match own("level")? {
            Some(v) => parse_level(&v)?,
            None => level,
        };
        let sink_precision = match own("timestamp_precision")? {
            Some(_) if name == "syslog" => {
                return Err(ConfigError::Invalid(
                    "timestamp_precision not valid for 'syslog'".into(),
                ))
            }
            Some(v) => parse_precision(&v)?,
            None => precision,
        };
        let kind = match name.as_str() {
            "consolelog" => {
                let dest = own("destination")?.unwrap_or_else(|| "/dev/stderr".into());
                if !["/dev/stderr", "/dev/stdout", "/dev/null"].contains(&dest.as_str()) {
                    return Err(ConfigError::Invalid(format!(
                        "Illegal destination '{dest}' for [consolelog]. Valid values are: /dev/null, /dev/stdout, /dev/stderr"
                    )));
                }
                SinkKind::Console(dest)
            }
            "filelog" => {
                if folder.is_empty() {
                    return Err(ConfigError::Invalid(
                        "filelog sink configured but the logging_folder is empty".into(),
                    ));
                }
                if let Some(f) = own("filename")? {
                    filename = f;
                }
                if filename.contains('/') {
                    return Err(ConfigError::Invalid(format!(
                        "logger filename '{filename}' must be a filename, not a path"
                    )));
                }
                SinkKind::File(PathBuf::from(&folder).join(&filename))
            }
            "syslog" => SinkKind::Syslog,
            other => {
                return Err(ConfigError::UnknownSection(
                    other.to_string(),
                    format!(
                    "'{other}' is not a known log sink (valid are consolelog, filelog and syslog)"
                ),
                ))
            }
        };
        sinks.push(SinkConfig {
            kind,
            level: sink_level,
            precision: sink_precision,
        });
    }
    let folder = (!folder.is_empty()).then(|| PathBuf::from(folder));
    Ok(LoggerConfig { sinks, folder })
}
