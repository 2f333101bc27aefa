//! Kernel benchmarks at RCA-IUnet's layer shapes. Each timing drains the device (submit
//! and wait until idle) before the clock is read, so it measures GPU work, not queueing.
//! Throughput is reported in elements/s where one "element" is one floating-point
//! operation: criterion's `Gelem/s` column reads as GFLOP/s.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rca_gpu::{AdapterRequest, Gpu, Tensor, ops};

fn gpu() -> Gpu {
    let gpu = Gpu::new(&AdapterRequest::from_env()).expect("a GPU adapter (see `rca-gpu devices`)");
    eprintln!("adapter: {}", gpu.info());
    gpu
}

/// (name, N, Cin, Cout, H, W): the matmul of the issue, and pointwise convs of the model.
const CONV1X1: &[(&str, usize, usize, usize, usize, usize)] = &[
    ("matmul 512x512x512", 1, 512, 512, 16, 32),
    ("sepconv 64->16 @256x256", 1, 64, 16, 256, 256),
    ("ric 128->128 @32x32", 1, 128, 128, 32, 32),
    ("ric 512->128 @32x32", 1, 512, 128, 32, 32),
    ("sepconv 16->16 @256x256 batch 8", 8, 16, 16, 256, 256),
];

fn conv1x1(c: &mut Criterion) {
    let gpu = gpu();
    let mut group = c.benchmark_group("conv1x1 forward");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for &(name, n, cin, cout, h, w) in CONV1X1 {
        let x = Tensor::full(&gpu, [n, cin, h, w], 0.5).unwrap();
        let wt = Tensor::full(&gpu, [cout, cin, 1, 1], 0.01).unwrap();
        let b = Tensor::zeros(&gpu, [cout]).unwrap();
        let flops = 2 * n * cin * cout * h * w;
        group.throughput(Throughput::Elements(flops as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |bench| {
            bench.iter_custom(|iters| {
                gpu.sync();
                let t0 = Instant::now();
                for _ in 0..iters {
                    drop(ops::conv1x1(&x, &wt, Some(&b)).unwrap());
                }
                gpu.sync();
                t0.elapsed()
            })
        });
        // One explicit line per shape, for the README table.
        gpu.sync();
        let reps = 5;
        let t0 = Instant::now();
        for _ in 0..reps {
            drop(ops::conv1x1(&x, &wt, Some(&b)).unwrap());
        }
        gpu.sync();
        let s = t0.elapsed().as_secs_f64() / reps as f64;
        println!(
            "conv1x1 {name}: {:.2} ms, {:.2} GFLOP/s on {}",
            s * 1e3,
            flops as f64 / s / 1e9,
            gpu.info().name
        );
    }
    group.finish();
}

criterion_group!(benches, conv1x1);
criterion_main!(benches);
