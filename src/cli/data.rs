//! `rca-gpu data DIR`: load a data set and print its report, without training,
//! so a user can check a download before spending GPU time on it.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::data::hash::{DEFAULT_HASH_THRESHOLD, DEFAULT_MIN_CORRELATION};
use crate::data::{
    DuplicateRule, LoadOptions, MaskResize, Split, SplitConfig, load_dataset_with_progress,
};

/// Arguments of `rca-gpu data`.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Data-set folder (BUSI, BUSIS, BUS-BRA or images/ + masks/).
    pub dir: PathBuf,
    #[command(flatten)]
    pub layout: super::LayoutArgs,
    /// List bad files (missing mask, corrupt, size mismatch) as skipped instead of failing.
    #[arg(long)]
    pub skip_bad: bool,
    /// Side S of the preprocessed images.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Hamming distance at or below which perceptual hashes count as duplicates.
    #[arg(long, default_value_t = DEFAULT_HASH_THRESHOLD)]
    pub hash_threshold: u32,
    /// Smallest 32×32 thumbnail correlation for two images to count as duplicates.
    #[arg(long, default_value_t = DEFAULT_MIN_CORRELATION)]
    pub min_correlation: f32,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also make a split with this seed and write it to this file (JSON).
    #[arg(long)]
    pub write_split: Option<PathBuf>,
    /// Check that a saved split (JSON) matches this data set: every listed file
    /// must exist; files the split does not list are reported.
    #[arg(long)]
    pub split: Option<PathBuf>,
    /// Seed for --write-split (train's default, so both make the same split).
    #[arg(long, default_value_t = super::DEFAULT_SEED)]
    pub seed: u64,
    /// --write-split's test part as a fold (as `train --fold`).
    #[command(flatten)]
    pub folds: super::FoldArgs,
}

/// Runs `rca-gpu data`.
pub fn run(args: DataArgs) -> anyhow::Result<()> {
    let fold = args.folds.fold()?;
    let opts = LoadOptions {
        format: args.layout.format,
        pairing: args.layout.pairing()?,
        skip_bad: args.skip_bad,
        size: args.size,
        mask_resize: MaskResize::AreaThreshold,
        duplicates: DuplicateRule {
            max_hamming: args.hash_threshold,
            min_correlation: args.min_correlation,
            ..Default::default()
        },
        threads: 0,
    };
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} loading {pos} images [{elapsed}]")
            .expect("valid template"),
    );
    let tick = || bar.inc(1);
    let result = load_dataset_with_progress(&args.dir, &opts, &tick);
    bar.finish_and_clear();
    let ds = result.with_context(|| {
        format!(
            "loading the data set at {}{}",
            args.dir.display(),
            if args.skip_bad {
                ""
            } else {
                " (--skip-bad lists bad files instead of failing)"
            }
        )
    })?;
    print!("{}", ds.report);
    if let Some(path) = &args.json {
        ds.report
            .save(path)
            .with_context(|| format!("writing the report to {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    if let Some(path) = &args.split {
        let split = Split::load(path)?;
        let idx = split.resolve(&ds, path)?;
        println!(
            "split {} matches: {} train, {} validation, {} test; {} images not in the split",
            path.display(),
            idx.train.len(),
            idx.val.len(),
            idx.test.len(),
            idx.unlisted.len()
        );
        for name in idx.unlisted.iter().take(20) {
            println!("  not in the split: {name}");
        }
    }
    if let Some(path) = &args.write_split {
        let cfg = SplitConfig {
            duplicates: opts.duplicates,
            ..SplitConfig::new(args.seed, fold)
        };
        let split = ds.split(&cfg)?;
        split
            .save(path)
            .with_context(|| format!("writing the split to {}", path.display()))?;
        println!("{}, written to {}", split.describe(), path.display());
    }
    Ok(())
}
