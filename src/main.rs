//! The `rca-gpu` command line: parse, run, print one clear line on error.

fn main() -> std::process::ExitCode {
    match rca_gpu::cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
