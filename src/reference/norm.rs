//! Batch normalisation over (N, H, W) per channel, forward and backward, in f64.
//!
//! x is (N, C, P) with P = H·W; γ, β and the running statistics are (C). Training mode
//! normalises with the batch mean and the biased batch variance and updates the running
//! statistics with that same biased variance (Keras; see `ops::norm`).

/// Per-channel (mean, biased variance) over (N, P).
pub fn batch_stats(x: &[f64], n: usize, c: usize, p: usize) -> (Vec<f64>, Vec<f64>) {
    let m = (n * p) as f64;
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for ch in 0..c {
        let plane = |i: usize| &x[(i * c + ch) * p..(i * c + ch + 1) * p];
        mean[ch] = (0..n).flat_map(plane).sum::<f64>() / m;
        var[ch] = (0..n)
            .flat_map(plane)
            .map(|v| (v - mean[ch]).powi(2))
            .sum::<f64>()
            / m;
    }
    (mean, var)
}

/// y = γ·(x − mean)/√(var + eps) + β with the given per-channel statistics.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_apply(
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    mean: &[f64],
    var: &[f64],
    n: usize,
    c: usize,
    p: usize,
    eps: f64,
) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for i in 0..n {
        for ch in 0..c {
            let invstd = 1.0 / (var[ch] + eps).sqrt();
            for q in 0..p {
                let k = (i * c + ch) * p + q;
                y[k] = gamma[ch] * (x[k] - mean[ch]) * invstd + beta[ch];
            }
        }
    }
    y
}

/// Training mode: (y, new running mean, new running variance), with
/// new = momentum·running + (1 − momentum)·batch.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train(
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    running_mean: &[f64],
    running_var: &[f64],
    n: usize,
    c: usize,
    p: usize,
    momentum: f64,
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mean, var) = batch_stats(x, n, c, p);
    let y = batch_norm_apply(x, gamma, beta, &mean, &var, n, c, p, eps);
    let blend = |old: &[f64], new: &[f64]| -> Vec<f64> {
        old.iter()
            .zip(new)
            .map(|(o, b)| momentum * o + (1.0 - momentum) * b)
            .collect()
    };
    (y, blend(running_mean, &mean), blend(running_var, &var))
}

/// Backward of [`batch_norm_train`]'s y: (dx, dγ, dβ).
/// dx = γ·invstd·(dy − (Σdy + x̂·Σ dy·x̂)/m), dγ = Σ dy·x̂, dβ = Σ dy.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_backward(
    x: &[f64],
    gamma: &[f64],
    dy: &[f64],
    n: usize,
    c: usize,
    p: usize,
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mean, var) = batch_stats(x, n, c, p);
    let m = (n * p) as f64;
    let mut dx = vec![0.0; x.len()];
    let mut dgamma = vec![0.0; c];
    let mut dbeta = vec![0.0; c];
    for ch in 0..c {
        let invstd = 1.0 / (var[ch] + eps).sqrt();
        let idx = |i: usize, q: usize| (i * c + ch) * p + q;
        for i in 0..n {
            for q in 0..p {
                let k = idx(i, q);
                dbeta[ch] += dy[k];
                dgamma[ch] += dy[k] * (x[k] - mean[ch]) * invstd;
            }
        }
        for i in 0..n {
            for q in 0..p {
                let k = idx(i, q);
                let xh = (x[k] - mean[ch]) * invstd;
                dx[k] = gamma[ch] * invstd * (dy[k] - (dbeta[ch] + xh * dgamma[ch]) / m);
            }
        }
    }
    (dx, dgamma, dbeta)
}

/// Eval mode: normalise with the running statistics.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_eval(
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    running_mean: &[f64],
    running_var: &[f64],
    n: usize,
    c: usize,
    p: usize,
    eps: f64,
) -> Vec<f64> {
    batch_norm_apply(x, gamma, beta, running_mean, running_var, n, c, p, eps)
}

/// Backward of [`batch_norm_eval`], the affine map's: (dx, dγ, dβ).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_eval_backward(
    x: &[f64],
    gamma: &[f64],
    running_mean: &[f64],
    running_var: &[f64],
    dy: &[f64],
    n: usize,
    c: usize,
    p: usize,
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0; x.len()];
    let mut dgamma = vec![0.0; c];
    let mut dbeta = vec![0.0; c];
    for i in 0..n {
        for ch in 0..c {
            let invstd = 1.0 / (running_var[ch] + eps).sqrt();
            for q in 0..p {
                let k = (i * c + ch) * p + q;
                dx[k] = gamma[ch] * invstd * dy[k];
                dgamma[ch] += dy[k] * (x[k] - running_mean[ch]) * invstd;
                dbeta[ch] += dy[k];
            }
        }
    }
    (dx, dgamma, dbeta)
}
