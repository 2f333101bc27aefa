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
        } else {
            assert!(
                area > 20 && area < 64 * 64 / 3,
                "phantom {i}: lesion area {area}"
            );
        }
    }
}

#[test]
fn lesions_are_hypoechoic() {
    for i in (0..30).filter(|&i| phantom_class(2, i) != Class::Normal) {
        let p = generate_phantom(2, i, 128);
        let (mut inside, mut n_in, mut ring, mut n_ring) = (0.0, 0, 0.0, 0);
        for (k, &m) in p.mask.data.iter().enumerate() {
            if m == 1.0 {
                inside += p.image.data[k];
                n_in += 1;
            } else {
                // Pixels within 6 px of the lesion but outside it.
                let (x, y) = ((k % 128) as isize, (k / 128) as isize);
                let near = (-6..=6).any(|d: isize| {
                    let (xx, yy) = (x + d, y);
                    (0..128).contains(&xx) && p.mask.data[(yy * 128 + xx) as usize] == 1.0
                });
                if near {
                    ring += p.image.data[k];
                    n_ring += 1;
                }
            }
        }
        let (inside, ring) = (inside / n_in as f32, ring / n_ring.max(1) as f32);
        assert!(
            inside < ring,
            "phantom {i}: lesion {inside} not darker than surroundings {ring}"
        );
    }
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
