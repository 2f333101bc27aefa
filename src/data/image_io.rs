//! Reading and writing images: any PNG, BMP, JPEG or TIFF file (grey, grey+alpha,
//! RGB or RGBA; 8-bit, 16-bit or float) becomes one grey `f32` plane in [0, 1].
//!
//! Images are converted to luma with the Rec. 601 weights (0.299, 0.587, 0.114),
//! the weights OpenCV and PIL use, so that our inputs match what the paper's Keras
//! pipeline would have fed the network. Values are divided by the type's maximum
//! (255 or 65535), never min–max stretched: the brightness of an ultrasound image
//! carries meaning (gain settings, hypoechoic lesions).
//!
//! Masks are binarised: a pixel is foreground when any colour channel is non-zero.
//! Two exceptions keep real-world masks correct: a fully transparent pixel
//! (alpha = 0) is background, and JPEG masks are thresholded at half range
//! because lossy compression leaves faint non-zero noise around every edge.

use super::dicom::{DecodedDicom, decode_dicom, dicom_size, is_dicom};
use std::path::Path;

use image::{DynamicImage, ImageFormat, ImageReader};

use super::DataError;

/// A single-channel `f32` image, row-major, `data.len() == w * h`.
#[derive(Debug, Clone, PartialEq)]
pub struct GrayF32 {
    pub w: usize,
    pub h: usize,
    pub data: Vec<f32>,
}

impl GrayF32 {
    /// A `w`×`h` image filled with `value`.
    pub fn filled(w: usize, h: usize, value: f32) -> Self {
        GrayF32 {
            w,
            h,
            data: vec![value; w * h],
        }
    }

    /// Wraps existing row-major data; panics if the length does not match
    /// (a broken invariant of the caller, not a user error).
    pub fn from_vec(w: usize, h: usize, data: Vec<f32>) -> Self {
        assert_eq!(
            data.len(),
            w * h,
            "GrayF32::from_vec: {w}×{h} needs {} values",
            w * h
        );
        GrayF32 { w, h, data }
    }

    /// Pixel at column `x`, row `y`.
    pub fn get(&self, x: usize, y: usize) -> f32 {
        self.data[y * self.w + x]
    }

    /// Quantises to 8-bit grey (values clamped to [0, 1], rounded).
    pub fn to_u8(&self) -> Vec<u8> {
        self.data
            .iter()
            .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect()
    }
}

/// Which file extensions the loaders treat as images (lower case; DICOM's included).
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "bmp", "jpg", "jpeg", "tif", "tiff", "dcm", "dicom"];

/// True if the path has one of [`IMAGE_EXTENSIONS`] (case-insensitive).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

/// The most pixels an input may declare: 100 megapixels, ten times a 3000×3000 scan and
/// more than the 9000×9000 images users have fed it.
const MAX_PIXELS: u64 = 100_000_000;

/// Decodes a file, guessing the format from its content first (a `.png` that is
/// really a JPEG still loads) and from the extension second.
fn decode(path: &Path) -> Result<(DynamicImage, Option<ImageFormat>), DataError> {
    let open = || -> Result<ImageReader<_>, DataError> {
        ImageReader::open(path)
            .map_err(|e| DataError::io(path, e))?
            .with_guessed_format()
            .map_err(|e| DataError::io(path, e))
    };
    // The header first: a file that declares an absurd size is refused before anything
    // is allocated for it.
    let (w, h) = open()?
        .into_dimensions()
        .map_err(|source| DataError::Decode {
            path: path.to_path_buf(),
            source,
        })?;
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(DataError::TooManyPixels {
            path: path.to_path_buf(),
            w,
            h,
            max_megapixels: MAX_PIXELS / 1_000_000,
        });
    }
    let reader = open()?;
    let format = reader.format();
    let img = reader.decode().map_err(|source| DataError::Decode {
        path: path.to_path_buf(),
        source,
    })?;
    if img.width() == 0 || img.height() == 0 {
        return Err(DataError::EmptyImage {
            path: path.to_path_buf(),
        });
    }
    Ok((img, format))
}

/// Loads an image file as grey luma in [0, 1]. This is the entry point of the
/// inference path as well as of the data-set loaders. DICOM files are recognised by
/// their content or extension ([`super::dicom`]).
pub fn load_image_gray(path: &Path) -> Result<GrayF32, DataError> {
    if is_dicom(path) {
        return Ok(match decode_dicom(path, MAX_PIXELS)? {
            DecodedDicom::Image(img) => dynamic_to_gray(&img),
            DecodedDicom::Gray(g) => g,
        });
    }
    let (img, _) = decode(path)?;
    Ok(dynamic_to_gray(&img))
}

/// Converts a decoded image to grey luma in [0, 1] (alpha ignored: ultrasound
/// images carry no meaningful transparency).
pub fn dynamic_to_gray(img: &DynamicImage) -> GrayF32 {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let data = match img {
        DynamicImage::ImageLuma8(g) => g.as_raw().iter().map(|&v| v as f32 / 255.0).collect(),
        DynamicImage::ImageLumaA8(g) => g
            .as_raw()
            .chunks_exact(2)
            .map(|p| p[0] as f32 / 255.0)
            .collect(),
        DynamicImage::ImageLuma16(g) => g.as_raw().iter().map(|&v| v as f32 / 65535.0).collect(),
        DynamicImage::ImageLumaA16(g) => g
            .as_raw()
            .chunks_exact(2)
            .map(|p| p[0] as f32 / 65535.0)
            .collect(),
        DynamicImage::ImageRgb8(g) => g.as_raw().chunks_exact(3).map(|p| luma(p, 255.0)).collect(),
        DynamicImage::ImageRgba8(g) => g.as_raw().chunks_exact(4).map(|p| luma(p, 255.0)).collect(),
        DynamicImage::ImageRgb16(g) => g
            .as_raw()
            .chunks_exact(3)
            .map(|p| luma(p, 65535.0))
            .collect(),
        DynamicImage::ImageRgba16(g) => g
            .as_raw()
            .chunks_exact(4)
            .map(|p| luma(p, 65535.0))
            .collect(),
        other => other
            .to_rgb32f()
            .as_raw()
            .chunks_exact(3)
            // Float images may hold anything: NaN counts as black.
            .map(|p| {
                let y = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
                if y.is_nan() { 0.0 } else { y.clamp(0.0, 1.0) }
            })
            .collect(),
    };
    GrayF32 { w, h, data }
}

fn luma<T: Copy + Into<f32>>(p: &[T], max: f32) -> f32 {
    let (r, g, b) = (p[0].into(), p[1].into(), p[2].into());
    // Grey stored as RGB must come back unchanged, so skip the weighted sum
    // (whose weights sum to 1 only up to rounding).
    if r == g && g == b {
        return r / max;
    }
    ((0.299 * r + 0.587 * g + 0.114 * b) / max).clamp(0.0, 1.0)
}

/// Loads a mask file as a binary plane (0.0 or 1.0).
pub fn load_mask(path: &Path) -> Result<GrayF32, DataError> {
    if is_dicom(path) {
        return Ok(match decode_dicom(path, MAX_PIXELS)? {
            DecodedDicom::Image(img) => dynamic_to_mask(&img, false),
            DecodedDicom::Gray(g) => {
                let data = g
                    .data
                    .iter()
                    .map(|&v| f32::from(u8::from(v > 0.0)))
                    .collect();
                GrayF32::from_vec(g.w, g.h, data)
            }
        });
    }
    let (img, format) = decode(path)?;
    let lossy = matches!(format, Some(ImageFormat::Jpeg));
    Ok(dynamic_to_mask(&img, lossy))
}

/// Binarises a decoded mask (see the module docs for the rule), straight from the decoded
/// samples: no f32 RGBA copy (16 bytes a pixel, 1.6 GB at the 100-megapixel limit).
pub fn dynamic_to_mask(img: &DynamicImage, lossy: bool) -> GrayF32 {
    let (w, h) = (img.width() as usize, img.height() as usize);
    // Lossless masks: any non-zero channel. Lossy ones: above half range.
    let cut = if lossy { 0.5 } else { 0.0 };
    let data = match img {
        DynamicImage::ImageLuma8(g) => mask_of(g.as_raw(), 1, false, 255.0, cut),
        DynamicImage::ImageLumaA8(g) => mask_of(g.as_raw(), 2, true, 255.0, cut),
        DynamicImage::ImageRgb8(g) => mask_of(g.as_raw(), 3, false, 255.0, cut),
        DynamicImage::ImageRgba8(g) => mask_of(g.as_raw(), 4, true, 255.0, cut),
        DynamicImage::ImageLuma16(g) => mask_of(g.as_raw(), 1, false, 65535.0, cut),
        DynamicImage::ImageLumaA16(g) => mask_of(g.as_raw(), 2, true, 65535.0, cut),
        DynamicImage::ImageRgb16(g) => mask_of(g.as_raw(), 3, false, 65535.0, cut),
        DynamicImage::ImageRgba16(g) => mask_of(g.as_raw(), 4, true, 65535.0, cut),
        DynamicImage::ImageRgb32F(g) => mask_of(g.as_raw(), 3, false, 1.0, cut),
        DynamicImage::ImageRgba32F(g) => mask_of(g.as_raw(), 4, true, 1.0, cut),
        other => mask_of(
            other.to_rgba32f().as_raw(),
            4,
            other.color().has_alpha(),
            1.0,
            cut,
        ),
    };
    GrayF32 { w, h, data }
}

/// The mask of interleaved samples (`channels` per pixel, colour first, alpha last when
/// `has_alpha`), each sample divided by `max`: a pixel is lesion when it is visible (alpha
/// above 0) and a colour channel is above `cut`. A mask drawn only in the alpha channel
/// (black strokes on a transparent canvas) would come out empty under that rule; then the
/// alpha above `cut` is the mask, provided the alpha varies.
fn mask_of<T: Copy + Into<f32>>(
    raw: &[T],
    channels: usize,
    has_alpha: bool,
    max: f32,
    cut: f32,
) -> Vec<f32> {
    let colours = if has_alpha { channels - 1 } else { channels };
    let alpha = |p: &[T]| {
        if has_alpha {
            p[channels - 1].into() / max
        } else {
            1.0
        }
    };
    let data: Vec<f32> = raw
        .chunks_exact(channels)
        .map(|p| {
            let on = p[..colours].iter().any(|&v| v.into() / max > cut);
            if alpha(p) > 0.0 && on { 1.0 } else { 0.0 }
        })
        .collect();
    if !has_alpha || data.iter().any(|&v| v != 0.0) {
        return data;
    }
    let (lo, hi) = raw
        .chunks_exact(channels)
        .map(alpha)
        .fold((f32::MAX, f32::MIN), |(lo, hi), a| (lo.min(a), hi.max(a)));
    if hi > lo {
        return raw
            .chunks_exact(channels)
            .map(|p| if alpha(p) > cut { 1.0 } else { 0.0 })
            .collect();
    }
    data
}

/// Reads only the header of an image file to get its size.
pub fn image_size(path: &Path) -> Result<(u32, u32), DataError> {
    if is_dicom(path) {
        return dicom_size(path);
    }
    image::image_dimensions(path).map_err(|source| DataError::Decode {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes 8-bit grey pixels as a PNG (or any format the extension names).
pub fn save_gray_u8(path: &Path, w: usize, h: usize, pixels: Vec<u8>) -> Result<(), DataError> {
    let img = image::GrayImage::from_raw(w as u32, h as u32, pixels)
        .expect("save_gray_u8: pixel count matches w×h");
    img.save(path).map_err(|source| DataError::Encode {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a [0, 1] grey image as 8-bit.
pub fn save_gray(path: &Path, img: &GrayF32) -> Result<(), DataError> {
    save_gray_u8(path, img.w, img.h, img.to_u8())
}

/// Writes a binary mask as 8-bit 0/255, the convention of BUSI.
pub fn save_mask(path: &Path, mask: &GrayF32) -> Result<(), DataError> {
    let px = mask
        .data
        .iter()
        .map(|&v| if v >= 0.5 { 255 } else { 0 })
        .collect();
    save_gray_u8(path, mask.w, mask.h, px)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayAlphaImage, LumaA, Rgb, RgbImage, Rgba, RgbaImage};

    #[test]
    fn a_file_declaring_a_huge_image_is_refused_before_decoding_naming_its_size() {
        // A valid PNG header for 100,000 × 100,000 grey pixels and a token of data.
        fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
            let mut c = (data.len() as u32).to_be_bytes().to_vec();
            c.extend_from_slice(kind);
            c.extend_from_slice(data);
            // The chunks' CRC-32 over type and data (PNG's polynomial).
            let mut crc = !0u32;
            for &b in kind.iter().chain(data) {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 {
                        0xEDB8_8320 ^ (crc >> 1)
                    } else {
                        crc >> 1
                    };
                }
            }
            c.extend_from_slice(&(!crc).to_be_bytes());
            c
        }
        let mut ihdr = 100_000u32.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"IHDR", &ihdr));
        png.extend(chunk(
            b"IDAT",
            &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        ));
        png.extend(chunk(b"IEND", &[]));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.png");
        std::fs::write(&path, png).unwrap();
        let e = load_image_gray(&path).unwrap_err().to_string();
        assert!(e.contains("100000×100000") && e.contains("huge.png"), "{e}");
    }

    #[test]
    fn rgb_converts_with_rec601_luma() {
        let img = RgbImage::from_pixel(1, 1, Rgb([255, 0, 0]));
        let g = dynamic_to_gray(&DynamicImage::ImageRgb8(img));
        assert!((g.data[0] - 0.299).abs() < 1e-6);
    }

    #[test]
    fn grey_stored_as_rgb_is_unchanged() {
        let img = RgbImage::from_pixel(1, 1, Rgb([77, 77, 77]));
        let g = dynamic_to_gray(&DynamicImage::ImageRgb8(img));
        assert_eq!(g.data[0], 77.0 / 255.0);
    }

    #[test]
    fn transparent_mask_pixels_are_background() {
        let mut img = RgbaImage::from_pixel(2, 1, Rgba([255, 255, 255, 0]));
        img.put_pixel(1, 0, Rgba([255, 255, 255, 255]));
        let m = dynamic_to_mask(&DynamicImage::ImageRgba8(img), false);
        assert_eq!(m.data, vec![0.0, 1.0]);
    }

    #[test]
    fn mask_drawn_only_in_alpha_uses_the_alpha() {
        let mut img = GrayAlphaImage::from_pixel(3, 1, LumaA([0, 0]));
        img.put_pixel(2, 0, LumaA([0, 255]));
        let m = dynamic_to_mask(&DynamicImage::ImageLumaA8(img), false);
        assert_eq!(m.data, vec![0.0, 0.0, 1.0]);
    }

    #[test]
    fn faint_values_count_as_foreground_in_lossless_masks_only() {
        let img = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(1, 1, image::Luma([3])));
        assert_eq!(dynamic_to_mask(&img, false).data, vec![1.0]);
        assert_eq!(dynamic_to_mask(&img, true).data, vec![0.0]);
    }
}
