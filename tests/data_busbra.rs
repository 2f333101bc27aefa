//! BUS-BRA as downloaded (the twelve-image sample in `data/busbra_sample`): detection,
//! classes, patients and scanners from `bus_data.csv`, the authors' test folds, errors that
//! name the table and line; pairing by name pattern for other layouts; patient-aware splits
//! and rca-gpu's own folds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rca_gpu::data::split::{Fold, SplitItem, make_split_with_test};
use rca_gpu::data::{
    Class, DataError, Format, LoadOptions, NamePattern, Pairing, Split, SplitConfig, load_dataset,
    make_split,
};

use crate::common::{picture, rect_mask, save_gray};

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/busbra_sample")
}

fn opts() -> LoadOptions {
    LoadOptions {
        size: 32,
        threads: 2,
        ..Default::default()
    }
}

/// A writable copy of the sample.
fn copy_sample(to: &Path) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let dest = to.join(e.file_name());
            if e.path().is_dir() {
                copy(&e.path(), &dest);
            } else {
                std::fs::copy(e.path(), &dest).unwrap();
            }
        }
    }
    copy(&sample_dir(), to);
}

/// Patient of each sample image, from the sample's own table (read here by hand).
fn patients_in_table() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(sample_dir().join("bus_data.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (format!("Images/{}.png", f[0]), f[1].to_string())
        })
        .collect()
}

#[test]
fn the_sample_is_detected_with_classes_patients_scanners_and_folds() {
    let ds = load_dataset(&sample_dir(), &opts()).unwrap();
    assert_eq!(ds.format, Format::Busbra);
    assert_eq!(ds.samples.len(), 12);
    let r = &ds.report;
    assert_eq!(r.per_class["benign"].images, 8);
    assert_eq!(r.per_class["malignant"].images, 4);
    assert_eq!(r.per_class["malignant"].with_lesion, 4);
    let p = r.patients.as_ref().expect("BUS-BRA names patients");
    assert_eq!(
        (p.patients, p.with_several_images, p.most_images),
        (6, 6, 2)
    );
    assert_eq!(r.scanners.len(), 4);
    assert_eq!(r.scanners["GE Logiq 5 @10-12MHz"], 4);
    assert_eq!(r.fold_files, ["5-fold-cv.csv"]);
    // The tables are read, not skipped; the licence and readme are listed.
    let skipped: Vec<&str> = r.skipped.iter().map(|s| s.file.as_str()).collect();
    assert_eq!(skipped, ["LICENSE.txt", "README.md"]);
    let s = ds
        .samples
        .iter()
        .find(|s| s.name == "Images/bus_0369-r.png")
        .unwrap();
    assert_eq!(s.class, Class::Malignant);
    assert_eq!(s.patient.as_deref(), Some("369"));
    assert_eq!(s.scanner.as_deref(), Some("GE Logiq 5 @10-12MHz"));
    assert_eq!((s.orig_w, s.orig_h), (324, 453));
    assert!(s.mask.iter().any(|&v| v > 0.0));
    let text = r.to_string();
    assert!(text.contains("patients: 6"), "{text}");
    assert!(text.contains("Toshiba Aplio 300"), "{text}");
}

#[test]
fn a_fold_split_tests_on_exactly_the_authors_fold_and_keeps_patients_together() {
    let ds = load_dataset(&sample_dir(), &opts()).unwrap();
    let patient = patients_in_table();
    // The sample's 5-fold-cv.csv, read by hand: image → test fold.
    let text = std::fs::read_to_string(sample_dir().join("5-fold-cv.csv")).unwrap();
    let fold_of: BTreeMap<String, u32> = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (format!("Images/{}.png", f[0]), f[2].parse().unwrap())
        })
        .collect();
    for k in 1..=5 {
        let split = ds
            .split(&SplitConfig::new(7, Some(Fold::new(k, 5).unwrap())))
            .unwrap();
        let want: Vec<&String> = fold_of
            .iter()
            .filter(|(_, f)| **f == k)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(split.test.iter().collect::<Vec<_>>(), want, "fold {k}");
        assert_eq!(split.folds_from.as_deref(), Some("5-fold-cv.csv"));
        assert!(split.grouped_by_patient);
        assert!(split.excluded.is_empty());
        assert_eq!(split.train.len() + split.val.len() + split.test.len(), 12);
        let side_patients = |side: &[String]| -> BTreeSet<&str> {
            side.iter().map(|n| patient[n].as_str()).collect()
        };
        let (tr, va, te) = (
            side_patients(&split.train),
            side_patients(&split.val),
            side_patients(&split.test),
        );
        assert!(tr.is_disjoint(&te) && va.is_disjoint(&te) && tr.is_disjoint(&va));
        assert!(
            split.describe().contains("test fold"),
            "{}",
            split.describe()
        );
    }
    // Ten folds asked for, none shipped in the sample: rca-gpu's own folds.
    let split = ds
        .split(&SplitConfig::new(7, Some(Fold::new(2, 6).unwrap())))
        .unwrap();
    assert_eq!(split.folds_from, None);
    assert_eq!(split.test.len(), 2);
}

#[test]
fn a_bad_table_row_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    copy_sample(dir.path());
    let table = dir.path().join("bus_data.csv");
    let text = std::fs::read_to_string(&table).unwrap();
    std::fs::write(&table, text.replacen(",malignant,", ",carcinoma?,", 1)).unwrap();
    let err = load_dataset(dir.path(), &opts()).unwrap_err().to_string();
    assert!(
        err.contains("bus_data.csv line 2") && err.contains("carcinoma?"),
        "{err}"
    );

    let folds = dir.path().join("5-fold-cv.csv");
    std::fs::write(&table, &text).unwrap();
    let ftext = std::fs::read_to_string(&folds).unwrap();
    std::fs::write(&folds, ftext.replacen(",2,", ",9,", 1)).unwrap();
    let ds = load_dataset(dir.path(), &opts()).unwrap();
    let err = ds
        .split(&SplitConfig::new(1, Some(Fold::new(1, 5).unwrap())))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("5-fold-cv.csv line 4") && err.contains("not a fold number 1–5"),
        "{err}"
    );
}

#[test]
fn an_image_missing_from_the_table_is_an_error_or_a_listed_skip() {
    let dir = tempfile::tempdir().unwrap();
    copy_sample(dir.path());
    let table = dir.path().join("bus_data.csv");
    let text = std::fs::read_to_string(&table).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("bus_0995-l,"))
        .collect();
    std::fs::write(&table, kept.join("\n") + "\n").unwrap();
    let err = load_dataset(dir.path(), &opts()).unwrap_err();
    assert!(matches!(err, DataError::MissingMetadata { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("bus_0995-l.png") && msg.contains("bus_data.csv"),
        "{msg}"
    );
    let ds = load_dataset(
        dir.path(),
        &LoadOptions {
            skip_bad: true,
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(ds.samples.len(), 11);
    assert!(
        ds.report
            .skipped
            .iter()
            .any(|s| s.file == "Images/bus_0995-l.png" && s.reason.contains("no row"))
    );
}

#[test]
fn table_rows_without_an_image_are_noted() {
    let dir = tempfile::tempdir().unwrap();
    copy_sample(dir.path());
    std::fs::remove_file(dir.path().join("Images/bus_0036-r.png")).unwrap();
    std::fs::remove_file(dir.path().join("Masks/mask_0036-r.png")).unwrap();
    let ds = load_dataset(dir.path(), &opts()).unwrap();
    assert_eq!(ds.samples.len(), 11);
    assert!(
        ds.report
            .notes
            .iter()
            .any(|n| n.contains("1 images") && n.contains("bus_0036-r")),
        "{:?}",
        ds.report.notes
    );
}

#[test]
fn without_its_table_bus_bra_is_still_recognised_by_its_names() {
    let dir = tempfile::tempdir().unwrap();
    copy_sample(dir.path());
    std::fs::remove_file(dir.path().join("bus_data.csv")).unwrap();
    let ds = load_dataset(dir.path(), &opts()).unwrap();
    assert_eq!(ds.format, Format::Busbra);
    assert!(ds.samples.iter().all(|s| s.class == Class::Unlabelled));
    let s = &ds.samples[0];
    assert_eq!(s.name, "Images/bus_0009-l.png");
    assert_eq!(s.patient.as_deref(), Some("0009"));
    assert_eq!(ds.report.patients.as_ref().unwrap().patients, 6);
    assert!(
        ds.report
            .notes
            .iter()
            .any(|n| n.contains("no bus_data.csv"))
    );
}

#[test]
fn name_patterns_parse_match_and_refuse_bad_input() {
    let p = NamePattern::parse("mask_{id}.png").unwrap();
    assert_eq!(p.to_string(), "mask_{id}");
    assert_eq!(p.id_of("mask_0001-l"), Some("0001-l"));
    assert_eq!(p.id_of("MASK_7"), Some("7"));
    assert_eq!(p.id_of("mask_"), None);
    assert_eq!(p.id_of("bus_0001"), None);
    assert_eq!(p.stem_for("12"), "mask_12");
    let q = NamePattern::parse("{id}_seg").unwrap();
    assert_eq!(q.id_of("case 3_seg"), Some("case 3"));
    for bad in ["mask", "{id}_{id}", "masks/{id}"] {
        let e = NamePattern::parse(bad).unwrap_err().to_string();
        assert!(e.contains(bad), "{e}");
    }
}

/// images/img_N.png with masks/lbl_N_seg.png, plus a file of another naming.
fn patterned(root: &Path) {
    for i in 1..=3u32 {
        save_gray(
            &root.join(format!("images/img_{i}.png")),
            &picture(24, 20, i),
        );
        save_gray(
            &root.join(format!("masks/lbl_{i}_seg.png")),
            &rect_mask(24, 20, 2, 2, 10 + i, 12),
        );
    }
    save_gray(&root.join("images/thumbs.png"), &picture(8, 8, 9));
}

#[test]
fn masks_pair_with_images_by_pattern() {
    let dir = tempfile::tempdir().unwrap();
    patterned(dir.path());
    let pairing = Pairing::parse(Some("img_{id}"), Some("lbl_{id}_seg")).unwrap();
    let ds = load_dataset(
        dir.path(),
        &LoadOptions {
            pairing: pairing.clone(),
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(ds.format, Format::Pairs);
    assert_eq!(ds.samples.len(), 3);
    assert_eq!(ds.samples[2].name, "images/img_3.png");
    // The mask that went with img_3 is the one with the widest rectangle.
    let area = |i: usize| ds.samples[i].mask.iter().filter(|&&v| v > 0.0).count();
    assert!(area(0) < area(2));
    assert!(
        ds.report
            .skipped
            .iter()
            .any(|s| s.file == "images/thumbs.png" && s.reason.contains("img_{id}"))
    );
    // Without the patterns nothing pairs, and the error names a file that did not.
    let err = load_dataset(dir.path(), &opts()).unwrap_err().to_string();
    assert!(
        err.contains("lbl_1_seg.png") && err.contains("no matching image"),
        "{err}"
    );
    // A missing mask under a pattern names the file the pattern expects.
    std::fs::remove_file(dir.path().join("masks/lbl_2_seg.png")).unwrap();
    let err = load_dataset(dir.path(), &LoadOptions { pairing, ..opts() })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("img_2.png") && err.contains("masks/lbl_2_seg.png"),
        "{err}"
    );
}

#[test]
fn patterns_are_refused_for_busi_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    crate::common::busi(dir.path());
    let err = load_dataset(
        dir.path(),
        &LoadOptions {
            pairing: Pairing::parse(None, Some("m_{id}")).unwrap(),
            ..opts()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("BUSI layout"), "{err}");
}

/// 60 items of 24 patients (1–4 images each), two classes.
fn patient_items() -> Vec<SplitItem> {
    let mut out = Vec::new();
    for p in 0..24u32 {
        for k in 0..(1 + p % 4) {
            out.push(SplitItem {
                name: format!("img_{p:02}_{k}.png"),
                class: if p % 3 == 0 {
                    Class::Malignant
                } else {
                    Class::Benign
                },
                fingerprint: None,
                group: Some(format!("patient {p}")),
            });
        }
    }
    out
}

fn patient_of(name: &str) -> &str {
    &name[4..6]
}

fn assert_patients_disjoint(split: &Split) {
    let sides = [&split.train, &split.val, &split.test];
    let sets: Vec<BTreeSet<&str>> = sides
        .iter()
        .map(|s| s.iter().map(|n| patient_of(n)).collect())
        .collect();
    for a in 0..3 {
        for b in a + 1..3 {
            assert!(sets[a].is_disjoint(&sets[b]), "{split:?}");
        }
    }
}

#[test]
fn a_patient_never_spans_two_sides() {
    let items = patient_items();
    for seed in 0..20 {
        let split = make_split(&items, &SplitConfig::new(seed, None)).unwrap();
        assert_patients_disjoint(&split);
        assert!(split.grouped_by_patient);
        assert_eq!(split.train.len() + split.val.len() + split.test.len(), 60);
        // Whole patients still approach the 30 % test share.
        assert!(
            (12..=24).contains(&split.test.len()),
            "{}",
            split.test.len()
        );
    }
}

#[test]
fn own_folds_partition_the_data_by_patient() {
    let items = patient_items();
    let mut tested: Vec<String> = Vec::new();
    for k in 1..=5 {
        let split =
            make_split(&items, &SplitConfig::new(3, Some(Fold::new(k, 5).unwrap()))).unwrap();
        assert_patients_disjoint(&split);
        assert_eq!(split.fold, Some(Fold { k, of: 5 }));
        assert_eq!(split.folds_from, None);
        // Balanced folds: 60 / 5 = 12 each, within a patient's worth.
        assert!(
            (9..=15).contains(&split.test.len()),
            "fold {k}: {}",
            split.test.len()
        );
        // 20 % of the rest validates, in whole patients.
        let rest = 60 - split.test.len();
        assert!(
            split.val.len().abs_diff(rest / 5) <= 4,
            "{}",
            split.val.len()
        );
        tested.extend(split.test);
    }
    // Every image is tested exactly once over the folds.
    tested.sort();
    let mut all: Vec<String> = items.into_iter().map(|i| i.name).collect();
    all.sort();
    assert_eq!(tested, all);
}

#[test]
fn a_given_test_part_excludes_the_rest_of_its_patients() {
    let items = patient_items();
    // A test part that cuts patient 03 (four images) in two, and patient 04 (one image).
    let test = ["img_03_0.png", "img_03_1.png", "img_04_0.png"];
    let split = make_split_with_test(
        &items,
        &SplitConfig::new(0, None),
        &|it| test.contains(&it.name.as_str()),
        "given".into(),
    )
    .unwrap();
    assert_eq!(split.test, test);
    let excluded: Vec<&str> = split.excluded.iter().map(|e| e.file.as_str()).collect();
    assert_eq!(excluded, ["img_03_2.png", "img_03_3.png"]);
    assert!(split.excluded[0].reason.contains("same patient"));
    assert_eq!(split.train.len() + split.val.len(), 60 - 5);
    assert_patients_disjoint(&split);
}

#[test]
fn folds_out_of_range_are_refused() {
    assert!(Fold::new(0, 5).is_err());
    assert!(Fold::new(6, 5).is_err());
    assert!(Fold::new(1, 1).is_err());
    let e = Fold::new(6, 5).unwrap_err().to_string();
    assert!(e.contains("fold 6 of 5"), "{e}");
}

#[test]
fn data_writes_a_fold_split_of_the_sample() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: rca_gpu::cli::data::DataArgs,
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("split.json");
    let cli = Cli::try_parse_from([
        "data".as_ref(),
        sample_dir().as_os_str(),
        "--size".as_ref(),
        "32".as_ref(),
        "--fold".as_ref(),
        "4".as_ref(),
        "--write-split".as_ref(),
        out.as_os_str(),
    ])
    .unwrap();
    rca_gpu::cli::data::run(cli.args).unwrap();
    let split = Split::load(&out).unwrap();
    assert_eq!(
        split.test,
        ["Images/bus_0369-l.png", "Images/bus_0369-r.png"]
    );
    assert_eq!(split.fold, Some(Fold { k: 4, of: 5 }));
    // --folds without --fold is a usage error.
    assert!(Cli::try_parse_from(["data", "x", "--folds", "5"]).is_err());
}
