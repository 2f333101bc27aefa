//! Post-processing, distance transform and metrics against SciPy / scikit-image.
//!
//! The golden values in `tests/fixtures/metrics_golden.json` were produced by
//! `tools/metrics_golden.py` (fixed seed; the numpy, SciPy and scikit-image versions are
//! recorded in the file) from random and realistic masks of 16–64 pixels a side. Masks are
//! stored as hex of numpy.packbits of the row-major pixels.

use rca_gpu::metrics::{
    BinaryMask, Connectivity, PostProcess, distance_to_foreground, evaluate, fill_holes,
    label_components, squared_distance_to_foreground,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    generator: String,
    versions: std::collections::BTreeMap<String, String>,
    postprocess_configs: Vec<PpConfig>,
    postprocess: Vec<PpCase>,
    edt: Vec<EdtCase>,
    metrics: Vec<MetricCase>,
}

#[derive(Deserialize)]
struct PpConfig {
    connectivity: u8,
    fill_holes: bool,
    min_area: usize,
    min_relative_area: f64,
}

#[derive(Deserialize)]
struct PpCase {
    kind: String,
    width: usize,
    height: usize,
    mask: String,
    filled8: String,
    filled4: String,
    components8: usize,
    components4: usize,
    outputs: Vec<String>,
}

#[derive(Deserialize)]
struct EdtCase {
    case: usize,
    sum: f64,
    max: f64,
    squared: Option<Vec<u64>>,
}

#[derive(Deserialize)]
struct MetricCase {
    kind: String,
    width: usize,
    height: usize,
    pred: String,
    gt: String,
    tp: u64,
    fp: u64,
    #[serde(rename = "fn")]
    fn_: u64,
    tn: u64,
    accuracy: f64,
    precision: f64,
    recall: f64,
    dice: f64,
    iou: f64,
    miou: f64,
    ahd: f64,
    hd95: f64,
    mae: f64,
}

fn golden() -> Golden {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/metrics_golden.json"
    ))
    .expect(
        "tests/fixtures/metrics_golden.json is committed; regenerate with tools/metrics_golden.py",
    );
    serde_json::from_str(&text).expect("fixture parses")
}

/// Inverse of numpy.packbits(...).tobytes().hex(): first pixel in the top bit.
fn unpack(hex: &str, width: usize, height: usize) -> BinaryMask {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    assert_eq!(bytes.len(), (width * height).div_ceil(8));
    let data = (0..width * height)
        .map(|i| bytes[i / 8] & (0x80 >> (i % 8)) != 0)
        .collect();
    BinaryMask::new(width, height, data).unwrap()
}

fn assert_close(name: &str, case: usize, got: f64, want: f64) {
    let tol = 1e-6 * want.abs().max(1e-12);
    assert!(
        (got - want).abs() <= tol,
        "{name} of metric case {case}: got {got}, SciPy gives {want}"
    );
}

#[test]
fn fixture_records_its_generator_and_versions() {
    let g = golden();
    assert_eq!(g.generator, "tools/metrics_golden.py");
    for lib in ["numpy", "scipy", "scikit-image"] {
        assert!(g.versions.contains_key(lib), "{lib} version missing");
    }
    assert!(g.postprocess.len() >= 50 && g.metrics.len() >= 100);
}

#[test]
fn hole_filling_equals_scipy_binary_fill_holes() {
    for (i, c) in golden().postprocess.iter().enumerate() {
        let m = unpack(&c.mask, c.width, c.height);
        let want8 = unpack(&c.filled8, c.width, c.height);
        let want4 = unpack(&c.filled4, c.width, c.height);
        assert_eq!(
            fill_holes(&m, Connectivity::Eight),
            want8,
            "case {i} ({})",
            c.kind
        );
        assert_eq!(
            fill_holes(&m, Connectivity::Four),
            want4,
            "case {i} ({})",
            c.kind
        );
    }
}

#[test]
fn component_counts_equal_scipy_and_skimage_label() {
    for (i, c) in golden().postprocess.iter().enumerate() {
        let m = unpack(&c.mask, c.width, c.height);
        assert_eq!(
            label_components(&m, Connectivity::Eight).count(),
            c.components8,
            "case {i}"
        );
        assert_eq!(
            label_components(&m, Connectivity::Four).count(),
            c.components4,
            "case {i}"
        );
    }
}

#[test]
fn post_processing_output_equals_scipy_exactly() {
    let g = golden();
    for (i, c) in g.postprocess.iter().enumerate() {
        let m = unpack(&c.mask, c.width, c.height);
        for (cfg, want) in g.postprocess_configs.iter().zip(&c.outputs) {
            let pp = PostProcess {
                threshold: 0.5,
                fill_holes: cfg.fill_holes,
                min_area: cfg.min_area,
                min_relative_area: cfg.min_relative_area,
                connectivity: Connectivity::from_neighbours(cfg.connectivity).unwrap(),
                min_peak: 0.0,
            };
            let want = unpack(want, c.width, c.height);
            assert_eq!(pp.apply_mask(&m), want, "case {i} ({}), {:?}", c.kind, pp);
            // the same through the probability path: 1.0 / 0.0 thresholded at 0.5
            let prob: Vec<f32> = m.data().iter().map(|&v| f32::from(u8::from(v))).collect();
            assert_eq!(
                pp.apply(&prob, c.width, c.height).unwrap(),
                want,
                "case {i}"
            );
        }
    }
}

#[test]
fn distance_transform_equals_scipy_within_1e_5() {
    let g = golden();
    let mut full = 0;
    for e in &g.edt {
        let c = &g.postprocess[e.case];
        let m = unpack(&c.mask, c.width, c.height);
        let d = distance_to_foreground(&m);
        let sum: f64 = d.iter().sum();
        let max = d.iter().copied().fold(0.0, f64::max);
        assert!(
            (sum - e.sum).abs() <= 1e-5 * e.sum.max(1.0),
            "EDT sum, case {}",
            e.case
        );
        assert!((max - e.max).abs() <= 1e-5, "EDT max, case {}", e.case);
        if let Some(sq) = &e.squared {
            full += 1;
            let got = squared_distance_to_foreground(&m);
            for (j, (&a, &b)) in got.iter().zip(sq).enumerate() {
                assert!(
                    (a - b as f64).abs() <= 1e-5,
                    "EDT² pixel {j}, case {}",
                    e.case
                );
            }
        }
    }
    assert!(full > 0, "fixture has whole EDT maps");
}

#[test]
fn every_metric_equals_scipy_within_1e_6_relative() {
    for (i, c) in golden().metrics.iter().enumerate() {
        let p = unpack(&c.pred, c.width, c.height);
        let g = unpack(&c.gt, c.width, c.height);
        let m = evaluate(&p, &g).unwrap();
        let k = &m.confusion;
        assert_eq!(
            (k.true_pos, k.false_pos, k.false_neg, k.true_neg),
            (c.tp, c.fp, c.fn_, c.tn),
            "confusion of case {i} ({})",
            c.kind
        );
        assert_close("accuracy", i, m.accuracy, c.accuracy);
        assert_close("precision", i, m.precision, c.precision);
        assert_close("recall", i, m.recall, c.recall);
        assert_close("dice", i, m.dice, c.dice);
        assert_close("iou", i, m.iou, c.iou);
        assert_close("miou", i, m.miou, c.miou);
        assert_close("ahd", i, m.ahd, c.ahd);
        assert_close("hd95", i, m.hd95, c.hd95);
        assert_close("mae", i, m.mae, c.mae);
    }
}
