//! `rca-gpu train` beyond the basics, at a tiny size (S = 32, F = 2, 8 phantoms or the
//! 15-image sample): `--init` fine-tunes from another run's weights, the data folder is
//! stored absolute (and an older relative entry still resumes), and a batch whose largest
//! buffer exceeds the adapter's binding limit is refused before any step, with the buffer
//! size computed by a formula that this file checks against what a step really allocates.

use std::path::Path;
use std::process::{Command, Output};

use rca_gpu::model::{Model, ModelConfig, Variant};
use rca_gpu::train::budget::largest_buffer_bytes;
use rca_gpu::train::checkpoint::{load_model, load_optimizer};
use rca_gpu::train::history::EpochRecord;
use rca_gpu::train::{Adam, train_step};
use rca_gpu::{AdapterRequest, Gpu, Tensor};
use serde_json::Value;

use crate::common::{self, BIN};

fn train(cwd: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(cwd)
        .arg("train")
        .args(args)
        .output()
        .expect("cannot run rca-gpu")
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "rca-gpu train failed: {err}");
    err
}

fn failed(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "rca-gpu train succeeded: {err}");
    err
}

fn config(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap()
}

fn sha256_hex(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn init_starts_a_fresh_run_from_another_runs_weights() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tiny = ["--phantoms", "8", "--batch", "2", "--epochs", "1"];
    let mut first = vec!["--size", "32", "--width", "2", "--out", "a"];
    first.extend(tiny);
    ok(&train(d, &first));
    let best = d.join("a/best.safetensors");
    // The phantom demo's BN momentum (MODEL.md's 0.99 is the --data default, below).
    assert_eq!(config(&d.join("a"))["bn_momentum"].as_f64(), Some(0.9));

    // --size and --width are left out: the checkpoint's are taken. A learning rate of 1e-12
    // leaves the weights where they started, so the run's last checkpoint shows them.
    let mut second = vec![
        "--init",
        "a/best.safetensors",
        "--lr",
        "1e-12",
        "--out",
        "b",
    ];
    second.extend(tiny);
    let log = ok(&train(d, &second));
    assert!(log.contains("starting from the weights of"), "{log}");
    let cfg = config(&d.join("b"));
    assert_eq!(cfg["size"], 32);
    assert_eq!(cfg["width"], 2);
    assert_eq!(cfg["variant"], "rca-iunet");
    let init = Path::new(cfg["init"].as_str().unwrap());
    assert!(init.is_absolute(), "{init:?}");
    assert_eq!(init, best.canonicalize().unwrap());
    assert_eq!(cfg["init_sha256"], sha256_hex(&best));

    let from = load_model(&best, None).unwrap();
    let last = d.join("b/last.safetensors");
    let tuned = load_model(&last, None).unwrap();
    // A fresh run: its own first epoch, a new Adam with only its own 2 steps.
    assert_eq!(tuned.epoch, 1);
    assert_eq!(load_optimizer(&last, &tuned.sha256).unwrap().step, 2);
    let spec = Model::new(from.config).spec;
    let mut compared = 0;
    for p in spec.params().iter().filter(|p| p.kind.trainable()) {
        let (a, b) = (
            &from.get(&p.name).unwrap().data,
            &tuned.get(&p.name).unwrap().data,
        );
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-5, "{} moved by {worst}", p.name);
        compared += 1;
    }
    assert!(compared > 100);
    // A fresh initialisation with the same seed is far from the trained weights, so the
    // comparison above does tell an --init run from a plain one.
    let fresh = d.join("c");
    let mut plain = vec![
        "--size", "32", "--width", "2", "--lr", "1e-12", "--out", "c",
    ];
    plain.extend(tiny);
    ok(&train(d, &plain));
    let c = load_model(&fresh.join("last.safetensors"), None).unwrap();
    let differs = spec
        .params()
        .iter()
        .filter(|p| p.kind.trainable())
        .any(|p| {
            let (a, b) = (
                &from.get(&p.name).unwrap().data,
                &c.get(&p.name).unwrap().data,
            );
            a.iter().zip(b).any(|(x, y)| (x - y).abs() > 1e-4)
        });
    assert!(differs, "the first run's training changed nothing");

    // A model that contradicts the checkpoint is refused, naming the file.
    let err = failed(&train(
        d,
        &["--init", "a/best.safetensors", "--width", "4", "--out", "e"],
    ));
    assert!(
        err.contains("best.safetensors") && err.contains("F = 4"),
        "{err}"
    );
    assert!(!d.join("e/last.safetensors").exists());
}

#[test]
fn init_together_with_resume_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = failed(&train(
        dir.path(),
        &["--init", "x.safetensors", "--resume", "--out", "r"],
    ));
    assert!(err.contains("--init") && err.contains("--resume"), "{err}");
}

#[test]
fn a_missing_init_checkpoint_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = failed(&train(
        dir.path(),
        &["--init", "nowhere.safetensors", "--out", "r"],
    ));
    assert!(
        err.contains("--init") && err.contains("nowhere.safetensors"),
        "{err}"
    );
}

#[test]
fn the_data_folder_is_stored_absolute_and_an_old_relative_entry_still_resumes() {
    if common::gpu().is_none() {
        return;
    }
    let repo_data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_s = out.to_str().unwrap();
    let tiny = ["--size", "32", "--width", "2", "--batch", "4"];
    let mut args = vec!["--data", "sample", "--epochs", "1", "--out", out_s];
    args.extend(tiny);
    ok(&train(&repo_data, &args));
    let abs = repo_data.join("sample").canonicalize().unwrap();
    assert_eq!(config(&out)["data"], abs.to_str().unwrap());
    assert_eq!(config(&out)["bn_momentum"].as_f64(), Some(0.99));
    // From another directory the run resumes (the relative "sample" would not resolve).
    ok(&train(
        dir.path(),
        &["--resume", "--epochs", "2", "--out", out_s],
    ));

    // A config.json written by an older version, with the path as given.
    let mut cfg = config(&out);
    cfg["data"] = Value::from("sample");
    std::fs::write(out.join("config.json"), cfg.to_string()).unwrap();
    let err = failed(&train(
        dir.path(),
        &["--resume", "--epochs", "3", "--out", out_s],
    ));
    assert!(err.contains("relative") && err.contains("sample"), "{err}");
    ok(&train(
        &repo_data,
        &["--resume", "--epochs", "3", "--out", out_s],
    ));
    assert_eq!(
        config(&out)["data"],
        abs.to_str().unwrap(),
        "rewritten absolute"
    );
    // Or from anywhere, naming the folder again.
    std::fs::write(out.join("config.json"), cfg.to_string()).unwrap();
    let abs_s = abs.to_str().unwrap();
    let again = ["--resume", "--epochs", "4", "--data", abs_s, "--out", out_s];
    ok(&train(dir.path(), &again));
    assert_eq!(config(&out)["data"], abs_s);
    let history: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(history.len(), 4);
}

#[test]
fn a_batch_beyond_the_binding_limit_is_refused_before_any_step() {
    let Some(gpu) = common::gpu() else { return };
    let info = gpu.info();
    let limit = info.max_storage_binding.min(info.max_buffer_size);
    let model = Model::new(ModelConfig::new(Variant::RcaIunet, 16, 256).unwrap());
    let per_image = largest_buffer_bytes(&model, 1);
    // The paper's model at 256×256: 3·16 floats per pixel of one image (12.6 MB).
    assert_eq!(per_image, 3 * 16 * 256 * 256 * 4);
    let fits = limit / per_image;
    let batch = (fits + 1).to_string();
    let dir = tempfile::tempdir().unwrap();
    let err = failed(&train(
        dir.path(),
        &[
            "--size", "256", "--width", "16", "--batch", &batch, "--out", "run",
        ],
    ));
    let need = (((fits + 1) * per_image) as f64 / 1e6).round();
    assert!(
        err.contains(&format!(
            "batch {batch} at 256×256 needs a {need} MB buffer"
        )) && err.contains(&format!("use --batch {fits} or less"))
            && err.contains("per binding")
            && err.contains(&info.name),
        "{err}"
    );
    // Refused before the run folder was even made: no step was taken.
    assert!(!dir.path().join("run").exists());
}

#[test]
fn the_largest_buffer_formula_is_what_a_training_step_allocates() {
    if common::gpu().is_none() {
        return;
    }
    // A device of its own, so that no other test's tensors enter its pool statistics.
    let gpu = Gpu::new(&AdapterRequest::from_env()).unwrap();
    // Every variant at batch 1 and 2, smallest count first: the statistic keeps the
    // largest request ever made, so each step must raise it to exactly its own count.
    let mut cases: Vec<(Model, usize)> = Variant::ALL
        .into_iter()
        .flat_map(|v| [1, 2].map(|n| (Model::new(ModelConfig::new(v, 2, 32).unwrap()), n)))
        .collect();
    // The flat buffers of the parameters (with their gradients' and moments' copies)
    // are split to fit a binding, so they never decide the batch; the formula leaves
    // them out, the pool sees them.
    let limit = gpu
        .info()
        .max_storage_binding
        .min(gpu.info().max_buffer_size);
    let expected = |model: &Model, n: usize| {
        let flat = model.spec.flat_lengths(limit).into_iter().max().unwrap();
        largest_buffer_bytes(model, n).max(4 * flat as u64)
    };
    cases.sort_by_key(|(model, n)| expected(model, *n));
    for (model, n) in cases {
        let variant = model.config.variant;
        let mut params = model.spec.init(&gpu, 7).unwrap();
        let mut adam = Adam::new(&params, 1e-3).unwrap();
        let plane = vec![0.5; n * 32 * 32];
        let x = Tensor::from_vec(&gpu, [n, 1, 32, 32], &plane).unwrap();
        let y = Tensor::from_vec(&gpu, [n, 1, 32, 32], &plane).unwrap();
        let (loss, _) = train_step(&model, &mut params, &mut adam, &x, &y).unwrap();
        loss.to_scalar().unwrap();
        let measured = gpu.stats().pool.largest_request;
        assert_eq!(
            measured,
            expected(&model, n),
            "{} at batch {n}",
            variant.name()
        );
    }
}

#[test]
fn an_older_history_without_the_new_metrics_still_loads() {
    let old = r#"{"epoch":1,"train_loss":0.7,"train_dice":0.2,"val_loss":0.6,
        "val_dice":0.3,"val_iou":0.2,"lr":0.001,"seconds":5.0,"images_per_s":3.0}"#;
    let r: EpochRecord = serde_json::from_str(old).unwrap();
    assert_eq!(
        (r.epoch, r.val_dice, r.val_miou, r.val_ahd),
        (1, 0.3, 0.0, 0.0)
    );
}

#[test]
fn a_bn_momentum_outside_zero_to_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for m in ["1", "1.5", "-0.1"] {
        let flag = format!("--bn-momentum={m}");
        let err = failed(&train(dir.path(), &[&flag, "--out", "r", "--epochs", "1"]));
        assert!(
            err.contains("--bn-momentum") && err.contains("[0, 1)"),
            "{m}: {err}"
        );
    }
    assert!(!dir.path().join("r").exists());
}
