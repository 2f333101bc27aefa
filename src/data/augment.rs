//! Training-time augmentation, seeded.
//!
//! Geometry (flips, rotation, scale) is one affine map applied to image and mask
//! together: the image is sampled bilinearly, the mask by nearest neighbour from
//! the same source coordinates, so the lesion outline moves with the lesion.
//! Outside the original field of view both read 0 (ultrasound frames are dark
//! outside the scan). Then, image only: brightness, contrast, gamma, and
//! multiplicative speckle noise (ultrasound noise scales with the signal).

use serde::{Deserialize, Serialize};

use super::rng::Rng;

/// Augmentation ranges. Probabilities are per sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    pub p_flip_h: f32,
    pub p_flip_v: f32,
    /// Rotation drawn uniformly from ±max_rotation_deg.
    pub max_rotation_deg: f32,
    /// Isotropic scale drawn uniformly from [scale_min, scale_max].
    pub scale_min: f32,
    pub scale_max: f32,
    /// Additive brightness offset drawn from ±brightness.
    pub brightness: f32,
    /// Contrast factor about the mean drawn from [1 - contrast, 1 + contrast].
    pub contrast: f32,
    /// Gamma drawn log-uniformly from [1/gamma_max, gamma_max].
    pub gamma_max: f32,
    /// Standard deviation of the multiplicative speckle factor (1 + σ·N(0,1)).
    pub speckle_sigma: f32,
    /// Probability that speckle is added at all.
    pub p_speckle: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            p_flip_h: 0.5,
            p_flip_v: 0.5,
            max_rotation_deg: 15.0,
            scale_min: 0.9,
            scale_max: 1.1,
            brightness: 0.1,
            contrast: 0.2,
            gamma_max: 1.25,
            speckle_sigma: 0.1,
            p_speckle: 0.5,
        }
    }
}

impl AugmentConfig {
    /// Geometry only (no photometric change); used to check alignment.
    pub fn geometric_only() -> Self {
        AugmentConfig {
            brightness: 0.0,
            contrast: 0.0,
            gamma_max: 1.0,
            speckle_sigma: 0.0,
            p_speckle: 0.0,
            ..Default::default()
        }
    }
}

/// The affine map drawn for one sample, from output pixel to source pixel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Warp {
    pub flip_h: bool,
    pub flip_v: bool,
    pub angle_rad: f32,
    pub scale: f32,
}

impl Warp {
    pub fn identity() -> Self {
        Warp {
            flip_h: false,
            flip_v: false,
            angle_rad: 0.0,
            scale: 1.0,
        }
    }

    /// Source coordinates of output pixel (x, y) in an s×s image: about the image
    /// centre, undo scale then rotation, then flip.
    fn source(&self, x: f32, y: f32, s: usize) -> (f32, f32) {
        let c = (s as f32 - 1.0) * 0.5;
        let (dx, dy) = ((x - c) / self.scale, (y - c) / self.scale);
        let (sin, cos) = self.angle_rad.sin_cos();
        let (mut u, mut v) = (cos * dx + sin * dy, -sin * dx + cos * dy);
        if self.flip_h {
            u = -u;
        }
        if self.flip_v {
            v = -v;
        }
        (u + c, v + c)
    }
}

/// Applies `warp` to an s×s image (bilinear) and mask (nearest), in place.
pub fn warp_pair(image: &mut [f32], mask: &mut [f32], size: usize, warp: &Warp) {
    assert_eq!(
        image.len(),
        size * size,
        "warp_pair: image is not {size}×{size}"
    );
    assert_eq!(
        mask.len(),
        size * size,
        "warp_pair: mask is not {size}×{size}"
    );
    if *warp == Warp::identity() {
        return;
    }
    let src_img = image.to_vec();
    let src_mask = mask.to_vec();
    let s = size as isize;
    let at = |buf: &[f32], x: isize, y: isize| -> f32 {
        if x < 0 || y < 0 || x >= s || y >= s {
            0.0
        } else {
            buf[(y * s + x) as usize]
        }
    };
    for y in 0..size {
        for x in 0..size {
            let (u, v) = warp.source(x as f32, y as f32, size);
            let (x0, y0) = (u.floor(), v.floor());
            let (fx, fy) = (u - x0, v - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            let i = y * size + x;
            image[i] = (1.0 - fy)
                * ((1.0 - fx) * at(&src_img, x0, y0) + fx * at(&src_img, x0 + 1, y0))
                + fy * ((1.0 - fx) * at(&src_img, x0, y0 + 1) + fx * at(&src_img, x0 + 1, y0 + 1));
            // Nearest = the bilinear tap with the largest weight, so wherever the
            // image reads a pure 0 or 1 the mask reads the same.
            let nx = if fx < 0.5 { x0 } else { x0 + 1 };
            let ny = if fy < 0.5 { y0 } else { y0 + 1 };
            mask[i] = at(&src_mask, nx, ny);
        }
    }
}

/// Draws the geometric part of an augmentation.
pub fn draw_warp(cfg: &AugmentConfig, rng: &mut Rng) -> Warp {
    Warp {
        flip_h: rng.chance(cfg.p_flip_h),
        flip_v: rng.chance(cfg.p_flip_v),
        angle_rad: rng
            .uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg)
            .to_radians(),
        scale: rng.uniform(cfg.scale_min, cfg.scale_max),
    }
}

/// Brightness, contrast, gamma and speckle on the image only; values clamped
/// to [0, 1].
pub fn photometric(image: &mut [f32], cfg: &AugmentConfig, rng: &mut Rng) {
    let offset = rng.uniform(-cfg.brightness, cfg.brightness);
    let contrast = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast);
    let gamma = if cfg.gamma_max > 1.0 {
        let l = cfg.gamma_max.ln();
        rng.uniform(-l, l).exp()
    } else {
        1.0
    };
    let speckle = rng.chance(cfg.p_speckle) && cfg.speckle_sigma > 0.0;
    let mean = image.iter().sum::<f32>() / image.len().max(1) as f32;
    for v in image.iter_mut() {
        let mut x = (*v - mean) * contrast + mean + offset;
        x = x.clamp(0.0, 1.0).powf(gamma);
        *v = x;
    }
    if speckle {
        let mut i = 0;
        while i < image.len() {
            let (a, b) = rng.normal_pair();
            image[i] = (image[i] * (1.0 + cfg.speckle_sigma * a)).clamp(0.0, 1.0);
            if i + 1 < image.len() {
                image[i + 1] = (image[i + 1] * (1.0 + cfg.speckle_sigma * b)).clamp(0.0, 1.0);
            }
            i += 2;
        }
    }
}

/// Augments one s×s training pair in place: one warp for both, then
/// photometric changes on the image.
pub fn augment(
    image: &mut [f32],
    mask: &mut [f32],
    size: usize,
    cfg: &AugmentConfig,
    rng: &mut Rng,
) {
    let warp = draw_warp(cfg, rng);
    warp_pair(image, mask, size, &warp);
    photometric(image, cfg, rng);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizontal_flip_mirrors_exactly() {
        let mut img: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let mut mask = img.clone();
        let w = Warp {
            flip_h: true,
            ..Warp::identity()
        };
        warp_pair(&mut img, &mut mask, 4, &w);
        assert_eq!(&img[0..4], &[3.0, 2.0, 1.0, 0.0]);
        assert_eq!(img, mask);
    }

    #[test]
    fn photometric_keeps_values_in_unit_range() {
        let mut img: Vec<f32> = (0..1000).map(|i| i as f32 / 999.0).collect();
        let cfg = AugmentConfig {
            brightness: 0.5,
            contrast: 0.9,
            speckle_sigma: 0.5,
            p_speckle: 1.0,
            ..Default::default()
        };
        photometric(&mut img, &cfg, &mut Rng::new(3));
        assert!(img.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
