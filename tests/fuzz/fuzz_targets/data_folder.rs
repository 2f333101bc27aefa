//! A data-set folder as a user points `train --data` at it: any file names in the layouts'
//! folders (BUSI, BUSIS, BUS-BRA, images/ + masks/), any BUS-BRA table and fold file, any
//! `--image-pattern` / `--mask-pattern`, with or without `--skip-bad`, `--format` given or
//! detected. Loading must give a data set or an error, never panic; a data set that loads
//! must split (with and without `--fold`) into parts that hold each image exactly once.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rca_gpu::data::split::Fold;
use rca_gpu::data::{Format, LoadOptions, Pairing, SplitConfig, load_dataset};
use std::collections::BTreeSet;

const FOLDERS: [&str; 11] = [
    "",
    "Images",
    "Masks",
    "benign",
    "malignant",
    "normal",
    "images",
    "masks",
    "original",
    "GT",
    "Images/sub",
];

#[derive(Arbitrary, Debug)]
enum Content {
    Image,
    Empty,
    Bytes(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct File {
    folder: u8,
    name: String,
    content: Content,
}

#[derive(Arbitrary, Debug)]
struct Input {
    files: Vec<File>,
    bus_data: Option<String>,
    folds: Option<(u8, String)>,
    image_pattern: Option<String>,
    mask_pattern: Option<String>,
    format: Option<u8>,
    skip_bad: bool,
    fold: Option<(u8, u8)>,
}

/// A name one path component long (the file system's rules, not rca-gpu's, refuse others).
fn usable(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
}

fuzz_target!(|input: Input| {
    let root = fuzz_common::fresh_dir("data");
    for folder in FOLDERS.iter().skip(1) {
        let _ = std::fs::create_dir_all(root.join(folder));
    }
    for file in input.files.iter().take(24) {
        if !usable(&file.name) {
            continue;
        }
        let dir = root.join(FOLDERS[usize::from(file.folder) % FOLDERS.len()]);
        let bytes: &[u8] = match &file.content {
            Content::Image => fuzz_common::tiny_png(),
            Content::Empty => &[],
            Content::Bytes(b) => b,
        };
        let _ = std::fs::write(dir.join(&file.name), bytes);
    }
    if let Some(text) = &input.bus_data {
        fuzz_common::write(&root, "bus_data.csv", text.as_bytes());
    }
    if let Some((k, text)) = &input.folds {
        fuzz_common::write(&root, &format!("{}-fold-cv.csv", k % 12), text.as_bytes());
    }
    let Ok(pairing) = Pairing::parse(
        input.image_pattern.as_deref(),
        input.mask_pattern.as_deref(),
    ) else {
        return;
    };
    let format = input.format.and_then(|f| {
        [Format::Busi, Format::Busis, Format::Pairs, Format::Busbra]
            .get(usize::from(f))
            .copied()
    });
    let opts = LoadOptions {
        format,
        pairing,
        skip_bad: input.skip_bad,
        size: 32,
        threads: 1,
        ..LoadOptions::default()
    };
    let Ok(data) = load_dataset(&root, &opts) else {
        return;
    };
    let names: BTreeSet<&str> = data.samples.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), data.samples.len(), "a sample loaded twice");
    for s in &data.samples {
        assert_eq!(s.image.len(), 32 * 32);
        assert_eq!(s.mask.len(), 32 * 32);
    }
    let fold = input
        .fold
        .and_then(|(k, of)| Fold::new(u32::from(k % 12), u32::from(of % 12)).ok());
    if let Ok(split) = data.split(&SplitConfig::new(42, fold)) {
        let mut seen = BTreeSet::new();
        for name in split.train.iter().chain(&split.val).chain(&split.test) {
            assert!(
                names.contains(name.as_str()),
                "the split names {name}, not loaded"
            );
            assert!(
                seen.insert(name.clone()),
                "{name} is in two parts of the split"
            );
        }
    }
});
