//! Spectral pooling (MODEL.md, "SpectralPool(x, h)") and its two frequency-domain steps,
//! the crop/merge and its adjoint the pad/split (`shaders/fft.wgsl`).
//!
//! x is (N, C, M, M) real, y is (N, C, h, h) real, M and h powers of two, 2 ≤ h ≤ M:
//! X = FFT_M(x); Z = crop_h(X)/(h·h); y = Re(IFFT_h(Z)·h·h), i.e. the real part of the
//! inverse DFT of size h×h normalised by 1/(h·h). The crop keeps, along each axis, bins
//! 0..h/2−1 and M−h/2+1..M−1 and merges the Nyquist pair into √½·(X[h/2] + X[M−h/2]);
//! when h = M that bin is only scaled by √2. The map is real-linear and separable,
//! y = A·x·Aᵀ with A real h×M (see `reference::fft::spectral_matrix`).
//!
//! Below full size (h < M: the hybrid pools that halve the encoder's maps) [`FftPath::Auto`]
//! takes y = A·x·Aᵀ as it is: two real products per plane with the h×M matrix A (a table
//! of the device), T = xᵀ·Aᵀ and y = Tᵀ·Aᵀ, through the products every convolution uses,
//! and the backward likewise with Aᵀ. They do more arithmetic than the FFTs, but the
//! products are the engine's fastest kernels: on lavapipe, at the encoder's shapes
//! (`cargo bench --bench kernels -- M/2`), 1.2–7.5× less time than the FFT passes, and
//! the FFT's pipeline is never compiled. The forced FFT paths keep the transforms.
//!
//! At h = M (the hybrid pools inside every inception block) the crop keeps every bin and
//! only scales the Nyquist row and column by √2, so A = I + c·v·vᵀ with v = (−1)^n and
//! c = (√2 − 1)/M, and y = A·x·Aᵀ takes two memory-bound passes instead of four FFT passes
//! (`shaders/spectral.wgsl`, [`reference::spectral_pool_full_size`]); A is symmetric, so
//! the backward is the same map. [`FftPath::Auto`] takes it whenever M is a multiple of 4;
//! the forced FFT paths keep the transforms.
//!
//! On the workgroup-memory path the crop is fused into the M-point passes: the row pass
//! keeps h of the M columns (merged), so the column pass transforms h columns, and the
//! backward mirrors it with the pad fused into the loads. The global-memory path runs the
//! steps as separate kernels (FFT, `spectral_crop`, FFT).

use super::conv1x1::Matmul;
use super::fft::{
    FftPath, Params, TW_N, WgPass, complex_planes, fft2_io, launch_fft_1d, launch_wg, use_global,
};
use super::{launch_1d, u32_of};
use crate::autodiff::{Backward, Input, record};
use crate::error::{Error, Result};
use crate::runtime::{Kernel, Shader, grid_1d, kernel_params};
use crate::tensor::{Shape, Tensor};

kernel_params! {
    /// The block of `shaders/spectral.wgsl` (spectral pooling at h = M in closed form).
    pub(crate) struct FullParams for Spectral {
        /// N·C planes.
        planes: u32,
        /// Plane side M, a multiple of 4.
        m: u32,
        /// (√2 − 1)/M.
        c: f32,
        /// vec4s of the output, planes·M·M/4.
        total: u32,
    }
}

/// Whether pooling M×M planes to h×h along `path` takes the closed form at full size.
fn closed_form(m: usize, h: usize, path: FftPath) -> bool {
    h == m && m.is_multiple_of(4) && path == FftPath::Auto
}

/// Whether pooling M×M planes to h×h along `path` takes the two real products.
fn by_products(m: usize, h: usize, path: FftPath) -> bool {
    h < m && path == FftPath::Auto
}

/// The h×M matrix A of pooling M to h ([`reference::spectral_matrix`], rounded to f32),
/// or its transpose (M×h), row-major: a table of the device, made once.
fn spectral_table(gpu: &crate::Gpu, m: usize, h: usize, transposed: bool) -> Tensor {
    let name = format!(
        "spectral matrix {m}->{h}{}",
        if transposed { "T" } else { "" }
    );
    let shape = if transposed { [m, h] } else { [h, m] };
    Tensor::table(gpu, &name, shape, || {
        let a = reference::spectral_matrix(m, h);
        if transposed {
            (0..m * h).map(|i| a[(i % h) * m + i / h] as f32).collect()
        } else {
            a.iter().map(|&v| v as f32).collect()
        }
    })
}

/// y[p] = L·x[p]·Lᵀ for each of `planes` planes, x (planes, c, c) → `out` (planes, r, r),
/// given `lt` = Lᵀ (c × r, row-major), as two batched products that read every operand in
/// place: T[p] = x[p]ᵀ·Lᵀ (c × r), then y[p] = T[p]ᵀ·Lᵀ (= L·x[p]·Lᵀ), with max(0, ·) in
/// the second one's store when `relu`. Both read their left operand as K×M with m
/// contiguous (x[p] and T[p] as stored), the form the CPU-shaped kernels take.
fn sandwich(
    x: &Tensor,
    planes: usize,
    (c, r): (usize, usize),
    lt: &Tensor,
    out: Shape,
    relu: bool,
) -> Result<Tensor> {
    let gpu = x.gpu();
    let t = Tensor::uninit(gpu, [planes, c, r], "spectral_pool")?;
    let first = Matmul {
        m: c,
        n: r,
        k: c,
        batch: planes,
        a_off: 0,
        a_sb: c * c,
        a_sm: 1,
        a_sk: c,
        b_sb: 0,
        b_sk: r,
        b_sn: 1,
    };
    first.run(x, lt, None, &t, c * r, r);
    let y = Tensor::uninit(gpu, out, "spectral_pool")?;
    let second = Matmul {
        m: r,
        a_sb: c * r,
        a_sk: r,
        ..first
    };
    second.run_acc(&t, lt, None, &y, r * r, r, false, relu);
    Ok(y)
}

/// y = A·x·Aᵀ for h = M: per plane the alternating row and column sums and their total
/// (one workgroup per plane), then y from x and the sums (one invocation per one or four
/// vec4s of a row).
fn full_size_raw(x: &Tensor, planes: usize, m: usize, relu: bool) -> Result<Tensor> {
    let gpu = x.gpu();
    let sums = Tensor::uninit(gpu, [planes, 2 * m + 4], "spectral_sums")?;
    // Four vec4s per invocation of `full_apply` where a row is whole groups of four (one
    // with few pipelines: one pipeline for every size).
    let per = if m.is_multiple_of(16) && !gpu.few_pipelines() {
        4
    } else {
        1
    };
    let total = planes * m * m / 4 / per;
    let params = FullParams {
        planes: u32_of(planes),
        m: u32_of(m),
        c: ((std::f64::consts::SQRT_2 - 1.0) / m as f64) as f32,
        total: u32_of(total),
    };
    gpu.launch(
        &Kernel::new(Shader::Spectral, "full_sums"),
        &[x.bind(0), sums.bind(1)],
        &params,
        grid_1d(u32_of(planes), gpu.info().max_workgroups_per_dim),
    );
    let y = Tensor::uninit(gpu, x.shape().clone(), "spectral_pool")?;
    launch_1d(
        gpu,
        &Kernel::new(Shader::Spectral, "full_apply")
            .with("RELU", u32::from(relu))
            .with("FA_V", u32_of(per)),
        &[x.bind(0), sums.bind(2), y.bind(3)],
        &params,
        total,
    );
    Ok(y)
}

fn bad(op: &'static str, x: &Tensor, expected: &str) -> Error {
    Error::BadShape {
        op,
        shape: x.shape().clone(),
        expected: expected.into(),
    }
}

fn check_h(op: &'static str, x: &Tensor, m: usize, h: usize) -> Result<()> {
    if h < 2 || !h.is_power_of_two() || h > m {
        return Err(bad(
            op,
            x,
            &format!("output size h = {h} must be a power of two with 2 ≤ h ≤ M = {m}"),
        ));
    }
    Ok(())
}

/// dst (planes, h, h, 2) = scale · crop/merge of src (planes, M, M, 2).
fn crop_raw(src: &Tensor, planes: usize, m: usize, h: usize, scale: f32) -> Result<Tensor> {
    let mut dims = src.dims().to_vec();
    let r = dims.len();
    dims[r - 3] = h;
    dims[r - 2] = h;
    let out = Tensor::uninit(src.gpu(), Shape(dims), "spectral_crop")?;
    launch_fft_1d(
        "spectral_crop",
        &[src.bind(0), out.bind(1)],
        Params {
            n: planes * h * h,
            m,
            h,
            scale,
            ..Params::default()
        },
        src.gpu(),
    );
    Ok(out)
}

/// dst (planes, M, M, 2) = scale · pad/split of src (planes, h, h, 2) (the transpose of
/// [`crop_raw`]).
fn pad_raw(src: &Tensor, planes: usize, m: usize, h: usize, scale: f32) -> Result<Tensor> {
    let mut dims = src.dims().to_vec();
    let r = dims.len();
    dims[r - 3] = m;
    dims[r - 2] = m;
    let out = Tensor::uninit(src.gpu(), Shape(dims), "spectral_pad")?;
    launch_fft_1d(
        "spectral_pad",
        &[src.bind(0), out.bind(1)],
        Params {
            n: planes * m * m,
            m,
            h,
            scale,
            ..Params::default()
        },
        src.gpu(),
    );
    Ok(out)
}

/// The crop/merge of spectral pooling on a complex spectrum x (N, C, M, M, 2) → (N, C,
/// h, h, 2): per axis, output bin a takes bin a (a < h/2), bin a + M − h (a > h/2), and
/// √½·(X[h/2] + X[M−h/2]) at a = h/2 (√2·X[M/2] when h = M); in 2-D the weights multiply.
pub fn spectral_crop(x: &Tensor, h: usize) -> Result<Tensor> {
    let (planes, m) = complex_planes("spectral_crop", x)?;
    check_h("spectral_crop", x, m, h)?;
    let y = crop_raw(x, planes, m, h, 1.0)?;
    record(&[x], &y, || CropPadGrad { m, h, crop: true });
    Ok(y)
}

/// The adjoint of [`spectral_crop`]: x (N, C, h, h, 2) → (N, C, M, M, 2), each kept bin
/// back in place, each merged Nyquist bin spread with weight √½ to both sources (√2 to
/// the single one when h = M), zeros elsewhere.
pub fn spectral_pad(x: &Tensor, m: usize) -> Result<Tensor> {
    let (planes, h) = complex_planes("spectral_pad", x)?;
    if !m.is_power_of_two() || m > TW_N {
        return Err(bad(
            "spectral_pad",
            x,
            &format!("target size M = {m} must be a power of two, h ≤ M ≤ {TW_N}"),
        ));
    }
    check_h("spectral_pad", x, m, h)?;
    let y = pad_raw(x, planes, m, h, 1.0)?;
    record(&[x], &y, || CropPadGrad { m, h, crop: false });
    Ok(y)
}

/// Backward of [`spectral_crop`] (the pad) and of [`spectral_pad`] (the crop).
// y = crop(x)  ⇒  dx = cropᵀ(dy) = pad(dy);   y = pad(x)  ⇒  dx = padᵀ(dy) = crop(dy)
fn crop_pad_backward(dy: &Tensor, m: usize, h: usize, crop: bool) -> Result<Tensor> {
    let planes = dy.numel() / (2 * if crop { h * h } else { m * m });
    if crop {
        pad_raw(dy, planes, m, h, 1.0)
    } else {
        crop_raw(dy, planes, m, h, 1.0)
    }
}

/// (N, C, M) of a real (N, C, M, M) tensor with M a power of two ≥ 2.
fn real_planes(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize)> {
    let (n, c, m, w) = x
        .shape()
        .nchw()
        .ok_or_else(|| bad(op, x, "rank 4 (N, C, M, M)"))?;
    if m != w || !(2..=TW_N).contains(&m) || !m.is_power_of_two() {
        return Err(bad(
            op,
            x,
            &format!("square M×M planes, M a power of two, 2 ≤ M ≤ {TW_N}"),
        ));
    }
    Ok((n, c, m))
}

/// The largest buffer, in floats, that spectral pooling of (N, C, M, M) to h×h allocates
/// inside its forward or its backward (the gradient of [`pool_raw`] is [`unpool_raw`]): on
/// the workgroup path the (N, C, M, h) complex half-transform, on the global path the
/// (N, C, M, M) complex spectrum, in closed form the sums (N, C, 2M + 4), as products the
/// (N, C, M, h) real product between the two. The memory budget (`crate::model::Count`)
/// reads it (for the Auto path, the one the network takes).
pub(crate) fn scratch_floats(n: usize, c: usize, m: usize, h: usize) -> usize {
    if closed_form(m, h, FftPath::Auto) {
        return n * c * (2 * m + 4);
    }
    if by_products(m, h, FftPath::Auto) {
        return n * c * m * h;
    }
    let cols = if m > super::fft::TILE { m } else { h };
    2 * n * c * m * cols
}

/// (N, C, M, M) → (N, C, h, h): FFT, crop/merge with the 1/h² of the inverse, inverse
/// FFT (unnormalised), real part.
fn pool_raw(x: &Tensor, planes: usize, m: usize, h: usize, path: FftPath) -> Result<Tensor> {
    pool_raw_relu(x, planes, m, h, path, false)
}

/// [`pool_raw`], then max(0, ·) when `relu`: in the last store of the closed form and of
/// the products, as a pass of its own after the FFTs.
fn pool_raw_relu(
    x: &Tensor,
    planes: usize,
    m: usize,
    h: usize,
    path: FftPath,
    relu: bool,
) -> Result<Tensor> {
    if closed_form(m, h, path) {
        return full_size_raw(x, planes, m, relu);
    }
    let (n, c, _, _) = x.shape().nchw().expect("checked by the caller");
    if by_products(m, h, path) {
        let at = spectral_table(x.gpu(), m, h, true);
        return sandwich(x, planes, (m, h), &at, Shape(vec![n, c, h, h]), relu);
    }
    if relu {
        return super::relu(&pool_raw(x, planes, m, h, path)?);
    }
    if !use_global(x, m, path)? {
        // The crop fused into the stores of the M-point passes: the row pass keeps h of
        // the M columns, so the column pass transforms h columns instead of M.
        let rows = Tensor::uninit(x.gpu(), [n, c, m, h, 2], "spectral_pool")?;
        let p = Params {
            m,
            h,
            sign: -1.0,
            scale: 1.0,
            ..Params::default()
        };
        // Rows of x (planes, M, M) → rows of (planes, M, h), two real rows per
        // transform (M is even, so a pair never straddles two planes).
        launch_wg(
            WgPass::CropRealIn,
            x,
            &rows,
            Params {
                lines: planes * m / 2,
                lpp: m,
                ps_in: m * m,
                ls: m,
                es: 1,
                ps_out: m * h,
                ls_out: h,
                es_out: 1,
                ..p
            },
        )?;
        // Columns of (planes, M, h) → columns of (planes, h, h), with the 1/h² of the
        // inverse.
        let low = Tensor::uninit(x.gpu(), [n, c, h, h, 2], "spectral_pool")?;
        launch_wg(
            WgPass::Crop,
            &rows,
            &low,
            Params {
                lines: planes * h,
                lpp: h,
                ps_in: m * h,
                ls: 1,
                es: h,
                ps_out: h * h,
                ls_out: 1,
                es_out: h,
                scale: 1.0 / (h * h) as f32,
                ..p
            },
        )?;
        drop(rows);
        return fft2_io(&low, planes, h, 1.0, 1.0, path, false, true);
    }
    let spectrum = fft2_io(x, planes, m, -1.0, 1.0, path, true, false)?;
    let low = crop_raw(&spectrum, planes, m, h, 1.0 / (h * h) as f32)?;
    drop(spectrum);
    fft2_io(&low, planes, h, 1.0, 1.0, path, false, true)
}

/// The adjoint of [`pool_raw`], (N, C, h, h) → (N, C, M, M): the adjoint of each step in
/// reverse order.
// y = Re(Fₕᴴ · crop(F_M x) / h²)  ⇒  dx = Re(F_Mᴴ · pad(Fₕ dy) / h²)
// (Re and the real→complex inclusion are adjoint to each other; Fᴴ is the unnormalised
// inverse DFT, sign +1 and scale 1.)
fn unpool_raw(dy: &Tensor, planes: usize, m: usize, h: usize, path: FftPath) -> Result<Tensor> {
    if closed_form(m, h, path) {
        // A is symmetric: Aᵀ·dy·A = A·dy·Aᵀ.
        return full_size_raw(dy, planes, m, false);
    }
    let (n, c, _, _) = dy.shape().nchw().expect("checked by the caller");
    if by_products(m, h, path) {
        // dx = Aᵀ·dy·A: the sandwich of L = Aᵀ, whose transpose is A.
        let a = spectral_table(dy.gpu(), m, h, false);
        return sandwich(dy, planes, (h, m), &a, Shape(vec![n, c, m, m]), false);
    }
    let g = fft2_io(dy, planes, h, -1.0, 1.0, path, true, false)?;
    if !use_global(dy, m, path)? {
        // The pad fused into the loads of the M-point passes (the transpose of
        // pool_raw's): h columns expanded to M points, then M rows of h points each.
        let p = Params {
            m,
            h,
            sign: 1.0,
            scale: 1.0,
            ..Params::default()
        };
        // Columns of (planes, h, h) → columns of (planes, M, h), with the 1/h².
        let cols = Tensor::uninit(dy.gpu(), [n, c, m, h, 2], "spectral_unpool")?;
        launch_wg(
            WgPass::Pad,
            &g,
            &cols,
            Params {
                lines: planes * h,
                lpp: h,
                ps_in: h * h,
                ls: 1,
                es: h,
                ps_out: m * h,
                ls_out: 1,
                es_out: h,
                scale: 1.0 / (h * h) as f32,
                ..p
            },
        )?;
        drop(g);
        // Rows of (planes, M, h) → rows of (planes, M, M), real (the padded spectrum is
        // Hermitian), two rows per transform (M even: a pair stays in one plane).
        let dx = Tensor::uninit(dy.gpu(), [n, c, m, m], "spectral_unpool")?;
        launch_wg(
            WgPass::PadRealOut,
            &cols,
            &dx,
            Params {
                lines: planes * m / 2,
                lpp: m,
                ps_in: m * h,
                ls: h,
                es: 1,
                ps_out: m * m,
                ls_out: m,
                es_out: 1,
                ..p
            },
        )?;
        return Ok(dx);
    }
    let padded = pad_raw(&g, planes, m, h, 1.0 / (h * h) as f32)?;
    drop(g);
    fft2_io(&padded, planes, m, 1.0, 1.0, path, false, true)
}

/// Spectral pooling of x (N, C, M, M) to (N, C, h, h); see the module docs.
pub fn spectral_pool(x: &Tensor, h: usize) -> Result<Tensor> {
    spectral_pool_via(x, h, FftPath::Auto)
}

/// max(0, [`spectral_pool`]) for inference: at full size (h = M, the closed form) the
/// ReLU is applied in the pooling's store, saving a pass over the output; otherwise the
/// two ops. The same values as the two ops. Not recorded: an error while a tape records.
pub fn spectral_pool_relu(x: &Tensor, h: usize) -> Result<Tensor> {
    let op = "spectral_pool_relu";
    if crate::autodiff::is_recording() {
        return Err(Error::Autodiff(format!(
            "{op} is for inference: it records no gradient"
        )));
    }
    let (n, c, m) = real_planes(op, x)?;
    check_h(op, x, m, h)?;
    pool_raw_relu(x, n * c, m, h, FftPath::Auto, true)
}

/// [`spectral_pool`] with its FFTs (and its backward's) through a chosen form of the
/// passes (the tests run the global-memory one at small sizes).
pub fn spectral_pool_via(x: &Tensor, h: usize, path: FftPath) -> Result<Tensor> {
    let (n, c, m) = real_planes("spectral_pool", x)?;
    check_h("spectral_pool", x, m, h)?;
    let y = pool_raw(x, n * c, m, h, path)?;
    record(&[x], &y, || PoolGrad {
        m,
        h,
        path,
        unpool: false,
    });
    Ok(y)
}

/// The adjoint (transpose) of [`spectral_pool`]: dy (N, C, h, h) → (N, C, M, M),
/// dx = Aᵀ·dy·A per plane. It is spectral pooling's backward, public so that it can be
/// measured and reused (a frequency-domain upsampling).
pub fn spectral_unpool(dy: &Tensor, m: usize) -> Result<Tensor> {
    spectral_unpool_via(dy, m, FftPath::Auto)
}

/// [`spectral_unpool`] through a chosen form of the FFT passes.
pub fn spectral_unpool_via(dy: &Tensor, m: usize, path: FftPath) -> Result<Tensor> {
    let (n, c, h) = real_planes("spectral_unpool", dy)?;
    if !m.is_power_of_two() || m > TW_N {
        return Err(bad(
            "spectral_unpool",
            dy,
            &format!("target size M = {m} must be a power of two, h ≤ M ≤ {TW_N}"),
        ));
    }
    check_h("spectral_unpool", dy, m, h)?;
    let x = unpool_raw(dy, n * c, m, h, path)?;
    record(&[dy], &x, || PoolGrad {
        m,
        h,
        path,
        unpool: true,
    });
    Ok(x)
}

/// Backward of [`spectral_pool`]: [`spectral_unpool`] (its adjoint).
// y = A·x·Aᵀ  ⇒  dx = Aᵀ·dy·A
fn spectral_pool_backward(dy: &Tensor, m: usize, h: usize, path: FftPath) -> Result<Tensor> {
    let (n, c, _, _) = dy.shape().nchw().expect("checked in forward");
    unpool_raw(dy, n * c, m, h, path)
}

/// Backward of [`spectral_unpool`]: spectral pooling (the adjoint of the adjoint).
// x = Aᵀ·dy·A  ⇒  d(dy) = A·dx·Aᵀ
fn spectral_unpool_backward(dx: &Tensor, m: usize, h: usize, path: FftPath) -> Result<Tensor> {
    let (n, c, _, _) = dx.shape().nchw().expect("checked in forward");
    pool_raw(dx, n * c, m, h, path)
}

/// The crop's and the pad's backward keep the sizes (both are linear).
struct CropPadGrad {
    m: usize,
    h: usize,
    crop: bool,
}

impl Backward for CropPadGrad {
    fn backward(&self, dy: &Tensor, _: &[Input], _: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(crop_pad_backward(
            dy, self.m, self.h, self.crop,
        )?)])
    }
}

/// Spectral pooling's and unpooling's backward keep the sizes and the FFT path (both
/// are linear, each the other's adjoint).
struct PoolGrad {
    m: usize,
    h: usize,
    path: FftPath,
    unpool: bool,
}

impl Backward for PoolGrad {
    fn backward(&self, dy: &Tensor, _: &[Input], _: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (m, h, path) = (self.m, self.h, self.path);
        Ok(vec![Some(if self.unpool {
            spectral_unpool_backward(dy, m, h, path)?
        } else {
            spectral_pool_backward(dy, m, h, path)?
        })])
    }
}

pub mod reference {
    //! The f64 reference of this module's kernels, forward and backward: the textbook
    //! loop that the tests hold the WGSL entry points to (and the f64 model is built
    //! from).
    //!
    //! Spectral pooling's references: the crop/merge and pad/split, and spectral pooling
    //! twice over — literally (DFT, crop, inverse DFT, real part) and as the dense real
    //! operator y = A·x·Aᵀ.
    //!
    //! Complex data is interleaved (re, im) as in the kernels: a set of planes is
    //! (planes, M, M, 2) flattened.

    use std::f64::consts::{FRAC_1_SQRT_2, PI, SQRT_2};

    use crate::ops::fft::reference::{fft2, ifft2};

    /// The M-point bins that output bin a (of h) takes, with their weights: a itself below
    /// h/2, a + M − h above, and the Nyquist pair h/2, M − h/2 with √½ each (one bin, √2,
    /// when h = M).
    pub fn crop_sources(a: usize, m: usize, h: usize) -> Vec<(usize, f64)> {
        let hh = h / 2;
        if a < hh {
            vec![(a, 1.0)]
        } else if a > hh {
            vec![(a + m - h, 1.0)]
        } else if h == m {
            vec![(a, SQRT_2)]
        } else {
            vec![(hh, FRAC_1_SQRT_2), (m - hh, FRAC_1_SQRT_2)]
        }
    }

    /// The crop/merge of complex planes (planes, M, M, 2) → (planes, h, h, 2), times `scale`:
    /// Z[a, b] = scale · Σ_{(i,u) ∈ S(a)} Σ_{(j,v) ∈ S(b)} u·v·X[i, j].
    pub fn spectral_crop(x: &[f64], planes: usize, m: usize, h: usize, scale: f64) -> Vec<f64> {
        let mut z = vec![0.0; planes * h * h * 2];
        for p in 0..planes {
            for a in 0..h {
                for b in 0..h {
                    let o = 2 * ((p * h + a) * h + b);
                    for (i, u) in crop_sources(a, m, h) {
                        for (j, v) in crop_sources(b, m, h) {
                            let s = 2 * ((p * m + i) * m + j);
                            z[o] += scale * u * v * x[s];
                            z[o + 1] += scale * u * v * x[s + 1];
                        }
                    }
                }
            }
        }
        z
    }

    /// The transpose of [`spectral_crop`] (the pad/split), (planes, h, h, 2) → (planes, M,
    /// M, 2): every output bin's value goes back to its sources with the same weights.
    pub fn spectral_pad(z: &[f64], planes: usize, m: usize, h: usize, scale: f64) -> Vec<f64> {
        let mut x = vec![0.0; planes * m * m * 2];
        for p in 0..planes {
            for a in 0..h {
                for b in 0..h {
                    let o = 2 * ((p * h + a) * h + b);
                    for (i, u) in crop_sources(a, m, h) {
                        for (j, v) in crop_sources(b, m, h) {
                            let s = 2 * ((p * m + i) * m + j);
                            x[s] += scale * u * v * z[o];
                            x[s + 1] += scale * u * v * z[o + 1];
                        }
                    }
                }
            }
        }
        x
    }

    /// Spectral pooling by its definition (MODEL.md): X = DFT(x), crop/merge to h×h, inverse
    /// DFT of size h×h normalised by 1/(h·h), real part. x is (planes, M, M) real.
    pub fn spectral_pool_by_dft(x: &[f64], planes: usize, m: usize, h: usize) -> Vec<f64> {
        let xc: Vec<f64> = x.iter().flat_map(|&v| [v, 0.0]).collect();
        let z = spectral_crop(&fft2(&xc, planes, m), planes, m, h, 1.0);
        ifft2(&z, planes, h).chunks(2).map(|c| c[0]).collect()
    }

    /// The real h×M matrix A of spectral pooling along one axis (row-major), y = A·x·Aᵀ.
    ///
    /// A = (1/h)·Fₕᴴ·S·F_M where S is the crop/merge. Pairing bin k′ < h/2 with its mirror
    /// h − k′ (bins k′ and k′ + M − h of the M-point spectrum, i.e. frequencies ±f) turns the
    /// exponentials into cosines, and the Nyquist bin contributes (−1)^n·√½·2·cos(πhm/M):
    ///   A[n, m] = (1/h)·[ Σ_{f=−h/2+1}^{h/2−1} cos(2πf·(n/h − m/M)) + √2·(−1)^n·cos(π·h·m/M) ].
    /// For h = M this is A[n, m] = δ_{nm} + (√2 − 1)·(−1)^{n+m}/M.
    pub fn spectral_matrix(m: usize, h: usize) -> Vec<f64> {
        let half = (h / 2) as i64;
        let mut a = vec![0.0; h * m];
        for n in 0..h {
            for c in 0..m {
                let t = n as f64 / h as f64 - c as f64 / m as f64;
                let mut v: f64 = (-half + 1..half)
                    .map(|f| (2.0 * PI * f as f64 * t).cos())
                    .sum();
                let sign = if n % 2 == 0 { 1.0 } else { -1.0 };
                v += SQRT_2 * sign * (PI * h as f64 * c as f64 / m as f64).cos();
                a[n * m + c] = v / h as f64;
            }
        }
        a
    }

    /// y[p] = A·x[p]·Bᵀ for each plane, A (ra × ca), x (ca × cb), B (rb × cb).
    fn sandwich(
        x: &[f64],
        planes: usize,
        a: &[f64],
        (ra, ca): (usize, usize),
        b: &[f64],
        (rb, cb): (usize, usize),
    ) -> Vec<f64> {
        let mut y = vec![0.0; planes * ra * rb];
        let mut t = vec![0.0; ra * cb];
        for p in 0..planes {
            let xp = &x[p * ca * cb..(p + 1) * ca * cb];
            // t = A·x
            t.iter_mut().for_each(|v| *v = 0.0);
            for i in 0..ra {
                for k in 0..ca {
                    let aik = a[i * ca + k];
                    for j in 0..cb {
                        t[i * cb + j] += aik * xp[k * cb + j];
                    }
                }
            }
            // y = t·Bᵀ
            for i in 0..ra {
                for j in 0..rb {
                    y[(p * ra + i) * rb + j] = (0..cb).map(|k| t[i * cb + k] * b[j * cb + k]).sum();
                }
            }
        }
        y
    }

    /// Spectral pooling as the dense real operator: y = A·x·Aᵀ per plane (planes, M, M) →
    /// (planes, h, h), A = [`spectral_matrix`].
    pub fn spectral_pool(x: &[f64], planes: usize, m: usize, h: usize) -> Vec<f64> {
        let a = spectral_matrix(m, h);
        sandwich(x, planes, &a, (h, m), &a, (h, m))
    }

    /// Backward of [`spectral_pool`]: dx = Aᵀ·dy·A per plane.
    pub fn spectral_pool_backward(dy: &[f64], planes: usize, m: usize, h: usize) -> Vec<f64> {
        let a = spectral_matrix(m, h);
        let mut at = vec![0.0; m * h];
        for n in 0..h {
            for c in 0..m {
                at[c * h + n] = a[n * m + c];
            }
        }
        sandwich(dy, planes, &at, (m, h), &at, (m, h))
    }

    /// The closed form of spectral pooling at h = M, written without A: the merge only
    /// scales the Nyquist row and column of the spectrum by √2, so with v[n] = (−1)^n and
    /// c = (√2 − 1)/M (A = I + c·v·vᵀ):
    ///   y = x + c·v·(vᵀx) + c·(x v)·vᵀ + c²·(vᵀ x v)·v·vᵀ,
    /// i.e. y[i, j] = x[i, j] + c·(−1)^i·r[j] + c·(−1)^j·s[i] + c²·(−1)^{i+j}·t with
    /// r[j] = Σ_k (−1)^k x[k, j], s[i] = Σ_k (−1)^k x[i, k], t = Σ_{k,l} (−1)^{k+l} x[k, l].
    pub fn spectral_pool_full_size(x: &[f64], planes: usize, m: usize) -> Vec<f64> {
        let c = (SQRT_2 - 1.0) / m as f64;
        let sgn = |k: usize| if k.is_multiple_of(2) { 1.0 } else { -1.0 };
        let mut y = vec![0.0; x.len()];
        for p in 0..planes {
            let xp = &x[p * m * m..(p + 1) * m * m];
            let r: Vec<f64> = (0..m)
                .map(|j| (0..m).map(|k| sgn(k) * xp[k * m + j]).sum())
                .collect();
            let s: Vec<f64> = (0..m)
                .map(|i| (0..m).map(|k| sgn(k) * xp[i * m + k]).sum())
                .collect();
            let t: f64 = (0..m).map(|k| sgn(k) * s[k]).sum();
            for i in 0..m {
                for j in 0..m {
                    y[(p * m + i) * m + j] = xp[i * m + j]
                        + c * sgn(i) * r[j]
                        + c * sgn(j) * s[i]
                        + c * c * sgn(i) * sgn(j) * t;
                }
            }
        }
        y
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn pseudo_random(n: usize) -> Vec<f64> {
            // A fixed LCG: these are properties of exact formulas, any data will do.
            let mut s = 12345u64;
            (0..n)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
                })
                .collect()
        }

        fn max_diff(a: &[f64], b: &[f64]) -> f64 {
            assert_eq!(a.len(), b.len());
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max)
        }

        #[test]
        fn dense_operator_equals_the_definition_by_dft() {
            for (m, h) in [(4, 2), (8, 4), (16, 8), (16, 4), (8, 8), (16, 16)] {
                let x = pseudo_random(3 * m * m);
                let d = max_diff(
                    &spectral_pool(&x, 3, m, h),
                    &spectral_pool_by_dft(&x, 3, m, h),
                );
                assert!(d < 1e-12, "M {m} h {h}: {d}");
            }
        }

        #[test]
        fn full_size_closed_form_equals_the_dense_operator() {
            for m in [4, 8, 16] {
                let x = pseudo_random(2 * m * m);
                let d = max_diff(
                    &spectral_pool_full_size(&x, 2, m),
                    &spectral_pool(&x, 2, m, m),
                );
                assert!(d < 1e-12, "M {m}: {d}");
            }
        }

        #[test]
        fn inverse_dft_undoes_the_forward() {
            let x = pseudo_random(2 * 8 * 8 * 2);
            let d = max_diff(&ifft2(&fft2(&x, 2, 8), 2, 8), &x);
            assert!(d < 1e-12, "{d}");
        }

        #[test]
        fn pad_is_the_transpose_of_crop() {
            // ⟨crop(x), z⟩ = ⟨x, pad(z)⟩ for random x, z.
            let (m, h) = (8, 4);
            let x = pseudo_random(m * m * 2);
            let z: Vec<f64> = pseudo_random(h * h * 2 + 7)[7..].to_vec();
            let lhs: f64 = spectral_crop(&x, 1, m, h, 1.0)
                .iter()
                .zip(&z)
                .map(|(a, b)| a * b)
                .sum();
            let rhs: f64 = x
                .iter()
                .zip(&spectral_pad(&z, 1, m, h, 1.0))
                .map(|(a, b)| a * b)
                .sum();
            assert!((lhs - rhs).abs() < 1e-12, "{lhs} vs {rhs}");
        }
    }
}
