//! The `rca-gpu` command line: parse, run, print one clear line on error.

fn main() -> std::process::ExitCode {
    match rca_gpu::cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // Already reported, with what was saved and how to continue.
        Err(e) if e.is::<rca_gpu::cli::Interrupted>() => std::process::ExitCode::from(130),
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by ": ", leaving out a cause whose text the line already
/// holds (the library's errors quote their source, e.g. "cannot read x: No such file").
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
