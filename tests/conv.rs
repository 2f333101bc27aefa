//! The k×k convolutions against their references: depthwise for every supported K on
//! both kernel classes (odd widths so the 4-wide strips end partial, widths of whole
//! 8-column strips for the CPU class's row blocks, heights spanning several kernel-gradient row
//! chunks, maps smaller than the kernel) and dense for the model's 3×3 stride-1 pad-1 and
//! 2×2 stride-2 convs, odd sizes, no bias, a general stride-2 padded case, and the 1×1
//! case that delegates to `conv1x1`.

use rca_gpu::reference::conv::{self as r, Conv2d};
use rca_gpu::{KernelClass, Tape, Tensor, ops};

use crate::common::{self, F32, Tol, check_op, input, uniform};

/// Sums of up to a few hundred products in f32.
const SUMS: Tol = Tol {
    atol: 1e-4,
    rtol: F32.rtol,
};

/// Every kernel variant: the CPU class takes `dw_conv_cpu` where W is a multiple of 4,
/// with few pipelines its one pipeline for every K.
fn check_depthwise(n: usize, c: usize, h: usize, w: usize, k: usize) {
    for (class, gpu) in common::kernel_variants() {
        check_depthwise_on(class, &gpu, n, c, h, w, k);
    }
}

fn check_depthwise_on(
    class: &str,
    gpu: &rca_gpu::Gpu,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
) {
    let mut rng = common::rng();
    let inputs = [
        input(&[n, c, h, w], uniform(&mut rng, n * c * h * w)),
        input(&[c, 1, k, k], uniform(&mut rng, c * k * k)),
    ];
    check_op(
        gpu,
        &mut rng,
        &format!("depthwise_conv2d ({class} kernels) n{n} c{c} {h}x{w} k{k}"),
        &inputs,
        |x| ops::depthwise_conv2d(x[0], x[1]),
        |x| r::depthwise_conv2d(&x[0], &x[1], n, c, h, w, k),
        |x, dy| {
            let (dx, dk) = r::depthwise_conv2d_backward(&x[0], &x[1], dy, n, c, h, w, k);
            vec![dx, dk]
        },
        SUMS,
    );
}

#[test]
fn with_few_pipelines_one_depthwise_pipeline_gives_every_k_the_same_bits() {
    // `dw_conv_cpu_any` (the size read at run time, the row loop not unrolled) sums the
    // same products in the same order as `dw_conv_cpu`'s pipeline of each K: forward and
    // input gradient (the kernel turned), on a width of whole strips and of a half one.
    let (Some(shared), Some(few)) = (common::gpu(), common::few_pipelines_gpu()) else {
        return;
    };
    if shared.info().kernels != KernelClass::Cpu {
        return;
    }
    let mut rng = common::rng();
    for (k, w) in [(1, 8), (3, 12), (5, 16), (3, 8), (5, 4)] {
        let (n, c, h) = (2, 3, 9);
        let x = uniform(&mut rng, n * c * h * w);
        let kk = uniform(&mut rng, c * k * k);
        let run = |gpu: &rca_gpu::Gpu| {
            let xt = Tensor::from_vec(gpu, [n, c, h, w], &x)
                .unwrap()
                .requires_grad();
            let kt = Tensor::from_vec(gpu, [c, 1, k, k], &kk).unwrap();
            let tape = Tape::start();
            let y = ops::depthwise_conv2d(&xt, &kt).unwrap();
            // dy = 2y, taken back through the turned kernel.
            let loss = ops::sum(&ops::mul(&y, &y).unwrap()).unwrap();
            let grads = tape.backward(&loss).unwrap();
            let dx = grads.get(&xt).unwrap().to_vec().unwrap();
            (y.to_vec().unwrap(), dx)
        };
        assert!(run(&few) == run(&shared), "K {k}, W {w}: the bits differ");
    }
}

#[test]
fn depthwise_3x3_on_odd_maps() {
    check_depthwise(2, 3, 9, 11, 3);
}

#[test]
fn depthwise_5x5_on_odd_maps() {
    check_depthwise(2, 3, 9, 11, 5);
}

#[test]
fn depthwise_1x1_is_a_per_channel_scale() {
    check_depthwise(3, 2, 7, 5, 1);
}

#[test]
fn depthwise_kernel_gradient_sums_several_row_chunks() {
    // 37 rows: three 16-row partials per plane, the last one short.
    check_depthwise(2, 2, 37, 13, 3);
}

#[test]
fn depthwise_on_widths_of_whole_vec4_strips() {
    // W a multiple of 8: the CPU class's row blocks, with a last block of 1–3 rows (the
    // heights 9, 5 and 2), every K, and a plane narrower than the 16-column window.
    for k in [1, 3, 5] {
        check_depthwise(2, 3, 9, 16, k);
        check_depthwise(1, 2, 5, 8, k);
    }
    check_depthwise(1, 2, 2, 24, 5);
    check_depthwise(1, 1, 12, 32, 3);
}

#[test]
fn depthwise_kernel_gradient_on_rows_of_vec4s() {
    // W a multiple of 4 but not of 8: the CPU class's forward and input gradient end each
    // row on a strip of 4 columns, and its kernel gradient reads rows as vec4s. One strip
    // (W 4, its window past both edges for K 5), three strips (W 12), and 37 rows in three
    // row chunks with a short last one.
    for k in [1, 3, 5] {
        check_depthwise(2, 3, 7, 4, k);
        check_depthwise(1, 2, 6, 12, k);
    }
    check_depthwise(2, 2, 37, 12, 3);
}

#[test]
fn a_planted_error_in_the_cpu_depthwise_rows_fails_its_check() {
    // `dw_conv_cpu` takes the rows under a block as one call each: the checks above must
    // fail without the last of them (K 5's eighth row), or with a row past the bottom of
    // the map read instead of skipped.
    for (planted, wrong) in [
        ("    dw_row(7u, i0, pl, q0, &taps, &acc);\n", ""),
        (
            "if (ii < 0 || ii >= i32(p.h)) { return; }",
            "if (ii < 0 || ii > i32(p.h)) { return; }",
        ),
    ] {
        common::assert_plant_fails(rca_gpu::runtime::Shader::Conv, planted, wrong, |gpu| {
            check_depthwise_on("cpu (planted error)", gpu, 1, 2, 9, 16, 5);
            check_depthwise_on("cpu (planted error)", gpu, 1, 2, 10, 8, 3);
        });
    }
}

#[test]
fn depthwise_5x5_on_a_map_smaller_than_the_kernel() {
    check_depthwise(2, 2, 3, 2, 5);
}

#[test]
fn depthwise_rejects_an_even_kernel_naming_both_shapes() {
    let Some(gpu) = common::gpu() else { return };
    let x = Tensor::zeros(&gpu, [1, 3, 8, 8]).unwrap();
    let k = Tensor::zeros(&gpu, [3, 1, 2, 2]).unwrap();
    let e = ops::depthwise_conv2d(&x, &k).unwrap_err().to_string();
    assert_eq!(
        e,
        "shape mismatch in depthwise_conv2d: lhs (1, 3, 8, 8), rhs (3, 1, 2, 2)"
    );
}

#[allow(clippy::too_many_arguments)]
fn check_dense(
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
    bias: bool,
) {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let d = Conv2d {
        n,
        cin,
        cout,
        h,
        w,
        kh: k,
        kw: k,
        stride,
        pad,
    };
    let mut inputs = vec![
        input(&[n, cin, h, w], uniform(&mut rng, n * cin * h * w)),
        input(&[cout, cin, k, k], uniform(&mut rng, cout * cin * k * k)),
    ];
    if bias {
        inputs.push(input(&[cout], uniform(&mut rng, cout)));
    }
    check_op(
        &gpu,
        &mut rng,
        &format!("conv2d n{n} {cin}->{cout} {h}x{w} k{k} s{stride} p{pad} bias={bias}"),
        &inputs,
        |x| ops::conv2d(x[0], x[1], x.get(2).copied(), stride, pad),
        |x| r::conv2d(&x[0], &x[1], x.get(2).map(|b| b.as_slice()), d),
        |x, dy| {
            let (dx, dw, db) = r::conv2d_backward(&x[0], &x[1], dy, d);
            if bias { vec![dx, dw, db] } else { vec![dx, dw] }
        },
        SUMS,
    );
}

#[test]
fn dense_3x3_stride1_pad1_keeps_the_size() {
    check_dense(2, 3, 5, 9, 11, 3, 1, 1, true);
}

#[test]
fn dense_2x2_stride2_halves_an_even_map() {
    check_dense(2, 4, 3, 10, 12, 2, 2, 0, true);
}

#[test]
fn dense_2x2_stride2_drops_the_odd_last_row_and_column() {
    // The dropped row/column must get zero input gradient.
    check_dense(2, 3, 2, 9, 11, 2, 2, 0, true);
}

#[test]
fn dense_without_bias() {
    check_dense(2, 3, 4, 7, 6, 3, 1, 1, false);
}

#[test]
fn dense_3x3_stride2_pad1_general_case() {
    check_dense(2, 2, 3, 9, 8, 3, 2, 1, true);
}

#[test]
fn dense_on_aligned_sizes_takes_the_vec4_matmul() {
    // Cin·k·k and Ho·Wo multiples of 4, as at the model's shapes: all three products of
    // the im2col matrix run on the vec4 kernel.
    check_dense(2, 4, 4, 8, 8, 3, 1, 1, true);
    check_dense(2, 4, 8, 16, 16, 2, 2, 0, true);
}

#[test]
fn dense_on_rows_of_whole_vec4s_takes_one_invocation_per_input_channel_strip() {
    // W and Wo multiples of 4 on a CPU adapter: `im2col4`, on rows of several vec4s (the
    // window's vec4s left and right of a strip inside the row), an odd height, and the
    // general 3×3 at stride 2 with padding 1.
    check_dense(1, 3, 4, 7, 24, 3, 1, 1, true);
    check_dense(2, 2, 3, 9, 24, 2, 2, 0, true);
    check_dense(1, 2, 3, 8, 16, 3, 2, 1, false);
}

#[test]
fn dense_1x1_delegates_to_conv1x1() {
    check_dense(2, 3, 4, 5, 7, 1, 1, 0, true);
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let x = Tensor::from_vec(&gpu, [2, 3, 5, 7], &uniform(&mut rng, 210)).unwrap();
    let w = Tensor::from_vec(&gpu, [4, 3, 1, 1], &uniform(&mut rng, 12)).unwrap();
    let a = ops::conv2d(&x, &w, None, 1, 0).unwrap().to_vec().unwrap();
    let b = ops::conv1x1(&x, &w, None).unwrap().to_vec().unwrap();
    assert_eq!(a, b, "the same kernel gives bit-identical results");
}

#[test]
fn dense_names_both_shapes_on_a_channel_mismatch() {
    let Some(gpu) = common::gpu() else { return };
    let x = Tensor::zeros(&gpu, [1, 3, 8, 8]).unwrap();
    let w = Tensor::zeros(&gpu, [4, 2, 3, 3]).unwrap();
    let e = ops::conv2d(&x, &w, None, 1, 1).unwrap_err().to_string();
    assert_eq!(
        e,
        "shape mismatch in conv2d: lhs (1, 3, 8, 8), rhs (4, 2, 3, 3)"
    );
}

#[test]
fn dense_rejects_a_kernel_larger_than_the_padded_input() {
    let Some(gpu) = common::gpu() else { return };
    let x = Tensor::zeros(&gpu, [1, 2, 2, 2]).unwrap();
    let w = Tensor::zeros(&gpu, [1, 2, 3, 3]).unwrap();
    assert!(matches!(
        ops::conv2d(&x, &w, None, 1, 0),
        Err(rca_gpu::Error::BadShape { op: "conv2d", .. })
    ));
}
