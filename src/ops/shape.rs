//! Channel concatenation and its backward, the split: one `copy_channels` launch per
//! input (`shaders/elementwise.wgsl`; `copy_channels4` when the planes are whole vec4s).

use super::elementwise::{EwParams, channel_view, launch_elementwise};
use super::u32_of;
use crate::autodiff::{Backward, Input, record};
use crate::error::{Error, Result};
use crate::runtime::{Kernel, Shader, WG, grid_1d};
use crate::tensor::Tensor;

/// Copy channels `src_off..src_off + count` of `src` (outer, src_c, inner) into channels
/// `dst_off..` of `dst` (outer, dst_c, inner).
#[allow(clippy::too_many_arguments)]
pub(crate) fn copy_channels(
    src: &Tensor,
    src_c: usize,
    src_off: usize,
    dst: &Tensor,
    dst_c: usize,
    dst_off: usize,
    count: usize,
    outer: usize,
    inner: usize,
) {
    let p = EwParams {
        x0: u32_of(src_c),
        x1: u32_of(src_off),
        x2: u32_of(dst_c),
        x3: u32_of(dst_off),
        ..channel_view(count, inner)
    };
    let gpu = src.gpu();
    let max = gpu.info().max_workgroups_per_dim;
    if inner.is_multiple_of(4) && outer <= max as usize {
        // Whole vec4s per channel: one grid layer per outer index, no division.
        let n = count * inner / 4;
        let [x, y, _] = grid_1d(u32_of(n.div_ceil(WG as usize)), max);
        let p = EwParams { n: u32_of(n), ..p };
        gpu.launch(
            &Kernel::new(Shader::Elementwise, "copy_channels4"),
            &[src.bind(0), dst.bind(2)],
            &p,
            [x, y, u32_of(outer)],
        );
        return;
    }
    let n = outer * count * inner;
    launch_elementwise("copy_channels", Some(src), None, dst, n, p);
}

/// (N, the channel counts, H, W) of NCHW tensors that can be concatenated along C (equal
/// N, H and W), or an error of `op` naming the first and the mismatching shape.
pub(crate) fn concat_dims(
    op: &'static str,
    xs: &[&Tensor],
) -> Result<(usize, Vec<usize>, usize, usize)> {
    let first = xs
        .first()
        .ok_or_else(|| Error::Autodiff(format!("{op} of no tensors")))?;
    let (n, _, h, w) = first.shape().nchw().ok_or_else(|| Error::BadShape {
        op,
        shape: first.shape().clone(),
        expected: "rank 4 (N, C, H, W)".into(),
    })?;
    let mut channels = Vec::with_capacity(xs.len());
    for x in xs {
        match x.shape().nchw() {
            Some((n2, c, h2, w2)) if (n2, h2, w2) == (n, h, w) => channels.push(c),
            _ => {
                return Err(Error::Shape {
                    op,
                    lhs: first.shape().clone(),
                    rhs: x.shape().clone(),
                });
            }
        }
    }
    Ok((n, channels, h, w))
}

/// Concatenate NCHW tensors along C. All inputs share N, H and W.
pub fn concat_channels(xs: &[&Tensor]) -> Result<Tensor> {
    let op = "concat_channels";
    let (n, channels, h, w) = concat_dims(op, xs)?;
    let total: usize = channels.iter().sum();
    let out = Tensor::uninit(xs[0].gpu(), [n, total, h, w], op)?;
    let mut off = 0;
    for (x, &c) in xs.iter().zip(&channels) {
        copy_channels(x, c, 0, &out, total, off, c, n, h * w);
        off += c;
    }
    record(xs, &out, || ConcatGrad { channels });
    Ok(out)
}

/// y = [x_0 | x_1 | …] along C  ⇒  dx_i = dy[:, off_i .. off_i + c_i]. Keeps the inputs'
/// channel counts.
struct ConcatGrad {
    channels: Vec<usize>,
}

impl Backward for ConcatGrad {
    fn backward(&self, dy: &Tensor, _: &[Input], _: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (n, total, h, w) = dy.shape().nchw().expect("concat output is NCHW");
        let mut off = 0;
        let mut out = Vec::with_capacity(self.channels.len());
        for &c in &self.channels {
            let dx = Tensor::uninit(dy.gpu(), [n, c, h, w], "concat_backward")?;
            copy_channels(dy, total, off, &dx, c, 0, c, n, h * w);
            off += c;
            out.push(Some(dx));
        }
        Ok(out)
    }
}

/// The f64 reference of this module's kernels, forward and backward: the textbook loop
/// that the tests hold the WGSL entry points to (and the f64 model is built from).
pub mod reference {
    /// Concatenate (N, C_i, P) blocks along C.
    pub fn concat_channels(xs: &[&[f64]], channels: &[usize], n: usize, p: usize) -> Vec<f64> {
        let total: usize = channels.iter().sum();
        let mut y = vec![0.0; n * total * p];
        let mut off = 0;
        for (x, &c) in xs.iter().zip(channels) {
            for i in 0..n {
                for ch in 0..c {
                    for q in 0..p {
                        y[(i * total + off + ch) * p + q] = x[(i * c + ch) * p + q];
                    }
                }
            }
            off += c;
        }
        y
    }

    /// Backward of [`concat_channels`]: the channel slices of dy.
    pub fn concat_channels_backward(
        dy: &[f64],
        channels: &[usize],
        n: usize,
        p: usize,
    ) -> Vec<Vec<f64>> {
        let total: usize = channels.iter().sum();
        let mut off = 0;
        let mut out = Vec::new();
        for &c in channels {
            let mut dx = vec![0.0; n * c * p];
            for i in 0..n {
                for ch in 0..c {
                    for q in 0..p {
                        dx[(i * c + ch) * p + q] = dy[(i * total + off + ch) * p + q];
                    }
                }
            }
            off += c;
            out.push(dx);
        }
        out
    }
}
