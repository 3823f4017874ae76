//! The TLS options of a `[routing:*]` section (falling back to `[DEFAULT]`):
//! `client_ssl_*` for the client → router hop, `server_ssl_*` for router → server.
//! Values, defaults, refused combinations and messages as MySQL Router 9.7.4's.
//! Files are only named here; they are read when the route starts
//! (`session::tls`), where MySQL Router reports them too.

use std::path::PathBuf;

use super::route::Protocol;
use super::{ConfigError, Lookup};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientSslMode {
    Disabled,
    Preferred,
    Required,
    /// MySQL's TLS passes through untouched: today's byte relay.
    Passthrough,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerSslMode {
    Disabled,
    Preferred,
    Required,
    /// TLS to the server exactly when the client used TLS to the router.
    AsClient,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslVerify {
    Disabled,
    VerifyCa,
    VerifyIdentity,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// `routing:NAME`, for messages.
    pub section: String,
    pub client_mode: ClientSslMode,
    pub server_mode: ServerSslMode,
    pub verify: SslVerify,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub client_cipher: Option<String>,
    pub client_curves: Option<String>,
    pub client_dh_params: Option<PathBuf>,
    pub client_session_cache: bool,
    pub client_session_cache_size: usize,
    /// `client_ssl_session_cache_timeout`: a client's session older than this is not
    /// resumed.
    pub client_session_cache_timeout: std::time::Duration,
    pub server_cert: Option<PathBuf>,
    pub server_key: Option<PathBuf>,
    pub server_cipher: Option<String>,
    pub server_curves: Option<String>,
    pub server_ca: Option<PathBuf>,
    pub server_capath: Option<PathBuf>,
    pub server_crl: Option<PathBuf>,
    pub server_crlpath: Option<PathBuf>,
    pub server_session_cache: bool,
    pub server_session_cache_size: usize,
    /// `server_ssl_session_cache_timeout`: a session older than this is not resumed.
    pub server_session_cache_timeout: std::time::Duration,
}

impl TlsConfig {
    /// The router terminates the client's TLS (or refuses it) and speaks the classic
    /// protocol itself during the handshake.
    pub fn terminates(&self) -> bool {
        self.client_mode != ClientSslMode::Passthrough
    }
}

fn invalid(msg: String) -> ConfigError {
    ConfigError::Invalid(msg)
}

/// One of `allowed` (case-insensitive), `None` when unset or empty.
fn one_of<'a>(
    l: &Lookup,
    option: &str,
    allowed: &[&'a str],
) -> Result<Option<&'a str>, ConfigError> {
    let Some(f) = l.get(option)? else {
        return Ok(None);
    };
    if f.value.is_empty() {
        return Ok(None);
    }
    match allowed.iter().find(|a| a.eq_ignore_ascii_case(&f.value)) {
        Some(a) => Ok(Some(a)),
        None => Err(invalid(format!(
            "invalid value '{}' for option {option} in [{}]. Allowed are: {}.",
            f.value,
            f.from,
            allowed.join(",")
        ))),
    }
}

fn text(l: &Lookup, option: &str) -> Result<Option<String>, ConfigError> {
    Ok(l.get(option)?.map(|f| f.value).filter(|v| !v.is_empty()))
}

fn path(l: &Lookup, option: &str) -> Result<Option<PathBuf>, ConfigError> {
    Ok(text(l, option)?.map(PathBuf::from))
}

/// Reads and checks the TLS options, in MySQL Router's order.
pub(crate) fn validate(l: &Lookup, protocol: Protocol) -> Result<TlsConfig, ConfigError> {
    let name = l.section.full_name();
    let client = one_of(
        l,
        "client_ssl_mode",
        &["DISABLED", "PREFERRED", "REQUIRED", "PASSTHROUGH"],
    )?;
    let server = one_of(
        l,
        "server_ssl_mode",
        &["DISABLED", "PREFERRED", "REQUIRED", "AS_CLIENT"],
    )?;
    let verify = one_of(
        l,
        "server_ssl_verify",
        &["DISABLED", "VERIFY_CA", "VERIFY_IDENTITY"],
    )?;
    let client_cert = path(l, "client_ssl_cert")?;
    let client_key = path(l, "client_ssl_key")?;
    // MySQL Router: with a certificate configured the default is PREFERRED, else
    // PASSTHROUGH.
    let client_mode = match client {
        Some("DISABLED") => ClientSslMode::Disabled,
        Some("PREFERRED") => ClientSslMode::Preferred,
        Some("REQUIRED") => ClientSslMode::Required,
        Some(_) => ClientSslMode::Passthrough,
        None if (client_cert.is_some() || client_key.is_some())
            && protocol == Protocol::Classic =>
        {
            ClientSslMode::Preferred
        }
        None => ClientSslMode::Passthrough,
    };
    let server_mode = match server {
        Some("DISABLED") => ServerSslMode::Disabled,
        Some("PREFERRED") => ServerSslMode::Preferred,
        Some("REQUIRED") => ServerSslMode::Required,
        _ => ServerSslMode::AsClient,
    };
    let verify = match verify {
        Some("VERIFY_CA") => SslVerify::VerifyCa,
        Some("VERIFY_IDENTITY") => SslVerify::VerifyIdentity,
        _ => SslVerify::Disabled,
    };
    let mode_name = match client_mode {
        ClientSslMode::Preferred => "PREFERRED",
        ClientSslMode::Required => "REQUIRED",
        _ => "",
    };
    if !mode_name.is_empty() {
        if client_cert.is_none() {
            return Err(invalid(format!(
                "client_ssl_cert must be set, if client_ssl_mode is '{mode_name}'."
            )));
        }
        if client_key.is_none() {
            return Err(invalid(format!(
                "client_ssl_key must be set, if client_ssl_mode is '{mode_name}'."
            )));
        }
    }
    if client_mode == ClientSslMode::Passthrough && server_mode != ServerSslMode::AsClient {
        return Err(invalid(
            "If client_ssl_mode is PASSTHROUGH, server_ssl_mode must be AS_CLIENT.".into(),
        ));
    }
    let server_ca = path(l, "server_ssl_ca")?;
    let server_capath = path(l, "server_ssl_capath")?;
    if verify != SslVerify::Disabled && server_ca.is_none() && server_capath.is_none() {
        let v = if verify == SslVerify::VerifyCa {
            "VERIFY_CA"
        } else {
            "VERIFY_IDENTITY"
        };
        return Err(invalid(format!(
            "server_ssl_ca or server_ssl_capath must be set, if server_ssl_verify is '{v}'."
        )));
    }
    if client_mode == ClientSslMode::Passthrough {
        for opt in [
            "client_ssl_ca",
            "client_ssl_capath",
            "client_ssl_crl",
            "client_ssl_crlpath",
        ] {
            if let Some(f) = l.get(opt)? {
                return Err(invalid(format!(
                    "client_ssl_mode=PASSTHROUGH can not be combined with {opt}={}",
                    f.value
                )));
            }
        }
    }
    if protocol == Protocol::X && client_mode != ClientSslMode::Passthrough {
        return Err(ConfigError::Unsupported(format!(
            "option client_ssl_mode in [{name}]: TLS termination for protocol=x is not supported by this router; X protocol routes pass TLS through (client_ssl_mode=PASSTHROUGH)"
        )));
    }
    Ok(TlsConfig {
        section: name,
        client_mode,
        server_mode,
        verify,
        client_cert,
        client_key,
        client_cipher: text(l, "client_ssl_cipher")?,
        client_curves: text(l, "client_ssl_curves")?,
        client_dh_params: path(l, "client_ssl_dh_params")?,
        client_session_cache: l.boolean("client_ssl_session_cache_mode")?.unwrap_or(true),
        client_session_cache_size: l.uint(
            "client_ssl_session_cache_size",
            1,
            2_147_483_647,
            1024,
        )? as usize,
        client_session_cache_timeout: std::time::Duration::from_secs(l.uint(
            "client_ssl_session_cache_timeout",
            0,
            86400,
            300,
        )?),
        server_cert: path(l, "server_ssl_cert")?,
        server_key: path(l, "server_ssl_key")?,
        server_cipher: text(l, "server_ssl_cipher")?,
        server_curves: text(l, "server_ssl_curves")?,
        server_ca,
        server_capath,
        server_crl: path(l, "server_ssl_crl")?,
        server_crlpath: path(l, "server_ssl_crlpath")?,
        server_session_cache: l.boolean("server_ssl_session_cache_mode")?.unwrap_or(true),
        server_session_cache_size: l.uint(
            "server_ssl_session_cache_size",
            1,
            2_147_483_647,
            1024,
        )? as usize,
        server_session_cache_timeout: std::time::Duration::from_secs(l.uint(
            "server_ssl_session_cache_timeout",
            0,
            86400,
            300,
        )?),
    })
}
