//! Test harness: private `mariadbd` instances on loopback ports the harness reserves,
//! the router binary started with a generated config, process guards that kill what a
//! test spawned on every exit path, and small client helpers.
#![allow(dead_code)]

pub mod group_replication;
pub mod mysql97;
pub mod pki;
pub mod reliability;
pub mod replication;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long the harness waits for something that should happen (a log line, a
/// listener, a client's answer) before failing: generous, as the suite shares 2 CPUs
/// with other work; only a failing test waits this long.
pub const WAIT: Duration = Duration::from_secs(30);

pub const USER: &str = "t";
pub const PASS: &str = "t";

/// Ports are taken from this range, below Linux's ephemeral range (32768-60999), so no
/// outgoing connection (a client, a probe, a server) can be given one of them by the
/// kernel between the moment the harness picks a port and the moment the router or
/// server binds it.
const PORTS: std::ops::Range<u16> = 20000..32000;

/// A TCP port for a test's router or server: one of [`PORTS`], free on 127.0.0.1 and
/// ::1, never handed out twice in this process, and reserved across processes (an
/// abstract unix socket `@mysqlrouter-test-port-<port>`, bound until this process
/// exits, so test binaries that run at the same time never pick the same port; it
/// leaves nothing on disk).
pub fn free_port() -> u16 {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener};
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    static HELD: Mutex<Vec<UnixListener>> = Mutex::new(Vec::new());
    let span = u32::from(PORTS.end - PORTS.start);
    // Different processes start at different places in the range.
    let offset = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let port = PORTS.start + ((offset + n) % span) as u16;
        let name = format!("mysqlrouter-test-port-{port}");
        let Ok(addr) = UnixAddr::from_abstract_name(name.as_bytes()) else {
            continue;
        };
        let Ok(lock) = UnixListener::bind_addr(&addr) else {
            continue; // another test process holds it
        };
        let v4 = TcpListener::bind(("127.0.0.1", port)).is_ok();
        // ::1 may not exist on a machine; then only 127.0.0.1 matters.
        let v6 = match TcpListener::bind(("::1", port)) {
            Ok(_) => true,
            Err(e) => e.kind() != std::io::ErrorKind::AddrInUse,
        };
        if v4 && v6 {
            HELD.lock().unwrap_or_else(|p| p.into_inner()).push(lock);
            return port;
        }
    }
    panic!("no free port in {PORTS:?}");
}

/// Processes the harness started and has not reaped yet (routers, servers). A test
/// that fails drops its guards; what a static holds (a shared server) is killed when
/// the test binary exits, and this process's temp folder is removed then.
static LIVE: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn track(pid: i32) {
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain extern "C" function with no captured state.
        unsafe { libc::atexit(at_exit) };
    });
    LIVE.lock().unwrap_or_else(|p| p.into_inner()).push(pid);
}

fn untrack(pid: i32) {
    LIVE.lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|p| *p != pid);
}

extern "C" fn at_exit() {
    // try_lock: a detached thread may hold the lock; never block the exit.
    if let Ok(live) = LIVE.try_lock() {
        for pid in live.iter() {
            // Only a child of ours: a pid reaped earlier may belong to someone else now.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid != Some(std::process::id()) {
                continue;
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(*pid), None);
        }
    }
    if let Some(root) = TMP_ROOT.get() {
        let _ = std::fs::remove_dir_all(root);
    }
}

/// A spawned process (router, helper) that is killed and reaped when the guard drops,
/// so a failing assertion never leaves it running.
pub struct Proc(Option<Child>);

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        let c = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        track(c.id() as i32);
        Proc(Some(c))
    }

    pub fn pid(&self) -> i32 {
        self.id() as i32
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("kill(2)");
    }

    /// Waits (bounded) for the exit code; `None` if still running or killed by a signal.
    pub fn wait_exit(&mut self, max: Duration) -> Option<i32> {
        wait_exit(self, max)
    }

    /// Kills the process if it still runs; then everything it wrote to piped
    /// stdout/stderr.
    pub fn output(mut self) -> std::process::Output {
        let mut child = self.0.take().expect("process already taken");
        let pid = child.id() as i32;
        let _ = child.kill();
        let out = child.wait_with_output().expect("wait_with_output");
        untrack(pid);
        out
    }
}

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().expect("process already taken")
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("process already taken")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
            untrack(c.id() as i32);
        }
    }
}

/// A system user made for one test and deleted (with its group) when the guard drops.
pub struct SystemUser {
    pub name: String,
}

impl SystemUser {
    /// `useradd --system` of a name unique to this process (`mrt<pid>_<tag>`).
    pub fn create(tag: &str) -> SystemUser {
        let name = format!("mrt{}_{tag}", std::process::id());
        let st = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(&name)
            .status()
            .expect("useradd (run as root; CI does)");
        assert!(st.success(), "useradd {name} failed");
        SystemUser { name }
    }
}

impl Drop for SystemUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
        // userdel removes the user's private group too; a group left by an odd
        // USERGROUPS_ENAB setting is removed here.
        let _ = Command::new("groupdel")
            .arg(&self.name)
            .stderr(Stdio::null())
            .status();
    }
}

/// The `mariadb` CLI, reading no option files (the host's /etc/mysql is not ours).
pub fn mariadb_cli() -> Command {
    let mut c = Command::new("mariadb");
    c.arg("--no-defaults");
    c
}

/// A TCP connection to 127.0.0.1:port from the source address `src` (127.0.0.2,
/// 127.0.0.3, ...: the whole 127/8 is loopback), so per-IP counting can be told apart
/// from per-route counting.
pub fn connect_from(src: &str, port: u16) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let src: IpAddr = src.parse().expect("source ip");
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    s.bind(&SocketAddr::new(src, 0).into())
        .expect("bind source");
    let to: SocketAddr = ([127, 0, 0, 1], port).into();
    s.connect_timeout(&to.into(), Duration::from_secs(5))
        .expect("connect");
    s.into()
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// This test process's temp folder, removed when the process exits. Folders of test
/// processes that died without exiting (SIGKILL) are removed first.
static TMP_ROOT: OnceLock<PathBuf> = OnceLock::new();

fn tmp_root() -> &'static PathBuf {
    TMP_ROOT.get_or_init(|| {
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

/// `dir/tmp`, owned by the server's user: each server's own temp folder, so nothing
/// another process does in /tmp can touch its temporary tables.
fn server_tmp(dir: &Path) -> PathBuf {
    let t = dir.join("tmp");
    std::fs::create_dir_all(&t).expect("create server tmp");
    if is_root() {
        let _ = Command::new("chown").arg("mysql:").arg(&t).status();
    }
    t
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
            &format!("--tmpdir={}", server_tmp(&base).display()),
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
        let ok = mariadb_cli()
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
            format!("--tmpdir={}", server_tmp(&self.dir).display()),
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
        let child = cmd.spawn().expect("spawn mariadbd");
        track(child.id() as i32);
        self.child = Some(child);
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
            let mut exited = false;
            while !exited && Instant::now() < deadline {
                exited = matches!(c.try_wait(), Ok(Some(_)));
                if !exited {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            if !exited {
                let _ = c.kill();
                let _ = c.wait();
            }
            untrack(c.id() as i32);
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
    pub child: Proc,
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

    /// `level` empty leaves `[logger] level` unset (the default, `warning`). The
    /// router runs with the defaults of `[DEFAULT]` except for its folders.
    pub fn start_with(body: &str, ports: &[u16], level: &str, env: &[(&str, &str)]) -> Router {
        let dir = tmp_dir("router");
        let conf = dir.join("mysqlrouter.conf");
        let level = if level.is_empty() {
            String::new()
        } else {
            format!("level = {level}\n")
        };
        let text = format!(
            "[DEFAULT]\nlogging_folder = {}\nruntime_folder = {}\n[logger]\n{level}timestamp_precision = ms\n\n{body}\n",
            dir.display(),
            dir.display(),
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
        let mut r = Router {
            child: Proc::spawn(&mut cmd),
            log: dir.join("mysqlrouter.log"),
            dir,
            conf,
        };
        // Wait for the log line, not a probe connection: a probe would be a client and
        // take a round-robin turn.
        for p in ports {
            let line = format!("listening on '127.0.0.1:{p}'");
            let deadline = Instant::now() + WAIT;
            while !r.log_has(&line) {
                if !r.is_running() || Instant::now() > deadline {
                    panic!("router does not listen on {p}; log:\n{}", r.log_text());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        r
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits (bounded) until the router listens on `port` (without connecting: a probe
    /// connection would be a client and take a round-robin turn).
    pub fn wait_listening(&self, port: u16, max: Duration) {
        let deadline = Instant::now() + max;
        while Instant::now() < deadline {
            if listening(port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "router does not listen on {port}; log:\n{}",
            self.log_text()
        );
    }

    /// The log as written so far, once the file has been quiet for 50 ms (at most 2 s).
    /// The router writes its log from a background thread, a moment after the event,
    /// and quiet is no proof that a line is there: to check a line, wait for it
    /// ([`Router::expect_log`]); use this for lines known to be written (an earlier
    /// `expect_log` of a later line), for absence after such a point, or to print the
    /// log on failure.
    pub fn log_text(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut last = self.log_now();
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let now = self.log_now();
            if now == last || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }

    /// The log file as it is right now.
    pub fn log_now(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_has(&self, needle: &str) -> bool {
        self.log_now().contains(needle)
    }

    /// Waits (bounded) for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str, max: Duration) -> bool {
        let deadline = Instant::now() + max;
        while Instant::now() < deadline {
            if self.log_has(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.log_has(needle)
    }

    /// Waits up to [`WAIT`] for a log line containing `needle`; fails the test with the
    /// log otherwise.
    #[track_caller]
    pub fn expect_log(&self, needle: &str) {
        assert!(
            self.wait_log(needle, WAIT),
            "no log line with {needle:?}; log:\n{}",
            self.log_text()
        );
    }

    /// Waits up to [`WAIT`] until `needle` occurs `n` times in the log; fails the test
    /// if it occurs a different number of times.
    #[track_caller]
    pub fn expect_log_count(&self, needle: &str, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.log_now().matches(needle).count() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let got = self.log_text().matches(needle).count();
        assert_eq!(got, n, "{needle:?} in the log; log:\n{}", self.log_text());
    }

    /// The first log line containing `needle` (waits for it like [`Router::expect_log`]).
    #[track_caller]
    pub fn log_line(&self, needle: &str) -> String {
        self.expect_log(needle);
        self.log_text()
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_default()
            .to_string()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        self.child.signal(sig);
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
    let out = mariadb_cli()
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
        tokio::time::timeout(WAIT, select_port(port))
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

/// [`raw_exchange`] from the source address `src` (see [`connect_from`]).
pub fn raw_exchange_from(src: &str, port: u16, send: &[u8], max: Duration) -> Vec<u8> {
    let mut s = connect_from(src, port);
    s.set_read_timeout(Some(max)).expect("set_read_timeout");
    let _ = s.write_all(send);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// Polls `f` every 50 ms until it returns true or `max` passes; the last answer.
pub fn eventually(max: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + max;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Whether a TCP connect to 127.0.0.1:port is refused (nothing listens), as opposed to
/// accepted or failing some other way.
pub fn refused(port: u16) -> bool {
    matches!(
        TcpStream::connect(("127.0.0.1", port)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// mysql_async's error for 2003, as [`lib_port`] reports it.
pub const E2003: &str = "2003: Can't connect to remote MySQL server";

/// Whether something listens on TCP port `port` (any local address), from
/// /proc/net/tcp{,6}: no connection is made, so no route sees a client.
pub fn listening(port: u16) -> bool {
    let want = format!(":{port:04X} ");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                // local_address is column 1, st (0A = LISTEN) column 3.
                cols.len() > 3 && format!("{} ", cols[1]).ends_with(&want) && cols[3] == "0A"
            })
    })
}

/// Milliseconds since midnight of a log line written with `timestamp_precision = ms`
/// (`YYYY-MM-DD HH:MM:SS.mmm ...`): the router's own clock, which measures its timers
/// without the test's scheduling delays on a loaded machine.
pub fn log_ms(line: &str) -> u64 {
    let n = |r: std::ops::Range<usize>| {
        line.get(r)
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no ms timestamp in {line:?}"))
    };
    ((n(11..13) * 60 + n(14..16)) * 60 + n(17..19)) * 1000 + n(20..23)
}

/// `later - earlier` in ms of two [`log_ms`] stamps (across midnight too).
pub fn ms_between(earlier: u64, later: u64) -> u64 {
    (later + 86_400_000 - earlier) % 86_400_000
}

/// A TCP port on 127.0.0.1 that refuses connections: bound but not listening, so no
/// other process can start listening there while a test relies on the refusal.
pub struct Refusing(socket2::Socket);

impl Refusing {
    pub fn bind(port: u16) -> Refusing {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        s.set_reuse_address(true).expect("SO_REUSEADDR");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        s.bind(&addr.into()).expect("bind a refusing port");
        Refusing(s)
    }

    /// Starts accepting on the port (the same socket: no window for anyone else).
    pub fn listen(self) -> TcpListener {
        self.0.listen(128).expect("listen");
        self.0.into()
    }
}
