//! Batch norm, the fused loss and Adam: memory-bound kernels, reported in GB/s (the
//! `Gelem/s` column reads as GB/s: one "element" is one byte the kernels must move).
//!
//! Bytes counted per element of x: batch-norm forward (train) reads x twice (statistics,
//! normalise) and writes y: 12 B; its backward reads x and dy twice (the two sums, then
//! dx) and writes dx: 20 B. The backward runs through the tape, from the loss Σ y, whose
//! own forward read and backward broadcast (8 B) are counted too; a second line prints the
//! batch-norm-only rate with the Σ's time (measured alone) taken out. The loss reads z and
//! y (8 B/pixel) forward and z, y, writes dz backward (12 B). Adam reads grad, param, m, v
//! and writes param, m, v: 28 B per parameter.

use std::time::Duration;

use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, measurement::WallTime};
use rca_gpu::ops::norm::{BN_EPS, BN_MOMENTUM};
use rca_gpu::ops::optim::{ADAM_BETA1, ADAM_BETA2, ADAM_EPS, ADAM_LR};
use rca_gpu::{Gpu, Tape, Tensor, ops};

use super::{gpu, timed};

/// (N, C, H, W): the widest and the narrowest BN of RCA-IUnet, batch 1 and 8.
const BN_SHAPES: &[[usize; 4]] = &[
    [1, 16, 256, 256],
    [8, 16, 256, 256],
    [1, 256, 16, 16],
    [8, 256, 16, 16],
];

/// (N, H, W) of the loss: one logit map per image.
const LOSS_SHAPES: &[[usize; 3]] = &[[1, 256, 256], [8, 256, 256]];

/// RCA-IUnet's parameter count, as one flat buffer.
const MODEL_PARAMS: usize = 2_900_000;

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    g
}

/// Seconds per call of `f`, averaged over a few drained runs (for the README lines).
fn seconds(gpu: &Gpu, f: &mut impl FnMut()) -> f64 {
    let reps = 5;
    f();
    timed(gpu, reps, f).as_secs_f64() / reps as f64
}

fn report(what: &str, shape: &str, s: f64, bytes: usize, gpu: &Gpu) {
    println!(
        "{what} {shape}: {:.3} ms, {:.2} GB/s on {}",
        s * 1e3,
        bytes as f64 / s / 1e9,
        gpu.info().name
    );
}

fn batch_norm(c: &mut Criterion) {
    let gpu = gpu();
    let mut fwd = group(c, "batch_norm train forward (GB/s)");
    for &[n, ch, h, w] in BN_SHAPES {
        let shape = format!("C{ch} @{h}x{w} batch {n}");
        let x = Tensor::full(&gpu, [n, ch, h, w], 0.5).unwrap();
        let gamma = Tensor::full(&gpu, [ch], 1.0).unwrap();
        let beta = Tensor::zeros(&gpu, [ch]).unwrap();
        let rm = Tensor::zeros(&gpu, [ch]).unwrap();
        let rv = Tensor::full(&gpu, [ch], 1.0).unwrap();
        let numel = x.numel();
        let mut run = || {
            drop(ops::batch_norm_train(&x, &gamma, &beta, &rm, &rv, BN_MOMENTUM, BN_EPS).unwrap())
        };
        fwd.throughput(Throughput::Elements((12 * numel) as u64));
        fwd.bench_function(BenchmarkId::from_parameter(&shape), |b| {
            b.iter_custom(|iters| timed(&gpu, iters, &mut run))
        });
        report(
            "batch_norm forward",
            &shape,
            seconds(&gpu, &mut run),
            12 * numel,
            &gpu,
        );
    }
    fwd.finish();

    let mut both = group(c, "batch_norm train forward+backward, loss sum (GB/s)");
    for &[n, ch, h, w] in BN_SHAPES {
        let shape = format!("C{ch} @{h}x{w} batch {n}");
        let x = Tensor::full(&gpu, [n, ch, h, w], 0.5)
            .unwrap()
            .requires_grad();
        let gamma = Tensor::full(&gpu, [ch], 1.0).unwrap().requires_grad();
        let beta = Tensor::zeros(&gpu, [ch]).unwrap().requires_grad();
        let rm = Tensor::zeros(&gpu, [ch]).unwrap();
        let rv = Tensor::full(&gpu, [ch], 1.0).unwrap();
        let numel = x.numel();
        let mut run = || {
            let tape = Tape::start();
            let (y, _, _) =
                ops::batch_norm_train(&x, &gamma, &beta, &rm, &rv, BN_MOMENTUM, BN_EPS).unwrap();
            drop(tape.backward(&ops::sum(&y).unwrap()).unwrap());
        };
        both.throughput(Throughput::Elements((40 * numel) as u64));
        both.bench_function(BenchmarkId::from_parameter(&shape), |b| {
            b.iter_custom(|iters| timed(&gpu, iters, &mut run))
        });
        let total = seconds(&gpu, &mut run);
        // The Σ loss alone (its forward and its backward broadcast), to subtract.
        let mut sum_only = || {
            let tape = Tape::start();
            drop(tape.backward(&ops::sum(&x).unwrap()).unwrap());
        };
        let overhead = seconds(&gpu, &mut sum_only);
        report(
            "batch_norm forward+backward (with Σ loss)",
            &shape,
            total,
            40 * numel,
            &gpu,
        );
        report(
            "batch_norm forward+backward (Σ loss subtracted)",
            &shape,
            (total - overhead).max(1e-9),
            32 * numel,
            &gpu,
        );
    }
    both.finish();
}

fn loss(c: &mut Criterion) {
    let gpu = gpu();
    let mut g = group(c, "bce_dice loss forward+backward (GB/s)");
    for &[n, h, w] in LOSS_SHAPES {
        let shape = format!("{n}x1x{h}x{w}");
        let numel = n * h * w;
        let pattern: Vec<f32> = (0..numel).map(|i| ((i % 13) as f32 - 6.0) * 0.5).collect();
        let z = Tensor::from_vec(&gpu, [n, 1, h, w], &pattern)
            .unwrap()
            .requires_grad();
        let mask: Vec<f32> = (0..numel).map(|i| f32::from(i % 5 == 0)).collect();
        let y = Tensor::from_vec(&gpu, [n, 1, h, w], &mask).unwrap();
        let mut run = || {
            let tape = Tape::start();
            let l = ops::bce_dice_loss(&z, &y).unwrap();
            drop(tape.backward(&l).unwrap());
        };
        g.throughput(Throughput::Elements((20 * numel) as u64));
        g.bench_function(BenchmarkId::from_parameter(&shape), |b| {
            b.iter_custom(|iters| timed(&gpu, iters, &mut run))
        });
        report(
            "bce_dice forward+backward",
            &shape,
            seconds(&gpu, &mut run),
            20 * numel,
            &gpu,
        );
    }
    g.finish();
}

fn adam(c: &mut Criterion) {
    let gpu = gpu();
    let mut g = group(c, "adam step (GB/s)");
    let n = MODEL_PARAMS;
    let param = Tensor::full(&gpu, [n], 0.1).unwrap();
    let grad = Tensor::full(&gpu, [n], 0.01).unwrap();
    let m = Tensor::zeros(&gpu, [n]).unwrap();
    let v = Tensor::zeros(&gpu, [n]).unwrap();
    let mut step = 0u32;
    let mut run = || {
        step += 1;
        ops::adam_step(
            &param, &grad, &m, &v, step, ADAM_LR, ADAM_BETA1, ADAM_BETA2, ADAM_EPS,
        )
        .unwrap()
    };
    g.throughput(Throughput::Elements((28 * n) as u64));
    g.bench_function(BenchmarkId::from_parameter("2.9M parameters"), |b| {
        b.iter_custom(|iters| timed(&gpu, iters, &mut run))
    });
    report(
        "adam",
        "2.9M parameters",
        seconds(&gpu, &mut run),
        28 * n,
        &gpu,
    );
    g.finish();
}

pub fn benches(c: &mut Criterion) {
    batch_norm(c);
    loss(c);
    adam(c);
}
