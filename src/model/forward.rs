//! The network's data flow, written once over any [`Backend`]: the GPU runs it for
//! training and inference, the f64 reference for the gradient check, the counting backend
//! for the summary and the memory budget.

use crate::error::Result;
use crate::nn::{Backend, Folds, GpuBackend, Mode, Params};
use crate::tensor::Tensor;

use super::{Block, Model};

impl Block {
    pub fn forward<B: Backend>(&self, b: &mut B, x: &B::T) -> Result<B::T> {
        match self {
            Block::Ric(r) => r.forward(b, x),
            Block::Plain(p) => p.forward(b, x),
        }
    }
}

impl Model {
    /// The logits (N, 1, S, S) of the input (N, 1, S, S) on backend `b`.
    pub fn run<B: Backend>(&self, b: &mut B, x: &B::T) -> Result<B::T> {
        // Encoder: e0 on the image, then down-sample and block at each level. `entered[i]`
        // is the map that entered e_i (the image, then the pooled maps): CSA's P.
        let mut enc: Vec<B::T> = Vec::with_capacity(5);
        let mut entered: Vec<B::T> = Vec::with_capacity(5);
        entered.push(x.clone());
        b.enter("enc0");
        enc.push(self.enc[0].forward(b, x)?);
        for i in 1..5 {
            b.enter(&format!("down{i}"));
            let p = match &self.down[i - 1] {
                Some(hp) => hp.forward(b, &enc[i - 1], true)?,
                None => b.max_pool_valid(&enc[i - 1])?,
            };
            b.enter(&format!("enc{i}"));
            enc.push(self.enc[i].forward(b, &p)?);
            entered.push(p);
        }
        // Decoder, deepest first.
        let mut d = enc[4].clone();
        for i in (0..4).rev() {
            b.enter(&format!("up{i}"));
            let u = b.upsample2x(&d)?;
            let skip = match &self.csa[i] {
                Some(csa) => {
                    b.enter(&format!("dec{i}.csa"));
                    csa.forward(b, &entered[i], &enc[i], &enc[i + 1])?
                }
                None => enc[i].clone(),
            };
            b.enter(&format!("dec{i}"));
            let cat = b.concat(&[&u, &skip])?;
            d = self.dec[i].forward(b, &cat)?;
        }
        b.enter("head");
        b.conv_bn(&self.head, &self.head_bn, &d, false)
    }

    /// Logits (N, 1, S, S) of the input (N, 1, S, S) on the GPU; probabilities are their
    /// sigmoid. In training mode batch norm uses batch statistics and its running
    /// statistics are updated in `params`; in eval mode it uses the running statistics.
    /// Recording for autodiff is the caller's choice (a `Tape` around a training step,
    /// `no_grad` for inference).
    pub fn forward(&self, params: &mut Params, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut gpu = GpuBackend {
            gpu: x.gpu(),
            params,
            mode,
            momentum: self.bn_momentum,
            folds: None,
        };
        self.run(&mut gpu, x)
    }

    /// [`Model::forward`] in eval mode, keeping the weights with batch norm folded in
    /// `folds` for the next call: for a caller whose parameters stay as they are
    /// (inference), which then skips the folding's passes over the weights. Without a
    /// tape only (folding is for inference), as `forward` in eval mode would be.
    pub fn forward_folded(
        &self,
        params: &mut Params,
        x: &Tensor,
        folds: &mut Folds,
    ) -> Result<Tensor> {
        let mut gpu = GpuBackend {
            gpu: x.gpu(),
            params,
            mode: Mode::Eval,
            momentum: self.bn_momentum,
            folds: Some(folds),
        };
        self.run(&mut gpu, x)
    }
}
