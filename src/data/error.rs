//! Typed errors of the data module. Every variant names the file (or folder)
//! and the problem, so that a user with a 780-image download knows which file
//! to look at.

use std::path::PathBuf;

/// Everything that can go wrong while reading, checking or splitting a data set.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot decode image {path}: {source}")]
    Decode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },

    #[error("cannot write image {path}: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },

    #[error("cannot read DICOM image {path}: {why}")]
    Dicom { path: PathBuf, why: String },

    #[error("image {path} is empty (0×0 pixels)")]
    EmptyImage { path: PathBuf },

    #[error(
        "image {path} declares {w}×{h} pixels, more than the {max_megapixels} megapixels \
         rca-gpu decodes (no ultrasound scan is that large): the file is damaged or not a scan"
    )]
    TooManyPixels {
        path: PathBuf,
        w: u32,
        h: u32,
        max_megapixels: u64,
    },

    #[error(
        "size mismatch: image {image} is {image_w}×{image_h} but its mask {mask} is {mask_w}×{mask_h}"
    )]
    SizeMismatch {
        image: PathBuf,
        mask: PathBuf,
        image_w: u32,
        image_h: u32,
        mask_w: u32,
        mask_h: u32,
    },

    #[error("image {image} has no mask (expected e.g. {expected})")]
    MissingMask { image: PathBuf, expected: String },

    #[error("mask {mask} has no matching image")]
    OrphanMask { mask: PathBuf },

    #[error("{first} and {second} have the same name stem; which one is meant is ambiguous")]
    AmbiguousStem { first: PathBuf, second: PathBuf },

    #[error("cannot recognise the data-set layout of {dir}: {why}")]
    UnknownLayout { dir: PathBuf, why: String },

    #[error("no usable images in {dir}")]
    NoImages { dir: PathBuf },

    #[error("split file {path}: {source}")]
    SplitParse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("split file {split} lists {name}, which is not in {data_set}")]
    SplitMissingFile {
        split: PathBuf,
        name: String,
        data_set: String,
    },

    #[error("split file {split} lists {name} in more than one part")]
    SplitOverlap { split: PathBuf, name: String },

    #[error("{path} line {line}: {why}")]
    Table {
        path: PathBuf,
        line: usize,
        why: String,
    },

    #[error("image {image} has no row in {table}")]
    MissingMetadata { image: PathBuf, table: PathBuf },

    #[error("invalid {what}: {why}")]
    InvalidParameter { what: &'static str, why: String },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}
