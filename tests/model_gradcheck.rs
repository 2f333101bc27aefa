//! Whole-model gradient check (issue 4, item 3): for a narrow model (F = 4, 32×32 input,
//! batch 2, training-mode BN), the GPU gradient of every trainable parameter — a tape
//! around `Model::forward`, `ops::bce_dice_loss` and `Tape::backward` — matches an
//! independent f64 CPU computation (`reference::model`, built only from the per-op
//! references), and that CPU computation matches central finite differences of its own
//! loss on a random sample of parameter coordinates.
//!
//! Two things need a principled rule rather than a tolerance:
//! - A bias whose per-channel constant a later training-mode BN subtracts again with the
//!   batch mean has a gradient that is zero in exact arithmetic, so its relative error is
//!   noise over noise. Such biases are recognised from the f64 computation (gradient below
//!   1e-10 of the Σ|∂L/∂y| it is the signed sum of), must be exactly the set the model's
//!   structure predicts ([`zero_gradient_biases`]), and the GPU's value is held to f32
//!   round-off of that same mass instead.
//! - A central difference whose two evaluations do not have the same ReLU signs and
//!   max-pool arg-maxes as the point itself straddles a kink and estimates no derivative:
//!   it is logged and retried with a ten times smaller step, and if that straddles too,
//!   the coordinate is replaced by another one (at most a few are allowed).

mod common;

use std::collections::BTreeSet;

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rca_gpu::model::{Block, Mode, Model, ModelConfig, Variant};
use rca_gpu::nn::layers::{Inception, SepBn};
use rca_gpu::reference::model as cpu;
use rca_gpu::{Tape, Tensor, ops};

const WIDTH: usize = 4;
const SIZE: usize = 32;
const BATCH: usize = 2;

/// ‖g_gpu − g_cpu‖ / ‖g_cpu‖ per parameter tensor.
const GPU_RTOL: f64 = 1e-3;
/// A bias gradient below this fraction of its mass is zero in exact arithmetic (f64
/// round-off leaves ~1e-16 of it; genuine gradients are many orders above).
const ZERO_IN_F64: f64 = 1e-10;
/// What f32 round-off may leave in a gradient on the GPU, as a fraction of its mass (the
/// sum of the absolute values of the terms it sums; exact zeros show ~6e-8).
const F32_OF_MASS: f64 = 1e-6;
/// A gradient below this fraction of its mass has cancelled (e.g. a weight into a BN
/// that only reaches the loss through BN's ε: enc0's one-input-channel pointwise weights,
/// CSA's gate on the image); its error is judged against the mass as well.
const CANCELLED: f64 = 1e-3;

/// Finite differences: step, sample size and tolerance |fd − g| ≤ rtol·|g| + atol. The
/// atol bounds the f64 round-off of the loss (~1e-15) divided by 2h. h = 1e-5 balances
/// that round-off against truncation (h²·L'''/6): on rca-iunet, h = 1e-6 left errors of
/// ~5e-10 (round-off), h = 1e-5 ≤ 5e-11, and h = 1e-4 starts to cross kinks.
const FD_H: f64 = 1e-5;
const FD_SAMPLES: usize = 30;
const FD_RTOL: f64 = 1e-5;
const FD_ATOL: f64 = 1e-10;
/// Coordinates straddling a kink at both steps that may be replaced before the check
/// gives up (about one draw in ten straddles at h = 1e-5, far fewer at 1e-6).
const FD_MAX_STRADDLES: usize = 5;

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

    // Every trainable parameter: relative error of its gradient vector.
    let mut worst = (0.0f64, String::new());
    let mut worst_zero = (0.0f64, String::new());
    let mut cancelled = Vec::new();
    let (mut zero_biases, mut checked) = (BTreeSet::new(), 0);
    for (i, (info, t)) in params.iter().enumerate() {
        if !info.kind.trainable() {
            assert!(cpu.grads[i].is_none(), "{}: running statistic", info.name);
            continue;
        }
        let name = &info.name;
        let g_cpu = cpu.grads[i]
            .as_ref()
            .unwrap_or_else(|| panic!("{variant}: CPU model never reads {name}"));
        let g_gpu = common::to_f64(
            &grads
                .get(t)
                .unwrap_or_else(|| panic!("{variant}: no GPU gradient for {name}"))
                .to_vec()
                .unwrap(),
        );
        assert_eq!(g_gpu.len(), g_cpu.len(), "{name}");
        assert!(
            g_gpu.iter().all(|g| g.is_finite()),
            "{variant}: {name} not finite"
        );
        let mass = norm(cpu.mass[i].as_ref().unwrap());
        let err = diff_norm(&g_gpu, g_cpu);
        if norm(g_cpu) < ZERO_IN_F64 * mass {
            let rel = err / mass;
            if rel > worst_zero.0 {
                worst_zero = (rel, name.clone());
            }
            assert!(
                rel < F32_OF_MASS,
                "{variant}: {name} should cancel to zero but the GPU leaves {rel:.1e} of its mass"
            );
            zero_biases.insert(i);
            continue;
        }
        let rel = err / norm(g_cpu);
        let ratio = norm(g_cpu) / mass;
        if ratio < CANCELLED {
            assert!(
                err < GPU_RTOL * norm(g_cpu) + F32_OF_MASS * mass,
                "{variant}: gradient of {name} (cancelled to {ratio:.1e} of its mass) differs: ‖gpu − cpu‖/‖cpu‖ = {rel:.2e}, ‖gpu − cpu‖/mass = {:.2e}",
                err / mass
            );
            cancelled.push(format!("{name} ({rel:.1e}, |g|/mass {ratio:.0e})"));
        } else {
            assert!(
                rel < GPU_RTOL,
                "{variant}: gradient of {name} differs: ‖gpu − cpu‖/‖cpu‖ = {rel:.2e} (‖cpu‖ = {:.3e}, ‖gpu‖ = {:.3e})",
                norm(g_cpu),
                norm(&g_gpu)
            );
            if rel > worst.0 || worst.1.is_empty() {
                worst = (rel, name.clone());
            }
        }
        checked += 1;
    }
    eprintln!(
        "{variant}: {checked} gradients, worst ‖gpu − cpu‖/‖cpu‖ = {:.2e} ({}); {} cancelled below {CANCELLED:.0e} of their mass, judged against it: {cancelled:?}; {} biases cancel exactly (zero gradient), worst GPU residue {:.1e} of the mass ({})",
        worst.0,
        worst.1,
        cancelled.len(),
        zero_biases.len(),
        worst_zero.0,
        worst_zero.1
    );
    let expected = zero_gradient_biases(&model);
    let names = |ids: &mut dyn Iterator<Item = &usize>| -> Vec<String> {
        ids.map(|&i| spec.params()[i].name.clone()).collect()
    };
    assert!(
        zero_biases == expected,
        "{variant}: zero gradients not predicted: {:?}; predicted but not zero: {:?}",
        names(&mut zero_biases.difference(&expected)),
        names(&mut expected.difference(&zero_biases))
    );

    // The CPU gradients against central differences of the CPU loss.
    let mut candidates: Vec<usize> = (0..spec.params().len())
        .filter(|&i| spec.params()[i].kind.trainable() && !zero_biases.contains(&i))
        .collect();
    candidates.shuffle(&mut rng);
    let base = &cpu.eval.pattern;
    let mut params64 = values64.clone();
    let (mut worst_fd, mut worst_abs, mut straddles, mut done) = (0.0f64, 0.0f64, 0, 0);
    let started = std::time::Instant::now();
    for &i in &candidates {
        if done == FD_SAMPLES {
            break;
        }
        let name = &spec.params()[i].name;
        let k = rng.random_range(0..params64[i].len());
        let g = cpu.grads[i].as_ref().unwrap()[k];
        // A central difference at h = 1e-5, or at 1e-6 (with the round-off bound scaled)
        // if the first straddles a kink; if both do, the coordinate is replaced.
        let mut estimate = None;
        for h in [FD_H, FD_H / 10.0] {
            let orig = params64[i][k];
            params64[i][k] = orig + h;
            let up = cpu::evaluate(&model, &params64, &x64, &y64);
            params64[i][k] = orig - h;
            let down = cpu::evaluate(&model, &params64, &x64, &y64);
            params64[i][k] = orig;
            if &up.pattern == base && &down.pattern == base {
                estimate = Some(((up.loss - down.loss) / (2.0 * h), FD_ATOL * FD_H / h));
                break;
            }
            eprintln!(
                "{variant}: {name}[{k}] ±{h:e} changes a ReLU sign or max-pool arg-max: no derivative estimate at that step"
            );
        }
        let Some((fd, atol)) = estimate else {
            straddles += 1;
            assert!(
                straddles <= FD_MAX_STRADDLES,
                "{variant}: {straddles} sampled coordinates straddle kinks"
            );
            continue;
        };
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
        "{variant}: {done} coordinates (distinct tensors) vs central differences, h = {FD_H:e}: worst rel {worst_fd:.1e} (|g| > {:.0e}), worst abs {worst_abs:.1e}; {straddles} replaced (kink at both steps); {:.2?}",
        FD_ATOL / FD_RTOL,
        started.elapsed()
    );
}

#[test]
fn rca_iunet_gradients_match_the_cpu_model_and_finite_differences() {
    gradcheck(Variant::RcaIunet);
}

#[test]
fn unet_gradients_match_the_cpu_model_and_finite_differences() {
    gradcheck(Variant::Unet);
}

#[test]
fn unet_ric_gradients_match_the_cpu_model_and_finite_differences() {
    gradcheck(Variant::UnetRic);
}

#[test]
fn unet_csa_gradients_match_the_cpu_model_and_finite_differences() {
    gradcheck(Variant::UnetCsa);
}

#[test]
fn unet_ric_hp_gradients_match_the_cpu_model_and_finite_differences() {
    gradcheck(Variant::UnetRicHp);
}

#[test]
fn unet_csa_hp_gradients_match_the_cpu_model_and_finite_differences() {
    gradcheck(Variant::UnetCsaHp);
}

#[test]
fn unet_csa_ric_gradients_match_the_cpu_model_and_finite_differences() {
    gradcheck(Variant::UnetCsaRic);
}
