//! The batched 2-D FFT over N×C planes of M×M complex points (`shaders/fft.wgsl`), and
//! the launchers that spectral pooling builds on.
//!
//! Complex tensors are interleaved: shape (N, C, M, M, 2), the trailing pair (re, im).
//! M is a power of two, 2 ≤ M ≤ 4096. The forward transform is unnormalised,
//! X[k, l] = Σ_{m,n} x[m, n]·e^{−2πi(km + ln)/M}; the inverse divides by M².
//!
//! A 2-D transform is a row pass then a column pass. A pass whose lines fit in
//! workgroup memory ([`TILE`] points, 8 KiB: M ≤ 1024) runs every stage of a line in one
//! workgroup; longer lines take the global-memory form, one dispatch per stage pair.
//! [`fft2_via`] forces either form (the tests run the global one at small sizes).

use super::{launch_1d, u32_of};
use crate::autodiff::{Backward, Input, record};
use crate::error::{Error, Result};

use crate::runtime::{Binding, Gpu, Kernel, Shader, grid_1d, kernel_params};
use crate::tensor::{Shape, Tensor};

/// Complex points a workgroup holds in workgroup memory (`TILE` in the shader).
pub(crate) const TILE: usize = 1024;

/// The twiddle table samples the unit circle at TW_N points (`TW_N` in the shader): it
/// serves every line length M ≤ TW_N (a stage of length L reads entry pos·TW_N/L), which
/// is also the largest M: a 4096² complex plane is 128 MiB, a whole storage binding on
/// many devices.
pub(crate) const TW_N: usize = 4096;

/// The twiddle table of `gpu`: (cos, sin)(2π·j/TW_N) for j < TW_N/2, computed in f64 and
/// uploaded once per device, which keeps it ([`Gpu::table`]).
fn twiddles(gpu: &Gpu) -> wgpu::Buffer {
    gpu.table("fft twiddles", || {
        (0..TW_N / 2)
            .flat_map(|j| {
                let a = std::f64::consts::TAU * j as f64 / TW_N as f64;
                [a.cos() as f32, a.sin() as f32]
            })
            .collect()
    })
}

/// The twiddle table bound at `slot`.
fn bind_table(table: &wgpu::Buffer, slot: u32) -> Binding<'_> {
    Binding {
        slot,
        buffer: table,
        offset: 0,
        bytes: table.size(),
    }
}

/// Which form of the FFT pass to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FftPath {
    /// Workgroup memory when a line fits (M ≤ 1024), global memory otherwise; spectral
    /// pooling takes no transform at all: its closed form at h = M (M a multiple of 4),
    /// two real products below.
    Auto,
    /// All stages of a line in one workgroup (needs M ≤ 1024).
    Workgroup,
    /// One dispatch per stage pair, in global memory (any M).
    Global,
}

/// What one FFT launch describes, in sizes; [`Params::block`] makes the kernel's block.
#[derive(Clone, Copy, Default)]
pub(crate) struct Params {
    pub n: usize,
    pub m: usize,
    pub lines: usize,
    pub lpw: usize,
    pub es: usize,
    pub ls: usize,
    pub half: usize,
    pub h: usize,
    pub sign: f32,
    pub scale: f32,
    pub lpp: usize,
    pub ps_in: usize,
    pub ps_out: usize,
    pub ls_out: usize,
    pub es_out: usize,
}

kernel_params! {
    /// The block of `shaders/fft.wgsl` (see its header), as [`Params::block`] fills it.
    pub(crate) struct FftParams for Fft {
        n: u32,
        m: u32,
        log2m: u32,
        lines: u32,
        lpw: u32,
        es: u32,
        ls: u32,
        half: u32,
        h: u32,
        sign: f32,
        scale: f32,
        lpp: u32,
        ps_in: u32,
        ps_out: u32,
        ls_out: u32,
        es_out: u32,
        /// `fft_wg`: how the tile is loaded and stored ([`WgPass::modes`]).
        load: u32,
        store: u32,
    }
}

impl Params {
    /// The kernel's block: the sizes as u32, with log2(M).
    pub(crate) fn block(&self) -> FftParams {
        FftParams {
            n: u32_of(self.n),
            m: u32_of(self.m),
            log2m: self.m.trailing_zeros(),
            lines: u32_of(self.lines),
            lpw: u32_of(self.lpw),
            es: u32_of(self.es),
            ls: u32_of(self.ls),
            half: u32_of(self.half),
            h: u32_of(self.h),
            sign: self.sign,
            scale: self.scale,
            lpp: u32_of(self.lpp),
            ps_in: u32_of(self.ps_in),
            ps_out: u32_of(self.ps_out),
            ls_out: u32_of(self.ls_out),
            es_out: u32_of(self.es_out),
            load: 0,
            store: 0,
        }
    }
}

/// Launch a one-invocation-per-element kernel of the FFT shader.
pub(crate) fn launch_fft_1d(
    entry: &'static str,
    bindings: &[crate::runtime::Binding<'_>],
    p: Params,
    gpu: &crate::runtime::Gpu,
) {
    launch_1d(
        gpu,
        &Kernel::new(Shader::Fft, entry),
        bindings,
        &p.block(),
        p.n,
    );
}

/// The forms of `fft_wg`, the workgroup-memory pass (the shader's header lists them):
/// one entry point whose load and store the block's `load` and `store` choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WgPass {
    /// Complex lines of (planes, M, M) in, the same out.
    Complex,
    /// Real lines in, two per transform; complex spectra out.
    RealIn,
    /// Complex lines with real transforms in, two per transform; real lines out.
    RealOut,
    /// Spectral pooling: complex lines in (general layout), cropped spectra out.
    Crop,
    /// [`WgPass::Crop`] on real lines, two per transform.
    CropRealIn,
    /// Spectral pooling's adjoint: padded complex lines in, complex lines out.
    Pad,
    /// [`WgPass::Pad`] for lines with real transforms, two per transform; real lines out.
    PadRealOut,
}

impl WgPass {
    /// The shader's (LOAD_*, STORE_*) for this form.
    fn modes(self) -> (u32, u32) {
        match self {
            WgPass::Complex => (0, 0),
            WgPass::RealIn => (1, 1),
            WgPass::RealOut => (3, 2),
            WgPass::Crop => (4, 4),
            WgPass::CropRealIn => (2, 5),
            WgPass::Pad => (5, 6),
            WgPass::PadRealOut => (6, 3),
        }
    }
}

/// Launch `fft_wg` in form `pass` on `grid`. The entry point declares every view it may
/// use, so each is bound: `src` both as complex (slot 0) and as real (slot 2), `dst` both
/// ways too (slots 1 and 3); the form reads and writes the right ones.
fn launch_fft_wg(pass: WgPass, src: &Tensor, dst: &Tensor, p: Params, grid: [u32; 3]) {
    let gpu = src.gpu();
    let tw = twiddles(gpu);
    let (load, store) = pass.modes();
    let block = FftParams {
        load,
        store,
        ..p.block()
    };
    gpu.launch(
        &Kernel::new(Shader::Fft, "fft_wg"),
        &[
            src.bind(0),
            dst.bind(1),
            src.bind(2),
            dst.bind(3),
            bind_table(&tw, 4),
        ],
        &block,
        grid,
    );
}

/// One 1-D pass over every row (`rows`) or column of `planes` M×M planes, src → dst,
/// with sign and scale as in the shader's header, in form `io` (`Complex`, `RealIn` or
/// `RealOut`). The global form takes complex data only.
#[allow(clippy::too_many_arguments)]
fn pass(
    src: &Tensor,
    dst: &Tensor,
    planes: usize,
    m: usize,
    rows: bool,
    sign: f32,
    scale: f32,
    global: bool,
    io: WgPass,
) -> Result<()> {
    let gpu = src.gpu();
    let tw = twiddles(gpu);
    let lines = planes * m;
    let (es, ls) = if rows { (1, m) } else { (m, 1) };
    let base = Params {
        m,
        lines,
        es,
        ls,
        sign,
        scale,
        ..Params::default()
    };
    if !global {
        // The real forms transform two lines at once (M is even: a pair never straddles
        // two planes).
        let lines = if io == WgPass::Complex {
            lines
        } else {
            lines / 2
        };
        let lpw = (TILE / m).min(lines.next_power_of_two());
        let groups = u32_of(lines.div_ceil(lpw));
        let grid = grid_1d(groups, gpu.info().max_workgroups_per_dim);
        let p = Params { lpw, lines, ..base };
        launch_fft_wg(io, src, dst, p, grid);
        return Ok(());
    }
    debug_assert!(io == WgPass::Complex, "the global passes take complex data");
    launch_fft_1d(
        "fft_bitrev",
        &[src.bind(0), dst.bind(1)],
        Params {
            n: lines * m,
            ..base
        },
        gpu,
    );
    let mut half = 1;
    if m.trailing_zeros() % 2 == 1 {
        launch_fft_1d(
            "fft_r2_global",
            &[dst.bind(1)],
            Params {
                n: lines * m / 2,
                scale: 1.0,
                ..base
            },
            gpu,
        );
        half = 2;
    }
    while half < m {
        launch_fft_1d(
            "fft_r4_global",
            &[dst.bind(1), bind_table(&tw, 4)],
            Params {
                n: lines * m / 4,
                half,
                scale: 1.0,
                ..base
            },
            gpu,
        );
        half *= 4;
    }
    Ok(())
}

/// Launch the workgroup-memory pass in form `pass` over `p.lines` lines of `p.m` points,
/// src → dst. The fused spectral passes take their line layout from `p` (see the
/// shader's header).
pub(crate) fn launch_wg(pass: WgPass, src: &Tensor, dst: &Tensor, p: Params) -> Result<()> {
    let gpu = src.gpu();
    let lpw = (TILE / p.m).min(p.lines);
    let groups = u32_of(p.lines.div_ceil(lpw));
    let grid = grid_1d(groups, gpu.info().max_workgroups_per_dim);
    launch_fft_wg(pass, src, dst, Params { lpw, ..p }, grid);
    Ok(())
}

/// Whether `path` runs the global-memory form for M-point lines.
pub(crate) fn use_global(x: &Tensor, m: usize, path: FftPath) -> Result<bool> {
    match path {
        FftPath::Auto => Ok(m > TILE),
        FftPath::Workgroup if m > TILE => Err(Error::BadShape {
            op: "fft2",
            shape: x.shape().clone(),
            expected: format!("M ≤ {TILE} for the workgroup-memory form"),
        }),
        FftPath::Workgroup => Ok(false),
        FftPath::Global => Ok(true),
    }
}

/// The 2-D transform of `planes` complex M×M planes held in `x`, into a new tensor
/// shaped like `x`: rows then columns, with `scale` applied once.
pub(crate) fn fft2_raw(
    x: &Tensor,
    planes: usize,
    m: usize,
    sign: f32,
    scale: f32,
    path: FftPath,
) -> Result<Tensor> {
    fft2_io(x, planes, m, sign, scale, path, false, false)
}

/// [`fft2_raw`] with a real input (`real_in`: x is (…, M, M), imaginary parts 0) and/or
/// a real output (`real_out`: (…, M, M); the caller guarantees the transform is real, as
/// it is for a Hermitian input, since the workgroup form packs two lines per transform
/// and keeps no imaginary parts). The workgroup form reads and writes the real data
/// directly; the global form converts around its passes (and takes real parts).
#[allow(clippy::too_many_arguments)]
pub(crate) fn fft2_io(
    x: &Tensor,
    planes: usize,
    m: usize,
    sign: f32,
    scale: f32,
    path: FftPath,
    real_in: bool,
    real_out: bool,
) -> Result<Tensor> {
    let global = use_global(x, m, path)?;
    let mut cdims = x.dims().to_vec();
    if real_in {
        cdims.push(2);
    }
    let rdims = &cdims[..cdims.len() - 1];
    if global {
        let xc = if real_in { to_complex(x)? } else { x.clone() };
        let tmp = Tensor::uninit(x.gpu(), Shape(cdims.clone()), "fft2")?;
        pass(
            &xc,
            &tmp,
            planes,
            m,
            true,
            sign,
            scale,
            true,
            WgPass::Complex,
        )?;
        drop(xc);
        let out = Tensor::uninit(x.gpu(), Shape(cdims.clone()), "fft2")?;
        pass(
            &tmp,
            &out,
            planes,
            m,
            false,
            sign,
            1.0,
            true,
            WgPass::Complex,
        )?;
        return if real_out { real_part(&out) } else { Ok(out) };
    }
    let tmp = Tensor::uninit(x.gpu(), Shape(cdims.clone()), "fft2")?;
    let io = if real_in {
        WgPass::RealIn
    } else {
        WgPass::Complex
    };
    pass(x, &tmp, planes, m, true, sign, scale, false, io)?;
    let (out, io) = if real_out {
        (Tensor::uninit(x.gpu(), rdims, "fft2")?, WgPass::RealOut)
    } else {
        (
            Tensor::uninit(x.gpu(), Shape(cdims), "fft2")?,
            WgPass::Complex,
        )
    };
    pass(&tmp, &out, planes, m, false, sign, 1.0, false, io)?;
    Ok(out)
}

/// (planes, M) of a complex (N, C, M, M, 2) tensor with M a power of two ≥ 2.
pub(crate) fn complex_planes(op: &'static str, x: &Tensor) -> Result<(usize, usize)> {
    match *x.dims() {
        [n, c, m, w, 2] if m == w && (2..=TW_N).contains(&m) && m.is_power_of_two() => {
            Ok((n * c, m))
        }
        _ => Err(Error::BadShape {
            op,
            shape: x.shape().clone(),
            expected: format!("(N, C, M, M, 2) complex planes, M a power of two, 2 ≤ M ≤ {TW_N}"),
        }),
    }
}

/// The forward 2-D DFT of every (M×M) plane of x (N, C, M, M, 2), unnormalised:
/// X[k, l] = Σ_{m,n} x[m, n]·e^{−2πi(km + ln)/M}. Output (N, C, M, M, 2).
pub fn fft2(x: &Tensor) -> Result<Tensor> {
    fft2_via(x, false, FftPath::Auto)
}

/// The inverse 2-D DFT of every plane of x (N, C, M, M, 2), normalised by 1/M²:
/// x[m, n] = (1/M²)·Σ_{k,l} X[k, l]·e^{+2πi(km + ln)/M}. Output (N, C, M, M, 2).
pub fn ifft2(x: &Tensor) -> Result<Tensor> {
    fft2_via(x, true, FftPath::Auto)
}

/// [`fft2`] (or [`ifft2`] when `inverse`) through a chosen form of the passes.
pub fn fft2_via(x: &Tensor, inverse: bool, path: FftPath) -> Result<Tensor> {
    let (planes, m) = complex_planes(if inverse { "ifft2" } else { "fft2" }, x)?;
    let (sign, scale) = if inverse {
        (1.0, 1.0 / (m * m) as f32)
    } else {
        (-1.0, 1.0)
    };
    let y = fft2_raw(x, planes, m, sign, scale, path)?;
    record(&[x], &y, || Fft2Grad { inverse, path });
    Ok(y)
}

/// Backward of [`fft2`] / [`ifft2`]: the adjoint of a complex-linear map seen as a real
/// one is its conjugate transpose, and the DFT matrix is symmetric, so it is the DFT of
/// the other sign with the same scale.
// y = F x (sign −1, scale 1)              ⇒  dx = Fᴴ dy = (sign +1, scale 1)
// y = (1/M²) Fᴴ x (sign +1, scale 1/M²)   ⇒  dx = (1/M²) F dy = (sign −1, scale 1/M²)
fn fft2_backward(dy: &Tensor, inverse: bool, path: FftPath) -> Result<Tensor> {
    let (planes, m) = complex_planes("fft2_backward", dy)?;
    let (sign, scale) = if inverse {
        (-1.0, 1.0 / (m * m) as f32)
    } else {
        (1.0, 1.0)
    };
    fft2_raw(dy, planes, m, sign, scale, path)
}

/// (re, 0) for every element of a real tensor: shape `shape` ++ [2].
pub(crate) fn to_complex(x: &Tensor) -> Result<Tensor> {
    let mut dims = x.dims().to_vec();
    dims.push(2);
    let out = Tensor::uninit(x.gpu(), Shape(dims), "to_complex")?;
    launch_fft_1d(
        "to_complex",
        &[x.bind(2), out.bind(1)],
        Params {
            n: x.numel(),
            ..Params::default()
        },
        x.gpu(),
    );
    Ok(out)
}

/// The real parts of a complex tensor (shape without its trailing 2).
pub(crate) fn real_part(x: &Tensor) -> Result<Tensor> {
    let dims = &x.dims()[..x.dims().len() - 1];
    let out = Tensor::uninit(x.gpu(), dims, "real_part")?;
    launch_fft_1d(
        "real_part",
        &[x.bind(0), out.bind(3)],
        Params {
            n: out.numel(),
            ..Params::default()
        },
        x.gpu(),
    );
    Ok(out)
}

/// The FFT's backward keeps its direction and path (it is linear: nothing else).
struct Fft2Grad {
    inverse: bool,
    path: FftPath,
}

impl Backward for Fft2Grad {
    fn backward(&self, dy: &Tensor, _: &[Input], _: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(fft2_backward(dy, self.inverse, self.path)?)])
    }
}

pub mod reference {
    //! The f64 reference of this module's kernels, forward and backward: the textbook
    //! loop that the tests hold the WGSL entry points to (and the f64 model is built
    //! from).
    //!
    //! The 2-D DFT by O(M²) sums per line (spectral pooling's references are
    //! `crate::ops::spectral::reference`).
    //!
    //! Complex data is interleaved (re, im) as in the kernels: a set of planes is
    //! (planes, M, M, 2) flattened.

    use std::f64::consts::PI;

    /// One 2-D DFT per plane: X[k, l] = scale · Σ_{a,b} x[a, b]·e^{sign·2πi(ka + lb)/M},
    /// computed as a DFT of every row then of every column (each an O(M²) sum).
    pub fn dft2(x: &[f64], planes: usize, m: usize, sign: f64, scale: f64) -> Vec<f64> {
        assert_eq!(x.len(), planes * m * m * 2);
        // e^{sign·2πi·j/M} for j = k·n mod M: exact angles, no accumulated rounding.
        let w: Vec<(f64, f64)> = (0..m)
            .map(|j| {
                let a = sign * 2.0 * PI * j as f64 / m as f64;
                (a.cos(), a.sin())
            })
            .collect();
        let mut data = x.to_vec();
        let mut line = vec![(0.0, 0.0); m];
        // Rows (points 1 apart, lines m apart) then columns (points m apart, lines 1 apart).
        for (es, ls) in [(1, m), (m, 1)] {
            for p in 0..planes {
                for l in 0..m {
                    let at = |i: usize| 2 * (p * m * m + l * ls + i * es);
                    for (k, out) in line.iter_mut().enumerate() {
                        let (mut re, mut im) = (0.0, 0.0);
                        for i in 0..m {
                            let (c, s) = w[(k * i) % m];
                            let (xr, xi) = (data[at(i)], data[at(i) + 1]);
                            re += xr * c - xi * s;
                            im += xr * s + xi * c;
                        }
                        *out = (re, im);
                    }
                    for (i, &(re, im)) in line.iter().enumerate() {
                        data[at(i)] = re;
                        data[at(i) + 1] = im;
                    }
                }
            }
        }
        data.iter_mut().for_each(|v| *v *= scale);
        data
    }

    /// The forward 2-D DFT (unnormalised) of complex planes.
    pub fn fft2(x: &[f64], planes: usize, m: usize) -> Vec<f64> {
        dft2(x, planes, m, -1.0, 1.0)
    }

    /// The inverse 2-D DFT, normalised by 1/M².
    pub fn ifft2(x: &[f64], planes: usize, m: usize) -> Vec<f64> {
        dft2(x, planes, m, 1.0, 1.0 / (m * m) as f64)
    }

    /// Backward of [`fft2`] (or [`ifft2`] when `inverse`): the conjugate transpose, i.e. the
    /// transform of the other sign with the same scale.
    pub fn fft2_backward(dy: &[f64], planes: usize, m: usize, inverse: bool) -> Vec<f64> {
        if inverse {
            dft2(dy, planes, m, -1.0, 1.0 / (m * m) as f64)
        } else {
            dft2(dy, planes, m, 1.0, 1.0)
        }
    }
}
