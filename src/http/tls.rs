//! `[http_server] ssl = 1`: the server's TLS configuration from `ssl_cert`, `ssl_key`
//! and `ssl_cipher` (rustls; OpenSSL cipher names are mapped to the suites rustls has).

use std::sync::Arc;

use rustls::crypto::aws_lc_rs as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{CipherSuite, SupportedCipherSuite};

use crate::config::http::TlsConfig;

/// Why TLS cannot be set up: MySQL Router's messages.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "using SSL private key file '{key}' or SSL certificate file '{cert}' failed: {reason}"
    )]
    KeyOrCert {
        key: String,
        cert: String,
        reason: String,
    },
    #[error("using ssl-cipher list failed: no cipher match")]
    NoCipherMatch,
}

/// OpenSSL's names of the TLS 1.2 suites rustls offers.
const OPENSSL_NAMES: &[(&str, CipherSuite)] = &[
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// The suites an OpenSSL-style list (`A:B:!C`) allows: TLS 1.3 suites always (OpenSSL's
/// cipher list does not govern them either), TLS 1.2 suites when named. Unknown names
/// are skipped as OpenSSL does; a list that names none fails as in OpenSSL.
fn suites(list: Option<&str>) -> Result<Vec<SupportedCipherSuite>, TlsError> {
    let all = provider::default_provider().cipher_suites;
    let Some(list) = list else {
        return Ok(all);
    };
    let wanted: Vec<CipherSuite> = list
        .split([':', ',', ' '])
        .filter_map(|n| OPENSSL_NAMES.iter().find(|(o, _)| *o == n).map(|(_, s)| *s))
        .collect();
    if wanted.is_empty() {
        return Err(TlsError::NoCipherMatch);
    }
    Ok(all
        .into_iter()
        .filter(|s| s.tls13().is_some() || wanted.contains(&s.suite()))
        .collect())
}

pub fn acceptor(cfg: &TlsConfig) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let fail = |reason: String| TlsError::KeyOrCert {
        key: cfg.key.display().to_string(),
        cert: cfg.cert.display().to_string(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no certificate found".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.key).map_err(|e| fail(e.to_string()))?;
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: suites(cfg.cipher.as_deref())?,
        ..provider::default_provider()
    };
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| fail(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_cipher_lists() {
        let all = suites(None).unwrap().len(); // ok: test code
        let some = suites(Some("ECDHE-RSA-AES128-GCM-SHA256:!aNULL:UNKNOWN")).unwrap(); // ok: test code
        assert!(some.len() < all);
        assert!(some
            .iter()
            .any(|s| s.suite() == CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256));
        assert!(matches!(suites(Some("NOPE")), Err(TlsError::NoCipherMatch)));
    }
}
