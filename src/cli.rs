//! Command line: MySQL Router's options, spellings and error messages.
//!
//! Hand-written rather than clap: Oracle's router accepts `-?`, rejects `-h`, takes
//! `--section.option=value` overrides and prints specific texts for each mistake;
//! reproducing those through a generic parser would cost more than this file.

use std::fmt::Write as _;

use thiserror::Error;

use crate::config::files;
use crate::config::folders;

/// A command-line mistake; printed as `Error: <text>`.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct CliError(pub String);

/// One `--section[:key].option=value` override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub section: String,
    pub key: Option<String>,
    pub option: String,
    pub value: String,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunArgs {
    pub config: Option<String>,
    pub extra: Vec<String>,
    pub user: Option<String>,
    pub pid_file: Option<String>,
    pub core_file: bool,
    pub overrides: Vec<Override>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    Run(RunArgs),
}

/// Options that only make sense with `--bootstrap`, which we do not implement.
const BOOTSTRAP_ONLY: &[&str] = &[
    "account",
    "account-create",
    "account-host",
    "bootstrap-socket",
    "client-ssl-cert",
    "client-ssl-cipher",
    "client-ssl-curves",
    "client-ssl-key",
    "client-ssl-mode",
    "client-ssl-dh-params",
    "conf-base-port",
    "conf-bind-address",
    "conf-skip-tcp",
    "conf-use-sockets",
    "conf-skip-x-protocol",
    "connect-timeout",
    "conf-use-gr-notifications",
    "conf-target-cluster",
    "conf-target-cluster-by-name",
    "conf-local-cluster",
    "conf-set-option",
    "directory",
    "force",
    "force-password-validation",
    "master-key-reader",
    "master-key-writer",
    "name",
    "password-retries",
    "read-timeout",
    "report-host",
    "server-ssl-ca",
    "server-ssl-capath",
    "server-ssl-cipher",
    "server-ssl-crl",
    "server-ssl-crlpath",
    "server-ssl-curves",
    "server-ssl-mode",
    "server-ssl-verify",
    "ssl-ca",
    "ssl-cert",
    "ssl-cipher",
    "ssl-crl",
    "ssl-crlpath",
    "ssl-key",
    "ssl-mode",
    "tls-version",
    "strict",
    "disable-rest",
    "https-port",
    "disable-rw-split",
    "plugin-folder",
];

pub const BOOTSTRAP_UNSUPPORTED: &str = "--bootstrap is not supported by this router: it routes to static destinations only. Write [routing:NAME] sections with a 'destinations' list instead (see mysqlrouter(1)).";

fn err<T>(msg: impl Into<String>) -> Result<T, CliError> {
    Err(CliError(msg.into()))
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `--section[:key].option` (the part before `=`).
fn parse_override(name: &str, value: String) -> Result<Override, CliError> {
    let (sec, option) = name.split_once('.').unwrap_or((name, ""));
    let (section, key) = match sec.split_once(':') {
        Some((s, k)) => (s, Some(k)),
        None => (sec, None),
    };
    if section.eq_ignore_ascii_case("default") && key.is_some() {
        return err(format!(
            "Invalid argument '--{sec}'. Key not allowed on DEFAULT section"
        ));
    }
    if !is_name(section) || !key.is_none_or(is_name) || !is_name(option) {
        return err(format!("invalid argument '--{name}'."));
    }
    Ok(Override {
        section: section.to_ascii_lowercase(),
        key: key.map(str::to_string),
        option: option.to_ascii_lowercase(),
        value,
    })
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, CliError> {
    let mut run = RunArgs::default();
    let mut help = false;
    let mut version = false;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        // Split `--name=value`; short options take the next argument or the rest.
        let (name, inline): (String, Option<String>) = if let Some(long) = arg.strip_prefix("--") {
            match long.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (long.to_string(), None),
            }
        } else if let Some(short) = arg.strip_prefix('-') {
            let mut chars = short.chars();
            match chars.next() {
                Some(c) => {
                    let rest: String = chars.collect();
                    (c.to_string(), (!rest.is_empty()).then_some(rest))
                }
                None => return err(format!("invalid argument '{arg}'.")),
            }
        } else {
            return err(format!("invalid argument '{arg}'."));
        };
        let shown = if arg.starts_with("--") {
            format!("--{name}")
        } else {
            format!("-{name}")
        };
        let mut value = |inline: Option<String>| -> Result<String, CliError> {
            match inline {
                Some(v) => Ok(v),
                None if i < args.len() && !args[i].starts_with('-') => {
                    i += 1;
                    Ok(args[i - 1].clone())
                }
                None => err(format!("option '{shown}' expects a value, got nothing")),
            }
        };
        match name.as_str() {
            "V" | "version" => version = true,
            "?" | "help" => help = true,
            "c" | "config" => {
                let v = value(inline)?;
                if run.config.is_some() {
                    return err(
                        "Option -c/--config can only be used once; use -a/--extra-config instead.",
                    );
                }
                run.config = Some(v);
            }
            "a" | "extra-config" => run.extra.push(value(inline)?),
            "u" | "user" => run.user = Some(value(inline)?),
            "pid-file" => {
                let v = value(inline)?;
                if v.is_empty() {
                    return err("Invalid empty value for --pid-file option");
                }
                if run.pid_file.is_some() {
                    return err("Option --pid-file can only be given once");
                }
                run.pid_file = Some(v);
            }
            "core-file" => match inline.as_deref() {
                None | Some("1") => run.core_file = true,
                Some("0") => run.core_file = false,
                Some(_) => {
                    return err("Value for parameter '--core-file' needs to be one of: ['0', '1']")
                }
            },
            "B" | "bootstrap" => return err(BOOTSTRAP_UNSUPPORTED),
            n if arg.starts_with("--") && n.contains('.') => {
                let v = value(inline)?;
                run.overrides.push(parse_override(n, v)?);
            }
            n if arg.starts_with("--") && BOOTSTRAP_ONLY.contains(&n) => {
                return err(format!(
                    "Option --{n} can only be used together with -B/--bootstrap"
                ));
            }
            "d" => return err("Option -d can only be used together with -B/--bootstrap"),
            _ => return err(format!("unknown option '{shown}'.")),
        }
    }
    Ok(if help {
        Command::Help
    } else if version {
        Command::Version
    } else {
        Command::Run(run)
    })
}

/// The `-V` line. Two spaces after `Router`: tools parse that prefix.
pub fn version_line() -> String {
    format!(
        "MySQL Router  Ver {} for Linux on {} ({})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        crate::PROJECT_NAME
    )
}

/// The `--help` text, in the layout of Oracle's router.
pub fn help_text() -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}", version_line());
    s.push_str(
        "Licensed under the GPL, version 2. A drop-in replacement for MySQL Router\n\
         (static routing), not affiliated with Oracle Corporation.\n\n",
    );
    s.push_str(
        "Configuration read from the following files in the given order (enclosed\n\
         in parentheses means not available for reading):\n",
    );
    for p in files::default_config_candidates() {
        if files::is_readable_file(&p) {
            let _ = writeln!(s, "  {}", p.display());
        } else {
            let _ = writeln!(s, "  ({})", p.display());
        }
    }
    let _ = writeln!(s, "Plugins Path:\n  {}\n", folders::PLUGIN);
    let _ = writeln!(s, "Default Log Directory:\n  {}\n", folders::LOGGING);
    let _ = writeln!(
        s,
        "Default Persistent Data Directory:\n  {}\n",
        folders::DATA
    );
    let _ = writeln!(
        s,
        "Default Runtime State Directory:\n  {}\n",
        folders::RUNTIME
    );
    s.push_str(USAGE);
    s
}

const USAGE: &str = "
# Usage

mysqlrouter (-?|--help)

mysqlrouter (-V|--version)

mysqlrouter [--core-file=[<VALUE>]] [--pid-file=<pidfile>]
            [-u|--user=<username>] [-c|--config=<path>]
            [-a|--extra-config=<path>]
            [--<section>[:<key>].<option>=<value>]

# Options

  -?, --help
        Display this help and exit.
  -V, --version
        Display version information and exit.
  -c <path>, --config <path>
        Only read configuration from given file. May be given once.
  -a <path>, --extra-config <path>
        Read this file after the main configuration file(s). May be
        given more than once.
  -u <username>, --user <username>
        Run the mysqlrouter as the user having the name user_name.
  --pid-file <pidfile>
        Path and filename of pid file. Overrides [DEFAULT] pid_file and
        the ROUTER_PID environment variable.
  --core-file [ <VALUE>]
        Write a core file if mysqlrouter dies (0 or 1).
  --<section>[:<key>].<option>=<value>
        Set <option> of [<section>] or [<section>:<key>] after all
        configuration files are read, e.g. --routing:rw.connect_timeout=2
        or --DEFAULT.logging_folder=.
  -B <server_url>, --bootstrap <server_url>
        Not supported: this router routes to static destinations only.

# Signals

  SIGTERM, SIGINT  stop accepting, drain connections, exit 0
  SIGHUP           reopen the log file (for logrotate)
  SIGUSR1          unblock all client hosts blocked by max_connect_errors

# Examples

Start with a configuration file:

  mysqlrouter -c /etc/mysqlrouter/mysqlrouter.conf

Override an option for a single run:

  mysqlrouter -c /etc/mysqlrouter/mysqlrouter.conf --DEFAULT.logging_folder=

";

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, CliError> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn e(args: &[&str]) -> String {
        p(args).unwrap_err().0
    }

    #[test]
    fn run_args() {
        let cmd = p(&[
            "-c",
            "a.conf",
            "--extra-config=b.conf",
            "-a",
            "c.conf",
            "--user=mysql",
            "--pid-file",
            "/run/x.pid",
            "--routing:rw.connect_timeout=3",
            "--DEFAULT.logging_folder=",
        ])
        .unwrap(); // ok: test code
        let Command::Run(r) = cmd else {
            panic!("expected run")
        };
        assert_eq!(r.config.as_deref(), Some("a.conf"));
        assert_eq!(r.extra, vec!["b.conf", "c.conf"]);
        assert_eq!(r.user.as_deref(), Some("mysql"));
        assert_eq!(r.pid_file.as_deref(), Some("/run/x.pid"));
        assert_eq!(r.overrides[0].key.as_deref(), Some("rw"));
        assert_eq!(r.overrides[1].section, "default");
        assert_eq!(r.overrides[1].value, "");
    }

    #[test]
    fn help_and_version() {
        assert_eq!(p(&["-?"]).unwrap(), Command::Help); // ok: test code
        assert_eq!(p(&["--version"]).unwrap(), Command::Version); // ok: test code
        assert!(version_line().starts_with("MySQL Router  Ver "));
    }

    #[test]
    fn errors() {
        assert_eq!(e(&["-h"]), "unknown option '-h'.");
        assert_eq!(e(&["-c"]), "option '-c' expects a value, got nothing");
        assert_eq!(
            e(&["-c", "a", "-c", "b"]),
            "Option -c/--config can only be used once; use -a/--extra-config instead."
        );
        assert_eq!(e(&["extra"]), "invalid argument 'extra'.");
        assert_eq!(
            e(&["--core-file=2"]),
            "Value for parameter '--core-file' needs to be one of: ['0', '1']"
        );
        assert_eq!(
            e(&["--pid-file="]),
            "Invalid empty value for --pid-file option"
        );
        assert_eq!(
            e(&["--pid-file=a", "--pid-file=b"]),
            "Option --pid-file can only be given once"
        );
        assert_eq!(
            e(&["--DEFAULT:x.y=1"]),
            "Invalid argument '--DEFAULT:x'. Key not allowed on DEFAULT section"
        );
        assert_eq!(
            e(&["--conf-use-sockets"]),
            "Option --conf-use-sockets can only be used together with -B/--bootstrap"
        );
        assert_eq!(e(&["-B", "x"]), BOOTSTRAP_UNSUPPORTED);
    }
}
