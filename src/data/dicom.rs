//! Single-frame DICOM images, as ultrasound machines export them: 8- or 16-bit
//! MONOCHROME1/2, RGB and YBR_FULL / YBR_FULL_422, uncompressed (either VR, either byte
//! order), RLE or JPEG baseline. Decoding is the `dicom-pixeldata` crate's (modality and
//! VOI LUTs applied for grey images); rca-gpu then takes the luma as for any colour image.
//! Uncompressed YBR_FULL_422 stores two pixels as Y Y Cb Cr, which that crate does not
//! unpack; its luma is simply the Y samples, read here.
//!
//! A file is DICOM when it has the "DICM" marker after its 128-byte preamble, whatever its
//! name (many exports have no extension), or when it is named `.dcm` / `.dicom`.

use std::io::Read;
use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions, Tag};
use dicom_pixeldata::{ConvertOptions, PixelDecoder, VoiLutOption, WindowLevel};
use image::DynamicImage;

use super::error::DataError;
use super::image_io::GrayF32;

/// Extensions that name DICOM files (lower case).
pub const DICOM_EXTENSIONS: &[&str] = &["dcm", "dicom"];

/// True if the file starts with a DICOM preamble and "DICM", or has a DICOM extension.
pub fn is_dicom(path: &Path) -> bool {
    let named = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| DICOM_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
    named || has_dicom_marker(path)
}

fn has_dicom_marker(path: &Path) -> bool {
    let mut head = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head[128..] == b"DICM"
}

fn bad(path: &Path, why: impl std::fmt::Display) -> DataError {
    DataError::Dicom {
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

fn open(path: &Path) -> Result<DefaultDicomObject, DataError> {
    OpenFileOptions::new()
        .open_file(path)
        .map_err(|e| bad(path, format!("not a readable DICOM file ({e})")))
}

fn int(obj: &DefaultDicomObject, path: &Path, tag: Tag, name: &str) -> Result<u32, DataError> {
    obj.element(tag)
        .map_err(|_| bad(path, format!("it has no {name}")))?
        .to_int::<u32>()
        .map_err(|e| bad(path, format!("its {name} is not a number ({e})")))
}

fn text(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
    obj.element(tag)
        .ok()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().trim_end_matches('\0').to_string())
}

/// (columns, rows) of a DICOM image, from its header.
pub fn dicom_size(path: &Path) -> Result<(u32, u32), DataError> {
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| bad(path, format!("not a readable DICOM file ({e})")))?;
    Ok((
        int(&obj, path, tags::COLUMNS, "Columns")?,
        int(&obj, path, tags::ROWS, "Rows")?,
    ))
}

/// Decodes a single-frame DICOM image. `max_pixels` bounds what its header may declare
/// before any pixel is decoded.
pub fn decode_dicom(path: &Path, max_pixels: u64) -> Result<DecodedDicom, DataError> {
    let obj = open(path)?;
    let cols = int(&obj, path, tags::COLUMNS, "Columns")?;
    let rows = int(&obj, path, tags::ROWS, "Rows")?;
    if cols == 0 || rows == 0 {
        return Err(DataError::EmptyImage {
            path: path.to_path_buf(),
        });
    }
    if u64::from(cols) * u64::from(rows) > max_pixels {
        return Err(DataError::TooManyPixels {
            path: path.to_path_buf(),
            w: cols,
            h: rows,
            max_megapixels: max_pixels / 1_000_000,
        });
    }
    let frames = text(&obj, tags::NUMBER_OF_FRAMES)
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1);
    if frames != 1 {
        return Err(bad(
            path,
            format!(
                "it holds {frames} frames (a cine loop); rca-gpu segments single images: export one frame"
            ),
        ));
    }
    let pi = text(&obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default();
    let pixel = obj
        .element(tags::PIXEL_DATA)
        .map_err(|_| bad(path, "it has no pixel data (not an image)"))?;
    let encapsulated = pixel.value().fragments().is_some();
    if pi == "YBR_FULL_422" && !encapsulated {
        let bits = int(&obj, path, tags::BITS_ALLOCATED, "Bits Allocated")?;
        let bytes = pixel
            .to_bytes()
            .map_err(|e| bad(path, format!("its pixel data cannot be read ({e})")))?;
        let (w, h) = (cols as usize, rows as usize);
        if bits != 8 || w % 2 != 0 || bytes.len() < w * h * 2 {
            return Err(bad(
                path,
                format!(
                    "YBR_FULL_422 pixel data of {} bytes for {w}×{h} at {bits} bits (expected 8 bits, an even width and {} bytes)",
                    bytes.len(),
                    w * h * 2
                ),
            ));
        }
        // Y0 Y1 Cb Cr per pair of pixels: keep the Ys.
        let data = bytes[..w * h * 2]
            .chunks_exact(4)
            .flat_map(|q| [f32::from(q[0]) / 255.0, f32::from(q[1]) / 255.0])
            .collect();
        return Ok(DecodedDicom::Gray(GrayF32::from_vec(w, h, data)));
    }
    let decoded = obj
        .decode_pixel_data()
        .map_err(|e| bad(path, format!("its pixel data cannot be decoded ({e})")))?;
    // Grey images: the VOI LUT or window the file carries (what its viewer shows); without
    // one, the stored values as they are (8 bits) or scaled from their stored range (the
    // crate would min-max stretch each image instead, changing its contrast).
    let options = if decoded.samples_per_pixel() != 1
        || decoded.window().ok().flatten().is_some()
        || decoded.voi_lut_sequence().ok().flatten().is_some()
    {
        ConvertOptions::new()
    } else if decoded.bits_stored() <= 8 {
        ConvertOptions::new().with_voi_lut(VoiLutOption::Identity)
    } else {
        let levels = 2f64.powi(i32::from(decoded.bits_stored()));
        ConvertOptions::new().with_voi_lut(VoiLutOption::Custom(WindowLevel {
            center: levels / 2.0,
            width: levels,
        }))
    };
    let img = decoded
        .to_dynamic_image_with_options(0, &options)
        .map_err(|e| {
            bad(
                path,
                format!("its pixels cannot be converted to an image ({e})"),
            )
        })?;
    Ok(DecodedDicom::Image(img))
}

/// What [`decode_dicom`] gives: an image (as any other file's), or directly grey values.
pub enum DecodedDicom {
    Image(DynamicImage),
    Gray(GrayF32),
}
