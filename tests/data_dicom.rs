//! DICOM input: every photometric interpretation and encoding of the fixtures
//! (`tools/make_dicom_fixtures.py`) loads as the grey picture it holds, a cine loop and a
//! damaged file are refused naming the file, and `infer` segments a `.dcm` like a PNG.

use std::path::{Path, PathBuf};
use std::process::Command;

use rca_gpu::data::dicom::is_dicom;
use rca_gpu::data::image_io::image_size;
use rca_gpu::data::{GrayF32, load_image_gray};

use crate::common::{self, BIN};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dicom")
        .join(name)
}

fn source() -> GrayF32 {
    load_image_gray(&fixture("source.png")).unwrap()
}

/// (largest, mean) absolute difference in grey levels (0–255) between two images.
fn diff(a: &GrayF32, b: &GrayF32) -> (f32, f32) {
    assert_eq!((a.w, a.h), (b.w, b.h));
    let d: Vec<f32> = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (x - y).abs() * 255.0)
        .collect();
    (
        d.iter().copied().fold(0.0, f32::max),
        d.iter().sum::<f32>() / d.len() as f32,
    )
}

#[test]
fn uncompressed_grey_and_ybr_files_hold_exactly_the_source_picture() {
    let src = source();
    assert_eq!((src.w, src.h), (120, 96));
    for name in [
        "mono2.dcm",
        "mono2_implicit.dcm",
        "ybr_full_422.dcm",
        "mono1_16bit.dcm",
    ] {
        let path = fixture(name);
        assert!(is_dicom(&path));
        assert_eq!(image_size(&path).unwrap(), (120, 96), "{name}");
        let img = load_image_gray(&path).unwrap();
        let (max, _) = diff(&img, &src);
        // 12 bits stored in mono1_16bit: a level is 255/4095 of an 8-bit one.
        let tol = if name.contains("16bit") { 0.51 } else { 0.0 };
        assert!(max <= tol, "{name}: differs by up to {max} grey levels");
    }
}

#[test]
fn an_rgb_file_is_its_luma_and_keeps_grey_exactly() {
    let src = source();
    let img = load_image_gray(&fixture("rgb.dcm")).unwrap();
    let mark: Vec<usize> = std::fs::read_to_string(fixture("MARK.txt"))
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let yellow = (0.299 * 255.0 + 0.587 * 230.0) / 255.0;
    for y in 0..src.h {
        for x in 0..src.w {
            let inside = (mark[0]..mark[2]).contains(&x) && (mark[1]..mark[3]).contains(&y);
            let want = if inside { yellow } else { src.get(x, y) };
            assert!(
                (img.get(x, y) - want).abs() < 1e-6,
                "({x}, {y}): {} vs {want}",
                img.get(x, y)
            );
        }
    }
}

#[test]
fn jpeg_baseline_files_decode_within_jpeg_error() {
    let src = source();
    for name in ["jpeg_ybr_full_422.dcm", "jpeg_mono2.dcm"] {
        let img = load_image_gray(&fixture(name)).unwrap();
        let (max, mean) = diff(&img, &src);
        // Quality 95: a grey level or two on average, more only at sharp speckle edges.
        assert!(
            mean < 2.0 && max < 40.0,
            "{name}: mean {mean}, max {max} grey levels"
        );
    }
}

#[test]
fn a_cine_loop_or_a_damaged_file_is_refused_naming_it() {
    let err = load_image_gray(&fixture("multiframe.dcm"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("multiframe.dcm") && err.contains("2 frames"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.dcm");
    let bytes = std::fs::read(fixture("mono2.dcm")).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_image_gray(&cut).unwrap_err().to_string();
    assert!(err.contains("cut.dcm"), "{err}");
    // A DICOM without an extension is recognised by its content.
    let bare = dir.path().join("IM0001");
    std::fs::copy(fixture("mono2.dcm"), &bare).unwrap();
    assert!(is_dicom(&bare));
    assert_eq!(
        diff(&load_image_gray(&bare).unwrap(), &source()),
        (0.0, 0.0)
    );
}

/// Byte offset of the first explicit-VR element header with this tag and VR.
fn element_at(bytes: &[u8], group: u16, element: u16, vr: &[u8; 2]) -> usize {
    let mut head = Vec::new();
    head.extend_from_slice(&group.to_le_bytes());
    head.extend_from_slice(&element.to_le_bytes());
    head.extend_from_slice(vr);
    bytes
        .windows(head.len())
        .position(|w| w == head.as_slice())
        .expect("element not found")
}

#[test]
fn an_element_longer_than_the_file_is_refused_before_it_is_allocated() {
    let dir = tempfile::tempdir().unwrap();
    // Pixel data (4-byte length) and Patient's Name (2-byte length) claiming more bytes than
    // follow; the first would make the DICOM crate allocate 3.7 GB. As the fuzzer found it,
    // in a data element of the data set, and in the file meta group.
    for (name, group, element, vr, at) in [
        ("pixels.dcm", 0x7FE0, 0x0010, b"OB", 8),
        ("name.dcm", 0x0010, 0x0010, b"PN", 6),
        ("meta.dcm", 0x0002, 0x0010, b"UI", 6),
    ] {
        let mut bytes = std::fs::read(fixture("mono2.dcm")).unwrap();
        let pos = element_at(&bytes, group, element, vr) + at;
        if at == 8 {
            bytes[pos..pos + 4].copy_from_slice(&0xDCDC_DCDCu32.to_le_bytes());
        } else {
            bytes[pos..pos + 2].copy_from_slice(&0xFFF0u16.to_le_bytes());
            bytes.truncate(pos + 2 + 1000);
        }
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        for err in [
            load_image_gray(&path).unwrap_err().to_string(),
            image_size(&path).unwrap_err().to_string(),
        ] {
            assert!(
                err.contains(name)
                    && err.contains(&format!("({group:04X},{element:04X}) declares")),
                "{err}"
            );
        }
    }
    // A length the parser reads differently from a plain walk over the headers: it reads a
    // UL value of 6 bytes as one number and goes on 2 bytes early, so its next header is
    // (0009,7FE0), of 754 MB, made of the value's tail and the pixel data's header. The
    // fuzzer found this drift (its file is in the corpus).
    let mut bytes = std::fs::read(fixture("mono2_implicit.dcm")).unwrap();
    let pixels = bytes
        .windows(4)
        .rposition(|w| w == [0xE0, 0x7F, 0x10, 0x00])
        .unwrap();
    let group_length = [9, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 9, 0];
    bytes.splice(pixels..pixels, group_length);
    let path = dir.path().join("drift.dcm");
    std::fs::write(&path, &bytes).unwrap();
    for err in [
        load_image_gray(&path).unwrap_err().to_string(),
        image_size(&path).unwrap_err().to_string(),
    ] {
        assert!(
            err.contains("drift.dcm") && err.contains("(0009,7FE0) declares 754974736 bytes"),
            "{err}"
        );
    }
    // Every fixture, implicit VR and encapsulated JPEG included, passes the check.
    for f in [
        "mono2_implicit.dcm",
        "jpeg_mono2.dcm",
        "jpeg_ybr_full_422.dcm",
        "rgb.dcm",
    ] {
        load_image_gray(&fixture(f)).unwrap();
    }
}

#[test]
fn infer_segments_dicom_files_at_their_size() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = Command::new(BIN)
        .arg("infer")
        .arg(fixture("jpeg_ybr_full_422.dcm"))
        .arg(fixture("mono2.dcm"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for stem in ["jpeg_ybr_full_422", "mono2"] {
        let m = image::open(out.join(format!("{stem}_mask.png"))).unwrap();
        assert_eq!((m.width(), m.height()), (120, 96));
    }
}
