//! Training: checkpoints, one step (forward, fused loss, backward, Adam), and the loop of
//! `rca-gpu train` with its schedule, early stopping and resumable run folder.
//!
//! By job, listed so that each module imports only modules before it (none imports the
//! loop, no two import each other): [`step`] (one step, Adam), [`checkpoint`] (the safetensors files),
//! [`config`] (what defines a run), [`history`] (the per-epoch metrics and their tables),
//! [`plot`] (the curves, from the history), [`budget`] (whether a batch fits the adapter),
//! [`lock`] (one writer per run folder),
//! [`state`] (what a run folder carries between sessions), and [`trainer`], the loop that
//! uses them all.

pub mod budget;
pub mod checkpoint;
pub mod config;
pub mod history;
pub mod lock;
pub mod plot;
pub mod state;
pub mod step;
pub mod trainer;

pub use step::{Adam, train_step};
