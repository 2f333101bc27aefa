//! Loading a data set into memory: scan, decode, check, merge masks, preprocess
//! to S×S, hash for duplicates, and write down everything that happened in a
//! [`DatasetReport`].
//!
//! A missing, corrupt or mismatched file stops the load with an error naming it;
//! with `skip_bad` the file is left out and listed in the report instead.
//! Nothing is dropped silently.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::DataError;
use super::hash::{DuplicateRule, Fingerprint, duplicate_groups, fingerprint};
use super::image_io::{GrayF32, load_image_gray, load_mask};
use super::layout::{Class, Entry, Format, Pairing, Skipped, scan};
use super::preprocess::{MaskResize, preprocess_image, preprocess_mask};

/// How to load a data set.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Layout; None detects it from the folder.
    pub format: Option<Format>,
    /// Name patterns pairing masks with images (folder layouts); default: the layout's rule.
    pub pairing: Pairing,
    /// Turn bad files (missing mask, corrupt, size mismatch, orphan mask) into
    /// listed skips instead of errors.
    pub skip_bad: bool,
    /// Side S of the preprocessed images and masks.
    pub size: usize,
    pub mask_resize: MaskResize,
    /// When two images count as near-identical.
    pub duplicates: DuplicateRule,
    /// Decoding threads; 0 uses all available cores.
    pub threads: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            format: None,
            pairing: Pairing::default(),
            skip_bad: false,
            size: 256,
            mask_resize: MaskResize::default(),
            duplicates: DuplicateRule::default(),
            threads: 0,
        }
    }
}

/// One preprocessed image and its mask.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Path relative to the data-set root, `/`-separated (e.g. `benign/benign (1).png`).
    pub name: String,
    pub class: Class,
    /// size×size grey values in [0, 1].
    pub image: Vec<f32>,
    /// size×size, each 0.0 or 1.0.
    pub mask: Vec<f32>,
    /// Size of the original file.
    pub orig_w: u32,
    pub orig_h: u32,
    /// Perceptual fingerprint of the original grey image.
    pub fingerprint: Fingerprint,
    /// Number of mask files OR-ed into `mask`.
    pub mask_files: usize,
    /// Patient, where the data set says (a split keeps a patient on one side).
    pub patient: Option<String>,
    /// Scanner, where the data set says.
    pub scanner: Option<String>,
}

/// A loaded data set.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub format: Format,
    pub size: usize,
    /// Sorted by name.
    pub samples: Vec<Sample>,
    pub report: DatasetReport,
    /// The data set's own fold files (BUS-BRA's `K-fold-cv.csv`): (folds, path).
    pub fold_files: Vec<(u32, PathBuf)>,
}

/// Images per class in the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCount {
    pub images: usize,
    /// Images whose mask has at least one foreground pixel.
    pub with_lesion: usize,
}

/// What was found while loading, for the console and for the run folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetReport {
    pub root: String,
    pub format: Format,
    /// Preprocessed side S.
    pub size: usize,
    pub images_loaded: usize,
    pub per_class: BTreeMap<String, ClassCount>,
    /// Smallest and largest original width and height, None if nothing loaded.
    pub width_range: Option<(u32, u32)>,
    pub height_range: Option<(u32, u32)>,
    /// Images whose mask was merged from several files.
    pub masks_merged: usize,
    /// Mask files beyond the first that were OR-ed in.
    pub extra_mask_files: usize,
    /// Images with no mask file (BUSI `normal/`: an empty mask is assumed).
    pub images_without_mask: Vec<String>,
    pub masks_without_image: Vec<String>,
    /// Groups of identical or near-identical images (see [`DuplicateRule`]);
    /// the split keeps each group on one side.
    pub duplicate_groups: Vec<Vec<String>>,
    pub duplicate_rule: DuplicateRule,
    /// Files left out, with the reason (ignored files and, with `skip_bad`, bad ones).
    pub skipped: Vec<Skipped>,
    /// Distinct patients, where the data set names them (None: unknown, each image
    /// is its own patient for the split).
    #[serde(default)]
    pub patients: Option<PatientCount>,
    /// Images per scanner, where the data set names them.
    #[serde(default)]
    pub scanners: BTreeMap<String, usize>,
    /// The data set's own fold files (their names), usable with `--fold K`.
    #[serde(default)]
    pub fold_files: Vec<String>,
    /// Remarks that are not problems (e.g. table rows without an image).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// How images are spread over patients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientCount {
    pub patients: usize,
    /// Patients with more than one image.
    pub with_several_images: usize,
    /// Most images of one patient.
    pub most_images: usize,
}

impl DatasetReport {
    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// Writes the report as JSON (`.json`) or as the text shown on the console
    /// (any other extension).
    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        let text = if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            self.to_json()
        } else {
            self.to_string()
        };
        crate::atomic::write(path, text).map_err(|e| DataError::io(path, e))
    }

    /// Images that belong to a duplicate group, counting every member.
    pub fn images_in_duplicate_groups(&self) -> usize {
        self.duplicate_groups.iter().map(Vec::len).sum()
    }
}

fn list_block(f: &mut fmt::Formatter<'_>, title: &str, items: &[String]) -> fmt::Result {
    writeln!(f, "{title}: {}", items.len())?;
    const SHOWN: usize = 20;
    for it in items.iter().take(SHOWN) {
        writeln!(f, "  {it}")?;
    }
    if items.len() > SHOWN {
        writeln!(
            f,
            "  … and {} more (see the JSON report)",
            items.len() - SHOWN
        )?;
    }
    Ok(())
}

impl fmt::Display for DatasetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "data set {} (format {}, resized to {}×{})",
            self.root, self.format, self.size, self.size
        )?;
        writeln!(f, "images loaded: {}", self.images_loaded)?;
        for (class, c) in &self.per_class {
            writeln!(
                f,
                "  {class:<11} {:>5} images, {:>5} with a lesion",
                c.images, c.with_lesion
            )?;
        }
        if let Some(p) = &self.patients {
            writeln!(
                f,
                "patients: {} ({} with several images, at most {} each); a split keeps each \
                 patient's images on one side",
                p.patients, p.with_several_images, p.most_images
            )?;
        }
        if !self.scanners.is_empty() {
            writeln!(f, "scanners:")?;
            for (s, n) in &self.scanners {
                writeln!(f, "  {s:<28} {n:>5} images")?;
            }
        }
        if !self.fold_files.is_empty() {
            writeln!(
                f,
                "the data set's own folds: {} (train --fold K takes test fold K of them)",
                self.fold_files.join(", ")
            )?;
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        match (self.width_range, self.height_range) {
            (Some((w0, w1)), Some((h0, h1))) => {
                writeln!(f, "original sizes: width {w0}–{w1}, height {h0}–{h1}")?
            }
            _ => writeln!(f, "original sizes: none")?,
        }
        writeln!(
            f,
            "masks merged: {} images from {} extra mask files",
            self.masks_merged, self.extra_mask_files
        )?;
        list_block(f, "images without a mask", &self.images_without_mask)?;
        if self
            .images_without_mask
            .iter()
            .any(|n| n.to_ascii_lowercase().starts_with("normal/"))
        {
            writeln!(
                f,
                "  (an image in normal/ without a mask file gets an empty mask)"
            )?;
        }
        list_block(f, "masks without an image", &self.masks_without_image)?;
        writeln!(
            f,
            "duplicate groups (pHash ≤ {} bits and thumbnail correlation ≥ {}, or correlation ≥ {}): \
             {} groups, {} images",
            self.duplicate_rule.max_hamming,
            self.duplicate_rule.min_correlation,
            self.duplicate_rule.strong_correlation,
            self.duplicate_groups.len(),
            self.images_in_duplicate_groups()
        )?;
        let groups: Vec<String> = self
            .duplicate_groups
            .iter()
            .map(|g| g.join("  =  "))
            .collect();
        for g in groups.iter().take(20) {
            writeln!(f, "  {g}")?;
        }
        if groups.len() > 20 {
            writeln!(
                f,
                "  … and {} more (see the JSON report)",
                groups.len() - 20
            )?;
        }
        let skipped: Vec<String> = self
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.file, s.reason))
            .collect();
        list_block(f, "files skipped", &skipped)
    }
}

/// Decodes an image and its masks, checks sizes, ORs the masks.
/// Returns the full-resolution grey image and binary mask.
pub fn load_pair(image: &Path, masks: &[PathBuf]) -> Result<(GrayF32, GrayF32), DataError> {
    let img = load_image_gray(image)?;
    let mut mask = GrayF32::filled(img.w, img.h, 0.0);
    for m in masks {
        let part = load_mask(m)?;
        if part.w != img.w || part.h != img.h {
            return Err(DataError::SizeMismatch {
                image: image.to_path_buf(),
                mask: m.clone(),
                image_w: img.w as u32,
                image_h: img.h as u32,
                mask_w: part.w as u32,
                mask_h: part.h as u32,
            });
        }
        for (d, s) in mask.data.iter_mut().zip(&part.data) {
            *d = d.max(*s);
        }
    }
    Ok((img, mask))
}

fn load_entry(e: &Entry, opts: &LoadOptions) -> Result<Sample, DataError> {
    let (img, mask) = load_pair(&e.image, &e.masks)?;
    Ok(Sample {
        name: e.name.clone(),
        class: e.class,
        image: preprocess_image(&img, opts.size),
        mask: preprocess_mask(&mask, opts.size, opts.mask_resize),
        orig_w: img.w as u32,
        orig_h: img.h as u32,
        fingerprint: fingerprint(&img),
        mask_files: e.masks.len(),
        patient: e.patient.clone(),
        scanner: e.scanner.clone(),
    })
}

/// Loads a data set (see [`load_dataset_with_progress`]).
pub fn load_dataset(dir: &Path, opts: &LoadOptions) -> Result<Dataset, DataError> {
    load_dataset_with_progress(dir, opts, &|| {})
}

/// Loads a data set, calling `tick` once per decoded image (for a progress bar).
pub fn load_dataset_with_progress(
    dir: &Path,
    opts: &LoadOptions,
    tick: &(dyn Fn() + Sync),
) -> Result<Dataset, DataError> {
    if opts.size == 0 {
        return Err(DataError::InvalidParameter {
            what: "size",
            why: "must be positive".into(),
        });
    }
    let found = scan(dir, opts.format, &opts.pairing)?;
    let mut skipped = found.ignored.clone();
    for (files, err) in found.problems {
        if !opts.skip_bad {
            return Err(err);
        }
        for file in files {
            skipped.push(Skipped {
                file,
                reason: err.to_string(),
            });
        }
    }
    // A file involved in a name clash was recorded as skipped above; make sure it
    // is not loaded through the entry that kept it either.
    let clashing: std::collections::BTreeSet<&str> =
        skipped.iter().map(|s| s.file.as_str()).collect();
    let entries: Vec<&Entry> = found
        .entries
        .iter()
        .filter(|e| {
            !clashing.contains(e.name.as_str())
                && !e.masks.iter().any(|m| {
                    clashing.contains(super::layout::relative_name(&found.root, m).as_str())
                })
        })
        .collect();
    let excluded: Vec<&Entry> = found
        .entries
        .iter()
        .filter(|e| !entries.iter().any(|k| k.name == e.name))
        .collect();
    for e in excluded {
        if !skipped.iter().any(|s| s.file == e.name) {
            skipped.push(Skipped {
                file: e.name.clone(),
                reason: "one of its mask files has an ambiguous name (see above)".into(),
            });
        }
    }

    let results = parallel_map(&entries, opts.threads, |e| {
        let r = load_entry(e, opts);
        tick();
        r
    });
    let mut samples = Vec::with_capacity(results.len());
    for (e, r) in entries.iter().zip(results) {
        match r {
            Ok(s) => samples.push(s),
            Err(err) if opts.skip_bad => {
                skipped.push(Skipped {
                    file: e.name.clone(),
                    reason: err.to_string(),
                });
                // Its masks go with it; say so rather than let them vanish.
                for m in &e.masks {
                    skipped.push(Skipped {
                        file: super::layout::relative_name(&found.root, m),
                        reason: format!("mask of the skipped image {}", e.name),
                    });
                }
            }
            Err(err) => return Err(err),
        }
    }
    if samples.is_empty() {
        return Err(DataError::NoImages {
            dir: dir.to_path_buf(),
        });
    }

    let mut per_class: BTreeMap<String, ClassCount> = BTreeMap::new();
    for s in &samples {
        let c = per_class.entry(s.class.to_string()).or_default();
        c.images += 1;
        if s.mask.iter().any(|&v| v > 0.0) {
            c.with_lesion += 1;
        }
    }
    let range = |f: &dyn Fn(&Sample) -> u32| {
        let lo = samples.iter().map(f).min()?;
        let hi = samples.iter().map(f).max()?;
        Some((lo, hi))
    };
    let fps: Vec<Fingerprint> = samples.iter().map(|s| s.fingerprint.clone()).collect();
    let groups = duplicate_groups(&fps, &opts.duplicates)
        .into_iter()
        .map(|g| g.into_iter().map(|i| samples[i].name.clone()).collect())
        .collect();
    let patients = samples.iter().any(|s| s.patient.is_some()).then(|| {
        let mut per: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &samples {
            *per.entry(s.patient.as_deref().unwrap_or(&s.name))
                .or_default() += 1;
        }
        PatientCount {
            patients: per.len(),
            with_several_images: per.values().filter(|&&n| n > 1).count(),
            most_images: per.values().copied().max().unwrap_or(0),
        }
    });
    let mut scanners: BTreeMap<String, usize> = BTreeMap::new();
    for s in &samples {
        if let Some(sc) = &s.scanner {
            *scanners.entry(sc.clone()).or_default() += 1;
        }
    }
    let report = DatasetReport {
        root: found.root.display().to_string(),
        format: found.format,
        size: opts.size,
        images_loaded: samples.len(),
        per_class,
        width_range: range(&|s| s.orig_w),
        height_range: range(&|s| s.orig_h),
        masks_merged: samples.iter().filter(|s| s.mask_files > 1).count(),
        extra_mask_files: samples.iter().map(|s| s.mask_files.saturating_sub(1)).sum(),
        images_without_mask: found.images_without_mask,
        masks_without_image: found.masks_without_image,
        duplicate_groups: groups,
        duplicate_rule: opts.duplicates,
        skipped,
        patients,
        scanners,
        fold_files: found
            .fold_files
            .iter()
            .map(|(_, p)| super::layout::relative_name(&found.root, p))
            .collect(),
        notes: found.notes.clone(),
    };
    Ok(Dataset {
        root: found.root,
        format: found.format,
        size: opts.size,
        samples,
        report,
        fold_files: found.fold_files,
    })
}

/// Maps `f` over `items` on up to `threads` scoped threads (0 = all cores),
/// keeping the input order in the output whatever the timing.
pub(crate) fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        threads
    }
    .min(items.len().max(1));
    if threads <= 1 {
        return items.iter().map(&f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut slots: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    let done: Vec<Vec<(usize, R)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= items.len() {
                            break;
                        }
                        out.push((i, f(&items[i])));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("loader thread panicked"))
            .collect()
    });
    for (i, r) in done.into_iter().flatten() {
        slots[i] = Some(r);
    }
    slots
        .into_iter()
        .map(|r| r.expect("every item mapped"))
        .collect()
}
