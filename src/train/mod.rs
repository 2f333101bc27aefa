//! Training: checkpoints, one step (forward, fused loss, backward, Adam), and the loop of
//! `rca-gpu train` with its schedule, early stopping and resumable run folder.

pub mod checkpoint;
pub mod plot;
pub mod step;
pub mod trainer;

pub use step::{Adam, train_step};
