//! The tape: what it records, gradient accumulation when a tensor feeds several ops,
//! no-grad mode, leaves, and errors.

use rca_gpu::{Tape, Tensor, no_grad, ops, reference as r};

use crate::common::{self, F32, assert_close, to_f64, uniform};

#[test]
fn gradients_accumulate_when_a_tensor_feeds_several_ops() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let xs = uniform(&mut rng, 3 * 2 * 5 * 3);
    let x = Tensor::from_vec(&gpu, [3, 2, 5, 3], &xs)
        .unwrap()
        .requires_grad();
    // L = Σ (x⊙x + x + relu(x))  ⇒  dL/dx = 2x + 1 + [x > 0]
    let tape = Tape::start();
    let sq = ops::mul(&x, &x).unwrap();
    let l =
        ops::sum(&ops::add(&ops::add(&sq, &x).unwrap(), &ops::relu(&x).unwrap()).unwrap()).unwrap();
    let grads = tape.backward(&l).unwrap();
    let want: Vec<f64> = to_f64(&xs)
        .iter()
        .map(|&v| 2.0 * v + 1.0 + if v > 0.0 { 1.0 } else { 0.0 })
        .collect();
    assert_close(
        "d/dx of x² + x + relu(x)",
        &grads.get(&x).unwrap().to_vec().unwrap(),
        &want,
        F32,
    );
}

#[test]
fn the_same_tensor_on_both_sides_of_an_op_gets_both_gradients() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let xs = uniform(&mut rng, 40);
    let x = Tensor::from_vec(&gpu, [40], &xs).unwrap().requires_grad();
    // L = Σ (x + x) ⊙ x = Σ 2x²  ⇒  4x (add hands the same dy to both inputs)
    let tape = Tape::start();
    let l = ops::sum(&ops::mul(&ops::add(&x, &x).unwrap(), &x).unwrap()).unwrap();
    let g = tape.backward(&l).unwrap();
    let want = r::scale(&to_f64(&xs), 4.0);
    assert_close(
        "d/dx of 2x²",
        &g.get(&x).unwrap().to_vec().unwrap(),
        &want,
        F32,
    );
}

#[test]
fn no_grad_records_nothing() {
    let Some(gpu) = common::gpu() else { return };
    let x = Tensor::full(&gpu, [4, 4], 1.0).unwrap().requires_grad();
    let tape = Tape::start();
    let y = no_grad(|| ops::relu(&ops::scale(&x, 2.0).unwrap()).unwrap());
    assert_eq!(tape.len(), 0);
    assert!(
        rca_gpu::autodiff::is_recording(),
        "recording resumes after no_grad"
    );
    let e = tape
        .backward(&ops::sum(&y).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not depend on any parameter"), "{e}");
}

#[test]
fn ops_on_untracked_tensors_are_not_recorded() {
    let Some(gpu) = common::gpu() else { return };
    let a = Tensor::full(&gpu, [8], 1.0).unwrap();
    let p = Tensor::full(&gpu, [8], 2.0).unwrap().requires_grad();
    let tape = Tape::start();
    let c = ops::add(&a, &a).unwrap(); // no parameter involved
    assert_eq!(tape.len(), 0);
    let _ = ops::mul(&c, &p).unwrap();
    assert_eq!(tape.len(), 1);
}

#[test]
fn only_parameters_keep_gradients() {
    let Some(gpu) = common::gpu() else { return };
    let p = Tensor::full(&gpu, [2, 3, 4, 4], 0.5)
        .unwrap()
        .requires_grad();
    let tape = Tape::start();
    let h = ops::relu(&p).unwrap();
    let l = ops::mean(&h).unwrap();
    let g = tape.backward(&l).unwrap();
    assert_eq!(g.len(), 1);
    assert!(g.get(&h).is_none(), "intermediate gradients are freed");
    let want = vec![1.0 / 96.0; 96];
    assert_close(
        "d mean(relu(p)) / dp",
        &g.get(&p).unwrap().to_vec().unwrap(),
        &want,
        F32,
    );
}

#[test]
fn backward_needs_a_one_element_loss() {
    let Some(gpu) = common::gpu() else { return };
    let p = Tensor::full(&gpu, [3], 1.0).unwrap().requires_grad();
    let tape = Tape::start();
    let y = ops::scale(&p, 2.0).unwrap();
    let e = tape.backward(&y).unwrap_err().to_string();
    assert!(e.contains("one-element loss") && e.contains("(3)"), "{e}");
}

#[test]
fn backward_frees_saved_activations() {
    let Ok(gpu) = rca_gpu::Gpu::new(&rca_gpu::AdapterRequest::from_env()) else {
        assert!(common::gpu().is_none());
        return;
    };
    let p = Tensor::full(&gpu, [64, 64], 0.5).unwrap().requires_grad();
    let live_before = gpu.stats().pool.live;
    let tape = Tape::start();
    let l = {
        let a = ops::relu(&p).unwrap();
        let b = ops::mul(&a, &a).unwrap();
        ops::sum(&ops::sigmoid(&b).unwrap()).unwrap()
    };
    // a, b, the sigmoid output are held by the tape alone now.
    assert!(gpu.stats().pool.live > live_before + 1);
    let g = tape.backward(&l).unwrap();
    drop(l);
    // Left: p (counted before) and its gradient.
    assert_eq!(gpu.stats().pool.live, live_before + 1, "{:?}", gpu.stats());
    drop(g);
}
