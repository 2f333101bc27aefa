//! The model shipped with rca-gpu, built into the binary: what `rca-gpu infer` and
//! `rca-gpu eval` use when no `--checkpoint` is given. Its model card, with the data, the
//! split, the command that trained it and its test-fold figures, is `models/README.md`.

use std::path::{Path, PathBuf};

use crate::Gpu;
use crate::infer::{Ensemble, LoadError, Predictor};
use crate::train::checkpoint::{CheckpointError, ModelCheckpoint, load_model, load_model_bytes};

/// Where the shipped checkpoint lives in the repository (the name errors and outputs use).
pub const FILE: &str = "models/rca-iunet-busbra-f4-s64.safetensors";

/// Its bytes.
pub const BYTES: &[u8] = include_bytes!("../models/rca-iunet-busbra-f4-s64.safetensors");

/// How `infer` and `eval` run the shipped model unless told otherwise (`--no-tta`,
/// `--min-peak`): each image's four mirrorings averaged, and every region whose most
/// confident pixel stays under 0.8 dropped. Chosen on BUS-BRA's five test folds, one model
/// of the same recipe per fold (models/README.md): mean Dice 0.812 against 0.804 with the
/// paper's post-processing alone, and 11.7 % of lesion-free views marked against 35.6 %.
pub const SETTING: Setting = Setting {
    tta: true,
    min_peak: 0.8,
};

/// Test-time mirroring and the peak a region must reach to be kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Setting {
    pub tta: bool,
    pub min_peak: f32,
}

/// The paper's: one prediction per image, no peak.
pub const PAPER: Setting = Setting {
    tta: false,
    min_peak: 0.0,
};

/// The built-in checkpoint, checked like a file (format, version, checksum).
pub fn load() -> Result<ModelCheckpoint, CheckpointError> {
    load_model_bytes(BYTES, Path::new(FILE), None)
}

/// A model named by `--checkpoint FILE`, or the shipped one when none was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    File(PathBuf),
    Shipped,
}

impl ModelSource {
    /// Every `--checkpoint` given, or the shipped model when none was.
    pub fn from_args(checkpoints: &[PathBuf]) -> Vec<Self> {
        if checkpoints.is_empty() {
            vec![ModelSource::Shipped]
        } else {
            checkpoints.iter().cloned().map(ModelSource::File).collect()
        }
    }

    /// The setting that applies where the user names none: the shipped model's [`SETTING`]
    /// when it is the model, the paper's for checkpoints (their own recipe chose nothing).
    pub fn default_setting(sources: &[Self]) -> Setting {
        if sources.iter().all(|s| *s == ModelSource::Shipped) {
            SETTING
        } else {
            PAPER
        }
    }

    /// One model's [`describe`](Self::describe), or "an ensemble of N checkpoints (…)".
    pub fn describe_all(sources: &[Self]) -> String {
        match sources {
            [one] => one.describe(),
            many => format!(
                "an ensemble of {} checkpoints ({})",
                many.len(),
                Self::paths(many).join(", ")
            ),
        }
    }

    /// Each source's [`path`](Self::path), as text.
    pub fn paths(sources: &[Self]) -> Vec<String> {
        sources
            .iter()
            .map(|s| s.path().display().to_string())
            .collect()
    }

    /// Reads and checks the checkpoint.
    pub fn load(&self) -> Result<ModelCheckpoint, CheckpointError> {
        match self {
            ModelSource::File(p) => load_model(p, None),
            ModelSource::Shipped => load(),
        }
    }

    /// The path that names the checkpoint in errors and in outputs.
    pub fn path(&self) -> &Path {
        match self {
            ModelSource::File(p) => p,
            ModelSource::Shipped => Path::new(FILE),
        }
    }

    /// The checkpoint's file, or the shipped model's name, for messages.
    pub fn describe(&self) -> String {
        match self {
            ModelSource::File(p) => p.display().to_string(),
            ModelSource::Shipped => format!("the shipped model ({FILE}, built in)"),
        }
    }

    /// The run folder the checkpoint belongs to (the file's folder); None for the shipped
    /// model, which has none on the user's machine.
    pub fn run_dir(&self) -> Option<&Path> {
        match self {
            ModelSource::File(p) => Some(
                p.parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new(".")),
            ),
            ModelSource::Shipped => None,
        }
    }
}

/// Models whose forward pass of one image takes fewer FLOPs run with fewer, quicker
/// pipelines ([`Gpu::set_few_pipelines`]) when they have at most
/// [`FEW_PIPELINES_UP_TO_IMAGES`] images to segment. The shipped model (64², F 4: 0.07
/// GFLOP) is one: its first inference on lavapipe then compiles 18 pipelines in about
/// 1.5 s instead of 22 in 3.6–3.8 s (cold `infer` of one image, alternating: 4.1–5.4 s
/// with all of them, 1.8–2.1 s with the few). At 256², F 16 (12 GFLOP) the large blocks
/// save about 80 ms of a 560 ms inference.
pub const FEW_PIPELINES_BELOW_FLOPS: f64 = 0.25e9;

/// Once compiled, the few pipelines cost the shipped model about 20 ms more per image (its
/// four mirrorings as one batch of four: 73–86 against 44–62 ms, most of it the depthwise
/// convolution whose taps are no longer constants). Up to this many images the 2–3 s
/// they save at the first run (without Mesa's shader cache) outweigh that; a larger job
/// compiles the fast pipelines.
pub const FEW_PIPELINES_UP_TO_IMAGES: usize = 16;

/// Whether a job of `images` images with a model of `flops` per image's forward pass
/// should compile the few pipelines.
fn few_pipelines_pay(flops: f64, images: usize) -> bool {
    flops < FEW_PIPELINES_BELOW_FLOPS && images <= FEW_PIPELINES_UP_TO_IMAGES
}

/// Puts already-read checkpoints (one per source, in order) on `gpu` as one [`Ensemble`]
/// for a job of `images` images; on a device that runs nothing else, since a small enough
/// ensemble on a short enough job makes it compile fewer pipelines
/// ([`FEW_PIPELINES_BELOW_FLOPS`], [`FEW_PIPELINES_UP_TO_IMAGES`]).
pub fn ensemble(
    gpu: &Gpu,
    sources: &[ModelSource],
    checkpoints: &[ModelCheckpoint],
    tta: bool,
    images: usize,
) -> Result<Ensemble, LoadError> {
    let members = sources
        .iter()
        .zip(checkpoints)
        .map(|(src, ck)| Predictor::from_checkpoint(gpu, src.path(), ck))
        .collect::<Result<Vec<_>, _>>()?;
    let flops = members
        .iter()
        .map(Predictor::forward_flops)
        .fold(0.0, f64::max);
    if few_pipelines_pay(flops, images) {
        gpu.set_few_pipelines(true);
    }
    Ok(Ensemble::new(members, tta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_small_model_on_a_short_job_compiles_the_few_pipelines() {
        let shipped = 0.07e9;
        assert!(few_pipelines_pay(shipped, 1));
        assert!(few_pipelines_pay(shipped, FEW_PIPELINES_UP_TO_IMAGES));
        assert!(!few_pipelines_pay(shipped, FEW_PIPELINES_UP_TO_IMAGES + 1));
        assert!(!few_pipelines_pay(12e9, 1));
    }
}
