//! Whole-model check (issue 4, item 3): for a narrow model (F = 4, 32×32 input, batch 2,
//! training-mode BN), an independent f64 CPU model (`reference::model`, built only from the
//! per-op references, with its own tape) computes the same loss as the GPU and the same
//! gradient for every parameter, and its gradients match central finite differences of its
//! loss on a random sample of parameter coordinates.
//!
//! Four things need a principled rule rather than a tolerance:
//! - The GPU computes in f32. An input of a ReLU or a max-pool window within round-off of
//!   its kink may fall on the other side than in f64, and one such flip moves every
//!   upstream gradient by ~1e-3 (seen on about one draw in five). The GPU's decisions are
//!   read from its tape ([`Tape::piecewise_inputs`]) and the CPU model differentiates the
//!   same piece of the loss ([`cpu::gradients_following`]); the flips are counted and
//!   logged.
//! - A gradient that has cancelled to a small fraction of its *mass* (the sum of the
//!   absolute values of the terms it sums), e.g. a weight that reaches the loss only
//!   through BN's ε, carries f32 round-off of that mass, not of itself: it is judged
//!   against the mass.
//! - A bias whose per-channel constant a later training-mode BN subtracts again has a
//!   gradient that is zero in exact arithmetic; those biases, predicted from the model's
//!   structure ([`zero_gradient_biases`]), are not sampled for finite differences.
//! - Central differences are taken on the point's own piece of the loss (the CPU model
//!   following the point's ReLU signs and max-pool arg-maxes,
//!   [`cpu::evaluate_following`]): the loss restricted to it is smooth, so a step that
//!   would cross a kink nearby still estimates the derivative the backward computes.

use std::collections::BTreeSet;

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rca_gpu::autodiff::Piecewise;
use rca_gpu::model::{Block, Mode, Model, ModelConfig, Variant};
use rca_gpu::nn::layers::{Inception, SepBn};
use rca_gpu::reference::model as cpu;
use rca_gpu::{Tape, Tensor, ops};

use crate::common;

const WIDTH: usize = 4;
const SIZE: usize = 32;
const BATCH: usize = 2;

/// ‖g_gpu − g_cpu‖ / ‖g_cpu‖ per parameter tensor (the bound).
const GPU_RTOL: f64 = 1e-3;
/// A gradient below this fraction of its mass is zero in exact arithmetic (f64 round-off
/// leaves ~1e-16 of it; genuine gradients are many orders above).
const ZERO_IN_F64: f64 = 1e-10;
/// What f32 round-off may leave in a gradient on the GPU, as a fraction of its mass.
const F32_OF_MASS: f64 = 1e-6;
/// A gradient below this fraction of its mass has cancelled; its error is judged against
/// the mass as well.
const CANCELLED: f64 = 1e-3;

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn diff_norm(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// The decisions the GPU's backward takes, from the inputs its piecewise ops saved, in the
/// CPU model's pattern encoding.
fn gpu_pattern(inputs: &[Piecewise]) -> Vec<u32> {
    let mut pattern = Vec::new();
    for p in inputs {
        let (x, stride) = match p {
            Piecewise::Relu(x) => (x, 0),
            Piecewise::MaxPoolValid(x) => (x, 2),
            Piecewise::MaxPoolSame(x) => (x, 1),
        };
        let v = common::to_f64(&x.to_vec().unwrap());
        if stride == 0 {
            pattern.extend(cpu::relu_pattern(&v));
        } else {
            let d = x.shape().dims();
            pattern.extend(cpu::pool_pattern(&v, [d[0], d[1], d[2], d[3]], stride));
        }
    }
    pattern
}

/// Finite differences: step, sample size and tolerance |fd − g| ≤ rtol·|g| + atol. The
/// atol bounds the f64 round-off of the loss (~1e-15) divided by 2h. h = 1e-5 balances
/// that round-off against truncation (h²·L'''/6): on rca-iunet, h = 1e-6 left errors of
/// ~5e-10 (round-off), h = 1e-5 ≤ 5e-11.
const FD_H: f64 = 1e-5;
const FD_SAMPLES: usize = 30;
const FD_RTOL: f64 = 1e-5;
const FD_ATOL: f64 = 1e-10;

/// The biases (by `ParamId` index) whose gradient is zero in exact arithmetic: each adds
/// a per-channel constant that a training-mode BN later removes with the batch mean.
/// - The bias of the conv right before every BN: inception branches, the hybrid pool
///   branch, block shortcuts, CSA gates and output, the head.
/// - In the last decoder block, whose output only reaches the head's 1×1 conv and BN(1):
///   the shortcut BN's β and, in a RIC block, the bias of layer 2's merge (the two terms
///   of the block's output that are shifted by a per-channel constant; the 1×1 conv turns
///   that into a constant shift of its single channel, which the head BN subtracts).
fn zero_gradient_biases(model: &Model) -> BTreeSet<usize> {
    let mut z = BTreeSet::new();
    let sep_bn = |z: &mut BTreeSet<usize>, l: &SepBn| z.insert(l.sep.bias.0);
    let inception = |z: &mut BTreeSet<usize>, l: &Inception| {
        for b in &l.branches {
            sep_bn(z, b);
        }
        z.insert(l.pool.merge.bias.0);
    };
    for block in model.enc.iter().chain(&model.dec) {
        match block {
            Block::Ric(r) => {
                inception(&mut z, &r.l1);
                inception(&mut z, &r.l2);
                z.insert(r.shortcut.bias.0);
            }
            Block::Plain(p) => {
                sep_bn(&mut z, &p.a);
                sep_bn(&mut z, &p.b);
                z.insert(p.shortcut.bias.0);
            }
        }
    }
    for csa in model.csa.iter().flatten() {
        for gate in [&csa.gate_x, &csa.gate_y, &csa.gate_z] {
            z.insert(gate.conv.bias.0);
        }
        z.insert(csa.out.bias.0);
    }
    z.insert(model.head.bias.0);
    match &model.dec[0] {
        Block::Ric(r) => {
            z.insert(r.shortcut_bn.beta.0);
            z.insert(r.l2.merge.bias.0);
        }
        Block::Plain(p) => {
            z.insert(p.shortcut_bn.beta.0);
        }
    }
    z
}

/// A random mask with some foreground and some background in each image.
fn mask(rng: &mut StdRng) -> Vec<f32> {
    (0..BATCH * SIZE * SIZE)
        .map(|_| if rng.random_bool(0.3) { 1.0 } else { 0.0 })
        .collect()
}

fn gradcheck(variant: Variant) {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let model = Model::new(ModelConfig::new(variant, WIDTH, SIZE).unwrap());
    let spec = &model.spec;
    let values = spec.init_values(rng.random());
    let xs = common::uniform(&mut rng, BATCH * SIZE * SIZE);
    let ys = mask(&mut rng);

    // GPU: the training step's forward, loss and backward.
    let mut params = spec.load(&gpu, &values).unwrap();
    let x = Tensor::from_vec(&gpu, [BATCH, 1, SIZE, SIZE], &xs).unwrap();
    let y = Tensor::from_vec(&gpu, [BATCH, 1, SIZE, SIZE], &ys).unwrap();
    let tape = Tape::start();
    let logits = model.forward(&mut params, &x, Mode::Train).unwrap();
    let loss = ops::bce_dice_loss(&logits, &y).unwrap();
    let gpu_loss = f64::from(loss.to_scalar().unwrap());
    let on_gpu = gpu_pattern(&tape.piecewise_inputs());
    let grads = tape.backward(&loss).unwrap();

    // CPU: the same values in f64.
    let values64: Vec<Vec<f64>> = values.iter().map(|v| common::to_f64(v)).collect();
    let (x64, y64) = (common::to_f64(&xs), common::to_f64(&ys));
    let started = std::time::Instant::now();
    let cpu = cpu::gradients(&model, &values64, &x64, &y64);
    let cpu_time = started.elapsed();
    let loss_err = (gpu_loss - cpu.eval.loss).abs() / cpu.eval.loss;
    eprintln!(
        "{variant}: loss GPU {gpu_loss:.7} CPU {:.7} (rel {loss_err:.1e}); CPU forward+backward {cpu_time:.2?}",
        cpu.eval.loss
    );
    assert!(
        loss_err < 1e-4,
        "{variant}: losses differ by {loss_err:.1e}"
    );

    // Every trainable parameter's GPU gradient against the CPU model's on the GPU's piece.
    let base = &cpu.eval.pattern;
    assert_eq!(on_gpu.len(), base.len(), "{variant}: piecewise decisions");
    let flips = on_gpu.iter().zip(base).filter(|(a, b)| a != b).count();
    let follow = if flips == 0 {
        None
    } else {
        Some(cpu::gradients_following(
            &model, &values64, &x64, &y64, &on_gpu,
        ))
    };
    let reference = follow.as_ref().unwrap_or(&cpu);
    let zero_biases = zero_gradient_biases(&model);
    let (mut worst, mut worst_cancelled, mut checked) = ((0.0f64, ""), (0.0f64, ""), 0);
    for (i, (info, t)) in params.iter().enumerate() {
        let name = info.name.as_str();
        if !info.kind.trainable() {
            assert!(reference.grads[i].is_none(), "{name}: running statistic");
            continue;
        }
        let g_cpu = reference.grads[i]
            .as_ref()
            .unwrap_or_else(|| panic!("{variant}: the CPU model never reads {name}"));
        let g_gpu = common::to_f64(
            &grads
                .get(t)
                .unwrap_or_else(|| panic!("{variant}: no GPU gradient for {name}"))
                .to_vec()
                .unwrap(),
        );
        assert_eq!(g_gpu.len(), g_cpu.len(), "{name}");
        let mass = norm(reference.mass[i].as_ref().unwrap());
        let err = diff_norm(&g_gpu, g_cpu);
        let ratio = norm(g_cpu) / mass;
        if zero_biases.contains(&i) {
            assert!(
                ratio < ZERO_IN_F64,
                "{variant}: {name} was predicted to cancel exactly, but its CPU gradient is {ratio:.1e} of its mass"
            );
        }
        if ratio < CANCELLED {
            let rel = err / mass;
            assert!(
                rel < F32_OF_MASS,
                "{variant}: {name}, cancelled to {ratio:.1e} of its mass: ‖gpu − cpu‖ = {rel:.1e} of the mass"
            );
            if rel > worst_cancelled.0 {
                worst_cancelled = (rel, name);
            }
        } else {
            let rel = err / norm(g_cpu);
            assert!(
                rel < GPU_RTOL,
                "{variant}: gradient of {name} differs: ‖gpu − cpu‖/‖cpu‖ = {rel:.2e} (‖cpu‖ = {:.3e}, ‖gpu‖ = {:.3e}, {flips} decisions flipped)",
                norm(g_cpu),
                norm(&g_gpu)
            );
            if rel > worst.0 {
                worst = (rel, name);
            }
        }
        checked += 1;
    }
    eprintln!(
        "{variant}: {checked} gradients vs the CPU model, {flips} of {} ReLU/max-pool decisions differ between f32 and f64 (CPU followed the GPU's); worst ‖gpu − cpu‖/‖cpu‖ {:.2e} ({}); cancelled ones worst {:.1e} of their mass ({})",
        base.len(),
        worst.0,
        worst.1,
        worst_cancelled.0,
        worst_cancelled.1
    );

    // The CPU gradients against central differences of the CPU loss.
    let mut candidates: Vec<usize> = (0..spec.params().len())
        .filter(|&i| spec.params()[i].kind.trainable() && !zero_biases.contains(&i))
        .collect();
    candidates.shuffle(&mut rng);
    let mut params64 = values64.clone();
    let (mut worst_fd, mut worst_abs, mut done) = (0.0f64, 0.0f64, 0);
    let started = std::time::Instant::now();
    for &i in &candidates {
        if done == FD_SAMPLES {
            break;
        }
        let name = &spec.params()[i].name;
        let k = rng.random_range(0..params64[i].len());
        let g = cpu.grads[i].as_ref().unwrap()[k];
        // On the point's own piece of the loss: smooth, however close a kink lies.
        let orig = params64[i][k];
        params64[i][k] = orig + FD_H;
        let up = cpu::evaluate_following(&model, &params64, &x64, &y64, base);
        params64[i][k] = orig - FD_H;
        let down = cpu::evaluate_following(&model, &params64, &x64, &y64, base);
        params64[i][k] = orig;
        let fd = (up.loss - down.loss) / (2.0 * FD_H);
        let atol = FD_ATOL;
        let err = (fd - g).abs();
        assert!(
            err <= FD_RTOL * g.abs() + atol,
            "{variant}: {name}[{k}]: backward {g:.10e}, finite difference {fd:.10e}"
        );
        worst_abs = worst_abs.max(err);
        if g.abs() > atol / FD_RTOL {
            worst_fd = worst_fd.max(err / g.abs());
        }
        done += 1;
    }
    assert_eq!(done, FD_SAMPLES, "{variant}: not enough parameter tensors");
    eprintln!(
        "{variant}: {done} coordinates (distinct tensors) vs central differences, h = {FD_H:e}: worst rel {worst_fd:.1e} (|g| > {:.0e}), worst abs {worst_abs:.1e}; {:.2?}",
        FD_ATOL / FD_RTOL,
        started.elapsed()
    );
}

#[test]
fn rca_iunet_loss_matches_the_cpu_model_whose_gradients_match_finite_differences() {
    gradcheck(Variant::RcaIunet);
}

#[test]
fn unet_loss_matches_the_cpu_model_whose_gradients_match_finite_differences() {
    gradcheck(Variant::Unet);
}

#[test]
fn unet_ric_loss_matches_the_cpu_model_whose_gradients_match_finite_differences() {
    gradcheck(Variant::UnetRic);
}

#[test]
fn unet_csa_loss_matches_the_cpu_model_whose_gradients_match_finite_differences() {
    gradcheck(Variant::UnetCsa);
}

#[test]
fn unet_ric_hp_loss_matches_the_cpu_model_whose_gradients_match_finite_differences() {
    gradcheck(Variant::UnetRicHp);
}

#[test]
fn unet_csa_hp_loss_matches_the_cpu_model_whose_gradients_match_finite_differences() {
    gradcheck(Variant::UnetCsaHp);
}

#[test]
fn unet_csa_ric_loss_matches_the_cpu_model_whose_gradients_match_finite_differences() {
    gradcheck(Variant::UnetCsaRic);
}
