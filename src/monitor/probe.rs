//! The monitor's I/O: one authenticated MySQL connection per destination (mysql_async),
//! reconnected after a failure and closed with COM_QUIT, and the statements that read a
//! server's role. Which statements a server lacks (MariaDB has no Group Replication
//! table, MySQL no Galera) is learned once per connection.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Row, SslOpts};

use super::state::{Facts, GaleraFacts, GroupFacts, ReplicaFacts};
use crate::config::{Destination, MonitorConfig, MonitorSsl};

/// What a server answered to, learned on each new connection.
#[derive(Debug, Default, Clone)]
struct Caps {
    /// `SHOW REPLICA STATUS` failed with a syntax error: use `SHOW SLAVE STATUS`.
    slave_status: bool,
    /// `performance_schema.replication_group_members` is missing (MariaDB).
    no_group: bool,
}

/// One destination's monitor connection.
pub struct Prober {
    /// Plain TCP (`ssl_mode = DISABLED`, or PREFERRED to a server without TLS).
    opts: Opts,
    /// TLS, when `ssl_mode` allows it.
    tls: Option<Opts>,
    connect_timeout: Duration,
    read_timeout: Duration,
    ssl_mode: MonitorSsl,
    /// PREFERRED: the server offered no TLS; later connections go plain at once.
    no_tls: bool,
    conn: Option<Conn>,
    caps: Caps,
}

fn text(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}

impl Prober {
    pub fn new(d: &Destination, cfg: &MonitorConfig) -> Prober {
        let base = OptsBuilder::default()
            .ip_or_hostname(d.host.clone())
            .tcp_port(d.port)
            .user(Some(cfg.user.clone()))
            .pass(Some(cfg.password.expose().to_string()))
            // Stay on TCP: the destination is what the routes connect to.
            .prefer_socket(false)
            .stmt_cache_size(0);
        // Like the mysql client's PREFERRED/REQUIRED: encrypted, certificate not verified.
        let tls = (cfg.ssl_mode != MonitorSsl::Disabled).then(|| {
            base.clone()
                .ssl_opts(Some(
                    SslOpts::default()
                        .with_danger_accept_invalid_certs(true)
                        .with_danger_skip_domain_validation(true),
                ))
                .into()
        });
        Prober {
            opts: base.into(),
            tls,
            ssl_mode: cfg.ssl_mode,
            no_tls: false,
            connect_timeout: cfg.connect_timeout,
            read_timeout: cfg.read_timeout,
            conn: None,
            caps: Caps::default(),
        }
    }

    /// One probe: connects if needed, reads the facts. On an error the connection is
    /// dropped (a fresh one is made next time).
    pub async fn probe(&mut self) -> Result<Facts, String> {
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
            self.caps = Caps::default();
        }
        let Some(mut conn) = self.conn.take() else {
            return Err("not connected".into());
        };
        let mut caps = self.caps.clone();
        match tokio::time::timeout(self.read_timeout, read_facts(&mut conn, &mut caps)).await {
            Ok(Ok(f)) => {
                self.conn = Some(conn);
                self.caps = caps;
                Ok(f)
            }
            Ok(Err(e)) => {
                // A server error leaves the connection usable; say goodbye properly.
                if matches!(e, mysql_async::Error::Server(_)) {
                    let _ = tokio::time::timeout(self.read_timeout, conn.disconnect()).await;
                }
                Err(text(&e))
            }
            // A server that does not answer in time: the socket is just closed.
            Err(_) => Err(format!(
                "no answer within read_timeout ({}s)",
                self.read_timeout.as_secs()
            )),
        }
    }

    async fn connect_with(&self, opts: &Opts) -> Result<Conn, mysql_async::Error> {
        match tokio::time::timeout(self.connect_timeout, Conn::new(opts.clone())).await {
            Ok(r) => r,
            Err(_) => Err(mysql_async::Error::Io(mysql_async::IoError::Io(
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "connect timed out after {}s",
                        self.connect_timeout.as_secs()
                    ),
                ),
            ))),
        }
    }

    /// A new connection: TLS first unless disabled; PREFERRED falls back to plain TCP
    /// when the server offers no TLS.
    async fn connect(&mut self) -> Result<Conn, String> {
        let tls = match &self.tls {
            Some(t) if !self.no_tls => t.clone(),
            _ => return self.connect_with(&self.opts).await.map_err(|e| text(&e)),
        };
        match self.connect_with(&tls).await {
            Err(mysql_async::Error::Driver(
                mysql_async::DriverError::NoClientSslFlagFromServer,
            )) if self.ssl_mode == MonitorSsl::Preferred => {
                self.no_tls = true;
                self.connect_with(&self.opts).await.map_err(|e| text(&e))
            }
            r => r.map_err(|e| text(&e)),
        }
    }

    /// Ends the connection with COM_QUIT, so the server does not count an aborted one.
    pub async fn close(&mut self) {
        if let Some(c) = self.conn.take() {
            let _ = tokio::time::timeout(self.read_timeout, c.disconnect()).await;
        }
    }
}

fn yes(row: &Row, names: &[&str]) -> bool {
    names.iter().any(|n| {
        row.get_opt::<Option<String>, &str>(n)
            .and_then(|r| r.ok())
            .flatten()
            .is_some_and(|v| v.eq_ignore_ascii_case("yes"))
    })
}

fn number(row: &Row, names: &[&str]) -> Option<u64> {
    names.iter().find_map(|n| {
        row.get_opt::<Option<u64>, &str>(n)
            .and_then(|r| r.ok())
            .flatten()
    })
}

fn on(v: &str) -> bool {
    v.eq_ignore_ascii_case("ON") || v == "1"
}

async fn read_facts(conn: &mut Conn, caps: &mut Caps) -> Result<Facts, mysql_async::Error> {
    let mut facts = Facts::default();
    let vars: Vec<(String, String)> = conn
        .query(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('read_only', 'super_read_only', 'wsrep_on')",
        )
        .await?;
    let mut wsrep = false;
    for (name, value) in vars {
        match name.to_ascii_lowercase().as_str() {
            "read_only" => facts.read_only = on(&value),
            "super_read_only" => facts.super_read_only = on(&value),
            "wsrep_on" => wsrep = on(&value),
            _ => {}
        }
    }

    let rows: Vec<Row> = if caps.slave_status {
        conn.query("SHOW SLAVE STATUS").await?
    } else {
        match conn.query("SHOW REPLICA STATUS").await {
            Ok(r) => r,
            // ER_PARSE_ERROR: a server older than MySQL 8.0.22 / MariaDB 10.5.1.
            Err(mysql_async::Error::Server(e)) if e.code == 1064 => {
                caps.slave_status = true;
                conn.query("SHOW SLAVE STATUS").await?
            }
            Err(e) => return Err(e),
        }
    };
    facts.replica = rows.first().map(|r| ReplicaFacts {
        io_running: yes(r, &["Replica_IO_Running", "Slave_IO_Running"]),
        sql_running: yes(r, &["Replica_SQL_Running", "Slave_SQL_Running"]),
        seconds_behind: number(r, &["Seconds_Behind_Source", "Seconds_Behind_Master"]),
    });

    if !caps.no_group {
        let r: Result<Option<(String, String)>, _> = conn
            .query_first(
                "SELECT MEMBER_ROLE, MEMBER_STATE FROM performance_schema.replication_group_members WHERE MEMBER_ID = @@server_uuid",
            )
            .await;
        match r {
            Ok(Some((role, state))) => facts.group = Some(GroupFacts { role, state }),
            Ok(None) => {}
            // No such table, no performance_schema, no @@server_uuid: not a GR server.
            Err(mysql_async::Error::Server(_)) => caps.no_group = true,
            Err(e) => return Err(e),
        }
    }

    if wsrep {
        let st: Vec<(String, String)> = conn
            .query("SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_ready', 'wsrep_local_state')")
            .await?;
        let mut g = GaleraFacts {
            ready: false,
            local_state: 0,
        };
        for (name, value) in st {
            match name.to_ascii_lowercase().as_str() {
                "wsrep_ready" => g.ready = on(&value),
                "wsrep_local_state" => g.local_state = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        facts.galera = Some(g);
    }
    Ok(facts)
}
