//! Adam in Keras' form (the kernel's; see `ops::optim`), in f64.

/// Adam's hyper-parameters.
#[derive(Clone, Copy, Debug)]
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

/// One step `t` (from 1) in place:
/// m ← β1·m + (1 − β1)·g, v ← β2·v + (1 − β2)·g²,
/// param ← param − lr·√(1 − β2^t)/(1 − β1^t) · m/(√v + ε).
pub fn adam_step(param: &mut [f64], grad: &[f64], m: &mut [f64], v: &mut [f64], t: u32, h: Adam) {
    let t = i32::try_from(t).expect("step fits in i32");
    let lr_t = h.lr * (1.0 - h.beta2.powi(t)).sqrt() / (1.0 - h.beta1.powi(t));
    for i in 0..param.len() {
        m[i] = h.beta1 * m[i] + (1.0 - h.beta1) * grad[i];
        v[i] = h.beta2 * v[i] + (1.0 - h.beta2) * grad[i] * grad[i];
        param[i] -= lr_t * m[i] / (v[i].sqrt() + h.eps);
    }
}
