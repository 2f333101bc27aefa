//! The data module: everything between image files on disk and `Vec<f32>`
//! batches ready for the GPU.
//!
//! - [`image_io`]: decode PNG/BMP/JPEG/TIFF (grey, RGB, RGBA, 8/16-bit) to grey
//!   `[0, 1]`; binarise masks.
//! - [`dicom`]: single-frame DICOM (MONOCHROME, RGB, YBR; uncompressed, RLE, JPEG).
//! - [`preprocess`]: resize to S×S (area when shrinking, bilinear when
//!   enlarging; masks nearest or area-then-threshold), and back for inference.
//! - [`layout`]: the BUSI, BUSIS, BUS-BRA and pairs folder layouts, their
//!   detection, and pairing by name pattern.
//! - [`busbra`]: BUS-BRA's per-image table and the authors' fold files.
//! - [`dataset`]: load a data set, with a [`DatasetReport`] of what was found.
//! - [`hash`]: perceptual hashes and duplicate groups.
//! - [`split`]: seeded, stratified, duplicate-aware train/val/test splits as JSON.
//! - [`augment`](mod@augment): seeded training augmentation, geometry shared by image and mask.
//! - [`batch`]: epoch batches built on a background thread with bounded memory.
//! - [`synth`]: breast-ultrasound phantoms with exact masks (the built-in data).
//! - [`rng`]: the deterministic generator all of the above use.
//!
//! Training path: `load_dataset` → `Dataset::split` (or `Split::load` +
//! `Split::resolve`) → `epoch_batches`. Inference path: `load_image_gray` →
//! `preprocess_image` → network → `resize_probability`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use rca_gpu::data::*;
//! # fn main() -> Result<(), DataError> {
//! // Training: load, report, split (saved for evaluation), batch per epoch.
//! let ds = Arc::new(load_dataset("Dataset_BUSI_with_GT".as_ref(), &LoadOptions::default())?);
//! println!("{}", ds.report);
//! ds.report.save("run/data_report.json".as_ref())?;
//! let split = ds.split(&SplitConfig { seed: 42, ..Default::default() })?;
//! split.save("run/split.json".as_ref())?;
//! let idx = split.resolve(ds.as_ref(), "run/split.json".as_ref())?;
//! let cfg = BatchConfig { batch_size: 8, seed: 42, ..Default::default() };
//! for epoch in 0..2 {
//!     for batch in epoch_batches(ds.clone(), &idx.train, &cfg, epoch) {
//!         // upload batch.images and batch.masks (batch.n × 1 × S × S) to the GPU
//!         # let _ = batch;
//!     }
//! }
//! // Inference on one file.
//! let img = load_image_gray("scan.png".as_ref())?;
//! let input = preprocess_image(&img, 256);
//! # let prob = input.clone();
//! let full_size = resize_probability(&prob, 256, 256, img.w, img.h);
//! # let _ = full_size;
//! # Ok(()) }
//! ```

pub mod augment;
pub mod batch;
pub mod busbra;
mod csv;
pub mod dataset;
pub mod dicom;
mod error;
pub mod hash;
pub mod image_io;
pub mod layout;
pub mod preprocess;
pub mod rng;
pub mod split;
pub mod synth;

pub use augment::{AugmentConfig, augment};
pub use batch::{
    Batch, BatchConfig, BatchIter, KeptPhantoms, PhantomSource, SampleSource, epoch_batches,
    make_batch,
};
pub use dataset::{
    ClassCount, Dataset, DatasetReport, LoadOptions, PatientCount, Sample, load_dataset,
    load_dataset_with_progress, load_pair,
};
pub use error::DataError;
pub use hash::{DuplicateRule, Fingerprint, fingerprint, phash};
pub use image_io::{GrayF32, load_image_gray, load_mask};
pub use layout::{Class, Format, NamePattern, Pairing, Skipped, detect_format};
pub use preprocess::{
    MaskResize, preprocess_image, preprocess_mask, resize_mask, resize_probability,
};
pub use split::{Split, SplitConfig, SplitIndices, make_split};
pub use synth::{Phantom, generate_phantom, write_phantoms};
