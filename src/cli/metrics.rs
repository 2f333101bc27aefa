//! `rca-gpu metrics`: scores prediction masks already on disk against ground truth and
//! prints the Table 2 summary (rows "PP N", and "PP Y" with `--postprocess`, overall and per
//! class), optionally writing the per-image CSV.
//!
//! Files are paired by stem as [`crate::metrics::io`] describes; predictions of any size are
//! resized (nearest neighbour) to their ground truth's size before thresholding, so the
//! scores and distances are on the ground truth's pixel grid. Unmatched files are listed on
//! stderr; a file that cannot be decoded stops the run with its name.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::metrics::io::{
    Pairing, PredKind, load_mask_union, load_probability, pair_mask_files, resize_nearest,
};
use crate::metrics::{
    Connectivity, ImageRecord, PostProcess, evaluate_probability, render_markdown, render_text,
    summary_rows, write_csv,
};

/// Score existing masks against ground truth.
#[derive(Debug, Clone, clap::Args)]
pub struct MetricsArgs {
    /// Folder of predicted masks or grey-level probability maps (searched recursively).
    #[arg(long)]
    pub pred: PathBuf,
    /// Folder of ground-truth masks; sub-folders name classes (e.g. benign/, malignant/).
    #[arg(long)]
    pub gt: PathBuf,
    /// Which files of --pred to score. With an `rca-gpu infer` output folder: `mask` its
    /// NAME_mask files (already post-processed: their "PP N" row is post-processed too), or
    /// `prob` its NAME_prob maps thresholded at --threshold (then "PP N" is the raw
    /// threshold and --postprocess adds "PP Y"). `auto`: `mask` for an infer folder, else
    /// every image.
    #[arg(long, value_enum, default_value_t = PredKind::Auto)]
    pub pred_kind: PredKind,
    /// Also score the post-processed predictions (adds the "PP Y" rows).
    #[arg(long)]
    pub postprocess: bool,
    /// Probability threshold: a prediction pixel is lesion when grey/max >= T.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    /// Write one CSV line per image (and per PP setting) to this file.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Post-processing: drop components with fewer pixels than this.
    #[arg(long, default_value_t = PostProcess::default().min_area)]
    pub min_area: usize,
    /// Post-processing: drop components smaller than this fraction of the largest.
    #[arg(long, default_value_t = PostProcess::default().min_relative_area)]
    pub min_relative_area: f64,
    /// Post-processing: drop components whose highest value (grey/max) is below this
    /// (0: none).
    #[arg(long, default_value_t = PostProcess::default().min_peak)]
    pub min_peak: f32,
    /// Post-processing: foreground connectivity, 4 or 8 (holes use the other one).
    #[arg(long, default_value_t = 8, value_parser = parse_connectivity)]
    pub connectivity: u8,
    /// Print the summary as a Markdown table instead of aligned text.
    #[arg(long)]
    pub markdown: bool,
    /// Print "mean ± standard deviation" in every cell.
    #[arg(long)]
    pub std: bool,
}

fn parse_connectivity(s: &str) -> Result<u8, String> {
    match s {
        "4" => Ok(4),
        "8" => Ok(8),
        _ => Err(format!("`{s}` is not 4 or 8")),
    }
}

impl MetricsArgs {
    /// The post-processing these arguments describe.
    pub fn post_process(&self) -> anyhow::Result<PostProcess> {
        let pp = PostProcess {
            threshold: self.threshold,
            fill_holes: true,
            min_area: self.min_area,
            min_relative_area: self.min_relative_area,
            connectivity: Connectivity::from_neighbours(self.connectivity)
                .with_context(|| format!("connectivity {} is not 4 or 8", self.connectivity))?,
            min_peak: self.min_peak,
        };
        pp.validate()?;
        Ok(pp)
    }
}

/// What a scoring run produced.
#[derive(Debug, Clone)]
pub struct MetricsReport {
    /// One record per image (two with `--postprocess`: PP N then PP Y), in name order.
    pub records: Vec<ImageRecord>,
    pub pairing: Pairing,
}

/// Pairs, loads and scores every image; prints nothing.
pub fn score(args: &MetricsArgs) -> anyhow::Result<MetricsReport> {
    let pp = args.post_process()?;
    let plain = PostProcess::threshold_only(args.threshold);
    for (dir, what) in [(&args.pred, "prediction"), (&args.gt, "ground-truth")] {
        if !dir.is_dir() {
            bail!(
                "{what} folder {} does not exist or is not a folder",
                dir.display()
            );
        }
    }
    let pairing = pair_mask_files(&args.pred, &args.gt, args.pred_kind)?;
    if pairing.pairs.is_empty() {
        bail!(
            "no prediction in {} matches a ground-truth mask in {} ({} predictions, {} ground-truth masks unmatched)",
            args.pred.display(),
            args.gt.display(),
            pairing.unmatched_pred.len(),
            pairing.unmatched_gt.len()
        );
    }
    let mut records = Vec::with_capacity(pairing.pairs.len() * 2);
    let bar = super::image_bar("metrics", pairing.pairs.len());
    for pair in &pairing.pairs {
        bar.inc(1);
        let gt = load_mask_union(&pair.gt)
            .with_context(|| format!("ground truth of `{}`", pair.name))?;
        let prob = load_probability(&pair.pred)?;
        let prob = resize_nearest(&prob, gt.width(), gt.height());
        let mut variants = vec![(false, plain)];
        if args.postprocess {
            variants.push((true, pp));
        }
        for (postprocessed, settings) in variants {
            let metrics = evaluate_probability(&prob.values, &gt, &settings)
                .with_context(|| format!("scoring {}", pair.pred.display()))?;
            records.push(ImageRecord {
                name: pair.name.clone(),
                class: pair.class.clone(),
                postprocessed,
                metrics,
            });
        }
    }
    bar.finish_and_clear();
    Ok(MetricsReport { records, pairing })
}

/// Runs `rca-gpu metrics`: scores, lists unmatched files on stderr, prints the summary on
/// stdout and writes the CSV when asked.
pub fn run(args: MetricsArgs) -> anyhow::Result<()> {
    let report = score(&args)?;
    let p = &report.pairing;
    for (files, what) in [
        (&p.unmatched_pred, "prediction(s) without ground truth"),
        (&p.unmatched_gt, "ground-truth mask(s) without prediction"),
    ] {
        if !files.is_empty() {
            eprintln!("warning: {} {what}, not scored:", files.len());
            for f in files {
                eprintln!("  {}", f.display());
            }
        }
    }
    if !p.skipped_outputs.is_empty() {
        eprintln!(
            "note: {} other rca-gpu infer output(s) in {} left out (--pred-kind chooses)",
            p.skipped_outputs.len(),
            args.pred.display()
        );
    }
    if !p.skipped_scans.is_empty() {
        eprintln!(
            "note: {} file(s) in {} skipped as scans stored beside their _mask files",
            p.skipped_scans.len(),
            args.gt.display()
        );
    }
    let rows = summary_rows(&report.records);
    if args.markdown {
        print!("{}", render_markdown(&rows, args.std));
    } else {
        print!("{}", render_text(&rows, args.std));
    }
    print!(
        "{}",
        crate::metrics::render_lesion_free(&crate::metrics::lesion_free_rows(&report.records))
    );
    if let Some(path) = &args.csv {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        write_csv(&report.records, BufWriter::new(file))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!(
            "wrote {} per-image rows to {}",
            report.records.len(),
            path.display()
        );
    }
    Ok(())
}
