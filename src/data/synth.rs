//! Breast-ultrasound phantoms with exact masks: the built-in data set.
//!
//! Each image is built the way a B-mode image forms, on a field of view 30–50 mm
//! deep (square), at 256×256 or the requested size if larger, then area-averaged down
//! to the requested size as the loaders do with real scans:
//! 1. an echogenicity map (scatterer strength): either layered breast tissue seen by
//!    a linear probe (coupling gel, bright skin line, hypoechoic subcutaneous fat
//!    crossed by bright Cooper's ligaments, hyperechoic fibroglandular tissue with a
//!    low-frequency texture, striated pectoral muscle, dark chest wall) or, one image
//!    in four, homogeneous tissue with smooth variation, as in a phantom or a
//!    simulation study;
//! 2. one lesion (about one image in six has none), 3–20 mm across (log-uniform),
//!    whose outline is a radial function: an ellipse or macro-lobulated shape for
//!    `benign`, an irregular outline with spicules for `malignant`, optionally with a
//!    capsule or an echogenic halo; its echogenicity is set against the tissue around
//!    it: anechoic (cysts), 6–24 dB darker, or (a few benign ones) 5–10 dB brighter;
//!    posterior acoustic enhancement or shadowing below;
//! 3. depth attenuation, electronic noise, then a time-gain compensation that lifts
//!    most of the attenuation back (and the noise with it at depth);
//! 4. fully developed speckle: complex Gaussian scattering weighted by the
//!    echogenicity, filtered by the probe's point-spread function: narrow axially,
//!    wider laterally, narrowest at the focal depth and widening away from it; the
//!    envelope is Rayleigh-distributed;
//! 5. log compression to a 40–60 dB display range and 8-bit quantisation.
//!
//! The mask is the lesion's radial-function region sampled at the output's pixel
//! centres, so it is exact. Everything is derived from (seed, index), so a phantom is
//! the same on every machine and the files written are byte-identical.

use std::path::{Path, PathBuf};

use super::DataError;
use super::dataset::parallel_map;
use super::image_io::{GrayF32, save_gray_u8, save_mask};
use super::layout::Class;
use super::preprocess::resize_gray;
use super::rng::Rng;

/// One generated image, its mask and its class.
#[derive(Debug, Clone, PartialEq)]
pub struct Phantom {
    pub size: usize,
    /// size×size grey values, each a multiple of 1/255 (what the PNG holds).
    pub image: GrayF32,
    /// size×size, each 0.0 or 1.0; all zero for `Class::Normal`.
    pub mask: GrayF32,
    pub class: Class,
    /// The side of the (square) field of view, mm.
    pub fov_mm: f32,
    /// The lesion's mean diameter (before its outline's lobes and spicules), mm; None
    /// for `Class::Normal`.
    pub lesion_mm: Option<f32>,
}

/// The class of phantom `index`: every sixth is lesion-free, and about a third of
/// the others are malignant (BUSI has 437 benign to 210 malignant).
pub fn phantom_class(seed: u64, index: u64) -> Class {
    if index % 6 == 5 {
        return Class::Normal;
    }
    let mut rng = Rng::from_parts(&[seed, index, 0xC1A5]);
    if rng.chance(1.0 / 3.0) {
        Class::Malignant
    } else {
        Class::Benign
    }
}

/// A smooth random curve across the image: depth offset as a function of the
/// lateral position u ∈ [0, 1], a sum of a few sines.
struct Wave {
    terms: Vec<(f32, f32, f32)>, // amplitude, frequency (cycles per width), phase
}

impl Wave {
    fn new(rng: &mut Rng, amplitude: f32, n: usize) -> Self {
        let terms = (0..n)
            .map(|k| {
                let f = rng.uniform(0.4, 1.5) * (k + 1) as f32;
                (
                    amplitude * rng.uniform(0.3, 1.0) / (k + 1) as f32,
                    f,
                    rng.uniform(0.0, std::f32::consts::TAU),
                )
            })
            .collect();
        Wave { terms }
    }

    fn at(&self, u: f32) -> f32 {
        self.terms
            .iter()
            .map(|&(a, f, p)| a * (std::f32::consts::TAU * f * u + p).sin())
            .sum()
    }
}

/// The lesion outline: r(θ) = 1 + Σ a_k cos(kθ + φ_k) + Σ spikes, in the
/// lesion's own frame (rotated, scaled by the semi-axes).
struct Lesion {
    cx: f32,
    cy: f32,
    ax: f32,
    ay: f32,
    cos_t: f32,
    sin_t: f32,
    harmonics: Vec<(f32, f32, f32)>, // k, amplitude, phase
    spikes: Vec<(f32, f32, f32)>,    // angle, length, sharpness exponent
    echo: f32,
    heterogeneity: f32,
    /// Bright rim: (width relative to the radius, strength); outside the mask.
    rim: Option<(f32, f32)>,
    /// Posterior gain: > 1 enhancement, < 1 shadow.
    posterior: f32,
}

impl Lesion {
    /// Below this echogenicity relative to the tissue around it a lesion is a cyst.
    const CYST: f32 = 0.03;

    /// A lesion of `class` centred at (cx, cy) (fractions of the image side), its mean
    /// radius `r0` (same unit), its echogenicity `contrast` times that of the tissue
    /// around it, `around`.
    #[allow(clippy::too_many_arguments)]
    fn new(
        rng: &mut Rng,
        class: Class,
        cx: f32,
        cy: f32,
        r0: f32,
        around: f32,
        contrast: f32,
    ) -> Self {
        let tau = std::f32::consts::TAU;
        let malignant = class == Class::Malignant;
        // Benign masses are typically wider than tall; malignant ones often not.
        let aspect = if malignant {
            rng.uniform(0.75, 1.3)
        } else {
            rng.uniform(1.15, 1.8)
        };
        let angle = rng.uniform(-0.35, 0.35);
        let mut harmonics = Vec::new();
        let mut spikes = Vec::new();
        if malignant {
            for k in 2..=10 {
                let a = rng.uniform(0.02, 0.14) / (k as f32).powf(0.7);
                harmonics.push((k as f32, a, rng.uniform(0.0, tau)));
            }
            if rng.chance(0.7) {
                for _ in 0..(6 + rng.below(11)) {
                    spikes.push((
                        rng.uniform(0.0, tau),
                        rng.uniform(0.15, 0.55),
                        rng.uniform(150.0, 900.0),
                    ));
                }
            }
        } else if rng.chance(0.5) {
            // Macro-lobulated: two to four gentle lobes.
            let k = 2 + rng.below(3);
            harmonics.push((k as f32, rng.uniform(0.06, 0.15), rng.uniform(0.0, tau)));
            harmonics.push((
                k as f32 * 2.0,
                rng.uniform(0.0, 0.04),
                rng.uniform(0.0, tau),
            ));
        } else {
            // Oval with a slight asymmetry.
            harmonics.push((2.0, rng.uniform(0.0, 0.04), rng.uniform(0.0, tau)));
            harmonics.push((3.0, rng.uniform(0.0, 0.02), rng.uniform(0.0, tau)));
        }
        // Cysts are (almost) anechoic: set apart by the contrast the caller drew.
        let cystic = contrast < Self::CYST;
        let echo = around * contrast;
        let heterogeneity = if malignant {
            rng.uniform(0.2, 0.5)
        } else {
            rng.uniform(0.0, 0.25)
        };
        let rim = if malignant {
            rng.chance(0.5)
                .then(|| (rng.uniform(0.1, 0.25), rng.uniform(0.4, 0.9)))
        } else {
            rng.chance(0.4)
                .then(|| (rng.uniform(0.03, 0.07), rng.uniform(0.5, 1.2)))
        };
        let posterior = if malignant {
            if rng.chance(0.7) {
                rng.uniform(0.15, 0.45)
            } else {
                rng.uniform(0.9, 1.2)
            }
        } else if cystic || rng.chance(0.5) {
            rng.uniform(1.6, 2.6)
        } else {
            rng.uniform(0.85, 1.15)
        };
        let (sin_t, cos_t) = angle.sin_cos();
        Lesion {
            cx,
            cy,
            ax: r0 * aspect.sqrt(),
            ay: r0 / aspect.sqrt(),
            cos_t,
            sin_t,
            harmonics,
            spikes,
            echo,
            heterogeneity,
            rim,
            posterior,
        }
    }

    /// Largest extent from the centre, for a bounding box.
    fn reach(&self) -> f32 {
        let h: f32 = self.harmonics.iter().map(|h| h.1).sum();
        let s = self.spikes.iter().map(|s| s.1).fold(0.0, f32::max);
        let rim = self.rim.map_or(0.0, |r| r.0);
        self.ax.max(self.ay) * (1.0 + h + s) * (1.0 + rim) + 0.01
    }

    /// r / r(θ) at a point (u, v): below 1 inside the lesion, 1 on its outline.
    fn radial(&self, u: f32, v: f32) -> f32 {
        let (dx, dy) = (u - self.cx, v - self.cy);
        let x = (self.cos_t * dx + self.sin_t * dy) / self.ax;
        let y = (-self.sin_t * dx + self.cos_t * dy) / self.ay;
        let r = (x * x + y * y).sqrt();
        if r < 1e-6 {
            return 0.0;
        }
        let th = y.atan2(x);
        let mut edge = 1.0;
        for &(k, a, p) in &self.harmonics {
            edge += a * (k * th + p).cos();
        }
        for &(t, len, sharp) in &self.spikes {
            let c = (th - t).cos();
            if c > 0.9 {
                edge += len * c.powf(sharp);
            }
        }
        r / edge.max(0.2)
    }
}

/// Reflects an index into [0, n) (mirror without repeating the edge), so the
/// speckle statistics stay uniform up to the border.
fn mirror(i: isize, n: usize) -> usize {
    let n = n as isize;
    let mut i = i;
    if n == 1 {
        return 0;
    }
    loop {
        if i < 0 {
            i = -i;
        } else if i >= n {
            i = 2 * n - 2 - i;
        } else {
            return i as usize;
        }
    }
}

/// Normalised Gaussian taps for a standard deviation of `s` pixels.
fn gaussian_taps(s: f32) -> Vec<f32> {
    let r = (3.0 * s).ceil().max(1.0) as isize;
    let k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * s * s)).exp())
        .collect();
    let sum: f32 = k.iter().sum();
    k.into_iter().map(|v| v / sum).collect()
}

/// Separable Gaussian blur of a plane, in place: `sx[y]` pixels along row y (the
/// lateral beam width, which changes with depth), `sy` pixels down the columns.
/// Returns, per row, Σw² of the 2-D kernel: the factor by which blurring white noise
/// shrinks its variance.
fn beam_blur(data: &mut [f32], w: usize, h: usize, sx: &[f32], sy: f32) -> Vec<f32> {
    let ky = gaussian_taps(sy);
    let ry = (ky.len() / 2) as isize;
    let ky_energy: f32 = ky.iter().map(|v| v * v).sum();
    let mut tmp = vec![0.0f32; w * h];
    let mut energy = Vec::with_capacity(h);
    for y in 0..h {
        let kx = gaussian_taps(sx[y]);
        let rx = (kx.len() / 2) as isize;
        energy.push(kx.iter().map(|v| v * v).sum::<f32>() * ky_energy);
        let row = &data[y * w..(y + 1) * w];
        for x in 0..w {
            let mut acc = 0.0;
            for (j, &kv) in kx.iter().enumerate() {
                acc += kv * row[mirror(x as isize + j as isize - rx, w)];
            }
            tmp[y * w + x] = acc;
        }
    }
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (j, &kv) in ky.iter().enumerate() {
                acc += kv * tmp[mirror(y as isize + j as isize - ry, h) * w + x];
            }
            data[y * w + x] = acc;
        }
    }
    energy
}

/// The side at which phantoms are formed before they are area-averaged down to a
/// smaller requested size (larger ones are formed at their own size).
pub const NATIVE_SIZE: usize = 256;

/// Generates phantom `index` of the series `seed` at size×size.
pub fn generate_phantom(seed: u64, index: u64, size: usize) -> Phantom {
    assert!(size >= 8, "phantoms need at least 8×8 pixels");
    let class = phantom_class(seed, index);
    let mut rng = Rng::from_parts(&[seed, index, 0x5948]);
    let s = size.max(NATIVE_SIZE);
    let sf = s as f32;
    let tau = std::f32::consts::TAU;
    // Field of view (depth = width), mm.
    let fov_mm = rng.uniform(30.0, 50.0);
    let homogeneous = rng.chance(0.25);

    // --- Tissue layers, depths in units of the image height. ---
    let skin = rng.uniform(0.015, 0.035);
    let skin_w = rng.uniform(0.008, 0.014);
    let fat_base = rng.uniform(0.12, 0.25);
    let gland_base = fat_base + rng.uniform(0.25, 0.40);
    let muscle_base = gland_base + rng.uniform(0.10, 0.20);
    let (fat_wave, gland_wave, muscle_wave) = (
        Wave::new(&mut rng, 0.03, 3),
        Wave::new(&mut rng, 0.06, 3),
        Wave::new(&mut rng, 0.03, 2),
    );
    let fat_echo = rng.uniform(0.10, 0.22);
    let gland_echo = rng.uniform(0.6, 1.0);
    let muscle_echo = rng.uniform(0.2, 0.4);
    let deep_echo = rng.uniform(0.03, 0.09);
    let tissue_echo = rng.uniform(0.3, 0.8);
    let ligaments: Vec<(f32, Wave, f32)> = (0..(2 + rng.below(3)))
        .map(|_| {
            (
                rng.uniform(0.2, 0.9),
                Wave::new(&mut rng, 0.08, 2),
                rng.uniform(0.6, 1.4),
            )
        })
        .collect();
    // Gland texture (and the smooth variation of homogeneous tissue): a few random
    // plane waves.
    let texture: Vec<(f32, f32, f32, f32)> = (0..5)
        .map(|_| {
            let th = rng.uniform(0.0, tau);
            let f = rng.uniform(3.0, 9.0);
            (
                f * th.cos(),
                f * th.sin(),
                rng.uniform(0.0, tau),
                rng.uniform(0.05, 0.12),
            )
        })
        .collect();
    let striation_f = rng.uniform(25.0, 45.0);

    let col: Vec<[f32; 4]> = (0..s)
        .map(|x| {
            let u = (x as f32 + 0.5) / sf;
            let fat = fat_base + fat_wave.at(u);
            let gland = gland_base + gland_wave.at(u);
            let muscle = (muscle_base + muscle_wave.at(u)).max(gland + 0.05);
            [u, fat.max(skin + 0.05), gland.max(fat + 0.08), muscle]
        })
        .collect();

    let mut echo = vec![0.0f32; s * s];
    for y in 0..s {
        let v = (y as f32 + 0.5) / sf;
        for x in 0..s {
            let [u, fat, gland, muscle] = col[x];
            let t: f32 = texture
                .iter()
                .map(|&(fx, fy, p, a)| a * (tau * (fx * u + fy * v) + p).sin())
                .sum();
            let e = if homogeneous {
                tissue_echo * (1.0 + 0.5 * t)
            } else if v < skin - skin_w {
                0.02 // coupling gel
            } else if v < skin + skin_w {
                1.0
            } else if v < fat {
                let mut e = fat_echo;
                for (frac, wave, strength) in &ligaments {
                    let lv = skin + (fat - skin) * frac + wave.at(u);
                    let d = (v - lv) / 0.006;
                    e += fat_echo * strength * 2.0 * (-d * d).exp();
                }
                e
            } else if v < gland {
                gland_echo * (1.0 + t)
            } else if v < muscle {
                let st = (tau * striation_f * v + 3.0 * u).sin();
                muscle_echo * (1.0 + 0.35 * st)
            } else {
                deep_echo
            };
            echo[y * s + x] = e;
        }
    }

    // --- The lesion. ---
    let mut lesion_at = None;
    let mut lesion_mm = None;
    if class != Class::Normal {
        // 3–20 mm across, log-uniform; r0 the mean radius as a fraction of the side.
        let diameter_mm = (rng.uniform(3f32.ln(), 20f32.ln())).exp();
        let r0 = 0.5 * diameter_mm / fov_mm;
        lesion_mm = Some(diameter_mm);
        let margin = (r0 * 1.3 + 0.02).min(0.45);
        let cx = rng.uniform(margin.min(0.5), (1.0 - margin).max(0.5));
        let cxi = ((cx * sf) as usize).min(s - 1);
        let [_, fat, gland, _] = col[cxi];
        let cy = if homogeneous {
            rng.uniform(0.1 + r0, 0.9 - r0)
        } else if rng.chance(0.75) {
            fat + (gland - fat) * rng.uniform(0.3, 0.7)
        } else {
            rng.uniform(skin + 0.05 + r0, gland)
        };
        let cy = cy.clamp(margin.min(0.5), (1.0 - margin).max(0.5));
        // The tissue around the lesion: the mean echogenicity over a box twice its size.
        let (bx0, bx1) = (
            ((cx - 2.0 * r0) * sf).max(0.0) as usize,
            ((cx + 2.0 * r0) * sf).min(sf) as usize,
        );
        let (by0, by1) = (
            ((cy - 2.0 * r0) * sf).max(0.0) as usize,
            ((cy + 2.0 * r0) * sf).min(sf) as usize,
        );
        let (mut sum, mut n) = (0.0f32, 0usize);
        for y in by0..by1.max(by0 + 1).min(s) {
            for x in bx0..bx1.max(bx0 + 1).min(s) {
                sum += echo[y * s + x];
                n += 1;
            }
        }
        let around = sum / n.max(1) as f32;
        let cyst_like = class == Class::Benign && rng.chance(0.3);
        let contrast_db = if cyst_like {
            rng.uniform(-45.0, -32.0)
        } else if class == Class::Benign && rng.chance(0.1) {
            rng.uniform(5.0, 10.0)
        } else {
            rng.uniform(-24.0, -6.0)
        };
        let contrast = 10f32.powf(contrast_db / 20.0);
        lesion_at = Some(Lesion::new(&mut rng, class, cx, cy, r0, around, contrast));
    }
    if let Some(lesion) = &lesion_at {
        let reach = lesion.reach();
        let x0 = (((lesion.cx - reach) * sf).floor().max(0.0)) as usize;
        let x1 = (((lesion.cx + reach) * sf).ceil() as usize).min(s);
        let y0 = (((lesion.cy - reach) * sf).floor().max(0.0)) as usize;
        let y1 = (((lesion.cy + reach) * sf).ceil() as usize).min(s);
        let het = Wave::new(&mut rng, 1.0, 3);
        let mut inside = vec![false; s * s];
        let mut bottom: Vec<Option<usize>> = vec![None; s];
        for y in y0..y1 {
            let v = (y as f32 + 0.5) / sf;
            for (x, low) in bottom.iter_mut().enumerate().take(x1).skip(x0) {
                let u = (x as f32 + 0.5) / sf;
                let q = lesion.radial(u, v);
                let i = y * s + x;
                if q < 1.0 {
                    inside[i] = true;
                    let h = 1.0 + lesion.heterogeneity * 0.5 * het.at(u * 3.0 + v * 2.0);
                    echo[i] = lesion.echo * h.max(0.2);
                    *low = Some(y);
                } else if let Some((width, strength)) = lesion.rim
                    && q < 1.0 + width
                {
                    let t = (q - 1.0) / width;
                    echo[i] *= 1.0 + strength * (1.0 - t);
                }
            }
        }
        // Posterior enhancement / shadow below each column the lesion occupies,
        // blurred laterally so the shadow edge is soft.
        let mut weight: Vec<f32> = bottom
            .iter()
            .map(|b| if b.is_some() { 1.0 } else { 0.0 })
            .collect();
        let r = (0.02 * sf).ceil() as usize;
        for _ in 0..2 {
            weight = (0..s)
                .map(|x| {
                    let (a, b) = (x.saturating_sub(r), (x + r + 1).min(s));
                    weight[a..b].iter().sum::<f32>() / (b - a) as f32
                })
                .collect();
        }
        let deepest = bottom.iter().flatten().copied().max().unwrap_or(0);
        let ramp = 0.04 * sf;
        for x in 0..s {
            if weight[x] <= 0.0 {
                continue;
            }
            let b = bottom[x].unwrap_or(deepest);
            for y in b + 1..s {
                let t = 1.0 - (-((y - b) as f32) / ramp).exp();
                let gain = 1.0 + (lesion.posterior - 1.0) * weight[x] * t;
                let i = y * s + x;
                if !inside[i] {
                    echo[i] *= gain;
                }
            }
        }
    }

    // --- Attenuation with depth (the time-gain compensation comes after the noise). ---
    let attenuation = rng.uniform(1.0, 3.5);
    let compensated = rng.uniform(0.6, 1.0);
    for y in 0..s {
        let g = (-attenuation * (y as f32 + 0.5) / sf).exp();
        for e in &mut echo[y * s..(y + 1) * s] {
            *e *= g;
        }
    }

    // --- Speckle: complex Gaussian scattering, beam (PSF), noise, envelope. ---
    let mm_per_px = fov_mm / sf;
    let focus = rng.uniform(0.3, 0.7);
    let depth_of_field = rng.uniform(0.1, 0.5);
    let lateral_mm = rng.uniform(0.15, 0.5);
    let axial_mm = rng.uniform(0.07, 0.2);
    let psf_x: Vec<f32> = (0..s)
        .map(|y| {
            let d = ((y as f32 + 0.5) / sf - focus) / depth_of_field;
            (lateral_mm * (1.0 + d * d).sqrt() / mm_per_px).max(0.5)
        })
        .collect();
    let psf_y = (axial_mm / mm_per_px).max(0.5);
    let mut re = vec![0.0f32; s * s];
    let mut im = vec![0.0f32; s * s];
    for i in 0..s * s {
        let (a, b) = rng.normal_pair();
        let amp = echo[i];
        re[i] = a * amp;
        im[i] = b * amp;
    }
    let energy = beam_blur(&mut re, s, s, &psf_x, psf_y);
    beam_blur(&mut im, s, s, &psf_x, psf_y);
    let noise = 10f32.powf(rng.uniform(-60.0, -42.0) / 20.0);
    let range_db = rng.uniform(40.0, 60.0);
    let gain_db = rng.uniform(-5.0, 3.0);
    let mut db_image = vec![0.0f32; s * s];
    for (y, e) in energy.iter().enumerate() {
        // Blurring shrinks the noise variance by Σw²; undo it so the envelope of a
        // unit-echo region has Rayleigh scale 1 whatever the PSF.
        let norm = 1.0 / e.sqrt();
        let tgc = (compensated * attenuation * (y as f32 + 0.5) / sf).exp();
        for x in 0..s {
            let i = y * s + x;
            let (n1, n2) = rng.normal_pair();
            let (a, b) = (re[i] * norm + noise * n1, im[i] * norm + noise * n2);
            let env = (a * a + b * b).sqrt() * tgc + 1e-6;
            // 0 dB at twice the mean envelope of a unit-echo region.
            let db = 20.0 * (env / 2.5).log10() + gain_db;
            db_image[i] = ((db + range_db) / range_db).clamp(0.0, 1.0);
        }
    }
    let mut image = GrayF32::from_vec(s, s, db_image);
    if size < s {
        image = resize_gray(&image, size, size);
    }
    for v in &mut image.data {
        *v = (v.clamp(0.0, 1.0) * 255.0).round() / 255.0;
    }

    // --- The mask at the output's pixel centres. ---
    let mut mask = GrayF32::filled(size, size, 0.0);
    if let Some(lesion) = &lesion_at {
        let zf = size as f32;
        for y in 0..size {
            let v = (y as f32 + 0.5) / zf;
            for x in 0..size {
                let u = (x as f32 + 0.5) / zf;
                if lesion.radial(u, v) < 1.0 {
                    mask.data[y * size + x] = 1.0;
                }
            }
        }
    }
    Phantom {
        size,
        image,
        mask,
        class,
        fov_mm,
        lesion_mm,
    }
}

/// What [`write_phantoms`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SynthSummary {
    pub benign: usize,
    pub malignant: usize,
    pub normal: usize,
    pub files: Vec<PathBuf>,
}

/// Writes `count` phantoms in the BUSI layout under `out`
/// (`benign/benign (1).png` + `benign/benign (1)_mask.png`, …), calling `tick`
/// once per image. Numbering is per class, in index order.
pub fn write_phantoms(
    out: &Path,
    count: usize,
    size: usize,
    seed: u64,
    tick: &(dyn Fn() + Sync),
) -> Result<SynthSummary, DataError> {
    if size < 8 {
        return Err(DataError::InvalidParameter {
            what: "size",
            why: format!("{size} is too small; phantoms need at least 8 pixels"),
        });
    }
    for c in [Class::Benign, Class::Malignant, Class::Normal] {
        let d = out.join(c.as_str());
        std::fs::create_dir_all(&d).map_err(|e| DataError::io(&d, e))?;
    }
    let mut summary = SynthSummary::default();
    let jobs: Vec<(u64, PathBuf, PathBuf)> = (0..count as u64)
        .map(|i| {
            let class = phantom_class(seed, i);
            let n = match class {
                Class::Benign => &mut summary.benign,
                Class::Malignant => &mut summary.malignant,
                _ => &mut summary.normal,
            };
            *n += 1;
            let dir = out.join(class.as_str());
            let stem = format!("{} ({})", class.as_str(), *n);
            (
                i,
                dir.join(format!("{stem}.png")),
                dir.join(format!("{stem}_mask.png")),
            )
        })
        .collect();
    let results = parallel_map(&jobs, 0, |(i, img_path, mask_path)| {
        let p = generate_phantom(seed, *i, size);
        let r = save_gray_u8(img_path, size, size, p.image.to_u8())
            .and_then(|()| save_mask(mask_path, &p.mask));
        tick();
        r
    });
    for ((_, a, b), r) in jobs.into_iter().zip(results) {
        r?;
        summary.files.push(a);
        summary.files.push(b);
    }
    Ok(summary)
}
