//! Privilege and file safety: the pid file and unix sockets are never created or changed
//! through a symbolic link or over someone else's file, the router has dropped root
//! before its sockets exist, and the monitor password reaches no log line or error
//! message. Runs the router binary; real MariaDB for the monitor.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use std::process::{Command, Stdio};
use std::time::Duration;

use common::reliability::*;
use common::*;

/// Runs the router on `conf` until it exits (at most 10 s): (status, stderr).
fn run_to_exit(conf: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let mut c = Command::new(router_bin())
        .arg("-c")
        .arg(conf)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let code = wait_exit(&mut c, Duration::from_secs(10));
    if code.is_none() {
        let _ = c.kill();
    }
    let out = c.wait_with_output().unwrap();
    (code, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A child killed when the test ends, also when it fails.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn victim(dir: &std::path::Path) -> std::path::PathBuf {
    let v = dir.join("victim");
    std::fs::write(&v, "precious\n").unwrap();
    std::fs::set_permissions(&v, std::fs::Permissions::from_mode(0o600)).unwrap();
    v
}

fn assert_untouched(v: &std::path::Path) {
    assert_eq!(std::fs::read_to_string(v).unwrap(), "precious\n");
    assert_eq!(
        std::fs::metadata(v).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// A symbolic link where the pid file goes (planted in a folder others can write to)
/// makes the router refuse to start, and the link's target is neither truncated nor
/// written; a stale pid file is replaced by a new file of mode 0644, removed at exit.
#[test]
fn pid_file_is_never_written_through_a_link() {
    let dir = tmp_dir("pidlink");
    let v = victim(&dir);
    let pid = dir.join("router.pid");
    std::os::unix::fs::symlink(&v, &pid).unwrap();
    let port = free_port();
    let conf = dir.join("c.conf");
    std::fs::write(
        &conf,
        format!("[DEFAULT]\nlogging_folder =\npid_file = {}\n[routing:a]\nbind_port = {port}\ndestinations = 127.0.0.1:1\nrouting_strategy = first-available\n", pid.display()),
    )
    .unwrap();
    let (code, err) = run_to_exit(&conf, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "PID file '{}' exists and is not a regular file",
            pid.display()
        )),
        "{err}"
    );
    assert_untouched(&v);
    assert!(std::fs::symlink_metadata(&pid)
        .unwrap()
        .file_type()
        .is_symlink());

    // A stale file (dead process) is replaced by a fresh one, 0644, removed at exit.
    std::fs::remove_file(&pid).unwrap();
    std::fs::write(&pid, "999999\n").unwrap();
    std::fs::set_permissions(&pid, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut c = Reaped(
        Command::new(router_bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let me = c.0.id().to_string();
    assert!(wait_file_contains(&pid, &me, Duration::from_secs(5)));
    // A new file (created 0644), not the old one (0666) rewritten in place.
    let m = std::fs::metadata(&pid).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o644);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(wait_exit(&mut c.0, Duration::from_secs(10)), Some(0));
    assert!(!pid.exists(), "pid file left behind");
}

/// A regular file or a link at a route's `socket` path is refused with exit 1 and left
/// alone (Oracle's router deletes whatever is there); the socket the router creates is
/// a socket of mode 0777, as documented.
#[test]
fn socket_path_that_is_not_a_socket_is_left_alone() {
    let dir = tmp_dir("socklink");
    let v = victim(&dir);
    let link = dir.join("link.sock");
    std::os::unix::fs::symlink(&v, &link).unwrap();
    for path in [&v, &link] {
        let conf = dir.join("c.conf");
        std::fs::write(
            &conf,
            format!("[DEFAULT]\nlogging_folder =\n[routing:a]\nsocket = {}\ndestinations = 127.0.0.1:1\nrouting_strategy = first-available\n", path.display()),
        )
        .unwrap();
        let (code, err) = run_to_exit(&conf, &[]);
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains(&format!(
                "Failed removing socket file {}: it is not a socket",
                path.display()
            )),
            "{err}"
        );
        assert_untouched(&v);
    }
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
}

/// The uid that owns a listening TCP socket on `port` in /proc/net/tcp (the uid of the
/// process that created it).
fn listener_uid(port: u16) -> Option<u32> {
    let text = std::fs::read_to_string("/proc/net/tcp").ok()?;
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
        (local_port == port && *f.get(3)? == "0A").then(|| f.get(7)?.parse().ok())?
    })
}

/// Started as root with `user = ...`: the TCP and unix listening sockets were created
/// by the unprivileged user (so root was dropped before any client could connect),
/// every thread runs without root, and a client is served.
#[test]
fn root_is_dropped_before_any_socket_exists() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root (CI runs as root)"
    );
    // MariaDB's `mysql` user: the harness's folders belong to it when run as root.
    let name = "mysql";
    let user = nix::unistd::User::from_name(name)
        .unwrap()
        .expect("user mysql (mariadb-server)");
    let server = MariaDb::start();
    let port = free_port();
    let dir = tmp_dir("drop");
    let sock = dir.join("r.sock");
    let body = format!(
        "[routing:a]\nbind_address = 127.0.0.1\nbind_port = {port}\nsocket = {}\ndestinations = {}\nrouting_strategy = first-available\n",
        sock.display(),
        server.addr()
    );
    let mut r = start_router(&body, &[port], "info", &format!("user = {name}"), None);
    // The route is up: a client is served.
    assert_eq!(cli_port_tcp(port), Ok(server.port));
    let uid = user.uid.as_raw();
    assert_eq!(
        listener_uid(port),
        Some(uid),
        "TCP listener created as another user"
    );
    let m = std::fs::symlink_metadata(&sock).unwrap();
    assert!(m.file_type().is_socket());
    assert_eq!(m.uid(), uid, "unix socket created as another user");
    assert_eq!(m.permissions().mode() & 0o777, 0o777);
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{}/task", r.pid()))
        .unwrap()
        .flatten()
        .collect();
    assert!(tasks.len() > 2);
    for t in tasks {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap();
        let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            uids.split_whitespace()
                .skip(1)
                .all(|u| u == uid.to_string()),
            "thread {:?}: {uids}",
            t.file_name()
        );
    }
    assert!(r.is_running());
}

/// The monitor password appears in no log line (debug level) and no error message:
/// not when the server refuses it, not when the configuration is wrong elsewhere, not
/// when it is given on the command line.
#[test]
fn monitor_password_never_reaches_a_log_or_an_error() {
    const SECRET: &str = "Zq7-secret-Hunter2";
    let server = MariaDb::start();
    let port = free_port();
    let body = format!(
        "[monitor]\nuser = {USER}\npassword = {SECRET}\ninterval = 1\nconnect_timeout = 1\nread_timeout = 1\n\n[routing:w]\nbind_port = {port}\ndestinations = {}\nrouting_strategy = first-available\nrole = PRIMARY\n",
        server.addr()
    );
    // A wrong password: the server refuses the monitor, which logs why (debug level).
    let r = start_router(&body, &[port], "debug", "", None);
    assert!(
        r.wait_log("Access denied", Duration::from_secs(10)),
        "no login failure logged:\n{}",
        r.log_text()
    );
    // A client gets 2003 (no PRIMARY known) and that is logged too.
    assert!(cli_port_tcp(port).is_err());
    let log = r.log_text();
    assert!(!log.contains(SECRET), "password in the log:\n{log}");
    drop(r);

    // Configuration errors around it, in the file and on the command line.
    let dir = tmp_dir("secret");
    let conf = dir.join("c.conf");
    std::fs::write(
        &conf,
        format!(
            "[DEFAULT]\nlogging_folder =\n{}",
            body.replace("interval = 1", "interval = many")
        ),
    )
    .unwrap();
    let (code, err) = run_to_exit(&conf, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("interval"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
    std::fs::write(
        &conf,
        format!(
            "[DEFAULT]\nlogging_folder =\n{}",
            body.replace(&format!("password = {SECRET}\n"), "")
        ),
    )
    .unwrap();
    for args in [
        vec![
            format!("--monitor.password={SECRET}"),
            "--monitor.interval=x".to_string(),
        ],
        vec![format!("--monitor.password_file={SECRET}")],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, err) = run_to_exit(&conf, &args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        if args.len() == 2 {
            assert!(!err.contains(SECRET), "{args:?}: {err}");
        }
    }
}

/// The REST port refuses without credentials, exactly as MySQL Router 9.7.4 does: with
/// every monitoring section behind a realm (`[rest_api]`, `[rest_router]`,
/// `[rest_routing]`, our `[metrics]`, and `[http_server] require_realm` for the paths no
/// endpoint serves), every path answers no credentials, a wrong password and an
/// unknown user with 401 and `WWW-Authenticate: basic realm="Some Realm"`, another
/// scheme with 400, and only the right password with the resource (Oracle's recording:
/// tests/fixtures/oracle-realm; `/metrics` is ours, so there it is 200 where Oracle's
/// router, which has no metrics, says 404). Meanwhile, at debug level, neither the REST
/// password (right or wrong, plain or base64) nor the monitor's reaches the log; and a
/// password file with a malformed line stops the start with an error that does not
/// quote the line.
#[test]
fn rest_port_refuses_without_credentials() {
    use base64::Engine;
    const REST_SECRET: &str = "Kx9-rest-Secret";
    const MONITOR_SECRET: &str = "Mv3-monitor-Secret";
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oracle-realm");
    let server = MariaDb::start();
    // The monitor's own account, with a password no other part of the test uses.
    let made = mariadb_cli()
        .args(["-S", server.socket.to_str().unwrap(), "-uroot", "-e"])
        .arg(format!(
            "CREATE USER 'mon'@'%' IDENTIFIED BY '{MONITOR_SECRET}'; GRANT ALL ON *.* TO 'mon'@'%';"
        ))
        .status()
        .unwrap();
    assert!(made.success());
    let dir = tmp_dir("realm");
    let passwd = common::http::passwd_file(&dir, "alice", REST_SECRET);
    let (rw, http) = (free_port(), free_port());
    let monitored = free_port();
    let conf = std::fs::read_to_string(fixtures.join("realm.conf"))
        .unwrap()
        .replace("@RW@", &rw.to_string())
        .replace("@DB@", &server.addr())
        .replace("@HTTP@", &http.to_string())
        .replace("@PASSWD@", passwd.to_str().unwrap());
    // Ours also has /metrics behind the realm, and a monitor with a password.
    let body = format!(
        "{conf}\n[metrics]\nrequire_realm=r\n\n\
         [monitor]\nuser = mon\npassword = {MONITOR_SECRET}\ninterval = 1\n\n\
         [routing:w]\nbind_address = 127.0.0.1\nbind_port = {monitored}\ndestinations = {}\n\
         routing_strategy = first-available\nrole = PRIMARY\n",
        server.addr()
    );
    let r = start_router(&body, &[rw, monitored], "debug", "", None);
    let base = format!("http://127.0.0.1:{http}");
    common::http::wait_http(&base, &[], Duration::from_secs(10));
    // A client on each route, so that the log has sessions and the monitor's logins
    // (the role route serves once the monitor has logged in and found the PRIMARY).
    assert_eq!(cli_port_tcp(rw), Ok(server.port));
    assert!(
        eventually(Duration::from_secs(20), || cli_port_tcp(monitored)
            == Ok(server.port)),
        "the monitor never found the PRIMARY:\n{}",
        r.log_text()
    );

    let out = Command::new(fixtures.join("matrix.sh"))
        .args([&base, "alice", REST_SECRET])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "matrix.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = String::from_utf8(out.stdout).unwrap();
    let oracle = std::fs::read_to_string(fixtures.join("oracle-9.7.4.txt")).unwrap();
    assert_eq!(ours.lines().count(), oracle.lines().count(), "{ours}");
    let mut differences = Vec::new();
    for (a, b) in ours.lines().zip(oracle.lines()) {
        let expected = match b {
            // Ours: /metrics exists (behind the realm).
            "/metrics right 404 -" => "/metrics right 200 -",
            b => b,
        };
        if a != expected {
            differences.push(format!("ours   {a}\nOracle {expected}"));
        }
    }
    assert!(
        differences.is_empty(),
        "answers differ from MySQL Router 9.7.4's:\n{}",
        differences.join("\n")
    );
    // Every REST path refused without the password (the table's core, spelled out).
    for line in ours.lines() {
        let f: Vec<&str> = line.splitn(4, ' ').collect();
        let (path, cred, status) = (f[0], f[1], f[2]);
        if cred != "right"
            && (path.starts_with("/api/20190715/r")
                || path.ends_with("swagger.json")
                || path == "/metrics")
        {
            assert!(status == "401" || status == "400", "{line}");
            if status == "401" {
                assert_eq!(f[3], "basic realm=\"Some Realm\"", "{line}");
            }
        }
    }

    // A client that shuts down its write side after the request (`nc -N`, scripts)
    // gets its answer, as from MySQL Router: with the password the resource, without
    // it the refusal.
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for (auth, expected) in [
        (
            format!(
                "Authorization: Basic {}\r\n",
                b64(&format!("alice:{REST_SECRET}"))
            ),
            "HTTP/1.1 200 Ok\r\n",
        ),
        (String::new(), "HTTP/1.1 401 Unauthorized\r\n"),
    ] {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET /api/20190715/routes HTTP/1.1\r\nHost: x\r\n{auth}\r\n"
        )
        .unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        assert!(
            answer.starts_with(expected.as_bytes()),
            "half-closed client: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }

    let log = r.log_text();
    for secret in [
        REST_SECRET.to_string(),
        format!("not-{REST_SECRET}"),
        b64(&format!("alice:{REST_SECRET}")),
        b64(&format!("alice:not-{REST_SECRET}")),
        b64(&format!("xalice:{REST_SECRET}")),
        MONITOR_SECRET.to_string(),
    ] {
        assert!(!log.contains(&secret), "{secret} in the log:\n{log}");
    }
    eprintln!(
        "REST realm: {} answers as MySQL Router 9.7.4's; no secret in {} debug log lines",
        ours.lines().count(),
        log.lines().count()
    );
    drop(r);

    // A password file whose malformed line is a password: exit 1 with MySQL Router's
    // message (verified with 9.7.4), which does not quote the line.
    let bad = dir.join("bad-users");
    std::fs::write(&bad, format!("alice:$5$abc$def\n{REST_SECRET}\n")).unwrap();
    let conf_path = dir.join("bad.conf");
    std::fs::write(
        &conf_path,
        format!(
            "[DEFAULT]\nlogging_folder =\n{}",
            conf.replace(passwd.to_str().unwrap(), bad.to_str().unwrap())
        ),
    )
    .unwrap();
    let (code, err) = run_to_exit(&conf_path, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "parsing {} failed for section [http_auth_backend]: parse error",
            bad.display()
        )),
        "{err}"
    );
    assert!(!err.contains(REST_SECRET), "{err}");
}
