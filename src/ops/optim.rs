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

use std::sync::Arc;

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
        pad0: u32,
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
            if Arc::ptr_eq(&a.buf, &b.buf) {
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
    launch_1d(
        param.gpu(),
        &Kernel::new(Shader::Optim, "adam"),
        &[grad.bind(0), param.bind(1), m.bind(2), v.bind(3)],
        &params,
        n.div_ceil(PER),
    );
    Ok(())
}
