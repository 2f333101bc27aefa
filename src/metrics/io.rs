//! Reading mask files and pairing predictions with ground truth, for scoring masks that
//! already exist on disk (`rca-gpu metrics`, or evaluating another tool's output).
//!
//! * Formats: PNG, BMP, JPEG, TIFF; grey, grey+alpha, RGB or RGBA; 8 or 16 bit (or float
//!   TIFF). A pixel's value is the largest of its colour channels scaled to [0, 1] (so a
//!   red-on-black mask reads as foreground); alpha is ignored.
//! * Ground truth is binarised at 0.5 (robust to JPEG ringing); a prediction is read as a
//!   probability (grey level / maximum) and thresholded by the caller.
//! * Pairing is by file stem, searched recursively. A ground-truth stem ending in `_mask`,
//!   `_mask_<n>`, `_GT` or `_gt` matches a prediction without the suffix; BUSI's extra masks
//!   of one image (`x_mask.png`, `x_mask_1.png`) are OR-ed together. When a ground-truth
//!   folder holds both `x.png` and `x_mask.png` (BUSI keeps the scan beside its mask), the
//!   suffixed files are the ground truth and `x.png` is skipped as the scan.
//! * The class of an image is the first sub-folder of the ground-truth folder it sits in
//!   (`Dataset_BUSI_with_GT/benign/...` → `benign`), none for files at the top level.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::mask::check_shape;
use super::{BinaryMask, MetricsError};

/// File extensions read as masks (compared case-insensitively).
pub const MASK_EXTENSIONS: [&str; 6] = ["png", "bmp", "jpg", "jpeg", "tif", "tiff"];

/// A grey-level map in [0, 1], row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbabilityMap {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
}

impl ProbabilityMap {
    pub fn new(width: usize, height: usize, values: Vec<f32>) -> Result<Self, MetricsError> {
        check_shape("ProbabilityMap::new", values.len(), width, height)?;
        Ok(Self {
            width,
            height,
            values,
        })
    }

    /// Foreground where value ≥ `threshold`.
    pub fn threshold(&self, threshold: f32) -> BinaryMask {
        super::threshold(&self.values, self.width, self.height, threshold)
            .expect("shape checked at construction")
    }
}

/// Reads an image file as a map in [0, 1]: the largest colour channel of each pixel divided
/// by the format's maximum (255, 65535, or 1 for float TIFF, clamped).
pub fn load_probability(path: &Path) -> Result<ProbabilityMap, MetricsError> {
    let img = image::ImageReader::open(path)
        .map_err(|source| MetricsError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .with_guessed_format()
        .map_err(|source| MetricsError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .decode()
        .map_err(|source| MetricsError::Image {
            path: path.to_path_buf(),
            source,
        })?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    // to_rgb32f scales integer formats to [0, 1] and replicates grey into all channels
    let rgb = img.to_rgb32f();
    let values = rgb
        .pixels()
        .map(|p| p.0[0].max(p.0[1]).max(p.0[2]).clamp(0.0, 1.0))
        .collect();
    ProbabilityMap::new(w, h, values).map_err(|_| MetricsError::ZeroSizeFile {
        path: path.to_path_buf(),
    })
}

/// Reads a ground-truth mask: [`load_probability`] binarised at 0.5.
pub fn load_mask(path: &Path) -> Result<BinaryMask, MetricsError> {
    Ok(load_probability(path)?.threshold(0.5))
}

/// Reads several masks of one image and ORs them (BUSI's `_mask`, `_mask_1`, …). They must
/// share a size.
pub fn load_mask_union(paths: &[PathBuf]) -> Result<BinaryMask, MetricsError> {
    let (first, rest) = paths
        .split_first()
        .expect("load_mask_union needs at least one path");
    let mut union = load_mask(first)?;
    for p in rest {
        let m = load_mask(p)?;
        if m.width() != union.width() || m.height() != union.height() {
            return Err(MetricsError::SizeMismatch {
                op: "load_mask_union",
                pred_w: m.width(),
                pred_h: m.height(),
                gt_w: union.width(),
                gt_h: union.height(),
            });
        }
        union = BinaryMask::new(
            union.width(),
            union.height(),
            union
                .data()
                .iter()
                .zip(m.data())
                .map(|(&a, &b)| a || b)
                .collect(),
        )?;
    }
    Ok(union)
}

/// Nearest-neighbour resize: output pixel (x, y) takes source pixel
/// (⌊(x + ½)·sw/dw⌋, ⌊(y + ½)·sh/dh⌋), the pixel whose area contains the output pixel's
/// centre. Nearest, because interpolating a mask would invent grey levels.
pub fn resize_nearest(map: &ProbabilityMap, width: usize, height: usize) -> ProbabilityMap {
    if (map.width, map.height) == (width, height) {
        return map.clone();
    }
    let src = |d: usize, dn: usize, sn: usize| ((2 * d + 1) * sn / (2 * dn)).min(sn - 1);
    let xs: Vec<usize> = (0..width).map(|x| src(x, width, map.width)).collect();
    let values = (0..height)
        .flat_map(|y| {
            let sy = src(y, height, map.height);
            xs.iter().map(move |&sx| map.values[sy * map.width + sx])
        })
        .collect();
    ProbabilityMap::new(width, height, values).expect("non-zero target size")
}

/// The matching key of a file stem and whether it carried a ground-truth suffix:
/// `x_mask`, `x_mask_3`, `x_GT`, `x_gt` → (`x`, true); `x` → (`x`, false).
pub fn mask_key(stem: &str) -> (String, bool) {
    if let Some(i) = stem.rfind("_mask_") {
        let tail = &stem[i + "_mask_".len()..];
        if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit()) {
            return (stem[..i].to_string(), true);
        }
    }
    for suffix in ["_mask", "_Mask", "_MASK", "_GT", "_gt"] {
        if let Some(base) = stem.strip_suffix(suffix)
            && !base.is_empty()
        {
            return (base.to_string(), true);
        }
    }
    (stem.to_string(), false)
}

/// A prediction and the ground-truth file(s) it is scored against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskPair {
    /// The shared key (the prediction's stem without any ground-truth suffix).
    pub name: String,
    pub class: Option<String>,
    pub pred: PathBuf,
    /// One file, or BUSI's several masks of one image, to be OR-ed.
    pub gt: Vec<PathBuf>,
}

/// The result of pairing two folders.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pairing {
    /// Sorted by name.
    pub pairs: Vec<MaskPair>,
    pub unmatched_pred: Vec<PathBuf>,
    pub unmatched_gt: Vec<PathBuf>,
    /// Unsuffixed ground-truth-folder files that have suffixed masks beside them (scans).
    pub skipped_scans: Vec<PathBuf>,
    /// Prediction-folder files of `rca-gpu infer` that the chosen kind leaves out.
    pub skipped_outputs: Vec<PathBuf>,
}

/// Image files under `dir`, recursively, sorted, each with its first sub-folder (if any).
fn list_images(dir: &Path) -> Result<Vec<(PathBuf, Option<String>)>, MetricsError> {
    fn walk(
        root: &Path,
        dir: &Path,
        out: &mut Vec<(PathBuf, Option<String>)>,
    ) -> Result<(), MetricsError> {
        let io_err = |source| MetricsError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_err)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io_err)?;
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(root, &path, out)?;
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| MASK_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                let class = (rel.components().count() > 1)
                    .then(|| rel.components().next())
                    .flatten()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned());
                out.push((path, class));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Which files of a prediction folder are the predictions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PredKind {
    /// `mask` when the folder holds `rca-gpu infer` outputs (a stem ending `_prob` or
    /// `_overlay`), else every image, paired by stem.
    #[default]
    Auto,
    /// `rca-gpu infer`'s `NAME_mask` files (already post-processed); its `_prob` and
    /// `_overlay` files are left out.
    Mask,
    /// `rca-gpu infer`'s `NAME_prob` maps (the raw probability × 255), thresholded here;
    /// its masks and overlays are left out.
    Prob,
}

/// The key of a prediction file's stem under `kind`, or `None` when the file is another of
/// infer's outputs. `infer_outputs` says whether the folder holds infer's outputs at all.
fn pred_key(stem: &str, kind: PredKind, infer_outputs: bool) -> Option<String> {
    match kind {
        PredKind::Auto if !infer_outputs => Some(mask_key(stem).0),
        PredKind::Auto | PredKind::Mask => stem.strip_suffix("_mask").map(str::to_string),
        PredKind::Prob => stem.strip_suffix("_prob").map(str::to_string),
    }
}

/// Pairs every prediction under `pred_dir` with its ground truth under `gt_dir` (rules in
/// the module docs), the predictions chosen by `kind`. Two predictions, or two unsuffixed
/// ground-truth files, with the same key are an error naming both.
pub fn pair_mask_files(
    pred_dir: &Path,
    gt_dir: &Path,
    kind: PredKind,
) -> Result<Pairing, MetricsError> {
    // key → (suffixed masks, unsuffixed files, class)
    #[derive(Default)]
    struct Gt {
        suffixed: Vec<PathBuf>,
        plain: Option<PathBuf>,
        class: Option<String>,
    }
    let mut gts: BTreeMap<String, Gt> = BTreeMap::new();
    for (path, class) in list_images(gt_dir)? {
        let (key, suffixed) = mask_key(&stem(&path));
        let entry = gts.entry(key.clone()).or_default();
        entry.class = entry.class.take().or(class);
        if suffixed {
            entry.suffixed.push(path);
        } else if let Some(first) = entry.plain.replace(path.clone()) {
            return Err(MetricsError::DuplicateKey {
                dir: gt_dir.to_path_buf(),
                key,
                first,
                second: path,
            });
        }
    }

    let mut preds: BTreeMap<String, PathBuf> = BTreeMap::new();
    let pred_files = list_images(pred_dir)?;
    let infer_outputs = pred_files.iter().any(|(p, _)| {
        let s = stem(p);
        s.ends_with("_prob") || s.ends_with("_overlay")
    });
    let mut pairing = Pairing::default();
    for (path, _) in pred_files {
        let Some(key) = pred_key(&stem(&path), kind, infer_outputs) else {
            pairing.skipped_outputs.push(path);
            continue;
        };
        if let Some(first) = preds.insert(key.clone(), path.clone()) {
            return Err(MetricsError::DuplicateKey {
                dir: pred_dir.to_path_buf(),
                key,
                first,
                second: path,
            });
        }
    }

    for (key, pred) in &preds {
        match gts.get(key) {
            Some(g) => {
                let gt = if g.suffixed.is_empty() {
                    vec![g.plain.clone().expect("an entry has at least one file")]
                } else {
                    g.suffixed.clone()
                };
                pairing.pairs.push(MaskPair {
                    name: key.clone(),
                    class: g.class.clone(),
                    pred: pred.clone(),
                    gt,
                });
            }
            None => pairing.unmatched_pred.push(pred.clone()),
        }
    }
    for (key, g) in gts {
        let matched = preds.contains_key(&key);
        if g.suffixed.is_empty() {
            if !matched {
                pairing.unmatched_gt.extend(g.plain);
            }
        } else {
            pairing.skipped_scans.extend(g.plain);
            if !matched {
                pairing.unmatched_gt.extend(g.suffixed);
            }
        }
    }
    Ok(pairing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ground_truth_suffixes_are_stripped_for_matching() {
        assert_eq!(mask_key("benign (1)_mask"), ("benign (1)".into(), true));
        assert_eq!(mask_key("benign (1)_mask_2"), ("benign (1)".into(), true));
        assert_eq!(mask_key("case_07_GT"), ("case_07".into(), true));
        assert_eq!(mask_key("case_07"), ("case_07".into(), false));
        // a name that merely contains the word, or is only the suffix, is left alone
        assert_eq!(mask_key("_mask"), ("_mask".into(), false));
        assert_eq!(mask_key("x_mask_a"), ("x_mask_a".into(), false));
    }

    #[test]
    fn nearest_resize_repeats_pixels_when_enlarging() {
        let m = ProbabilityMap::new(2, 1, vec![0.0, 1.0]).unwrap();
        let r = resize_nearest(&m, 4, 2);
        assert_eq!(r.values, [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn nearest_resize_takes_the_pixel_under_each_centre_when_shrinking() {
        let m = ProbabilityMap::new(4, 1, vec![0.1, 0.2, 0.3, 0.4]).unwrap();
        // centres of the two output pixels fall in source pixels 1 and 3
        assert_eq!(resize_nearest(&m, 2, 1).values, [0.2, 0.4]);
        assert_eq!(resize_nearest(&m, 4, 1), m);
    }
}
