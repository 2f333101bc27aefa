//! Training: checkpoints, and one step (forward, fused loss, backward, Adam). The loop,
//! the schedule and early stopping come with `rca-gpu train`.

pub mod checkpoint;
pub mod step;

pub use step::{Adam, train_step};
