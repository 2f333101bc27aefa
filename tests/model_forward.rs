//! Every variant runs: forward in eval and train mode gives finite logits of the input's
//! size, four training steps reduce the loss on a repeated batch, train mode updates the
//! BN running statistics while eval mode leaves them alone, and inference's kept weights
//! change no logit.

use rand::Rng;
use rca_gpu::model::{Mode, Model, ModelConfig, Variant};
use rca_gpu::train::{Adam, train_step};
use rca_gpu::{Tensor, no_grad};

use crate::common;

#[test]
fn every_variant_runs_forward_and_learns_a_step() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let (n, s) = (2, 32);
    let xs = common::uniform(&mut rng, n * s * s);
    let ys: Vec<f32> = (0..n * s * s)
        .map(|i| if (i % s) > s / 2 { 1.0 } else { 0.0 })
        .collect();
    let x = Tensor::from_vec(&gpu, [n, 1, s, s], &xs).unwrap();
    let y = Tensor::from_vec(&gpu, [n, 1, s, s], &ys).unwrap();
    for v in Variant::ALL {
        let model = Model::new(ModelConfig::new(v, 4, s).unwrap());
        let mut params = model.spec.init(&gpu, rng.random()).unwrap();
        let out = no_grad(|| model.forward(&mut params, &x, Mode::Eval)).unwrap();
        assert_eq!(out.dims(), [n, 1, s, s], "{v}");
        assert!(out.to_vec().unwrap().iter().all(|z| z.is_finite()), "{v}");

        let head_rm = model.head_bn.running_mean;
        let before = params.get(head_rm).to_vec().unwrap();
        let mut adam = Adam::new(&params, 1e-2).unwrap();
        // One Adam step need not lower a train-mode-BN loss; four on the same batch do.
        let (l1, _) = train_step(&model, &mut params, &mut adam, &x, &y).unwrap();
        let mut last = l1.clone();
        for _ in 0..3 {
            last = train_step(&model, &mut params, &mut adam, &x, &y)
                .unwrap()
                .0;
        }
        let (l1, l4) = (l1.to_scalar().unwrap(), last.to_scalar().unwrap());
        assert!(
            l4 < l1,
            "{v}: loss {l1} at the first step, {l4} at the fourth"
        );
        let after = params.get(head_rm).to_vec().unwrap();
        assert_ne!(before, after, "{v}: train mode updates running statistics");
        let folded = no_grad(|| model.forward(&mut params, &x, Mode::Eval)).unwrap();
        assert_eq!(
            params.get(head_rm).to_vec().unwrap(),
            after,
            "{v}: eval mode does not"
        );
        // Without a tape, eval mode folds each batch norm into the product before it;
        // under one it runs the ops as written (each held to its reference). The running
        // statistics are those of four steps, not the initial (0, 1).
        // Inference keeps the prepared weights from one pass to the next: the same logits,
        // bit for bit, on the pass that prepares them and on the next, which reuses them.
        let mut folds = rca_gpu::nn::Folds::default();
        for pass in ["first", "second"] {
            let kept = no_grad(|| model.forward_folded(&mut params, &x, &mut folds)).unwrap();
            assert_eq!(
                kept.to_vec().unwrap(),
                folded.to_vec().unwrap(),
                "{v}: {pass} pass with kept folds"
            );
        }
        assert!(!folds.is_empty(), "{v}: no folds kept");
        let tape = rca_gpu::Tape::start();
        let composed = model.forward(&mut params, &x, Mode::Eval).unwrap();
        drop(tape);
        common::assert_close(
            &format!("{v}: folded batch norm against the composed ops"),
            &folded.to_vec().unwrap(),
            &common::to_f64(&composed.to_vec().unwrap()),
            common::Tol {
                atol: 1e-4,
                rtol: 1e-4,
            },
        );
    }
}

/// `Model::bn_momentum` is the weight of the old running statistics in every BN: from the
/// initial (mean 0, variance 1), one train-mode forward leaves
/// running = m·initial + (1 − m)·batch, and the batch statistics do not depend on m (train
/// mode normalises with them), so momentum 0.5 moves each statistic twice as far as 0.75.
/// (Both factors are exact in f32; what is left is the rounding of the stored sums, ~1e-7.)
#[test]
fn bn_momentum_sets_how_far_one_step_moves_every_running_statistic() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let (n, s) = (2, 32);
    let x = Tensor::from_vec(&gpu, [n, 1, s, s], &common::uniform(&mut rng, n * s * s)).unwrap();
    let seed = rng.random();
    let moved = |m: f32| {
        let mut model = Model::new(ModelConfig::new(Variant::RcaIunet, 2, s).unwrap());
        model.bn_momentum = m;
        let mut params = model.spec.init(&gpu, seed).unwrap();
        no_grad(|| model.forward(&mut params, &x, Mode::Train)).unwrap();
        let mut out = Vec::new();
        for (info, t) in params.iter() {
            let initial = if info.name.ends_with("running_var") {
                1.0
            } else if info.name.ends_with("running_mean") {
                0.0
            } else {
                continue;
            };
            out.extend(t.to_vec().unwrap().into_iter().map(|v| v - initial));
        }
        out
    };
    let (slow, fast) = (moved(0.75), moved(0.5));
    assert_eq!(slow.len(), fast.len());
    assert!(!slow.is_empty());
    let (mut checked, mut worst) = (0, 0.0f32);
    for (a, b) in slow.iter().zip(&fast) {
        if b.abs() > 1e-2 {
            let ratio = b / a;
            assert!(
                (ratio - 2.0).abs() < 2e-4,
                "moved {b} vs {a}: ratio {ratio}"
            );
            worst = worst.max((ratio - 2.0).abs());
            checked += 1;
        }
    }
    eprintln!(
        "{checked} of {} running statistics moved > 1e-2; worst |ratio − 2| {worst:.1e}",
        slow.len()
    );
    assert!(
        checked > slow.len() / 2,
        "{checked} of {} statistics moved",
        slow.len()
    );
}
