//! References of the 2×2 max pools (stride 2 'valid', stride 1 Keras 'same') and of the
//! nearest ×2 upsampling. Planes are the (n, c) maps of an NCHW tensor: the functions
//! take the number of planes `nc` = N·C.

/// Row-major index within the plane of the first maximum of the 2×2 window at (r0, c0),
/// clipped at the right/bottom border.
fn window_argmax(x: &[f64], w: usize, h: usize, r0: usize, c0: usize) -> usize {
    let mut best = r0 * w + c0;
    for r in r0..(r0 + 2).min(h) {
        for c in c0..(c0 + 2).min(w) {
            if x[r * w + c] > x[best] {
                best = r * w + c;
            }
        }
    }
    best
}

/// 2×2 max pool, stride 2: (nc, H, W) → (nc, H/2, W/2), an odd last row/column dropped.
pub fn max_pool_valid(x: &[f64], nc: usize, h: usize, w: usize) -> Vec<f64> {
    let (ho, wo) = (h / 2, w / 2);
    let mut y = Vec::with_capacity(nc * ho * wo);
    for plane in x.chunks(h * w).take(nc) {
        for i in 0..ho {
            for j in 0..wo {
                y.push(plane[window_argmax(plane, w, h, 2 * i, 2 * j)]);
            }
        }
    }
    y
}

/// Backward of [`max_pool_valid`]: each dy goes to the first arg-max of its window.
pub fn max_pool_valid_backward(x: &[f64], dy: &[f64], nc: usize, h: usize, w: usize) -> Vec<f64> {
    let (ho, wo) = (h / 2, w / 2);
    let mut dx = vec![0.0; nc * h * w];
    for p in 0..nc {
        let plane = &x[p * h * w..(p + 1) * h * w];
        for i in 0..ho {
            for j in 0..wo {
                dx[p * h * w + window_argmax(plane, w, h, 2 * i, 2 * j)] +=
                    dy[(p * ho + i) * wo + j];
            }
        }
    }
    dx
}

/// 2×2 max pool, stride 1, Keras 'same': (nc, H, W) → (nc, H, W); the window at (i, j)
/// covers rows i..i+1 and columns j..j+1, clipped at the right/bottom border.
pub fn max_pool_same(x: &[f64], nc: usize, h: usize, w: usize) -> Vec<f64> {
    let mut y = Vec::with_capacity(nc * h * w);
    for plane in x.chunks(h * w).take(nc) {
        for i in 0..h {
            for j in 0..w {
                y.push(plane[window_argmax(plane, w, h, i, j)]);
            }
        }
    }
    y
}

/// Backward of [`max_pool_same`]: each dy goes to the first arg-max of its window, and
/// a pixel that is the arg-max of several windows receives the sum.
pub fn max_pool_same_backward(x: &[f64], dy: &[f64], nc: usize, h: usize, w: usize) -> Vec<f64> {
    let mut dx = vec![0.0; nc * h * w];
    for p in 0..nc {
        let plane = &x[p * h * w..(p + 1) * h * w];
        for i in 0..h {
            for j in 0..w {
                dx[p * h * w + window_argmax(plane, w, h, i, j)] += dy[(p * h + i) * w + j];
            }
        }
    }
    dx
}

/// Nearest-neighbour upsampling ×2: (nc, H, W) → (nc, 2H, 2W), y[i, j] = x[i/2, j/2].
pub fn upsample2x(x: &[f64], nc: usize, h: usize, w: usize) -> Vec<f64> {
    let mut y = vec![0.0; nc * 4 * h * w];
    for p in 0..nc {
        for i in 0..2 * h {
            for j in 0..2 * w {
                y[(p * 2 * h + i) * 2 * w + j] = x[(p * h + i / 2) * w + j / 2];
            }
        }
    }
    y
}

/// Backward of [`upsample2x`]: dx[u, v] = Σ of the 2×2 block of dy it was copied to.
pub fn upsample2x_backward(dy: &[f64], nc: usize, h: usize, w: usize) -> Vec<f64> {
    let mut dx = vec![0.0; nc * h * w];
    for p in 0..nc {
        for i in 0..2 * h {
            for j in 0..2 * w {
                dx[(p * h + i / 2) * w + j / 2] += dy[(p * 2 * h + i) * 2 * w + j];
            }
        }
    }
    dx
}
