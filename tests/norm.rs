//! Batch norm against its reference: training mode (batch statistics, gradients of x, γ
//! and β, new running statistics), eval mode (running statistics, the affine map's
//! gradient), planes larger than one reduction chunk, and data whose mean dwarfs its
//! spread.

use rand::Rng;
use rand::rngs::StdRng;
use rca_gpu::ops::norm::{BN_EPS, BN_MOMENTUM};
use rca_gpu::{Tensor, ops, reference::norm as r};

use crate::common::{self, F32, Tol, check_op, input, to_f64, uniform};

const EPS: f64 = BN_EPS as f64;
const MOMENTUM: f64 = BN_MOMENTUM as f64;

/// Positive variances in [0.5, 1.5).
fn variances(rng: &mut rand::rngs::StdRng, c: usize) -> Vec<f32> {
    (0..c).map(|_| rng.random_range(0.5..1.5)).collect()
}

/// Training mode in every kernel variant: on CPU adapters, where the planes are whole
/// vec4s, one workgroup per channel (`bn_train_cpu4`, `bn_backward_cpu4`); elsewhere the
/// tiled partial sums, their merge and the element-wise kernels.
fn check_train(shape: [usize; 4], tol: Tol) {
    for (class, gpu) in common::kernel_variants() {
        check_train_on(&gpu, class, shape, tol);
    }
}

fn check_train_on(gpu: &rca_gpu::Gpu, class: &str, shape: [usize; 4], tol: Tol) {
    let gpu = gpu.clone();
    let mut rng = common::rng();
    let [n, c, h, w] = shape;
    let p = h * w;
    let x = uniform(&mut rng, n * c * p);
    let gamma = uniform(&mut rng, c);
    let beta = uniform(&mut rng, c);
    let rm = uniform(&mut rng, c);
    let rv = variances(&mut rng, c);
    let rm_t = Tensor::from_vec(&gpu, [c], &rm).unwrap();
    let rv_t = Tensor::from_vec(&gpu, [c], &rv).unwrap();
    let (rm64, rv64) = (to_f64(&rm), to_f64(&rv));
    check_op(
        &gpu,
        &mut rng,
        &format!("batch_norm_train {shape:?} ({class})"),
        &[input(&shape, x), input(&[c], gamma), input(&[c], beta)],
        |x| {
            ops::batch_norm_train(x[0], x[1], x[2], &rm_t, &rv_t, BN_MOMENTUM, BN_EPS)
                .map(|(y, _, _)| y)
        },
        |x| r::batch_norm_train(&x[0], &x[1], &x[2], &rm64, &rv64, n, c, p, MOMENTUM, EPS).0,
        |x, dy| {
            let (dx, dg, db) = r::batch_norm_train_backward(&x[0], &x[1], dy, n, c, p, EPS);
            vec![dx, dg, db]
        },
        tol,
    );
}

#[test]
fn batch_norm_train_matches_reference_and_gradients() {
    check_train([2, 3, 9, 11], F32);
    // P = 96, a multiple of 4: the vec4 kernels.
    check_train([2, 3, 8, 12], F32);
}

#[test]
fn batch_norm_train_over_planes_larger_than_one_tile() {
    // 83·99 = 8217 pixels per plane: two reduction tiles per (sample, channel). Kept
    // just above one tile, so the test stays quick.
    // dγ sums 16,434 products: allow the f32 accumulation error of such a sum.
    let tol = Tol {
        atol: 1e-4,
        rtol: F32.rtol,
    };
    check_train([2, 1, 83, 99], tol);
    // The vec4 kernels: 92·92 = 8464 pixels, 2116 vec4s, two tiles of 2048.
    check_train([2, 1, 92, 92], tol);
}

#[test]
fn batch_norm_train_groups_small_planes_of_many_samples() {
    // 15-pixel planes, 35 samples: reduction tiles hold 32 samples (the second one 3),
    // element-wise tiles 4 samples (the last one 3).
    check_train([35, 2, 3, 5], F32);
    // The same grouping in vec4s: 4 per plane, 32 and 4 samples per tile.
    check_train([35, 2, 4, 4], F32);
}

#[test]
fn batch_norm_train_with_a_partial_last_group_of_samples() {
    // 255-pixel planes: element-wise tiles of 4 samples over a batch of 5.
    check_train([5, 2, 15, 17], F32);
    // 64 vec4s per plane: element-wise tiles of 256 vec4s hold 4 samples.
    check_train([5, 2, 16, 16], F32);
}

#[test]
fn batch_norm_train_statistics_survive_a_mean_far_from_zero() {
    // x ≈ 300 ± 1: a naive Σx² − (Σx)²/m in f32 cancels to noise (tried: 70× over the
    // tolerance); the shifted tile sums and Chan's merge keep the variance to f32 accuracy.
    // Forward only: the inputs and the mean itself carry up to 300·2⁻²⁴ ≈ 2e-5 of f32
    // rounding (hence atol 1e-4 on y), and in dγ = Σ dy·x̂ that rounding of the mean is
    // multiplied by Σ dy, a limit of f32 rather than of the kernel.
    for (class, gpu) in common::kernel_variants() {
        let mut rng = common::rng();
        // P = 1591 runs the scalar kernels, P = 1584 the vec4 ones.
        for (n, c, h, w) in [(3, 2, 37, 43), (3, 2, 36, 44)] {
            let x = uniform(&mut rng, n * c * h * w)
                .iter()
                .map(|v| v + 300.0)
                .collect();
            let pass = train_pass(&gpu, &mut rng, [n, c, h, w], x);
            let tol = Tol {
                atol: 1e-4,
                rtol: F32.rtol,
            };
            common::assert_close(&format!("y ({class})"), &pass.got[0], &pass.want[0], tol);
            pass.assert_running(class);
        }
    }
}

/// One training-mode pass over `x` (shaped `shape`) with random γ, β and running
/// statistics, on `gpu` and in the f64 reference: (y, new running mean, new running
/// variance) from each.
struct TrainPass {
    got: [Vec<f32>; 3],
    want: [Vec<f64>; 3],
    x: Vec<f32>,
    rv: Vec<f32>,
}

fn train_pass(gpu: &rca_gpu::Gpu, rng: &mut StdRng, shape: [usize; 4], x: Vec<f32>) -> TrainPass {
    let [n, c, h, w] = shape;
    let gamma = uniform(rng, c);
    let beta = uniform(rng, c);
    let rm = uniform(rng, c);
    let rv = variances(rng, c);
    let up = |v: &[f32], s: &[usize]| Tensor::from_vec(gpu, s, v).unwrap();
    let (y, new_mean, new_var) = ops::batch_norm_train(
        &up(&x, &shape),
        &up(&gamma, &[c]),
        &up(&beta, &[c]),
        &up(&rm, &[c]),
        &up(&rv, &[c]),
        BN_MOMENTUM,
        BN_EPS,
    )
    .unwrap();
    let (want_y, want_mean, want_var) = r::batch_norm_train(
        &to_f64(&x),
        &to_f64(&gamma),
        &to_f64(&beta),
        &to_f64(&rm),
        &to_f64(&rv),
        n,
        c,
        h * w,
        MOMENTUM,
        EPS,
    );
    let back = |t: Tensor| t.to_vec().unwrap();
    TrainPass {
        got: [back(y), back(new_mean), back(new_var)],
        want: [want_y, want_mean, want_var],
        x,
        rv,
    }
}

impl TrainPass {
    fn assert_running(&self, class: &str) {
        let names = ["running mean", "running var"];
        for (k, name) in names.iter().enumerate() {
            let what = format!("{name} ({class})");
            common::assert_close(&what, &self.got[k + 1], &self.want[k + 1], F32);
        }
    }
}

#[test]
fn batch_norm_train_updates_running_statistics_with_the_biased_variance() {
    for (class, gpu) in common::kernel_variants() {
        check_running_statistics(&gpu, class);
    }
}

fn check_running_statistics(gpu: &rca_gpu::Gpu, class: &str) {
    let mut rng = common::rng();
    // P = 63 runs the scalar kernels, P = 64 the vec4 ones.
    for (n, c, h, w) in [(3, 5, 7, 9), (3, 5, 8, 8)] {
        let p = h * w;
        let x = uniform(&mut rng, n * c * p);
        let pass = train_pass(gpu, &mut rng, [n, c, h, w], x);
        pass.assert_running(class);
        // The unbiased variance would differ by a factor m/(m − 1), m = 189 (192): with momentum
        // 0.01 of the batch that is ~5e-5·var, above the tolerance; make sure the reference
        // really tells them apart.
        let (_, var) = r::batch_stats(&to_f64(&pass.x), n, c, p);
        let m = (n * p) as f64;
        let unbiased: Vec<f64> = pass
            .rv
            .iter()
            .zip(&var)
            .map(|(&o, v)| MOMENTUM * f64::from(o) + (1.0 - MOMENTUM) * v * m / (m - 1.0))
            .collect();
        let distinct = pass.got[2]
            .iter()
            .zip(&unbiased)
            .any(|(&g, u)| (f64::from(g) - u).abs() > 1e-6);
        assert!(
            distinct,
            "the running variance must use the biased variance ({class})"
        );
    }
}

#[test]
fn batch_norm_eval_matches_reference_and_gradients() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    // P = 143 runs the scalar kernels, P = 144 the vec4 ones.
    for (n, c, h, w) in [(2, 4, 11, 13), (2, 4, 12, 12)] {
        let p = h * w;
        let x = uniform(&mut rng, n * c * p);
        let gamma = uniform(&mut rng, c);
        let beta = uniform(&mut rng, c);
        let rm = uniform(&mut rng, c);
        let rv = variances(&mut rng, c);
        let rm_t = Tensor::from_vec(&gpu, [c], &rm).unwrap();
        let rv_t = Tensor::from_vec(&gpu, [c], &rv).unwrap();
        let (rm64, rv64) = (to_f64(&rm), to_f64(&rv));
        check_op(
            &gpu,
            &mut rng,
            "batch_norm_eval",
            &[
                input(&[n, c, h, w], x),
                input(&[c], gamma),
                input(&[c], beta),
            ],
            |x| ops::batch_norm_eval(x[0], x[1], x[2], &rm_t, &rv_t, BN_EPS),
            |x| r::batch_norm_eval(&x[0], &x[1], &x[2], &rm64, &rv64, n, c, p, EPS),
            |x, dy| {
                let (dx, dg, db) =
                    r::batch_norm_eval_backward(&x[0], &x[1], &rm64, &rv64, dy, n, c, p, EPS);
                vec![dx, dg, db]
            },
            F32,
        );
    }
}

#[test]
fn batch_norm_eval_input_gradient_alone_skips_the_reductions() {
    // Only x is tracked (γ, β frozen): the backward takes the eval fast path, where the
    // dγ/dβ slots hold a stand-in; the gradient must still be γ·invstd·dy exactly.
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    // P = 35 runs the scalar kernels, P = 32 the vec4 ones.
    for (n, c, h, w) in [(2, 3, 5, 7), (2, 3, 4, 8)] {
        let p = h * w;
        let x = uniform(&mut rng, n * c * p);
        let gamma = uniform(&mut rng, c);
        let beta = uniform(&mut rng, c);
        let rm = uniform(&mut rng, c);
        let rv = variances(&mut rng, c);
        let dy = uniform(&mut rng, n * c * p);
        let up = |v: &[f32], s: &[usize]| Tensor::from_vec(&gpu, s, v).unwrap();
        let xt = up(&x, &[n, c, h, w]).requires_grad();
        let dyt = up(&dy, &[n, c, h, w]);
        let tape = rca_gpu::Tape::start();
        let y = ops::batch_norm_eval(
            &xt,
            &up(&gamma, &[c]),
            &up(&beta, &[c]),
            &up(&rm, &[c]),
            &up(&rv, &[c]),
            BN_EPS,
        )
        .unwrap();
        let loss = ops::sum(&ops::mul(&y, &dyt).unwrap()).unwrap();
        let grads = tape.backward(&loss).unwrap();
        let (want, _, _) = r::batch_norm_eval_backward(
            &to_f64(&x),
            &to_f64(&gamma),
            &to_f64(&rm),
            &to_f64(&rv),
            &to_f64(&dy),
            n,
            c,
            p,
            EPS,
        );
        common::assert_close("dx", &grads.get(&xt).unwrap().to_vec().unwrap(), &want, F32);
    }
}

#[test]
fn batch_norm_names_both_shapes_when_gamma_does_not_match_the_channels() {
    let Some(gpu) = common::gpu() else { return };
    let x = Tensor::zeros(&gpu, [2, 3, 4, 4]).unwrap();
    let ok = Tensor::zeros(&gpu, [3]).unwrap();
    let bad = Tensor::zeros(&gpu, [4]).unwrap();
    let e = ops::batch_norm_train(&x, &bad, &ok, &ok, &ok, BN_MOMENTUM, BN_EPS)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "shape mismatch in batch_norm_train: lhs (2, 3, 4, 4), rhs (4)"
    );
    let e = ops::batch_norm_eval(
        &Tensor::zeros(&gpu, [3, 16]).unwrap(),
        &ok,
        &ok,
        &ok,
        &ok,
        1e-3,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("batch_norm_eval") && e.contains("(3, 16)"),
        "{e}"
    );
}

/// ReLU's reference, and dy masked where its output is 0 (the fused ops' backward).
fn relu_then(y: Vec<f64>) -> Vec<f64> {
    y.iter().map(|&v| v.max(0.0)).collect()
}

/// Moves the entries of x whose pre-activation z (`z(x)`) lies within 1e-3 of the ReLU's
/// kink away from it. There a finite difference (steps of 1e-6, in x, γ or β) would cross
/// the kink and compare the gradients of two different pieces: a random draw in CI put one
/// z that close, and the check of dβ failed by one element's dy.
fn away_from_the_kink(x: &mut [f32], z: impl Fn(&[f64]) -> Vec<f64>) {
    for _ in 0..100 {
        let zs = z(&to_f64(x));
        let near: Vec<usize> = (0..zs.len()).filter(|&i| zs[i].abs() < 1e-3).collect();
        if near.is_empty() {
            return;
        }
        for i in near {
            x[i] += 0.05;
        }
    }
    panic!("could not move the inputs off the ReLU's kink");
}

/// Random x, γ, β and running statistics for the fused BN + ReLU checks: the running
/// statistics on the GPU and in f64.
struct BnInputs {
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    rm: Tensor,
    rv: Tensor,
    rm64: Vec<f64>,
    rv64: Vec<f64>,
}

impl BnInputs {
    fn draw(gpu: &rca_gpu::Gpu, rng: &mut StdRng, numel: usize, c: usize) -> Self {
        let x = uniform(rng, numel);
        let (gamma, beta) = (uniform(rng, c), uniform(rng, c));
        let (rm, rv) = (uniform(rng, c), variances(rng, c));
        BnInputs {
            x,
            gamma,
            beta,
            rm: Tensor::from_vec(gpu, [c], &rm).unwrap(),
            rv: Tensor::from_vec(gpu, [c], &rv).unwrap(),
            rm64: to_f64(&rm),
            rv64: to_f64(&rv),
        }
    }

    /// The inputs (x shaped `shape`, γ, β) with x moved off the kink of the ReLU after
    /// `z(x, γ, β)` ([`away_from_the_kink`]).
    fn off_the_kink(
        &self,
        shape: [usize; 4],
        z: impl Fn(&[Vec<f64>]) -> Vec<f64>,
    ) -> Vec<common::Input> {
        let mut x = self.x.clone();
        let (g64, b64) = (to_f64(&self.gamma), to_f64(&self.beta));
        away_from_the_kink(&mut x, |x| z(&[x.to_vec(), g64.clone(), b64.clone()]));
        let c = self.gamma.len();
        vec![
            input(&shape, x),
            input(&[c], self.gamma.clone()),
            input(&[c], self.beta.clone()),
        ]
    }
}

fn masked(z: &[f64], dy: &[f64]) -> Vec<f64> {
    z.iter()
        .zip(dy)
        .map(|(&z, &g)| if z > 0.0 { g } else { 0.0 })
        .collect()
}

#[test]
fn batch_norm_train_relu_is_relu_of_batch_norm_with_its_gradients() {
    for (class, gpu) in common::kernel_variants() {
        let mut rng = common::rng();
        // P = 63 runs the scalar kernels, P = 64 the vec4 ones.
        for (n, c, h, w) in [(3, 4, 9, 7), (3, 4, 8, 8)] {
            let p = h * w;
            let b = BnInputs::draw(&gpu, &mut rng, n * c * p, c);
            let (rm64, rv64) = (&b.rm64, &b.rv64);
            let z = |x: &[Vec<f64>]| {
                r::batch_norm_train(&x[0], &x[1], &x[2], rm64, rv64, n, c, p, MOMENTUM, EPS).0
            };
            let (rm_t, rv_t) = (&b.rm, &b.rv);
            check_op(
                &gpu,
                &mut rng,
                &format!("batch_norm_train_relu ({class})"),
                &b.off_the_kink([n, c, h, w], z),
                |x| {
                    ops::batch_norm_train_relu(x[0], x[1], x[2], rm_t, rv_t, BN_MOMENTUM, BN_EPS)
                        .map(|(y, _, _)| y)
                },
                |x| relu_then(z(x)),
                |x, dy| {
                    let dz = masked(&z(x), dy);
                    let (dx, dg, db) =
                        r::batch_norm_train_backward(&x[0], &x[1], &dz, n, c, p, EPS);
                    vec![dx, dg, db]
                },
                F32,
            );
        }
    }
}

#[test]
fn batch_norm_eval_relu_is_relu_of_batch_norm_with_its_gradients() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    // P = 110 runs the scalar kernels, P = 144 the vec4 ones.
    for (n, c, h, w) in [(2, 3, 10, 11), (2, 3, 12, 12)] {
        let p = h * w;
        let b = BnInputs::draw(&gpu, &mut rng, n * c * p, c);
        let (rm64, rv64) = (&b.rm64, &b.rv64);
        let z = |x: &[Vec<f64>]| r::batch_norm_eval(&x[0], &x[1], &x[2], rm64, rv64, n, c, p, EPS);
        check_op(
            &gpu,
            &mut rng,
            "batch_norm_eval_relu",
            &b.off_the_kink([n, c, h, w], z),
            |x| ops::batch_norm_eval_relu(x[0], x[1], x[2], &b.rm, &b.rv, BN_EPS),
            |x| relu_then(z(x)),
            |x, dy| {
                let dz = masked(&z(x), dy);
                let (dx, dg, db) =
                    r::batch_norm_eval_backward(&x[0], &x[1], rm64, rv64, &dz, n, c, p, EPS);
                vec![dx, dg, db]
            },
            F32,
        );
    }
}

#[test]
fn a_planted_error_in_the_per_channel_batch_norm_fails_its_check() {
    let plants = [
        (
            "cshare = vec2<f32>(a, cbeta[c] - mean * a);",
            "cshare = vec2<f32>(a, cbeta[c] - mean * a + 0.01);",
        ),
        (
            "cout[r.y + c] = p.momentum * frv[c] + (1.0 - p.momentum) * var_b;",
            "cout[r.y + c] = p.momentum * frv[c] + (1.0 - p.momentum) * var_b * 2.0;",
        ),
        (
            "cgrad[dbeta_at(p.c) + c] = t.x;",
            "cgrad[dbeta_at(p.c) + c] = t.x * 1.01;",
        ),
        (
            "idx4[plane + q] = k * (g - s.x - xh * s.y);",
            "idx4[plane + q] = k * (g - s.x - xh * s.y * 1.01);",
        ),
    ];
    for (planted, wrong) in plants {
        common::assert_plant_fails(rca_gpu::runtime::Shader::Norm, planted, wrong, |gpu| {
            check_train_on(gpu, "cpu (planted error)", [2, 3, 8, 12], F32);
            check_running_statistics(gpu, "cpu (planted error)");
        });
    }
}
