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
use crate::runtime::{Dispatch, GpuTimer};
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
    /// Also profile one inference (the first batch size) and one training step: GPU time
    /// per kernel, with GFLOP/s or GB/s and share, and the ten slowest dispatches
    /// (timestamp queries; in the JSON too).
    #[arg(long)]
    pub profile: bool,
    /// Run with the fewer, quicker-to-compile pipelines that `infer` and `eval` choose for
    /// a small model, to measure what they cost once compiled.
    #[arg(long)]
    pub few_pipelines: bool,
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
    /// With `--profile`: one inference and one training step, dispatch by dispatch.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<Profile>,
}

/// One profiled run: its GPU time per kernel and its slowest dispatches.
#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    /// "inference" or "training".
    pub task: &'static str,
    pub batch: usize,
    pub dispatches: usize,
    /// Σ of the dispatches' GPU times.
    pub gpu_ms: f64,
    /// One row per kernel entry point, slowest first.
    pub kernels: Vec<KernelRow>,
    /// The ten slowest dispatches.
    pub slowest: Vec<Dispatch>,
}

/// The dispatches of one kernel entry point in a profiled run.
#[derive(Clone, Debug, Serialize)]
pub struct KernelRow {
    pub kernel: &'static str,
    pub dispatches: usize,
    pub ms: f64,
    /// Of the run's GPU time.
    pub share: f64,
    /// Where every dispatch declares its FLOPs (the matmuls).
    pub gflop_per_s: Option<f64>,
    /// Bytes bound per second: an upper bound of the traffic.
    pub gb_per_s: f64,
}

impl Profile {
    fn of(task: &'static str, batch: usize, dispatches: Vec<Dispatch>) -> Self {
        let gpu_ms: f64 = dispatches.iter().map(|d| d.ms).sum();
        let mut kernels: Vec<KernelRow> = Vec::new();
        let mut flops: Vec<Option<f64>> = Vec::new();
        let mut bytes: Vec<f64> = Vec::new();
        for d in &dispatches {
            let i = match kernels.iter().position(|k| k.kernel == d.kernel) {
                Some(i) => i,
                None => {
                    kernels.push(KernelRow {
                        kernel: d.kernel,
                        dispatches: 0,
                        ms: 0.0,
                        share: 0.0,
                        gflop_per_s: None,
                        gb_per_s: 0.0,
                    });
                    flops.push(Some(0.0));
                    bytes.push(0.0);
                    kernels.len() - 1
                }
            };
            kernels[i].dispatches += 1;
            kernels[i].ms += d.ms;
            flops[i] = flops[i].zip(d.flops).map(|(a, b)| a + b);
            bytes[i] += d.bytes as f64;
        }
        for ((k, f), b) in kernels.iter_mut().zip(flops).zip(bytes) {
            let s = (k.ms / 1e3).max(1e-12);
            k.share = k.ms / gpu_ms.max(1e-12);
            k.gflop_per_s = f.map(|f| f / s / 1e9);
            k.gb_per_s = b / s / 1e9;
        }
        kernels.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        let mut slowest = dispatches.clone();
        slowest.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        slowest.truncate(10);
        Self {
            task,
            batch,
            dispatches: dispatches.len(),
            gpu_ms,
            kernels,
            slowest,
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n{} profile, batch {}: {} dispatches, {:.1} ms of GPU time\n",
            self.task, self.batch, self.dispatches, self.gpu_ms
        );
        let _ = writeln!(
            out,
            "| kernel | dispatches | ms | share | GFLOP/s | GB/s bound |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        for k in &self.kernels {
            let gflops = k
                .gflop_per_s
                .map_or_else(|| "".to_string(), |g| format!("{g:.1}"));
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {:.1} % | {gflops} | {:.1} |",
                k.kernel,
                k.dispatches,
                k.ms,
                100.0 * k.share,
                k.gb_per_s
            );
        }
        let _ = writeln!(out, "\nslowest dispatches:\n");
        let _ = writeln!(
            out,
            "| kernel | block | workgroups | MB bound | ms | GFLOP/s |"
        );
        let _ = writeln!(out, "|---|---|---|---:|---:|---:|");
        for d in &self.slowest {
            let gflops = d.flops.map_or_else(
                || "".to_string(),
                |f| format!("{:.1}", f / (d.ms / 1e3) / 1e9),
            );
            let _ = writeln!(
                out,
                "| {} | {} | {}×{}×{} | {:.1} | {:.2} | {gflops} |",
                d.kernel,
                d.block,
                d.grid[0],
                d.grid[1],
                d.grid[2],
                d.bytes as f64 / 1e6,
                d.ms
            );
        }
        out
    }
}

/// The dispatches of one run of `f`, after the caller's warm-up.
fn profile_once(gpu: &Gpu, f: impl FnOnce() -> crate::Result<()>) -> crate::Result<Vec<Dispatch>> {
    gpu.sync();
    gpu.start_profile()?;
    let result = f();
    let dispatches = gpu.finish_profile()?;
    result.map(|()| dispatches)
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
) -> anyhow::Result<(Measurement, Option<Profile>)> {
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
                let m = measurement("training", args.train_batch, batch, batch, &wall, &on_gpu);
                let profile = if args.profile {
                    let dispatches = profile_once(gpu, || {
                        let (loss, _) = train_step(&model, &mut params, &mut adam, &x, &y)?;
                        loss.to_scalar().map(drop)
                    })?;
                    Some(Profile::of("training", batch, dispatches))
                } else {
                    None
                };
                return Ok((m, profile));
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
    if args.profile && !gpu.info().timestamp_queries {
        anyhow::bail!(
            "--profile needs timestamp queries, which this adapter ({}) does not offer",
            gpu.info().name
        );
    }
    gpu.set_few_pipelines(args.few_pipelines);
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
    let mut profiles = Vec::new();
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
        if args.profile && profiles.is_empty() {
            let dispatches = profile_once(&gpu, || predictor.probabilities(&images, b).map(drop))?;
            profiles.push(Profile::of("inference", b, dispatches));
        }
    }
    drop(predictor);
    gpu.trim_pool();
    if !args.no_train {
        let (m, profile) = bench_training(&gpu, config, &args, timer.as_ref())?;
        eprintln!(
            "training batch {}: {:.2} images/s (median of {})",
            m.batch, m.images_per_s, args.reps
        );
        results.push(m);
        profiles.extend(profile);
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
        profiles,
    };
    println!(
        "{} F={} S={} on {} ({}, {})",
        report.variant, report.width, report.size, report.adapter, report.backend, report.driver
    );
    print!("{}", render(&report));
    for p in &report.profiles {
        print!("{}", p.render());
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        crate::atomic::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
