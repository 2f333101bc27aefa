//! rca-gpu: RCA-IUnet breast-ultrasound segmentation on its own WGSL compute engine.
//!
//! The engine's layers, bottom up:
//! - [`runtime`]: adapter, device, pipeline cache, buffer pool, pending encoder;
//! - [`tensor`]: f32 NCHW tensors on the GPU;
//! - [`autodiff`]: the tape and `backward` (it knows no op: ops record their rules);
//! - [`ops`]: the primitive ops, each a WGSL kernel with its gradient rule and f64 reference;
//! - [`reference`](mod@reference): the f64 references by family, which the tests hold the kernels to, and
//!   the whole network in f64;
//! - [`nn`] and [`model`]: the network, written once over a backend trait that the GPU, the
//!   f64 reference and a counting backend implement.
//!
//! Beside the engine, on the CPU: [`data`] (loaders, preprocessing, splits, augmentation,
//! batching, phantoms) and [`metrics`] (post-processing and the paper's metrics).
//!
//! On top of both: [`train`] (the training loop, checkpoints) and [`infer`] (a checkpoint's
//! predictions at each image's original size, for `rca-gpu infer`, `eval` and `bench`), and
//! [`shipped`], the trained model built into the binary.

pub mod atomic;
pub mod autodiff;
pub mod cli;
pub mod data;
pub mod error;
pub mod infer;
pub mod metrics;
pub mod model;
pub mod nn;
pub mod ops;
pub mod reference;
pub mod runtime;
pub mod selftest;
pub mod shipped;
pub mod tensor;
pub mod train;

pub use autodiff::{Grads, Tape, no_grad};
pub use error::{Error, Result};
pub use runtime::{AdapterRequest, Gpu, KernelClass};
pub use tensor::{Shape, Tensor};
