//! Loading the three layouts: what is found, what is merged, what is reported,
//! and which errors name which file.

use std::path::Path;

use rca_gpu::data::{Class, DataError, Format, LoadOptions, load_dataset};

use crate::common::{
    busi, busis, pairs, picture, rect_mask, save_corrupt, save_gray, save_rgb, touch,
};

fn opts(size: usize) -> LoadOptions {
    LoadOptions {
        size,
        threads: 2,
        ..Default::default()
    }
}

fn skip_bad(size: usize) -> LoadOptions {
    LoadOptions {
        skip_bad: true,
        ..opts(size)
    }
}

fn sample<'a>(ds: &'a rca_gpu::data::Dataset, name: &str) -> &'a rca_gpu::data::Sample {
    ds.samples
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{name} not loaded"))
}

#[test]
fn busi_is_detected_and_counted_per_class() {
    let dir = tempfile::tempdir().unwrap();
    busi(dir.path());
    let ds = load_dataset(dir.path(), &opts(16)).unwrap();
    assert_eq!(ds.format, Format::Busi);
    assert_eq!(ds.report.images_loaded, 4);
    assert_eq!(ds.report.per_class["benign"].images, 2);
    assert_eq!(ds.report.per_class["malignant"].images, 1);
    assert_eq!(ds.report.per_class["normal"].images, 1);
    assert_eq!(ds.report.per_class["normal"].with_lesion, 0);
    assert_eq!(ds.report.width_range, Some((40, 50)));
    assert_eq!(ds.report.height_range, Some((30, 44)));
    assert_eq!(sample(&ds, "benign/benign (1).png").class, Class::Benign);
}

#[test]
fn busi_extra_masks_are_ored_together() {
    let dir = tempfile::tempdir().unwrap();
    busi(dir.path());
    // Full resolution (40×30) keeps the two rectangles exact: 100 + 100 pixels.
    let ds = load_dataset(
        dir.path(),
        &LoadOptions {
            size: 40,
            ..opts(40)
        },
    )
    .unwrap();
    assert_eq!(ds.report.masks_merged, 1);
    assert_eq!(ds.report.extra_mask_files, 1);
    let s = sample(&ds, "benign/benign (1).png");
    assert_eq!(s.mask_files, 2);
    let (img, mask) = rca_gpu::data::load_pair(
        &dir.path().join("benign/benign (1).png"),
        &[
            dir.path().join("benign/benign (1)_mask.png"),
            dir.path().join("benign/benign (1)_mask_1.png"),
        ],
    )
    .unwrap();
    assert_eq!((img.w, img.h), (40, 30));
    assert_eq!(mask.data.iter().filter(|&&v| v == 1.0).count(), 200);
}

#[test]
fn rgba_masks_are_binarised_from_any_colour_channel() {
    let dir = tempfile::tempdir().unwrap();
    busi(dir.path());
    let m = rca_gpu::data::load_mask(&dir.path().join("benign/benign (2)_mask.png")).unwrap();
    assert_eq!(m.data.iter().filter(|&&v| v == 1.0).count(), 100);
    assert!(m.data.iter().all(|&v| v == 0.0 || v == 1.0));
}

#[test]
fn sixteen_bit_images_scale_by_65535() {
    let dir = tempfile::tempdir().unwrap();
    busi(dir.path());
    let g16 = rca_gpu::data::load_image_gray(&dir.path().join("benign/benign (2).png")).unwrap();
    let g8 = picture(40, 30, 2);
    for (a, b) in g16.data.iter().zip(g8.as_raw()) {
        assert!((a - *b as f32 / 255.0).abs() < 1e-6);
    }
}

#[test]
fn busi_normal_image_without_mask_file_gets_an_empty_mask_and_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    busi(dir.path());
    save_gray(
        &dir.path().join("normal/normal (2).png"),
        &picture(40, 30, 9),
    );
    let ds = load_dataset(dir.path(), &opts(16)).unwrap();
    assert_eq!(
        ds.report.images_without_mask,
        vec!["normal/normal (2).png".to_string()]
    );
    assert!(
        sample(&ds, "normal/normal (2).png")
            .mask
            .iter()
            .all(|&v| v == 0.0)
    );
}

#[test]
fn lesion_image_without_mask_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    busi(dir.path());
    save_gray(
        &dir.path().join("benign/benign (3).png"),
        &picture(40, 30, 9),
    );
    let err = load_dataset(dir.path(), &opts(16)).unwrap_err();
    assert!(matches!(err, DataError::MissingMask { .. }), "{err}");
    assert!(err.to_string().contains("benign (3).png"), "{err}");
}

#[test]
fn mask_without_image_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    busi(dir.path());
    save_gray(
        &dir.path().join("malignant/malignant (7)_mask.png"),
        &rect_mask(8, 8, 0, 0, 2, 2),
    );
    let err = load_dataset(dir.path(), &opts(16)).unwrap_err();
    assert!(matches!(err, DataError::OrphanMask { .. }), "{err}");
    assert!(err.to_string().contains("malignant (7)_mask.png"), "{err}");
}

#[test]
fn mask_without_image_is_listed_with_skip_bad() {
    let dir = tempfile::tempdir().unwrap();
    busi(dir.path());
    save_gray(
        &dir.path().join("malignant/malignant (7)_mask.png"),
        &rect_mask(8, 8, 0, 0, 2, 2),
    );
    let ds = load_dataset(dir.path(), &skip_bad(16)).unwrap();
    assert_eq!(
        ds.report.masks_without_image,
        vec!["malignant/malignant (7)_mask.png".to_string()]
    );
    assert!(
        ds.report
            .skipped
            .iter()
            .any(|s| s.file == "malignant/malignant (7)_mask.png")
    );
    assert_eq!(ds.report.images_loaded, 4);
}

#[test]
fn corrupt_image_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    busi(dir.path());
    save_corrupt(&dir.path().join("benign/benign (4).png"));
    save_gray(
        &dir.path().join("benign/benign (4)_mask.png"),
        &rect_mask(40, 30, 0, 0, 4, 4),
    );
    let err = load_dataset(dir.path(), &opts(16)).unwrap_err();
    assert!(matches!(err, DataError::Decode { .. }), "{err}");
    assert!(err.to_string().contains("benign (4).png"), "{err}");
}

#[test]
fn corrupt_image_is_skipped_and_listed_with_skip_bad() {
    let dir = tempfile::tempdir().unwrap();
    busi(dir.path());
    save_corrupt(&dir.path().join("benign/benign (4).png"));
    save_gray(
        &dir.path().join("benign/benign (4)_mask.png"),
        &rect_mask(40, 30, 0, 0, 4, 4),
    );
    let ds = load_dataset(dir.path(), &skip_bad(16)).unwrap();
    assert_eq!(ds.report.images_loaded, 4);
    let s = ds
        .report
        .skipped
        .iter()
        .find(|s| s.file == "benign/benign (4).png")
        .unwrap();
    assert!(s.reason.contains("cannot decode"), "{}", s.reason);
    let m = ds
        .report
        .skipped
        .iter()
        .find(|s| s.file == "benign/benign (4)_mask.png")
        .unwrap();
    assert!(m.reason.contains("benign/benign (4).png"), "{}", m.reason);
}

#[test]
fn image_and_mask_of_different_size_is_an_error_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    busi(dir.path());
    save_gray(
        &dir.path().join("malignant/malignant (2).png"),
        &picture(40, 30, 5),
    );
    save_gray(
        &dir.path().join("malignant/malignant (2)_mask.png"),
        &rect_mask(41, 30, 0, 0, 4, 4),
    );
    let err = load_dataset(dir.path(), &opts(16)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, DataError::SizeMismatch { .. }), "{text}");
    assert!(
        text.contains("malignant (2).png") && text.contains("malignant (2)_mask.png"),
        "{text}"
    );
    assert!(text.contains("40×30") && text.contains("41×30"), "{text}");
}

#[test]
fn non_image_files_are_skipped_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    busi(dir.path());
    touch(&dir.path().join("benign/notes.txt"), "hello");
    touch(&dir.path().join("benign/.DS_Store"), "");
    touch(&dir.path().join("README"), "");
    let ds = load_dataset(dir.path(), &opts(16)).unwrap();
    let files: Vec<&str> = ds.report.skipped.iter().map(|s| s.file.as_str()).collect();
    assert!(files.contains(&"benign/notes.txt"));
    assert!(files.contains(&"benign/.DS_Store"));
    assert!(files.contains(&"README"));
    assert_eq!(ds.report.images_loaded, 4);
}

#[test]
fn same_stem_with_two_extensions_is_ambiguous() {
    let dir = tempfile::tempdir().unwrap();
    busi(dir.path());
    save_gray(
        &dir.path().join("benign/benign (1).bmp"),
        &picture(40, 30, 1),
    );
    let err = load_dataset(dir.path(), &opts(16)).unwrap_err();
    assert!(matches!(err, DataError::AmbiguousStem { .. }), "{err}");
}

#[test]
fn busis_folders_are_found_case_insensitively() {
    for (img, gt) in [("Original", "GT"), ("IMAGES", "gt"), ("imgs", "Masks")] {
        let dir = tempfile::tempdir().unwrap();
        busis(dir.path(), img, gt, "_GT");
        let ds = load_dataset(dir.path(), &opts(16)).unwrap();
        assert_eq!(ds.format, Format::Busis, "{img}/{gt}");
        assert_eq!(ds.report.images_loaded, 3, "{img}/{gt}");
        assert!(ds.samples.iter().all(|s| s.class == Class::Unlabelled));
    }
}

#[test]
fn busis_masks_match_with_gt_mask_or_no_suffix() {
    for suffix in ["_GT", "_gt", "_mask", ""] {
        let dir = tempfile::tempdir().unwrap();
        busis(dir.path(), "original", "GT", suffix);
        let ds = load_dataset(dir.path(), &opts(16)).unwrap();
        assert_eq!(ds.report.images_loaded, 3, "suffix {suffix:?}");
        assert!(ds.samples.iter().all(|s| s.mask.contains(&1.0)));
    }
}

#[test]
fn busis_image_without_ground_truth_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    busis(dir.path(), "original", "GT", "_GT");
    save_gray(
        &dir.path().join("original/case009.png"),
        &picture(32, 32, 9),
    );
    let err = load_dataset(dir.path(), &opts(16)).unwrap_err();
    assert!(err.to_string().contains("case009.png"), "{err}");
}

#[test]
fn pairs_layout_is_detected_and_loaded() {
    let dir = tempfile::tempdir().unwrap();
    pairs(dir.path());
    let ds = load_dataset(dir.path(), &opts(16)).unwrap();
    assert_eq!(ds.format, Format::Pairs);
    assert_eq!(ds.report.images_loaded, 3);
    assert_eq!(ds.samples[0].name, "images/p1.png");
}

#[test]
fn images_and_masks_with_gt_suffixes_are_detected_as_busis() {
    let dir = tempfile::tempdir().unwrap();
    busis(dir.path(), "images", "masks", "_GT");
    let (format, _) = rca_gpu::data::detect_format(dir.path()).unwrap();
    assert_eq!(format, Format::Busis);
}

#[test]
fn detection_looks_one_folder_down() {
    let dir = tempfile::tempdir().unwrap();
    busi(&dir.path().join("Dataset_BUSI_with_GT"));
    let ds = load_dataset(dir.path(), &opts(16)).unwrap();
    assert_eq!(ds.format, Format::Busi);
    assert!(ds.root.ends_with("Dataset_BUSI_with_GT"));
}

#[test]
fn explicit_format_overrides_detection() {
    let dir = tempfile::tempdir().unwrap();
    pairs(dir.path());
    let ds = load_dataset(
        dir.path(),
        &LoadOptions {
            format: Some(Format::Busis),
            ..opts(16)
        },
    )
    .unwrap();
    assert_eq!(ds.format, Format::Busis);
    let err = load_dataset(
        dir.path(),
        &LoadOptions {
            format: Some(Format::Busi),
            ..opts(16)
        },
    )
    .unwrap_err();
    assert!(matches!(err, DataError::UnknownLayout { .. }), "{err}");
}

#[test]
fn unknown_layout_explains_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    touch(&dir.path().join("a/b.png"), "x");
    touch(&dir.path().join("c/d.png"), "x");
    let err = load_dataset(dir.path(), &opts(16)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("benign") && text.contains("images"), "{text}");
}

#[test]
fn missing_folder_is_an_error_naming_it() {
    let err = load_dataset(Path::new("/no/such/folder/busi"), &opts(16)).unwrap_err();
    assert!(err.to_string().contains("/no/such/folder/busi"), "{err}");
}

#[test]
fn bmp_tiff_and_jpeg_images_load() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    save_gray(&root.join("images/a.bmp"), &picture(20, 20, 1));
    save_rgb(&root.join("images/b.tif"), &picture(20, 20, 2));
    save_rgb(&root.join("images/c.jpg"), &picture(20, 20, 3));
    for n in ["a", "b", "c"] {
        save_gray(
            &root.join(format!("masks/{n}.png")),
            &rect_mask(20, 20, 2, 2, 6, 6),
        );
    }
    let ds = load_dataset(root, &opts(16)).unwrap();
    assert_eq!(ds.report.images_loaded, 3);
}

#[test]
fn jpeg_masks_ignore_compression_noise() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.jpg");
    save_gray(&p, &rect_mask(64, 64, 16, 16, 48, 48));
    let m = rca_gpu::data::load_mask(&p).unwrap();
    let on = m.data.iter().filter(|&&v| v == 1.0).count();
    // 32×32 = 1024 pixels; ringing may move the edge by a pixel, never add a halo.
    assert!((900..=1150).contains(&on), "{on}");
}

#[test]
fn preprocessed_samples_have_the_requested_size_and_range() {
    let dir = tempfile::tempdir().unwrap();
    busi(dir.path());
    let ds = load_dataset(dir.path(), &opts(32)).unwrap();
    for s in &ds.samples {
        assert_eq!(s.image.len(), 32 * 32);
        assert_eq!(s.mask.len(), 32 * 32);
        assert!(s.image.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(s.mask.iter().all(|&v| v == 0.0 || v == 1.0));
    }
}

#[test]
fn report_round_trips_through_json_and_prints_every_section() {
    let dir = tempfile::tempdir().unwrap();
    busi(dir.path());
    touch(&dir.path().join("benign/notes.txt"), "hello");
    let ds = load_dataset(dir.path(), &opts(16)).unwrap();
    let back: rca_gpu::data::DatasetReport = serde_json::from_str(&ds.report.to_json()).unwrap();
    assert_eq!(back, ds.report);
    let text = ds.report.to_string();
    for needle in [
        "images loaded: 4",
        "masks merged",
        "images without a mask",
        "masks without an image",
        "duplicate groups",
        "files skipped: 1",
        "benign/notes.txt",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let out = dir.path().join("report.json");
    ds.report.save(&out).unwrap();
    assert!(std::fs::read_to_string(&out).unwrap().starts_with('{'));
}

#[test]
fn identical_copies_are_reported_as_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    busi(dir.path());
    // The same picture under another name and class, re-scaled.
    let copy = image::imageops::resize(
        &picture(40, 30, 1),
        60,
        45,
        image::imageops::FilterType::Triangle,
    );
    save_gray(&dir.path().join("malignant/malignant (5).png"), &copy);
    save_gray(
        &dir.path().join("malignant/malignant (5)_mask.png"),
        &rect_mask(60, 45, 0, 0, 5, 5),
    );
    let ds = load_dataset(dir.path(), &opts(16)).unwrap();
    assert_eq!(
        ds.report.duplicate_groups,
        vec![vec![
            "benign/benign (1).png".to_string(),
            "malignant/malignant (5).png".to_string()
        ]]
    );
}
