//! The whole stack learns: a narrow RCA-IUnet (F = 4), trained with the real step (forward, fused
//! BCE-Dice loss, backward, Adam) on a handful of synthetic images — a bright disc on
//! speckle noise — reaches a training Dice above 0.9 within a bounded number of steps.

use rand::Rng;
use rca_gpu::model::{Mode, Model, ModelConfig, Variant};
use rca_gpu::train::{Adam, train_step};
use rca_gpu::{Tensor, no_grad};

use crate::common;

const SIZE: usize = 32;
const BATCH: usize = 4;
const MAX_STEPS: usize = 150;

/// A bright disc of random centre and radius on multiplicative speckle, and its mask.
fn disc(rng: &mut impl Rng) -> (Vec<f32>, Vec<f32>) {
    let s = SIZE as f32;
    let (cx, cy) = (
        rng.random_range(0.3..0.7) * s,
        rng.random_range(0.3..0.7) * s,
    );
    let r = rng.random_range(0.15..0.3) * s;
    let mut img = Vec::new();
    let mut mask = Vec::new();
    for y in 0..SIZE {
        for x in 0..SIZE {
            let inside = (x as f32 - cx).hypot(y as f32 - cy) < r;
            let speckle: f32 = rng.random_range(0.5..1.5);
            img.push((if inside { 0.75 } else { 0.3 }) * speckle);
            mask.push(if inside { 1.0 } else { 0.0 });
        }
    }
    (img, mask)
}

fn dice(logits: &[f32], mask: &[f32]) -> f64 {
    let (mut tp, mut p, mut g) = (0.0, 0.0, 0.0);
    for (&z, &y) in logits.iter().zip(mask) {
        let pred = if z > 0.0 { 1.0 } else { 0.0 };
        tp += pred * f64::from(y);
        p += pred;
        g += f64::from(y);
    }
    2.0 * tp / (p + g)
}

#[test]
fn a_small_model_learns_to_segment_discs() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for _ in 0..BATCH {
        let (x, y) = disc(&mut rng);
        xs.extend(x);
        ys.extend(y);
    }
    let x = Tensor::from_vec(&gpu, [BATCH, 1, SIZE, SIZE], &xs).unwrap();
    let y = Tensor::from_vec(&gpu, [BATCH, 1, SIZE, SIZE], &ys).unwrap();
    let model = Model::new(ModelConfig::new(Variant::RcaIunet, 4, SIZE).unwrap());
    let mut params = model.spec.init(&gpu, rng.random()).unwrap();
    let mut adam = Adam::new(&params, 1e-2).unwrap();
    let mut best = 0.0;
    for step in 1..=MAX_STEPS {
        let (loss, logits) = train_step(&model, &mut params, &mut adam, &x, &y).unwrap();
        if step % 10 == 0 {
            let d = dice(&logits.to_vec().unwrap(), &ys);
            let l = loss.to_scalar().unwrap();
            assert!(l.is_finite(), "loss {l} at step {step}");
            eprintln!("step {step}: loss {l:.4}, training Dice {d:.3}");
            best = d;
            if d > 0.9 {
                break;
            }
        }
    }
    assert!(
        best > 0.9,
        "training Dice {best:.3} after {MAX_STEPS} steps"
    );
    // Eval mode (running statistics) gives a sane output too.
    let out = no_grad(|| model.forward(&mut params, &x, Mode::Eval)).unwrap();
    assert!(out.to_vec().unwrap().iter().all(|v| v.is_finite()));
}
