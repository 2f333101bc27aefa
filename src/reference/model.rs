//! The whole network in f64 on the CPU, with its own small reverse-mode tape: the
//! independent computation the GPU model's gradients are checked against.
//!
//! The network is the one definition every backend runs (`Model::run`); this module's
//! backend computes its primitives in training mode with only the references of this
//! module's siblings, and keeps every op's inputs on a [`Graph`] so that the backward can
//! call the references' backward functions in reverse, accumulating gradients where a
//! value is used more than once. Batch norm uses batch statistics and updates nothing: the running
//! statistics never influence a training-mode loss or its gradients.
//!
//! The forward also records the *pattern* of every piecewise-linear op (the sign of each
//! ReLU input, the arg-max of each max-pool window). The loss is smooth in the parameters
//! as long as the pattern does not change, which is what a finite-difference check needs to
//! know: a central difference whose two evaluations see a different pattern than the point
//! itself straddles a kink and says nothing about the derivative.

use crate::error::Result;
use crate::model::Model;
use crate::nn::{Backend, Bn, ParamId, ParamSpec};

use super::conv::{Conv2d, conv2d, conv2d_backward, depthwise_conv2d, depthwise_conv2d_backward};
use super::fft::{spectral_pool, spectral_pool_backward};
use super::loss::{bce_dice, bce_dice_backward};
use super::norm::{batch_norm_apply, batch_norm_train_backward, batch_stats};
use super::pool::{
    max_pool_same, max_pool_same_backward, max_pool_valid, max_pool_valid_backward, upsample2x,
    upsample2x_backward, window_argmax,
};
use super::{
    concat_channels, concat_channels_backward, conv1x1, conv1x1_backward, mul_bcast,
    mul_bcast_backward, relu, relu_backward, sigmoid, sigmoid_backward,
};

/// A value on the [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var(usize);

/// The recorded ops: which values each one read (and the sizes its backward needs).
#[derive(Clone, Debug)]
enum Op {
    /// An input or a parameter.
    Leaf,
    Depthwise {
        x: Var,
        k: Var,
    },
    Conv1x1 {
        x: Var,
        w: Var,
        b: Var,
    },
    Conv2d {
        x: Var,
        w: Var,
        b: Var,
        d: Conv2d,
    },
    BnTrain {
        x: Var,
        gamma: Var,
        beta: Var,
        eps: f64,
    },
    /// `forced`: where its decisions start in the pattern when the graph follows a given
    /// pattern ([`Graph::following`]); None when they are its own (the reference's rule).
    Relu {
        x: Var,
        forced: Option<usize>,
    },
    Sigmoid(Var),
    Add(Var, Var),
    MulBcast(Var, Var),
    Concat(Vec<Var>),
    MaxPoolValid {
        x: Var,
        forced: Option<usize>,
    },
    MaxPoolSame {
        x: Var,
        forced: Option<usize>,
    },
    Upsample(Var),
    SpectralPool {
        x: Var,
        h: usize,
    },
}

struct Node {
    value: Vec<f64>,
    /// NCHW for activations; a parameter keeps its declared shape padded with ones.
    dims: [usize; 4],
    op: Op,
}

/// Values and the ops that made them, in the order they were computed.
#[derive(Default)]
pub struct Graph {
    nodes: Vec<Node>,
    /// The decisions of the piecewise-linear ops, in forward order (see the module doc).
    pattern: Vec<u32>,
    /// Decisions to take instead of its own, when following another computation's pattern.
    forced: Option<Vec<u32>>,
}

/// Gradients of every value on a [`Graph`], from one backward pass.
pub struct Backward {
    grads: Vec<Option<Vec<f64>>>,
    /// For a parameter of a conv or a BN: per element, the sum of the absolute values of
    /// the terms its gradient is the signed sum of (Σ|∂L/∂y|·|x| for a weight, Σ|∂L/∂y|
    /// for a bias or β, Σ|∂L/∂y·x̂| for γ). A gradient much smaller than its mass has
    /// cancelled, and its round-off in f32 is a fraction of the mass, not of itself.
    mass: Vec<Option<Vec<f64>>>,
}

/// The pattern entries of a ReLU of `x`: 1 where x > 0 (where it passes its gradient).
pub fn relu_pattern(x: &[f64]) -> Vec<u32> {
    x.iter().map(|&v| u32::from(v > 0.0)).collect()
}

/// The pattern entries of a 2×2 max pool of `x` (dims NCHW) at `stride` (2: valid, 1:
/// same): per output, the plane index of the element its window picks.
pub fn pool_pattern(x: &[f64], [n, c, h, w]: [usize; 4], stride: usize) -> Vec<u32> {
    let (ho, wo) = (h / stride, w / stride);
    let mut picks = Vec::with_capacity(n * c * ho * wo);
    for plane in x.chunks(h * w) {
        for i in 0..ho {
            for j in 0..wo {
                picks.push(window_argmax(plane, w, h, stride * i, stride * j) as u32);
            }
        }
    }
    picks
}

fn accumulate(slot: &mut Option<Vec<f64>>, g: Vec<f64>) {
    match slot {
        Some(acc) => {
            debug_assert_eq!(acc.len(), g.len());
            acc.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
        }
        None => *slot = Some(g),
    }
}

impl Graph {
    fn push(&mut self, value: Vec<f64>, dims: [usize; 4], op: Op) -> Var {
        debug_assert_eq!(value.len(), dims.iter().product::<usize>());
        self.nodes.push(Node { value, dims, op });
        Var(self.nodes.len() - 1)
    }

    pub fn value(&self, v: Var) -> &[f64] {
        &self.nodes[v.0].value
    }

    pub fn dims(&self, v: Var) -> [usize; 4] {
        self.nodes[v.0].dims
    }

    /// The decisions of every ReLU and max pool so far, in order.
    pub fn pattern(&self) -> &[u32] {
        &self.pattern
    }

    /// A graph whose ReLUs and max pools take the decisions of `pattern` (in the encoding
    /// of [`Graph::pattern`]) instead of their own: it computes the piece of the loss that
    /// another computation, e.g. the f32 GPU model, is on. Where both agree this changes
    /// nothing; where an input lies within round-off of a kink, the value on the other
    /// side of it is continued linearly.
    pub fn following(pattern: Vec<u32>) -> Self {
        Self {
            forced: Some(pattern),
            ..Self::default()
        }
    }

    /// The next `len` forced decisions, appended to the pattern; their offset in it.
    fn take_forced(&mut self, len: usize) -> Option<usize> {
        let forced = self.forced.as_ref()?;
        let at = self.pattern.len();
        assert!(
            forced.len() >= at + len,
            "the pattern to follow ends after {} decisions; the graph needs {}",
            forced.len(),
            at + len
        );
        self.pattern.extend_from_slice(&forced[at..at + len]);
        Some(at)
    }

    /// Whether a graph that follows a pattern used all of it.
    pub fn followed_whole_pattern(&self) -> bool {
        self.forced
            .as_ref()
            .is_none_or(|f| f.len() == self.pattern.len())
    }

    /// A max pool (2×2 windows at `stride`, clipped at the border) taking the forced
    /// window picks at `at`: y = x[pick], dx[pick] += dy.
    fn pool_forced(&self, x: Var, stride: usize, at: usize) -> (Vec<f64>, [usize; 4]) {
        let [n, c, h, w] = self.dims(x);
        let (ho, wo) = (h / stride, w / stride);
        let picks = &self.pattern[at..at + n * c * ho * wo];
        let xv = self.value(x);
        let y = picks
            .iter()
            .enumerate()
            .map(|(o, &p)| xv[o / (ho * wo) * h * w + p as usize])
            .collect();
        (y, [n, c, ho, wo])
    }

    fn pool_forced_backward(&self, x: Var, dy: &[f64], at: usize) -> Vec<f64> {
        let [n, c, h, w] = self.dims(x);
        let plane_out = dy.len() / (n * c);
        let mut dx = vec![0.0; n * c * h * w];
        for (o, (&g, &p)) in dy.iter().zip(&self.pattern[at..]).enumerate() {
            dx[o / plane_out * h * w + p as usize] += g;
        }
        dx
    }

    /// An input or parameter of the given shape (at most four dimensions).
    pub fn leaf(&mut self, value: Vec<f64>, shape: &[usize]) -> Var {
        assert!(shape.len() <= 4, "leaf of shape {shape:?}");
        let mut dims = [1; 4];
        dims[..shape.len()].copy_from_slice(shape);
        self.push(value, dims, Op::Leaf)
    }

    /// Depthwise K×K 'same' conv, no bias: x (N, C, H, W), k (C, 1, K, K).
    pub fn depthwise(&mut self, x: Var, k: Var) -> Var {
        let [n, c, h, w] = self.dims(x);
        let ks = self.dims(k)[2];
        assert_eq!(self.dims(k), [c, 1, ks, ks], "depthwise kernel");
        let y = depthwise_conv2d(self.value(x), self.value(k), n, c, h, w, ks);
        self.push(y, [n, c, h, w], Op::Depthwise { x, k })
    }

    /// 1×1 conv with bias: x (N, Cin, H, W), w (Cout, Cin, 1, 1), b (Cout).
    pub fn conv1x1(&mut self, x: Var, w: Var, b: Var) -> Var {
        let [n, cin, h, wd] = self.dims(x);
        let cout = self.dims(w)[0];
        assert_eq!(self.dims(w), [cout, cin, 1, 1], "pointwise kernel");
        let y = conv1x1(
            self.value(x),
            self.value(w),
            Some(self.value(b)),
            n,
            cin,
            cout,
            h * wd,
        );
        self.push(y, [n, cout, h, wd], Op::Conv1x1 { x, w, b })
    }

    /// Dense conv with bias: x (N, Cin, H, W), w (Cout, Cin, kh, kw), b (Cout).
    pub fn conv2d(&mut self, x: Var, w: Var, b: Var, stride: usize, pad: usize) -> Var {
        let [n, cin, h, wd] = self.dims(x);
        let [cout, wcin, kh, kw] = self.dims(w);
        assert_eq!(
            wcin,
            cin,
            "conv2d kernel {:?} on input {:?}",
            self.dims(w),
            self.dims(x)
        );
        let d = Conv2d {
            n,
            cin,
            cout,
            h,
            w: wd,
            kh,
            kw,
            stride,
            pad,
        };
        let (ho, wo) = d.out_hw();
        let y = conv2d(self.value(x), self.value(w), Some(self.value(b)), d);
        self.push(y, [n, cout, ho, wo], Op::Conv2d { x, w, b, d })
    }

    /// Training-mode batch norm with batch statistics (biased variance); no running
    /// statistics are read or written.
    pub fn bn_train(&mut self, x: Var, gamma: Var, beta: Var, eps: f64) -> Var {
        let [n, c, h, w] = self.dims(x);
        let (mean, var) = batch_stats(self.value(x), n, c, h * w);
        let y = batch_norm_apply(
            self.value(x),
            self.value(gamma),
            self.value(beta),
            &mean,
            &var,
            n,
            c,
            h * w,
            eps,
        );
        self.push(
            y,
            [n, c, h, w],
            Op::BnTrain {
                x,
                gamma,
                beta,
                eps,
            },
        )
    }

    pub fn relu(&mut self, x: Var) -> Var {
        let len = self.value(x).len();
        if let Some(at) = self.take_forced(len) {
            let y = self
                .value(x)
                .iter()
                .zip(&self.pattern[at..])
                .map(|(&v, &s)| if s == 1 { v } else { 0.0 })
                .collect();
            return self.push(
                y,
                self.dims(x),
                Op::Relu {
                    x,
                    forced: Some(at),
                },
            );
        }
        let sign = relu_pattern(self.value(x));
        self.pattern.extend(sign);
        let y = relu(self.value(x));
        self.push(y, self.dims(x), Op::Relu { x, forced: None })
    }

    pub fn sigmoid(&mut self, x: Var) -> Var {
        let y = sigmoid(self.value(x));
        self.push(y, self.dims(x), Op::Sigmoid(x))
    }

    pub fn add(&mut self, a: Var, b: Var) -> Var {
        assert_eq!(self.dims(a), self.dims(b), "add");
        let y = super::add(self.value(a), self.value(b));
        self.push(y, self.dims(a), Op::Add(a, b))
    }

    /// a (N, C, H, W) ⊙ b (N, 1, H, W).
    pub fn mul_bcast(&mut self, a: Var, b: Var) -> Var {
        let [n, c, h, w] = self.dims(a);
        assert_eq!(self.dims(b), [n, 1, h, w], "mul_bcast");
        let y = mul_bcast(self.value(a), self.value(b), n, c, h * w);
        self.push(y, [n, c, h, w], Op::MulBcast(a, b))
    }

    /// Concatenation along channels of maps of equal N, H, W.
    pub fn concat(&mut self, xs: &[Var]) -> Var {
        let [n, _, h, w] = self.dims(xs[0]);
        let channels: Vec<usize> = xs
            .iter()
            .map(|&x| {
                let [xn, c, xh, xw] = self.dims(x);
                assert_eq!((xn, xh, xw), (n, h, w), "concat");
                c
            })
            .collect();
        let values: Vec<&[f64]> = xs.iter().map(|&x| self.value(x)).collect();
        let y = concat_channels(&values, &channels, n, h * w);
        let total = channels.iter().sum();
        self.push(y, [n, total, h, w], Op::Concat(xs.to_vec()))
    }

    fn record_pool_pattern(&mut self, x: Var, stride: usize) {
        let picks = pool_pattern(self.value(x), self.dims(x), stride);
        self.pattern.extend(picks);
    }

    pub fn max_pool_valid(&mut self, x: Var) -> Var {
        let [n, c, h, w] = self.dims(x);
        if let Some(at) = self.take_forced(n * c * (h / 2) * (w / 2)) {
            let (y, dims) = self.pool_forced(x, 2, at);
            return self.push(
                y,
                dims,
                Op::MaxPoolValid {
                    x,
                    forced: Some(at),
                },
            );
        }
        self.record_pool_pattern(x, 2);
        let y = max_pool_valid(self.value(x), n * c, h, w);
        self.push(
            y,
            [n, c, h / 2, w / 2],
            Op::MaxPoolValid { x, forced: None },
        )
    }

    pub fn max_pool_same(&mut self, x: Var) -> Var {
        let [n, c, h, w] = self.dims(x);
        if let Some(at) = self.take_forced(n * c * h * w) {
            let (y, dims) = self.pool_forced(x, 1, at);
            return self.push(
                y,
                dims,
                Op::MaxPoolSame {
                    x,
                    forced: Some(at),
                },
            );
        }
        self.record_pool_pattern(x, 1);
        let y = max_pool_same(self.value(x), n * c, h, w);
        self.push(y, [n, c, h, w], Op::MaxPoolSame { x, forced: None })
    }

    pub fn upsample2x(&mut self, x: Var) -> Var {
        let [n, c, h, w] = self.dims(x);
        let y = upsample2x(self.value(x), n * c, h, w);
        self.push(y, [n, c, 2 * h, 2 * w], Op::Upsample(x))
    }

    /// Spectral pooling of square maps (N, C, M, M) → (N, C, h, h), the dense A·x·Aᵀ form.
    pub fn spectral_pool(&mut self, x: Var, h: usize) -> Var {
        let [n, c, m, w] = self.dims(x);
        assert_eq!(m, w, "spectral pooling needs square maps");
        let y = spectral_pool(self.value(x), n * c, m, h);
        self.push(y, [n, c, h, h], Op::SpectralPool { x, h })
    }

    /// Back-propagate `seed` = ∂L/∂out through every recorded op, newest first.
    pub fn backward(&self, out: Var, seed: Vec<f64>) -> Backward {
        let len = self.nodes.len();
        let mut grads: Vec<Option<Vec<f64>>> = vec![None; len];
        let mut mass: Vec<Option<Vec<f64>>> = vec![None; len];
        let abs = |v: &[f64]| -> Vec<f64> { v.iter().map(|x| x.abs()).collect() };
        assert_eq!(
            seed.len(),
            self.value(out).len(),
            "seed of the output's size"
        );
        grads[out.0] = Some(seed);
        for i in (0..len).rev() {
            let node = &self.nodes[i];
            if matches!(node.op, Op::Leaf) {
                continue;
            }
            // An op's output gradient is complete once every later op has run.
            let Some(dy) = grads[i].take() else { continue };
            let [n, c, h, w] = node.dims;
            let v = |x: Var| self.value(x);
            let mut send = |x: Var, g: Vec<f64>| accumulate(&mut grads[x.0], g);
            match &node.op {
                Op::Leaf => unreachable!(),
                &Op::Depthwise { x, k } => {
                    let ks = self.dims(k)[2];
                    let (dx, dk) = depthwise_conv2d_backward(v(x), v(k), &dy, n, c, h, w, ks);
                    send(x, dx);
                    send(k, dk);
                    let (_, mk) =
                        depthwise_conv2d_backward(&abs(v(x)), v(k), &abs(&dy), n, c, h, w, ks);
                    accumulate(&mut mass[k.0], mk);
                }
                &Op::Conv1x1 { x, w: wt, b } => {
                    let cin = self.dims(x)[1];
                    let (dx, dw, db) = conv1x1_backward(v(x), v(wt), &dy, n, cin, c, h * w);
                    send(x, dx);
                    send(wt, dw);
                    send(b, db);
                    let (_, mw, mb) =
                        conv1x1_backward(&abs(v(x)), v(wt), &abs(&dy), n, cin, c, h * w);
                    accumulate(&mut mass[wt.0], mw);
                    accumulate(&mut mass[b.0], mb);
                }
                &Op::Conv2d { x, w: wt, b, d } => {
                    let (dx, dw, db) = conv2d_backward(v(x), v(wt), &dy, d);
                    send(x, dx);
                    send(wt, dw);
                    send(b, db);
                    let (_, mw, mb) = conv2d_backward(&abs(v(x)), v(wt), &abs(&dy), d);
                    accumulate(&mut mass[wt.0], mw);
                    accumulate(&mut mass[b.0], mb);
                }
                &Op::BnTrain {
                    x,
                    gamma,
                    beta,
                    eps,
                } => {
                    let (dx, dg, db) =
                        batch_norm_train_backward(v(x), v(gamma), &dy, n, c, h * w, eps);
                    send(x, dx);
                    send(gamma, dg);
                    send(beta, db);
                    let (mg, mb) = bn_mass(v(x), &dy, n, c, h * w, eps);
                    accumulate(&mut mass[gamma.0], mg);
                    accumulate(&mut mass[beta.0], mb);
                }
                &Op::Relu { x, forced: None } => send(x, relu_backward(v(x), &dy)),
                &Op::Relu {
                    x,
                    forced: Some(at),
                } => {
                    let s = &self.pattern[at..at + dy.len()];
                    send(
                        x,
                        dy.iter()
                            .zip(s)
                            .map(|(&g, &s)| if s == 1 { g } else { 0.0 })
                            .collect(),
                    )
                }
                &Op::Sigmoid(x) => send(x, sigmoid_backward(&node.value, &dy)),
                &Op::Add(a, b) => {
                    send(a, dy.clone());
                    send(b, dy);
                }
                &Op::MulBcast(a, b) => {
                    let (da, db) = mul_bcast_backward(v(a), v(b), &dy, n, c, h * w);
                    send(a, da);
                    send(b, db);
                }
                Op::Concat(xs) => {
                    let channels: Vec<usize> = xs.iter().map(|&x| self.dims(x)[1]).collect();
                    let parts = concat_channels_backward(&dy, &channels, n, h * w);
                    for (&x, g) in xs.iter().zip(parts) {
                        send(x, g);
                    }
                }
                &Op::MaxPoolValid { x, forced: None } => {
                    let [_, _, xh, xw] = self.dims(x);
                    send(x, max_pool_valid_backward(v(x), &dy, n * c, xh, xw));
                }
                &Op::MaxPoolSame { x, forced: None } => {
                    send(x, max_pool_same_backward(v(x), &dy, n * c, h, w))
                }
                &Op::MaxPoolValid {
                    x,
                    forced: Some(at),
                }
                | &Op::MaxPoolSame {
                    x,
                    forced: Some(at),
                } => send(x, self.pool_forced_backward(x, &dy, at)),
                &Op::Upsample(x) => {
                    let [_, _, xh, xw] = self.dims(x);
                    send(x, upsample2x_backward(&dy, n * c, xh, xw));
                }
                &Op::SpectralPool { x, h: hh } => {
                    let m = self.dims(x)[2];
                    send(x, spectral_pool_backward(&dy, n * c, m, hh));
                }
            }
        }
        Backward { grads, mass }
    }
}

/// The masses of BN's γ and β gradients: per channel Σ|dy·x̂| and Σ|dy| over (N, P).
fn bn_mass(x: &[f64], dy: &[f64], n: usize, c: usize, p: usize, eps: f64) -> (Vec<f64>, Vec<f64>) {
    let (mean, var) = batch_stats(x, n, c, p);
    let (mut mg, mut mb) = (vec![0.0; c], vec![0.0; c]);
    for i in 0..n {
        for ch in 0..c {
            let invstd = 1.0 / (var[ch] + eps).sqrt();
            for q in 0..p {
                let k = (i * c + ch) * p + q;
                mg[ch] += (dy[k] * (x[k] - mean[ch]) * invstd).abs();
                mb[ch] += dy[k].abs();
            }
        }
    }
    (mg, mb)
}

/// The f64 backend: the network's primitives on a [`Graph`], parameter ids becoming
/// leaves (once each, so that a parameter's gradient gathers all its uses). Batch norm is
/// always in training mode with batch statistics.
struct Builder<'a> {
    g: Graph,
    spec: &'a ParamSpec,
    values: &'a [Vec<f64>],
    vars: Vec<Option<Var>>,
}

impl Backend for Builder<'_> {
    type T = Var;

    fn param(&mut self, id: ParamId) -> Result<Var> {
        if let Some(v) = self.vars[id.0] {
            return Ok(v);
        }
        let v = self
            .g
            .leaf(self.values[id.0].clone(), &self.spec.get(id).shape);
        self.vars[id.0] = Some(v);
        Ok(v)
    }

    fn dims(&self, x: &Var) -> [usize; 4] {
        self.g.dims(*x)
    }

    fn depthwise(&mut self, x: &Var, k: &Var) -> Result<Var> {
        Ok(self.g.depthwise(*x, *k))
    }

    fn conv1x1(&mut self, x: &Var, w: &Var, b: &Var) -> Result<Var> {
        Ok(self.g.conv1x1(*x, *w, *b))
    }

    fn conv2d(&mut self, x: &Var, w: &Var, b: &Var, stride: usize, pad: usize) -> Result<Var> {
        Ok(self.g.conv2d(*x, *w, *b, stride, pad))
    }

    fn batch_norm(&mut self, x: &Var, l: &Bn) -> Result<Var> {
        let (g, b) = (self.param(l.gamma)?, self.param(l.beta)?);
        Ok(self.g.bn_train(*x, g, b, f64::from(Bn::EPS)))
    }

    fn relu(&mut self, x: &Var) -> Result<Var> {
        Ok(self.g.relu(*x))
    }

    fn sigmoid(&mut self, x: &Var) -> Result<Var> {
        Ok(self.g.sigmoid(*x))
    }

    fn add(&mut self, a: &Var, b: &Var) -> Result<Var> {
        Ok(self.g.add(*a, *b))
    }

    fn mul_bcast(&mut self, a: &Var, b: &Var) -> Result<Var> {
        Ok(self.g.mul_bcast(*a, *b))
    }

    fn concat(&mut self, xs: &[&Var]) -> Result<Var> {
        let xs: Vec<Var> = xs.iter().map(|&&x| x).collect();
        Ok(self.g.concat(&xs))
    }

    fn max_pool_valid(&mut self, x: &Var) -> Result<Var> {
        Ok(self.g.max_pool_valid(*x))
    }

    fn max_pool_same(&mut self, x: &Var) -> Result<Var> {
        Ok(self.g.max_pool_same(*x))
    }

    fn upsample2x(&mut self, x: &Var) -> Result<Var> {
        Ok(self.g.upsample2x(*x))
    }

    fn spectral_pool(&mut self, x: &Var, h: usize) -> Result<Var> {
        Ok(self.g.spectral_pool(*x, h))
    }
}

/// One training-mode evaluation of the model on the CPU.
pub struct Evaluation {
    /// (N, 1, S, S).
    pub logits: Vec<f64>,
    /// The batch-mean BCE-Dice loss of the logits against the mask.
    pub loss: f64,
    /// Every ReLU sign and max-pool arg-max, in forward order: two evaluations with equal
    /// patterns lie on the same smooth piece of the loss.
    pub pattern: Vec<u32>,
}

/// An evaluation and the gradients of its loss.
pub struct Gradients {
    pub eval: Evaluation,
    /// ∂loss/∂θ by `ParamId` index; `None` for the BN running statistics (not read in
    /// training mode).
    pub grads: Vec<Option<Vec<f64>>>,
    /// By `ParamId` index, the mass of each gradient element: the sum of the absolute
    /// values of the terms it sums (see [`Backward`]); `None` for running statistics.
    pub mass: Vec<Option<Vec<f64>>>,
}

fn build<'a>(
    model: &Model,
    spec: &'a ParamSpec,
    params: &'a [Vec<f64>],
    x: &[f64],
    follow: Option<&[u32]>,
) -> (Builder<'a>, Var) {
    assert_eq!(
        params.len(),
        spec.params().len(),
        "one value vector per parameter"
    );
    for (info, v) in spec.params().iter().zip(params) {
        assert_eq!(v.len(), info.numel(), "values of {}", info.name);
    }
    let s = model.config.size;
    assert_eq!(x.len() % (s * s), 0, "input of whole {s}×{s} images");
    let n = x.len() / (s * s);
    let mut b = Builder {
        g: follow.map_or_else(Graph::default, |p| Graph::following(p.to_vec())),
        spec,
        values: params,
        vars: vec![None; spec.params().len()],
    };
    let input = b.g.leaf(x.to_vec(), &[n, 1, s, s]);
    let logits = model
        .run(&mut b, &input)
        .expect("the f64 backend's primitives do not fail");
    assert!(
        b.g.followed_whole_pattern(),
        "the pattern to follow has {} decisions, the model makes {}",
        follow.map_or(0, <[u32]>::len),
        b.g.pattern().len()
    );
    (b, logits)
}

/// The training-mode loss of `model` with parameter values `params` (in `ParamSpec`
/// order) on images `x` and masks `mask`, both (N, 1, S, S).
pub fn evaluate(model: &Model, params: &[Vec<f64>], x: &[f64], mask: &[f64]) -> Evaluation {
    let (b, logits) = build(model, &model.spec, params, x, None);
    finish(&b.g, logits, mask).0
}

/// [`evaluate`] on the piece of the loss given by `pattern` (see [`Graph::following`]):
/// a smooth function of the parameters, whose central differences estimate the
/// derivative on that piece however close the point lies to a kink.
pub fn evaluate_following(
    model: &Model,
    params: &[Vec<f64>],
    x: &[f64],
    mask: &[f64],
    pattern: &[u32],
) -> Evaluation {
    let (b, logits) = build(model, &model.spec, params, x, Some(pattern));
    finish(&b.g, logits, mask).0
}

fn finish(g: &Graph, logits: Var, mask: &[f64]) -> (Evaluation, usize, usize) {
    let [n, _, h, w] = g.dims(logits);
    assert_eq!(mask.len(), n * h * w, "mask of the logits' size");
    let z = g.value(logits).to_vec();
    let loss = bce_dice(&z, mask, n, h * w);
    let eval = Evaluation {
        logits: z,
        loss,
        pattern: g.pattern().to_vec(),
    };
    (eval, n, h * w)
}

/// [`evaluate`] plus the gradient of the loss with respect to every trainable parameter.
pub fn gradients(model: &Model, params: &[Vec<f64>], x: &[f64], mask: &[f64]) -> Gradients {
    gradients_on(model, params, x, mask, None)
}

/// [`gradients`] on the piece of the loss given by `pattern` (the decisions of every ReLU
/// and max pool, in the encoding of [`Evaluation::pattern`]) instead of the piece the f64
/// values fall on: see [`Graph::following`]. The returned evaluation's pattern is `pattern`.
pub fn gradients_following(
    model: &Model,
    params: &[Vec<f64>],
    x: &[f64],
    mask: &[f64],
    pattern: &[u32],
) -> Gradients {
    gradients_on(model, params, x, mask, Some(pattern))
}

fn gradients_on(
    model: &Model,
    params: &[Vec<f64>],
    x: &[f64],
    mask: &[f64],
    follow: Option<&[u32]>,
) -> Gradients {
    let (b, logits) = build(model, &model.spec, params, x, follow);
    let (eval, n, p) = finish(&b.g, logits, mask);
    let seed = bce_dice_backward(&eval.logits, mask, n, p, 1.0);
    let mut back = b.g.backward(logits, seed);
    let pick = |slots: &mut Vec<Option<Vec<f64>>>| -> Vec<Option<Vec<f64>>> {
        b.vars
            .iter()
            .map(|v| v.and_then(|v| slots[v.0].take()))
            .collect()
    };
    let grads = pick(&mut back.grads);
    let mass = pick(&mut back.mass);
    Gradients { eval, grads, mass }
}
