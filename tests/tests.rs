//! The integration tests, as one binary: each file in `tests/` is a module listed here, so
//! the suite links once instead of once per file, and the shared set-up (the one device,
//! seeds, tolerances, `check_op`, data-set builders) lives in `common`.
//!
//! Every test in this binary shares `common::gpu()`, its buffer pool, pipeline cache and
//! queue, with the tests running beside it; a test that asserts on what the whole device
//! did takes `common::own_gpu()` instead. `tests/adapter.rs` stays a binary of its own.
//! Run one module with `cargo test --test integration conv::`.

// Shared set-up: devices, seeds, tolerances, `check_op`, data-set folders.
mod common;

// The tape: recording, gradient accumulation, no-grad mode, freed activations.
mod autodiff;
// Checkpoints: bit-exact round trips, atomic writes, clear errors on a wrong file.
mod checkpoint;
// `rca-gpu bench`: its report, JSON, GPU times, chunking under a small binding limit.
mod cli_bench;
// `rca-gpu infer` and `eval` end to end on a tiny trained run, and their errors.
mod cli_infer;
// `rca-gpu train` end to end: run folder, resume, Ctrl-C, --data, bad input.
mod cli_train;
// `rca-gpu train` beyond the basics: --init, stored data folder, binding-limit check.
mod cli_train_more;
// Channel concatenation and its backward split.
mod concat;
// Depthwise and dense k×k convolutions against their references.
mod conv;
// The pointwise convolution (register-blocked matmul) against its reference.
mod conv1x1;
// Augmentation: geometric warps move image and mask together, reproducibly.
mod data_augment;
// BUS-BRA as downloaded, name-pattern pairing, patient-aware splits and folds.
mod data_busbra;
// DICOM input: each photometric interpretation and encoding, and what is refused.
mod data_dicom;
// Batching: shapes, epoch coverage, batches independent of thread timing.
mod data_batch;
// The `data` and `synth` commands as library calls.
mod data_cli;
// Loading the BUSI, BUSIS and pairs layouts, and which errors name which file.
mod data_loaders;
// Splits: fractions, seeds, duplicates on one side, stratification, split files.
mod data_split;
// The phantom generator: deterministic, exact masks, the BUSI layout on disk.
mod data_synth;
// Element-wise ops against their CPU references, forward and backward.
mod elementwise;
// The batched 2-D FFT against an f64 DFT, both forms of the passes.
mod fft;
// The `Predictor`: chunked batches, original sizes, splitting above the binding limit.
mod infer;
// The fused sigmoid + BCE-Dice loss against its reference and finite differences.
mod loss;
// Aggregation over a test set: means, deviations, rows and tables.
mod metrics_aggregate;
// `rca-gpu metrics`: pairing files, formats, thresholds, CSV, errors.
mod metrics_cli;
// Edge cases of the metrics and post-processing, each a stated convention.
mod metrics_edge_cases;
// Post-processing, distance transform and metrics against SciPy / scikit-image.
mod metrics_golden;
// Every variant runs forward and learns a step; BN momentum.
mod model_forward;
// Whole-model gradients against the CPU model and finite differences.
mod model_gradcheck;
// The whole stack learns to segment discs.
mod model_learning;
// Parameter counts of Table 3, and `rca-gpu summary`.
mod model_params;
// Batch norm, training and eval mode, against its reference.
mod norm;
// Adam against its f64 reference, and no recompiles on a new learning rate.
mod optim;
// The 2×2 max pools and ×2 upsampling against their references.
mod pool;
// Sums and means, whole-tensor and per channel.
mod reduce;
// The runtime: read-back, NaN poisoning, buffer pool, pipeline cache, GPU timer, adapters.
mod runtime;
// `rca-gpu selftest`: passes here in both kernel shapes, fails on a planted wrong kernel.
mod selftest;
// Spectral pooling and unpooling against the dense operator.
mod spectral_pool;
