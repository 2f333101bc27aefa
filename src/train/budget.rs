//! The memory budget of a training step: the largest GPU buffer a batch needs, and the
//! up-front refusal of a batch the adapter cannot bind.
//!
//! A module of its own because it is an estimate of the engine's allocations, not part of
//! the loop: `rca-gpu bench` uses it to lower its training batch too, and it changes when
//! the model's buffers do.

use anyhow::bail;

use crate::Gpu;
use crate::model::Model;

/// The largest single GPU buffer, in bytes, that one training step of `model` at batch
/// `batch` allocates: every buffer must fit one storage binding, and training cannot split
/// a batch (train-mode BN couples its samples), so this decides the largest usable batch.
///
/// The activations are largest at level 0 (S×S) of the decoder, where the last block's
/// input is concat[Up(d1) (2F ch), skip (F ch)] = 3F channels. A plain block (no RIC)
/// allocates nothing wider there; a RIC block's layer-1 concat has 3F + 3F = 6F channels,
/// and its HybridPoolSame branch takes the complex 2-D FFT of the 3F-channel input, again
/// 6F floats per pixel. So the largest activation is c·F·S²·N floats with c = 6 with RIC
/// and 3 without; every other tensor (the encoder's 4F concat, the im2col buffers of the
/// CSA convolutions at S/2, the gradients, which mirror the activations) is smaller.
/// Measured (`PoolStats::largest_request` after a forward + backward + Adam step, every
/// variant at F 2 and 4, S 32 and 64, N 1 and 2) and checked in `tests/cli_train_more.rs`. The
/// largest parameter (the deepest RIC's 4·16F → 16F pointwise kernel) can exceed that at
/// small S and large F, so it is taken into account, though it is never near a limit.
pub fn largest_buffer_bytes(model: &Model, batch: usize) -> u64 {
    let mc = &model.config;
    let per_pixel = if mc.variant.ric() { 6 } else { 3 } * mc.width as u64;
    let activation = per_pixel * (mc.size * mc.size) as u64 * batch as u64 * 4;
    let param = model
        .spec
        .params()
        .iter()
        .map(|p| 4 * p.shape.iter().product::<usize>() as u64)
        .max()
        .unwrap_or(0);
    activation.max(param)
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
