//! f64 references of the FFT family: the 2-D DFT by O(M²) sums per line, the spectral
//! crop/merge and pad/split, and spectral pooling twice over — literally (DFT, crop,
//! inverse DFT, real part) and as the dense real operator y = A·x·Aᵀ.
//!
//! Complex data is interleaved (re, im) as in the kernels: a set of planes is
//! (planes, M, M, 2) flattened.

use std::f64::consts::{FRAC_1_SQRT_2, PI, SQRT_2};

/// One 2-D DFT per plane: X[k, l] = scale · Σ_{a,b} x[a, b]·e^{sign·2πi(ka + lb)/M},
/// computed as a DFT of every row then of every column (each an O(M²) sum).
pub fn dft2(x: &[f64], planes: usize, m: usize, sign: f64, scale: f64) -> Vec<f64> {
    assert_eq!(x.len(), planes * m * m * 2);
    // e^{sign·2πi·j/M} for j = k·n mod M: exact angles, no accumulated rounding.
    let w: Vec<(f64, f64)> = (0..m)
        .map(|j| {
            let a = sign * 2.0 * PI * j as f64 / m as f64;
            (a.cos(), a.sin())
        })
        .collect();
    let mut data = x.to_vec();
    let mut line = vec![(0.0, 0.0); m];
    // Rows (points 1 apart, lines m apart) then columns (points m apart, lines 1 apart).
    for (es, ls) in [(1, m), (m, 1)] {
        for p in 0..planes {
            for l in 0..m {
                let at = |i: usize| 2 * (p * m * m + l * ls + i * es);
                for (k, out) in line.iter_mut().enumerate() {
                    let (mut re, mut im) = (0.0, 0.0);
                    for i in 0..m {
                        let (c, s) = w[(k * i) % m];
                        let (xr, xi) = (data[at(i)], data[at(i) + 1]);
                        re += xr * c - xi * s;
                        im += xr * s + xi * c;
                    }
                    *out = (re, im);
                }
                for (i, &(re, im)) in line.iter().enumerate() {
                    data[at(i)] = re;
                    data[at(i) + 1] = im;
                }
            }
        }
    }
    data.iter_mut().for_each(|v| *v *= scale);
    data
}

/// The forward 2-D DFT (unnormalised) of complex planes.
pub fn fft2(x: &[f64], planes: usize, m: usize) -> Vec<f64> {
    dft2(x, planes, m, -1.0, 1.0)
}

/// The inverse 2-D DFT, normalised by 1/M².
pub fn ifft2(x: &[f64], planes: usize, m: usize) -> Vec<f64> {
    dft2(x, planes, m, 1.0, 1.0 / (m * m) as f64)
}

/// Backward of [`fft2`] (or [`ifft2`] when `inverse`): the conjugate transpose, i.e. the
/// transform of the other sign with the same scale.
pub fn fft2_backward(dy: &[f64], planes: usize, m: usize, inverse: bool) -> Vec<f64> {
    if inverse {
        dft2(dy, planes, m, -1.0, 1.0 / (m * m) as f64)
    } else {
        dft2(dy, planes, m, 1.0, 1.0)
    }
}

/// The M-point bins that output bin a (of h) takes, with their weights: a itself below
/// h/2, a + M − h above, and the Nyquist pair h/2, M − h/2 with √½ each (one bin, √2,
/// when h = M).
pub fn crop_sources(a: usize, m: usize, h: usize) -> Vec<(usize, f64)> {
    let hh = h / 2;
    if a < hh {
        vec![(a, 1.0)]
    } else if a > hh {
        vec![(a + m - h, 1.0)]
    } else if h == m {
        vec![(a, SQRT_2)]
    } else {
        vec![(hh, FRAC_1_SQRT_2), (m - hh, FRAC_1_SQRT_2)]
    }
}

/// The crop/merge of complex planes (planes, M, M, 2) → (planes, h, h, 2), times `scale`:
/// Z[a, b] = scale · Σ_{(i,u) ∈ S(a)} Σ_{(j,v) ∈ S(b)} u·v·X[i, j].
pub fn spectral_crop(x: &[f64], planes: usize, m: usize, h: usize, scale: f64) -> Vec<f64> {
    let mut z = vec![0.0; planes * h * h * 2];
    for p in 0..planes {
        for a in 0..h {
            for b in 0..h {
                let o = 2 * ((p * h + a) * h + b);
                for (i, u) in crop_sources(a, m, h) {
                    for (j, v) in crop_sources(b, m, h) {
                        let s = 2 * ((p * m + i) * m + j);
                        z[o] += scale * u * v * x[s];
                        z[o + 1] += scale * u * v * x[s + 1];
                    }
                }
            }
        }
    }
    z
}

/// The transpose of [`spectral_crop`] (the pad/split), (planes, h, h, 2) → (planes, M,
/// M, 2): every output bin's value goes back to its sources with the same weights.
pub fn spectral_pad(z: &[f64], planes: usize, m: usize, h: usize, scale: f64) -> Vec<f64> {
    let mut x = vec![0.0; planes * m * m * 2];
    for p in 0..planes {
        for a in 0..h {
            for b in 0..h {
                let o = 2 * ((p * h + a) * h + b);
                for (i, u) in crop_sources(a, m, h) {
                    for (j, v) in crop_sources(b, m, h) {
                        let s = 2 * ((p * m + i) * m + j);
                        x[s] += scale * u * v * z[o];
                        x[s + 1] += scale * u * v * z[o + 1];
                    }
                }
            }
        }
    }
    x
}

/// Spectral pooling by its definition (MODEL.md): X = DFT(x), crop/merge to h×h, inverse
/// DFT of size h×h normalised by 1/(h·h), real part. x is (planes, M, M) real.
pub fn spectral_pool_by_dft(x: &[f64], planes: usize, m: usize, h: usize) -> Vec<f64> {
    let xc: Vec<f64> = x.iter().flat_map(|&v| [v, 0.0]).collect();
    let z = spectral_crop(&fft2(&xc, planes, m), planes, m, h, 1.0);
    ifft2(&z, planes, h).chunks(2).map(|c| c[0]).collect()
}

/// The real h×M matrix A of spectral pooling along one axis (row-major), y = A·x·Aᵀ.
///
/// A = (1/h)·Fₕᴴ·S·F_M where S is the crop/merge. Pairing bin k′ < h/2 with its mirror
/// h − k′ (bins k′ and k′ + M − h of the M-point spectrum, i.e. frequencies ±f) turns the
/// exponentials into cosines, and the Nyquist bin contributes (−1)^n·√½·2·cos(πhm/M):
///   A[n, m] = (1/h)·[ Σ_{f=−h/2+1}^{h/2−1} cos(2πf·(n/h − m/M)) + √2·(−1)^n·cos(π·h·m/M) ].
/// For h = M this is A[n, m] = δ_{nm} + (√2 − 1)·(−1)^{n+m}/M.
pub fn spectral_matrix(m: usize, h: usize) -> Vec<f64> {
    let half = (h / 2) as i64;
    let mut a = vec![0.0; h * m];
    for n in 0..h {
        for c in 0..m {
            let t = n as f64 / h as f64 - c as f64 / m as f64;
            let mut v: f64 = (-half + 1..half)
                .map(|f| (2.0 * PI * f as f64 * t).cos())
                .sum();
            let sign = if n % 2 == 0 { 1.0 } else { -1.0 };
            v += SQRT_2 * sign * (PI * h as f64 * c as f64 / m as f64).cos();
            a[n * m + c] = v / h as f64;
        }
    }
    a
}

/// y[p] = A·x[p]·Bᵀ for each plane, A (ra × ca), x (ca × cb), B (rb × cb).
fn sandwich(
    x: &[f64],
    planes: usize,
    a: &[f64],
    (ra, ca): (usize, usize),
    b: &[f64],
    (rb, cb): (usize, usize),
) -> Vec<f64> {
    let mut y = vec![0.0; planes * ra * rb];
    let mut t = vec![0.0; ra * cb];
    for p in 0..planes {
        let xp = &x[p * ca * cb..(p + 1) * ca * cb];
        // t = A·x
        t.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..ra {
            for k in 0..ca {
                let aik = a[i * ca + k];
                for j in 0..cb {
                    t[i * cb + j] += aik * xp[k * cb + j];
                }
            }
        }
        // y = t·Bᵀ
        for i in 0..ra {
            for j in 0..rb {
                y[(p * ra + i) * rb + j] = (0..cb).map(|k| t[i * cb + k] * b[j * cb + k]).sum();
            }
        }
    }
    y
}

/// Spectral pooling as the dense real operator: y = A·x·Aᵀ per plane (planes, M, M) →
/// (planes, h, h), A = [`spectral_matrix`].
pub fn spectral_pool(x: &[f64], planes: usize, m: usize, h: usize) -> Vec<f64> {
    let a = spectral_matrix(m, h);
    sandwich(x, planes, &a, (h, m), &a, (h, m))
}

/// Backward of [`spectral_pool`]: dx = Aᵀ·dy·A per plane.
pub fn spectral_pool_backward(dy: &[f64], planes: usize, m: usize, h: usize) -> Vec<f64> {
    let a = spectral_matrix(m, h);
    let mut at = vec![0.0; m * h];
    for n in 0..h {
        for c in 0..m {
            at[c * h + n] = a[n * m + c];
        }
    }
    sandwich(dy, planes, &at, (m, h), &at, (m, h))
}

/// The closed form of spectral pooling at h = M, written without A: the merge only
/// scales the Nyquist row and column of the spectrum by √2, so with v[n] = (−1)^n and
/// c = (√2 − 1)/M (A = I + c·v·vᵀ):
///   y = x + c·v·(vᵀx) + c·(x v)·vᵀ + c²·(vᵀ x v)·v·vᵀ,
/// i.e. y[i, j] = x[i, j] + c·(−1)^i·r[j] + c·(−1)^j·s[i] + c²·(−1)^{i+j}·t with
/// r[j] = Σ_k (−1)^k x[k, j], s[i] = Σ_k (−1)^k x[i, k], t = Σ_{k,l} (−1)^{k+l} x[k, l].
pub fn spectral_pool_full_size(x: &[f64], planes: usize, m: usize) -> Vec<f64> {
    let c = (SQRT_2 - 1.0) / m as f64;
    let sgn = |k: usize| if k.is_multiple_of(2) { 1.0 } else { -1.0 };
    let mut y = vec![0.0; x.len()];
    for p in 0..planes {
        let xp = &x[p * m * m..(p + 1) * m * m];
        let r: Vec<f64> = (0..m)
            .map(|j| (0..m).map(|k| sgn(k) * xp[k * m + j]).sum())
            .collect();
        let s: Vec<f64> = (0..m)
            .map(|i| (0..m).map(|k| sgn(k) * xp[i * m + k]).sum())
            .collect();
        let t: f64 = (0..m).map(|k| sgn(k) * s[k]).sum();
        for i in 0..m {
            for j in 0..m {
                y[(p * m + i) * m + j] = xp[i * m + j]
                    + c * sgn(i) * r[j]
                    + c * sgn(j) * s[i]
                    + c * c * sgn(i) * sgn(j) * t;
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize) -> Vec<f64> {
        // A fixed LCG: these are properties of exact formulas, any data will do.
        let mut s = 12345u64;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .collect()
    }

    fn max_diff(a: &[f64], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn dense_operator_equals_the_definition_by_dft() {
        for (m, h) in [(4, 2), (8, 4), (16, 8), (16, 4), (8, 8), (16, 16)] {
            let x = pseudo_random(3 * m * m);
            let d = max_diff(
                &spectral_pool(&x, 3, m, h),
                &spectral_pool_by_dft(&x, 3, m, h),
            );
            assert!(d < 1e-12, "M {m} h {h}: {d}");
        }
    }

    #[test]
    fn full_size_closed_form_equals_the_dense_operator() {
        for m in [4, 8, 16] {
            let x = pseudo_random(2 * m * m);
            let d = max_diff(
                &spectral_pool_full_size(&x, 2, m),
                &spectral_pool(&x, 2, m, m),
            );
            assert!(d < 1e-12, "M {m}: {d}");
        }
    }

    #[test]
    fn inverse_dft_undoes_the_forward() {
        let x = pseudo_random(2 * 8 * 8 * 2);
        let d = max_diff(&ifft2(&fft2(&x, 2, 8), 2, 8), &x);
        assert!(d < 1e-12, "{d}");
    }

    #[test]
    fn pad_is_the_transpose_of_crop() {
        // ⟨crop(x), z⟩ = ⟨x, pad(z)⟩ for random x, z.
        let (m, h) = (8, 4);
        let x = pseudo_random(m * m * 2);
        let z: Vec<f64> = pseudo_random(h * h * 2 + 7)[7..].to_vec();
        let lhs: f64 = spectral_crop(&x, 1, m, h, 1.0)
            .iter()
            .zip(&z)
            .map(|(a, b)| a * b)
            .sum();
        let rhs: f64 = x
            .iter()
            .zip(&spectral_pad(&z, 1, m, h, 1.0))
            .map(|(a, b)| a * b)
            .sum();
        assert!((lhs - rhs).abs() < 1e-12, "{lhs} vs {rhs}");
    }
}
