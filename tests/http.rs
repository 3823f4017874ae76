//! Monitoring against the real binary: the REST API compared with Oracle's MySQL Router
//! 9.7.4's recorded answers (tests/fixtures/oracle-rest), Basic auth, HTTPS with a
//! certificate made by openssl, /metrics parsed by a Prometheus text-format parser and
//! checked against the traffic the test made, `mysqlrouter_passwd`, config errors, and
//! hostile HTTP clients that must not disturb routing. Clients: curl, mysql_async,
//! the mariadb CLI, raw sockets.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http::*;
use common::*;
use serde_json::Value;

const CRED: &str = "alice:secret";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oracle-rest")
}

/// The same value kinds in the same places: object keys (and their order), array
/// lengths, and scalar types.
fn same_shape(ours: &Value, oracle: &Value, at: &str) -> Result<(), String> {
    match (ours, oracle) {
        (Value::Object(a), Value::Object(b)) => {
            let ka: Vec<&String> = a.keys().collect();
            let kb: Vec<&String> = b.keys().collect();
            if ka != kb {
                return Err(format!("{at}: keys {ka:?}, Oracle {kb:?}"));
            }
            for (k, v) in a {
                same_shape(v, &b[k], &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Err(format!("{at}: {} items, Oracle {}", a.len(), b.len()));
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                same_shape(x, y, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        (Value::Number(a), Value::Number(b)) if a.is_u64() == b.is_u64() => Ok(()),
        (Value::String(_), Value::String(_)) | (Value::Bool(_), Value::Bool(_)) => Ok(()),
        (Value::Null, Value::Null) => Ok(()),
        _ => Err(format!("{at}: {ours} where Oracle has {oracle}")),
    }
}

/// Answers whose bodies hold ports, pids, times or limits of the machine they ran on
/// are compared by shape; all others must be equal byte for byte.
fn machine_specific(name: &str) -> bool {
    [
        "config",
        "destinations",
        "router/status",
        "connections",
        "routing/status",
        "if-modified-since old",
    ]
    .iter()
    .any(|s| name.contains(s))
}

/// The REST API in every route state, recorded by the same script that recorded
/// Oracle's router, must give Oracle's answers: status lines, content types,
/// WWW-Authenticate, Allow, Last-Modified, and bodies (equal, or of equal shape).
#[test]
fn rest_api_answers_as_oracle_does_in_every_route_state() {
    let db = MariaDb::start();
    let dir = tmp_dir("rest");
    let passwd = passwd_file(&dir, "alice", "secret");
    let (rw, ro, dead, http) = (free_port(), free_port(), free_port(), free_port());
    let conf = std::fs::read_to_string(fixtures().join("router.conf"))
        .unwrap()
        .replace("@RW@", &rw.to_string())
        .replace("@RO@", &ro.to_string())
        .replace("@DEAD@", &dead.to_string())
        .replace("@DB@", &db.port.to_string())
        .replace("@DEAD_DB@", &free_port().to_string())
        .replace("@HTTP@", &http.to_string())
        .replace("@PASSWD@", path_str(&passwd));
    let router = Router::start(&conf, &[rw, ro, dead]);
    let base = format!("http://127.0.0.1:{http}");
    wait_http(&base, &[], Duration::from_secs(10));

    let out = Command::new("python3")
        .arg(fixtures().join("capture.py"))
        .args([
            &base,
            CRED,
            &rw.to_string(),
            &ro.to_string(),
            &dead.to_string(),
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "capture.py: {}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        router.log_text()
    );
    let ours: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let oracle: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("oracle-9.7.4.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(ours.len(), oracle.len());
    let mut problems = Vec::new();
    for (a, b) in ours.iter().zip(&oracle) {
        let name = b["name"].as_str().unwrap();
        assert_eq!(a["name"], b["name"]);
        for k in ["status", "reason"] {
            if a[k] != b[k] {
                problems.push(format!("{name}: {k} {} (Oracle {})", a[k], b[k]));
            }
        }
        for h in ["content-type", "www-authenticate", "allow"] {
            if a["headers"][h] != b["headers"][h] {
                problems.push(format!(
                    "{name}: {h} {} (Oracle {})",
                    a["headers"][h], b["headers"][h]
                ));
            }
        }
        let lm = |v: &Value| v["headers"].get("last-modified").is_some();
        if lm(a) != lm(b) {
            problems.push(format!("{name}: Last-Modified presence differs"));
        }
        let (ab, bb) = (a["body"].as_str().unwrap(), b["body"].as_str().unwrap());
        if machine_specific(name) {
            let (Ok(x), Ok(y)) = (
                serde_json::from_str::<Value>(ab),
                serde_json::from_str::<Value>(bb),
            ) else {
                problems.push(format!("{name}: body {ab:?} (Oracle {bb:?})"));
                continue;
            };
            if let Err(e) = same_shape(&x, &y, name) {
                problems.push(e);
            }
        } else if ab != bb {
            problems.push(format!("{name}: body {ab:?}\n   Oracle {bb:?}"));
        }
    }
    assert!(problems.is_empty(), "differences:\n{}", problems.join("\n"));

    // The live values behind the shapes: the held connection, the blocked host, the
    // quarantined route.
    let find = |n: &str| ours.iter().find(|e| e["name"] == n).unwrap().clone();
    let conns: Value = serde_json::from_str(
        find("open /routes/rw/connections")["body"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let c = &conns["items"][0];
    assert_eq!(c["destinationAddress"], format!("127.0.0.1:{}", db.port));
    assert!(c["sourceAddress"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert!(
        c["bytesFromServer"].as_u64().unwrap() > 50,
        "the greeting: {c}"
    );
    assert_eq!(c["bytesToServer"], 0, "the client sent nothing: {c}");
    let routes: Value =
        serde_json::from_str(find("idle /routes")["body"].as_str().unwrap()).unwrap();
    assert_eq!(routes["items"][0]["name"], "dead", "sorted by name");
    drop(router);
}

/// Live connections of real clients: bytes in both directions and the times, while
/// they are open; gone when they close.
/// `/routes/NAME/connections` lists live clients with their bytes and time stamps while
/// they are connected, on a byte-relay route and on one that terminates TLS (whose
/// bytes are counted on the client's socket, TLS records included, as they move).
#[test]
fn connections_of_real_clients_with_live_bytes() {
    let db = MariaDb::start();
    let dir = tmp_dir("conns");
    let passwd = passwd_file(&dir, "alice", "secret");
    let (cert, key) = common::pki::self_signed("conns-pki", &["rsa:2048"]);
    let (rw, term, http) = (free_port(), free_port(), free_port());
    let body = format!(
        "[routing:rw]\nbind_address=127.0.0.1\nbind_port={rw}\ndestinations={d}\nrouting_strategy=first-available\n\n\
         [routing:term]\nbind_address=127.0.0.1\nbind_port={term}\ndestinations={d}\nrouting_strategy=first-available\n\
         client_ssl_mode=REQUIRED\nclient_ssl_cert={cert}\nclient_ssl_key={key}\nserver_ssl_mode=DISABLED\n\n{}",
        monitoring_sections(http, &passwd),
        d = db.addr(),
    );
    let _router = Router::start(&body, &[rw, term]);
    let base = format!("http://127.0.0.1:{http}/api/20190715/routes");
    wait_http(
        &format!("{base}/rw/connections"),
        &[],
        Duration::from_secs(10),
    );
    live_bytes_while_connected(&format!("{base}/rw/connections"), opts(rw));
    let tls: mysql_async::Opts = mysql_async::OptsBuilder::from_opts(opts(term))
        .ssl_opts(Some(
            mysql_async::SslOpts::default().with_danger_accept_invalid_certs(true),
        ))
        .into();
    live_bytes_while_connected(&format!("{base}/term/connections"), tls);
}

/// Two clients, one sending 20 kB and one receiving 30 kB, still connected when
/// `url` is asked; then both leave and the list empties.
fn live_bytes_while_connected(url: &str, opts: mysql_async::Opts) {
    let big = "x".repeat(20_000);
    let rt = rt();
    rt.block_on(async {
        use mysql_async::prelude::Queryable;
        let mut a = mysql_async::Conn::new(opts.clone()).await.unwrap();
        let mut b = mysql_async::Conn::new(opts).await.unwrap();
        let n: Option<u64> = a
            .query_first(format!("SELECT LENGTH('{big}')"))
            .await
            .unwrap();
        assert_eq!(n, Some(20_000));
        let _: Option<String> = b.query_first("SELECT REPEAT('y', 30000)").await.unwrap();
        let ans = tokio::task::spawn_blocking({
            let url = url.to_string();
            move || curl(&["-u", CRED], &url).unwrap()
        })
        .await
        .unwrap();
        assert_eq!(ans.status, 200);
        let items = ans.json()["items"].as_array().unwrap().clone();
        assert_eq!(items.len(), 2, "{url}: {items:?}");
        let up = |i: usize| items[i]["bytesToServer"].as_u64().unwrap();
        let down = |i: usize| items[i]["bytesFromServer"].as_u64().unwrap();
        assert!(up(0) > 20_000 && down(0) < 20_000, "{url}: {:?}", items[0]);
        assert!(down(1) > 30_000 && up(1) < 20_000, "{url}: {:?}", items[1]);
        for i in &items {
            for k in [
                "timeStarted",
                "timeConnectedToServer",
                "timeLastSentToServer",
                "timeLastReceivedFromServer",
            ] {
                let t = i[k]
                    .as_str()
                    .unwrap_or_else(|| panic!("{url}: no {k} in {i}"));
                assert!(
                    t.len() == 27 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
                    "{k}: {t}"
                );
            }
        }
        a.disconnect().await.unwrap();
        b.disconnect().await.unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = curl(&["-u", CRED], url).unwrap().json()["items"]
            .as_array()
            .unwrap()
            .len();
        if n == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{url}: connections left over: {n}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn scrape(url: &str, extra: &[&str]) -> prometheus_parse::Scrape {
    let ans = curl(extra, url).expect("metrics answer");
    assert_eq!(ans.status, 200, "{}", ans.body);
    assert!(
        ans.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        ans.headers
    );
    assert!(ans.body.ends_with("# EOF\n"));
    let lines = ans.body.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("a valid exposition")
}

fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&prometheus_parse::Sample> = s
        .samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    match &found[0].value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        other => panic!("{name}: {other:?}"),
    }
}

/// /metrics, parsed by an independent Prometheus parser, counts exactly the traffic
/// this test makes: admitted clients, refusals by reason, handshake failures, blocked
/// hosts, bytes both ways, destination state, connect latencies.
#[test]
fn metrics_count_the_traffic_the_test_made() {
    let db = MariaDb::start();
    let dir = tmp_dir("metrics");
    let passwd = passwd_file(&dir, "alice", "secret");
    let (app, dead, fo, http) = (free_port(), free_port(), free_port(), free_port());
    let gone = free_port();
    let body = format!(
        "[routing:fo]\nbind_address=127.0.0.1\nbind_port={fo}\ndestinations=127.0.0.1:{gone},{}\nrouting_strategy=first-available\n\n\
         [routing:app]\nbind_address=127.0.0.1\nbind_port={app}\ndestinations={}\nrouting_strategy=round-robin\nmax_connections=2\nmax_connect_errors=2\n\n\
         [routing:dead]\nbind_address=127.0.0.1\nbind_port={dead}\ndestinations=127.0.0.1:{}\nrouting_strategy=first-available\n\n\
         [routing:sock]\nsocket={}\ndestinations={}\nrouting_strategy=round-robin\n\n\
         {}\n[metrics]\nrequire_realm=r\n",
        db.addr(),
        db.addr(),
        free_port(),
        dir.join("sock").display(),
        db.addr(),
        monitoring_sections(http, &passwd)
    );
    let _router = Router::start(&body, &[app, dead, fo]);
    let url = format!("http://127.0.0.1:{http}/metrics");
    wait_http(&url, &[], Duration::from_secs(10));
    let denied = curl(&[], &url).unwrap();
    assert_eq!(denied.status, 401);
    assert_eq!(
        denied.header("www-authenticate"),
        Some("basic realm=\"Some Realm\"")
    );
    let auth = ["-u", CRED];

    let rt = rt();
    let big = "z".repeat(10_000);
    rt.block_on(async {
        use mysql_async::prelude::Queryable;
        // 5 clients one after the other, each with one query.
        for _ in 0..5 {
            let mut c = mysql_async::Conn::new(opts(app)).await.unwrap();
            let _: Option<u64> = c
                .query_first(format!("SELECT LENGTH('{big}')"))
                .await
                .unwrap();
            c.disconnect().await.unwrap();
            let url = url.clone();
            tokio::task::spawn_blocking(move || idle(&url))
                .await
                .unwrap();
        }
        // Two held; the third is over max_connections.
        let a = mysql_async::Conn::new(opts(app)).await.unwrap();
        let b = mysql_async::Conn::new(opts(app)).await.unwrap();
        let third = mysql_async::Conn::new(opts(app)).await;
        assert!(third.is_err());
        let s = tokio::task::spawn_blocking({
            let url = url.clone();
            move || scrape(&url, &["-u", CRED])
        })
        .await
        .unwrap();
        assert_eq!(
            value(
                &s,
                "mysqlrouter_route_active_connections",
                &[("route", "app")]
            ),
            2.0
        );
        assert_eq!(value(&s, "mysqlrouter_connections", &[]), 2.0);
        a.disconnect().await.unwrap();
        b.disconnect().await.unwrap();
    });
    idle(&url);
    // Two bad handshakes block 127.0.0.1 (max_connect_errors=2), the next is refused.
    for _ in 0..2 {
        let _ = raw_handshake_garbage(app);
    }
    // The router counts a bad handshake once the client has gone; wait for the block.
    let deadline = Instant::now() + Duration::from_secs(5);
    while value(
        &scrape(&url, &auth),
        "mysqlrouter_route_blocked_hosts",
        &[("route", "app")],
    ) < 1.0
    {
        assert!(Instant::now() < deadline, "127.0.0.1 was not blocked");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = raw_handshake_garbage(app);
    // The dead route has no destination to offer.
    assert!(cli_port_tcp(dead).is_err());
    // fo's first destination is gone: the client lands on the second, a switch.
    assert_eq!(cli_port_tcp(fo), Ok(db.port));

    let s = idle(&url);
    let app_l = [("route", "app")];
    assert_eq!(
        value(&s, "mysqlrouter_route_connections_total", &app_l),
        9.0,
        "5 + 2 + 2 bad handshakes"
    );
    let refused = |reason: &str, route: &str| {
        value(
            &s,
            "mysqlrouter_route_refused_connections_total",
            &[("route", route), ("reason", reason)],
        )
    };
    assert_eq!(refused("max_connections", "app"), 1.0);
    assert_eq!(refused("blocked_host", "app"), 1.0);
    assert_eq!(refused("max_total_connections", "app"), 0.0);
    assert_eq!(refused("no_destination", "app"), 0.0);
    assert_eq!(refused("no_destination", "dead"), 1.0);
    assert_eq!(
        value(&s, "mysqlrouter_route_handshake_failures_total", &app_l),
        2.0
    );
    assert_eq!(value(&s, "mysqlrouter_route_blocked_hosts", &app_l), 1.0);
    let up = value(
        &s,
        "mysqlrouter_route_bytes_total",
        &[("route", "app"), ("direction", "client_to_server")],
    );
    let down = value(
        &s,
        "mysqlrouter_route_bytes_total",
        &[("route", "app"), ("direction", "server_to_client")],
    );
    assert!(
        (50_000.0..60_000.0).contains(&up),
        "5 queries of 10 kB and handshakes: {up}"
    );
    assert!(
        down > 7.0 * 50.0 && down < 20_000.0,
        "greetings and small results: {down}"
    );
    let dest = format!("127.0.0.1:{}", db.port);
    let d = [("route", "app"), ("destination", dest.as_str())];
    assert_eq!(value(&s, "mysqlrouter_destination_up", &d), 1.0);
    assert_eq!(
        value(&s, "mysqlrouter_destination_quarantine_entries_total", &d),
        0.0
    );
    let lat = s
        .samples
        .iter()
        .find(|x| {
            x.metric == "mysqlrouter_destination_connect_duration_seconds"
                && x.labels.get("route") == Some("app")
        })
        .expect("latency histogram");
    match &lat.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let inf = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
            assert_eq!(inf.count, 9.0, "one connect per admitted client");
        }
        other => panic!("{other:?}"),
    }
    let dead_dest = s
        .samples
        .iter()
        .find(|x| x.metric == "mysqlrouter_destination_up" && x.labels.get("route") == Some("dead"))
        .unwrap();
    assert_eq!(
        dead_dest.value,
        prometheus_parse::Value::Gauge(0.0),
        "the dead destination is quarantined"
    );
    assert_eq!(
        value(&s, "mysqlrouter_route_accepting", &[("route", "dead")]),
        1.0,
        "first-available keeps listening"
    );
    assert_eq!(
        value(
            &s,
            "mysqlrouter_build_info",
            &[("edition", "mysqlrouter-rs")]
        ),
        1.0
    );
    let gone_key = format!("127.0.0.1:{gone}");
    let fo_gone = [("route", "fo"), ("destination", gone_key.as_str())];
    let fo_db = [("route", "fo"), ("destination", dest.as_str())];
    assert_eq!(
        value(&s, "mysqlrouter_destination_switches_total", &fo_db),
        1.0
    );
    assert_eq!(
        value(&s, "mysqlrouter_destination_switches_total", &fo_gone),
        0.0
    );
    assert_eq!(
        value(
            &s,
            "mysqlrouter_destination_quarantine_entries_total",
            &fo_gone
        ),
        1.0
    );
    assert_eq!(value(&s, "mysqlrouter_destination_up", &fo_gone), 0.0);
    // The REST view of the same: a first-available route keeps listening with its only
    // destination quarantined and stays alive (as Oracle 9.7.4 answers); a socket-only
    // route shows MySQL Router's default bind address and port 0.
    let api = format!("http://127.0.0.1:{http}/api/20190715/routes");
    let h = curl(&auth, &format!("{api}/dead/health")).unwrap();
    assert_eq!((h.status, h.body.as_str()), (200, r#"{"isAlive":true}"#));
    let c = curl(&auth, &format!("{api}/sock/config")).unwrap().json();
    assert_eq!(
        c.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "bindAddress",
            "bindPort",
            "clientConnectTimeoutInMs",
            "destinationConnectTimeoutInMs",
            "maxActiveConnections",
            "maxConnectErrors",
            "protocol",
            "socket",
            "routingStrategy"
        ]
    );
    assert_eq!(
        (&c["bindAddress"], &c["bindPort"]),
        (&Value::from("127.0.0.1"), &Value::from(0))
    );
}

/// Waits (5 s at most) until route `app` has no active client (clients that just left
/// may still be closing inside the router); the scrape that saw it.
fn idle(url: &str) -> prometheus_parse::Scrape {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = scrape(url, &["-u", CRED]);
        if value(
            &s,
            "mysqlrouter_route_active_connections",
            &[("route", "app")],
        ) == 0.0
        {
            return s;
        }
        assert!(Instant::now() < deadline, "clients still active");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Connects, reads the greeting and sends bytes that are no handshake.
fn raw_handshake_garbage(port: u16) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    let _ = s.read(&mut buf);
    let _ = s.write_all(b"\x05\x00\x00\x07garbage-garbage");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// `ssl = 1`: HTTPS with a certificate made by openssl, verified by curl; plain HTTP
/// on that port gets no answer; a broken certificate stops the start with MySQL
/// Router's message.
#[test]
fn https_with_a_certificate_made_by_openssl() {
    let dir = tmp_dir("https");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(st.success());
    let passwd = passwd_file(&dir, "alice", "secret");
    let (port, http) = (free_port(), free_port());
    let sections = monitoring_sections(http, &passwd).replace(
        "bind_address=127.0.0.1\n",
        &format!(
            "bind_address=127.0.0.1\nssl=1\nssl_cert={}\nssl_key={}\n",
            cert.display(),
            key.display()
        ),
    );
    let body = format!(
        "[routing:rw]\nbind_address=127.0.0.1\nbind_port={port}\ndestinations=127.0.0.1:{}\nrouting_strategy=first-available\n\n{sections}",
        free_port()
    );
    let router = Router::start(&body, &[port]);
    assert!(router.wait_log(
        &format!("listening on https://127.0.0.1:{http}"),
        Duration::from_secs(5)
    ));
    let url = format!("https://127.0.0.1:{http}/api/20190715/routes");
    let ca = ["--cacert", path_str(&cert)];
    wait_http(&url, &ca, Duration::from_secs(10));
    let ok = curl(&["--cacert", path_str(&cert), "-u", CRED], &url).unwrap();
    assert_eq!(
        (ok.status, ok.body.as_str()),
        (200, r#"{"items":[{"name":"rw"}]}"#)
    );
    let no = curl(&["--cacert", path_str(&cert)], &url).unwrap();
    assert_eq!(no.status, 401);
    assert!(
        curl(&[], &format!("http://127.0.0.1:{http}/api/20190715/routes"))
            .is_none_or(|a| a.status >= 400),
        "plain HTTP on the TLS port"
    );
    drop(router);

    // A certificate file that holds no certificate.
    std::fs::write(dir.join("bad.pem"), "garbage\n").unwrap();
    let (code, err) = run_config(&body.replace(path_str(&cert), path_str(&dir.join("bad.pem"))));
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!(
            "Error: using SSL private key file '{}' or SSL certificate file '{}' failed: ",
            key.display(),
            dir.join("bad.pem").display()
        )),
        "{err}"
    );
}

/// Runs the router on `body` and returns its exit code (within 10 s) and stderr.
fn run_config(body: &str) -> (Option<i32>, String) {
    let dir = tmp_dir("badconf");
    let conf = dir.join("r.conf");
    std::fs::write(
        &conf,
        format!(
            "[DEFAULT]\nlogging_folder=\nruntime_folder={}\n{body}",
            dir.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(router_bin())
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let code = wait_exit(&mut child, Duration::from_secs(10));
    if code.is_none() {
        let _ = child.kill();
    }
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    let _ = child.wait();
    (code, err)
}

/// Bad monitoring configurations exit 1 with MySQL Router's texts.
#[test]
fn bad_monitoring_config_exits_1_with_mysql_routers_message() {
    let dir = tmp_dir("http-conf");
    let passwd = passwd_file(&dir, "alice", "secret");
    let route = format!(
        "[routing:rw]\nbind_address=127.0.0.1\nbind_port={}\ndestinations=127.0.0.1:1\nrouting_strategy=first-available\n",
        free_port()
    );
    let sections = monitoring_sections(free_port(), &passwd);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let cases: Vec<(String, String)> = vec![
        (
            sections.replace("[rest_routing]\nrequire_realm=r", "[rest_routing]\nrequire_realm=nope"),
            "Error: Configuration error: The option 'require_realm=nope' in [rest_routing] does not match any http_auth_realm. No [http_auth_realm:nope] section defined.".into(),
        ),
        (
            sections.replace("[rest_router]\nrequire_realm=r\n", "[rest_router]\n"),
            "Error: Configuration error: option require_realm in [rest_router] is required".into(),
        ),
        (
            format!("{sections}\n[rest_connection_pool]\n"),
            "Error: Configuration error: option require_realm in [rest_connection_pool] is required".into(),
        ),
        (
            format!("{sections}\n[rest_connection_pool]\nrequire_realm=nope\n"),
            "Error: Configuration error: The option 'require_realm=nope' in [rest_connection_pool] does not match any http_auth_realm. Known [http_auth_realm:<...>] section: r".into(),
        ),
        (
            sections.replace(path_str(&passwd), "/nonexistent/users"),
            "Error: parsing /nonexistent/users failed for section [http_auth_backend]: No such file or directory".into(),
        ),
        (
            sections.replace("bind_address=127.0.0.1\n", "bind_address=127.0.0.1\nssl=1\n"),
            "Error: Configuration error: if ssl=1 is set, ssl_cert and ssl_key must be set too.".into(),
        ),
        (
            sections.replace("method=basic", "method=digest"),
            "Error: Configuration error: unsupported authentication method for [http_auth_realm] 'r': digest, supported method(s): basic".into(),
        ),
        (
            sections.replace(&format!("port={}", sections.split("port=").nth(1).unwrap().split('\n').next().unwrap()), &format!("port={busy_port}")),
            format!("Error: bind(127.0.0.1:{busy_port}) failed: Address already in use"),
        ),
    ];
    for (sec, want) in cases {
        let (code, err) = run_config(&format!("{route}\n{sec}"));
        assert_eq!(code, Some(1), "{want}: {err}");
        assert!(err.contains(&want), "want {want:?}\ngot {err}");
    }
    // A password file with a line MySQL Router cannot parse.
    let broken = dir.join("broken");
    std::fs::write(&broken, "alice:$5$x$y\nno colon here\n").unwrap();
    let (code, err) = run_config(&format!(
        "{route}\n{}",
        sections.replace(path_str(&passwd), path_str(&broken))
    ));
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!(
            "Error: parsing {} failed for section [http_auth_backend]: parse error",
            broken.display()
        )),
        "{err}"
    );
}

/// `mysqlrouter_passwd` with each KDF: the router accepts every account it writes;
/// verify, list and delete behave and answer as Oracle's tool does; no password
/// reaches its output.
#[test]
fn mysqlrouter_passwd_accounts_log_in_to_the_router() {
    let dir = tmp_dir("passwd");
    let file = dir.join("users");
    let f = path_str(&file);
    let kdfs = [
        "sha256-crypt",
        "sha512-crypt",
        "pbkdf2-sha256",
        "pbkdf2-sha512",
    ];
    for (i, kdf) in kdfs.iter().enumerate() {
        let user = format!("u{i}");
        let pw = format!("pw-{kdf}");
        let (code, out, err) = passwd_tool(
            &["--kdf", kdf, "--work-factor", "1000", "set", f, &user],
            &format!("{pw}\n"),
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, "Please enter password: \n");
        assert!(!out.contains(&pw) && !err.contains(&pw));
    }
    let (code, list, _) = passwd_tool(&["list", f], "");
    assert_eq!(code, 0);
    let prefixes = [
        "$5$rounds=1000$",
        "$6$rounds=1000$",
        "$pbkdf2-sha256$1000$",
        "$pbkdf2-sha512$1000$",
    ];
    for (i, line) in list.lines().enumerate() {
        assert!(line.starts_with(&format!("u{i}:{}", prefixes[i])), "{line}");
    }
    assert_eq!(passwd_tool(&["verify", f, "u1"], "pw-sha512-crypt\n").0, 0);
    let (code, _, err) = passwd_tool(&["verify", f, "u1"], "wrong\n");
    assert_eq!((code, err.as_str()), (1, "password does not match\n"));
    let (code, _, err) = passwd_tool(&["delete", f, "nobody"], "");
    assert_eq!((code, err.as_str()), (1, "user 'nobody' not found\n"));
    let (code, _, err) = passwd_tool(&["list", "/nonexistent/x"], "");
    assert_eq!(
        (code, err.as_str()),
        (1, "[Error] can't open file '/nonexistent/x'\n")
    );
    let (code, _, err) = passwd_tool(&["--kdf", "md5", "set", f, "x"], "");
    assert_eq!(code, 1);
    assert!(
        err.starts_with("[Error] unknown kdf: md5\n\n[Note] Use '"),
        "{err}"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    let (port, http) = (free_port(), free_port());
    let body = format!(
        "[routing:rw]\nbind_address=127.0.0.1\nbind_port={port}\ndestinations=127.0.0.1:{}\nrouting_strategy=first-available\n\n{}",
        free_port(),
        monitoring_sections(http, &file)
    );
    let router = Router::start(&body, &[port]);
    let url = format!("http://127.0.0.1:{http}/api/20190715/routes");
    wait_http(&url, &[], Duration::from_secs(10));
    for (i, kdf) in kdfs.iter().enumerate() {
        let cred = format!("u{i}:pw-{kdf}");
        assert_eq!(curl(&["-u", &cred], &url).unwrap().status, 200, "{kdf}");
        let bad = format!("u{i}:nope");
        assert_eq!(curl(&["-u", &bad], &url).unwrap().status, 401, "{kdf}");
    }
    // The file changes while the router runs: the deleted account is out at once.
    assert_eq!(passwd_tool(&["delete", f, "u0"], "").0, 0);
    assert_eq!(
        curl(&["-u", "u0:pw-sha256-crypt"], &url).unwrap().status,
        401
    );
    assert_eq!(
        curl(&["-u", "u1:pw-sha512-crypt"], &url).unwrap().status,
        200
    );
    let log = router.log_text();
    for kdf in kdfs {
        assert!(!log.contains(&format!("pw-{kdf}")), "a password in the log");
    }
}

/// Garbage, a 1 MB header, slow clients and 1,000 connections on the HTTP port: the
/// router keeps routing (no failed query meanwhile) and answers HTTP again afterwards.
#[test]
fn hostile_http_clients_never_disturb_routing() {
    raise_fd_limit();
    let db = MariaDb::start();
    let dir = tmp_dir("hostile");
    let passwd = passwd_file(&dir, "alice", "secret");
    let (rw, http) = (free_port(), free_port());
    let body = format!(
        "[routing:rw]\nbind_address=127.0.0.1\nbind_port={rw}\ndestinations={}\nrouting_strategy=first-available\n\n{}",
        db.addr(),
        monitoring_sections(http, &passwd)
    );
    let mut router = Router::start(&body, &[rw]);
    let url = format!("http://127.0.0.1:{http}/api/20190715/routes");
    wait_http(&url, &[], Duration::from_secs(10));

    // Routing traffic throughout: one query per connection, counted.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let traffic = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                match lib_port(rw) {
                    Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                    Err(e) => {
                        eprintln!("query failed: {e}");
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let connect = || TcpStream::connect(("127.0.0.1", http)).unwrap();
    // Garbage.
    let mut g = connect();
    g.write_all(&[0xff, 0x00, 0x13, 0x37, b'\n', b'\r', b'\n'].repeat(1000))
        .unwrap();
    g.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sink = Vec::new();
    let _ = g.read_to_end(&mut sink);
    assert!(
        sink.is_empty() || sink.starts_with(b"HTTP/1.1 4"),
        "{:?}",
        String::from_utf8_lossy(&sink)
    );
    // A 1 MB header.
    let mut h = connect();
    let _ = h.write_all(
        format!(
            "GET /api/20190715/routes HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(1 << 20)
        )
        .as_bytes(),
    );
    h.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = Vec::new();
    let _ = h.read_to_end(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&answer[..answer.len().min(200)])
    );
    // Slow clients: half a request head, then nothing.
    let slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = connect();
            let _ = s.write_all(b"GET /api/20190715/ro");
            s
        })
        .collect();
    // 1,000 connections at once, held.
    let many: Vec<TcpStream> = (0..1000)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", http)).ok())
        .collect();
    assert!(many.len() >= 900, "only {} connected", many.len());
    std::thread::sleep(Duration::from_secs(2));
    assert!(router.is_running());
    assert!(
        lib_port(rw).is_ok(),
        "routing while the HTTP port is flooded"
    );
    drop(many);
    drop(slow);

    stop.store(true, Ordering::SeqCst);
    traffic.join().unwrap();
    assert!(router.is_running());
    assert!(
        ok.load(Ordering::SeqCst) > 10,
        "too little traffic: {}",
        ok.load(Ordering::SeqCst)
    );
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "queries failed while HTTP was attacked"
    );
    // HTTP answers again once the flood is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if curl(&["-u", CRED], &url).is_some_and(|a| a.status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "HTTP did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
}
