//! `mysqlrouter_passwd`: MySQL Router's password-file tool; see [`mysqlrouter::passwd_cli`].

fn main() {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let code = mysqlrouter::passwd_cli::run(&args, &mut std::io::stdout(), &mut std::io::stderr());
    std::process::exit(code);
}
