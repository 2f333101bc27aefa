//! Finding the files of a data set: the three folder layouts (BUSI, BUSIS,
//! image/mask pairs), their auto-detection, and the matching of masks to images.
//!
//! Scanning touches names only; decoding happens in [`super::dataset`]. Every file
//! the scan does not use is recorded with the reason, so the report can show it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::DataError;
use super::image_io::has_image_extension;

/// The folder layout of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `benign/`, `malignant/`, `normal/` with `<name>.png` + `<name>_mask[_k].png`.
    Busi,
    /// An images folder (`original`, `images`, `imgs`) and a ground-truth folder
    /// (`GT`, `masks`); masks named after the image, optionally with `_GT`/`_mask`.
    Busis,
    /// `images/` and `masks/` with identical stems.
    Pairs,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Busi => "busi",
            Format::Busis => "busis",
            Format::Pairs => "pairs",
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
    let (_, dirs) = list_dir(dir)?;
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
        },
    })
}

/// Scans `dir` in the given layout, or detects the layout when `format` is None.
pub fn scan(dir: &Path, format: Option<Format>) -> Result<Scan, DataError> {
    let (format, root) = match format {
        Some(f) => (f, root_for(dir, f)?),
        None => detect_format(dir)?,
    };
    let mut scan = Scan {
        format,
        root: root.clone(),
        entries: Vec::new(),
        images_without_mask: Vec::new(),
        masks_without_image: Vec::new(),
        ignored: Vec::new(),
        problems: Vec::new(),
    };
    match format {
        Format::Busi => scan_busi(&root, &mut scan)?,
        Format::Busis => scan_folders(&root, true, &mut scan)?,
        Format::Pairs => scan_folders(&root, false, &mut scan)?,
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
            });
        }
    }
    Ok(())
}

fn scan_folders(root: &Path, busis: bool, scan: &mut Scan) -> Result<(), DataError> {
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
    let img_files = image_files(root, f, d, scan);
    let images = collect_images(root, &img_files, scan);
    let (f, d) = list_dir(&mask_dir)?;
    let mask_files = image_files(root, f, d, scan);
    let mut masks: BTreeMap<String, PathBuf> = BTreeMap::new();
    for m in mask_files {
        let s = stem(&m);
        // An exact stem match wins over a suffix-stripped one, so an image that is
        // itself called `x_mask` still finds `x_mask.png`.
        let key = if !busis || images.contains_key(&s) {
            s
        } else {
            busis_mask_key(&s)
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
    for (s, path) in images {
        let name = relative_name(root, &path);
        match masks.get(&s) {
            Some(m) => scan.entries.push(Entry {
                name,
                image: path,
                masks: vec![m.clone()],
                class: Class::Unlabelled,
            }),
            None => {
                scan.images_without_mask.push(name.clone());
                let expected = if busis {
                    format!("{mask_dir_name}/{s}.png or {mask_dir_name}/{s}_GT.png")
                } else {
                    format!("{mask_dir_name}/{s}.png")
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
