//! What defines a run: [`TrainConfig`], written to the run folder's `config.json`, the
//! comparison `--resume` makes against it, and the helpers derived from it (the model
//! configuration, the phantom source, the SHA-256 that pins an `--init` checkpoint).
//!
//! Apart from the training loop so that `rca-gpu eval` and `rca-gpu train`'s argument
//! handling can read a run's configuration without depending on the loop.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::data::split::Fold;
use crate::data::{Format, Pairing, PhantomSource};
use crate::model::{ModelConfig, Variant};

/// Everything that defines a run; written to `config.json`. A resumed run must match it in
/// every field but `epochs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub variant: String,
    pub width: usize,
    pub size: usize,
    pub batch: usize,
    pub epochs: usize,
    pub lr: f32,
    pub seed: u64,
    /// Data-set folder, absolute (so that `--resume` and `eval` work from any directory;
    /// older runs stored it as given, see `rca-gpu train --resume`); None trains on the
    /// built-in phantoms.
    pub data: Option<PathBuf>,
    pub format: Option<Format>,
    /// `--image-pattern` / `--mask-pattern` pairing of `data`'s files (None: the layout's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_pattern: Option<String>,
    /// Test on this fold (`--fold K --folds N`) instead of a random 30 %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold: Option<Fold>,
    pub skip_bad: bool,
    /// Number of phantoms when `data` is None.
    pub phantoms: usize,
    /// Epochs without validation-loss improvement before the learning rate is halved.
    pub patience: usize,
    /// Epochs without validation-loss improvement before training stops.
    pub early_stop: usize,
    /// Training augmentation (flips, rotation, scale, intensity, speckle).
    pub augment: bool,
    /// Share of training scans replaced by a lesion-free view of themselves (a crop beside
    /// the lesion with an empty mask), for data sets without lesion-free scans.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lesion_free: f32,
    /// Read the loss back every this many steps (for the progress bar).
    pub log_every: usize,
    /// The checkpoint whose weights and BN running statistics the run started from
    /// (`--init`, fine-tuning), absolute; None starts from the seeded initialisation.
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// SHA-256 of the `init` file as it was when the run started (`sha256sum` compatible).
    #[serde(default)]
    pub init_sha256: Option<String>,
    /// BN running-statistics momentum (MODEL.md: 0.99; the phantom demo uses 0.9, see
    /// `cli::train`). Runs from before the option have 0.99.
    #[serde(default = "default_bn_momentum")]
    pub bn_momentum: f32,
}

fn is_zero(v: &f32) -> bool {
    *v == 0.0
}

fn default_bn_momentum() -> f32 {
    crate::nn::Bn::MOMENTUM
}

/// The most phantoms a run may ask for: they are generated on the fly, but a split lists
/// every name.
pub const MAX_PHANTOMS: usize = 1_000_000;

impl TrainConfig {
    /// A run folder's `config.json`, parsed and [checked](Self::check) as a resume.
    pub fn parse(text: &str) -> anyhow::Result<TrainConfig> {
        let cfg: TrainConfig = serde_json::from_str(text)?;
        cfg.check(true)?;
        Ok(cfg)
    }

    /// Refuses settings no run can have (from the command line, or a `config.json` edited by
    /// hand), each with the option it comes from. `resume`: `epochs` may be 0 (a resume
    /// that only finishes an interrupted epoch).
    pub fn check(&self, resume: bool) -> anyhow::Result<()> {
        self.model_config()?;
        self.pairing()?;
        if let Some(fold) = self.fold {
            Fold::new(fold.k, fold.of)?;
        }
        if self.batch == 0 || self.epochs == 0 && !resume {
            bail!("--batch and --epochs must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("--lr {} is not a positive number", self.lr);
        }
        if !(0.0..1.0).contains(&self.bn_momentum) {
            bail!(
                "--bn-momentum {} is outside [0, 1): it is the weight of the old running statistics",
                self.bn_momentum
            );
        }
        if !(0.0..=1.0).contains(&self.lesion_free) {
            bail!(
                "--lesion-free {} is outside [0, 1]: it is a share of the training scans",
                self.lesion_free
            );
        }
        if self.lesion_free > 0.0 && !self.augment {
            bail!("--lesion-free is an augmentation: it cannot be combined with --no-augment");
        }
        if self.data.is_none() && !(2..=MAX_PHANTOMS).contains(&self.phantoms) {
            bail!(
                "--phantoms {} is outside 2 to {MAX_PHANTOMS} (training and validation need one \
                 image each)",
                self.phantoms
            );
        }
        Ok(())
    }

    /// The fields that differ between two configs, as "name: a ≠ b" (ignoring `epochs`).
    pub fn differences(&self, other: &TrainConfig) -> Vec<String> {
        let a = serde_json::to_value(self).unwrap_or_default();
        let b = serde_json::to_value(other).unwrap_or_default();
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
            return vec!["(unreadable config)".into()];
        };
        a.iter()
            .filter(|(k, _)| k.as_str() != "epochs")
            .filter(|(k, v)| b.get(k.as_str()) != Some(v))
            .map(|(k, v)| {
                format!(
                    "{k}: run folder has {v}, asked for {}",
                    b.get(k.as_str()).cloned().unwrap_or_default()
                )
            })
            .collect()
    }

    /// The built-in phantoms a run without a data folder trains on (None with `data`); one
    /// function, so that `rca-gpu eval` regenerates exactly the images the run was split on.
    pub fn phantom_source(&self) -> Option<PhantomSource> {
        self.data.is_none().then_some(PhantomSource {
            seed: self.seed,
            count: self.phantoms,
            size: self.size,
        })
    }

    /// How masks pair with images in `data`.
    pub fn pairing(&self) -> anyhow::Result<Pairing> {
        Ok(Pairing::parse(
            self.image_pattern.as_deref(),
            self.mask_pattern.as_deref(),
        )?)
    }

    pub fn model_config(&self) -> anyhow::Result<ModelConfig> {
        let variant: Variant = self.variant.parse().map_err(anyhow::Error::msg)?;
        ModelConfig::new(variant, self.width, self.size).map_err(anyhow::Error::msg)
    }
}

/// SHA-256 of a file's bytes, in hex (what `sha256sum` prints).
pub fn file_sha256(path: &Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVED: &str = r#"{"variant": "unet", "width": 1, "size": 32, "batch": 2, "epochs": 1,
        "lr": 0.001, "seed": 42, "data": null, "format": null, "skip_bad": false,
        "phantoms": 4, "patience": 5, "early_stop": 15, "augment": true, "log_every": 10,
        "init": null, "init_sha256": null, "bn_momentum": 0.9}"#;

    fn edited(field: &str, value: &str) -> String {
        let mut v: serde_json::Value = serde_json::from_str(SAVED).unwrap();
        v[field] = serde_json::from_str(value).unwrap();
        v.to_string()
    }

    #[test]
    fn a_config_edited_out_of_range_is_refused_naming_the_setting() {
        TrainConfig::parse(SAVED).unwrap();
        for (field, value, says) in [
            ("width", "4611686018427387904", "width F"),
            ("size", "1073741824", "input size"),
            ("variant", "\"resnet\"", "resnet"),
            ("batch", "0", "--batch"),
            ("lr", "-1.0", "--lr"),
            ("bn_momentum", "1.0", "--bn-momentum"),
            ("phantoms", "1", "--phantoms"),
            ("phantoms", "10000000000", "--phantoms"),
            ("lesion_free", "2.0", "--lesion-free"),
            ("fold", r#"{"k": 7, "of": 5}"#, "fold 7 of 5"),
            ("image_pattern", "\"no-braces\"", "{id}"),
        ] {
            let err = TrainConfig::parse(&edited(field, value)).unwrap_err();
            assert!(
                format!("{err:#}").contains(says),
                "{field} = {value}: {err:#}"
            );
        }
        // A resume may finish an interrupted epoch with no epochs to add.
        TrainConfig::parse(&edited("epochs", "0")).unwrap();
    }
}
