//! `rca-gpu train` end to end at a tiny size (S = 32, F = 2, 8 phantoms): the run folder's
//! files exist and parse, `--resume` with more epochs continues the same history, Ctrl-C
//! saves a checkpoint that resumes mid-epoch, a --data run saves its report and split, and
//! bad input fails with a clear message.

use std::path::Path;
use std::process::{Command, Output};

use rca_gpu::train::checkpoint::{load_model, load_optimizer};
use serde_json::Value;

use crate::common::{self, BIN};

const TINY: [&str; 8] = [
    "--size",
    "32",
    "--width",
    "2",
    "--phantoms",
    "8",
    "--batch",
    "2",
];

fn train(out: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .arg("train")
        .args(TINY)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("cannot run rca-gpu")
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "rca-gpu train failed: {err}");
    err
}

fn history(out: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(out.join("metrics.json")).unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_tiny_run_writes_its_folder_and_resumes_with_more_epochs() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    ok(&train(&out, &["--epochs", "2"]));
    for f in [
        "config.json",
        "split.json",
        "metrics.csv",
        "metrics.json",
        "best.safetensors",
        "last.safetensors",
        "last.optim.safetensors",
        "curves.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["size"], 32);
    assert_eq!(cfg["epochs"], 2);
    let split: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("split.json")).unwrap()).unwrap();
    let n = ["train", "val", "test"]
        .iter()
        .map(|k| split[k].as_array().unwrap().len())
        .sum::<usize>();
    assert_eq!(n, 8, "the split lists every phantom once");
    let png = image::open(out.join("curves.png")).unwrap();
    // A 4×2 grid of 320×220 panels (Fig. 8), drawn in more than the background and grid.
    let png = png.to_rgb8();
    assert_eq!((png.width(), png.height()), (1280, 440));
    let colours: std::collections::HashSet<[u8; 3]> = png.pixels().map(|p| p.0).collect();
    for c in [[31, 119, 180], [255, 127, 14], [40, 40, 40]] {
        assert!(colours.contains(&c), "curves.png lacks {c:?}");
    }
    let first = history(&out);
    assert_eq!(first.len(), 2);
    for r in &first {
        assert!(r["val_loss"].as_f64().unwrap().is_finite());
        for set in ["train", "val"] {
            for m in ["dice", "miou", "precision", "recall", "accuracy", "mae"] {
                let v = r[format!("{set}_{m}")].as_f64().unwrap();
                assert!((0.0..=1.0).contains(&v), "{set}_{m} = {v}");
            }
            // AHD is at most the 32×32 image's diagonal (the empty-mask penalty).
            let ahd = r[format!("{set}_ahd")].as_f64().unwrap();
            assert!(
                (0.0..=32f64.hypot(32.0)).contains(&ahd),
                "{set}_ahd = {ahd}"
            );
            let acc = r[format!("{set}_accuracy")].as_f64().unwrap();
            let mae = r[format!("{set}_mae")].as_f64().unwrap();
            assert!((acc + mae - 1.0).abs() < 1e-9, "binary MAE is 1 − accuracy");
        }
    }
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "header and two epochs:\n{csv}");
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert_eq!(header[..3], ["epoch", "train_loss", "train_dice"]);
    assert!(header.contains(&"val_miou") && header.contains(&"train_ahd"));
    for line in csv.lines() {
        assert_eq!(line.split(',').count(), header.len(), "{line}");
    }
    let last = out.join("last.safetensors");
    let ck = load_model(&last, None).unwrap();
    assert_eq!(ck.epoch, 2);
    let opt = load_optimizer(&last, &ck.sha256).unwrap();
    // 8 phantoms → 4 training images → 2 batches of 2 per epoch.
    assert_eq!(opt.step, 4);
    assert!(opt.rng.contains("\"epoch\":2"), "loop state: {}", opt.rng);

    // A contradicting option is refused; the run folder is untouched.
    let bad = train(&out, &["--resume", "--epochs", "3", "--lr", "0.01"]);
    assert!(!bad.status.success());
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert!(msg.contains("lr") && msg.contains("contradict"), "{msg}");
    // Starting afresh over an existing run is refused too.
    assert!(!train(&out, &["--epochs", "2"]).status.success());

    let log = ok(&train(&out, &["--resume", "--epochs", "3"]));
    assert!(log.contains("resuming"), "{log}");
    let more = history(&out);
    assert_eq!(more.len(), 3, "the epoch count grows");
    assert_eq!(more[..2], first[..], "the earlier epochs are kept");
    let ck = load_model(&last, None).unwrap();
    assert_eq!(ck.epoch, 3);
    assert_eq!(load_optimizer(&last, &ck.sha256).unwrap().step, 6);
}

#[cfg(unix)]
#[test]
fn ctrl_c_saves_a_checkpoint_that_resumes() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let child = Command::new(BIN)
        .arg("train")
        .args(TINY)
        .args(["--epochs", "500", "--out"])
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the first epoch is on disk; 500 epochs cannot be over by then.
    let t0 = std::time::Instant::now();
    while !out.join("metrics.json").exists() {
        assert!(t0.elapsed().as_secs() < 40, "no epoch finished in 40 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    // 130 = 128 + SIGINT, what shells expect of an interrupted program; state saved.
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(!err.contains("error:"), "{err}");
    let done = history(&out).len();
    assert!(done < 500);
    let last = out.join("last.safetensors");
    let ck = load_model(&last, None).unwrap();
    let opt = load_optimizer(&last, &ck.sha256).unwrap();
    let state: Value = serde_json::from_str(&opt.rng).unwrap();
    let (epoch, batch) = (
        state["epoch"].as_u64().unwrap(),
        state["batch"].as_u64().unwrap(),
    );
    eprintln!("interrupted at epoch {epoch}, batch {batch}");
    // Every step taken is in the checkpoint: 2 per finished epoch plus the partial one.
    assert_eq!(opt.step, 2 * epoch + batch);
    let target = (epoch + 2).to_string();
    ok(&train(&out, &["--resume", "--epochs", &target]));
    let ck = load_model(&last, None).unwrap();
    assert_eq!(ck.epoch as u64, epoch + 2);
    assert_eq!(
        load_optimizer(&last, &ck.sha256).unwrap().step,
        2 * (epoch + 2)
    );
    // Interrupted wherever the signal landed (mid-epoch or not) and resumed, the run ends
    // with the weights of one that was never interrupted.
    let straight = dir.path().join("straight");
    ok(&train(&straight, &["--epochs", &target]));
    let want = load_model(&straight.join("last.safetensors"), None).unwrap();
    for (x, y) in want.tensors.iter().zip(&ck.tensors) {
        assert!(
            x.data
                .iter()
                .zip(&y.data)
                .all(|(u, v)| u.to_bits() == v.to_bits()),
            "{} differs after the interrupt (epoch {epoch}, batch {batch})",
            x.name
        );
    }
}

#[test]
fn a_diverging_run_stops_with_a_clear_message() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = train(&out, &["--epochs", "3", "--lr", "1e30", "--log-every", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a 1e30 learning rate trained: {err}");
    assert!(err.contains("diverged"), "{err}");
}

#[test]
fn an_empty_data_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("empty");
    std::fs::create_dir(&data).unwrap();
    let o = Command::new(BIN)
        .args(["train", "--size", "32", "--width", "2", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("is empty") && err.contains("data folder"),
        "{err}"
    );
    assert!(!dir.path().join("run").join("last.safetensors").exists());
}

#[test]
fn resume_without_a_run_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = train(&dir.path().join("nothing"), &["--resume"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no run to resume"), "{err}");
}

#[test]
fn a_data_folder_run_saves_its_report_and_split() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
    let o = Command::new(BIN)
        .args(["train", "--size", "32", "--width", "2", "--epochs", "1"])
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    ok(&o);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("data_report.json")).unwrap())
            .unwrap();
    assert_eq!(report["images_loaded"], 15);
    let split: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("split.json")).unwrap()).unwrap();
    let sizes: Vec<usize> = ["train", "val", "test"]
        .iter()
        .map(|k| split[k].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 15);
    assert!(sizes.iter().all(|&n| n > 0), "{sizes:?}");
    assert_eq!(history(&out).len(), 1);
}

#[test]
fn a_bus_bra_fold_run_tests_on_the_authors_fold_and_resumes_only_on_it() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/busbra_sample");
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args(["train", "--size", "32", "--width", "2", "--batch", "2"])
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let err = ok(&run(&["--epochs", "1", "--fold", "3"]));
    assert!(
        err.contains("test fold 3 of 5 from 5-fold-cv.csv") && err.contains("patients: 6"),
        "{err}"
    );
    let split: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("split.json")).unwrap()).unwrap();
    assert_eq!(
        split["test"],
        serde_json::json!(["Images/bus_0995-l.png", "Images/bus_0995-r.png"])
    );
    // Ten images of five patients: the validation part is one whole patient.
    assert_eq!(split["val"].as_array().unwrap().len(), 2, "{split}");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["fold"], serde_json::json!({"k": 3, "of": 5}));
    // Resuming on another fold would mix two runs: refused, naming the field.
    let o = run(&["--resume", "--epochs", "2", "--fold", "4"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("fold"), "{err}");
}

/// Reproducible runs: the same seed trains the same weights, and a run stopped after one
/// epoch and resumed for a second ends where an uninterrupted two-epoch run does (the
/// batch order, augmentation, Adam state and BN statistics all carry over), to the bit.
#[test]
fn a_resumed_run_ends_bit_for_bit_where_an_uninterrupted_one_does() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (straight, split) = (dir.path().join("straight"), dir.path().join("split"));
    ok(&train(&straight, &["--epochs", "2"]));
    ok(&train(&split, &["--epochs", "1"]));
    ok(&train(&split, &["--resume", "--epochs", "2"]));
    let a = load_model(&straight.join("last.safetensors"), None).unwrap();
    let b = load_model(&split.join("last.safetensors"), None).unwrap();
    assert_eq!(a.epoch, 2);
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (x, y) in a.tensors.iter().zip(&b.tensors) {
        assert_eq!(x.name, y.name);
        assert!(
            x.data
                .iter()
                .zip(&y.data)
                .all(|(u, v)| u.to_bits() == v.to_bits()),
            "{} differs between the straight and the resumed run",
            x.name
        );
    }
    // The recorded losses agree too (times and throughput naturally differ).
    let (ha, hb) = (history(&straight), history(&split));
    for (ra, rb) in ha.iter().zip(&hb) {
        for key in ["train_loss", "val_loss", "val_dice", "train_dice"] {
            assert_eq!(ra[key], rb[key], "{key} of epoch {}", ra["epoch"]);
        }
    }
}

#[test]
fn a_second_writer_on_a_run_folder_is_refused_at_once_naming_the_holders_pid() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    std::fs::create_dir_all(&out).unwrap();
    // This test process holds the folder, as a running `train` would.
    let lock = rca_gpu::train::lock::RunLock::acquire(&out).unwrap();
    let o = train(&out, &["--epochs", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a second writer ran: {err}");
    assert!(
        err.contains("is in use") && err.contains(&format!("PID {}", std::process::id())),
        "{err}"
    );
    assert!(!out.join("config.json").exists(), "it wrote nothing");
    drop(lock);
    ok(&train(&out, &["--epochs", "1"]));
}

#[test]
fn a_killed_run_does_not_block_and_resuming_it_says_what_exists_and_what_to_do() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // Large enough that its first epoch takes far longer than this test's steps.
    let mut first = Command::new(BIN)
        .args(["train", "--size", "128", "--epochs", "50", "--out"])
        .arg(&out)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cannot run rca-gpu");
    let t0 = std::time::Instant::now();
    while !(out.join(".lock.pid").exists() && out.join("config.json").exists()) {
        assert!(
            t0.elapsed().as_secs() < 120,
            "the first run never took its folder"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A --resume with the first run's own settings reaches the lock, and is refused.
    let resume = || {
        Command::new(BIN)
            .args(["train", "--resume", "--out"])
            .arg(&out)
            .output()
            .expect("cannot run rca-gpu")
    };
    let o = resume();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains(&format!("PID {}", first.id())), "{err}");
    // kill -9 before the first checkpoint: the OS drops the lock.
    first.kill().unwrap();
    first.wait().unwrap();
    let o = resume();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(!err.contains("is in use"), "a stale lock blocked: {err}");
    assert!(
        err.contains("has no last.safetensors")
            && err.contains("config.json")
            && err.contains("without --resume"),
        "{err}"
    );
}

#[test]
fn an_unknown_variant_is_refused_listing_the_seven_and_help_names_no_internal_file() {
    let o = Command::new(BIN)
        .args(["train", "--variant", "resnet", "--out"])
        .arg(tempfile::tempdir().unwrap().path().join("r"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("unknown variant 'resnet'") && err.contains("unet+csa+ric, rca-iunet"),
        "{err}"
    );
    for cmd in ["train", "infer", "eval", "bench", "data", "selftest"] {
        let help = Command::new(BIN).args([cmd, "--help"]).output().unwrap();
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(
            !text.contains("MODEL.md"),
            "{cmd} --help names MODEL.md:\n{text}"
        );
    }
    // data --write-split draws the split train would: the same default seed.
    let help = Command::new(BIN).args(["data", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("[default: 42]"));
}
