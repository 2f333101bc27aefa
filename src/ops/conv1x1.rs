//! The pointwise (1×1) convolution with bias, as a register-blocked batched matmul
//! (`shaders/matmul.wgsl`). Three quarters of RCA-IUnet's FLOPs go through here.
//!
//! x is (N, Cin, H, W), w is (Cout, Cin, 1, 1), b is (Cout); y is (N, Cout, H, W) with
//! y[n] = W · x[n] + b, each x[n] seen as a Cin × (H·W) matrix.

use super::reduce::{sum_outer, sum_view};
use super::u32_of;
use crate::autodiff::{Backward, Input, record};
use crate::error::{Error, Result};
use crate::runtime::{Kernel, KernelClass, Shader, kernel_params};
use crate::tensor::Tensor;

/// Rows and columns of C computed by one workgroup (8×8 invocations of 4×8 outputs).
const TILE_M: usize = 32;
const TILE_N: usize = 64;
/// Split-K aims for at least this many workgroups, so that a product with a small
/// output and a long reduction (the weight gradient: Cout × Cin over N·H·W) still fills
/// the device.
const TARGET_WORKGROUPS: usize = 256;
/// …but never splits K into chunks shorter than this.
const MIN_KCHUNK: usize = 256;
/// `matmul_cpu`: rows of C per invocation, and invocations (column quads) per workgroup.
const CPU_ROWS: usize = 16;
const CPU_GROUP: usize = 64;

kernel_params! {
    /// The block of `shaders/matmul.wgsl`: sizes, split-K and the strides of A, B and C
    /// (see the shader's header).
    pub(crate) struct MatmulParams for Matmul {
        m: u32,
        n: u32,
        k: u32,
        kchunk: u32,
        splits: u32,
        a_sb: u32,
        a_sm: u32,
        a_sk: u32,
        b_sb: u32,
        b_sk: u32,
        b_sn: u32,
        c_sb: u32,
        c_sm: u32,
        has_bias: u32,
    }
}

/// Strides of one batched product C[z] = A[b]·B[b] (see the shader's header).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Matmul {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    pub a_sb: usize,
    pub a_sm: usize,
    pub a_sk: usize,
    pub b_sb: usize,
    pub b_sk: usize,
    pub b_sn: usize,
}

impl Matmul {
    /// Launch into `c`, whose rows (per batch and split) are `c_sm` apart and whose
    /// batches are `c_sb` apart.
    #[allow(clippy::too_many_arguments)]
    fn launch(
        &self,
        a: &Tensor,
        b: &Tensor,
        bias: Option<&Tensor>,
        c: &Tensor,
        c_sb: usize,
        c_sm: usize,
        splits: usize,
        kchunk: usize,
    ) {
        let params = self.params(c_sb, c_sm, splits, kchunk, bias.is_some());
        let grid = [
            u32_of(self.n.div_ceil(TILE_N)),
            u32_of(self.m.div_ceil(TILE_M)),
            u32_of(self.batch * splits),
        ];
        let kernel = match self.vec4_layout(kchunk, c_sb, c_sm) {
            Some((a_rows, b_rows)) => Kernel::new(Shader::Matmul, "matmul4")
                .with("A_ROWS", u32::from(a_rows))
                .with("B_ROWS", u32::from(b_rows)),
            None => Kernel::new(Shader::Matmul, "matmul"),
        };
        self.dispatch(&kernel, [a, b, c], bias, &params, grid);
    }

    /// Bind A, B, the bias and C, launch, and declare the FLOPs to a profile.
    fn dispatch(
        &self,
        kernel: &Kernel,
        [a, b, c]: [&Tensor; 3],
        bias: Option<&Tensor>,
        params: &MatmulParams,
        grid: [u32; 3],
    ) {
        // The bias binding must exist even when unused.
        let bindings = [a.bind(0), b.bind(1), bias.unwrap_or(a).bind(2), c.bind(3)];
        a.gpu().launch(kernel, &bindings, params, grid);
        a.gpu().note_flops(self.flops());
    }

    /// 2·M·N·K per batch: what a profile reports GFLOP/s from.
    fn flops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k * self.batch) as f64
    }

    fn params(
        &self,
        c_sb: usize,
        c_sm: usize,
        splits: usize,
        kchunk: usize,
        has_bias: bool,
    ) -> MatmulParams {
        MatmulParams {
            m: u32_of(self.m),
            n: u32_of(self.n),
            k: u32_of(self.k),
            kchunk: u32_of(kchunk),
            splits: u32_of(splits),
            a_sb: u32_of(self.a_sb),
            a_sm: u32_of(self.a_sm),
            a_sk: u32_of(self.a_sk),
            b_sb: u32_of(self.b_sb),
            b_sk: u32_of(self.b_sk),
            b_sn: u32_of(self.b_sn),
            c_sb: u32_of(c_sb),
            c_sm: u32_of(c_sm),
            has_bias: u32::from(has_bias),
        }
    }

    /// Whether the vec4 kernel applies, and with which operand layouts: every row it
    /// loads or stores must start on a 16-byte boundary.
    pub(crate) fn vec4_layout(
        &self,
        kchunk: usize,
        c_sb: usize,
        c_sm: usize,
    ) -> Option<(bool, bool)> {
        let aligned = |xs: &[usize]| xs.iter().all(|x| x % 4 == 0);
        if !aligned(&[self.k, self.n, kchunk, c_sb, c_sm]) {
            return None;
        }
        let a_rows = if self.a_sk == 1 && aligned(&[self.a_sm, self.a_sb]) {
            true
        } else if self.a_sm == 1 && aligned(&[self.m, self.a_sk, self.a_sb]) {
            false
        } else {
            return None;
        };
        let b_rows = if self.b_sn == 1 && aligned(&[self.b_sk, self.b_sb]) {
            true
        } else if self.b_sk == 1 && aligned(&[self.b_sn, self.b_sb]) {
            false
        } else {
            return None;
        };
        Some((a_rows, b_rows))
    }

    /// Whether `matmul_cpu` applies: A given K×M (m contiguous), B as K×N (n contiguous),
    /// M, N and every stride a multiple of 4 (its vec4 loads and stores).
    pub(crate) fn cpu_layout(&self, c_sb: usize, c_sm: usize) -> bool {
        let aligned = |xs: &[usize]| xs.iter().all(|x| x % 4 == 0);
        self.a_sm == 1
            && self.b_sn == 1
            && self.m >= 4
            && aligned(&[self.m, self.n, self.a_sk, self.a_sb, self.b_sk, self.b_sb])
            && aligned(&[c_sb, c_sm])
    }

    /// C[b] = A[b]·B[b] (+ bias per row), written as (batch, M, N) with rows `c_sm` apart:
    /// with `matmul_cpu` on a CPU-class device when the layout allows, else the tiled
    /// kernels.
    pub(crate) fn run(
        &self,
        a: &Tensor,
        b: &Tensor,
        bias: Option<&Tensor>,
        c: &Tensor,
        c_sb: usize,
        c_sm: usize,
    ) {
        if a.gpu().info().kernels == KernelClass::Cpu && self.cpu_layout(c_sb, c_sm) {
            self.launch_cpu(a, b, bias, c, c_sb, c_sm);
        } else {
            self.launch(a, b, bias, c, c_sb, c_sm, 1, self.k.max(1));
        }
    }

    /// `matmul_cpu`: 16 rows × 4 columns per invocation, 64 invocations per workgroup
    /// along the columns.
    fn launch_cpu(
        &self,
        a: &Tensor,
        b: &Tensor,
        bias: Option<&Tensor>,
        c: &Tensor,
        c_sb: usize,
        c_sm: usize,
    ) {
        let params = self.params(c_sb, c_sm, 1, self.k, bias.is_some());
        let grid = [
            u32_of((self.n / 4).div_ceil(CPU_GROUP)),
            u32_of(self.m.div_ceil(CPU_ROWS)),
            u32_of(self.batch),
        ];
        let kernel = Kernel::new(Shader::Matmul, "matmul_cpu");
        self.dispatch(&kernel, [a, b, c], bias, &params, grid);
    }

    /// C = Σ_b A[b]·B[b], an (M, N) tensor shaped `shape`: the batches and split-K slices
    /// are written as partial products and summed afterwards.
    pub(crate) fn run_summed(&self, a: &Tensor, b: &Tensor, shape: &[usize]) -> Result<Tensor> {
        let tiles = self.m.div_ceil(TILE_M) * self.n.div_ceil(TILE_N) * self.batch;
        let max_splits = self.k.div_ceil(MIN_KCHUNK).max(1);
        let splits = TARGET_WORKGROUPS.div_ceil(tiles).clamp(1, max_splits);
        // Chunks of a multiple of 4 keep the vec4 kernel usable.
        let kchunk = self.k.div_ceil(splits).next_multiple_of(4);
        let splits = self.k.div_ceil(kchunk);
        let mn = self.m * self.n;
        let parts = self.batch * splits;
        if parts == 1 {
            let c = Tensor::uninit(a.gpu(), shape, "matmul")?;
            self.launch(a, b, None, &c, mn, self.n, 1, kchunk);
            return Ok(c);
        }
        let partial = Tensor::uninit(a.gpu(), [parts, mn], "matmul")?;
        self.launch(a, b, None, &partial, mn, self.n, splits, kchunk);
        sum_outer(&partial, parts, mn, 1.0, shape)
    }
}

/// The (cols, rows) transpose of a row-major (rows, cols) matrix `a` (not recorded).
fn transpose(a: &Tensor, rows: usize, cols: usize) -> Result<Tensor> {
    let t = Tensor::uninit(a.gpu(), [cols, rows], "transpose")?;
    let params = MatmulParams {
        m: u32_of(rows),
        n: u32_of(cols),
        a_sm: u32_of(cols),
        c_sm: u32_of(rows),
        ..MatmulParams::default()
    };
    let grid = [u32_of(rows.div_ceil(64)), u32_of(cols), 1];
    a.gpu().launch(
        &Kernel::new(Shader::Matmul, "transpose_matrix"),
        &[a.bind(0), t.bind(3)],
        &params,
        grid,
    );
    Ok(t)
}

struct Dims {
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
}

fn check(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Dims> {
    let op = "conv1x1";
    let (n, cin, h, wd) = x.shape().nchw().ok_or_else(|| Error::BadShape {
        op,
        shape: x.shape().clone(),
        expected: "rank 4 input (N, Cin, H, W)".into(),
    })?;
    let cout = match w.dims() {
        &[cout, c, 1, 1] if c == cin => cout,
        _ => {
            return Err(Error::Shape {
                op,
                lhs: x.shape().clone(),
                rhs: w.shape().clone(),
            });
        }
    };
    super::check_bias(op, w, b, cout)?;
    Ok(Dims {
        n,
        cin,
        cout,
        h,
        w: wd,
    })
}

/// y = W · x + b over the channels at every pixel.
pub fn conv1x1(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let d = check(x, w, b)?;
    let p = d.h * d.w;
    let y = Tensor::uninit(x.gpu(), [d.n, d.cout, d.h, d.w], "conv1x1")?;
    // y[n] (Cout × P) = W (Cout × Cin) · x[n] (Cin × P)
    let product = Matmul {
        m: d.cout,
        n: p,
        k: d.cin,
        batch: d.n,
        a_sb: 0,
        a_sm: d.cin,
        a_sk: 1,
        b_sb: d.cin * p,
        b_sk: p,
        b_sn: 1,
    };
    // The CPU kernel reads A as K×M: it takes Wᵀ (Cin × Cout), one small transpose.
    let k_major = Matmul {
        a_sm: 1,
        a_sk: d.cout,
        ..product
    };
    if x.gpu().info().kernels == KernelClass::Cpu && k_major.cpu_layout(d.cout * p, p) {
        let wt = transpose(w, d.cout, d.cin)?;
        k_major.run(&wt, x, b, &y, d.cout * p, p);
    } else {
        product.run(w, x, b, &y, d.cout * p, p);
    }
    let mut inputs = vec![x, w];
    inputs.extend(b);
    record(&inputs, &y, || Conv1x1Grad {
        x: x.clone(),
        w: w.clone(),
        has_bias: b.is_some(),
    });
    Ok(y)
}

/// Backward of [`conv1x1`]: (dx, dW, db).
// y[n] = W·x[n] + b  ⇒  dx[n] = Wᵀ·dy[n],  dW = Σ_n dy[n]·x[n]ᵀ,  db = Σ_{n,q} dy[n, :, q]
fn conv1x1_backward(
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    need: [bool; 3],
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let d = check(x, w, None)?;
    let p = d.h * d.w;
    let dx = if need[0] {
        let dx = Tensor::uninit(x.gpu(), x.shape().clone(), "conv1x1_backward")?;
        // dx[n] (Cin × P) = Wᵀ (Cin × Cout) · dy[n] (Cout × P); Wᵀ[ci, co] = W[co, ci]
        Matmul {
            m: d.cin,
            n: p,
            k: d.cout,
            batch: d.n,
            a_sb: 0,
            a_sm: 1,
            a_sk: d.cin,
            b_sb: d.cout * p,
            b_sk: p,
            b_sn: 1,
        }
        .run(w, dy, None, &dx, d.cin * p, p);
        Some(dx)
    } else {
        None
    };
    let dw = if need[1] {
        // dW (Cout × Cin) = Σ_n dy[n] (Cout × P) · x[n]ᵀ (P × Cin)
        Some(
            Matmul {
                m: d.cout,
                n: d.cin,
                k: p,
                batch: d.n,
                a_sb: d.cout * p,
                a_sm: p,
                a_sk: 1,
                b_sb: d.cin * p,
                b_sk: 1,
                b_sn: p,
            }
            .run_summed(dy, x, w.dims())?,
        )
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

/// The pointwise convolution's backward keeps x and W.
struct Conv1x1Grad {
    x: Tensor,
    w: Tensor,
    has_bias: bool,
}

impl Backward for Conv1x1Grad {
    fn backward(&self, dy: &Tensor, _: &[Input], need: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let want = [need[0], need[1], self.has_bias && need[2]];
        let (dx, dw, db) = conv1x1_backward(&self.x, &self.w, dy, want)?;
        Ok(vec![dx, dw, db])
    }
}

/// The f64 reference of this module's kernels, forward and backward: the textbook loop
/// that the tests hold the WGSL entry points to (and the f64 model is built from).
pub mod reference {
    /// 1×1 convolution: x (N, Cin, P), w (Cout, Cin), b (Cout) → (N, Cout, P).
    pub fn conv1x1(
        x: &[f64],
        w: &[f64],
        b: Option<&[f64]>,
        n: usize,
        cin: usize,
        cout: usize,
        p: usize,
    ) -> Vec<f64> {
        let mut y = vec![0.0; n * cout * p];
        for i in 0..n {
            for co in 0..cout {
                for q in 0..p {
                    let mut acc = b.map_or(0.0, |b| b[co]);
                    for ci in 0..cin {
                        acc += w[co * cin + ci] * x[(i * cin + ci) * p + q];
                    }
                    y[(i * cout + co) * p + q] = acc;
                }
            }
        }
        y
    }

    /// Backward of [`conv1x1`]: (dx, dw, db).
    pub fn conv1x1_backward(
        x: &[f64],
        w: &[f64],
        dy: &[f64],
        n: usize,
        cin: usize,
        cout: usize,
        p: usize,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut dx = vec![0.0; n * cin * p];
        let mut dw = vec![0.0; cout * cin];
        let mut db = vec![0.0; cout];
        for i in 0..n {
            for co in 0..cout {
                for q in 0..p {
                    let g = dy[(i * cout + co) * p + q];
                    db[co] += g;
                    for ci in 0..cin {
                        dx[(i * cin + ci) * p + q] += w[co * cin + ci] * g;
                        dw[co * cin + ci] += g * x[(i * cin + ci) * p + q];
                    }
                }
            }
        }
        (dx, dw, db)
    }
}

#[cfg(test)]
mod tests {
    use super::Matmul;

    /// The three products of a 1×1 conv with x (n, cin, p), w (cout, cin): (fwd, dx, dw).
    fn products(n: usize, cin: usize, cout: usize, p: usize) -> [Matmul; 3] {
        [
            Matmul {
                m: cout,
                n: p,
                k: cin,
                batch: n,
                a_sb: 0,
                a_sm: cin,
                a_sk: 1,
                b_sb: cin * p,
                b_sk: p,
                b_sn: 1,
            },
            Matmul {
                m: cin,
                n: p,
                k: cout,
                batch: n,
                a_sb: 0,
                a_sm: 1,
                a_sk: cin,
                b_sb: cout * p,
                b_sk: p,
                b_sn: 1,
            },
            Matmul {
                m: cout,
                n: cin,
                k: p,
                batch: n,
                a_sb: cout * p,
                a_sm: p,
                a_sk: 1,
                b_sb: cin * p,
                b_sk: 1,
                b_sn: p,
            },
        ]
    }

    #[test]
    fn aligned_convs_take_the_vec4_kernel_in_all_three_layouts() {
        let [f, dx, dw] = products(2, 12, 20, 108);
        assert_eq!(f.vec4_layout(12, 20 * 108, 108), Some((true, true)));
        assert_eq!(dx.vec4_layout(20, 12 * 108, 108), Some((false, true)));
        assert_eq!(dw.vec4_layout(108, 20 * 12, 12), Some((true, false)));
    }

    #[test]
    fn unaligned_convs_fall_back_to_the_scalar_kernel() {
        // p = 63 (odd): no product of this conv can use vec4 rows.
        let [f, dx, dw] = products(3, 5, 6, 63);
        assert_eq!(f.vec4_layout(5, 6 * 63, 63), None);
        assert_eq!(dx.vec4_layout(6, 5 * 63, 63), None);
        assert_eq!(dw.vec4_layout(64, 30, 5), None);
        // One input channel (the network's first layer): K = 1.
        let [f, ..] = products(1, 1, 16, 64);
        assert_eq!(f.vec4_layout(1, 16 * 64, 64), None);
    }
}
