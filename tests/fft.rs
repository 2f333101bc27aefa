//! The batched 2-D FFT against an O(M²)-per-line f64 DFT: both forms of the passes
//! (workgroup memory, and global memory forced at small sizes), forward and inverse,
//! even and odd numbers of radix-2 stages, round trips, and shape errors.

use rca_gpu::ops::{self, FftPath};
use rca_gpu::{Tensor, reference::fft as r};

use crate::common::{self, Tol, assert_close, check_op, input, to_f64, uniform};

/// The error an f32 FFT may make on random data: each output is a sum of M² terms of
/// size ≤ |x|, rounded through log2(M²) stages, so a few ε·log2(M²) times the RMS size of
/// an output (√(M²)·|x|, |x| ~ 1 here) for the forward; the inverse divides by M².
fn fft_tol(m: usize, inverse: bool) -> Tol {
    let stages = (m * m).ilog2().max(1) as f64;
    let rms_out = m as f64 * if inverse { 1.0 / (m * m) as f64 } else { 1.0 };
    Tol {
        atol: 4.0 * f64::from(f32::EPSILON) * stages * rms_out,
        rtol: 1e-4,
    }
}

/// Forward on the GPU against the DFT, the GPU backward (through the tape) against the
/// CPU adjoint, and that adjoint against finite differences.
fn check_fft(n: usize, c: usize, m: usize, inverse: bool, path: FftPath) {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let planes = n * c;
    let data = uniform(&mut rng, planes * m * m * 2);
    check_op(
        &gpu,
        &mut rng,
        &format!("fft2 {n}x{c} M {m} inverse={inverse} {path:?}"),
        &[input(&[n, c, m, m, 2], data)],
        |x| ops::fft2_via(x[0], inverse, path),
        |x| {
            if inverse {
                r::ifft2(&x[0], planes, m)
            } else {
                r::fft2(&x[0], planes, m)
            }
        },
        |_, dy| vec![r::fft2_backward(dy, planes, m, inverse)],
        fft_tol(m, inverse),
    );
}

/// Forward only (sizes where finite differences of a large sum lose their precision).
fn check_fft_forward(n: usize, c: usize, m: usize, inverse: bool, path: FftPath) {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let planes = n * c;
    let data = uniform(&mut rng, planes * m * m * 2);
    let x = Tensor::from_vec(&gpu, [n, c, m, m, 2], &data).unwrap();
    let y = ops::fft2_via(&x, inverse, path).unwrap();
    let x64 = to_f64(&data);
    let want = if inverse {
        r::ifft2(&x64, planes, m)
    } else {
        r::fft2(&x64, planes, m)
    };
    assert_close(
        &format!("fft2 {n}x{c} M {m} inverse={inverse} {path:?}"),
        &y.to_vec().unwrap(),
        &want,
        fft_tol(m, inverse),
    );
}

#[test]
fn fft2_m2_single_radix2_stage() {
    check_fft(3, 1, 2, false, FftPath::Workgroup);
}

#[test]
fn fft2_m4_forward_and_gradient() {
    check_fft(2, 3, 4, false, FftPath::Workgroup);
}

#[test]
fn fft2_m8_odd_stage_count_forward_and_gradient() {
    check_fft(2, 3, 8, false, FftPath::Workgroup);
}

#[test]
fn ifft2_m8_and_m16_inverse_and_gradient() {
    check_fft(2, 3, 8, true, FftPath::Workgroup);
    check_fft(3, 1, 16, true, FftPath::Workgroup);
}

#[test]
fn fft2_m16_forward_and_gradient() {
    check_fft(2, 3, 16, false, FftPath::Workgroup);
}

#[test]
fn fft2_m32_and_m64_forward_and_inverse() {
    for inverse in [false, true] {
        check_fft_forward(2, 3, 32, inverse, FftPath::Workgroup);
        check_fft_forward(3, 1, 64, inverse, FftPath::Workgroup);
    }
}

#[test]
fn fft2_m256_forward_and_inverse() {
    check_fft_forward(1, 2, 256, false, FftPath::Auto);
    check_fft_forward(2, 1, 256, true, FftPath::Auto);
}

#[test]
fn global_memory_passes_forward_and_gradient() {
    // M 2 and 8: a radix-2 stage first; 4 and 16: radix-4 only.
    for m in [2, 4, 8, 16] {
        check_fft(2, 3, m, false, FftPath::Global);
    }
    check_fft(3, 1, 8, true, FftPath::Global);
}

#[test]
fn global_memory_passes_m32_and_m64() {
    check_fft_forward(2, 3, 32, false, FftPath::Global);
    check_fft_forward(3, 1, 64, true, FftPath::Global);
}

/// ifft2(fft2(x)) = x through the given path.
fn round_trip(n: usize, c: usize, m: usize, path: FftPath) {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let data = uniform(&mut rng, n * c * m * m * 2);
    let x = Tensor::from_vec(&gpu, [n, c, m, m, 2], &data).unwrap();
    let back = ops::fft2_via(&ops::fft2_via(&x, false, path).unwrap(), true, path).unwrap();
    // The forward's absolute error, divided by M² by the inverse, then spread back.
    let stages = (m * m).ilog2() as f64;
    assert_close(
        &format!("ifft2(fft2(x)) {n}x{c} M {m} {path:?}"),
        &back.to_vec().unwrap(),
        &to_f64(&data),
        Tol {
            atol: 8.0 * f64::from(f32::EPSILON) * stages,
            rtol: 1e-4,
        },
    );
}

#[test]
fn round_trip_restores_the_input() {
    round_trip(2, 3, 64, FftPath::Workgroup);
    round_trip(2, 3, 32, FftPath::Global);
    round_trip(1, 3, 256, FftPath::Auto);
}

#[test]
fn round_trip_at_m1024_fills_the_whole_tile() {
    // One 1024-point line is exactly the workgroup tile (8 KiB).
    round_trip(1, 1, 1024, FftPath::Workgroup);
}

#[test]
fn both_forms_agree_at_m512() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let m = 512;
    let x = Tensor::from_vec(&gpu, [1, 1, m, m, 2], &uniform(&mut rng, m * m * 2)).unwrap();
    let a = ops::fft2_via(&x, false, FftPath::Workgroup).unwrap();
    let b = ops::fft2_via(&x, false, FftPath::Global).unwrap();
    let b64 = to_f64(&b.to_vec().unwrap());
    assert_close(
        "fft2 M 512 workgroup vs global",
        &a.to_vec().unwrap(),
        &b64,
        fft_tol(m, false),
    );
}

#[test]
fn fft2_rejects_non_square_and_non_power_of_two_planes() {
    let Some(gpu) = common::gpu() else { return };
    let x = Tensor::zeros(&gpu, [1, 2, 8, 4, 2]).unwrap();
    assert_eq!(
        ops::fft2(&x).unwrap_err().to_string(),
        "bad shape in fft2: (1, 2, 8, 4, 2) ((N, C, M, M, 2) complex planes, M a power of two, 2 ≤ M ≤ 4096)"
    );
    let x = Tensor::zeros(&gpu, [1, 1, 6, 6, 2]).unwrap();
    assert!(ops::ifft2(&x).is_err());
    let x = Tensor::zeros(&gpu, [1, 1, 8, 8]).unwrap();
    assert!(ops::fft2(&x).is_err());
}
