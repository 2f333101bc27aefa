//! Adam, one fused kernel that updates a parameter and its two moment buffers in place.
//! `shaders/optim.wgsl`.
//!
//! param, grad, m and v are tensors of the same number of elements (any shape; the kernel
//! sees flat f32 buffers). Keras' form of the update (MODEL.md: lr 1e-3, β 0.9/0.999,
//! ε 1e-7), with ε added to √v *after* the bias correction has been folded into the step:
//!   m ← β1·m + (1 − β1)·g,  v ← β2·v + (1 − β2)·g²,
//!   lr_t = lr·√(1 − β2^t)/(1 − β1^t),  param ← param − lr_t·m/(√v + ε).
//! (The "textbook" form m̂/(√v̂ + ε) puts ε inside the correction; the two differ only when
//! √v is comparable to ε.) The bias correction is computed in the kernel from the step t,
//! and t and lr are immediates, so a learning-rate schedule never recompiles.
//!
//! This is the one op that writes its operands: param, m and v are optimiser state, not
//! values on the tape. Their buffers change in place, so every other handle on them
//! (clones of the tensors, tensors saved by a tape still alive) sees the new values: run
//! it after `backward`, outside any recording, and hold no handle that expects the old
//! parameter.

use super::{launch_1d, u32_of};
use crate::error::{Error, Result};
use crate::runtime::{Kernel, Shader, kernel_params};
use crate::tensor::Tensor;

kernel_params! {
    /// The block of `shaders/optim.wgsl`.
    pub(crate) struct AdamParams for Optim {
        len: u32,
        /// t ≥ 1.
        step: u32,
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        /// `adam`: the first element it updates.
        first: u32,
        pad1: u32,
    }
}

/// MODEL.md's training defaults (which are also Keras' Adam defaults).
pub const ADAM_LR: f32 = 1e-3;
pub const ADAM_BETA1: f32 = 0.9;
pub const ADAM_BETA2: f32 = 0.999;
pub const ADAM_EPS: f32 = 1e-7;

/// Elements per invocation of the kernel (its `PER`).
const PER: usize = 4;

/// One Adam step at step number `step` (1 for the first update), in place on `param`,
/// `m` and `v` (see the module doc: they must be four distinct buffers, and no handle on
/// them may expect the old values).
///
/// # Panics
/// If `step` is 0: the bias correction 1 − β1^0 would divide by zero.
#[allow(clippy::too_many_arguments)]
pub fn adam_step(
    param: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    step: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
) -> Result<()> {
    let op = "adam_step";
    assert!(step >= 1, "adam_step: steps count from 1");
    for t in [grad, m, v] {
        if t.numel() != param.numel() {
            return Err(Error::Shape {
                op,
                lhs: param.shape().clone(),
                rhs: t.shape().clone(),
            });
        }
    }
    // wgpu refuses a buffer bound twice where one binding is writable; say why here.
    let all = [param, grad, m, v];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            if a.shares_buffer(b) {
                return Err(Error::BadShape {
                    op,
                    shape: a.shape().clone(),
                    expected: "param, grad, m and v in four distinct buffers".into(),
                });
            }
        }
    }
    let n = param.numel();
    let params = AdamParams {
        len: u32_of(n),
        step,
        lr,
        beta1,
        beta2,
        eps,
        ..AdamParams::default()
    };
    // The whole vec4s as vec4s (`adam4`), then the 1–3 elements after them (`adam`).
    let quads = n / 4;
    if quads > 0 {
        launch_1d(
            param.gpu(),
            &Kernel::new(Shader::Optim, "adam4"),
            &[grad.bind(4), param.bind(5), m.bind(6), v.bind(7)],
            &AdamParams {
                len: u32_of(quads),
                ..params
            },
            quads.div_ceil(PER),
        );
    }
    if n > 4 * quads {
        launch_1d(
            param.gpu(),
            &Kernel::new(Shader::Optim, "adam"),
            &[grad.bind(0), param.bind(1), m.bind(2), v.bind(3)],
            &AdamParams {
                first: u32_of(4 * quads),
                ..params
            },
            (n - 4 * quads).div_ceil(PER),
        );
    }
    Ok(())
}

pub mod reference {
    //! The f64 reference of this module's kernels, forward and backward: the textbook
    //! loop that the tests hold the WGSL entry points to (and the f64 model is built
    //! from).
    //!
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
    pub fn adam_step(
        param: &mut [f64],
        grad: &[f64],
        m: &mut [f64],
        v: &mut [f64],
        t: u32,
        h: Adam,
    ) {
        let t = i32::try_from(t).expect("step fits in i32");
        let lr_t = h.lr * (1.0 - h.beta2.powi(t)).sqrt() / (1.0 - h.beta1.powi(t));
        for i in 0..param.len() {
            m[i] = h.beta1 * m[i] + (1.0 - h.beta1) * grad[i];
            v[i] = h.beta2 * v[i] + (1.0 - h.beta2) * grad[i] * grad[i];
            param[i] -= lr_t * m[i] / (v[i].sqrt() + h.eps);
        }
    }
}
