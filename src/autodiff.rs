//! Reverse-mode autodiff: a tape of the ops run while recording, walked in reverse by
//! [`Tape::backward`].
//!
//! The tape lives in a thread-local, like PyTorch's grad mode: [`Tape::start`] begins
//! recording on this thread, every op whose inputs include a tracked tensor (a parameter,
//! or the output of a recorded op) appends a [`Node`], and `backward` consumes the tape.
//! Gradients accumulate (`+=`) when a tensor feeds several ops. Parameters are the
//! leaves: their gradients are returned in [`Grads`]. Intermediate gradients and the
//! activations a node saved are dropped (their buffers back to the pool) as soon as the
//! node's backward has run. [`no_grad`] runs a closure without recording (inference).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::ops;
use crate::tensor::{Shape, Tensor};

/// What a recorded op needs for its backward: one variant per primitive, one `match`
/// in [`Op::backward`].
pub(crate) enum Op {
    Add,
    Sub,
    Mul {
        a: Tensor,
        b: Tensor,
    },
    MulBcast {
        a: Tensor,
        b: Tensor,
    },
    Scale(f32),
    Relu {
        x: Tensor,
    },
    Sigmoid {
        y: Tensor,
    },
    Sum {
        c: usize,
        inner: usize,
        scale: f32,
    },
    Concat {
        channels: Vec<usize>,
    },
    Conv1x1 {
        x: Tensor,
        w: Tensor,
        has_bias: bool,
    },
    /// stats (C, 2) = [mean, invstd] the forward normalised with.
    BatchNorm {
        x: Tensor,
        gamma: Tensor,
        stats: Tensor,
        train: bool,
    },
    /// coef (N, 2) = [Σ y·p, Σ y² + Σ p²] per sample.
    BceDice {
        z: Tensor,
        y: Tensor,
        coef: Tensor,
    },
    DepthwiseConv2d {
        x: Tensor,
        k: Tensor,
    },
    Conv2d {
        x: Tensor,
        w: Tensor,
        stride: usize,
        pad: usize,
        has_bias: bool,
    },
    MaxPoolValid {
        x: Tensor,
    },
    MaxPoolSame {
        x: Tensor,
    },
    Upsample2x,
    Fft2 {
        inverse: bool,
        path: ops::FftPath,
    },
    SpectralCrop {
        m: usize,
        h: usize,
    },
    SpectralPad {
        m: usize,
        h: usize,
    },
    SpectralPool {
        m: usize,
        h: usize,
        path: ops::FftPath,
    },
    SpectralUnpool {
        m: usize,
        h: usize,
        path: ops::FftPath,
    },
}

struct Input {
    id: u64,
    shape: Shape,
    needs_grad: bool,
}

struct Node {
    op: Op,
    inputs: Vec<Input>,
    out: u64,
}

#[derive(Default)]
struct TapeState {
    nodes: Vec<Node>,
    /// Outputs of recorded ops: gradients flow through them.
    tracked: HashSet<u64>,
    /// Parameters seen on this tape: their gradients are kept.
    params: HashSet<u64>,
    /// The inputs of every ReLU and max pool run while recording, tracked or not (see
    /// [`Tape::piecewise_inputs`]).
    piecewise: Vec<Piecewise>,
}

thread_local! {
    static TAPE: RefCell<Option<TapeState>> = const { RefCell::new(None) };
}

/// Record `out = op(inputs)` if a tape is recording and some input is tracked.
/// `op` is only built (saving tensors) while a tape records; a ReLU or max pool keeps its
/// input for [`Tape::piecewise_inputs`] even when untracked.
pub(crate) fn record(inputs: &[&Tensor], out: &Tensor, op: impl FnOnce() -> Op) {
    TAPE.with(|t| {
        let mut t = t.borrow_mut();
        let Some(state) = t.as_mut() else { return };
        let mut any = false;
        let inputs: Vec<Input> = inputs
            .iter()
            .map(|x| {
                let needs_grad = x.is_param() || state.tracked.contains(&x.id());
                if x.is_param() {
                    state.params.insert(x.id());
                }
                any |= needs_grad;
                Input {
                    id: x.id(),
                    shape: x.shape().clone(),
                    needs_grad,
                }
            })
            .collect();
        let op = op();
        match &op {
            Op::Relu { x } => state.piecewise.push(Piecewise::Relu(x.clone())),
            Op::MaxPoolValid { x } => state.piecewise.push(Piecewise::MaxPoolValid(x.clone())),
            Op::MaxPoolSame { x } => state.piecewise.push(Piecewise::MaxPoolSame(x.clone())),
            _ => {}
        }
        if !any {
            return;
        }
        state.tracked.insert(out.id());
        state.nodes.push(Node {
            op,
            inputs,
            out: out.id(),
        });
    });
}

/// A piecewise-linear op's input, as recorded on a [`Tape`] (see
/// [`Tape::piecewise_inputs`]).
#[derive(Clone)]
pub enum Piecewise {
    Relu(Tensor),
    MaxPoolValid(Tensor),
    MaxPoolSame(Tensor),
}

/// A recording on the current thread. Dropping it without `backward` discards it.
pub struct Tape {
    // Not Send: the tape belongs to the thread that records.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Tape {
    /// Start recording on this thread.
    ///
    /// # Panics
    /// If a tape is already recording on this thread (a programming error).
    pub fn start() -> Self {
        TAPE.with(|t| {
            let mut t = t.borrow_mut();
            assert!(t.is_none(), "a tape is already recording on this thread");
            *t = Some(TapeState::default());
        });
        Self {
            _not_send: std::marker::PhantomData,
        }
    }

    /// Ops recorded so far.
    pub fn len(&self) -> usize {
        TAPE.with(|t| t.borrow().as_ref().map_or(0, |s| s.nodes.len()))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The inputs of the piecewise-linear ops run so far while recording (tracked or not),
    /// in order: ReLU and the max pools, whose backward reads its decisions (sign, window
    /// arg-max) from exactly these tensors. A diagnostic for comparing a whole model against an f64 reference, which
    /// can then differentiate the same piece of the loss as the GPU: near a kink, f32 and
    /// f64 may decide differently, and the two gradients are then of different pieces.
    pub fn piecewise_inputs(&self) -> Vec<Piecewise> {
        TAPE.with(|t| {
            t.borrow()
                .as_ref()
                .map_or_else(Vec::new, |s| s.piecewise.clone())
        })
    }

    /// Stop recording and back-propagate from the one-element `loss`.
    pub fn backward(self, loss: &Tensor) -> Result<Grads> {
        let state = TAPE
            .with(|t| t.borrow_mut().take())
            .expect("the tape records until backward or drop");
        std::mem::forget(self);
        if loss.numel() != 1 {
            return Err(Error::Autodiff(format!(
                "backward needs a one-element loss, got shape {}",
                loss.shape()
            )));
        }
        if !state.tracked.contains(&loss.id()) {
            return Err(Error::Autodiff(
                "the loss does not depend on any parameter recorded on this tape".into(),
            ));
        }
        let TapeState {
            nodes,
            params,
            piecewise,
            ..
        } = state;
        // Diagnostics only: released now, so that backward frees activations as it goes.
        drop(piecewise);
        let mut grads: HashMap<u64, Tensor> = HashMap::new();
        grads.insert(
            loss.id(),
            Tensor::full(loss.gpu(), loss.shape().clone(), 1.0)?,
        );
        for node in nodes.into_iter().rev() {
            // A node whose output did not reach the loss gets no gradient.
            let Some(dy) = grads.remove(&node.out) else {
                continue;
            };
            let need: Vec<bool> = node.inputs.iter().map(|i| i.needs_grad).collect();
            let dxs = node.op.backward(&dy, &node.inputs, &need)?;
            for (input, dx) in node.inputs.iter().zip(dxs) {
                let Some(dx) = dx else { continue };
                if !input.needs_grad {
                    continue;
                }
                debug_assert_eq!(dx.shape(), &input.shape);
                let acc = match grads.remove(&input.id) {
                    // Out of place: a gradient handle may be shared with another input
                    // (add passes dy to both), so it is never written in place.
                    Some(prev) => ops::elementwise::add_raw(&prev, &dx)?,
                    None => dx,
                };
                grads.insert(input.id, acc);
            }
            // `node` (with its saved activations) and `dy` are dropped here.
        }
        grads.retain(|id, _| params.contains(id));
        Ok(Grads { grads })
    }
}

impl Drop for Tape {
    fn drop(&mut self) {
        TAPE.with(|t| t.borrow_mut().take());
    }
}

/// Run `f` without recording (inference, optimizer updates).
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let saved = TAPE.with(|t| t.borrow_mut().take());
    struct Restore(Option<TapeState>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let s = self.0.take();
            TAPE.with(|t| *t.borrow_mut() = s);
        }
    }
    let _restore = Restore(saved);
    f()
}

/// Whether a tape is recording on this thread.
pub fn is_recording() -> bool {
    TAPE.with(|t| t.borrow().is_some())
}

/// The gradients of the parameters, by tensor.
#[derive(Debug)]
pub struct Grads {
    grads: HashMap<u64, Tensor>,
}

impl Grads {
    /// The gradient of `param`, if the loss depends on it.
    pub fn get(&self, param: &Tensor) -> Option<&Tensor> {
        self.grads.get(&param.id())
    }

    /// Take the gradient of `param` out (the optimizer consumes them).
    pub fn take(&mut self, param: &Tensor) -> Option<Tensor> {
        self.grads.remove(&param.id())
    }

    pub fn len(&self) -> usize {
        self.grads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }
}

impl Op {
    /// Gradients of the inputs from the gradient of the output, in input order
    /// (`None` where an input needs none).
    fn backward(
        &self,
        dy: &Tensor,
        inputs: &[Input],
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        use ops::elementwise as ew;
        Ok(match self {
            // y = a + b
            Op::Add => vec![Some(dy.clone()), Some(dy.clone())],
            // y = a − b
            Op::Sub => vec![Some(dy.clone()), Some(ew::scale_raw(dy, -1.0)?)],
            // y = a ⊙ b
            Op::Mul { a, b } => vec![
                need[0].then(|| ew::mul_raw(dy, b)).transpose()?,
                need[1].then(|| ew::mul_raw(dy, a)).transpose()?,
            ],
            Op::MulBcast { a, b } => {
                let (da, db) = ew::mul_bcast_backward(a, b, dy)?;
                vec![Some(da), Some(db)]
            }
            // y = s·x
            Op::Scale(s) => vec![Some(ew::scale_raw(dy, *s)?)],
            Op::Relu { x } => vec![Some(ew::relu_backward(x, dy)?)],
            Op::Sigmoid { y } => vec![Some(ew::sigmoid_backward(y, dy)?)],
            Op::Sum { c, inner, scale } => vec![Some(ops::reduce::sum_backward(
                dy,
                &inputs[0].shape,
                *c,
                *inner,
                *scale,
            )?)],
            Op::Concat { channels } => ops::shape::concat_backward(dy, channels)?
                .into_iter()
                .map(Some)
                .collect(),
            Op::Conv1x1 { x, w, has_bias } => {
                let want = [need[0], need[1], *has_bias && need[2]];
                let (dx, dw, db) = ops::conv1x1::conv1x1_backward(x, w, dy, want)?;
                vec![dx, dw, db]
            }
            Op::BatchNorm {
                x,
                gamma,
                stats,
                train,
            } => {
                let want = [need[0], need[1], need[2]];
                let (dx, dg, db) =
                    ops::norm::batch_norm_backward(x, gamma, stats, *train, dy, want)?;
                vec![dx, dg, db]
            }
            Op::BceDice { z, y, coef } => {
                vec![Some(ops::loss::bce_dice_backward(z, y, coef, dy)?)]
            }
            Op::DepthwiseConv2d { x, k } => {
                let (dx, dk) = ops::conv::depthwise_conv2d_backward(x, k, dy, [need[0], need[1]])?;
                vec![dx, dk]
            }
            Op::Conv2d {
                x,
                w,
                stride,
                pad,
                has_bias,
            } => {
                let want = [need[0], need[1], *has_bias && need[2]];
                let (dx, dw, db) = ops::conv::conv2d_backward(x, w, dy, *stride, *pad, want)?;
                vec![dx, dw, db]
            }
            Op::MaxPoolValid { x } => vec![Some(ops::pool::max_pool_valid_backward(x, dy)?)],
            Op::MaxPoolSame { x } => vec![Some(ops::pool::max_pool_same_backward(x, dy)?)],
            Op::Upsample2x => vec![Some(ops::pool::upsample2x_backward(dy, &inputs[0].shape)?)],
            Op::Fft2 { inverse, path } => {
                vec![Some(ops::fft::fft2_backward(dy, *inverse, *path)?)]
            }
            Op::SpectralCrop { m, h } => {
                vec![Some(ops::spectral::crop_pad_backward(dy, *m, *h, true)?)]
            }
            Op::SpectralPad { m, h } => {
                vec![Some(ops::spectral::crop_pad_backward(dy, *m, *h, false)?)]
            }
            Op::SpectralPool { m, h, path } => {
                vec![Some(ops::spectral::spectral_pool_backward(
                    dy, *m, *h, *path,
                )?)]
            }
            Op::SpectralUnpool { m, h, path } => {
                vec![Some(ops::spectral::spectral_unpool_backward(
                    dy, *m, *h, *path,
                )?)]
            }
        })
    }
}
