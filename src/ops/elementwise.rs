//! Element-wise ops: add, mul (also broadcasting an (N,1,H,W) map over C channels), scale
//! by a constant, ReLU, sigmoid, and their backward rules. `shaders/elementwise.wgsl`,
//! launched through `launch_elementwise` with its `EwParams` block; the f64
//! references are `crate::reference::{add, mul, mul_bcast, scale, relu, sigmoid}`.
//!
//! `mul`, `scale` and the sums of `reduce` are what the tests build scalar losses with
//! (Σ w ⊙ y), so that every op's backward can be driven through the tape.

use super::u32_of;
use crate::autodiff::{Backward, Input, record};
use crate::error::{Error, Result};
use crate::runtime::{Kernel, Shader};
use crate::tensor::Tensor;
pub(crate) use crate::tensor::{EwParams, launch_elementwise};

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
    let n = out.numel();
    launch_elementwise(entry, Some(a), Some(b), &out, n, EwParams::default());
    Ok(out)
}

/// a + b (same shapes).
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out = binary("add", "add", a, b)?;
    record(&[a, b], &out, || AddGrad);
    Ok(out)
}

/// y = a + b  ⇒  da = db = dy. Keeps nothing.
struct AddGrad;

impl Backward for AddGrad {
    fn backward(&self, dy: &Tensor, _: &[Input], _: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(dy.clone()), Some(dy.clone())])
    }
}

/// The sum of `xs` (one shape, at least one), added left to right: up to 7 in one pass
/// where the elements are whole vec4s (back-propagation sums a tensor's gradient
/// contributions this way).
pub fn add_many(xs: &[&Tensor]) -> Result<Tensor> {
    if xs.len() < 2 {
        return Err(crate::error::Error::BadShape {
            op: "add_many",
            shape: [xs.len()].into(),
            expected: "at least two tensors to add".into(),
        });
    }
    let terms: Vec<Tensor> = xs.iter().map(|&x| x.clone()).collect();
    let out = Tensor::sum_unrecorded(&terms)?;
    record(xs, &out, || AddManyGrad(xs.len()));
    Ok(out)
}

/// y = Σ x_i  ⇒  dx_i = dy. Keeps nothing.
struct AddManyGrad(usize);

impl Backward for AddManyGrad {
    fn backward(&self, dy: &Tensor, _: &[Input], _: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(dy.clone()); self.0])
    }
}

/// a ⊙ b (same shapes).
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out = binary("mul", "mul", a, b)?;
    record(&[a, b], &out, || MulGrad {
        a: a.clone(),
        b: b.clone(),
    });
    Ok(out)
}

/// y = a ⊙ b  ⇒  da = dy ⊙ b, db = dy ⊙ a. Keeps both factors.
struct MulGrad {
    a: Tensor,
    b: Tensor,
}

impl Backward for MulGrad {
    fn backward(&self, dy: &Tensor, _: &[Input], need: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![
            need[0]
                .then(|| binary("mul", "mul", dy, &self.b))
                .transpose()?,
            need[1]
                .then(|| binary("mul", "mul", dy, &self.a))
                .transpose()?,
        ])
    }
}

/// a ⊙ b with a (N, C, H, W) and b (N, 1, H, W): b is broadcast over the channels
/// (the attention map of CSA multiplies every channel of the gated map).
pub fn mul_bcast(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out = mul_bcast_raw(a, b)?;
    record(&[a, b], &out, || MulBcastGrad {
        a: a.clone(),
        b: b.clone(),
    });
    Ok(out)
}

pub(crate) fn mul_bcast_raw(a: &Tensor, b: &Tensor) -> Result<Tensor> {
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
    if rows4(a, n, c, h * w) {
        let grid = [u32_of((h * w / 4).div_ceil(ROW4)), u32_of(c), u32_of(n)];
        launch_rows4("mul_bcast4", a, b, &out, c, h * w, grid);
    } else {
        let p = channel_view(c, h * w);
        launch_elementwise("mul_bcast", Some(a), Some(b), &out, out.numel(), p);
    }
    Ok(out)
}

/// Invocations per workgroup (and vec4s of a row each covers) of the `*4` channel kernels.
const ROW4: usize = 64;

/// Whether the `*4` channel kernels take (N, C, P): P a multiple of 4, N and C within the
/// grid's per-dimension limit.
fn rows4(a: &Tensor, n: usize, c: usize, inner: usize) -> bool {
    let max = a.gpu().info().max_workgroups_per_dim as usize;
    inner.is_multiple_of(4) && n <= max && c <= max
}

/// A `*4` channel kernel (see the shader) on `grid`, with `inner` counted in vec4s.
fn launch_rows4(
    entry: &'static str,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
    c: usize,
    inner: usize,
    grid: [u32; 3],
) {
    a.gpu().launch(
        &Kernel::new(Shader::Elementwise, entry),
        &[a.bind(0), b.bind(1), out.bind(2)],
        &channel_view(c, inner / 4),
        grid,
    );
}

/// The (outer, C, inner) view of an NCHW tensor, for kernels that index by channel.
pub(crate) fn channel_view(c: usize, inner: usize) -> EwParams {
    EwParams {
        c: super::u32_of(c),
        inner: super::u32_of(inner),
        ..EwParams::default()
    }
}

/// y[n,c,q] = a[n,c,q]·b[n,q]  ⇒  da = dy ⊙ b (broadcast), db[n,q] = Σ_c dy[n,c,q]·a[n,c,q].
/// Keeps both factors.
struct MulBcastGrad {
    a: Tensor,
    b: Tensor,
}

impl Backward for MulBcastGrad {
    fn backward(&self, dy: &Tensor, _: &[Input], _: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let da = mul_bcast_raw(dy, &self.b)?;
        let db = mul_bcast_grad_b_raw(&self.a, dy)?;
        Ok(vec![Some(da), Some(db)])
    }
}

/// db[n, q] = Σ_c a[n, c, q]·dy[n, c, q] for a and dy (N, C, H, W): the broadcast factor's
/// gradient, (N, 1, H, W).
pub(crate) fn mul_bcast_grad_b_raw(a: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = a.shape().nchw().expect("the caller passes NCHW");
    let db = Tensor::uninit(a.gpu(), [n, 1, h, w], "mul_bcast_backward")?;
    if rows4(a, n, 1, h * w) {
        let grid = [u32_of((h * w / 4).div_ceil(ROW4)), u32_of(n), 1];
        launch_rows4("mul_bcast_grad_b4", a, dy, &db, c, h * w, grid);
    } else {
        let p = channel_view(c, h * w);
        launch_elementwise("mul_bcast_grad_b", Some(a), Some(dy), &db, db.numel(), p);
    }
    Ok(db)
}

/// s · a.
pub fn scale(a: &Tensor, s: f32) -> Result<Tensor> {
    let out = scale_raw(a, s)?;
    record(&[a], &out, || ScaleGrad(s));
    Ok(out)
}

fn scale_raw(a: &Tensor, s: f32) -> Result<Tensor> {
    let out = Tensor::uninit(a.gpu(), a.shape().clone(), "scale")?;
    let p = EwParams {
        s,
        ..EwParams::default()
    };
    launch_elementwise("scale", Some(a), None, &out, out.numel(), p);
    Ok(out)
}

/// y = s·x  ⇒  dx = s·dy. Keeps s.
struct ScaleGrad(f32);

impl Backward for ScaleGrad {
    fn backward(&self, dy: &Tensor, _: &[Input], _: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(scale_raw(dy, self.0)?)])
    }
}

fn unary(op: &'static str, x: &Tensor) -> Result<Tensor> {
    let out = Tensor::uninit(x.gpu(), x.shape().clone(), op)?;
    launch_elementwise(op, Some(x), None, &out, out.numel(), EwParams::default());
    Ok(out)
}

/// max(x, 0).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    let out = unary("relu", x)?;
    record(&[x], &out, || ReluGrad { x: x.clone() });
    Ok(out)
}

/// y = max(x, 0)  ⇒  dx = dy where x > 0 (the subgradient at 0 is 0). Keeps x, whose
/// signs are its decisions (see `Tape::piecewise_inputs`).
struct ReluGrad {
    x: Tensor,
}

impl Backward for ReluGrad {
    fn backward(&self, dy: &Tensor, _: &[Input], _: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(binary(
            "relu_backward",
            "relu_backward",
            &self.x,
            dy,
        )?)])
    }

    fn piecewise(&self) -> Option<crate::autodiff::Piecewise> {
        Some(crate::autodiff::Piecewise::Relu(self.x.clone()))
    }
}

/// 1 / (1 + e^(−x)).
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    let out = unary("sigmoid", x)?;
    record(&[x], &out, || SigmoidGrad { y: out.clone() });
    Ok(out)
}

/// y = σ(x)  ⇒  dx = dy · y · (1 − y). Keeps the output y.
struct SigmoidGrad {
    y: Tensor,
}

impl Backward for SigmoidGrad {
    fn backward(&self, dy: &Tensor, _: &[Input], _: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(binary(
            "sigmoid_backward",
            "sigmoid_backward",
            &self.y,
            dy,
        )?)])
    }
}

/// The f64 reference of this module's kernels, forward and backward: the textbook loop
/// that the tests hold the WGSL entry points to (and the f64 model is built from).
pub mod reference {
    pub fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
        a.iter().zip(b).map(|(x, y)| x + y).collect()
    }

    pub fn mul(a: &[f64], b: &[f64]) -> Vec<f64> {
        a.iter().zip(b).map(|(x, y)| x * y).collect()
    }

    pub fn scale(a: &[f64], s: f64) -> Vec<f64> {
        a.iter().map(|x| s * x).collect()
    }

    /// a (N, C, P) ⊙ b (N, 1, P).
    pub fn mul_bcast(a: &[f64], b: &[f64], n: usize, c: usize, p: usize) -> Vec<f64> {
        let mut y = vec![0.0; n * c * p];
        for i in 0..n {
            for ch in 0..c {
                for q in 0..p {
                    y[(i * c + ch) * p + q] = a[(i * c + ch) * p + q] * b[i * p + q];
                }
            }
        }
        y
    }

    /// Backward of [`mul_bcast`]: (da, db).
    pub fn mul_bcast_backward(
        a: &[f64],
        b: &[f64],
        dy: &[f64],
        n: usize,
        c: usize,
        p: usize,
    ) -> (Vec<f64>, Vec<f64>) {
        let da = mul_bcast(dy, b, n, c, p);
        let mut db = vec![0.0; n * p];
        for i in 0..n {
            for ch in 0..c {
                for q in 0..p {
                    db[i * p + q] += dy[(i * c + ch) * p + q] * a[(i * c + ch) * p + q];
                }
            }
        }
        (da, db)
    }

    pub fn relu(x: &[f64]) -> Vec<f64> {
        x.iter().map(|&v| v.max(0.0)).collect()
    }

    pub fn relu_backward(x: &[f64], dy: &[f64]) -> Vec<f64> {
        x.iter()
            .zip(dy)
            .map(|(&v, &g)| if v > 0.0 { g } else { 0.0 })
            .collect()
    }

    pub fn sigmoid(x: &[f64]) -> Vec<f64> {
        x.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect()
    }

    /// Backward of [`sigmoid`] from its output y.
    pub fn sigmoid_backward(y: &[f64], dy: &[f64]) -> Vec<f64> {
        y.iter().zip(dy).map(|(&s, &g)| g * s * (1.0 - s)).collect()
    }
}
