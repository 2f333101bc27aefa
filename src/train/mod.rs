//! Training: checkpoints now; the loop, the schedule and early stopping come with the model.

pub mod checkpoint;
