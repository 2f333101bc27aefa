//! Element-wise ops: add, sub, mul (also broadcasting an (N,1,H,W) map over C channels),
//! scale by a constant, ReLU, sigmoid, and their backward rules. `shaders/elementwise.wgsl`.

use super::{launch_1d, u32_of};
use crate::autodiff::{Op, record};
use crate::error::{Error, Result};
use crate::runtime::{Kernel, Shader};
use crate::tensor::Tensor;

/// The extra fields of the shared elementwise `Params` block.
#[derive(Default, Clone, Copy)]
pub(crate) struct Extra {
    pub c: usize,
    pub inner: usize,
    pub x: [usize; 4],
    pub s: f32,
}

/// Launch `entry` writing `n` elements of `out`, reading `a` (slot 0) and `b` (slot 1).
pub(crate) fn launch(
    entry: &'static str,
    a: Option<&Tensor>,
    b: Option<&Tensor>,
    out: &Tensor,
    n: usize,
    e: Extra,
) {
    let params = [
        u32_of(n),
        u32_of(e.c),
        u32_of(e.inner),
        u32_of(e.x[0]),
        u32_of(e.x[1]),
        u32_of(e.x[2]),
        u32_of(e.x[3]),
        e.s.to_bits(),
    ];
    let mut bindings = Vec::with_capacity(3);
    if let Some(a) = a {
        bindings.push(a.bind(0));
    }
    if let Some(b) = b {
        bindings.push(b.bind(1));
    }
    bindings.push(out.bind(2));
    launch_1d(
        out.gpu(),
        &Kernel::new(Shader::Elementwise, entry),
        &bindings,
        &params,
        n,
    );
}

/// Fill a tensor's elements with `value`, in place (not recorded).
pub(crate) fn fill_raw(t: &Tensor, value: f32) {
    launch(
        "fill",
        None,
        None,
        t,
        t.numel(),
        Extra {
            s: value,
            ..Extra::default()
        },
    );
}

fn same_shape(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(Error::Shape {
            op,
            lhs: a.shape().clone(),
            rhs: b.shape().clone(),
        });
    }
    Ok(())
}

fn binary(op: &'static str, entry: &'static str, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    same_shape(op, a, b)?;
    let out = Tensor::uninit(a.gpu(), a.shape().clone(), op)?;
    launch(entry, Some(a), Some(b), &out, out.numel(), Extra::default());
    Ok(out)
}

/// a + b (same shapes).
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out = binary("add", "add", a, b)?;
    record(&[a, b], &out, || Op::Add);
    Ok(out)
}

/// a − b (same shapes).
pub fn sub(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out = binary("sub", "sub", a, b)?;
    record(&[a, b], &out, || Op::Sub);
    Ok(out)
}

/// a ⊙ b (same shapes).
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out = binary("mul", "mul", a, b)?;
    record(&[a, b], &out, || Op::Mul {
        a: a.clone(),
        b: b.clone(),
    });
    Ok(out)
}

/// a ⊙ b with a (N, C, H, W) and b (N, 1, H, W): b is broadcast over the channels
/// (the attention map of CSA multiplies every channel of the gated map).
pub fn mul_bcast(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out = mul_bcast_raw(a, b)?;
    record(&[a, b], &out, || Op::MulBcast {
        a: a.clone(),
        b: b.clone(),
    });
    Ok(out)
}

fn mul_bcast_raw(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let op = "mul_bcast";
    let (n, c, h, w) = a.shape().nchw().ok_or_else(|| Error::BadShape {
        op,
        shape: a.shape().clone(),
        expected: "rank 4 (N, C, H, W)".into(),
    })?;
    if b.dims() != [n, 1, h, w] {
        return Err(Error::Shape {
            op,
            lhs: a.shape().clone(),
            rhs: b.shape().clone(),
        });
    }
    let out = Tensor::uninit(a.gpu(), a.shape().clone(), op)?;
    launch(
        "mul_bcast",
        Some(a),
        Some(b),
        &out,
        out.numel(),
        Extra {
            c,
            inner: h * w,
            ..Extra::default()
        },
    );
    Ok(out)
}

/// Backward of [`mul_bcast`]: (d a, d b) from dy.
// y[n,c,q] = a[n,c,q] * b[n,q]  ⇒  da = dy ⊙ b (broadcast), db[n,q] = Σ_c dy[n,c,q]·a[n,c,q]
pub(crate) fn mul_bcast_backward(a: &Tensor, b: &Tensor, dy: &Tensor) -> Result<(Tensor, Tensor)> {
    let da = mul_bcast_raw(dy, b)?;
    let (_, c, h, w) = a.shape().nchw().expect("checked in forward");
    let db = Tensor::uninit(a.gpu(), b.shape().clone(), "mul_bcast_backward")?;
    launch(
        "mul_bcast_grad_b",
        Some(a),
        Some(dy),
        &db,
        db.numel(),
        Extra {
            c,
            inner: h * w,
            ..Extra::default()
        },
    );
    Ok((da, db))
}

/// s · a.
pub fn scale(a: &Tensor, s: f32) -> Result<Tensor> {
    let out = scale_raw(a, s)?;
    record(&[a], &out, || Op::Scale(s));
    Ok(out)
}

pub(crate) fn scale_raw(a: &Tensor, s: f32) -> Result<Tensor> {
    let out = Tensor::uninit(a.gpu(), a.shape().clone(), "scale")?;
    launch(
        "scale",
        Some(a),
        None,
        &out,
        out.numel(),
        Extra {
            s,
            ..Extra::default()
        },
    );
    Ok(out)
}

fn unary(op: &'static str, x: &Tensor) -> Result<Tensor> {
    let out = Tensor::uninit(x.gpu(), x.shape().clone(), op)?;
    launch(op, Some(x), None, &out, out.numel(), Extra::default());
    Ok(out)
}

/// max(x, 0).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    let out = unary("relu", x)?;
    record(&[x], &out, || Op::Relu { x: x.clone() });
    Ok(out)
}

/// Backward of [`relu`]: dx = dy where x > 0 (the subgradient at 0 is 0).
pub(crate) fn relu_backward(x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    binary("relu_backward", "relu_backward", x, dy)
}

/// 1 / (1 + e^(−x)).
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    let out = unary("sigmoid", x)?;
    record(&[x], &out, || Op::Sigmoid { y: out.clone() });
    Ok(out)
}

/// Backward of [`sigmoid`] from its output y: dx = dy · y · (1 − y).
pub(crate) fn sigmoid_backward(y: &Tensor, dy: &Tensor) -> Result<Tensor> {
    binary("sigmoid_backward", "sigmoid_backward", y, dy)
}

/// Element-wise sum without recording (gradient accumulation).
pub(crate) fn add_raw(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary("add", "add", a, b)
}

/// Element-wise product without recording (backward of mul).
pub(crate) fn mul_raw(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary("mul", "mul", a, b)
}
