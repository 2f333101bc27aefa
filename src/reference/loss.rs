//! The fused sigmoid + ½·BCE + ½·Dice loss (MODEL.md "Loss", Eq. 4–9) and its gradient
//! w.r.t. the logits, in f64.
//!
//! z (logits) and y (mask) are (N, P). With p = sigmoid(z), S = Σ y·p, T = Σ y² + Σ p²
//! and ε = 1, the loss of sample n is L_n = ½·mean_i(softplus(z_i) − y_i·z_i) plus
//! ½·(1 − (2S + ε)/(T + ε)); the loss is mean_n L_n.

/// Dice smoothing.
pub const DICE_EPS: f64 = 1.0;

/// log(1 + e^z) without overflow for large |z|.
pub fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

/// 1/(1 + e^(−z)) without overflow for large |z|.
pub fn sigmoid(z: f64) -> f64 {
    let e = (-z.abs()).exp();
    if z >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

/// (S, T) of one sample.
fn dice_sums(z: &[f64], y: &[f64]) -> (f64, f64) {
    z.iter().zip(y).fold((0.0, 0.0), |(s, t), (&zi, &yi)| {
        let p = sigmoid(zi);
        (s + yi * p, t + yi * yi + p * p)
    })
}

/// The per-sample losses L_n (N).
pub fn bce_dice_per_sample(z: &[f64], y: &[f64], n: usize, p: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let (zs, ys) = (&z[i * p..(i + 1) * p], &y[i * p..(i + 1) * p]);
            let bce = zs
                .iter()
                .zip(ys)
                .map(|(&zi, &yi)| softplus(zi) - yi * zi)
                .sum::<f64>()
                / p as f64;
            let (s, t) = dice_sums(zs, ys);
            let dice = 1.0 - (2.0 * s + DICE_EPS) / (t + DICE_EPS);
            0.5 * bce + 0.5 * dice
        })
        .collect()
}

/// The batch-mean loss.
pub fn bce_dice(z: &[f64], y: &[f64], n: usize, p: usize) -> f64 {
    bce_dice_per_sample(z, y, n, p).iter().sum::<f64>() / n as f64
}

/// dLoss/dz scaled by the upstream gradient dy:
/// dz_i = dy/N·[(p_i − y_i)/(2P) + ½·dDice_i·p_i(1 − p_i)],
/// dDice_i = −2·[y_i(T + ε) − p_i(2S + ε)]/(T + ε)².
pub fn bce_dice_backward(z: &[f64], y: &[f64], n: usize, p: usize, dy: f64) -> Vec<f64> {
    let mut dz = vec![0.0; z.len()];
    for i in 0..n {
        let r = i * p..(i + 1) * p;
        let (s, t) = dice_sums(&z[r.clone()], &y[r.clone()]);
        let te = t + DICE_EPS;
        for k in r {
            let pk = sigmoid(z[k]);
            let ddice = -2.0 * (y[k] * te - pk * (2.0 * s + DICE_EPS)) / (te * te);
            dz[k] =
                dy / n as f64 * ((pk - y[k]) / (2.0 * p as f64) + 0.5 * ddice * pk * (1.0 - pk));
        }
    }
    dz
}
