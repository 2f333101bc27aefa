//! Preprocessing shared by training, evaluation and inference: grey, resized
//! to S×S, values in [0, 1].
//!
//! Resizing is separable and chosen per axis: area averaging where an axis
//! shrinks (every source pixel contributes by its overlap, so speckle does not
//! alias into moiré) and bilinear interpolation (pixel centres aligned, as in
//! OpenCV and PIL) where it grows. Masks use nearest neighbour or area averaging
//! followed by a 0.5 threshold; the latter keeps thin structures proportionate
//! when a 700-pixel mask shrinks to 256.

use serde::{Deserialize, Serialize};

use super::GrayF32;

/// How a binary mask is resized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaskResize {
    /// Nearest source pixel (pixel-centre aligned).
    Nearest,
    /// The image's resampling (area/bilinear) then `>= 0.5`.
    #[default]
    AreaThreshold,
}

/// How one axis is resampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AxisMode {
    /// Area when shrinking, bilinear when enlarging.
    Auto,
    Bilinear,
    Nearest,
}

/// For each output index along one axis, the first source index and the weights
/// of the consecutive source pixels it reads.
struct AxisWeights {
    taps: Vec<(usize, Vec<f32>)>,
}

fn axis_weights(src: usize, dst: usize, mode: AxisMode) -> AxisWeights {
    let scale = src as f64 / dst as f64;
    let mode = match mode {
        AxisMode::Auto if dst < src => None, // area
        AxisMode::Auto => Some(AxisMode::Bilinear),
        m => Some(m),
    };
    let taps = (0..dst)
        .map(|o| match mode {
            None => {
                let lo = o as f64 * scale;
                let hi = ((o + 1) as f64 * scale).min(src as f64);
                let first = lo.floor() as usize;
                let last = (hi.ceil() as usize).min(src);
                let w = (first..last)
                    .map(|i| {
                        let overlap = (hi.min(i as f64 + 1.0) - lo.max(i as f64)).max(0.0);
                        (overlap / (hi - lo)) as f32
                    })
                    .collect();
                (first, w)
            }
            Some(AxisMode::Nearest) => {
                let i = (((o as f64 + 0.5) * scale).floor() as usize).min(src - 1);
                (i, vec![1.0])
            }
            _ => {
                let x = ((o as f64 + 0.5) * scale - 0.5).clamp(0.0, (src - 1) as f64);
                let i0 = x.floor() as usize;
                let f = (x - i0 as f64) as f32;
                if i0 + 1 < src && f > 0.0 {
                    (i0, vec![1.0 - f, f])
                } else {
                    (i0, vec![1.0])
                }
            }
        })
        .collect();
    AxisWeights { taps }
}

fn resize_with(img: &GrayF32, w: usize, h: usize, mode: AxisMode) -> GrayF32 {
    assert!(
        w > 0 && h > 0 && img.w > 0 && img.h > 0,
        "resize of an empty image"
    );
    if img.w == w && img.h == h {
        return img.clone();
    }
    let wx = axis_weights(img.w, w, mode);
    let wy = axis_weights(img.h, h, mode);
    // Horizontal pass: img.h rows of w values.
    let mut tmp = vec![0.0f32; img.h * w];
    for y in 0..img.h {
        let row = &img.data[y * img.w..(y + 1) * img.w];
        let out = &mut tmp[y * w..(y + 1) * w];
        for (o, (first, ws)) in wx.taps.iter().enumerate() {
            out[o] = ws.iter().zip(&row[*first..]).map(|(a, b)| a * b).sum();
        }
    }
    // Vertical pass.
    let mut data = vec![0.0f32; w * h];
    for (o, (first, ws)) in wy.taps.iter().enumerate() {
        let out = &mut data[o * w..(o + 1) * w];
        for (k, &wt) in ws.iter().enumerate() {
            let src = &tmp[(first + k) * w..(first + k + 1) * w];
            for (d, s) in out.iter_mut().zip(src) {
                *d += wt * s;
            }
        }
    }
    GrayF32 { w, h, data }
}

/// Resizes a grey image: area averaging along axes that shrink, bilinear along
/// axes that grow.
pub fn resize_gray(img: &GrayF32, w: usize, h: usize) -> GrayF32 {
    resize_with(img, w, h, AxisMode::Auto)
}

/// Resizes with bilinear interpolation on both axes, whatever the direction.
pub fn resize_bilinear(img: &GrayF32, w: usize, h: usize) -> GrayF32 {
    resize_with(img, w, h, AxisMode::Bilinear)
}

/// The network input for one image: `size`×`size` values in [0, 1], row-major.
/// Training, evaluation and inference all call this, so they cannot disagree.
pub fn preprocess_image(img: &GrayF32, size: usize) -> Vec<f32> {
    let mut out = resize_gray(img, size, size).data;
    // Bilinear never overshoots, but float rounding in the weights can leave 1 + ε.
    for v in &mut out {
        *v = v.clamp(0.0, 1.0);
    }
    out
}

/// Resizes a binary mask to `w`×`h`; the result holds only 0.0 and 1.0.
pub fn resize_mask(mask: &GrayF32, w: usize, h: usize, mode: MaskResize) -> GrayF32 {
    let mut out = match mode {
        MaskResize::Nearest => resize_with(mask, w, h, AxisMode::Nearest),
        MaskResize::AreaThreshold => resize_with(mask, w, h, AxisMode::Auto),
    };
    for v in &mut out.data {
        // 0.5 - 1e-6: an area average of exactly half must count as foreground
        // even when the weights sum to 0.49999997.
        *v = if *v >= 0.5 - 1e-6 { 1.0 } else { 0.0 };
    }
    out
}

/// The training target for one mask: `size`×`size` values, each 0.0 or 1.0.
pub fn preprocess_mask(mask: &GrayF32, size: usize, mode: MaskResize) -> Vec<f32> {
    resize_mask(mask, size, size, mode).data
}

/// Brings a network probability map (`w`×`h`, usually S×S) back to the original
/// image size for inference output: bilinear where it grows, area where it
/// shrinks. Values stay in [0, 1]; threshold afterwards.
pub fn resize_probability(
    prob: &[f32],
    w: usize,
    h: usize,
    out_w: usize,
    out_h: usize,
) -> Vec<f32> {
    let img = GrayF32::from_vec(w, h, prob.to_vec());
    resize_gray(&img, out_w, out_h).data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: usize, h: usize) -> GrayF32 {
        GrayF32::from_vec(
            w,
            h,
            (0..w * h)
                .map(|i| (i % w) as f32 / (w - 1) as f32)
                .collect(),
        )
    }

    #[test]
    fn same_size_is_identity() {
        let img = ramp(7, 5);
        assert_eq!(resize_gray(&img, 7, 5), img);
    }

    #[test]
    fn halving_averages_two_by_two_blocks() {
        let img = GrayF32::from_vec(4, 2, vec![0.0, 1.0, 0.2, 0.4, 1.0, 0.0, 0.6, 0.8]);
        let out = resize_gray(&img, 2, 1);
        assert!((out.data[0] - 0.5).abs() < 1e-6);
        assert!((out.data[1] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn area_shrink_preserves_mean_for_non_integer_factors() {
        let img = ramp(300, 170);
        let out = resize_gray(&img, 256, 128);
        let m_in: f32 = img.data.iter().sum::<f32>() / img.data.len() as f32;
        let m_out: f32 = out.data.iter().sum::<f32>() / out.data.len() as f32;
        assert!((m_in - m_out).abs() < 1e-4);
    }

    #[test]
    fn bilinear_enlarge_of_constant_is_constant() {
        let img = GrayF32::filled(3, 3, 0.25);
        let out = resize_gray(&img, 10, 7);
        assert!(out.data.iter().all(|&v| (v - 0.25).abs() < 1e-6));
    }

    #[test]
    fn bilinear_enlarge_interpolates_between_centres() {
        let img = GrayF32::from_vec(2, 1, vec![0.0, 1.0]);
        let out = resize_gray(&img, 4, 1);
        // Centres of the 4 outputs map to source x = -0.25, 0.25, 0.75, 1.25.
        let want = [0.0, 0.25, 0.75, 1.0];
        for (a, b) in out.data.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{:?}", out.data);
        }
    }

    #[test]
    fn resized_masks_are_binary() {
        let mut m = GrayF32::filled(50, 40, 0.0);
        for y in 10..30 {
            for x in 5..27 {
                m.data[y * 50 + x] = 1.0;
            }
        }
        for mode in [MaskResize::Nearest, MaskResize::AreaThreshold] {
            for (w, h) in [(16, 16), (128, 96)] {
                let out = resize_mask(&m, w, h, mode);
                assert!(out.data.iter().all(|&v| v == 0.0 || v == 1.0));
                let frac = out.data.iter().sum::<f32>() / (w * h) as f32;
                assert!((frac - 0.22).abs() < 0.05, "{mode:?} {w}x{h} frac {frac}");
            }
        }
    }

    #[test]
    fn probability_map_returns_to_original_size() {
        let p = vec![0.5; 16 * 16];
        let out = resize_probability(&p, 16, 16, 37, 21);
        assert_eq!(out.len(), 37 * 21);
        assert!(out.iter().all(|&v| (v - 0.5).abs() < 1e-6));
    }
}
