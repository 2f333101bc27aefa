//! Builders for small data-set folders used by the `data_*` integration tests:
//! images and masks in the pixel formats real downloads contain (8-bit grey,
//! RGB, RGBA, 16-bit grey, JPEG, BMP, TIFF), plus deliberately broken files.

#![allow(dead_code)]

use std::path::Path;

use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage, Rgba, RgbaImage};

/// A smooth, non-symmetric test picture: value depends on (x, y, seed).
pub fn picture(w: u32, h: u32, seed: u32) -> GrayImage {
    ImageBuffer::from_fn(w, h, |x, y| {
        let s = seed as f32;
        let v = 0.5
            + 0.25 * ((x as f32 / w as f32) * (3.0 + s) + s).sin()
            + 0.25 * ((y as f32 / h as f32) * (2.0 + 0.7 * s)).cos();
        Luma([(v.clamp(0.0, 1.0) * 255.0) as u8])
    })
}

/// A mask with a filled rectangle [x0, x1) × [y0, y1).
pub fn rect_mask(w: u32, h: u32, x0: u32, y0: u32, x1: u32, y1: u32) -> GrayImage {
    ImageBuffer::from_fn(w, h, |x, y| {
        Luma([if x >= x0 && x < x1 && y >= y0 && y < y1 {
            255
        } else {
            0
        }])
    })
}

pub fn mkdir(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
}

pub fn save_gray(p: &Path, img: &GrayImage) {
    mkdir(p.parent().unwrap());
    img.save(p).unwrap();
}

pub fn save_rgb(p: &Path, img: &GrayImage) {
    mkdir(p.parent().unwrap());
    let rgb: RgbImage = ImageBuffer::from_fn(img.width(), img.height(), |x, y| {
        let v = img.get_pixel(x, y)[0];
        Rgb([v, v, v])
    });
    rgb.save(p).unwrap();
}

/// An RGBA mask the way some BUSI masks come: red lesion on black, opaque.
pub fn save_rgba_mask(p: &Path, mask: &GrayImage) {
    mkdir(p.parent().unwrap());
    let rgba: RgbaImage = ImageBuffer::from_fn(mask.width(), mask.height(), |x, y| {
        let on = mask.get_pixel(x, y)[0] > 0;
        Rgba([if on { 200 } else { 0 }, 0, 0, 255])
    });
    rgba.save(p).unwrap();
}

/// A 16-bit grey PNG with values v·257 (so it reads back as the 8-bit picture).
pub fn save_gray16(p: &Path, img: &GrayImage) {
    mkdir(p.parent().unwrap());
    let g16: ImageBuffer<Luma<u16>, Vec<u16>> =
        ImageBuffer::from_fn(img.width(), img.height(), |x, y| {
            Luma([img.get_pixel(x, y)[0] as u16 * 257])
        });
    g16.save(p).unwrap();
}

/// A file with an image extension but garbage content.
pub fn save_corrupt(p: &Path) {
    mkdir(p.parent().unwrap());
    std::fs::write(p, b"\x89PNG\r\n\x1a\nthis is not really a png").unwrap();
}

pub fn touch(p: &Path, text: &str) {
    mkdir(p.parent().unwrap());
    std::fs::write(p, text).unwrap();
}

/// A small, valid BUSI folder: 2 benign (one with an extra mask, one RGBA mask,
/// one 16-bit image), 1 malignant, 1 normal; names with spaces and parentheses.
pub fn busi(root: &Path) {
    let (w, h) = (40, 30);
    save_rgb(&root.join("benign/benign (1).png"), &picture(w, h, 1));
    save_gray(
        &root.join("benign/benign (1)_mask.png"),
        &rect_mask(w, h, 5, 5, 15, 15),
    );
    save_gray(
        &root.join("benign/benign (1)_mask_1.png"),
        &rect_mask(w, h, 20, 10, 30, 20),
    );
    save_gray16(&root.join("benign/benign (2).png"), &picture(w, h, 2));
    save_rgba_mask(
        &root.join("benign/benign (2)_mask.png"),
        &rect_mask(w, h, 10, 10, 20, 20),
    );
    save_gray(
        &root.join("malignant/malignant (1).png"),
        &picture(50, 44, 3),
    );
    save_gray(
        &root.join("malignant/malignant (1)_mask.png"),
        &rect_mask(50, 44, 0, 0, 25, 22),
    );
    save_gray(&root.join("normal/normal (1).png"), &picture(w, h, 4));
    save_gray(
        &root.join("normal/normal (1)_mask.png"),
        &rect_mask(w, h, 0, 0, 0, 0),
    );
}

/// A small BUSIS folder with the given folder names; masks carry `suffix`.
pub fn busis(root: &Path, img_dir: &str, gt_dir: &str, suffix: &str) {
    for i in 1..=3u32 {
        save_gray(
            &root.join(img_dir).join(format!("case{i:03}.png")),
            &picture(32, 32, i),
        );
        save_gray(
            &root.join(gt_dir).join(format!("case{i:03}{suffix}.png")),
            &rect_mask(32, 32, 4, 4, 10 + i, 12),
        );
    }
}

/// A small pairs folder.
pub fn pairs(root: &Path) {
    for i in 1..=3u32 {
        save_gray(&root.join(format!("images/p{i}.png")), &picture(24, 20, i));
        save_gray(
            &root.join(format!("masks/p{i}.png")),
            &rect_mask(24, 20, 2, 2, 8, 8),
        );
    }
}
