//! RSA for caching_sha2 / sha256 full authentication:
//! * over a plain-TCP server hop: the password, XOR the server's nonce, encrypted with
//!   the server's public key (RSA-OAEP with SHA-1, as MySQL's clients do).
//!   RustCrypto's `rsa` crate, for encryption only (its known timing issue is in
//!   decryption).
//! * from a client without TLS, for a TLS server hop: [`RouterKey`], the router's own
//!   key, decrypts what the client sent (aws-lc-rs, constant-time).

use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::{Oaep, RsaPublicKey};

/// Encrypts `password` (as the client sent it, NUL-terminated) for the server whose
/// PEM public key is `pem`.
pub fn encrypt_password(pem: &[u8], password: &[u8], nonce: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "the server's public key is not PEM")?;
    let key = RsaPublicKey::from_public_key_pem(text)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(text))
        .map_err(|e| format!("the server's public key cannot be read: {e}"))?;
    if nonce.is_empty() {
        return Err("no nonce to scramble the password with".into());
    }
    let mut buf = password.to_vec();
    if buf.last() != Some(&0) {
        buf.push(0);
    }
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= nonce[i % nonce.len()];
    }
    key.encrypt(&mut rsa::rand_core::OsRng, Oaep::new::<sha1::Sha1>(), &buf)
        .map_err(|e| format!("encrypting the password failed: {e}"))
}

/// The router's own RSA key (MySQL Router uses its `client_ssl_key` the same way): a
/// client without TLS that must send its password for caching_sha2 full authentication
/// (or sha256_password) asks for "the server's" public key and gets this one; the
/// router decrypts the password and sends it to the server over the TLS server hop,
/// where the server wants it in clear. aws-lc-rs's OAEP decryption, constant-time
/// (RustCrypto's `rsa` is not: RUSTSEC-2023-0071).
pub struct RouterKey {
    key: aws_lc_rs::rsa::OaepPrivateDecryptingKey,
    pem: Vec<u8>,
}

impl std::fmt::Debug for RouterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouterKey")
    }
}

impl RouterKey {
    /// The key, from a private key in PKCS#8 or PKCS#1 DER; `None` for keys that are
    /// not RSA (an ECDSA certificate: such clients get the server's own answer).
    pub fn new(private: &rustls::pki_types::PrivateKeyDer<'_>) -> Option<RouterKey> {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::rsa::{OaepPrivateDecryptingKey, PrivateDecryptingKey};
        use base64::Engine;
        let pkcs8 = match private {
            rustls::pki_types::PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
            rustls::pki_types::PrivateKeyDer::Pkcs1(k) => pkcs1_to_pkcs8(k.secret_pkcs1_der())?,
            _ => return None,
        };
        let private = PrivateDecryptingKey::from_pkcs8(&pkcs8).ok()?;
        let der = private.public_key().as_der().ok()?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let mut pem = b"-----BEGIN PUBLIC KEY-----\n".to_vec();
        for line in b64.as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END PUBLIC KEY-----\n");
        Some(RouterKey {
            key: OaepPrivateDecryptingKey::new(private).ok()?,
            pem,
        })
    }

    /// The public key as PEM, as a server sends its own.
    pub fn public_pem(&self) -> &[u8] {
        &self.pem
    }

    /// The client's password from RSA-OAEP(SHA-1)(password XOR nonce), NUL-terminated
    /// as the client sent it.
    pub fn decrypt_password(&self, enc: &[u8], nonce: &[u8]) -> Result<Vec<u8>, String> {
        if nonce.is_empty() {
            return Err("no nonce to unscramble the password with".into());
        }
        let mut out = vec![0u8; self.key.min_output_size()];
        let plain = self
            .key
            .decrypt(&aws_lc_rs::rsa::OAEP_SHA1_MGF1SHA1, enc, &mut out, None)
            .map_err(|_| "the client's encrypted password cannot be decrypted".to_string())?;
        let mut p = plain.to_vec();
        for (i, b) in p.iter_mut().enumerate() {
            *b ^= nonce[i % nonce.len()];
        }
        Ok(p)
    }
}

/// PKCS#1 RSAPrivateKey DER wrapped as a PKCS#8 PrivateKeyInfo (version 0, algorithm
/// rsaEncryption with NULL parameters).
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Option<Vec<u8>> {
    fn der_len(n: usize, out: &mut Vec<u8>) {
        match n {
            0..=0x7f => out.push(n as u8),
            0x80..=0xff => out.extend_from_slice(&[0x81, n as u8]),
            0x100..=0xffff => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
            _ => out.extend_from_slice(&[0x83, (n >> 16) as u8, (n >> 8) as u8, n as u8]),
        }
    }
    if pkcs1.len() > 0xff_ffff {
        return None;
    }
    // INTEGER 0, SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }
    const HEAD: &[u8] = &[
        0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01,
        0x01, 0x05, 0x00,
    ];
    let mut octets = vec![0x04];
    der_len(pkcs1.len(), &mut octets);
    octets.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    der_len(HEAD.len() + octets.len(), &mut out);
    out.extend_from_slice(HEAD);
    out.extend_from_slice(&octets);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_router_key_decrypts_what_a_client_encrypts_with_it() {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::EncodePrivateKey;
        let mut rng = rsa::rand_core::OsRng;
        let private = RsaPrivateKey::new(&mut rng, 2048).unwrap(); // ok: test code
        let nonce = b"0123456789abcdefghij";
        let pkcs8 = private.to_pkcs8_der().unwrap(); // ok: test code
        let pkcs1 = private.to_pkcs1_der().unwrap(); // ok: test code
        for der in [
            rustls::pki_types::PrivateKeyDer::Pkcs8(pkcs8.as_bytes().to_vec().into()),
            rustls::pki_types::PrivateKeyDer::Pkcs1(pkcs1.as_bytes().to_vec().into()),
        ] {
            let key = RouterKey::new(&der).expect("an RSA key"); // ok: test code

            // What a client does with the PEM it was sent.
            let enc = encrypt_password(key.public_pem(), b"s3cret\0", nonce).unwrap(); // ok: test code
            assert_eq!(key.decrypt_password(&enc, nonce).unwrap(), b"s3cret\0"); // ok: test code
            assert!(key.decrypt_password(&enc[1..], nonce).is_err());
            assert!(key.decrypt_password(b"junk", nonce).is_err());
        }
    }
    use rsa::pkcs8::EncodePublicKey;
    use rsa::RsaPrivateKey;

    #[test]
    fn the_server_can_decrypt_what_we_send() {
        let mut rng = rsa::rand_core::OsRng;
        let private = RsaPrivateKey::new(&mut rng, 1024).unwrap(); // ok: test code
        let pem = private
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap(); // ok: test code
        let nonce = b"0123456789abcdefghij";
        let enc = encrypt_password(pem.as_bytes(), b"s3cret\0", nonce).unwrap(); // ok: test code
        let mut plain = private.decrypt(Oaep::new::<sha1::Sha1>(), &enc).unwrap(); // ok: test code
        for (i, b) in plain.iter_mut().enumerate() {
            *b ^= nonce[i % nonce.len()];
        }
        assert_eq!(plain, b"s3cret\0");
    }

    #[test]
    fn garbage_keys_are_errors_not_panics() {
        assert!(encrypt_password(b"not a key", b"p", b"n").is_err());
        assert!(encrypt_password(&[0xff, 0xfe], b"p", b"n").is_err());
    }
}
