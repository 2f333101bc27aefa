//! Spectral pooling (FFT, crop/merge, inverse FFT, real part) held to the dense real
//! operator y = A·x·Aᵀ (forward, and backward dx = Aᵀ·dy·A), the h = M case to its
//! closed form, and the crop/merge and pad/split kernels to their references.

use rca_gpu::ops::FftPath;
use rca_gpu::{Tape, Tensor, ops, reference::fft as r};

use crate::common::{self, Tol, assert_close, check_op, input, to_f64, uniform};

/// Outputs are O(|x|) = O(1); the two FFTs round to a few ε·log2(M²) of the RMS spectrum
/// (√(M²)) and the crop and inverse divide it by h², so M/h² of that, times a margin.
fn pool_tol(m: usize, h: usize) -> Tol {
    let stages = (m * m).ilog2() as f64;
    Tol {
        atol: 8.0 * f64::from(f32::EPSILON) * stages * (m as f64 / (h * h) as f64).max(1.0),
        rtol: 1e-4,
    }
}

fn check_pool(n: usize, c: usize, m: usize, h: usize) {
    check_pool_via(n, c, m, h, FftPath::Auto);
}

/// Forward and backward along `path`; the Auto path below full size runs as products, so
/// on both kernel classes' products.
fn check_pool_via(n: usize, c: usize, m: usize, h: usize, path: FftPath) {
    let devices = if path == FftPath::Auto && h < m {
        common::kernel_variants()
    } else {
        common::gpu().map(|g| ("shared", g)).into_iter().collect()
    };
    for (class, gpu) in devices {
        let mut rng = common::rng();
        let planes = n * c;
        let data = uniform(&mut rng, planes * m * m);
        check_op(
            &gpu,
            &mut rng,
            &format!("spectral_pool {n}x{c} M {m} -> h {h} {path:?} ({class} kernels)"),
            &[input(&[n, c, m, m], data)],
            |x| ops::spectral_pool_via(x[0], h, path),
            |x| r::spectral_pool(&x[0], planes, m, h),
            |_, dy| vec![r::spectral_pool_backward(dy, planes, m, h)],
            pool_tol(m, h),
        );
    }
}

#[test]
fn spectral_pool_halves_32_to_16_against_the_dense_operator() {
    check_pool(2, 3, 32, 16);
}

#[test]
fn spectral_pool_keeps_16_at_16_against_the_dense_operator() {
    check_pool(2, 3, 16, 16);
}

#[test]
fn spectral_pool_halves_64_to_32_against_the_dense_operator() {
    check_pool(1, 2, 64, 32);
}

#[test]
fn spectral_pool_small_and_quartering_sizes() {
    // h = 2 (the Nyquist pair is the only non-DC bin), M 4 → 2, and a crop to M/4.
    check_pool(3, 1, 4, 2);
    check_pool(2, 1, 8, 2);
    check_pool(1, 3, 16, 4);
}

#[test]
fn spectral_pool_at_full_size_in_closed_form_at_every_multiple_of_four() {
    // h = M with M a multiple of 4 takes the two-pass closed form (Auto); M = 2 the FFTs.
    // From M = 16 an invocation writes four vec4s of a row (M 16: the whole row).
    check_pool(3, 1, 4, 4);
    check_pool(1, 2, 8, 8);
    check_pool(2, 3, 16, 16);
    check_pool(2, 2, 64, 64);
    check_pool(1, 1, 256, 256);
    check_pool(2, 1, 2, 2);
}

#[test]
fn spectral_pool_at_full_size_through_the_fft_passes() {
    // The forced paths keep the transforms at h = M, so those kernels stay tested.
    check_pool_via(2, 3, 16, 16, FftPath::Workgroup);
    check_pool_via(1, 2, 4, 4, FftPath::Workgroup);
}

#[test]
fn spectral_pool_through_global_memory_passes() {
    // The FFTs' global form, with the real→complex and real-part kernels around it.
    check_pool_via(2, 3, 16, 8, FftPath::Global);
    check_pool_via(3, 1, 8, 8, FftPath::Global);
}

#[test]
fn spectral_pool_below_full_size_through_the_workgroup_passes() {
    // The FFT form with the crop fused into the passes (Auto takes the products here).
    check_pool_via(2, 3, 32, 16, FftPath::Workgroup);
    check_pool_via(1, 2, 64, 32, FftPath::Workgroup);
    check_pool_via(2, 1, 8, 2, FftPath::Workgroup);
    check_pool_via(2, 1, 16, 4, FftPath::Workgroup);
}

#[test]
fn spectral_pool_as_products_where_the_cpu_kernels_take_them_and_where_not() {
    // h = 2: N of the products is not a multiple of 4, so both take the tiled kernels;
    // M 128 → 64: 64-row blocks on lavapipe.
    check_pool(2, 2, 8, 2);
    check_pool(1, 2, 128, 64);
}

#[test]
fn spectral_unpool_through_global_memory_passes() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let (n, c, m, h) = (3, 1, 32, 16);
    let data = uniform(&mut rng, n * c * h * h);
    check_op(
        &gpu,
        &mut rng,
        "spectral_unpool 3x1 h 16 -> M 32 global",
        &[input(&[n, c, h, h], data)],
        |x| ops::spectral_unpool_via(x[0], m, FftPath::Global),
        |x| r::spectral_pool_backward(&x[0], n * c, m, h),
        |_, dx| vec![r::spectral_pool(dx, n * c, m, h)],
        pool_tol(m, h),
    );
}

#[test]
fn spectral_pool_matches_its_definition_by_dft() {
    // The dense operator is derived from the definition (reference unit tests check the
    // two agree); here the GPU is held to the literal DFT → crop → inverse DFT steps too.
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let (n, c, m, h) = (2, 2, 16, 8);
    let data = uniform(&mut rng, n * c * m * m);
    let x = Tensor::from_vec(&gpu, [n, c, m, m], &data).unwrap();
    let y = ops::spectral_pool(&x, h).unwrap();
    assert_eq!(y.dims(), [n, c, h, h]);
    assert_close(
        "spectral_pool vs DFT definition",
        &y.to_vec().unwrap(),
        &r::spectral_pool_by_dft(&to_f64(&data), n * c, m, h),
        pool_tol(m, h),
    );
}

#[test]
fn spectral_pool_at_full_size_is_identity_plus_the_nyquist_correction() {
    // h = M: y = A·x·Aᵀ with A = I + (√2 − 1)/M · v·vᵀ, v = (−1)^n (the Nyquist row and
    // column of the spectrum scaled by √2, the corner by 2). A is symmetric, so the
    // backward is the same map: dx = A·dy·A.
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let (n, c, m) = (2, 3, 32);
    let planes = n * c;
    let data = uniform(&mut rng, planes * m * m);
    let x = Tensor::from_vec(&gpu, [n, c, m, m], &data)
        .unwrap()
        .requires_grad();
    let tape = Tape::start();
    let y = ops::spectral_pool(&x, m).unwrap();
    assert_close(
        "spectral_pool h = M vs closed form",
        &y.to_vec().unwrap(),
        &r::spectral_pool_full_size(&to_f64(&data), planes, m),
        pool_tol(m, m),
    );
    let w = uniform(&mut rng, planes * m * m);
    let wt = Tensor::from_vec(&gpu, [n, c, m, m], &w).unwrap();
    let loss = ops::sum(&ops::mul(&y, &wt).unwrap()).unwrap();
    let grads = tape.backward(&loss).unwrap();
    assert_close(
        "spectral_pool h = M backward vs closed form",
        &grads.get(&x).unwrap().to_vec().unwrap(),
        &r::spectral_pool_full_size(&to_f64(&w), planes, m),
        pool_tol(m, m),
    );
    // The correction is not negligible: the closed form differs from the identity.
    let moved = y
        .to_vec()
        .unwrap()
        .iter()
        .zip(&data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(moved > 1e-3, "h = M pooling left x unchanged ({moved})");
}

#[test]
fn spectral_unpool_is_the_transpose_against_the_dense_operator() {
    // dx = Aᵀ·dy·A, and its own gradient is pooling again: as products on both kernel
    // classes, and through the FFT passes.
    let (n, c, m, h) = (2, 3, 16, 8);
    let planes = n * c;
    for (class, gpu) in common::kernel_variants() {
        for path in [FftPath::Auto, FftPath::Workgroup] {
            let mut rng = common::rng();
            let data = uniform(&mut rng, planes * h * h);
            check_op(
                &gpu,
                &mut rng,
                &format!("spectral_unpool 2x3 h 8 -> M 16 {path:?} ({class} kernels)"),
                &[input(&[n, c, h, h], data)],
                |x| ops::spectral_unpool_via(x[0], m, path),
                |x| r::spectral_pool_backward(&x[0], planes, m, h),
                |_, dx| vec![r::spectral_pool(dx, planes, m, h)],
                pool_tol(m, h),
            );
        }
    }
}

/// crop (or pad) on complex planes, with gradients (each is the other's adjoint).
fn check_crop_pad(n: usize, c: usize, m: usize, h: usize, crop: bool) {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let planes = n * c;
    let from = if crop { m } else { h };
    let data = uniform(&mut rng, planes * from * from * 2);
    check_op(
        &gpu,
        &mut rng,
        &format!(
            "spectral_{} {n}x{c} M {m} h {h}",
            if crop { "crop" } else { "pad" }
        ),
        &[input(&[n, c, from, from, 2], data)],
        |x| {
            if crop {
                ops::spectral_crop(x[0], h)
            } else {
                ops::spectral_pad(x[0], m)
            }
        },
        |x| {
            if crop {
                r::spectral_crop(&x[0], planes, m, h, 1.0)
            } else {
                r::spectral_pad(&x[0], planes, m, h, 1.0)
            }
        },
        |_, dy| {
            vec![if crop {
                r::spectral_pad(dy, planes, m, h, 1.0)
            } else {
                r::spectral_crop(dy, planes, m, h, 1.0)
            }]
        },
        common::F32,
    );
}

#[test]
fn spectral_crop_merges_the_nyquist_pair() {
    check_crop_pad(2, 3, 16, 8, true);
    check_crop_pad(3, 1, 8, 2, true);
}

#[test]
fn spectral_crop_at_full_size_scales_the_nyquist_bin() {
    check_crop_pad(2, 3, 8, 8, true);
}

#[test]
fn spectral_pad_splits_the_nyquist_bin_and_zero_fills() {
    check_crop_pad(2, 3, 16, 8, false);
    check_crop_pad(2, 1, 8, 8, false);
}

#[test]
fn spectral_pool_rejects_bad_sizes() {
    let Some(gpu) = common::gpu() else { return };
    let x = Tensor::zeros(&gpu, [1, 2, 16, 16]).unwrap();
    assert_eq!(
        ops::spectral_pool(&x, 12).unwrap_err().to_string(),
        "bad shape in spectral_pool: (1, 2, 16, 16) (output size h = 12 must be a power of two with 2 ≤ h ≤ M = 16)"
    );
    assert!(ops::spectral_pool(&x, 32).is_err());
    assert!(ops::spectral_pool(&x, 1).is_err());
    let x = Tensor::zeros(&gpu, [1, 2, 16, 8]).unwrap();
    assert!(ops::spectral_pool(&x, 8).is_err());
    let x = Tensor::zeros(&gpu, [1, 2, 12, 12]).unwrap();
    assert!(ops::spectral_pool(&x, 4).is_err());
    let dy = Tensor::zeros(&gpu, [1, 2, 8, 8]).unwrap();
    assert!(ops::spectral_unpool(&dy, 4).is_err());
    assert!(ops::spectral_unpool(&dy, 24).is_err());
}

#[test]
fn spectral_pool_relu_is_the_relu_of_the_pool_and_refuses_a_tape() {
    // Inference's fused form: in the last store of the closed form at full size and of the
    // products when halving. The same values bit for bit (max(0, ·) of the same sums).
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    for (m, h) in [(16, 16), (32, 32), (16, 8)] {
        let (n, c) = (2, 3);
        let x = Tensor::from_vec(&gpu, [n, c, m, m], &uniform(&mut rng, n * c * m * m)).unwrap();
        let fused = rca_gpu::no_grad(|| ops::spectral_pool_relu(&x, h)).unwrap();
        let two = rca_gpu::no_grad(|| ops::relu(&ops::spectral_pool(&x, h)?)).unwrap();
        let fused = fused.to_vec().unwrap();
        assert_eq!(fused, two.to_vec().unwrap(), "M {m} → h {h}");
        assert!(fused.contains(&0.0) && fused.iter().any(|&v| v > 0.0));
    }
    let x = Tensor::from_vec(&gpu, [1, 1, 8, 8], &uniform(&mut rng, 64)).unwrap();
    let tape = Tape::start();
    assert!(ops::spectral_pool_relu(&x, 8).is_err());
    drop(tape);
}
