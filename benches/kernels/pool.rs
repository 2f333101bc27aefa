//! Max pools and ×2 upsampling at RCA-IUnet's 256×256 shapes, forward and backward, in
//! GB/s of the minimum traffic (each input and output element read or written once).

use criterion::Criterion;
use rca_gpu::{Tensor, ops};

use super::conv::forward_backward;
use super::gpu;

/// (name, N, C, H=W): the first hybrid pool (C16 @256²) and a deep one (C128 @32²).
const POOLS: &[(&str, usize, usize, usize)] = &[
    ("C16 @256x256", 1, 16, 256),
    ("C128 @32x32", 1, 128, 32),
    ("C16 @256x256 batch 8", 8, 16, 256),
    ("C128 @32x32 batch 8", 8, 128, 32),
];

/// (name, N, C, H=W) of the input: the decoder's first Up (C256 @16²) and a late one.
const UPSAMPLES: &[(&str, usize, usize, usize)] = &[
    ("C256 @16x16", 1, 256, 16),
    ("C32 @128x128", 1, 32, 128),
    ("C256 @16x16 batch 8", 8, 256, 16),
    ("C32 @128x128 batch 8", 8, 32, 128),
];

pub fn benches(c: &mut Criterion) {
    let gpu = gpu();
    for &(name, n, ch, hw) in POOLS {
        // Distinct values, so the arg-max routing is not one degenerate case.
        let data: Vec<f32> = (0..n * ch * hw * hw)
            .map(|i| ((i * 7919) % 10007) as f32)
            .collect();
        let x = Tensor::from_vec(&gpu, [n, ch, hw, hw], &data)
            .unwrap()
            .requires_grad();
        let e = (4 * n * ch * hw * hw) as u64;
        // valid: read x, write y (¼ x); backward: read x and dy (¼), write dx.
        forward_backward(
            c,
            &gpu,
            "max_pool_valid forward (GB/s)",
            "max_pool_valid backward (GB/s)",
            name,
            (e + e / 4, 2 * e + e / 4),
            || ops::max_pool_valid(&x).unwrap(),
        );
        // same: read x, write y; backward: read x and dy, write dx.
        forward_backward(
            c,
            &gpu,
            "max_pool_same forward (GB/s)",
            "max_pool_same backward (GB/s)",
            name,
            (2 * e, 3 * e),
            || ops::max_pool_same(&x).unwrap(),
        );
    }
    for &(name, n, ch, hw) in UPSAMPLES {
        let x = Tensor::full(&gpu, [n, ch, hw, hw], 0.5)
            .unwrap()
            .requires_grad();
        let e = (4 * n * ch * hw * hw) as u64;
        // Forward: read x, write 4x; backward: read 4x, write x.
        forward_backward(
            c,
            &gpu,
            "upsample2x forward (GB/s)",
            "upsample2x backward (GB/s)",
            name,
            (5 * e, 5 * e),
            || ops::upsample2x(&x).unwrap(),
        );
    }
}
