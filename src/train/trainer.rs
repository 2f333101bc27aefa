//! The training loop behind `rca-gpu train`: epochs of [`train_step`] over seeded batches,
//! validation in eval mode, Adam with MODEL.md's plateau halving and early stopping, and a
//! run folder that makes an interrupted run resumable exactly.
//!
//! # Run folder
//!
//! - `config.json`: the [`TrainConfig`] (everything that defines the run, with the data
//!   folder and an `--init` checkpoint as absolute paths).
//! - `split.json`: the train/val/test split (names), `data_report.json` for a real data set.
//! - `last.safetensors` + `last.optim.safetensors`: the latest state; the optimizer file's
//!   `rng` field holds the [`LoopState`] (epoch, batch within the epoch, scheduler counters)
//!   as JSON. Batch order and augmentation derive from (seed, epoch, sample), so the epoch
//!   and batch index are the whole random state.
//! - `best.safetensors`: the weights of the lowest validation loss so far.
//! - `metrics.csv`, `metrics.json`: one record per finished epoch, rewritten each epoch from
//!   the history the checkpoint carries (so a resumed run keeps its earlier epochs), and
//!   `curves.png`, the paper's Fig. 8 curves ([`EpochRecord`], [`super::plot`]).
//!
//! Before anything is loaded, [`check_batch_fits`] refuses a batch whose largest buffer
//! exceeds the adapter's storage-binding limit.
//!
//! # Reading back
//!
//! The loss stays on the GPU: it is accumulated there (`ops::add`) and read only every
//! `log_every` steps, at the end of an epoch and on Ctrl-C. A non-finite or exploding value
//! at one of those points stops the run; the last checkpoint on disk is from the last good
//! epoch, because a checkpoint is only written after its loss has been read and checked.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::data::{
    AugmentConfig, BatchConfig, Format, LoadOptions, MaskResize, PhantomSource, SampleSource,
    Split, SplitConfig, epoch_batches, load_dataset,
};
use crate::metrics::{BinaryMask, PostProcess, evaluate};
use crate::model::{Mode, Model, ModelConfig, Variant};
use crate::nn::Params;
use crate::train::checkpoint::{
    self, NamedTensor, OptimizerState, load_model, load_optimizer, named_tensors, save_model,
    save_optimizer, values_for,
};
use crate::train::{Adam, train_step};
use crate::{Gpu, Tensor, no_grad, ops};

/// A loss above this (the BCE-Dice loss starts near 1) means the run has diverged.
pub const EXPLODING_LOSS: f32 = 1e3;
/// The learning rate is never halved below this (MODEL.md).
pub const MIN_LR: f32 = 1e-6;

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
    pub skip_bad: bool,
    /// Number of phantoms when `data` is None.
    pub phantoms: usize,
    /// Epochs without validation-loss improvement before the learning rate is halved.
    pub patience: usize,
    /// Epochs without validation-loss improvement before training stops.
    pub early_stop: usize,
    /// Training augmentation (flips, rotation, scale, intensity, speckle).
    pub augment: bool,
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

fn default_bn_momentum() -> f32 {
    crate::nn::Bn::MOMENTUM
}

impl TrainConfig {
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

/// The largest single GPU buffer, in bytes, that one training step of `model` at batch
/// `batch` allocates: every buffer must fit one storage binding, and training cannot split
/// a batch (train-mode BN couples its samples), so this decides the largest usable batch.
///
/// Counted by running the network on shapes ([`Model::largest_training_buffer`]), and held
/// to `PoolStats::largest_request` after a real step in `tests/`.
pub fn largest_buffer_bytes(model: &Model, batch: usize) -> u64 {
    model.largest_training_buffer(batch)
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

/// The loop's position and scheduler counters, stored in the optimizer file's `rng` field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    /// Epochs finished.
    pub epoch: usize,
    /// Batches of epoch `epoch` already trained (non-zero only after an interrupt).
    pub batch: usize,
    /// Sum of the batch losses so far in the unfinished epoch.
    pub loss_sum: f64,
    /// Metric sums of the logged training batches so far in the unfinished epoch (absent
    /// from an older checkpoint's loop state: its partial epoch then scores only the
    /// batches trained after resuming).
    #[serde(default)]
    pub train: MetricSums,
    pub seconds: f64,
    pub best_val_loss: Option<f64>,
    pub best_epoch: usize,
    /// Epochs since the last improvement (early stopping) and since the last improvement
    /// or halving (plateau).
    pub since_best: usize,
    pub since_lr_change: usize,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Finished,
    EarlyStopped { best_epoch: usize },
    Interrupted { epoch: usize, batch: usize },
}

/// What `run` returns.
pub struct RunSummary {
    pub outcome: Outcome,
    pub history: Vec<EpochRecord>,
    pub seconds: f64,
}

/// The training and validation data with their split.
struct Data {
    source: Arc<dyn SampleSource>,
    train: Vec<usize>,
    val: Vec<usize>,
}

/// Load the data (or generate the phantom source), make or reload the split.
fn prepare_data(cfg: &TrainConfig, out: &Path, resume: bool) -> anyhow::Result<Data> {
    let split_path = out.join("split.json");
    let (source, split): (Arc<dyn SampleSource>, Split) = match &cfg.data {
        None => {
            let src = cfg.phantom_source().expect("no data folder: a phantom run");
            let split = if resume {
                Split::load(&split_path)?
            } else {
                src.split(&SplitConfig {
                    seed: cfg.seed,
                    ..Default::default()
                })?
            };
            (Arc::new(src), split)
        }
        Some(dir) => {
            let opts = LoadOptions {
                format: cfg.format,
                skip_bad: cfg.skip_bad,
                size: cfg.size,
                mask_resize: MaskResize::AreaThreshold,
                ..Default::default()
            };
            let ds = load_dataset(dir, &opts)
                .with_context(|| format!("cannot load the data set at {}", dir.display()))?;
            if ds.samples.is_empty() {
                bail!(
                    "the data set at {} has no usable image/mask pairs (see the report: `rca-gpu data {}`)",
                    dir.display(),
                    dir.display()
                );
            }
            eprintln!("{}", ds.report);
            ds.report.save(&out.join("data_report.json"))?;
            let split = if resume {
                Split::load(&split_path)?
            } else {
                ds.split(&SplitConfig {
                    seed: cfg.seed,
                    ..Default::default()
                })?
            };
            (Arc::new(ds), split)
        }
    };
    if !resume {
        split.save(&split_path)?;
    }
    let idx = split.resolve(source.as_ref(), &split_path)?;
    if idx.train.is_empty() || idx.val.is_empty() {
        bail!(
            "{} gives {} training and {} validation images: too few to train (need at least one of each)",
            source.describe(),
            idx.train.len(),
            idx.val.len()
        );
    }
    Ok(Data {
        source,
        train: idx.train,
        val: idx.val,
    })
}

fn moments_from(
    gpu: &Gpu,
    params: &Params,
    adam: &mut Adam,
    state: &OptimizerState,
) -> anyhow::Result<()> {
    let find = |list: &[NamedTensor], name: &str| -> anyhow::Result<Tensor> {
        let t = list
            .iter()
            .find(|t| t.name == name)
            .with_context(|| format!("optimizer state has no moment for '{name}'"))?;
        Ok(Tensor::from_vec(gpu, t.shape.as_slice(), &t.data)?)
    };
    for ((info, _), mv) in params.iter().zip(adam.moments.iter_mut()) {
        if mv.is_some() {
            *mv = Some((find(&state.m, &info.name)?, find(&state.v, &info.name)?));
        }
    }
    adam.step = u32::try_from(state.step).context("Adam step count overflows")?;
    adam.lr = state.lr;
    Ok(())
}

fn save_last(
    out: &Path,
    mc: &ModelConfig,
    params: &Params,
    adam: &Adam,
    state: &LoopState,
    history: &[EpochRecord],
) -> anyhow::Result<()> {
    let path = out.join("last.safetensors");
    let hist = serde_json::to_value(history)?;
    let sha = save_model(&path, mc, state.epoch, &hist, &named_tensors(params)?)?;
    let (mut m, mut v) = (Vec::new(), Vec::new());
    for ((info, _), mv) in params.iter().zip(&adam.moments) {
        if let Some((mt, vt)) = mv {
            m.push(NamedTensor {
                name: info.name.clone(),
                shape: info.shape.clone(),
                data: mt.to_vec()?,
            });
            v.push(NamedTensor {
                name: info.name.clone(),
                shape: info.shape.clone(),
                data: vt.to_vec()?,
            });
        }
    }
    save_optimizer(
        &path,
        &sha,
        &OptimizerState {
            step: u64::from(adam.step),
            lr: adam.lr,
            rng: serde_json::to_string(state)?,
            m,
            v,
        },
    )?;
    Ok(())
}

/// Write `metrics.json` and `metrics.csv` from the whole history.
pub fn write_metrics(out: &Path, history: &[EpochRecord]) -> anyhow::Result<()> {
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
    super::plot::write_curves(&out.join("curves.png"), history)
        .with_context(|| format!("cannot write {}", out.join("curves.png").display()))?;
    Ok(())
}

fn check_loss(what: &str, loss: f64, epoch: usize, out: &Path) -> anyhow::Result<()> {
    if !loss.is_finite() || loss > f64::from(EXPLODING_LOSS) {
        bail!(
            "{what} is {loss} in epoch {epoch}: training diverged (try a lower --lr). Stopped \
             without saving; {} holds the last good state",
            out.join("last.safetensors").display()
        );
    }
    Ok(())
}

/// Validation in eval mode (running BN statistics), no tape: the mean loss and the metric
/// means over every validation image.
fn validate(
    gpu: &Gpu,
    model: &Model,
    params: &mut Params,
    data: &Data,
    cfg: &TrainConfig,
) -> anyhow::Result<(f64, MetricSums)> {
    let bc = BatchConfig::evaluation(cfg.batch);
    let (mut loss, mut sums, mut n) = (0.0, MetricSums::default(), 0usize);
    for b in epoch_batches(data.source.clone(), &data.val, &bc, 0) {
        let shape = [b.n, 1, b.size, b.size];
        let x = Tensor::from_vec(gpu, shape, &b.images)?;
        let y = Tensor::from_vec(gpu, shape, &b.masks)?;
        let (l, logits) = no_grad(|| -> crate::Result<(f32, Vec<f32>)> {
            let logits = model.forward(params, &x, Mode::Eval)?;
            let l = ops::bce_dice_loss(&logits, &y)?.to_scalar()?;
            Ok((l, logits.to_vec()?))
        })?;
        sums.add_batch(&logits, &b.masks, b.n, b.size)?;
        loss += f64::from(l) * b.n as f64;
        n += b.n;
    }
    Ok((loss / n.max(1) as f64, sums.means()))
}

/// Train (or resume) the run in `out`. `stop` is polled after every step: when set, the
/// step finishes, the last checkpoint is saved and the run returns `Interrupted`.
pub fn run(
    gpu: &Gpu,
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    stop: &AtomicBool,
) -> anyhow::Result<RunSummary> {
    let t_run = Instant::now();
    let mc = cfg.model_config()?;
    let mut model = Model::new(mc);
    model.bn_momentum = cfg.bn_momentum;
    check_batch_fits(gpu, &model, cfg.batch)?;
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let data = prepare_data(cfg, out, resume)?;
    let config_path = out.join("config.json");
    crate::atomic::write(&config_path, serde_json::to_string_pretty(cfg)?)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let last = out.join("last.safetensors");
    let (mut params, mut adam, mut state, mut history) = if resume {
        let ck = load_model(&last, Some(&mc))?;
        let params = model
            .spec
            .load(gpu, &values_for(&last, &ck, &model.spec)?)?;
        let opt = load_optimizer(&last, &ck.sha256)?;
        let mut adam = Adam::new(&params, cfg.lr)?;
        moments_from(gpu, &params, &mut adam, &opt)?;
        let state: LoopState = serde_json::from_str(&opt.rng).with_context(|| {
            format!(
                "{}: the loop state is unreadable",
                checkpoint::optimizer_path(&last).display()
            )
        })?;
        let history: Vec<EpochRecord> = serde_json::from_value(ck.history.clone())
            .with_context(|| format!("{}: the metric history is unreadable", last.display()))?;
        eprintln!(
            "resuming {} at epoch {} (batch {}), Adam step {}, lr {:e}",
            out.display(),
            state.epoch + 1,
            state.batch,
            adam.step,
            adam.lr
        );
        (params, adam, state, history)
    } else if let Some(init) = &cfg.init {
        // Fine-tuning: the weights and BN running statistics of another run, with a fresh
        // optimizer at epoch 0.
        if let Some(want) = &cfg.init_sha256 {
            let sha = file_sha256(init)?;
            if &sha != want {
                bail!(
                    "{} changed since the run was configured (SHA-256 {sha}, expected {want})",
                    init.display()
                );
            }
        }
        let ck = load_model(init, Some(&mc))
            .with_context(|| format!("--init: cannot use {}", init.display()))?;
        let params = model.spec.load(gpu, &values_for(init, &ck, &model.spec)?)?;
        let adam = Adam::new(&params, cfg.lr)?;
        eprintln!(
            "starting from the weights of {} (epoch {} of its run)",
            init.display(),
            ck.epoch
        );
        (params, adam, LoopState::default(), Vec::new())
    } else {
        let params = model.spec.init(gpu, cfg.seed)?;
        let adam = Adam::new(&params, cfg.lr)?;
        (params, adam, LoopState::default(), Vec::new())
    };
    eprintln!(
        "{} F={} S={}: {} parameters; {} training, {} validation images from {}",
        cfg.variant,
        cfg.width,
        cfg.size,
        model.spec.trainable_count(),
        data.train.len(),
        data.val.len(),
        data.source.describe()
    );
    let bc = BatchConfig {
        batch_size: cfg.batch,
        shuffle: true,
        drop_last: data.train.len() >= cfg.batch,
        seed: cfg.seed,
        augment: cfg.augment.then(AugmentConfig::default),
        ..Default::default()
    };
    let log_every = cfg.log_every.max(1);
    while state.epoch < cfg.epochs {
        let epoch = state.epoch; // 0-based, as the batcher counts
        let t0 = Instant::now();
        let iter = epoch_batches(data.source.clone(), &data.train, &bc, epoch as u64);
        let nbatches = iter.len();
        let bar = indicatif::ProgressBar::new(nbatches as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, cfg.epochs));
        bar.set_position(state.batch as u64);
        let mut loss_acc: Option<Tensor> = None;
        let mut images = 0usize;
        let skip = state.batch;
        let mut interrupted = false;
        for (k, b) in iter.enumerate().skip(skip) {
            let shape = [b.n, 1, b.size, b.size];
            let x = Tensor::from_vec(gpu, shape, &b.images)?;
            let y = Tensor::from_vec(gpu, shape, &b.masks)?;
            let (loss, logits) = train_step(&model, &mut params, &mut adam, &x, &y)?;
            loss_acc = Some(match loss_acc {
                None => loss.clone(),
                Some(acc) => no_grad(|| ops::add(&acc, &loss))?,
            });
            images += b.n;
            state.batch = k + 1;
            let read_now = (k + 1) % log_every == 0 || k + 1 == nbatches;
            if read_now {
                let l = loss.to_scalar()?;
                check_loss("the training loss", f64::from(l), epoch + 1, out)?;
                // Scored on the logged batches only: a sample of the epoch.
                state
                    .train
                    .add_batch(&logits.to_vec()?, &b.masks, b.n, b.size)?;
                let ips = images as f64 / (t0.elapsed().as_secs_f64() + 1e-9);
                bar.set_message(format!("loss {l:.4} {ips:.1} img/s"));
            }
            bar.set_position(state.batch as u64);
            if stop.load(Ordering::SeqCst) && k + 1 < nbatches {
                interrupted = true;
                break;
            }
        }
        bar.finish_and_clear();
        let sum = match &loss_acc {
            Some(t) => f64::from(t.to_scalar()?),
            None => 0.0,
        };
        // The mean of this session's part of the epoch, so that the limit does not depend
        // on the number of batches.
        let taken = (state.batch - skip).max(1) as f64;
        check_loss("the training loss", sum / taken, epoch + 1, out)?;
        state.loss_sum += sum;
        state.seconds += t0.elapsed().as_secs_f64();
        if interrupted {
            save_last(out, &mc, &params, &adam, &state, &history)?;
            return Ok(RunSummary {
                outcome: Outcome::Interrupted {
                    epoch: epoch + 1,
                    batch: state.batch,
                },
                history,
                seconds: t_run.elapsed().as_secs_f64(),
            });
        }
        let t_val = Instant::now();
        let (val_loss, val) = validate(gpu, &model, &mut params, &data, cfg)?;
        check_loss("the validation loss", val_loss, epoch + 1, out)?;
        // Training time (interrupted parts included) plus validation.
        let seconds = state.seconds + t_val.elapsed().as_secs_f64();
        let train = state.train.means();
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: state.loss_sum / nbatches.max(1) as f64,
            train_dice: train.dice,
            val_loss,
            val_dice: val.dice,
            val_iou: val.iou,
            lr: adam.lr,
            seconds,
            images_per_s: (nbatches * cfg.batch) as f64 / state.seconds.max(1e-9),
            train_iou: train.iou,
            train_miou: train.miou,
            train_precision: train.precision,
            train_recall: train.recall,
            train_accuracy: train.accuracy,
            train_mae: train.mae,
            train_ahd: train.ahd,
            val_miou: val.miou,
            val_precision: val.precision,
            val_recall: val.recall,
            val_accuracy: val.accuracy,
            val_mae: val.mae,
            val_ahd: val.ahd,
        };
        eprintln!(
            "epoch {:3}/{}  train loss {:.4}  val loss {:.4} Dice {:.4} IoU {:.4} mIoU {:.4} AHD {:.2}  lr {:.1e}  {:.1} s",
            record.epoch,
            cfg.epochs,
            record.train_loss,
            val_loss,
            val.dice,
            val.iou,
            val.miou,
            val.ahd,
            record.lr,
            seconds
        );
        history.push(record);
        // Scheduler and early stopping (Keras ReduceLROnPlateau / EarlyStopping).
        let improved = state.best_val_loss.is_none_or(|b| val_loss < b);
        if improved {
            state.best_val_loss = Some(val_loss);
            state.best_epoch = epoch + 1;
            state.since_best = 0;
            state.since_lr_change = 0;
            let hist = serde_json::to_value(&history)?;
            save_model(
                &out.join("best.safetensors"),
                &mc,
                epoch + 1,
                &hist,
                &named_tensors(&params)?,
            )?;
        } else {
            state.since_best += 1;
            state.since_lr_change += 1;
            if state.since_lr_change >= cfg.patience && adam.lr > MIN_LR {
                adam.lr = (adam.lr * 0.5).max(MIN_LR);
                state.since_lr_change = 0;
                eprintln!(
                    "validation loss has not improved for {} epochs: learning rate halved to {:.1e}",
                    cfg.patience, adam.lr
                );
            }
        }
        state.epoch += 1;
        state.batch = 0;
        state.loss_sum = 0.0;
        state.train = MetricSums::default();
        state.seconds = 0.0;
        save_last(out, &mc, &params, &adam, &state, &history)?;
        write_metrics(out, &history)?;
        if state.since_best >= cfg.early_stop {
            eprintln!(
                "early stopping: no validation-loss improvement for {} epochs; best epoch {} (best.safetensors)",
                cfg.early_stop, state.best_epoch
            );
            return Ok(RunSummary {
                outcome: Outcome::EarlyStopped {
                    best_epoch: state.best_epoch,
                },
                history,
                seconds: t_run.elapsed().as_secs_f64(),
            });
        }
        if stop.load(Ordering::SeqCst) {
            return Ok(RunSummary {
                outcome: Outcome::Interrupted {
                    epoch: state.epoch,
                    batch: 0,
                },
                history,
                seconds: t_run.elapsed().as_secs_f64(),
            });
        }
    }
    Ok(RunSummary {
        outcome: Outcome::Finished,
        history,
        seconds: t_run.elapsed().as_secs_f64(),
    })
}
