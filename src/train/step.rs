//! One training step — forward, fused BCE-Dice loss, backward, Adam — encoded with no
//! read-back: the loss stays on the GPU until the caller wants to show it.

use crate::autodiff::Tape;
use crate::error::Result;
use crate::model::{Mode, Model};
use crate::nn::Params;
use crate::ops::{self, optim};
use crate::tensor::Tensor;

/// Adam's state for every trainable parameter (MODEL.md: lr 1e-3, β 0.9/0.999, ε 1e-7).
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Updates applied so far (the bias correction's t is step + 1 for the next one).
    pub step: u32,
    /// (m, v) per parameter, `None` for BN running statistics.
    pub moments: Vec<Option<(Tensor, Tensor)>>,
}

impl Adam {
    /// Zero moments for every trainable parameter of `params`.
    pub fn new(params: &Params, lr: f32) -> Result<Self> {
        let moments = params
            .iter()
            .map(|(info, t)| {
                if info.kind.trainable() {
                    Ok(Some((
                        Tensor::zeros(t.gpu(), t.shape().clone())?,
                        Tensor::zeros(t.gpu(), t.shape().clone())?,
                    )))
                } else {
                    Ok(None)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            lr,
            beta1: optim::ADAM_BETA1,
            beta2: optim::ADAM_BETA2,
            eps: optim::ADAM_EPS,
            step: 0,
            moments,
        })
    }

    /// Apply one update from `grads`, in place. A parameter without a gradient (one the
    /// loss does not reach) keeps its value, as in Keras.
    pub fn update(&mut self, params: &Params, mut grads: crate::Grads) -> Result<()> {
        self.step += 1;
        for ((_, p), mv) in params.iter().zip(&self.moments) {
            let (Some((m, v)), Some(g)) = (mv, grads.take(p)) else {
                continue;
            };
            ops::adam_step(
                p, &g, m, v, self.step, self.lr, self.beta1, self.beta2, self.eps,
            )?;
        }
        Ok(())
    }
}

/// One step on a batch: images and masks (N, 1, S, S). Returns the batch loss (1) and the
/// logits, both still on the GPU.
pub fn train_step(
    model: &Model,
    params: &mut Params,
    adam: &mut Adam,
    images: &Tensor,
    masks: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let tape = Tape::start();
    let logits = model.forward(params, images, Mode::Train)?;
    images.gpu().set_block("loss");
    let loss = ops::bce_dice_loss(&logits, masks)?;
    let grads = tape.backward(&loss)?;
    images.gpu().set_block("adam");
    adam.update(params, grads)?;
    Ok((loss, logits))
}
