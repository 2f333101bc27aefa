//! `curves.png` in the run folder: the paper's Fig. 8 training curves, drawn with the
//! `image` crate and a built-in 5×7 pixel font, so no plotting crate and no font file is
//! needed.
//!
//! A grid of [`COLS`]×[`ROWS`] panels: loss, Dice, mIoU, precision, recall, MAE, AHD (in
//! pixels of the S×S masks), and a legend (training blue, validation orange). Each panel
//! has its title, y ticks at 0, half and the top of its range (0–1 for the ratios, 0 to the
//! largest value for loss, MAE and AHD), x ticks at the first and last epoch, and light grid
//! lines at every quarter of the y range. Epochs whose metric is missing (recorded before the
//! metric existed, so 0 in the history) are drawn as they are.

use std::path::Path;

use image::{Rgb, RgbImage};

use super::history::EpochRecord;

/// One panel's size in pixels.
pub const PANEL_W: u32 = 320;
pub const PANEL_H: u32 = 220;
/// Panels per row and rows.
pub const COLS: u32 = 4;
pub const ROWS: u32 = 2;
/// Left margin (room for the y tick labels), top (title), right, bottom (x ticks).
const LEFT: i64 = 80;
const TOP: i64 = 30;
const RIGHT: i64 = 14;
const BOTTOM: i64 = 30;
/// Text is drawn at twice the font's size: 10×14 px per character plus a 2 px gap.
const SCALE: i64 = 2;
const TRAIN: Rgb<u8> = Rgb([31, 119, 180]);
const VAL: Rgb<u8> = Rgb([255, 127, 14]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const AXIS: Rgb<u8> = Rgb([90, 90, 90]);
const TEXT: Rgb<u8> = Rgb([40, 40, 40]);

/// The glyphs the labels use: 7 rows of 5 pixels, `#` set.
#[rustfmt::skip]
const FONT: &[(char, [&str; 7])] = &[
    ('0', [" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "]),
    ('1', ["  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "]),
    ('2', [" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"]),
    ('3', [" ### ", "#   #", "    #", "  ## ", "    #", "#   #", " ### "]),
    ('4', ["   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "]),
    ('5', ["#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "]),
    ('6', ["  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "]),
    ('7', ["#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "]),
    ('8', [" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "]),
    ('9', [" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "]),
    ('.', ["     ", "     ", "     ", "     ", "     ", " ##  ", " ##  "]),
    ('-', ["     ", "     ", "     ", "#####", "     ", "     ", "     "]),
    ('(', ["   # ", "  #  ", " #   ", " #   ", " #   ", "  #  ", "   # "]),
    (')', [" #   ", "  #  ", "   # ", "   # ", "   # ", "  #  ", " #   "]),
    (' ', ["     ", "     ", "     ", "     ", "     ", "     ", "     "]),
    ('A', [" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"]),
    ('C', [" ### ", "#   #", "#    ", "#    ", "#    ", "#   #", " ### "]),
    ('D', ["#### ", "#   #", "#   #", "#   #", "#   #", "#   #", "#### "]),
    ('E', ["#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####"]),
    ('H', ["#   #", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"]),
    ('I', [" ### ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "]),
    ('L', ["#    ", "#    ", "#    ", "#    ", "#    ", "#    ", "#####"]),
    ('M', ["#   #", "## ##", "# # #", "# # #", "#   #", "#   #", "#   #"]),
    ('N', ["#   #", "#   #", "##  #", "# # #", "#  ##", "#   #", "#   #"]),
    ('O', [" ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "]),
    ('P', ["#### ", "#   #", "#   #", "#### ", "#    ", "#    ", "#    "]),
    ('R', ["#### ", "#   #", "#   #", "#### ", "# #  ", "#  # ", "#   #"]),
    ('S', [" ####", "#    ", "#    ", " ### ", "    #", "    #", "#### "]),
    ('T', ["#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "]),
    ('U', ["#   #", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "]),
    ('V', ["#   #", "#   #", "#   #", "#   #", "#   #", " # # ", "  #  "]),
    ('X', ["#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #"]),
    ('a', ["     ", "     ", " ### ", "    #", " ####", "#   #", " ####"]),
    ('c', ["     ", "     ", " ### ", "#    ", "#    ", "#   #", " ### "]),
    ('d', ["    #", "    #", " ####", "#   #", "#   #", "#   #", " ####"]),
    ('e', ["     ", "     ", " ### ", "#   #", "#####", "#    ", " ### "]),
    ('h', ["#    ", "#    ", "# ## ", "##  #", "#   #", "#   #", "#   #"]),
    ('i', ["  #  ", "     ", " ##  ", "  #  ", "  #  ", "  #  ", " ### "]),
    ('l', [" ##  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "]),
    ('m', ["     ", "     ", "## # ", "# # #", "# # #", "# # #", "# # #"]),
    ('n', ["     ", "     ", "# ## ", "##  #", "#   #", "#   #", "#   #"]),
    ('o', ["     ", "     ", " ### ", "#   #", "#   #", "#   #", " ### "]),
    ('p', ["     ", "     ", "#### ", "#   #", "#### ", "#    ", "#    "]),
    ('r', ["     ", "     ", "# ## ", "##  #", "#    ", "#    ", "#    "]),
    ('s', ["     ", "     ", " ####", "#    ", " ### ", "    #", "#### "]),
    ('t', [" #   ", " #   ", "###  ", " #   ", " #   ", " #  #", "  ## "]),
    ('v', ["     ", "     ", "#   #", "#   #", "#   #", " # # ", "  #  "]),
    ('x', ["     ", "     ", "#   #", " # # ", "  #  ", " # # ", "#   #"]),
];

fn glyph(c: char) -> Option<&'static [&'static str; 7]> {
    FONT.iter().find(|(g, _)| *g == c).map(|(_, rows)| rows)
}

/// Width in pixels of `text` as [`text`] draws it.
fn text_width(text: &str) -> i64 {
    text.chars().count() as i64 * 6 * SCALE
}

/// Draw `text` with its top-left corner at (x, y); characters without a glyph are blank.
fn text(img: &mut RgbImage, x: i64, y: i64, s: &str, c: Rgb<u8>) {
    for (k, ch) in s.chars().enumerate() {
        let Some(rows) = glyph(ch) else { continue };
        let x0 = x + k as i64 * 6 * SCALE;
        for (r, row) in rows.iter().enumerate() {
            for (col, px) in row.bytes().enumerate() {
                if px != b'#' {
                    continue;
                }
                for dy in 0..SCALE {
                    for dx in 0..SCALE {
                        put(
                            img,
                            x0 + col as i64 * SCALE + dx,
                            y + r as i64 * SCALE + dy,
                            c,
                        );
                    }
                }
            }
        }
    }
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if (0..i64::from(img.width())).contains(&x) && (0..i64::from(img.height())).contains(&y) {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn line(img: &mut RgbImage, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb<u8>) {
    // Bresenham, drawn 2 px thick so the curves read at a glance.
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let (mut x, mut y, mut err) = (x0, y0, dx + dy);
    loop {
        for (ox, oy) in [(0, 0), (1, 0), (0, 1)] {
            put(img, x + ox, y + oy, c);
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

/// A tick label: the value with three digits after its leading one, trailing zeros
/// dropped (0, 0.5, 12.5, 0.025).
fn tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let decimals = (2 - v.abs().log10().floor() as i64).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').into()
    } else {
        s
    }
}

/// The smallest of 1, 2, 2.5, 5 times a power of ten that is ≥ `v`, so that the ticks at
/// 0, half and the top read as round numbers.
fn nice_ceiling(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&c| c >= v * (1.0 - 1e-12))
        .unwrap_or(10.0 * p)
}

/// The top of a panel's y range: 1 for ratios, else the largest finite value rounded up
/// by [`nice_ceiling`] (at least a tiny positive number, so an all-zero series still draws).
fn top_of(series: &[&[f64]], ratio: bool) -> f64 {
    if ratio {
        return 1.0;
    }
    nice_ceiling(
        series
            .iter()
            .flat_map(|s| s.iter())
            .copied()
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max)
            .max(1e-6),
    )
}

/// One panel with its top-left corner at (x0, y0): title, axes, ticks and the curves,
/// training first so that validation is drawn on top.
fn panel(
    img: &mut RgbImage,
    (x0, y0): (i64, i64),
    title: &str,
    series: [(&[f64], Rgb<u8>); 2],
    ymax: f64,
    first_epoch: usize,
) {
    let (left, right) = (x0 + LEFT, x0 + i64::from(PANEL_W) - RIGHT);
    let (top, bottom) = (y0 + TOP, y0 + i64::from(PANEL_H) - BOTTOM);
    text(
        img,
        (left + right - text_width(title)) / 2,
        y0 + 6,
        title,
        TEXT,
    );
    for q in 0..=4 {
        let y = bottom - (bottom - top) * q / 4;
        line(img, (left, y), (right, y), GRID);
        if q % 2 == 0 {
            let label = tick(ymax * q as f64 / 4.0);
            text(img, left - 6 - text_width(&label), y - 7, &label, TEXT);
        }
    }
    line(img, (left, top), (left, bottom), AXIS);
    line(img, (left, bottom), (right, bottom), AXIS);
    let n = series[0].0.len();
    let last = (first_epoch + n.max(1) - 1).to_string();
    text(img, left, bottom + 8, &first_epoch.to_string(), TEXT);
    if n > 1 {
        text(img, right - text_width(&last), bottom + 8, &last, TEXT);
    }
    let label = "epoch";
    text(
        img,
        (left + right - text_width(label)) / 2,
        bottom + 8,
        label,
        AXIS,
    );
    for (values, color) in series {
        let n = values.len();
        let pt = |i: usize, v: f64| {
            let fx = if n > 1 {
                i as f64 / (n - 1) as f64
            } else {
                0.5
            };
            let fy = if v.is_finite() {
                (v / ymax).clamp(0.0, 1.0)
            } else {
                1.0
            };
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
            line(img, a, b, color);
        }
    }
}

/// The panels, in drawing order: title, training and validation series, ratio (0–1).
fn panels(h: &[EpochRecord]) -> Vec<(&'static str, Vec<f64>, Vec<f64>, bool)> {
    let col = |f: fn(&EpochRecord) -> f64| h.iter().map(f).collect::<Vec<_>>();
    vec![
        ("LOSS", col(|r| r.train_loss), col(|r| r.val_loss), false),
        ("DICE", col(|r| r.train_dice), col(|r| r.val_dice), true),
        ("mIoU", col(|r| r.train_miou), col(|r| r.val_miou), true),
        (
            "PRECISION",
            col(|r| r.train_precision),
            col(|r| r.val_precision),
            true,
        ),
        (
            "RECALL",
            col(|r| r.train_recall),
            col(|r| r.val_recall),
            true,
        ),
        ("MAE", col(|r| r.train_mae), col(|r| r.val_mae), false),
        ("AHD (px)", col(|r| r.train_ahd), col(|r| r.val_ahd), false),
    ]
}

/// Draw the history's curves into `path` (PNG).
pub fn write_curves(path: &Path, history: &[EpochRecord]) -> image::ImageResult<()> {
    let mut img = RgbImage::from_pixel(COLS * PANEL_W, ROWS * PANEL_H, Rgb([255, 255, 255]));
    let first = history.first().map_or(1, |r| r.epoch);
    let all = panels(history);
    for (k, (title, train, val, ratio)) in all.iter().enumerate() {
        let at = (
            (k as u32 % COLS * PANEL_W) as i64,
            (k as u32 / COLS * PANEL_H) as i64,
        );
        let ymax = top_of(&[train, val], *ratio);
        panel(
            &mut img,
            at,
            title,
            [(train, TRAIN), (val, VAL)],
            ymax,
            first,
        );
    }
    // The legend in the cell after the last panel.
    let k = all.len() as u32;
    let (x, y) = (
        i64::from(k % COLS * PANEL_W) + LEFT,
        i64::from(k / COLS * PANEL_H) + TOP + 20,
    );
    for (row, (label, color)) in [("train", TRAIN), ("validation", VAL)]
        .into_iter()
        .enumerate()
    {
        let y = y + row as i64 * 30;
        for t in 0..3 {
            line(&mut img, (x, y + 6 + t), (x + 36, y + 6 + t), color);
        }
        text(&mut img, x + 48, y, label, TEXT);
    }
    crate::atomic::write_with(path, |tmp| {
        img.save_with_format(tmp, image::ImageFormat::Png)
            .map_err(std::io::Error::other)
    })
    .map_err(image::ImageError::IoError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_glyph_is_seven_rows_of_five_and_every_label_is_drawable() {
        for (c, rows) in FONT {
            assert!(rows.iter().all(|r| r.len() == 5), "glyph {c:?}");
        }
        let mut labels: Vec<String> = panels(&[]).into_iter().map(|p| p.0.into()).collect();
        labels.extend(["epoch", "train", "validation"].map(String::from));
        labels.extend((0..=12345).step_by(97).map(|v| tick(v as f64 / 97.0)));
        for l in labels {
            for c in l.chars() {
                assert!(glyph(c).is_some(), "no glyph for {c:?} in {l:?}");
            }
        }
    }

    #[test]
    fn tick_labels_are_short_and_exact_for_round_values() {
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(0.5), "0.5");
        assert_eq!(tick(1.0), "1");
        assert_eq!(tick(0.025), "0.025");
        assert_eq!(tick(12.5), "12.5");
        assert_eq!(tick(25.0), "25");
        assert_eq!(tick(0.0312), "0.0312");
    }

    #[test]
    fn y_ranges_round_up_to_one_two_two_and_a_half_or_five() {
        assert_eq!(nice_ceiling(0.815), 1.0);
        assert_eq!(nice_ceiling(0.463), 0.5);
        assert_eq!(nice_ceiling(45.25), 50.0);
        assert_eq!(nice_ceiling(2.1), 2.5);
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(nice_ceiling(0.012), 0.02);
    }
}
