//! MySQL Router's password files (`[http_auth_backend] backend=file`, written by
//! `mysqlrouter_passwd`): one `user:hash` line per account, the hash in modular crypt
//! format — `$5$` (sha256-crypt), `$6$` (sha512-crypt), `$pbkdf2-sha256$` and
//! `$pbkdf2-sha512$` (`$<id>$<rounds>$<salt>$<hash>`, salt and hash in the "adapted"
//! base64 that writes `.` for `+` and drops the padding).
//!
//! Pure apart from [`PasswdFile::read`]/[`PasswdFile::write`]; no password ever reaches a
//! log or an error message.

use std::path::Path;

use base64::Engine;
use sha2::{Sha256, Sha512};

/// The key derivation functions `mysqlrouter_passwd --kdf` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kdf {
    Sha256Crypt,
    Sha512Crypt,
    Pbkdf2Sha256,
    Pbkdf2Sha512,
}

impl Kdf {
    pub fn from_name(name: &str) -> Option<Kdf> {
        Some(match name {
            "sha256-crypt" => Kdf::Sha256Crypt,
            "sha512-crypt" => Kdf::Sha512Crypt,
            "pbkdf2-sha256" => Kdf::Pbkdf2Sha256,
            "pbkdf2-sha512" => Kdf::Pbkdf2Sha512,
            _ => return None,
        })
    }
}

/// The default work factor: rounds of sha-crypt, iterations of PBKDF2.
pub const DEFAULT_ROUNDS: u32 = 5000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswdError {
    /// A line without `:`, or with an empty user or hash (MySQL Router's "parse error").
    #[error("parse error")]
    Parse,
    #[error("{0}")]
    Io(String),
    #[error("unknown scheme")]
    UnknownScheme,
    #[error("{0}")]
    Hash(String),
}

/// Whether a password matches a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Match,
    Mismatch,
    /// The hash is not in a format we know (the account cannot log in).
    Unusable,
}

/// The accounts of one file, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswdFile {
    pub entries: Vec<(String, String)>,
}

/// MySQL Router's (and passlib's) base64 variant for PBKDF2 hashes.
fn ab64_encode(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .encode(b)
        .replace('+', ".")
}

fn ab64_decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s.replace('.', "+").trim_end_matches('='))
        .ok()
}

impl PasswdFile {
    /// Parses a file's text. Every line must be `user:hash` with both parts non-empty
    /// (MySQL Router rejects the whole file otherwise, blank lines included); the first
    /// line of a user wins. Lines end at `\n` only, as MySQL Router reads them: a `\r`
    /// before it is part of the hash (so a CRLF file logs nobody in, as there), and
    /// what [`PasswdFile::render`] writes parses back to the same accounts.
    pub fn parse(text: &str) -> Result<PasswdFile, PasswdError> {
        let mut entries: Vec<(String, String)> = Vec::new();
        for line in text.split_terminator('\n') {
            let Some((user, hash)) = line.split_once(':') else {
                return Err(PasswdError::Parse);
            };
            if user.is_empty() || hash.is_empty() {
                return Err(PasswdError::Parse);
            }
            if !entries.iter().any(|(u, _)| u == user) {
                entries.push((user.to_string(), hash.to_string()));
            }
        }
        Ok(PasswdFile { entries })
    }

    /// Reads a file; a missing file is an error (the tool treats it as empty itself).
    pub fn read(path: &Path) -> Result<PasswdFile, PasswdError> {
        let bytes =
            std::fs::read(path).map_err(|e| PasswdError::Io(crate::logging::strerror(&e)))?;
        PasswdFile::parse(&String::from_utf8_lossy(&bytes))
    }

    pub fn render(&self) -> String {
        self.entries
            .iter()
            .map(|(u, h)| format!("{u}:{h}\n"))
            .collect()
    }

    /// Writes the file with mode 0600 (it holds password hashes).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(self.render().as_bytes())
    }

    pub fn get(&self, user: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, h)| h.as_str())
    }

    pub fn set(&mut self, user: &str, hash: String) {
        match self.entries.iter_mut().find(|(u, _)| u == user) {
            Some(e) => e.1 = hash,
            None => self.entries.push((user.to_string(), hash)),
        }
    }

    /// Removes `user`; whether it was there.
    pub fn delete(&mut self, user: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(u, _)| u != user);
        before != self.entries.len()
    }
}

/// Checks `password` against a stored modular-crypt hash.
pub fn verify(password: &str, hash: &str) -> Verdict {
    let Some(rest) = hash.strip_prefix('$') else {
        return Verdict::Unusable;
    };
    let Some((id, _)) = rest.split_once('$') else {
        return Verdict::Unusable;
    };
    match id {
        "5" | "6" => verify_sha_crypt(password, id == "6", rest),
        "pbkdf2-sha256" | "pbkdf2-sha512" => verify_pbkdf2(password, id, rest),
        _ => Verdict::Unusable,
    }
}

/// `<id>$[rounds=N$]<salt>$<checksum>` with glibc's rules: the salt is cut to 16
/// characters and the rounds are clamped to 1000..=999999999.
fn verify_sha_crypt(password: &str, sha512: bool, rest: &str) -> Verdict {
    let mut parts: Vec<&str> = rest.split('$').skip(1).collect();
    let mut rounds = DEFAULT_ROUNDS as usize;
    if let Some(r) = parts.first().and_then(|p| p.strip_prefix("rounds=")) {
        let Ok(r) = r.parse::<u64>() else {
            return Verdict::Unusable;
        };
        rounds = r.clamp(1000, 999_999_999) as usize;
        parts.remove(0);
    }
    let [salt, sum] = parts[..] else {
        return Verdict::Unusable;
    };
    let salt = &salt.as_bytes()[..salt.len().min(16)];
    let computed = if sha512 {
        sha_crypt::Sha512Params::new(rounds)
            .ok()
            .and_then(|p| sha_crypt::sha512_crypt_b64(password.as_bytes(), salt, &p).ok())
    } else {
        sha_crypt::Sha256Params::new(rounds)
            .ok()
            .and_then(|p| sha_crypt::sha256_crypt_b64(password.as_bytes(), salt, &p).ok())
    };
    match computed {
        Some(c) if constant_time_eq(c.as_bytes(), sum.as_bytes()) => Verdict::Match,
        Some(_) => Verdict::Mismatch,
        None => Verdict::Unusable,
    }
}

fn verify_pbkdf2(password: &str, id: &str, rest: &str) -> Verdict {
    // rest = "<id>$<rounds>$<salt>$<checksum>"
    let mut parts = rest.splitn(4, '$').skip(1);
    let (Some(rounds), Some(salt), Some(sum)) = (parts.next(), parts.next(), parts.next()) else {
        return Verdict::Unusable;
    };
    let (Ok(rounds), Some(salt), Some(sum)) =
        (rounds.parse::<u32>(), ab64_decode(salt), ab64_decode(sum))
    else {
        return Verdict::Unusable;
    };
    if rounds == 0 {
        return Verdict::Unusable;
    }
    let derived = pbkdf2_derive(id == "pbkdf2-sha512", password, &salt, rounds);
    if constant_time_eq(&derived, &sum) {
        Verdict::Match
    } else {
        Verdict::Mismatch
    }
}

fn pbkdf2_derive(sha512: bool, password: &str, salt: &[u8], rounds: u32) -> Vec<u8> {
    if sha512 {
        let mut out = vec![0u8; 64];
        pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, rounds, &mut out);
        out
    } else {
        let mut out = vec![0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, rounds, &mut out);
        out
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new hash of `password` with a random salt, as `mysqlrouter_passwd set` writes it.
pub fn hash(password: &str, kdf: Kdf, rounds: u32) -> Result<String, PasswdError> {
    let bad = |e: &dyn std::fmt::Debug| PasswdError::Hash(format!("{e:?}"));
    match kdf {
        Kdf::Sha256Crypt => {
            let p = sha_crypt::Sha256Params::new(rounds as usize).map_err(|e| bad(&e))?;
            sha_crypt::sha256_simple(password, &p).map_err(|e| bad(&e))
        }
        Kdf::Sha512Crypt => {
            let p = sha_crypt::Sha512Params::new(rounds as usize).map_err(|e| bad(&e))?;
            sha_crypt::sha512_simple(password, &p).map_err(|e| bad(&e))
        }
        Kdf::Pbkdf2Sha256 | Kdf::Pbkdf2Sha512 => {
            let mut salt = [0u8; 16];
            getrandom::fill(&mut salt).map_err(|e| PasswdError::Hash(e.to_string()))?;
            let sha512 = kdf == Kdf::Pbkdf2Sha512;
            let sum = pbkdf2_derive(sha512, password, &salt, rounds.max(1));
            Ok(format!(
                "$pbkdf2-sha{}${}${}${}",
                if sha512 { 512 } else { 256 },
                rounds.max(1),
                ab64_encode(&salt),
                ab64_encode(&sum)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made by Oracle's mysqlrouter_passwd 9.7.4 for the password "secret".
    const ORACLE: &[&str] = &[
        "$5$CMYVtzTN/fBGshh9$VIQP11/xbpvjmJ0PY4HDkbv22rHp2VWcr47to/4Nqx8",
        "$pbkdf2-sha256$5000$.BrNWJ70AIXMs1FAvLX2xA$Acqn2EmeAa3AbqOIyin/0e0jj.X9ajZ9rpTGrtHu4n4",
        "$pbkdf2-sha512$1000$s2hraUlBauyv5XtGxOqakQ$/M/c68rnCjRyEQNCXlrKsC.IS11Z8aeeV4CEl9qmC0Pm55NrpS3hXCLyOh6D0GRt8.WkYGYxFSh1PW2ppUgiRw",
        "$6$0VxgYKIYAXxg87Y4$VBbVq.GC/rp2rQZfoIvhwWjNPen6nk5YcmMSIvj0bMH0UGkw.xyGMMDOcpHEms4Mi/e2ccqc6235QzttfHHju/",
        "$5$rounds=6000$FlPMPDjVdgdOVYwX$l7MljyvbdWTe8qUCNsUGGN4QnCxRjQYyqeJXNtDIOb8",
    ];

    #[test]
    fn oracle_hashes_verify() {
        for h in ORACLE {
            assert_eq!(verify("secret", h), Verdict::Match, "{h}");
            assert_eq!(verify("Secret", h), Verdict::Mismatch, "{h}");
        }
        assert_eq!(verify("secret", "$1$abc$def"), Verdict::Unusable);
        assert_eq!(verify("secret", "plain"), Verdict::Unusable);
        assert_eq!(verify("secret", "$pbkdf2-sha256$x$a$b"), Verdict::Unusable);
    }

    #[test]
    fn our_hashes_verify_and_have_oracles_shape() {
        for (kdf, prefix) in [
            (Kdf::Sha256Crypt, "$5$"),
            (Kdf::Sha512Crypt, "$6$"),
            (Kdf::Pbkdf2Sha256, "$pbkdf2-sha256$5000$"),
            (Kdf::Pbkdf2Sha512, "$pbkdf2-sha512$5000$"),
        ] {
            let h = hash("pw", kdf, DEFAULT_ROUNDS).unwrap(); // ok: test code
            assert!(h.starts_with(prefix), "{h}");
            assert_eq!(verify("pw", &h), Verdict::Match);
            assert_eq!(verify("px", &h), Verdict::Mismatch);
        }
        let h = hash("pw", Kdf::Sha256Crypt, 6000).unwrap(); // ok: test code
        assert!(h.starts_with("$5$rounds=6000$"), "{h}");
    }

    #[test]
    fn file_rules_as_mysql_router() {
        let f = PasswdFile::parse("a:$5$x$y\nb:$6$x$y\na:$5$other\n").unwrap(); // ok: test code
        assert_eq!(f.get("a"), Some("$5$x$y"), "the first line of a user wins");
        assert_eq!(f.entries.len(), 2);
        for bad in ["junk\n", "a:$5$x$y\n\n", ":$5$x\n", "a:\n", "# comment\n"] {
            assert_eq!(PasswdFile::parse(bad), Err(PasswdError::Parse), "{bad:?}");
        }
        assert_eq!(PasswdFile::parse("").unwrap().entries.len(), 0); // ok: test code

        // Found by tests/fuzz.rs (passwd): `u:\r` at the end of a file parsed (hash
        // "\r"), rendered as `u:\r\n`, and that no longer parsed (a `\r\n` line end
        // was stripped whole). Lines now end at `\n` only, as in MySQL Router 9.7.4,
        // which also logs nobody in from a CRLF file (checked side by side).
        let crlf = PasswdFile::parse("a:$5$x$y\r\nu:\r").unwrap(); // ok: test code
        assert_eq!(crlf.get("a"), Some("$5$x$y\r"));
        assert_eq!(crlf.get("u"), Some("\r"));
        assert_eq!(PasswdFile::parse(&crlf.render()), Ok(crlf));
        let mut f = f;
        f.set("c", "h".into());
        assert!(f.delete("a"));
        assert!(!f.delete("zz"));
        assert_eq!(f.render(), "b:$6$x$y\nc:h\n");
    }
}
