//! BUS-BRA as downloaded: `Images/bus_<id>.png`, `Masks/mask_<id>.png`, the
//! per-image table `bus_data.csv` (patient `Case`, `Pathology`, `Device`, …) and
//! the authors' fold files `5-fold-cv.csv` / `10-fold-cv.csv`, whose `kFold`
//! column names each image's test fold (patient-disjoint).
//!
//! Gómez-Flores, Gregorio-Calas, Pereira, "BUS-BRA: A Breast Ultrasound Dataset for
//! Assessing Computer-aided Diagnosis Systems", Medical Physics, 2023.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::DataError;
use super::csv::Table;
use super::layout::Class;

/// The per-image table of a BUS-BRA folder.
pub const METADATA_FILE: &str = "bus_data.csv";
/// Stems of BUS-BRA images and masks, `{id}` being e.g. `0001-l`.
pub const IMAGE_PATTERN: &str = "bus_{id}";
pub const MASK_PATTERN: &str = "mask_{id}";

/// What `bus_data.csv` says about one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageMeta {
    pub class: Class,
    /// The `Case` column: images of one patient share it.
    pub patient: String,
    /// The `Device` column (scanner and probe frequency).
    pub scanner: String,
}

/// Reads `bus_data.csv`: image ID (the image's stem, `bus_0001-l`) → metadata.
pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, ImageMeta>, DataError> {
    let t = Table::read(path)?;
    let (id, case, pathology, device) = (
        t.column("ID")?,
        t.column("Case")?,
        t.column("Pathology")?,
        t.column("Device")?,
    );
    let mut out = BTreeMap::new();
    for (line, r) in &t.rows {
        let class = match r[pathology].to_ascii_lowercase().as_str() {
            "benign" => Class::Benign,
            "malignant" => Class::Malignant,
            "normal" => Class::Normal,
            other => {
                return Err(t.error(
                    *line,
                    format!("Pathology {other:?} is not benign, malignant or normal"),
                ));
            }
        };
        if r[id].is_empty() || r[case].is_empty() {
            return Err(t.error(*line, "empty ID or Case"));
        }
        let meta = ImageMeta {
            class,
            patient: r[case].clone(),
            scanner: r[device].clone(),
        };
        if out.insert(r[id].clone(), meta).is_some() {
            return Err(t.error(*line, format!("ID {} appears twice", r[id])));
        }
    }
    Ok(out)
}

/// The table ID of a sample: its file stem (`Images/bus_0001-l.png` → `bus_0001-l`).
pub fn id_of(name: &str) -> String {
    Path::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The authors' fold files present in `root`: (number of folds, path), sorted.
pub fn fold_files(root: &Path) -> Vec<(u32, PathBuf)> {
    let mut out: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_ascii_lowercase();
            let k: u32 = name.strip_suffix("-fold-cv.csv")?.parse().ok()?;
            (k >= 2).then(|| (k, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Reads a fold file: image ID → its test fold (1..=folds).
pub fn read_test_folds(path: &Path, folds: u32) -> Result<BTreeMap<String, u32>, DataError> {
    let t = Table::read(path)?;
    let (id, k) = (t.column("ID")?, t.column("kFold")?);
    let mut out = BTreeMap::new();
    for (line, r) in &t.rows {
        let fold: u32 = r[k]
            .parse()
            .ok()
            .filter(|f| (1..=folds).contains(f))
            .ok_or_else(|| {
                t.error(
                    *line,
                    format!("kFold {:?} is not a fold number 1–{folds}", r[k]),
                )
            })?;
        if out.insert(r[id].clone(), fold).is_some() {
            return Err(t.error(*line, format!("ID {} appears twice", r[id])));
        }
    }
    for f in 1..=folds {
        if !out.values().any(|&v| v == f) {
            return Err(t.error(1, format!("no image has kFold {f}")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn metadata_and_folds_parse_and_bad_rows_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            METADATA_FILE,
            "ID,Case,Histology,Pathology,BIRADS,Device,Width,Height,Side,BBOX\n\
             bus_0001-l,1,idc,malignant,4,GE Logiq 7,274,353,left,\"[91,24,103,79]\"\n\
             bus_0002-s,2,fibroadenoma,Benign,3,Toshiba Aplio 300,300,300,left,\"[1,2,3,4]\"\n",
        );
        let m = read_metadata(&p).unwrap();
        assert_eq!(m["bus_0001-l"].class, Class::Malignant);
        assert_eq!(m["bus_0002-s"].class, Class::Benign);
        assert_eq!(m["bus_0002-s"].patient, "2");
        assert_eq!(m["bus_0002-s"].scanner, "Toshiba Aplio 300");

        let p = write(
            dir.path(),
            "bad.csv",
            "ID,Case,Pathology,Device\nbus_1,1,benign,x\nbus_2,2,cyst,x\n",
        );
        let e = read_metadata(&p).unwrap_err().to_string();
        assert!(
            e.contains("bad.csv line 3") && e.contains("\"cyst\""),
            "{e}"
        );

        let p = write(
            dir.path(),
            "2-fold-cv.csv",
            "ID,Pathology,kFold,valid_1,valid_2\nbus_1,benign,1,NaN,1\nbus_2,benign,2,0,NaN\n",
        );
        let f = read_test_folds(&p, 2).unwrap();
        assert_eq!(f["bus_2"], 2);
        let e = read_test_folds(&p, 1).unwrap_err().to_string();
        assert!(
            e.contains("line 3") && e.contains("not a fold number 1–1"),
            "{e}"
        );
        assert_eq!(fold_files(dir.path()), vec![(2, p)]);
    }
}
