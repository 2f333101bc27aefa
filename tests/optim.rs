//! Adam against its f64 reference, step by step over ten steps on random data, and the
//! properties the training loop relies on: updates in place, no recompilation when the
//! learning rate changes, shape and aliasing errors.

use rand::Rng;
use rca_gpu::ops::optim::{ADAM_BETA1, ADAM_BETA2, ADAM_EPS, ADAM_LR};
use rca_gpu::reference::optim::{Adam, adam_step};
use rca_gpu::{Tensor, ops};

use crate::common::{self, F32, to_f64, uniform};

fn hyper(lr: f32) -> Adam {
    Adam {
        lr: f64::from(lr),
        beta1: f64::from(ADAM_BETA1),
        beta2: f64::from(ADAM_BETA2),
        eps: f64::from(ADAM_EPS),
    }
}

#[test]
fn adam_matches_reference_step_by_step_over_ten_steps() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    // 3·1001 elements: not a multiple of a workgroup's 1024, and shaped like a weight.
    let shape = [3, 1001];
    let len = 3 * 1001;
    let p0 = uniform(&mut rng, len);
    let param = Tensor::from_vec(&gpu, shape, &p0).unwrap();
    let m = Tensor::zeros(&gpu, shape).unwrap();
    let v = Tensor::zeros(&gpu, shape).unwrap();
    let mut p64 = to_f64(&p0);
    let mut m64 = vec![0.0; len];
    let mut v64 = vec![0.0; len];
    for t in 1..=10u32 {
        // A schedule: the learning rate changes along the way (lr is an immediate).
        let lr = if t <= 5 { 0.01 } else { 0.003 };
        // Gradients of mixed scales, so that √v spans orders of magnitude.
        let scale = [1.0, 1e-3, 10.0][t as usize % 3];
        let g: Vec<f32> = uniform(&mut rng, len).iter().map(|x| x * scale).collect();
        let gt = Tensor::from_vec(&gpu, shape, &g).unwrap();
        ops::adam_step(&param, &gt, &m, &v, t, lr, ADAM_BETA1, ADAM_BETA2, ADAM_EPS).unwrap();
        adam_step(&mut p64, &to_f64(&g), &mut m64, &mut v64, t, hyper(lr));
        common::assert_close(&format!("m at step {t}"), &m.to_vec().unwrap(), &m64, F32);
        common::assert_close(&format!("v at step {t}"), &v.to_vec().unwrap(), &v64, F32);
        common::assert_close(
            &format!("param at step {t}"),
            &param.to_vec().unwrap(),
            &p64,
            F32,
        );
    }
}

#[test]
fn adam_on_lengths_around_whole_vec4s() {
    // The whole vec4s take `adam4`, the 1–3 elements after them `adam`: shorter than one
    // vec4, exactly one, a few with a tail of 1, and more than a workgroup's 1024 vec4s
    // with a tail of 3.
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    for len in [3, 4, 9, 4 * 1024 + 7] {
        let p0 = uniform(&mut rng, len);
        let param = Tensor::from_vec(&gpu, [len], &p0).unwrap();
        let m = Tensor::zeros(&gpu, [len]).unwrap();
        let v = Tensor::zeros(&gpu, [len]).unwrap();
        let (mut p64, mut m64, mut v64) = (to_f64(&p0), vec![0.0; len], vec![0.0; len]);
        for t in 1..=3u32 {
            let g = uniform(&mut rng, len);
            let gt = Tensor::from_vec(&gpu, [len], &g).unwrap();
            ops::adam_step(
                &param, &gt, &m, &v, t, 0.01, ADAM_BETA1, ADAM_BETA2, ADAM_EPS,
            )
            .unwrap();
            adam_step(&mut p64, &to_f64(&g), &mut m64, &mut v64, t, hyper(0.01));
        }
        let what = format!("param after 3 steps, {len} elements");
        common::assert_close(&what, &param.to_vec().unwrap(), &p64, F32);
        let what = format!("v after 3 steps, {len} elements");
        common::assert_close(&what, &v.to_vec().unwrap(), &v64, F32);
    }
}

#[test]
fn adam_first_step_moves_each_parameter_by_about_lr() {
    // At t = 1 from m = v = 0 the step is lr·g/(|g| + ε/√(1 − β2)) ≈ lr·sign(g) for
    // |g| ≫ ε/√(1 − β2) ≈ 3e-6: a closed form independent of the reference.
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let len = 777;
    let p0 = uniform(&mut rng, len);
    let g = common::uniform_away_from_zero(&mut rng, len, 0.1);
    let param = Tensor::from_vec(&gpu, [len], &p0).unwrap();
    let grad = Tensor::from_vec(&gpu, [len], &g).unwrap();
    let m = Tensor::zeros(&gpu, [len]).unwrap();
    let v = Tensor::zeros(&gpu, [len]).unwrap();
    ops::adam_step(
        &param, &grad, &m, &v, 1, ADAM_LR, ADAM_BETA1, ADAM_BETA2, ADAM_EPS,
    )
    .unwrap();
    let want: Vec<f64> = p0
        .iter()
        .zip(&g)
        .map(|(&p, &g)| f64::from(p) - f64::from(ADAM_LR) * f64::from(g.signum()))
        .collect();
    common::assert_close("param after one step", &param.to_vec().unwrap(), &want, F32);
}

#[test]
fn adam_with_a_new_learning_rate_compiles_nothing() {
    // A device of its own: tests running beside it compile pipelines on the shared one.
    let Some(gpu) = common::own_gpu() else { return };
    let t = |v: f32| Tensor::full(&gpu, [100], v).unwrap();
    let (param, grad, m, v) = (t(1.0), t(0.5), t(0.0), t(0.0));
    ops::adam_step(
        &param, &grad, &m, &v, 1, 1e-3, ADAM_BETA1, ADAM_BETA2, ADAM_EPS,
    )
    .unwrap();
    gpu.sync();
    let before = gpu.stats().pipelines_compiled;
    for (step, lr) in [(2, 5e-4), (3, 2.5e-4), (4, 1e-6)] {
        ops::adam_step(
            &param, &grad, &m, &v, step, lr, ADAM_BETA1, ADAM_BETA2, ADAM_EPS,
        )
        .unwrap();
    }
    gpu.sync();
    assert_eq!(gpu.stats().pipelines_compiled, before);
}

#[test]
fn adam_rejects_mismatched_sizes_and_aliased_state() {
    let Some(gpu) = common::gpu() else { return };
    let p = Tensor::zeros(&gpu, [4, 5]).unwrap();
    let g = Tensor::zeros(&gpu, [4, 5]).unwrap();
    let m = Tensor::zeros(&gpu, [4, 5]).unwrap();
    let short = Tensor::zeros(&gpu, [19]).unwrap();
    let e = ops::adam_step(&p, &g, &m, &short, 1, 1e-3, 0.9, 0.999, 1e-7)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "shape mismatch in adam_step: lhs (4, 5), rhs (19)");
    let e = ops::adam_step(&p, &g, &m, &m.clone(), 1, 1e-3, 0.9, 0.999, 1e-7)
        .unwrap_err()
        .to_string();
    assert!(e.contains("adam_step") && e.contains("distinct"), "{e}");
}

/// The training loop's Adam ([`rca_gpu::train::Adam`]) over a network's parameters, which
/// live as slices of flat buffers: held to the per-tensor reference over three steps,
/// with one launch per flat buffer, on a device with the usual binding limit (one
/// buffer) and on one whose limit splits them into several; a parameter the loss does
/// not reach keeps its value and its moments, and splits its buffer's launch in two.
#[test]
fn adam_updates_a_networks_flat_parameter_buffers_in_one_launch_each() {
    use rca_gpu::nn::{ParamKind, ParamSpec};
    use rca_gpu::{AdapterRequest, Gpu, Tape};

    if common::gpu().is_none() {
        return;
    }
    let mut rng = common::rng();
    let mut spec = ParamSpec::default();
    let kernel = ParamKind::Kernel {
        fan_in: 9,
        fan_out: 9,
    };
    let sizes: [(&[usize], ParamKind); 7] = [
        (&[5, 3, 3, 3], kernel),
        (&[5], ParamKind::Zeros),
        (&[5], ParamKind::RunningMean),
        (&[700], kernel),
        (&[17, 31], kernel),
        (&[64], ParamKind::Ones),
        (&[3, 333], kernel),
    ];
    for (i, (shape, kind)) in sizes.iter().enumerate() {
        spec.add(format!("p{i}"), shape, *kind);
    }
    // Parameter 4 (17×31) is not reached by the loss.
    let unreached = 4;
    // (binding limit, flat buffers, launches): at 1024 elements a buffer, (p0, p1, p3),
    // (p4, p5) and (p6), where p4 opens its buffer and so does not split its launch.
    for (cap, groups, launches) in [(None, 1, 2), (Some(4 * 1024), 3, 3)] {
        let gpu = Gpu::new(&AdapterRequest {
            max_binding: cap,
            ..AdapterRequest::from_env()
        })
        .unwrap();
        gpu.set_poison(true);
        let params = spec.init(&gpu, rng.random()).unwrap();
        assert_eq!(params.groups().len(), groups, "binding limit {cap:?}");
        let mut adam = rca_gpu::train::Adam::new(&params, 0.01).unwrap();
        let mut want: Vec<Vec<f64>> = params
            .to_host()
            .unwrap()
            .iter()
            .map(|v| to_f64(v))
            .collect();
        let mut moments: Vec<(Vec<f64>, Vec<f64>)> = want
            .iter()
            .map(|v| (vec![0.0; v.len()], vec![0.0; v.len()]))
            .collect();
        for t in 1..=3u32 {
            // loss = Σ_i Σ c_i·p_i over the reached trainable parameters: ∂loss/∂p_i = c_i.
            let tape = Tape::start();
            let mut loss: Option<Tensor> = None;
            let mut coefficients = vec![Vec::new(); sizes.len()];
            for (i, (info, p)) in params.iter().enumerate() {
                if !info.kind.trainable() || i == unreached {
                    continue;
                }
                coefficients[i] = uniform(&mut rng, p.numel());
                let c = Tensor::from_vec(&gpu, p.shape().clone(), &coefficients[i]).unwrap();
                let term = ops::sum(&ops::mul(p, &c).unwrap()).unwrap();
                loss = Some(match loss {
                    None => term,
                    Some(l) => ops::add(&l, &term).unwrap(),
                });
            }
            let grads = tape.backward(&loss.unwrap()).unwrap();
            let before = gpu.stats().dispatches;
            adam.update(&params, grads).unwrap();
            assert_eq!(
                gpu.stats().dispatches - before,
                launches,
                "one launch per flat buffer, and one more where p{unreached} splits one"
            );
            for (i, (info, p)) in params.iter().enumerate() {
                if info.kind.trainable() && i != unreached {
                    let (m, v) = &mut moments[i];
                    adam_step(
                        &mut want[i],
                        &to_f64(&coefficients[i]),
                        m,
                        v,
                        t,
                        hyper(0.01),
                    );
                }
                let what = format!("p{i} at step {t}, binding limit {cap:?}");
                common::assert_close(&what, &p.to_vec().unwrap(), &want[i], F32);
                if let Some((m, v)) = &adam.moments[i] {
                    common::assert_close(&what, &m.to_vec().unwrap(), &moments[i].0, F32);
                    common::assert_close(&what, &v.to_vec().unwrap(), &moments[i].1, F32);
                }
            }
        }
    }
}
