//! Helpers of the reliability suite (tests/reliability_*.rs): the router started under
//! resource limits, and what /proc says about a process (descriptors, threads, RSS, CPU
//! time).

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{router_bin, tmp_dir, Router};

/// Starts the router like [`Router::start_with`], with `RLIMIT_NOFILE` set to `nofile`
/// (soft and hard: the router raises its soft limit to the hard one at start) when given,
/// and `default_extra` lines in `[DEFAULT]`.
pub fn start_router(
    body: &str,
    ports: &[u16],
    level: &str,
    default_extra: &str,
    nofile: Option<u64>,
) -> Router {
    let dir = tmp_dir("router");
    let conf = dir.join("mysqlrouter.conf");
    let text = format!(
        "[DEFAULT]\nlogging_folder = {}\nruntime_folder = {}\n{default_extra}\n[logger]\nlevel = {level}\ntimestamp_precision = ms\n\n{body}\n",
        dir.display(),
        dir.display(),
    );
    std::fs::write(&conf, text).expect("write conf");
    let mut cmd = Command::new(router_bin());
    cmd.arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(n) = nofile {
        // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child here.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, n, n)
                    .map_err(std::io::Error::from)
            });
        }
    }
    let child = super::Proc::spawn(&mut cmd);
    let r = Router {
        child,
        log: dir.join("mysqlrouter.log"),
        dir,
        conf,
    };
    for p in ports {
        let line = format!("listening on '127.0.0.1:{p}'");
        assert!(
            r.wait_log(&line, Duration::from_secs(10)),
            "router does not listen on {p}; log:\n{}",
            r.log_text()
        );
    }
    r
}

/// A field of /proc/PID/status in its unit (kB for Vm*), 0 when absent.
pub fn status_field(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub fn threads(pid: i32) -> u64 {
    status_field(pid, "Threads")
}

pub fn rss_kb(pid: i32) -> u64 {
    status_field(pid, "VmRSS")
}

pub fn fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// User + system CPU time of a process so far.
pub fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime = field 14, stime = field 15.
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Duration::from_millis((ticks(14) + ticks(15)) * 1000 / hz)
}

/// Descriptors, threads and RSS of a process at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Footprint {
    pub fds: usize,
    pub threads: u64,
    pub rss_kb: u64,
}

pub fn footprint(pid: i32) -> Footprint {
    Footprint {
        fds: fds(pid),
        threads: threads(pid),
        rss_kb: rss_kb(pid),
    }
}

/// Waits (bounded) until the process's descriptors and threads are back at `idle`'s
/// and its RSS within `rss_slack_kb` of it; the last footprint seen.
pub fn settle(pid: i32, idle: Footprint, rss_slack_kb: u64, max: Duration) -> Footprint {
    let deadline = std::time::Instant::now() + max;
    loop {
        let now = footprint(pid);
        let back = now.fds <= idle.fds
            && now.threads <= idle.threads
            && now.rss_kb <= idle.rss_kb + rss_slack_kb;
        if back || std::time::Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the long variants were asked for (`RELIABILITY_LONG=1`).
pub fn long_run() -> bool {
    std::env::var("RELIABILITY_LONG").is_ok_and(|v| v == "1")
}

/// A raw classic-protocol session: connects to `port`, logs in as the harness's user
/// with mysql_native_password (MariaDB's default), and returns the socket after the
/// server's OK, ready for hand-made packets.
pub fn raw_login(port: u16) -> std::io::Result<std::net::TcpStream> {
    use sha1::{Digest, Sha1};
    use std::io::{Error, ErrorKind, Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_nodelay(true)?;
    let read_packet = |s: &mut std::net::TcpStream| -> std::io::Result<Vec<u8>> {
        let mut h = [0u8; 4];
        s.read_exact(&mut h)?;
        let mut p = vec![0u8; u32::from_le_bytes([h[0], h[1], h[2], 0]) as usize];
        s.read_exact(&mut p)?;
        Ok(p)
    };
    let g = read_packet(&mut s)?;
    let bad = || Error::new(ErrorKind::InvalidData, "unexpected greeting");
    if g.first() != Some(&10) {
        return Err(bad());
    }
    let o = 1 + g[1..].iter().position(|&b| b == 0).ok_or_else(bad)? + 1 + 4;
    let mut nonce = g.get(o..o + 8).ok_or_else(bad)?.to_vec();
    let o2 = o + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10;
    nonce.extend_from_slice(g.get(o2..o2 + 12).ok_or_else(bad)?);
    let h1 = Sha1::digest(super::PASS.as_bytes());
    let h2 = Sha1::digest(h1);
    let mut h3 = Sha1::new();
    h3.update(&nonce);
    h3.update(h2);
    let scramble: Vec<u8> = h1.iter().zip(h3.finalize()).map(|(a, b)| a ^ b).collect();
    let caps: u32 = 0x200 | 0x8000 | 0x80000 | 1 | 0x2000;
    let mut p = Vec::new();
    p.extend_from_slice(&caps.to_le_bytes());
    p.extend_from_slice(&(16u32 << 20).to_le_bytes());
    p.push(33);
    p.extend_from_slice(&[0u8; 23]);
    p.extend_from_slice(super::USER.as_bytes());
    p.push(0);
    p.push(20);
    p.extend_from_slice(&scramble);
    p.extend_from_slice(b"mysql_native_password\0");
    let mut frame = (p.len() as u32).to_le_bytes()[..3].to_vec();
    frame.push(1);
    frame.extend_from_slice(&p);
    s.write_all(&frame)?;
    let ok = read_packet(&mut s)?;
    if ok.first() != Some(&0) {
        return Err(Error::other(format!("login refused: {ok:?}")));
    }
    Ok(s)
}
