//! The pointwise convolution (a register-blocked matmul) against its reference: edge
//! tiles (sizes not multiples of the 32×64 workgroup tile), batches, no-bias, and a
//! weight gradient long enough to be split along K.

use rca_gpu::{KernelClass, ops, reference as r};

use crate::common::{self, F32, check_op, input, uniform};

/// Both kernel variants (the CPU-shaped and the tiled GPU-shaped products) against the
/// reference.
fn check_conv(n: usize, cin: usize, cout: usize, h: usize, w: usize, bias: bool) {
    for (class, gpu) in common::kernel_variants() {
        check_conv_on(class, &gpu, n, cin, cout, h, w, bias);
    }
}

#[allow(clippy::too_many_arguments)]
fn check_conv_on(
    class: &str,
    gpu: &rca_gpu::Gpu,
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    bias: bool,
) {
    let mut rng = common::rng();
    let p = h * w;
    let mut inputs = vec![
        input(&[n, cin, h, w], uniform(&mut rng, n * cin * p)),
        input(&[cout, cin, 1, 1], uniform(&mut rng, cout * cin)),
    ];
    if bias {
        inputs.push(input(&[cout], uniform(&mut rng, cout)));
    }
    check_op(
        gpu,
        &mut rng,
        &format!("conv1x1 ({class} kernels) n{n} {cin}->{cout} {h}x{w} bias={bias}"),
        &inputs,
        |x| ops::conv1x1(x[0], x[1], x.get(2).copied()),
        |x| {
            r::conv1x1(
                &x[0],
                &x[1],
                x.get(2).map(|b| b.as_slice()),
                n,
                cin,
                cout,
                p,
            )
        },
        |x, dy| {
            let (dx, dw, db) = r::conv1x1_backward(&x[0], &x[1], dy, n, cin, cout, p);
            if bias { vec![dx, dw, db] } else { vec![dx, dw] }
        },
        // Sums over up to 3000 products: allow f32 accumulation error.
        common::Tol {
            atol: 1e-4,
            rtol: F32.rtol,
        },
    );
}

#[test]
fn conv1x1_small_odd_shapes_with_bias() {
    check_conv(3, 5, 6, 7, 9, true);
}

#[test]
fn conv1x1_cpu_kernels_with_rows_not_a_multiple_of_four() {
    // The CPU-shaped forward reads Wᵀ with its rows padded to a quad and stores the rows
    // inside Cout: 1 (the head), 3 and 6 (`matmul_cpu_sg8`), 13 and 21 (`matmul_cpu_sg`,
    // the last row quad clamped, then a second row block).
    for cout in [1, 3, 6, 13, 21] {
        check_conv(2, 8, cout, 4, 8, true);
    }
}

#[test]
fn with_few_pipelines_every_product_takes_the_narrow_blocks_and_gives_the_same_bits() {
    // The shapes that take the 16-, 32- and 64-row blocks (Cout 16, 24, 32, 48, 64, 96)
    // run as 8-row blocks on a device set to compile fewer pipelines, with the same sums
    // in the same order: the same bits as on the shared device. A concatenation's product
    // there is one product per input, each adding into C by a flag (not a pipeline of its
    // own); on the shared device it is one product over the inputs in turn, whose sums run
    // in the order of the product over the whole input: the same bits as that.
    let (Some(shared), Some(few)) = (common::gpu(), common::own_gpu()) else {
        return;
    };
    if shared.info().kernels != KernelClass::Cpu || !few.info().timestamp_queries {
        return;
    }
    few.set_few_pipelines(true);
    let mut rng = common::rng();
    for cout in [16, 24, 32, 48, 64, 96] {
        let (cin, p) = (24, 8 * 16);
        let x = uniform(&mut rng, 2 * cin * p);
        let w = uniform(&mut rng, cout * cin);
        let b = uniform(&mut rng, cout);
        let run = |gpu: &rca_gpu::Gpu| {
            let t = |shape: &[usize], v: &[f32]| rca_gpu::Tensor::from_vec(gpu, shape, v).unwrap();
            let xt = t(&[2, cin, 8, 16], &x);
            let wt = t(&[cout, cin, 1, 1], &w);
            let bt = t(&[cout], &b);
            let y = ops::conv1x1(&xt, &wt, Some(&bt)).unwrap().to_vec().unwrap();
            // The same input cut into three blocks of channels, with a bias.
            let parts: Vec<_> = [(0, 4), (4, 12), (12, 24)]
                .iter()
                .map(|&(a, z)| {
                    let v: Vec<f32> = (0..2)
                        .flat_map(|i| &x[(i * cin + a) * p..(i * cin + z) * p])
                        .copied()
                        .collect();
                    t(&[2, z - a, 8, 16], &v)
                })
                .collect();
            let refs: Vec<_> = parts.iter().collect();
            let cat = ops::conv1x1_cat(&refs, None, &wt, Some(&bt))
                .unwrap()
                .to_vec()
                .unwrap();
            (y, cat)
        };
        few.start_profile().unwrap();
        let narrow = run(&few);
        let kernels: Vec<&str> = few
            .finish_profile()
            .unwrap()
            .iter()
            .map(|d| d.kernel)
            .filter(|k| k.starts_with("matmul"))
            .collect();
        assert!(!kernels.is_empty());
        assert!(
            kernels
                .iter()
                .all(|k| ["matmul_cpu_sg8", "matmul_cpu"].contains(k)),
            "Cout {cout}: {kernels:?}"
        );
        let wide = run(&shared);
        assert!(
            narrow.0 == wide.0,
            "Cout {cout}: the row blocks' results differ"
        );
        assert!(
            wide.1 == wide.0,
            "Cout {cout}: the concatenation's product differs from the whole input's"
        );
        for (i, (a, b)) in narrow.1.iter().zip(&wide.1).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "Cout {cout}: the concatenation's sums differ at {i}: {a} against {b}"
            );
        }
    }
}

#[test]
fn conv1x1_without_bias() {
    check_conv(2, 3, 4, 5, 5, false);
}

#[test]
fn conv1x1_across_several_tiles() {
    // Cout 37 (two row tiles, partial), H·W 143 (three column tiles, partial).
    check_conv(2, 40, 37, 13, 11, true);
}

#[test]
fn conv1x1_weight_gradient_split_along_k() {
    // H·W = 1500 per sample: the weight gradient splits K and sums the partials.
    check_conv(2, 8, 6, 50, 30, true);
}

#[test]
fn conv1x1_vec4_kernel_with_partial_tiles() {
    // Every dimension a multiple of 4 (vec4 kernel in all three products), none of 8,
    // 32 or 64 (partial tiles, clamped upper half of the 4×8 block).
    check_conv(2, 12, 20, 6, 18, true);
}

#[test]
fn conv1x1_vec4_kernel_with_split_k() {
    check_conv(2, 8, 8, 50, 32, true);
}

#[test]
fn conv1x1_weight_gradient_in_several_chunks_of_k() {
    // 128·200 pixels: the CPU class's weight gradient splits K in three chunks, the last
    // one short, and adds the blocks of both samples.
    check_conv(2, 4, 8, 128, 200, true);
}

#[test]
fn conv1x1_names_both_shapes_on_a_channel_mismatch() {
    let Some(gpu) = common::gpu() else { return };
    let x = rca_gpu::Tensor::zeros(&gpu, [1, 3, 4, 4]).unwrap();
    let w = rca_gpu::Tensor::zeros(&gpu, [8, 4, 1, 1]).unwrap();
    let e = ops::conv1x1(&x, &w, None).unwrap_err().to_string();
    assert_eq!(
        e,
        "shape mismatch in conv1x1: lhs (1, 3, 4, 4), rhs (8, 4, 1, 1)"
    );
}

#[test]
fn conv1x1_cpu_kernel_across_row_blocks_and_a_partial_workgroup() {
    // Every size a multiple of 4 (the CPU-shaped product for the forward and the input
    // gradient): Cout 36 is two whole 16-row blocks and a clamped one, H·W 260 is 65
    // column quads, one past a 64-invocation workgroup.
    check_conv(2, 24, 36, 10, 26, true);
}

#[test]
fn conv1x1_subgroup_kernel_with_an_odd_reduction_and_clamped_rows() {
    // `matmul_cpu_sg` takes two steps of k per loop: Cin 5 ends on a half step, whose
    // weights must count as zero; Cout 20 clamps the second row block's lanes, and 65
    // column quads leave a workgroup of one live invocation among 63 clamped ones.
    check_conv(2, 5, 20, 10, 26, true);
    // K = 36 (the input gradient's Cout) over 27 column quads, M = 12 rows.
    check_conv(1, 12, 36, 9, 12, false);
}

#[test]
fn conv1x1_thin_weight_gradients_of_one_input_or_one_output_channel() {
    // dW = dY·Xᵀ with N = Cin = 1, then with M = Cout = 1 and N = 6 (not a multiple of 4):
    // `matmul_nt_cpu_sg` clamps the rows and columns it does not have.
    check_conv(2, 1, 8, 8, 8, true);
    check_conv(1, 6, 1, 8, 12, true);
}

#[test]
fn conv1x1_eight_row_subgroup_kernel_with_a_partial_step_of_k() {
    // `matmul_cpu_sg8` takes four steps of k per loop: Cin 5 ends one step into the
    // second, whose other weights must count as zero; Cout 4 clamps half the lanes' row
    // quads. The input gradient's M = Cin 8 with K = Cout 12 (three whole loops), over 21
    // column quads.
    check_conv(2, 5, 4, 6, 10, true);
    check_conv(1, 8, 12, 6, 14, false);
}

#[test]
fn conv1x1_weight_gradient_in_blocks_of_sixteen_rows() {
    // dW = dY·Xᵀ on `matmul_nt_cpu_sg`'s blocks of 16 rows: M = Cout 40 is two whole
    // blocks and a clamped one; N = Cin 40 (not a multiple of 32) takes two columns a
    // lane, two whole 16-column blocks and a clamped one, nine blocks in two workgroups.
    // Then Cin 64 (four columns a lane, two whole 32-column blocks) with Cout 20.
    check_conv(1, 40, 40, 8, 12, true);
    check_conv(2, 64, 20, 6, 8, true);
}

#[test]
fn conv1x1_weight_gradient_with_lanes_splitting_long_pixel_rows() {
    // dW = dY·Xᵀ with N = Cin ≤ 8 takes `matmul_nt_cpu_ks`: K = H·W = 1280 in three
    // chunks per sample, each lane every 8th vec4 of its chunk; M = Cout 12 is a whole
    // 8-row tile and a clamped one, N = 8 two column quads. Then Cin 4 (one quad) over
    // a K that leaves the last chunk short.
    check_conv(2, 8, 12, 32, 40, true);
    check_conv(1, 4, 8, 36, 38, true);
}

#[test]
fn conv1x1_thirty_two_row_subgroup_kernel_forward_and_input_gradient() {
    // Cout 96 (three 32-row blocks of `matmul_cpu_sg32`) over 15 column quads; then Cin 32,
    // the input gradient's M, with an odd-sized K = Cout 12.
    check_conv(2, 12, 96, 6, 10, true);
    check_conv(1, 32, 12, 4, 6, false);
}

#[test]
fn conv1x1_sixty_four_row_subgroup_kernel_forward_and_input_gradient() {
    // Cout 128 (two 64-row blocks of `matmul_cpu_sg64`, each lane two row quads, each
    // invocation two column quads) over 15 column quads with an odd K = Cin 7; then Cin 64, the input gradient's M, with K =
    // Cout 20.
    check_conv(2, 7, 128, 6, 10, true);
    check_conv(1, 64, 20, 4, 6, false);
    // Cout 48 and 112: a last block of 48 rows, whose lanes 4–7 repeat the last row quad
    // of the second half and store nothing there.
    check_conv(1, 12, 48, 6, 10, true);
    check_conv(1, 8, 112, 4, 6, false);
    // Three workgroups of column-quad pairs, the last partial and its last pair half
    // outside N (261 quads), in a batch of two; the same for the 32-row kernel.
    check_conv(2, 12, 64, 18, 58, false);
    check_conv(2, 12, 32, 18, 58, true);
}

#[test]
fn a_planted_error_in_any_subgroup_product_fails_the_conv1x1_check() {
    // The checks above must be able to fail: one row of weights taken from the wrong lane,
    // in each forward product and in the weight gradient's.
    for (planted, wrong) in [
        (
            "quad16(c, 8u, subgroupBroadcast(a, 6u), b1)",
            "quad16(c, 8u, subgroupBroadcast(a, 5u), b1)",
        ),
        (
            "r[5] += dots_c(subgroupBroadcast(a, 5u)",
            "r[5] += dots_c(subgroupBroadcast(a, 4u)",
        ),
        (
            "r[13] += dots_c(subgroupBroadcast(a8, 5u)",
            "r[13] += dots_c(subgroupBroadcast(a8, 4u)",
        ),
        (
            "r[29] += dots_c(subgroupBroadcast(a24, 5u)",
            "r[29] += dots_c(subgroupBroadcast(a24, 4u)",
        ),
        (
            "quad32(c, 28u, subgroupBroadcast(a, 7u), b, b2)",
            "quad32(c, 28u, subgroupBroadcast(a, 6u), b, b2)",
        ),
        ("r5 += dots(A4[pa5 + q]", "r5 += dots(A4[pa4 + q]"),
        (
            "quad8(c, 4u, subgroupBroadcast(a, 5u), b2)",
            "quad8(c, 4u, subgroupBroadcast(a, 4u), b2)",
        ),
        (
            "quad64(c, 44u, subgroupBroadcast(a2, 3u), b, b2)",
            "quad64(c, 44u, subgroupBroadcast(a2, 2u), b, b2)",
        ),
        // The 32- and 64-row kernels' second column quad alone.
        (
            "(*c)[q + 33u] = fma(vec4<f32>(w.y), b2",
            "(*c)[q + 33u] = fma(vec4<f32>(w.x), b2",
        ),
        (
            "(*c)[q + 66u] = fma(vec4<f32>(w.z), b2",
            "(*c)[q + 66u] = fma(vec4<f32>(w.y), b2",
        ),
    ] {
        // Every size a multiple of 4, so every product takes a subgroup kernel: Cout 16
        // the 16-row forward, Cout 32 the 32-row one, Cout 64 the 64-row one, Cout 8 the
        // 8-row one; the weight gradients of Cin 8 the k-split one, of Cin 32 the one with
        // four columns a lane, of Cin 16 the one with two (of Cout 32: 32 rows a subgroup).
        assert_plant_fails(planted, wrong, |gpu| {
            let planted = "cpu (planted error)";
            check_conv_on(planted, gpu, 1, 8, 16, 4, 8, true);
            check_conv_on(planted, gpu, 1, 8, 32, 4, 8, true);
            check_conv_on(planted, gpu, 1, 8, 64, 4, 8, true);
            check_conv_on(planted, gpu, 1, 32, 16, 4, 8, true);
            check_conv_on(planted, gpu, 1, 8, 8, 4, 8, true);
            check_conv_on(planted, gpu, 1, 16, 16, 4, 8, true);
            check_conv_on(planted, gpu, 1, 16, 32, 4, 8, true);
        });
    }
}

/// [`common::assert_plant_fails`] on `matmul_sg.wgsl`, where the adapter has the 8-lane
/// subgroups that file is for.
fn assert_plant_fails(planted: &str, wrong: &str, check: impl Fn(&rca_gpu::Gpu)) {
    let Some(cpu) = common::gpu_with(KernelClass::Cpu) else {
        return;
    };
    if cpu.info().subgroup_size == Some(8) {
        common::assert_plant_fails(rca_gpu::runtime::Shader::MatmulSg, planted, wrong, check);
    }
}

/// The inputs of a `conv1x1_cat` check: (xs, scale, w, b).
type CatArgs<'a> = (
    Vec<&'a [f64]>,
    Option<&'a [f64]>,
    &'a [f64],
    Option<&'a [f64]>,
);

fn split_cat(x: &[Vec<f64>], k: usize, scaled: bool, bias: bool) -> CatArgs<'_> {
    let xs = x[..k].iter().map(Vec::as_slice).collect();
    let s = scaled.then(|| x[k].as_slice());
    let w = x[k + usize::from(scaled)].as_slice();
    let b = bias.then(|| x[k + usize::from(scaled) + 1].as_slice());
    (xs, s, w, b)
}

/// `conv1x1_cat` on both kernel classes: inputs of `channels` (N, C_i, H, W), optionally
/// scaled per input channel and with a bias, against the f64 concat → scale → conv1x1.
fn check_cat(
    n: usize,
    channels: &[usize],
    cout: usize,
    hw: (usize, usize),
    scaled: bool,
    bias: bool,
) {
    for (class, gpu) in common::kernel_variants() {
        check_cat_on(class, &gpu, n, channels, cout, hw, scaled, bias);
    }
}

#[allow(clippy::too_many_arguments)]
fn check_cat_on(
    class: &str,
    gpu: &rca_gpu::Gpu,
    n: usize,
    channels: &[usize],
    cout: usize,
    hw: (usize, usize),
    scaled: bool,
    bias: bool,
) {
    let mut rng = common::rng();
    let p = hw.0 * hw.1;
    let cin: usize = channels.iter().sum();
    let mut inputs: Vec<_> = channels
        .iter()
        .map(|&c| input(&[n, c, hw.0, hw.1], uniform(&mut rng, n * c * p)))
        .collect();
    let k = channels.len();
    if scaled {
        inputs.push(input(&[cin, 1, 1, 1], uniform(&mut rng, cin)));
    }
    inputs.push(input(&[cout, cin, 1, 1], uniform(&mut rng, cout * cin)));
    if bias {
        inputs.push(input(&[cout], uniform(&mut rng, cout)));
    }
    let chans = channels.to_vec();
    check_op(
        gpu,
        &mut rng,
        &format!(
            "conv1x1_cat ({class} kernels) n{n} {channels:?}->{cout} {hw:?} scaled={scaled} bias={bias}"
        ),
        &inputs,
        |x| {
            let s = scaled.then(|| x[k]);
            let w = x[k + usize::from(scaled)];
            let b = bias.then(|| x[k + usize::from(scaled) + 1]);
            ops::conv1x1_cat(&x[..k], s, w, b)
        },
        |x| {
            let (xs, s, w, b) = split_cat(x, k, scaled, bias);
            r::conv1x1_cat(&xs, &chans, s, w, b, (n, cout, p))
        },
        |x, dy| {
            let (xs, s, w, _) = split_cat(x, k, scaled, bias);
            let (dxs, ds, dw, db) = r::conv1x1_cat_backward(&xs, &chans, s, w, dy, (n, cout, p));
            let mut out = dxs;
            out.extend(ds);
            out.push(dw);
            if bias {
                out.push(db);
            }
            out
        },
        common::Tol {
            atol: 1e-4,
            rtol: F32.rtol,
        },
    );
}

#[test]
fn conv1x1_cat_of_aligned_inputs_scaled_with_bias() {
    // The inception merge: four inputs, each a multiple of 4 channels (the CPU product).
    check_cat(2, &[4, 8, 4, 12], 8, (6, 8), true, true);
}

#[test]
fn conv1x1_cat_of_odd_inputs_and_without_scale_or_bias() {
    // One input channel (the first inception block's pool branch), odd sizes: the tiled
    // kernels; the hybrid pool's merge: two inputs, no scale.
    check_cat(2, &[1, 3, 5], 6, (5, 7), true, true);
    check_cat(1, &[4, 4], 4, (4, 4), false, true);
    check_cat(2, &[3, 2], 5, (3, 5), false, false);
}

#[test]
fn conv1x1_cat_reads_each_block_of_the_weights_in_place() {
    // Blocks of W at column offsets 0, 3 and 8. On a CPU adapter the first block's input
    // gradient (3 rows) takes the CPU kernels, its row quad reaching into the second
    // block's columns; the second's (offset 3) takes the tiled kernels.
    check_cat(1, &[3, 5, 8], 8, (4, 8), true, true);
    // Outputs of 48 and 32 rows and input gradients of 16 and 32: the 64-, 32- and
    // 16-row CPU products, each block read from an offset of the one weight matrix.
    check_cat(1, &[16, 32], 48, (4, 8), true, true);
    check_cat(1, &[8, 16, 8], 32, (4, 4), false, true);
}

#[test]
fn conv1x1_input_gradients_where_the_weight_rows_are_not_whole_quads() {
    // A layer over one channel (W's rows of 1), and a concatenation of 8 + 8 + 1 channels
    // (rows of 17, as the first block's 3·16 + 1): on a CPU adapter the input gradients
    // read a copy of W with its rows padded to a multiple of 4, the last block's of one row.
    check_conv(2, 1, 12, 4, 8, true);
    check_cat(1, &[8, 8, 1], 8, (4, 8), true, true);
}

#[test]
fn conv1x1_cat_of_five_inputs_in_a_batch() {
    // Five products added into one output, the inputs' batch strides all different;
    // 16 and 8 rows: `matmul_cpu_sg` and `_sg8` on a CPU adapter with subgroups.
    check_cat(2, &[4, 4, 8, 4, 4], 16, (4, 8), true, true);
    check_cat(2, &[8, 4, 12], 8, (2, 8), false, false);
}

#[test]
fn conv1x1_cat_weight_gradient_blocks_summed_from_several_chunks_of_k() {
    // 2 × 128·64 pixels: each input's weight gradient is split along K into partial
    // products whose sum lands straight in its block of columns of dWs.
    check_cat(2, &[4, 8, 4], 8, (128, 64), true, true);
    check_cat(1, &[12, 4], 16, (96, 80), false, false);
}

#[test]
fn conv1x1_cat_as_one_product_over_its_inputs() {
    // On a CPU adapter with 8-lane subgroups a concatenation of 2 to 4 inputs into more
    // than 8 rows is one product that reads the inputs in turn: the first inception
    // block's merge (16 + 16 + 16 + 1 channels, the last input half a pair of steps of k)
    // on the 16-row kernel, three inputs on the 32-row one, two on the 64-row one with a
    // last block of 48 rows and a partial workgroup, four with an input of one channel
    // on the 8-row one, each in a batch of two.
    check_cat(2, &[16, 16, 16, 1], 16, (4, 8), true, true);
    check_cat(2, &[8, 4, 12], 32, (4, 8), false, true);
    check_cat(2, &[16, 32], 112, (2, 8), true, false);
    check_cat(2, &[4, 1, 8, 3], 8, (4, 4), true, true);
    // With batch norm folded and the ReLU in the store.
    check_cat_bn(2, &[16, 16, 16, 16], 16, (4, 8), false, true);
}

#[test]
fn a_concatenation_of_up_to_four_inputs_is_one_product_on_a_cpu_adapter() {
    let Some(gpu) = common::own_gpu() else { return };
    let info = gpu.info();
    if info.kernels != KernelClass::Cpu || info.subgroup_size != Some(8) {
        return;
    }
    assert!(info.timestamp_queries, "lavapipe has timestamp queries");
    let t = |shape: &[usize]| rca_gpu::Tensor::full(&gpu, shape, 0.5).unwrap();
    for (channels, cout, entry) in [
        (&[16, 16, 16, 1][..], 16, "matmul_cpu_sg"),
        (&[8, 4, 12], 32, "matmul_cpu_sg32"),
        (&[16, 32], 48, "matmul_cpu_sg64"),
        (&[4, 4, 8, 1], 8, "matmul_cpu_sg8"),
    ] {
        let xs: Vec<_> = channels.iter().map(|&c| t(&[2, c, 4, 8])).collect();
        let refs: Vec<_> = xs.iter().collect();
        let total: usize = channels.iter().sum();
        let (w, b) = (t(&[cout, total, 1, 1]), t(&[cout]));
        gpu.start_profile().unwrap();
        let y = ops::conv1x1_cat(&refs, None, &w, Some(&b)).unwrap();
        let kernels: Vec<&str> = gpu
            .finish_profile()
            .unwrap()
            .iter()
            .map(|d| d.kernel)
            .filter(|k| k.starts_with("matmul"))
            .collect();
        assert_eq!(kernels, [entry], "{channels:?} -> {cout}");
        // Every output is b + Σ 0.5·0.5 over the inputs' channels.
        let want = 0.5 + 0.25 * total as f32;
        assert!(y.to_vec().unwrap().iter().all(|&v| v == want));
    }
}

#[test]
fn a_planted_error_in_a_concatenations_product_fails_its_check() {
    // The checks above must be able to fail where the product moves from one input to
    // the next: the wrong binding, the wrong block of weights, the wrong batch stride or
    // length of an input.
    for (planted, wrong) in [
        ("case 2u: { return X2[i]; }", "case 2u: { return X1[i]; }"),
        ("if (s > 2u) { k += p.k2; }", "if (s > 2u) { k += p.k1; }"),
        (
            "return z * k_seg(s) * p.b_sk + n0;",
            "return z * p.k * p.b_sk + n0;",
        ),
        ("case 3u: { return p.k3; }", "case 3u: { return p.k2; }"),
    ] {
        assert_plant_fails(planted, wrong, |gpu| {
            let planted = "cpu (planted error)";
            check_cat_on(planted, gpu, 2, &[8, 4, 12, 16], 16, (4, 8), false, true);
            check_cat_on(planted, gpu, 2, &[12, 4, 8, 4], 32, (4, 8), true, false);
            check_cat_on(planted, gpu, 2, &[4, 8, 12, 8], 64, (4, 8), false, true);
            check_cat_on(planted, gpu, 2, &[8, 4, 1, 12], 8, (4, 8), true, true);
        });
    }
}

#[test]
fn conv1x1_cat_of_one_input_is_conv1x1_with_a_scale() {
    check_cat(2, &[8], 4, (4, 8), true, false);
}

#[test]
fn conv1x1_cat_weight_gradient_split_along_k() {
    // 50·32 pixels per sample: each block's weight gradient splits K.
    check_cat(2, &[4, 8], 8, (50, 32), true, true);
}

#[test]
fn conv1x1_cat_names_the_mismatch() {
    let Some(gpu) = common::gpu() else { return };
    let a = rca_gpu::Tensor::zeros(&gpu, [1, 3, 4, 4]).unwrap();
    let b = rca_gpu::Tensor::zeros(&gpu, [1, 2, 4, 5]).unwrap();
    let w = rca_gpu::Tensor::zeros(&gpu, [8, 5, 1, 1]).unwrap();
    let e = ops::conv1x1_cat(&[&a, &b], None, &w, None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "shape mismatch in conv1x1_cat: lhs (1, 3, 4, 4), rhs (1, 2, 4, 5)"
    );
    let w6 = rca_gpu::Tensor::zeros(&gpu, [8, 6, 1, 1]).unwrap();
    let e = ops::conv1x1_cat(&[&a, &a], None, &w6, None);
    assert!(e.is_ok());
    let e = ops::conv1x1_cat(&[&a, &a], None, &w, None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "shape mismatch in conv1x1_cat: lhs (1, 6, 4, 4), rhs (8, 5, 1, 1)"
    );
}

/// `conv1x1_cat_bn_eval` (batch norm folded into the weights, the ReLU into the store) on
/// both kernel classes against the f64 concat → scale → conv1x1 → BN(running) → ReLU.
fn check_cat_bn(
    n: usize,
    channels: &[usize],
    cout: usize,
    hw: (usize, usize),
    scaled: bool,
    relu: bool,
) {
    for (class, gpu) in common::kernel_variants() {
        let mut rng = common::rng();
        let p = hw.0 * hw.1;
        let cin: usize = channels.iter().sum();
        let data: Vec<Vec<f32>> = channels
            .iter()
            .map(|&c| uniform(&mut rng, n * c * p))
            .collect();
        let scale = uniform(&mut rng, cin);
        let w = uniform(&mut rng, cout * cin);
        let b = uniform(&mut rng, cout);
        let gamma = uniform(&mut rng, cout);
        let beta = uniform(&mut rng, cout);
        let mean = uniform(&mut rng, cout);
        // Variances in [0.5, 1.5].
        let var: Vec<f32> = uniform(&mut rng, cout).iter().map(|v| 1.0 + v).collect();
        let t = |shape: &[usize], v: &[f32]| rca_gpu::Tensor::from_vec(&gpu, shape, v).unwrap();
        let xs: Vec<_> = channels
            .iter()
            .zip(&data)
            .map(|(&c, d)| t(&[n, c, hw.0, hw.1], d))
            .collect();
        let refs: Vec<_> = xs.iter().collect();
        let st = t(&[cin, 1, 1, 1], &scale);
        let bn = [&gamma, &beta, &mean, &var].map(|v| t(&[cout], v));
        let y = ops::conv1x1_cat_bn_eval(
            &refs,
            scaled.then_some(&st),
            &t(&[cout, cin, 1, 1], &w),
            &t(&[cout], &b),
            [&bn[0], &bn[1], &bn[2], &bn[3]],
            1e-3,
            relu,
        )
        .unwrap();
        let f = |v: &[f32]| common::to_f64(v);
        let xs64: Vec<Vec<f64>> = data.iter().map(|d| f(d)).collect();
        let xs64: Vec<&[f64]> = xs64.iter().map(Vec::as_slice).collect();
        let s64 = f(&scale);
        let z = r::conv1x1_cat(
            &xs64,
            channels,
            scaled.then_some(s64.as_slice()),
            &f(&w),
            Some(&f(&b)),
            (n, cout, p),
        );
        let mut want = r::norm::batch_norm_eval(
            &z,
            &f(&gamma),
            &f(&beta),
            &f(&mean),
            &f(&var),
            n,
            cout,
            p,
            1e-3,
        );
        if relu {
            want = r::relu(&want);
        }
        common::assert_close(
            &format!("conv1x1_cat_bn_eval ({class} kernels) {channels:?}->{cout} relu={relu}"),
            &y.to_vec().unwrap(),
            &want,
            common::Tol {
                atol: 1e-4,
                rtol: F32.rtol,
            },
        );
    }
}

#[test]
fn batch_norm_folds_into_the_merge_and_the_pointwise_products() {
    // The inception pool branch (two inputs, ReLU), a SepConv(…, 1) with its scale, a
    // shortcut without ReLU, and odd sizes on the tiled kernels.
    check_cat_bn(2, &[4, 4], 8, (6, 8), false, true);
    check_cat_bn(2, &[8], 4, (4, 8), true, true);
    check_cat_bn(1, &[12], 8, (8, 8), false, false);
    check_cat_bn(2, &[1, 3], 5, (3, 7), true, true);
}

#[test]
fn the_folded_batch_norm_refuses_a_recording_tape() {
    let Some(gpu) = common::gpu() else { return };
    let x = rca_gpu::Tensor::zeros(&gpu, [1, 4, 4, 4]).unwrap();
    let w = rca_gpu::Tensor::zeros(&gpu, [4, 4, 1, 1]).unwrap();
    let v = rca_gpu::Tensor::zeros(&gpu, [4]).unwrap();
    let _tape = rca_gpu::Tape::start();
    let e = ops::conv1x1_cat_bn_eval(&[&x], None, &w, &v, [&v, &v, &v, &v], 1e-3, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("is for inference"), "{e}");
}
