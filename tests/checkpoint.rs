//! Checkpoints: a round trip is bit-exact, files are written atomically, and a checkpoint
//! of another variant or size, a corrupted one, or a stranger's file gives a clear error.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rca_gpu::model::{Model, ModelConfig, Variant};
use rca_gpu::train::checkpoint::{
    CheckpointError, NamedTensor, OptimizerState, load_model, load_optimizer, optimizer_path,
    save_model, save_optimizer,
};

fn config() -> ModelConfig {
    ModelConfig::new(Variant::RcaIunet, 4, 32).unwrap()
}

/// Every parameter of a narrow model, filled with random values — including a NaN, an
/// infinity, a negative zero and a subnormal, which a bit-exact format must keep.
fn tensors(seed: u64) -> Vec<NamedTensor> {
    let mut rng = StdRng::seed_from_u64(seed);
    let model = Model::new(config());
    let mut out: Vec<NamedTensor> = model
        .spec
        .params()
        .iter()
        .map(|p| NamedTensor {
            name: p.name.clone(),
            shape: p.shape.clone(),
            data: (0..p.numel())
                .map(|_| rng.random_range(-2.0..2.0))
                .collect(),
        })
        .collect();
    out[0].data[..4].copy_from_slice(&[f32::NAN, f32::INFINITY, -0.0, 1e-40]);
    out
}

fn save(path: &Path, ts: &[NamedTensor]) -> String {
    let history = serde_json::json!([{"epoch": 1, "val_dice": 0.5}]);
    save_model(path, &config(), 3, &history, ts).unwrap()
}

#[test]
fn model_round_trip_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("best.safetensors");
    let ts = tensors(1);
    save(&path, &ts);
    let ck = load_model(&path, Some(&config())).unwrap();
    assert_eq!(ck.config, config());
    assert_eq!(ck.epoch, 3);
    assert_eq!(ck.history[0]["val_dice"], 0.5);
    assert_eq!(ck.tensors.len(), ts.len());
    for t in &ts {
        let back = ck.get(&t.name).unwrap();
        assert_eq!(back.shape, t.shape, "{}", t.name);
        let a: Vec<u32> = t.data.iter().map(|v| v.to_bits()).collect();
        let b: Vec<u32> = back.data.iter().map(|v| v.to_bits()).collect();
        assert_eq!(a, b, "{} is not bit-exact", t.name);
    }
}

#[test]
fn optimizer_round_trip_is_exact_and_tied_to_its_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("last.safetensors");
    let sha = save(&path, &tensors(2));
    let state = OptimizerState {
        step: 1234,
        lr: 0.000_312_5,
        rng: "epoch=7;seed=42".into(),
        m: tensors(3),
        v: tensors(4),
    };
    save_optimizer(&path, &sha, &state).unwrap();
    assert!(optimizer_path(&path).ends_with("last.optim.safetensors"));
    let back = load_optimizer(&path, &sha).unwrap();
    assert_eq!(back.step, state.step);
    assert_eq!(back.lr.to_bits(), state.lr.to_bits());
    assert_eq!(back.rng, state.rng);
    assert_eq!(back.m.len(), state.m.len());
    // Stored (and returned) in name order: match by name.
    for (back, orig) in [(&back.m, &state.m), (&back.v, &state.v)] {
        for b in orig.iter() {
            let a = back.iter().find(|a| a.name == b.name).unwrap();
            assert_eq!(a.shape, b.shape);
            assert!(
                a.data
                    .iter()
                    .zip(&b.data)
                    .all(|(x, y)| x.to_bits() == y.to_bits())
            );
        }
    }
    let e = load_optimizer(&path, "0000").unwrap_err().to_string();
    assert!(
        e.contains("last.optim.safetensors") && e.contains("model file"),
        "{e}"
    );
}

#[test]
fn writing_leaves_no_temporary_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    save(&path, &tensors(5));
    save(&path, &tensors(6)); // overwrite in place
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["ck.safetensors"]);
}

#[test]
fn another_variant_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    save(&path, &tensors(7));
    let want = ModelConfig::new(Variant::Unet, 4, 32).unwrap();
    let e = load_model(&path, Some(&want)).unwrap_err();
    assert!(matches!(e, CheckpointError::Mismatch { .. }));
    let e = e.to_string();
    assert!(
        e.contains("ck.safetensors") && e.contains("rca-iunet") && e.contains("unet"),
        "{e}"
    );
}

#[test]
fn another_input_size_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    save(&path, &tensors(8));
    let want = ModelConfig::new(Variant::RcaIunet, 4, 64).unwrap();
    let e = load_model(&path, Some(&want)).unwrap_err().to_string();
    assert!(e.contains("input size 32") && e.contains("64"), "{e}");
}

#[test]
fn a_flipped_byte_in_the_data_is_caught_by_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    save(&path, &tensors(9));
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let e = load_model(&path, None).unwrap_err();
    assert!(matches!(e, CheckpointError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("SHA-256"), "{e}");
}

#[test]
fn a_truncated_file_is_reported_as_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    save(&path, &tensors(10));
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_model(&path, None).unwrap_err().to_string();
    assert!(
        e.contains("ck.safetensors") && e.contains("corrupted"),
        "{e}"
    );
}

#[test]
fn a_file_that_is_not_a_checkpoint_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.safetensors");
    std::fs::write(&path, b"hello").unwrap();
    let e = load_model(&path, None).unwrap_err().to_string();
    assert!(
        e.contains("notes.safetensors") && e.contains("not an rca-gpu checkpoint"),
        "{e}"
    );
    let e = load_model(&dir.path().join("missing.safetensors"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.safetensors"), "{e}");
}

#[test]
fn a_plain_safetensors_file_without_our_metadata_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.safetensors");
    let data = vec![0u8; 16];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &data).unwrap();
    safetensors::serialize_to_file([("w", view)], None, &path).unwrap();
    let e = load_model(&path, None).unwrap_err().to_string();
    assert!(e.contains("without rca-gpu metadata"), "{e}");
}

#[test]
fn gpu_parameters_survive_a_save_and_load_bit_exactly() {
    let Ok(gpu) = rca_gpu::Gpu::new(&rca_gpu::AdapterRequest::from_env()) else {
        assert!(std::env::var("CI").is_err(), "CI=true and no GPU adapter");
        return;
    };
    use rca_gpu::train::checkpoint::{named_tensors, values_for};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpu.safetensors");
    let model = Model::new(config());
    let params = model.spec.init(&gpu, 11).unwrap();
    let saved = named_tensors(&params).unwrap();
    save_model(&path, &config(), 0, &serde_json::Value::Null, &saved).unwrap();
    let ck = load_model(&path, Some(&config())).unwrap();
    let values = values_for(&path, &ck, &model.spec).unwrap();
    let loaded = model.spec.load(&gpu, &values).unwrap();
    for ((info, a), (_, b)) in params.iter().zip(loaded.iter()) {
        let (a, b) = (a.to_vec().unwrap(), b.to_vec().unwrap());
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{}",
            info.name
        );
    }
    // A checkpoint of a narrower model is refused by name.
    let other = Model::new(ModelConfig::new(Variant::RcaIunet, 2, 32).unwrap());
    let e = values_for(&path, &ck, &other.spec).unwrap_err().to_string();
    assert!(e.contains("gpu.safetensors") && e.contains("shape"), "{e}");
}

#[test]
fn the_shipped_model_is_built_in_checked_and_the_same_as_its_file() {
    let ck = rca_gpu::shipped::load().unwrap();
    let want = ModelConfig::new(Variant::RcaIunet, 4, 64).unwrap();
    assert_eq!(ck.config, want);
    let n: usize = ck.tensors.iter().map(|t| t.data.len()).sum();
    // The parameters and the BN running statistics (two per BN channel).
    assert_eq!(
        n,
        Model::new(want)
            .spec
            .params()
            .iter()
            .map(|p| p.numel())
            .sum::<usize>()
    );
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(rca_gpu::shipped::FILE);
    let on_disk = load_model(&file, Some(&want)).unwrap();
    assert_eq!(on_disk.sha256, ck.sha256);
    // A damaged copy in memory is caught like a damaged file.
    let mut bytes = rca_gpu::shipped::BYTES.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    let err = rca_gpu::train::checkpoint::load_model_bytes(&bytes, &file, None).unwrap_err();
    assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err}");
}
