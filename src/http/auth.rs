//! HTTP Basic authentication against the realms of `[http_auth_realm:*]` and the
//! password files of `[http_auth_backend:*]`.
//!
//! As MySQL Router does, a backend re-reads its file when the file changed (size, mode,
//! owner or mtime), and remembers a double SHA-256 of each password that verified, so
//! that a monitoring system polling every second does not pay a 5000-round KDF per
//! request. Passwords are never logged.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

use base64::Engine;
use sha2::{Digest, Sha256};

use super::passwd::{self, PasswdError, PasswdFile, Verdict};
use crate::config::http::{BackendConfig, RealmConfig};

/// Why the HTTP server cannot start: MySQL Router's message.
#[derive(Debug, thiserror::Error)]
#[error("parsing {file} failed for section [http_auth_backend]: {reason}")]
pub struct BackendError {
    file: String,
    reason: PasswdError,
}

type FileStamp = (u64, u32, u32, u32, i64, i64);

fn stamp(path: &PathBuf) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.size(),
        m.mode(),
        m.uid(),
        m.gid(),
        m.mtime(),
        m.mtime_nsec(),
    ))
}

#[derive(Debug)]
struct Loaded {
    stamp: Option<FileStamp>,
    file: PasswdFile,
    /// user → SHA-256(SHA-256(password)) of the last password that verified.
    verified: HashMap<String, [u8; 32]>,
}

/// One `[http_auth_backend:*]`.
#[derive(Debug)]
pub struct Backend {
    path: Option<PathBuf>,
    state: Mutex<Loaded>,
}

impl Backend {
    /// Reads the password file (a `metadata_cache` backend has no accounts).
    pub fn load(cfg: &BackendConfig) -> Result<Backend, BackendError> {
        let file = match &cfg.filename {
            Some(p) => PasswdFile::read(p).map_err(|reason| BackendError {
                file: p.display().to_string(),
                reason,
            })?,
            None => PasswdFile::default(),
        };
        Ok(Backend {
            state: Mutex::new(Loaded {
                stamp: cfg.filename.as_ref().and_then(stamp),
                file,
                verified: HashMap::new(),
            }),
            path: cfg.filename.clone(),
        })
    }

    pub fn authenticate(&self, user: &str, password: &str) -> bool {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(path) = &self.path {
            let now = stamp(path);
            if now != g.stamp {
                // A file that became unreadable or invalid locks everyone out until it
                // is fixed, as in MySQL Router.
                g.file = PasswdFile::read(path).unwrap_or_default();
                g.stamp = now;
                g.verified.clear();
            }
        }
        let Some(hash) = g.file.get(user).map(str::to_string) else {
            return false;
        };
        let fingerprint: [u8; 32] = Sha256::digest(Sha256::digest(password.as_bytes())).into();
        if g.verified.get(user) == Some(&fingerprint) {
            return true;
        }
        let ok = passwd::verify(password, &hash) == Verdict::Match;
        if ok {
            g.verified.insert(user.to_string(), fingerprint);
        }
        ok
    }
}

/// All realms, by key.
#[derive(Debug, Default)]
pub struct Realms {
    realms: HashMap<String, (String, std::sync::Arc<Backend>)>,
}

/// The outcome of checking a request against a realm.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    Granted,
    /// Send 401 with `WWW-Authenticate: basic realm="<name>"`.
    Denied {
        realm_name: String,
    },
    /// An `Authorization` header of another scheme: 400, as MySQL Router answers.
    BadScheme,
}

impl Realms {
    pub fn load(
        realms: &[RealmConfig],
        backends: &[BackendConfig],
    ) -> Result<Realms, BackendError> {
        let mut loaded: HashMap<String, std::sync::Arc<Backend>> = HashMap::new();
        for b in backends {
            loaded.insert(b.key.clone(), std::sync::Arc::new(Backend::load(b)?));
        }
        let realms = realms
            .iter()
            .filter_map(|r| {
                loaded
                    .get(&r.backend)
                    .map(|b| (r.key.clone(), (r.name.clone(), b.clone())))
            })
            .collect();
        Ok(Realms { realms })
    }

    /// Checks the `Authorization` header of a request against realm `key`.
    pub fn check(&self, key: &str, authorization: Option<&str>) -> Check {
        let Some((name, backend)) = self.realms.get(key) else {
            // Config validation guarantees the realm exists; refuse if it does not.
            return Check::Denied {
                realm_name: key.to_string(),
            };
        };
        let denied = || Check::Denied {
            realm_name: name.clone(),
        };
        if let Some(h) = authorization {
            let scheme = h.trim().split(' ').next().unwrap_or("");
            if !scheme.eq_ignore_ascii_case("basic") {
                return Check::BadScheme;
            }
        }
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return denied();
        };
        if backend.authenticate(&user, &password) {
            Check::Granted
        } else {
            denied()
        }
    }
}

/// `Basic <base64(user:password)>` → (user, password).
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, creds) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(creds.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_against_a_file_that_changes() {
        let dir = std::env::temp_dir().join(format!("auth-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap(); // ok: test code
        let path = dir.join("pw");
        let h = passwd::hash("secret", passwd::Kdf::Sha256Crypt, 5000).unwrap(); // ok: test code
        std::fs::write(&path, format!("alice:{h}\n")).unwrap(); // ok: test code
        let backends = vec![BackendConfig {
            key: "b".into(),
            filename: Some(path.clone()),
        }];
        let realms = vec![RealmConfig {
            key: "r".into(),
            name: "Some Realm".into(),
            backend: "b".into(),
        }];
        let r = Realms::load(&realms, &backends).unwrap(); // ok: test code
        let basic = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        let denied = Check::Denied {
            realm_name: "Some Realm".into(),
        };
        assert_eq!(
            r.check("r", Some(&basic("alice", "secret"))),
            Check::Granted
        );
        assert_eq!(
            r.check("r", Some(&basic("alice", "secret"))),
            Check::Granted,
            "cached"
        );
        assert_eq!(r.check("r", Some(&basic("alice", "wrong"))), denied);
        assert_eq!(r.check("r", Some(&basic("bob", "secret"))), denied);
        assert_eq!(r.check("r", None), denied);
        assert_eq!(r.check("r", Some("Bearer xyz")), Check::BadScheme);
        assert_eq!(r.check("r", Some("Basic !!!")), denied);
        // The account is removed from the file: the cached password no longer works.
        std::fs::write(&path, "bob:$5$x$y\n").unwrap(); // ok: test code
        assert_eq!(r.check("r", Some(&basic("alice", "secret"))), denied);
        let missing = BackendConfig {
            key: "m".into(),
            filename: Some(dir.join("nope")),
        };
        assert_eq!(
            Backend::load(&missing).unwrap_err().to_string(),
            format!(
                "parsing {} failed for section [http_auth_backend]: No such file or directory",
                dir.join("nope").display()
            )
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
