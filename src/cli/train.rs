//! `rca-gpu train`: train a model on a data set folder or, without `--data`, on the
//! built-in phantoms generated on the fly, into a resumable run folder (see
//! [`crate::train::trainer`] for its contents).
//!
//! Every option is optional on the command line so that `--resume` can tell what was asked
//! for from what was left out: left-out options take the run folder's `config.json` values
//! when resuming and the defaults below otherwise; an explicit option that contradicts the
//! run folder is refused (only `--epochs` may change, to train further).
//!
//! `--init CHECKPOINT` fine-tunes (the paper's Table 4: trained on BUSI, fine-tuned on
//! BUSIS): a fresh run (new Adam state, epoch 0) whose weights and BN running statistics
//! come from the checkpoint. Its variant, width and size become the run's unless given; a
//! contradicting one is refused. Paths in `config.json` are stored absolute.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};

use crate::model::ModelConfig;
use crate::train::checkpoint::load_model;
use crate::train::config::{TrainConfig, file_sha256};
use crate::train::trainer::{self, Outcome};

/// Defaults of the phantom run (S 128, F 4, 160 phantoms → 79 training / 33 validation
/// images, batch 4, 15 epochs, learning rate 3e-3, a quarter of the scans as lesion-free
/// crops, BN momentum 0.9). S 128 keeps a 3 mm lesion in a 50 mm field of view about 8
/// pixels across (at S 64, 4). Measured with the release build on lavapipe (llvmpipe,
/// Mesa 25.0.7) on a 2-core machine, 2026-12-07: 247 s in all (epochs of 15–18 s,
/// validation included); validation Dice 0.676 at epoch 15 (eval mode, threshold 0.5, no
/// post-processing); test split Dice 0.784 with post-processing. 18 epochs (297 s) did no
/// better on simulated images: lesion Dice 0.63 against 0.64, and 3 of 12 lesion-free
/// images marked against none.
pub const DEFAULT_SIZE: usize = 128;
pub const DEFAULT_WIDTH: usize = 4;
pub const DEFAULT_PHANTOMS: usize = 160;
pub const DEFAULT_EPOCHS: usize = 15;
/// Learning rate of the phantom run: its few hundred updates learn faster at 3e-3 than
/// at the paper's 1e-3 (measured at S 128, F 4, 15 epochs: final training loss 0.44
/// against 0.57 after 18 epochs at 1e-3, validation Dice 0.57 vs 0.58, Dice on lesion
/// images of the independent simulation `tools/simulate_bmode.py` 0.61 vs 0.58).
pub const DEFAULT_PHANTOM_LR: f32 = 3e-3;
/// Share of the phantom run's training scans shown as a lesion-free crop beside the lesion
/// (`--lesion-free`), on top of the phantoms without a lesion (one in six). One run each at
/// the defaults above, 2026-12-07: 0.25 against 0 gave validation Dice 0.676 vs 0.612, test
/// Dice 0.784 vs 0.740, Dice on the lesion images of `tools/simulate_bmode.py` 0.636 vs
/// 0.607, and none of its 12 lesion-free images marked against 6.
pub const DEFAULT_PHANTOM_LESION_FREE: f32 = 0.25;
/// BN momentum of the phantom run. The paper's (Keras') 0.99 averages the batch statistics over the
/// last ~100 updates; the whole default run has a few hundred, so eval-mode validation
/// would judge the weights with statistics of much earlier ones (the validation Dice
/// stayed at the share of lesion-free images, 0.15, for 15 epochs at 0.99). 0.9 averages
/// over ~10 updates.
pub const DEFAULT_PHANTOM_BN_MOMENTUM: f32 = 0.9;
/// Batch 4 on phantoms (8 with --data, the paper's): twice the updates per epoch of batch 8
/// in the same time on lavapipe, which the short run needs more than larger batches.
pub const DEFAULT_PHANTOM_BATCH: usize = 4;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Data-set folder (BUSI, BUSIS, BUS-BRA or images/ + masks/); omitted: built-in phantoms.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// How --data is read.
    #[command(flatten)]
    pub layout: super::LayoutArgs,
    /// The test part as a fold (cross-validation).
    #[command(flatten)]
    pub folds: super::FoldArgs,
    /// Model variant: unet, unet+ric, unet+csa, unet+ric+hp, unet+csa+hp, unet+csa+ric or
    /// rca-iunet [default: rca-iunet].
    #[arg(long)]
    pub variant: Option<crate::model::Variant>,
    /// Input side S, a power of two ≥ 32 [default: 128 on phantoms, 256 with --data].
    #[arg(long)]
    pub size: Option<usize>,
    /// Base width F [default: 4 on phantoms, 16 with --data].
    #[arg(long)]
    pub width: Option<usize>,
    /// Batch size [default: 4 on phantoms, 8 with --data].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Epochs in total (a resumed run may ask for more) [default: 15 on phantoms, 100 with --data].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Initial learning rate [default: 3e-3 on phantoms, 1e-3 (the paper's) with --data].
    #[arg(long)]
    pub lr: Option<f32>,
    /// Seed of the split, the initial weights, the batch order and augmentation [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Number of built-in phantoms (without --data) [default: 160].
    #[arg(long)]
    pub phantoms: Option<usize>,
    /// Epochs without validation improvement before the learning rate is halved [default: 5].
    #[arg(long)]
    pub patience: Option<usize>,
    /// Epochs without validation improvement before stopping [default: 15].
    #[arg(long)]
    pub early_stop: Option<usize>,
    /// Train without augmentation.
    #[arg(long)]
    pub no_augment: bool,
    /// Share of training scans (0–1) shown instead as a lesion-free view of themselves: a
    /// crop beside the lesion, at least half the scan's width and height, with an empty
    /// mask. For data sets without normal scans (BUS-BRA), so that the model learns to leave
    /// lesion-free tissue empty [default: 0.25 on phantoms, 0 with --data].
    #[arg(long, value_name = "P")]
    pub lesion_free: Option<f32>,
    /// Read the loss back every N steps for the progress bar [default: 10].
    #[arg(long)]
    pub log_every: Option<usize>,
    /// Skip bad files of --data (listed in the report) instead of failing.
    #[arg(long)]
    pub skip_bad: bool,
    /// Run folder.
    #[arg(long, default_value = "runs/train")]
    pub out: PathBuf,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Start from the weights of this checkpoint (fine-tuning; fresh optimizer, epoch 0).
    /// Its variant, width and size are the run's defaults.
    #[arg(long, value_name = "CHECKPOINT", conflicts_with = "resume")]
    pub init: Option<PathBuf>,
    /// BN running-statistics momentum, the weight of the old value [default: 0.9 on
    /// phantoms, 0.99 (Keras' default, as in the paper) with --data].
    #[arg(long)]
    pub bn_momentum: Option<f32>,
    #[command(flatten)]
    pub adapter: super::AdapterArgs,
}

impl Args {
    /// The run's configuration: `base` (the run folder's, when resuming) overlaid with
    /// what was given explicitly, or `init`'s model (variant, width, size), or the defaults.
    fn config(&self, base: Option<&TrainConfig>, init: Option<&ModelConfig>) -> TrainConfig {
        let data = self
            .data
            .clone()
            .or_else(|| base.and_then(|b| b.data.clone()));
        let real = data.is_some();
        let pick = |given: Option<usize>, old: Option<usize>, phantom: usize, real_d: usize| {
            given.or(old).unwrap_or(if real { real_d } else { phantom })
        };
        TrainConfig {
            variant: self
                .variant
                .map(|v| v.name().to_string())
                .or_else(|| base.map(|b| b.variant.clone()))
                .or_else(|| init.map(|m| m.variant.name().to_string()))
                .unwrap_or_else(|| "rca-iunet".into()),
            width: pick(
                self.width,
                base.map(|b| b.width).or(init.map(|m| m.width)),
                DEFAULT_WIDTH,
                16,
            ),
            size: pick(
                self.size,
                base.map(|b| b.size).or(init.map(|m| m.size)),
                DEFAULT_SIZE,
                256,
            ),
            batch: pick(self.batch, base.map(|b| b.batch), DEFAULT_PHANTOM_BATCH, 8),
            epochs: pick(self.epochs, base.map(|b| b.epochs), DEFAULT_EPOCHS, 100),
            lr: self.lr.or(base.map(|b| b.lr)).unwrap_or(if real {
                1e-3
            } else {
                DEFAULT_PHANTOM_LR
            }),
            seed: self
                .seed
                .or(base.map(|b| b.seed))
                .unwrap_or(super::DEFAULT_SEED),
            format: self.layout.format.or(base.and_then(|b| b.format)),
            image_pattern: self
                .layout
                .image_pattern
                .clone()
                .or_else(|| base.and_then(|b| b.image_pattern.clone())),
            mask_pattern: self
                .layout
                .mask_pattern
                .clone()
                .or_else(|| base.and_then(|b| b.mask_pattern.clone())),
            // Checked in `run` before this is called.
            fold: self
                .folds
                .fold()
                .ok()
                .flatten()
                .or(base.and_then(|b| b.fold)),
            skip_bad: self.skip_bad || base.is_some_and(|b| b.skip_bad),
            phantoms: pick(self.phantoms, base.map(|b| b.phantoms), DEFAULT_PHANTOMS, 0),
            patience: pick(self.patience, base.map(|b| b.patience), 5, 5),
            early_stop: pick(self.early_stop, base.map(|b| b.early_stop), 15, 15),
            augment: !self.no_augment && base.is_none_or(|b| b.augment),
            lesion_free: self
                .lesion_free
                .or(base.map(|b| b.lesion_free))
                .unwrap_or(if real {
                    0.0
                } else {
                    DEFAULT_PHANTOM_LESION_FREE
                }),
            log_every: pick(self.log_every, base.map(|b| b.log_every), 10, 10),
            data,
            init: base.and_then(|b| b.init.clone()),
            init_sha256: base.and_then(|b| b.init_sha256.clone()),
            bn_momentum: self
                .bn_momentum
                .or(base.map(|b| b.bn_momentum))
                .unwrap_or(if real {
                    crate::nn::Bn::MOMENTUM
                } else {
                    DEFAULT_PHANTOM_BN_MOMENTUM
                }),
        }
    }
}

/// The data folder as an absolute path without `..` or links, so that the run folder's
/// `config.json` works from any directory.
fn absolute_data(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(dir)
        .with_context(|| format!("cannot read the data folder {}", dir.display()))
}

/// Check the `--init` checkpoint and make the run start from it: the run's variant, width
/// and size must be the checkpoint's (they are by default).
fn apply_init(args: &Args, path: &Path) -> anyhow::Result<TrainConfig> {
    let abs = std::fs::canonicalize(path)
        .with_context(|| format!("--init: cannot read the checkpoint {}", path.display()))?;
    let ck = load_model(&abs, None)
        .with_context(|| format!("--init: {} is not a usable checkpoint", path.display()))?;
    let mut cfg = args.config(None, Some(&ck.config));
    let mc = cfg.model_config()?;
    let found = (ck.config.variant.name(), ck.config.width, ck.config.size);
    let asked = (mc.variant.name(), mc.width, mc.size);
    if found != asked {
        bail!(
            "--init: {} holds a {} model with F = {} at S = {}, but the run asks for {} with F = {} at S = {}. \
             Leave --variant, --width and --size out to take the checkpoint's",
            abs.display(),
            found.0,
            found.1,
            found.2,
            asked.0,
            asked.1,
            asked.2
        );
    }
    cfg.init_sha256 = Some(file_sha256(&abs)?);
    cfg.init = Some(abs);
    Ok(cfg)
}

pub fn run(mut args: Args) -> anyhow::Result<()> {
    let config_path = args.out.join("config.json");
    args.folds.fold()?;
    args.layout.pairing()?;
    if let Some(dir) = &args.data {
        args.data = Some(absolute_data(dir)?);
    }
    let cfg = if args.resume {
        let text = std::fs::read_to_string(&config_path).with_context(|| {
            format!(
                "--resume: {} has no run to resume (cannot read {})",
                args.out.display(),
                config_path.display()
            )
        })?;
        let mut saved = TrainConfig::parse(&text)
            .with_context(|| format!("{} is not a training config", config_path.display()))?;
        if let Some(dir) = saved.data.as_mut().filter(|d| d.is_relative()) {
            // Older runs stored --data as given; it resolves only from the directory the run
            // was started in, or is named again with --data. Once resolved, the trainer
            // rewrites config.json absolute.
            *dir = match (std::fs::canonicalize(&*dir), &args.data) {
                (Ok(abs), _) => abs,
                (Err(_), Some(given)) => given.clone(),
                (Err(e), None) => bail!(
                    "{} stores the data folder {} relative to the directory the run was \
                     started from, and it is not found from here ({e}): resume from that \
                     directory, or pass --data with the folder",
                    config_path.display(),
                    dir.display()
                ),
            };
        }
        let cfg = args.config(Some(&saved), None);
        let diff = saved.differences(&cfg);
        if !diff.is_empty() {
            bail!(
                "--resume: the options contradict the run in {} ({}); only --epochs may change. \
                 Leave the others out, or train into a new --out folder",
                args.out.display(),
                diff.join("; ")
            );
        }
        cfg
    } else {
        if args.out.join("last.safetensors").exists() {
            bail!(
                "{} already holds a run: continue it with --resume, or choose another --out",
                args.out.display()
            );
        }
        match &args.init {
            Some(path) => apply_init(&args, path)?,
            None => args.config(None, None),
        }
    };
    cfg.check(args.resume)?;
    if let Some(dir) = &cfg.data {
        // Checked before the GPU is opened, so a typo fails at once.
        super::check_data_folder(dir)?;
    }
    let gpu = args.adapter.open()?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // A second Ctrl-C exits at once, for when the GPU hangs.
        ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond interrupt: exiting without saving");
                std::process::exit(130);
            }
            eprintln!("\ninterrupt: finishing the step, then saving the last checkpoint");
        })
        .context("cannot install the Ctrl-C handler")?;
    }
    let summary = trainer::run(&gpu, &cfg, &args.out, args.resume, &stop)?;
    let best = summary
        .history
        .iter()
        .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss));
    match summary.outcome {
        Outcome::Interrupted { epoch, batch } => {
            let at = if batch == 0 {
                format!("after epoch {epoch}")
            } else {
                format!("in epoch {epoch} after batch {batch}")
            };
            eprintln!(
                "interrupted {at}; saved {}. Continue with: rca-gpu train --out {} --resume",
                args.out.join("last.safetensors").display(),
                args.out.display()
            )
        }
        Outcome::EarlyStopped { best_epoch } => {
            eprintln!("stopped early; best epoch {best_epoch}")
        }
        Outcome::Finished => {}
    }
    if let Some(b) = best {
        println!(
            "done in {:.1} s: best epoch {} val loss {:.4} val Dice {:.4} val IoU {:.4} val mIoU {:.4} val AHD {:.2}; run folder {}",
            summary.seconds,
            b.epoch,
            b.val_loss,
            b.val_dice,
            b.val_iou,
            b.val_miou,
            b.val_ahd,
            args.out.display()
        );
        if !matches!(summary.outcome, Outcome::Interrupted { .. }) {
            let best = args.out.join("best.safetensors");
            println!(
                "next: rca-gpu eval --checkpoint {} (the test split), rca-gpu infer --checkpoint {} IMAGES…",
                best.display(),
                best.display()
            );
        }
    }
    if matches!(summary.outcome, Outcome::Interrupted { .. }) {
        return Err(super::Interrupted.into());
    }
    Ok(())
}
