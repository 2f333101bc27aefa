//! Finding the files of a data set: the folder layouts (BUSI, BUSIS, BUS-BRA,
//! image/mask pairs), their auto-detection, and the matching of masks to images,
//! by the layout's naming rules or by name patterns the user gives
//! (`--mask-pattern 'mask_{id}'`).
//!
//! Scanning touches names only; decoding happens in [`super::dataset`]. Every file
//! the scan does not use is recorded with the reason, so the report can show it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::image_io::has_image_extension;
use super::{DataError, busbra};

/// The folder layout of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `benign/`, `malignant/`, `normal/` with `<name>.png` + `<name>_mask[_k].png`.
    Busi,
    /// An images folder (`original`, `images`, `imgs`) and a ground-truth folder
    /// (`GT`, `masks`); masks named after the image, optionally with `_GT`/`_mask`.
    Busis,
    /// `images/` and `masks/` with identical stems (or stems matched by patterns).
    Pairs,
    /// BUS-BRA as downloaded: `Images/bus_<id>.png`, `Masks/mask_<id>.png`,
    /// classes and patients from `bus_data.csv`, the authors' `K-fold-cv.csv` folds.
    Busbra,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Busi => "busi",
            Format::Busis => "busis",
            Format::Pairs => "pairs",
            Format::Busbra => "busbra",
        })
    }
}

/// Diagnostic class of an image. BUSI has three; other layouts carry none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Benign,
    Malignant,
    Normal,
    Unlabelled,
}

impl Class {
    /// Folder / label name.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Benign => "benign",
            Class::Malignant => "malignant",
            Class::Normal => "normal",
            Class::Unlabelled => "unlabelled",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One image and the mask files that belong to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Path relative to the data-set root with `/` separators; the sample's
    /// identity in reports and split files.
    pub name: String,
    pub image: PathBuf,
    /// Mask files to OR together; empty means "no lesion" (BUSI `normal/` only).
    pub masks: Vec<PathBuf>,
    pub class: Class,
    /// The patient the image comes from, where the data set says (BUS-BRA's `Case`);
    /// a split keeps a patient's images on one side.
    pub patient: Option<String>,
    /// The scanner, where the data set says (BUS-BRA's `Device`).
    pub scanner: Option<String>,
}

/// A file-name pattern with one `{id}`, e.g. `mask_{id}` or `{id}_seg.png`: the
/// part of a stem that pairs an image with its mask. The extension, if given, is
/// ignored (any image extension matches); matching ignores ASCII case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePattern {
    prefix: String,
    suffix: String,
}

impl NamePattern {
    /// Parses a pattern; it must hold `{id}` exactly once and no folder separator.
    pub fn parse(text: &str) -> Result<NamePattern, DataError> {
        let bad = |why: &str| DataError::InvalidParameter {
            what: "name pattern",
            why: format!("{text:?} {why}"),
        };
        // `mask_{id}.png` means the same as `mask_{id}`.
        let body = match text.rsplit_once('.') {
            Some((head, _)) if head.contains("{id}") && has_image_extension(Path::new(text)) => {
                head
            }
            _ => text,
        };
        if body.contains('/') || body.contains('\\') {
            return Err(bad("holds a folder separator; patterns match file names"));
        }
        match body.matches("{id}").count() {
            1 => {}
            0 => return Err(bad("has no {id} (e.g. mask_{id} or {id}_seg)")),
            _ => return Err(bad("has {id} more than once")),
        }
        let (prefix, suffix) = body.split_once("{id}").expect("one {id}");
        Ok(NamePattern {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
        })
    }

    /// The `{id}` part of `stem`, if the stem matches.
    pub fn id_of<'a>(&self, stem: &'a str) -> Option<&'a str> {
        let (p, s) = (self.prefix.len(), self.suffix.len());
        if stem.len() <= p + s
            || !stem.is_char_boundary(p)
            || !stem.is_char_boundary(stem.len() - s)
            || !stem[..p].eq_ignore_ascii_case(&self.prefix)
            || !stem[stem.len() - s..].eq_ignore_ascii_case(&self.suffix)
        {
            return None;
        }
        Some(&stem[p..stem.len() - s])
    }

    /// The stem this pattern gives for `id`.
    pub fn stem_for(&self, id: &str) -> String {
        format!("{}{id}{}", self.prefix, self.suffix)
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{{id}}{}", self.prefix, self.suffix)
    }
}

/// How images and masks are paired in the folder layouts (not BUSI): by the
/// layout's own rule when a pattern is None.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pairing {
    pub image: Option<NamePattern>,
    pub mask: Option<NamePattern>,
}

impl Pairing {
    /// Parses the `--image-pattern` / `--mask-pattern` options.
    pub fn parse(image: Option<&str>, mask: Option<&str>) -> Result<Pairing, DataError> {
        Ok(Pairing {
            image: image.map(NamePattern::parse).transpose()?,
            mask: mask.map(NamePattern::parse).transpose()?,
        })
    }

    pub fn is_default(&self) -> bool {
        self.image.is_none() && self.mask.is_none()
    }
}

/// A file the scan did not use, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub file: String,
    pub reason: String,
}

/// What a scan found, before any decoding.
#[derive(Debug)]
pub struct Scan {
    pub format: Format,
    /// The folder that holds the layout (may be one level below the folder given).
    pub root: PathBuf,
    pub entries: Vec<Entry>,
    /// Names of images with no mask file (BUSI normal images: empty mask assumed).
    pub images_without_mask: Vec<String>,
    /// Names of mask files that match no image.
    pub masks_without_image: Vec<String>,
    /// Harmless files not used (not images, hidden files, stray folders).
    pub ignored: Vec<Skipped>,
    /// Problems that are errors unless `skip_bad` is set: each with the file(s)
    /// it concerns, so skipping removes exactly those.
    pub problems: Vec<(Vec<String>, DataError)>,
    /// The data set's own fold files (BUS-BRA: `5-fold-cv.csv`, …): (folds, path).
    pub fold_files: Vec<(u32, PathBuf)>,
    /// Things the report should say that are not problems (e.g. table rows
    /// without an image).
    pub notes: Vec<String>,
}

/// Relative name with forward slashes, stable across platforms.
pub fn relative_name(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Sorted directory listing: (files, folders). Sorting makes every later step
/// independent of the file system's listing order.
fn list_dir(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), DataError> {
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let path = entry.path();
        // Follows symlinks, so a linked folder of images works like a real one.
        if path.is_dir() {
            dirs.push(path);
        } else {
            files.push(path);
        }
    }
    files.sort();
    dirs.sort();
    Ok((files, dirs))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_hidden(path: &Path) -> bool {
    file_name(path).starts_with('.')
}

/// Folder names (lower case) that hold images / masks in the BUSIS layout.
const BUSIS_IMAGE_DIRS: &[&str] = &["original", "originals", "images", "image", "imgs", "img"];
const BUSIS_MASK_DIRS: &[&str] = &[
    "gt",
    "ground_truth",
    "groundtruth",
    "ground truth",
    "masks",
    "mask",
];
const BUSI_CLASSES: &[(&str, Class)] = &[
    ("benign", Class::Benign),
    ("malignant", Class::Malignant),
    ("normal", Class::Normal),
];

fn find_child_dir(dirs: &[PathBuf], names: &[&str]) -> Vec<PathBuf> {
    dirs.iter()
        .filter(|d| names.contains(&file_name(d).to_ascii_lowercase().as_str()))
        .cloned()
        .collect()
}

/// Strips `_GT`, `_mask`, `-GT` or `-mask` (any case) from a mask stem.
fn busis_mask_key(mask_stem: &str) -> String {
    let lower = mask_stem.to_ascii_lowercase();
    for suffix in ["_gt", "-gt", "_mask", "-mask"] {
        if lower.ends_with(suffix) && lower.len() > suffix.len() {
            return mask_stem[..mask_stem.len() - suffix.len()].to_string();
        }
    }
    mask_stem.to_string()
}

/// Which layout `dir` holds, if any, judged from its sub-folders.
fn detect_here(dir: &Path) -> Result<Option<Format>, DataError> {
    let (files, dirs) = list_dir(dir)?;
    if is_busbra(&files, &dirs)? {
        return Ok(Some(Format::Busbra));
    }
    let names: Vec<String> = dirs
        .iter()
        .map(|d| file_name(d).to_ascii_lowercase())
        .collect();
    if BUSI_CLASSES
        .iter()
        .any(|(c, _)| names.iter().any(|n| n == c))
    {
        return Ok(Some(Format::Busi));
    }
    let imgs = find_child_dir(&dirs, BUSIS_IMAGE_DIRS);
    let masks = find_child_dir(&dirs, BUSIS_MASK_DIRS);
    if imgs.len() == 1 && masks.len() == 1 {
        let plain = file_name(&imgs[0]).eq_ignore_ascii_case("images")
            && file_name(&masks[0]).eq_ignore_ascii_case("masks");
        if plain {
            // images/ + masks/ is the pairs layout unless the masks carry BUSIS suffixes.
            let (mask_files, _) = list_dir(&masks[0])?;
            let suffixed = mask_files
                .iter()
                .filter(|m| has_image_extension(m))
                .any(|m| busis_mask_key(&stem(m)) != stem(m));
            return Ok(Some(if suffixed {
                Format::Busis
            } else {
                Format::Pairs
            }));
        }
        return Ok(Some(Format::Busis));
    }
    Ok(None)
}

/// `Images/` + `Masks/` with BUS-BRA's table next to them, or with BUS-BRA's names.
fn is_busbra(files: &[PathBuf], dirs: &[PathBuf]) -> Result<bool, DataError> {
    let imgs = find_child_dir(dirs, &["images"]);
    let masks = find_child_dir(dirs, &["masks"]);
    if imgs.len() != 1 || masks.len() != 1 {
        return Ok(false);
    }
    if files
        .iter()
        .any(|f| file_name(f).eq_ignore_ascii_case(busbra::METADATA_FILE))
    {
        return Ok(true);
    }
    let named = |dir: &Path, pattern: &str| -> Result<bool, DataError> {
        let p = NamePattern::parse(pattern)?;
        let (f, _) = list_dir(dir)?;
        let stems: Vec<String> = f
            .iter()
            .filter(|m| has_image_extension(m))
            .map(|m| stem(m))
            .collect();
        Ok(!stems.is_empty() && stems.iter().all(|s| p.id_of(s).is_some()))
    };
    Ok(named(&imgs[0], busbra::IMAGE_PATTERN)? && named(&masks[0], busbra::MASK_PATTERN)?)
}

/// Detects the layout of `dir`, looking one level down when `dir` holds a single
/// folder (a download often unpacks to `Dataset_BUSI_with_GT/…`).
pub fn detect_format(dir: &Path) -> Result<(Format, PathBuf), DataError> {
    if !dir.is_dir() {
        return Err(DataError::UnknownLayout {
            dir: dir.to_path_buf(),
            why: "not a folder (or it does not exist)".into(),
        });
    }
    if let Some(f) = detect_here(dir)? {
        return Ok((f, dir.to_path_buf()));
    }
    let (_, dirs) = list_dir(dir)?;
    let visible: Vec<&PathBuf> = dirs.iter().filter(|d| !is_hidden(d)).collect();
    if visible.len() == 1
        && let Some(f) = detect_here(visible[0])?
    {
        return Ok((f, visible[0].clone()));
    }
    Err(DataError::UnknownLayout {
        dir: dir.to_path_buf(),
        why: "expected benign/, malignant/, normal/ (BUSI), an images folder \
              (original, images, imgs) next to a ground-truth folder (GT, masks) (BUSIS), \
              or images/ and masks/ (pairs)"
            .into(),
    })
}

/// Finds the folder that holds `format`: `dir` itself or its only sub-folder.
fn root_for(dir: &Path, format: Format) -> Result<PathBuf, DataError> {
    if !dir.is_dir() {
        return Err(DataError::UnknownLayout {
            dir: dir.to_path_buf(),
            why: "not a folder (or it does not exist)".into(),
        });
    }
    let fits = |d: &Path| -> Result<bool, DataError> {
        let (_, dirs) = list_dir(d)?;
        Ok(match format {
            Format::Busi => BUSI_CLASSES
                .iter()
                .any(|(c, _)| dirs.iter().any(|p| file_name(p).eq_ignore_ascii_case(c))),
            Format::Busis | Format::Pairs => {
                !find_child_dir(&dirs, BUSIS_IMAGE_DIRS).is_empty()
                    && !find_child_dir(&dirs, BUSIS_MASK_DIRS).is_empty()
            }
            // Named explicitly: Images/ and Masks/ suffice (a missing table is noted).
            Format::Busbra => {
                find_child_dir(&dirs, &["images"]).len() == 1
                    && find_child_dir(&dirs, &["masks"]).len() == 1
            }
        })
    };
    if fits(dir)? {
        return Ok(dir.to_path_buf());
    }
    let (_, dirs) = list_dir(dir)?;
    let visible: Vec<&PathBuf> = dirs.iter().filter(|d| !is_hidden(d)).collect();
    if visible.len() == 1 && fits(visible[0])? {
        return Ok(visible[0].clone());
    }
    Err(DataError::UnknownLayout {
        dir: dir.to_path_buf(),
        why: match format {
            Format::Busi => "--format busi needs benign/, malignant/ or normal/ folders".into(),
            Format::Busis => "--format busis needs an images folder (original, images, imgs) \
                              and a ground-truth folder (GT, masks)"
                .into(),
            Format::Pairs => "--format pairs needs images/ and masks/ folders".into(),
            Format::Busbra => {
                "--format busbra needs Images/ and Masks/ folders (and bus_data.csv)".into()
            }
        },
    })
}

/// Scans `dir` in the given layout, or detects the layout when `format` is None;
/// `pairing` overrides how the folder layouts pair masks with images.
pub fn scan(dir: &Path, format: Option<Format>, pairing: &Pairing) -> Result<Scan, DataError> {
    let (format, root) = match format {
        Some(f) => (f, root_for(dir, f)?),
        None => detect_format(dir)?,
    };
    if format == Format::Busi && !pairing.is_default() {
        return Err(DataError::InvalidParameter {
            what: "name pattern",
            why: format!(
                "{} is in the BUSI layout, which pairs by its own names (<name>_mask.png); \
                 --image-pattern and --mask-pattern apply to images/ + masks/ layouts",
                root.display()
            ),
        });
    }
    let mut scan = Scan {
        format,
        root: root.clone(),
        entries: Vec::new(),
        images_without_mask: Vec::new(),
        masks_without_image: Vec::new(),
        ignored: Vec::new(),
        problems: Vec::new(),
        fold_files: Vec::new(),
        notes: Vec::new(),
    };
    match format {
        Format::Busi => scan_busi(&root, &mut scan)?,
        Format::Busis => scan_folders(&root, Folders::Busis, pairing, &mut scan)?,
        Format::Pairs => scan_folders(&root, Folders::Pairs, pairing, &mut scan)?,
        Format::Busbra => scan_busbra(&root, pairing, &mut scan)?,
    }
    scan.entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(scan)
}

/// Splits a BUSI mask stem `<base>_mask` / `<base>_mask_<k>` into (base, k);
/// k = 0 for the primary mask. None for an image stem.
fn busi_mask_parts(stem: &str) -> Option<(String, u32)> {
    let lower = stem.to_ascii_lowercase();
    if lower.ends_with("_mask") {
        return Some((stem[..stem.len() - 5].to_string(), 0));
    }
    let pos = lower.rfind("_mask_")?;
    let k: u32 = stem[pos + 6..].parse().ok()?;
    Some((stem[..pos].to_string(), k + 1))
}

/// Sorts the images of one folder into a stem → path map, recording ignored
/// files and same-stem clashes.
fn collect_images(root: &Path, files: &[PathBuf], scan: &mut Scan) -> BTreeMap<String, PathBuf> {
    let mut out: BTreeMap<String, PathBuf> = BTreeMap::new();
    for f in files {
        if let Some(kept) = out.get(&stem(f)) {
            let clash = DataError::AmbiguousStem {
                first: kept.clone(),
                second: f.clone(),
            };
            scan.problems.push((
                vec![relative_name(root, kept), relative_name(root, f)],
                clash,
            ));
        } else {
            out.insert(stem(f), f.clone());
        }
    }
    out
}

/// Splits a listing into image files and ignored files.
fn image_files(
    root: &Path,
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    scan: &mut Scan,
) -> Vec<PathBuf> {
    for d in dirs {
        scan.ignored.push(Skipped {
            file: relative_name(root, &d) + "/",
            reason: "unexpected sub-folder (not searched)".into(),
        });
    }
    let mut keep = Vec::new();
    for f in files {
        if is_hidden(&f) {
            scan.ignored.push(Skipped {
                file: relative_name(root, &f),
                reason: "hidden file".into(),
            });
        } else if !has_image_extension(&f) {
            scan.ignored.push(Skipped {
                file: relative_name(root, &f),
                reason: "not an image (extension not png, bmp, jpg, jpeg, tif, tiff)".into(),
            });
        } else {
            keep.push(f);
        }
    }
    keep
}

fn scan_busi(root: &Path, scan: &mut Scan) -> Result<(), DataError> {
    let (files, dirs) = list_dir(root)?;
    for f in files {
        scan.ignored.push(Skipped {
            file: relative_name(root, &f),
            reason: "file outside the class folders".into(),
        });
    }
    for d in dirs {
        let lname = file_name(&d).to_ascii_lowercase();
        let Some(&(_, class)) = BUSI_CLASSES.iter().find(|(c, _)| *c == lname) else {
            scan.ignored.push(Skipped {
                file: relative_name(root, &d) + "/",
                reason: "not a BUSI class folder (benign, malignant, normal)".into(),
            });
            continue;
        };
        let (files, sub) = list_dir(&d)?;
        let files = image_files(root, files, sub, scan);
        let (mask_files, img_files): (Vec<PathBuf>, Vec<PathBuf>) = files
            .into_iter()
            .partition(|f| busi_mask_parts(&stem(f)).is_some());
        let images = collect_images(root, &img_files, scan);
        // base → k → path; a BTreeMap on k puts the primary mask first.
        let mut masks: BTreeMap<String, BTreeMap<u32, PathBuf>> = BTreeMap::new();
        for m in mask_files {
            let (base, k) = busi_mask_parts(&stem(&m)).expect("partitioned as a mask");
            let slot = masks.entry(base).or_default();
            if let Some(kept) = slot.get(&k) {
                let clash = DataError::AmbiguousStem {
                    first: kept.clone(),
                    second: m.clone(),
                };
                scan.problems.push((
                    vec![relative_name(root, kept), relative_name(root, &m)],
                    clash,
                ));
            } else {
                slot.insert(k, m);
            }
        }
        for (base, ms) in &masks {
            if !images.contains_key(base) {
                for m in ms.values() {
                    let name = relative_name(root, m);
                    scan.masks_without_image.push(name.clone());
                    scan.problems
                        .push((vec![name], DataError::OrphanMask { mask: m.clone() }));
                }
            }
        }
        for (s, path) in images {
            let name = relative_name(root, &path);
            let ms: Vec<PathBuf> = masks
                .remove(&s)
                .map(|m| m.into_values().collect())
                .unwrap_or_default();
            if ms.is_empty() {
                scan.images_without_mask.push(name.clone());
                if class != Class::Normal {
                    let expected = format!("{s}_mask.png");
                    scan.problems.push((
                        vec![name],
                        DataError::MissingMask {
                            image: path.clone(),
                            expected,
                        },
                    ));
                    continue;
                }
            }
            scan.entries.push(Entry {
                name,
                image: path,
                masks: ms,
                class,
                patient: None,
                scanner: None,
            });
        }
    }
    Ok(())
}

/// Which folder names and mask rule `scan_folders` uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Folders {
    /// BUSIS names; masks may carry `_GT`/`_mask`.
    Busis,
    /// `images/` and `masks/`, identical stems.
    Pairs,
}

fn scan_folders(
    root: &Path,
    kind: Folders,
    pairing: &Pairing,
    scan: &mut Scan,
) -> Result<(), DataError> {
    let busis = kind == Folders::Busis;
    let (files, dirs) = list_dir(root)?;
    let (img_names, mask_names) = if busis {
        (BUSIS_IMAGE_DIRS, BUSIS_MASK_DIRS)
    } else {
        (&["images"][..], &["masks"][..])
    };
    let img_dirs = find_child_dir(&dirs, img_names);
    let mask_dirs = find_child_dir(&dirs, mask_names);
    let pick = |found: Vec<PathBuf>, what: &str| -> Result<PathBuf, DataError> {
        match found.len() {
            1 => Ok(found.into_iter().next().expect("one element")),
            0 => Err(DataError::UnknownLayout {
                dir: root.to_path_buf(),
                why: format!(
                    "no {what} folder (looked for {:?}, any case)",
                    if what == "image" {
                        img_names
                    } else {
                        mask_names
                    }
                ),
            }),
            _ => Err(DataError::UnknownLayout {
                dir: root.to_path_buf(),
                why: format!(
                    "several {what} folders: {}; keep one",
                    found
                        .iter()
                        .map(|p| file_name(p))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    };
    let img_dir = pick(img_dirs, "image")?;
    let mask_dir = pick(mask_dirs, "mask")?;
    for f in files {
        scan.ignored.push(Skipped {
            file: relative_name(root, &f),
            reason: "file outside the image and mask folders".into(),
        });
    }
    for d in &dirs {
        if *d != img_dir && *d != mask_dir {
            scan.ignored.push(Skipped {
                file: relative_name(root, d) + "/",
                reason: "not an image or mask folder".into(),
            });
        }
    }
    let (f, d) = list_dir(&img_dir)?;
    let mut img_files = image_files(root, f, d, scan);
    if let Some(p) = &pairing.image {
        img_files.retain(|f| {
            let keep = p.id_of(&stem(f)).is_some();
            if !keep {
                scan.ignored.push(Skipped {
                    file: relative_name(root, f),
                    reason: format!("name does not match the image pattern {p}"),
                });
            }
            keep
        });
    }
    // Images by their key: the pattern's {id}, else the stem.
    let by_stem = collect_images(root, &img_files, scan);
    let images: BTreeMap<String, PathBuf> = by_stem
        .into_iter()
        .map(|(s, path)| match &pairing.image {
            Some(p) => (p.id_of(&s).expect("filtered above").to_string(), path),
            None => (s, path),
        })
        .collect();
    let (f, d) = list_dir(&mask_dir)?;
    let mask_files = image_files(root, f, d, scan);
    let mut masks: BTreeMap<String, PathBuf> = BTreeMap::new();
    for m in mask_files {
        let s = stem(&m);
        let key = match &pairing.mask {
            Some(p) => match p.id_of(&s) {
                Some(id) => id.to_string(),
                None => {
                    scan.ignored.push(Skipped {
                        file: relative_name(root, &m),
                        reason: format!("name does not match the mask pattern {p}"),
                    });
                    continue;
                }
            },
            // An exact stem match wins over a suffix-stripped one, so an image that is
            // itself called `x_mask` still finds `x_mask.png`.
            None if !busis || images.contains_key(&s) => s,
            None => busis_mask_key(&s),
        };
        if let Some(kept) = masks.get(&key) {
            let clash = DataError::AmbiguousStem {
                first: kept.clone(),
                second: m.clone(),
            };
            scan.problems.push((
                vec![relative_name(root, kept), relative_name(root, &m)],
                clash,
            ));
        } else {
            masks.insert(key, m);
        }
    }
    for (key, m) in &masks {
        if !images.contains_key(key) {
            let name = relative_name(root, m);
            scan.masks_without_image.push(name.clone());
            scan.problems
                .push((vec![name], DataError::OrphanMask { mask: m.clone() }));
        }
    }
    let mask_dir_name = file_name(&mask_dir);
    for (key, path) in images {
        let name = relative_name(root, &path);
        match masks.get(&key) {
            Some(m) => scan.entries.push(Entry {
                name,
                image: path,
                masks: vec![m.clone()],
                class: Class::Unlabelled,
                patient: None,
                scanner: None,
            }),
            None => {
                scan.images_without_mask.push(name.clone());
                let expected = match &pairing.mask {
                    Some(p) => format!("{mask_dir_name}/{}.png", p.stem_for(&key)),
                    None if busis => {
                        format!("{mask_dir_name}/{key}.png or {mask_dir_name}/{key}_GT.png")
                    }
                    None => format!("{mask_dir_name}/{key}.png"),
                };
                scan.problems.push((
                    vec![name],
                    DataError::MissingMask {
                        image: path,
                        expected,
                    },
                ));
            }
        }
    }
    Ok(())
}

/// BUS-BRA: the pairs layout with BUS-BRA's names (unless patterns are given),
/// then classes, patients and scanners from `bus_data.csv`.
fn scan_busbra(root: &Path, pairing: &Pairing, scan: &mut Scan) -> Result<(), DataError> {
    let pairing = Pairing {
        image: Some(match &pairing.image {
            Some(p) => p.clone(),
            None => NamePattern::parse(busbra::IMAGE_PATTERN)?,
        }),
        mask: Some(match &pairing.mask {
            Some(p) => p.clone(),
            None => NamePattern::parse(busbra::MASK_PATTERN)?,
        }),
    };
    scan_folders(root, Folders::Pairs, &pairing, scan)?;
    scan.fold_files = busbra::fold_files(root);
    let (files, _) = list_dir(root)?;
    let table = files
        .iter()
        .find(|f| file_name(f).eq_ignore_ascii_case(busbra::METADATA_FILE))
        .cloned();
    // The tables are read, not skipped.
    let used: Vec<String> = table
        .iter()
        .chain(scan.fold_files.iter().map(|(_, p)| p))
        .map(|p| relative_name(root, p))
        .collect();
    scan.ignored.retain(|s| !used.contains(&s.file));
    let image_id = pairing.image.as_ref().expect("set above");
    let Some(table) = table else {
        scan.notes.push(format!(
            "no {}: classes unknown; each image's patient is taken from its ID \
             (bus_0001-l: patient 0001)",
            busbra::METADATA_FILE
        ));
        for e in &mut scan.entries {
            let s = stem(&e.image);
            let id = image_id.id_of(&s).unwrap_or_default();
            e.patient = Some(id.split('-').next().unwrap_or(id).to_string());
        }
        return Ok(());
    };
    let meta = busbra::read_metadata(&table)?;
    let mut listed: std::collections::BTreeSet<&str> = meta.keys().map(String::as_str).collect();
    for e in &mut scan.entries {
        let id = stem(&e.image);
        match meta.get(&id) {
            Some(m) => {
                listed.remove(id.as_str());
                e.class = m.class;
                e.patient = Some(m.patient.clone());
                e.scanner = Some(m.scanner.clone());
            }
            None => scan.problems.push((
                vec![e.name.clone()],
                DataError::MissingMetadata {
                    image: e.image.clone(),
                    table: table.clone(),
                },
            )),
        }
    }
    // Rows of images that were skipped for another reason are not "missing".
    for name in scan.images_without_mask.iter() {
        listed.remove(busbra::id_of(name).as_str());
    }
    if !listed.is_empty() {
        let shown: Vec<&str> = listed.iter().take(5).copied().collect();
        scan.notes.push(format!(
            "{} lists {} images that {} does not hold: {}{}",
            relative_name(root, &table),
            listed.len(),
            "Images/",
            shown.join(", "),
            if listed.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busi_mask_names_parse_with_spaces_and_indices() {
        assert_eq!(
            busi_mask_parts("benign (1)_mask"),
            Some(("benign (1)".into(), 0))
        );
        assert_eq!(
            busi_mask_parts("benign (1)_mask_1"),
            Some(("benign (1)".into(), 2))
        );
        assert_eq!(busi_mask_parts("benign (1)"), None);
        assert_eq!(busi_mask_parts("x_mask_a"), None);
    }

    #[test]
    fn busis_suffixes_are_stripped_case_insensitively() {
        assert_eq!(busis_mask_key("case001_GT"), "case001");
        assert_eq!(busis_mask_key("case001_gt"), "case001");
        assert_eq!(busis_mask_key("case001_mask"), "case001");
        assert_eq!(busis_mask_key("case001"), "case001");
        assert_eq!(busis_mask_key("_gt"), "_gt");
    }
}
