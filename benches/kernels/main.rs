//! Kernel benchmarks at RCA-IUnet's layer shapes. Each timing drains the device (submit
//! and wait until idle) before the clock is read, so it measures GPU work, not queueing.
//! Throughput is reported in elements/s where one "element" is one floating-point
//! operation (or one byte, for memory-bound kernels, as each group says): criterion's
//! `Gelem/s` column then reads as GFLOP/s (or GB/s).
//!
//! One file per kernel family under `benches/kernels/`, each with a `benches` function.

mod conv;
mod conv1x1;
mod fft;
mod norm;
mod pool;

use criterion::{Criterion, criterion_group, criterion_main};
use rca_gpu::{AdapterRequest, Gpu, KernelClass};

/// The device every group runs on, opened once.
pub fn gpu() -> Gpu {
    static GPU: std::sync::OnceLock<Gpu> = std::sync::OnceLock::new();
    GPU.get_or_init(|| {
        let gpu =
            Gpu::new(&AdapterRequest::from_env()).expect("a GPU adapter (see `rca-gpu devices`)");
        eprintln!("adapter: {}", gpu.info());
        gpu
    })
    .clone()
}

/// A device on the same adapter that runs the kernel variants of `class`, opened once
/// per class (to compare both variants in one run).
pub fn gpu_with(class: KernelClass) -> Gpu {
    static DEVICES: std::sync::OnceLock<[Gpu; 2]> = std::sync::OnceLock::new();
    let open = |class| {
        Gpu::new(&AdapterRequest {
            kernels: Some(class),
            ..AdapterRequest::from_env()
        })
        .expect("a GPU adapter (see `rca-gpu devices`)")
    };
    DEVICES.get_or_init(|| [open(KernelClass::Cpu), open(KernelClass::Gpu)])
        [usize::from(class == KernelClass::Gpu)]
    .clone()
}

/// Time `iters` runs of `f` with the device drained before and after.
pub fn timed(gpu: &Gpu, iters: u64, mut f: impl FnMut()) -> std::time::Duration {
    gpu.sync();
    let t0 = std::time::Instant::now();
    for _ in 0..iters {
        f();
    }
    gpu.sync();
    t0.elapsed()
}

fn all(c: &mut Criterion) {
    conv1x1::benches(c);
    norm::benches(c);
    conv::benches(c);
    pool::benches(c);
    fft::benches(c);
}

criterion_group!(benches, all);
criterion_main!(benches);
