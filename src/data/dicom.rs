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

/// A walk over a DICOM file's elements that checks every declared length against the bytes
/// left, descending into sequences, items and encapsulated pixel data as the parser will.
/// A deflated data set it leaves to the parser; it is a guard, not a reader.
mod lengths {
    use dicom_object::Tag;

    const UNDEFINED: u32 = u32::MAX;
    /// VRs with a 2-byte length in explicit VR; every other one, unknown ones included (the
    /// parser reads those as UN), has 2 reserved bytes and a 4-byte length.
    const SHORT_VRS: [&[u8; 2]; 21] = [
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN",
        b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
    ];

    /// An open undefined-length value, closed by a sequence delimiter.
    enum Open {
        /// A sequence (or an undefined-length UN, read as an implicit-VR sequence); the
        /// encoding to return to.
        Sequence { explicit: bool },
        /// Encapsulated pixel data: items are raw fragments.
        Fragments,
    }

    struct Walk<'a> {
        b: &'a [u8],
        pos: usize,
        explicit: bool,
        big_endian: bool,
    }

    impl Walk<'_> {
        fn u16_at(&self, at: usize) -> u16 {
            let v = [self.b[at], self.b[at + 1]];
            if self.big_endian {
                u16::from_be_bytes(v)
            } else {
                u16::from_le_bytes(v)
            }
        }

        fn u32_at(&self, at: usize) -> u32 {
            let v = [self.b[at], self.b[at + 1], self.b[at + 2], self.b[at + 3]];
            if self.big_endian {
                u32::from_be_bytes(v)
            } else {
                u32::from_le_bytes(v)
            }
        }

        fn left(&self) -> usize {
            self.b.len() - self.pos
        }

        /// The next element's tag, VR (explicit VR only) and length, with `pos` moved past
        /// its header; None where fewer bytes than a header are left.
        fn header(&mut self) -> Option<(Tag, Option<[u8; 2]>, u32)> {
            if self.left() < 8 {
                return None;
            }
            let tag = Tag(self.u16_at(self.pos), self.u16_at(self.pos + 2));
            if tag.0 == 0xFFFE || !self.explicit {
                let len = self.u32_at(self.pos + 4);
                self.pos += 8;
                return Some((tag, None, len));
            }
            let vr = [self.b[self.pos + 4], self.b[self.pos + 5]];
            if SHORT_VRS.contains(&&vr) {
                let len = u32::from(self.u16_at(self.pos + 6));
                self.pos += 8;
                Some((tag, Some(vr), len))
            } else {
                if self.left() < 12 {
                    return None;
                }
                let len = self.u32_at(self.pos + 8);
                self.pos += 12;
                Some((tag, Some(vr), len))
            }
        }

        fn fits(&self, tag: Tag, len: u32) -> Result<(), String> {
            if len as usize > self.left() {
                return Err(format!(
                    "its element ({:04X},{:04X}) declares {len} bytes, but only {} follow \
                     (a corrupt or truncated file)",
                    tag.0,
                    tag.1,
                    self.left()
                ));
            }
            Ok(())
        }
    }

    pub fn check(b: &[u8]) -> Result<(), String> {
        let start = if b.len() >= 132 && &b[128..132] == b"DICM" {
            132
        } else if b.starts_with(b"DICM") {
            4
        } else {
            return Ok(());
        };
        let mut w = Walk {
            b,
            pos: start,
            explicit: true,
            big_endian: false,
        };
        // The file meta group: explicit VR little endian, defined lengths.
        let mut syntax = String::new();
        while w.left() >= 8 && w.u16_at(w.pos) == 0x0002 {
            let Some((tag, _, len)) = w.header() else {
                return Ok(());
            };
            w.fits(tag, len)?;
            if tag == Tag(0x0002, 0x0010) {
                let value = &b[w.pos..w.pos + len as usize];
                syntax = String::from_utf8_lossy(value)
                    .trim_end_matches(['\0', ' '])
                    .to_string();
            }
            w.pos += len as usize;
        }
        match syntax.as_str() {
            "1.2.840.10008.1.2" => w.explicit = false,
            "1.2.840.10008.1.2.2" => w.big_endian = true,
            // Deflated: the lengths count the inflated stream.
            "1.2.840.10008.1.2.1.99" => return Ok(()),
            _ => {}
        }
        let mut open: Vec<Open> = Vec::new();
        while let Some((tag, vr, len)) = w.header() {
            if tag.0 == 0xFFFE {
                match tag.1 {
                    0xE000 if matches!(open.last(), Some(Open::Fragments)) => {
                        w.fits(tag, len)?;
                        w.pos += len as usize;
                    }
                    // An item of a sequence: its elements follow (checked one by one).
                    0xE000 if len != UNDEFINED => w.fits(tag, len)?,
                    0xE0DD => match open.pop() {
                        Some(Open::Sequence { explicit }) => w.explicit = explicit,
                        Some(Open::Fragments) | None => {}
                    },
                    _ => {}
                }
                continue;
            }
            if len == UNDEFINED {
                if tag == Tag(0x7FE0, 0x0010) {
                    open.push(Open::Fragments);
                } else {
                    open.push(Open::Sequence {
                        explicit: w.explicit,
                    });
                    // An undefined-length UN holds an implicit-VR sequence.
                    if vr.is_some_and(|vr| &vr != b"SQ") {
                        w.explicit = false;
                    }
                }
                continue;
            }
            w.fits(tag, len)?;
            // Implicit VR names no VR: a value that opens with an item tag is a sequence.
            let is_sequence = match vr {
                Some(vr) => &vr == b"SQ",
                None => w.left() >= 4 && (w.u16_at(w.pos), w.u16_at(w.pos + 2)) == (0xFFFE, 0xE000),
            };
            if !is_sequence {
                w.pos += len as usize;
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
