//! Element-wise ops against their CPU references, forward and backward, on batched
//! shapes that are not multiples of the workgroup size (256).

use rca_gpu::{ops, reference as r};

use crate::common::{self, F32, check_op, input, uniform, uniform_away_from_zero};

/// Batch 3, 5 channels, 7×9: 945 elements, not a multiple of 256 (nor of 4: the scalar
/// kernels); 3×5×7×8 = 840, whole vec4s (the vec4 twins of the simple maps), 210 of
/// them, not a multiple of 256 either; and 2×3×16×26 = 2496, 624 vec4s, more than one
/// workgroup's at one vec4 per invocation (few pipelines).
const SHAPES: [[usize; 4]; 3] = [[3, 5, 7, 9], [3, 5, 7, 8], [2, 3, 16, 26]];
const SHAPE: [usize; 4] = SHAPES[0];
const N: usize = 3 * 5 * 7 * 9;

/// Each shape on the shared device and on one with few pipelines (whose vec4 maps take
/// one vec4 per invocation instead of four).
fn shapes_on_every_device() -> Vec<([usize; 4], (&'static str, rca_gpu::Gpu))> {
    common::shared_and_few()
        .into_iter()
        .flat_map(|d| SHAPES.map(|s| (s, d.clone())))
        .collect()
}

#[test]
fn add_matches_reference_and_gradients() {
    for (shape, (device, gpu)) in shapes_on_every_device() {
        let n: usize = shape.iter().product();
        let mut rng = common::rng();
        let (a, b) = (uniform(&mut rng, n), uniform(&mut rng, n));
        check_op(
            &gpu,
            &mut rng,
            &format!("add ({device})"),
            &[input(&shape, a), input(&shape, b)],
            |x| ops::add(x[0], x[1]),
            |x| r::add(&x[0], &x[1]),
            |_, dy| vec![dy.to_vec(), dy.to_vec()],
            F32,
        );
    }
}

/// Sums of 2 to 16 tensors: one pass of up to 7 over whole vec4s, passes of the running
/// sum and the next 6 beyond that, a chain of adds over scalars; bit for bit the chain of
/// adds, left to right, that back-propagation used to sum a tensor's contributions.
fn check_add_many(gpu: &rca_gpu::Gpu, device: &str, shape: [usize; 4], terms: usize) {
    let n: usize = shape.iter().product();
    let mut rng = common::rng();
    let xs: Vec<Vec<f32>> = (0..terms).map(|_| uniform(&mut rng, n)).collect();
    let inputs: Vec<_> = xs.iter().map(|x| input(&shape, x.clone())).collect();
    check_op(
        gpu,
        &mut rng,
        &format!("add_many of {terms} {shape:?} ({device})"),
        &inputs,
        ops::add_many,
        |x| x[1..].iter().fold(x[0].clone(), |acc, t| r::add(&acc, t)),
        |_, dy| vec![dy.to_vec(); terms],
        F32,
    );
    let up = |x: &Vec<f32>| rca_gpu::Tensor::from_vec(gpu, shape, x).unwrap();
    let ts: Vec<_> = xs.iter().map(up).collect();
    let refs: Vec<&rca_gpu::Tensor> = ts.iter().collect();
    let many = ops::add_many(&refs).unwrap().to_vec().unwrap();
    let chain = refs[1..]
        .iter()
        .fold(refs[0].clone(), |acc, t| ops::add(&acc, t).unwrap());
    assert_eq!(
        many,
        chain.to_vec().unwrap(),
        "add_many of {terms} ({device})"
    );
}

#[test]
fn add_many_matches_a_chain_of_adds_and_its_gradients() {
    for (shape, (device, gpu)) in shapes_on_every_device() {
        for terms in [2, 3, 5, 7, 8, 16] {
            check_add_many(&gpu, device, shape, terms);
        }
    }
}

#[test]
fn a_planted_error_in_add_many_fails_its_check() {
    let plants = [
        (
            "if (TERMS > 4u) { s += t5[i]; }",
            "if (TERMS > 4u) { s += t4[i]; }",
        ),
        ("s += t3[i];", "s += 1.001 * t3[i];"),
    ];
    for (planted, wrong) in plants {
        common::assert_plant_fails(
            rca_gpu::runtime::Shader::Elementwise,
            planted,
            wrong,
            |gpu| {
                check_add_many(gpu, "cpu (planted error)", SHAPES[1], 5);
            },
        );
    }
}

#[test]
fn mul_matches_reference_and_gradients() {
    for (shape, (device, gpu)) in shapes_on_every_device() {
        let n: usize = shape.iter().product();
        let mut rng = common::rng();
        let (a, b) = (uniform(&mut rng, n), uniform(&mut rng, n));
        check_op(
            &gpu,
            &mut rng,
            &format!("mul ({device})"),
            &[input(&shape, a), input(&shape, b)],
            |x| ops::mul(x[0], x[1]),
            |x| r::mul(&x[0], &x[1]),
            |x, dy| vec![r::mul(dy, &x[1]), r::mul(dy, &x[0])],
            F32,
        );
    }
}

#[test]
fn mul_bcast_broadcasts_a_single_channel_map_over_channels() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    // P = 63 runs the scalar kernels, P = 72 the vec4 ones.
    for (n, c, h, w) in [(3, 5, 7, 9), (3, 5, 8, 9)] {
        let a = uniform(&mut rng, n * c * h * w);
        let b = uniform(&mut rng, n * h * w);
        check_op(
            &gpu,
            &mut rng,
            "mul_bcast",
            &[input(&[n, c, h, w], a), input(&[n, 1, h, w], b)],
            |x| ops::mul_bcast(x[0], x[1]),
            |x| r::mul_bcast(&x[0], &x[1], n, c, h * w),
            |x, dy| {
                let (da, db) = r::mul_bcast_backward(&x[0], &x[1], dy, n, c, h * w);
                vec![da, db]
            },
            F32,
        );
    }
}

#[test]
fn mul_bcast_rejects_a_map_with_several_channels() {
    let Some(gpu) = common::gpu() else { return };
    let a = rca_gpu::Tensor::zeros(&gpu, [2, 3, 4, 4]).unwrap();
    let b = rca_gpu::Tensor::zeros(&gpu, [2, 3, 4, 4]).unwrap();
    let e = ops::mul_bcast(&a, &b).unwrap_err().to_string();
    assert!(e.contains("mul_bcast") && e.contains("(2, 3, 4, 4)"), "{e}");
}

#[test]
fn scale_matches_reference_and_gradients() {
    for (shape, (device, gpu)) in shapes_on_every_device() {
        let n: usize = shape.iter().product();
        let mut rng = common::rng();
        let a = uniform(&mut rng, n);
        let s = -1.75f32;
        check_op(
            &gpu,
            &mut rng,
            &format!("scale ({device})"),
            &[input(&shape, a)],
            |x| ops::scale(x[0], s),
            |x| r::scale(&x[0], f64::from(s)),
            |_, dy| vec![r::scale(dy, f64::from(s))],
            F32,
        );
    }
}

#[test]
fn relu_matches_reference_and_gradients() {
    for (shape, (device, gpu)) in shapes_on_every_device() {
        let n: usize = shape.iter().product();
        let mut rng = common::rng();
        // Away from the kink, where finite differences are meaningful.
        let a = uniform_away_from_zero(&mut rng, n, 1e-3);
        check_op(
            &gpu,
            &mut rng,
            &format!("relu ({device})"),
            &[input(&shape, a)],
            |x| ops::relu(x[0]),
            |x| r::relu(&x[0]),
            |x, dy| vec![r::relu_backward(&x[0], dy)],
            F32,
        );
    }
}

#[test]
fn sigmoid_matches_reference_and_gradients() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let a: Vec<f32> = uniform(&mut rng, N).iter().map(|v| 8.0 * v).collect();
    check_op(
        &gpu,
        &mut rng,
        "sigmoid",
        &[input(&SHAPE, a)],
        |x| ops::sigmoid(x[0]),
        |x| r::sigmoid(&x[0]),
        |x, dy| vec![r::sigmoid_backward(&r::sigmoid(&x[0]), dy)],
        F32,
    );
}

#[test]
fn sigmoid_saturates_without_overflow_at_large_logits() {
    let Some(gpu) = common::gpu() else { return };
    let x = rca_gpu::Tensor::from_vec(&gpu, [4], &[-100.0, -50.0, 50.0, 100.0]).unwrap();
    let y = ops::sigmoid(&x).unwrap().to_vec().unwrap();
    let want = r::sigmoid(&[-100.0, -50.0, 50.0, 100.0]);
    common::assert_close("sigmoid at ±50, ±100", &y, &want, common::F32);
}

#[test]
fn binary_ops_name_the_op_and_both_shapes_on_mismatch() {
    let Some(gpu) = common::gpu() else { return };
    let a = rca_gpu::Tensor::zeros(&gpu, [2, 3, 4, 5]).unwrap();
    let b = rca_gpu::Tensor::zeros(&gpu, [2, 3, 5, 4]).unwrap();
    let e = ops::add(&a, &b).unwrap_err().to_string();
    assert_eq!(
        e,
        "shape mismatch in add: lhs (2, 3, 4, 5), rhs (2, 3, 5, 4)"
    );
}
