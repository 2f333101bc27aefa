//! What the fuzz targets share: a scratch folder of their own per process, because rca-gpu
//! reads users' data from files (format detection looks at names and content alike), so the
//! targets feed it files rather than byte slices.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// This process's scratch folder (under the system temp folder; libFuzzer's workers are
/// processes of their own, so each gets its own).
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rca-gpu-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cannot create the fuzz scratch folder");
        dir
    })
}

/// An empty folder `name` inside [`scratch`], emptied first if an earlier input left files.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = scratch().join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("cannot empty a fuzz scratch folder");
    }
    std::fs::create_dir_all(&dir).expect("cannot create a fuzz scratch folder");
    dir
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("cannot write a fuzz scratch file");
    path
}

/// A valid 4×4 8-bit grey PNG with a 2×2 bright square: a real image and a non-empty mask.
pub fn tiny_png() -> &'static [u8] {
    static PNG: OnceLock<Vec<u8>> = OnceLock::new();
    PNG.get_or_init(|| {
        let pixels: Vec<u8> = (0..16)
            .map(|i| {
                if i == 5 || i == 6 || i == 9 || i == 10 {
                    255
                } else {
                    0
                }
            })
            .collect();
        let path = scratch().join("tiny.png");
        rca_gpu::data::image_io::save_gray_u8(&path, 4, 4, pixels).expect("cannot write tiny.png");
        std::fs::read(&path).expect("cannot read tiny.png back")
    })
}

/// The value of `key` in a safetensors file's metadata, where the header parses.
pub fn metadata(bytes: &[u8], key: &str) -> Option<String> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).ok()?;
    header.metadata().as_ref()?.get(key).cloned()
}
