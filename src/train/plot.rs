//! `curves.png` in the run folder: the training curves drawn with the `image` crate, no
//! font needed. Left panel: loss (train blue, validation orange), y from 0 to the largest
//! loss; right panel: Dice (train blue, validation orange), y from 0 to 1. x is the epoch,
//! the first at the left edge; light grid lines mark every quarter of the y range.

use std::path::Path;

use image::{Rgb, RgbImage};

use super::trainer::EpochRecord;

const W: u32 = 360;
const H: u32 = 240;
const PAD: i64 = 16;
const TRAIN: Rgb<u8> = Rgb([31, 119, 180]);
const VAL: Rgb<u8> = Rgb([255, 127, 14]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const AXIS: Rgb<u8> = Rgb([90, 90, 90]);

fn line(img: &mut RgbImage, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb<u8>) {
    // Bresenham, drawn 2 px thick so the curves read at a glance.
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let (mut x, mut y, mut err) = (x0, y0, dx + dy);
    loop {
        for (ox, oy) in [(0, 0), (1, 0), (0, 1)] {
            let (px, py) = (x + ox, y + oy);
            if (0..i64::from(img.width())).contains(&px)
                && (0..i64::from(img.height())).contains(&py)
            {
                img.put_pixel(px as u32, py as u32, c);
            }
        }
        if x == x1 && y == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

/// One panel at horizontal offset `x0`: the series scaled to [0, ymax].
fn panel(img: &mut RgbImage, x0: i64, series: &[(&[f64], Rgb<u8>)], ymax: f64) {
    let (left, right, top, bottom) = (x0 + PAD, x0 + i64::from(W) - PAD, PAD, i64::from(H) - PAD);
    for q in 0..=4 {
        let y = bottom - (bottom - top) * q / 4;
        line(img, (left, y), (right, y), GRID);
    }
    line(img, (left, top), (left, bottom), AXIS);
    line(img, (left, bottom), (right, bottom), AXIS);
    for (values, color) in series {
        let n = values.len();
        let pt = |i: usize, v: f64| {
            let fx = if n > 1 {
                i as f64 / (n - 1) as f64
            } else {
                0.5
            };
            let fy = (v / ymax).clamp(0.0, 1.0);
            (
                left + (fx * (right - left) as f64).round() as i64,
                bottom - (fy * (bottom - top) as f64).round() as i64,
            )
        };
        for i in 0..n {
            let a = pt(i, values[i]);
            let b = if i + 1 < n {
                pt(i + 1, values[i + 1])
            } else {
                a
            };
            line(img, a, b, *color);
        }
    }
}

/// Draw the history's curves into `path` (PNG).
pub fn write_curves(path: &Path, history: &[EpochRecord]) -> image::ImageResult<()> {
    let mut img = RgbImage::from_pixel(2 * W, H, Rgb([255, 255, 255]));
    let tl: Vec<f64> = history.iter().map(|r| r.train_loss).collect();
    let vl: Vec<f64> = history.iter().map(|r| r.val_loss).collect();
    let td: Vec<f64> = history.iter().map(|r| r.train_dice).collect();
    let vd: Vec<f64> = history.iter().map(|r| r.val_dice).collect();
    let ymax = tl
        .iter()
        .chain(&vl)
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        .max(1e-6);
    panel(&mut img, 0, &[(&tl, TRAIN), (&vl, VAL)], ymax);
    panel(&mut img, i64::from(W), &[(&td, TRAIN), (&vd, VAL)], 1.0);
    img.save(path)
}
