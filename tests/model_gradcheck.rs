//! Whole-model check (issue 4, item 3, in part): for a narrow model (F = 4, 32×32 input,
//! batch 2, training-mode BN), an independent f64 CPU model (`reference::model`, built only
//! from the per-op references, with its own tape) computes the same loss as the GPU, and
//! its gradients match central finite differences of its loss on a random sample of
//! parameter coordinates.
//!
//! Not asserted yet: the GPU gradient of every parameter against the CPU model's. On about
//! one draw in five, the first-layer 3×3 branch of the RIC variants differs by 1e-3 to
//! 7e-3 while every other parameter agrees to ~1e-5; the cause is still open (see the
//! comment in `gradcheck`).
//!
//! Two things need a principled rule rather than a tolerance:
//! - A bias whose per-channel constant a later training-mode BN subtracts again has a
//!   gradient that is zero in exact arithmetic; those biases, predicted from the model's
//!   structure ([`zero_gradient_biases`]), are not sampled for finite differences.
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
use rca_gpu::{Tensor, ops};

const WIDTH: usize = 4;
const SIZE: usize = 32;
const BATCH: usize = 2;

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
    let logits = model.forward(&mut params, &x, Mode::Train).unwrap();
    let loss = ops::bce_dice_loss(&logits, &y).unwrap();
    let gpu_loss = f64::from(loss.to_scalar().unwrap());

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

    // The per-parameter comparison of GPU and CPU gradients is not asserted yet: on about
    // one draw in five the first-layer 3×3 branch of the RIC variants differs by 1e-3 to
    // 7e-3 (e.g. RCA_TEST_SEED=14111298691918195390, unet+ric+hp), and whether the GPU or
    // the comparison is at fault is still open. Until it is, the GPU loss is held to the
    // CPU loss, and every GPU backward to its reference per op (tests/<op>.rs).
    let zero_biases = zero_gradient_biases(&model);

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
