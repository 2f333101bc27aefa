//! The training state a run folder carries between sessions: the [`LoopState`] (position
//! and scheduler counters), Adam's moments and the metric history, saved with the weights
//! as `last.safetensors` + `last.optim.safetensors` ([`save_last`]), and the state a run
//! starts from ([`Start::load`]): that checkpoint when resuming, the `--init` checkpoint's
//! weights when fine-tuning, the seeded initialisation otherwise.
//!
//! [`super::checkpoint`] knows the file formats; this module knows what the loop puts in
//! them, so that a resumed run continues bit for bit where the interrupted one stopped.

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::checkpoint::{
    self, NamedTensor, OptimizerState, load_model, load_optimizer, named_tensors, save_model,
    save_optimizer, values_for,
};
use super::config::{TrainConfig, file_sha256};
use super::history::{EpochRecord, MetricSums};
use super::step::Adam;
use crate::Gpu;
use crate::model::{Model, ModelConfig};
use crate::nn::Params;

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

/// What a run starts (or continues) from.
pub struct Start {
    pub params: Params,
    pub adam: Adam,
    pub state: LoopState,
    pub history: Vec<EpochRecord>,
}

impl Start {
    /// Resume from `out`'s `last.safetensors` (weights, Adam moments, loop state, history),
    /// or start from `cfg.init`'s weights with a fresh optimizer, or from the seeded
    /// initialisation of `model`.
    pub fn load(
        gpu: &Gpu,
        model: &Model,
        mc: &ModelConfig,
        cfg: &TrainConfig,
        out: &Path,
        resume: bool,
    ) -> anyhow::Result<Start> {
        let last = out.join("last.safetensors");
        let (params, adam, state, history) = if resume {
            if !last.exists() {
                bail!("{}", nothing_to_resume(out));
            }
            let ck = load_model(&last, Some(mc))?;
            let params = model
                .spec
                .load(gpu, &values_for(&last, &ck, &model.spec)?)?;
            let opt = load_optimizer(&last, &ck.sha256)?;
            let mut adam = Adam::new(&params, cfg.lr)?;
            moments_from(&params, &mut adam, &opt)?;
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
            let ck = load_model(init, Some(mc))
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
        Ok(Start {
            params,
            adam,
            state,
            history,
        })
    }
}

/// Put the saved Adam moments, step count and learning rate of `state` into `adam`.
fn moments_from(params: &Params, adam: &mut Adam, state: &OptimizerState) -> anyhow::Result<()> {
    fn find<'a>(list: &'a [NamedTensor], name: &str) -> anyhow::Result<&'a NamedTensor> {
        list.iter()
            .find(|t| t.name == name)
            .with_context(|| format!("optimizer state has no moment for '{name}'"))
    }
    for ((info, _), mv) in params.iter().zip(&adam.moments) {
        if let Some((m, v)) = mv {
            for (t, list) in [(m, &state.m), (v, &state.v)] {
                let saved = find(list, &info.name)?;
                if saved.shape != info.shape {
                    bail!(
                        "optimizer state: the moment of '{}' is {:?}, the parameter {:?}",
                        info.name,
                        saved.shape,
                        info.shape
                    );
                }
                t.write(&saved.data)?;
            }
        }
    }
    adam.step = u32::try_from(state.step).context("Adam step count overflows")?;
    adam.lr = state.lr;
    Ok(())
}

/// Save the weights (with the history) to `out/last.safetensors`, and Adam's moments, step,
/// learning rate and the loop state beside it in `last.optim.safetensors`.
pub fn save_last(
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

/// Why a run folder without `last.safetensors` cannot be resumed, what it holds, and what
/// to do instead: the run stopped before it finished its first epoch (or lost the file).
fn nothing_to_resume(out: &Path) -> String {
    let mut held: Vec<String> = std::fs::read_dir(out)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    held.sort();
    let holds = if held.is_empty() {
        "nothing".to_string()
    } else {
        held.join(", ")
    };
    let best = out.join("best.safetensors");
    let advice = if best.exists() {
        format!(
            "fine-tune from its best weights into a new folder (rca-gpu train --init {} --out NEW), \
             or start the run again without --resume",
            best.display()
        )
    } else {
        "start the run again: the same command without --resume (it reuses the folder)".to_string()
    };
    format!(
        "--resume: {} has no last.safetensors to resume from: the run stopped before its \
         first checkpoint (it holds: {holds}). To go on, {advice}",
        out.display()
    )
}
