//! The README's first command, `scripts/quickstart.sh`: three private MariaDB servers,
//! the router in front, round-robin, the sticky read-write route and a failover shown,
//! everything cleaned up afterwards.

mod common;

use std::process::Command;

use common::free_port;

#[test]
fn quickstart_shows_round_robin_sticky_writes_and_a_failover_then_cleans_up() {
    // The script would install MariaDB itself (as root); a test must not.
    common::require_mariadb();
    let s: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let (rw, ro) = (free_port(), free_port());
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/quickstart.sh"
    ))
    .env("MYSQLROUTER", common::router_bin())
    .env("QUICKSTART_PORTS", format!("{} {} {}", s[0], s[1], s[2]))
    .env("QUICKSTART_ROUTER_PORTS", format!("{rw} {ro}"))
    .output()
    .expect("run scripts/quickstart.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "quickstart failed:\n{text}\n{err}");

    // The server that answered each "read N" / "write N" line, in order.
    let answers = |what: &str| -> Vec<u16> {
        text.lines()
            .filter(|l| l.trim_start().starts_with(what))
            .filter_map(|l| l.rsplit("-> ").next()?.trim().parse().ok())
            .collect()
    };
    assert_eq!(
        answers("read "),
        vec![s[0], s[1], s[2], s[0], s[1], s[2]],
        "round-robin:\n{text}"
    );
    // Sticky first-available (3), failover (2), and staying after the first server's
    // return (2).
    assert_eq!(
        answers("write "),
        vec![s[0], s[0], s[0], s[1], s[1], s[1], s[1]],
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "[routing:rw] switched destination from '127.0.0.1:{}' to '127.0.0.1:{}'",
            s[0], s[1]
        )),
        "no failover in the log shown:\n{text}"
    );
    assert!(
        text.contains(&format!("read  -> {}, {}, {}", s[0], s[1], s[2])),
        "{text}"
    );
    assert!(text.contains("is reachable again"), "{text}");

    // Cleaned up: its folder is gone and nothing listens on its ports any more.
    let work = text
        .split("(in ")
        .nth(1)
        .and_then(|t| t.split(')').next())
        .expect("the quickstart's folder");
    assert!(!std::path::Path::new(work).exists(), "{work} left behind");
    for p in s.iter().chain([rw, ro].iter()) {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", *p)).is_err(),
            "port {p} still listening after the quickstart"
        );
    }
}
