//! Post-processing of predicted lesion maps and the paper's segmentation metrics (Table 1),
//! computed on the CPU: they run once per image after inference, are cheap next to the
//! network, and must be exactly reproducible against SciPy / scikit-image.
//!
//! # Data path
//!
//! probability map (f32, row-major, `width × height`)
//! → [`PostProcess::apply`] (threshold, fill holes, drop small components) → [`BinaryMask`]
//! → [`evaluate`] against the ground-truth mask → [`ImageMetrics`]
//! ([`evaluate_probability`] does both steps for one setting)
//! → [`ImageRecord`] (name, optional class, PP flag) → [`summary_rows`] → Table 2
//! ([`render_text`], [`render_markdown`]) and the per-image CSV ([`write_csv`]).
//! [`io`] loads mask files of any common format and pairs predictions with ground truth;
//! the `rca-gpu metrics` command (`src/cli/metrics.rs`) is a thin layer over it.
//!
//! # Definitions
//!
//! With TP, FP, FN, TN the pixel counts of prediction P against ground truth G:
//! accuracy (TP+TN)/N, precision TP/(TP+FP), recall TP/(TP+FN), Dice 2TP/(2TP+FP+FN),
//! IoU TP/(TP+FP+FN), mIoU = (1/10)·Σ_{t=0.50,0.55,…,0.95} \[IoU if IoU > t else 0\] (the
//! comparison is made exactly in integers, 100·TP > (50+5k)·|P∪G|, so no threshold is lost
//! to rounding), MAE = mean |P − G| over pixels.
//!
//! AHD = ½·( mean_{p∈P} min_{g∈G} d(p,g) + mean_{g∈G} min_{p∈P} d(p,g) ) over the
//! foreground pixel sets, d Euclidean in pixels, the minima read from an exact distance
//! transform ([`edt`], Felzenszwalb–Huttenlocher, linear time).
//!
//! HD95 (an extra, not in the paper) is medpy's `hd95`: the directed distances from each
//! boundary pixel of P to the boundary of G and from each boundary pixel of G to the
//! boundary of P are pooled, and their 95th percentile (linear interpolation, numpy's
//! default) is taken. A boundary pixel is a foreground pixel with a 4-neighbour that is
//! background or outside the image.
//!
//! # Empty masks (lesion-free images, empty predictions)
//!
//! * **Both empty**: Dice = IoU = mIoU = precision = recall = 1 and AHD = HD95 = 0 (a
//!   correct "no lesion"); accuracy and MAE follow their formulas (1 and 0).
//! * **Exactly one empty**: Dice = IoU = mIoU = 0. A ratio whose denominator is 0 (precision
//!   when P is empty, recall when G is empty) is 0: a 0/0 counts as a success only when
//!   both masks are empty. AHD = HD95 = the image diagonal √(w² + h²), a finite penalty
//!   larger than any distance between two pixels of the image, so that test-set means stay
//!   finite ([`empty_mask_penalty`]).
//!
//! # Which MAE the table uses
//!
//! [`ImageMetrics::mae`] is computed on the binary mask that was scored (so it equals
//! 1 − accuracy), and it is the MAE column of the summary table, because the post-processed
//! rows have no probabilities. When a probability map is available
//! ([`evaluate_with_probability`]), [`ImageMetrics::mae_probability`] also holds
//! mean |p − G|; it is written to the per-image CSV.
//!
//! # Post-processing defaults
//!
//! See [`PostProcess`]: threshold 0.5 (foreground where p ≥ 0.5), hole filling on,
//! 8-connected foreground (so holes are background regions not 4-connected to the border),
//! components below 64 pixels (0.1 % of a 256×256 image) or below 10 % of the largest
//! component removed.
//!
//! # Validation
//!
//! `tools/metrics_golden.py` computes all of the above with SciPy and scikit-image and writes
//! `tests/fixtures/metrics_golden.json`; `tests/metrics_golden.rs` checks this module against
//! it (post-processing bit-exact, EDT within 1e-5, metrics within 1e-6 relative).

pub mod aggregate;
pub mod edt;
pub mod io;
pub mod mask;
pub mod postprocess;
pub mod score;

use std::path::PathBuf;

pub use aggregate::{
    CSV_HEADER, ImageRecord, LesionFreeRow, MeanStd, Summary, TableRow, across_folds,
    lesion_free_rows, render_lesion_free, render_markdown, render_text, summary_rows, write_csv,
};
pub use edt::{distance_to_foreground, squared_distance_to_foreground};
pub use mask::BinaryMask;
pub use postprocess::{
    Components, Connectivity, PostProcess, fill_holes, label_components, remove_faint_components,
    remove_small_components, threshold,
};
pub use score::{
    Confusion, ImageMetrics, average_hausdorff, boundary, confusion, empty_mask_penalty, evaluate,
    evaluate_probability, evaluate_with_probability, hausdorff95, mean_iou,
};

/// Everything that can go wrong while post-processing, scoring or loading masks.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("{op}: {len} values do not make a {width}×{height} image (needs {expected})")]
    LengthMismatch {
        op: &'static str,
        len: usize,
        width: usize,
        height: usize,
        expected: usize,
    },
    #[error("{op}: zero-sized image ({width}×{height})")]
    ZeroSize {
        op: &'static str,
        width: usize,
        height: usize,
    },
    #[error("{op}: size mismatch, prediction {pred_w}×{pred_h}, ground truth {gt_w}×{gt_h}")]
    SizeMismatch {
        op: &'static str,
        pred_w: usize,
        pred_h: usize,
        gt_w: usize,
        gt_h: usize,
    },
    #[error("invalid post-processing setting: {0}")]
    InvalidSetting(String),
    #[error("cannot decode image {path}: {source}")]
    Image {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error("image {path} has no pixels")]
    ZeroSizeFile { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("two files in {dir} map to the same mask name `{key}`: {first} and {second}")]
    DuplicateKey {
        dir: PathBuf,
        key: String,
        first: PathBuf,
        second: PathBuf,
    },
}
