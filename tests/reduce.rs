//! Sums and means, whole-tensor and per channel, including inputs large enough to take
//! the two-pass path (more than one chunk of 8192 elements per channel).

use rca_gpu::{ops, reference as r};

use crate::common::{self, F32, check_op, input, uniform};

/// The sum in every kernel variant: on CPU adapters a channel of whole vec4 rows too
/// large for one invocation is one workgroup's (`sum_channels_cpu4`), elsewhere the row
/// kernel's chunks and a second pass.
fn check_sum(shape: [usize; 4], per_channel: bool, mean: bool) {
    for (class, gpu) in common::kernel_variants() {
        check_sum_on(&gpu, class, shape, per_channel, mean);
    }
}

fn check_sum_on(gpu: &rca_gpu::Gpu, class: &str, shape: [usize; 4], per_channel: bool, mean: bool) {
    let mut rng = common::rng();
    let [n, c, h, w] = shape;
    let numel = n * c * h * w;
    let x = uniform(&mut rng, numel);
    let (outer, ch, inner) = if per_channel {
        (n, c, h * w)
    } else {
        (1, 1, numel)
    };
    let s = if mean { 1.0 / (numel / ch) as f64 } else { 1.0 };
    let name = format!(
        "{}{} {:?} ({class})",
        if mean { "mean" } else { "sum" },
        if per_channel { "_channels" } else { "" },
        shape
    );
    check_op(
        gpu,
        &mut rng,
        &name,
        &[input(&shape, x)],
        |x| match (per_channel, mean) {
            (false, false) => ops::sum(x[0]),
            (false, true) => ops::mean(x[0]),
            (true, false) => ops::sum_channels(x[0]),
            (true, true) => ops::mean_channels(x[0]),
        },
        |x| r::sum_view(&x[0], outer, ch, inner, s),
        |_, dy| vec![r::sum_view_backward(dy, outer, ch, inner, s)],
        // A sum of thousands of f32 terms carries their rounding: absolute 1e-3 on sums
        // of magnitude ~50 is still 1e-5 relative to the terms' scale.
        common::Tol {
            atol: if mean { 1e-5 } else { 1e-3 },
            rtol: F32.rtol,
        },
    );
}

#[test]
fn sum_of_a_small_tensor() {
    check_sum([2, 3, 5, 7], false, false);
}

#[test]
fn sum_of_a_tensor_larger_than_one_chunk() {
    check_sum([2, 3, 67, 71], false, false);
}

#[test]
fn mean_of_a_tensor_larger_than_one_chunk() {
    check_sum([2, 3, 67, 71], false, true);
}

#[test]
fn sum_per_channel_small() {
    check_sum([3, 4, 5, 7], true, false);
}

#[test]
fn sum_per_channel_larger_than_one_chunk() {
    check_sum([2, 3, 67, 71], true, false);
}

#[test]
fn mean_per_channel_larger_than_one_chunk() {
    check_sum([2, 5, 67, 71], true, true);
}

#[test]
fn sums_per_channel_by_one_invocation_each_and_in_one_chunk() {
    // Up to 4096 elements per channel: one invocation per channel, scalar rows (35) and
    // vec4 rows (64); whole-tensor sums of 4096 elements exactly.
    check_sum([4, 70, 5, 7], true, false);
    check_sum([64, 3, 8, 8], true, true);
    check_sum([1, 1, 64, 64], false, false);
    // 4453 elements per channel in rows of an odd length: one workgroup's chunk.
    check_sum([1, 2, 61, 73], true, false);
    check_sum([1, 1, 61, 73], false, true);
}

#[test]
fn sums_over_rows_of_whole_vec4s() {
    // Planes of a multiple of 4 take the vec4 row kernel: several rows per channel, a row
    // split in chunks with a short last one (96·100 = 9600 > 8192), one long row.
    check_sum([3, 4, 8, 12], true, false);
    check_sum([1, 4, 8, 12], true, true);
    check_sum([1, 1, 8, 12], false, true);
    check_sum([2, 3, 96, 100], true, false);
    check_sum([2, 3, 96, 100], true, true);
    check_sum([1, 1, 96, 100], false, false);
    check_sum([2, 3, 96, 100], false, true);
}

#[test]
fn a_planted_error_in_the_per_channel_sum_fails_its_check() {
    let plants = [
        ("r += x4[row + j];", "r += x4[row + j] * 1.001;"),
        (
            "t += rpartial[lid + 8u * k];",
            "t += rpartial[lid + 8u * k + 1u];",
        ),
    ];
    for (planted, wrong) in plants {
        common::assert_plant_fails(rca_gpu::runtime::Shader::Reduce, planted, wrong, |gpu| {
            check_sum_on(gpu, "cpu (planted error)", [2, 3, 96, 100], true, false);
        });
    }
}

#[test]
fn sum_channels_rejects_a_non_nchw_tensor() {
    let Some(gpu) = common::gpu() else { return };
    let x = rca_gpu::Tensor::zeros(&gpu, [6, 7]).unwrap();
    let e = ops::sum_channels(&x).unwrap_err().to_string();
    assert!(e.contains("sum_channels") && e.contains("(6, 7)"), "{e}");
}
