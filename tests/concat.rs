//! Channel concatenation and its backward split.

use rca_gpu::{ops, reference as r};

use crate::common::{self, F32, check_op, input, uniform};

#[test]
fn concat_channels_matches_reference_and_splits_gradients() {
    // 63-pixel planes: the scalar copy.
    check_concat(3, 7, 9, &[2, 5, 1]);
}

#[test]
fn concat_of_whole_vec4_planes_matches_reference_and_splits_gradients() {
    // 60-pixel planes: the vec4 copy, one grid layer per sample.
    check_concat(3, 6, 10, &[2, 5, 1]);
}

fn check_concat(n: usize, h: usize, w: usize, channels: &[usize]) {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let inputs: Vec<_> = channels
        .iter()
        .map(|&c| input(&[n, c, h, w], uniform(&mut rng, n * c * h * w)))
        .collect();
    check_op(
        &gpu,
        &mut rng,
        "concat_channels",
        &inputs,
        ops::concat_channels,
        |x| {
            let refs: Vec<&[f64]> = x.iter().map(|v| v.as_slice()).collect();
            r::concat_channels(&refs, channels, n, h * w)
        },
        |_, dy| r::concat_channels_backward(dy, channels, n, h * w),
        F32,
    );
}

#[test]
fn concat_rejects_inputs_of_different_sizes() {
    let Some(gpu) = common::gpu() else { return };
    let a = rca_gpu::Tensor::zeros(&gpu, [1, 2, 8, 8]).unwrap();
    let b = rca_gpu::Tensor::zeros(&gpu, [1, 2, 4, 4]).unwrap();
    let e = ops::concat_channels(&[&a, &b]).unwrap_err().to_string();
    assert_eq!(
        e,
        "shape mismatch in concat_channels: lhs (1, 2, 8, 8), rhs (1, 2, 4, 4)"
    );
}
