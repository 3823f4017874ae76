//! The monitoring sections: `[http_server]`, `[rest_api]`, `[rest_router]`,
//! `[rest_routing]`, `[rest_connection_pool]`, `[http_auth_realm:NAME]`, `[http_auth_backend:NAME]` (MySQL Router's,
//! with its defaults and messages) and our `[metrics]`.
//!
//! Only the options are checked here; the password files and TLS certificates are
//! read when the HTTP server starts (`crate::http`), as MySQL Router does in its
//! plugins' init.

use std::path::PathBuf;

use super::{ConfigError, Lookup, Section, Store};

/// Sections of this module and the options each knows.
pub const KNOWN: &[(&str, &[&str])] = &[
    (
        "http_server",
        &[
            "port",
            "bind_address",
            "ssl",
            "ssl_cert",
            "ssl_key",
            "ssl_cipher",
            "ssl_dh_param",
            "ssl_curves",
            "static_folder",
            "require_realm",
        ],
    ),
    ("rest_api", &["require_realm"]),
    ("rest_routing", &["require_realm"]),
    ("rest_router", &["require_realm"]),
    ("rest_connection_pool", &["require_realm"]),
    ("http_auth_realm", &["backend", "method", "name", "require"]),
    ("http_auth_backend", &["backend", "filename"]),
    ("metrics", &["require_realm"]),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub server: ServerConfig,
    /// `[rest_api]` is configured (or implied by a `[rest_*]` section): `/swagger.json`.
    pub rest_api: Option<Endpoints>,
    /// `[rest_router]`: `/router/status`.
    pub rest_router: Option<Endpoints>,
    /// `[rest_routing]`: `/routing/status`, `/routes...`.
    pub rest_routing: Option<Endpoints>,
    /// `[rest_connection_pool]`: `/connection_pool...`.
    pub rest_connection_pool: Option<Endpoints>,
    /// `[metrics]` (ours): `/metrics` in the Prometheus text format.
    pub metrics: Option<Endpoints>,
    pub realms: Vec<RealmConfig>,
    pub backends: Vec<BackendConfig>,
}

/// A group of endpoints and the realm that protects it (`None`: open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub require_realm: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub bind_address: String,
    pub port: u16,
    pub tls: Option<TlsConfig>,
    /// `[http_server] require_realm`: protects paths no endpoint serves.
    pub require_realm: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// OpenSSL cipher list (`None`: the library's defaults).
    pub cipher: Option<String>,
    pub curves: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmConfig {
    /// The section key: what `require_realm` names.
    pub key: String,
    /// Shown to clients in `WWW-Authenticate`.
    pub name: String,
    /// The `[http_auth_backend:KEY]` holding the accounts.
    pub backend: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub key: String,
    /// The password file (MySQL Router's default: `users`, relative to the working
    /// folder); `None` for `backend=metadata_cache`, which has no accounts here (no
    /// metadata cache), so that bootstrapped configurations still load.
    pub filename: Option<PathBuf>,
}

fn invalid(msg: String) -> ConfigError {
    ConfigError::Invalid(msg)
}

fn string(l: &Lookup<'_>, option: &str) -> Result<Option<String>, ConfigError> {
    Ok(l.get(option)?.map(|f| f.value).filter(|v| !v.is_empty()))
}

fn required(l: &Lookup<'_>, option: &str) -> Result<String, ConfigError> {
    string(l, option)?.ok_or_else(|| {
        invalid(format!(
            "option {option} in [{}] is required",
            l.section.full_name()
        ))
    })
}

fn sections<'a>(store: &'a Store, name: &str) -> Vec<&'a Section> {
    store.sections.iter().filter(|s| s.name == name).collect()
}

/// `None` when no monitoring section is configured.
pub fn validate(store: &Store) -> Result<Option<HttpConfig>, ConfigError> {
    let present = |n: &str| store.sections.iter().any(|s| s.name == n);
    let any = [
        "http_server",
        "rest_api",
        "rest_router",
        "rest_routing",
        "rest_connection_pool",
        "metrics",
    ]
    .iter()
    .any(|n| present(n));
    if !any {
        return Ok(None);
    }
    let mut realm_keys: Vec<String> = sections(store, "http_auth_realm")
        .iter()
        .map(|s| s.key.clone().unwrap_or_default())
        .collect();
    realm_keys.sort();
    realm_keys.dedup();

    let server = validate_server(store, &realm_keys)?;
    let backends = sections(store, "http_auth_backend")
        .into_iter()
        .map(|s| validate_backend(store, s))
        .collect::<Result<Vec<_>, _>>()?;
    let realms = sections(store, "http_auth_realm")
        .into_iter()
        .map(|s| validate_realm(store, s, &backends))
        .collect::<Result<Vec<_>, _>>()?;

    let lookup = |name: &str| {
        store
            .sections
            .iter()
            .find(|s| s.name == name)
            .map(|s| Lookup { store, section: s })
    };
    // [rest_api]: an optional realm, checked like [http_server]'s.
    let rest_api_realm = match lookup("rest_api") {
        Some(l) => match string(&l, "require_realm")? {
            Some(r) if !realm_keys.contains(&r) => {
                return Err(invalid(format!(
                    "unknown authentication realm for [rest_api] '{}': {r}, known realm(s): {}",
                    l.section.key.clone().unwrap_or_default(),
                    realm_keys.join(",")
                )))
            }
            r => r,
        },
        None => None,
    };
    // [rest_router] and [rest_routing]: the realm is required and must exist.
    let rest_with_realm = |name: &str| -> Result<Option<Endpoints>, ConfigError> {
        let Some(l) = lookup(name) else {
            return Ok(None);
        };
        let realm = required(&l, "require_realm")?;
        if !realm_keys.contains(&realm) {
            return Err(invalid(format!(
                "The option 'require_realm={realm}' in [{name}] does not match any http_auth_realm. No [http_auth_realm:{realm}] section defined."
            )));
        }
        Ok(Some(Endpoints {
            require_realm: Some(realm),
        }))
    };
    let rest_router = rest_with_realm("rest_router")?;
    let rest_routing = rest_with_realm("rest_routing")?;
    // [rest_connection_pool]: required too; its message lists the known realms
    // (MySQL Router 9.7.4, verified).
    let rest_connection_pool = match lookup("rest_connection_pool") {
        None => None,
        Some(l) => {
            let realm = required(&l, "require_realm")?;
            if !realm_keys.contains(&realm) {
                let known = match realm_keys.len() {
                    0 => format!("No [http_auth_realm:{realm}] section defined."),
                    1 => format!("Known [http_auth_realm:<...>] section: {}", realm_keys[0]),
                    _ => format!(
                        "Known [http_auth_realm:<...>] sections: {}",
                        realm_keys.join(", ")
                    ),
                };
                return Err(invalid(format!(
                    "The option 'require_realm={realm}' in [rest_connection_pool] does not match any http_auth_realm. {known}"
                )));
            }
            Some(Endpoints {
                require_realm: Some(realm),
            })
        }
    };
    let metrics = match lookup("metrics") {
        None => None,
        Some(l) => {
            let realm = string(&l, "require_realm")?;
            if let Some(r) = &realm {
                if !realm_keys.contains(r) {
                    return Err(invalid(format!(
                        "The option 'require_realm={r}' in [metrics] does not match any http_auth_realm. No [http_auth_realm:{r}] section defined."
                    )));
                }
            }
            Some(Endpoints {
                require_realm: realm,
            })
        }
    };
    // MySQL Router loads rest_api whenever another rest_* plugin needs it.
    let rest_api = (present("rest_api")
        || rest_router.is_some()
        || rest_routing.is_some()
        || rest_connection_pool.is_some())
    .then_some(Endpoints {
        require_realm: rest_api_realm,
    });
    Ok(Some(HttpConfig {
        server,
        rest_api,
        rest_router,
        rest_routing,
        rest_connection_pool,
        metrics,
        realms,
        backends,
    }))
}

fn validate_server(store: &Store, realm_keys: &[String]) -> Result<ServerConfig, ConfigError> {
    let all = sections(store, "http_server");
    let Some(s) = all.first() else {
        return Ok(ServerConfig {
            bind_address: "0.0.0.0".into(),
            port: 8081,
            tls: None,
            require_realm: None,
        });
    };
    if all.len() > 1 {
        let keys: Vec<String> = all.iter().filter_map(|s| s.key.clone()).collect();
        return Err(ConfigError::File(format!(
            "Section name 'http_server' is ambiguous. Alternatives are:  {}",
            keys.join(" ")
        )));
    }
    let l = Lookup { store, section: s };
    let port = l.uint("port", 0, 65535, 8081)? as u16;
    let ssl = l.uint("ssl", 0, 1, 0)? == 1;
    let bind_address = string(&l, "bind_address")?.unwrap_or_else(|| "0.0.0.0".into());
    let cert = string(&l, "ssl_cert")?;
    let key = string(&l, "ssl_key")?;
    let tls = if ssl {
        match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsConfig {
                cert: cert.into(),
                key: key.into(),
                cipher: string(&l, "ssl_cipher")?,
                curves: string(&l, "ssl_curves")?,
            }),
            _ => {
                return Err(invalid(
                    "if ssl=1 is set, ssl_cert and ssl_key must be set too.".into(),
                ))
            }
        }
    } else {
        None
    };
    if string(&l, "static_folder")?.is_some() {
        return Err(ConfigError::Unsupported(
            "[http_server] static_folder is not supported by this router: it serves only the REST API and /metrics".into(),
        ));
    }
    let require_realm = string(&l, "require_realm")?;
    if let Some(r) = &require_realm {
        if !realm_keys.contains(r) {
            return Err(invalid(format!(
                "unknown authentication realm for [http_server] '{}': {r}, known realm(s): {}",
                s.key.clone().unwrap_or_default(),
                realm_keys.join(",")
            )));
        }
    }
    Ok(ServerConfig {
        bind_address,
        port,
        tls,
        require_realm,
    })
}

fn validate_backend(store: &Store, s: &Section) -> Result<BackendConfig, ConfigError> {
    let l = Lookup { store, section: s };
    let backend = required(&l, "backend")?;
    let filename = match backend.as_str() {
        "file" => Some(
            string(&l, "filename")?
                .unwrap_or_else(|| "users".into())
                .into(),
        ),
        "metadata_cache" => None,
        other => {
            return Err(invalid(format!(
                "unknown backend={other} in section: http_auth_backend"
            )))
        }
    };
    Ok(BackendConfig {
        key: s.key.clone().unwrap_or_default(),
        filename,
    })
}

fn validate_realm(
    store: &Store,
    s: &Section,
    backends: &[BackendConfig],
) -> Result<RealmConfig, ConfigError> {
    let l = Lookup { store, section: s };
    let key = s.key.clone().unwrap_or_default();
    let backend = required(&l, "backend")?;
    let method = required(&l, "method")?;
    let name = required(&l, "name")?;
    if method != "basic" {
        return Err(invalid(format!(
            "unsupported authentication method for [http_auth_realm] '{key}': {method}, supported method(s): basic"
        )));
    }
    if !backends.iter().any(|b| b.key == backend) {
        return Err(invalid(format!(
            "The option 'backend={backend}' in [{}] does not match any http_auth_backend. No [http_auth_backend:{backend}] section defined.",
            s.full_name()
        )));
    }
    Ok(RealmConfig { key, name, backend })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Option<HttpConfig>, ConfigError> {
        let mut store = Store::with_builtins(&[]);
        store.merge(crate::config::ini::parse(text).map_err(|e| ConfigError::Syntax(e.0))?);
        validate(&store)
    }

    fn err(text: &str) -> String {
        match load(text) {
            Err(e) => e.to_string(),
            Ok(c) => panic!("accepted: {c:?}"), // ok: test code
        }
    }

    const AUTH: &str = "[http_auth_realm:r]\nbackend=b\nmethod=basic\nname=Some Realm\n[http_auth_backend:b]\nbackend=file\nfilename=/tmp/pw\n";

    #[test]
    fn defaults_as_mysql_router() {
        let c = load("[rest_api]\n").unwrap().unwrap(); // ok: test code
        assert_eq!(c.server.bind_address, "0.0.0.0");
        assert_eq!(c.server.port, 8081);
        assert!(c.server.tls.is_none());
        assert_eq!(
            c.rest_api,
            Some(Endpoints {
                require_realm: None
            })
        );
        assert!(c.rest_routing.is_none() && c.metrics.is_none());
        assert!(load("[routing:a]\n").unwrap().is_none()); // ok: test code
        let c = load(&format!("[rest_routing]\nrequire_realm=r\n{AUTH}"))
            .unwrap() // ok: test code
            .unwrap(); // ok: test code
        assert!(c.rest_api.is_some(), "rest_routing brings rest_api along");
        assert_eq!(c.realms[0].name, "Some Realm");
        assert_eq!(c.backends[0].filename, Some(PathBuf::from("/tmp/pw")));
    }

    #[test]
    fn mysql_router_messages() {
        assert_eq!(
            err("[http_server]\nport=99999\n"),
            "Configuration error: option port in [http_server] needs value between 0 and 65535 inclusive, was '99999'"
        );
        assert_eq!(
            err("[http_server]\nssl=2\n"),
            "Configuration error: option ssl in [http_server] needs value between 0 and 1 inclusive, was '2'"
        );
        assert_eq!(
            err("[http_server]\nssl=1\n"),
            "Configuration error: if ssl=1 is set, ssl_cert and ssl_key must be set too."
        );
        assert_eq!(
            err("[rest_routing]\n"),
            "Configuration error: option require_realm in [rest_routing] is required"
        );
        assert_eq!(
            err("[rest_router]\nrequire_realm=nope\n"),
            "Configuration error: The option 'require_realm=nope' in [rest_router] does not match any http_auth_realm. No [http_auth_realm:nope] section defined."
        );
        assert_eq!(
            err(&format!("[rest_api]\nrequire_realm=zz\n{AUTH}[http_auth_realm:q]\nbackend=b\nmethod=basic\nname=x\n")),
            "Configuration error: unknown authentication realm for [rest_api] '': zz, known realm(s): q,r"
        );
        assert_eq!(
            err("[http_server]\n[http_auth_realm:r]\nbackend=b\nmethod=basic\nname=x\n"),
            "Configuration error: The option 'backend=b' in [http_auth_realm:r] does not match any http_auth_backend. No [http_auth_backend:b] section defined."
        );
        assert_eq!(
            err("[http_server]\n[http_auth_realm:r]\nbackend=b\nmethod=digest\nname=x\n[http_auth_backend:b]\nbackend=file\n"),
            "Configuration error: unsupported authentication method for [http_auth_realm] 'r': digest, supported method(s): basic"
        );
        for (opt, text) in [
            ("method", "backend=b\nname=x"),
            ("name", "backend=b\nmethod=basic"),
            ("backend", "method=basic\nname=x"),
        ] {
            assert_eq!(
                err(&format!("[http_server]\n[http_auth_realm:r]\n{text}\n[http_auth_backend:b]\nbackend=file\n")),
                format!("Configuration error: option {opt} in [http_auth_realm:r] is required")
            );
        }
        assert_eq!(
            err("[http_server]\n[http_auth_backend:b]\nbackend=foo\n"),
            "Configuration error: unknown backend=foo in section: http_auth_backend"
        );
        assert_eq!(
            err("[http_server]\n[http_auth_backend:b]\nfilename=x\n"),
            "Configuration error: option backend in [http_auth_backend:b] is required"
        );
    }
}
