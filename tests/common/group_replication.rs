//! A MySQL 9.7 Group Replication group (single-primary) on loopback, from the lab's
//! MySQL 9.7 (`../shared/lab/mysql-9.7`): one datadir initialised once and copied (each
//! copy gets its own server UUID), members on their own SQL and XCom ports.
//!
//! Accounts (made on every member with the binlog off, before the group starts): `rpl`
//! (distributed recovery), `mon`/`monpw` (the router's monitor: REPLICATION CLIENT and
//! SELECT on performance_schema; caching_sha2_password, so the monitor authenticates with
//! the server's RSA key), `app`/`app`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{free_port, path_str, tmp_dir};

const GROUP_NAME: &str = "b7c1a5e2-9d3f-4c61-8a7e-5f2b9c0d1e4a";

fn lab() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/lab/mysql-9.7")
}

/// The unpacked MySQL 9.7 root (`mysql-9.7 env`), once per test process.
fn root() -> &'static PathBuf {
    static R: OnceLock<PathBuf> = OnceLock::new();
    R.get_or_init(|| {
        let out = Command::new(lab())
            .arg("env")
            .output()
            .expect("run mysql-9.7 env");
        assert!(
            out.status.success(),
            "mysql-9.7 env: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("MYSQL97_ROOT="))
            .expect("MYSQL97_ROOT in mysql-9.7 env");
        PathBuf::from(line.trim_matches('\''))
    })
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn base_cnf(dir: &Path, data: &Path, port: u16) -> String {
    let r = root().display();
    format!(
        "[mysqld]\n{user}basedir = {r}/usr\nlc-messages-dir = {r}/usr/share/mysql\n\
         character-sets-dir = {r}/usr/share/mysql/charsets\nplugin-dir = {r}/usr/lib/mysql/plugin\n\
         datadir = {data}\nsocket = {dir}/sock\npid-file = {dir}/pid\nlog-error = {dir}/err.log\n\
         bind-address = 127.0.0.1\nport = {port}\nmysqlx = OFF\n\
         innodb-buffer-pool-size = 32M\ninnodb-redo-log-capacity = 8M\nmax-connections = 200\n\
         secure-file-priv = NULL\n",
        user = if is_root() { "user = mysql\n" } else { "" },
        dir = dir.display(),
        data = data.display(),
    )
}

/// An initialised 9.7 datadir, made once per test process and copied.
fn template() -> &'static PathBuf {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tmp_dir("gr-template");
        let data = dir.join("data");
        let cnf = dir.join("my.cnf");
        std::fs::write(&cnf, base_cnf(&dir, &data, free_port())).unwrap();
        let st = Command::new(lab())
            .args([
                "mysqld",
                &format!("--defaults-file={}", cnf.display()),
                "--initialize-insecure",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("mysql-9.7 mysqld --initialize-insecure");
        assert!(
            st.success(),
            "initialize failed: {}",
            std::fs::read_to_string(dir.join("err.log")).unwrap_or_default()
        );
        data
    })
}

pub struct Member {
    pub port: u16,
    pub xcom_port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    pub uuid: String,
}

impl Member {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs SQL as root over the unix socket with the 9.7 CLI; tab-separated output.
    pub fn sql(&self, q: &str) -> Result<String, String> {
        let out = Command::new(lab())
            .args([
                "client",
                "-uroot",
                "-S",
                path_str(&self.dir.join("sock")),
                "-N",
                "-B",
                "-e",
                q,
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    pub fn must(&self, q: &str) -> String {
        self.sql(q)
            .unwrap_or_else(|e| panic!("{q} on {}: {e}", self.port))
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Group {
    pub members: Vec<Member>,
}

impl Group {
    /// Starts `n` members and forms a single-primary group; member 0 bootstraps it and
    /// is the first primary.
    pub fn start(n: usize) -> Group {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let seeds: Vec<String> = ports
            .iter()
            .map(|(_, x)| format!("127.0.0.1:{x}"))
            .collect();
        let mut members = Vec::new();
        for (i, (port, xcom)) in ports.iter().enumerate() {
            let dir = tmp_dir("gr");
            let data = dir.join("data");
            let st = Command::new("cp")
                .args(["-a", path_str(template()), path_str(&data)])
                .status()
                .unwrap();
            assert!(st.success());
            // A fresh server UUID per member.
            let _ = std::fs::remove_file(data.join("auto.cnf"));
            let cnf = format!(
                "{}performance-schema = ON\nserver-id = {}\ngtid-mode = ON\nenforce-gtid-consistency = ON\n\
                 log-bin = binlog\nreport-host = 127.0.0.1\nreport-port = {port}\n\
                 plugin-load-add = group_replication.so\n\
                 loose-group_replication_group_name = {GROUP_NAME}\n\
                 loose-group_replication_start_on_boot = OFF\n\
                 loose-group_replication_local_address = 127.0.0.1:{xcom}\n\
                 loose-group_replication_group_seeds = {}\n\
                 loose-group_replication_single_primary_mode = ON\n\
                 loose-group_replication_ip_allowlist = 127.0.0.1\n\
                 loose-group_replication_recovery_get_public_key = ON\n",
                base_cnf(&dir, &data, *port),
                i + 1,
                seeds.join(","),
            );
            let cnf_path = dir.join("my.cnf");
            std::fs::write(&cnf_path, cnf).unwrap();
            let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
            let child = Command::new(lab())
                .args(["mysqld", &format!("--defaults-file={}", cnf_path.display())])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn mysqld 9.7");
            members.push(Member {
                port: *port,
                xcom_port: *xcom,
                dir,
                child: Some(child),
                uuid: String::new(),
            });
        }
        for m in &mut members {
            let deadline = Instant::now() + Duration::from_secs(120);
            while m.sql("SELECT 1").is_err() {
                let exited = m
                    .child
                    .as_mut()
                    .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
                assert!(
                    Instant::now() < deadline && !exited,
                    "mysqld 9.7 on {} did not start: {}",
                    m.port,
                    std::fs::read_to_string(m.dir.join("err.log")).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(250));
            }
            m.must(
                "SET SQL_LOG_BIN = 0; \
                 CREATE USER 'rpl'@'%' IDENTIFIED BY 'rplpw'; \
                 GRANT REPLICATION SLAVE, CONNECTION_ADMIN, BACKUP_ADMIN, GROUP_REPLICATION_STREAM ON *.* TO 'rpl'@'%'; \
                 CREATE USER 'mon'@'%' IDENTIFIED BY 'monpw'; \
                 GRANT REPLICATION CLIENT ON *.* TO 'mon'@'%'; \
                 GRANT SELECT ON performance_schema.* TO 'mon'@'%'; \
                 CREATE USER 'app'@'%' IDENTIFIED BY 'app'; \
                 SET SQL_LOG_BIN = 1;",
            );
            m.uuid = m.must("SELECT @@server_uuid");
        }
        members[0].must(
            "SET GLOBAL group_replication_bootstrap_group = ON; START GROUP_REPLICATION; \
             SET GLOBAL group_replication_bootstrap_group = OFF;",
        );
        for m in &members[1..] {
            m.must("START GROUP_REPLICATION USER = 'rpl', PASSWORD = 'rplpw'");
        }
        let g = Group { members };
        g.wait_online(Duration::from_secs(120));
        g
    }

    /// Waits until every member sees all members ONLINE.
    pub fn wait_online(&self, max: Duration) {
        let deadline = Instant::now() + max;
        let n = self.members.len().to_string();
        loop {
            let ok = self.members.iter().all(|m| {
                m.sql("SELECT COUNT(*) FROM performance_schema.replication_group_members WHERE MEMBER_STATE = 'ONLINE'")
                    .is_ok_and(|c| c == n)
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "group not ONLINE: {}",
                self.members[0]
                    .sql("SELECT MEMBER_PORT, MEMBER_STATE, MEMBER_ROLE FROM performance_schema.replication_group_members")
                    .unwrap_or_else(|e| e)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The port of the member every member reports as PRIMARY.
    pub fn primary_port(&self) -> Option<u16> {
        self.members[0]
            .sql("SELECT MEMBER_PORT FROM performance_schema.replication_group_members WHERE MEMBER_ROLE = 'PRIMARY'")
            .ok()
            .and_then(|p| p.parse().ok())
    }
}
