//! MariaDB GTID replication on loopback: one primary and replicas, built on the
//! [`MariaDb`] harness, with the accounts a role-routing test needs and a switchover.
//!
//! Accounts (made on the first primary, replicated): `t`/`t` (all privileges, also the
//! replication account), `app`/`app` (DML on `test.*` only, so `read_only` stops it as it
//! stops applications), `mon`/`monpw` (the router's monitor: `SLAVE MONITOR`, `BINLOG
//! MONITOR`). Table `test.w (id INT PRIMARY KEY, port INT)`.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{path_str, MariaDb};

pub const APP_USER: &str = "app";
pub const APP_PASS: &str = "app";
pub const MON_USER: &str = "mon";
pub const MON_PASS: &str = "monpw";

pub struct Replication {
    pub servers: Vec<MariaDb>,
    /// Index of the current primary.
    pub primary: usize,
}

/// Runs SQL as root over a server's unix socket; stdout (tab-separated, no headers).
pub fn sql(s: &MariaDb, q: &str) -> Result<String, String> {
    sql_with(s, q, &["-N", "-B"])
}

/// Runs SQL as root; output as `Name: value` lines (vertical).
pub fn sql_vertical(s: &MariaDb, q: &str) -> Result<String, String> {
    sql_with(s, q, &["-E"])
}

fn sql_with(s: &MariaDb, q: &str, fmt: &[&str]) -> Result<String, String> {
    let out = Command::new("mariadb")
        .args(["-S", path_str(&s.socket), "-uroot"])
        .args(fmt)
        .args(["-e", q])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

pub fn must(s: &MariaDb, q: &str) -> String {
    sql(s, q).unwrap_or_else(|e| panic!("{q} on {}: {e}", s.port))
}

fn change_master(to_port: u16, gtid: &str) -> String {
    format!(
        "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={to_port}, MASTER_USER='t', \
         MASTER_PASSWORD='t', MASTER_USE_GTID={gtid}, MASTER_CONNECT_RETRY=1"
    )
}

impl Replication {
    /// A primary and `replicas` replicas (read_only), replicating with GTIDs.
    pub fn start(replicas: usize) -> Replication {
        let servers: Vec<MariaDb> = (0..=replicas)
            .map(|i| {
                MariaDb::start_with(&[
                    format!("--server-id={}", i + 1),
                    "--log-bin=mysql-bin".into(),
                    "--relay-log=relay-bin".into(),
                    "--log-slave-updates".into(),
                    "--binlog-format=ROW".into(),
                ])
            })
            .collect();
        let p = &servers[0];
        must(
            p,
            "CREATE DATABASE test; CREATE TABLE test.w (id INT PRIMARY KEY, port INT); \
             CREATE USER 'app'@'%' IDENTIFIED BY 'app'; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON test.* TO 'app'@'%'; \
             CREATE USER 'mon'@'%' IDENTIFIED BY 'monpw'; \
             GRANT SLAVE MONITOR, BINLOG MONITOR ON *.* TO 'mon'@'%';",
        );
        for r in &servers[1..] {
            must(
                r,
                &format!(
                    "SET GLOBAL read_only = 1; {}; START SLAVE;",
                    change_master(p.port, "slave_pos")
                ),
            );
        }
        let repl = Replication {
            servers,
            primary: 0,
        };
        for i in 1..=replicas {
            repl.wait_caught_up(i);
        }
        repl
    }

    /// For a set kept in a `static` (never dropped): a watchdog process kills the servers
    /// once this test process has exited, however it ends.
    pub fn kill_when_process_ends(&self) {
        let pids: Vec<String> = self
            .servers
            .iter()
            .filter_map(|s| s.pid())
            .map(|p| p.to_string())
            .collect();
        // The outer shell returns at once (waited for here); its background child lives on.
        let script = format!(
            "(while kill -0 {} 2>/dev/null; do sleep 1; done; kill -9 {}) &",
            std::process::id(),
            pids.join(" ")
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("spawn the watchdog");
    }

    pub fn primary(&self) -> &MariaDb {
        &self.servers[self.primary]
    }

    pub fn replica_indexes(&self) -> Vec<usize> {
        (0..self.servers.len())
            .filter(|&i| i != self.primary)
            .collect()
    }

    /// Waits (at most 20 s) until replica `i` has applied everything the primary wrote.
    pub fn wait_caught_up(&self, i: usize) {
        let pos = must(self.primary(), "SELECT @@gtid_binlog_pos");
        let r = must(
            &self.servers[i],
            &format!("SELECT MASTER_GTID_WAIT('{pos}', 20)"),
        );
        assert_eq!(
            r, "0",
            "replica {} did not reach {pos}",
            self.servers[i].port
        );
    }

    /// Planned switchover to server `to`: the old primary turns read-only, `to` catches
    /// up and turns writable, everyone else (old primary included) replicates from it.
    /// Returns the instant `to` became writable.
    pub fn switchover(&mut self, to: usize) -> Instant {
        let old = self.primary;
        assert_ne!(old, to);
        must(&self.servers[old], "SET GLOBAL read_only = 1");
        self.wait_caught_up(to);
        must(
            &self.servers[to],
            "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0",
        );
        let at = Instant::now();
        self.primary = to;
        let port = self.servers[to].port;
        for i in self.replica_indexes() {
            let gtid = if i == old { "current_pos" } else { "slave_pos" };
            must(
                &self.servers[i],
                &format!("STOP SLAVE; {}; START SLAVE;", change_master(port, gtid)),
            );
        }
        at
    }

    /// Waits (bounded) until every replica's threads run again.
    pub fn wait_running(&self, max: Duration) {
        let deadline = Instant::now() + max;
        for i in self.replica_indexes() {
            loop {
                let st = sql_vertical(&self.servers[i], "SHOW SLAVE STATUS").unwrap_or_default();
                if st.contains("Slave_IO_Running: Yes") && st.contains("Slave_SQL_Running: Yes") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "replica {} not running: {st}",
                    self.servers[i].port
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
