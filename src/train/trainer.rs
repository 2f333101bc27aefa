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
//!
//! # Layout
//!
//! [`run`] drives a [`Trainer`]: [`Trainer::epoch`] trains one epoch (or the rest of an
//! interrupted one), [`Trainer::validate`] scores the validation images,
//! [`Trainer::record`] appends the epoch to the history, [`Trainer::schedule`] applies the
//! plateau halving and keeps the early-stopping counters, [`Trainer::save`] writes the
//! last checkpoint. What the run is ([`super::config`]), what it records
//! ([`super::history`]), what it carries across sessions ([`super::state`]) and whether
//! its batch fits the adapter ([`super::budget`]) live in their own modules.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};

use super::budget::check_batch_fits;
use super::checkpoint::{named_tensors, save_model};
use super::config::TrainConfig;
use super::history::{self, EpochRecord, MetricSums};
use super::lock::RunLock;
use super::state::{LoopState, Start, save_last};
use super::step::{Adam, train_step};
use crate::data::{
    AugmentConfig, BatchConfig, KeptPhantoms, LoadOptions, MaskResize, SampleSource, Split,
    SplitConfig, epoch_batches, load_dataset,
};

/// Memory a phantom run may spend keeping its generated phantoms (images and masks): all of
/// the default run's 160 at 128×128 take 21 MB.
const PHANTOMS_KEPT_BYTES: usize = 512 << 20;
use crate::model::{Model, ModelConfig};
use crate::nn::Params;
use crate::{Gpu, Tensor, no_grad, ops};

/// A loss above this (the BCE-Dice loss starts near 1) means the run has diverged.
pub const EXPLODING_LOSS: f32 = 1e3;
/// The learning rate is never halved below this (MODEL.md).
pub const MIN_LR: f32 = 1e-6;

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
                src.split(&SplitConfig::new(cfg.seed, cfg.fold))?
            };
            (Arc::new(KeptPhantoms::new(src, PHANTOMS_KEPT_BYTES)), split)
        }
        Some(dir) => {
            let opts = LoadOptions {
                format: cfg.format,
                pairing: cfg.pairing()?,
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
                ds.split(&SplitConfig::new(cfg.seed, cfg.fold))?
            };
            (Arc::new(ds), split)
        }
    };
    if !resume {
        split.save(&split_path)?;
        eprintln!("{}", split.describe());
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

/// One session's pass over an epoch's training batches.
pub struct EpochPass {
    /// Batches in the whole epoch.
    pub batches: usize,
    /// Stopped (Ctrl-C) before the epoch's last batch.
    pub interrupted: bool,
}

/// One validation pass.
pub struct Validation {
    /// Mean loss over the validation images.
    pub loss: f64,
    /// Metric means over the validation images.
    pub metrics: MetricSums,
    /// Wall time of the pass.
    pub seconds: f64,
}

/// A run in progress: the model, its parameters and optimizer, the loop state and history
/// that `last.safetensors` carries, and the data.
pub struct Trainer<'a> {
    gpu: &'a Gpu,
    cfg: &'a TrainConfig,
    out: &'a Path,
    mc: ModelConfig,
    model: Model,
    data: Data,
    /// The training batcher's configuration (shuffled, augmented when asked for).
    batches: BatchConfig,
    log_every: usize,
    params: Params,
    adam: Adam,
    /// Where the run stands (what [`run`] loops on).
    pub state: LoopState,
    /// The finished epochs (what [`run`] returns).
    pub history: Vec<EpochRecord>,
    /// The run folder's lock, held as long as the trainer.
    _lock: RunLock,
}

impl<'a> Trainer<'a> {
    /// Set up the run in `out`: refuse a batch that does not fit, load the data and split,
    /// write `config.json`, and load the starting state ([`Start::load`]).
    pub fn new(
        gpu: &'a Gpu,
        cfg: &'a TrainConfig,
        out: &'a Path,
        resume: bool,
    ) -> anyhow::Result<Trainer<'a>> {
        let mc = cfg.model_config()?;
        let mut model = Model::new(mc);
        model.bn_momentum = cfg.bn_momentum;
        check_batch_fits(gpu, &model, cfg.batch)?;
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        // Before anything in the folder is read or written: one writer per run folder.
        let lock = RunLock::acquire(out)?;
        let data = prepare_data(cfg, out, resume)?;
        let config_path = out.join("config.json");
        crate::atomic::write(&config_path, serde_json::to_string_pretty(cfg)?)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        let Start {
            params,
            adam,
            state,
            history,
        } = Start::load(gpu, &model, &mc, cfg, out, resume)?;
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
        let batches = BatchConfig {
            batch_size: cfg.batch,
            shuffle: true,
            drop_last: data.train.len() >= cfg.batch,
            seed: cfg.seed,
            augment: cfg.augment.then(|| AugmentConfig {
                p_lesion_free: cfg.lesion_free,
                ..Default::default()
            }),
            ..Default::default()
        };
        Ok(Trainer {
            gpu,
            cfg,
            out,
            mc,
            model,
            data,
            batches,
            log_every: cfg.log_every.max(1),
            params,
            adam,
            state,
            history,
            _lock: lock,
        })
    }

    /// Train epoch `state.epoch` from batch `state.batch` on, with the progress bar,
    /// polling `stop` after every step. The epoch's loss sum and training time go into the
    /// loop state; the batch index says where an interrupted epoch stopped.
    pub fn epoch(&mut self, stop: &AtomicBool) -> anyhow::Result<EpochPass> {
        let (gpu, cfg, out) = (self.gpu, self.cfg, self.out);
        let epoch = self.state.epoch; // 0-based, as the batcher counts
        let t0 = Instant::now();
        let iter = epoch_batches(
            self.data.source.clone(),
            &self.data.train,
            &self.batches,
            epoch as u64,
        );
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
        bar.set_position(self.state.batch as u64);
        let mut loss_acc: Option<Tensor> = None;
        let mut images = 0usize;
        let skip = self.state.batch;
        let mut interrupted = false;
        for (k, b) in iter.enumerate().skip(skip) {
            let shape = [b.n, 1, b.size, b.size];
            let x = Tensor::from_vec(gpu, shape, &b.images)?;
            let y = Tensor::from_vec(gpu, shape, &b.masks)?;
            let (loss, logits) = train_step(&self.model, &mut self.params, &mut self.adam, &x, &y)?;
            loss_acc = Some(match loss_acc {
                None => loss.clone(),
                Some(acc) => no_grad(|| ops::add(&acc, &loss))?,
            });
            images += b.n;
            self.state.batch = k + 1;
            let read_now = (k + 1) % self.log_every == 0 || k + 1 == nbatches;
            if read_now {
                let l = loss.to_scalar()?;
                check_loss("the training loss", f64::from(l), epoch + 1, out)?;
                // Scored on the logged batches only: a sample of the epoch.
                self.state
                    .train
                    .add_batch(&logits.to_vec()?, &b.masks, b.n, b.size)?;
                let ips = images as f64 / (t0.elapsed().as_secs_f64() + 1e-9);
                bar.set_message(format!("loss {l:.4} {ips:.1} img/s"));
            }
            bar.set_position(self.state.batch as u64);
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
        let taken = (self.state.batch - skip).max(1) as f64;
        check_loss("the training loss", sum / taken, epoch + 1, out)?;
        self.state.loss_sum += sum;
        self.state.seconds += t0.elapsed().as_secs_f64();
        Ok(EpochPass {
            batches: nbatches,
            interrupted,
        })
    }

    /// Validation in eval mode (running BN statistics), no tape: the mean loss and the metric
    /// means over every validation image. A non-finite or exploding loss stops the run.
    pub fn validate(&mut self) -> anyhow::Result<Validation> {
        let t_val = Instant::now();
        let gpu = self.gpu;
        let bc = BatchConfig::evaluation(self.cfg.batch);
        let (mut loss, mut sums, mut n) = (0.0, MetricSums::default(), 0usize);
        // The weights stay as they are through validation: prepare them once.
        let mut folds = crate::nn::Folds::default();
        for b in epoch_batches(self.data.source.clone(), &self.data.val, &bc, 0) {
            let shape = [b.n, 1, b.size, b.size];
            let x = Tensor::from_vec(gpu, shape, &b.images)?;
            let y = Tensor::from_vec(gpu, shape, &b.masks)?;
            let (l, logits) = no_grad(|| -> crate::Result<(f32, Vec<f32>)> {
                let logits = self
                    .model
                    .forward_folded(&mut self.params, &x, &mut folds)?;
                let l = ops::bce_dice_loss(&logits, &y)?.to_scalar()?;
                Ok((l, logits.to_vec()?))
            })?;
            sums.add_batch(&logits, &b.masks, b.n, b.size)?;
            loss += f64::from(l) * b.n as f64;
            n += b.n;
        }
        let loss = loss / n.max(1) as f64;
        check_loss("the validation loss", loss, self.state.epoch + 1, self.out)?;
        Ok(Validation {
            loss,
            metrics: sums.means(),
            seconds: t_val.elapsed().as_secs_f64(),
        })
    }

    /// Append the finished epoch (`batches` long, scored by `val`) to the history and print
    /// its line.
    pub fn record(&mut self, batches: usize, val: &Validation) {
        let state = &self.state;
        // Training time (interrupted parts included) plus validation.
        let seconds = state.seconds + val.seconds;
        let train = state.train.means();
        let (val_loss, val) = (val.loss, &val.metrics);
        let record = EpochRecord {
            epoch: state.epoch + 1,
            train_loss: state.loss_sum / batches.max(1) as f64,
            train_dice: train.dice,
            val_loss,
            val_dice: val.dice,
            val_iou: val.iou,
            lr: self.adam.lr,
            seconds,
            images_per_s: (batches * self.cfg.batch) as f64 / state.seconds.max(1e-9),
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
            self.cfg.epochs,
            record.train_loss,
            val_loss,
            val.dice,
            val.iou,
            val.miou,
            val.ahd,
            record.lr,
            seconds
        );
        self.history.push(record);
    }

    /// Scheduler and early stopping (Keras ReduceLROnPlateau / EarlyStopping) after the
    /// epoch's validation loss `val_loss`: an improvement saves `best.safetensors` and resets
    /// both counters; otherwise the learning rate is halved after `patience` epochs without
    /// one. Then the loop state moves on to the next epoch. Returns whether `early_stop`
    /// epochs have passed without improvement (the caller stops after saving).
    pub fn schedule(&mut self, val_loss: f64) -> anyhow::Result<bool> {
        let (cfg, state) = (self.cfg, &mut self.state);
        let epoch = state.epoch;
        let improved = state.best_val_loss.is_none_or(|b| val_loss < b);
        if improved {
            state.best_val_loss = Some(val_loss);
            state.best_epoch = epoch + 1;
            state.since_best = 0;
            state.since_lr_change = 0;
            let hist = serde_json::to_value(&self.history)?;
            save_model(
                &self.out.join("best.safetensors"),
                &self.mc,
                epoch + 1,
                &hist,
                &named_tensors(&self.params)?,
            )?;
        } else {
            state.since_best += 1;
            state.since_lr_change += 1;
            if state.since_lr_change >= cfg.patience && self.adam.lr > MIN_LR {
                self.adam.lr = (self.adam.lr * 0.5).max(MIN_LR);
                state.since_lr_change = 0;
                eprintln!(
                    "validation loss has not improved for {} epochs: learning rate halved to {:.1e}",
                    cfg.patience, self.adam.lr
                );
            }
        }
        state.epoch += 1;
        state.batch = 0;
        state.loss_sum = 0.0;
        state.train = MetricSums::default();
        state.seconds = 0.0;
        Ok(state.since_best >= cfg.early_stop)
    }

    /// Write `last.safetensors` and `last.optim.safetensors` ([`save_last`]).
    pub fn save(&self) -> anyhow::Result<()> {
        save_last(
            self.out,
            &self.mc,
            &self.params,
            &self.adam,
            &self.state,
            &self.history,
        )
    }
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
    let mut t = Trainer::new(gpu, cfg, out, resume)?;
    let outcome = loop {
        if t.state.epoch >= cfg.epochs {
            break Outcome::Finished;
        }
        let pass = t.epoch(stop)?;
        if pass.interrupted {
            t.save()?;
            break Outcome::Interrupted {
                epoch: t.state.epoch + 1,
                batch: t.state.batch,
            };
        }
        let val = t.validate()?;
        t.record(pass.batches, &val);
        let stop_early = t.schedule(val.loss)?;
        t.save()?;
        write_metrics(out, &t.history)?;
        if stop_early {
            eprintln!(
                "early stopping: no validation-loss improvement for {} epochs; best epoch {} (best.safetensors)",
                cfg.early_stop, t.state.best_epoch
            );
            break Outcome::EarlyStopped {
                best_epoch: t.state.best_epoch,
            };
        }
        if stop.load(Ordering::SeqCst) {
            break Outcome::Interrupted {
                epoch: t.state.epoch,
                batch: 0,
            };
        }
    };
    Ok(RunSummary {
        outcome,
        history: t.history,
        seconds: t_run.elapsed().as_secs_f64(),
    })
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

/// Write `metrics.json`, `metrics.csv` ([`history::write_tables`]) and `curves.png`
/// ([`super::plot::write_curves`]) from the whole history.
pub fn write_metrics(out: &Path, history: &[EpochRecord]) -> anyhow::Result<()> {
    history::write_tables(out, history)?;
    super::plot::write_curves(&out.join("curves.png"), history)
        .with_context(|| format!("cannot write {}", out.join("curves.png").display()))?;
    Ok(())
}
