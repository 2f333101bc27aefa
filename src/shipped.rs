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

/// Puts already-read checkpoints (one per source, in order) on `gpu` as one [`Ensemble`].
pub fn ensemble(
    gpu: &Gpu,
    sources: &[ModelSource],
    checkpoints: &[ModelCheckpoint],
    tta: bool,
) -> Result<Ensemble, LoadError> {
    let members = sources
        .iter()
        .zip(checkpoints)
        .map(|(src, ck)| Predictor::from_checkpoint(gpu, src.path(), ck))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Ensemble::new(members, tta))
}
