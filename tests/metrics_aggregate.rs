//! Aggregation over a test set: mean and sample standard deviation, overall and per class,
//! the Table 2 layout (PP N / Y rows) as text and Markdown, and the per-image CSV.

use rca_gpu::metrics::{
    BinaryMask, CSV_HEADER, ImageRecord, MeanStd, Summary, evaluate, lesion_free_rows,
    render_lesion_free, render_markdown, render_text, summary_rows, write_csv,
};

fn record(name: &str, class: Option<&str>, pp: bool, dice_like: (usize, usize)) -> ImageRecord {
    // a w×1 strip: the prediction covers `dice_like.0` pixels, the truth `dice_like.1`
    let w = 10;
    let p = BinaryMask::from_fn(w, 1, |x, _| x < dice_like.0).unwrap();
    let g = BinaryMask::from_fn(w, 1, |x, _| x < dice_like.1).unwrap();
    ImageRecord {
        name: name.to_string(),
        class: class.map(str::to_string),
        postprocessed: pp,
        metrics: evaluate(&p, &g).unwrap(),
    }
}

#[test]
fn mean_and_sample_standard_deviation() {
    let s = MeanStd::of([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
    assert_eq!(s.mean, 5.0);
    assert!(
        (s.std - (32.0f64 / 7.0).sqrt()).abs() < 1e-12,
        "n − 1 denominator"
    );
    assert_eq!(MeanStd::of([3.0]).unwrap().std, 0.0);
    assert_eq!(MeanStd::of([]), None);
}

#[test]
fn summary_averages_every_metric_and_only_present_times() {
    let a = record("a", None, false, (5, 5))
        .metrics
        .with_inference_ms(10.0);
    let b = record("b", None, false, (0, 5)).metrics;
    let s = Summary::of([&a, &b]).unwrap();
    assert_eq!(s.count, 2);
    assert_eq!(s.dice.mean, 0.5);
    assert_eq!(s.accuracy.mean, 0.75);
    assert_eq!(
        s.inference_ms.unwrap().mean,
        10.0,
        "images without a time are skipped"
    );
    assert!(s.mae_probability.is_none());
    assert!(Summary::of([]).is_none());
}

#[test]
fn rows_are_overall_then_per_class_with_pp_n_before_y() {
    let records = vec![
        record("m1", Some("malignant"), false, (5, 5)),
        record("m1", Some("malignant"), true, (5, 5)),
        record("b1", Some("benign"), false, (0, 5)),
        record("b1", Some("benign"), true, (5, 5)),
        record("x", None, false, (5, 5)),
    ];
    let rows = summary_rows(&records);
    let layout: Vec<(&str, bool, usize)> = rows
        .iter()
        .map(|r| (r.label.as_str(), r.postprocessed, r.summary.count))
        .collect();
    assert_eq!(
        layout,
        [
            ("all", false, 3),
            ("all", true, 2),
            ("benign", false, 1),
            ("benign", true, 1),
            ("malignant", false, 1),
            ("malignant", true, 1),
        ]
    );
    assert_eq!(rows[2].summary.dice.mean, 0.0);
    assert_eq!(rows[3].summary.dice.mean, 1.0);
}

#[test]
fn a_set_without_classes_has_only_overall_rows() {
    let rows = summary_rows(&[record("a", None, false, (3, 3))]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].label, "all");
}

#[test]
fn text_table_has_the_paper_columns_aligned() {
    let mut records = vec![
        record("a", Some("benign"), false, (4, 5)),
        record("a", Some("benign"), true, (5, 5)),
    ];
    records[0].metrics.inference_ms = Some(25.48);
    let text = render_text(&summary_rows(&records), false);
    let lines: Vec<&str> = text.lines().collect();
    for col in [
        "Set", "PP", "Acc", "Pr", "R", "DC", "mIoU", "AHD", "MAE", "IT (ms)",
    ] {
        assert!(lines[0].contains(col), "missing column {col}:\n{text}");
    }
    assert!(lines[1].chars().all(|c| c == '-'));
    assert_eq!(
        lines.len(),
        2 + 4,
        "header, rule, 2 rows overall + 2 for benign"
    );
    // right-aligned numbers end in the same column on every row
    let ends: Vec<usize> = lines[2..].iter().map(|l| l.chars().count()).collect();
    assert!(ends.windows(2).all(|w| w[0] == w[1]), "{text}");
    assert!(
        lines[2].contains("0.889") && lines[2].contains("25.48"),
        "{text}"
    );
    assert!(
        lines[3].trim_end().ends_with('–'),
        "no time for PP Y:\n{text}"
    );
}

#[test]
fn markdown_table_has_a_header_rule_and_one_line_per_row() {
    let records = vec![
        record("a", None, false, (4, 5)),
        record("b", None, false, (5, 5)),
    ];
    let md = render_markdown(&summary_rows(&records), true);
    let lines: Vec<&str> = md.lines().collect();
    assert!(lines[0].starts_with("| Set | PP | n | Acc |"));
    assert!(lines[1].starts_with("|---|:-:|"));
    assert_eq!(lines.len(), 3);
    assert!(lines[2].contains(" ± "), "std requested:\n{md}");
}

#[test]
fn csv_has_one_line_per_record_and_quotes_awkward_names() {
    let mut records = vec![record("benign (1)", Some("benign"), false, (4, 5))];
    records.push(record("odd, \"name\"", None, true, (5, 5)));
    records[0].metrics.inference_ms = Some(3.25);
    let mut out = Vec::new();
    write_csv(&records, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], CSV_HEADER);
    assert_eq!(lines.len(), 3);
    let cols = CSV_HEADER.split(',').count();
    let first: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(first.len(), cols);
    assert_eq!(
        &first[..7],
        ["benign (1)", "benign", "N", "4", "0", "1", "5"]
    );
    assert_eq!(first[10].parse::<f64>().unwrap(), records[0].metrics.dice);
    assert_eq!(first[cols - 1], "3.25");
    assert_eq!(first[cols - 2], "", "no probability map, empty cell");
    assert!(lines[2].starts_with("\"odd, \"\"name\"\"\",,Y,"));
}

#[test]
fn lesion_free_rows_count_the_empty_truths_marked_anyway() {
    let records = [
        record("lesion", None, false, (3, 5)),
        record("free-left-empty", None, false, (0, 0)),
        record("free-marked", None, false, (2, 0)),
        record("free-marked-badly", None, false, (4, 0)),
        record("free-left-empty", None, true, (0, 0)),
        record("free-marked", None, true, (0, 0)),
    ];
    let rows = lesion_free_rows(&records);
    assert_eq!(rows.len(), 2);
    let (n, y) = (&rows[0], &rows[1]);
    assert_eq!((n.postprocessed, n.images, n.marked), (false, 3, 2));
    assert!((n.false_positive_rate - 2.0 / 3.0).abs() < 1e-12);
    // 20 % and 40 % of a 10-pixel strip, and 0 %, over three images.
    assert!((n.mean_marked_percent - 20.0).abs() < 1e-9);
    assert_eq!((y.postprocessed, y.images, y.marked), (true, 2, 0));
    let text = render_lesion_free(&rows);
    assert!(text.contains("PP N: 2 of 3 marked"), "{text}");
    assert!(text.contains("PP Y: 0 of 2 marked"), "{text}");
    assert!(lesion_free_rows(&records[..1]).is_empty());
    assert_eq!(render_lesion_free(&[]), "");
}
