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
    check_lengths(path)?;
    OpenFileOptions::new()
        .open_file(path)
        .map_err(|e| bad(path, format!("not a readable DICOM file ({e})")))
}

/// Refuses a file that declares an element longer than the bytes after it. The DICOM crate
/// allocates (and zeroes) each element's declared length before reading it, so a corrupt
/// header of a 1 kB file would take gigabytes; found by the `image_file` fuzz target.
fn check_lengths(path: &Path) -> Result<(), DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    lengths::check(&bytes).map_err(|why| bad(path, why))
}

/// The guard reads the file as the DICOM crate will, with the crate's own readers: the file
/// meta group as long as its group length says, then the data set token by token, so it
/// sees every header the parser will (a walk of its own once missed one the parser read
/// differently: the fuzzer found it). Each declared length is checked against the bytes
/// left before the value is read. Where the crate's reader stops with an error, the guard
/// stops too and leaves the error for the parser to report.
mod lengths {
    use std::cell::Cell;
    use std::io::Read;

    use dicom_encoding::transfer_syntax::{Codec, TransferSyntaxIndex};
    use dicom_object::{FileMetaTable, Tag};
    use dicom_parser::DataSetReader;
    use dicom_parser::dataset::DataToken;
    use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

    /// VRs with a 2-byte length in explicit VR; every other one, unknown ones included (the
    /// meta reader reads those as UN), has 2 reserved bytes and a 4-byte length.
    const SHORT_VRS: [&[u8; 2]; 21] = [
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN",
        b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
    ];

    fn too_long(tag: Tag, len: u32, left: usize) -> String {
        format!(
            "its element ({:04X},{:04X}) declares {len} bytes, but only {left} follow \
             (a corrupt or truncated file)",
            tag.0, tag.1
        )
    }

    /// The bytes after the preamble and "DICM" as the crate finds them; None if the file has
    /// no marker (the parser refuses it).
    fn after_marker(b: &[u8]) -> Option<&[u8]> {
        if b.len() >= 132 && &b[128..132] == b"DICM" {
            Some(&b[132..])
        } else if b.starts_with(b"DICM") {
            Some(&b[4..])
        } else {
            None
        }
    }

    /// The file meta group, explicit VR little endian, read as `FileMetaTable` reads it: the
    /// group length element, then elements (of any group) until that many bytes are read.
    fn check_meta(b: &[u8]) -> Result<(), String> {
        let mut pos = 0usize;
        let u16_at = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let mut group_length = None;
        let mut read = 0u32;
        while group_length.is_none_or(|g| read < g) {
            if b.len() - pos < 8 {
                return Ok(());
            }
            let tag = Tag(u16_at(pos), u16_at(pos + 2));
            let vr = [b[pos + 4], b[pos + 5]];
            let (len, header) = if SHORT_VRS.contains(&&vr) {
                (u32::from(u16_at(pos + 6)), 8)
            } else if b.len() - pos >= 12 {
                (u32_at(pos + 8), 12)
            } else {
                return Ok(());
            };
            pos += header;
            if len == u32::MAX {
                return Ok(());
            }
            if len as usize > b.len() - pos {
                return Err(too_long(tag, len, b.len() - pos));
            }
            match group_length {
                None if tag == Tag(0x0002, 0x0000) && len == 4 => {
                    group_length = Some(u32_at(pos));
                }
                None => return Ok(()),
                Some(_) => read = read.saturating_add(header as u32).saturating_add(len),
            }
            pos += len as usize;
        }
        Ok(())
    }

    /// A byte slice that tells how many bytes are left to read.
    struct Tracked<'a> {
        rest: &'a [u8],
        left: &'a Cell<usize>,
    }

    impl Read for Tracked<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.rest.read(buf)?;
            self.left.set(self.rest.len());
            Ok(n)
        }
    }

    pub fn check(b: &[u8]) -> Result<(), String> {
        let Some(mut rest) = after_marker(b) else {
            return Ok(());
        };
        check_meta(rest)?;
        let Ok(meta) = FileMetaTable::from_reader((&b"DICM"[..]).chain(&mut rest)) else {
            return Ok(());
        };
        let Some(ts) = TransferSyntaxRegistry.get(meta.transfer_syntax()) else {
            return Ok(());
        };
        // A deflated data set: the crate is built without inflating, and refuses it.
        if matches!(ts.codec(), Codec::Dataset(_)) {
            return Ok(());
        }
        let left = Cell::new(rest.len());
        let Ok(tokens) = DataSetReader::new_with_ts(Tracked { rest, left: &left }, ts) else {
            return Ok(());
        };
        for token in tokens {
            // The header comes before its value is read (and allocated): an element's, or a
            // fragment's or item's.
            let (tag, len) = match token {
                Ok(DataToken::ElementHeader(h)) => (h.tag, h.len),
                Ok(DataToken::ItemStart { len }) => (Tag(0xFFFE, 0xE000), len),
                Ok(_) => continue,
                Err(_) => break,
            };
            if let Some(len) = len.get()
                && len as usize > left.get()
            {
                return Err(too_long(tag, len, left.get()));
            }
        }
        Ok(())
    }
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
    check_lengths(path)?;
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
