//! Plain-Rust references of every kernel, forward and backward, in f64.
//!
//! They are written for clarity, not speed: each is the textbook loop of the op. The
//! tests hold every WGSL entry point to one of these, and check every backward here
//! against central finite differences of the forward. Layouts are those of the kernels:
//! NCHW, row-major weights (Cout, Cin, kh, kw).

pub mod conv;
pub mod fft;
pub mod loss;
pub mod model;
pub mod norm;
pub mod optim;
pub mod pool;

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

pub fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

pub fn mul(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x * y).collect()
}

pub fn scale(a: &[f64], s: f64) -> Vec<f64> {
    a.iter().map(|x| s * x).collect()
}

/// a (N, C, P) ⊙ b (N, 1, P).
pub fn mul_bcast(a: &[f64], b: &[f64], n: usize, c: usize, p: usize) -> Vec<f64> {
    let mut y = vec![0.0; n * c * p];
    for i in 0..n {
        for ch in 0..c {
            for q in 0..p {
                y[(i * c + ch) * p + q] = a[(i * c + ch) * p + q] * b[i * p + q];
            }
        }
    }
    y
}

/// Backward of [`mul_bcast`]: (da, db).
pub fn mul_bcast_backward(
    a: &[f64],
    b: &[f64],
    dy: &[f64],
    n: usize,
    c: usize,
    p: usize,
) -> (Vec<f64>, Vec<f64>) {
    let da = mul_bcast(dy, b, n, c, p);
    let mut db = vec![0.0; n * p];
    for i in 0..n {
        for ch in 0..c {
            for q in 0..p {
                db[i * p + q] += dy[(i * c + ch) * p + q] * a[(i * c + ch) * p + q];
            }
        }
    }
    (da, db)
}

pub fn relu(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| v.max(0.0)).collect()
}

pub fn relu_backward(x: &[f64], dy: &[f64]) -> Vec<f64> {
    x.iter()
        .zip(dy)
        .map(|(&v, &g)| if v > 0.0 { g } else { 0.0 })
        .collect()
}

pub fn sigmoid(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect()
}

/// Backward of [`sigmoid`] from its output y.
pub fn sigmoid_backward(y: &[f64], dy: &[f64]) -> Vec<f64> {
    y.iter().zip(dy).map(|(&s, &g)| g * s * (1.0 - s)).collect()
}

/// s · Σ per channel of the (outer, C, inner) view: a (C) vector.
pub fn sum_view(x: &[f64], outer: usize, c: usize, inner: usize, s: f64) -> Vec<f64> {
    let mut y = vec![0.0; c];
    for o in 0..outer {
        for (ch, yc) in y.iter_mut().enumerate() {
            for q in 0..inner {
                *yc += x[(o * c + ch) * inner + q];
            }
        }
    }
    y.iter().map(|v| s * v).collect()
}

/// Backward of [`sum_view`]: dx[o, c, q] = s · dy[c].
pub fn sum_view_backward(dy: &[f64], outer: usize, c: usize, inner: usize, s: f64) -> Vec<f64> {
    let mut dx = vec![0.0; outer * c * inner];
    for o in 0..outer {
        for ch in 0..c {
            for q in 0..inner {
                dx[(o * c + ch) * inner + q] = s * dy[ch];
            }
        }
    }
    dx
}

/// Concatenate (N, C_i, P) blocks along C.
pub fn concat_channels(xs: &[&[f64]], channels: &[usize], n: usize, p: usize) -> Vec<f64> {
    let total: usize = channels.iter().sum();
    let mut y = vec![0.0; n * total * p];
    let mut off = 0;
    for (x, &c) in xs.iter().zip(channels) {
        for i in 0..n {
            for ch in 0..c {
                for q in 0..p {
                    y[(i * total + off + ch) * p + q] = x[(i * c + ch) * p + q];
                }
            }
        }
        off += c;
    }
    y
}

/// Backward of [`concat_channels`]: the channel slices of dy.
pub fn concat_channels_backward(
    dy: &[f64],
    channels: &[usize],
    n: usize,
    p: usize,
) -> Vec<Vec<f64>> {
    let total: usize = channels.iter().sum();
    let mut off = 0;
    let mut out = Vec::new();
    for &c in channels {
        let mut dx = vec![0.0; n * c * p];
        for i in 0..n {
            for ch in 0..c {
                for q in 0..p {
                    dx[(i * c + ch) * p + q] = dy[(i * total + off + ch) * p + q];
                }
            }
        }
        off += c;
        out.push(dx);
    }
    out
}

/// 1×1 convolution: x (N, Cin, P), w (Cout, Cin), b (Cout) → (N, Cout, P).
pub fn conv1x1(
    x: &[f64],
    w: &[f64],
    b: Option<&[f64]>,
    n: usize,
    cin: usize,
    cout: usize,
    p: usize,
) -> Vec<f64> {
    let mut y = vec![0.0; n * cout * p];
    for i in 0..n {
        for co in 0..cout {
            for q in 0..p {
                let mut acc = b.map_or(0.0, |b| b[co]);
                for ci in 0..cin {
                    acc += w[co * cin + ci] * x[(i * cin + ci) * p + q];
                }
                y[(i * cout + co) * p + q] = acc;
            }
        }
    }
    y
}

/// Backward of [`conv1x1`]: (dx, dw, db).
pub fn conv1x1_backward(
    x: &[f64],
    w: &[f64],
    dy: &[f64],
    n: usize,
    cin: usize,
    cout: usize,
    p: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0; n * cin * p];
    let mut dw = vec![0.0; cout * cin];
    let mut db = vec![0.0; cout];
    for i in 0..n {
        for co in 0..cout {
            for q in 0..p {
                let g = dy[(i * cout + co) * p + q];
                db[co] += g;
                for ci in 0..cin {
                    dx[(i * cin + ci) * p + q] += w[co * cin + ci] * g;
                    dw[co * cin + ci] += g * x[(i * cin + ci) * p + q];
                }
            }
        }
    }
    (dx, dw, db)
}
