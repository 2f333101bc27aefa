//! The pointwise (1×1) convolution with bias, as a register-blocked batched matmul
//! (`shaders/matmul.wgsl`; on CPU adapters with subgroups, `shaders/matmul_sg.wgsl`).
//! Three quarters of RCA-IUnet's FLOPs go through here.
//!
//! x is (N, Cin, H, W), w is (Cout, Cin, 1, 1), b is (Cout); y is (N, Cout, H, W) with
//! y[n] = W · x[n] + b, each x[n] seen as a Cin × (H·W) matrix.

use super::elementwise::{mul_bcast_grad_b_raw, mul_bcast_raw};
use super::norm::fold_into_conv1x1;
use super::reduce::{Block, sum_outer, sum_outer_into, sum_view};
use super::shape::concat_dims;
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
/// `matmul_nt_cpu` splits K for at least this many workgroups, in chunks no shorter than
/// `NT_MIN_KCHUNK`.
const NT_WORKGROUPS: usize = 32;
const NT_MIN_KCHUNK: usize = 1024;
/// `matmul_nt_cpu_ks` takes products of at most this many columns, where
/// `matmul_nt_cpu_sg` (two columns per lane there) keeps at most 4 of its 8 lanes busy
/// (with a column quad per lane and N = 16, 4 of 8, it was already the faster: measured
/// in the network at 256², F 16, batch 1), and
/// splits K for at least `KS_WORKGROUPS` one-subgroup workgroups, in chunks no shorter
/// than `KS_MIN_KCHUNK` (16 vec4s a lane).
const KS_MAX_N: usize = 8;
const KS_WORKGROUPS: usize = 64;
const KS_MIN_KCHUNK: usize = 512;

kernel_params! {
    /// The block of `shaders/matmul.wgsl` and `shaders/matmul_sg.wgsl`: sizes, split-K and
    /// the strides of A, B and C (see the shaders' headers).
    pub(crate) struct MatmulParams for Matmul, MatmulSg {
        m: u32,
        n: u32,
        k: u32,
        kchunk: u32,
        splits: u32,
        a_off: u32,
        a_sb: u32,
        a_sm: u32,
        a_sk: u32,
        b_sb: u32,
        b_sk: u32,
        b_sn: u32,
        c_sb: u32,
        c_sm: u32,
        /// What the store adds and applies: [`BIAS`] | [`RELU`] | [`ACCUMULATE`].
        flags: u32,
        /// Steps of k of the inputs after the first, for a product over a concatenation
        /// (`matmul_sg.wgsl`'s SEGS; 0 where absent).
        k1: u32,
        k2: u32,
        k3: u32,
    }
}

/// `MatmulParams::flags`: add bias[m] to row m.
const BIAS: u32 = 1;
/// `MatmulParams::flags`: store max(0, ·) (a folded batch norm's ReLU).
const RELU: u32 = 2;
/// `MatmulParams::flags`: add the product to C (pipelines with ACC = [`ACC_FROM_FLAGS`]).
const ACCUMULATE: u32 = 4;

/// Lanes per subgroup that `matmul_cpu_sg` is written for: its 8 lanes' vec4 loads hold
/// the 16 rows of two steps of k.
const SG_LANES: u32 = 8;

/// Strides of one batched product C[z] = A[b]·B[b] (see the shader's header).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Matmul {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    /// Where A starts in its tensor (a block of a weight matrix's columns).
    pub a_off: usize,
    pub a_sb: usize,
    pub a_sm: usize,
    pub a_sk: usize,
    pub b_sb: usize,
    pub b_sk: usize,
    pub b_sn: usize,
}

impl Matmul {
    /// The weight gradient of y[n] = W·x[n] over P pixels, a batch of N:
    /// dW (Cout × Cin) = Σ_n dy[n] (Cout × P) · x[n]ᵀ (P × Cin), A = dy and B = x, both
    /// (N, ·, P) (x: the column matrix of a dense convolution, Cin its rows).
    pub(crate) fn weight_grad(batch: usize, cout: usize, cin: usize, p: usize) -> Matmul {
        Matmul {
            m: cout,
            n: cin,
            k: p,
            batch,
            a_off: 0,
            a_sb: cout * p,
            a_sm: p,
            a_sk: 1,
            b_sb: cin * p,
            b_sk: 1,
            b_sn: p,
        }
    }

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
        acc: bool,
        relu: bool,
    ) {
        let params = self.params(c_sb, c_sm, splits, kchunk, bias.is_some());
        let params = epilogue(params, relu);
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
        self.dispatch(&accumulate(kernel, acc), [a, b, c], bias, &params, grid);
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
        self.dispatch_inputs(kernel, a, &[b], c, bias, params, grid);
    }

    /// [`Matmul::dispatch`] of a product over the inputs `bs` in turn (B, then those of
    /// `params.k1` … steps of k: `matmul_sg.wgsl`'s SEGS). The bias binding must exist
    /// even when unused, and the kernels that take several inputs have all their slots
    /// bound: B repeated in those a product does not use.
    #[allow(clippy::too_many_arguments)]
    fn dispatch_inputs(
        &self,
        kernel: &Kernel,
        a: &Tensor,
        bs: &[&Tensor],
        c: &Tensor,
        bias: Option<&Tensor>,
        params: &MatmulParams,
        grid: [u32; 3],
    ) {
        let b = |i: usize| bs.get(i).copied().unwrap_or(bs[0]);
        let mut bindings = vec![
            a.bind(0),
            b(0).bind(1),
            bias.unwrap_or(a).bind(2),
            c.bind(3),
        ];
        if takes_inputs(kernel) {
            bindings.extend([b(1).bind(4), b(2).bind(5), b(3).bind(6)]);
        }
        a.gpu().launch(kernel, &bindings, params, grid);
        let others: u32 = params.k1 + params.k2 + params.k3;
        let k = self.k + others as usize;
        a.gpu().note_flops(Matmul { k, ..*self }.flops());
    }

    /// 2·M·N·K per batch: what a profile reports GFLOP/s from.
    fn flops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k * self.batch) as f64
    }

    /// The grid of the CPU-shaped products: blocks of `cols` columns (4, or 8 for the
    /// 32- and 64-row subgroup kernels) in workgroups of `CPU_GROUP`, blocks of `rows`
    /// rows, the batch.
    fn cpu_grid(&self, (rows, cols): (usize, usize)) -> [u32; 3] {
        [
            u32_of(self.n.div_ceil(cols).div_ceil(CPU_GROUP)),
            u32_of(self.m.div_ceil(rows)),
            u32_of(self.batch),
        ]
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
            a_off: u32_of(self.a_off),
            a_sb: u32_of(self.a_sb),
            a_sm: u32_of(self.a_sm),
            a_sk: u32_of(self.a_sk),
            b_sb: u32_of(self.b_sb),
            b_sk: u32_of(self.b_sk),
            b_sn: u32_of(self.b_sn),
            c_sb: u32_of(c_sb),
            c_sm: u32_of(c_sm),
            flags: if has_bias { BIAS } else { 0 },
            ..MatmulParams::default()
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
        let a_rows = if self.a_sk == 1 && aligned(&[self.a_off, self.a_sm, self.a_sb]) {
            true
        } else if self.a_sm == 1 && aligned(&[self.m, self.a_off, self.a_sk, self.a_sb]) {
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
    /// N and every stride a multiple of 4 (its vec4 loads and stores), and each row of A
    /// long enough for M rounded up to a row quad (the kernels compute whole quads and
    /// store the rows inside M).
    pub(crate) fn cpu_layout(&self, c_sb: usize, c_sm: usize) -> bool {
        let aligned = |xs: &[usize]| xs.iter().all(|x| x % 4 == 0);
        self.a_sm == 1
            && self.b_sn == 1
            && self.a_sk >= self.m.next_multiple_of(4)
            && aligned(&[self.n, self.a_off, self.a_sk, self.a_sb])
            && aligned(&[self.b_sk, self.b_sb])
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
        self.run_acc(a, b, bias, c, c_sb, c_sm, false, false);
    }

    /// [`Matmul::run`], adding the product to what `c` holds when `acc`, and storing
    /// max(0, ·) when `relu`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_acc(
        &self,
        a: &Tensor,
        b: &Tensor,
        bias: Option<&Tensor>,
        c: &Tensor,
        c_sb: usize,
        c_sm: usize,
        acc: bool,
        relu: bool,
    ) {
        if a.gpu().info().kernels == KernelClass::Cpu && self.cpu_layout(c_sb, c_sm) {
            self.launch_cpu(a, b, bias, c, c_sb, c_sm, acc, relu);
        } else {
            self.launch(a, b, bias, c, c_sb, c_sm, 1, self.k.max(1), acc, relu);
        }
    }

    /// [`Matmul::run_acc`] for a product whose A is one M×K matrix of weights shared by
    /// every batch: columns `a_off .. a_off + K` of `w`, a row-major matrix of M rows and
    /// `a_sm` columns (a_sb = 0, a_sk = 1). The CPU-shaped kernels read A as K×M: on CPU
    /// adapters they get rows `a_off ..` of `w`ᵀ (its rows padded to a multiple of 4, see
    /// [`transpose`]), `wt` when the caller has it, else one small transpose.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_weights(
        &self,
        w: &Tensor,
        wt: Option<&Tensor>,
        b: &Tensor,
        bias: Option<&Tensor>,
        c: &Tensor,
        c_sb: usize,
        c_sm: usize,
        acc: bool,
        relu: bool,
    ) -> Result<()> {
        debug_assert!(self.a_sb == 0 && self.a_off + self.k <= self.a_sm && self.a_sk == 1);
        let mt = self.m.next_multiple_of(4);
        let k_major = Matmul {
            a_off: self.a_off * mt,
            a_sm: 1,
            a_sk: mt,
            ..*self
        };
        if w.gpu().info().kernels == KernelClass::Cpu && k_major.cpu_layout(c_sb, c_sm) {
            let wt = match wt {
                Some(t) => t.clone(),
                None => transpose(w, self.m, self.a_sm)?,
            };
            k_major.run_acc(&wt, b, bias, c, c_sb, c_sm, acc, relu);
        } else {
            self.run_acc(w, b, bias, c, c_sb, c_sm, acc, relu);
        }
        Ok(())
    }

    /// `matmul_cpu`: 16 rows × 4 columns per invocation, 64 invocations per workgroup
    /// along the columns; `matmul_cpu_sg` (16 rows), `matmul_cpu_sg64` or `_sg32` (64 or
    /// 32 rows, when M allows) or `matmul_cpu_sg8` (8 rows, when M ≤ 8), the same product
    /// with the weights shared across each subgroup, where the device has subgroups of 8
    /// lanes. In the network at 256², F 16, batch 1, the products of M = 64 … 384 took
    /// 301/311 ms an inference as 32-row blocks and 272/235 ms as 64-row ones.
    #[allow(clippy::too_many_arguments)]
    fn launch_cpu(
        &self,
        a: &Tensor,
        b: &Tensor,
        bias: Option<&Tensor>,
        c: &Tensor,
        c_sb: usize,
        c_sm: usize,
        acc: bool,
        relu: bool,
    ) {
        let params = self.params(c_sb, c_sm, 1, self.k, bias.is_some());
        let params = epilogue(params, relu);
        if a.gpu().info().subgroup_size == Some(SG_LANES) {
            // 64 or 32 rows per invocation where M allows, 8 where M is at most 8, else
            // 16. With few pipelines: 8 for every M (the same sums in the same order), and
            // one pipeline that accumulates or not as its flags say.
            let few = a.gpu().few_pipelines();
            let (entry, block) = if few {
                ("matmul_cpu_sg8", (8, 4))
            } else {
                sg_entry(self.m)
            };
            let grid = self.cpu_grid(block);
            let kernel = Kernel::new(Shader::MatmulSg, entry);
            if few {
                let params = accumulate_flag(params, acc);
                let kernel = kernel.with("ACC", ACC_FROM_FLAGS);
                self.dispatch(&kernel, [a, b, c], bias, &params, grid);
            } else {
                self.dispatch(&accumulate(kernel, acc), [a, b, c], bias, &params, grid);
            }
        } else {
            let kernel = Kernel::new(Shader::Matmul, "matmul_cpu");
            let grid = self.cpu_grid((CPU_ROWS, 4));
            self.dispatch(&accumulate(kernel, acc), [a, b, c], bias, &params, grid);
        }
    }

    /// C = Σ_b A[b]·B[b], an (M, N) tensor shaped `shape`: the batches and split-K slices
    /// are written as partial products and summed afterwards.
    pub(crate) fn run_summed(&self, a: &Tensor, b: &Tensor, shape: &[usize]) -> Result<Tensor> {
        let c = self.run_summed_to(a, b, SumDst::New(shape))?;
        Ok(c.expect("a new tensor"))
    }

    /// [`Matmul::run_summed`] written as `block` of `dst` (an (M, N) block of a wider
    /// matrix), by the sum of the partial products (one partial when there is one).
    pub(crate) fn run_summed_into(
        &self,
        a: &Tensor,
        b: &Tensor,
        dst: &Tensor,
        block: Block,
    ) -> Result<()> {
        debug_assert_eq!(block.cols, self.n);
        self.run_summed_to(a, b, SumDst::Block(dst, block))?;
        Ok(())
    }

    fn run_summed_to(&self, a: &Tensor, b: &Tensor, dst: SumDst<'_>) -> Result<Option<Tensor>> {
        let info = a.gpu().info();
        let subgroups = info.subgroup_size == Some(SG_LANES);
        if info.kernels == KernelClass::Cpu
            && self.nt_cpu_layout(info.max_workgroups_per_dim, subgroups)
        {
            return self.run_summed_cpu(a, b, dst);
        }
        let tiles = self.m.div_ceil(TILE_M) * self.n.div_ceil(TILE_N) * self.batch;
        let max_splits = self.k.div_ceil(MIN_KCHUNK).max(1);
        let splits = TARGET_WORKGROUPS.div_ceil(tiles).clamp(1, max_splits);
        // Chunks of a multiple of 4 keep the vec4 kernel usable.
        let kchunk = self.k.div_ceil(splits).next_multiple_of(4);
        let splits = self.k.div_ceil(kchunk);
        let mn = self.m * self.n;
        let parts = self.batch * splits;
        if let Some(shape) = dst.direct(parts) {
            let c = Tensor::uninit(a.gpu(), shape, "matmul")?;
            self.launch(a, b, None, &c, mn, self.n, 1, kchunk, false, false);
            return Ok(Some(c));
        }
        let partial = Tensor::uninit(a.gpu(), [parts, mn], "matmul")?;
        self.launch(
            a, b, None, &partial, mn, self.n, splits, kchunk, false, false,
        );
        dst.sum(&partial, parts, mn)
    }
}

/// Where [`Matmul::run_summed_to`] puts C: a new tensor of a shape, or a block of one.
enum SumDst<'a> {
    New(&'a [usize]),
    Block(&'a Tensor, Block),
}

impl<'a> SumDst<'a> {
    /// The shape of the new tensor that a single partial product is written to directly.
    fn direct(&self, parts: usize) -> Option<&'a [usize]> {
        match (parts, self) {
            (1, SumDst::New(shape)) => Some(shape),
            _ => None,
        }
    }

    /// The sum of `parts` partial products of `mn` elements each, where it goes.
    fn sum(self, partial: &Tensor, parts: usize, mn: usize) -> Result<Option<Tensor>> {
        match self {
            SumDst::New(shape) => sum_outer(partial, parts, mn, 1.0, shape).map(Some),
            SumDst::Block(dst, block) => {
                sum_outer_into(partial, parts, mn, 1.0, dst, Some(block));
                Ok(None)
            }
        }
    }
}

impl Matmul {
    /// Whether `matmul_nt_cpu` applies: A as M×K and B as N×K, k contiguous in both, K,
    /// M, N and every stride a multiple of 4, and its grid within the device's limits.
    /// `matmul_nt_cpu_sg` (`subgroups`) takes any M and N.
    fn nt_cpu_layout(&self, max_workgroups_per_dim: u32, subgroups: bool) -> bool {
        let aligned = |xs: &[usize]| xs.iter().all(|x| x % 4 == 0);
        let max = max_workgroups_per_dim as usize;
        self.a_sk == 1
            && self.b_sk == 1
            && aligned(&[
                self.k, self.a_off, self.a_sm, self.a_sb, self.b_sn, self.b_sb,
            ])
            && (subgroups || aligned(&[self.m, self.n]))
            && self.n.div_ceil(4).div_ceil(8) <= max
            && self.m.div_ceil(64) <= max
            && (!subgroups || nt_sg_workgroups(self.m, self.n) <= max)
            && self.batch * self.k.div_ceil(NT_MIN_KCHUNK) <= max
    }

    /// [`Matmul::run_summed`] with `matmul_nt_cpu` (`matmul_nt_cpu_sg` where the device
    /// has subgroups of 8 lanes, `matmul_nt_cpu_ks` there when N ≤ `KS_MAX_N`): K split
    /// into enough chunks that there are `NT_WORKGROUPS` (`KS_WORKGROUPS`) workgroups, but
    /// none shorter than `NT_MIN_KCHUNK` (`KS_MIN_KCHUNK`); one partial block per (batch,
    /// chunk), added by `sum_outer`.
    fn run_summed_cpu(&self, a: &Tensor, b: &Tensor, dst: SumDst<'_>) -> Result<Option<Tensor>> {
        let gpu = a.gpu();
        let sg = gpu.info().subgroup_size == Some(SG_LANES);
        // `matmul_nt_cpu_ks` where the columns are too few for the lanes: workgroups of
        // one subgroup, one 8 × 4 tile each, its lanes splitting k.
        let max = gpu.info().max_workgroups_per_dim as usize;
        let ks = sg && self.n <= KS_MAX_N && self.m.div_ceil(8) <= max;
        // Else as many chunks as for workgroups of 64 rows × 32 columns (`matmul_nt_cpu`'s
        // 8×8 invocations of 4×4; `matmul_nt_cpu_sg` covers as much or more per
        // workgroup): the same partial sums whichever of the two runs.
        let (gx, gy, workgroups, min_kchunk) = if ks {
            let (gx, gy) = (self.n.div_ceil(4), self.m.div_ceil(8));
            (gx, gy, KS_WORKGROUPS, KS_MIN_KCHUNK)
        } else {
            let (gx, gy) = (self.n.div_ceil(4).div_ceil(8), self.m.div_ceil(64));
            (gx, gy, NT_WORKGROUPS, NT_MIN_KCHUNK)
        };
        let tiles = gx * gy * self.batch;
        let max_chunks = self.k.div_ceil(min_kchunk).max(1);
        let chunks = workgroups.div_ceil(tiles).clamp(1, max_chunks);
        let kchunk = self.k.div_ceil(chunks).next_multiple_of(4);
        let chunks = self.k.div_ceil(kchunk);
        let mn = self.m * self.n;
        let parts = self.batch * chunks;
        let direct = dst.direct(parts);
        let out = match direct {
            Some(shape) => Tensor::uninit(gpu, shape, "matmul")?,
            None => Tensor::uninit(gpu, [parts, mn], "matmul")?,
        };
        let params = self.params(mn, self.n, chunks, kchunk, false);
        let grid = [u32_of(gx), u32_of(gy), u32_of(parts)];
        let bindings = [a.bind(0), b.bind(1), out.bind(3)];
        if ks {
            let kernel = Kernel::new(Shader::MatmulSg, "matmul_nt_cpu_ks");
            gpu.launch(&kernel, &bindings, &params, grid);
        } else if sg {
            let grid = [u32_of(nt_sg_workgroups(self.m, self.n)), 1, u32_of(parts)];
            let kernel = Kernel::new(Shader::MatmulSg, "matmul_nt_cpu_sg")
                .with("NT_C", u32_of(nt_sg_columns(self.n)))
                .with("NT_R", u32_of(nt_sg_rows(self.m)));
            gpu.launch(&kernel, &bindings, &params, grid);
        } else {
            let kernel = Kernel::new(Shader::Matmul, "matmul_nt_cpu");
            gpu.launch(&kernel, &bindings, &params, grid);
        }
        gpu.note_flops(self.flops());
        if direct.is_some() {
            return Ok(Some(out));
        }
        dst.sum(&out, parts, mn)
    }
}

/// Columns of C per lane of `matmul_nt_cpu_sg` (its override NT_C): 4 where N is whole
/// blocks of 32, else 2, so that the lanes of the network's 16- and 48-column weight
/// gradients do not repeat the last column.
fn nt_sg_columns(n: usize) -> usize {
    if n.is_multiple_of(32) { 4 } else { 2 }
}

/// Rows of C per subgroup of `matmul_nt_cpu_sg` (its override NT_R): 32 where M is whole
/// blocks of 32, else 16.
fn nt_sg_rows(m: usize) -> usize {
    if m.is_multiple_of(32) { 32 } else { 16 }
}

/// Workgroups of `matmul_nt_cpu_sg` along x: its 8 subgroups take a block of NT_R rows ×
/// 8·NT_C columns each.
fn nt_sg_workgroups(m: usize, n: usize) -> usize {
    (m.div_ceil(nt_sg_rows(m)) * n.div_ceil(8 * nt_sg_columns(n))).div_ceil(8)
}

/// `params` with the RELU flag where the store needs it.
fn epilogue(mut params: MatmulParams, relu: bool) -> MatmulParams {
    if relu {
        params.flags |= RELU;
    }
    params
}

/// The CPU-shaped product for M rows, on a device with 8-lane subgroups, and its block of
/// (rows, columns) per invocation: 64 or 32 rows where M allows, then two column quads; 8
/// rows where M is at most 8, else 16, then one.
fn sg_entry(m: usize) -> (&'static str, (usize, usize)) {
    if m <= 8 {
        ("matmul_cpu_sg8", (8, 4))
    } else if m.is_multiple_of(64) || m % 64 == 48 {
        ("matmul_cpu_sg64", (64, 8))
    } else if m.is_multiple_of(32) {
        ("matmul_cpu_sg32", (32, 8))
    } else {
        ("matmul_cpu_sg", (CPU_ROWS, 4))
    }
}

/// Whether `kernel` is one of the products that take up to four inputs (bindings 4–6
/// after B; `matmul_sg.wgsl`'s SEGS).
fn takes_inputs(kernel: &Kernel) -> bool {
    kernel.shader == Shader::MatmulSg
        && matches!(
            kernel.entry,
            "matmul_cpu_sg8" | "matmul_cpu_sg" | "matmul_cpu_sg32" | "matmul_cpu_sg64"
        )
}

/// `kernel` with the ACC override where the store adds to C.
fn accumulate(kernel: Kernel, acc: bool) -> Kernel {
    if acc { kernel.with("ACC", 1) } else { kernel }
}

/// The ACC override of a pipeline whose store adds to C where [`ACCUMULATE`] is in its
/// flags (`Gpu::few_pipelines`: one pipeline for both stores).
const ACC_FROM_FLAGS: u32 = 2;

/// `params` with the ACCUMULATE flag where the store adds to C.
fn accumulate_flag(mut params: MatmulParams, acc: bool) -> MatmulParams {
    if acc {
        params.flags |= ACCUMULATE;
    }
    params
}

/// A row-major (rows, cols) matrix `w` (not recorded) with each row padded with zeros to
/// a multiple of 4 elements: its transpose transposed back.
fn pad_rows(w: &Tensor, rows: usize, cols: usize) -> Result<Tensor> {
    let wt = transpose(w, rows, cols)?;
    transpose(&wt, cols, rows.next_multiple_of(4))
}

/// The (cols, rows) transpose of a row-major (rows, cols) matrix `a` (not recorded), each
/// row padded with zeros to a multiple of 4 elements (`rows` rounded up): the CPU-shaped
/// products read it as whole row quads of A.
fn transpose(a: &Tensor, rows: usize, cols: usize) -> Result<Tensor> {
    let padded = rows.next_multiple_of(4);
    let t = if padded == rows {
        Tensor::uninit(a.gpu(), [cols, rows], "transpose")?
    } else {
        Tensor::zeros(a.gpu(), [cols, padded])?
    };
    let params = MatmulParams {
        m: u32_of(rows),
        n: u32_of(cols),
        a_sm: u32_of(cols),
        c_sm: u32_of(padded),
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

/// The weights of one product y = W·x: W (Cout × Cin) is columns `col .. col + Cin` of
/// `w`, a row-major matrix of Cout rows and `cols` columns (all of it when `col` = 0 and
/// `cols` = Cin), and `wt`, when the caller has it, is all of `w` transposed. A block of
/// columns is read in place: a 1×1 convolution over a concatenation cuts no copies.
/// `padded`, when the caller has it, is all of `w` with its rows padded to a multiple of
/// 4 columns ([`pad_rows`]), which the input gradient reads on CPU adapters where `cols`
/// is not one.
#[derive(Clone, Copy)]
struct Weights<'a> {
    w: &'a Tensor,
    col: usize,
    cols: usize,
    wt: Option<&'a Tensor>,
    padded: Option<&'a Tensor>,
}

/// y = W · x + b over the channels at every pixel.
pub fn conv1x1(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let d = check(x, w, b)?;
    let y = Tensor::uninit(x.gpu(), [d.n, d.cout, d.h, d.w], "conv1x1")?;
    let wts = Weights {
        w,
        col: 0,
        cols: d.cin,
        wt: None,
        padded: None,
    };
    forward_into(x, wts, b, &y, &d, false, false)?;
    let mut inputs = vec![x, w];
    inputs.extend(b);
    record(&inputs, &y, || Conv1x1Grad {
        x: x.clone(),
        w: w.clone(),
        has_bias: b.is_some(),
    });
    Ok(y)
}

/// y = W·x (+ b) into `y` (N, Cout, H, W), or y += W·x (+ b) when `acc`; max(0, ·) of
/// that when `relu`.
fn forward_into(
    x: &Tensor,
    wts: Weights<'_>,
    b: Option<&Tensor>,
    y: &Tensor,
    d: &Dims,
    acc: bool,
    relu: bool,
) -> Result<()> {
    let p = d.h * d.w;
    // y[n] (Cout × P) = W (Cout × Cin) · x[n] (Cin × P)
    let product = Matmul {
        m: d.cout,
        n: p,
        k: d.cin,
        batch: d.n,
        a_off: wts.col,
        a_sb: 0,
        a_sm: wts.cols,
        a_sk: 1,
        b_sb: d.cin * p,
        b_sk: p,
        b_sn: 1,
    };
    product.run_weights(wts.w, wts.wt, x, b, y, d.cout * p, p, acc, relu)
}

/// The 1×1 convolution of the channel concatenation of `xs`, each input channel first
/// scaled by `scale` when one is given (a depthwise 1×1 before the pointwise product, as
/// in the inception blocks' merging SepConv(…, s, 1)), without building the
/// concatenation:
///   y = W·diag(scale)·[x_0 | x_1 | …] + b = Σ_i W_i·x_i + b,
/// W_i the columns of W·diag(scale) that meet x_i: on CPU adapters one product that reads
/// the inputs in turn, elsewhere one product per input added into y.
/// x_i (N, C_i, H, W) with equal N, H, W; scale ΣC_i values in any shape (the depthwise
/// kernel (ΣC_i, 1, 1, 1)); w (Cout, ΣC_i, 1, 1); b (Cout).
pub fn conv1x1_cat(
    xs: &[&Tensor],
    scale: Option<&Tensor>,
    w: &Tensor,
    b: Option<&Tensor>,
) -> Result<Tensor> {
    let op = "conv1x1_cat";
    let c = cat_check(op, xs, scale, w, b)?;
    let scaled = match scale {
        Some(s) => scale_columns(w, s, c.cout, c.total)?,
        None => w.clone(),
    };
    let wt = cpu_transpose(&scaled, &c)?;
    let y = sum_of_products(op, xs, &scaled, wt.as_ref(), b, &c, false)?;
    let mut inputs: Vec<&Tensor> = xs.to_vec();
    inputs.extend(scale);
    inputs.push(w);
    inputs.extend(b);
    record(&inputs, &y, || Conv1x1CatGrad {
        xs: xs.iter().map(|&x| x.clone()).collect(),
        scaled,
        cat: c,
        w: w.clone(),
        scale: scale.cloned(),
        has_bias: b.is_some(),
    });
    Ok(y)
}

/// The shapes of a `conv1x1_cat`: N, H, W, each input's channels, their total, Cout.
struct Cat {
    n: usize,
    h: usize,
    w: usize,
    channels: Vec<usize>,
    total: usize,
    cout: usize,
}

impl Cat {
    /// The dims of the product that takes an input of `cin` channels.
    fn dims(&self, cin: usize) -> Dims {
        Dims {
            n: self.n,
            cin,
            cout: self.cout,
            h: self.h,
            w: self.w,
        }
    }
}

fn cat_check(
    op: &'static str,
    xs: &[&Tensor],
    scale: Option<&Tensor>,
    w: &Tensor,
    b: Option<&Tensor>,
) -> Result<Cat> {
    let (n, channels, h, wd) = concat_dims(op, xs)?;
    let total: usize = channels.iter().sum();
    let cout = match w.dims() {
        &[cout, c, 1, 1] if c == total => cout,
        _ => {
            return Err(Error::Shape {
                op,
                lhs: crate::tensor::Shape(vec![n, total, h, wd]),
                rhs: w.shape().clone(),
            });
        }
    };
    if let Some(s) = scale
        && s.numel() != total
    {
        return Err(Error::Shape {
            op,
            lhs: w.shape().clone(),
            rhs: s.shape().clone(),
        });
    }
    super::check_bias(op, w, b, cout)?;
    Ok(Cat {
        n,
        h,
        w: wd,
        channels,
        total,
        cout,
    })
}

/// y = Σ_i W_i·x_i + b (max(0, ·) of it when `relu`), W_i the columns of `w`
/// (Cout × ΣC_i) that meet x_i: one CPU-shaped product over the inputs in turn where
/// [`cat_product_cpu`] applies, else one product per input added into y (the bias with the
/// first, the ReLU with the last). `wt` is `w` transposed, when the caller has it.
fn sum_of_products(
    op: &'static str,
    xs: &[&Tensor],
    w: &Tensor,
    wt: Option<&Tensor>,
    b: Option<&Tensor>,
    c: &Cat,
    relu: bool,
) -> Result<Tensor> {
    let y = Tensor::uninit(w.gpu(), [c.n, c.cout, c.h, c.w], op)?;
    if let Some(wt) = wt
        && cat_product_cpu(xs, wt, b, &y, c, relu)
    {
        return Ok(y);
    }
    let last = xs.len() - 1;
    let mut col = 0;
    for (i, (x, &cin)) in xs.iter().zip(&c.channels).enumerate() {
        let bias = if i == 0 { b } else { None };
        let wts = Weights {
            w,
            col,
            cols: c.total,
            wt,
            padded: None,
        };
        forward_into(x, wts, bias, &y, &c.dims(cin), i > 0, relu && i == last)?;
        col += cin;
    }
    Ok(y)
}

/// y = Σ_i W_i·x_i (+ b), max(0, ·) when `relu`, as one CPU-shaped product over the
/// inputs in turn (`matmul_sg.wgsl`'s SEGS), `wt` the transposed weights: where the
/// device has 8-lane subgroups and runs all pipelines, 2 to 4 inputs and rows of whole
/// vec4s. Whether it ran; where not, the caller adds one product per input.
fn cat_product_cpu(
    xs: &[&Tensor],
    wt: &Tensor,
    b: Option<&Tensor>,
    y: &Tensor,
    c: &Cat,
    relu: bool,
) -> bool {
    let gpu = wt.gpu();
    let p = c.h * c.w;
    let first = Matmul {
        m: c.cout,
        n: p,
        k: c.channels[0],
        batch: c.n,
        a_off: 0,
        a_sb: 0,
        a_sm: 1,
        a_sk: c.cout.next_multiple_of(4),
        b_sb: c.channels[0] * p,
        b_sk: p,
        b_sn: 1,
    };
    let (entry, block) = sg_entry(c.cout);
    if gpu.info().subgroup_size != Some(SG_LANES)
        || gpu.few_pipelines()
        || !(2..=4).contains(&xs.len())
        || !first.cpu_layout(c.cout * p, p)
    {
        return false;
    }
    let k = |i: usize| u32_of(c.channels.get(i).copied().unwrap_or(0));
    let params = MatmulParams {
        k1: k(1),
        k2: k(2),
        k3: k(3),
        ..epilogue(first.params(c.cout * p, p, 1, first.k, b.is_some()), relu)
    };
    let kernel = Kernel::new(Shader::MatmulSg, entry).with("SEGS", u32_of(xs.len()));
    first.dispatch_inputs(&kernel, wt, xs, y, b, &params, first.cpu_grid(block));
    true
}

/// `w` (Cout × ΣC_i) transposed, once, on a CPU adapter (whose products read the weights
/// as K×M); `None` elsewhere.
fn cpu_transpose(w: &Tensor, c: &Cat) -> Result<Option<Tensor>> {
    if w.gpu().info().kernels != KernelClass::Cpu {
        return Ok(None);
    }
    transpose(w, c.cout, c.total).map(Some)
}

/// [`conv1x1_cat`] followed by eval-mode batch norm (running statistics) and, when
/// `relu`, a ReLU, with the batch norm folded into the weights and bias and the ReLU into
/// the last product's store: no pass over the output beyond the products. Not recorded:
/// for inference (an error while a tape records). The BN tensors are (Cout).
#[allow(clippy::too_many_arguments)]
pub fn conv1x1_cat_bn_eval(
    xs: &[&Tensor],
    scale: Option<&Tensor>,
    w: &Tensor,
    b: &Tensor,
    [gamma, beta, running_mean, running_var]: [&Tensor; 4],
    eps: f32,
    relu: bool,
) -> Result<Tensor> {
    let op = "conv1x1_cat_bn_eval";
    if crate::autodiff::is_recording() {
        return Err(Error::Autodiff(format!(
            "{op} is for inference: it records no gradient"
        )));
    }
    let c = cat_check(op, xs, scale, w, Some(b))?;
    let bn = [gamma, beta, running_mean, running_var];
    let folded = fold_cat(w, b, scale, Some(bn), eps, &c)?;
    let wt = folded.wt.as_ref();
    sum_of_products(op, xs, &folded.folded, wt, Some(&folded.bias), &c, relu)
}

/// The weights of a [`conv1x1_cat_bn_eval`] (or, without batch norm, of a
/// [`conv1x1_cat`]) made once for a caller whose parameters stay the same from one
/// forward pass to the next (inference): the batch norm folded, the scale applied and,
/// on CPU adapters, the result transposed for the CPU-shaped product.
/// [`conv1x1_cat_folded`] then runs only the products.
pub struct FoldedCat {
    folded: Tensor,
    wt: Option<Tensor>,
    bias: Tensor,
    /// The weights and scale it was made from, to check the inputs it is applied to.
    w: Tensor,
    scale: Option<Tensor>,
}

/// Fold (when `bn`) and scale as [`conv1x1_cat_bn_eval`] does, and transpose on a CPU
/// adapter.
fn fold_cat(
    w: &Tensor,
    b: &Tensor,
    scale: Option<&Tensor>,
    bn: Option<[&Tensor; 4]>,
    eps: f32,
    c: &Cat,
) -> Result<FoldedCat> {
    let (wf, bias) = match bn {
        Some([g, be, rm, rv]) => fold_into_conv1x1(w, b, g, be, rm, rv, eps)?,
        None => (w.clone(), b.clone()),
    };
    let wf = match scale {
        Some(s) => scale_columns(&wf, s, c.cout, c.total)?,
        None => wf,
    };
    let wt = cpu_transpose(&wf, c)?;
    Ok(FoldedCat {
        folded: wf,
        wt,
        bias,
        w: w.clone(),
        scale: scale.cloned(),
    })
}

/// [`FoldedCat`] for inputs with `xs`'s channel counts (the other sizes do not matter),
/// with eval-mode batch norm `bn` = [γ, β, running mean, running variance] or without.
pub fn fold_conv1x1_cat(
    xs: &[&Tensor],
    scale: Option<&Tensor>,
    w: &Tensor,
    b: &Tensor,
    bn: Option<[&Tensor; 4]>,
    eps: f32,
) -> Result<FoldedCat> {
    let c = cat_check("fold_conv1x1_cat", xs, scale, w, Some(b))?;
    fold_cat(w, b, scale, bn, eps, &c)
}

/// [`conv1x1_cat_bn_eval`] (or [`conv1x1_cat`]) with weights folded beforehand: the same
/// values, without the folding's passes over the weights. Not recorded: for inference.
pub fn conv1x1_cat_folded(xs: &[&Tensor], f: &FoldedCat, relu: bool) -> Result<Tensor> {
    let op = "conv1x1_cat_folded";
    if crate::autodiff::is_recording() {
        return Err(Error::Autodiff(format!(
            "{op} is for inference: it records no gradient"
        )));
    }
    let c = cat_check(op, xs, f.scale.as_ref(), &f.w, Some(&f.bias))?;
    let wt = f.wt.as_ref();
    sum_of_products(op, xs, &f.folded, wt, Some(&f.bias), &c, relu)
}

/// w (Cout, C, 1, 1) with column c times s[c]: w seen as (1, Cout, 1, C), s as (1, 1, 1, C).
fn scale_columns(w: &Tensor, s: &Tensor, cout: usize, c: usize) -> Result<Tensor> {
    let y = mul_bcast_raw(&w.reshape([1, cout, 1, c])?, &s.reshape([1, 1, 1, c])?)?;
    y.reshape([cout, c, 1, 1])
}

/// y = Σ_i W_i·x_i + b with W_i the column blocks of Ws = W·diag(s)  ⇒
/// dx_i = W_iᵀ·dy,  dWs = [Σ_n dy·x_iᵀ]_i,  dW = dWs·diag(s),  ds[c] = Σ_o dWs[o, c]·W[o, c],
/// db = Σ dy. Keeps the inputs and their shapes, Ws, W and s.
struct Conv1x1CatGrad {
    xs: Vec<Tensor>,
    scaled: Tensor,
    cat: Cat,
    w: Tensor,
    scale: Option<Tensor>,
    has_bias: bool,
}

impl Backward for Conv1x1CatGrad {
    fn backward(&self, dy: &Tensor, _: &[Input], need: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let k = self.xs.len();
        let at_w = k + usize::from(self.scale.is_some());
        let need_scale = self.scale.is_some() && need[k];
        let need_ws = need[at_w] || need_scale;
        let mut out = Vec::with_capacity(at_w + 2);
        let (cout, total) = (self.cat.cout, self.cat.total);
        // dWs, each input's block summed straight into its columns (one input: its own).
        let mut dws = match (need_ws, k) {
            (true, 2..) => Some(Tensor::uninit(
                dy.gpu(),
                [cout, total, 1, 1],
                "conv1x1_cat_backward",
            )?),
            _ => None,
        };
        // The input gradients of every block read one padded copy of the weights where
        // their rows are not whole quads (CPU adapters).
        let padded = if dy.gpu().info().kernels == KernelClass::Cpu
            && !total.is_multiple_of(4)
            && need[..k].iter().any(|&n| n)
        {
            Some(pad_rows(&self.scaled, cout, total)?)
        } else {
            None
        };
        let mut col = 0;
        for (x, &cin) in self.xs.iter().zip(&self.cat.channels) {
            let wts = Weights {
                w: &self.scaled,
                col,
                cols: total,
                wt: None,
                padded: padded.as_ref(),
            };
            let block = Block {
                cols: cin,
                stride: total,
                off: col,
            };
            let dw = match (&dws, need_ws) {
                (Some(t), _) => DwTo::Block(t, block),
                (None, true) => DwTo::New,
                (None, false) => DwTo::Nowhere,
            };
            let (dx, dwi, _) = conv1x1_backward(
                x,
                wts,
                &self.cat.dims(cin),
                dy,
                [need[out.len()], false],
                dw,
            )?;
            out.push(dx);
            if dwi.is_some() {
                dws = dwi;
            }
            col += cin;
        }
        match (&self.scale, dws) {
            (Some(s), Some(dws)) => {
                let ds = if need_scale {
                    let w = self.w.reshape([1, cout, 1, total])?;
                    let ds = mul_bcast_grad_b_raw(&w, &dws.reshape([1, cout, 1, total])?)?;
                    Some(ds.reshape(s.shape().clone())?)
                } else {
                    None
                };
                out.push(ds);
                let dw = if need[at_w] {
                    Some(scale_columns(&dws, s, cout, total)?)
                } else {
                    None
                };
                out.push(dw);
            }
            (Some(_), None) => out.extend([None, None]),
            (None, dws) => out.push(dws),
        }
        if self.has_bias {
            let (n, _, h, w) = dy.shape().nchw().expect("NCHW output");
            out.push(if need[at_w + 1] {
                Some(sum_view(dy, n, cout, h * w, 1.0)?)
            } else {
                None
            });
        }
        Ok(out)
    }
}

/// Where [`conv1x1_backward`] puts dW: nowhere (not needed), a new tensor, or a block of a
/// concatenation's dWs.
enum DwTo<'a> {
    Nowhere,
    New,
    Block(&'a Tensor, Block),
}

// y[n] = W·x[n] + b  ⇒  dx[n] = Wᵀ·dy[n],  dW = Σ_n dy[n]·x[n]ᵀ,  db = Σ_{n,q} dy[n, :, q]
/// dx and db where `need` says ([dx, db]), and dW as `dw` says (returned when new).
fn conv1x1_backward(
    x: &Tensor,
    wts: Weights<'_>,
    d: &Dims,
    dy: &Tensor,
    need: [bool; 2],
    dw: DwTo<'_>,
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let p = d.h * d.w;
    let dx = if need[0] {
        let dx = Tensor::uninit(x.gpu(), x.shape().clone(), "conv1x1_backward")?;
        // dx[n] (Cin × P) = Wᵀ (Cin × Cout) · dy[n] (Cout × P); Wᵀ[ci, co] = W[co, ci]
        let product = Matmul {
            m: d.cin,
            n: p,
            k: d.cout,
            batch: d.n,
            a_off: wts.col,
            a_sb: 0,
            a_sm: 1,
            a_sk: wts.cols,
            b_sb: d.cout * p,
            b_sk: p,
            b_sn: 1,
        };
        // The CPU-shaped products read A as whole row quads. Where W's rows are not (a
        // layer over the 1-channel input, the concatenation of 3·16 + 1 channels after
        // it), they read a copy with its rows padded to a multiple of 4 (the caller's, or
        // made here): two transposes of a few hundred weights instead of the tiled
        // kernel's 1.6–6.8 ms a product at 256².
        let padded = Matmul {
            a_sk: wts.cols.next_multiple_of(4),
            ..product
        };
        if x.gpu().info().kernels == KernelClass::Cpu
            && !product.cpu_layout(d.cin * p, p)
            && padded.cpu_layout(d.cin * p, p)
        {
            let made;
            let w4 = match wts.padded {
                Some(t) => t,
                None => {
                    made = pad_rows(wts.w, d.cout, wts.cols)?;
                    &made
                }
            };
            padded.run(w4, dy, None, &dx, d.cin * p, p);
        } else {
            product.run(wts.w, dy, None, &dx, d.cin * p, p);
        }
        Some(dx)
    } else {
        None
    };
    let product = Matmul::weight_grad(d.n, d.cout, d.cin, p);
    let dw = match dw {
        DwTo::Nowhere => None,
        DwTo::New => Some(product.run_summed(dy, x, &[d.cout, d.cin, 1, 1])?),
        DwTo::Block(dws, block) => {
            product.run_summed_into(dy, x, dws, block)?;
            None
        }
    };
    let db = if need[1] {
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
        let want = [need[0], self.has_bias && need[2]];
        let dw = if need[1] { DwTo::New } else { DwTo::Nowhere };
        let d = check(&self.x, &self.w, None)?;
        let wts = Weights {
            w: &self.w,
            col: 0,
            cols: d.cin,
            wt: None,
            padded: None,
        };
        let (dx, dw, db) = conv1x1_backward(&self.x, wts, &d, dy, want, dw)?;
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

    /// The 1×1 convolution of the concatenation of `xs` (each (N, C_i, P)), its channels
    /// first scaled by `scale` when given: conv1x1(diag(scale)·[x_0 | x_1 | …], w, b).
    pub fn conv1x1_cat(
        xs: &[&[f64]],
        channels: &[usize],
        scale: Option<&[f64]>,
        w: &[f64],
        b: Option<&[f64]>,
        (n, cout, p): (usize, usize, usize),
    ) -> Vec<f64> {
        let cin: usize = channels.iter().sum();
        let cat = scaled_cat(xs, channels, scale, n, p);
        conv1x1(&cat, w, b, n, cin, cout, p)
    }

    /// The gradients of [`conv1x1_cat`]: (dx_i for each input, dscale when scaled, dw, db).
    pub type CatGrads = (Vec<Vec<f64>>, Option<Vec<f64>>, Vec<f64>, Vec<f64>);

    /// Backward of [`conv1x1_cat`].
    pub fn conv1x1_cat_backward(
        xs: &[&[f64]],
        channels: &[usize],
        scale: Option<&[f64]>,
        w: &[f64],
        dy: &[f64],
        (n, cout, p): (usize, usize, usize),
    ) -> CatGrads {
        let cin: usize = channels.iter().sum();
        let cat = scaled_cat(xs, channels, None, n, p);
        let scaled = scaled_cat(xs, channels, scale, n, p);
        let (mut dcat, dw, db) = conv1x1_backward(&scaled, w, dy, n, cin, cout, p);
        let dscale = scale.map(|s| {
            let mut ds = vec![0.0; cin];
            for (j, (g, x)) in dcat.iter().zip(&cat).enumerate() {
                ds[(j / p) % cin] += g * x;
            }
            for (j, g) in dcat.iter_mut().enumerate() {
                *g *= s[(j / p) % cin];
            }
            ds
        });
        let dxs = crate::ops::shape::reference::concat_channels_backward(&dcat, channels, n, p);
        (dxs, dscale, dw, db)
    }

    fn scaled_cat(
        xs: &[&[f64]],
        channels: &[usize],
        scale: Option<&[f64]>,
        n: usize,
        p: usize,
    ) -> Vec<f64> {
        let cin: usize = channels.iter().sum();
        let mut cat = crate::ops::shape::reference::concat_channels(xs, channels, n, p);
        if let Some(s) = scale {
            for (j, v) in cat.iter_mut().enumerate() {
                *v *= s[(j / p) % cin];
            }
        }
        cat
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
                a_off: 0,
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
                a_off: 0,
                a_sb: 0,
                a_sm: 1,
                a_sk: cin,
                b_sb: cout * p,
                b_sk: p,
                b_sn: 1,
            },
            Matmul::weight_grad(n, cout, cin, p),
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
