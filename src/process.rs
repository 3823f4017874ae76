//! Process-level duties: pid file, switching user, systemd notifications.

use std::io::Write;
use std::path::{Path, PathBuf};

use nix::unistd::{Pid, Uid, User};

/// Where the pid file goes: `--pid-file` > `[DEFAULT] pid_file` > `ROUTER_PID`.
/// A relative path is under the runtime folder.
pub fn pid_file_path(
    cli: Option<&str>,
    config: Option<&str>,
    runtime_folder: &str,
) -> Result<Option<PathBuf>, String> {
    let env = std::env::var("ROUTER_PID").ok();
    let chosen = cli.or(config).or(env.as_deref());
    match chosen {
        None => Ok(None),
        Some("") => Err("PID filename '' is illegal.".into()),
        Some(p) => {
            let p = Path::new(p);
            Ok(Some(if p.is_absolute() {
                p.to_path_buf()
            } else {
                Path::new(runtime_folder).join(p)
            }))
        }
    }
}

fn process_alive(pid: i32) -> bool {
    // Signal 0 checks existence; EPERM still means "exists".
    pid > 0
        && !matches!(
            nix::sys::signal::kill(Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        )
}

/// Reads an existing pid file without following a symbolic link. `Ok(None)`: there is
/// none. A link or anything but a regular file is refused: in a folder others can
/// write to, a link planted there would make a root router overwrite its target.
fn read_existing_pid_file(path: &Path) -> Result<Option<String>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "Failed to open PID file '{}': {}",
                path.display(),
                crate::logging::strerror(&e)
            ))
        }
    };
    if !meta.file_type().is_file() {
        return Err(format!(
            "PID file '{}' exists and is not a regular file (a symbolic link?); refusing to use it",
            path.display()
        ));
    }
    let mut text = String::new();
    // O_NOFOLLOW: the file may have been swapped for a link since the check above.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| {
            format!(
                "Failed to open PID file '{}': {}",
                path.display(),
                crate::logging::strerror(&e)
            )
        })?;
    Ok(Some(text))
}

/// Writes our pid. A file naming a live process refuses the start; a stale one (its
/// process is gone, e.g. after a crash) is replaced with a warning. The new file is
/// created exclusively (`O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0644): never through a
/// symbolic link, never into a file someone else created in between.
pub fn write_pid_file(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(text) = read_existing_pid_file(path)? {
        let pid: i32 = text.trim().parse().unwrap_or(0);
        if process_alive(pid) && pid != std::process::id() as i32 {
            return Err(format!(
                "PID file {} found. Already running?",
                path.display()
            ));
        }
        tracing::warn!(
            target: "main",
            "PID file {} found, but process {} is not running; replacing it",
            path.display(),
            text.trim()
        );
        // unlink removes the entry itself, never a link's target.
        std::fs::remove_file(path).map_err(|e| {
            format!(
                "Failed to remove stale PID file '{}': {}",
                path.display(),
                crate::logging::strerror(&e)
            )
        })?;
    }
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| {
                format!(
                    "Failed to create directory '{}': {}",
                    dir.display(),
                    crate::logging::strerror(&e)
                )
            })?;
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            format!(
                "Failed to open PID file '{}': {}",
                path.display(),
                crate::logging::strerror(&e)
            )
        })?;
    writeln!(f, "{}", std::process::id())
        .map_err(|e| format!("Failed to write PID file '{}': {e}", path.display()))?;
    tracing::info!(target: "main", "PID {} written to '{}'", std::process::id(), path.display());
    Ok(())
}

/// Removes the pid file if it is still ours (a regular file naming this process): a
/// file another router wrote after ours was replaced is left alone.
pub fn remove_pid_file(path: &Path) {
    let ours = matches!(
        read_existing_pid_file(path),
        Ok(Some(t)) if t.trim().parse::<u32>().ok() == Some(std::process::id())
    );
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

/// Switches to `name` (supplementary groups, gid, then uid). Only root may switch;
/// switching to the current user is a no-op.
pub fn switch_user(name: &str) -> Result<(), String> {
    let user = User::from_name(name)
        .ok()
        .flatten()
        .ok_or_else(|| format!("Can't use user '{name}'. Please check that the user exists!"))?;
    if Uid::effective() == user.uid {
        return Ok(());
    }
    if !Uid::effective().is_root() {
        return Err(format!(
            "One can only use the -u/--user switch if running as root (tried to switch to '{name}')"
        ));
    }
    let cname = std::ffi::CString::new(name).map_err(|_| format!("Invalid user name '{name}'"))?;
    nix::unistd::initgroups(&cname, user.gid).map_err(|e| {
        format!(
            "Error trying to set the user. initgroups failed: {}",
            e.desc()
        )
    })?;
    nix::unistd::setgid(user.gid)
        .map_err(|e| format!("Error trying to set the user. setgid failed: {}", e.desc()))?;
    nix::unistd::setuid(user.uid)
        .map_err(|e| format!("Error trying to set the user. setuid failed: {}", e.desc()))?;
    // Must not be able to get root back.
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() && user.uid.as_raw() != 0 {
        return Err("Error trying to set the user: could regain root after setuid".into());
    }
    Ok(())
}

/// Sends a systemd notification when `NOTIFY_SOCKET` is set; silently nothing otherwise.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        // One log line per message (Oracle's router writes the raw newlines).
        tracing::debug!(
            target: "main",
            "NOTIFY_SOCKET is empty, skipping sending '{}' notification",
            state.trim_end().replace('\n', "\\n")
        );
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    let bytes = path.as_encoded_bytes();
    let res = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), Path::new(&path))
    };
    if let Err(e) = res {
        tracing::warn!(target: "main", "sending '{state}' to NOTIFY_SOCKET failed: {e}");
    }
}

/// `--core-file`: allow core dumps of any size (a crash aborts the process).
pub fn enable_core_file() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_CORE) {
        let _ = setrlimit(Resource::RLIMIT_CORE, hard, hard);
    }
    let _ = nix::sys::prctl::set_dumpable(true);
}

/// Raises the soft open-files limit to the hard limit: every relayed connection costs
/// two descriptors, and the default soft limit (often 1024) is far below what
/// `max_total_connections` allows.
pub fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}
