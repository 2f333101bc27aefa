//! The forward pass of every variant, from the layers' parameters. In training mode batch
//! norm uses batch statistics and its running statistics are updated in `Params`; in eval
//! mode it uses the running statistics. Recording for autodiff is the caller's choice (a
//! `Tape` around a training step, `no_grad` for inference).

use crate::error::Result;
use crate::nn::layers::{Inception, SepBn};
use crate::nn::{Bn, Conv, Csa, HybridPool, Params, Plain, Ric, SepConv};
use crate::ops;
use crate::tensor::Tensor;

use super::{Block, Model};

/// Whether batch norm uses (and updates) batch statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// Parameters plus the mode: what every layer's forward needs.
pub struct Ctx<'a> {
    pub params: &'a mut Params,
    pub mode: Mode,
    /// [`Model::bn_momentum`].
    pub momentum: f32,
}

impl Ctx<'_> {
    fn p(&self, id: crate::nn::ParamId) -> Tensor {
        self.params.get(id).clone()
    }

    fn sep(&self, l: &SepConv, x: &Tensor) -> Result<Tensor> {
        let d = ops::depthwise_conv2d(x, &self.p(l.depthwise))?;
        ops::conv1x1(&d, &self.p(l.pointwise), Some(&self.p(l.bias)))
    }

    fn conv(&self, l: &Conv, x: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
        ops::conv2d(x, &self.p(l.weight), Some(&self.p(l.bias)), stride, pad)
    }

    fn bn(&mut self, l: &Bn, x: &Tensor) -> Result<Tensor> {
        let (g, b) = (self.p(l.gamma), self.p(l.beta));
        let (rm, rv) = (self.p(l.running_mean), self.p(l.running_var));
        match self.mode {
            Mode::Train => {
                let (y, m, v) = ops::batch_norm_train(x, &g, &b, &rm, &rv, self.momentum, Bn::EPS)?;
                self.params.set(l.running_mean, m);
                self.params.set(l.running_var, v);
                Ok(y)
            }
            Mode::Eval => ops::batch_norm_eval(x, &g, &b, &rm, &rv, Bn::EPS),
        }
    }

    fn sep_bn_relu(&mut self, l: &SepBn, x: &Tensor) -> Result<Tensor> {
        let y = self.sep(&l.sep, x)?;
        ops::relu(&self.bn(&l.bn, &y)?)
    }

    /// concat[max pool, ReLU(spectral pool)] → Conv(2C, C, 1); `valid` halves the size.
    fn hybrid_pool(&self, l: &HybridPool, x: &Tensor, valid: bool) -> Result<Tensor> {
        let m = x.dims()[2];
        let (pooled, spectral) = if valid {
            (ops::max_pool_valid(x)?, ops::spectral_pool(x, m / 2)?)
        } else {
            (ops::max_pool_same(x)?, ops::spectral_pool(x, m)?)
        };
        let cat = ops::concat_channels(&[&pooled, &ops::relu(&spectral)?])?;
        self.conv(&l.merge, &cat, 1, 0)
    }

    fn inception(&mut self, l: &Inception, x: &Tensor) -> Result<Tensor> {
        let mut outs = Vec::with_capacity(4);
        for b in &l.branches {
            outs.push(self.sep_bn_relu(b, x)?);
        }
        let hp = self.hybrid_pool(&l.pool, x, false)?;
        outs.push(ops::relu(&self.bn(&l.pool_bn, &hp)?)?);
        let refs: Vec<&Tensor> = outs.iter().collect();
        let cat = ops::concat_channels(&refs)?;
        self.sep(&l.merge, &cat)
    }

    fn ric(&mut self, l: &Ric, x: &Tensor) -> Result<Tensor> {
        let a = self.inception(&l.l1, x)?;
        let b = self.inception(&l.l2, &a)?;
        let s = self.sep(&l.shortcut, x)?;
        ops::add(&self.bn(&l.shortcut_bn, &s)?, &b)
    }

    fn plain(&mut self, l: &Plain, x: &Tensor) -> Result<Tensor> {
        let a = self.sep_bn_relu(&l.a, x)?;
        let b = self.sep_bn_relu(&l.b, &a)?;
        let s = self.conv(&l.shortcut, x, 1, 0)?;
        ops::add(&self.bn(&l.shortcut_bn, &s)?, &b)
    }

    fn block(&mut self, l: &Block, x: &Tensor) -> Result<Tensor> {
        match l {
            Block::Ric(r) => self.ric(r, x),
            Block::Plain(p) => self.plain(p, x),
        }
    }

    fn gating(&mut self, l: &crate::nn::Gating, x: &Tensor) -> Result<Tensor> {
        let y = self.conv(&l.conv, x, 1, 0)?;
        ops::relu(&self.bn(&l.bn, &y)?)
    }

    /// CSA_i(P, E, D): P and E at resolution R, D at R/2 (MODEL.md).
    fn csa(&mut self, l: &Csa, p: &Tensor, e: &Tensor, d: &Tensor) -> Result<Tensor> {
        let gx = self.gating(&l.gate_x, p)?;
        let gy = self.gating(&l.gate_y, e)?;
        let gz = self.gating(&l.gate_z, d)?;
        let tx = self.conv(&l.theta_x, &gx, 2, 0)?;
        let ty = self.conv(&l.theta_y, &gy, 2, 0)?;
        let pz = self.conv(&l.phi_z3, &self.conv(&l.phi_z1, &gz, 1, 0)?, 1, 1)?;
        let sum = ops::add(&ops::add(&tx, &ty)?, &pz)?;
        let alpha = ops::sigmoid(&self.conv(&l.psi, &ops::relu(&sum)?, 1, 0)?)?;
        let alpha = ops::upsample2x(&alpha)?;
        let attended = ops::mul_bcast(&gx, &alpha)?;
        let y = self.conv(&l.out, &attended, 1, 0)?;
        ops::relu(&self.bn(&l.out_bn, &y)?)
    }
}

impl Model {
    /// Logits (N, 1, S, S) of the input (N, 1, S, S); probabilities are their sigmoid.
    pub fn forward(&self, params: &mut Params, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut cx = Ctx {
            params,
            mode,
            momentum: self.bn_momentum,
        };
        // Encoder: e0 on the image, then down-sample and block at each level. `entered[i]`
        // is the map that entered e_i (the image, then the pooled maps): CSA's P.
        let mut enc: Vec<Tensor> = Vec::with_capacity(5);
        let mut entered: Vec<Tensor> = Vec::with_capacity(5);
        entered.push(x.clone());
        enc.push(cx.block(&self.enc[0], x)?);
        for i in 1..5 {
            let prev = &enc[i - 1];
            let p = match &self.down[i - 1] {
                Some(hp) => cx.hybrid_pool(hp, prev, true)?,
                None => ops::max_pool_valid(prev)?,
            };
            enc.push(cx.block(&self.enc[i], &p)?);
            entered.push(p);
        }
        // Decoder, deepest first.
        let mut d = enc[4].clone();
        for i in (0..4).rev() {
            let u = ops::upsample2x(&d)?;
            let skip = match &self.csa[i] {
                Some(csa) => cx.csa(csa, &entered[i], &enc[i], &enc[i + 1])?,
                None => enc[i].clone(),
            };
            let cat = ops::concat_channels(&[&u, &skip])?;
            d = cx.block(&self.dec[i], &cat)?;
        }
        let y = cx.conv(&self.head, &d, 1, 0)?;
        cx.bn(&self.head_bn, &y)
    }
}
