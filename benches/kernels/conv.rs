//! Depthwise and dense k×k convolutions at RCA-IUnet's 256×256 shapes, forward and
//! backward (GFLOP/s). Also home of [`forward_backward`], the forward/backward timing
//! pair the pool benches share.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use rca_gpu::{Gpu, Tape, Tensor, ops};

use super::{gpu, timed};

/// Depthwise shapes (name, N, C, H=W, K): the SepConvs of the first and last encoder
/// levels, batch 1 and 8.
const DEPTHWISE: &[(&str, usize, usize, usize, usize)] = &[
    ("k3 C16 @256x256", 1, 16, 256, 3),
    ("k5 C16 @256x256", 1, 16, 256, 5),
    ("k3 C256 @16x16", 1, 256, 16, 3),
    ("k5 C256 @16x16", 1, 256, 16, 5),
    ("k3 C16 @256x256 batch 8", 8, 16, 256, 3),
    ("k5 C16 @256x256 batch 8", 8, 16, 256, 5),
    ("k3 C256 @16x16 batch 8", 8, 256, 16, 3),
    ("k5 C256 @16x16 batch 8", 8, 256, 16, 5),
];

/// One dense convolution of the model: x (n, cin, hw, hw), a k×k kernel to cout channels.
struct Dense {
    name: &'static str,
    n: usize,
    cin: usize,
    cout: usize,
    hw: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

/// CSA's φz 3×3 at level 0 (R/2 = 128) and θx/θy 2×2 stride 2 at level 0 (R = 256).
const DENSE: &[Dense] = &[
    Dense {
        name: "3x3 s1 16->16 @128x128",
        n: 1,
        cin: 16,
        cout: 16,
        hw: 128,
        k: 3,
        stride: 1,
        pad: 1,
    },
    Dense {
        name: "2x2 s2 16->16 @256x256",
        n: 1,
        cin: 16,
        cout: 16,
        hw: 256,
        k: 2,
        stride: 2,
        pad: 0,
    },
    Dense {
        name: "3x3 s1 16->16 @128x128 batch 8",
        n: 8,
        cin: 16,
        cout: 16,
        hw: 128,
        k: 3,
        stride: 1,
        pad: 1,
    },
    Dense {
        name: "2x2 s2 16->16 @256x256 batch 8",
        n: 8,
        cin: 16,
        cout: 16,
        hw: 256,
        k: 2,
        stride: 2,
        pad: 0,
    },
];

/// Bench `forward` into `fwd_group` and its backward (through the tape, from
/// loss = Σ y) into `bwd_group`; `work` is the FLOPs or bytes of each, which criterion
/// reports per second. The loss's own backward (one kernel broadcasting 1 into dy, as
/// costly as a cheap op's whole backward) is timed alongside on a tensor shaped like y
/// and subtracted, so the backward time is that of the op's gradient kernels.
#[allow(clippy::too_many_arguments)]
pub fn forward_backward(
    c: &mut Criterion,
    gpu: &Gpu,
    fwd_group: &str,
    bwd_group: &str,
    name: &str,
    work: (u64, u64),
    forward: impl Fn() -> Tensor,
) {
    let mut group = c.benchmark_group(fwd_group);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(work.0));
    group.bench_function(BenchmarkId::from_parameter(name), |b| {
        b.iter_custom(|iters| timed(gpu, iters, || drop(forward())))
    });
    group.finish();

    let y_like = Tensor::zeros(gpu, forward().shape().clone())
        .unwrap()
        .requires_grad();
    let timed_backward = |loss_of: &dyn Fn() -> Tensor| {
        let tape = Tape::start();
        let loss = ops::sum(&loss_of()).unwrap();
        gpu.sync();
        let t0 = Instant::now();
        let grads = tape.backward(&loss).unwrap();
        gpu.sync();
        let t = t0.elapsed();
        drop(grads);
        t
    };
    let backward = |iters: u64| {
        let mut total = Duration::ZERO;
        let mut base = Duration::ZERO;
        for _ in 0..iters {
            total += timed_backward(&|| forward());
            base += timed_backward(&|| y_like.clone());
        }
        total.saturating_sub(base)
    };
    let mut group = c.benchmark_group(bwd_group);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(work.1));
    group.bench_function(BenchmarkId::from_parameter(name), |b| {
        b.iter_custom(backward)
    });
    group.finish();

    // One explicit line per shape, for the README table (after one untimed run, which
    // compiles the pipelines when criterion's filter skipped this shape).
    backward(1);
    let reps = 3;
    let f = timed(gpu, reps, || drop(forward())).as_secs_f64() / reps as f64;
    let bw = backward(reps).as_secs_f64() / reps as f64;
    let op = fwd_group.split(" forward").next().unwrap_or(fwd_group);
    let bw = if bw > 0.0 {
        format!("{:.2} ms ({:.2} G/s)", bw * 1e3, work.1 as f64 / bw / 1e9)
    } else {
        "within the noise of the subtracted loss backward".into()
    };
    println!(
        "{op} {name}: forward {:.2} ms ({:.2} G/s), backward {bw} on {}",
        f * 1e3,
        work.0 as f64 / f / 1e9,
        gpu.info().name
    );
}

pub fn benches(c: &mut Criterion) {
    let gpu = gpu();
    for &(name, n, ch, hw, k) in DEPTHWISE {
        let x = Tensor::full(&gpu, [n, ch, hw, hw], 0.5)
            .unwrap()
            .requires_grad();
        let kt = Tensor::full(&gpu, [ch, 1, k, k], 0.1)
            .unwrap()
            .requires_grad();
        let flops = (2 * n * ch * hw * hw * k * k) as u64;
        forward_backward(
            c,
            &gpu,
            "depthwise_conv2d forward (GFLOP/s)",
            "depthwise_conv2d backward (GFLOP/s)",
            name,
            // Backward: dx and dk, each as many multiply-adds as the forward.
            (flops, 2 * flops),
            || ops::depthwise_conv2d(&x, &kt).unwrap(),
        );
    }
    for &Dense {
        name,
        n,
        cin,
        cout,
        hw,
        k,
        stride,
        pad,
    } in DENSE
    {
        let x = Tensor::full(&gpu, [n, cin, hw, hw], 0.5)
            .unwrap()
            .requires_grad();
        let w = Tensor::full(&gpu, [cout, cin, k, k], 0.01)
            .unwrap()
            .requires_grad();
        let b = Tensor::zeros(&gpu, [cout]).unwrap().requires_grad();
        let ho = (hw + 2 * pad - k) / stride + 1;
        let flops = (2 * n * cout * ho * ho * cin * k * k) as u64;
        forward_backward(
            c,
            &gpu,
            "conv2d forward (GFLOP/s)",
            "conv2d backward (GFLOP/s)",
            name,
            (flops, 2 * flops),
            || ops::conv2d(&x, &w, Some(&b), stride, pad).unwrap(),
        );
    }
}
