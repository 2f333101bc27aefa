//! Test-set aggregation: per-image records, mean and standard deviation overall and per
//! class, the per-image CSV, and the summary in the layout of the paper's Table 2
//! (columns Acc, Pr, R, DC, mIoU, AHD, MAE, IT; one row without post-processing, "PP N",
//! and one with, "PP Y").
//!
//! The standard deviation is the sample one (n − 1 in the denominator; 0 for a single
//! image), since a test set is a sample of the population of scans.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use super::ImageMetrics;

/// One scored image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image's name (file stem), the CSV's first column.
    pub name: String,
    /// Its class, e.g. BUSI's `benign` / `malignant` / `normal`, when the data set has them.
    pub class: Option<String>,
    /// Whether the prediction was post-processed ("PP Y").
    pub postprocessed: bool,
    pub metrics: ImageMetrics,
}

/// Mean and sample standard deviation of one metric.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    pub mean: f64,
    pub std: f64,
}

impl MeanStd {
    /// None for an empty sample.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let v: Vec<f64> = values.into_iter().collect();
        if v.is_empty() {
            return None;
        }
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let std = if v.len() > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Some(Self { mean, std })
    }
}

/// Means and standard deviations of every metric over a set of images.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: usize,
    pub accuracy: MeanStd,
    pub precision: MeanStd,
    pub recall: MeanStd,
    pub dice: MeanStd,
    pub iou: MeanStd,
    pub miou: MeanStd,
    pub ahd: MeanStd,
    pub hd95: MeanStd,
    pub mae: MeanStd,
    /// Over the images that have a probability MAE; None when none has.
    pub mae_probability: Option<MeanStd>,
    /// Over the images that have an inference time; None when none has.
    pub inference_ms: Option<MeanStd>,
}

impl Summary {
    /// None when there are no images.
    pub fn of<'a>(metrics: impl IntoIterator<Item = &'a ImageMetrics>) -> Option<Self> {
        let m: Vec<&ImageMetrics> = metrics.into_iter().collect();
        let stat = |f: fn(&ImageMetrics) -> f64| MeanStd::of(m.iter().map(|x| f(x)));
        Some(Self {
            count: m.len(),
            accuracy: stat(|x| x.accuracy)?,
            precision: stat(|x| x.precision)?,
            recall: stat(|x| x.recall)?,
            dice: stat(|x| x.dice)?,
            iou: stat(|x| x.iou)?,
            miou: stat(|x| x.miou)?,
            ahd: stat(|x| x.ahd)?,
            hd95: stat(|x| x.hd95)?,
            mae: stat(|x| x.mae)?,
            mae_probability: MeanStd::of(m.iter().filter_map(|x| x.mae_probability)),
            inference_ms: MeanStd::of(m.iter().filter_map(|x| x.inference_ms)),
        })
    }
}

/// One row of the Table 2 summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableRow {
    /// "all", or the class name.
    pub label: String,
    pub postprocessed: bool,
    pub summary: Summary,
}

/// Rows for the whole set ("all"), then for each class in name order when any record has a
/// class (records without one are left out of the class rows); within each group the
/// "PP N" row comes before the "PP Y" row, each present only if such records exist.
pub fn summary_rows(records: &[ImageRecord]) -> Vec<TableRow> {
    let mut groups: Vec<(String, Option<&str>)> = vec![("all".to_string(), None)];
    let classes: BTreeMap<&str, ()> = records
        .iter()
        .filter_map(|r| r.class.as_deref().map(|c| (c, ())))
        .collect();
    groups.extend(classes.keys().map(|c| (c.to_string(), Some(*c))));
    let mut rows = Vec::new();
    for (label, class) in groups {
        for pp in [false, true] {
            let selected = records.iter().filter(|r| {
                r.postprocessed == pp && class.is_none_or(|c| r.class.as_deref() == Some(c))
            });
            if let Some(summary) = Summary::of(selected.map(|r| &r.metrics)) {
                rows.push(TableRow {
                    label: label.clone(),
                    postprocessed: pp,
                    summary,
                });
            }
        }
    }
    rows
}

/// Cross-validation: for each row (label and PP setting) that every fold has, the mean and
/// sample standard deviation over the folds of that fold's mean, per metric; `count` is the
/// folds' images together. How nnU-Net and the literature report K-fold results (each fold
/// weighs the same, whatever its size).
pub fn across_folds(folds: &[Vec<TableRow>]) -> Vec<TableRow> {
    let Some(first) = folds.first() else {
        return Vec::new();
    };
    first
        .iter()
        .filter_map(|row| {
            let same: Vec<&Summary> = folds
                .iter()
                .map(|f| {
                    f.iter()
                        .find(|r| r.label == row.label && r.postprocessed == row.postprocessed)
                        .map(|r| &r.summary)
                })
                .collect::<Option<_>>()?;
            let over = |f: fn(&Summary) -> f64| MeanStd::of(same.iter().map(|s| f(s)));
            let over_opt = |f: fn(&Summary) -> Option<MeanStd>| {
                same.iter()
                    .map(|s| f(s).map(|m| m.mean))
                    .collect::<Option<Vec<f64>>>()
                    .and_then(MeanStd::of)
            };
            Some(TableRow {
                label: row.label.clone(),
                postprocessed: row.postprocessed,
                summary: Summary {
                    count: same.iter().map(|s| s.count).sum(),
                    accuracy: over(|s| s.accuracy.mean)?,
                    precision: over(|s| s.precision.mean)?,
                    recall: over(|s| s.recall.mean)?,
                    dice: over(|s| s.dice.mean)?,
                    iou: over(|s| s.iou.mean)?,
                    miou: over(|s| s.miou.mean)?,
                    ahd: over(|s| s.ahd.mean)?,
                    hd95: over(|s| s.hd95.mean)?,
                    mae: over(|s| s.mae.mean)?,
                    mae_probability: over_opt(|s| s.mae_probability),
                    inference_ms: over_opt(|s| s.inference_ms),
                },
            })
        })
        .collect()
}

/// How a model does on the lesion-free images of a test set (empty ground truth): how
/// many it marks with a lesion anyway. The number a screening user asks first, and one the
/// table's means hide (an empty prediction there scores 1 on every overlap metric).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LesionFreeRow {
    pub postprocessed: bool,
    /// Images whose ground truth is empty.
    pub images: usize,
    /// Of those, images with at least one predicted lesion pixel.
    pub marked: usize,
    /// `marked / images`: the image-level false-positive rate.
    pub false_positive_rate: f64,
    /// Mean share of the image marked, in %, over all lesion-free images.
    pub mean_marked_percent: f64,
}

/// One row per PP setting present, when the records hold lesion-free images; empty
/// otherwise.
pub fn lesion_free_rows(records: &[ImageRecord]) -> Vec<LesionFreeRow> {
    [false, true]
        .into_iter()
        .filter_map(|pp| {
            let free: Vec<&ImageMetrics> = records
                .iter()
                .filter(|r| {
                    let c = &r.metrics.confusion;
                    r.postprocessed == pp && c.true_pos + c.false_neg == 0
                })
                .map(|r| &r.metrics)
                .collect();
            if free.is_empty() {
                return None;
            }
            let marked = free.iter().filter(|m| m.confusion.false_pos > 0).count();
            let area: f64 = free
                .iter()
                .map(|m| 100.0 * m.confusion.false_pos as f64 / m.confusion.total().max(1) as f64)
                .sum();
            Some(LesionFreeRow {
                postprocessed: pp,
                images: free.len(),
                marked,
                false_positive_rate: marked as f64 / free.len() as f64,
                mean_marked_percent: area / free.len() as f64,
            })
        })
        .collect()
}

/// "lesion-free images: …" lines for [`lesion_free_rows`] (nothing when there are none).
pub fn render_lesion_free(rows: &[LesionFreeRow]) -> String {
    let mut out = String::new();
    for r in rows {
        let _ = writeln!(
            out,
            "lesion-free images, PP {}: {} of {} marked with a lesion (false-positive rate {:.1} %; {:.2} % of the image marked on average)",
            if r.postprocessed { "Y" } else { "N" },
            r.marked,
            r.images,
            100.0 * r.false_positive_rate,
            r.mean_marked_percent
        );
    }
    out
}

const COLUMNS: [&str; 11] = [
    "Set", "PP", "n", "Acc", "Pr", "R", "DC", "mIoU", "AHD", "MAE", "IT (ms)",
];

/// The cells of one row, three decimals as in the paper (IT two); "–" for a missing IT.
fn cells(row: &TableRow, with_std: bool) -> Vec<String> {
    let s = &row.summary;
    let f = |m: MeanStd, digits: usize| {
        if with_std {
            format!("{:.*} ± {:.*}", digits, m.mean, digits, m.std)
        } else {
            format!("{:.*}", digits, m.mean)
        }
    };
    vec![
        row.label.clone(),
        if row.postprocessed { "Y" } else { "N" }.to_string(),
        s.count.to_string(),
        f(s.accuracy, 3),
        f(s.precision, 3),
        f(s.recall, 3),
        f(s.dice, 3),
        f(s.miou, 3),
        f(s.ahd, 3),
        f(s.mae, 3),
        s.inference_ms.map_or("–".to_string(), |m| f(m, 2)),
    ]
}

/// The summary as an aligned plain-text table (label left-aligned, numbers right-aligned);
/// `with_std` prints "mean ± std" in every numeric cell.
pub fn render_text(rows: &[TableRow], with_std: bool) -> String {
    let body: Vec<Vec<String>> = rows.iter().map(|r| cells(r, with_std)).collect();
    let widths: Vec<usize> = (0..COLUMNS.len())
        .map(|c| {
            body.iter()
                .map(|r| r[c].chars().count())
                .chain([COLUMNS[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (c, cell) in cells.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c > 0 {
                s.push_str("  ");
            }
            if c == 0 {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            }
        }
        s.trim_end().to_string()
    };
    let header: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    let mut out = line(&header);
    out.push('\n');
    out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
    out.push('\n');
    for r in &body {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

/// The summary as a Markdown table, numbers right-aligned.
pub fn render_markdown(rows: &[TableRow], with_std: bool) -> String {
    let mut out = format!("| {} |\n", COLUMNS.join(" | "));
    out.push_str("|---|:-:|");
    out.push_str(&"---:|".repeat(COLUMNS.len() - 2));
    out.push('\n');
    for r in rows {
        let _ = writeln!(out, "| {} |", cells(r, with_std).join(" | "));
    }
    out
}

/// Header line of the per-image CSV.
pub const CSV_HEADER: &str = "name,class,postprocessed,tp,fp,fn,tn,accuracy,precision,recall,dice,iou,miou,ahd,hd95,mae,mae_probability,inference_ms";

/// Writes one CSV line per record after [`CSV_HEADER`]; numbers at full precision (shortest
/// text that reads back to the same f64), empty cells for absent values, RFC 4180 quoting.
pub fn write_csv<W: Write>(records: &[ImageRecord], mut w: W) -> io::Result<()> {
    writeln!(w, "{CSV_HEADER}")?;
    for r in records {
        let m = &r.metrics;
        let c = &m.confusion;
        let opt = |v: Option<f64>| v.map_or(String::new(), |x| x.to_string());
        writeln!(
            w,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            csv_field(&r.name),
            csv_field(r.class.as_deref().unwrap_or("")),
            if r.postprocessed { "Y" } else { "N" },
            c.true_pos,
            c.false_pos,
            c.false_neg,
            c.true_neg,
            m.accuracy,
            m.precision,
            m.recall,
            m.dice,
            m.iou,
            m.miou,
            m.ahd,
            m.hd95,
            m.mae,
            opt(m.mae_probability),
            opt(m.inference_ms),
        )?;
    }
    w.flush()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
