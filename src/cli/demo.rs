//! `rca-gpu demo`: a small end-to-end run of the engine until `train` lands — a per-pixel
//! network (1×1 conv → ReLU → 1×1 conv → sigmoid) trained with the tape and plain SGD on
//! the GPU to segment bright discs in speckle noise, reporting loss and Dice as it goes.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{Gpu, Tape, Tensor, no_grad, ops};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Image side in pixels.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Images in the batch.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Hidden channels of the per-pixel network.
    #[arg(long, default_value_t = 16)]
    pub hidden: usize,
    /// SGD steps.
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 5.0)]
    pub lr: f32,
    /// Seed of the data and the initial weights.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    #[command(flatten)]
    pub adapter: super::AdapterArgs,
}

/// A bright disc of random centre and radius on multiplicative speckle; returns
/// (image, mask), each size×size in [0, 1].
fn disc_image(rng: &mut StdRng, size: usize) -> (Vec<f32>, Vec<f32>) {
    let s = size as f32;
    let (cx, cy) = (
        rng.random_range(0.3..0.7) * s,
        rng.random_range(0.3..0.7) * s,
    );
    let r = rng.random_range(0.12..0.25) * s;
    let mut img = Vec::with_capacity(size * size);
    let mut mask = Vec::with_capacity(size * size);
    for y in 0..size {
        for x in 0..size {
            let inside = (x as f32 - cx).hypot(y as f32 - cy) < r;
            let base = if inside { 0.7 } else { 0.3 };
            let speckle: f32 = rng.random_range(0.6..1.4);
            img.push((base * speckle).clamp(0.0, 1.0));
            mask.push(if inside { 1.0 } else { 0.0 });
        }
    }
    (img, mask)
}

fn glorot(rng: &mut StdRng, fan_in: usize, fan_out: usize, n: usize) -> Vec<f32> {
    let limit = (6.0 / (fan_in + fan_out) as f32).sqrt();
    (0..n).map(|_| rng.random_range(-limit..limit)).collect()
}

fn dice(p: &[f32], y: &[f32]) -> f32 {
    let (mut tp, mut sp, mut sy) = (0.0, 0.0, 0.0);
    for (&a, &b) in p.iter().zip(y) {
        let a = if a > 0.5 { 1.0 } else { 0.0 };
        tp += a * b;
        sp += a;
        sy += b;
    }
    (2.0 * tp + 1.0) / (sp + sy + 1.0)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let gpu: Gpu = args.adapter.open()?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let (n, s, h) = (args.batch, args.size, args.hidden);
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let (x, y) = disc_image(&mut rng, s);
        xs.extend(x);
        ys.extend(y);
    }
    let x = Tensor::from_vec(&gpu, [n, 1, s, s], &xs)?;
    let y = Tensor::from_vec(&gpu, [n, 1, s, s], &ys)?;
    let mut w1 = Tensor::from_vec(&gpu, [h, 1, 1, 1], &glorot(&mut rng, 1, h, h))?.requires_grad();
    let mut b1 = Tensor::zeros(&gpu, [h])?.requires_grad();
    let mut w2 = Tensor::from_vec(&gpu, [1, h, 1, 1], &glorot(&mut rng, h, 1, h))?.requires_grad();
    let mut b2 = Tensor::zeros(&gpu, [1])?.requires_grad();

    println!(
        "demo: {n} images of {s}×{s}, per-pixel network 1→{h}→1, {} SGD steps",
        args.steps
    );
    let t0 = Instant::now();
    let mut last = f32::NAN;
    for step in 0..=args.steps {
        let tape = Tape::start();
        let hid = ops::relu(&ops::conv1x1(&x, &w1, Some(&b1))?)?;
        let p = ops::sigmoid(&ops::conv1x1(&hid, &w2, Some(&b2))?)?;
        let err = ops::sub(&p, &y)?;
        let loss = ops::mean(&ops::mul(&err, &err)?)?;
        let mut grads = tape.backward(&loss)?;
        if step % 25 == 0 || step == args.steps {
            last = loss.to_scalar()?;
            let d = dice(&p.to_vec()?, &ys);
            println!("step {step:4}  loss {last:.4}  dice {d:.3}");
        }
        if step == args.steps {
            break;
        }
        // SGD: θ ← θ − lr·∇θ, outside the tape.
        let update = |t: &Tensor, g: Option<Tensor>| -> anyhow::Result<Tensor> {
            let g = g.ok_or_else(|| anyhow::anyhow!("missing gradient"))?;
            Ok(no_grad(|| ops::sub(t, &ops::scale(&g, args.lr)?))?.requires_grad())
        };
        w1 = update(&w1, grads.take(&w1))?;
        b1 = update(&b1, grads.take(&b1))?;
        w2 = update(&w2, grads.take(&w2))?;
        b2 = update(&b2, grads.take(&b2))?;
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "done: final loss {last:.4} in {secs:.1} s ({:.1} ms/step) on {}",
        1e3 * secs / args.steps.max(1) as f64,
        gpu.info().name
    );
    Ok(())
}
