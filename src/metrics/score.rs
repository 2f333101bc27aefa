//! Per-image metrics of a binary prediction against its ground truth (paper, Table 1), with
//! the empty-mask conventions stated in the module docs of [`crate::metrics`].

use serde::{Deserialize, Serialize};

use super::edt::squared_distance_to_foreground;
use super::mask::check_shape;
use super::{BinaryMask, MetricsError, PostProcess};

/// Pixel counts of prediction P against ground truth G.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub true_pos: u64,
    pub false_pos: u64,
    pub false_neg: u64,
    pub true_neg: u64,
}

impl Confusion {
    pub fn total(&self) -> u64 {
        self.true_pos + self.false_pos + self.false_neg + self.true_neg
    }

    /// |P ∪ G|.
    pub fn union(&self) -> u64 {
        self.true_pos + self.false_pos + self.false_neg
    }

    /// Both P and G are empty.
    pub fn both_empty(&self) -> bool {
        self.union() == 0
    }

    /// `num / den`, with 0/0 = 1 when both masks are empty (nothing to find, nothing found)
    /// and 0 otherwise (see the module docs).
    fn ratio(&self, num: u64, den: u64) -> f64 {
        if den == 0 {
            if self.both_empty() { 1.0 } else { 0.0 }
        } else {
            num as f64 / den as f64
        }
    }

    pub fn accuracy(&self) -> f64 {
        (self.true_pos + self.true_neg) as f64 / self.total() as f64
    }

    pub fn precision(&self) -> f64 {
        self.ratio(self.true_pos, self.true_pos + self.false_pos)
    }

    pub fn recall(&self) -> f64 {
        self.ratio(self.true_pos, self.true_pos + self.false_neg)
    }

    pub fn dice(&self) -> f64 {
        self.ratio(
            2 * self.true_pos,
            2 * self.true_pos + self.false_pos + self.false_neg,
        )
    }

    pub fn iou(&self) -> f64 {
        self.ratio(self.true_pos, self.union())
    }

    /// Mean absolute error of the binary masks, (FP + FN) / N.
    pub fn mae(&self) -> f64 {
        (self.false_pos + self.false_neg) as f64 / self.total() as f64
    }
}

/// The paper's mIoU: (1/10)·Σ_{k=0..9} \[IoU if IoU > 0.50 + 0.05·k else 0\], with the
/// comparison made exactly as 100·TP > (50 + 5k)·|P ∪ G|. Both masks empty gives 1.
pub fn mean_iou(c: &Confusion) -> f64 {
    let union = c.union();
    if union == 0 {
        return 1.0;
    }
    let iou = c.iou();
    let passed = (0..10u64)
        .filter(|k| 100 * c.true_pos > (50 + 5 * k) * union)
        .count();
    // Summing `passed` copies of IoU rather than multiplying keeps the rounding identical to
    // the golden script's `sum(...)`. Folded from +0.0: Rust's `sum` of no f64 is -0.0,
    // which the tables printed as "-0.000".
    (0..passed).fold(0.0, |acc, _| acc + iou) / 10.0
}

/// All metrics of one image. Distances are in pixels of the ground truth's grid.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageMetrics {
    pub confusion: Confusion,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub dice: f64,
    pub iou: f64,
    pub miou: f64,
    /// Average Hausdorff distance of the foreground sets.
    pub ahd: f64,
    /// 95th-percentile Hausdorff distance of the boundaries (medpy's `hd95`).
    pub hd95: f64,
    /// mean |P − G| of the binary masks; the table's MAE column.
    pub mae: f64,
    /// mean |p − G| of the probability map, when one was given.
    pub mae_probability: Option<f64>,
    /// Inference time of this image in milliseconds, filled in by the inference code.
    pub inference_ms: Option<f64>,
}

impl ImageMetrics {
    pub fn with_inference_ms(mut self, ms: f64) -> Self {
        self.inference_ms = Some(ms);
        self
    }
}

/// The finite AHD / HD95 given when exactly one of the masks is empty: the image diagonal
/// √(w² + h²), larger than any distance between two pixels of the image.
pub fn empty_mask_penalty(width: usize, height: usize) -> f64 {
    (width as f64).hypot(height as f64)
}

fn check_same_size(
    op: &'static str,
    pred: &BinaryMask,
    gt: &BinaryMask,
) -> Result<(), MetricsError> {
    if pred.width() != gt.width() || pred.height() != gt.height() {
        return Err(MetricsError::SizeMismatch {
            op,
            pred_w: pred.width(),
            pred_h: pred.height(),
            gt_w: gt.width(),
            gt_h: gt.height(),
        });
    }
    Ok(())
}

/// TP, FP, FN, TN of `pred` against `gt`.
pub fn confusion(pred: &BinaryMask, gt: &BinaryMask) -> Result<Confusion, MetricsError> {
    check_same_size("confusion", pred, gt)?;
    let mut c = Confusion::default();
    for (&p, &g) in pred.data().iter().zip(gt.data()) {
        match (p, g) {
            (true, true) => c.true_pos += 1,
            (true, false) => c.false_pos += 1,
            (false, true) => c.false_neg += 1,
            (false, false) => c.true_neg += 1,
        }
    }
    Ok(c)
}

/// Mean over the foreground pixels of `from` of their distance to the nearest foreground
/// pixel of `to`, read from `to`'s squared distance transform.
fn mean_directed(from: &BinaryMask, to_sq: &[f64]) -> f64 {
    let (sum, n) = from
        .data()
        .iter()
        .zip(to_sq)
        .filter(|&(&f, _)| f)
        .fold((0.0, 0usize), |(s, n), (_, &d2)| (s + d2.sqrt(), n + 1));
    sum / n as f64
}

/// Distances from the foreground pixels of `from` to the nearest foreground pixel of `to`.
fn directed(from: &BinaryMask, to_sq: &[f64], out: &mut Vec<f64>) {
    out.extend(
        from.data()
            .iter()
            .zip(to_sq)
            .filter(|&(&f, _)| f)
            .map(|(_, &d2)| d2.sqrt()),
    );
}

/// Average Hausdorff distance ½·(mean_{p∈P} d(p, G) + mean_{g∈G} d(g, P)); 0 when both are
/// empty, [`empty_mask_penalty`] when exactly one is. O(pixels).
pub fn average_hausdorff(pred: &BinaryMask, gt: &BinaryMask) -> Result<f64, MetricsError> {
    check_same_size("average_hausdorff", pred, gt)?;
    Ok(match (pred.has_foreground(), gt.has_foreground()) {
        (false, false) => 0.0,
        (true, true) => {
            let to_gt = squared_distance_to_foreground(gt);
            let to_pred = squared_distance_to_foreground(pred);
            0.5 * (mean_directed(pred, &to_gt) + mean_directed(gt, &to_pred))
        }
        _ => empty_mask_penalty(gt.width(), gt.height()),
    })
}

/// Foreground pixels with a 4-neighbour that is background or outside the image (the mask
/// minus its erosion by the cross, with the outside counted as background).
pub fn boundary(mask: &BinaryMask) -> BinaryMask {
    let (w, h) = (mask.width(), mask.height());
    let m = mask.data();
    let data = (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            m[i] && (x == 0
                || y == 0
                || x + 1 == w
                || y + 1 == h
                || !m[i - 1]
                || !m[i + 1]
                || !m[i - w]
                || !m[i + w])
        })
        .collect();
    BinaryMask::new(w, h, data).expect("same shape as the input mask")
}

/// 95th-percentile Hausdorff distance of the boundaries: the directed boundary-to-boundary
/// distances of both directions pooled, 95th percentile with linear interpolation (medpy's
/// `hd95`). 0 when both masks are empty, [`empty_mask_penalty`] when exactly one is.
pub fn hausdorff95(pred: &BinaryMask, gt: &BinaryMask) -> Result<f64, MetricsError> {
    check_same_size("hausdorff95", pred, gt)?;
    Ok(match (pred.has_foreground(), gt.has_foreground()) {
        (false, false) => 0.0,
        (true, true) => {
            let (bp, bg) = (boundary(pred), boundary(gt));
            let mut d = Vec::new();
            directed(&bp, &squared_distance_to_foreground(&bg), &mut d);
            directed(&bg, &squared_distance_to_foreground(&bp), &mut d);
            percentile(&mut d, 95.0)
        }
        _ => empty_mask_penalty(gt.width(), gt.height()),
    })
}

/// numpy's default ("linear") percentile of a non-empty sample; sorts `v` in place.
fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = q / 100.0 * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    let t = rank - lo as f64;
    // numpy's _lerp: interpolate from the nearer end, which is exact at t = 0 and t = 1
    let (a, b) = (v[lo], v[hi]);
    if t >= 0.5 {
        b - (b - a) * (1.0 - t)
    } else {
        a + (b - a) * t
    }
}

/// Every metric of one image; `pred` and `gt` must be the same size (resize the prediction
/// to the ground truth's grid first, see [`super::io::resize_nearest`]).
pub fn evaluate(pred: &BinaryMask, gt: &BinaryMask) -> Result<ImageMetrics, MetricsError> {
    let c = confusion(pred, gt)?;
    Ok(ImageMetrics {
        confusion: c,
        accuracy: c.accuracy(),
        precision: c.precision(),
        recall: c.recall(),
        dice: c.dice(),
        iou: c.iou(),
        miou: mean_iou(&c),
        ahd: average_hausdorff(pred, gt)?,
        hd95: hausdorff95(pred, gt)?,
        mae: c.mae(),
        mae_probability: None,
        inference_ms: None,
    })
}

/// [`evaluate`], plus [`ImageMetrics::mae_probability`] = mean |prob − G| from the
/// probability map `prob` (row-major, the ground truth's size) that `pred` came from.
pub fn evaluate_with_probability(
    pred: &BinaryMask,
    prob: &[f32],
    gt: &BinaryMask,
) -> Result<ImageMetrics, MetricsError> {
    check_shape(
        "evaluate_with_probability",
        prob.len(),
        gt.width(),
        gt.height(),
    )?;
    let mut m = evaluate(pred, gt)?;
    let sum: f64 = prob
        .iter()
        .zip(gt.data())
        .map(|(&p, &g)| (f64::from(p) - if g { 1.0 } else { 0.0 }).abs())
        .sum();
    m.mae_probability = Some(sum / prob.len() as f64);
    Ok(m)
}

/// Post-processes the probability map `prob` (row-major, the ground truth's size) with
/// `settings` and scores the result, MAE of the probabilities included: the one call an
/// evaluation loop needs per image and setting. [`PostProcess::threshold_only`] gives the
/// "PP N" row, [`PostProcess::default`] the "PP Y" row.
pub fn evaluate_probability(
    prob: &[f32],
    gt: &BinaryMask,
    settings: &PostProcess,
) -> Result<ImageMetrics, MetricsError> {
    let pred = settings.apply(prob, gt.width(), gt.height())?;
    evaluate_with_probability(&pred, prob, gt)
}
