//! The 2-D FFT and spectral pooling at the shapes RCA-IUnet pools: C = 16 at 256², 64 at
//! 64², 256 at 16², batch 1 and 8.
//!
//! FLOPs use the standard count of 5·M²·log2(M²) per complex M×M 2-D FFT (the radix-2
//! operation count; our radix-4 butterflies do fewer, so this is an "effective" rate).
//! Spectral pooling is counted as its two FFTs: one of size M and one of size h (the
//! crop, real-part and conversion kernels are memory traffic, not counted), whichever way
//! it runs: halving, it runs as two real products by default and through the FFT passes
//! in the groups named so, so the rates of the two compare as times.

use std::time::Duration;

use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, measurement::WallTime};
use rca_gpu::ops::FftPath;
use rca_gpu::{Gpu, Tensor, ops};

use super::{gpu, timed};

/// (name, N, C, M): the maps spectral pooling sees in the encoder.
const SHAPES: &[(&str, usize, usize, usize)] = &[
    ("C16 @256x256", 1, 16, 256),
    ("C16 @256x256 batch 8", 8, 16, 256),
    ("C64 @64x64", 1, 64, 64),
    ("C64 @64x64 batch 8", 8, 64, 64),
    ("C256 @16x16", 1, 256, 16),
    ("C256 @16x16 batch 8", 8, 256, 16),
];

/// 5·M²·log2(M²): the standard flop count of one complex M×M 2-D FFT.
fn fft_flops(m: usize) -> usize {
    5 * m * m * (m * m).ilog2() as usize
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    g
}

/// Bench `f` as one shape of `g`, then print one explicit line (for the README table).
fn bench(
    g: &mut BenchmarkGroup<'_, WallTime>,
    gpu: &Gpu,
    what: &str,
    name: &str,
    flops: usize,
    mut f: impl FnMut(),
) {
    g.throughput(Throughput::Elements(flops as u64));
    g.bench_function(BenchmarkId::from_parameter(name), |b| {
        b.iter_custom(|iters| timed(gpu, iters, &mut f))
    });
    let reps = 3;
    let s = timed(gpu, reps, &mut f).as_secs_f64() / reps as f64;
    println!(
        "{what} {name}: {:.2} ms, {:.2} GFLOP/s on {}",
        s * 1e3,
        flops as f64 / s / 1e9,
        gpu.info().name
    );
}

pub fn benches(c: &mut Criterion) {
    let gpu = gpu();
    let mut g = group(c, "fft2 forward (GFLOP/s, 5·M²·log2 M² per plane)");
    for &(name, n, ch, m) in SHAPES {
        let x = Tensor::full(&gpu, [n, ch, m, m, 2], 0.5).unwrap();
        let flops = n * ch * fft_flops(m);
        bench(&mut g, &gpu, "fft2", name, flops, || {
            drop(ops::fft2(&x).unwrap())
        });
    }
    g.finish();

    // The backward of fft2 is the transform of the other sign, i.e. ifft2 up to scale.
    let mut g = group(c, "fft2 backward = ifft2 (GFLOP/s, 5·M²·log2 M² per plane)");
    for &(name, n, ch, m) in SHAPES {
        let x = Tensor::full(&gpu, [n, ch, m, m, 2], 0.5).unwrap();
        let flops = n * ch * fft_flops(m);
        bench(&mut g, &gpu, "ifft2", name, flops, || {
            drop(ops::ifft2(&x).unwrap())
        });
    }
    g.finish();

    for (label, halve, path) in [
        ("h = M/2", true, FftPath::Auto),
        ("h = M/2, FFT passes", true, FftPath::Workgroup),
        ("h = M", false, FftPath::Auto),
    ] {
        let mut g = group(
            c,
            &format!("spectral_pool forward {label} (GFLOP/s, FFTs at M and h)"),
        );
        for &(name, n, ch, m) in SHAPES {
            let h = if halve { m / 2 } else { m };
            let x = Tensor::full(&gpu, [n, ch, m, m], 0.5).unwrap();
            let flops = n * ch * (fft_flops(m) + fft_flops(h));
            bench(
                &mut g,
                &gpu,
                &format!("spectral_pool {label}"),
                name,
                flops,
                || drop(ops::spectral_pool_via(&x, h, path).unwrap()),
            );
        }
        g.finish();

        // The backward is the adjoint map, spectral_unpool (what the tape runs).
        let mut g = group(
            c,
            &format!("spectral_pool backward {label} (GFLOP/s, FFTs at h and M)"),
        );
        for &(name, n, ch, m) in SHAPES {
            let h = if halve { m / 2 } else { m };
            let dy = Tensor::full(&gpu, [n, ch, h, h], 0.5).unwrap();
            let flops = n * ch * (fft_flops(m) + fft_flops(h));
            bench(
                &mut g,
                &gpu,
                &format!("spectral_pool backward {label}"),
                name,
                flops,
                || drop(ops::spectral_unpool_via(&dy, m, path).unwrap()),
            );
        }
        g.finish();
    }
}
