//! The 2×2 max pools and the ×2 upsampling against their references: even and odd maps,
//! batches, the clipped right/bottom windows of the 'same' pool, and ties (inputs drawn
//! from a few values) routed to the first maximum of each window like the reference.

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rca_gpu::reference::pool as r;
use rca_gpu::{Tape, Tensor, ops};

use crate::common::{self, F32, assert_close, check_op, input, to_f64, uniform};

/// n distinct values in [-1, 1), at least 2/n apart, in random order: no window has a
/// tie, and the finite-difference step never changes an arg-max.
fn distinct(rng: &mut StdRng, n: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n).map(|i| 2.0 * i as f32 / n as f32 - 1.0).collect();
    v.shuffle(rng);
    v
}

type Fwd = fn(&[f64], usize, usize, usize) -> Vec<f64>;
type Bwd = fn(&[f64], &[f64], usize, usize, usize) -> Vec<f64>;

fn check_pool(
    name: &str,
    op: fn(&Tensor) -> rca_gpu::Result<Tensor>,
    fwd: Fwd,
    bwd: Bwd,
    shape: [usize; 4],
) {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let [n, c, h, w] = shape;
    let inputs = [input(&shape, distinct(&mut rng, n * c * h * w))];
    check_op(
        &gpu,
        &mut rng,
        &format!("{name} {n}x{c}x{h}x{w}"),
        &inputs,
        |x| op(x[0]),
        |x| fwd(&x[0], n * c, h, w),
        |x, dy| vec![bwd(&x[0], dy, n * c, h, w)],
        F32,
    );
}

/// Forward and input gradient on the GPU against the references, for inputs drawn from
/// {-1, 0, 0.5, 1}: most windows hold ties. (No finite differences: the max is not
/// differentiable at a tie; the rule under test is "first maximum in row-major order".)
fn check_ties(op: fn(&Tensor) -> rca_gpu::Result<Tensor>, fwd: Fwd, bwd: Bwd, shape: [usize; 4]) {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let [n, c, h, w] = shape;
    let levels = [-1.0f32, 0.0, 0.5, 1.0];
    let data: Vec<f32> = (0..n * c * h * w)
        .map(|_| levels[rng.random_range(0..levels.len())])
        .collect();
    let x = Tensor::from_vec(&gpu, shape, &data)
        .unwrap()
        .requires_grad();
    let tape = Tape::start();
    let y = op(&x).unwrap();
    let g = uniform(&mut rng, y.numel());
    let gt = Tensor::from_vec(&gpu, y.shape().clone(), &g).unwrap();
    let loss = ops::sum(&ops::mul(&y, &gt).unwrap()).unwrap();
    let grads = tape.backward(&loss).unwrap();
    let x64 = to_f64(&data);
    assert_close(
        "forward with ties",
        &y.to_vec().unwrap(),
        &fwd(&x64, n * c, h, w),
        F32,
    );
    assert_close(
        "backward with ties",
        &grads.get(&x).unwrap().to_vec().unwrap(),
        &bwd(&x64, &to_f64(&g), n * c, h, w),
        F32,
    );
}

#[test]
fn max_pool_valid_on_an_even_map() {
    check_pool(
        "max_pool_valid",
        ops::max_pool_valid,
        r::max_pool_valid,
        r::max_pool_valid_backward,
        [2, 3, 10, 12],
    );
}

#[test]
fn max_pool_valid_floors_an_odd_map() {
    // 9×11 → 4×5; the last row and column get zero gradient.
    check_pool(
        "max_pool_valid",
        ops::max_pool_valid,
        r::max_pool_valid,
        r::max_pool_valid_backward,
        [2, 3, 9, 11],
    );
}

#[test]
fn max_pool_valid_routes_ties_to_the_first_maximum() {
    check_ties(
        ops::max_pool_valid,
        r::max_pool_valid,
        r::max_pool_valid_backward,
        [2, 3, 9, 12],
    );
}

fn check_max_pool_same(shape: [usize; 4]) {
    check_pool(
        "max_pool_same",
        ops::max_pool_same,
        r::max_pool_same,
        r::max_pool_same_backward,
        shape,
    );
}

#[test]
fn max_pool_same_keeps_the_size_and_clips_at_the_border() {
    check_pool(
        "max_pool_same",
        ops::max_pool_same,
        r::max_pool_same,
        r::max_pool_same_backward,
        [2, 3, 9, 11],
    );
    // W a multiple of 4: the vec4 kernels.
    check_pool(
        "max_pool_same",
        ops::max_pool_same,
        r::max_pool_same,
        r::max_pool_same_backward,
        [2, 3, 9, 12],
    );
}

#[test]
fn max_pool_same_in_strips_of_several_rows() {
    // The vec4 forward takes 4 rows an invocation: 37 rows of 4 vec4s (a workgroup's 16
    // rows of invocations cover 64 rows; the last strip has 1 row), and 70 rows of 64
    // vec4s (a workgroup per strip of 4 rows, the last of 2).
    for shape in [[1, 2, 37, 16], [1, 1, 70, 256]] {
        check_max_pool_same(shape);
    }
}

#[test]
fn max_pool_same_on_single_row_and_column_maps() {
    // Every window is clipped: 1×7 and 6×1, and 1×8 and 6×4 in vec4s.
    for shape in [[2, 2, 1, 7], [2, 2, 6, 1], [2, 2, 1, 8], [2, 2, 6, 4]] {
        check_max_pool_same(shape);
    }
}

#[test]
fn max_pool_same_sums_overlapping_windows_and_routes_ties_to_the_first_maximum() {
    check_ties(
        ops::max_pool_same,
        r::max_pool_same,
        r::max_pool_same_backward,
        [2, 3, 9, 11],
    );
    check_ties(
        ops::max_pool_same,
        r::max_pool_same,
        r::max_pool_same_backward,
        [2, 3, 9, 12],
    );
}

#[test]
fn max_pool_same_routes_ties_in_clipped_windows_of_thin_maps() {
    for shape in [
        [2, 2, 1, 7],
        [2, 2, 6, 1],
        [2, 1, 2, 5],
        [2, 2, 1, 4],
        [2, 1, 3, 8],
    ] {
        check_ties(
            ops::max_pool_same,
            r::max_pool_same,
            r::max_pool_same_backward,
            shape,
        );
    }
}

#[test]
fn max_pool_valid_rejects_a_map_smaller_than_the_window() {
    let Some(gpu) = common::gpu() else { return };
    let x = Tensor::zeros(&gpu, [1, 2, 1, 8]).unwrap();
    let e = ops::max_pool_valid(&x).unwrap_err().to_string();
    assert_eq!(
        e,
        "bad shape in max_pool_valid: (1, 2, 1, 8) (H and W at least 2)"
    );
}

#[test]
fn upsample2x_repeats_each_pixel_and_sums_its_block_back() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let (n, c, h, w) = (2, 3, 5, 7);
    let inputs = [input(&[n, c, h, w], uniform(&mut rng, n * c * h * w))];
    check_op(
        &gpu,
        &mut rng,
        "upsample2x 2x3x5x7",
        &inputs,
        |x| ops::upsample2x(x[0]),
        |x| r::upsample2x(&x[0], n * c, h, w),
        |_, dy| vec![r::upsample2x_backward(dy, n * c, h, w)],
        F32,
    );
}

#[test]
fn upsample2x_rejects_a_non_nchw_tensor() {
    let Some(gpu) = common::gpu() else { return };
    let x = Tensor::zeros(&gpu, [4, 5]).unwrap();
    assert!(matches!(
        ops::upsample2x(&x),
        Err(rca_gpu::Error::BadShape {
            op: "upsample2x",
            ..
        })
    ));
}
