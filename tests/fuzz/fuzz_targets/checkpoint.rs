//! A checkpoint as `infer --checkpoint`, `train --init` or `train --resume` reads it: any
//! bytes as a model file (metadata, tensors, checksum, history), then, as a resume does, the
//! optimizer file beside it and the loop state inside that. The first byte says which file the
//! rest is. Every step must load or give an error, never panic; a model that loads must map
//! onto the network it declares or say which tensor does not.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rca_gpu::model::Model;
use rca_gpu::train::checkpoint::{load_model_bytes, load_optimizer, values_for};
use rca_gpu::train::history::EpochRecord;
use rca_gpu::train::state::LoopState;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let dir = fuzz_common::scratch();
    let model_path = dir.join("last.safetensors");
    if which % 2 == 0 {
        let Ok(ck) = load_model_bytes(bytes, &model_path, None) else {
            return;
        };
        let model = Model::new(ck.config);
        if let Ok(values) = values_for(&model_path, &ck, &model.spec) {
            for (p, v) in model.spec.params().iter().zip(&values) {
                assert_eq!(p.shape.iter().product::<usize>(), v.len(), "{}", p.name);
            }
        }
        let _ = serde_json::from_value::<Vec<EpochRecord>>(ck.history.clone());
    } else {
        // The optimizer file must name its model file's SHA-256; take the one it names, so
        // that the checks after that one are reached.
        fuzz_common::write(dir, "last.optim.safetensors", bytes);
        let sha = fuzz_common::metadata(bytes, "model_sha256").unwrap_or_default();
        if let Ok(state) = load_optimizer(&model_path, &sha) {
            let _ = serde_json::from_str::<LoopState>(&state.rng);
        }
    }
});
