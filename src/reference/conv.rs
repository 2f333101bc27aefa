//! References of the k×k convolutions: depthwise ('same', stride 1, no bias) and dense
//! (stride, zero padding, bias). The 1×1 convolution is [`super::conv1x1`].

/// Depthwise convolution: x (N, C, H, W), k (C, 1, K, K), K odd, 'same' zero padding
/// (K/2 on every side), stride 1 → (N, C, H, W).
pub fn depthwise_conv2d(
    x: &[f64],
    k: &[f64],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    ks: usize,
) -> Vec<f64> {
    let half = (ks / 2) as isize;
    let mut y = vec![0.0; n * c * h * w];
    for nc in 0..n * c {
        let ch = nc % c;
        for i in 0..h {
            for j in 0..w {
                let mut acc = 0.0;
                for a in 0..ks {
                    for b in 0..ks {
                        let ii = i as isize + a as isize - half;
                        let jj = j as isize + b as isize - half;
                        if ii < 0 || jj < 0 || ii >= h as isize || jj >= w as isize {
                            continue;
                        }
                        acc +=
                            x[(nc * h + ii as usize) * w + jj as usize] * k[(ch * ks + a) * ks + b];
                    }
                }
                y[(nc * h + i) * w + j] = acc;
            }
        }
    }
    y
}

/// Backward of [`depthwise_conv2d`]: (dx, dk).
#[allow(clippy::too_many_arguments)]
pub fn depthwise_conv2d_backward(
    x: &[f64],
    k: &[f64],
    dy: &[f64],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    ks: usize,
) -> (Vec<f64>, Vec<f64>) {
    let half = (ks / 2) as isize;
    let mut dx = vec![0.0; x.len()];
    let mut dk = vec![0.0; k.len()];
    for nc in 0..n * c {
        let ch = nc % c;
        for i in 0..h {
            for j in 0..w {
                let g = dy[(nc * h + i) * w + j];
                for a in 0..ks {
                    for b in 0..ks {
                        let ii = i as isize + a as isize - half;
                        let jj = j as isize + b as isize - half;
                        if ii < 0 || jj < 0 || ii >= h as isize || jj >= w as isize {
                            continue;
                        }
                        let xi = (nc * h + ii as usize) * w + jj as usize;
                        let ki = (ch * ks + a) * ks + b;
                        dx[xi] += g * k[ki];
                        dk[ki] += g * x[xi];
                    }
                }
            }
        }
    }
    (dx, dk)
}

/// Sizes of a dense convolution.
#[derive(Clone, Copy, Debug)]
pub struct Conv2d {
    pub n: usize,
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Conv2d {
    /// Output rows and columns: (H + 2·pad − kh) / stride + 1.
    pub fn out_hw(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.pad - self.kh) / self.stride + 1,
            (self.w + 2 * self.pad - self.kw) / self.stride + 1,
        )
    }

    /// The input pixel under tap (a, b) of output (oi, oj), if not in the padding.
    fn src(&self, oi: usize, oj: usize, a: usize, b: usize) -> Option<(usize, usize)> {
        let ii = (oi * self.stride + a).checked_sub(self.pad)?;
        let jj = (oj * self.stride + b).checked_sub(self.pad)?;
        (ii < self.h && jj < self.w).then_some((ii, jj))
    }
}

/// Dense convolution: x (N, Cin, H, W), w (Cout, Cin, kh, kw), b (Cout) → (N, Cout, Ho, Wo).
pub fn conv2d(x: &[f64], wt: &[f64], bias: Option<&[f64]>, d: Conv2d) -> Vec<f64> {
    let (ho, wo) = d.out_hw();
    let mut y = vec![0.0; d.n * d.cout * ho * wo];
    for n in 0..d.n {
        for co in 0..d.cout {
            for oi in 0..ho {
                for oj in 0..wo {
                    let mut acc = bias.map_or(0.0, |b| b[co]);
                    for ci in 0..d.cin {
                        for a in 0..d.kh {
                            for b in 0..d.kw {
                                if let Some((ii, jj)) = d.src(oi, oj, a, b) {
                                    acc += wt[((co * d.cin + ci) * d.kh + a) * d.kw + b]
                                        * x[((n * d.cin + ci) * d.h + ii) * d.w + jj];
                                }
                            }
                        }
                    }
                    y[((n * d.cout + co) * ho + oi) * wo + oj] = acc;
                }
            }
        }
    }
    y
}

/// Backward of [`conv2d`]: (dx, dw, db).
pub fn conv2d_backward(
    x: &[f64],
    wt: &[f64],
    dy: &[f64],
    d: Conv2d,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (ho, wo) = d.out_hw();
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; wt.len()];
    let mut db = vec![0.0; d.cout];
    for n in 0..d.n {
        for co in 0..d.cout {
            for oi in 0..ho {
                for oj in 0..wo {
                    let g = dy[((n * d.cout + co) * ho + oi) * wo + oj];
                    db[co] += g;
                    for ci in 0..d.cin {
                        for a in 0..d.kh {
                            for b in 0..d.kw {
                                if let Some((ii, jj)) = d.src(oi, oj, a, b) {
                                    let wi = ((co * d.cin + ci) * d.kh + a) * d.kw + b;
                                    let xi = ((n * d.cin + ci) * d.h + ii) * d.w + jj;
                                    dx[xi] += g * wt[wi];
                                    dw[wi] += g * x[xi];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw, db)
}
