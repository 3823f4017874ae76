//! `mysqlrouter_passwd`: manage the password files of `[http_auth_backend] backend=file`
//! with MySQL Router's commands (`set`, `delete`, `verify`, `list`), options (`--kdf`,
//! `--work-factor`), messages and exit codes. The password is read from the terminal
//! without echo, or as one line from stdin; it is never printed.

use std::io::{BufRead, Write};
use std::path::Path;

use crate::http::passwd::{self, Kdf, PasswdFile, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Set,
    Delete,
    Verify,
    List,
}

#[derive(Debug, PartialEq, Eq)]
struct Args {
    cmd: Cmd,
    file: String,
    user: Option<String>,
    kdf: Kdf,
    work_factor: Option<u64>,
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Help,
    Version,
    Run(Args),
}

fn program() -> String {
    std::env::args()
        .next()
        .unwrap_or_else(|| "mysqlrouter_passwd".into())
}

pub fn help_text(prog: &str) -> String {
    format!(
        "Usage

  {prog} [opts] <cmd>
  <filename> [<username>]
  {prog} --help
  {prog} --version

Commands

  delete
      Delete username (if it exists) from <filename>.
  list
      list one or all accounts of <filename>.
  set
      add or overwrite account of <username> in <filename>.
  verify
      verify if password matches <username>'s credentials in <filename>.

Options

  -?, --help
      Display this help and exit.
  --kdf <name>
      Key Derivation Function for 'set'. One of pbkdf2-sha256, pbkdf2-sha512,
      sha256-crypt, sha512-crypt. default: sha256-crypt
  -V, --version
      Display version information and exit.
  --work-factor <num>
      Work-factor hint for KDF if account is updated.

"
    )
}

/// A usage error: `[Error] <msg>` and the `--help` hint.
fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut kdf = Kdf::Sha256Crypt;
    let mut work_factor = None;
    let mut rest: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = |opt: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("option '{opt}' expects a value, got nothing"))
        };
        match name {
            "-?" | "--help" => return Ok(Parsed::Help),
            "-V" | "--version" => return Ok(Parsed::Version),
            "--kdf" => {
                let v = value("--kdf")?;
                kdf = Kdf::from_name(&v).ok_or_else(|| format!("unknown kdf: {v}"))?;
            }
            "--work-factor" => {
                let v = value("--work-factor")?;
                work_factor = Some(v.parse::<u64>().map_err(|_| {
                    "--work-factor is not an integer (must be an integer)".to_string()
                })?);
            }
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option '{s}'.")),
            s => rest.push(s),
        }
    }
    let Some((cmd, operands)) = rest.split_first() else {
        return Err("expected a <cmd>".into());
    };
    let cmd = match *cmd {
        "set" => Cmd::Set,
        "delete" => Cmd::Delete,
        "verify" => Cmd::Verify,
        "list" => Cmd::List,
        other => return Err(format!("unknown command: {other}")),
    };
    let (file, user) = match (cmd, operands) {
        (Cmd::List, [f]) => (f.to_string(), None),
        (Cmd::List, [f, u]) => (f.to_string(), Some(u.to_string())),
        (Cmd::List, _) => return Err("expected at least one extra argument: <filename>".into()),
        (_, [f, u]) => (f.to_string(), Some(u.to_string())),
        _ => return Err("expected <filename> and <username>".into()),
    };
    Ok(Parsed::Run(Args {
        cmd,
        file,
        user,
        kdf,
        work_factor,
    }))
}

/// Reads the password: without echo from a terminal, else one line of stdin.
fn read_password(out: &mut dyn Write) -> Option<String> {
    let _ = write!(out, "Please enter password: ");
    let _ = out.flush();
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr/tcsetattr only read/write it.
    let saved = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::isatty(fd) == 1 && libc::tcgetattr(fd, &mut t) == 0 {
            let mut quiet = t;
            quiet.c_lflag &= !libc::ECHO;
            libc::tcsetattr(fd, libc::TCSANOW, &quiet);
            Some(t)
        } else {
            None
        }
    };
    let mut line = String::new();
    let ok = std::io::stdin().lock().read_line(&mut line).is_ok();
    if let Some(t) = saved {
        // SAFETY: restores the settings read above.
        unsafe {
            libc::tcsetattr(fd, libc::TCSANOW, &t);
        }
    }
    let _ = writeln!(out);
    ok.then(|| line.trim_end_matches(['\n', '\r']).to_string())
}

fn open_existing(file: &str, err: &mut dyn Write) -> Option<PasswdFile> {
    match PasswdFile::read(Path::new(file)) {
        Ok(f) => Some(f),
        Err(passwd::PasswdError::Io(_)) => {
            let _ = writeln!(err, "[Error] can't open file '{file}'");
            None
        }
        Err(e) => {
            let _ = writeln!(err, "[Error] parsing '{file}' failed: {e}");
            None
        }
    }
}

/// Runs the tool; returns the exit status.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let prog = program();
    let a = match parse(args) {
        Ok(Parsed::Help) => {
            let _ = out.write_all(help_text(&prog).as_bytes());
            return 0;
        }
        Ok(Parsed::Version) => {
            let _ = writeln!(out, "{}", crate::cli::version_line());
            return 0;
        }
        Ok(Parsed::Run(a)) => a,
        Err(msg) => {
            let _ = writeln!(
                err,
                "[Error] {msg}\n\n[Note] Use '{prog} --help' to show the help."
            );
            return 1;
        }
    };
    let user = a.user.clone().unwrap_or_default();
    match a.cmd {
        Cmd::Set => {
            if let Some(pos) = user.find(':') {
                let _ = writeln!(
                    err,
                    "[Error] <username> contained ':' at pos {pos}, allowed are [a-zA-Z0-9]+"
                );
                return 1;
            }
            if user.is_empty() {
                let _ = writeln!(err, "[Error] <username> is empty, allowed are [a-zA-Z0-9]+");
                return 1;
            }
            let mut f = if Path::new(&a.file).exists() {
                match open_existing(&a.file, err) {
                    Some(f) => f,
                    None => return 1,
                }
            } else {
                PasswdFile::default()
            };
            let Some(pw) = read_password(out) else {
                return 1;
            };
            let rounds = a
                .work_factor
                .unwrap_or(u64::from(passwd::DEFAULT_ROUNDS))
                .clamp(1000, 999_999_999) as u32;
            let rounds = match a.kdf {
                Kdf::Pbkdf2Sha256 | Kdf::Pbkdf2Sha512 => a
                    .work_factor
                    .map(|w| w.clamp(1, u64::from(u32::MAX)) as u32)
                    .unwrap_or(passwd::DEFAULT_ROUNDS),
                _ => rounds,
            };
            let hash = match passwd::hash(&pw, a.kdf, rounds) {
                Ok(h) => h,
                Err(e) => {
                    let _ = writeln!(err, "[Error] {e}");
                    return 1;
                }
            };
            f.set(&user, hash);
            if let Err(e) = f.write(Path::new(&a.file)) {
                let _ = writeln!(err, "[Error] can't write file '{}': {e}", a.file);
                return 1;
            }
            0
        }
        Cmd::Delete => {
            let Some(mut f) = open_existing(&a.file, err) else {
                return 1;
            };
            if !f.delete(&user) {
                let _ = writeln!(err, "user '{user}' not found");
                return 1;
            }
            if let Err(e) = f.write(Path::new(&a.file)) {
                let _ = writeln!(err, "[Error] can't write file '{}': {e}", a.file);
                return 1;
            }
            0
        }
        Cmd::List => {
            let Some(f) = open_existing(&a.file, err) else {
                return 1;
            };
            match &a.user {
                None => {
                    let _ = out.write_all(f.render().as_bytes());
                    0
                }
                Some(u) => match f.get(u) {
                    Some(h) => {
                        let _ = writeln!(out, "{u}:{h}");
                        0
                    }
                    None => {
                        let _ = writeln!(err, "user '{u}' not found");
                        1
                    }
                },
            }
        }
        Cmd::Verify => {
            let Some(f) = open_existing(&a.file, err) else {
                return 1;
            };
            let Some(pw) = read_password(out) else {
                return 1;
            };
            match f.get(&user).map(|h| passwd::verify(&pw, h)) {
                None => {
                    let _ = writeln!(err, "user not found");
                    1
                }
                Some(Verdict::Match) => 0,
                Some(_) => {
                    let _ = writeln!(err, "password does not match");
                    1
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &[&str]) -> Result<Parsed, String> {
        parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn options_and_messages_as_mysql_router() {
        assert_eq!(p(&[]), Err("expected a <cmd>".into()));
        assert_eq!(p(&["foo", "f", "u"]), Err("unknown command: foo".into()));
        assert_eq!(
            p(&["set", "f"]),
            Err("expected <filename> and <username>".into())
        );
        assert_eq!(
            p(&["list"]),
            Err("expected at least one extra argument: <filename>".into())
        );
        assert_eq!(
            p(&["--kdf", "md5", "set", "f", "u"]),
            Err("unknown kdf: md5".into())
        );
        assert_eq!(
            p(&["--kdf"]),
            Err("option '--kdf' expects a value, got nothing".into())
        );
        assert_eq!(
            p(&["--work-factor", "abc", "set", "f", "u"]),
            Err("--work-factor is not an integer (must be an integer)".into())
        );
        assert_eq!(p(&["-x"]), Err("unknown option '-x'.".into()));
        assert_eq!(p(&["-?"]), Ok(Parsed::Help));
        assert_eq!(p(&["set", "f", "u", "--version"]), Ok(Parsed::Version));
        assert_eq!(
            p(&[
                "--kdf=pbkdf2-sha512",
                "--work-factor",
                "1000",
                "set",
                "f",
                "u"
            ]),
            Ok(Parsed::Run(Args {
                cmd: Cmd::Set,
                file: "f".into(),
                user: Some("u".into()),
                kdf: Kdf::Pbkdf2Sha512,
                work_factor: Some(1000),
            }))
        );
    }
}
