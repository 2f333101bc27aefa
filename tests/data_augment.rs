//! Augmentation: one geometric warp moves image and mask together; photometric
//! changes touch the image only; everything is reproducible for a seed.

use rca_gpu::data::augment::{AugmentConfig, Warp, augment, draw_warp, warp_pair};
use rca_gpu::data::generate_phantom;
use rca_gpu::data::rng::Rng;

/// A mask with an off-centre, asymmetric blob, so flips and rotations show.
fn blob(size: usize) -> Vec<f32> {
    let mut m = vec![0.0; size * size];
    for y in 0..size {
        for x in 0..size {
            let (dx, dy) = (x as f32 - size as f32 * 0.35, y as f32 - size as f32 * 0.6);
            if (dx / 9.0).powi(2) + (dy / 5.0).powi(2) < 1.0
                || (x > 40 && x < 46 && y > 5 && y < 30)
            {
                m[y * size + x] = 1.0;
            }
        }
    }
    m
}

#[test]
fn warped_image_equals_warped_mask_where_the_image_is_pure() {
    // Image intensity = mask. Bilinear reads exactly 1 only where all its taps
    // are 1, and exactly 0 only where all are 0; nearest picks one of those taps.
    let size = 64;
    let cfg = AugmentConfig::geometric_only();
    for seed in 0..50 {
        let mut mask = blob(size);
        let mut image = mask.clone();
        augment(&mut image, &mut mask, size, &cfg, &mut Rng::new(seed));
        let mut pure = 0;
        for (i, (&a, &m)) in image.iter().zip(&mask).enumerate() {
            if a > 0.999 {
                assert_eq!(m, 1.0, "seed {seed} pixel {i}: image {a}, mask {m}");
                pure += 1;
            } else if a < 0.001 {
                assert_eq!(m, 0.0, "seed {seed} pixel {i}: image {a}, mask {m}");
                pure += 1;
            }
        }
        assert!(
            pure > size * size * 9 / 10,
            "seed {seed}: only {pure} pure pixels"
        );
    }
}

#[test]
fn rounded_warped_image_agrees_with_warped_mask_almost_everywhere() {
    let size = 64;
    let cfg = AugmentConfig::geometric_only();
    for seed in 0..20 {
        let mut mask = blob(size);
        let mut image = mask.clone();
        augment(&mut image, &mut mask, size, &cfg, &mut Rng::new(seed));
        let disagree = image
            .iter()
            .zip(&mask)
            .filter(|&(&a, &m)| (a.round() - m).abs() > 0.0)
            .count();
        assert!(disagree <= 8, "seed {seed}: {disagree} pixels disagree");
    }
}

#[test]
fn masks_stay_binary_after_augmentation() {
    let size = 64;
    let p = generate_phantom(1, 0, size);
    let (mut image, mut mask) = (p.image.data, p.mask.data);
    augment(
        &mut image,
        &mut mask,
        size,
        &AugmentConfig::default(),
        &mut Rng::new(4),
    );
    assert!(mask.iter().all(|&v| v == 0.0 || v == 1.0));
    assert!(image.iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn photometric_changes_leave_the_mask_alone() {
    let size = 48;
    let cfg = AugmentConfig {
        p_flip_h: 0.0,
        p_flip_v: 0.0,
        max_rotation_deg: 0.0,
        scale_min: 1.0,
        scale_max: 1.0,
        p_speckle: 1.0,
        ..Default::default()
    };
    let p = generate_phantom(2, 0, size);
    let (mut image, mut mask) = (p.image.data.clone(), p.mask.data.clone());
    augment(&mut image, &mut mask, size, &cfg, &mut Rng::new(5));
    assert_eq!(mask, p.mask.data);
    assert_ne!(image, p.image.data);
}

#[test]
fn same_seed_gives_the_same_augmentation() {
    let size = 48;
    let p = generate_phantom(3, 0, size);
    let run = |seed| {
        let (mut image, mut mask) = (p.image.data.clone(), p.mask.data.clone());
        augment(
            &mut image,
            &mut mask,
            size,
            &AugmentConfig::default(),
            &mut Rng::new(seed),
        );
        (image, mask)
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7).0, run(8).0);
}

#[test]
fn drawn_warps_stay_within_the_configured_ranges() {
    let cfg = AugmentConfig::default();
    let mut rng = Rng::new(0);
    let (mut h, mut v) = (0, 0);
    for _ in 0..1000 {
        let w: Warp = draw_warp(&cfg, &mut rng);
        assert!(w.angle_rad.abs() <= 15f32.to_radians());
        assert!((0.9..=1.1).contains(&w.scale));
        h += w.flip_h as usize;
        v += w.flip_v as usize;
    }
    assert!((400..600).contains(&h) && (400..600).contains(&v));
}

#[test]
fn vertical_flip_moves_the_lesion_with_the_image() {
    let size = 64;
    let mut mask = blob(size);
    let mut image = mask.clone();
    warp_pair(
        &mut image,
        &mut mask,
        size,
        &Warp {
            flip_v: true,
            ..Warp::identity()
        },
    );
    let original = blob(size);
    for y in 0..size {
        for x in 0..size {
            assert_eq!(mask[y * size + x], original[(size - 1 - y) * size + x]);
            assert_eq!(image[y * size + x], original[(size - 1 - y) * size + x]);
        }
    }
}

#[test]
fn lesion_free_share_replaces_that_share_of_scans_by_empty_views() {
    use rca_gpu::data::augment::lesion_free_crop;
    // A small lesion at the bottom: every scan has room for a view.
    let size = 64;
    let mut mask = vec![0.0f32; size * size];
    for y in 52..58 {
        for x in 28..36 {
            mask[y * size + x] = 1.0;
        }
    }
    let image: Vec<f32> = (0..size * size).map(|i| (i % 13) as f32 / 13.0).collect();
    let cfg = AugmentConfig {
        p_lesion_free: 0.25,
        ..AugmentConfig::default()
    };
    let trials = 2000;
    let empty = (0..trials)
        .filter(|&seed| {
            let (mut img, mut m) = (image.clone(), mask.clone());
            augment(&mut img, &mut m, size, &cfg, &mut Rng::new(seed));
            m.iter().all(|&v| v == 0.0)
        })
        .count();
    // Binomial(2000, 0.25): sd ≈ 19.
    assert!((420..=580).contains(&empty), "{empty} of {trials} empty");
    // Off, it draws nothing: the streams of runs without it are unchanged.
    let (mut a, mut ma) = (image.clone(), mask.clone());
    let (mut b, mut mb) = (image.clone(), mask.clone());
    augment(
        &mut a,
        &mut ma,
        size,
        &AugmentConfig::default(),
        &mut Rng::new(3),
    );
    let mut rng = Rng::new(3);
    let warp = draw_warp(&AugmentConfig::default(), &mut rng);
    warp_pair(&mut b, &mut mb, size, &warp);
    rca_gpu::data::augment::photometric(&mut b, &AugmentConfig::default(), &mut rng);
    assert_eq!((a, ma), (b, mb));
    let (mut c, mut mc) = (image.clone(), mask.clone());
    assert!(lesion_free_crop(&mut c, &mut mc, size, &mut Rng::new(1)));
}
