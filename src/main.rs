//! `mysqlrouter`: parse the command line and hand over to [`mysqlrouter::app`].

use std::io::Write;

use mysqlrouter::cli::{self, Command};

fn main() {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let code = match cli::parse(&args) {
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
        Ok(Command::Help) => {
            // A closed stdout (`--help | head`) is not an error worth a panic.
            let _ = std::io::stdout().write_all(cli::help_text().as_bytes());
            0
        }
        Ok(Command::Version) => {
            let _ = writeln!(std::io::stdout(), "{}", cli::version_line());
            0
        }
        Ok(Command::Run(run)) => mysqlrouter::app::run(run),
    };
    std::process::exit(code);
}
