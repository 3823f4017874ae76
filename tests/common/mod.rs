//! Test harness: private `mariadbd` instances on free loopback ports, the router binary
//! started with a generated config, and small client helpers.
#![allow(dead_code)]

pub mod group_replication;
pub mod mysql97;
pub mod reliability;
pub mod replication;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const USER: &str = "t";
pub const PASS: &str = "t";

/// A free TCP port on 127.0.0.1 (the OS picks it; we release it right away).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// This test process's temp folder. Folders left by earlier test processes that are
/// gone (a test binary cannot clean up after its last test) are removed first.
fn tmp_root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let pid = name
                    .strip_prefix("mysqlrouter-tests-")
                    .and_then(|p| p.parse::<u32>().ok());
                if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let d = std::env::temp_dir().join(format!("mysqlrouter-tests-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("create temp root");
        d
    })
}

/// A fresh private directory for one test object.
pub fn tmp_dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let d = tmp_root().join(format!("{tag}-{n}"));
    std::fs::create_dir_all(&d).expect("create temp dir");
    if is_root() {
        let _ = Command::new("chown")
            .args(["mysql:", d.to_str().unwrap()])
            .status();
    }
    d
}

/// An initialised datadir with user `t`/`t`, made once per test process and copied.
fn template_datadir() -> &'static PathBuf {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        require_mariadb();
        let base = tmp_dir("template");
        let data = base.join("data");
        let mut cmd = Command::new("mariadb-install-db");
        cmd.args([
            "--no-defaults",
            &format!("--datadir={}", data.display()),
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
            "--innodb-log-file-size=4M",
        ]);
        if is_root() {
            cmd.arg("--user=mysql");
        }
        // A private temporary folder: a mariadbd starting elsewhere removes the `#sql*`
        // files it finds in its tmpdir, including a bootstrap's that share /tmp.
        cmd.env("TMPDIR", &base);
        let out = cmd
            .output()
            .expect("mariadb-install-db (apt-get install mariadb-server)");
        assert!(
            out.status.success(),
            "install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Start once to create the TCP user, then stop.
        let mut s = MariaDb::start_in(base.clone(), data.clone(), free_port(), &[]);
        let ok = Command::new("mariadb")
            .args(["-S", s.socket.to_str().unwrap(), "-uroot", "-e"])
            .arg(format!(
                "CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASS}'; GRANT ALL ON *.* TO '{USER}'@'%';"
            ))
            .status()
            .expect("mariadb client");
        assert!(ok.success());
        s.stop();
        s.keep_dir = true;
        data
    })
}

/// Ends the test process with one line naming what to install when MariaDB's server or
/// client is missing (rather than a panic per test, deep in the harness). Written
/// straight to stderr: the test harness's capture would swallow `eprintln!`.
pub fn require_mariadb() {
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
    };
    let missing: Vec<&str> = [mariadbd(), "mariadb-install-db", "mariadb"]
        .into_iter()
        .filter(|t| !Path::new(t).is_file() && !on_path(t))
        .collect();
    if !missing.is_empty() {
        let _ = writeln!(
            std::io::stderr(),
            "error: {} not found: install Debian's mariadb-server and mariadb-client (./test.sh installs everything the tests need)",
            missing.join(", ")
        );
        std::process::exit(1);
    }
}

/// `mariadbd` lives in /usr/sbin, which is not on every user's PATH.
fn mariadbd() -> &'static str {
    if Path::new("/usr/sbin/mariadbd").exists() {
        "/usr/sbin/mariadbd"
    } else {
        "mariadbd"
    }
}

/// A private MariaDB server on 127.0.0.1:port.
pub struct MariaDb {
    pub port: u16,
    dir: PathBuf,
    data: PathBuf,
    pub socket: PathBuf,
    child: Option<Child>,
    /// The template's folder outlives its setup server.
    keep_dir: bool,
    extra: Vec<String>,
}

impl MariaDb {
    pub fn start() -> MariaDb {
        Self::start_with(&[])
    }

    /// A server with extra `mariadbd` options (kept for restarts).
    pub fn start_with(extra: &[String]) -> MariaDb {
        let template = template_datadir();
        let dir = tmp_dir("mariadb");
        let data = dir.join("data");
        let st = Command::new("cp")
            .args(["-a", template.to_str().unwrap(), data.to_str().unwrap()])
            .status()
            .expect("cp");
        assert!(st.success());
        Self::start_in(dir, data, free_port(), extra)
    }

    fn start_in(dir: PathBuf, data: PathBuf, port: u16, extra: &[String]) -> MariaDb {
        let mut m = MariaDb {
            port,
            socket: dir.join("sock"),
            dir,
            data,
            child: None,
            keep_dir: false,
            extra: extra.to_vec(),
        };
        m.restart();
        m
    }

    /// Starts (again) on the same port and datadir; waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::File::create(self.dir.join("err.log")).expect("log");
        let mut cmd = Command::new(mariadbd());
        cmd.args([
            "--no-defaults".to_string(),
            format!("--datadir={}", self.data.display()),
            format!("--port={}", self.port),
            "--bind-address=127.0.0.1".into(),
            format!("--socket={}", self.socket.display()),
            format!("--pid-file={}", self.dir.join("pid").display()),
            format!("--tmpdir={}", self.dir.display()),
            "--skip-name-resolve".into(),
            "--max-connections=3000".into(),
            "--max-connect-errors=1000000000".into(),
            "--back-log=2000".into(),
            "--performance-schema=OFF".into(),
            "--innodb-buffer-pool-size=16M".into(),
            // Small redo log: each test server's datadir is a copy (disk and time).
            "--innodb-log-file-size=4M".into(),
            "--skip-log-bin".into(),
            "--thread-handling=one-thread-per-connection".into(),
        ]);
        cmd.args(&self.extra);
        if is_root() {
            cmd.arg("--user=mysql");
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        self.child = Some(cmd.spawn().expect("spawn mariadbd"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if greeting(self.port).is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "mariadbd on {} did not start: {}",
            self.port,
            std::fs::read_to_string(self.dir.join("err.log")).unwrap_or_default()
        );
    }

    fn signal_and_wait(&mut self, sig: nix::sys::signal::Signal) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Clean shutdown (SIGTERM), waits for exit.
    pub fn stop(&mut self) {
        self.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        self.signal_and_wait(nix::sys::signal::Signal::SIGKILL);
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's process id while it runs (for SIGSTOP/SIGCONT).
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill();
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Reads a server's first packet (greeting or error), or None if nothing answers.
pub fn greeting(port: u16) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().ok()?,
        Duration::from_secs(1),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut buf = vec![0u8; 256];
    let n = s.read(&mut buf).ok()?;
    (n > 0).then(|| buf[..n].to_vec())
}

/// The router under test, killed on drop.
pub struct Router {
    pub child: Child,
    pub dir: PathBuf,
    pub conf: PathBuf,
    pub log: PathBuf,
}

pub fn router_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mysqlrouter")
}

impl Router {
    /// Starts the router with `body` (routing sections etc.) plus a `[DEFAULT]` that logs
    /// at `level` to a file in its own dir. Waits until every port in `ports` accepts.
    pub fn start(body: &str, ports: &[u16]) -> Router {
        Self::start_with(body, ports, "info", &[])
    }

    pub fn start_with(body: &str, ports: &[u16], level: &str, env: &[(&str, &str)]) -> Router {
        let dir = tmp_dir("router");
        let conf = dir.join("mysqlrouter.conf");
        let text = format!(
            "[DEFAULT]\nlogging_folder = {}\nruntime_folder = {}\n{}\n[logger]\nlevel = {level}\ntimestamp_precision = ms\n\n{body}\n",
            dir.display(),
            dir.display(),
            if body.contains("max_total_connections") { "" } else { "max_total_connections = 4000" }
        );
        std::fs::write(&conf, text).expect("write conf");
        let mut cmd = Command::new(router_bin());
        cmd.arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn router");
        let r = Router {
            child,
            log: dir.join("mysqlrouter.log"),
            dir,
            conf,
        };
        // Wait for the log line, not a probe connection: a probe would be a client and
        // take a round-robin turn.
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

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn wait_listening(&self, port: u16, max: Duration) {
        let deadline = Instant::now() + max;
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "router does not listen on {port}; log:\n{}",
            self.log_text()
        );
    }

    /// The log as written so far. The router writes its log from a background thread,
    /// a moment after the event; wait until the file has been quiet for 50 ms (at most
    /// 2 s) so a line for something the test just saw happen is there.
    pub fn log_text(&self) -> String {
        let read = || std::fs::read_to_string(&self.log).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut last = read();
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let now = read();
            if now == last || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }

    /// Waits (bounded) for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str, max: Duration) -> bool {
        let deadline = Instant::now() + max;
        while Instant::now() < deadline {
            if std::fs::read_to_string(&self.log)
                .unwrap_or_default()
                .contains(needle)
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the `mariadb` CLI: `SELECT @@port` through host:port. Ok(port) or Err(stderr).
pub fn cli_port(args: &[&str]) -> Result<u16, String> {
    let out = Command::new("mariadb")
        .args(args)
        .args([
            "-u",
            USER,
            &format!("-p{PASS}"),
            "-N",
            "-B",
            "--connect-timeout=5",
            "-e",
            "SELECT @@port",
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("{e}"))
}

pub fn cli_port_tcp(port: u16) -> Result<u16, String> {
    cli_port(&["-h", "127.0.0.1", "-P", &port.to_string(), "--protocol=TCP"])
}

/// mysql_async options for 127.0.0.1:port.
pub fn opts(port: u16) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(USER))
        .pass(Some(PASS))
        .prefer_socket(false)
        .into()
}

/// Connects with mysql_async and returns `@@port`.
pub async fn select_port(port: u16) -> Result<u16, mysql_async::Error> {
    use mysql_async::prelude::Queryable;
    let mut c = mysql_async::Conn::new(opts(port)).await?;
    let p: Option<u16> = c.query_first("SELECT @@port").await?;
    c.disconnect().await?;
    Ok(p.unwrap_or(0))
}

/// `SELECT @@port` with the mysql_async client library, from synchronous code.
/// Errors come back as `<code>: <message>` for server errors.
pub fn lib_port(port: u16) -> Result<u16, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), select_port(port))
            .await
            .map_err(|_| "timeout".to_string())?
            .map_err(|e| match e {
                mysql_async::Error::Server(s) => format!("{}: {}", s.code, s.message),
                other => other.to_string(),
            })
    })
}

/// A two-thread tokio runtime for tests that drive mysql_async from sync code.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Waits (bounded) for a child to exit; its exit code, `None` if it is still running
/// or was killed by a signal.
pub fn wait_exit(child: &mut Child, max: Duration) -> Option<i32> {
    let deadline = Instant::now() + max;
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Waits (bounded) until the file at `path` contains `needle`.
pub fn wait_file_contains(path: &Path, needle: &str, max: Duration) -> bool {
    let deadline = Instant::now() + max;
    while Instant::now() < deadline {
        if std::fs::read_to_string(path)
            .unwrap_or_default()
            .contains(needle)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Raises this process's soft fd limit to the hard limit.
pub fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// Writes raw bytes to a port and reads until EOF (bounded).
pub fn raw_exchange(port: u16, send: &[u8], max: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(max)).unwrap();
    let _ = s.write_all(send);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
pub mod http;
