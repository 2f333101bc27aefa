//! The memory budget of a training step: the largest GPU buffer a batch needs, and the
//! up-front refusal of a batch the adapter cannot bind.
//!
//! A module of its own because it is about the engine's allocations, not the loop:
//! `rca-gpu bench` uses it to lower its training batch too.

use anyhow::bail;

use crate::Gpu;
use crate::model::Model;

/// The largest single GPU buffer, in bytes, that one training step of `model` at batch
/// `batch` allocates: every buffer must fit one storage binding, and training cannot split
/// a batch (train-mode BN couples its samples), so this decides the largest usable batch.
///
/// Counted by running the network on shapes ([`Model::largest_training_buffer`]), and held
/// to `PoolStats::largest_request` after a real step in `tests/`.
pub fn largest_buffer_bytes(model: &Model, batch: usize) -> u64 {
    model.largest_training_buffer(batch)
}

/// The largest training batch up to `batch` whose buffers `gpu` can bind, if any.
pub fn largest_batch_that_fits(gpu: &Gpu, model: &Model, batch: usize) -> Option<usize> {
    let info = gpu.info();
    let limit = info.max_storage_binding.min(info.max_buffer_size);
    (1..=batch)
        .rev()
        .find(|&b| largest_buffer_bytes(model, b) <= limit)
}

/// Refuse, before any step, a batch whose largest buffer exceeds what `gpu` can bind: the
/// step would otherwise fail mid-run with the op's `TooLarge` error.
pub fn check_batch_fits(gpu: &Gpu, model: &Model, batch: usize) -> anyhow::Result<()> {
    let info = gpu.info();
    let limit = info.max_storage_binding.min(info.max_buffer_size);
    let need = largest_buffer_bytes(model, batch);
    if need <= limit {
        return Ok(());
    }
    let per_image = largest_buffer_bytes(model, 1);
    let s = model.config.size;
    let fits = largest_batch_that_fits(gpu, model, batch);
    let advice = match fits {
        Some(b) => format!("use --batch {b} or less"),
        None => format!(
            "even batch 1 needs {}: use a smaller --size or --width",
            megabytes(per_image)
        ),
    };
    bail!(
        "batch {batch} at {s}×{s} needs a {} buffer; this adapter ({}) allows {} per binding: {advice}",
        megabytes(need),
        info.name,
        mebibytes(limit)
    )
}

fn megabytes(bytes: u64) -> String {
    format!("{} MB", (bytes as f64 / 1e6).round())
}

fn mebibytes(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
    }
}
