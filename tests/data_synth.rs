//! The phantom generator: deterministic, with exact masks, class-consistent
//! shapes, the BUSI layout on disk, and fast enough to feed training on the fly.

use rca_gpu::data::synth::phantom_class;
use rca_gpu::data::{Class, Format, LoadOptions, generate_phantom, load_dataset, write_phantoms};

#[test]
fn same_seed_and_index_give_the_same_phantom() {
    assert_eq!(generate_phantom(5, 3, 64), generate_phantom(5, 3, 64));
}

#[test]
fn different_indices_give_different_phantoms() {
    assert_ne!(
        generate_phantom(5, 3, 64).image,
        generate_phantom(5, 4, 64).image
    );
    assert_ne!(
        generate_phantom(5, 3, 64).image,
        generate_phantom(6, 3, 64).image
    );
}

#[test]
fn written_files_are_byte_identical_for_a_seed() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sa = write_phantoms(a.path(), 8, 48, 9, &|| {}).unwrap();
    let sb = write_phantoms(b.path(), 8, 48, 9, &|| {}).unwrap();
    assert_eq!(sa.files.len(), 16);
    for (fa, fb) in sa.files.iter().zip(&sb.files) {
        assert_eq!(
            fa.strip_prefix(a.path()).unwrap(),
            fb.strip_prefix(b.path()).unwrap()
        );
        assert_eq!(
            std::fs::read(fa).unwrap(),
            std::fs::read(fb).unwrap(),
            "{}",
            fa.display()
        );
    }
}

#[test]
fn about_a_sixth_of_the_phantoms_are_lesion_free() {
    let normal = (0..600)
        .filter(|&i| phantom_class(0, i) == Class::Normal)
        .count();
    assert_eq!(normal, 100);
    let malignant = (0..600)
        .filter(|&i| phantom_class(0, i) == Class::Malignant)
        .count();
    assert!((120..220).contains(&malignant), "{malignant}");
}

#[test]
fn normal_phantoms_have_empty_masks_and_others_a_lesion() {
    for i in 0..24 {
        let p = generate_phantom(1, i, 64);
        let area = p.mask.data.iter().filter(|&&v| v == 1.0).count();
        assert!(p.mask.data.iter().all(|&v| v == 0.0 || v == 1.0));
        if p.class == Class::Normal {
            assert_eq!(area, 0, "phantom {i}");
            assert_eq!(p.lesion_mm, None);
        } else {
            // A 3 mm lesion in a 50 mm field is about 4 pixels across at 64×64.
            assert!(
                (4..64 * 64 / 2).contains(&area),
                "phantom {i}: lesion area {area}"
            );
        }
    }
}

#[test]
fn lesions_span_3_to_20_mm_and_their_masks_match_their_size() {
    let mut sizes = Vec::new();
    for i in (0..150).filter(|&i| phantom_class(4, i) != Class::Normal) {
        let p = generate_phantom(4, i, 256);
        assert!(
            (30.0..=50.0).contains(&p.fov_mm),
            "field of view {}",
            p.fov_mm
        );
        let d = p.lesion_mm.unwrap();
        assert!((3.0..=20.0).contains(&d), "phantom {i}: {d} mm");
        // The mask's equivalent diameter, mm: lobes and spicules change the area, the
        // aspect ratio does not.
        let area = p.mask.data.iter().filter(|&&v| v == 1.0).count() as f32;
        let mm = 2.0 * (area / std::f32::consts::PI).sqrt() * p.fov_mm / 256.0;
        assert!(
            mm > 0.7 * d && mm < 1.4 * d,
            "phantom {i}: mask {mm:.1} mm across, lesion {d:.1} mm"
        );
        sizes.push(d);
    }
    // Log-uniform over 3–20 mm: about a third under 5 mm, a fifth over 13 mm.
    let n = sizes.len() as f32;
    let small = sizes.iter().filter(|&&d| d < 5.0).count() as f32 / n;
    let large = sizes.iter().filter(|&&d| d > 13.0).count() as f32 / n;
    assert!((0.15..0.45).contains(&small), "{small} under 5 mm");
    assert!((0.08..0.35).contains(&large), "{large} over 13 mm");
}

/// Mean grey level inside the mask and in a ring of `ring` pixels around it (along rows).
fn inside_and_around(p: &rca_gpu::data::Phantom, ring: isize) -> (f32, f32) {
    let s = p.size as isize;
    let (mut inside, mut n_in, mut around, mut n_around) = (0.0, 0, 0.0, 0);
    for (k, &m) in p.mask.data.iter().enumerate() {
        if m == 1.0 {
            inside += p.image.data[k];
            n_in += 1;
        } else {
            let (x, y) = (k as isize % s, k as isize / s);
            let near = (-ring..=ring)
                .any(|d| (0..s).contains(&(x + d)) && p.mask.data[(y * s + x + d) as usize] == 1.0);
            if near {
                around += p.image.data[k];
                n_around += 1;
            }
        }
    }
    (inside / n_in as f32, around / n_around.max(1) as f32)
}

#[test]
fn lesions_stand_out_from_the_tissue_around_them_mostly_darker() {
    let (mut darker, mut total) = (0, 0);
    for i in (0..60).filter(|&i| phantom_class(2, i) != Class::Normal) {
        let p = generate_phantom(2, i, 128);
        let (inside, around) = inside_and_around(&p, 4);
        total += 1;
        if inside < around {
            darker += 1;
        }
        // Every lesion differs from its surroundings by a few grey levels at least
        // (6 dB on a 40–60 dB display range, before speckle).
        assert!(
            (inside - around).abs() > 0.02,
            "phantom {i} ({:?} mm): lesion {inside} vs surroundings {around}",
            p.lesion_mm
        );
    }
    // A few benign lesions are hyperechoic; most are darker than their surroundings.
    assert!(
        darker as f32 >= 0.85 * total as f32,
        "{darker} of {total} darker"
    );
}

#[test]
fn pixel_values_are_eight_bit_levels() {
    let p = generate_phantom(0, 0, 32);
    assert!(
        p.image
            .data
            .iter()
            .all(|&v| ((v * 255.0).round() - v * 255.0).abs() < 1e-4)
    );
}

#[test]
fn written_phantoms_load_as_busi_with_matching_counts() {
    let dir = tempfile::tempdir().unwrap();
    let s = write_phantoms(dir.path(), 18, 32, 1, &|| {}).unwrap();
    let ds = load_dataset(
        dir.path(),
        &LoadOptions {
            size: 32,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ds.format, Format::Busi);
    assert_eq!(ds.report.per_class["normal"].images, s.normal);
    assert_eq!(
        ds.report.per_class.get("benign").map_or(0, |c| c.images),
        s.benign
    );
    assert_eq!(
        ds.report.per_class.get("malignant").map_or(0, |c| c.images),
        s.malignant
    );
    assert!(ds.report.skipped.is_empty());
    assert!(dir.path().join("normal/normal (1).png").exists());
    assert!(dir.path().join("normal/normal (1)_mask.png").exists());
    // Loading at the generated size gives back the generated pixels exactly.
    let p = generate_phantom(1, 0, 32);
    let name = format!("{0}/{0} (1).png", p.class);
    let loaded = ds.samples.iter().find(|x| x.name == name).unwrap();
    assert_eq!(loaded.image, p.image.data);
    assert_eq!(loaded.mask, p.mask.data);
}

#[test]
fn phantom_at_256_is_fast_in_release_builds() {
    let start = std::time::Instant::now();
    let p = generate_phantom(0, 1, 256);
    let ms = start.elapsed().as_secs_f64() * 1e3;
    eprintln!("phantom 256×256: {ms:.1} ms");
    assert_eq!(p.image.data.len(), 256 * 256);
    // Debug builds are ~20× slower; the budget applies to optimised code.
    if !cfg!(debug_assertions) {
        assert!(ms < 100.0, "{ms:.1} ms");
    }
}

#[test]
fn committed_sample_loads_cleanly() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
    let ds = load_dataset(
        &root,
        &LoadOptions {
            size: 128,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ds.format, Format::Busi);
    assert_eq!(ds.report.per_class.len(), 3);
    assert!(ds.report.skipped.is_empty());
    assert_eq!(ds.report.width_range, Some((128, 128)));
}
