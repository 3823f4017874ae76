//! Helpers for the monitoring tests: password files made with our `mysqlrouter_passwd`,
//! HTTP requests made with the real `curl`, and the monitoring sections of a config.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn passwd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mysqlrouter_passwd")
}

/// Runs `mysqlrouter_passwd ARGS` with `stdin`; (exit code, stdout, stderr).
pub fn passwd_tool(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(passwd_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mysqlrouter_passwd");
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    let out = child.wait_with_output().expect("mysqlrouter_passwd output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A password file in `dir` with `user`/`password`, made by `mysqlrouter_passwd set`.
pub fn passwd_file(dir: &Path, user: &str, password: &str) -> PathBuf {
    let p = dir.join("users");
    let (code, _, err) = passwd_tool(
        &["set", p.to_str().unwrap(), user],
        &format!("{password}\n"),
    );
    assert_eq!(code, 0, "mysqlrouter_passwd set: {err}");
    p
}

/// One HTTP answer as curl saw it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// The status line, e.g. `HTTP/1.1 200 Ok`.
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// `curl -s -i ARGS URL` (10 s at most); `None` if curl got no HTTP answer.
pub fn curl(args: &[&str], url: &str) -> Option<Answer> {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "10"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?.to_string();
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Answer {
        status,
        status_line,
        headers,
        body: body.to_string(),
    })
}

/// Waits (bounded) until something answers HTTP on `url`.
pub fn wait_http(url: &str, extra: &[&str], max: Duration) {
    let deadline = Instant::now() + max;
    while Instant::now() < deadline {
        if curl(extra, url).is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing answers HTTP on {url}");
}

/// `[http_server]` on 127.0.0.1:port, one realm `r` ("Some Realm") backed by `passwd`,
/// and `[rest_api]`, `[rest_router]`, `[rest_routing]` behind it.
pub fn monitoring_sections(port: u16, passwd: &Path) -> String {
    format!(
        "[http_server]\nport={port}\nbind_address=127.0.0.1\n\n\
         [http_auth_realm:r]\nbackend=b\nmethod=basic\nname=Some Realm\n\n\
         [http_auth_backend:b]\nbackend=file\nfilename={}\n\n\
         [rest_api]\n\n[rest_router]\nrequire_realm=r\n\n[rest_routing]\nrequire_realm=r\n",
        passwd.display()
    )
}
