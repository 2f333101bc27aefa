//! Whole-model throughput: inference (no tape, eval-mode BN) and one training step
//! (forward, loss, backward, Adam) of RCA-IUnet, at 256×256 and 128×128, batch 1.
//! On lavapipe one training step at 256×256 takes tens of seconds, so this is a plain
//! timing loop (one warm-up, median of a few runs, the device drained around each), not
//! a criterion statistical run. `RCA_BENCH_REPS` sets the runs (default 3);
//! `RCA_BENCH_SIZES` the sizes (default "256,128").

use std::time::Instant;

use rca_gpu::model::{Mode, Model, ModelConfig, Variant};
use rca_gpu::train::{Adam, train_step};
use rca_gpu::{AdapterRequest, Gpu, Tensor, no_grad};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time(gpu: &Gpu, reps: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up: pipelines compiled, pool filled
    let mut runs = Vec::with_capacity(reps);
    for _ in 0..reps {
        gpu.sync();
        let t0 = Instant::now();
        f();
        gpu.sync();
        runs.push(t0.elapsed().as_secs_f64());
    }
    median(runs)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass nothing: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let gpu = Gpu::new(&AdapterRequest::from_env()).expect("a GPU adapter (see `rca-gpu devices`)");
    let reps: usize = std::env::var("RCA_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let sizes: Vec<usize> = std::env::var("RCA_BENCH_SIZES")
        .unwrap_or_else(|_| "256,128".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("adapter: {}", gpu.info());
    for size in sizes {
        let config = ModelConfig::new(Variant::RcaIunet, 16, size).expect("valid size");
        let model = Model::new(config);
        let gflop = model.forward_flops() / 1e9;
        let mut params = model.spec.init(&gpu, 1).expect("parameters");
        let x = Tensor::full(&gpu, [1, 1, size, size], 0.5).expect("input");
        let y = Tensor::zeros(&gpu, [1, 1, size, size]).expect("mask");
        let infer = time(&gpu, reps, || {
            no_grad(|| model.forward(&mut params, &x, Mode::Eval)).expect("forward");
        });
        let mut adam = Adam::new(&params, 1e-3).expect("optimizer");
        let step = time(&gpu, reps, || {
            train_step(&model, &mut params, &mut adam, &x, &y).expect("step");
        });
        println!(
            "rca-iunet {size}x{size} batch 1: inference {:.0} ms ({:.2} GFLOP/s), training step {:.0} ms",
            infer * 1e3,
            gflop / infer,
            step * 1e3
        );
    }
}
