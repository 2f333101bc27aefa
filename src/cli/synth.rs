//! `rca-gpu synth`: write breast-ultrasound phantoms with exact masks in the
//! BUSI layout, e.g. to try the tool without a download or to make test data.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::data::write_phantoms;

/// Arguments of `rca-gpu synth`.
#[derive(Debug, Clone, Args)]
pub struct SynthArgs {
    /// Output folder; benign/, malignant/ and normal/ are created inside.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of images.
    #[arg(long, default_value_t = 64)]
    pub count: usize,
    /// Side of the square images in pixels.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Seed; the same seed gives byte-identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs `rca-gpu synth`.
pub fn run(args: SynthArgs) -> anyhow::Result<()> {
    let bar = ProgressBar::new(args.count as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} phantoms [{elapsed}]")
            .expect("valid template"),
    );
    let tick = || bar.inc(1);
    let result = write_phantoms(&args.out, args.count, args.size, args.seed, &tick);
    bar.finish_and_clear();
    let summary = result.with_context(|| format!("writing phantoms to {}", args.out.display()))?;
    println!(
        "wrote {} phantoms ({}×{}, seed {}) to {}: {} benign, {} malignant, {} normal",
        args.count,
        args.size,
        args.size,
        args.seed,
        args.out.display(),
        summary.benign,
        summary.malignant,
        summary.normal
    );
    Ok(())
}
