//! The test harness shared by every GPU test file:
//! - one device per test binary, in NaN-poison mode (an output element a kernel never
//!   writes reads back as NaN and fails the comparison);
//! - a fresh random seed per test (printed, and fixed by `RCA_TEST_SEED` to replay);
//! - `assert_close` with atol and rtol that reports the worst element;
//! - `check_op`: one call tests an op's forward against its CPU reference, its GPU
//!   backward (through the tape) against the CPU backward, and the CPU backward against
//!   central finite differences in f64.
#![allow(dead_code)]

use std::sync::OnceLock;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rca_gpu::{AdapterRequest, Gpu, Shape, Tape, Tensor, ops};

/// The shared device, or `None` (with a loud message) when there is none outside CI.
/// Under CI (`CI=true`) a missing adapter fails the test: a GPU test never skips there.
pub fn gpu() -> Option<Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new(&AdapterRequest::from_env()) {
        Ok(g) => {
            eprintln!("GPU tests run on: {}", g.info());
            g.set_poison(true);
            Some(g)
        }
        Err(e) => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "CI=true and no GPU adapter: {e}");
            eprintln!("\n*** SKIPPING GPU TEST: {e} ***\n");
            None
        }
    })
    .clone()
}

/// A generator seeded afresh for each test; the seed is printed so a failure replays
/// with `RCA_TEST_SEED=<seed>`.
pub fn rng() -> StdRng {
    let seed = std::env::var("RCA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("seed: {seed} (replay with RCA_TEST_SEED={seed})");
    StdRng::seed_from_u64(seed)
}

/// Uniform values in [-1, 1).
pub fn uniform(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Uniform values in [-1, 1) at least `margin` away from 0 (for kinks such as ReLU's).
pub fn uniform_away_from_zero(rng: &mut StdRng, n: usize, margin: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            loop {
                let v: f32 = rng.random_range(-1.0..1.0);
                if v.abs() > margin {
                    break v;
                }
            }
        })
        .collect()
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// Tolerances of a comparison: |got − want| ≤ atol + rtol·|want|.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub atol: f64,
    pub rtol: f64,
}

/// f32 kernels against f64 references.
pub const F32: Tol = Tol {
    atol: 1e-5,
    rtol: 1e-4,
};

/// Compare element-wise; on failure report the worst element, its index, both values,
/// and how many elements failed (NaN counts as a failure).
pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: Tol) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst: Option<(usize, f64)> = None;
    let mut failures = 0;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = f64::from(g);
        let allowed = tol.atol + tol.rtol * w.abs();
        let err = (g - w).abs();
        let ratio = if err.is_nan() {
            f64::INFINITY
        } else {
            err / allowed
        };
        if ratio > 1.0 {
            failures += 1;
        }
        if worst.is_none_or(|(_, r)| ratio > r) {
            worst = Some((i, ratio));
        }
    }
    if failures > 0 {
        let (i, r) = worst.expect("non-empty");
        panic!(
            "{what}: {failures} of {} elements out of tolerance (atol {}, rtol {}); worst at {i}: got {}, want {} ({r:.1}× the allowed error)",
            got.len(),
            tol.atol,
            tol.rtol,
            got[i],
            want[i]
        );
    }
}

/// f64 analytic gradient against f64 finite differences.
pub fn assert_close_f64(what: &str, got: &[f64], want: &[f64], tol: Tol) {
    let g32: Vec<f32> = got.iter().map(|&v| v as f32).collect();
    // Compare in f64: reuse the reporting, but on the exact values.
    let mut worst = (0, 0.0f64);
    let mut failures = 0;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ratio = (g - w).abs() / (tol.atol + tol.rtol * w.abs());
        if ratio.is_nan() || ratio > 1.0 {
            failures += 1;
        }
        if ratio.is_nan() || ratio > worst.1 {
            worst = (i, if ratio.is_nan() { f64::INFINITY } else { ratio });
        }
    }
    assert!(
        failures == 0,
        "{what}: {failures} of {} elements out of tolerance; worst at {}: got {}, want {} ({:.1}× allowed); first values {:?}",
        got.len(),
        worst.0,
        got[worst.0],
        want[worst.0],
        worst.1,
        &g32[..g32.len().min(4)]
    );
}

/// Coordinates per input checked by finite differences.
const FD_SAMPLES: usize = 40;

/// An input of an op under test.
pub struct Input {
    pub shape: Shape,
    pub data: Vec<f32>,
}

pub fn input(shape: &[usize], data: Vec<f32>) -> Input {
    assert_eq!(shape.iter().product::<usize>(), data.len());
    Input {
        shape: Shape::new(shape),
        data,
    }
}

/// Test one op end to end:
/// 1. forward on the GPU against `cpu_fwd`;
/// 2. the GPU gradients of L = Σ w ⊙ op(inputs), w random, against `cpu_bwd(inputs, w)`;
/// 3. `cpu_bwd` against central finite differences of `cpu_fwd` in f64.
#[allow(clippy::too_many_arguments)]
pub fn check_op(
    gpu: &Gpu,
    rng: &mut StdRng,
    name: &str,
    inputs: &[Input],
    gpu_op: impl Fn(&[&Tensor]) -> rca_gpu::Result<Tensor>,
    cpu_fwd: impl Fn(&[Vec<f64>]) -> Vec<f64>,
    cpu_bwd: impl Fn(&[Vec<f64>], &[f64]) -> Vec<Vec<f64>>,
    tol: Tol,
) {
    let xs: Vec<Tensor> = inputs
        .iter()
        .map(|i| {
            Tensor::from_vec(gpu, i.shape.clone(), &i.data)
                .unwrap()
                .requires_grad()
        })
        .collect();
    let x64: Vec<Vec<f64>> = inputs.iter().map(|i| to_f64(&i.data)).collect();
    let want = cpu_fwd(&x64);

    let tape = Tape::start();
    let refs: Vec<&Tensor> = xs.iter().collect();
    let y = gpu_op(&refs).unwrap();
    assert_close(&format!("{name} forward"), &y.to_vec().unwrap(), &want, tol);

    let w = uniform(rng, y.numel());
    let wt = Tensor::from_vec(gpu, y.shape().clone(), &w).unwrap();
    let loss = ops::sum(&ops::mul(&y, &wt).unwrap()).unwrap();
    let grads = tape.backward(&loss).unwrap();
    let w64 = to_f64(&w);
    let want_grads = cpu_bwd(&x64, &w64);
    assert_eq!(want_grads.len(), xs.len(), "{name}: one gradient per input");
    for (k, (x, want_g)) in xs.iter().zip(&want_grads).enumerate() {
        let g = grads
            .get(x)
            .unwrap_or_else(|| panic!("{name}: no gradient for input {k}"));
        assert_eq!(g.shape(), x.shape(), "{name}: gradient {k} shape");
        assert_close(
            &format!("{name} backward, input {k}"),
            &g.to_vec().unwrap(),
            want_g,
            tol,
        );
    }

    // The CPU backward against finite differences of the CPU forward, at a random
    // sample of coordinates (all of them for small inputs).
    for (k, want_g) in want_grads.iter().enumerate() {
        let n = x64[k].len();
        let picks: Vec<usize> = if n <= FD_SAMPLES {
            (0..n).collect()
        } else {
            (0..FD_SAMPLES).map(|_| rng.random_range(0..n)).collect()
        };
        let mut numeric = Vec::with_capacity(picks.len());
        let mut analytic = Vec::with_capacity(picks.len());
        for &i in &picks {
            let h = 1e-6;
            let mut all = x64.clone();
            all[k][i] = x64[k][i] + h;
            let up = cpu_fwd(&all);
            all[k][i] = x64[k][i] - h;
            let down = cpu_fwd(&all);
            // Σ w·(up − down), not Σ w·up − Σ w·down: differencing two sums over every
            // output would put their round-off into the estimate (seen at 1e-6 on a
            // 16k-output batch norm, the tolerance itself).
            let diff: f64 = w64
                .iter()
                .zip(up.iter().zip(&down))
                .map(|(w, (u, d))| w * (u - d))
                .sum();
            numeric.push(diff / (2.0 * h));
            analytic.push(want_g[i]);
        }
        assert_close_f64(
            &format!("{name} CPU backward vs finite differences, input {k}"),
            &analytic,
            &numeric,
            Tol {
                atol: 1e-6,
                rtol: 1e-6,
            },
        );
    }
}
