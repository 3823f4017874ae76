use crate::cli::RunArgs;
pub fn run(args: RunArgs) -> i32 {
    let files = match crate::config::files::resolve(args.config.as_deref(), &args.extra) {
        Ok(f) => f,
        Err(e) => { eprintln!("Error: {e}"); return 1; }
    };
    match crate::config::load(&files, &args.overrides) {
        Ok(c) => { println!("{c:#?}"); 0 }
        Err(e) => { eprintln!("Error: {e}"); 1 }
    }
}
