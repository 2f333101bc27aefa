//! Perceptual fingerprints and duplicate grouping.
//!
//! About a fifth of BUSI are duplicates or near-duplicates (the same frame saved
//! twice, re-encoded, re-scaled, or filed under both classes). A split that
//! ignores this puts copies of test images into training and inflates every
//! score. Each image gets a fingerprint: a 64-bit DCT perceptual hash (pHash:
//! the image reduced to 32×32 grey by area averaging, its 2-D DCT-II, the 8×8
//! lowest frequencies compared with their median) and the normalised 32×32
//! thumbnail itself. Two images are near-duplicates when their hashes differ in
//! at most `max_hamming` bits *and* their thumbnails correlate at least
//! `min_correlation`. The correlation test is there because breast ultrasound
//! images share their coarse layout (skin, fat, gland, muscle from top to
//! bottom), so unrelated images can fall within a few hash bits of each other;
//! a re-encoded, re-scaled or slightly cropped copy still correlates above 0.95,
//! unrelated images stay below. Above `strong_correlation` the hash test is
//! waived: on smooth, low-texture images many DCT coefficients sit next to the
//! median, and their bits flip under mere re-scaling. Links are closed transitively with union-find, so a chain
//! of near-copies forms one group.

use serde::{Deserialize, Serialize};

use super::GrayF32;
use super::preprocess::resize_gray;

/// Default pHash Hamming-distance threshold.
pub const DEFAULT_HASH_THRESHOLD: u32 = 8;
/// Default thumbnail correlation threshold.
pub const DEFAULT_MIN_CORRELATION: f32 = 0.95;
/// Default correlation above which the hash is not consulted.
pub const DEFAULT_STRONG_CORRELATION: f32 = 0.99;

const HASH_SIDE: usize = 32;
const KEEP: usize = 8;

/// When two fingerprints count as the same image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DuplicateRule {
    /// Largest pHash Hamming distance.
    pub max_hamming: u32,
    /// Smallest Pearson correlation of the 32×32 thumbnails.
    pub min_correlation: f32,
    /// Correlation at or above which images are duplicates whatever the hash.
    pub strong_correlation: f32,
}

impl Default for DuplicateRule {
    fn default() -> Self {
        DuplicateRule {
            max_hamming: DEFAULT_HASH_THRESHOLD,
            min_correlation: DEFAULT_MIN_CORRELATION,
            strong_correlation: DEFAULT_STRONG_CORRELATION,
        }
    }
}

/// A perceptual hash plus the zero-mean, unit-variance 32×32 thumbnail.
#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint {
    pub phash: u64,
    /// 32×32 values; all zero for a flat image.
    pub thumb: Vec<f32>,
    /// Mean grey of the thumbnail, to tell flat images apart.
    pub mean: f32,
}

impl Fingerprint {
    /// Pearson correlation of the thumbnails; two flat images correlate 1 when
    /// their grey levels agree within 2 %.
    pub fn correlation(&self, other: &Fingerprint) -> f32 {
        let flat_a = self.thumb.iter().all(|&v| v == 0.0);
        let flat_b = other.thumb.iter().all(|&v| v == 0.0);
        if flat_a || flat_b {
            return if flat_a && flat_b && (self.mean - other.mean).abs() < 0.02 {
                1.0
            } else {
                0.0
            };
        }
        self.thumb
            .iter()
            .zip(&other.thumb)
            .map(|(a, b)| a * b)
            .sum::<f32>()
            / self.thumb.len() as f32
    }

    /// True when the two images are near-identical under `rule`.
    pub fn near_duplicate(&self, other: &Fingerprint, rule: &DuplicateRule) -> bool {
        // The correlation costs 1024 multiply-adds, the hash one popcount: when the
        // hash already decides, skip the correlation.
        let close = hamming(self.phash, other.phash) <= rule.max_hamming;
        if !close && rule.strong_correlation > 1.0 {
            return false;
        }
        let c = self.correlation(other);
        c >= rule.strong_correlation || (close && c >= rule.min_correlation)
    }
}

/// The fingerprint of a grey image.
pub fn fingerprint(img: &GrayF32) -> Fingerprint {
    let small = resize_gray(img, HASH_SIDE, HASH_SIDE);
    let phash = phash_of_thumbnail(&small.data);
    let n = small.data.len() as f32;
    let mean = small.data.iter().sum::<f32>() / n;
    let sd = (small
        .data
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .sum::<f32>()
        / n)
        .sqrt();
    let thumb = if sd < 1e-6 {
        vec![0.0; small.data.len()]
    } else {
        small.data.iter().map(|v| (v - mean) / sd).collect()
    };
    Fingerprint { phash, thumb, mean }
}

/// The 64-bit DCT perceptual hash of a grey image.
pub fn phash(img: &GrayF32) -> u64 {
    phash_of_thumbnail(&resize_gray(img, HASH_SIDE, HASH_SIDE).data)
}

fn phash_of_thumbnail(small: &[f32]) -> u64 {
    // cos[k][n] = cos(π (2n + 1) k / 2N); only the first KEEP frequencies are needed.
    let n = HASH_SIDE;
    let mut cos = [[0.0f64; HASH_SIDE]; KEEP];
    for (k, row) in cos.iter_mut().enumerate() {
        for (i, c) in row.iter_mut().enumerate() {
            *c = (std::f64::consts::PI * (2 * i + 1) as f64 * k as f64 / (2 * n) as f64).cos();
        }
    }
    // Rows first: rows[y][k] = Σ_x img[y][x] cos[k][x].
    let mut rows = [[0.0f64; KEEP]; HASH_SIDE];
    for (y, r) in rows.iter_mut().enumerate() {
        for (k, v) in r.iter_mut().enumerate() {
            *v = (0..n).map(|x| small[y * n + x] as f64 * cos[k][x]).sum();
        }
    }
    let mut coeffs = [0.0f64; KEEP * KEEP];
    for ky in 0..KEEP {
        for kx in 0..KEEP {
            coeffs[ky * KEEP + kx] = (0..n).map(|y| rows[y][kx] * cos[ky][y]).sum();
        }
    }
    let mut sorted = coeffs;
    sorted.sort_by(|a, b| a.total_cmp(b));
    let median = 0.5 * (sorted[31] + sorted[32]);
    coeffs.iter().enumerate().fold(
        0u64,
        |h, (i, &c)| if c > median { h | (1u64 << i) } else { h },
    )
}

/// Number of differing bits.
pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// Disjoint-set forest with path halving and union by size.
struct UnionFind {
    parent: Vec<usize>,
    size: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        UnionFind {
            parent: (0..n).collect(),
            size: vec![1; n],
        }
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (mut a, mut b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        if self.size[a] < self.size[b] {
            std::mem::swap(&mut a, &mut b);
        }
        self.parent[b] = a;
        self.size[a] += self.size[b];
    }
}

/// Groups items 0..n linked by `linked(i, j)`, transitively. Returns, for each
/// item, the index of the smallest item in its group, so the labelling does not
/// depend on the order of unions.
pub fn group_by(n: usize, linked: impl Fn(usize, usize) -> bool) -> Vec<usize> {
    let mut uf = UnionFind::new(n);
    for i in 0..n {
        for j in i + 1..n {
            if linked(i, j) {
                uf.union(i, j);
            }
        }
    }
    let mut smallest = vec![usize::MAX; n];
    for i in 0..n {
        let r = uf.find(i);
        smallest[r] = smallest[r].min(i);
    }
    (0..n).map(|i| smallest[uf.find(i)]).collect()
}

/// Duplicate-group labels of fingerprints (see [`group_by`]).
pub fn group_duplicates(fps: &[Fingerprint], rule: &DuplicateRule) -> Vec<usize> {
    group_by(fps.len(), |i, j| fps[i].near_duplicate(&fps[j], rule))
}

/// Turns group labels into the groups with more than one member, each sorted,
/// in order of first member.
pub fn groups_from_labels(labels: &[usize]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut slot = vec![usize::MAX; labels.len()];
    for (i, &l) in labels.iter().enumerate() {
        if slot[l] == usize::MAX {
            slot[l] = groups.len();
            groups.push(Vec::new());
        }
        groups[slot[l]].push(i);
    }
    groups.retain(|g| g.len() > 1);
    groups
}

/// The duplicate groups (more than one member) of a set of fingerprints.
pub fn duplicate_groups(fps: &[Fingerprint], rule: &DuplicateRule) -> Vec<Vec<usize>> {
    groups_from_labels(&group_duplicates(fps, rule))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(seed: u32, w: usize, h: usize) -> GrayF32 {
        let data = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32 / w as f32, (i / w) as f32 / h as f32);
                let s = seed as f32;
                (0.5 + 0.25 * (x * (3.0 + s) + s).sin() + 0.25 * (y * (2.0 + 0.7 * s)).cos())
                    .clamp(0.0, 1.0)
            })
            .collect();
        GrayF32::from_vec(w, h, data)
    }

    #[test]
    fn resized_copy_is_a_near_duplicate() {
        let a = pattern(1, 200, 160);
        let b = resize_gray(&a, 331, 250);
        assert!(fingerprint(&a).near_duplicate(&fingerprint(&b), &DuplicateRule::default()));
    }

    #[test]
    fn different_images_are_not_duplicates() {
        let a = fingerprint(&pattern(1, 64, 64));
        let b = fingerprint(&pattern(5, 64, 64));
        assert!(!a.near_duplicate(&b, &DuplicateRule::default()));
    }

    #[test]
    fn flat_images_of_the_same_grey_are_duplicates() {
        let a = fingerprint(&GrayF32::filled(10, 10, 0.3));
        let b = fingerprint(&GrayF32::filled(20, 30, 0.3));
        let c = fingerprint(&GrayF32::filled(20, 30, 0.8));
        assert!(a.near_duplicate(&b, &DuplicateRule::default()));
        assert!(!a.near_duplicate(&c, &DuplicateRule::default()));
    }

    #[test]
    fn grouping_is_transitive() {
        // 0 ~ 1 (2 bits), 1 ~ 2 (2 bits), 0 and 2 are 4 bits apart, 3 is far.
        let hashes = [0b0000u64, 0b0011, 0b1111, u64::MAX];
        let labels = group_by(4, |i, j| hamming(hashes[i], hashes[j]) <= 2);
        assert_eq!(labels, vec![0, 0, 0, 3]);
        assert_eq!(groups_from_labels(&labels), vec![vec![0, 1, 2]]);
    }
}
