//! `rca-gpu infer`: segment images with a trained checkpoint, by default the shipped model
//! ([`crate::shipped`]).
//!
//! For each input image `NAME.ext` it writes, at the image's original size, into `--out`:
//! `NAME_mask.png` (the lesion mask, 0/255 or the `--mask-values`), `NAME_prob.png` (the
//! probability × 255, grey), `NAME_overlay.png` (the image in RGB with the predicted
//! lesion's outline in yellow) and with `--save-probabilities` `NAME_prob.npy` (float32),
//! and prints one line: name, size, lesion area in pixels and percent, milliseconds per
//! image (see [`crate::infer`] for what the time includes). The same figures, with the
//! number of lesion regions and the largest probability, go to `results.csv` and
//! `results.json` in `--out` (and to stdout with `--json`). Existing outputs are replaced.
//!
//! A folder input contributes every image file directly in it, except ground-truth masks
//! (`*_mask*`, `*_GT`) and earlier outputs (`*_prob`, `*_overlay`). An image that cannot be
//! decoded stops the run with its name, unless `--skip-bad` turns it into a warning.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::data::image_io::has_image_extension;
use crate::data::{GrayF32, load_image_gray};
use crate::infer::{is_mask_or_output_name, lesion_area, npy_f32, overlay, save_png_atomic};
use crate::metrics::{Connectivity, PostProcess, label_components};
use crate::shipped::ModelSource;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model checkpoint (e.g. runs/train/best.safetensors); give it several times for an
    /// ensemble (e.g. one per cross-validation fold), whose probabilities are averaged
    /// [default: the model built into rca-gpu, trained on BUS-BRA at 64×64].
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Vec<PathBuf>,
    #[command(flatten)]
    pub tta: super::TtaArgs,
    /// Also write NAME_uncertainty.png: per pixel, the standard deviation of the probability
    /// over the ensemble's members and mirrorings (× 510, so 0.5 is white); with
    /// --save-probabilities also as NAME_uncertainty.npy. Needs --tta or several
    /// --checkpoint.
    #[arg(long)]
    pub save_uncertainty: bool,
    /// Image files and/or folders of images (PNG, BMP, JPEG, TIFF; any size, grey or colour).
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Output folder (created if missing; existing outputs are overwritten).
    #[arg(long, default_value = "predictions")]
    pub out: PathBuf,
    /// Threshold the probability only: no hole filling, no small-region removal.
    #[arg(long)]
    pub no_postprocess: bool,
    #[command(flatten)]
    pub pp: super::PostProcessArgs,
    /// Images per forward pass (split further if the device cannot hold them).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Warn about and skip images that cannot be decoded instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Also write each probability map as a float32 NumPy array, NAME_prob.npy (shape
    /// height × width, values in [0, 1], before any thresholding).
    #[arg(long)]
    pub save_probabilities: bool,
    /// Pixel values of the written masks, background,lesion: 0,255 to view them, 0,1 for
    /// label maps that other tools (nnU-Net, MONAI) read as classes.
    #[arg(long, default_value = "0,255", value_name = "BG,FG", value_parser = parse_mask_values)]
    pub mask_values: (u8, u8),
    /// Print the results as JSON on stdout (the content of results.json) instead of one
    /// line per image.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub adapter: super::AdapterArgs,
}

impl Args {
    /// The post-processing of the written masks, with the peak of `setting`.
    pub fn post_process(&self, setting: crate::shipped::Setting) -> anyhow::Result<PostProcess> {
        if self.no_postprocess {
            self.pp.threshold_only()
        } else {
            self.pp.post_processed(setting)
        }
    }
}

/// The image files the inputs name, in order (folders sorted by name), and how many files
/// of the folders were left out as masks or earlier outputs.
pub fn collect_inputs(inputs: &[PathBuf]) -> anyhow::Result<(Vec<PathBuf>, usize)> {
    let mut files = Vec::new();
    let mut left_out = 0;
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("cannot read the folder {}", input.display()))?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .with_context(|| format!("cannot read the folder {}", input.display()))?;
            found.retain(|p| p.is_file() && has_image_extension(p));
            found.sort();
            let before = found.len();
            found.retain(|p| !is_mask_or_output_name(p));
            left_out += before - found.len();
            if found.is_empty() {
                bail!(
                    "the folder {} has no images to segment ({} mask or output files left out)",
                    input.display(),
                    before
                );
            }
            files.extend(found);
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            bail!("input {} does not exist", input.display());
        }
    }
    // Outputs are named after the stem: two inputs with one stem would overwrite each other.
    let mut seen: HashMap<String, &PathBuf> = HashMap::new();
    for f in &files {
        if let Some(first) = seen.insert(stem(f), f) {
            bail!(
                "{} and {} have the same name stem, so their outputs would overwrite each other; segment them into different --out folders",
                first.display(),
                f.display()
            );
        }
    }
    Ok((files, left_out))
}

/// `BG,FG`: two pixel values 0–255 that differ.
fn parse_mask_values(s: &str) -> Result<(u8, u8), String> {
    let bad = || format!("'{s}' is not two different pixel values 0–255 like 0,255 or 0,1");
    let (bg, fg) = s.split_once(',').ok_or_else(bad)?;
    let bg: u8 = bg.trim().parse().map_err(|_| bad())?;
    let fg: u8 = fg.trim().parse().map_err(|_| bad())?;
    if bg == fg {
        return Err(bad());
    }
    Ok((bg, fg))
}

/// One segmented image, as results.csv and results.json list it.
#[derive(Debug, serde::Serialize)]
pub struct Record {
    /// The input path as given (or found in a given folder).
    pub file: String,
    pub width: usize,
    pub height: usize,
    /// Lesion pixels of the written mask, and their share of the image in percent.
    pub lesion_px: usize,
    pub lesion_percent: f64,
    /// Connected lesion regions of the written mask (8-connected).
    pub components: usize,
    /// The largest lesion probability anywhere in the image.
    pub max_probability: f32,
    /// Milliseconds of this image (see `crate::infer` for what the time includes).
    pub ms: f64,
}

/// results.csv: a header and one row per image, in input order.
fn results_csv(records: &[Record]) -> String {
    let mut out =
        String::from("file,width,height,lesion_px,lesion_percent,components,max_probability,ms\n");
    for r in records {
        let file = if r.file.contains([',', '"', '\n']) {
            format!("\"{}\"", r.file.replace('"', "\"\""))
        } else {
            r.file.clone()
        };
        out += &format!(
            "{file},{},{},{},{:.4},{},{:.6},{:.2}\n",
            r.width, r.height, r.lesion_px, r.lesion_percent, r.components, r.max_probability, r.ms
        );
    }
    out
}

/// Writes a plane of `img`'s size as a float32 `.npy` (height × width), atomically.
fn write_npy(path: &Path, img: &GrayF32, values: &[f32]) -> anyhow::Result<()> {
    crate::atomic::write(path, npy_f32(&[img.h, img.w], values))
        .with_context(|| format!("cannot write {}", path.display()))
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let sources = ModelSource::from_args(&args.checkpoint);
    let setting = super::setting(&sources, &args.tta, &args.pp);
    let pp = args.post_process(setting)?;
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let (files, left_out) = collect_inputs(&args.inputs)?;
    if left_out > 0 {
        eprintln!("left out {left_out} mask or output file(s) found in the input folder(s)");
    }
    // The checkpoint is read and checked before the GPU is opened, so a wrong path fails at once.
    let checkpoints = sources
        .iter()
        .map(ModelSource::load)
        .collect::<Result<Vec<_>, _>>()?;
    if args.save_uncertainty && sources.len() == 1 && !setting.tta {
        bail!(
            "--save-uncertainty needs several predictions per image to disagree: add --tta or more --checkpoint files"
        );
    }
    let what = ModelSource::describe_all(&sources);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create the output folder {}", args.out.display()))?;
    let gpu = args.adapter.open()?;
    let mut predictor =
        crate::shipped::ensemble(&gpu, &sources, &checkpoints, setting.tta, files.len())?;
    predictor
        .warm_up(args.batch.min(files.len()))
        .with_context(|| format!("cannot run {what} on this GPU"))?;
    for (src, m) in sources.iter().zip(predictor.members()) {
        let c = m.config();
        eprintln!(
            "{} F={} S={} from {} (epoch {})",
            c.variant.name(),
            c.width,
            c.size,
            src.describe(),
            m.epoch()
        );
    }
    eprintln!(
        "{} image(s), {} prediction(s) averaged per image, {}",
        files.len(),
        predictor.views(),
        if args.no_postprocess {
            "threshold only".to_string()
        } else if pp.min_peak > 0.0 {
            format!(
                "post-processed, regions peaking under {} dropped",
                pp.min_peak
            )
        } else {
            "post-processed".to_string()
        }
    );
    if let Some(note) = super::shipped_setting_note(&sources, &args.tta, &args.pp) {
        eprintln!("{note}");
    }
    let (mut skipped, mut total_ms) = (0usize, 0.0f64);
    let mut records: Vec<Record> = Vec::with_capacity(files.len());
    let (bg, fg) = args.mask_values;
    let bar = super::image_bar("infer", files.len());
    for group in files.chunks(args.batch) {
        let mut images: Vec<(&PathBuf, GrayF32)> = Vec::with_capacity(group.len());
        for f in group {
            match load_image_gray(f) {
                Ok(img) => images.push((f, img)),
                Err(e) if args.skip_bad => {
                    bar.suspend(|| eprintln!("warning: skipped: {e}"));
                    skipped += 1;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(
                        "an input image cannot be read (use --skip-bad to skip such files)",
                    ));
                }
            }
        }
        let grey: Vec<GrayF32> = images.iter().map(|(_, g)| g.clone()).collect();
        let preds = predictor
            .predict_batch(&grey)
            .with_context(|| format!("inference with {what} failed"))?;
        for ((path, img), ens) in images.iter().zip(&preds) {
            let pred = &ens.mean;
            let name = stem(path);
            let mask = pred.mask(&pp)?;
            let (area, pct) = lesion_area(&mask);
            let (w, h) = (img.w as u32, img.h as u32);
            let mask_px = mask
                .data()
                .iter()
                .map(|&m| if m { fg } else { bg })
                .collect();
            let prob_px = pred
                .probability
                .iter()
                .map(|&p| (p.clamp(0.0, 1.0) * 255.0).round() as u8)
                .collect();
            let mask_img = image::GrayImage::from_raw(w, h, mask_px).expect("w×h pixels");
            let prob_img = image::GrayImage::from_raw(w, h, prob_px).expect("w×h pixels");
            save_png_atomic(&args.out.join(format!("{name}_mask.png")), &mask_img.into())?;
            save_png_atomic(&args.out.join(format!("{name}_prob.png")), &prob_img.into())?;
            save_png_atomic(
                &args.out.join(format!("{name}_overlay.png")),
                &overlay(img, &mask, None).into(),
            )?;
            if args.save_probabilities {
                write_npy(
                    &args.out.join(format!("{name}_prob.npy")),
                    img,
                    &pred.probability,
                )?;
            }
            if args.save_uncertainty {
                let px = ens
                    .uncertainty
                    .iter()
                    .map(|&u| (u * 510.0).round().clamp(0.0, 255.0) as u8)
                    .collect();
                let u_img = image::GrayImage::from_raw(w, h, px).expect("w×h pixels");
                save_png_atomic(
                    &args.out.join(format!("{name}_uncertainty.png")),
                    &u_img.into(),
                )?;
                if args.save_probabilities {
                    let path = args.out.join(format!("{name}_uncertainty.npy"));
                    write_npy(&path, img, &ens.uncertainty)?;
                }
            }
            if !args.json {
                bar.suspend(|| {
                    println!(
                        "{name}  {w}x{h}  lesion {area} px ({pct:.2} %)  {:.1} ms",
                        pred.ms
                    )
                });
            }
            total_ms += pred.ms;
            records.push(Record {
                file: path.display().to_string(),
                width: img.w,
                height: img.h,
                lesion_px: area,
                lesion_percent: pct,
                components: label_components(&mask, Connectivity::Eight).sizes.len(),
                max_probability: pred.probability.iter().copied().fold(0.0, f32::max),
                ms: pred.ms,
            });
        }
        bar.inc(group.len() as u64);
    }
    bar.finish_and_clear();
    let done = records.len();
    if done == 0 {
        bail!("none of the {} input image(s) could be read", files.len());
    }
    let json = serde_json::to_string_pretty(&records).expect("records serialise");
    for (file, text) in [
        ("results.csv", results_csv(&records)),
        ("results.json", json.clone()),
    ] {
        let path = args.out.join(file);
        crate::atomic::write(&path, text)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        println!("{json}");
    }
    eprintln!(
        "{done} image(s) segmented, {:.1} ms per image on average (batch {}){}; outputs in {}",
        total_ms / done as f64,
        args.batch,
        if skipped > 0 {
            format!(", {skipped} skipped")
        } else {
            String::new()
        },
        args.out.display()
    );
    Ok(())
}
