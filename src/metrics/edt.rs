//! Exact Euclidean distance transform (Felzenszwalb & Huttenlocher, "Distance Transforms of
//! Sampled Functions", 2012): for every pixel, the distance to the nearest foreground pixel.
//!
//! The 2-D squared transform is separable: a 1-D pass down each column, then a 1-D pass
//! along each row over the column results. The row pass computes the lower envelope of
//! parabolas `(q − p)² + f(p)` in O(n); the column pass, on a binary input, reduces to two
//! linear sweeps. So the whole transform is O(width · height): this is what keeps the
//! average Hausdorff distance linear in the image size. Every intermediate value is an
//! integer held exactly in an f64, so the squared distances are exact.

use super::BinaryMask;

/// Squared distance from every pixel (row-major) to the nearest foreground pixel of `mask`;
/// 0 on the foreground. All values are `f64::INFINITY` when the mask has no foreground.
/// Equals SciPy's `distance_transform_edt(~mask) ** 2`.
pub fn squared_distance_to_foreground(mask: &BinaryMask) -> Vec<f64> {
    let (w, h) = (mask.width(), mask.height());
    let data = mask.data();

    // Column pass. For a binary input the 1-D transform down a column is just the squared
    // distance to the nearest foreground pixel in that column, so it is computed with a
    // top-down and a bottom-up sweep over whole rows (Meijster's first phase): contiguous
    // memory instead of a strided walk down each column, which thrashes the cache on
    // large images. Counts stay small integers, exact in f64; ∞ + 1 = ∞.
    let mut grid = vec![f64::INFINITY; w * h];
    for x in 0..w {
        if data[x] {
            grid[x] = 0.0;
        }
    }
    for y in 1..h {
        let (above, rest) = grid.split_at_mut(y * w);
        let above = &above[(y - 1) * w..];
        let row = &mut rest[..w];
        let fg = &data[y * w..(y + 1) * w];
        for ((d, &a), &f) in row.iter_mut().zip(above).zip(fg) {
            *d = if f { 0.0 } else { a + 1.0 };
        }
    }
    for y in (0..h.saturating_sub(1)).rev() {
        let (head, below) = grid.split_at_mut((y + 1) * w);
        let row = &mut head[y * w..];
        for (d, &b) in row.iter_mut().zip(&below[..w]) {
            *d = d.min(b + 1.0);
        }
    }
    for d in &mut grid {
        *d *= *d;
    }

    // Row pass: the lower envelope of parabolas along each (contiguous) row.
    let mut scratch = Envelope::new(w);
    let mut out = vec![0.0; w];
    for row in grid.chunks_exact_mut(w) {
        scratch.transform(row, &mut out);
        row.copy_from_slice(&out);
    }
    grid
}

/// Euclidean distance from every pixel to the nearest foreground pixel (the square root of
/// [`squared_distance_to_foreground`]); `f64::INFINITY` everywhere for an empty mask.
pub fn distance_to_foreground(mask: &BinaryMask) -> Vec<f64> {
    squared_distance_to_foreground(mask)
        .into_iter()
        .map(f64::sqrt)
        .collect()
}

/// Buffers of the 1-D lower-envelope transform, reused across lines to avoid allocation.
struct Envelope {
    /// Positions of the parabolas in the lower envelope.
    v: Vec<usize>,
    /// Boundaries between consecutive parabolas: parabola k rules over [z[k], z[k + 1]].
    z: Vec<f64>,
}

impl Envelope {
    fn new(n: usize) -> Self {
        Self {
            v: vec![0; n],
            z: vec![0.0; n + 1],
        }
    }

    /// d[q] = min_p (q − p)² + f[p], over the finite samples of `f`; all infinite when `f`
    /// has none. Infinite samples are skipped rather than entered as parabolas, because the
    /// intersection of two infinite parabolas is ∞ − ∞ = NaN.
    fn transform(&mut self, f: &[f64], d: &mut [f64]) {
        let (v, z) = (&mut self.v, &mut self.z);
        let mut k: usize = 0; // index of the rightmost parabola, valid once `any`
        let mut any = false;
        for (q, &fq) in f.iter().enumerate() {
            if !fq.is_finite() {
                continue;
            }
            if !any {
                any = true;
                k = 0;
                v[0] = q;
                z[0] = f64::NEG_INFINITY;
                z[1] = f64::INFINITY;
                continue;
            }
            let qf = q as f64;
            loop {
                let p = v[k];
                let pf = p as f64;
                // Where the parabola from q overtakes the one from p.
                let s = ((fq + qf * qf) - (f[p] + pf * pf)) / (2.0 * qf - 2.0 * pf);
                if s <= z[k] {
                    // q's parabola hides p's entirely: drop p and retry with its left
                    // neighbour. Never underflows: z[0] = −∞ and s is finite.
                    k -= 1;
                    continue;
                }
                k += 1;
                v[k] = q;
                z[k] = s;
                z[k + 1] = f64::INFINITY;
                break;
            }
        }
        if !any {
            d.fill(f64::INFINITY);
            return;
        }
        let mut k = 0;
        for (q, dq) in d.iter_mut().enumerate() {
            let qf = q as f64;
            while z[k + 1] < qf {
                k += 1;
            }
            let dx = qf - v[k] as f64;
            *dq = dx * dx + f[v[k]];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force: min over all foreground pixels of the squared distance.
    fn brute(mask: &BinaryMask) -> Vec<f64> {
        let (w, h) = (mask.width(), mask.height());
        let fg: Vec<(usize, usize)> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .filter(|&(x, y)| mask.get(x, y))
            .collect();
        (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| {
                fg.iter()
                    .map(|&(a, b)| {
                        let dx = a as f64 - x as f64;
                        let dy = b as f64 - y as f64;
                        dx * dx + dy * dy
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }

    #[test]
    fn matches_brute_force_on_pseudo_random_masks() {
        // xorshift, so the test needs no seed plumbing and is deterministic
        let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
        for case in 0..60 {
            let (w, h) = (1 + case % 13, 1 + (case * 7) % 11);
            let density = [2, 10, 50, 90][case % 4];
            let mask = BinaryMask::from_fn(w, h, |_, _| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s % 100 < density
            })
            .unwrap();
            assert_eq!(
                squared_distance_to_foreground(&mask),
                brute(&mask),
                "case {case}"
            );
        }
    }

    #[test]
    fn empty_mask_is_infinitely_far() {
        let d = squared_distance_to_foreground(&BinaryMask::empty(4, 3).unwrap());
        assert!(d.iter().all(|v| v.is_infinite()));
    }

    #[test]
    fn single_pixel_gives_exact_euclidean_distances() {
        let mut m = BinaryMask::empty(5, 4).unwrap();
        m.set(0, 0, true);
        let d = distance_to_foreground(&m);
        assert_eq!(d[3 * 5 + 4], 5.0); // (4, 3): a 3-4-5 triangle
        assert_eq!(d[0], 0.0);
    }
}
