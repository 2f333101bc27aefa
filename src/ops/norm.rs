//! Batch normalisation over (N, H, W) per channel (MODEL.md "BN(C)"), in training mode
//! (batch statistics) and eval mode (running statistics). `shaders/norm.wgsl`.
//!
//! x is (N, C, H, W); γ, β, running mean and running variance are (C); y is like x.
//! Training mode normalises with the batch mean and the *biased* batch variance (divided
//! by N·H·W), eps 1e-3, and returns new running statistics
//! `running = momentum·running + (1 − momentum)·batch` with momentum 0.99.
//!
//! Which batch variance enters the running variance: MODEL.md says only "batch". We follow
//! Keras' `BatchNormalization`, which updates the moving variance with the same biased
//! variance it normalises with (its fused TF path computes the unbiased one and removes
//! Bessel's correction again, "to be consistent with non-fused batch norm"). PyTorch
//! would use the unbiased one; at 256 elements per channel the two differ by 0.4 %.
//!
//! The running statistics are state, not differentiated: they are returned as new tensors
//! and never recorded. γ and β get gradients in both modes; in eval mode the op is the
//! affine map y = γ·(x − μ_run)/√(σ²_run + eps) + β and its backward is that map's.

use super::u32_of;
use crate::autodiff::{Backward, Input, Piecewise, record};
use crate::error::{Error, Result};
use crate::runtime::{Kernel, KernelClass, Shader, kernel_params};
use crate::tensor::Tensor;

/// Keras' default, and MODEL.md's.
pub const BN_EPS: f32 = 1e-3;
/// Running-statistics momentum (Keras' meaning: the weight of the old value).
pub const BN_MOMENTUM: f32 = 0.99;

/// Elements per workgroup of the partial reductions: a 256×256 plane makes 8 tiles, a
/// batch of 8 planes of 16×16 one. Fewer, fuller workgroups pay fewer barriers.
const REDUCE_TILE: usize = 8192;
/// Elements per workgroup of the element-wise kernels (apply, input gradient).
const MAP_TILE: usize = 1024;
/// Invocations per workgroup of the tiled kernels, scalar and vec4 (256 pixels either way).
const WG: usize = 256;
const WG4: usize = 64;
/// Workgroup size of the per-channel `*_final` kernels.
const WG_FINAL: usize = 64;
/// Elements from one place where a tensor view may start to the next.
const VIEW_ELEMS: usize = (crate::tensor::VIEW_ALIGN / 4) as usize;
const _: () = assert!(
    VIEW_ELEMS == 64,
    "shaders/norm.wgsl's running_at and dbeta_at"
);

/// How a launch covers one channel's N planes of P pixels: tiles of `qspan` pixels
/// (a multiple of the workgroup size) of `spw` consecutive samples (see the shader).
#[derive(Clone, Copy)]
struct Tiling {
    qspan: usize,
    nq: usize,
    spw: usize,
    ns: usize,
}

/// Sizes of one batch-norm launch.
#[derive(Clone, Copy)]
struct Dims {
    n: usize,
    c: usize,
    inner: usize,
    /// Pixels per invocation step: 4 where P is a multiple of 4 (the `*4` kernels, which
    /// count `inner` and the tiles in vec4s), else 1.
    lanes: usize,
    /// Tiling of the partial reductions (its tile count fixes the partials per channel).
    reduce: Tiling,
    /// Tiling of the element-wise kernels.
    map: Tiling,
}

impl Tiling {
    /// Tiles of about `target` units over N planes of `inner` units (pixels or vec4s),
    /// for workgroups of `wg` invocations.
    fn new(n: usize, inner: usize, target: usize, max_per_dim: usize, wg: usize) -> Self {
        let qspan = target
            .min(inner.next_multiple_of(wg))
            .max(inner.div_ceil(max_per_dim).next_multiple_of(wg));
        let spw = (target / qspan).clamp(1, n);
        Self {
            qspan,
            nq: inner.div_ceil(qspan),
            spw,
            ns: n.div_ceil(spw),
        }
    }
}

kernel_params! {
    /// The block of `shaders/norm.wgsl`.
    pub(crate) struct NormParams for Norm {
        /// Channels.
        c: u32,
        /// P = H·W.
        inner: u32,
        /// Pixels of a plane per tile.
        qspan: u32,
        /// Tiles along a plane.
        nq: u32,
        /// Batch.
        n: u32,
        /// Samples per tile.
        spw: u32,
        /// Tiles along the batch.
        ns: u32,
        /// bn_backward_input: 1 for batch statistics, 0 for running ones.
        train: u32,
        eps: f32,
        momentum: f32,
    }
}

impl Dims {
    fn params(&self, t: Tiling, eps: f32, momentum: f32, train: bool) -> NormParams {
        NormParams {
            c: u32_of(self.c),
            inner: u32_of(self.inner / self.lanes),
            qspan: u32_of(t.qspan),
            nq: u32_of(t.nq),
            n: u32_of(self.n),
            spw: u32_of(t.spw),
            ns: u32_of(t.ns),
            train: u32::from(train),
            eps,
            momentum,
        }
    }

    fn grid(&self, t: Tiling) -> [u32; 3] {
        [u32_of(t.nq), u32_of(self.c), u32_of(t.ns)]
    }

    /// Whether training mode runs as one dispatch per direction with a workgroup per
    /// channel (`bn_train_cpu4`, `bn_backward_cpu4`): on CPU adapters, where the planes
    /// are whole vec4s.
    fn per_channel(&self, x: &Tensor) -> bool {
        self.lanes == 4 && x.gpu().info().kernels == KernelClass::Cpu
    }

    /// The grid of the per-channel kernels.
    fn channel_grid(&self) -> [u32; 3] {
        [1, u32_of(self.c), 1]
    }

    fn final_grid(&self) -> [u32; 3] {
        [u32_of(self.c.div_ceil(WG_FINAL)), 1, 1]
    }

    /// Partial results per channel.
    fn parts(&self) -> usize {
        self.reduce.nq * self.reduce.ns
    }

    /// The tiled kernel: its scalar form, or its vec4 form where the planes allow it.
    fn kernel(&self, scalar: &'static str, vec4: &'static str) -> Kernel {
        Kernel::new(Shader::Norm, if self.lanes == 4 { vec4 } else { scalar })
    }
}

fn check(op: &'static str, x: &Tensor, per_channel: &[&Tensor]) -> Result<Dims> {
    let (n, c, h, w) = x.shape().nchw().ok_or_else(|| Error::BadShape {
        op,
        shape: x.shape().clone(),
        expected: "rank 4 (N, C, H, W)".into(),
    })?;
    for t in per_channel {
        if t.dims() != [c] {
            return Err(Error::Shape {
                op,
                lhs: x.shape().clone(),
                rhs: t.shape().clone(),
            });
        }
    }
    let max = x.gpu().info().max_workgroups_per_dim as usize;
    if c > max || n > max {
        return Err(Error::BadShape {
            op,
            shape: x.shape().clone(),
            expected: format!("N and C at most {max} (workgroup rows)"),
        });
    }
    let inner = h * w;
    let (lanes, wg) = if inner % 4 == 0 { (4, WG4) } else { (1, WG) };
    let units = inner / lanes;
    Ok(Dims {
        n,
        c,
        inner,
        lanes,
        reduce: Tiling::new(n, units, REDUCE_TILE / lanes, max, wg),
        map: Tiling::new(n, units, MAP_TILE / lanes, max, wg),
    })
}

/// y = γ·(x − mean)·invstd + β from stats (C, 2) = [mean, invstd], then max(y, 0) when
/// `relu`.
fn apply(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    stats: &Tensor,
    d: Dims,
    relu: bool,
) -> Result<Tensor> {
    let y = Tensor::uninit(x.gpu(), x.shape().clone(), "batch_norm")?;
    x.gpu().launch(
        &d.kernel("bn_apply", "bn_apply4")
            .with("RELU", u32::from(relu)),
        &[
            x.bind(0),
            stats.bind(1),
            gamma.bind(2),
            beta.bind(3),
            y.bind(4),
        ],
        &d.params(d.map, 0.0, 0.0, false),
        d.grid(d.map),
    );
    Ok(y)
}

/// Batch norm in training mode: returns (y, new running mean, new running variance).
/// Only y is recorded (its gradient flows to x, γ and β).
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    momentum: f32,
    eps: f32,
) -> Result<(Tensor, Tensor, Tensor)> {
    train(
        x,
        gamma,
        beta,
        running_mean,
        running_var,
        momentum,
        eps,
        false,
    )
}

/// [`batch_norm_train`] followed by ReLU, in one pass: y = max(0, BN(x)).
pub fn batch_norm_train_relu(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    momentum: f32,
    eps: f32,
) -> Result<(Tensor, Tensor, Tensor)> {
    train(
        x,
        gamma,
        beta,
        running_mean,
        running_var,
        momentum,
        eps,
        true,
    )
}

#[allow(clippy::too_many_arguments)]
fn train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    momentum: f32,
    eps: f32,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let op = if relu {
        "batch_norm_train_relu"
    } else {
        "batch_norm_train"
    };
    let d = check(op, x, &[gamma, beta, running_mean, running_var])?;
    let gpu = x.gpu();
    let params = d.params(d.reduce, eps, momentum, true);
    let (y, stats, new_mean, new_var) = if d.per_channel(x) {
        // stats (C, 2), then the new running mean and variance, each where a view may
        // start (the shader's `running_at`).
        let rm_at = (2 * d.c).next_multiple_of(VIEW_ELEMS);
        let rv_at = rm_at + d.c.next_multiple_of(VIEW_ELEMS);
        let out = Tensor::uninit(gpu, [rv_at + d.c], op)?;
        let y = Tensor::uninit(gpu, x.shape().clone(), op)?;
        gpu.launch(
            &Kernel::new(Shader::Norm, "bn_train_cpu4").with("RELU", u32::from(relu)),
            &[
                x.bind(0),
                running_mean.bind(1),
                running_var.bind(2),
                gamma.bind(3),
                beta.bind(4),
                out.bind(5),
                y.bind(6),
            ],
            &params,
            d.channel_grid(),
        );
        let stats = out.slice(0, [d.c, 2])?;
        (y, stats, out.slice(rm_at, [d.c])?, out.slice(rv_at, [d.c])?)
    } else {
        let partial = Tensor::uninit(gpu, [d.c, d.parts(), 3], op)?;
        gpu.launch(
            &d.kernel("bn_stats_partial", "bn_stats_partial4"),
            &[x.bind(0), partial.bind(1)],
            &params,
            d.grid(d.reduce),
        );
        let stats = Tensor::uninit(gpu, [d.c, 2], op)?;
        let new_mean = Tensor::uninit(gpu, [d.c], op)?;
        let new_var = Tensor::uninit(gpu, [d.c], op)?;
        gpu.launch(
            &Kernel::new(Shader::Norm, "bn_stats_final"),
            &[
                partial.bind(0),
                running_mean.bind(1),
                running_var.bind(2),
                stats.bind(3),
                new_mean.bind(4),
                new_var.bind(5),
            ],
            &params,
            d.final_grid(),
        );
        let y = apply(x, gamma, beta, &stats, d, relu)?;
        (y, stats, new_mean, new_var)
    };
    record(&[x, gamma, beta], &y, || BatchNormGrad {
        x: x.clone(),
        gamma: gamma.clone(),
        stats,
        train: true,
        relu_out: relu.then(|| y.clone()),
    });
    Ok((y, new_mean, new_var))
}

/// Batch norm in eval mode: normalise with the running statistics.
pub fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    eval(x, gamma, beta, running_mean, running_var, eps, false)
}

/// [`batch_norm_eval`] followed by ReLU, in one pass: y = max(0, BN(x)).
pub fn batch_norm_eval_relu(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    eval(x, gamma, beta, running_mean, running_var, eps, true)
}

fn eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f32,
    relu: bool,
) -> Result<Tensor> {
    let op = if relu {
        "batch_norm_eval_relu"
    } else {
        "batch_norm_eval"
    };
    let d = check(op, x, &[gamma, beta, running_mean, running_var])?;
    let stats = Tensor::uninit(x.gpu(), [d.c, 2], op)?;
    x.gpu().launch(
        &Kernel::new(Shader::Norm, "bn_stats_eval"),
        &[running_mean.bind(0), running_var.bind(1), stats.bind(2)],
        &d.params(d.reduce, eps, 0.0, false),
        d.final_grid(),
    );
    let y = apply(x, gamma, beta, &stats, d, relu)?;
    record(&[x, gamma, beta], &y, || BatchNormGrad {
        x: x.clone(),
        gamma: gamma.clone(),
        stats,
        train: false,
        relu_out: relu.then(|| y.clone()),
    });
    Ok(y)
}

/// Eval-mode batch norm folded into the 1×1 convolution before it: (w', b') with
/// BN(w·x + b) = w'·x + b' for w (Cout, Cin, 1, 1), b and the BN tensors (Cout). Not
/// recorded: for inference (`ops::conv1x1_cat_bn_eval`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn fold_into_conv1x1(
    w: &Tensor,
    b: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f32,
) -> Result<(Tensor, Tensor)> {
    let op = "batch_norm_fold";
    let &[cout, cin, 1, 1] = w.dims() else {
        return Err(Error::BadShape {
            op,
            shape: w.shape().clone(),
            expected: "a 1×1 kernel (Cout, Cin, 1, 1)".into(),
        });
    };
    for t in [b, gamma, beta, running_mean, running_var] {
        if t.dims() != [cout] {
            return Err(Error::Shape {
                op,
                lhs: w.shape().clone(),
                rhs: t.shape().clone(),
            });
        }
    }
    let gpu = w.gpu();
    let stats = Tensor::uninit(gpu, [cout, 2], op)?;
    let per_channel = NormParams {
        c: u32_of(cout),
        inner: u32_of(cin),
        eps,
        ..NormParams::default()
    };
    gpu.launch(
        &Kernel::new(Shader::Norm, "bn_stats_eval"),
        &[running_mean.bind(0), running_var.bind(1), stats.bind(2)],
        &per_channel,
        [u32_of(cout.div_ceil(WG_FINAL)), 1, 1],
    );
    let wf = Tensor::uninit(gpu, w.shape().clone(), op)?;
    let bf = Tensor::uninit(gpu, [cout], op)?;
    super::launch_1d(
        gpu,
        &Kernel::new(Shader::Norm, "bn_fold"),
        &[
            w.bind(0),
            b.bind(1),
            stats.bind(2),
            gamma.bind(3),
            beta.bind(4),
            wf.bind(5),
            bf.bind(6),
        ],
        &per_channel,
        cout * cin,
    );
    Ok((wf, bf))
}

/// Backward of [`batch_norm_train`] / [`batch_norm_eval`]: (dx, dγ, dβ). With
/// `relu_out`, the output y of the fused ReLU, dy is first masked where y = 0 (in the
/// same passes).
// y = γ·x̂ + β, x̂ = (x − mean)·invstd  ⇒  dβ = Σ dy, dγ = Σ dy·x̂, and
//   train (mean, invstd depend on x): dx = γ·invstd·(dy − (dβ + x̂·dγ)/m), m = N·H·W
//   eval (running statistics are constants): dx = γ·invstd·dy
fn batch_norm_backward(
    x: &Tensor,
    gamma: &Tensor,
    stats: &Tensor,
    train: bool,
    relu_out: Option<&Tensor>,
    dy: &Tensor,
    need: [bool; 3],
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let op = "batch_norm_backward";
    let d = check(op, x, &[gamma])?;
    let gpu = x.gpu();
    let params = d.params(d.reduce, 0.0, 0.0, train);
    // Without a ReLU the mask slot holds dy again (read-only, and never read).
    let mask = relu_out.unwrap_or(dy);
    let masked = u32::from(relu_out.is_some());
    if train && d.per_channel(x) {
        // dγ, then dβ where a view may start (the shader's `dbeta_at`).
        let db_at = d.c.next_multiple_of(VIEW_ELEMS);
        let sums = Tensor::uninit(gpu, [db_at + d.c], op)?;
        // Without dx the kernel stops after the sums: one vec4 stands in for it.
        let dx = Tensor::uninit(gpu, if need[0] { x.dims() } else { &[4] }, op)?;
        gpu.launch(
            &Kernel::new(Shader::Norm, "bn_backward_cpu4")
                .with("MASK", masked)
                .with("DX", u32::from(need[0])),
            &[
                x.bind(0),
                dy.bind(1),
                stats.bind(2),
                gamma.bind(3),
                mask.bind(4),
                sums.bind(5),
                dx.bind(6),
            ],
            &params,
            d.channel_grid(),
        );
        let dgamma = need[1].then(|| sums.slice(0, [d.c])).transpose()?;
        let dbeta = need[2].then(|| sums.slice(db_at, [d.c])).transpose()?;
        return Ok((need[0].then_some(dx), dgamma, dbeta));
    }
    // The input gradient in training mode needs both sums, as do dγ and dβ.
    let sums = if need[1] || need[2] || (train && need[0]) {
        let partial = Tensor::uninit(gpu, [d.c, d.parts(), 2], op)?;
        gpu.launch(
            &d.kernel("bn_grad_partial", "bn_grad_partial4")
                .with("MASK", masked),
            &[
                x.bind(0),
                dy.bind(1),
                stats.bind(2),
                partial.bind(3),
                mask.bind(4),
            ],
            &params,
            d.grid(d.reduce),
        );
        let dgamma = Tensor::uninit(gpu, [d.c], op)?;
        let dbeta = Tensor::uninit(gpu, [d.c], op)?;
        gpu.launch(
            &Kernel::new(Shader::Norm, "bn_grad_final"),
            &[partial.bind(0), dgamma.bind(1), dbeta.bind(2)],
            &params,
            d.final_grid(),
        );
        Some((dgamma, dbeta))
    } else {
        None
    };
    let dx = if need[0] {
        let dx = Tensor::uninit(gpu, x.shape().clone(), op)?;
        // In eval mode without dγ, dβ the kernel ignores slots 4 and 5 (a `select` on
        // the mode, so even NaN there cannot leak); γ stands in for them.
        let (dg, db) = sums.as_ref().map_or((gamma, gamma), |(g, b)| (g, b));
        gpu.launch(
            &d.kernel("bn_backward_input", "bn_backward_input4")
                .with("MASK", masked),
            &[
                x.bind(0),
                dy.bind(1),
                stats.bind(2),
                gamma.bind(3),
                dg.bind(4),
                db.bind(5),
                dx.bind(6),
                mask.bind(7),
            ],
            &d.params(d.map, 0.0, 0.0, train),
            d.grid(d.map),
        );
        Some(dx)
    } else {
        None
    };
    let (dgamma, dbeta) = match sums {
        Some((g, b)) => (need[1].then_some(g), need[2].then_some(b)),
        None => (None, None),
    };
    Ok((dx, dgamma, dbeta))
}

/// Batch norm's backward keeps x, γ and the stats (C, 2) = [mean, invstd] the forward
/// normalised with; in training mode the statistics depend on x, in eval mode they do not.
/// With a fused ReLU it also keeps the output y: y = max(0, z) passes dy where y > 0,
/// which is where z > 0, and y's signs are the ReLU's decisions.
struct BatchNormGrad {
    x: Tensor,
    gamma: Tensor,
    stats: Tensor,
    train: bool,
    relu_out: Option<Tensor>,
}

impl Backward for BatchNormGrad {
    fn backward(&self, dy: &Tensor, _: &[Input], need: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let want = [need[0], need[1], need[2]];
        let (dx, dg, db) = batch_norm_backward(
            &self.x,
            &self.gamma,
            &self.stats,
            self.train,
            self.relu_out.as_ref(),
            dy,
            want,
        )?;
        Ok(vec![dx, dg, db])
    }

    fn piecewise(&self) -> Option<Piecewise> {
        self.relu_out.clone().map(Piecewise::Relu)
    }
}

pub mod reference {
    //! The f64 reference of this module's kernels, forward and backward: the textbook
    //! loop that the tests hold the WGSL entry points to (and the f64 model is built
    //! from).
    //!
    //! Batch normalisation over (N, H, W) per channel, forward and backward, in f64.
    //!
    //! x is (N, C, P) with P = H·W; γ, β and the running statistics are (C). Training mode
    //! normalises with the batch mean and the biased batch variance and updates the running
    //! statistics with that same biased variance (Keras; see `ops::norm`).

    /// Per-channel (mean, biased variance) over (N, P).
    pub fn batch_stats(x: &[f64], n: usize, c: usize, p: usize) -> (Vec<f64>, Vec<f64>) {
        let m = (n * p) as f64;
        let mut mean = vec![0.0; c];
        let mut var = vec![0.0; c];
        for ch in 0..c {
            let plane = |i: usize| &x[(i * c + ch) * p..(i * c + ch + 1) * p];
            mean[ch] = (0..n).flat_map(plane).sum::<f64>() / m;
            var[ch] = (0..n)
                .flat_map(plane)
                .map(|v| (v - mean[ch]).powi(2))
                .sum::<f64>()
                / m;
        }
        (mean, var)
    }

    /// y = γ·(x − mean)/√(var + eps) + β with the given per-channel statistics.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm_apply(
        x: &[f64],
        gamma: &[f64],
        beta: &[f64],
        mean: &[f64],
        var: &[f64],
        n: usize,
        c: usize,
        p: usize,
        eps: f64,
    ) -> Vec<f64> {
        let mut y = vec![0.0; x.len()];
        for i in 0..n {
            for ch in 0..c {
                let invstd = 1.0 / (var[ch] + eps).sqrt();
                for q in 0..p {
                    let k = (i * c + ch) * p + q;
                    y[k] = gamma[ch] * (x[k] - mean[ch]) * invstd + beta[ch];
                }
            }
        }
        y
    }

    /// Training mode: (y, new running mean, new running variance), with
    /// new = momentum·running + (1 − momentum)·batch.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm_train(
        x: &[f64],
        gamma: &[f64],
        beta: &[f64],
        running_mean: &[f64],
        running_var: &[f64],
        n: usize,
        c: usize,
        p: usize,
        momentum: f64,
        eps: f64,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (mean, var) = batch_stats(x, n, c, p);
        let y = batch_norm_apply(x, gamma, beta, &mean, &var, n, c, p, eps);
        let blend = |old: &[f64], new: &[f64]| -> Vec<f64> {
            old.iter()
                .zip(new)
                .map(|(o, b)| momentum * o + (1.0 - momentum) * b)
                .collect()
        };
        (y, blend(running_mean, &mean), blend(running_var, &var))
    }

    /// Backward of [`batch_norm_train`]'s y: (dx, dγ, dβ).
    /// dx = γ·invstd·(dy − (Σdy + x̂·Σ dy·x̂)/m), dγ = Σ dy·x̂, dβ = Σ dy.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm_train_backward(
        x: &[f64],
        gamma: &[f64],
        dy: &[f64],
        n: usize,
        c: usize,
        p: usize,
        eps: f64,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (mean, var) = batch_stats(x, n, c, p);
        let m = (n * p) as f64;
        let mut dx = vec![0.0; x.len()];
        let mut dgamma = vec![0.0; c];
        let mut dbeta = vec![0.0; c];
        for ch in 0..c {
            let invstd = 1.0 / (var[ch] + eps).sqrt();
            let idx = |i: usize, q: usize| (i * c + ch) * p + q;
            for i in 0..n {
                for q in 0..p {
                    let k = idx(i, q);
                    dbeta[ch] += dy[k];
                    dgamma[ch] += dy[k] * (x[k] - mean[ch]) * invstd;
                }
            }
            for i in 0..n {
                for q in 0..p {
                    let k = idx(i, q);
                    let xh = (x[k] - mean[ch]) * invstd;
                    dx[k] = gamma[ch] * invstd * (dy[k] - (dbeta[ch] + xh * dgamma[ch]) / m);
                }
            }
        }
        (dx, dgamma, dbeta)
    }

    /// Eval mode: normalise with the running statistics.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm_eval(
        x: &[f64],
        gamma: &[f64],
        beta: &[f64],
        running_mean: &[f64],
        running_var: &[f64],
        n: usize,
        c: usize,
        p: usize,
        eps: f64,
    ) -> Vec<f64> {
        batch_norm_apply(x, gamma, beta, running_mean, running_var, n, c, p, eps)
    }

    /// Backward of [`batch_norm_eval`], the affine map's: (dx, dγ, dβ).
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm_eval_backward(
        x: &[f64],
        gamma: &[f64],
        running_mean: &[f64],
        running_var: &[f64],
        dy: &[f64],
        n: usize,
        c: usize,
        p: usize,
        eps: f64,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut dx = vec![0.0; x.len()];
        let mut dgamma = vec![0.0; c];
        let mut dbeta = vec![0.0; c];
        for i in 0..n {
            for ch in 0..c {
                let invstd = 1.0 / (running_var[ch] + eps).sqrt();
                for q in 0..p {
                    let k = (i * c + ch) * p + q;
                    dx[k] = gamma[ch] * invstd * dy[k];
                    dgamma[ch] += dy[k] * (x[k] - running_mean[ch]) * invstd;
                    dbeta[ch] += dy[k];
                }
            }
        }
        (dx, dgamma, dbeta)
    }
}

#[cfg(test)]
mod tests {
    use super::{REDUCE_TILE, Tiling, WG, WG4};

    /// Every (sample, pixel) of a channel lies in exactly one tile.
    fn covers(n: usize, inner: usize, t: Tiling) {
        assert_eq!(t.qspan % WG4, 0);
        assert!(t.nq * t.qspan >= inner && (t.nq - 1) * t.qspan < inner);
        assert!(t.ns * t.spw >= n && (t.ns - 1) * t.spw < n);
    }

    #[test]
    fn large_planes_are_split_and_small_ones_grouped() {
        let big = Tiling::new(8, 256 * 256, REDUCE_TILE, 65_535, WG);
        assert_eq!((big.qspan, big.nq, big.spw, big.ns), (8192, 8, 1, 8));
        covers(8, 256 * 256, big);
        let small = Tiling::new(8, 16 * 16, REDUCE_TILE, 65_535, WG);
        assert_eq!((small.qspan, small.nq, small.spw, small.ns), (256, 1, 8, 1));
        covers(8, 256, small);
        for (n, inner) in [(35, 15), (5, 255), (2, 8827), (3, 1025), (1, 1)] {
            covers(n, inner, Tiling::new(n, inner, REDUCE_TILE, 65_535, WG));
            covers(n, inner, Tiling::new(n, inner, 1024, 65_535, WG));
        }
        // The vec4 kernels: a quarter of the units, workgroups of 64.
        let big4 = Tiling::new(8, 256 * 256 / 4, REDUCE_TILE / 4, 65_535, WG4);
        assert_eq!((big4.qspan, big4.nq, big4.spw, big4.ns), (2048, 8, 1, 8));
        let small4 = Tiling::new(8, 16 * 16 / 4, REDUCE_TILE / 4, 65_535, WG4);
        assert_eq!(
            (small4.qspan, small4.nq, small4.spw, small4.ns),
            (64, 1, 8, 1)
        );
        for (n, units) in [(35, 4), (5, 64), (2, 2116), (1, 1)] {
            covers(
                n,
                units,
                Tiling::new(n, units, REDUCE_TILE / 4, 65_535, WG4),
            );
            covers(n, units, Tiling::new(n, units, 256, 65_535, WG4));
        }
    }

    #[test]
    fn a_plane_wider_than_the_grid_limit_takes_longer_tiles() {
        let t = Tiling::new(1, 1 << 26, REDUCE_TILE, 65_535, WG);
        assert!(t.nq <= 65_535);
        covers(1, 1 << 26, t);
    }
}
