//! Splits: the paper's fractions, reproducibility for a seed, duplicates kept
//! on one side, stratification, and the JSON file that carries a split between
//! training and evaluation.

use std::collections::BTreeSet;

use rca_gpu::data::hash::fingerprint;
use rca_gpu::data::split::SplitItem;
use rca_gpu::data::{
    Class, DataError, GrayF32, LoadOptions, Split, SplitConfig, generate_phantom, load_dataset,
    make_split,
};

/// Phantom-based items: realistic, distinct images.
fn items(n: u64) -> Vec<SplitItem> {
    (0..n)
        .map(|i| {
            let p = generate_phantom(11, i, 64);
            SplitItem {
                name: format!("{}/img ({i}).png", p.class),
                class: p.class,
                fingerprint: Some(fingerprint(&p.image)),
                group: None,
            }
        })
        .collect()
}

/// Items where image k is also present as a slightly altered copy under
/// another name (and sometimes another class), as in BUSI.
fn items_with_duplicates(n: u64) -> (Vec<SplitItem>, Vec<(String, String)>) {
    let mut all = items(n);
    let mut pairs = Vec::new();
    for k in (0..n).step_by(4) {
        let p = generate_phantom(11, k, 64);
        let brighter = GrayF32::from_vec(
            64,
            64,
            p.image
                .data
                .iter()
                .map(|v| (v * 0.95 + 0.02).min(1.0))
                .collect(),
        );
        let name = format!("malignant/copy of {k}.png");
        pairs.push((all[k as usize].name.clone(), name.clone()));
        all.push(SplitItem {
            name,
            class: Class::Malignant,
            fingerprint: Some(fingerprint(&brighter)),
            group: None,
        });
    }
    (all, pairs)
}

fn side_of(split: &Split, name: &str) -> &'static str {
    if split.train.iter().any(|n| n == name) {
        "train"
    } else if split.val.iter().any(|n| n == name) {
        "val"
    } else if split.test.iter().any(|n| n == name) {
        "test"
    } else {
        panic!("{name} is on no side")
    }
}

#[test]
fn every_item_lands_on_exactly_one_side() {
    let its = items(60);
    let s = make_split(&its, &SplitConfig::default()).unwrap();
    let all: Vec<&String> = s.train.iter().chain(&s.val).chain(&s.test).collect();
    let unique: BTreeSet<&String> = all.iter().copied().collect();
    assert_eq!(all.len(), 60);
    assert_eq!(unique.len(), 60);
}

#[test]
fn fractions_are_seventy_thirty_then_seventy_thirty() {
    let its = items(100);
    let s = make_split(
        &its,
        &SplitConfig {
            stratify: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.test.len(), 30);
    assert_eq!(s.val.len(), 21);
    assert_eq!(s.train.len(), 49);
}

#[test]
fn same_seed_gives_the_same_split() {
    let its = items(50);
    let cfg = SplitConfig {
        seed: 42,
        ..Default::default()
    };
    assert_eq!(
        make_split(&its, &cfg).unwrap(),
        make_split(&its, &cfg).unwrap()
    );
}

#[test]
fn split_does_not_depend_on_listing_order() {
    let its = items(50);
    let mut reversed = its.clone();
    reversed.reverse();
    let cfg = SplitConfig {
        seed: 5,
        ..Default::default()
    };
    assert_eq!(
        make_split(&its, &cfg).unwrap(),
        make_split(&reversed, &cfg).unwrap()
    );
}

#[test]
fn different_seeds_give_different_splits() {
    let its = items(50);
    let a = make_split(
        &its,
        &SplitConfig {
            seed: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let b = make_split(
        &its,
        &SplitConfig {
            seed: 2,
            ..Default::default()
        },
    )
    .unwrap();
    assert_ne!(a.test, b.test);
}

#[test]
fn duplicates_always_land_on_the_same_side() {
    let (its, pairs) = items_with_duplicates(40);
    for seed in 0..20 {
        let s = make_split(
            &its,
            &SplitConfig {
                seed,
                ..Default::default()
            },
        )
        .unwrap();
        for (a, b) in &pairs {
            assert_eq!(
                side_of(&s, a),
                side_of(&s, b),
                "seed {seed}: {a} and {b} split apart"
            );
        }
    }
}

#[test]
fn without_duplicate_grouping_copies_can_leak() {
    // The control for the test above: with grouping disabled, some seed separates a pair.
    let (its, pairs) = items_with_duplicates(40);
    let off = rca_gpu::data::DuplicateRule {
        max_hamming: 0,
        min_correlation: 2.0,
        strong_correlation: 2.0,
    };
    let leaked = (0..20).any(|seed| {
        let s = make_split(
            &its,
            &SplitConfig {
                seed,
                duplicates: off,
                ..Default::default()
            },
        )
        .unwrap();
        pairs.iter().any(|(a, b)| side_of(&s, a) != side_of(&s, b))
    });
    assert!(leaked);
}

#[test]
fn stratified_split_keeps_class_proportions_in_the_test_set() {
    let its = items(120);
    let s = make_split(
        &its,
        &SplitConfig {
            seed: 3,
            ..Default::default()
        },
    )
    .unwrap();
    for class in [Class::Benign, Class::Malignant, Class::Normal] {
        let total = its.iter().filter(|i| i.class == class).count() as f64;
        let in_test = s
            .test
            .iter()
            .filter(|n| n.starts_with(class.as_str()))
            .count() as f64;
        assert!(
            (in_test / total - 0.3).abs() < 0.05,
            "{class}: {in_test}/{total}"
        );
    }
}

#[test]
fn split_file_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let s = make_split(
        &items(30),
        &SplitConfig {
            seed: 9,
            ..Default::default()
        },
    )
    .unwrap();
    let path = dir.path().join("split.json");
    s.save(&path).unwrap();
    let back = Split::load(&path).unwrap();
    assert_eq!(back, s);
    let text = std::fs::read_to_string(&path).unwrap();
    for key in [
        "\"seed\": 9",
        "\"test_fraction\": 0.3",
        "\"val_fraction\": 0.3",
        "\"train\"",
        "\"test\"",
    ] {
        assert!(text.contains(key), "{key} missing in {text}");
    }
}

#[test]
fn malformed_split_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("split.json");
    std::fs::write(&path, "{ not json").unwrap();
    let err = Split::load(&path).unwrap_err();
    assert!(matches!(err, DataError::SplitParse { .. }));
    assert!(err.to_string().contains("split.json"));
}

fn small_busi(root: &std::path::Path) {
    rca_gpu::data::write_phantoms(root, 12, 32, 4, &|| {}).unwrap();
}

#[test]
fn saved_split_resolves_to_the_same_samples() {
    let dir = tempfile::tempdir().unwrap();
    small_busi(dir.path());
    let ds = load_dataset(
        dir.path(),
        &LoadOptions {
            size: 32,
            ..Default::default()
        },
    )
    .unwrap();
    let s = ds.split(&SplitConfig::default()).unwrap();
    let path = dir.path().join("split.json");
    s.save(&path).unwrap();
    let idx = Split::load(&path).unwrap().resolve(&ds, &path).unwrap();
    let names = |v: &[usize]| {
        v.iter()
            .map(|&i| ds.samples[i].name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&idx.train), s.train);
    assert_eq!(names(&idx.val), s.val);
    assert_eq!(names(&idx.test), s.test);
    assert!(idx.unlisted.is_empty());
}

#[test]
fn split_listing_a_missing_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    small_busi(dir.path());
    let ds = load_dataset(
        dir.path(),
        &LoadOptions {
            size: 32,
            ..Default::default()
        },
    )
    .unwrap();
    let mut s = ds.split(&SplitConfig::default()).unwrap();
    s.test.push("benign/gone (99).png".into());
    let path = dir.path().join("split.json");
    let err = s.resolve(&ds, &path).unwrap_err();
    assert!(matches!(err, DataError::SplitMissingFile { .. }));
    let text = err.to_string();
    assert!(
        text.contains("benign/gone (99).png") && text.contains("split.json"),
        "{text}"
    );
}

#[test]
fn files_new_since_the_split_are_reported_as_unlisted() {
    let dir = tempfile::tempdir().unwrap();
    small_busi(dir.path());
    let ds = load_dataset(
        dir.path(),
        &LoadOptions {
            size: 32,
            ..Default::default()
        },
    )
    .unwrap();
    let mut s = ds.split(&SplitConfig::default()).unwrap();
    let dropped = s.train.pop().unwrap();
    let idx = s.resolve(&ds, std::path::Path::new("split.json")).unwrap();
    assert_eq!(idx.unlisted, vec![dropped]);
}

#[test]
fn phantom_source_splits_and_resolves_by_name() {
    let src = rca_gpu::data::PhantomSource {
        seed: 1,
        count: 40,
        size: 32,
    };
    let s = src.split(&SplitConfig::default()).unwrap();
    assert_eq!(s.test.len(), 12);
    let idx = s.resolve(&src, std::path::Path::new("split.json")).unwrap();
    assert_eq!(idx.train.len() + idx.val.len() + idx.test.len(), 40);
    assert!(
        idx.test
            .iter()
            .all(|&i| s.test.contains(&rca_gpu::data::SampleSource::name(&src, i)))
    );
}
