//! The JSON a run folder holds, as `train --resume` and `eval` read it: `config.json` (parsed
//! and checked), `split.json` (parsed, then resolved against the run's phantoms: every name
//! must exist, none may be on two sides), the loop state and the metric history from the last
//! checkpoint. The first byte says which file the rest is. Each must load or give an error,
//! never panic; a resolved split's indices must be in range and disjoint.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rca_gpu::data::batch::SampleSource;
use rca_gpu::data::{PhantomSource, Split};
use rca_gpu::train::config::TrainConfig;
use rca_gpu::train::history::EpochRecord;
use rca_gpu::train::state::LoopState;
use std::collections::BTreeSet;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(bytes);
    match which % 4 {
        0 => {
            if let Ok(cfg) = TrainConfig::parse(&text) {
                assert!(cfg.model_config().is_ok() && cfg.pairing().is_ok());
            }
        }
        1 => {
            let path = fuzz_common::write(fuzz_common::scratch(), "split.json", bytes);
            let Ok(split) = Split::load(&path) else {
                return;
            };
            let source = PhantomSource {
                seed: 42,
                count: 40,
                size: 32,
            };
            if let Ok(idx) = split.resolve(&source, &path) {
                let mut seen = BTreeSet::new();
                for &i in idx.train.iter().chain(&idx.val).chain(&idx.test) {
                    assert!(i < source.len(), "index {i} of {}", source.len());
                    assert!(seen.insert(i), "image {i} on two sides");
                }
                assert!(seen.len() + idx.unlisted.len() <= source.len());
            }
        }
        2 => {
            let _ = serde_json::from_str::<LoopState>(&text);
        }
        _ => {
            let _ = serde_json::from_str::<Vec<EpochRecord>>(&text);
        }
    }
});
