//! An image or mask file as a user hands it to `train`, `infer`, `eval` or `metrics`: any
//! bytes under any of the extensions rca-gpu reads (the first byte picks the extension). It
//! must load or give an error, never panic, and what loads must be a well-formed image: w×h
//! values, grey levels in [0, 1], mask values 0 or 1.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rca_gpu::data::image_io::{image_size, load_image_gray, load_mask};

const NAMES: [&str; 9] = [
    "scan.png",
    "scan.jpg",
    "scan.bmp",
    "scan.tif",
    "scan.dcm",
    "scan",
    "scan.PNG",
    "scan.jpeg",
    "scan.tiff",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let dir = fuzz_common::scratch();
    let path = fuzz_common::write(dir, NAMES[usize::from(pick) % NAMES.len()], bytes);
    let _ = image_size(&path);
    if let Ok(img) = load_image_gray(&path) {
        assert!(img.w > 0 && img.h > 0, "{}×{} image loaded", img.w, img.h);
        assert_eq!(img.data.len(), img.w * img.h);
        assert!(
            img.data.iter().all(|v| (0.0..=1.0).contains(v)),
            "grey level outside [0, 1]"
        );
    }
    if let Ok(mask) = load_mask(&path) {
        assert!(
            mask.w > 0 && mask.h > 0,
            "{}×{} mask loaded",
            mask.w,
            mask.h
        );
        assert_eq!(mask.data.len(), mask.w * mask.h);
        assert!(
            mask.data.iter().all(|&v| v == 0.0 || v == 1.0),
            "mask value other than 0 or 1"
        );
    }
});
