//! Plain-Rust references of every kernel, forward and backward, in f64, and the whole
//! network on them ([`model`]).
//!
//! They are written for clarity, not speed: each is the textbook loop of the op. The
//! tests hold every WGSL entry point to one of these, and check every backward here
//! against central finite differences of the forward. Layouts are those of the kernels:
//! NCHW, row-major weights (Cout, Cin, kh, kw).
//!
//! Each reference lives in its op's module (`crate::ops::<op>::reference`), beside the
//! kernel's launcher and gradient rule; this module gathers them by family.

pub mod model;

pub use crate::ops::conv::reference as conv;
pub use crate::ops::conv1x1::reference::{
    conv1x1, conv1x1_backward, conv1x1_cat, conv1x1_cat_backward,
};
pub use crate::ops::elementwise::reference::{
    add, mul, mul_bcast, mul_bcast_backward, relu, relu_backward, scale, sigmoid, sigmoid_backward,
};
pub use crate::ops::loss::reference as loss;
pub use crate::ops::norm::reference as norm;
pub use crate::ops::optim::reference as optim;
pub use crate::ops::pool::reference as pool;
pub use crate::ops::reduce::reference::{sum_view, sum_view_backward};
pub use crate::ops::shape::reference::{concat_channels, concat_channels_backward};

/// The FFT family: the DFT and spectral pooling's references.
pub mod fft {
    pub use crate::ops::fft::reference::*;
    pub use crate::ops::spectral::reference::*;
}

/// Finite-difference gradient of a scalar function of `x` (central differences, step h).
pub fn finite_diff(x: &[f64], h: f64, mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = x[i];
            x[i] = orig + h;
            let up = f(&x);
            x[i] = orig - h;
            let down = f(&x);
            x[i] = orig;
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// Σ_i w_i · y_i: the scalar through which a backward is checked (dL/dy = w).
pub fn dot(w: &[f64], y: &[f64]) -> f64 {
    w.iter().zip(y).map(|(a, b)| a * b).sum()
}
