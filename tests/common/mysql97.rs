//! Private MySQL 9.7.4 servers for tests, from `../shared/lab/mysql-9.7` (a frozen copy
//! of Debian's packages, unpacked on first use; no network): start on free loopback
//! ports, stop on drop, and the 9.7 `mysql` CLI. Account `sha2`/`sha2pw`
//! (caching_sha2_password); `root` over the unix socket for administration.
//!
//! One server per test binary ([`shared`]): starting one takes seconds. A static is
//! never dropped, so a watchdog process stops that server when the test process is gone
//! (however it ended).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use super::{free_port, path_str};

pub const USER: &str = "sha2";
pub const PASS: &str = "sha2pw";

/// The lab script (tests run with `shared/` beside the repository).
pub fn lab() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/lab/mysql-9.7")
}

/// Ends the test process with one line naming what is missing (the lab, or a Python
/// client), rather than a panic per test. Written straight to stderr: the harness's
/// capture would swallow `eprintln!`.
pub fn require_lab_and_clients() {
    use std::io::Write;
    let mut missing = Vec::new();
    if !lab().is_file() {
        missing.push(format!(
            "{} (the project's shared/ folder beside the repository)",
            lab().display()
        ));
    }
    let py = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import pymysql, mysql.connector, mysqlx; mysqlx.get_session, mysql.connector.connect",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !py.is_ok_and(|s| s.success()) {
        missing.push(
            "Debian's python3 with python3-pymysql and pip's mysql-connector-python and mysqlx-connector-python"
                .to_string(),
        );
    }
    if !missing.is_empty() {
        let _ = writeln!(
            std::io::stderr(),
            "error: the MySQL 9.7 tests need {} (./test.sh installs the clients)",
            missing.join(" and ")
        );
        std::process::exit(1);
    }
}

/// A private MySQL 9.7 server (classic port and X port on 127.0.0.1).
pub struct Mysql97 {
    pub port: u16,
    pub xport: u16,
    dir: PathBuf,
    pub datadir: PathBuf,
    /// The server's unix socket (root logs in there without a password).
    pub socket: PathBuf,
    /// mysqld's pid.
    pub pid: u32,
}

/// A fresh folder for one server, writable by the `mysql` user that mysqld runs as when
/// we are root. Not under the harness's per-process temp folder: the next test binary
/// removes that as soon as this process has ended, and a mysqld whose datadir vanished
/// does not shut down on SIGTERM.
fn server_dir() -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("mysqlrouter-mysql97-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create the MySQL 9.7 folder");
    if nix::unistd::Uid::effective().is_root() {
        let st = Command::new("chown").arg("mysql:").arg(&d).status();
        assert!(
            st.is_ok_and(|s| s.success()),
            "chown mysql: {}",
            d.display()
        );
    }
    d
}

impl Mysql97 {
    /// Starts a new server with a fresh datadir; waits until it answers (the lab
    /// script does) and its `sha2` account exists.
    pub fn start() -> Mysql97 {
        let dir = server_dir();
        let datadir = dir.join("data");
        let (port, xport) = (free_port(), free_port());
        let out = Command::new(lab())
            .args([
                "start",
                "--port",
                &port.to_string(),
                "--xport",
                &xport.to_string(),
            ])
            .arg("--datadir")
            .arg(&datadir)
            .stdin(Stdio::null())
            .output()
            .expect("run ../shared/lab/mysql-9.7 start");
        assert!(
            out.status.success(),
            "mysql-9.7 start failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let pid_file = dir.join(format!("mysqld-{port}.pid"));
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {}", pid_file.display()));
        Mysql97 {
            port,
            xport,
            socket: dir.join(format!("mysqld-{port}.sock")),
            dir,
            datadir,
            pid,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn xaddr(&self) -> String {
        format!("127.0.0.1:{}", self.xport)
    }

    /// Runs SQL as root over the unix socket; panics if it fails.
    pub fn admin(&self, sql: &str) -> String {
        let out = client(&[
            "-uroot",
            "-S",
            path_str(&self.socket),
            "-N",
            "-B",
            "-e",
            sql,
        ]);
        assert!(
            out.status.success(),
            "admin SQL {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn stop_command(&self) -> Command {
        let mut c = Command::new(lab());
        c.args(["stop", "--port", &self.port.to_string()])
            .arg("--datadir")
            .arg(&self.datadir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// Stops this server (SIGTERM, SIGKILL after 60 s) and removes its folder once
    /// `pid` (a test process) is gone.
    fn stop_when_gone(&self, pid: u32) {
        let m = self.pid;
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done
             ours() {{ grep -qa mysqld /proc/{m}/cmdline 2>/dev/null; }}
             ours && kill -TERM {m}
             i=0; while ours && [ $i -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
             ours && kill -KILL {m}
             rm -rf '{}'",
            self.dir.display()
        );
        // `setsid -f`: the watchdog runs in its own session, and setsid itself exits at
        // once (waited for here, so no zombie is left).
        let st = Command::new("setsid")
            .args(["-f", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("start the watchdog that stops mysqld");
        assert!(st.success(), "setsid -f failed: {st}");
    }
}

impl Drop for Mysql97 {
    fn drop(&mut self) {
        let _ = self.stop_command().status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// This test binary's server, started on first use and stopped after the process ends.
pub fn shared() -> &'static Mysql97 {
    static S: OnceLock<Mysql97> = OnceLock::new();
    S.get_or_init(|| {
        require_lab_and_clients();
        let s = Mysql97::start();
        s.stop_when_gone(std::process::id());
        s
    })
}

/// Runs the 9.7 `mysql` CLI with `args` (no option files are read).
pub fn client(args: &[&str]) -> Output {
    Command::new(lab())
        .arg("client")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ../shared/lab/mysql-9.7 client")
}

/// The 9.7 CLI as `sha2` over TCP to 127.0.0.1:port, running `sql` in batch mode
/// (`-N -B`), with `extra` options such as `--ssl-mode=DISABLED`.
pub fn cli(port: u16, extra: &[&str], sql: &str) -> Output {
    let port = port.to_string();
    let pass = format!("-p{PASS}");
    let mut args = vec![
        "-h",
        "127.0.0.1",
        "-P",
        &port,
        "--protocol=TCP",
        "-u",
        USER,
        &pass,
        "-N",
        "-B",
        "--connect-timeout=10",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-e", sql]);
    client(&args)
}

/// stdout on success, else stderr without the CLI's password warning.
pub fn cli_result(out: &Output) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.contains("Using a password on the command line"))
            .collect::<Vec<_>>()
            .join("\n"))
    }
}
