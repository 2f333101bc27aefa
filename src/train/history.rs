//! The metric history of a run: one [`EpochRecord`] per finished epoch, the per-image
//! [`MetricSums`] it is averaged from, and the run folder's `metrics.json` and
//! `metrics.csv` written from it.
//!
//! `curves.png` is drawn from the same records by [`super::plot`], which imports this module;
//! the loop writes all three files (`trainer::write_metrics`), so neither this module nor the
//! plot depends on the loop.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::metrics::{BinaryMask, PostProcess, evaluate};

/// One finished epoch: the paper's Fig. 8 curves. Every metric is the mean over images of
/// [`crate::metrics::evaluate`] on the prediction thresholded at 0.5 without
/// post-processing, at the training size S. Validation covers every validation image (eval
/// mode); training covers the images of the batches whose logits were read back for the
/// progress bar (every `log_every`-th and the last), as they were predicted during the step
/// (train mode, before the update), so training never reads back more than it logs.
///
/// The fields after `images_per_s` came later: `#[serde(default)]` lets the history inside an
/// older checkpoint load (its epochs show 0 there).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    pub train_loss: f64,
    pub train_dice: f64,
    pub val_loss: f64,
    pub val_dice: f64,
    pub val_iou: f64,
    /// Learning rate used during the epoch.
    pub lr: f32,
    /// Wall time of the epoch, validation included.
    pub seconds: f64,
    /// Training images per second (validation excluded).
    pub images_per_s: f64,
    #[serde(default)]
    pub train_iou: f64,
    #[serde(default)]
    pub train_miou: f64,
    #[serde(default)]
    pub train_precision: f64,
    #[serde(default)]
    pub train_recall: f64,
    #[serde(default)]
    pub train_accuracy: f64,
    #[serde(default)]
    pub train_mae: f64,
    /// Average Hausdorff distance in pixels of the S×S masks.
    #[serde(default)]
    pub train_ahd: f64,
    #[serde(default)]
    pub val_miou: f64,
    #[serde(default)]
    pub val_precision: f64,
    #[serde(default)]
    pub val_recall: f64,
    #[serde(default)]
    pub val_accuracy: f64,
    #[serde(default)]
    pub val_mae: f64,
    #[serde(default)]
    pub val_ahd: f64,
}

/// Per-image metric sums over a set of images (see [`EpochRecord`] for what is scored).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricSums {
    pub images: usize,
    pub dice: f64,
    pub iou: f64,
    pub miou: f64,
    pub precision: f64,
    pub recall: f64,
    pub accuracy: f64,
    pub mae: f64,
    pub ahd: f64,
}

impl MetricSums {
    /// Score one batch: `logits` and `masks` hold `n` planes of `size`×`size`.
    pub fn add_batch(
        &mut self,
        logits: &[f32],
        masks: &[f32],
        n: usize,
        size: usize,
    ) -> anyhow::Result<()> {
        let plane = size * size;
        let pp = PostProcess::threshold_only(0.5);
        for k in 0..n {
            let prob: Vec<f32> = logits[k * plane..(k + 1) * plane]
                .iter()
                .map(|&z| 1.0 / (1.0 + (-z).exp()))
                .collect();
            let pred = pp.apply(&prob, size, size)?;
            let gt = BinaryMask::new(
                size,
                size,
                masks[k * plane..(k + 1) * plane]
                    .iter()
                    .map(|&v| v > 0.5)
                    .collect(),
            )?;
            let m = evaluate(&pred, &gt)?;
            self.images += 1;
            self.dice += m.dice;
            self.iou += m.iou;
            self.miou += m.miou;
            self.precision += m.precision;
            self.recall += m.recall;
            self.accuracy += m.accuracy;
            self.mae += m.mae;
            self.ahd += m.ahd;
        }
        Ok(())
    }

    /// The means (all 0 when no image was scored).
    pub fn means(&self) -> MetricSums {
        let n = self.images.max(1) as f64;
        MetricSums {
            images: self.images,
            dice: self.dice / n,
            iou: self.iou / n,
            miou: self.miou / n,
            precision: self.precision / n,
            recall: self.recall / n,
            accuracy: self.accuracy / n,
            mae: self.mae / n,
            ahd: self.ahd / n,
        }
    }
}

/// Write `metrics.json` and `metrics.csv` from the whole history.
pub fn write_tables(out: &Path, history: &[EpochRecord]) -> anyhow::Result<()> {
    // Rewritten every epoch: atomically, so an interrupt never leaves half a history.
    let json = out.join("metrics.json");
    crate::atomic::write(&json, serde_json::to_string_pretty(history)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    // The first nine columns are the original ones, in their order; the rest were added.
    let mut csv = String::from(
        "epoch,train_loss,train_dice,val_loss,val_dice,val_iou,lr,seconds,images_per_s,\
         train_iou,train_miou,train_precision,train_recall,train_accuracy,train_mae,train_ahd,\
         val_miou,val_precision,val_recall,val_accuracy,val_mae,val_ahd\n",
    );
    for r in history {
        let _ = write!(
            csv,
            "{},{:.6},{:.6},{:.6},{:.6},{:.6},{:e},{:.3},{:.2}",
            r.epoch,
            r.train_loss,
            r.train_dice,
            r.val_loss,
            r.val_dice,
            r.val_iou,
            r.lr,
            r.seconds,
            r.images_per_s
        );
        for v in [
            r.train_iou,
            r.train_miou,
            r.train_precision,
            r.train_recall,
            r.train_accuracy,
            r.train_mae,
            r.train_ahd,
            r.val_miou,
            r.val_precision,
            r.val_recall,
            r.val_accuracy,
            r.val_mae,
            r.val_ahd,
        ] {
            let _ = write!(csv, ",{v:.6}");
        }
        csv.push('\n');
    }
    let csv_path = out.join("metrics.csv");
    crate::atomic::write(&csv_path, csv)
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    Ok(())
}
