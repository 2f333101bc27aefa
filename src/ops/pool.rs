//! 2×2 max pooling (stride 2 'valid' for down-sampling, stride 1 Keras 'same' inside the
//! hybrid pools) and nearest ×2 upsampling (the decoder's Up). `shaders/pool.wgsl`.
//!
//! - max_pool_valid: x (N, C, H, W) → (N, C, ⌊H/2⌋, ⌊W/2⌋); an odd last row or column
//!   is dropped (and gets zero gradient), as in Keras 'valid'.
//! - max_pool_same: x (N, C, H, W) → (N, C, H, W); the window at (i, j) covers
//!   (i..i+1, j..j+1) clipped at the right/bottom border.
//! - upsample2x: x (N, C, H, W) → (N, C, 2H, 2W).
//!
//! The max-pool gradient goes to the first maximum of each window in row-major order
//! (ties broken towards the top-left), summed where stride-1 windows overlap.

use super::launch_1d;
use super::u32_of;
use crate::autodiff::{Backward, Input, Piecewise, record};
use crate::error::{Error, Result};
use crate::runtime::{Kernel, Shader, kernel_params};
use crate::tensor::{Shape, Tensor};

fn nchw(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize, usize)> {
    x.shape().nchw().ok_or_else(|| Error::BadShape {
        op,
        shape: x.shape().clone(),
        expected: "rank 4 (N, C, H, W)".into(),
    })
}

kernel_params! {
    /// The block of `shaders/pool.wgsl`.
    pub(crate) struct PoolParams for Pool {
        /// Input H, W.
        h: u32,
        w: u32,
        /// Output H, W.
        ho: u32,
        wo: u32,
        /// Invocations that do work.
        total: u32,
        /// The `*4` entries: log2 of the vec4s of a row one workgroup covers.
        shift: u32,
        pad1: u32,
        pad2: u32,
    }
}

/// Whether the `*4` entries take (N·C) planes of H×W: W a multiple of 4, rows of at least
/// 64 vec4s or a power of two of them (a workgroup then covers whole rows), and H and N·C
/// within the grid's per-dimension limit.
fn rows4(x: &Tensor, planes: usize, h: usize, w: usize) -> bool {
    let max = x.gpu().info().max_workgroups_per_dim as usize;
    let q = w / 4;
    w.is_multiple_of(4) && (q >= 64 || q.is_power_of_two()) && h <= max && planes <= max
}

/// Rows of a strip of `max_pool_same4` and its backward (their POOL_R).
const POOL_ROWS: u32 = 4;

/// The `*4` entries (W a multiple of 4, one invocation per vec4 of a row, on the grid
/// (⌈W/4/64⌉, row blocks, N·C); see the shader): x and dy bound both as scalars and as
/// vec4s, the output as vec4s.
fn launch_rows4(
    kernel: &Kernel,
    rows: usize,
    x: &Tensor,
    dy: Option<&Tensor>,
    out: &Tensor,
    (h, w): (usize, usize),
) {
    let planes = out.numel() / (h * w);
    // log2 of the vec4s of a row a workgroup covers (see the shader).
    let shift = (w / 4).min(64).ilog2();
    let rows_per_group = 64 >> shift;
    let params = PoolParams {
        h: u32_of(h),
        w: u32_of(w),
        ho: u32_of(h),
        wo: u32_of(w),
        total: u32_of(out.numel() / 4),
        shift,
        ..PoolParams::default()
    };
    let mut bindings = vec![x.bind(0), x.bind(3), out.bind(5)];
    if let Some(dy) = dy {
        bindings.extend([dy.bind(1), dy.bind(4)]);
    }
    out.gpu().launch(
        kernel,
        &bindings,
        &params,
        [
            u32_of((w / 4).div_ceil(64)),
            u32_of(h.div_ceil(rows_per_group * rows)),
            u32_of(planes),
        ],
    );
}

/// Launch `entry` with `total` invocations (what each one covers is the entry's business:
/// an output, an input pixel, a window or a strip), reading x (slot 0) and dy (slot 1).
#[allow(clippy::too_many_arguments)]
fn launch(
    entry: &'static str,
    x: Option<&Tensor>,
    dy: Option<&Tensor>,
    out: &Tensor,
    hw: (usize, usize),
    ohw: (usize, usize),
    total: usize,
) {
    let params = PoolParams {
        h: u32_of(hw.0),
        w: u32_of(hw.1),
        ho: u32_of(ohw.0),
        wo: u32_of(ohw.1),
        total: u32_of(total),
        ..PoolParams::default()
    };
    let mut bindings = Vec::with_capacity(3);
    if let Some(x) = x {
        bindings.push(x.bind(0));
    }
    if let Some(dy) = dy {
        bindings.push(dy.bind(1));
    }
    bindings.push(out.bind(2));
    launch_1d(
        out.gpu(),
        &Kernel::new(Shader::Pool, entry),
        &bindings,
        &params,
        total,
    );
}

/// 2×2 max pool, stride 2: (N, C, H, W) → (N, C, ⌊H/2⌋, ⌊W/2⌋); H and W at least 2.
pub fn max_pool_valid(x: &Tensor) -> Result<Tensor> {
    let op = "max_pool_valid";
    let (n, c, h, w) = nchw(op, x)?;
    if h < 2 || w < 2 {
        return Err(Error::BadShape {
            op,
            shape: x.shape().clone(),
            expected: "H and W at least 2".into(),
        });
    }
    let (ho, wo) = (h / 2, w / 2);
    let y = Tensor::uninit(x.gpu(), [n, c, ho, wo], op)?;
    launch(op, Some(x), None, &y, (h, w), (ho, wo), y.numel());
    record(&[x], &y, || MaxPoolGrad {
        x: x.clone(),
        valid: true,
    });
    Ok(y)
}

/// Backward of [`max_pool_valid`]: dx (N, C, H, W).
// y[i, j] = max x[2i..2i+1, 2j..2j+1]  ⇒  dx[u, v] = dy[u/2, v/2] at the window's first arg-max
fn max_pool_valid_backward(x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = nchw("max_pool_valid_backward", x)?;
    let dx = Tensor::uninit(x.gpu(), x.shape().clone(), "max_pool_valid_backward")?;
    // One invocation per window, counting the partial windows of an odd last row/column.
    let total = n * c * h.div_ceil(2) * w.div_ceil(2);
    launch(
        "max_pool_valid_backward",
        Some(x),
        Some(dy),
        &dx,
        (h, w),
        (h / 2, w / 2),
        total,
    );
    Ok(dx)
}

/// 2×2 max pool, stride 1, Keras 'same': (N, C, H, W) → (N, C, H, W).
pub fn max_pool_same(x: &Tensor) -> Result<Tensor> {
    let op = "max_pool_same";
    let (n, c, h, w) = nchw(op, x)?;
    let y = Tensor::uninit(x.gpu(), x.shape().clone(), op)?;
    if rows4(x, n * c, h, w) {
        // Strips of POOL_ROWS rows (`max_pool_same4`'s POOL_R).
        let kernel = Kernel::new(Shader::Pool, "max_pool_same4").with("POOL_R", POOL_ROWS);
        launch_rows4(&kernel, POOL_ROWS as usize, x, None, &y, (h, w));
    } else {
        // One invocation per row strip of 4 outputs (see the shader).
        let strips = n * c * h * w.div_ceil(4);
        launch(op, Some(x), None, &y, (h, w), (h, w), strips);
    }
    record(&[x], &y, || MaxPoolGrad {
        x: x.clone(),
        valid: false,
    });
    Ok(y)
}

/// Backward of [`max_pool_same`]: dx (N, C, H, W).
// y[i, j] = max x[i..i+1, j..j+1] (clipped)
//   ⇒ dx[u, v] = Σ dy[i, j] over the windows whose first arg-max is (u, v)
fn max_pool_same_backward(x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = nchw("max_pool_same_backward", x)?;
    let dx = Tensor::uninit(x.gpu(), x.shape().clone(), "max_pool_same_backward")?;
    if rows4(x, n * c, h, w) {
        let kernel = Kernel::new(Shader::Pool, "max_pool_same_backward4").with("POOL_R", POOL_ROWS);
        launch_rows4(&kernel, POOL_ROWS as usize, x, Some(dy), &dx, (h, w));
    } else {
        // One invocation per row strip of 4 pixels (see the shader).
        let total = n * c * h * w.div_ceil(4);
        launch(
            "max_pool_same_backward",
            Some(x),
            Some(dy),
            &dx,
            (h, w),
            (h, w),
            total,
        );
    }
    Ok(dx)
}

/// Nearest-neighbour upsampling ×2: (N, C, H, W) → (N, C, 2H, 2W).
pub fn upsample2x(x: &Tensor) -> Result<Tensor> {
    let op = "upsample2x";
    let (n, c, h, w) = nchw(op, x)?;
    let y = Tensor::uninit(x.gpu(), [n, c, 2 * h, 2 * w], op)?;
    launch(op, Some(x), None, &y, (h, w), (2 * h, 2 * w), x.numel());
    record(&[x], &y, || UpsampleGrad);
    Ok(y)
}

/// Backward of [`upsample2x`]: dx (N, C, H, W), shaped `x_shape`.
// y[i, j] = x[i/2, j/2]  ⇒  dx[u, v] = Σ dy[2u..2u+1, 2v..2v+1]
fn upsample2x_backward(dy: &Tensor, x_shape: &Shape) -> Result<Tensor> {
    let (_, _, h, w) = x_shape.nchw().ok_or_else(|| Error::BadShape {
        op: "upsample2x_backward",
        shape: x_shape.clone(),
        expected: "rank 4 (N, C, H, W)".into(),
    })?;
    let dx = Tensor::uninit(dy.gpu(), x_shape.clone(), "upsample2x_backward")?;
    let total = dx.numel();
    launch(
        "upsample2x_backward",
        None,
        Some(dy),
        &dx,
        (h, w),
        (2 * h, 2 * w),
        total,
    );
    Ok(dx)
}

/// A max pool's backward keeps its input x: each window's arg-max there is its decision
/// (see `Tape::piecewise_inputs`).
struct MaxPoolGrad {
    x: Tensor,
    /// Stride 2 (else the stride-1 'same' pool).
    valid: bool,
}

impl Backward for MaxPoolGrad {
    fn backward(&self, dy: &Tensor, _: &[Input], _: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(if self.valid {
            max_pool_valid_backward(&self.x, dy)?
        } else {
            max_pool_same_backward(&self.x, dy)?
        })])
    }

    fn piecewise(&self) -> Option<Piecewise> {
        Some(if self.valid {
            Piecewise::MaxPoolValid(self.x.clone())
        } else {
            Piecewise::MaxPoolSame(self.x.clone())
        })
    }
}

/// Upsampling's backward keeps nothing but the input's shape (from the tape).
struct UpsampleGrad;

impl Backward for UpsampleGrad {
    fn backward(&self, dy: &Tensor, inputs: &[Input], _: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(upsample2x_backward(dy, &inputs[0].shape)?)])
    }
}

pub mod reference {
    //! The f64 reference of this module's kernels, forward and backward: the textbook
    //! loop that the tests hold the WGSL entry points to (and the f64 model is built
    //! from).
    //!
    //! References of the 2×2 max pools (stride 2 'valid', stride 1 Keras 'same') and of the
    //! nearest ×2 upsampling. Planes are the (n, c) maps of an NCHW tensor: the functions
    //! take the number of planes `nc` = N·C.

    /// Row-major index within the plane of the first maximum of the 2×2 window at (r0, c0),
    /// clipped at the right/bottom border (the f64 model records these picks as its
    /// decisions).
    pub(crate) fn window_argmax(x: &[f64], w: usize, h: usize, r0: usize, c0: usize) -> usize {
        let mut best = r0 * w + c0;
        for r in r0..(r0 + 2).min(h) {
            for c in c0..(c0 + 2).min(w) {
                if x[r * w + c] > x[best] {
                    best = r * w + c;
                }
            }
        }
        best
    }

    /// 2×2 max pool, stride 2: (nc, H, W) → (nc, H/2, W/2), an odd last row/column dropped.
    pub fn max_pool_valid(x: &[f64], nc: usize, h: usize, w: usize) -> Vec<f64> {
        let (ho, wo) = (h / 2, w / 2);
        let mut y = Vec::with_capacity(nc * ho * wo);
        for plane in x.chunks(h * w).take(nc) {
            for i in 0..ho {
                for j in 0..wo {
                    y.push(plane[window_argmax(plane, w, h, 2 * i, 2 * j)]);
                }
            }
        }
        y
    }

    /// Backward of [`max_pool_valid`]: each dy goes to the first arg-max of its window.
    pub fn max_pool_valid_backward(
        x: &[f64],
        dy: &[f64],
        nc: usize,
        h: usize,
        w: usize,
    ) -> Vec<f64> {
        let (ho, wo) = (h / 2, w / 2);
        let mut dx = vec![0.0; nc * h * w];
        for p in 0..nc {
            let plane = &x[p * h * w..(p + 1) * h * w];
            for i in 0..ho {
                for j in 0..wo {
                    dx[p * h * w + window_argmax(plane, w, h, 2 * i, 2 * j)] +=
                        dy[(p * ho + i) * wo + j];
                }
            }
        }
        dx
    }

    /// 2×2 max pool, stride 1, Keras 'same': (nc, H, W) → (nc, H, W); the window at (i, j)
    /// covers rows i..i+1 and columns j..j+1, clipped at the right/bottom border.
    pub fn max_pool_same(x: &[f64], nc: usize, h: usize, w: usize) -> Vec<f64> {
        let mut y = Vec::with_capacity(nc * h * w);
        for plane in x.chunks(h * w).take(nc) {
            for i in 0..h {
                for j in 0..w {
                    y.push(plane[window_argmax(plane, w, h, i, j)]);
                }
            }
        }
        y
    }

    /// Backward of [`max_pool_same`]: each dy goes to the first arg-max of its window, and
    /// a pixel that is the arg-max of several windows receives the sum.
    pub fn max_pool_same_backward(
        x: &[f64],
        dy: &[f64],
        nc: usize,
        h: usize,
        w: usize,
    ) -> Vec<f64> {
        let mut dx = vec![0.0; nc * h * w];
        for p in 0..nc {
            let plane = &x[p * h * w..(p + 1) * h * w];
            for i in 0..h {
                for j in 0..w {
                    dx[p * h * w + window_argmax(plane, w, h, i, j)] += dy[(p * h + i) * w + j];
                }
            }
        }
        dx
    }

    /// Nearest-neighbour upsampling ×2: (nc, H, W) → (nc, 2H, 2W), y[i, j] = x[i/2, j/2].
    pub fn upsample2x(x: &[f64], nc: usize, h: usize, w: usize) -> Vec<f64> {
        let mut y = vec![0.0; nc * 4 * h * w];
        for p in 0..nc {
            for i in 0..2 * h {
                for j in 0..2 * w {
                    y[(p * 2 * h + i) * 2 * w + j] = x[(p * h + i / 2) * w + j / 2];
                }
            }
        }
        y
    }

    /// Backward of [`upsample2x`]: dx[u, v] = Σ of the 2×2 block of dy it was copied to.
    pub fn upsample2x_backward(dy: &[f64], nc: usize, h: usize, w: usize) -> Vec<f64> {
        let mut dx = vec![0.0; nc * h * w];
        for p in 0..nc {
            for i in 0..2 * h {
                for j in 0..2 * w {
                    dx[(p * h + i / 2) * w + j / 2] += dy[(p * 2 * h + i) * 2 * w + j];
                }
            }
        }
        dx
    }
}
