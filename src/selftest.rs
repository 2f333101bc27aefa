//! `rca-gpu selftest`: every kernel of the engine against its f64 reference on the user's
//! own adapter, forward and backward, in both kernel shapes (the CPU-adapter and the GPU
//! variants, where an op has two), at a few small shapes that are not multiples of the
//! workgroup sizes. A new GPU, driver or operating system is where a compiler bug or an
//! unexpected limit shows: this says which kernel and by how much.
//!
//! Each check uploads seeded random inputs, runs the op on a tape, compares its output with
//! the reference, then back-propagates Σ w ⊙ y for random w and compares every input's
//! gradient with the reference backward at dy = w. An error is judged against
//! `atol + rtol·|reference|`; the reported figure is the worst ratio of the two (≤ 1 passes).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::Result;
use crate::ops::{self, norm::BN_EPS, norm::BN_MOMENTUM};
use crate::reference as r;
use crate::runtime::{AdapterRequest, Gpu, KernelClass};
use crate::tensor::Tensor;
use crate::{Tape, no_grad};

/// The outcome of one check.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Check {
    /// The op and its shape, e.g. `conv1x1 2x12x6x10 -> 20`.
    pub name: String,
    /// The kernel shape it ran in: "cpu", "cpu, subgroups of 8" or "gpu".
    pub kernels: String,
    /// The largest |gpu − reference| / (atol + rtol·|reference|) over the outputs and the
    /// gradients: at most 1 passes.
    pub worst: f64,
    /// Where that was ("forward" or "gradient of input k").
    pub at: String,
    pub pass: bool,
}

/// f32 kernels against f64 references; sums over many products get the larger atol.
const RTOL: f64 = 1e-4;
const ATOL: f64 = 1e-4;
const ATOL_SUMS: f64 = 1e-3;

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

fn worst_ratio(got: &[f32], want: &[f64], atol: f64) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    got.iter()
        .zip(want)
        .map(|(&g, &w)| {
            let e = (f64::from(g) - w).abs();
            if e.is_nan() {
                f64::INFINITY
            } else {
                e / (atol + RTOL * w.abs())
            }
        })
        .fold(0.0, f64::max)
}

type Fwd<'a> = Box<dyn Fn(&[&Tensor]) -> Result<Tensor> + 'a>;
type RefFwd<'a> = Box<dyn Fn(&[Vec<f64>]) -> Vec<f64> + 'a>;
type RefBwd<'a> = Box<dyn Fn(&[Vec<f64>], &[f64]) -> Vec<Vec<f64>> + 'a>;

/// One op: inputs (shape, values), the GPU op, its reference and reference backward.
struct Case<'a> {
    name: String,
    inputs: Vec<(Vec<usize>, Vec<f32>)>,
    gpu: Fwd<'a>,
    fwd: RefFwd<'a>,
    /// The reference backward; `None` for an op that records no gradient (inference
    /// only), which runs without a tape.
    bwd: Option<RefBwd<'a>>,
    atol: f64,
}

fn run_case(gpu: &Gpu, rng: &mut StdRng, kernels: &str, case: Case<'_>) -> Result<Check> {
    let xs: Vec<Tensor> = case
        .inputs
        .iter()
        .map(|(shape, data)| {
            Tensor::from_vec(gpu, shape.as_slice(), data).map(Tensor::requires_grad)
        })
        .collect::<Result<_>>()?;
    let x64: Vec<Vec<f64>> = case.inputs.iter().map(|(_, d)| to_f64(d)).collect();
    let refs: Vec<&Tensor> = xs.iter().collect();
    let Some(bwd) = case.bwd else {
        let y = (case.gpu)(&refs)?;
        let worst = worst_ratio(&y.to_vec()?, &(case.fwd)(&x64), case.atol);
        return Ok(Check {
            name: case.name,
            kernels: kernels.into(),
            pass: worst <= 1.0,
            worst,
            at: "forward".to_string(),
        });
    };
    let tape = Tape::start();
    let y = (case.gpu)(&refs)?;
    let mut worst = worst_ratio(&y.to_vec()?, &(case.fwd)(&x64), case.atol);
    let mut at = "forward".to_string();
    let w: Vec<f32> = (0..y.numel())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let wt = Tensor::from_vec(gpu, y.shape().clone(), &w)?;
    let loss = ops::sum(&ops::mul(&y, &wt)?)?;
    let grads = tape.backward(&loss)?;
    for (k, (x, want)) in xs.iter().zip(bwd(&x64, &to_f64(&w))).enumerate() {
        let got = match grads.get(x) {
            Some(g) => g.to_vec()?,
            None => Vec::new(),
        };
        let e = worst_ratio(&got, &want, case.atol);
        if e > worst || e.is_nan() {
            worst = e;
            at = format!("gradient of input {k}");
        }
    }
    Ok(Check {
        name: case.name,
        kernels: kernels.into(),
        pass: worst <= 1.0,
        worst,
        at,
    })
}

fn uniform(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Values at least 1e-2 from 0, where ReLU's and the pools' decisions are unambiguous in
/// f32 and f64 alike.
fn away_from_zero(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v: f32 = rng.random_range(0.01..1.0);
            if rng.random::<bool>() { v } else { -v }
        })
        .collect()
}

/// Distinct values (a permutation of a grid), so that no max-pool window has a tie.
fn distinct(rng: &mut StdRng, n: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n).map(|i| i as f32 / n as f32 - 0.5).collect();
    for i in (1..n).rev() {
        v.swap(i, rng.random_range(0..=i));
    }
    v
}

/// The cases, with inputs drawn from `rng`.
fn cases(rng: &mut StdRng) -> Vec<Case<'static>> {
    let mut out: Vec<Case<'static>> = Vec::new();
    // Element-wise, over an odd shape and one of whole vec4s.
    for shape in [[2usize, 3, 5, 7], [2, 3, 4, 6]] {
        let n: usize = shape.iter().product();
        let s = format!("{}x{}x{}x{}", shape[0], shape[1], shape[2], shape[3]);
        out.push(Case {
            name: format!("add {s}"),
            inputs: vec![
                (shape.to_vec(), uniform(rng, n)),
                (shape.to_vec(), uniform(rng, n)),
            ],
            gpu: Box::new(|x| ops::add(x[0], x[1])),
            fwd: Box::new(|x| r::add(&x[0], &x[1])),
            bwd: Some(Box::new(|_, dy| vec![dy.to_vec(), dy.to_vec()])),
            atol: ATOL,
        });
        out.push(Case {
            name: format!("relu {s}"),
            inputs: vec![(shape.to_vec(), away_from_zero(rng, n))],
            gpu: Box::new(|x| ops::relu(x[0])),
            fwd: Box::new(|x| r::relu(&x[0])),
            bwd: Some(Box::new(|x, dy| vec![r::relu_backward(&x[0], dy)])),
            atol: ATOL,
        });
        out.push(Case {
            name: format!("scale {s}"),
            inputs: vec![(shape.to_vec(), uniform(rng, n))],
            gpu: Box::new(|x| ops::scale(x[0], -1.5)),
            fwd: Box::new(|x| r::scale(&x[0], -1.5)),
            bwd: Some(Box::new(|_, dy| vec![r::scale(dy, -1.5)])),
            atol: ATOL,
        });
    }
    let (n, c, h, w) = (2, 3, 5, 6);
    let p = h * w;
    out.push(Case {
        name: "sigmoid 2x3x5x6".into(),
        inputs: vec![(vec![n, c, h, w], uniform(rng, n * c * p))],
        gpu: Box::new(|x| ops::sigmoid(x[0])),
        fwd: Box::new(|x| r::sigmoid(&x[0])),
        bwd: Some(Box::new(|x, dy| {
            vec![r::sigmoid_backward(&r::sigmoid(&x[0]), dy)]
        })),
        atol: ATOL,
    });
    out.push(Case {
        name: "mul_bcast 2x3x5x6".into(),
        inputs: vec![
            (vec![n, c, h, w], uniform(rng, n * c * p)),
            (vec![n, 1, h, w], uniform(rng, n * p)),
        ],
        gpu: Box::new(|x| ops::mul_bcast(x[0], x[1])),
        fwd: Box::new(move |x| r::mul_bcast(&x[0], &x[1], n, c, p)),
        bwd: Some(Box::new(move |x, dy| {
            let (da, db) = r::mul_bcast_backward(&x[0], &x[1], dy, n, c, p);
            vec![da, db]
        })),
        atol: ATOL,
    });
    for (hh, ww) in [(5, 7), (4, 6)] {
        let chans = [2usize, 3];
        let pp = hh * ww;
        out.push(Case {
            name: format!("concat_channels 2x(2+3)x{hh}x{ww}"),
            inputs: chans
                .iter()
                .map(|&ci| (vec![2, ci, hh, ww], uniform(rng, 2 * ci * pp)))
                .collect(),
            gpu: Box::new(ops::concat_channels),
            fwd: Box::new(move |x| {
                let refs: Vec<&[f64]> = x.iter().map(Vec::as_slice).collect();
                r::concat_channels(&refs, &chans, 2, pp)
            }),
            bwd: Some(Box::new(move |_, dy| {
                r::concat_channels_backward(dy, &chans, 2, pp)
            })),
            atol: ATOL,
        });
    }
    // Per-channel sums: planes of odd size (one pass) and of whole vec4s (the row kernel).
    for (hh, ww) in [(h, w), (6, 8)] {
        let pp = hh * ww;
        out.push(Case {
            name: format!("sum_channels {n}x{c}x{hh}x{ww}"),
            inputs: vec![(vec![n, c, hh, ww], uniform(rng, n * c * pp))],
            gpu: Box::new(|x| ops::sum_channels(x[0])),
            fwd: Box::new(move |x| r::sum_view(&x[0], n, c, pp, 1.0)),
            bwd: Some(Box::new(move |_, dy| {
                vec![r::sum_view_backward(dy, n, c, pp, 1.0)]
            })),
            atol: ATOL_SUMS,
        });
    }
    // The 1×1 convolution: an odd shape (tiled kernels only) and one of whole vec4s (the
    // CPU-shaped product on CPU adapters).
    for (nn, cin, cout, hh, ww) in [
        (2, 5, 6, 7, 9),
        (2, 12, 20, 6, 10),
        (1, 7, 20, 4, 8),
        (1, 8, 32, 4, 6),
    ] {
        let pp = hh * ww;
        out.push(Case {
            name: format!("conv1x1 {nn}x{cin}x{hh}x{ww} -> {cout}"),
            inputs: vec![
                (vec![nn, cin, hh, ww], uniform(rng, nn * cin * pp)),
                (vec![cout, cin, 1, 1], uniform(rng, cout * cin)),
                (vec![cout], uniform(rng, cout)),
            ],
            gpu: Box::new(|x| ops::conv1x1(x[0], x[1], Some(x[2]))),
            fwd: Box::new(move |x| r::conv1x1(&x[0], &x[1], Some(&x[2]), nn, cin, cout, pp)),
            bwd: Some(Box::new(move |x, dy| {
                let (dx, dw, db) = r::conv1x1_backward(&x[0], &x[1], dy, nn, cin, cout, pp);
                vec![dx, dw, db]
            })),
            atol: ATOL_SUMS,
        });
    }
    // The 1×1 convolution of a concatenation (the merges): inputs of whole vec4s, one of
    // them with a per-channel scale; then, for inference, with the batch norm after it
    // folded in and a ReLU in the store.
    let (nn, chans, cout, pp) = (2, [4usize, 8], 8, 6 * 8);
    let cin: usize = chans.iter().sum();
    let mut inputs: Vec<(Vec<usize>, Vec<f32>)> = chans
        .iter()
        .map(|&c| (vec![nn, c, 6, 8], uniform(rng, nn * c * pp)))
        .collect();
    inputs.push((vec![cin, 1, 1, 1], uniform(rng, cin)));
    inputs.push((vec![cout, cin, 1, 1], uniform(rng, cout * cin)));
    inputs.push((vec![cout], uniform(rng, cout)));
    let cat_ref = move |x: &[Vec<f64>]| {
        r::conv1x1_cat(
            &[&x[0], &x[1]],
            &chans,
            Some(&x[2]),
            &x[3],
            Some(&x[4]),
            (nn, cout, pp),
        )
    };
    out.push(Case {
        name: format!("conv1x1_cat {nn}x(4+8)x6x8 -> {cout}"),
        inputs: inputs.clone(),
        gpu: Box::new(|x| ops::conv1x1_cat(&x[..2], Some(x[2]), x[3], Some(x[4]))),
        fwd: Box::new(cat_ref),
        bwd: Some(Box::new(move |x, dy| {
            let (dxs, ds, dw, db) = r::conv1x1_cat_backward(
                &[&x[0], &x[1]],
                &chans,
                Some(&x[2]),
                &x[3],
                dy,
                (nn, cout, pp),
            );
            let mut g = dxs;
            g.extend(ds);
            g.extend([dw, db]);
            g
        })),
        atol: ATOL_SUMS,
    });
    inputs.push((vec![cout], uniform(rng, cout)));
    inputs.push((vec![cout], uniform(rng, cout)));
    inputs.push((vec![cout], uniform(rng, cout)));
    inputs.push((
        vec![cout],
        uniform(rng, cout).iter().map(|v| 1.0 + v).collect(),
    ));
    out.push(Case {
        name: format!("conv1x1_cat_bn_eval {nn}x(4+8)x6x8 -> {cout}"),
        inputs,
        gpu: Box::new(|x| {
            ops::conv1x1_cat_bn_eval(
                &x[..2],
                Some(x[2]),
                x[3],
                x[4],
                [x[5], x[6], x[7], x[8]],
                1e-3,
                true,
            )
        }),
        fwd: Box::new(move |x| {
            let z = cat_ref(x);
            let y = r::norm::batch_norm_eval(&z, &x[5], &x[6], &x[7], &x[8], nn, cout, pp, 1e-3);
            r::relu(&y)
        }),
        bwd: None,
        atol: ATOL_SUMS,
    });
    // Depthwise: an odd width (dw_conv) and whole 8-column strips (dw_conv_cpu on CPU
    // adapters).
    for (k, ww) in [(3, 11), (5, 11), (3, 16), (5, 16)] {
        let (nn, cc, hh) = (2, 3, 9);
        out.push(Case {
            name: format!("depthwise_conv2d k{k} {nn}x{cc}x{hh}x{ww}"),
            inputs: vec![
                (vec![nn, cc, hh, ww], uniform(rng, nn * cc * hh * ww)),
                (vec![cc, 1, k, k], uniform(rng, cc * k * k)),
            ],
            gpu: Box::new(|x| ops::depthwise_conv2d(x[0], x[1])),
            fwd: Box::new(move |x| r::conv::depthwise_conv2d(&x[0], &x[1], nn, cc, hh, ww, k)),
            bwd: Some(Box::new(move |x, dy| {
                let (dx, dk) =
                    r::conv::depthwise_conv2d_backward(&x[0], &x[1], dy, nn, cc, hh, ww, k);
                vec![dx, dk]
            })),
            atol: ATOL_SUMS,
        });
    }
    for (k, stride, pad) in [(3, 1, 1), (2, 2, 0)] {
        let d = r::conv::Conv2d {
            n: 2,
            cin: 3,
            cout: 4,
            h: 8,
            w: 10,
            kh: k,
            kw: k,
            stride,
            pad,
        };
        out.push(Case {
            name: format!("conv2d {k}x{k} stride {stride} 2x3x8x10 -> 4"),
            inputs: vec![
                (vec![2, 3, 8, 10], uniform(rng, 2 * 3 * 80)),
                (vec![4, 3, k, k], uniform(rng, 12 * k * k)),
                (vec![4], uniform(rng, 4)),
            ],
            gpu: Box::new(move |x| ops::conv2d(x[0], x[1], Some(x[2]), stride, pad)),
            fwd: Box::new(move |x| r::conv::conv2d(&x[0], &x[1], Some(&x[2]), d)),
            bwd: Some(Box::new(move |x, dy| {
                let (dx, dw, db) = r::conv::conv2d_backward(&x[0], &x[1], dy, d);
                vec![dx, dw, db]
            })),
            atol: ATOL_SUMS,
        });
    }
    // Batch norm, both modes, alone and with its fused ReLU.
    let (nb, cb, pb) = (3, 4, 35);
    let rm: Vec<f32> = uniform(rng, cb);
    let rv: Vec<f32> = (0..cb).map(|_| rng.random_range(0.5..1.5)).collect();
    let (eps, mom) = (f64::from(BN_EPS), f64::from(BN_MOMENTUM));
    for (train, relu) in [(true, false), (true, true), (false, false), (false, true)] {
        let (rm64, rv64) = (to_f64(&rm), to_f64(&rv));
        let (rm32, rv32) = (rm.clone(), rv.clone());
        let z = std::rc::Rc::new(move |x: &[Vec<f64>]| -> Vec<f64> {
            if train {
                r::norm::batch_norm_train(&x[0], &x[1], &x[2], &rm64, &rv64, nb, cb, pb, mom, eps).0
            } else {
                r::norm::batch_norm_eval(&x[0], &x[1], &x[2], &rm64, &rv64, nb, cb, pb, eps)
            }
        });
        let z2 = z.clone();
        let (rm64, rv64) = (to_f64(&rm), to_f64(&rv));
        let mode = if train { "train" } else { "eval" };
        out.push(Case {
            name: format!(
                "batch_norm_{mode}{} 3x4x5x7",
                if relu { "_relu" } else { "" }
            ),
            inputs: vec![
                (vec![nb, cb, 5, 7], uniform(rng, nb * cb * pb)),
                (vec![cb], uniform(rng, cb)),
                (vec![cb], uniform(rng, cb)),
            ],
            gpu: Box::new(move |x| {
                let g = x[0].gpu();
                let (rmt, rvt) = (
                    Tensor::from_vec(g, [cb], &rm32)?,
                    Tensor::from_vec(g, [cb], &rv32)?,
                );
                match (train, relu) {
                    (true, false) => {
                        ops::batch_norm_train(x[0], x[1], x[2], &rmt, &rvt, BN_MOMENTUM, BN_EPS)
                            .map(|t| t.0)
                    }
                    (true, true) => ops::batch_norm_train_relu(
                        x[0],
                        x[1],
                        x[2],
                        &rmt,
                        &rvt,
                        BN_MOMENTUM,
                        BN_EPS,
                    )
                    .map(|t| t.0),
                    (false, false) => ops::batch_norm_eval(x[0], x[1], x[2], &rmt, &rvt, BN_EPS),
                    (false, true) => {
                        ops::batch_norm_eval_relu(x[0], x[1], x[2], &rmt, &rvt, BN_EPS)
                    }
                }
            }),
            fwd: Box::new(move |x| {
                let y = z(x);
                if relu { r::relu(&y) } else { y }
            }),
            bwd: Some(Box::new(move |x, dy| {
                let pre = z2(x);
                let dz = if relu {
                    r::relu_backward(&pre, dy)
                } else {
                    dy.to_vec()
                };
                let (dx, dg, db) = if train {
                    r::norm::batch_norm_train_backward(&x[0], &x[1], &dz, nb, cb, pb, eps)
                } else {
                    r::norm::batch_norm_eval_backward(
                        &x[0], &x[1], &rm64, &rv64, &dz, nb, cb, pb, eps,
                    )
                };
                vec![dx, dg, db]
            })),
            atol: ATOL_SUMS,
        });
    }
    // Pools and upsampling.
    let (np, cp, hp, wp) = (2, 3, 7, 9);
    let nc = np * cp;
    out.push(Case {
        name: "max_pool_valid 2x3x7x9".into(),
        inputs: vec![(vec![np, cp, hp, wp], distinct(rng, nc * hp * wp))],
        gpu: Box::new(|x| ops::max_pool_valid(x[0])),
        fwd: Box::new(move |x| r::pool::max_pool_valid(&x[0], nc, hp, wp)),
        bwd: Some(Box::new(move |x, dy| {
            vec![r::pool::max_pool_valid_backward(&x[0], dy, nc, hp, wp)]
        })),
        atol: ATOL,
    });
    out.push(Case {
        name: "max_pool_same 2x3x7x9".into(),
        inputs: vec![(vec![np, cp, hp, wp], distinct(rng, nc * hp * wp))],
        gpu: Box::new(|x| ops::max_pool_same(x[0])),
        fwd: Box::new(move |x| r::pool::max_pool_same(&x[0], nc, hp, wp)),
        bwd: Some(Box::new(move |x, dy| {
            vec![r::pool::max_pool_same_backward(&x[0], dy, nc, hp, wp)]
        })),
        atol: ATOL,
    });
    out.push(Case {
        name: "upsample2x 2x3x7x9".into(),
        inputs: vec![(vec![np, cp, hp, wp], uniform(rng, nc * hp * wp))],
        gpu: Box::new(|x| ops::upsample2x(x[0])),
        fwd: Box::new(move |x| r::pool::upsample2x(&x[0], nc, hp, wp)),
        bwd: Some(Box::new(move |_, dy| {
            vec![r::pool::upsample2x_backward(dy, nc, hp, wp)]
        })),
        atol: ATOL,
    });
    // The FFT and spectral pooling (both of its sizes in the network).
    let (nf, cf, m) = (2, 2, 16);
    let planes = nf * cf;
    out.push(Case {
        name: "fft2 2x2x16x16".into(),
        inputs: vec![(vec![nf, cf, m, m, 2], uniform(rng, planes * m * m * 2))],
        gpu: Box::new(|x| ops::fft2(x[0])),
        fwd: Box::new(move |x| r::fft::fft2(&x[0], planes, m)),
        bwd: Some(Box::new(move |_, dy| {
            vec![r::fft::fft2_backward(dy, planes, m, false)]
        })),
        atol: ATOL_SUMS,
    });
    for hh in [m / 2, m] {
        out.push(Case {
            name: format!("spectral_pool 2x2x16x16 -> {hh}"),
            inputs: vec![(vec![nf, cf, m, m], uniform(rng, planes * m * m))],
            gpu: Box::new(move |x| ops::spectral_pool(x[0], hh)),
            fwd: Box::new(move |x| r::fft::spectral_pool(&x[0], planes, m, hh)),
            bwd: Some(Box::new(move |_, dy| {
                vec![r::fft::spectral_pool_backward(dy, planes, m, hh)]
            })),
            atol: ATOL_SUMS,
        });
    }
    // The loss (a scalar: its gradient is checked at dy = w).
    let (nl, pl) = (2, 6 * 7);
    let mask: Vec<f32> = (0..nl * pl)
        .map(|_| f32::from(rng.random::<bool>()))
        .collect();
    let mask64 = to_f64(&mask);
    let mask_gpu = mask.clone();
    out.push(Case {
        name: "bce_dice_loss 2x1x6x7".into(),
        inputs: vec![(vec![nl, 1, 6, 7], uniform(rng, nl * pl))],
        gpu: Box::new(move |x| {
            let y = Tensor::from_vec(x[0].gpu(), [nl, 1, 6, 7], &mask_gpu)?;
            ops::bce_dice_loss(x[0], &y)
        }),
        fwd: {
            let mask64 = mask64.clone();
            Box::new(move |x| vec![r::loss::bce_dice(&x[0], &mask64, nl, pl)])
        },
        bwd: Some(Box::new(move |x, dy| {
            vec![r::loss::bce_dice_backward(&x[0], &mask64, nl, pl, dy[0])]
        })),
        atol: ATOL,
    });
    out
}

/// Adam's update of one tensor (not recorded), against the reference: checked forward only.
fn adam_check(gpu: &Gpu, rng: &mut StdRng, kernels: &str) -> Result<Check> {
    let n = 1001;
    let (p, g) = (uniform(rng, n), uniform(rng, n));
    let (m0, v0): (Vec<f32>, Vec<f32>) = (
        uniform(rng, n),
        (0..n).map(|_| rng.random_range(0.0..1.0)).collect(),
    );
    let h = r::optim::Adam {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-7,
    };
    let (mut p64, mut m64, mut v64) = (to_f64(&p), to_f64(&m0), to_f64(&v0));
    r::optim::adam_step(&mut p64, &to_f64(&g), &mut m64, &mut v64, 3, h);
    let t = |v: &[f32]| Tensor::from_vec(gpu, [n], v);
    let (pt, gt, mt, vt) = (t(&p)?, t(&g)?, t(&m0)?, t(&v0)?);
    no_grad(|| ops::adam_step(&pt, &gt, &mt, &vt, 3, 1e-3, 0.9, 0.999, 1e-7))?;
    let worst = [
        worst_ratio(&pt.to_vec()?, &p64, ATOL),
        worst_ratio(&mt.to_vec()?, &m64, ATOL),
        worst_ratio(&vt.to_vec()?, &v64, ATOL),
    ]
    .into_iter()
    .fold(0.0, f64::max);
    Ok(Check {
        name: "adam_step 1001".into(),
        kernels: kernels.into(),
        pass: worst <= 1.0,
        worst,
        at: "parameter and moments".into(),
    })
}

/// Every check on `gpu`, in the kernel shape it runs (its `DeviceInfo::kernels`).
pub fn run_on(gpu: &Gpu, seed: u64) -> Result<Vec<Check>> {
    let info = gpu.info();
    // Only the CPU-shaped kernels share loads across subgroups.
    let kernels = match info
        .subgroup_size
        .filter(|_| info.kernels == KernelClass::Cpu)
    {
        Some(n) => format!("{}, subgroups of {n}", info.kernels),
        None => info.kernels.to_string(),
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut checks = Vec::new();
    for case in cases(&mut rng) {
        checks.push(run_case(gpu, &mut rng, &kernels, case)?);
    }
    checks.push(adam_check(gpu, &mut rng, &kernels)?);
    Ok(checks)
}

/// Every check in every kernel shape on the adapter `request` names: the CPU-shaped
/// kernels (with and without subgroups where the adapter has them) and the GPU-shaped.
pub fn run(request: &AdapterRequest, seed: u64) -> Result<Vec<Check>> {
    let mut all = Vec::new();
    for class in [KernelClass::Cpu, KernelClass::Gpu] {
        let open = |subgroups| {
            let gpu = Gpu::new(&AdapterRequest {
                kernels: Some(class),
                subgroups,
                ..request.clone()
            })?;
            gpu.set_poison(true);
            Ok::<_, crate::Error>(gpu)
        };
        let gpu = open(request.subgroups)?;
        all.extend(run_on(&gpu, seed)?);
        if class == KernelClass::Cpu && gpu.info().subgroup_size.is_some() {
            all.extend(run_on(&open(Some(false))?, seed)?);
        }
    }
    Ok(all)
}
