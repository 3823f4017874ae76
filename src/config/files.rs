//! Which configuration files are read, in which order, and their file-level errors.

use std::path::{Path, PathBuf};

/// `/etc/mysqlrouter/mysqlrouter.conf` and `$HOME/.mysqlrouter.conf`, each followed by
/// its `.ini` fallback, in the order they are tried.
pub fn default_config_candidates() -> Vec<PathBuf> {
    let mut bases = vec![PathBuf::from(format!(
        "{}/mysqlrouter.conf",
        super::folders::CONFIG
    ))];
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        bases.push(PathBuf::from(home).join(".mysqlrouter.conf"));
    }
    bases
        .into_iter()
        .flat_map(|conf| {
            let ini = conf.with_extension("ini");
            [conf, ini]
        })
        .collect()
}

pub fn is_readable_file(p: &Path) -> bool {
    p.is_file() && std::fs::File::open(p).is_ok()
}

fn absolute(p: &str) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| PathBuf::from(p))
}

fn check_file(p: &Path) -> Result<(), String> {
    let shown = p.display();
    if !p.exists() {
        return Err(format!("The configuration file '{shown}' does not exist."));
    }
    if p.is_dir() {
        return Err(format!(
            "The configuration file '{shown}' is expected to be a readable file, but it is a directory."
        ));
    }
    if std::fs::File::open(p).is_err() {
        return Err(format!("The configuration file '{shown}' is not readable."));
    }
    Ok(())
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Resolves `-c` / `-a` / default files into the list to read, in order.
/// Errors are MySQL Router's texts (without the `Error: ` prefix).
pub fn resolve(config: Option<&str>, extra: &[String]) -> Result<Vec<PathBuf>, String> {
    resolve_with(config, extra, &default_config_candidates())
}

pub fn resolve_with(
    config: Option<&str>,
    extra: &[String],
    candidates: &[PathBuf],
) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = Vec::new();
    match config {
        Some(c) => {
            let p = absolute(c);
            check_file(&p)?;
            files.push(p);
        }
        None => {
            // A `.conf` that cannot be read falls back to the `.ini` beside it.
            for pair in candidates.chunks(2) {
                if let Some(p) = pair.iter().find(|p| is_readable_file(p)) {
                    files.push(p.clone());
                }
            }
        }
    }
    if files.is_empty() {
        if extra.is_empty() {
            return Err(format!(
                "None of the default configuration files is readable and --config=<file> was not specified.\nChecked default configuration files:\n\n{}",
                list(candidates)
            ));
        }
        let extras: Vec<String> = extra
            .iter()
            .map(|e| absolute(e).display().to_string())
            .collect();
        return Err(format!(
            "Extra configuration files {} provided, but neither default configuration files nor --config=<file> are readable files.\nChecked:\n\n{}",
            extras.join(", "),
            list(candidates)
        ));
    }
    for e in extra {
        let p = absolute(e);
        check_file(&p)?;
        if files.contains(&p) {
            return Err(format!(
                "The configuration file '{}' is provided multiple times.\nAlready known configuration files:\n\n{}",
                p.display(),
                list(&files)
            ));
        }
        files.push(p);
    }
    Ok(files)
}
