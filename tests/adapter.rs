//! Says, visibly, which adapter the GPU tests run on (the test hub, `tests/tests.rs`,
//! captures its tests' output). Under CI (`CI=true`) a missing adapter fails here, first and loudly.

use rca_gpu::{AdapterRequest, Gpu};

fn main() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    match Gpu::new(&AdapterRequest::from_env()) {
        Ok(gpu) => println!("GPU tests run on: {}", gpu.info()),
        Err(e) if ci => {
            eprintln!("CI=true and no GPU adapter: {e}");
            std::process::exit(1);
        }
        Err(e) => println!("*** GPU tests will SKIP: {e} ***"),
    }
}
