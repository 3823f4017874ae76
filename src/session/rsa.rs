//! RSA for caching_sha2 / sha256 full authentication over a plain-TCP server hop:
//! the password, XOR the server's nonce, encrypted with the server's public key
//! (RSA-OAEP with SHA-1, as MySQL's clients do). RustCrypto's `rsa` crate: encryption
//! only (the router never decrypts, so the crate's known timing issue in decryption
//! does not apply).

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

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::EncodePublicKey;
    use rsa::RsaPrivateKey;

    #[test]
    fn the_server_can_decrypt_what_we_send() {
        let mut rng = rsa::rand_core::OsRng;
        let private = RsaPrivateKey::new(&mut rng, 1024).unwrap();
        let pem = private
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap();
        let nonce = b"0123456789abcdefghij";
        let enc = encrypt_password(pem.as_bytes(), b"s3cret\0", nonce).unwrap();
        let mut plain = private.decrypt(Oaep::new::<sha1::Sha1>(), &enc).unwrap();
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
