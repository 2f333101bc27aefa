//! The primitives RCA-IUnet is written in, as a trait that several backends implement, so
//! that the network is written once ([`crate::nn::layers`], `crate::model`) and run by:
//! - the GPU ([`GpuBackend`]): WGSL kernels, recorded on the autodiff tape while one records;
//! - the f64 CPU reference (`crate::reference::model`): its own tape, so that the whole-model
//!   gradient check stays independent of the GPU code path;
//! - a counting backend (`crate::model::Count`): shapes, FLOPs, bytes and the largest
//!   buffer of a training step, for `rca-gpu summary` and the trainer's batch check.
//!
//! Values are NCHW. Every primitive is one op of the engine (`crate::ops`) with a gradient
//! rule. Fused ops are methods with a default that composes primitives (as burn's backend
//! traits do): a backend overrides one when it has a faster kernel for it, and the others
//! stay correct without one.

use crate::error::Result;
use crate::nn::layers::{Bn, Conv, SepConv};
use crate::nn::params::{ParamId, Params};
use crate::ops;
use crate::tensor::Tensor;

/// Whether batch norm uses (and updates) batch statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// The primitives of the network. `T` is what flows between layers: a GPU tensor, a value
/// on the f64 graph, or a shape.
pub trait Backend {
    type T: Clone;

    /// The value of parameter `id`.
    fn param(&mut self, id: ParamId) -> Result<Self::T>;
    /// (N, C, H, W) of `x`.
    fn dims(&self, x: &Self::T) -> [usize; 4];

    /// Depthwise K×K 'same' convolution, no bias: x (N, C, H, W), k (C, 1, K, K).
    fn depthwise(&mut self, x: &Self::T, k: &Self::T) -> Result<Self::T>;
    /// Pointwise convolution with bias: x (N, Cin, H, W), w (Cout, Cin, 1, 1), b (Cout).
    fn conv1x1(&mut self, x: &Self::T, w: &Self::T, b: &Self::T) -> Result<Self::T>;
    /// Dense convolution with bias: x (N, Cin, H, W), w (Cout, Cin, K, K), b (Cout).
    fn conv2d(
        &mut self,
        x: &Self::T,
        w: &Self::T,
        b: &Self::T,
        stride: usize,
        pad: usize,
    ) -> Result<Self::T>;
    /// Batch norm of `x` with the parameters of `bn` (the backend's mode decides between
    /// batch and running statistics, and whether the running statistics are updated).
    fn batch_norm(&mut self, x: &Self::T, bn: &Bn) -> Result<Self::T>;
    fn relu(&mut self, x: &Self::T) -> Result<Self::T>;
    fn sigmoid(&mut self, x: &Self::T) -> Result<Self::T>;
    fn add(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    /// a (N, C, H, W) ⊙ b (N, 1, H, W).
    fn mul_bcast(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    /// Concatenation along channels of maps of equal N, H, W.
    fn concat(&mut self, xs: &[&Self::T]) -> Result<Self::T>;
    /// 2×2 max pool, stride 2: (N, C, H, W) → (N, C, H/2, W/2).
    fn max_pool_valid(&mut self, x: &Self::T) -> Result<Self::T>;
    /// 2×2 max pool, stride 1, windows clipped at the right and bottom: size kept.
    fn max_pool_same(&mut self, x: &Self::T) -> Result<Self::T>;
    /// Nearest-neighbour ×2: (N, C, H, W) → (N, C, 2H, 2W).
    fn upsample2x(&mut self, x: &Self::T) -> Result<Self::T>;
    /// Spectral pooling of square maps (N, C, M, M) → (N, C, h, h).
    fn spectral_pool(&mut self, x: &Self::T, h: usize) -> Result<Self::T>;
    /// Spectral pooling then a ReLU (the hybrid pools' spectral branch).
    fn spectral_pool_relu(&mut self, x: &Self::T, h: usize) -> Result<Self::T> {
        let y = self.spectral_pool(x, h)?;
        self.relu(&y)
    }

    /// From here on, the ops belong to the block `name` of the network (e.g. `enc2`,
    /// `dec0.csa`): the counting backend makes a summary row of each, a profiler may label
    /// dispatches with it.
    fn enter(&mut self, _name: &str) {}

    // Fused ops: compositions by default.

    /// SepConv: depthwise K×K then pointwise 1×1 with bias.
    fn sep_conv(&mut self, l: &SepConv, x: &Self::T) -> Result<Self::T> {
        let k = self.param(l.depthwise)?;
        let d = self.depthwise(x, &k)?;
        let (w, b) = (self.param(l.pointwise)?, self.param(l.bias)?);
        self.conv1x1(&d, &w, &b)
    }

    /// A dense convolution layer with its bias.
    fn conv(&mut self, l: &Conv, x: &Self::T, stride: usize, pad: usize) -> Result<Self::T> {
        let (w, b) = (self.param(l.weight)?, self.param(l.bias)?);
        self.conv2d(x, &w, &b, stride, pad)
    }

    /// Batch norm then ReLU.
    fn bn_relu(&mut self, x: &Self::T, bn: &Bn) -> Result<Self::T> {
        let y = self.batch_norm(x, bn)?;
        self.relu(&y)
    }

    /// A 1×1 convolution layer (stride 1, no padding) over the channel concatenation of
    /// `xs`: the hybrid pools' merge.
    fn conv_cat(&mut self, l: &Conv, xs: &[&Self::T]) -> Result<Self::T> {
        let cat = self.concat(xs)?;
        self.conv(l, &cat, 1, 0)
    }

    /// SepConv over the channel concatenation of `xs`: the inception blocks' merge.
    fn sep_conv_cat(&mut self, l: &SepConv, xs: &[&Self::T]) -> Result<Self::T> {
        let cat = self.concat(xs)?;
        self.sep_conv(l, &cat)
    }

    /// SepConv, then batch norm, then a ReLU when `relu`.
    fn sep_conv_bn(&mut self, l: &SepConv, bn: &Bn, x: &Self::T, relu: bool) -> Result<Self::T> {
        let y = self.sep_conv(l, x)?;
        self.norm(&y, bn, relu)
    }

    /// A convolution layer at stride 1 without padding (1×1 in the network), then batch
    /// norm, then a ReLU when `relu`.
    fn conv_bn(&mut self, l: &Conv, bn: &Bn, x: &Self::T, relu: bool) -> Result<Self::T> {
        let y = self.conv(l, x, 1, 0)?;
        self.norm(&y, bn, relu)
    }

    /// [`Backend::conv_cat`], then batch norm, then a ReLU when `relu`: the inception
    /// blocks' pool branch.
    fn conv_cat_bn(&mut self, l: &Conv, bn: &Bn, xs: &[&Self::T], relu: bool) -> Result<Self::T> {
        let y = self.conv_cat(l, xs)?;
        self.norm(&y, bn, relu)
    }

    /// Batch norm, with its ReLU when `relu`.
    fn norm(&mut self, x: &Self::T, bn: &Bn, relu: bool) -> Result<Self::T> {
        if relu {
            self.bn_relu(x, bn)
        } else {
            self.batch_norm(x, bn)
        }
    }
}

/// The GPU: every primitive is an op of `crate::ops`, recorded on the tape when one is
/// recording. In training mode batch norm uses batch statistics and writes its updated
/// running statistics into `params`; in eval mode it uses the running statistics.
pub struct GpuBackend<'a> {
    /// The device (a profile labels its dispatches with the block they run in).
    pub gpu: &'a crate::Gpu,
    pub params: &'a mut Params,
    pub mode: Mode,
    /// Weight of the old running statistics in training mode (`Model::bn_momentum`).
    pub momentum: f32,
    /// Where the eval-mode 1×1 products' prepared weights are kept from one forward pass
    /// to the next, for a caller whose parameters do not change in between (inference);
    /// `None` prepares them again on every pass.
    pub folds: Option<&'a mut Folds>,
}

/// The prepared weights of each eval-mode 1×1 product (batch norm folded in where one
/// follows it), by the id of its weight.
pub type Folds = std::collections::HashMap<ParamId, ops::FoldedCat>;

impl GpuBackend<'_> {
    /// Whether batch norm can be folded into the product before it: eval mode (running
    /// statistics, constants) with no tape recording.
    fn folds_bn(&self) -> bool {
        self.mode == Mode::Eval && !crate::autodiff::is_recording()
    }

    /// Whether the 1×1 products keep their prepared weights in `folds`: eval mode, no
    /// tape, and a caller that gave somewhere to keep them.
    fn keeps_folds(&self) -> bool {
        self.folds.is_some() && self.folds_bn()
    }

    /// y = BN(W·diag(scale)·[x_0 | …] + b) (then ReLU) in eval mode, folded (without `l`,
    /// the products alone); the folded weights kept in `folds` under `key` (the weight's
    /// id) when there is one.
    #[allow(clippy::too_many_arguments)]
    fn folded(
        &mut self,
        key: ParamId,
        xs: &[&Tensor],
        scale: Option<&Tensor>,
        (w, b): (&Tensor, &Tensor),
        l: Option<&Bn>,
        relu: bool,
    ) -> Result<Tensor> {
        if let Some(f) = self.folds.as_deref().and_then(|folds| folds.get(&key)) {
            return ops::conv1x1_cat_folded(xs, f, relu);
        }
        let stats = match l {
            Some(l) => {
                let ids = [l.gamma, l.beta, l.running_mean, l.running_var];
                Some(ids.map(|id| self.param(id)))
            }
            None => None,
        };
        let stats = match stats {
            Some([g, be, rm, rv]) => Some([g?, be?, rm?, rv?]),
            None => None,
        };
        let bn = stats.as_ref().map(|[g, be, rm, rv]| [g, be, rm, rv]);
        match self.folds.as_deref_mut() {
            Some(folds) => {
                let f = ops::fold_conv1x1_cat(xs, scale, w, b, bn, Bn::EPS)?;
                let y = ops::conv1x1_cat_folded(xs, &f, relu);
                folds.insert(key, f);
                y
            }
            None => match bn {
                Some(bn) => ops::conv1x1_cat_bn_eval(xs, scale, w, b, bn, Bn::EPS, relu),
                None => ops::conv1x1_cat(xs, scale, w, Some(b)),
            },
        }
    }

    /// Batch norm in the backend's mode, with the ReLU fused when `relu`; in training mode
    /// the updated running statistics go into `params`.
    fn bn(&mut self, x: &Tensor, l: &Bn, relu: bool) -> Result<Tensor> {
        let (g, b) = (self.param(l.gamma)?, self.param(l.beta)?);
        let (rm, rv) = (self.param(l.running_mean)?, self.param(l.running_var)?);
        match self.mode {
            Mode::Train => {
                let train = if relu {
                    ops::batch_norm_train_relu
                } else {
                    ops::batch_norm_train
                };
                let (y, m, v) = train(x, &g, &b, &rm, &rv, self.momentum, Bn::EPS)?;
                self.params.set(l.running_mean, m);
                self.params.set(l.running_var, v);
                Ok(y)
            }
            Mode::Eval if relu => ops::batch_norm_eval_relu(x, &g, &b, &rm, &rv, Bn::EPS),
            Mode::Eval => ops::batch_norm_eval(x, &g, &b, &rm, &rv, Bn::EPS),
        }
    }
}

impl Backend for GpuBackend<'_> {
    type T = Tensor;

    fn param(&mut self, id: ParamId) -> Result<Tensor> {
        Ok(self.params.get(id).clone())
    }

    fn dims(&self, x: &Tensor) -> [usize; 4] {
        let (n, c, h, w) = x.shape().nchw().expect("the network's values are NCHW");
        [n, c, h, w]
    }

    fn depthwise(&mut self, x: &Tensor, k: &Tensor) -> Result<Tensor> {
        ops::depthwise_conv2d(x, k)
    }

    fn conv1x1(&mut self, x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
        ops::conv1x1(x, w, Some(b))
    }

    fn conv2d(
        &mut self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        stride: usize,
        pad: usize,
    ) -> Result<Tensor> {
        ops::conv2d(x, w, Some(b), stride, pad)
    }

    fn batch_norm(&mut self, x: &Tensor, l: &Bn) -> Result<Tensor> {
        self.bn(x, l, false)
    }

    /// One kernel for both (`ops::batch_norm_train_relu` / `batch_norm_eval_relu`).
    fn bn_relu(&mut self, x: &Tensor, l: &Bn) -> Result<Tensor> {
        self.bn(x, l, true)
    }

    fn relu(&mut self, x: &Tensor) -> Result<Tensor> {
        ops::relu(x)
    }

    fn sigmoid(&mut self, x: &Tensor) -> Result<Tensor> {
        ops::sigmoid(x)
    }

    fn add(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        ops::add(a, b)
    }

    fn mul_bcast(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        ops::mul_bcast(a, b)
    }

    fn concat(&mut self, xs: &[&Tensor]) -> Result<Tensor> {
        ops::concat_channels(xs)
    }

    fn max_pool_valid(&mut self, x: &Tensor) -> Result<Tensor> {
        ops::max_pool_valid(x)
    }

    fn max_pool_same(&mut self, x: &Tensor) -> Result<Tensor> {
        ops::max_pool_same(x)
    }

    fn upsample2x(&mut self, x: &Tensor) -> Result<Tensor> {
        ops::upsample2x(x)
    }

    fn spectral_pool(&mut self, x: &Tensor, h: usize) -> Result<Tensor> {
        ops::spectral_pool(x, h)
    }

    /// Without a tape, the ReLU in the pooling's store where it can be.
    fn spectral_pool_relu(&mut self, x: &Tensor, h: usize) -> Result<Tensor> {
        if crate::autodiff::is_recording() {
            return ops::relu(&ops::spectral_pool(x, h)?);
        }
        ops::spectral_pool_relu(x, h)
    }

    fn enter(&mut self, name: &str) {
        self.gpu.set_block(name);
    }

    /// With `folds` (inference), the pointwise product's weights prepared once. A 1×1
    /// depthwise kernel is a per-channel scale: it goes into the pointwise weights
    /// (`ops::conv1x1_cat`), so neither pass makes or reads the scaled map.
    fn sep_conv(&mut self, l: &SepConv, x: &Tensor) -> Result<Tensor> {
        let k = self.param(l.depthwise)?;
        let (w, b) = (self.param(l.pointwise)?, self.param(l.bias)?);
        let scales = k.dims()[2..] == [1, 1];
        let d = match scales {
            true => x.clone(),
            false => ops::depthwise_conv2d(x, &k)?,
        };
        let scale = scales.then_some(&k);
        if self.keeps_folds() {
            return self.folded(l.pointwise, &[&d], scale, (&w, &b), None, false);
        }
        match scale {
            Some(k) => ops::conv1x1_cat(&[&d], Some(k), &w, Some(&b)),
            None => ops::conv1x1(&d, &w, Some(&b)),
        }
    }

    /// With `folds` (inference), a 1×1 layer's weights prepared once.
    fn conv(&mut self, l: &Conv, x: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
        let (w, b) = (self.param(l.weight)?, self.param(l.bias)?);
        if self.keeps_folds() && w.dims()[2..] == [1, 1] && stride == 1 && pad == 0 {
            return self.folded(l.weight, &[x], None, (&w, &b), None, false);
        }
        ops::conv2d(x, &w, Some(&b), stride, pad)
    }

    /// In eval mode with no tape, the batch norm folded into the pointwise product and
    /// the ReLU into its store (`ops::conv1x1_cat_bn_eval`); the depthwise 1×1 becomes a
    /// scale of the weights.
    fn sep_conv_bn(&mut self, l: &SepConv, bn: &Bn, x: &Tensor, relu: bool) -> Result<Tensor> {
        if !self.folds_bn() {
            let y = self.sep_conv(l, x)?;
            return self.bn(&y, bn, relu);
        }
        let k = self.param(l.depthwise)?;
        let (w, b) = (self.param(l.pointwise)?, self.param(l.bias)?);
        if k.dims()[2..] == [1, 1] {
            return self.folded(l.pointwise, &[x], Some(&k), (&w, &b), Some(bn), relu);
        }
        let d = ops::depthwise_conv2d(x, &k)?;
        self.folded(l.pointwise, &[&d], None, (&w, &b), Some(bn), relu)
    }

    /// Folded as [`GpuBackend::sep_conv_bn`] when the kernel is 1×1.
    fn conv_bn(&mut self, l: &Conv, bn: &Bn, x: &Tensor, relu: bool) -> Result<Tensor> {
        let (w, b) = (self.param(l.weight)?, self.param(l.bias)?);
        if self.folds_bn() && w.dims()[2..] == [1, 1] {
            return self.folded(l.weight, &[x], None, (&w, &b), Some(bn), relu);
        }
        let y = ops::conv2d(x, &w, Some(&b), 1, 0)?;
        self.bn(&y, bn, relu)
    }

    /// Folded as [`GpuBackend::sep_conv_bn`] when the kernel is 1×1.
    fn conv_cat_bn(&mut self, l: &Conv, bn: &Bn, xs: &[&Tensor], relu: bool) -> Result<Tensor> {
        let (w, b) = (self.param(l.weight)?, self.param(l.bias)?);
        if self.folds_bn() && w.dims()[2..] == [1, 1] {
            return self.folded(l.weight, xs, None, (&w, &b), Some(bn), relu);
        }
        let y = self.conv_cat(l, xs)?;
        self.bn(&y, bn, relu)
    }

    /// Without the concatenation when the kernel is 1×1: one product per input, added
    /// into the output (`ops::conv1x1_cat`).
    fn conv_cat(&mut self, l: &Conv, xs: &[&Tensor]) -> Result<Tensor> {
        let (w, b) = (self.param(l.weight)?, self.param(l.bias)?);
        if w.dims()[2..] == [1, 1] {
            if self.keeps_folds() {
                return self.folded(l.weight, xs, None, (&w, &b), None, false);
            }
            return ops::conv1x1_cat(xs, None, &w, Some(&b));
        }
        let cat = ops::concat_channels(xs)?;
        ops::conv2d(&cat, &w, Some(&b), 1, 0)
    }

    /// Without the concatenation when the depthwise kernel is 1×1 (a per-channel scale,
    /// which `ops::conv1x1_cat` folds into the pointwise weights).
    fn sep_conv_cat(&mut self, l: &SepConv, xs: &[&Tensor]) -> Result<Tensor> {
        let k = self.param(l.depthwise)?;
        let (w, b) = (self.param(l.pointwise)?, self.param(l.bias)?);
        if k.dims()[2..] == [1, 1] {
            if self.keeps_folds() {
                return self.folded(l.pointwise, xs, Some(&k), (&w, &b), None, false);
            }
            return ops::conv1x1_cat(xs, Some(&k), &w, Some(&b));
        }
        let cat = ops::concat_channels(xs)?;
        let d = ops::depthwise_conv2d(&cat, &k)?;
        ops::conv1x1(&d, &w, Some(&b))
    }
}
