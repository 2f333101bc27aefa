//! `rca-gpu bench` at a tiny size: it reports inference at each batch and training, names
//! the adapter, writes parseable JSON with medians within their min–max, reports GPU time
//! exactly where the adapter has timestamp queries, and on a device whose binding limit is
//! too small for the batch it chunks inference and halves the training batch, saying so.

use std::process::Command;

use serde_json::Value;

use crate::common::{self, BIN};

fn bench(json: &std::path::Path, env: &[(&str, &str)]) -> (String, Value) {
    bench_with(json, env, &[])
}

fn bench_with(json: &std::path::Path, env: &[(&str, &str)], extra: &[&str]) -> (String, Value) {
    let out = Command::new(BIN)
        .args(["bench", "--size", "32", "--width", "2", "--reps", "2"])
        .args(extra)
        .arg("--json")
        .arg(json)
        .envs(env.iter().copied())
        .output()
        .expect("cannot run rca-gpu");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rca-gpu bench failed: {stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    (stdout, report)
}

fn results(report: &Value) -> Vec<Value> {
    report["results"].as_array().unwrap().clone()
}

#[test]
fn bench_reports_inference_per_batch_and_training_with_medians() {
    let Some(gpu) = common::gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (stdout, report) = bench(&dir.path().join("b.json"), &[]);
    let adapter = report["adapter"].as_str().unwrap();
    assert_eq!(adapter, gpu.info().name);
    assert!(stdout.contains(adapter), "{stdout}");
    assert_eq!(report["parameters"], 57691, "rca-iunet F=2 S=32");
    let r = results(&report);
    let tasks: Vec<(&str, u64)> = r
        .iter()
        .map(|m| (m["task"].as_str().unwrap(), m["batch"].as_u64().unwrap()))
        .collect();
    assert_eq!(tasks, [("inference", 1), ("inference", 8), ("training", 8)]);
    for m in &r {
        let w = &m["wall_ms"];
        let (med, lo, hi) = (
            w["median"].as_f64().unwrap(),
            w["min"].as_f64().unwrap(),
            w["max"].as_f64().unwrap(),
        );
        assert!(lo > 0.0 && lo <= med && med <= hi, "{m}");
        let per_image = m["ms_per_image"].as_f64().unwrap();
        assert!((per_image * m["batch"].as_f64().unwrap() - med).abs() < 1e-6 * med);
        assert_eq!(m["gpu_ms"].is_object(), gpu.info().timestamp_queries, "{m}");
        if let Some(g) = m["gpu_ms"].as_object() {
            // The GPU's span lies inside the wall time around it.
            assert!(g["median"].as_f64().unwrap() <= hi, "{m}");
        }
    }
    for line in ["| inference | 1 |", "| inference | 8 |", "| training | 8 |"] {
        assert!(stdout.contains(line), "{line} missing from:\n{stdout}");
    }
}

#[test]
fn bench_chunks_inference_and_halves_training_when_the_batch_cannot_fit() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // 128 KiB per binding: one 32×32 F = 2 image fits, eight do not.
    let (stdout, report) = bench(
        &dir.path().join("b.json"),
        &[("RCA_GPU_MAX_BINDING", "131072")],
    );
    let r = results(&report);
    let inf8 = &r[1];
    assert_eq!(inf8["batch"], 8);
    assert!(inf8["chunk"].as_u64().unwrap() < 8, "{inf8}");
    let train = &r[2];
    assert_eq!(train["batch_asked"], 8);
    assert!(train["batch"].as_u64().unwrap() < 8, "{train}");
    assert!(stdout.contains("(asked 8)"), "{stdout}");
}

#[test]
fn bench_profile_gives_time_per_kernel_and_the_slowest_dispatches() {
    let Some(gpu) = common::gpu() else { return };
    if !gpu.info().timestamp_queries {
        return; // refused with a clear error: see the runtime test of the profile
    }
    let dir = tempfile::tempdir().unwrap();
    let (stdout, report) = bench_with(
        &dir.path().join("b.json"),
        &[],
        &["--profile", "--batches", "1", "--train-batch", "2"],
    );
    let profiles = report["profiles"].as_array().unwrap();
    let tasks: Vec<(&str, u64)> = profiles
        .iter()
        .map(|p| (p["task"].as_str().unwrap(), p["batch"].as_u64().unwrap()))
        .collect();
    assert_eq!(tasks, [("inference", 1), ("training", 2)]);
    for p in profiles {
        let kernels = p["kernels"].as_array().unwrap();
        let shares: f64 = kernels.iter().map(|k| k["share"].as_f64().unwrap()).sum();
        assert!((shares - 1.0).abs() < 1e-9, "shares add up to 1: {shares}");
        let count: u64 = kernels
            .iter()
            .map(|k| k["dispatches"].as_u64().unwrap())
            .sum();
        assert_eq!(count, p["dispatches"].as_u64().unwrap());
        // The products declare their FLOPs, so their rows have a GFLOP/s.
        assert!(
            kernels
                .iter()
                .any(|k| k["kernel"].as_str().unwrap().starts_with("matmul")
                    && k["gflop_per_s"].is_number()),
            "{p}"
        );
        let slowest = p["slowest"].as_array().unwrap();
        assert_eq!(slowest.len(), 10);
        assert!(
            slowest
                .iter()
                .all(|d| !d["block"].as_str().unwrap().is_empty())
        );
    }
    for line in [
        "inference profile, batch 1",
        "training profile, batch 2",
        "slowest dispatches",
    ] {
        assert!(stdout.contains(line), "{line} missing from:\n{stdout}");
    }
}
