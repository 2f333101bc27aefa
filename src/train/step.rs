//! One training step — forward, fused BCE-Dice loss, backward, Adam — encoded with no
//! read-back: the loss stays on the GPU until the caller wants to show it.

use crate::autodiff::Tape;
use crate::error::Result;
use crate::model::{Mode, Model};
use crate::nn::Params;
use crate::ops::{self, optim};
use crate::tensor::Tensor;

/// Adam's state for every trainable parameter (MODEL.md: lr 1e-3, β 0.9/0.999, ε 1e-7).
///
/// The moments are laid out as the parameters are ([`Params::groups`]): one flat m and
/// one flat v per group, so one launch updates every parameter of a group.
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Updates applied so far (the bias correction's t is step + 1 for the next one).
    pub step: u32,
    /// (m, v) per parameter, `None` for BN running statistics: slices of `flat`.
    pub moments: Vec<Option<(Tensor, Tensor)>>,
    /// (m, v) of each group of `Params::groups`, whole.
    flat: Vec<(Tensor, Tensor)>,
}

impl Adam {
    /// Zero moments for every trainable parameter of `params`.
    pub fn new(params: &Params, lr: f32) -> Result<Self> {
        let mut moments = vec![None; params.spec().params().len()];
        let mut flat = Vec::new();
        for group in params.groups() {
            let m = Tensor::zeros(group.tensor.gpu(), group.tensor.shape().clone())?;
            let v = Tensor::zeros(group.tensor.gpu(), group.tensor.shape().clone())?;
            for &(id, start) in &group.members {
                let shape = params.get(id).shape().clone();
                moments[id.0] = Some((m.slice(start, shape.clone())?, v.slice(start, shape)?));
            }
            flat.push((m, v));
        }
        Ok(Self {
            lr,
            beta1: optim::ADAM_BETA1,
            beta2: optim::ADAM_BETA2,
            eps: optim::ADAM_EPS,
            step: 0,
            moments,
            flat,
        })
    }

    /// Apply one update from `grads`, in place. A parameter without a gradient (one the
    /// loss does not reach) keeps its value, as in Keras.
    ///
    /// The gradients are copied into one flat buffer laid out as the group (the gaps
    /// zeroed, which leaves the zeros there as they are), and one launch updates the
    /// group; a parameter without a gradient splits that launch in two.
    pub fn update(&mut self, params: &Params, mut grads: crate::Grads) -> Result<()> {
        self.step += 1;
        for (group, (m, v)) in params.groups().iter().zip(&self.flat) {
            let p = &group.tensor;
            let g = Tensor::cleared(p.gpu(), p.shape().clone(), "adam")?;
            // Runs of consecutive members that have a gradient: (first element, end).
            let mut runs: Vec<(usize, usize)> = Vec::new();
            let mut open = false;
            for &(id, start) in &group.members {
                let param = params.get(id);
                let Some(grad) = grads.take(param) else {
                    open = false;
                    continue;
                };
                g.slice(start, param.shape().clone())?.copy_from(&grad)?;
                // To the end of the member's last vec4: zeros in the alignment gap
                // after it, which Adam leaves as they are (a gradient of 0 on moments of
                // 0), and the run is updated as whole vec4s.
                let end = start + param.numel().next_multiple_of(4);
                match runs.last_mut() {
                    Some(run) if open => run.1 = end,
                    _ => runs.push((start, end)),
                }
                open = true;
            }
            for (start, end) in runs {
                let part = |t: &Tensor| {
                    if (start, end) == (0, t.numel()) {
                        Ok(t.clone())
                    } else {
                        t.slice(start, [end - start])
                    }
                };
                ops::adam_step(
                    &part(p)?,
                    &part(&g)?,
                    &part(m)?,
                    &part(v)?,
                    self.step,
                    self.lr,
                    self.beta1,
                    self.beta2,
                    self.eps,
                )?;
            }
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
