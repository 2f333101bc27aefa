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
//!
//! The tape knows no op: each op module records a `Backward` (what the op keeps and how
//! it differentiates) next to its forward, so the tape sits below the ops.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::tensor::{ADD_MANY_MAX, Shape, Tensor};

/// Consumers from which a tensor's gradient contributions are kept and summed in one pass
/// (see `Tape::backward`).
const DEFER_FROM: usize = 3;

/// What a recorded op keeps for its backward, and its gradient rule. Each op module
/// defines one per primitive, next to its forward; the tape only stores and calls them, so
/// it sits below the ops.
pub(crate) trait Backward {
    /// Gradients of the inputs from the gradient `dy` of the output, in input order
    /// (`None` where an input needs none: `need[i]` is false).
    fn backward(&self, dy: &Tensor, inputs: &[Input], need: &[bool])
    -> Result<Vec<Option<Tensor>>>;

    /// A piecewise-linear op's input (ReLU, max pool), kept for
    /// [`Tape::piecewise_inputs`] even when the op is not tracked.
    fn piecewise(&self) -> Option<Piecewise> {
        None
    }
}

/// An input of a recorded op, as its backward sees it.
pub(crate) struct Input {
    id: u64,
    pub(crate) shape: Shape,
    needs_grad: bool,
}

struct Node {
    op: Box<dyn Backward>,
    /// The network block the forward ran in, while a profile records: its backward's
    /// dispatches are labelled with it too.
    block: Option<String>,
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
pub(crate) fn record<B: Backward + 'static>(
    inputs: &[&Tensor],
    out: &Tensor,
    op: impl FnOnce() -> B,
) {
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
        if let Some(p) = op.piecewise() {
            state.piecewise.push(p);
        }
        if !any {
            return;
        }
        state.tracked.insert(out.id());
        state.nodes.push(Node {
            op: Box::new(op),
            block: out.gpu().current_block(),
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
        // A tensor that feeds few ops gets its gradient summed as the contributions come
        // (no more than one extra buffer alive); one that feeds DEFER_FROM or more (the
        // input of an inception block, read by every branch) keeps its contributions
        // until the op that made it is reached and sums them in one pass: one dispatch
        // instead of one per contribution (`Tensor::sum_unrecorded`), the same sums in the
        // same order.
        let mut consumers: HashMap<u64, usize> = HashMap::new();
        for node in &nodes {
            for input in node.inputs.iter().filter(|i| i.needs_grad) {
                *consumers.entry(input.id).or_default() += 1;
            }
        }
        let mut grads: HashMap<u64, Vec<Tensor>> = HashMap::new();
        grads.insert(
            loss.id(),
            vec![Tensor::full(loss.gpu(), loss.shape().clone(), 1.0)?],
        );
        for node in nodes.into_iter().rev() {
            // A node whose output did not reach the loss gets no gradient.
            let Some(parts) = grads.remove(&node.out) else {
                continue;
            };
            let dy = Tensor::sum_unrecorded(&parts)?;
            drop(parts);
            if let Some(block) = &node.block {
                dy.gpu().set_block(block);
            }
            let need: Vec<bool> = node.inputs.iter().map(|i| i.needs_grad).collect();
            let dxs = node.op.backward(&dy, &node.inputs, &need)?;
            for (input, dx) in node.inputs.iter().zip(dxs) {
                let Some(dx) = dx else { continue };
                if !input.needs_grad {
                    continue;
                }
                debug_assert_eq!(dx.shape(), &input.shape);
                // Out of place: a gradient handle may be shared with another input (add
                // passes dy to both), so it is never written in place.
                let parts = grads.entry(input.id).or_default();
                parts.push(dx);
                let defer = consumers.get(&input.id).is_some_and(|&n| n >= DEFER_FROM);
                if parts.len() == 2 && !defer || parts.len() == ADD_MANY_MAX {
                    let sum = Tensor::sum_unrecorded(parts)?;
                    *parts = vec![sum];
                }
            }
            // `node` (with its saved activations) and `dy` are dropped here.
        }
        let grads = grads
            .into_iter()
            .filter(|(id, _)| params.contains(id))
            .map(|(id, parts)| Ok((id, Tensor::sum_unrecorded(&parts)?)))
            .collect::<Result<HashMap<u64, Tensor>>>()?;
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
