//! Inference with a trained checkpoint: what `rca-gpu infer` and `rca-gpu eval` share (and
//! what `rca-gpu bench` times).
//!
//! # Data path
//!
//! original grey image (any size) → [`preprocess_image`] to S×S (the function training uses,
//! so the two cannot disagree) → batch N×1×S×S → upload → eval-mode forward under
//! [`no_grad`] (batch norm with its running statistics) → sigmoid → read back →
//! [`resize_probability`] back to the original size (bilinear where it grows, area where it
//! shrinks) → [`Prediction`]. Thresholding and post-processing ([`PostProcess`]) happen at
//! the original size, so masks, areas and metrics are on the original pixel grid.
//!
//! # Chunks
//!
//! A batch is run in chunks that fit the device: a tensor above the device's storage-binding
//! limit (128 MiB on lavapipe; at 256×256 and batch 8 enc0's 64-channel concatenation is
//! 134 MB) makes an op fail with [`Error::TooLarge`] before anything is allocated. Eval mode
//! has no coupling between samples, so [`run_in_chunks`] halves the chunk and runs the same
//! images again; the chunk that worked is kept for later batches.
//!
//! # Timing
//!
//! [`Prediction::ms`] is the wall time of the whole batch divided by its size: preprocessing,
//! upload, forward, sigmoid, read-back (which waits for the GPU to finish) and resizing back.
//! Decoding the file and post-processing are not included. At batch 1 it is the latency of
//! one image; at a larger batch it is the throughput cost per image. Callers run
//! [`Predictor::warm_up`] first, so that compiling the shaders is not counted.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::{Rgb, RgbImage};

use crate::data::{GrayF32, preprocess_image, resize_probability};
use crate::metrics::io::mask_key;
use crate::metrics::{BinaryMask, PostProcess, boundary};
use crate::model::{Model, ModelConfig};
use crate::nn::Params;
use crate::train::checkpoint::{CheckpointError, ModelCheckpoint, load_model, values_for};
use crate::{Error, Gpu, Result, Tensor, no_grad};

/// A model loaded from a checkpoint onto the GPU, ready to predict.
pub struct Predictor {
    gpu: Gpu,
    model: Model,
    params: Params,
    /// The weights with batch norm folded, made on the first forward pass (the parameters
    /// never change here).
    folds: crate::nn::Folds,
    checkpoint: PathBuf,
    epoch: usize,
    /// Images per forward pass; starts at `max_chunk` and shrinks on [`Error::TooLarge`].
    chunk: usize,
}

/// Why a predictor could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("cannot put the weights of {path} on the GPU: {source}")]
    Gpu {
        path: PathBuf,
        #[source]
        source: Error,
    },
}

/// One image's prediction at its original size.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub width: usize,
    pub height: usize,
    /// Lesion probability per pixel, row-major `width × height`, in [0, 1].
    pub probability: Vec<f32>,
    /// Milliseconds per image of the batch it was predicted in (see the module docs).
    pub ms: f64,
}

impl Prediction {
    /// The binary mask after `pp` (use [`PostProcess::threshold_only`] for a plain threshold).
    pub fn mask(
        &self,
        pp: &PostProcess,
    ) -> std::result::Result<BinaryMask, crate::metrics::MetricsError> {
        pp.apply(&self.probability, self.width, self.height)
    }
}

impl Predictor {
    /// Reads `path` (checking its format, version and checksum) and loads it onto `gpu`.
    pub fn load(gpu: &Gpu, path: &Path) -> std::result::Result<Self, LoadError> {
        let ck = load_model(path, None)?;
        Self::from_checkpoint(gpu, path, &ck)
    }

    /// A predictor for weights already on the GPU (e.g. freshly initialised ones, for
    /// `rca-gpu bench`, where the values do not change the time).
    pub fn from_params(gpu: &Gpu, model: Model, params: Params) -> Self {
        Self {
            gpu: gpu.clone(),
            model,
            params,
            folds: Default::default(),
            checkpoint: PathBuf::new(),
            epoch: 0,
            chunk: usize::MAX,
        }
    }

    /// Loads an already-read checkpoint (`path` names it in errors), so that a caller can
    /// check the file before it opens the GPU.
    pub fn from_checkpoint(
        gpu: &Gpu,
        path: &Path,
        ck: &ModelCheckpoint,
    ) -> std::result::Result<Self, LoadError> {
        let model = Model::new(ck.config);
        let values = values_for(path, ck, &model.spec)?;
        let params = model
            .spec
            .load(gpu, &values)
            .map_err(|source| LoadError::Gpu {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            gpu: gpu.clone(),
            model,
            params,
            folds: Default::default(),
            checkpoint: path.to_path_buf(),
            epoch: ck.epoch,
            chunk: usize::MAX,
        })
    }

    pub fn config(&self) -> ModelConfig {
        self.model.config
    }

    /// The FLOPs of one image's forward pass.
    pub fn forward_flops(&self) -> f64 {
        self.model.forward_flops()
    }

    /// The input side S.
    pub fn size(&self) -> usize {
        self.model.config.size
    }

    /// The epoch the checkpoint was saved after.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    pub fn checkpoint(&self) -> &Path {
        &self.checkpoint
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The largest number of images run in one forward pass so far allowed (`usize::MAX`
    /// until a pass was found too large).
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// Caps the images per forward pass (e.g. to bound GPU memory); at least 1.
    pub fn set_max_chunk(&mut self, n: usize) {
        self.chunk = n.max(1);
    }

    /// Runs `n` blank images through the network once, so that the pipelines are compiled
    /// (and a chunk size that fits the device is found) before anything is timed.
    pub fn warm_up(&mut self, n: usize) -> Result<()> {
        let s = self.size();
        self.probabilities(&vec![0.0; n.max(1) * s * s], n.max(1))
            .map(drop)
    }

    /// Logits (N, 1, S, S) of a preprocessed batch (N, 1, S, S) already on the GPU: one
    /// eval-mode forward pass without a tape, not chunked. What a benchmark times.
    pub fn forward_logits(&mut self, x: &Tensor) -> Result<Tensor> {
        let (model, params, folds) = (&self.model, &mut self.params, &mut self.folds);
        no_grad(|| model.forward_folded(params, x, folds))
    }

    /// Probabilities (n × S × S, on the host) of `n` preprocessed S×S images laid out one
    /// after the other in `input`: upload, forward, sigmoid (on the GPU) and read back, in
    /// chunks that fit the device.
    pub fn probabilities(&mut self, input: &[f32], n: usize) -> Result<Vec<f32>> {
        let s = self.size();
        let plane = s * s;
        if input.len() != n * plane {
            return Err(Error::DataLength {
                op: "Predictor::probabilities",
                shape: crate::Shape::new(&[n, 1, s, s]),
                len: input.len(),
                expected: n * plane,
            });
        }
        let gpu = self.gpu.clone();
        let mut chunk = self.chunk;
        let out = run_in_chunks(n, &mut chunk, |r| {
            let x = Tensor::from_vec(
                &gpu,
                [r.len(), 1, s, s],
                &input[r.start * plane..r.end * plane],
            )?;
            let logits = self.forward_logits(&x)?;
            no_grad(|| crate::ops::sigmoid(&logits))?.to_vec()
        });
        self.chunk = chunk;
        out
    }

    /// Predictions for original-size grey images, in order (see the module docs for the
    /// path and what the time includes).
    pub fn predict_batch(&mut self, images: &[GrayF32]) -> Result<Vec<Prediction>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let t0 = Instant::now();
        let s = self.size();
        let plane = s * s;
        let mut input = Vec::with_capacity(images.len() * plane);
        for img in images {
            input.extend(preprocess_image(img, s));
        }
        let prob = self.probabilities(&input, images.len())?;
        let mut out: Vec<Prediction> = images
            .iter()
            .zip(prob.chunks_exact(plane))
            .map(|(img, p)| Prediction {
                width: img.w,
                height: img.h,
                probability: resize_probability(p, s, s, img.w, img.h),
                ms: 0.0,
            })
            .collect();
        let ms = t0.elapsed().as_secs_f64() * 1e3 / images.len() as f64;
        for p in &mut out {
            p.ms = ms;
        }
        Ok(out)
    }
}

/// Runs `f` over `0..n` in consecutive ranges of at most `*chunk` items and concatenates
/// the results. When `f` fails with [`Error::TooLarge`] on a range of more than one item,
/// `*chunk` is halved (to below that range's length) and the same items are tried again;
/// `*chunk` keeps the size that worked, for the next call. Any other error, or `TooLarge`
/// on a single item, is returned.
pub fn run_in_chunks<T>(
    n: usize,
    chunk: &mut usize,
    mut f: impl FnMut(Range<usize>) -> Result<Vec<T>>,
) -> Result<Vec<T>> {
    *chunk = (*chunk).max(1);
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let end = start + (*chunk).min(n - start);
        match f(start..end) {
            Ok(v) => {
                out.extend(v);
                start = end;
            }
            Err(Error::TooLarge { .. }) if end - start > 1 => *chunk = (end - start) / 2,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Lesion area in pixels and as a percentage of the image.
pub fn lesion_area(mask: &BinaryMask) -> (usize, f64) {
    let a = mask.area();
    let total = (mask.width() * mask.height()).max(1);
    (a, 100.0 * a as f64 / total as f64)
}

/// Outline colour of the prediction (bright yellow) and of the ground truth (green).
pub const PREDICTION_COLOUR: [u8; 3] = [255, 230, 0];
pub const GROUND_TRUTH_COLOUR: [u8; 3] = [0, 220, 80];

/// The grey image in RGB with the outline of `pred` drawn over it (and of `gt` under it,
/// when given). Outlines are 1 px, 2 px on images whose shorter side is 400 px or more, so
/// they stay visible when a large scan is viewed scaled down.
pub fn overlay(image: &GrayF32, pred: &BinaryMask, gt: Option<&BinaryMask>) -> RgbImage {
    let (w, h) = (image.w, image.h);
    let mut out = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let g = (image.get(x as usize, y as usize).clamp(0.0, 1.0) * 255.0).round() as u8;
        Rgb([g, g, g])
    });
    let thick = w.min(h) >= 400;
    let mut draw = |mask: &BinaryMask, colour: [u8; 3]| {
        let line = outline(mask, thick);
        for (i, _) in line.data().iter().enumerate().filter(|(_, on)| **on) {
            out.put_pixel((i % w) as u32, (i / w) as u32, Rgb(colour));
        }
    };
    if let Some(g) = gt {
        draw(g, GROUND_TRUTH_COLOUR);
    }
    draw(pred, PREDICTION_COLOUR);
    out
}

/// The boundary of `mask`, grown inwards by one pixel when `thick` (so it never leaves the
/// lesion it outlines).
fn outline(mask: &BinaryMask, thick: bool) -> BinaryMask {
    let b = boundary(mask);
    if !thick {
        return b;
    }
    let (w, h) = (mask.width(), mask.height());
    BinaryMask::from_fn(w, h, |x, y| {
        mask.get(x, y)
            && (b.get(x, y)
                || (x > 0 && b.get(x - 1, y))
                || (x + 1 < w && b.get(x + 1, y))
                || (y > 0 && b.get(x, y - 1))
                || (y + 1 < h && b.get(x, y + 1)))
    })
    .expect("same shape as the mask")
}

/// True for file names that are ground-truth masks by the BUSI / BUSIS conventions
/// (`x_mask.png`, `x_mask_1.png`, `x_GT.png`: [`mask_key`], the rule `rca-gpu metrics`
/// pairs by) or outputs of `rca-gpu infer` (`x_prob.png`, `x_overlay.png`,
/// `x_uncertainty.png`), which a folder
/// given to `infer` should not be run on.
pub fn is_mask_or_output_name(path: &Path) -> bool {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    mask_key(&stem).1
        || ["_prob", "_overlay", "_uncertainty"]
            .iter()
            .any(|s| stem.ends_with(s))
}

/// The bytes of a NumPy `.npy` file (format 1.0) holding `values` as a C-order float32
/// array of `shape`: what `numpy.load` reads without any option.
pub fn npy_f32(shape: &[usize], values: &[f32]) -> Vec<u8> {
    debug_assert_eq!(shape.iter().product::<usize>(), values.len());
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + header length (2) + header, padded with spaces to a
    // multiple of 64 and ended by a newline, as the format asks.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * values.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(
        &u16::try_from(header.len())
            .expect("a short header")
            .to_le_bytes(),
    );
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes an image atomically: to a hidden temporary file in the same folder, then renamed
/// over `path`, so an interrupted run never leaves a torn PNG behind.
pub fn save_png_atomic(path: &Path, img: &image::DynamicImage) -> anyhow::Result<()> {
    use anyhow::Context;
    crate::atomic::write_with(path, |tmp| {
        img.save_with_format(tmp, image::ImageFormat::Png)
            .map_err(std::io::Error::other)
    })
    .with_context(|| format!("cannot write {}", path.display()))
}

/// Mirrors a row-major w×h plane in place: left–right when `h`, top–bottom when `v`.
pub fn mirror(data: &mut [f32], w: usize, height: usize, h: bool, v: bool) {
    assert_eq!(data.len(), w * height, "mirror: not a {w}×{height} plane");
    if h {
        for row in data.chunks_exact_mut(w) {
            row.reverse();
        }
    }
    if v {
        for y in 0..height / 2 {
            let (top, bottom) = data.split_at_mut((height - 1 - y) * w);
            top[y * w..(y + 1) * w].swap_with_slice(&mut bottom[..w]);
        }
    }
}

/// The mirrorings of test-time augmentation, as nnU-Net mirrors a 2-D image: none,
/// left–right, top–bottom and both (each as (left–right, top–bottom)).
pub const TTA_MIRRORS: [(bool, bool); 4] =
    [(false, false), (true, false), (false, true), (true, true)];

/// One image's prediction by an [`Ensemble`].
#[derive(Clone, Debug, PartialEq)]
pub struct EnsemblePrediction {
    /// The mean probability over every member and mirroring; `ms` is the sum of theirs.
    pub mean: Prediction,
    /// Per pixel, the standard deviation (population, over the views) of the probability:
    /// 0 where every member and mirroring agrees, at most 0.5.
    pub uncertainty: Vec<f32>,
}

/// Several checkpoints (cross-validation folds, say) and, with `tta`, every mirroring of
/// each image ([`TTA_MIRRORS`]): the probability maps of all these views are averaged at
/// the image's original size. One checkpoint without TTA is a plain [`Predictor`].
pub struct Ensemble {
    members: Vec<Predictor>,
    tta: bool,
}

impl Ensemble {
    /// Panics on an empty member list (the CLI always has one).
    pub fn new(members: Vec<Predictor>, tta: bool) -> Self {
        assert!(!members.is_empty(), "an ensemble needs a member");
        Self { members, tta }
    }

    pub fn members(&self) -> &[Predictor] {
        &self.members
    }

    /// Predictions averaged per image: members × mirrorings.
    pub fn views(&self) -> usize {
        self.members.len() * if self.tta { TTA_MIRRORS.len() } else { 1 }
    }

    /// Compiles every member's pipelines ([`Predictor::warm_up`]).
    pub fn warm_up(&mut self, n: usize) -> Result<()> {
        self.members.iter_mut().try_for_each(|m| m.warm_up(n))
    }

    /// The mean and per-pixel standard deviation of every view's probability, per image.
    pub fn predict_batch(&mut self, images: &[GrayF32]) -> Result<Vec<EnsemblePrediction>> {
        let mirrors: &[(bool, bool)] = if self.tta {
            &TTA_MIRRORS
        } else {
            &TTA_MIRRORS[..1]
        };
        let views = self.views() as f64;
        // Running sums of p and p² per image and pixel, in f64 so that identical views give
        // exactly zero spread.
        let mut sum: Vec<Vec<f64>> = images.iter().map(|i| vec![0.0; i.w * i.h]).collect();
        let mut sq = sum.clone();
        let mut ms = vec![0.0f64; images.len()];
        for member in &mut self.members {
            for &(h, v) in mirrors {
                let input: Vec<GrayF32> = images
                    .iter()
                    .map(|img| {
                        let mut m = img.clone();
                        mirror(&mut m.data, m.w, m.h, h, v);
                        m
                    })
                    .collect();
                for (i, mut p) in member.predict_batch(&input)?.into_iter().enumerate() {
                    mirror(&mut p.probability, p.width, p.height, h, v);
                    for ((s, q), &x) in sum[i].iter_mut().zip(&mut sq[i]).zip(&p.probability) {
                        *s += f64::from(x);
                        *q += f64::from(x) * f64::from(x);
                    }
                    ms[i] += p.ms;
                }
            }
        }
        Ok(images
            .iter()
            .enumerate()
            .map(|(i, img)| {
                let mean: Vec<f64> = sum[i].iter().map(|s| s / views).collect();
                let uncertainty = sq[i]
                    .iter()
                    .zip(&mean)
                    .map(|(q, m)| (q / views - m * m).max(0.0).sqrt() as f32)
                    .collect();
                EnsemblePrediction {
                    mean: Prediction {
                        width: img.w,
                        height: img.h,
                        probability: mean.iter().map(|&m| m as f32).collect(),
                        ms: ms[i],
                    },
                    uncertainty,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn too_large() -> Error {
        Error::TooLarge {
            op: "test",
            bytes: 2,
            limit: 1,
            what: "storage binding",
        }
    }

    /// A device that fits at most `fit` items per call; records the ranges it was given.
    fn device(
        fit: usize,
        calls: &mut Vec<Range<usize>>,
    ) -> impl FnMut(Range<usize>) -> Result<Vec<usize>> + '_ {
        move |r| {
            calls.push(r.clone());
            if r.len() > fit {
                Err(too_large())
            } else {
                Ok(r.collect())
            }
        }
    }

    #[test]
    fn chunks_halve_until_they_fit_and_keep_every_item_in_order() {
        let mut calls = Vec::new();
        let mut chunk = 8;
        let out = run_in_chunks(11, &mut chunk, device(3, &mut calls)).unwrap();
        assert_eq!(out, (0..11).collect::<Vec<_>>());
        assert_eq!(chunk, 2, "8 → 4 → 2, the first size that fits 3");
        assert_eq!(calls[..3], [0..8, 0..4, 0..2]);
        assert!(calls[3..].iter().all(|r| r.len() <= 2));
    }

    #[test]
    fn the_chunk_that_worked_is_kept_for_the_next_call() {
        let mut calls = Vec::new();
        let mut chunk = usize::MAX;
        run_in_chunks(5, &mut chunk, device(1, &mut calls)).unwrap();
        assert_eq!(chunk, 1);
        calls.clear();
        run_in_chunks(3, &mut chunk, device(1, &mut calls)).unwrap();
        assert_eq!(calls, [0..1, 1..2, 2..3], "no failed try the second time");
    }

    #[test]
    fn a_single_item_that_does_not_fit_is_an_error() {
        let mut calls = Vec::new();
        let mut chunk = 4;
        let err = run_in_chunks(4, &mut chunk, device(0, &mut calls)).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        assert_eq!(calls.last().unwrap().len(), 1);
    }

    #[test]
    fn other_errors_are_not_retried() {
        let mut tries = 0;
        let mut chunk = 4;
        let err = run_in_chunks(4, &mut chunk, |_| -> Result<Vec<u8>> {
            tries += 1;
            Err(Error::ReadBack("lost".into()))
        })
        .unwrap_err();
        assert!(matches!(err, Error::ReadBack(_)));
        assert_eq!((tries, chunk), (1, 4));
    }

    #[test]
    fn mask_and_output_names_are_recognised() {
        for name in [
            "benign (1)_mask.png",
            "benign (1)_mask_1.png",
            "case_GT.bmp",
            "x_prob.png",
            "x_overlay.png",
        ] {
            assert!(is_mask_or_output_name(Path::new(name)), "{name}");
        }
        for name in ["benign (1).png", "case.bmp", "gtx.png", "masked_scan.png"] {
            assert!(!is_mask_or_output_name(Path::new(name)), "{name}");
        }
    }

    #[test]
    fn overlay_outlines_the_prediction_inside_it_at_the_image_size() {
        let img = GrayF32::filled(9, 7, 0.5);
        let pred =
            BinaryMask::from_fn(9, 7, |x, y| (2..7).contains(&x) && (2..5).contains(&y)).unwrap();
        let o = overlay(&img, &pred, None);
        assert_eq!(o.dimensions(), (9, 7));
        assert_eq!(
            o.get_pixel(2, 2).0,
            PREDICTION_COLOUR,
            "corner of the lesion"
        );
        assert_eq!(o.get_pixel(4, 3).0, [128; 3], "interior stays grey");
        assert_eq!(o.get_pixel(1, 2).0, [128; 3], "outside stays grey");
    }

    #[test]
    fn lesion_area_counts_pixels_and_percent() {
        let m = BinaryMask::from_fn(10, 10, |x, _| x < 3).unwrap();
        assert_eq!(lesion_area(&m), (30, 30.0));
    }
}
