//! The fused sigmoid + BCE-Dice loss against its reference: random logits and masks,
//! logits of ±50, all-zero (lesion-free) and all-one masks, samples larger than one
//! reduction chunk; the gradient w.r.t. the logits through the tape against the analytic
//! CPU gradient, and that against central finite differences in f64 (Eq. 7–9).

use rand::Rng;
use rand::rngs::StdRng;
use rca_gpu::reference::{finite_diff, loss as r};
use rca_gpu::{Tensor, ops};

use crate::common::{self, F32, Tol, check_op, input, to_f64};

/// The gradient entries are O(1/(N·P)) ≈ 1e-3: an absolute floor of 1e-5 would hide a 1 %
/// error, so the floor sits well below them and the relative part does the work.
const TOL: Tol = Tol {
    atol: 1e-8,
    rtol: F32.rtol,
};

/// Logits uniform in ±5.
fn logits(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-5.0..5.0)).collect()
}

/// A binary mask, each pixel foreground with probability `frac`.
fn mask(rng: &mut StdRng, n: usize, frac: f64) -> Vec<f32> {
    (0..n)
        .map(|_| if rng.random_bool(frac) { 1.0 } else { 0.0 })
        .collect()
}

fn check_loss(name: &str, shape: [usize; 4], z: Vec<f32>, y: Vec<f32>, rng: &mut StdRng) {
    let Some(gpu) = common::gpu() else { return };
    let [n, _, h, w] = shape;
    let p = h * w;
    let yt = Tensor::from_vec(&gpu, shape, &y).unwrap();
    let y64 = to_f64(&y);
    check_op(
        &gpu,
        rng,
        name,
        &[input(&shape, z)],
        |x| ops::bce_dice_loss(x[0], &yt),
        |x| vec![r::bce_dice(&x[0], &y64, n, p)],
        |x, dy| vec![r::bce_dice_backward(&x[0], &y64, n, p, dy[0])],
        TOL,
    );
}

#[test]
fn bce_dice_matches_reference_and_gradient_on_random_masks() {
    let mut rng = common::rng();
    let shape = [3, 1, 13, 17];
    let numel = 3 * 13 * 17;
    let z = logits(&mut rng, numel);
    let y = mask(&mut rng, numel, 0.3);
    check_loss("bce_dice random", shape, z, y, &mut rng);
}

#[test]
fn bce_dice_is_finite_and_exact_for_saturated_logits_and_extreme_masks() {
    // Sample 0: random mask; sample 1: all zero (a lesion-free image); sample 2: all
    // one. A third of the logits sit at ±50, where p(1 − p) ≈ 2e-22 and a naive
    // log(p) would be log(0).
    let mut rng = common::rng();
    let (n, h, w) = (3, 9, 11);
    let p = h * w;
    let z: Vec<f32> = logits(&mut rng, n * p)
        .into_iter()
        .map(|v| match rng.random_range(0..3) {
            0 => 50.0,
            1 => -50.0,
            _ => v,
        })
        .collect();
    let mut y = mask(&mut rng, p, 0.5);
    y.extend(std::iter::repeat_n(0.0, p));
    y.extend(std::iter::repeat_n(1.0, p));
    check_loss("bce_dice saturated", [n, 1, h, w], z, y, &mut rng);
}

#[test]
fn bce_dice_over_samples_larger_than_one_chunk() {
    // 97·91 = 8827 pixels: two partial workgroups per sample. The loss sums ~8800 f32
    // terms per sample, hence a relative tolerance of 1e-4 on the sums' scale.
    let mut rng = common::rng();
    let shape = [2, 1, 97, 91];
    let numel = 2 * 97 * 91;
    let z = logits(&mut rng, numel);
    let y = mask(&mut rng, numel, 0.2);
    check_loss("bce_dice two chunks", shape, z, y, &mut rng);
}

#[test]
fn bce_dice_per_sample_losses_match_reference() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let (n, h, w) = (4, 7, 9);
    let p = h * w;
    let z = logits(&mut rng, n * p);
    let mut y = mask(&mut rng, n * p, 0.4);
    y[..p].fill(0.0);
    let zt = Tensor::from_vec(&gpu, [n, 1, h, w], &z).unwrap();
    let yt = Tensor::from_vec(&gpu, [n, 1, h, w], &y).unwrap();
    let (loss, samples) = ops::bce_dice_loss_per_sample(&zt, &yt).unwrap();
    let want = r::bce_dice_per_sample(&to_f64(&z), &to_f64(&y), n, p);
    common::assert_close("per-sample", &samples.to_vec().unwrap(), &want, F32);
    let mean = want.iter().sum::<f64>() / n as f64;
    common::assert_close("mean", &loss.to_vec().unwrap(), &[mean], F32);
}

#[test]
fn bce_dice_analytic_gradient_matches_finite_differences_at_every_pixel() {
    // The check Eq. 7–9 call for, at every coordinate (check_op samples 40), including
    // saturated logits, an all-zero and an all-one mask, and a soft mask (y² ≠ y).
    let mut rng = common::rng();
    let (n, p) = (4, 30);
    let z: Vec<f64> = (0..n * p)
        .map(|i| {
            if i % 7 == 0 {
                50.0 * if i % 2 == 0 { 1.0 } else { -1.0 }
            } else {
                rng.random_range(-5.0..5.0)
            }
        })
        .collect();
    let mut y: Vec<f64> = (0..n * p)
        .map(|_| if rng.random_bool(0.4) { 1.0 } else { 0.0 })
        .collect();
    y[p..2 * p].fill(0.0);
    y[2 * p..3 * p].fill(1.0);
    for v in &mut y[3 * p..] {
        *v = rng.random_range(0.0..1.0);
    }
    let dy = 0.7;
    let analytic = r::bce_dice_backward(&z, &y, n, p, dy);
    let numeric = finite_diff(&z, 1e-5, |z| dy * r::bce_dice(z, &y, n, p));
    common::assert_close_f64(
        "bce_dice gradient vs finite differences",
        &analytic,
        &numeric,
        Tol {
            atol: 1e-9,
            rtol: 1e-6,
        },
    );
}

#[test]
fn bce_dice_rejects_multi_channel_logits_and_mismatched_masks() {
    let Some(gpu) = common::gpu() else { return };
    let z2 = Tensor::zeros(&gpu, [2, 2, 4, 4]).unwrap();
    let e = ops::bce_dice_loss(&z2, &z2).unwrap_err().to_string();
    assert!(
        e.contains("bce_dice_loss") && e.contains("(2, 2, 4, 4)"),
        "{e}"
    );
    let z = Tensor::zeros(&gpu, [2, 1, 4, 4]).unwrap();
    let y = Tensor::zeros(&gpu, [2, 1, 4, 5]).unwrap();
    let e = ops::bce_dice_loss(&z, &y).unwrap_err().to_string();
    assert_eq!(
        e,
        "shape mismatch in bce_dice_loss: lhs (2, 1, 4, 4), rhs (2, 1, 4, 5)"
    );
}
