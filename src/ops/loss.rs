//! The training loss: sigmoid, ½·BCE and ½·Dice fused into one op (MODEL.md "Loss",
//! Eq. 4–9). `shaders/loss.wgsl`.
//!
//! logits z and mask y are (N, 1, H, W). Per sample n, with p = sigmoid(z) and P = H·W:
//! L_n = ½·mean_pixels(softplus(z) − y·z) + ½·(1 − (2·Σ y·p + 1)/(Σ y² + Σ p² + 1));
//! the loss is mean_n L_n, a one-element tensor differentiable w.r.t. the logits only
//! (the mask is data). BCE is taken from the logit, softplus(z) − y·z, so logits of ±50
//! neither overflow nor lose the loss to log(0); the Dice smoothing ε = 1 keeps
//! lesion-free (all-zero) masks defined.

use super::u32_of;
use crate::autodiff::{Backward, Input, record};
use crate::error::{Error, Result};
use crate::runtime::{Kernel, Shader, kernel_params};
use crate::tensor::Tensor;

/// Pixels of one sample reduced by one workgroup (a 256×256 mask makes 8 partials).
const CHUNK: usize = 8192;
/// Invocations per workgroup, and pixels per invocation of the backward kernel.
const WG: usize = 256;
const PER: usize = 4;

#[derive(Clone, Copy)]
struct Dims {
    n: usize,
    inner: usize,
    chunk: usize,
    nchunks: usize,
}

kernel_params! {
    /// The block of `shaders/loss.wgsl`.
    pub(crate) struct LossParams for Loss {
        /// Batch.
        n: u32,
        /// P = H·W.
        inner: u32,
        /// Pixels per partial workgroup.
        chunk: u32,
        /// Partial workgroups per sample.
        nchunks: u32,
    }
}

impl Dims {
    fn params(&self) -> LossParams {
        LossParams {
            n: u32_of(self.n),
            inner: u32_of(self.inner),
            chunk: u32_of(self.chunk),
            nchunks: u32_of(self.nchunks),
        }
    }
}

fn check(op: &'static str, z: &Tensor, y: &Tensor) -> Result<Dims> {
    let (n, c, h, w) = z.shape().nchw().ok_or_else(|| Error::BadShape {
        op,
        shape: z.shape().clone(),
        expected: "rank 4 logits (N, 1, H, W)".into(),
    })?;
    if c != 1 {
        return Err(Error::BadShape {
            op,
            shape: z.shape().clone(),
            expected: "one channel of logits (N, 1, H, W)".into(),
        });
    }
    if y.shape() != z.shape() {
        return Err(Error::Shape {
            op,
            lhs: z.shape().clone(),
            rhs: y.shape().clone(),
        });
    }
    let max = z.gpu().info().max_workgroups_per_dim as usize;
    if n > max {
        return Err(Error::BadShape {
            op,
            shape: z.shape().clone(),
            expected: format!("batch at most {max}"),
        });
    }
    let inner = h * w;
    let chunk = CHUNK.max(inner.div_ceil(max));
    Ok(Dims {
        n,
        inner,
        chunk,
        nchunks: inner.div_ceil(chunk),
    })
}

/// The batch-mean loss (shape (1)), recorded, and the per-sample losses (N), not recorded.
pub fn bce_dice_loss_per_sample(logits: &Tensor, mask: &Tensor) -> Result<(Tensor, Tensor)> {
    let op = "bce_dice_loss";
    let d = check(op, logits, mask)?;
    let gpu = logits.gpu();
    let params = d.params();
    let partial = Tensor::uninit(gpu, [d.n, d.nchunks, 4], op)?;
    gpu.launch(
        &Kernel::new(Shader::Loss, "loss_partial"),
        &[logits.bind(0), mask.bind(1), partial.bind(2)],
        &params,
        [u32_of(d.nchunks), u32_of(d.n), 1],
    );
    let loss = Tensor::uninit(gpu, [1], op)?;
    let samples = Tensor::uninit(gpu, [d.n], op)?;
    // [S, T] per sample: what the backward needs besides z and y.
    let coef = Tensor::uninit(gpu, [d.n, 2], op)?;
    gpu.launch(
        &Kernel::new(Shader::Loss, "loss_final"),
        &[partial.bind(0), loss.bind(1), samples.bind(2), coef.bind(3)],
        &params,
        [1, 1, 1],
    );
    record(&[logits], &loss, || BceDiceGrad {
        z: logits.clone(),
        y: mask.clone(),
        coef,
    });
    Ok((loss, samples))
}

/// The batch-mean loss, a one-element tensor of shape (1).
pub fn bce_dice_loss(logits: &Tensor, mask: &Tensor) -> Result<Tensor> {
    bce_dice_loss_per_sample(logits, mask).map(|(loss, _)| loss)
}

/// Backward of [`bce_dice_loss`] w.r.t. the logits, from dy (1) and coef (N, 2) = [S, T].
// loss = (1/N)·Σ_n [½·Σ_i (softplus(z_i) − y_i·z_i)/P + ½·(1 − (2S + ε)/(T + ε))]
//   ⇒ dz_i = dy/N·[(p_i − y_i)/(2P) + ½·dDice_i·p_i·(1 − p_i)],
//      dDice_i = −2·[y_i·(T + ε) − p_i·(2S + ε)]/(T + ε)²
fn bce_dice_backward(z: &Tensor, y: &Tensor, coef: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let op = "bce_dice_backward";
    let d = check(op, z, y)?;
    let dz = Tensor::uninit(z.gpu(), z.shape().clone(), op)?;
    z.gpu().launch(
        &Kernel::new(Shader::Loss, "loss_backward"),
        &[z.bind(0), y.bind(1), coef.bind(2), dy.bind(3), dz.bind(4)],
        &d.params(),
        [u32_of(d.inner.div_ceil(WG * PER)), u32_of(d.n), 1],
    );
    Ok(dz)
}

/// The loss's backward keeps the logits z, the mask y and coef (N, 2) = [Σ y·p,
/// Σ y² + Σ p²] per sample.
struct BceDiceGrad {
    z: Tensor,
    y: Tensor,
    coef: Tensor,
}

impl Backward for BceDiceGrad {
    fn backward(&self, dy: &Tensor, _: &[Input], _: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(bce_dice_backward(
            &self.z, &self.y, &self.coef, dy,
        )?)])
    }
}

pub mod reference {
    //! The f64 reference of this module's kernels, forward and backward: the textbook
    //! loop that the tests hold the WGSL entry points to (and the f64 model is built
    //! from).
    //!
    //! The fused sigmoid + ½·BCE + ½·Dice loss (MODEL.md "Loss", Eq. 4–9) and its gradient
    //! w.r.t. the logits, in f64.
    //!
    //! z (logits) and y (mask) are (N, P). With p = sigmoid(z), S = Σ y·p, T = Σ y² + Σ p²
    //! and ε = 1, the loss of sample n is L_n = ½·mean_i(softplus(z_i) − y_i·z_i) plus
    //! ½·(1 − (2S + ε)/(T + ε)); the loss is mean_n L_n.

    /// Dice smoothing.
    pub const DICE_EPS: f64 = 1.0;

    /// log(1 + e^z) without overflow for large |z|.
    pub fn softplus(z: f64) -> f64 {
        z.max(0.0) + (-z.abs()).exp().ln_1p()
    }

    /// 1/(1 + e^(−z)) without overflow for large |z|.
    pub fn sigmoid(z: f64) -> f64 {
        let e = (-z.abs()).exp();
        if z >= 0.0 {
            1.0 / (1.0 + e)
        } else {
            e / (1.0 + e)
        }
    }

    /// (S, T) of one sample.
    fn dice_sums(z: &[f64], y: &[f64]) -> (f64, f64) {
        z.iter().zip(y).fold((0.0, 0.0), |(s, t), (&zi, &yi)| {
            let p = sigmoid(zi);
            (s + yi * p, t + yi * yi + p * p)
        })
    }

    /// The per-sample losses L_n (N).
    pub fn bce_dice_per_sample(z: &[f64], y: &[f64], n: usize, p: usize) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let (zs, ys) = (&z[i * p..(i + 1) * p], &y[i * p..(i + 1) * p]);
                let bce = zs
                    .iter()
                    .zip(ys)
                    .map(|(&zi, &yi)| softplus(zi) - yi * zi)
                    .sum::<f64>()
                    / p as f64;
                let (s, t) = dice_sums(zs, ys);
                let dice = 1.0 - (2.0 * s + DICE_EPS) / (t + DICE_EPS);
                0.5 * bce + 0.5 * dice
            })
            .collect()
    }

    /// The batch-mean loss.
    pub fn bce_dice(z: &[f64], y: &[f64], n: usize, p: usize) -> f64 {
        bce_dice_per_sample(z, y, n, p).iter().sum::<f64>() / n as f64
    }

    /// dLoss/dz scaled by the upstream gradient dy:
    /// dz_i = dy/N·[(p_i − y_i)/(2P) + ½·dDice_i·p_i(1 − p_i)],
    /// dDice_i = −2·[y_i(T + ε) − p_i(2S + ε)]/(T + ε)².
    pub fn bce_dice_backward(z: &[f64], y: &[f64], n: usize, p: usize, dy: f64) -> Vec<f64> {
        let mut dz = vec![0.0; z.len()];
        for i in 0..n {
            let r = i * p..(i + 1) * p;
            let (s, t) = dice_sums(&z[r.clone()], &y[r.clone()]);
            let te = t + DICE_EPS;
            for k in r {
                let pk = sigmoid(z[k]);
                let ddice = -2.0 * (y[k] * te - pk * (2.0 * s + DICE_EPS)) / (te * te);
                dz[k] = dy / n as f64
                    * ((pk - y[k]) / (2.0 * p as f64) + 0.5 * ddice * pk * (1.0 - pk));
            }
        }
        dz
    }
}
