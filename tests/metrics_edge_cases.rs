//! Edge cases of the metrics and post-processing, each a stated convention of
//! `src/metrics/mod.rs`: empty masks (lesion-free images, empty predictions), full masks,
//! one-pixel lesions, masks touching the image border, and hand-computed distances.

use rca_gpu::metrics::{
    BinaryMask, Connectivity, MetricsError, PostProcess, average_hausdorff, boundary, confusion,
    empty_mask_penalty, evaluate, evaluate_probability, evaluate_with_probability, fill_holes,
    hausdorff95, label_components, mean_iou, remove_small_components, threshold,
};

/// A mask from rows of '#' (lesion) and '.' (background).
fn mask(rows: &[&str]) -> BinaryMask {
    let w = rows[0].len();
    let data = rows
        .iter()
        .flat_map(|r| r.chars().map(|c| c == '#'))
        .collect();
    BinaryMask::new(w, rows.len(), data).unwrap()
}

fn pixel(w: usize, h: usize, x: usize, y: usize) -> BinaryMask {
    let mut m = BinaryMask::empty(w, h).unwrap();
    m.set(x, y, true);
    m
}

fn disc(w: usize, h: usize, cx: f64, cy: f64, r: f64) -> BinaryMask {
    BinaryMask::from_fn(w, h, |x, y| (x as f64 - cx).hypot(y as f64 - cy) <= r).unwrap()
}

// ---------------------------------------------------------------- empty masks

#[test]
fn empty_prediction_of_lesion_free_image_scores_perfectly() {
    let e = BinaryMask::empty(32, 24).unwrap();
    let m = evaluate(&e, &e).unwrap();
    for (name, v) in [
        ("dice", m.dice),
        ("iou", m.iou),
        ("miou", m.miou),
        ("precision", m.precision),
        ("recall", m.recall),
        ("accuracy", m.accuracy),
    ] {
        assert_eq!(v, 1.0, "{name}");
    }
    assert_eq!((m.ahd, m.hd95, m.mae), (0.0, 0.0, 0.0));
}

#[test]
fn empty_prediction_of_a_lesion_scores_zero_with_finite_distance_penalty() {
    let g = disc(30, 40, 10.0, 10.0, 4.0);
    let p = BinaryMask::empty(30, 40).unwrap();
    let m = evaluate(&p, &g).unwrap();
    assert_eq!((m.dice, m.iou, m.miou), (0.0, 0.0, 0.0));
    assert_eq!(
        m.precision, 0.0,
        "0/0 precision is 0 when the lesion was missed"
    );
    assert_eq!(m.recall, 0.0);
    assert_eq!(m.ahd, 50.0, "the image diagonal √(30² + 40²)");
    assert_eq!(m.hd95, 50.0);
    assert!(m.ahd.is_finite());
}

#[test]
fn lesion_predicted_on_lesion_free_image_scores_zero_with_penalty() {
    let p = pixel(6, 8, 2, 3);
    let g = BinaryMask::empty(6, 8).unwrap();
    let m = evaluate(&p, &g).unwrap();
    assert_eq!((m.dice, m.iou, m.miou), (0.0, 0.0, 0.0));
    assert_eq!(m.precision, 0.0);
    assert_eq!(m.recall, 0.0, "0/0 recall is 0 when a lesion was invented");
    assert_eq!(m.ahd, 10.0);
    assert_eq!(m.hd95, empty_mask_penalty(6, 8));
    assert_eq!(m.accuracy, 47.0 / 48.0);
}

#[test]
fn the_penalty_exceeds_every_distance_inside_the_image() {
    let (w, h) = (17, 9);
    let far = average_hausdorff(&pixel(w, h, 0, 0), &pixel(w, h, w - 1, h - 1)).unwrap();
    assert!(empty_mask_penalty(w, h) > far);
}

// ---------------------------------------------------------------- full masks

#[test]
fn full_prediction_of_full_ground_truth_is_perfect() {
    let f = BinaryMask::full(16, 16).unwrap();
    let m = evaluate(&f, &f).unwrap();
    assert_eq!((m.dice, m.iou, m.miou, m.accuracy), (1.0, 1.0, 1.0, 1.0));
    assert_eq!((m.ahd, m.hd95, m.mae), (0.0, 0.0, 0.0));
}

#[test]
fn full_prediction_of_one_pixel_lesion_has_full_recall_and_tiny_precision() {
    let p = BinaryMask::full(10, 10).unwrap();
    let g = pixel(10, 10, 0, 0);
    let m = evaluate(&p, &g).unwrap();
    assert_eq!(m.recall, 1.0);
    assert_eq!(m.precision, 0.01);
    assert_eq!(m.mae, 0.99);
}

// ---------------------------------------------------------------- one-pixel lesions

#[test]
fn one_pixel_lesion_found_exactly() {
    let p = pixel(9, 9, 4, 4);
    let m = evaluate(&p, &p).unwrap();
    assert_eq!(
        (m.dice, m.iou, m.miou, m.ahd, m.hd95),
        (1.0, 1.0, 1.0, 0.0, 0.0)
    );
}

#[test]
fn one_pixel_lesion_missed_by_a_diagonal_step() {
    let m = evaluate(&pixel(9, 9, 4, 4), &pixel(9, 9, 5, 5)).unwrap();
    assert_eq!((m.dice, m.iou), (0.0, 0.0));
    assert_eq!(m.ahd, 2f64.sqrt());
    assert_eq!(m.hd95, 2f64.sqrt());
}

#[test]
fn one_pixel_component_is_kept_without_a_minimum_area_and_removed_with_one() {
    let m = pixel(8, 8, 3, 3);
    assert_eq!(remove_small_components(&m, Connectivity::Eight, 1, 0.0), m);
    assert!(!remove_small_components(&m, Connectivity::Eight, 2, 0.0).has_foreground());
}

// ---------------------------------------------------------------- masks touching the border

#[test]
fn a_bay_open_to_the_border_is_not_a_hole() {
    let m = mask(&["#####", "#...#", "#...#", "#...#", "##.##"]);
    assert_eq!(fill_holes(&m, Connectivity::Eight), m);
}

#[test]
fn a_hole_enclosed_against_the_border_is_filled() {
    let m = mask(&["###..", "#.#..", "###..", "....."]);
    let filled = mask(&["###..", "###..", "###..", "....."]);
    assert_eq!(fill_holes(&m, Connectivity::Eight), filled);
}

#[test]
fn pixels_on_the_image_edge_are_boundary_pixels() {
    let f = BinaryMask::full(4, 3).unwrap();
    let b = boundary(&f);
    assert_eq!(b, mask(&["####", "#..#", "####"]));
}

#[test]
fn shapes_cut_by_the_border_get_the_right_distances() {
    let g = mask(&["##....", "##....", "......"]);
    let p = mask(&["....##", "....##", "......"]);
    // columns 4 and 5 are 3 and 4 from column 1 (and back): mean 3.5 each way
    assert_eq!(average_hausdorff(&p, &g).unwrap(), 3.5);
    // every pixel is a boundary pixel; pooled distances four 3s and four 4s → 4
    assert_eq!(hausdorff95(&p, &g).unwrap(), 4.0);
}

// ---------------------------------------------------------------- hand-computed values

#[test]
fn average_hausdorff_averages_the_two_directed_means() {
    let g = mask(&["#...", "...."]);
    let p = mask(&["#..#", "...."]);
    // P→G: (0 + 3) / 2 = 1.5; G→P: 0; AHD = ½ (1.5 + 0)
    assert_eq!(average_hausdorff(&p, &g).unwrap(), 0.75);
}

#[test]
fn hd95_pools_both_directions_and_interpolates_like_numpy() {
    // boundaries: G is one pixel, P two pixels 0 and 4 away; pooled distances [0, 4, 0]
    // sorted [0, 0, 4]: rank 0.95·2 = 1.9 → 0 + 0.9·(4 − 0) = 3.6
    let g = mask(&["#....", "....."]);
    let p = mask(&["#...#", "....."]);
    assert!((hausdorff95(&p, &g).unwrap() - 3.6).abs() < 1e-12);
}

#[test]
fn miou_counts_thresholds_strictly_above() {
    // IoU = 3/4 exactly: passes 0.50…0.70 (five thresholds), not 0.75
    let p = mask(&["###."]);
    let g = mask(&["####"]);
    let c = confusion(&p, &g).unwrap();
    assert_eq!(c.iou(), 0.75);
    assert_eq!(mean_iou(&c), 0.375);
}

#[test]
fn miou_of_a_poor_overlap_is_zero() {
    let c = confusion(&mask(&["#.."]), &mask(&["###"])).unwrap(); // IoU 1/3
    assert_eq!(mean_iou(&c), 0.0);
}

#[test]
fn probability_mae_uses_the_raw_probabilities() {
    let g = mask(&["##", ".."]);
    let prob = [0.9f32, 0.4, 0.2, 0.0];
    let p = threshold(&prob, 2, 2, 0.5).unwrap();
    let m = evaluate_with_probability(&p, &prob, &g).unwrap();
    let want = (0.1 + 0.6 + 0.2 + 0.0) / 4.0;
    assert!((m.mae_probability.unwrap() - want).abs() < 1e-7);
    assert_eq!(m.mae, 0.25, "binary MAE counts the one missed pixel");
}

#[test]
fn evaluating_a_probability_map_scores_pp_n_and_pp_y_settings() {
    // a lesion with a hole and a speck: PP N counts both errors, PP Y repairs them
    let mut prob = vec![0.0f32; 24 * 24];
    let lesion = disc(24, 24, 12.0, 12.0, 6.0);
    for (p, &v) in prob.iter_mut().zip(lesion.data()) {
        *p = if v { 0.9 } else { 0.1 };
    }
    prob[12 * 24 + 12] = 0.3;
    prob[24 + 1] = 0.7;
    let n = evaluate_probability(&prob, &lesion, &PostProcess::threshold_only(0.5)).unwrap();
    assert_eq!((n.confusion.false_pos, n.confusion.false_neg), (1, 1));
    let y = evaluate_probability(&prob, &lesion, &PostProcess::default()).unwrap();
    assert_eq!(y.dice, 1.0);
    assert_eq!(
        y.mae_probability, n.mae_probability,
        "MAE of the raw probabilities"
    );
}

#[test]
fn inference_time_slot_is_empty_until_filled() {
    let e = BinaryMask::empty(2, 2).unwrap();
    let m = evaluate(&e, &e).unwrap();
    assert_eq!(m.inference_ms, None);
    assert_eq!(m.with_inference_ms(12.5).inference_ms, Some(12.5));
}

// ---------------------------------------------------------------- thresholding

#[test]
fn threshold_is_inclusive_and_nan_is_background() {
    let m = threshold(&[0.5, 0.4999, f32::NAN, 1.0], 4, 1, 0.5).unwrap();
    assert_eq!(m, mask(&["#..#"]));
}

#[test]
fn default_post_processing_is_documented_values() {
    let d = PostProcess::default();
    assert_eq!(d.threshold, 0.5);
    assert!(d.fill_holes);
    assert_eq!(d.min_area, 64);
    assert_eq!(d.min_relative_area, 0.1);
    assert_eq!(d.connectivity, Connectivity::Eight);
}

// ---------------------------------------------------------------- post-processing

#[test]
fn post_processing_fills_holes_and_drops_specks() {
    let mut prob = vec![0.0f32; 40 * 40];
    let lesion = disc(40, 40, 20.0, 20.0, 10.0);
    for (i, &v) in lesion.data().iter().enumerate() {
        prob[i] = if v { 0.9 } else { 0.1 };
    }
    prob[20 * 40 + 20] = 0.2; // a hole in the lesion
    prob[2 * 40 + 2] = 0.8; // a speck
    let out = PostProcess::default().apply(&prob, 40, 40).unwrap();
    assert_eq!(out, lesion);
}

#[test]
fn components_much_smaller_than_the_largest_are_removed() {
    let big = disc(64, 64, 20.0, 20.0, 12.0); // ~450 px
    let small = disc(64, 64, 52.0, 52.0, 3.0); // ~29 px, < 10 % of the largest
    let both = BinaryMask::from_fn(64, 64, |x, y| big.get(x, y) || small.get(x, y)).unwrap();
    assert_eq!(
        remove_small_components(&both, Connectivity::Eight, 0, 0.1),
        big
    );
    assert_eq!(
        remove_small_components(&both, Connectivity::Eight, 0, 0.0),
        both
    );
}

#[test]
fn diagonal_neighbours_join_under_8_connectivity_only() {
    let m = mask(&["#.", ".#"]);
    assert_eq!(label_components(&m, Connectivity::Eight).count(), 1);
    assert_eq!(label_components(&m, Connectivity::Four).count(), 2);
}

#[test]
fn a_ring_with_a_diagonal_gap_holds_a_hole_only_for_8_connected_lesions() {
    // The ring is closed for 8-connected foreground (its corners touch diagonally), so the
    // 4-connected background inside is a hole; with 4-connected foreground the background
    // is 8-connected and leaks out through the diagonal gap.
    let m = mask(&[".#.", "#.#", ".#."]);
    assert_eq!(
        fill_holes(&m, Connectivity::Eight),
        mask(&[".#.", "###", ".#."])
    );
    assert_eq!(fill_holes(&m, Connectivity::Four), m);
}

#[test]
fn post_processing_is_idempotent() {
    let pp = PostProcess::default();
    let m = mask(&[
        "##########......",
        "#........#..#...",
        "#..####..#......",
        "#..#..#..#......",
        "#..####..#......",
        "##########......",
    ]);
    let pp = PostProcess { min_area: 2, ..pp };
    let once = pp.apply_mask(&m);
    assert_eq!(pp.apply_mask(&once), once);
}

/// Probabilities from rows of digits: '0'..'9' is p = d / 10, '#' is 1.
fn probs(rows: &[&str]) -> (Vec<f32>, usize, usize) {
    let p = rows
        .iter()
        .flat_map(|r| r.chars())
        .map(|c| match c {
            '#' => 1.0,
            d => d.to_digit(10).expect("a digit or #") as f32 / 10.0,
        })
        .collect();
    (p, rows[0].len(), rows.len())
}

#[test]
fn min_peak_drops_faint_regions_and_keeps_confident_ones_whole() {
    // Left: a region above 0.5 that peaks at 0.9 (kept, its 0.6 pixels included);
    // right: one that never passes 0.7 (dropped).
    let (p, w, h) = probs(&["66600000", "69600770", "66600770", "00000000"]);
    let pp = PostProcess {
        min_area: 0,
        min_relative_area: 0.0,
        min_peak: 0.8,
        ..PostProcess::default()
    };
    let want = mask(&["###.....", "###.....", "###.....", "........"]);
    assert_eq!(pp.apply(&p, w, h).unwrap(), want);
    // Off (0) keeps both; a peak above every pixel keeps none.
    let off = PostProcess {
        min_peak: 0.0,
        ..pp
    };
    assert_eq!(
        off.apply(&p, w, h).unwrap(),
        mask(&["###.....", "###..##.", "###..##.", "........"])
    );
    let all = PostProcess {
        min_peak: 1.0,
        ..pp
    };
    assert_eq!(
        all.apply(&p, w, h).unwrap(),
        BinaryMask::empty(w, h).unwrap()
    );
}

#[test]
fn min_peak_runs_before_the_relative_area_rule() {
    // A large faint region would make the small confident lesion "under a tenth of the
    // largest"; with the faint one dropped first, the lesion stays.
    let (p, w, h) = probs(&[
        "9000000000000",
        "0066666666666",
        "0066666666666",
        "0066666666666",
    ]);
    let pp = PostProcess {
        min_area: 0,
        min_relative_area: 0.1,
        min_peak: 0.8,
        ..PostProcess::default()
    };
    let want = mask(&[
        "#............",
        ".............",
        ".............",
        ".............",
    ]);
    assert_eq!(pp.apply(&p, w, h).unwrap(), want);
    assert!(
        PostProcess {
            min_peak: 1.5,
            ..pp
        }
        .validate()
        .is_err()
    );
}

#[test]
fn invalid_settings_are_rejected() {
    let bad = PostProcess {
        min_relative_area: 1.5,
        ..PostProcess::default()
    };
    assert!(matches!(
        bad.apply(&[0.0], 1, 1),
        Err(MetricsError::InvalidSetting(_))
    ));
    let nan = PostProcess {
        threshold: f32::NAN,
        ..PostProcess::default()
    };
    assert!(nan.validate().is_err());
}

// ---------------------------------------------------------------- shape errors

#[test]
fn masks_of_different_sizes_are_an_error_naming_both_sizes() {
    let e = evaluate(
        &BinaryMask::empty(3, 2).unwrap(),
        &BinaryMask::empty(2, 3).unwrap(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("3×2") && e.to_string().contains("2×3"),
        "{e}"
    );
}

#[test]
fn zero_sized_and_wrong_length_masks_are_errors() {
    assert!(matches!(
        BinaryMask::empty(0, 5),
        Err(MetricsError::ZeroSize { .. })
    ));
    assert!(matches!(
        BinaryMask::new(2, 2, vec![true; 3]),
        Err(MetricsError::LengthMismatch { .. })
    ));
    assert!(threshold(&[0.0; 5], 2, 2, 0.5).is_err());
}
