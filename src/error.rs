//! The library's typed errors. Each one names what failed (the op, the file, the shapes),
//! so that the binary can print a single clear line and exit non-zero.

use crate::tensor::Shape;

/// Everything the engine can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable GPU adapter: says what was tried and how to get a driver.
    #[error("no GPU adapter found ({tried}). {hint}")]
    NoAdapter { tried: String, hint: String },

    /// The adapter exists but lacks something the engine needs.
    #[error("adapter '{adapter}' cannot run rca-gpu: {reason}")]
    Unsupported { adapter: String, reason: String },

    /// The device could not be created on the chosen adapter.
    #[error("could not open a device on '{adapter}': {source}")]
    RequestDevice {
        adapter: String,
        #[source]
        source: wgpu::RequestDeviceError,
    },

    /// Two operands of an op do not fit together.
    #[error("shape mismatch in {op}: lhs {lhs}, rhs {rhs}")]
    Shape {
        op: &'static str,
        lhs: Shape,
        rhs: Shape,
    },

    /// One operand has a shape the op does not accept.
    #[error("bad shape in {op}: {shape} ({expected})")]
    BadShape {
        op: &'static str,
        shape: Shape,
        expected: String,
    },

    /// Host data does not match the shape it was said to have.
    #[error("{op}: {len} values given for shape {shape} ({expected} expected)")]
    DataLength {
        op: &'static str,
        shape: Shape,
        len: usize,
        expected: usize,
    },

    /// A tensor would exceed what the device can bind or allocate.
    #[error("{op}: {bytes} bytes exceed the device's limit of {limit} bytes per {what}")]
    TooLarge {
        op: &'static str,
        bytes: u64,
        limit: u64,
        what: &'static str,
    },

    /// Reading a buffer back from the device failed.
    #[error("reading back from the GPU failed: {0}")]
    ReadBack(String),

    /// Misuse of the autodiff tape (e.g. backward from a non-scalar).
    #[error("autodiff: {0}")]
    Autodiff(String),
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;
