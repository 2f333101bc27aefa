//! `rca-gpu eval`: score a checkpoint on a test set with every metric of the paper's
//! Table 1, with and without post-processing, in the layout of Table 2.
//!
//! # Which images
//!
//! - Default: the test part of the run the checkpoint belongs to. The run folder (the
//!   checkpoint's folder) holds `config.json` and `split.json`; a phantom run's images are
//!   regenerated from the config ([`TrainConfig::phantom_source`]), a data-set run's are read
//!   from the data folder the config names.
//! - `--data DIR`: every image of another data set (e.g. trained on BUSI, tested on BUSIS).
//! - `--split FILE`: the test part of that split file, in `--data` or the run's data.
//! - Without `--checkpoint`, the shipped model ([`crate::shipped`]), which has no run
//!   folder: `--data` is needed.
//! - Several `--checkpoint`s: an ensemble ([`crate::infer::Ensemble`]; `--tta` adds mirrorings), scored
//!   on the first one's run unless `--data` says otherwise. With `--cross-validation` they
//!   are one model per fold instead: each is scored on its own run's test part, then
//!   [`across_folds`] gives mean ± sd over the folds (`cross_validation.json` and `.md`).
//! - `--lesion-free-views`: instead of each selected image, a lesion-free view of it (a
//!   crop beside its lesion with an empty ground truth, [`lesion_free_view`]), to measure
//!   how often the model marks tissue without lesions.
//!
//! # At which size
//!
//! Metrics are computed at each image's original size: the probability map is resized back
//! to the image (see [`crate::infer`]) and post-processed there, and the ground-truth masks
//! are used as loaded, never resized. Distances (AHD, HD95) are therefore in original pixels.
//! Phantoms are generated at the model's input size S, which is then their original size.
//!
//! # Output
//!
//! The table on stdout (rows "PP N" and "PP Y", overall and per class when the data has
//! classes; IT is milliseconds per image as [`crate::infer`] defines it), and in `--out`
//! (default `eval/` beside the checkpoint): `per_image.csv` (one row per image and PP
//! setting), `summary.json` (what was evaluated, the settings and every table row with
//! means and standard deviations, and the lesion-free images' false-positive rate when
//! there are any) and `table.md` (the table in Markdown); with `--overlays`,
//! `overlays/STEM.png` (the image file's stem), the ground truth's and the post-processed
//! prediction's outlines.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::data::augment::lesion_free_view;
use crate::data::busbra::{id_of, read_test_folds};
use crate::data::layout::{Class, Entry, scan};
use crate::data::rng::Rng;
use crate::data::split::Fold;
use crate::data::{GrayF32, PhantomSource, SampleSource, Split, generate_phantom, load_pair};
use crate::infer::{overlay, save_png_atomic};
use crate::metrics::{
    BinaryMask, ImageRecord, LesionFreeRow, PostProcess, TableRow, across_folds,
    evaluate_probability, lesion_free_rows, render_lesion_free, render_markdown, render_text,
    summary_rows, write_csv,
};
use crate::shipped::ModelSource;
use crate::train::config::TrainConfig;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model checkpoint; its folder is the run folder (config.json, split.json). Give it
    /// several times to score an ensemble (probabilities averaged; the first one's run
    /// folder counts) [default: the model built into rca-gpu, trained on BUS-BRA at 64×64;
    /// needs --data].
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Vec<PathBuf>,
    #[command(flatten)]
    pub tta: super::TtaArgs,
    /// The --checkpoint files are one model per cross-validation fold (`train --fold k`):
    /// score each on its own run's test part, then report mean ± sd over the folds.
    #[arg(long, conflicts_with_all = ["data", "split", "fold"])]
    pub cross_validation: bool,
    /// Evaluate every image of this data set (BUSI, BUSIS or images/ + masks/) instead of
    /// the run's test split; with --split, the data set the split names files of.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Evaluate the test part of this split file instead of the run's split.json.
    #[arg(long, value_name = "FILE")]
    pub split: Option<PathBuf>,
    /// How --data is read.
    #[command(flatten)]
    pub layout: super::LayoutArgs,
    /// Evaluate test fold K of the data set's own folds (BUS-BRA's K-fold-cv.csv) instead of
    /// the run's split.
    #[arg(long, value_name = "K", conflicts_with = "split")]
    pub fold: Option<u32>,
    /// Number of folds for --fold [default: 5].
    #[arg(long, value_name = "N", requires = "fold")]
    pub folds: Option<u32>,
    /// The threshold of both rows and the post-processing of the "PP Y" rows.
    #[command(flatten)]
    pub pp: super::PostProcessArgs,
    /// Also write `overlays/STEM.png` per image: the ground truth's outline (green) and the
    /// post-processed prediction's (yellow) on the image, at its original size.
    #[arg(long)]
    pub overlays: bool,
    /// Images per forward pass; IT is the batch time divided by its size.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Output folder [default: eval/ beside the checkpoint].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Leave out files of --data the scan flags (missing masks, name clashes) instead of
    /// failing.
    #[arg(long)]
    pub skip_bad: bool,
    /// Score a lesion-free view of each selected image instead (a crop beside its lesion, at
    /// least half its width and height, with an empty ground truth): reports how often the
    /// model marks tissue without lesions. Images without room for one are left out.
    #[arg(long)]
    pub lesion_free_views: bool,
    /// Print "mean ± standard deviation" in every cell.
    #[arg(long)]
    pub std: bool,
    #[command(flatten)]
    pub adapter: super::AdapterArgs,
}

/// Where one test image comes from.
#[derive(Clone, Debug)]
enum Origin {
    Phantom(PhantomSource, usize),
    Files(Entry),
    /// A lesion-free view of the other origin's image.
    LesionFree(Box<Origin>),
}

/// One image to evaluate.
#[derive(Clone, Debug)]
pub struct Item {
    pub name: String,
    pub class: Option<String>,
    origin: Origin,
}

impl Item {
    /// The image and its ground truth at the original size; None for a lesion-free view of
    /// an image without room for one.
    fn load(&self) -> anyhow::Result<Option<(GrayF32, BinaryMask)>> {
        let Some((img, mask)) = load_origin(&self.origin, &self.name)? else {
            return Ok(None);
        };
        let gt = BinaryMask::new(
            mask.w,
            mask.h,
            mask.data.iter().map(|&v| v >= 0.5).collect(),
        )?;
        Ok(Some((img, gt)))
    }
}

/// Image and mask of an origin; `name` seeds a lesion-free view, so that every run crops
/// the same one.
fn load_origin(origin: &Origin, name: &str) -> anyhow::Result<Option<(GrayF32, GrayF32)>> {
    Ok(Some(match origin {
        Origin::Phantom(src, i) => {
            let p = generate_phantom(src.seed, *i as u64, src.size);
            (p.image, p.mask)
        }
        Origin::Files(e) => load_pair(&e.image, &e.masks)?,
        Origin::LesionFree(inner) => {
            let Some((img, mask)) = load_origin(inner, name)? else {
                return Ok(None);
            };
            // FNV-1a of the name.
            let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            match lesion_free_view(&img, &mask, &mut Rng::from_parts(&[seed, 0x1E5F])) {
                Some(view) => {
                    let empty = GrayF32::filled(view.w, view.h, 0.0);
                    (view, empty)
                }
                None => return Ok(None),
            }
        }
    }))
}

fn class_of(c: Class) -> Option<String> {
    (c != Class::Unlabelled).then(|| c.as_str().to_string())
}

/// The images `args` ask for, and a phrase saying what they are.
pub fn select_items(args: &Args, model: &ModelSource) -> anyhow::Result<(Vec<Item>, String)> {
    let run_dir = match (model.run_dir(), &args.data) {
        (Some(d), _) => d,
        (None, Some(_)) => Path::new("."),
        (None, None) => bail!(
            "the shipped model has no run folder whose test images could be evaluated: name \
             the images with --data DIR (and e.g. --fold K for a data set's own test fold), \
             or a trained run's checkpoint with --checkpoint"
        ),
    };
    let config_path = run_dir.join("config.json");
    // Without --data the images come from the run (its data folder or its phantoms).
    let needs_run = args.data.is_none();
    let cfg: Option<TrainConfig> = if needs_run {
        let text = std::fs::read_to_string(&config_path).with_context(|| {
            format!(
                "cannot read {}: the checkpoint's folder is not a run folder; name the images with --data DIR",
                config_path.display()
            )
        })?;
        Some(
            TrainConfig::parse(&text)
                .with_context(|| format!("{} is not a training config", config_path.display()))?,
        )
    } else {
        None
    };
    let data = args
        .data
        .clone()
        .or_else(|| cfg.as_ref().and_then(|c| c.data.clone()));
    let fold = args
        .fold
        .map(|k| Fold::new(k, args.folds.unwrap_or(super::DEFAULT_FOLDS)))
        .transpose()?;
    let split_path = match (&args.split, &args.data) {
        _ if fold.is_some() => None,
        (Some(s), _) => Some(s.clone()),
        (None, None) => Some(run_dir.join("split.json")),
        (None, Some(_)) => None,
    };
    let mut fold_files = Vec::new();
    // Every image of the source, by name.
    let (all, source_desc): (Vec<Item>, String) = match &data {
        Some(dir) => {
            super::check_data_folder(dir)?;
            let format = args.layout.format.or(cfg.as_ref().and_then(|c| c.format));
            let pairing = match (&cfg, args.layout.pairing()?) {
                (Some(c), p) if p.is_default() => c.pairing()?,
                (_, p) => p,
            };
            let found = scan(dir, format, &pairing)
                .with_context(|| format!("cannot read the data set at {}", dir.display()))?;
            fold_files = found.fold_files.clone();
            let skip_bad = args.skip_bad || cfg.as_ref().is_some_and(|c| c.skip_bad);
            let mut left_out: Vec<String> = Vec::new();
            for (files, err) in found.problems {
                if !skip_bad {
                    return Err(anyhow::Error::new(err)
                        .context(format!("the data set at {} has a bad file (use --skip-bad to leave such files out)", dir.display())));
                }
                eprintln!("warning: left out: {err}");
                left_out.extend(files);
            }
            let items = found
                .entries
                .into_iter()
                .filter(|e| !left_out.contains(&e.name))
                .map(|e| Item {
                    name: e.name.clone(),
                    class: class_of(e.class),
                    origin: Origin::Files(e),
                })
                .collect();
            (items, format!("the data set at {}", dir.display()))
        }
        None => {
            let cfg = cfg.as_ref().expect("a run config when there is no --data");
            let src = cfg.phantom_source().expect("no data folder: phantoms");
            let items = (0..src.len())
                .map(|i| Item {
                    name: src.name(i),
                    class: class_of(crate::data::synth::phantom_class(src.seed, i as u64)),
                    origin: Origin::Phantom(src, i),
                })
                .collect();
            (items, src.describe())
        }
    };
    let (items, what) = match split_path {
        None if fold.is_some() => {
            let f = fold.expect("matched");
            let Some((_, path)) = fold_files.iter().find(|(n, _)| *n == f.of) else {
                bail!(
                    "--fold {} --folds {}: {source_desc} has no {}-fold-cv.csv of its own; \
                     evaluate a cross-validation run on its split.json (the default)",
                    f.k,
                    f.of,
                    f.of
                );
            };
            let folds = read_test_folds(path, f.of)?;
            let mut test = Vec::new();
            for it in all {
                match folds.get(&id_of(&it.name)) {
                    Some(&k) if k == f.k => test.push(it),
                    Some(_) => {}
                    None => bail!("{} has no row for {}", path.display(), it.name),
                }
            }
            (
                test,
                format!("test fold {} of {} ({source_desc})", f.k, path.display()),
            )
        }
        None => (all, format!("every image of {source_desc}")),
        Some(path) => {
            let split = Split::load(&path)?;
            let by_name: HashMap<&str, &Item> = all.iter().map(|i| (i.name.as_str(), i)).collect();
            let items = split
                .test
                .iter()
                .map(|n| {
                    by_name.get(n.as_str()).map(|i| (*i).clone()).with_context(|| {
                        format!(
                            "split file {} lists test image {n}, which {source_desc} does not have",
                            path.display()
                        )
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            (
                items,
                format!("the test part of {} ({source_desc})", path.display()),
            )
        }
    };
    if items.is_empty() {
        bail!("nothing to evaluate: {what} has no images");
    }
    if args.lesion_free_views {
        let views = items
            .into_iter()
            .map(|i| Item {
                name: format!("{}#lesion-free", i.name),
                class: Some("lesion-free view".into()),
                origin: Origin::LesionFree(Box::new(i.origin)),
            })
            .collect();
        return Ok((views, format!("lesion-free views of {what}")));
    }
    Ok((items, what))
}

/// What `summary.json` holds.
#[derive(Serialize)]
struct SummaryFile<'a> {
    /// The first checkpoint; `checkpoints` lists all of an ensemble.
    checkpoint: String,
    checkpoints: Vec<String>,
    /// Whether each prediction is the mean over the image's four mirrorings.
    tta: bool,
    epoch: usize,
    variant: &'a str,
    width: usize,
    input_size: usize,
    images: String,
    image_count: usize,
    adapter: String,
    batch: usize,
    /// "original": metrics at each image's original size.
    metric_size: &'static str,
    pp_n: PostProcess,
    pp_y: PostProcess,
    rows: &'a [TableRow],
    /// The false-positive rate on the images with an empty ground truth, if any.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    lesion_free: &'a [LesionFreeRow],
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::atomic::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    args.pp.threshold_only()?;
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let sources = ModelSource::from_args(&args.checkpoint);
    if !args.cross_validation {
        // Everything that can be checked without the GPU is, before it is opened.
        let checkpoints = sources
            .iter()
            .map(ModelSource::load)
            .collect::<Result<Vec<_>, _>>()?;
        let selected = select_items(&args, &sources[0])?;
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| sources[0].run_dir().unwrap_or(Path::new(".")).join("eval"));
        let gpu = args.adapter.open()?;
        evaluate(&args, &gpu, &sources, &checkpoints, selected, &out)?;
        return Ok(());
    }
    if args.checkpoint.len() < 2 {
        bail!("--cross-validation scores one checkpoint per fold: give two or more --checkpoint");
    }
    let mut folds = Vec::with_capacity(sources.len());
    for src in &sources {
        let ck = src.load()?;
        let selected = select_items(&args, src)?;
        let out = args.out.as_ref().map_or_else(
            || src.run_dir().unwrap_or(Path::new(".")).join("eval"),
            |o| o.join(format!("fold-{}", folds.len() + 1)),
        );
        folds.push((src, ck, selected, out));
    }
    let gpu = args.adapter.open()?;
    let mut per_fold = Vec::with_capacity(folds.len());
    for (src, ck, selected, out) in folds {
        per_fold.push(evaluate(
            &args,
            &gpu,
            std::slice::from_ref(src),
            std::slice::from_ref(&ck),
            selected,
            &out,
        )?);
    }
    let rows = across_folds(&per_fold);
    println!(
        "\ncross-validation: {} folds, mean ± standard deviation over the folds' means",
        per_fold.len()
    );
    print!("{}", render_text(&rows, true));
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("eval-cv"));
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create the output folder {}", out.display()))?;
    let file = CrossValidationFile {
        checkpoints: ModelSource::paths(&sources),
        rows: &rows,
        folds: &per_fold,
    };
    write_atomic(
        &out.join("cross_validation.json"),
        serde_json::to_string_pretty(&file)?.as_bytes(),
    )?;
    let md = format!(
        "{} folds ({}), each scored on its own run's test part; every cell is the mean ± standard deviation over the folds' means, n the images of all folds.\n\n{}",
        per_fold.len(),
        file.checkpoints.join(", "),
        render_markdown(&rows, true)
    );
    write_atomic(&out.join("cross_validation.md"), md.as_bytes())?;
    eprintln!(
        "wrote cross_validation.json and cross_validation.md to {}",
        out.display()
    );
    Ok(())
}

/// What `cross_validation.json` holds.
#[derive(Serialize)]
struct CrossValidationFile<'a> {
    checkpoints: Vec<String>,
    /// Mean ± sd over the folds of each fold's means.
    rows: &'a [TableRow],
    /// Each fold's own rows, in checkpoint order.
    folds: &'a [Vec<TableRow>],
}

/// Scores `sources` (one model, or an ensemble) on the selected items, prints the table and
/// writes per_image.csv, summary.json and table.md to `out`; returns the table's rows.
fn evaluate(
    args: &Args,
    gpu: &crate::Gpu,
    sources: &[ModelSource],
    checkpoints: &[crate::train::checkpoint::ModelCheckpoint],
    (items, what): (Vec<Item>, String),
    out: &Path,
) -> anyhow::Result<Vec<TableRow>> {
    let setting = super::setting(sources, &args.tta, &args.pp);
    let pp_n = args.pp.threshold_only()?;
    let pp_y = args.pp.post_processed(setting)?;
    let model = ModelSource::describe_all(sources);
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create the output folder {}", out.display()))?;
    let mut predictor =
        crate::shipped::ensemble(gpu, sources, checkpoints, setting.tta, items.len())?;
    predictor
        .warm_up(args.batch.min(items.len()))
        .with_context(|| format!("cannot run {model} on this GPU"))?;
    let c = predictor.members()[0].config();
    let ck = &checkpoints[0];
    eprintln!(
        "evaluating {} F={} S={} from {} (epoch {}{}) on {} ({} images)",
        c.variant.name(),
        c.width,
        c.size,
        model,
        ck.epoch,
        if setting.tta { ", mirrored ×4" } else { "" },
        what,
        items.len()
    );
    if pp_y.min_peak > 0.0 {
        eprintln!(
            "PP Y also drops regions whose probability peaks under {}",
            pp_y.min_peak
        );
    }
    if let Some(note) = super::shipped_setting_note(sources, &args.tta, &args.pp) {
        eprintln!("{note}");
    }
    let overlay_dir = out.join("overlays");
    if args.overlays {
        std::fs::create_dir_all(&overlay_dir)
            .with_context(|| format!("cannot create {}", overlay_dir.display()))?;
    }
    let bar = super::image_bar("eval", items.len());
    let mut records = Vec::with_capacity(items.len() * 2);
    let mut no_room = 0usize;
    for group in items.chunks(args.batch) {
        let mut kept = Vec::with_capacity(group.len());
        let mut loaded = Vec::with_capacity(group.len());
        for i in group {
            match i
                .load()
                .with_context(|| format!("cannot load test image {}", i.name))?
            {
                Some(pair) => {
                    kept.push(i);
                    loaded.push(pair);
                }
                None => no_room += 1,
            }
        }
        if kept.is_empty() {
            bar.inc(group.len() as u64);
            continue;
        }
        let images: Vec<GrayF32> = loaded.iter().map(|(img, _)| img.clone()).collect();
        let preds = predictor
            .predict_batch(&images)
            .with_context(|| format!("inference with {model} failed"))?;
        for ((item, (image, gt)), ens) in kept.iter().zip(&loaded).zip(&preds) {
            let pred = &ens.mean;
            if args.overlays {
                let mask = pred
                    .mask(&pp_y)
                    .with_context(|| format!("post-processing {}", item.name))?;
                // The image's own file stem (names are relative paths with extensions).
                let stem = Path::new(&item.name)
                    .file_stem()
                    .map_or_else(|| item.name.clone(), |s| s.to_string_lossy().into_owned());
                let file = format!("{stem}.png");
                save_png_atomic(
                    &overlay_dir.join(file),
                    &image::DynamicImage::ImageRgb8(overlay(image, &mask, Some(gt))),
                )?;
            }
            for (postprocessed, pp) in [(false, &pp_n), (true, &pp_y)] {
                let metrics = evaluate_probability(&pred.probability, gt, pp)
                    .with_context(|| format!("scoring {}", item.name))?
                    .with_inference_ms(pred.ms);
                records.push(ImageRecord {
                    name: item.name.clone(),
                    class: item.class.clone(),
                    postprocessed,
                    metrics,
                });
            }
        }
        bar.inc(group.len() as u64);
    }
    bar.finish_and_clear();
    if no_room > 0 {
        eprintln!("left out {no_room} image(s) whose lesion leaves no room for a lesion-free view");
    }
    let scored = items.len() - no_room;
    if scored == 0 {
        bail!("nothing to evaluate: no image of {what} has room for a lesion-free view");
    }
    let rows = summary_rows(&records);
    let lesion_free = lesion_free_rows(&records);
    print!("{}", render_text(&rows, args.std));
    print!("{}", render_lesion_free(&lesion_free));
    let mut csv = Vec::new();
    write_csv(&records, &mut csv).context("cannot format the per-image CSV")?;
    write_atomic(&out.join("per_image.csv"), &csv)?;
    let summary = SummaryFile {
        checkpoint: sources[0].path().display().to_string(),
        checkpoints: ModelSource::paths(sources),
        tta: setting.tta,
        epoch: ck.epoch,
        variant: c.variant.name(),
        width: c.width,
        input_size: c.size,
        images: what.clone(),
        image_count: scored,
        adapter: gpu.info().to_string(),
        batch: args.batch,
        metric_size: "original",
        pp_n,
        pp_y,
        rows: &rows,
        lesion_free: &lesion_free,
    };
    write_atomic(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    let md = format!(
        "Checkpoint `{}` (epoch {}) on {} ({} images), metrics at the original image size; IT in ms per image at batch {} on {}.\n\n{}",
        ModelSource::paths(sources).join("`, `"),
        ck.epoch,
        what,
        scored,
        args.batch,
        gpu.info(),
        render_markdown(&rows, true)
    ) + &render_lesion_free(&lesion_free);
    write_atomic(&out.join("table.md"), md.as_bytes())?;
    eprintln!(
        "wrote per_image.csv ({} rows), summary.json and table.md{} to {}",
        records.len(),
        if args.overlays { " and overlays/" } else { "" },
        out.display()
    );
    Ok(rows)
}
