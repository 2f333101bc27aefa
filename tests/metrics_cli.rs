//! `rca-gpu metrics` on a temporary folder pair: pairing by stem (with `_mask`, `_mask_<n>`
//! and `_GT` suffixes), classes from sub-folders, mixed formats and bit depths, predictions
//! of another size, unmatched files listed, a corrupt file named in the error, and the CSV.

use std::path::{Path, PathBuf};

use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage, Rgba, RgbaImage};
use rca_gpu::cli::metrics::{MetricsArgs, run, score};
use rca_gpu::metrics::CSV_HEADER;
use rca_gpu::metrics::io::PredKind;

const N: u32 = 32;

/// A square lesion [lo, hi)² on an N×N grid.
fn inside(x: u32, y: u32, lo: u32, hi: u32) -> bool {
    (lo..hi).contains(&x) && (lo..hi).contains(&y)
}

fn args(pred: &Path, gt: &Path) -> MetricsArgs {
    MetricsArgs {
        pred: pred.to_path_buf(),
        gt: gt.to_path_buf(),
        pred_kind: PredKind::Auto,
        postprocess: false,
        threshold: 0.5,
        csv: None,
        min_area: 64,
        min_relative_area: 0.1,
        min_peak: 0.0,
        connectivity: 8,
        markdown: false,
        std: false,
    }
}

/// Builds pred/ and gt/ folders; returns (pred, gt).
fn fixture(root: &Path) -> (PathBuf, PathBuf) {
    let pred = root.join("pred");
    let gt = root.join("gt");
    for d in [&pred, &gt.join("benign"), &gt.join("malignant")] {
        std::fs::create_dir_all(d).unwrap();
    }
    // BUSI layout: the scan beside two masks of one image, which are OR-ed
    GrayImage::from_fn(N, N, |x, _| Luma([(x * 7) as u8]))
        .save(gt.join("benign/benign (1).png"))
        .unwrap();
    GrayImage::from_fn(N, N, |x, y| {
        Luma([if inside(x, y, 4, 14) { 255 } else { 0 }])
    })
    .save(gt.join("benign/benign (1)_mask.png"))
    .unwrap();
    GrayImage::from_fn(N, N, |x, y| {
        Luma([if inside(x, y, 18, 28) { 255 } else { 0 }])
    })
    .save(gt.join("benign/benign (1)_mask_1.png"))
    .unwrap();
    // the prediction: grey probabilities, both lesions found (0.8), background 0.3
    GrayImage::from_fn(N, N, |x, y| {
        Luma([if inside(x, y, 4, 14) || inside(x, y, 18, 28) {
            204
        } else {
            77
        }])
    })
    .save(pred.join("benign (1).png"))
    .unwrap();

    // an RGB ground truth and a half-size BMP prediction, resized by nearest neighbour
    RgbImage::from_fn(N, N, |x, y| {
        Rgb(if inside(x, y, 8, 24) {
            [255, 255, 255]
        } else {
            [0, 0, 0]
        })
    })
    .save(gt.join("malignant/malignant (1)_mask.png"))
    .unwrap();
    RgbImage::from_fn(N / 2, N / 2, |x, y| {
        Rgb(if inside(x, y, 4, 12) {
            [250, 250, 250]
        } else {
            [5, 5, 5]
        })
    })
    .save(pred.join("malignant (1).bmp"))
    .unwrap();

    // a red-on-transparent RGBA `_GT` mask and a 16-bit TIFF prediction
    RgbaImage::from_fn(N, N, |x, y| {
        Rgba(if inside(x, y, 0, 16) {
            [255, 0, 0, 255]
        } else {
            [0, 0, 0, 0]
        })
    })
    .save(gt.join("case3_GT.png"))
    .unwrap();
    ImageBuffer::<Luma<u16>, Vec<u16>>::from_fn(N, N, |x, y| {
        Luma([if inside(x, y, 0, 16) { 40_000 } else { 1_000 }])
    })
    .save(pred.join("case3.tiff"))
    .unwrap();

    // unmatched on both sides, and a file that is not an image
    GrayImage::new(N, N).save(pred.join("lonely.png")).unwrap();
    GrayImage::new(N, N)
        .save(gt.join("orphan_mask.png"))
        .unwrap();
    std::fs::write(gt.join("notes.txt"), "not a mask").unwrap();
    (pred, gt)
}

#[test]
fn scores_matched_masks_across_formats_sizes_and_suffixes() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, gt) = fixture(dir.path());
    let report = score(&args(&pred, &gt)).unwrap();

    let names: Vec<(&str, Option<&str>)> = report
        .records
        .iter()
        .map(|r| (r.name.as_str(), r.class.as_deref()))
        .collect();
    assert_eq!(
        names,
        [
            ("benign (1)", Some("benign")),
            ("case3", None),
            ("malignant (1)", Some("malignant")),
        ]
    );
    for r in &report.records {
        assert_eq!(r.metrics.dice, 1.0, "{} should match exactly", r.name);
        assert_eq!(r.metrics.ahd, 0.0, "{}", r.name);
        assert!(
            r.metrics.mae_probability.unwrap() > 0.0,
            "grey levels kept for MAE"
        );
    }
    let benign = &report.records[0].metrics;
    assert_eq!(
        benign.confusion.true_pos, 200,
        "both BUSI masks OR-ed: 2 × 10×10"
    );
    assert_eq!(
        report.records[2].metrics.confusion.true_pos, 256,
        "16×16 after resize"
    );
}

#[test]
fn unmatched_files_are_listed_and_scans_beside_masks_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, gt) = fixture(dir.path());
    let p = score(&args(&pred, &gt)).unwrap().pairing;
    assert_eq!(p.unmatched_pred, [pred.join("lonely.png")]);
    assert_eq!(p.unmatched_gt, [gt.join("orphan_mask.png")]);
    assert_eq!(p.skipped_scans, [gt.join("benign/benign (1).png")]);
}

#[test]
fn postprocess_flag_adds_a_pp_y_record_per_image() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, gt) = fixture(dir.path());
    let mut a = args(&pred, &gt);
    a.postprocess = true;
    let report = score(&a).unwrap();
    assert_eq!(report.records.len(), 6);
    let flags: Vec<bool> = report.records.iter().map(|r| r.postprocessed).collect();
    assert_eq!(flags, [false, true, false, true, false, true]);
}

#[test]
fn run_writes_the_per_image_csv() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, gt) = fixture(dir.path());
    let csv = dir.path().join("out/scores.csv");
    std::fs::create_dir_all(csv.parent().unwrap()).unwrap();
    let mut a = args(&pred, &gt);
    a.postprocess = true;
    a.csv = Some(csv.clone());
    run(a).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], CSV_HEADER);
    assert_eq!(lines.len(), 1 + 6);
    assert!(lines[1].starts_with("benign (1),benign,N,200,"));
}

#[test]
fn threshold_decides_what_a_grey_prediction_means() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, gt) = fixture(dir.path());
    let mut a = args(&pred, &gt);
    a.threshold = 0.25; // now the 0.3 background of `benign (1)` is lesion too
    let report = score(&a).unwrap();
    assert_eq!(report.records[0].metrics.precision, 200.0 / (N * N) as f64);
}

#[test]
fn a_corrupt_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, gt) = fixture(dir.path());
    std::fs::write(pred.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    GrayImage::new(N, N)
        .save(gt.join("broken_mask.png"))
        .unwrap();
    let err = score(&args(&pred, &gt)).unwrap_err();
    assert!(format!("{err:#}").contains("broken.png"), "{err:#}");
}

#[test]
fn folders_without_any_match_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, _) = fixture(dir.path());
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = score(&args(&pred, &empty)).unwrap_err();
    assert!(err.to_string().contains("no prediction"), "{err}");
    assert!(score(&args(&pred, &dir.path().join("missing"))).is_err());
}

/// An `rca-gpu infer` output folder: x_mask (post-processed, 0/255), x_prob (grey
/// probability) and x_overlay (RGB) for two images.
fn infer_folder(root: &Path) -> (PathBuf, PathBuf) {
    let pred = root.join("pred");
    let gt = root.join("gt");
    for d in [&pred, &gt] {
        std::fs::create_dir_all(d).unwrap();
    }
    for name in ["a", "b"] {
        GrayImage::from_fn(N, N, |x, y| {
            Luma([if inside(x, y, 8, 24) { 255 } else { 0 }])
        })
        .save(gt.join(format!("{name}_mask.png")))
        .unwrap();
        // The mask found the lesion; the probability map is 0.6 on it and 0.4 elsewhere,
        // so at threshold 0.5 it agrees with the mask and at 0.3 marks everything.
        GrayImage::from_fn(N, N, |x, y| {
            Luma([if inside(x, y, 8, 24) { 255 } else { 0 }])
        })
        .save(pred.join(format!("{name}_mask.png")))
        .unwrap();
        GrayImage::from_fn(N, N, |x, y| {
            Luma([if inside(x, y, 8, 24) { 153 } else { 102 }])
        })
        .save(pred.join(format!("{name}_prob.png")))
        .unwrap();
        RgbImage::from_pixel(N, N, Rgb([200, 200, 0]))
            .save(pred.join(format!("{name}_overlay.png")))
            .unwrap();
    }
    (pred, gt)
}

#[test]
fn an_infer_output_folder_is_scored_by_its_masks_or_its_probability_maps() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, gt) = infer_folder(dir.path());
    let dice = |kind: PredKind, threshold: f32| {
        let report = score(&MetricsArgs {
            pred_kind: kind,
            threshold,
            ..args(&pred, &gt)
        })
        .unwrap();
        let p = &report.pairing;
        assert!(
            p.unmatched_pred.is_empty() && p.unmatched_gt.is_empty(),
            "{p:?}"
        );
        assert_eq!(p.pairs.len(), 2);
        assert_eq!(p.skipped_outputs.len(), 4, "the other two kinds of output");
        let names: Vec<&str> = p.pairs.iter().map(|q| q.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        report.records.iter().map(|r| r.metrics.dice).sum::<f64>() / 2.0
    };
    // auto = mask for an infer folder: the masks match the ground truth exactly.
    assert_eq!(dice(PredKind::Auto, 0.5), 1.0);
    assert_eq!(dice(PredKind::Mask, 0.5), 1.0);
    assert!(
        dice(PredKind::Mask, 0.3) == 1.0,
        "a 0/255 mask ignores the threshold"
    );
    // The probability maps at 0.5 agree with the masks; at 0.3 they mark every pixel.
    assert_eq!(dice(PredKind::Prob, 0.5), 1.0);
    let all = dice(PredKind::Prob, 0.3);
    let want = 2.0 * 256.0 / (256.0 + 1024.0);
    assert!((all - want).abs() < 1e-9, "{all} vs {want}");
}
