//! Configuration: the error table (through the binary: exit status and message), real
//! configs, interpolation, multi-file merge, and a property test of the reader.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use mysqlrouter::config::{self, Protocol, Strategy};

/// Runs the router on `conf` plus extra args; returns (exit code, stdout, stderr).
/// A router that is still running after 3 s is killed and reported as `None`.
fn run(conf: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let dir = common::tmp_dir("cfg");
    let path = dir.join("c.conf");
    std::fs::write(&path, conf).unwrap();
    let mut child = Command::new(common::router_bin())
        .arg("-c")
        .arg(&path)
        .args(args)
        .env("HOME", &dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let code = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = child.wait_with_output().unwrap();
    (
        code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const H: &str = "[DEFAULT]\nlogging_folder =\n";

/// The ports of the error table's configs: every case fails validation before binding,
/// but a case that wrongly starts must not collide with anything, so they are the
/// harness's reserved ports.
fn ports() -> (u16, u16) {
    static P: std::sync::OnceLock<(u16, u16)> = std::sync::OnceLock::new();
    *P.get_or_init(|| (common::free_port(), common::free_port()))
}

fn rt(extra: &str) -> String {
    let (bind, dest) = ports();
    format!("{H}[routing:a]\nbind_port = {bind}\ndestinations = 127.0.0.1:{dest}\nrouting_strategy = round-robin\n{extra}")
}

#[test]
fn error_table() {
    let dup = format!(
        "in [routing:b]: duplicate IP or name found in bind_address '127.0.0.1:{}'",
        ports().0
    );
    let cases: Vec<(String, &str)> = vec![
        // §1 syntax (wrapped as "Configuration error: <msg>.")
        ("x=1\n".into(), "Error: Configuration error: Option line before start of section."),
        ("[a\n".into(), "Error: Configuration error: Malformed section header: '[a'."),
        ("[routing:a]\nfoo\n".into(), "Error: Configuration error: Malformed option line: 'foo'."),
        ("[routing:a]\n[routing:a]\n".into(), "Error: Configuration error: Section 'routing:a' already exists."),
        ("[routing:a]\nx=1\nX=2\n".into(), "Error: Configuration error: Option 'X' already defined."),
        ("[DEFAULT:x]\n".into(), "Error: Configuration error: Key not allowed on DEFAULT section."),
        ("[routing:a]\nfoo-bar=1\n".into(), "Error: Configuration error: Invalid option name 'foo-bar'."),
        ("[]\n".into(), "Error: Configuration error: section name in config-section '[]' may not be empty.."),
        ("[a:]\n".into(), "Error: Configuration error: section key in config-section '[a:]' may not be empty.."),
        ("[ routing ]\n".into(), "Error: Configuration error: config-section '[ routing ]' contains invalid character ' ' in section name ' routing '. Only alpha-numeric characters and _ are valid.."),
        ("[routing:a.b]\n".into(), "contains invalid character '.' in section key 'a.b'"),
        // §1.4 sections
        (format!("{H}[foo]\n"), "Error: Loading plugin for config-section '[foo]' failed: /usr/lib/mysqlrouter/plugin/foo.so: cannot open shared object file: No such file or directory"),
        ("[DEFAULT]\nx=1\n".into(), "Error: Error: The service is not configured to load or start any plugin. Exiting."),
        (format!("{H}[metadata_cache]\n"), "[metadata_cache] is not supported by this router"),
        (format!("[DEFAULT]\nlogging_folder=\nunknown_config_option = sometimes\n{}", &rt("")[H.len()..]), "Error: Configuration error: Invalid value for DEFAULT.unknown_config_option: 'sometimes'. Allowed are: 'error' or 'warning'."),
        (format!("[DEFAULT]\nlogging_folder=\nunknown_config_option = ERROR\n{}foo = 1\n", &rt("")[H.len()..]), "Error: option 'routing.foo' is not supported"),
        (format!("[DEFAULT]\nlogging_folder=\nunknown_config_option = error\ntesting = 1\n{}", &rt("")[H.len()..]), "Error: option 'DEFAULT.testing' is not supported"),
        // §3 logger
        (rt("[logger:x]\n"), "Section 'logger' does not support keys"),
        (rt("[logger]\nlevel = verbose\n"), "Log level 'verbose' is not valid. Valid values are: fatal, system, error, warning, info, note, and debug"),
        (rt("[logger]\nsinks = ,\n"), "sinks option does not contain any valid sink name, was ','"),
        (rt("[logger]\nsinks = filelog\n"), "filelog sink configured but the logging_folder is empty"),
        (format!("[DEFAULT]\nlogging_folder=/tmp\n{}[logger]\nfilename = a/b.log\n", &rt("")[H.len()..]), "logger filename 'a/b.log' must be a filename, not a path"),
        (rt("[logger]\nsinks = syslog\n[syslog]\ntimestamp_precision = ms\n"), "timestamp_precision not valid for 'syslog'"),
        (format!("[DEFAULT]\nlogging_folder=\nmax_total_connections = 0\n{}", &rt("")[H.len()..]), "Configuration error: [DEFAULT].max_total_connections needs value between 1 and 9223372036854775807 inclusive, was '0'"),
        (format!("[DEFAULT]\nlogging_folder=\npid_file =\n{}", &rt("")[H.len()..]), "PID filename '' is illegal."),
        // §2 routing options
        (format!("{H}[routing:a]\nbind_port = 6446 # rw\ndestinations = a\nrouting_strategy = round-robin\n"), "Error: Configuration error: option bind_port in [routing:a] needs value between 1 and 65535 inclusive, was '6446 # rw'"),
        (format!("{H}[routing:a]\nbind_port = 0\ndestinations = a\nrouting_strategy = round-robin\n"), "option bind_port in [routing:a] needs value between 1 and 65535 inclusive, was '0'"),
        (format!("{H}[routing:a]\nbind_port = -1\ndestinations = a\nrouting_strategy = round-robin\n"), "option bind_port in [routing:a] needs value between 1 and 65535 inclusive, was '-1'"),
        (format!("{H}[routing:a]\nbind_port = 0x10\ndestinations = a\nrouting_strategy = round-robin\n"), "was '0x10'"),
        (format!("{H}[routing:a]\nbind_port = 1\nrouting_strategy = round-robin\n"), "option destinations in [routing:a] is required"),
        (format!("{H}[routing:a]\nbind_port = 1\ndestinations =\nrouting_strategy = round-robin\n"), "option destinations in [routing:a] needs a value"),
        (format!("{H}[routing:a]\nbind_port = 1\ndestinations = a,,b\nrouting_strategy = round-robin\n"), "option destinations in [routing:a]: a,,b is invalid: empty address found in destination list (was 'a,,b')"),
        (format!("{H}[routing:a]\nbind_port = 1\ndestinations = a,b_c\nrouting_strategy = round-robin\n"), "option destinations in [routing:a]: a,b_c is invalid: invalid destination address 'b_c'"),
        (format!("{H}[routing:a]\nbind_port = 1\ndestinations = 127.0.0.1:99999\nrouting_strategy = round-robin\n"), "invalid destination address '127.0.0.1:99999'"),
        (format!("{H}[routing:a]\nbind_port = 1\ndestinations = a,[::1\nrouting_strategy = round-robin\n"), "invalid destination address '[::1'"),
        (format!("{H}[routing:a]\nbind_port = 1\ndestinations = http://x\nrouting_strategy = round-robin\n"), "option destinations in [routing:a]: http://x is invalid: invalid URI scheme 'http' for URI http://x"),
        (format!("{H}[routing:a]\nbind_port = 1\ndestinations = metadata-cache://c/default?role=PRIMARY\nrouting_strategy = round-robin\n"), "metadata-cache destinations ('metadata-cache://c/default?role=PRIMARY') are not supported"),
        (format!("{H}[routing:a]\nbind_address = 127.0.0.1:99999\ndestinations = a\nrouting_strategy = round-robin\n"), "option bind_address in [routing:a]: '127.0.0.1:99999' is not a valid endpoint"),
        (format!("{H}[routing:a]\nbind_address = a_b:3\ndestinations = a\nrouting_strategy = round-robin\n"), "option bind_address in [routing:a]: 'a_b' in 'a_b:3' is not a valid IP-address or hostname"),
        (format!("{H}[routing:a]\nbind_port = 1\ndestinations = a\n"), "option routing_strategy in [routing:a] is required"),
        (format!("{H}[routing:a]\nbind_port = 1\ndestinations = a\nrouting_strategy =\n"), "option routing_strategy in [routing:a] needs a value"),
        (format!("{H}[routing:a]\nbind_port = 1\ndestinations = a\nrouting_strategy = random\n"), "option routing_strategy in [routing:a] is invalid; valid are first-available, next-available, and round-robin (was 'random')"),
        (format!("{H}[routing:a]\nbind_port = 1\ndestinations = a\nrouting_strategy = round-robin-with-fallback\n"), "(was 'round-robin-with-fallback')"),
        (format!("{H}[routing:a]\nbind_port = 1\ndestinations = a\nmode = primary\n"), "option mode in [routing:a] is invalid; valid are read-write and read-only (was 'primary')"),
        (format!("{H}[routing:a]\nbind_port = 1\ndestinations = a\nmode =\n"), "option mode in [routing:a] needs a value"),
        (rt("protocol = mysql\n"), "Error: Configuration error: in [routing:a]: Invalid protocol name: 'mysql'"),
        (rt("connect_timeout = 0\n"), "option connect_timeout in [routing:a] needs value between 1 and 65535 inclusive, was '0'"),
        (rt("client_connect_timeout = 1\n"), "option client_connect_timeout in [routing:a] needs value between 2 and 31536000 inclusive, was '1'"),
        (rt("max_connections = 70000\n"), "option max_connections in [routing:a] needs value between 0 and 65535 inclusive, was '70000'"),
        (rt("max_connect_errors = 0\n"), "option max_connect_errors in [routing:a] needs value between 1 and 4294967295 inclusive, was '0'"),
        (format!("[DEFAULT]\nlogging_folder=\nmax_connect_errors = 0\n{}", &rt("")[H.len()..]), "option max_connect_errors in [default] needs value between 1 and 4294967295 inclusive, was '0'"),
        (rt("net_buffer_length = 100\n"), "option net_buffer_length in [routing:a] needs value between 1024 and 1048576 inclusive, was '100'"),
        (rt("thread_stack_size = 0\n"), "option thread_stack_size in [routing:a] needs value between 1 and 65535 inclusive, was '0'"),
        (rt(&format!("[routing:b]\nbind_port = {}\ndestinations = a\nrouting_strategy = round-robin\n", ports().0)), &dup),
        (format!("{H}[routing:a]\nbind_port = {d}\ndestinations = 127.0.0.1:{d}\nrouting_strategy = round-robin\n", d = ports().1), "Error: Configuration error: in [routing:a]: Bind Address can not be part of destinations"),
        (format!("{H}[routing:a]\nbind_address = 127.0.0.1\ndestinations = a\nrouting_strategy = round-robin\n"), "Error: Configuration error: in [routing:a]: either bind_address or socket option needs to be supplied, or both"),
        (rt("server_ssl_verify = VERIFY_CA\n"), "server_ssl_ca or server_ssl_capath must be set, if server_ssl_verify is 'VERIFY_CA'."),
        (rt("client_ssl_mode = sometimes\n"), "invalid value 'sometimes' for option client_ssl_mode in [routing:a]. Allowed are: DISABLED,PREFERRED,REQUIRED,PASSTHROUGH."),
        (rt("client_ssl_mode = REQUIRED\n"), "client_ssl_cert must be set, if client_ssl_mode is 'REQUIRED'."),
        (rt("server_ssl_mode = REQUIRED\n"), "If client_ssl_mode is PASSTHROUGH, server_ssl_mode must be AS_CLIENT."),
        (rt("client_ssl_ca = /ca.pem\n"), "client_ssl_mode=PASSTHROUGH can not be combined with client_ssl_ca=/ca.pem"),
        (rt("access_mode = auto\n"), "'access_mode=auto' requires 'destinations=metadata-cache:...'"),
        // §1.3 interpolation
        (format!("{H}[routing:a]\nbind_port = 1\ndestinations = {{x}}\nx = {{x}}\nrouting_strategy = round-robin\n"), "Max recursion depth for interpolation exceeded."),
        // §4.2 destination_status
        (rt("[destination_status]\nerror_quarantine_threshold = 0\n"), "option error_quarantine_threshold in [destination_status] needs value between 1 and 65535 inclusive, was '0'"),
        (rt("[destination_status]\nerror_quarantine_interval = 3601\n"), "option error_quarantine_interval in [destination_status] needs value between 1 and 3600 inclusive, was '3601'"),
        (rt("[destination_status:a]\n[destination_status:b]\n"), "[destination_status] already loaded."),
        (rt("[io]\nthreads = 2000\n"), "option threads in [io] needs value between 0 and 1024 inclusive, was '2000'"),
        (rt("connection_sharing = 2\n"), "option connection_sharing in [routing:a] needs a value of either 0, 1, false or true, was '2'"),
        (rt("connection_sharing_delay = -1\n"), "option connection_sharing_delay in [routing:a] needs value between 0 and 1.79769e+308 inclusive, was '-1'"),
        (rt("wait_for_my_writes_timeout = 4000\n"), "option wait_for_my_writes_timeout in [routing:a] needs value between 0 and 3600 inclusive, was '4000'"),
        (rt("router_require_enforce = x\n"), "option router_require_enforce in [routing:a] needs a value of either 0, 1, false or true, was 'x'"),
        (rt("server_ssl_session_cache_size = 0\n"), "option server_ssl_session_cache_size in [routing:a] needs value between 1 and 2147483647 inclusive, was '0'"),
        (rt("client_ssl_session_cache_timeout = 99999\n"), "option client_ssl_session_cache_timeout in [routing:a] needs value between 0 and 86400 inclusive, was '99999'"),
        (rt("connect_retry_timeout = 4000\n"), "option connect_retry_timeout in [routing:a] needs value between 0 and 3600 inclusive, was '4000'"),
        (rt("access_mode = foo\n"), "option access_mode in [routing:a] is invalid; valid are auto (was 'foo')"),
    ];
    assert!(cases.len() >= 40);
    let mut failures = Vec::new();
    for (conf, want) in &cases {
        let (code, out, err) = run(conf, &[]);
        let first = err.lines().next().unwrap_or("");
        let ok = code == Some(1)
            && out.is_empty()
            && err.contains(want)
            && first.starts_with("Error: ")
            && !err.contains("panicked")
            && !err.contains("RUST_BACKTRACE");
        if !ok {
            failures.push(format!("config:\n{conf}\nwant: {want}\ngot code {code:?}, stdout {out:?}, stderr {err:?}\n"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn command_line_and_file_errors() {
    let good = rt("");
    let raw: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-h"], "Error: unknown option '-h'.\n"),
        (vec!["-c", "/nonexistent/x.conf"], "Error: The configuration file '/nonexistent/x.conf' does not exist.\n"),
        (vec!["-c", "/tmp"], "Error: The configuration file '/tmp' is expected to be a readable file, but it is a directory.\n"),
        (vec!["--core-file=2"], "Error: Value for parameter '--core-file' needs to be one of: ['0', '1']\n"),
        (vec!["--bootstrap=root@db:3306"], "Error: --bootstrap is not supported by this router"),
        (vec!["--DEFAULT:x.y=1"], "Error: Invalid argument '--DEFAULT:x'. Key not allowed on DEFAULT section\n"),
        (vec!["--pid-file="], "Error: Invalid empty value for --pid-file option\n"),
        (vec!["-u"], "Error: option '-u' expects a value, got nothing\n"),
        (vec!["-u", "no_such_user_here", "-c", "/x"], "Error: Can't use user 'no_such_user_here'. Please check that the user exists!\n"),
    ];
    for (args, want) in raw {
        let out = Command::new(common::router_bin())
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
        assert!(
            err.starts_with(want),
            "{args:?}: want {want:?}, got {err:?}"
        );
    }
    let cases: Vec<(Vec<String>, String)> = vec![
        (vec!["--foo.bar=1".into()], "Error: Loading plugin for config-section '[foo]' failed".into()),
        (vec!["--routing:a.bind_port=x".into()], "Error: Configuration error: option bind_port in [routing:a] needs value between 1 and 65535 inclusive, was 'x'".into()),
    ];
    for (args, want) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = run(&good, &a);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(out.is_empty());
        assert!(
            err.starts_with(&want),
            "{args:?}: want {want:?}, got {err:?}"
        );
    }
    // -c given twice
    let out = Command::new(common::router_bin())
        .args(["-c", "/a", "-c", "/b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error: Option -c/--config can only be used once; use -a/--extra-config instead.\n"
    );
    // the same file twice
    let dir = common::tmp_dir("dup");
    let p = dir.join("a.conf");
    std::fs::write(&p, &good).unwrap();
    let out = Command::new(common::router_bin())
        .arg("-c")
        .arg(&p)
        .arg("-a")
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("Error: The configuration file '{0}' is provided multiple times.\nAlready known configuration files:\n\n{0}\n", p.display())
    );
}

#[test]
fn default_file_lookup() {
    let dir = common::tmp_dir("defaults");
    let conf = dir.join("mysqlrouter.conf");
    let ini = dir.join("mysqlrouter.ini");
    let home_conf = dir.join(".mysqlrouter.conf");
    let home_ini = dir.join(".mysqlrouter.ini");
    let cands = vec![
        conf.clone(),
        ini.clone(),
        home_conf.clone(),
        home_ini.clone(),
    ];
    let e = config::files::resolve_with(None, &[], &cands).unwrap_err();
    assert!(e.starts_with("None of the default configuration files is readable and --config=<file> was not specified.\nChecked default configuration files:\n\n"));
    let e = config::files::resolve_with(None, &["x.conf".into()], &cands).unwrap_err();
    assert!(e.contains("provided, but neither default configuration files nor --config=<file> are readable files.\nChecked:"), "{e}");
    // .ini is the fallback of an unreadable .conf; both default places are read.
    std::fs::write(&ini, "[DEFAULT]\n").unwrap();
    std::fs::write(&home_conf, "[DEFAULT]\n").unwrap();
    std::fs::write(&home_ini, "[DEFAULT]\n").unwrap();
    assert_eq!(
        config::files::resolve_with(None, &[], &cands).unwrap(),
        vec![ini.clone(), home_conf.clone()]
    );
    std::fs::write(&conf, "[DEFAULT]\n").unwrap();
    assert_eq!(
        config::files::resolve_with(None, &[], &cands).unwrap(),
        vec![conf, home_conf]
    );
}

fn load(path: &str) -> config::Config {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    config::load(&[p], &[]).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn real_world_configs_load() {
    let c = load("tests/configs/oracle-packaged-default.conf");
    assert!(c.routes.is_empty());
    assert_eq!(
        c.default.logging_folder.as_deref(),
        Some("/var/log/mysqlrouter/")
    );
    assert_eq!(c.logger.sinks[0].level, mysqlrouter::logging::Level::Info);

    let c = load("tests/configs/legacy-2x-mode.conf");
    let r: Vec<(&str, Strategy, u16, Protocol)> = c
        .routes
        .iter()
        .map(|r| {
            (
                r.section.as_str(),
                r.strategy,
                r.bind.as_ref().unwrap().1,
                r.protocol,
            )
        })
        .collect();
    assert_eq!(
        r,
        vec![
            (
                "routing:failover",
                Strategy::FirstAvailable,
                7001,
                Protocol::Classic
            ),
            (
                "routing:balancing",
                Strategy::RoundRobin,
                7002,
                Protocol::Classic
            ),
            (
                "routing:failover_x",
                Strategy::FirstAvailable,
                7003,
                Protocol::X
            ),
            (
                "routing:balancing_x",
                Strategy::RoundRobin,
                7004,
                Protocol::X
            ),
        ]
    );
    assert_eq!(c.routes[0].destinations.len(), 3);
    assert_eq!(c.routes[0].destinations[2].address(), "127.0.0.1:3308");

    let c = load("tests/configs/bootstrap-84-static.conf");
    assert_eq!(c.routes.len(), 4);
    assert_eq!(
        c.routes[3].destinations[0].port, 33060,
        "x protocol default port"
    );
    assert_eq!(c.default.max_total_connections, 1024);
    assert_eq!(c.default.user.as_deref(), Some("mysqlrouter"));
    assert_eq!(c.destination_status.error_quarantine_threshold, 2);
    // `name` is known because [http_auth_realm] has such an option (MySQL Router's rule).
    assert!(
        !c.notices
            .iter()
            .any(|n| n.message.contains("is not supported")),
        "{:?}",
        c.notices
    );

    let c = load("etc/mysqlrouter.conf");
    assert_eq!(c.routes.len(), 2);
}

#[test]
fn defaults_and_ranges() {
    let dir = common::tmp_dir("defaults");
    let p = dir.join("c.conf");
    std::fs::write(
        &p,
        "[routing:x]\nbind_port=1\ndestinations=h1,[::1]:5,h1\nrouting_strategy=FIRST-available\n",
    )
    .unwrap();
    let c = config::load(&[p], &[]).unwrap();
    let r = &c.routes[0];
    assert_eq!(r.bind, Some(("127.0.0.1".into(), 1)));
    assert_eq!(
        r.destinations
            .iter()
            .map(|d| d.address())
            .collect::<Vec<_>>(),
        vec!["h1:3306", "[::1]:5"]
    );
    assert_eq!(r.connect_timeout, Duration::from_secs(5));
    assert_eq!(r.client_connect_timeout, Duration::from_secs(9));
    assert_eq!(
        (r.max_connections, r.max_connect_errors, r.net_buffer_length),
        (0, 100, 16384)
    );
    assert_eq!(c.default.max_total_connections, 512);
    assert_eq!(
        c.default.logging_folder, None,
        "unset means the compiled-in folder"
    );
    assert_eq!(
        c.logger.sinks[0].kind,
        config::SinkKind::File("/var/log/mysqlrouter/mysqlrouter.log".into())
    );
}

#[test]
fn interpolation_and_merge_across_files() {
    let dir = common::tmp_dir("merge");
    let a = dir.join("a.conf");
    let b = dir.join("b.conf");
    std::fs::write(
        &a,
        "[DEFAULT]\nbackend_host = 127.0.0.1\nlogging_folder = {program}-logs\n[routing:RW]\nbind_address = {backend_host}:{port}\nport = 7000\ndestinations = {backend_host}:3306,{unknown_host}\nrouting_strategy = first-available\nconnect_timeout = 2\n",
    )
    .unwrap();
    std::fs::write(
        &b,
        "[routing:rw]\nconnect_timeout = 3\n[DEFAULT]\nbackend_host = 10.0.0.1\n",
    )
    .unwrap();
    let store = config::read_store(&[a.clone(), b.clone()], &[]).unwrap();
    // `{unknown_host}` stays as written and then fails host validation, like Oracle's.
    let e = config::validate(&store).unwrap_err().to_string();
    assert!(
        e.contains("invalid destination address '{unknown_host}'"),
        "{e}"
    );

    std::fs::write(
        &a,
        "[DEFAULT]\nbackend_host = 127.0.0.1\nlogging_folder = /tmp/{program}-logs\n[routing:RW]\nbind_address = {backend_host}:{port}\nport = 7000\ndestinations = {backend_host}:3306\nrouting_strategy = first-available\nconnect_timeout = 2\n",
    )
    .unwrap();
    let overrides =
        mysqlrouter::cli::parse(&["--routing:rw.max_connections=7".to_string()]).unwrap();
    let mysqlrouter::cli::Command::Run(run) = overrides else {
        panic!()
    };
    let c = config::load(&[a, b], &run.overrides).unwrap();
    let r = &c.routes[0];
    assert_eq!(
        r.section, "routing:RW",
        "merged into the first file's section"
    );
    assert_eq!(r.connect_timeout, Duration::from_secs(3), "later file wins");
    assert_eq!(
        r.destinations[0].address(),
        "10.0.0.1:3306",
        "[DEFAULT] of a later file"
    );
    assert_eq!(r.bind, Some(("10.0.0.1".into(), 7000)));
    assert_eq!(r.max_connections, 7, "command-line override");
    assert_eq!(
        c.default.logging_folder.as_deref(),
        Some("/tmp/mysqlrouter-logs")
    );
    assert!(c
        .notices
        .iter()
        .any(|n| n.message == "option 'routing.port' is not supported"));
}

#[test]
fn version_and_help() {
    let out = Command::new(common::router_bin())
        .arg("-V")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(
        v.starts_with(&format!(
            "MySQL Router  Ver {} for Linux on ",
            env!("CARGO_PKG_VERSION")
        )),
        "{v}"
    );
    assert!(v.trim_end().ends_with("(mysqlrouter-rs)"));
    let dir = common::tmp_dir("home");
    std::fs::write(dir.join(".mysqlrouter.conf"), "").unwrap();
    let out = Command::new(common::router_bin())
        .arg("--help")
        .env("HOME", &dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let h = String::from_utf8_lossy(&out.stdout);
    assert!(h.contains("Configuration read from the following files in the given order (enclosed\nin parentheses means not available for reading):"));
    assert!(
        h.contains(&format!("\n  {}/.mysqlrouter.conf\n", dir.display())),
        "{h}"
    );
    assert!(
        h.contains(&format!("\n  ({}/.mysqlrouter.ini)\n", dir.display())),
        "{h}"
    );
    for s in [
        "(-V|--version)",
        "(-?|--help)",
        "[-c|--config=<path>]",
        "[-a|--extra-config=<path>]",
        "# Options",
        "  -V, --version",
        "# Examples",
    ] {
        assert!(h.contains(s), "help lacks {s}");
    }
}

#[test]
fn unknown_option_warns_and_runs() {
    let (code, _out, err) = run(&rt("foo = 1\n"), &[]);
    assert_eq!(code, None, "router kept running: {err}");
    assert!(
        err.contains("main WARNING") && err.contains("option 'routing.foo' is not supported"),
        "{err}"
    );
    assert!(err.contains("main SYSTEM") && err.contains("Starting 'MySQL Router', version: "));
}

mod property {
    use proptest::prelude::*;

    fn check(text: &str) {
        if let Ok(sections) = mysqlrouter::config::ini::parse(text) {
            let mut s =
                mysqlrouter::config::Store::with_builtins(&mysqlrouter::config::builtin_defaults());
            s.merge(sections);
            let _ = mysqlrouter::config::validate(&s);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            check(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn ini_shaped_text_never_panics(text in "([\\[\\]:=#;{}\\n ,.a-z_0-9-]|routing|destinations|bind_port|DEFAULT|logger|level|\\[::1\\]){0,200}") {
            check(&text);
        }
    }
}
