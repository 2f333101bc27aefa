//! The subcommands of `rca-gpu`. Each lives in its own file with its clap arguments and a
//! `run` function; this file only dispatches.

pub mod bench;
pub mod data;
pub mod devices;
pub mod eval;
pub mod infer;
pub mod metrics;
pub mod selftest;
pub mod summary;
pub mod synth;
pub mod train;

use clap::{Parser, Subcommand};

/// RCA-IUnet breast-ultrasound tumour segmentation on any Vulkan, Metal or DX12 GPU.
#[derive(Parser, Debug)]
#[command(name = "rca-gpu", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List every GPU adapter wgpu can see, with backend, type, driver and limits.
    Devices(devices::Args),
    /// Check a data set folder (BUSI, BUSIS, BUS-BRA or image/mask pairs) and print its report.
    Data(data::DataArgs),
    /// Write breast-ultrasound phantoms with exact masks in the BUSI layout.
    Synth(synth::SynthArgs),
    /// Print a model's layer table, parameter totals and forward FLOPs (no GPU needed).
    Summary(summary::Args),
    /// Score existing prediction masks against ground truth with the paper's metrics.
    Metrics(metrics::MetricsArgs),
    /// Train a model (on a data set, or on built-in phantoms) into a resumable run folder.
    Train(train::Args),
    /// Segment scans (images or DICOM) with the shipped model or your checkpoints: mask,
    /// probability map and overlay per image, results.csv.
    Infer(infer::Args),
    /// Score a checkpoint (or an ensemble, or one per fold) on its run's test split or any
    /// data set: Table 2, per-image CSV, false positives on lesion-free images.
    Eval(eval::Args),
    /// Time inference (ms/image at batch 1 and 8) and training (images/s) on the adapter.
    Bench(bench::Args),
    /// Check every kernel against its CPU reference on the adapter (run it on a new GPU).
    Selftest(selftest::Args),
}

/// A data folder that exists and holds something, checked before the GPU is opened so that a
/// typo fails at once with the folder's name.
pub fn check_data_folder(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the data folder {}", dir.display()))?;
    if entries.next().is_none() {
        anyhow::bail!(
            "the data folder {} is empty: expected BUSI (benign/, malignant/, normal/), BUSIS, \
             BUS-BRA (Images/, Masks/, bus_data.csv) or images/ + masks/",
            dir.display()
        );
    }
    Ok(())
}

/// How a data folder is read, shared by `data`, `train` and `eval`: its layout and, for the
/// folder layouts, how masks are paired with images.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LayoutArgs {
    /// Layout; detected from the folder when omitted.
    #[arg(long, value_enum)]
    pub format: Option<crate::data::Format>,
    /// Which image names to use and their pairing key: one {id} in a file-name pattern, e.g.
    /// 'bus_{id}' (images/ + masks/ layouts; default: the whole stem is the key).
    #[arg(long, value_name = "PATTERN")]
    pub image_pattern: Option<String>,
    /// How a mask is named after its image's key, e.g. 'mask_{id}' pairs masks/mask_0001.png
    /// with images/0001.png (with --image-pattern 'bus_{id}': images/bus_0001.png).
    #[arg(long, value_name = "PATTERN")]
    pub mask_pattern: Option<String>,
}

impl LayoutArgs {
    /// The pairing the patterns ask for (checked: one {id} each).
    pub fn pairing(&self) -> anyhow::Result<crate::data::Pairing> {
        Ok(crate::data::Pairing::parse(
            self.image_pattern.as_deref(),
            self.mask_pattern.as_deref(),
        )?)
    }
}

/// Cross-validation folds, shared by `data --write-split`, `train` and `eval`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FoldArgs {
    /// Test on fold K (1 to --folds) instead of a random 30 %: the data set's own folds where
    /// it ships them (BUS-BRA's 5-fold-cv.csv, 10-fold-cv.csv), otherwise rca-gpu's
    /// (stratified; a patient's images and near-duplicates stay in one fold). 20 % of the
    /// rest validates.
    #[arg(long, value_name = "K")]
    pub fold: Option<u32>,
    /// Number of folds for --fold [default: 5].
    #[arg(long, value_name = "N", requires = "fold")]
    pub folds: Option<u32>,
}

/// Folds unless a user asks otherwise: BUS-BRA's authors publish 5 and 10.
pub const DEFAULT_FOLDS: u32 = 5;

impl FoldArgs {
    /// The fold asked for, checked.
    pub fn fold(&self) -> anyhow::Result<Option<crate::data::split::Fold>> {
        self.fold
            .map(|k| crate::data::split::Fold::new(k, self.folds.unwrap_or(DEFAULT_FOLDS)))
            .transpose()
            .map_err(anyhow::Error::from)
    }
}

/// The seed of every command that draws: `train`'s split, weights, batch order and
/// augmentation, and `data --write-split`'s split (so both make the same split).
pub const DEFAULT_SEED: u64 = 42;

/// The model a subcommand builds: variant, input side and base width.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// unet, unet+ric, unet+csa, unet+ric+hp, unet+csa+hp, unet+csa+ric or rca-iunet.
    #[arg(long, default_value = "rca-iunet")]
    pub variant: crate::model::Variant,
    /// Input side S (a power of two ≥ 32).
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Base width F (16 in the paper).
    #[arg(long, default_value_t = 16)]
    pub width: usize,
}

impl ModelArgs {
    pub fn config(&self) -> anyhow::Result<crate::model::ModelConfig> {
        crate::model::ModelConfig::new(self.variant, self.width, self.size)
            .map_err(anyhow::Error::msg)
    }
}

/// How probabilities become masks (the paper's post-processing, optionally with a
/// hysteresis step), shared by `infer` and `eval`: the threshold, then hole filling, faint-
/// and small-region removal.
#[derive(clap::Args, Debug, Clone)]
pub struct PostProcessArgs {
    /// Probability threshold: a pixel is lesion when p >= T.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    /// Post-processing removes lesion regions with fewer pixels than this (0: none).
    #[arg(long, default_value_t = crate::metrics::PostProcess::default().min_area)]
    pub min_area: usize,
    /// Post-processing removes lesion regions smaller than this fraction of the largest
    /// (0: none; 1: only the largest).
    #[arg(long, default_value_t = crate::metrics::PostProcess::default().min_relative_area)]
    pub min_relative_area: f64,
    /// Post-processing leaves holes inside a lesion unfilled.
    #[arg(long)]
    pub no_fill_holes: bool,
    /// Post-processing removes lesion regions whose highest probability is below this
    /// (hysteresis: a region keeps its outline at --threshold; 0: none, as the paper).
    /// Fewer false regions on lesion-free tissue: see the model card [default: 0.8 with the
    /// shipped model, 0 with --checkpoint].
    #[arg(long)]
    pub min_peak: Option<f32>,
}

/// Test-time augmentation, shared by `infer` and `eval`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TtaArgs {
    /// Test-time augmentation: also predict each image mirrored left–right, top–bottom and
    /// both, and average the four (per checkpoint) [default with the shipped model].
    #[arg(long)]
    pub tta: bool,
    /// One prediction per image, unmirrored [default with --checkpoint].
    #[arg(long, conflicts_with = "tta")]
    pub no_tta: bool,
}

/// What `infer` and `eval` run: the user's `--tta`/`--no-tta` and `--min-peak` where given,
/// otherwise the models' default [`Setting`](crate::shipped::Setting).
pub fn setting(
    sources: &[crate::shipped::ModelSource],
    tta: &TtaArgs,
    pp: &PostProcessArgs,
) -> crate::shipped::Setting {
    let default = crate::shipped::ModelSource::default_setting(sources);
    crate::shipped::Setting {
        tta: tta.tta || (default.tta && !tta.no_tta),
        min_peak: pp.min_peak.unwrap_or(default.min_peak),
    }
}

/// A note for the user when the shipped model's setting fills in what they left out.
pub fn shipped_setting_note(
    sources: &[crate::shipped::ModelSource],
    tta: &TtaArgs,
    pp: &PostProcessArgs,
) -> Option<String> {
    let shipped = crate::shipped::ModelSource::default_setting(sources);
    let left_out = !(tta.tta || tta.no_tta) || pp.min_peak.is_none();
    (shipped != crate::shipped::PAPER && left_out).then(|| {
        format!(
            "the shipped model's setting (chosen on BUS-BRA's test folds, models/README.md): \
             mirrored ×4, --min-peak {}; --no-tta --min-peak 0 for the paper's",
            shipped.min_peak
        )
    })
}

impl PostProcessArgs {
    /// Thresholding only ("PP N").
    pub fn threshold_only(&self) -> anyhow::Result<crate::metrics::PostProcess> {
        self.checked(crate::metrics::PostProcess::threshold_only(self.threshold))
    }

    /// Thresholding and post-processing ("PP Y"), with the peak of `setting`.
    pub fn post_processed(
        &self,
        setting: crate::shipped::Setting,
    ) -> anyhow::Result<crate::metrics::PostProcess> {
        self.checked(crate::metrics::PostProcess {
            threshold: self.threshold,
            fill_holes: !self.no_fill_holes,
            min_area: self.min_area,
            min_relative_area: self.min_relative_area,
            min_peak: setting.min_peak,
            ..crate::metrics::PostProcess::default()
        })
    }

    fn checked(
        &self,
        pp: crate::metrics::PostProcess,
    ) -> anyhow::Result<crate::metrics::PostProcess> {
        if !(0.0..=1.0).contains(&self.threshold) {
            anyhow::bail!("--threshold {} is outside [0, 1]", self.threshold);
        }
        if !(0.0..=1.0).contains(&self.min_relative_area) {
            anyhow::bail!(
                "--min-relative-area {} is outside [0, 1]",
                self.min_relative_area
            );
        }
        if let Some(p) = self.min_peak.filter(|p| !(0.0..=1.0).contains(p)) {
            anyhow::bail!("--min-peak {p} is outside [0, 1]");
        }
        Ok(pp)
    }
}

/// Adapter selection shared by every subcommand that uses the GPU.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AdapterArgs {
    /// Use the adapter whose name contains this (case-insensitive); see `rca-gpu devices`.
    #[arg(long, env = "RCA_GPU_ADAPTER")]
    pub adapter: Option<String>,
}

impl AdapterArgs {
    /// Open the chosen GPU and say once which one it is.
    pub fn open(&self) -> anyhow::Result<crate::Gpu> {
        let gpu = crate::Gpu::new(&crate::AdapterRequest {
            name: self.adapter.clone(),
            // RCA_GPU_MAX_BINDING, when set.
            ..crate::AdapterRequest::from_env()
        })?;
        eprintln!("adapter: {}", gpu.info());
        Ok(gpu)
    }
}

/// Parse the command line and run the subcommand.
/// A command that stopped at the user's Ctrl-C after saving what it had: not a failure to
/// report, but the process exits 130 (128 + SIGINT), as shells expect of an interrupted
/// program, so that scripts do not take the run for finished.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Devices(a) => devices::run(a),
        Command::Data(a) => data::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Metrics(a) => metrics::run(a),
        Command::Summary(a) => summary::run(a),
        Command::Train(a) => train::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Infer(a) => infer::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Selftest(a) => selftest::run(a),
    }
}

/// The progress bar of a command that walks `len` images ("eval [====>   ] 12/376 ETA 30s"),
/// on stderr and only on a terminal (indicatif hides it otherwise).
pub fn image_bar(label: &str, len: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{label} [{{bar:30}}] {{pos}}/{{len}} ETA {{eta}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}
