//! `rca-gpu infer` and `rca-gpu eval` end to end at a tiny size: one run trained once for the
//! file (S = 32, F = 2, 8 phantoms, 1 epoch then resumed to 2, as in `cli_train.rs`), then
//! its outputs are checked: PNGs at the input's original (odd, non-square) size, metrics
//! that parse and lie in range, one CSV row per image and post-processing setting. Bad input (a corrupt or
//! missing checkpoint, an empty data folder, an undecodable image) fails with a message
//! naming the file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use rca_gpu::model::{Model, ModelConfig, Variant};
use rca_gpu::train::checkpoint::{NamedTensor, save_model};
use serde_json::Value;

use crate::common::{self, BIN};

fn rca(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("cannot run rca-gpu")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "rca-gpu failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn failed(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "rca-gpu succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A scratch folder for this test binary under Cargo's target/tmp, emptied when the binary
/// starts (a fixed name, so that runs do not pile up; each test writes its own sub-folder).
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli_infer");
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

/// The run folder of one tiny training run (one epoch, then resumed for a second), trained
/// on first use.
fn run_dir() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let out = scratch().join("run");
        ok(&rca(&[
            "train",
            "--size",
            "32",
            "--width",
            "2",
            "--phantoms",
            "8",
            "--batch",
            "2",
            "--epochs",
            "1",
            "--out",
            s(&out),
        ]));
        // The whole workflow: train, resume for another epoch, then infer and evaluate.
        ok(&rca(&[
            "train",
            "--resume",
            "--epochs",
            "2",
            "--out",
            s(&out),
        ]));
        let history = read_json(&out.join("metrics.json"));
        assert_eq!(history.as_array().unwrap().len(), 2, "resumed to epoch 2");
        out
    })
}

/// A valid checkpoint written without a GPU (initial weights), for the error tests.
fn cpu_checkpoint(path: &Path) {
    let mc = ModelConfig::new(Variant::RcaIunet, 2, 32).unwrap();
    let model = Model::new(mc);
    let tensors: Vec<NamedTensor> = model
        .spec
        .params()
        .iter()
        .zip(model.spec.init_values(7))
        .map(|(p, data)| NamedTensor {
            name: p.name.clone(),
            shape: p.shape.clone(),
            data,
        })
        .collect();
    save_model(path, &mc, 0, &Value::Null, &tensors).unwrap();
}

fn png_size(path: &Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (img.width(), img.height())
}

#[test]
fn infer_writes_mask_probability_and_overlay_at_the_original_size() {
    if common::gpu().is_none() {
        return;
    }
    let dir = scratch().join("infer");
    let folder = dir.join("scans");
    std::fs::create_dir_all(&folder).unwrap();
    // An odd, non-square colour image, and a folder holding a scan beside its mask.
    let odd = dir.join("odd.png");
    image::RgbImage::from_fn(45, 37, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 6) as u8, 90])
    })
    .save(&odd)
    .unwrap();
    image::GrayImage::from_fn(60, 50, |x, _| image::Luma([(x * 4) as u8]))
        .save(folder.join("scan.png"))
        .unwrap();
    image::GrayImage::new(60, 50)
        .save(folder.join("scan_mask.png"))
        .unwrap();
    let out = dir.join("pred");
    let ck = run_dir().join("best.safetensors");
    let stdout = ok(&rca(&[
        "infer",
        "--checkpoint",
        s(&ck),
        s(&odd),
        s(&folder),
        "--out",
        s(&out),
    ]));
    assert!(stdout.contains("odd  45x37  lesion"), "{stdout}");
    assert!(stdout.contains("scan  60x50"), "{stdout}");
    assert_eq!(
        stdout.lines().count(),
        2,
        "the mask file is not segmented: {stdout}"
    );
    for (name, size) in [("odd", (45, 37)), ("scan", (60, 50))] {
        for kind in ["mask", "prob", "overlay"] {
            assert_eq!(
                png_size(&out.join(format!("{name}_{kind}.png"))),
                size,
                "{name}_{kind}"
            );
        }
    }
    let mask = image::open(out.join("odd_mask.png")).unwrap().to_luma8();
    assert!(mask.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
    let overlay = image::open(out.join("odd_overlay.png")).unwrap();
    assert_eq!(overlay.color(), image::ColorType::Rgb8);
    assert!(!out.join("scan_mask_mask.png").exists());

    // --no-postprocess at threshold 0 marks every pixel (p >= 0 always holds).
    let all = dir.join("all");
    let stdout = ok(&rca(&[
        "infer",
        "--checkpoint",
        s(&ck),
        s(&odd),
        "--out",
        s(&all),
        "--no-postprocess",
        "--threshold",
        "0",
    ]));
    assert!(stdout.contains("lesion 1665 px (100.00 %)"), "{stdout}");
}

#[test]
fn eval_of_a_run_scores_its_test_split_with_and_without_postprocessing() {
    if common::gpu().is_none() {
        return;
    }
    let run = run_dir();
    let ck = run.join("best.safetensors");
    let stdout = ok(&rca(&["eval", "--checkpoint", s(&ck)]));
    let split = read_json(&run.join("split.json"));
    let test = split["test"].as_array().unwrap().len();
    assert!(test > 0);
    let eval = run.join("eval");
    let csv = std::fs::read_to_string(eval.join("per_image.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows.len(),
        2 * test,
        "one row per test image and PP setting:\n{csv}"
    );
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for r in &rows {
        for m in [
            "accuracy",
            "precision",
            "recall",
            "dice",
            "iou",
            "miou",
            "mae",
        ] {
            let v: f64 = r[col(m)].parse().unwrap();
            assert!((0.0..=1.0).contains(&v), "{m} = {v}");
        }
        assert!(r[col("ahd")].parse::<f64>().unwrap() >= 0.0);
        assert!(r[col("inference_ms")].parse::<f64>().unwrap() > 0.0);
        // Phantoms are S×S: every pixel is counted once.
        let n: u64 = ["tp", "fp", "fn", "tn"]
            .iter()
            .map(|c| r[col(c)].parse::<u64>().unwrap())
            .sum();
        assert_eq!(n, 32 * 32);
    }
    assert_eq!(
        rows.iter()
            .filter(|r| r[col("postprocessed")] == "Y")
            .count(),
        test
    );
    let summary = read_json(&eval.join("summary.json"));
    assert_eq!(summary["image_count"], test);
    assert_eq!(summary["metric_size"], "original");
    let table_rows = summary["rows"].as_array().unwrap();
    assert!(
        table_rows
            .iter()
            .any(|r| r["label"] == "all" && r["postprocessed"] == true)
    );
    for r in table_rows {
        let dice = r["summary"]["dice"]["mean"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&dice));
        assert!(r["summary"]["inference_ms"]["mean"].as_f64().unwrap() > 0.0);
    }
    let md = std::fs::read_to_string(eval.join("table.md")).unwrap();
    assert!(
        md.contains("| all | N |") && md.contains("| all | Y |"),
        "{md}"
    );
    assert!(
        stdout.contains("IT (ms)") && stdout.contains("all"),
        "{stdout}"
    );
}

#[test]
fn eval_on_another_data_set_scores_every_image_with_class_rows() {
    if common::gpu().is_none() {
        return;
    }
    let ck = run_dir().join("best.safetensors");
    let out = scratch().join("eval-sample");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
    let stdout = ok(&rca(&[
        "eval",
        "--checkpoint",
        s(&ck),
        "--data",
        s(&data),
        "--out",
        s(&out),
        "--batch",
        "4",
        "--overlays",
    ]));
    let csv = std::fs::read_to_string(out.join("per_image.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * 15, "{csv}");
    // One overlay per image, at its size, with the ground truth's outline on lesion images.
    let overlays: Vec<_> = std::fs::read_dir(out.join("overlays"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(overlays.len(), 15, "{overlays:?}");
    let benign = out.join("overlays/benign (1).png");
    let img = image::open(&benign).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (128, 128));
    assert!(
        img.pixels()
            .any(|p| p.0 == rca_gpu::infer::GROUND_TRUTH_COLOUR),
        "no ground-truth outline in {}",
        benign.display()
    );
    for class in ["benign", "malignant", "normal"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(class)),
            "no {class} row:\n{stdout}"
        );
    }
    // The sample images are 128×128 and scored at that size, not at S = 32.
    let first = csv.lines().nth(1).unwrap();
    let n: u64 = first
        .split(',')
        .skip(3)
        .take(4)
        .map(|v| v.parse::<u64>().unwrap())
        .sum();
    assert_eq!(n, 128 * 128, "{first}");
}

#[test]
fn a_corrupt_or_missing_checkpoint_is_a_clear_error_naming_the_file() {
    let dir = scratch().join("corrupt");
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.safetensors");
    cpu_checkpoint(&good);
    let bytes = std::fs::read(&good).unwrap();
    let flipped = dir.join("flipped.safetensors");
    let mut b = bytes.clone();
    let last = b.len() - 3;
    b[last] ^= 0x5a; // inside the tensor data: the checksum catches it
    std::fs::write(&flipped, b).unwrap();
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let missing = dir.join("missing.safetensors");
    let img = dir.join("x.png");
    image::GrayImage::new(8, 8).save(&img).unwrap();
    for (ck, why) in [
        (&flipped, "corrupted"),
        (&truncated, "safetensors"),
        (&missing, "No such file"),
    ] {
        let err = failed(&rca(&[
            "infer",
            "--checkpoint",
            s(ck),
            s(&img),
            "--out",
            s(&dir),
        ]));
        assert!(err.contains(s(ck)) && err.contains(why), "infer: {err}");
        let err = failed(&rca(&["eval", "--checkpoint", s(ck), "--data", s(&dir)]));
        assert!(err.contains(s(ck)) && err.contains(why), "eval: {err}");
    }
}

#[test]
fn an_empty_data_folder_is_a_clear_error() {
    let dir = scratch().join("empty-data");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let ck = dir.join("model.safetensors");
    cpu_checkpoint(&ck);
    let err = failed(&rca(&["eval", "--checkpoint", s(&ck), "--data", s(&data)]));
    assert!(err.contains(s(&data)) && err.contains("is empty"), "{err}");
    // infer on a folder with nothing to segment.
    let err = failed(&rca(&["infer", "--checkpoint", s(&ck), s(&data)]));
    assert!(err.contains(s(&data)) && err.contains("no images"), "{err}");
    // eval of a checkpoint outside a run folder, without --data, says what to give.
    let err = failed(&rca(&["eval", "--checkpoint", s(&ck)]));
    assert!(
        err.contains("config.json") && err.contains("--data"),
        "{err}"
    );
}

#[test]
fn an_undecodable_image_is_named_and_skipped_only_with_skip_bad() {
    if common::gpu().is_none() {
        return;
    }
    let dir = scratch().join("bad-image");
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let good = dir.join("fine.png");
    image::GrayImage::new(40, 33).save(&good).unwrap();
    let ck = run_dir().join("best.safetensors");
    let out = dir.join("pred");
    let err = failed(&rca(&[
        "infer",
        "--checkpoint",
        s(&ck),
        s(&bad),
        s(&good),
        "--out",
        s(&out),
    ]));
    assert!(err.contains(s(&bad)) && err.contains("--skip-bad"), "{err}");
    let o = rca(&[
        "infer",
        "--checkpoint",
        s(&ck),
        s(&bad),
        s(&good),
        "--out",
        s(&out),
        "--skip-bad",
    ]);
    let stdout = ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("broken.png"));
    assert!(stdout.contains("fine  40x33"), "{stdout}");
    assert!(out.join("fine_mask.png").is_file() && !out.join("broken_mask.png").exists());
}

#[test]
fn eval_with_a_split_file_scores_its_test_part_and_names_unknown_images() {
    if common::gpu().is_none() {
        return;
    }
    let run = run_dir();
    let ck = run.join("best.safetensors");
    let dir = scratch().join("split");
    std::fs::create_dir_all(&dir).unwrap();
    let mut split: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("split.json")).unwrap()).unwrap();
    let first = split["train"][0].clone();
    split["test"] = Value::Array(vec![first.clone()]);
    let one = dir.join("one.json");
    std::fs::write(&one, split.to_string()).unwrap();
    let out = dir.join("eval");
    ok(&rca(&[
        "eval",
        "--checkpoint",
        s(&ck),
        "--split",
        s(&one),
        "--out",
        s(&out),
    ]));
    let csv = std::fs::read_to_string(out.join("per_image.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        3,
        "header and PP N/Y of one image:\n{csv}"
    );
    assert!(csv.contains(first.as_str().unwrap()), "{csv}");

    split["test"] = Value::Array(vec![Value::from("phantom/benign/999999")]);
    let unknown = dir.join("unknown.json");
    std::fs::write(&unknown, split.to_string()).unwrap();
    let err = failed(&rca(&[
        "eval",
        "--checkpoint",
        s(&ck),
        "--split",
        s(&unknown),
    ]));
    assert!(
        err.contains(s(&unknown)) && err.contains("phantom/benign/999999"),
        "{err}"
    );
}

#[test]
fn eval_post_processing_options_reach_the_pp_y_rows() {
    if common::gpu().is_none() {
        return;
    }
    // With hole filling and the three region filters off, "PP Y" is thresholding alone:
    // every image's Y row must equal its N row.
    let out = scratch().join("eval-no-pp");
    ok(&rca(&[
        "eval",
        "--checkpoint",
        s(&run_dir().join("best.safetensors")),
        "--out",
        s(&out),
        "--min-area",
        "0",
        "--min-relative-area",
        "0",
        "--min-peak",
        "0",
        "--no-fill-holes",
    ]));
    let csv = std::fs::read_to_string(out.join("per_image.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert!(!rows.is_empty());
    for pair in rows.chunks(2) {
        let (n, y) = (&pair[0], &pair[1]);
        assert_eq!((n[0], n[2], y[2]), (y[0], "N", "Y"), "{n:?} {y:?}");
        assert_eq!(n[3..n.len() - 1], y[3..y.len() - 1], "{n:?} vs {y:?}");
    }
    let summary = read_json(&out.join("summary.json"));
    assert_eq!(summary["pp_y"]["min_area"], 0);
    assert_eq!(summary["pp_y"]["fill_holes"], false);
    assert_eq!(summary["pp_y"]["min_peak"], 0.0);
    let err = failed(&rca(&[
        "eval",
        "--checkpoint",
        s(&run_dir().join("best.safetensors")),
        "--min-peak",
        "1.5",
    ]));
    assert!(err.contains("--min-peak"), "{err}");
    let err = failed(&rca(&[
        "eval",
        "--checkpoint",
        s(&run_dir().join("best.safetensors")),
        "--min-relative-area",
        "2",
    ]));
    assert!(err.contains("--min-relative-area"), "{err}");
}

/// The float32 values of a 2-D `.npy` file (format 1.0, little-endian f4, C order) and its
/// shape, read by the format's definition.
fn read_npy(path: &Path) -> ((usize, usize), Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "{}", path.display());
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + len) % 64, 0, "the header pads the data to 64 bytes");
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"));
    let shape = &header[header.find("'shape': (").unwrap() + 10..];
    let shape = &shape[..shape.find(')').unwrap()];
    let dims: Vec<usize> = shape
        .split(',')
        .map(|d| d.trim().parse().unwrap())
        .collect();
    let values: Vec<f32> = bytes[10 + len..]
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(values.len(), dims[0] * dims[1]);
    ((dims[0], dims[1]), values)
}

#[test]
fn infer_writes_float_probabilities_label_masks_and_results_as_data() {
    if common::gpu().is_none() {
        return;
    }
    let dir = scratch().join("infer_data");
    std::fs::create_dir_all(&dir).unwrap();
    let a = dir.join("a.png");
    image::GrayImage::from_fn(45, 37, |x, y| image::Luma([(x * 5 + y) as u8]))
        .save(&a)
        .unwrap();
    let b = dir.join("b.png");
    image::GrayImage::from_fn(20, 30, |x, y| image::Luma([(x * y) as u8]))
        .save(&b)
        .unwrap();
    let out = dir.join("pred");
    let ck = run_dir().join("best.safetensors");
    let stdout = ok(&rca(&[
        "infer",
        "--checkpoint",
        s(&ck),
        s(&a),
        s(&b),
        "--out",
        s(&out),
        "--save-probabilities",
        "--mask-values",
        "0,1",
        "--json",
        // Threshold 0.3 without post-processing, so that the masks have lesion pixels.
        "--no-postprocess",
        "--threshold",
        "0.3",
    ]));
    let records: Value = serde_json::from_str(&stdout).unwrap();
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 2, "{stdout}");
    let saved = read_json(&out.join("results.json"));
    assert_eq!(&saved, &Value::Array(records.clone()));
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "file,width,height,lesion_px,lesion_percent,components,max_probability,ms"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    for (r, (name, w, h)) in records.iter().zip([("a", 45, 37), ("b", 20, 30)]) {
        assert_eq!(
            (r["width"].as_u64(), r["height"].as_u64()),
            (Some(w), Some(h))
        );
        assert!(
            r["file"]
                .as_str()
                .unwrap()
                .ends_with(&format!("{name}.png"))
        );
        // The float map has the image's shape and equals the 8-bit one within 1/255.
        let ((rows, cols), prob) = read_npy(&out.join(format!("{name}_prob.npy")));
        assert_eq!((rows, cols), (h as usize, w as usize));
        let png = image::open(out.join(format!("{name}_prob.png")))
            .unwrap()
            .to_luma8();
        for (p, q) in prob.iter().zip(png.pixels()) {
            assert!((0.0..=1.0).contains(p));
            assert!((p - f32::from(q.0[0]) / 255.0).abs() <= 0.5 / 255.0 + 1e-6);
        }
        let max = prob.iter().copied().fold(0.0, f32::max);
        assert!((r["max_probability"].as_f64().unwrap() - f64::from(max)).abs() < 1e-6);
        // The mask is a 0/1 label map, its lesion pixels those at p >= 0.3.
        let mask = image::open(out.join(format!("{name}_mask.png")))
            .unwrap()
            .to_luma8();
        assert!(mask.pixels().all(|p| p.0[0] <= 1));
        let lesion = mask.pixels().filter(|p| p.0[0] == 1).count();
        assert_eq!(lesion as u64, r["lesion_px"].as_u64().unwrap());
        assert_eq!(lesion, prob.iter().filter(|&&p| p >= 0.3).count());
        assert_eq!(r["components"].as_u64().unwrap() == 0, lesion == 0);
    }
    // The background value too: nothing reaches a threshold of 1 here (max p < 1).
    let bg = dir.join("bg");
    ok(&rca(&[
        "infer",
        "--checkpoint",
        s(&ck),
        s(&a),
        "--out",
        s(&bg),
        "--mask-values",
        "7,3",
        "--no-postprocess",
        "--threshold",
        "1",
    ]));
    let mask = image::open(bg.join("a_mask.png")).unwrap().to_luma8();
    assert!(mask.pixels().all(|p| p.0[0] == 7));
    let err = failed(&rca(&[
        "infer",
        "--checkpoint",
        s(&ck),
        s(&a),
        "--mask-values",
        "1,1",
    ]));
    assert!(err.contains("is not two different pixel values"), "{err}");
}

#[test]
fn eval_on_a_bus_bra_fold_scores_the_authors_test_fold_per_class() {
    let dir = scratch().join("eval-busbra-fold");
    let ck = dir.join("model.safetensors");
    std::fs::create_dir_all(&dir).unwrap();
    cpu_checkpoint(&ck);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    // A data set without folds of its own says so.
    let err = failed(&rca(&[
        "eval",
        "--checkpoint",
        s(&ck),
        "--data",
        s(&root.join("sample")),
        "--fold",
        "1",
    ]));
    assert!(err.contains("5-fold-cv.csv"), "{err}");
    if common::gpu().is_none() {
        return;
    }
    let out = dir.join("eval");
    let stdout = ok(&rca(&[
        "eval",
        "--checkpoint",
        s(&ck),
        "--data",
        s(&root.join("busbra_sample")),
        "--fold",
        "1",
        "--out",
        s(&out),
    ]));
    // Fold 1 of the sample: patients 9 (malignant) and 848 (benign), two images each.
    let csv = std::fs::read_to_string(out.join("per_image.csv")).unwrap();
    let mut names: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names,
        [
            "Images/bus_0009-l.png",
            "Images/bus_0009-r.png",
            "Images/bus_0848-l.png",
            "Images/bus_0848-r.png"
        ],
        "{csv}"
    );
    for class in ["benign", "malignant"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(class)),
            "no {class} row:\n{stdout}"
        );
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The mean Dice of `summary.json`'s "all" row with or without post-processing.
fn summary_dice(summary: &Value, postprocessed: bool) -> f64 {
    summary["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["label"] == "all" && r["postprocessed"] == postprocessed)
        .unwrap_or_else(|| panic!("no 'all' row in {summary}"))["summary"]["dice"]["mean"]
        .as_f64()
        .unwrap()
}

#[test]
fn without_a_checkpoint_infer_and_eval_use_the_shipped_model() {
    let dir = scratch().join("shipped");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/busbra_sample");
    // eval needs images to score: the shipped model has no run folder.
    let err = failed(&rca(&["eval", "--out", s(&dir.join("none"))]));
    assert!(err.contains("--data"), "{err}");
    let out = dir.join("masks");
    let o = rca(&["infer", s(&root.join("Images")), "--out", s(&out)]);
    ok(&o);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("shipped model"), "{stderr}");
    assert!(out.join("bus_0009-l_mask.png").is_file());
    // BUS-BRA's test fold 1, which the shipped model was not trained on (models/README.md):
    // patients 9 and 848 of the sample. The bar is well below the model card's test-fold
    // Dice, and far above what untrained or wrongly loaded weights give (0.0–0.3).
    let ev = dir.join("eval");
    ok(&rca(&[
        "eval",
        "--data",
        s(&root),
        "--fold",
        "1",
        "--out",
        s(&ev),
    ]));
    let summary = read_json(&ev.join("summary.json"));
    assert_eq!(summary["checkpoint"], rca_gpu::shipped::FILE);
    assert_eq!(summary["image_count"], 4);
    // The shipped model's own setting, chosen on BUS-BRA's test folds.
    assert_eq!(summary["tta"], true);
    assert_eq!(summary["pp_y"]["min_peak"].as_f64(), Some(0.8));
    let dice = summary_dice(&summary, true);
    assert!(
        dice >= 0.6,
        "shipped model: Dice {dice} on held-out sample images"
    );
}

/// Masks (and probabilities) `infer` writes for the BUS-BRA sample with these arguments.
fn sample_masks(out: &Path, extra: &[&str]) -> (String, Vec<Vec<u8>>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/busbra_sample/Images");
    let mut args = vec!["infer", s(&root), "--out", s(out), "--save-probabilities"];
    args.extend_from_slice(extra);
    let o = rca(&args);
    ok(&o);
    let mut names: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with("_mask.png") || n.ends_with("_prob.npy")
        })
        .collect();
    names.sort();
    assert!(!names.is_empty());
    let files = names.iter().map(|p| std::fs::read(p).unwrap()).collect();
    (String::from_utf8_lossy(&o.stderr).into_owned(), files)
}

#[test]
fn the_shipped_model_runs_at_its_own_setting_unless_told_otherwise() {
    let dir = scratch().join("shipped-setting");
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(rca_gpu::shipped::FILE);
    // Without --checkpoint: mirrored ×4 and --min-peak 0.8, as named by the same file with
    // those flags.
    let (stderr, default) = sample_masks(&dir.join("default"), &[]);
    assert!(
        stderr.contains("4 prediction(s) averaged per image"),
        "{stderr}"
    );
    assert!(stderr.contains("peaking under 0.8"), "{stderr}");
    assert!(stderr.contains("the shipped model's setting"), "{stderr}");
    let (stderr, named) = sample_masks(
        &dir.join("named"),
        &["--checkpoint", s(&file), "--tta", "--min-peak", "0.8"],
    );
    assert!(!stderr.contains("the shipped model's setting"), "{stderr}");
    assert!(
        default == named,
        "the shipped default differs from --tta --min-peak 0.8"
    );
    // --no-tta --min-peak 0: the paper's, as a checkpoint runs by default.
    let (stderr, paper) = sample_masks(&dir.join("paper"), &["--no-tta", "--min-peak", "0"]);
    assert!(
        stderr.contains("1 prediction(s) averaged per image"),
        "{stderr}"
    );
    assert!(!stderr.contains("the shipped model's setting"), "{stderr}");
    let (_, checkpoint) = sample_masks(&dir.join("checkpoint"), &["--checkpoint", s(&file)]);
    assert!(
        paper == checkpoint,
        "--no-tta --min-peak 0 differs from a checkpoint's default"
    );
    assert!(paper != default, "the setting changed nothing");
    // One flag given, the other left to the model.
    let (stderr, _) = sample_masks(&dir.join("half"), &["--no-tta"]);
    assert!(
        stderr.contains("1 prediction(s)") && stderr.contains("under 0.8"),
        "{stderr}"
    );
    let err = failed(&rca(&["infer", s(&file), "--tta", "--no-tta"]));
    assert!(err.contains("--no-tta"), "{err}");
}

#[test]
fn lesion_free_views_are_scored_with_an_empty_truth_and_a_false_positive_rate() {
    let dir = scratch().join("lesion-free");
    let ck = dir.join("model.safetensors");
    std::fs::create_dir_all(&dir).unwrap();
    cpu_checkpoint(&ck);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/busbra_sample");
    let mut csvs = Vec::new();
    for round in ["a", "b"] {
        let out = dir.join(round);
        let stdout = ok(&rca(&[
            "eval",
            "--checkpoint",
            s(&ck),
            "--data",
            s(&root),
            "--lesion-free-views",
            "--out",
            s(&out),
        ]));
        assert!(stdout.contains("lesion-free images, PP N:"), "{stdout}");
        assert!(stdout.contains("lesion-free images, PP Y:"), "{stdout}");
        let summary = read_json(&out.join("summary.json"));
        let n = summary["image_count"].as_u64().unwrap();
        // Some sample lesions leave room for a view, some (large, central) do not.
        assert!(n > 0 && n < 12, "{n} views of 12 images");
        let rows = summary["lesion_free"].as_array().unwrap();
        assert_eq!(rows.len(), 2, "{summary}");
        assert!(rows.iter().all(|r| r["images"] == n));
        let csv = std::fs::read_to_string(out.join("per_image.csv")).unwrap();
        for line in csv.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            assert!(f[0].ends_with("#lesion-free"), "{line}");
            assert_eq!(f[1], "lesion-free view");
            // tp and fn: the truth is empty.
            assert_eq!((f[3], f[5]), ("0", "0"), "{line}");
        }
        csvs.push(
            csv.lines()
                .map(|l| l.rsplit_once(',').unwrap().0.to_string())
                .collect::<Vec<_>>(),
        );
    }
    // The views are drawn from the image names: the same crops every time (times aside).
    assert_eq!(csvs[0], csvs[1]);
}

#[test]
fn infer_averages_an_ensemble_and_writes_its_uncertainty() {
    let dir = scratch().join("ensemble");
    std::fs::create_dir_all(&dir).unwrap();
    let a = dir.join("scan.png");
    image::GrayImage::from_fn(45, 37, |x, y| image::Luma([(x * 5 + y * 3) as u8]))
        .save(&a)
        .unwrap();
    let ck = run_dir().join("best.safetensors");
    // One model and no mirroring cannot disagree with itself.
    let err = failed(&rca(&[
        "infer",
        "--checkpoint",
        s(&ck),
        s(&a),
        "--out",
        s(&dir.join("x")),
        "--save-uncertainty",
    ]));
    assert!(err.contains("--tta"), "{err}");
    // Two copies of one checkpoint: the same probabilities as one, and no uncertainty.
    let (one, two, tta) = (dir.join("one"), dir.join("two"), dir.join("tta"));
    ok(&rca(&[
        "infer",
        "--checkpoint",
        s(&ck),
        s(&a),
        "--out",
        s(&one),
        "--save-probabilities",
    ]));
    ok(&rca(&[
        "infer",
        "--checkpoint",
        s(&ck),
        "--checkpoint",
        s(&ck),
        s(&a),
        "--out",
        s(&two),
        "--save-probabilities",
        "--save-uncertainty",
    ]));
    assert_eq!(
        read_npy(&one.join("scan_prob.npy")),
        read_npy(&two.join("scan_prob.npy"))
    );
    let (shape, u) = read_npy(&two.join("scan_uncertainty.npy"));
    assert_eq!(shape, (37, 45));
    assert!(u.iter().all(|&v| v == 0.0));
    let png = image::open(two.join("scan_uncertainty.png"))
        .unwrap()
        .to_luma8();
    assert!(png.pixels().all(|p| p.0[0] == 0));
    // Mirroring: four views, which an untrained model does not agree on everywhere; the
    // PNG is the map × 510.
    ok(&rca(&[
        "infer",
        "--checkpoint",
        s(&ck),
        "--tta",
        s(&a),
        "--out",
        s(&tta),
        "--save-probabilities",
        "--save-uncertainty",
    ]));
    let (_, u) = read_npy(&tta.join("scan_uncertainty.npy"));
    assert!(u.iter().all(|&v| (0.0..=0.5).contains(&v)) && u.iter().any(|&v| v > 0.0));
    let png = image::open(tta.join("scan_uncertainty.png"))
        .unwrap()
        .to_luma8();
    for (p, v) in png.pixels().zip(&u) {
        assert_eq!(p.0[0], (v * 510.0).round().min(255.0) as u8);
    }
    // A folder of such outputs is not segmented again.
    let again = failed(&rca(&[
        "infer",
        "--checkpoint",
        s(&ck),
        s(&tta),
        "--out",
        s(&dir.join("y")),
    ]));
    assert!(again.contains("no images to segment"), "{again}");
}

#[test]
fn eval_scores_an_ensemble_with_test_time_mirroring() {
    let dir = scratch().join("eval-ensemble");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/busbra_sample");
    let ck = run_dir().join("best.safetensors");
    let out = dir.join("eval");
    ok(&rca(&[
        "eval",
        "--checkpoint",
        s(&ck),
        "--checkpoint",
        s(&ck),
        "--tta",
        "--data",
        s(&root),
        "--fold",
        "1",
        "--out",
        s(&out),
    ]));
    let summary = read_json(&out.join("summary.json"));
    assert_eq!(summary["tta"], true);
    assert_eq!(summary["checkpoints"].as_array().unwrap().len(), 2);
    assert_eq!(summary["image_count"], 4);
}

#[test]
fn cross_validation_scores_each_fold_on_its_own_test_part_and_averages_the_folds() {
    let dir = scratch().join("cv");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/busbra_sample");
    let mut cks = Vec::new();
    for k in ["3", "5"] {
        let run = dir.join(format!("fold{k}"));
        ok(&rca(&[
            "train",
            "--size",
            "32",
            "--width",
            "2",
            "--batch",
            "2",
            "--epochs",
            "1",
            "--data",
            s(&data),
            "--fold",
            k,
            "--out",
            s(&run),
        ]));
        cks.push(run.join("best.safetensors"));
    }
    let err = failed(&rca(&[
        "eval",
        "--cross-validation",
        "--checkpoint",
        s(&cks[0]),
    ]));
    assert!(err.contains("two or more"), "{err}");
    let out = dir.join("cv-out");
    let stdout = ok(&rca(&[
        "eval",
        "--cross-validation",
        "--checkpoint",
        s(&cks[0]),
        "--checkpoint",
        s(&cks[1]),
        "--out",
        s(&out),
    ]));
    assert!(stdout.contains("cross-validation: 2 folds"), "{stdout}");
    let fold = |k: usize| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(out.join(format!("fold-{k}/summary.json"))).unwrap(),
        )
        .unwrap()
    };
    // Fold 3 and fold 5 of the sample are two images each (patients 995 and 36).
    let (a, b) = (fold(1), fold(2));
    assert_eq!(
        (a["image_count"].as_u64(), b["image_count"].as_u64()),
        (Some(2), Some(2))
    );
    let cv = read_json(&out.join("cross_validation.json"));
    let row = cv["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["label"] == "all" && r["postprocessed"] == true)
        .unwrap()
        .clone();
    let (da, db) = (summary_dice(&a, true), summary_dice(&b, true));
    let dice = &row["summary"]["dice"];
    assert_eq!(row["summary"]["count"], 4);
    assert!((dice["mean"].as_f64().unwrap() - (da + db) / 2.0).abs() < 1e-12);
    let sd = (da - db).abs() / 2f64.sqrt();
    assert!((dice["std"].as_f64().unwrap() - sd).abs() < 1e-12);
    assert!(out.join("cross_validation.md").is_file());
}
