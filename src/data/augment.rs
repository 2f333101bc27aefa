//! Training-time augmentation, seeded.
//!
//! Geometry (flips, rotation, scale) is one affine map applied to image and mask
//! together: the image is sampled bilinearly, the mask by nearest neighbour from
//! the same source coordinates, so the lesion outline moves with the lesion.
//! Outside the original field of view both read 0 (ultrasound frames are dark
//! outside the scan). Then, image only: brightness, contrast, gamma, and
//! multiplicative speckle noise (ultrasound noise scales with the signal).
//! Optionally, before all that, a scan is swapped for a lesion-free view of
//! itself (a crop beside the lesion, empty mask): data sets of lesions only
//! (BUS-BRA) otherwise never show the model tissue it should leave empty.

use serde::{Deserialize, Serialize};

use super::GrayF32;
use super::preprocess::resize_bilinear;
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
    /// Probability that a scan with a lesion is replaced by a lesion-free view of itself
    /// (see [`lesion_free_crop`]), so that the model also sees tissue without lesions.
    #[serde(default)]
    pub p_lesion_free: f32,
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
            p_lesion_free: 0.0,
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

/// A rectangle of pixels: columns x..x+w, rows y..y+h.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

/// Smallest crop of a lesion-free view, as a fraction of the image's sides: at most a 2×
/// zoom, so the speckle keeps roughly the grain of a whole scan.
pub const LESION_FREE_MIN_SCALE: f64 = 0.5;

/// A crop of a w×h scan that misses its lesion, for teaching (and testing) that tissue
/// without a lesion gives an empty mask: the image's aspect ratio, scaled by at least
/// [`LESION_FREE_MIN_SCALE`], and clear of the lesion's bounding box grown by a margin of
/// 1/16 of each side, on one side of it (above, below, left or right; ultrasound's
/// layers run across the image, so these differ). Drawn uniformly among the sides that
/// fit, then in size and position. None when the mask is empty (the scan is already
/// lesion-free) or the lesion leaves no room.
pub fn lesion_free_rect(mask: &[f32], w: usize, h: usize, rng: &mut Rng) -> Option<Rect> {
    assert_eq!(mask.len(), w * h, "lesion_free_rect: mask is not {w}×{h}");
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0usize, 0usize);
    for (i, _) in mask.iter().enumerate().filter(|(_, v)| **v >= 0.5) {
        let (x, y) = (i % w, i / w);
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
    }
    if x0 == usize::MAX {
        return None;
    }
    let (mx, my) = (w.div_ceil(16), h.div_ceil(16));
    // Free bands, as (x, y, w, h).
    let bands = [
        (0, 0, w, y0.saturating_sub(my)),
        (0, (y1 + my).min(h), w, h - (y1 + my).min(h)),
        (0, 0, x0.saturating_sub(mx), h),
        ((x1 + mx).min(w), 0, w - (x1 + mx).min(w), h),
    ];
    // The largest scale s with s·w ≤ band width and s·h ≤ band height.
    let fits: Vec<(usize, usize, usize, usize, f64)> = bands
        .into_iter()
        .map(|(bx, by, bw, bh)| {
            (
                bx,
                by,
                bw,
                bh,
                (bw as f64 / w as f64).min(bh as f64 / h as f64),
            )
        })
        .filter(|b| b.4 >= LESION_FREE_MIN_SCALE)
        .collect();
    if fits.is_empty() {
        return None;
    }
    let (bx, by, bw, bh, s_max) = fits[rng.below(fits.len())];
    let s = LESION_FREE_MIN_SCALE + (s_max - LESION_FREE_MIN_SCALE) * rng.next_f64();
    let (cw, ch) = (
        ((s * w as f64).round() as usize).clamp(1, bw),
        ((s * h as f64).round() as usize).clamp(1, bh),
    );
    Some(Rect {
        x: bx + rng.below(bw - cw + 1),
        y: by + rng.below(bh - ch + 1),
        w: cw,
        h: ch,
    })
}

/// The pixels of `r` of an image.
pub fn crop(image: &GrayF32, r: Rect) -> GrayF32 {
    assert!(
        r.x + r.w <= image.w && r.y + r.h <= image.h,
        "crop {r:?} leaves the image"
    );
    GrayF32::from_vec(
        r.w,
        r.h,
        (r.y..r.y + r.h)
            .flat_map(|y| {
                image.data[y * image.w + r.x..y * image.w + r.x + r.w]
                    .iter()
                    .copied()
            })
            .collect(),
    )
}

/// A lesion-free view of a scan at its own resolution, for testing what a model marks on
/// tissue without lesions: the whole scan when its mask is empty (a normal scan already is
/// one), else [`lesion_free_rect`] on its mask; None when the lesion leaves no room.
pub fn lesion_free_view(image: &GrayF32, mask: &GrayF32, rng: &mut Rng) -> Option<GrayF32> {
    assert_eq!(
        (image.w, image.h),
        (mask.w, mask.h),
        "lesion_free_view: image and mask sizes differ"
    );
    if mask.data.iter().all(|&v| v < 0.5) {
        return Some(image.clone());
    }
    lesion_free_rect(&mask.data, mask.w, mask.h, rng).map(|r| crop(image, r))
}

/// Replaces an s×s training pair by a lesion-free view of the same scan
/// ([`lesion_free_rect`], enlarged bilinearly back to s×s) with an empty mask. False, and
/// the pair unchanged, when the scan has no lesion or no room for one.
pub fn lesion_free_crop(image: &mut [f32], mask: &mut [f32], size: usize, rng: &mut Rng) -> bool {
    let Some(r) = lesion_free_rect(mask, size, size, rng) else {
        return false;
    };
    let view = crop(&GrayF32::from_vec(size, size, image.to_vec()), r);
    image.copy_from_slice(&resize_bilinear(&view, size, size).data);
    mask.fill(0.0);
    true
}

/// Augments one s×s training pair in place: a lesion-free view with probability
/// `p_lesion_free`, one warp for both, then photometric changes on the image.
pub fn augment(
    image: &mut [f32],
    mask: &mut [f32],
    size: usize,
    cfg: &AugmentConfig,
    rng: &mut Rng,
) {
    // Drawn only when asked for, so that runs without it keep their random streams.
    if cfg.p_lesion_free > 0.0 && rng.chance(cfg.p_lesion_free) {
        lesion_free_crop(image, mask, size, rng);
    }
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

    /// A w×h mask with the rectangle [x0, x1) × [y0, y1) set.
    fn boxed(w: usize, h: usize, x0: usize, x1: usize, y0: usize, y1: usize) -> Vec<f32> {
        (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                f32::from(u8::from((x0..x1).contains(&x) && (y0..y1).contains(&y)))
            })
            .collect()
    }

    #[test]
    fn lesion_free_views_miss_the_lesion_and_keep_the_aspect() {
        let (w, h) = (96, 64);
        // A lesion in the bottom right corner: room above it and left of it.
        let mask = boxed(w, h, 80, 90, 50, 60);
        let mut rng = Rng::new(7);
        let (mut reaches_down, mut reaches_right) = (false, false);
        for _ in 0..400 {
            let r = lesion_free_rect(&mask, w, h, &mut rng).expect("there is room");
            assert!(r.x + r.w <= w && r.y + r.h <= h, "{r:?} leaves the image");
            assert!(r.w as f64 >= 0.5 * w as f64 - 0.5, "{r:?} is too small");
            let aspect = r.w as f64 / r.h as f64;
            assert!((aspect - 1.5).abs() < 0.05, "{r:?} has aspect {aspect}");
            // Clear of the lesion grown by the margin (6 × 4 px here).
            let apart = r.x + r.w <= 80 - 6 || r.y + r.h <= 50 - 4;
            assert!(apart, "{r:?} touches the lesion");
            reaches_down |= r.y + r.h > 46;
            reaches_right |= r.x + r.w > 74;
        }
        assert!(reaches_down && reaches_right, "both free bands are drawn");
    }

    #[test]
    fn no_lesion_free_view_without_room_or_without_a_lesion() {
        let mut rng = Rng::new(1);
        assert_eq!(
            lesion_free_rect(&vec![0.0; 64 * 64], 64, 64, &mut rng),
            None
        );
        let central = boxed(64, 64, 20, 44, 20, 44);
        assert_eq!(lesion_free_rect(&central, 64, 64, &mut rng), None);
        let mut img: Vec<f32> = (0..64 * 64).map(|i| (i % 7) as f32 / 7.0).collect();
        let (img0, mut m) = (img.clone(), central.clone());
        assert!(!lesion_free_crop(&mut img, &mut m, 64, &mut rng));
        assert_eq!((img, m.clone()), (img0.clone(), central));
        // For testing, a scan without a lesion is its own lesion-free view; one whose
        // lesion leaves no room has none.
        let scan = GrayF32::from_vec(64, 64, img0);
        let empty = GrayF32::filled(64, 64, 0.0);
        assert_eq!(
            lesion_free_view(&scan, &empty, &mut rng),
            Some(scan.clone())
        );
        let lesion = GrayF32::from_vec(64, 64, m);
        assert_eq!(lesion_free_view(&scan, &lesion, &mut rng), None);
    }

    #[test]
    fn a_lesion_free_crop_enlarges_the_tissue_beside_the_lesion() {
        // Rows get brighter with depth; the lesion sits at the bottom.
        let s = 32;
        let mut img: Vec<f32> = (0..s * s).map(|i| (i / s) as f32 / s as f32).collect();
        let mut mask = boxed(s, s, 8, 24, 26, 32);
        assert!(lesion_free_crop(&mut img, &mut mask, s, &mut Rng::new(5)));
        assert!(mask.iter().all(|&v| v == 0.0));
        // Only rows above the lesion's margin (row 24) are sampled, and columns stay
        // constant because the source is.
        assert!(
            img.iter().all(|&v| v <= 24.0 / s as f32),
            "read rows of the lesion"
        );
        for y in 0..s {
            let row = &img[y * s..(y + 1) * s];
            assert!(row.iter().all(|&v| (v - row[0]).abs() < 1e-6));
        }
        assert!(img[(s - 1) * s] > img[0], "depth order kept");
    }
}
