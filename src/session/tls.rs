//! TLS contexts of a terminating route, built once when the route starts from its
//! `client_ssl_*` / `server_ssl_*` options: a rustls server config for the client hop
//! and client configs for the server hop (one per destination, each with its own
//! session cache), and the router's RSA key from `client_ssl_key`.
//!
//! rustls (memory-safe parsing of everything a client sends; the aws-lc-rs crypto
//! provider, whose RSA signing is as fast as OpenSSL's: see Cargo.toml) instead of
//! OpenSSL: what that means for MySQL Router's options —
//! * `*_ssl_cipher` takes OpenSSL's names; the TLS 1.2 suites rustls has are chosen
//!   from the list (unknown names are skipped, as OpenSSL does; none left is MySQL
//!   Router's "no cipher match"). TLS 1.3 suites are always on, as with OpenSSL.
//! * `*_ssl_curves`: P-256 (prime256v1, secp256r1), P-384 (secp384r1) and X25519.
//! * `client_ssl_dh_params`: rustls has no finite-field DHE; the file is checked and
//!   a WARNING says it is not used (ECDHE is).
//! * TLS 1.0/1.1 are not offered (rustls has them not; MySQL 8.0.28+ dropped them too).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{aws_lc_rs as provider, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::tls::{ClientSslMode, ServerSslMode, SslVerify, TlsConfig};

/// Why a route's TLS could not be set up; `Display` follows MySQL Router's wording.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("loading client_ssl_cert '{cert}' and client_ssl_key '{key}' failed: {reason}")]
    CertKey {
        cert: String,
        key: String,
        reason: String,
    },
    #[error("setting {option}={value} failed: {reason}")]
    Option {
        option: &'static str,
        value: String,
        reason: String,
    },
    #[error("setting client_ssl_dh_params failed: {0}")]
    DhParams(String),
    #[error("setting server_ssl_ca={ca} and server_ssl_capath={capath} failed: {reason}")]
    Ca {
        ca: String,
        capath: String,
        reason: String,
    },
    #[error("loading server_ssl_cert '{cert}' and server_ssl_key '{key}' failed: {reason}")]
    ClientCert {
        cert: String,
        key: String,
        reason: String,
    },
}

/// TLS towards the servers: one client context per destination, as MySQL Router
/// keeps (`DestinationTlsContext::get`), so that each destination has its own session
/// cache. A shared cache would offer one server's session tickets to the next server
/// of a round-robin route (all named by the same address, often), which refuses them:
/// every handshake would be a full one.
pub struct Connectors {
    base: rustls::ClientConfig,
    /// `server_ssl_session_cache_size` and `_timeout` when `server_ssl_session_cache_mode`
    /// is on.
    cache: Option<(usize, Duration)>,
    per_destination: Mutex<HashMap<String, tokio_rustls::TlsConnector>>,
}

impl Connectors {
    /// The connector for `destination` (`host:port`), made on first use.
    pub fn get(&self, destination: &str) -> tokio_rustls::TlsConnector {
        let mut map = self
            .per_destination
            .lock()
            .unwrap_or_else(|p| p.into_inner()); // ok: a map of Arcs, no invariant to break
        if let Some(c) = map.get(destination) {
            return c.clone();
        }
        let mut cc = self.base.clone();
        cc.resumption = match self.cache {
            Some((size, timeout)) => {
                rustls::client::Resumption::store(Arc::new(SessionCache::new(size, timeout)))
            }
            None => rustls::client::Resumption::disabled(),
        };
        let c = tokio_rustls::TlsConnector::from(Arc::new(cc));
        map.insert(destination.to_string(), c.clone());
        c
    }
}

/// One destination's TLS session cache, with MySQL Router's semantics: at most `size`
/// sessions, none resumed once older than `timeout` (`server_ssl_session_cache_size`,
/// `server_ssl_session_cache_timeout`). rustls' own in-memory cache bounds server
/// names, not sessions, and keeps a session for the lifetime the server gave it.
#[derive(Debug)]
struct SessionCache {
    size: usize,
    timeout: Duration,
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    kx_hint: Option<rustls::NamedGroup>,
    tls12: Option<(Instant, rustls::client::Tls12ClientSessionValue)>,
    /// Newest last.
    tls13: VecDeque<(Instant, rustls::client::Tls13ClientSessionValue)>,
}

impl SessionCache {
    fn new(size: usize, timeout: Duration) -> Self {
        SessionCache {
            size: size.max(1),
            timeout,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()) // ok: plain data
    }

    fn fresh(&self, at: Instant) -> bool {
        at.elapsed() < self.timeout
    }
}

impl rustls::client::ClientSessionStore for SessionCache {
    fn set_kx_hint(&self, _: ServerName<'static>, group: rustls::NamedGroup) {
        self.lock().kx_hint = Some(group);
    }
    fn kx_hint(&self, _: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.lock().kx_hint
    }
    fn set_tls12_session(
        &self,
        _: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.lock().tls12 = Some((Instant::now(), value));
    }
    fn tls12_session(&self, _: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        let mut c = self.lock();
        match c.tls12.take() {
            Some((at, v)) if self.fresh(at) => {
                c.tls12 = Some((at, v.clone()));
                Some(v)
            }
            _ => None,
        }
    }
    fn remove_tls12_session(&self, _: &ServerName<'static>) {
        self.lock().tls12 = None;
    }
    fn insert_tls13_ticket(
        &self,
        _: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        let mut c = self.lock();
        if c.tls13.len() >= self.size {
            c.tls13.pop_front();
        }
        c.tls13.push_back((Instant::now(), value));
    }
    fn take_tls13_ticket(
        &self,
        _: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        let mut c = self.lock();
        while let Some((at, v)) = c.tls13.pop_back() {
            if self.fresh(at) {
                return Some(v);
            }
            // Older ones are older still.
            c.tls13.clear();
        }
        None
    }
}

/// The clients' TLS sessions the router resumes, with MySQL Router's
/// `client_ssl_session_cache_size` (sessions kept) and `_timeout` (age after which a
/// session is not resumed); rustls' own memory cache has no age limit.
#[derive(Debug)]
struct ClientSessions {
    size: usize,
    timeout: Duration,
    inner: Mutex<ClientSessionsInner>,
}

#[derive(Debug, Default)]
struct ClientSessionsInner {
    map: HashMap<Vec<u8>, (Instant, Vec<u8>)>,
    /// Keys in insertion order (some already taken), for evicting the oldest.
    order: VecDeque<Vec<u8>>,
}

impl ClientSessions {
    fn new(size: usize, timeout: Duration) -> Self {
        ClientSessions {
            size: size.max(1),
            timeout,
            inner: Mutex::new(ClientSessionsInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClientSessionsInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()) // ok: plain data
    }
}

impl rustls::server::StoresServerSessions for ClientSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let mut c = self.lock();
        while c.map.len() >= self.size {
            let Some(old) = c.order.pop_front() else {
                break;
            };
            c.map.remove(&old);
        }
        if c.order.len() > 2 * self.size {
            let ClientSessionsInner { map, order } = &mut *c;
            order.retain(|k| map.contains_key(k));
        }
        c.order.push_back(key.clone());
        c.map.insert(key, (Instant::now(), value));
        true
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let c = self.lock();
        let (at, v) = c.map.get(key)?;
        (at.elapsed() < self.timeout).then(|| v.clone())
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let (at, v) = self.lock().map.remove(key)?;
        (at.elapsed() < self.timeout).then_some(v)
    }
    fn can_cache(&self) -> bool {
        true
    }
}

/// What a terminating route needs for TLS.
pub struct Contexts {
    /// TLS towards clients (absent with `client_ssl_mode = DISABLED`).
    pub acceptor: Option<tokio_rustls::TlsAcceptor>,
    /// TLS towards servers (absent with `server_ssl_mode = DISABLED`).
    pub connector: Option<Connectors>,
    /// Lines to log at WARNING once the route starts.
    pub warnings: Vec<String>,
    /// The router's RSA key (that of `client_ssl_cert`, when RSA), for clients without
    /// TLS whose password must reach a TLS server hop (`session::rsa::RouterKey`).
    pub router_key: Option<super::rsa::RouterKey>,
}

fn show(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn io_reason(e: &std::io::Error) -> String {
    crate::logging::strerror(e)
}

fn pem_reason(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io_reason(&io),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item found".into(),
        other => format!("{other:?}"),
    }
}

/// OpenSSL cipher names of the TLS 1.2 suites rustls offers.
const CIPHER_NAMES: &[(&str, rustls::SupportedCipherSuite)] = &[
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        provider::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        provider::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        provider::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// A crypto provider restricted by the cipher and curve options.
fn provider_for(
    cipher: &Option<String>,
    curves: &Option<String>,
    side: &'static str,
) -> Result<CryptoProvider, TlsError> {
    let mut p = provider::default_provider();
    if let Some(list) = cipher {
        let mut tls12: Vec<rustls::SupportedCipherSuite> = Vec::new();
        for name in list.split(':').map(str::trim) {
            if let Some((_, s)) = CIPHER_NAMES
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                if !tls12.contains(s) {
                    tls12.push(*s);
                }
            }
        }
        if tls12.is_empty() {
            return Err(TlsError::Option {
                option: if side == "client" {
                    "client_ssl_cipher"
                } else {
                    "server_ssl_cipher"
                },
                value: list.clone(),
                reason: "no cipher match".into(),
            });
        }
        p.cipher_suites
            .retain(|s| s.version() == &rustls::version::TLS13 || tls12.contains(s));
    }
    if let Some(list) = curves {
        let mut groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup> = Vec::new();
        for name in list.split(':').map(str::trim) {
            let g = match name.to_ascii_lowercase().as_str() {
                "p-256" | "prime256v1" | "secp256r1" => provider::kx_group::SECP256R1,
                "p-384" | "secp384r1" => provider::kx_group::SECP384R1,
                "x25519" => provider::kx_group::X25519,
                _ => {
                    return Err(TlsError::Option {
                        option: if side == "client" {
                            "client_ssl_curves"
                        } else {
                            "server_ssl_curves"
                        },
                        value: list.clone(),
                        reason: format!("unknown curve '{name}'"),
                    })
                }
            };
            groups.push(g);
        }
        p.kx_groups = groups;
    }
    Ok(p)
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(pem_reason)?
        .collect();
    let certs = certs.map_err(pem_reason)?;
    if certs.is_empty() {
        return Err("no certificate found".into());
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(pem_reason)
}

/// Builds the contexts for a terminating route.
pub fn build(cfg: &TlsConfig) -> Result<Contexts, TlsError> {
    let mut warnings = Vec::new();
    let mut router_key = None;
    let acceptor = match (cfg.client_mode, &cfg.client_cert, &cfg.client_key) {
        (ClientSslMode::Preferred | ClientSslMode::Required, Some(cert), Some(key)) => {
            let bad = |reason: String| TlsError::CertKey {
                cert: cert.display().to_string(),
                key: key.display().to_string(),
                reason,
            };
            let certs = load_certs(cert).map_err(bad)?;
            let key = load_key(key).map_err(bad)?;
            router_key = super::rsa::RouterKey::new(&key);
            let p = provider_for(&cfg.client_cipher, &cfg.client_curves, "client")?;
            let mut sc = rustls::ServerConfig::builder_with_provider(Arc::new(p))
                .with_safe_default_protocol_versions()
                .map_err(|e| bad(e.to_string()))?
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .map_err(|e| bad(e.to_string()))?;
            sc.session_storage = if cfg.client_session_cache {
                Arc::new(ClientSessions::new(
                    cfg.client_session_cache_size,
                    cfg.client_session_cache_timeout,
                ))
            } else {
                Arc::new(rustls::server::NoServerSessionStorage {})
            };
            if let Some(dh) = &cfg.client_dh_params {
                std::fs::metadata(dh).map_err(|e| TlsError::DhParams(io_reason(&e)))?;
                warnings.push(format!(
                    "[{}] client_ssl_dh_params={} is not used: this router's TLS library (rustls) has no finite-field DHE; ECDHE key exchange is used instead",
                    cfg.section,
                    dh.display()
                ));
            }
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(sc)))
        }
        _ => None,
    };
    let connector = if cfg.server_mode == ServerSslMode::Disabled {
        None
    } else {
        Some(Connectors {
            base: client_config(cfg)?,
            cache: cfg.server_session_cache.then_some((
                cfg.server_session_cache_size,
                cfg.server_session_cache_timeout,
            )),
            per_destination: Mutex::new(HashMap::new()),
        })
    };
    Ok(Contexts {
        acceptor,
        connector,
        warnings,
        router_key,
    })
}

fn client_config(cfg: &TlsConfig) -> Result<rustls::ClientConfig, TlsError> {
    let p = Arc::new(provider_for(
        &cfg.server_cipher,
        &cfg.server_curves,
        "server",
    )?);
    let ca_err = |reason: String| TlsError::Ca {
        ca: show(&cfg.server_ca),
        capath: show(&cfg.server_capath),
        reason,
    };
    let verifier: Arc<dyn ServerCertVerifier> = if cfg.verify == SslVerify::Disabled {
        // MySQL Router's default: encrypt, but do not check who answers.
        if let Some(ca) = &cfg.server_ca {
            load_certs(ca).map_err(ca_err)?; // still checked, as MySQL Router does
        }
        Arc::new(AcceptAny(p.clone()))
    } else {
        let mut roots = RootCertStore::empty();
        let mut files: Vec<PathBuf> = cfg.server_ca.iter().cloned().collect();
        if let Some(dir) = &cfg.server_capath {
            files.extend(dir_files(dir).map_err(ca_err)?);
        }
        for f in &files {
            for c in load_certs(f).map_err(ca_err)? {
                roots.add(c).map_err(|e| ca_err(e.to_string()))?;
            }
        }
        let mut crls: Vec<CertificateRevocationListDer<'static>> = Vec::new();
        let mut crl_files: Vec<PathBuf> = cfg.server_crl.iter().cloned().collect();
        if let Some(dir) = &cfg.server_crlpath {
            crl_files.extend(dir_files(dir).map_err(|reason| TlsError::Option {
                option: "server_ssl_crlpath",
                value: dir.display().to_string(),
                reason,
            })?);
        }
        for f in &crl_files {
            let list: Result<Vec<_>, _> = CertificateRevocationListDer::pem_file_iter(f)
                .map_err(|e| TlsError::Option {
                    option: "server_ssl_crl",
                    value: f.display().to_string(),
                    reason: pem_reason(e),
                })?
                .collect();
            crls.extend(list.map_err(|e| TlsError::Option {
                option: "server_ssl_crl",
                value: f.display().to_string(),
                reason: pem_reason(e),
            })?);
        }
        let mut b = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), p.clone());
        if !crls.is_empty() {
            b = b.with_crls(crls);
        }
        let webpki = b.build().map_err(|e| ca_err(e.to_string()))?;
        if cfg.verify == SslVerify::VerifyCa {
            Arc::new(ChainOnly(webpki))
        } else {
            webpki
        }
    };
    let builder = rustls::ClientConfig::builder_with_provider(p)
        .with_safe_default_protocol_versions()
        .map_err(|e| ca_err(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut cc = match (&cfg.server_cert, &cfg.server_key) {
        (Some(cert), Some(key)) => {
            let bad = |reason: String| TlsError::ClientCert {
                cert: cert.display().to_string(),
                key: key.display().to_string(),
                reason,
            };
            builder
                .with_client_auth_cert(load_certs(cert).map_err(bad)?, load_key(key).map_err(bad)?)
                .map_err(|e| bad(e.to_string()))?
        }
        _ => builder.with_no_client_auth(),
    };
    // Resumption is set per destination (`Connectors::get`).
    cc.resumption = rustls::client::Resumption::disabled();
    Ok(cc)
}

/// The files of a `*_capath` / `*_crlpath` folder.
fn dir_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| io_reason(&e))? {
        let e = e.map_err(|e| io_reason(&e))?;
        if e.path().is_file() {
            v.push(e.path());
        }
    }
    v.sort();
    Ok(v)
}

/// `server_ssl_verify = DISABLED`: any certificate is accepted (signatures of the
/// handshake are still checked, so the session keys are the peer's).
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `VERIFY_CA`: the chain must lead to a configured CA; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
