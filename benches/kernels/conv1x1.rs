//! The pointwise convolution (matmul) at the 512³ shape and the model's shapes.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use rca_gpu::{AdapterRequest, Gpu, KernelClass, Tensor, ops};

use super::{gpu_with, timed};

/// (name, N, Cin, Cout, H, W): the 512×512×512 matmul, and pointwise convs of the model.
const SHAPES: &[(&str, usize, usize, usize, usize, usize)] = &[
    ("matmul 512x512x512", 1, 512, 512, 16, 32),
    ("sepconv 64->16 @256x256", 1, 64, 16, 256, 256),
    ("pointwise 16->16 @256x256", 1, 16, 16, 256, 256),
    ("pointwise 48->48 @256x256", 1, 48, 48, 256, 256),
    ("pointwise 16->48 @256x256", 1, 16, 48, 256, 256),
    ("ric 128->128 @32x32", 1, 128, 128, 32, 32),
    ("ric 512->128 @32x32", 1, 512, 128, 32, 32),
    ("sepconv 16->16 @256x256 batch 8", 8, 16, 16, 256, 256),
];

/// Every kernel variant on the bench's adapter, side by side in one run: the CPU-shaped
/// products (`matmul_cpu_sg`/`matmul_cpu_sg32` where the adapter has 8-lane subgroups,
/// and `matmul_cpu` without them) and the tiled GPU-shaped one (`matmul`/`matmul4`).
pub fn benches(c: &mut Criterion) {
    let cpu = gpu_with(KernelClass::Cpu);
    let subgroups = cpu.info().subgroup_size.is_some();
    benches_on(c, "cpu", cpu);
    if subgroups {
        let plain = Gpu::new(&AdapterRequest {
            kernels: Some(KernelClass::Cpu),
            subgroups: Some(false),
            ..AdapterRequest::from_env()
        })
        .expect("a second device on the bench's adapter");
        benches_on(c, "cpu without subgroups", plain);
    }
    benches_on(c, "gpu", gpu_with(KernelClass::Gpu));
}

fn benches_on(c: &mut Criterion, class: &str, gpu: Gpu) {
    let mut group = c.benchmark_group(format!("conv1x1 forward, {class} kernels (GFLOP/s)"));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for &(name, n, cin, cout, h, w) in SHAPES {
        let x = Tensor::full(&gpu, [n, cin, h, w], 0.5).unwrap();
        let wt = Tensor::full(&gpu, [cout, cin, 1, 1], 0.01).unwrap();
        let b = Tensor::zeros(&gpu, [cout]).unwrap();
        let flops = 2 * n * cin * cout * h * w;
        group.throughput(Throughput::Elements(flops as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |bench| {
            bench.iter_custom(|iters| {
                timed(&gpu, iters, || {
                    drop(ops::conv1x1(&x, &wt, Some(&b)).unwrap())
                })
            })
        });
        // One explicit line per shape, for the README table.
        let reps = 5;
        let s = timed(&gpu, reps, || {
            drop(ops::conv1x1(&x, &wt, Some(&b)).unwrap())
        })
        .as_secs_f64()
            / reps as f64;
        println!(
            "conv1x1 {name} ({class} kernels): {:.2} ms, {:.2} GFLOP/s on {}",
            s * 1e3,
            flops as f64 / s / 1e9,
            gpu.info().name
        );
    }
    group.finish();
}
