//! Sums and means: over the whole tensor, or per channel of an NCHW tensor, plus the
//! summation over an outer axis that finishes split-K matmuls. `shaders/reduce.wgsl`.

use super::elementwise::{EwParams, channel_view, launch_elementwise};
use super::{launch_1d, u32_of};
use crate::autodiff::{Backward, Input, record};
use crate::error::{Error, Result};
use crate::runtime::{Kernel, KernelClass, Shader, kernel_params};
use crate::tensor::Tensor;

/// Elements summed by one workgroup before the second pass. Large enough that the
/// partials are few, small enough that a 256×256 map still spreads over many workgroups.
const CHUNK: usize = 8192;

kernel_params! {
    /// The block of `shaders/reduce.wgsl`.
    pub(crate) struct ReduceParams for Reduce {
        outer: u32,
        c: u32,
        inner: u32,
        /// Elements per workgroup.
        chunk: u32,
        /// Workgroups per channel (= partial results per channel).
        nchunks: u32,
        /// Scale applied to the result (1/count for a mean).
        s: f32,
        /// `sum_outer` only: the destination block ([`Block`]; 0 columns: the whole
        /// output).
        dst_cols: u32,
        dst_stride: u32,
        dst_off: u32,
        pad0: u32,
        pad1: u32,
        pad2: u32,
    }
}

/// A block of `cols` columns of a row-major matrix `stride` columns wide, from column
/// `off`: where [`sum_outer_into`] writes a (rows × cols) sum, in place in the wider matrix
/// (a weight gradient's block of the gradient of a concatenation's weights).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Block {
    pub cols: usize,
    pub stride: usize,
    pub off: usize,
}

/// Channels of at most this many elements are summed by one invocation each
/// (`sum_serial`); the partials of larger ones are too (at most a few thousand).
const SERIAL_MAX: usize = 4096;

/// `sum_serial` (or `sum_serial4` where the rows are whole vec4s): one invocation per
/// channel, no workgroup reduction.
fn sum_serial(x: &Tensor, outer: usize, c: usize, inner: usize, s: f32) -> Result<Tensor> {
    sum_one_pass(x, outer, c, inner, s, false)
}

/// A per-channel sum in one dispatch: [`sum_serial`]'s kernels, or with `per_workgroup`
/// (rows of whole vec4s), `sum_channels_cpu4`, one workgroup per channel.
fn sum_one_pass(
    x: &Tensor,
    outer: usize,
    c: usize,
    inner: usize,
    s: f32,
    per_workgroup: bool,
) -> Result<Tensor> {
    let gpu = x.gpu();
    let out = Tensor::uninit(gpu, [c], "sum")?;
    let params = ReduceParams {
        outer: u32_of(outer),
        c: u32_of(c),
        inner: u32_of(inner),
        s,
        ..ReduceParams::default()
    };
    if per_workgroup {
        gpu.launch(
            &Kernel::new(Shader::Reduce, "sum_channels_cpu4"),
            &[x.bind(2), out.bind(1)],
            &params,
            [1, u32_of(c), 1],
        );
        return Ok(out);
    }
    let (entry, input) = if inner.is_multiple_of(4) {
        ("sum_serial4", x.bind(2))
    } else {
        ("sum_serial", x.bind(0))
    };
    launch_1d(
        gpu,
        &Kernel::new(Shader::Reduce, entry),
        &[input, out.bind(1)],
        &params,
        c,
    );
    Ok(out)
}

/// Σ over the (outer, C, inner) view of `x` per channel, times `s`: a (C) tensor.
pub(crate) fn sum_view(x: &Tensor, outer: usize, c: usize, inner: usize, s: f32) -> Result<Tensor> {
    debug_assert_eq!(outer * c * inner, x.numel());
    let gpu = x.gpu();
    let per_channel = outer * inner;
    if per_channel <= SERIAL_MAX {
        return sum_serial(x, outer, c, inner, s);
    }
    let max_groups = gpu.info().max_workgroups_per_dim as usize;
    let chunk = CHUNK.max(per_channel.div_ceil(max_groups));
    let nchunks = per_channel.div_ceil(chunk);
    let kernel = Kernel::new(Shader::Reduce, "sum_partial");
    let pass =
        |input: &Tensor, outer: usize, inner: usize, chunk: usize, nchunks: usize, s: f32| {
            let out = Tensor::uninit(gpu, [c * nchunks], "sum")?;
            let params = ReduceParams {
                outer: u32_of(outer),
                c: u32_of(c),
                inner: u32_of(inner),
                chunk: u32_of(chunk),
                nchunks: u32_of(nchunks),
                s,
                ..ReduceParams::default()
            };
            gpu.launch(
                &kernel,
                &[input.bind(0), out.bind(1)],
                &params,
                [u32_of(nchunks), u32_of(c), 1],
            );
            Ok::<Tensor, Error>(out)
        };
    // On CPU adapters a channel per workgroup where there are channels for the cores
    // (a whole-tensor sum, C = 1, keeps the two passes, which spread over them).
    if inner.is_multiple_of(4)
        && gpu.info().kernels == KernelClass::Cpu
        && (2..=max_groups).contains(&c)
    {
        return sum_one_pass(x, outer, c, inner, s, true);
    }
    if inner.is_multiple_of(4) && outer <= max_groups {
        // Rows as vec4s, one workgroup per (chunk of a row, row, channel), then the
        // partials of each channel summed (unless each channel is one chunk of one row).
        let chunk = CHUNK.max(inner.div_ceil(max_groups).next_multiple_of(4));
        let row_chunks = inner.div_ceil(chunk);
        let parts = outer * row_chunks;
        let partial = Tensor::uninit(gpu, [c * parts], "sum")?;
        let params = ReduceParams {
            outer: u32_of(outer),
            c: u32_of(c),
            inner: u32_of(inner),
            chunk: u32_of(chunk),
            nchunks: u32_of(row_chunks),
            s: if parts == 1 { s } else { 1.0 },
            ..ReduceParams::default()
        };
        gpu.launch(
            &Kernel::new(Shader::Reduce, "sum_rows4"),
            &[x.bind(2), partial.bind(1)],
            &params,
            [u32_of(row_chunks), u32_of(outer), u32_of(c)],
        );
        if parts == 1 {
            return Ok(partial);
        }
        return sum_serial(&partial, 1, c, parts, s);
    }
    if nchunks == 1 {
        return pass(x, outer, inner, chunk, 1, s);
    }
    // Second pass: the partials are (C, nchunks), i.e. (1, C, nchunks).
    let partial = pass(x, outer, inner, chunk, nchunks, 1.0)?;
    sum_serial(&partial, 1, c, nchunks, s)
}

/// out[i] = s · Σ_o x[o, i] for x viewed as (outer, len).
pub(crate) fn sum_outer(
    x: &Tensor,
    outer: usize,
    len: usize,
    s: f32,
    shape: &[usize],
) -> Result<Tensor> {
    let out = Tensor::uninit(x.gpu(), shape, "sum_outer")?;
    sum_outer_into(x, outer, len, s, &out, None);
    Ok(out)
}

/// [`sum_outer`] into `out`: all of it, or, with a block, the sum seen as rows of
/// `block.cols` into that block of `out`.
pub(crate) fn sum_outer_into(
    x: &Tensor,
    outer: usize,
    len: usize,
    s: f32,
    out: &Tensor,
    block: Option<Block>,
) {
    debug_assert_eq!(outer * len, x.numel());
    let b = block.unwrap_or(Block {
        cols: 0,
        stride: 0,
        off: 0,
    });
    debug_assert!(
        block.is_none_or(|b| (len / b.cols - 1) * b.stride + b.off + b.cols <= out.numel())
    );
    // sum_outer reads the outer count from `outer` and the length from `c`.
    let params = ReduceParams {
        outer: u32_of(outer),
        c: u32_of(len),
        s,
        dst_cols: u32_of(b.cols),
        dst_stride: u32_of(b.stride),
        dst_off: u32_of(b.off),
        ..ReduceParams::default()
    };
    launch_1d(
        x.gpu(),
        &Kernel::new(Shader::Reduce, "sum_outer"),
        &[x.bind(0), out.bind(1)],
        &params,
        len,
    );
}

fn nchw(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize, usize)> {
    x.shape().nchw().ok_or_else(|| Error::BadShape {
        op,
        shape: x.shape().clone(),
        expected: "rank 4 (N, C, H, W)".into(),
    })
}

fn reduce(x: &Tensor, outer: usize, c: usize, inner: usize, s: f32) -> Result<Tensor> {
    let out = sum_view(x, outer, c, inner, s)?;
    record(&[x], &out, || SumGrad { c, inner, scale: s });
    Ok(out)
}

/// Σ of all elements: a one-element tensor.
pub fn sum(x: &Tensor) -> Result<Tensor> {
    reduce(x, 1, 1, x.numel(), 1.0)
}

/// Mean of all elements: a one-element tensor.
pub fn mean(x: &Tensor) -> Result<Tensor> {
    reduce(x, 1, 1, x.numel(), 1.0 / x.numel() as f32)
}

/// Σ over (N, H, W) per channel of an NCHW tensor: a (C) tensor.
pub fn sum_channels(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = nchw("sum_channels", x)?;
    reduce(x, n, c, h * w, 1.0)
}

/// Mean over (N, H, W) per channel of an NCHW tensor: a (C) tensor.
pub fn mean_channels(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = nchw("mean_channels", x)?;
    reduce(x, n, c, h * w, 1.0 / (n * h * w) as f32)
}

/// y[c] = s · Σ_{o,q} x[o, c, q]  ⇒  dx[o, c, q] = s · dy[c], shaped like x. Keeps the
/// view's C and inner size and s.
struct SumGrad {
    c: usize,
    inner: usize,
    scale: f32,
}

impl Backward for SumGrad {
    fn backward(&self, dy: &Tensor, inputs: &[Input], _: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let dx = Tensor::uninit(dy.gpu(), inputs[0].shape.clone(), "sum_backward")?;
        let p = EwParams {
            s: self.scale,
            ..channel_view(self.c, self.inner)
        };
        launch_elementwise("broadcast_channel", Some(dy), None, &dx, dx.numel(), p);
        Ok(vec![Some(dx)])
    }
}

/// The f64 reference of this module's kernels, forward and backward: the textbook loop
/// that the tests hold the WGSL entry points to (and the f64 model is built from).
pub mod reference {
    /// s · Σ per channel of the (outer, C, inner) view: a (C) vector.
    pub fn sum_view(x: &[f64], outer: usize, c: usize, inner: usize, s: f64) -> Vec<f64> {
        let mut y = vec![0.0; c];
        for o in 0..outer {
            for (ch, yc) in y.iter_mut().enumerate() {
                for q in 0..inner {
                    *yc += x[(o * c + ch) * inner + q];
                }
            }
        }
        y.iter().map(|v| s * v).collect()
    }

    /// Backward of [`sum_view`]: dx[o, c, q] = s · dy[c].
    pub fn sum_view_backward(dy: &[f64], outer: usize, c: usize, inner: usize, s: f64) -> Vec<f64> {
        let mut dx = vec![0.0; outer * c * inner];
        for o in 0..outer {
            for ch in 0..c {
                for q in 0..inner {
                    dx[(o * c + ch) * inner + q] = s * dy[ch];
                }
            }
        }
        dx
    }
}
