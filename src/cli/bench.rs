//! `rca-gpu bench`: how fast a variant runs on the chosen adapter: inference milliseconds
//! per image at each batch size, and training images per second, each the median of
//! `--reps` timed repetitions after `--warmup` untimed ones (which compile the pipelines and
//! fill the buffer pool).
//!
//! What is timed:
//! - Inference: upload of the preprocessed batch, the eval-mode forward (no tape), and the
//!   read-back of the probabilities, as `rca-gpu infer` does per batch (decoding and
//!   resizing excluded). A batch above the adapter's binding limit runs in chunks, as in
//!   `infer`; the chunk is printed.
//! - Training: one step (forward, loss, backward, Adam) and the read-back of its loss. A
//!   batch that cannot fit (train-mode BN couples its samples, so it is not split) is
//!   lowered to the largest that does (`budget::largest_batch_that_fits`, as `train`
//!   advises), and the batch actually used is printed.
//!
//! Wall time is the host's clock around each repetition. Where the adapter has timestamp
//! queries, the GPU's own clock between a mark before and after the repetition is printed
//! too ("GPU"): it leaves out the host's recording and submit overhead before the first
//! kernel, but spans any idle gaps between submits within it.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;

use crate::data::{generate_phantom, preprocess_image};
use crate::infer::Predictor;
use crate::model::{Model, ModelConfig};
use crate::runtime::GpuTimer;
use crate::train::{Adam, train_step};
use crate::{Error, Gpu, Tensor};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: super::ModelArgs,
    /// Inference batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub batches: Vec<usize>,
    /// Training batch size (halved until it fits the adapter).
    #[arg(long, default_value_t = 8)]
    pub train_batch: usize,
    /// Timed repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Untimed repetitions first.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Skip the training measurement.
    #[arg(long)]
    pub no_train: bool,
    /// Skip the inference measurements.
    #[arg(long)]
    pub no_infer: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub adapter: super::AdapterArgs,
}

/// Median, minimum and maximum of some repetitions, in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    fn of(samples: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            0.5 * (v[mid - 1] + v[mid])
        };
        Some(Self {
            median,
            min: v[0],
            max: v[v.len() - 1],
        })
    }
}

/// One measurement: a batch's wall (and GPU) milliseconds per repetition.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    /// "inference" or "training".
    pub task: &'static str,
    /// The batch asked for and the one used (training halves one that does not fit).
    pub batch_asked: usize,
    pub batch: usize,
    /// Images per forward pass (inference chunks a batch above the binding limit).
    pub chunk: usize,
    pub wall_ms: Stats,
    pub gpu_ms: Option<Stats>,
    /// Per image: wall_ms.median / batch.
    pub ms_per_image: f64,
    pub images_per_s: f64,
}

/// Everything `bench` measured, with what it ran on.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub adapter: String,
    pub backend: String,
    pub driver: String,
    pub variant: String,
    pub width: usize,
    pub size: usize,
    pub parameters: usize,
    pub forward_gflop_per_image: f64,
    pub reps: usize,
    pub warmup: usize,
    /// Seconds since the Unix epoch when the bench started.
    pub started_unix_s: u64,
    pub results: Vec<Measurement>,
}

/// Time `reps` runs of `f` after `warmup` untimed ones: wall and (if `timer`) GPU ms.
fn time_reps(
    gpu: &Gpu,
    timer: Option<&GpuTimer>,
    warmup: usize,
    reps: usize,
    mut f: impl FnMut() -> crate::Result<()>,
) -> crate::Result<(Vec<f64>, Vec<f64>)> {
    for _ in 0..warmup {
        f()?;
    }
    let (mut wall, mut on_gpu) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
    for _ in 0..reps {
        gpu.sync();
        let t0 = Instant::now();
        if let Some(t) = timer {
            t.start(gpu);
        }
        f()?;
        if let Some(t) = timer {
            t.stop(gpu);
        }
        gpu.sync();
        wall.push(t0.elapsed().as_secs_f64() * 1e3);
        if let Some(t) = timer {
            on_gpu.push(t.elapsed_ms(gpu)?);
        }
    }
    Ok((wall, on_gpu))
}

fn measurement(
    task: &'static str,
    batch_asked: usize,
    batch: usize,
    chunk: usize,
    wall: &[f64],
    on_gpu: &[f64],
) -> Measurement {
    let wall_ms = Stats::of(wall).expect("at least one repetition");
    let ms_per_image = wall_ms.median / batch as f64;
    Measurement {
        task,
        batch_asked,
        batch,
        chunk,
        images_per_s: 1e3 / ms_per_image,
        ms_per_image,
        gpu_ms: Stats::of(on_gpu),
        wall_ms,
    }
}

/// Phantom images of the model's size, preprocessed, as one (n, 1, S, S) host batch.
fn phantom_batch(n: usize, size: usize) -> (Vec<f32>, Vec<f32>) {
    let (mut images, mut masks) = (Vec::new(), Vec::new());
    for i in 0..n {
        let p = generate_phantom(7, i as u64, size);
        images.extend(preprocess_image(&p.image, size));
        masks.extend(p.mask.data.iter().map(|&v| if v > 0.5 { 1.0 } else { 0.0 }));
    }
    (images, masks)
}

fn bench_training(
    gpu: &Gpu,
    config: ModelConfig,
    args: &Args,
    timer: Option<&GpuTimer>,
) -> anyhow::Result<Measurement> {
    let s = config.size;
    let fits =
        crate::train::budget::largest_batch_that_fits(gpu, &Model::new(config), args.train_batch)
            .context("even a training batch of 1 exceeds this adapter's binding limit")?;
    if fits < args.train_batch {
        eprintln!(
            "training batch {} does not fit this adapter's binding limit; timing batch {fits}",
            args.train_batch
        );
    }
    let mut batch = fits;
    loop {
        let model = Model::new(config);
        let mut params = model.spec.init(gpu, 42)?;
        let mut adam = Adam::new(&params, 1e-3)?;
        let (images, masks) = phantom_batch(batch, s);
        let x = Tensor::from_vec(gpu, [batch, 1, s, s], &images)?;
        let y = Tensor::from_vec(gpu, [batch, 1, s, s], &masks)?;
        let result = time_reps(gpu, timer, args.warmup.max(1), args.reps, || {
            let (loss, _) = train_step(&model, &mut params, &mut adam, &x, &y)?;
            loss.to_scalar().map(drop)
        });
        match result {
            Ok((wall, on_gpu)) => {
                return Ok(measurement(
                    "training",
                    args.train_batch,
                    batch,
                    batch,
                    &wall,
                    &on_gpu,
                ));
            }
            Err(e @ Error::TooLarge { .. }) if batch > 1 => {
                eprintln!(
                    "training batch {batch} does not fit ({e}); trying {}",
                    batch / 2
                );
                batch /= 2;
                gpu.trim_pool();
            }
            Err(e) => return Err(e).context("training step"),
        }
    }
}

fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| task | batch | chunk | wall ms/batch (median) | min–max | GPU ms/batch | ms/image | images/s |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for m in &report.results {
        let batch = if m.batch == m.batch_asked {
            m.batch.to_string()
        } else {
            format!("{} (asked {})", m.batch, m.batch_asked)
        };
        let gpu = m
            .gpu_ms
            .as_ref()
            .map_or_else(|| "n/a".to_string(), |g| format!("{:.1}", g.median));
        let _ = writeln!(
            out,
            "| {} | {batch} | {} | {:.1} | {:.1}–{:.1} | {gpu} | {:.1} | {:.2} |",
            m.task,
            m.chunk,
            m.wall_ms.median,
            m.wall_ms.min,
            m.wall_ms.max,
            m.ms_per_image,
            m.images_per_s
        );
    }
    out
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = args.model.config()?;
    if args.reps == 0 || args.batches.contains(&0) || args.train_batch == 0 {
        anyhow::bail!("--reps, --batches and --train-batch must be at least 1");
    }
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let gpu = args.adapter.open()?;
    let timer = gpu.timer();
    let model = Model::new(config);
    let parameters = model.spec.trainable_count() + model.spec.non_trainable_count();
    let gflop = model.forward_flops() / 1e9;
    eprintln!(
        "{} F={} S={}: {parameters} parameters, {gflop:.2} GFLOP forward per image; {} warm-up + {} timed repetitions each; GPU time: {}",
        config.variant,
        config.width,
        config.size,
        args.warmup,
        args.reps,
        if timer.is_some() {
            "timestamp queries"
        } else {
            "not available on this adapter (wall time only)"
        }
    );
    let info = gpu.info().clone();
    let mut results = Vec::new();
    let params = model.spec.init(&gpu, 42)?;
    let mut predictor = Predictor::from_params(&gpu, model, params);
    let batches: &[usize] = if args.no_infer { &[] } else { &args.batches };
    for &b in batches {
        let (images, _) = phantom_batch(b, config.size);
        // Warm-up also finds the chunk that fits, before anything is timed.
        predictor.warm_up(b)?;
        let (wall, on_gpu) = time_reps(&gpu, timer.as_ref(), args.warmup, args.reps, || {
            predictor.probabilities(&images, b).map(drop)
        })
        .with_context(|| format!("inference at batch {b}"))?;
        let m = measurement("inference", b, b, predictor.chunk().min(b), &wall, &on_gpu);
        eprintln!(
            "inference batch {b}: {:.1} ms/image (median of {})",
            m.ms_per_image, args.reps
        );
        results.push(m);
    }
    drop(predictor);
    gpu.trim_pool();
    if !args.no_train {
        let m = bench_training(&gpu, config, &args, timer.as_ref())?;
        eprintln!(
            "training batch {}: {:.2} images/s (median of {})",
            m.batch, m.images_per_s, args.reps
        );
        results.push(m);
    }
    let report = Report {
        adapter: info.name.clone(),
        backend: info.backend.clone(),
        driver: info.driver.clone(),
        variant: config.variant.name().to_string(),
        width: config.width,
        size: config.size,
        parameters,
        forward_gflop_per_image: gflop,
        reps: args.reps,
        warmup: args.warmup,
        started_unix_s,
        results,
    };
    println!(
        "{} F={} S={} on {} ({}, {})",
        report.variant, report.width, report.size, report.adapter, report.backend, report.driver
    );
    print!("{}", render(&report));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        crate::atomic::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
