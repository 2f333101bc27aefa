//! The binary mask every metric and post-processing step works on: `width × height`
//! booleans, row-major (index `y * width + x`), `true` = lesion.

use super::MetricsError;

/// A row-major binary mask, `true` = foreground (lesion). Never zero-sized.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BinaryMask {
    width: usize,
    height: usize,
    data: Vec<bool>,
}

impl BinaryMask {
    /// Wraps row-major data; fails when the length is not `width * height` or the image is
    /// zero-sized (no metric is defined on zero pixels).
    pub fn new(width: usize, height: usize, data: Vec<bool>) -> Result<Self, MetricsError> {
        check_shape("BinaryMask::new", data.len(), width, height)?;
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// An all-background mask (a lesion-free image).
    pub fn empty(width: usize, height: usize) -> Result<Self, MetricsError> {
        Self::new(width, height, vec![false; width * height])
    }

    /// An all-foreground mask.
    pub fn full(width: usize, height: usize) -> Result<Self, MetricsError> {
        Self::new(width, height, vec![true; width * height])
    }

    /// Builds a mask from a predicate on (x, y).
    pub fn from_fn(
        width: usize,
        height: usize,
        mut f: impl FnMut(usize, usize) -> bool,
    ) -> Result<Self, MetricsError> {
        let data = (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y))
            .collect();
        Self::new(width, height, data)
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// Row-major pixels, `y * width + x`.
    pub fn data(&self) -> &[bool] {
        &self.data
    }

    pub fn into_data(self) -> Vec<bool> {
        self.data
    }

    /// The pixel at (x, y); panics outside the image, like slice indexing.
    pub fn get(&self, x: usize, y: usize) -> bool {
        assert!(
            x < self.width && y < self.height,
            "pixel ({x}, {y}) outside {}×{}",
            self.width,
            self.height
        );
        self.data[y * self.width + x]
    }

    pub fn set(&mut self, x: usize, y: usize, value: bool) {
        assert!(
            x < self.width && y < self.height,
            "pixel ({x}, {y}) outside {}×{}",
            self.width,
            self.height
        );
        self.data[y * self.width + x] = value;
    }

    /// Number of foreground pixels.
    pub fn area(&self) -> usize {
        self.data.iter().filter(|&&v| v).count()
    }

    /// True when at least one pixel is foreground.
    pub fn has_foreground(&self) -> bool {
        self.data.iter().any(|&v| v)
    }

    /// The mask with foreground and background swapped.
    pub fn inverted(&self) -> Self {
        Self {
            width: self.width,
            height: self.height,
            data: self.data.iter().map(|&v| !v).collect(),
        }
    }
}

/// Checks that `len` values make a non-empty `width × height` image.
pub(crate) fn check_shape(
    op: &'static str,
    len: usize,
    width: usize,
    height: usize,
) -> Result<(), MetricsError> {
    if width == 0 || height == 0 {
        return Err(MetricsError::ZeroSize { op, width, height });
    }
    let expected = width.saturating_mul(height);
    if len != expected {
        return Err(MetricsError::LengthMismatch {
            op,
            len,
            width,
            height,
            expected,
        });
    }
    Ok(())
}
