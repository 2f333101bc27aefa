//! A small, self-contained, seedable random number generator.
//!
//! Splits, augmentation, batching order and the phantom generator must give the
//! same result for the same seed on every machine and with every version of the
//! `rand` crate (whose `StdRng` algorithm is explicitly not stable across
//! releases). So the data module carries its own generator: xoshiro256** seeded
//! through SplitMix64, the combination recommended by the xoshiro authors.

/// Deterministic pseudo-random generator (xoshiro256**).
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

/// One SplitMix64 step: used to expand seeds and to mix several words into one.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator seeded from one 64-bit seed.
    pub fn new(seed: u64) -> Self {
        Self::from_parts(&[seed])
    }

    /// A generator seeded from several words (e.g. seed, epoch, sample index), so
    /// that independent streams can be derived without sharing state between
    /// threads: the stream for sample 17 of epoch 3 never depends on timing.
    pub fn from_parts(parts: &[u64]) -> Self {
        let mut state = 0x5EED_0FDA_7A00_u64;
        for &p in parts {
            state ^= p;
            state = splitmix64(&mut state);
        }
        let mut s = [0u64; 4];
        for w in &mut s {
            *w = splitmix64(&mut state);
        }
        // An all-zero state would be a fixed point; SplitMix64 never yields four zeros
        // in a row, but keep the invariant explicit.
        if s == [0; 4] {
            s[0] = 1;
        }
        Rng { s }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1), 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, 1), 24 bits of precision.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }

    /// Uniform integer in [0, n); `n` must be positive.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below needs a positive bound");
        // Lemire's multiply-shift; the bias for n far below 2^64 is negligible here.
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f32) -> bool {
        self.next_f32() < p
    }

    /// Standard normal deviate (Box–Muller; the second value is discarded so the
    /// stream position does not depend on call history).
    pub fn normal(&mut self) -> f32 {
        let (a, _) = self.normal_pair();
        a
    }

    /// Two independent standard normal deviates.
    pub fn normal_pair(&mut self) -> (f32, f32) {
        // 1 - u keeps the logarithm finite.
        let u1 = 1.0 - self.next_f64();
        let u2 = self.next_f64();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        ((r * t.cos()) as f32, (r * t.sin()) as f32)
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_stream() {
        let mut a = Rng::from_parts(&[7, 3]);
        let mut b = Rng::from_parts(&[7, 3]);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn different_parts_give_different_streams() {
        let mut a = Rng::from_parts(&[7, 3]);
        let mut b = Rng::from_parts(&[3, 7]);
        assert_ne!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn uniform_and_normal_have_plausible_moments() {
        let mut r = Rng::new(1);
        let n = 20000;
        let mean_u: f64 = (0..n).map(|_| r.next_f64()).sum::<f64>() / n as f64;
        assert!((mean_u - 0.5).abs() < 0.01);
        let xs: Vec<f64> = (0..n).map(|_| r.normal() as f64).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "var {var}");
    }
}
