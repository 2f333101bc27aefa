//! The k×k convolutions: depthwise (the first half of every SepConv) and dense with
//! stride and padding (CSA's 2×2 stride-2 and 3×3 stride-1 convs). `shaders/conv.wgsl`.
//!
//! - depthwise: x (N, C, H, W), k (C, 1, K, K), K ∈ {1, 3, 5}, stride 1, 'same' zero
//!   padding, no bias → (N, C, H, W). Direct kernels, 8 outputs per invocation (4 for
//!   the kernel gradient), one pipeline per K.
//! - dense: x (N, Cin, H, W), w (Cout, Cin, kh, kw), b (Cout) → (N, Cout, Ho, Wo),
//!   Ho = (H + 2·pad − kh) / stride + 1. An im2col into (N, Cin·kh·kw, Ho·Wo) and the
//!   register-blocked matmul of [`super::conv1x1`]; a 1×1 stride-1 unpadded call is
//!   [`conv1x1`] itself.

use super::conv1x1::{Matmul, conv1x1};
use super::reduce::{sum_outer, sum_view};
use super::{launch_1d, u32_of};
use crate::autodiff::{Backward, Input, record};
use crate::error::{Error, Result};
use crate::runtime::{Kernel, KernelClass, Shader, kernel_params};
use crate::tensor::Tensor;

/// Outputs per invocation along a row in the kernel gradient, im2col and col2im (`TW`
/// in the shader)…
const TW: usize = 4;
/// …and in the depthwise forward and input gradient (`DW_TW`).
const DW_TW: usize = 8;
/// Output rows per invocation of the CPU-shaped depthwise kernel (`DW_R`).
const DW_R: usize = 4;
/// The depthwise kernel gradient aims at about this many invocations (enough to fill a
/// GPU), each summing a chunk of rows of one 4-column strip…
const KG_INVOCATIONS: usize = 16384;
/// …of at least this many rows, so the K − 1 halo rows each one loads stay a minority
/// and the partials (which the second pass sums serially) stay few.
const KG_MIN_ROWS: usize = 4;

/// Sizes of a depthwise convolution.
#[derive(Clone, Copy)]
struct Dw {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
}

kernel_params! {
    /// The block of `shaders/conv.wgsl`, shared by its entries.
    pub(crate) struct ConvParams for Conv {
        n: u32,
        /// Channels (Cin for im2col/col2im).
        c: u32,
        h: u32,
        w: u32,
        /// Dense kernel rows (dw_conv_kgrad: rows per partial sum; dw_conv: unused).
        kh: u32,
        kw: u32,
        /// Informational: the kernels use the STRIDE override.
        stride: u32,
        pad: u32,
        ho: u32,
        wo: u32,
        /// Invocations that do work.
        total: u32,
        /// dw_conv_kgrad: partial sums per (c, tap).
        parts: u32,
    }
}

impl Dw {
    /// How the kernel gradient splits its sums: (rows per partial, row chunks per plane,
    /// partials per (c, tap)), one partial per (n, row chunk, column strip).
    fn kgrad_split(&self) -> (usize, usize, usize) {
        let strips = self.w.div_ceil(TW);
        let planes = self.n * self.c * strips;
        let max_chunks = self.h.div_ceil(KG_MIN_ROWS);
        let rows = self
            .h
            .div_ceil(KG_INVOCATIONS.div_ceil(planes).clamp(1, max_chunks));
        let chunks = self.h.div_ceil(rows);
        (rows, chunks, self.n * chunks * strips)
    }

    /// The depthwise entries' block: stride 1, 'same' padding K/2, `total` invocations;
    /// `rows` and `parts` are dw_conv_kgrad's.
    fn params(&self, total: usize, rows: usize, parts: usize) -> ConvParams {
        ConvParams {
            n: u32_of(self.n),
            c: u32_of(self.c),
            h: u32_of(self.h),
            w: u32_of(self.w),
            kh: u32_of(rows),
            kw: u32_of(self.k),
            stride: 1,
            pad: u32_of(self.k / 2),
            ho: u32_of(self.h),
            wo: u32_of(self.w),
            total: u32_of(total),
            parts: u32_of(parts),
        }
    }
}

fn dw_check(x: &Tensor, k: &Tensor) -> Result<Dw> {
    let op = "depthwise_conv2d";
    let (n, c, h, w) = x.shape().nchw().ok_or_else(|| Error::BadShape {
        op,
        shape: x.shape().clone(),
        expected: "rank 4 input (N, C, H, W)".into(),
    })?;
    match k.dims() {
        &[kc, 1, kh, kw] if kc == c && kh == kw && matches!(kh, 1 | 3 | 5) => {
            Ok(Dw { n, c, h, w, k: kh })
        }
        _ => Err(Error::Shape {
            op,
            lhs: x.shape().clone(),
            rhs: k.shape().clone(),
        }),
    }
}

/// The largest buffer, in floats, that the depthwise K×K convolution of x (N, C, H, W)
/// allocates inside its backward beyond the gradients: the kernel gradient's partial sums.
/// The memory budget (`crate::model::Count`) reads it.
pub(crate) fn depthwise_scratch_floats(n: usize, c: usize, h: usize, w: usize, k: usize) -> usize {
    let (_, _, parts) = Dw { n, c, h, w, k }.kgrad_split();
    parts * c * k * k
}

/// The dw_conv entry: y = x ⋆ k, or with `flip` dx = dy ⋆ rot180(k). CPU adapters take
/// `dw_conv_cpu` (blocks of `DW_R` rows, rows read as vec4s) when W is a multiple of 4, or
/// with few pipelines `dw_conv_cpu_any` (the same for every K).
fn dw_launch(src: &Tensor, k: &Tensor, dst: &Tensor, d: Dw, flip: bool) {
    let cpu = src.gpu().info().kernels == KernelClass::Cpu && d.w.is_multiple_of(4);
    let (entry, total, bindings) = if cpu {
        let total = d.n * d.c * d.h.div_ceil(DW_R) * d.w.div_ceil(DW_TW);
        ("dw_conv_cpu", total, [src.bind(3), k.bind(1), dst.bind(4)])
    } else {
        let total = d.n * d.c * d.h * d.w.div_ceil(DW_TW);
        ("dw_conv", total, [src.bind(0), k.bind(1), dst.bind(2)])
    };
    let params = d.params(total, 0, 0);
    // With few pipelines, `dw_conv_cpu_any` serves every K (read from the parameters).
    let kernel = if cpu && src.gpu().few_pipelines() {
        Kernel::new(Shader::Conv, "dw_conv_cpu_any")
    } else {
        Kernel::new(Shader::Conv, entry).with("K", u32_of(d.k))
    };
    let kernel = kernel.with("FLIP", u32::from(flip));
    launch_1d(src.gpu(), &kernel, &bindings, &params, total);
}

/// Depthwise k×k convolution, stride 1, 'same' zero padding, no bias:
/// x (N, C, H, W), k (C, 1, K, K) with K ∈ {1, 3, 5} → (N, C, H, W).
pub fn depthwise_conv2d(x: &Tensor, k: &Tensor) -> Result<Tensor> {
    let d = dw_check(x, k)?;
    let y = Tensor::uninit(x.gpu(), x.shape().clone(), "depthwise_conv2d")?;
    dw_launch(x, k, &y, d, false);
    record(&[x, k], &y, || DepthwiseGrad {
        x: x.clone(),
        k: k.clone(),
    });
    Ok(y)
}

/// Backward of [`depthwise_conv2d`]: (dx, dk).
// y[n,c,i,j] = Σ_{a,b} x[n,c,i+a−K/2,j+b−K/2]·k[c,a,b]
//   ⇒ dx[n,c,u,v] = Σ_{a,b} dy[n,c,u+a−K/2,v+b−K/2]·k[c,K−1−a,K−1−b]
//   ⇒ dk[c,a,b]   = Σ_{n,i,j} dy[n,c,i,j]·x[n,c,i+a−K/2,j+b−K/2]
fn depthwise_conv2d_backward(
    x: &Tensor,
    k: &Tensor,
    dy: &Tensor,
    need: [bool; 2],
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let d = dw_check(x, k)?;
    let dx = if need[0] {
        let dx = Tensor::uninit(x.gpu(), x.shape().clone(), "depthwise_conv2d_backward")?;
        dw_launch(dy, k, &dx, d, true);
        Some(dx)
    } else {
        None
    };
    let dk = if need[1] {
        // Partials (parts, C, K·K), one per (n, row chunk, column strip), then a sum
        // over the parts: no atomics, and the order of the sum is fixed.
        let (rows, chunks, parts) = d.kgrad_split();
        let planes = d.n * d.c * d.w.div_ceil(TW);
        let taps = d.k * d.k;
        let partial = Tensor::uninit(x.gpu(), [parts * d.c * taps], "depthwise_conv2d_backward")?;
        let total = planes * chunks;
        let params = d.params(total, rows, parts);
        // CPU adapters read whole rows as vec4s where W allows (`dw_conv_kgrad4`).
        let cpu = x.gpu().info().kernels == KernelClass::Cpu && d.w.is_multiple_of(TW);
        let (entry, bindings) = if cpu {
            ("dw_conv_kgrad4", [x.bind(3), dy.bind(5), partial.bind(2)])
        } else {
            ("dw_conv_kgrad", [x.bind(0), dy.bind(1), partial.bind(2)])
        };
        let kernel = Kernel::new(Shader::Conv, entry).with("K", u32_of(d.k));
        launch_1d(x.gpu(), &kernel, &bindings, &params, total);
        // One invocation per (c, tap) adds its `parts` partials: coalesced, and no
        // workgroup reduction with barriers (which costs lavapipe far more than the adds).
        Some(sum_outer(&partial, parts, d.c * taps, 1.0, k.dims())?)
    } else {
        None
    };
    Ok((dx, dk))
}

/// Sizes of a dense convolution.
#[derive(Clone, Copy)]
pub(crate) struct Dense {
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    pub(crate) ho: usize,
    pub(crate) wo: usize,
}

impl Dense {
    /// `entry` of the conv shader with this convolution's stride, kernel size and padding
    /// as override constants (`im2col4`, `col2im`: their loops unroll).
    fn shaped(&self, entry: &'static str) -> Kernel {
        Kernel::new(Shader::Conv, entry)
            .with("STRIDE", u32_of(self.stride))
            .with("IM_KH", u32_of(self.kh))
            .with("IM_KW", u32_of(self.kw))
            .with("IM_PAD", u32_of(self.pad))
    }

    /// x (N, Cin, H, W) with a (Cout, Cin, kh, kw) kernel; the sizes must be valid (see
    /// `dense_check`).
    pub(crate) fn new(
        [n, cin, h, w]: [usize; 4],
        [cout, kh, kw]: [usize; 3],
        stride: usize,
        pad: usize,
    ) -> Self {
        Self {
            n,
            cin,
            cout,
            h,
            w,
            kh,
            kw,
            stride,
            pad,
            ho: (h + 2 * pad - kh) / stride + 1,
            wo: (w + 2 * pad - kw) / stride + 1,
        }
    }

    /// A 1×1 kernel at stride 1 without padding: a [`conv1x1`], with no im2col.
    fn pointwise(&self) -> bool {
        (self.kh, self.kw, self.stride, self.pad) == (1, 1, 1, 0)
    }

    /// The largest buffer, in floats, that the convolution allocates inside its forward or
    /// backward: the im2col matrix (N, Cin·kh·kw, Ho·Wo) and its gradient; none for the 1×1
    /// case. The memory budget (`crate::model::Count`) reads it.
    pub(crate) fn scratch_floats(&self) -> usize {
        if self.pointwise() {
            0
        } else {
            self.n * self.rows() * self.cols()
        }
    }

    /// Rows of the im2col matrix: Cin·kh·kw.
    fn rows(&self) -> usize {
        self.cin * self.kh * self.kw
    }

    /// Columns of the im2col matrix (output pixels per sample): Ho·Wo.
    fn cols(&self) -> usize {
        self.ho * self.wo
    }

    fn params(&self, total: usize) -> ConvParams {
        ConvParams {
            n: u32_of(self.n),
            c: u32_of(self.cin),
            h: u32_of(self.h),
            w: u32_of(self.w),
            kh: u32_of(self.kh),
            kw: u32_of(self.kw),
            stride: u32_of(self.stride),
            pad: u32_of(self.pad),
            ho: u32_of(self.ho),
            wo: u32_of(self.wo),
            total: u32_of(total),
            parts: 0,
        }
    }
}

fn dense_check(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    pad: usize,
) -> Result<Dense> {
    let op = "conv2d";
    let (n, cin, h, wd) = x.shape().nchw().ok_or_else(|| Error::BadShape {
        op,
        shape: x.shape().clone(),
        expected: "rank 4 input (N, Cin, H, W)".into(),
    })?;
    let (cout, kh, kw) = match w.dims() {
        &[cout, c, kh, kw] if c == cin && kh > 0 && kw > 0 => (cout, kh, kw),
        _ => {
            return Err(Error::Shape {
                op,
                lhs: x.shape().clone(),
                rhs: w.shape().clone(),
            });
        }
    };
    if stride == 0 || h + 2 * pad < kh || wd + 2 * pad < kw {
        return Err(Error::BadShape {
            op,
            shape: x.shape().clone(),
            expected: format!(
                "a padded input at least as large as the {kh}×{kw} kernel and stride ≥ 1 (got stride {stride}, pad {pad})"
            ),
        });
    }
    super::check_bias(op, w, b, cout)?;
    Ok(Dense::new([n, cin, h, wd], [cout, kh, kw], stride, pad))
}

/// x (N, Cin, H, W) → col (N, Cin·kh·kw, Ho·Wo).
fn im2col(x: &Tensor, d: &Dense) -> Result<Tensor> {
    let col = Tensor::uninit(x.gpu(), [d.n, d.rows(), d.cols()], "conv2d im2col")?;
    // CPU adapters: one invocation per strip of 4 output columns of every col row of an
    // input channel (`im2col4`) where the rows are whole vec4s and its window fits.
    let window = d.kw - 1 + 4 * d.pad.div_ceil(4) - d.pad + 3 * d.stride;
    if x.gpu().info().kernels == KernelClass::Cpu
        && d.w.is_multiple_of(4)
        && d.wo.is_multiple_of(4)
        && window < 16
    {
        let total = d.n * d.cin * d.ho * d.wo / 4;
        launch_1d(
            x.gpu(),
            &d.shaped("im2col4"),
            &[x.bind(3), col.bind(4)],
            &d.params(total),
            total,
        );
        return Ok(col);
    }
    // One invocation per strip of TW output columns of each col row.
    let total = d.n * d.rows() * d.ho * d.wo.div_ceil(TW);
    launch_1d(
        x.gpu(),
        &Kernel::new(Shader::Conv, "im2col").with("STRIDE", u32_of(d.stride)),
        &[x.bind(0), col.bind(2)],
        &d.params(total),
        total,
    );
    Ok(col)
}

/// Dense convolution with zero padding `pad` on every side and stride `stride`:
/// x (N, Cin, H, W), w (Cout, Cin, kh, kw), b (Cout) → (N, Cout, Ho, Wo) with
/// Ho = (H + 2·pad − kh) / stride + 1 (and likewise Wo).
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    let d = dense_check(x, w, b, stride, pad)?;
    if d.pointwise() {
        return conv1x1(x, w, b);
    }
    let (r, p) = (d.rows(), d.cols());
    let col = im2col(x, &d)?;
    let y = Tensor::uninit(x.gpu(), [d.n, d.cout, d.ho, d.wo], "conv2d")?;
    // y[n] (Cout × P) = W (Cout × R) · col[n] (R × P)
    Matmul {
        m: d.cout,
        n: p,
        k: r,
        batch: d.n,
        a_off: 0,
        a_sb: 0,
        a_sm: r,
        a_sk: 1,
        b_sb: r * p,
        b_sk: p,
        b_sn: 1,
    }
    .run_weights(w, None, &col, b, &y, d.cout * p, p, false, false)?;
    let mut inputs = vec![x, w];
    inputs.extend(b);
    record(&inputs, &y, || Conv2dGrad {
        x: x.clone(),
        w: w.clone(),
        stride,
        pad,
        has_bias: b.is_some(),
    });
    Ok(y)
}

/// Backward of [`conv2d`] (not the 1×1 case, which records `Conv1x1`): (dx, dW, db).
// y[n] = W·col(x[n]) + b  ⇒  dx[n] = col2im(Wᵀ·dy[n]),  dW = Σ_n dy[n]·col(x[n])ᵀ,
//                            db = Σ_{n,q} dy[n, :, q]
fn conv2d_backward(
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    stride: usize,
    pad: usize,
    need: [bool; 3],
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let d = dense_check(x, w, None, stride, pad)?;
    let (r, p) = (d.rows(), d.cols());
    let dx = if need[0] {
        let dcol = Tensor::uninit(x.gpu(), [d.n, r, p], "conv2d_backward")?;
        // dcol[n] (R × P) = Wᵀ (R × Cout) · dy[n] (Cout × P); Wᵀ[r, co] = W[co, r]
        Matmul {
            m: r,
            n: p,
            k: d.cout,
            batch: d.n,
            a_off: 0,
            a_sb: 0,
            a_sm: 1,
            a_sk: r,
            b_sb: d.cout * p,
            b_sk: p,
            b_sn: 1,
        }
        .run(w, dy, None, &dcol, r * p, p);
        let dx = Tensor::uninit(x.gpu(), x.shape().clone(), "conv2d_backward")?;
        // One invocation per row strip of TW dx pixels.
        let total = d.n * d.cin * d.h * d.w.div_ceil(TW);
        launch_1d(
            x.gpu(),
            &d.shaped("col2im"),
            &[dcol.bind(0), dx.bind(2)],
            &d.params(total),
            total,
        );
        Some(dx)
    } else {
        None
    };
    let dw = if need[1] {
        // The column matrix is rebuilt rather than kept on the tape: it is kh·kw times
        // the size of x, and rebuilding it is one cheap copy.
        let col = im2col(x, &d)?;
        // dW (Cout × R) = Σ_n dy[n] (Cout × P) · col[n]ᵀ (P × R)
        Some(Matmul::weight_grad(d.n, d.cout, r, p).run_summed(dy, &col, w.dims())?)
    } else {
        None
    };
    let db = if need[2] {
        Some(sum_view(dy, d.n, d.cout, p, 1.0)?)
    } else {
        None
    };
    Ok((dx, dw, db))
}

/// The depthwise convolution's backward keeps x and k.
struct DepthwiseGrad {
    x: Tensor,
    k: Tensor,
}

impl Backward for DepthwiseGrad {
    fn backward(&self, dy: &Tensor, _: &[Input], need: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (dx, dk) = depthwise_conv2d_backward(&self.x, &self.k, dy, [need[0], need[1]])?;
        Ok(vec![dx, dk])
    }
}

/// The dense convolution's backward keeps x, W and the geometry.
struct Conv2dGrad {
    x: Tensor,
    w: Tensor,
    stride: usize,
    pad: usize,
    has_bias: bool,
}

impl Backward for Conv2dGrad {
    fn backward(&self, dy: &Tensor, _: &[Input], need: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let want = [need[0], need[1], self.has_bias && need[2]];
        let (dx, dw, db) = conv2d_backward(&self.x, &self.w, dy, self.stride, self.pad, want)?;
        Ok(vec![dx, dw, db])
    }
}

pub mod reference {
    //! The f64 reference of this module's kernels, forward and backward: the textbook
    //! loop that the tests hold the WGSL entry points to (and the f64 model is built
    //! from).
    //!
    //! References of the k×k convolutions: depthwise ('same', stride 1, no bias) and dense
    //! (stride, zero padding, bias). The 1×1 convolution is `crate::ops::conv1x1::reference::conv1x1`.

    /// Depthwise convolution: x (N, C, H, W), k (C, 1, K, K), K odd, 'same' zero padding
    /// (K/2 on every side), stride 1 → (N, C, H, W).
    pub fn depthwise_conv2d(
        x: &[f64],
        k: &[f64],
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        ks: usize,
    ) -> Vec<f64> {
        let half = (ks / 2) as isize;
        let mut y = vec![0.0; n * c * h * w];
        for nc in 0..n * c {
            let ch = nc % c;
            for i in 0..h {
                for j in 0..w {
                    let mut acc = 0.0;
                    for a in 0..ks {
                        for b in 0..ks {
                            let ii = i as isize + a as isize - half;
                            let jj = j as isize + b as isize - half;
                            if ii < 0 || jj < 0 || ii >= h as isize || jj >= w as isize {
                                continue;
                            }
                            acc += x[(nc * h + ii as usize) * w + jj as usize]
                                * k[(ch * ks + a) * ks + b];
                        }
                    }
                    y[(nc * h + i) * w + j] = acc;
                }
            }
        }
        y
    }

    /// Backward of [`depthwise_conv2d`]: (dx, dk).
    #[allow(clippy::too_many_arguments)]
    pub fn depthwise_conv2d_backward(
        x: &[f64],
        k: &[f64],
        dy: &[f64],
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        ks: usize,
    ) -> (Vec<f64>, Vec<f64>) {
        let half = (ks / 2) as isize;
        let mut dx = vec![0.0; x.len()];
        let mut dk = vec![0.0; k.len()];
        for nc in 0..n * c {
            let ch = nc % c;
            for i in 0..h {
                for j in 0..w {
                    let g = dy[(nc * h + i) * w + j];
                    for a in 0..ks {
                        for b in 0..ks {
                            let ii = i as isize + a as isize - half;
                            let jj = j as isize + b as isize - half;
                            if ii < 0 || jj < 0 || ii >= h as isize || jj >= w as isize {
                                continue;
                            }
                            let xi = (nc * h + ii as usize) * w + jj as usize;
                            let ki = (ch * ks + a) * ks + b;
                            dx[xi] += g * k[ki];
                            dk[ki] += g * x[xi];
                        }
                    }
                }
            }
        }
        (dx, dk)
    }

    /// Sizes of a dense convolution.
    #[derive(Clone, Copy, Debug)]
    pub struct Conv2d {
        pub n: usize,
        pub cin: usize,
        pub cout: usize,
        pub h: usize,
        pub w: usize,
        pub kh: usize,
        pub kw: usize,
        pub stride: usize,
        pub pad: usize,
    }

    impl Conv2d {
        /// Output rows and columns: (H + 2·pad − kh) / stride + 1.
        pub fn out_hw(&self) -> (usize, usize) {
            (
                (self.h + 2 * self.pad - self.kh) / self.stride + 1,
                (self.w + 2 * self.pad - self.kw) / self.stride + 1,
            )
        }

        /// The input pixel under tap (a, b) of output (oi, oj), if not in the padding.
        fn src(&self, oi: usize, oj: usize, a: usize, b: usize) -> Option<(usize, usize)> {
            let ii = (oi * self.stride + a).checked_sub(self.pad)?;
            let jj = (oj * self.stride + b).checked_sub(self.pad)?;
            (ii < self.h && jj < self.w).then_some((ii, jj))
        }
    }

    /// Dense convolution: x (N, Cin, H, W), w (Cout, Cin, kh, kw), b (Cout) → (N, Cout, Ho, Wo).
    pub fn conv2d(x: &[f64], wt: &[f64], bias: Option<&[f64]>, d: Conv2d) -> Vec<f64> {
        let (ho, wo) = d.out_hw();
        let mut y = vec![0.0; d.n * d.cout * ho * wo];
        for n in 0..d.n {
            for co in 0..d.cout {
                for oi in 0..ho {
                    for oj in 0..wo {
                        let mut acc = bias.map_or(0.0, |b| b[co]);
                        for ci in 0..d.cin {
                            for a in 0..d.kh {
                                for b in 0..d.kw {
                                    if let Some((ii, jj)) = d.src(oi, oj, a, b) {
                                        acc += wt[((co * d.cin + ci) * d.kh + a) * d.kw + b]
                                            * x[((n * d.cin + ci) * d.h + ii) * d.w + jj];
                                    }
                                }
                            }
                        }
                        y[((n * d.cout + co) * ho + oi) * wo + oj] = acc;
                    }
                }
            }
        }
        y
    }

    /// Backward of [`conv2d`]: (dx, dw, db).
    pub fn conv2d_backward(
        x: &[f64],
        wt: &[f64],
        dy: &[f64],
        d: Conv2d,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (ho, wo) = d.out_hw();
        let mut dx = vec![0.0; x.len()];
        let mut dw = vec![0.0; wt.len()];
        let mut db = vec![0.0; d.cout];
        for n in 0..d.n {
            for co in 0..d.cout {
                for oi in 0..ho {
                    for oj in 0..wo {
                        let g = dy[((n * d.cout + co) * ho + oi) * wo + oj];
                        db[co] += g;
                        for ci in 0..d.cin {
                            for a in 0..d.kh {
                                for b in 0..d.kw {
                                    if let Some((ii, jj)) = d.src(oi, oj, a, b) {
                                        let wi = ((co * d.cin + ci) * d.kh + a) * d.kw + b;
                                        let xi = ((n * d.cin + ci) * d.h + ii) * d.w + jj;
                                        dx[xi] += g * wt[wi];
                                        dw[wi] += g * x[xi];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (dx, dw, db)
    }
}
