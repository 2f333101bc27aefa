//! Post-processing of a predicted probability map (paper, Section 3; "PP Y" in Table 2):
//! threshold, fill holes, remove small connected components — in that order, so that a
//! component's area includes its filled holes, and the result is hole-free (removing a
//! component can only merge background that already touched the border).
//!
//! Optionally (`min_peak`, off by default) a hysteresis step between hole filling and the
//! area rules: a component is kept only if its most confident pixel reaches `min_peak`
//! (as `skimage.filters.apply_hysteresis_threshold(p, threshold, min_peak)` then filled).
//! A lesion keeps the outline the threshold gives it; the faint regions a model marks in
//! lesion-free tissue go. It runs before the area rules, so that a faint false region
//! cannot make a real lesion "small" relative to it.
//!
//! Connectivity is that of the foreground; the background always uses the complementary
//! one (8-connected lesions have 4-connected holes and vice versa), the standard pairing
//! that makes "hole" and "component" agree with each other on a pixel grid. With the default
//! 8-connectivity this is exactly `scipy.ndimage.binary_fill_holes(m)` followed by
//! `scipy.ndimage.label(m, structure=np.ones((3, 3)))`.

use serde::{Deserialize, Serialize};

use super::mask::check_shape;
use super::{BinaryMask, MetricsError};

/// Pixel adjacency of the foreground.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Connectivity {
    /// Edge neighbours only (up, down, left, right).
    Four,
    /// Edge and corner neighbours. The default: a lesion outline drawn at a diagonal stays
    /// one component.
    #[default]
    Eight,
}

impl Connectivity {
    /// The adjacency the background uses when this one is the foreground's.
    pub fn complement(self) -> Self {
        match self {
            Self::Four => Self::Eight,
            Self::Eight => Self::Four,
        }
    }

    /// From the usual number, 4 or 8.
    pub fn from_neighbours(n: u8) -> Option<Self> {
        match n {
            4 => Some(Self::Four),
            8 => Some(Self::Eight),
            _ => None,
        }
    }

    pub fn neighbours(self) -> u8 {
        match self {
            Self::Four => 4,
            Self::Eight => 8,
        }
    }

    fn offsets(self) -> &'static [(isize, isize)] {
        const FOUR: [(isize, isize); 4] = [(0, -1), (-1, 0), (1, 0), (0, 1)];
        const EIGHT: [(isize, isize); 8] = [
            (-1, -1),
            (0, -1),
            (1, -1),
            (-1, 0),
            (1, 0),
            (-1, 1),
            (0, 1),
            (1, 1),
        ];
        match self {
            Self::Four => &FOUR,
            Self::Eight => &EIGHT,
        }
    }
}

/// Post-processing settings. `Default` is what the paper's "PP Y" rows use here.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PostProcess {
    /// A pixel is foreground when its probability is ≥ this (default 0.5). NaN is background.
    pub threshold: f32,
    /// Turn background regions not connected to the image border into foreground
    /// (default on).
    pub fill_holes: bool,
    /// Components with fewer pixels are removed (default 64, 0.1 % of a 256×256 image:
    /// speckle, not a lesion; 0 disables).
    pub min_area: usize,
    /// Components smaller than this fraction of the largest component are removed
    /// (default 0.1; 0 disables, 1 keeps only the largest and any tied with it). Applied
    /// together with `min_area`: a component survives only if it passes both.
    pub min_relative_area: f64,
    /// Foreground connectivity (default 8; holes then use 4).
    pub connectivity: Connectivity,
    /// Components whose highest probability is below this are removed (hysteresis; 0, the
    /// default, disables). Only [`PostProcess::apply`] sees probabilities:
    /// [`PostProcess::apply_mask`] ignores it.
    #[serde(default)]
    pub min_peak: f32,
}

impl Default for PostProcess {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            fill_holes: true,
            min_area: 64,
            min_relative_area: 0.1,
            connectivity: Connectivity::Eight,
            min_peak: 0.0,
        }
    }
}

impl PostProcess {
    /// Only thresholding: what the "PP N" rows score.
    pub fn threshold_only(threshold: f32) -> Self {
        Self {
            threshold,
            fill_holes: false,
            min_area: 0,
            min_relative_area: 0.0,
            connectivity: Connectivity::Eight,
            min_peak: 0.0,
        }
    }

    /// Rejects settings that cannot mean anything (NaN threshold, relative area outside
    /// [0, 1]).
    pub fn validate(&self) -> Result<(), MetricsError> {
        if self.threshold.is_nan() {
            return Err(MetricsError::InvalidSetting("threshold is NaN".into()));
        }
        if !(0.0..=1.0).contains(&self.min_peak) {
            return Err(MetricsError::InvalidSetting(format!(
                "min_peak {} is outside [0, 1]",
                self.min_peak
            )));
        }
        if !(0.0..=1.0).contains(&self.min_relative_area) {
            return Err(MetricsError::InvalidSetting(format!(
                "min_relative_area {} is outside [0, 1]",
                self.min_relative_area
            )));
        }
        Ok(())
    }

    /// Threshold, fill holes, drop the components whose peak is below `min_peak`, then
    /// the small ones. `prob` is row-major `width × height`.
    pub fn apply(
        &self,
        prob: &[f32],
        width: usize,
        height: usize,
    ) -> Result<BinaryMask, MetricsError> {
        self.validate()?;
        let filled = self.filled(&threshold(prob, width, height, self.threshold)?);
        let confident = if self.min_peak > 0.0 {
            remove_faint_components(&filled, self.connectivity, prob, self.min_peak)
        } else {
            filled
        };
        Ok(self.remove_small(&confident))
    }

    /// Hole filling and small-component removal on an already binary mask (no
    /// probabilities: `min_peak` does not apply).
    pub fn apply_mask(&self, mask: &BinaryMask) -> BinaryMask {
        self.remove_small(&self.filled(mask))
    }

    fn filled(&self, mask: &BinaryMask) -> BinaryMask {
        if self.fill_holes {
            fill_holes(mask, self.connectivity)
        } else {
            mask.clone()
        }
    }

    fn remove_small(&self, filled: &BinaryMask) -> BinaryMask {
        remove_small_components(
            filled,
            self.connectivity,
            self.min_area,
            self.min_relative_area,
        )
    }
}

/// Foreground where `prob[i] >= threshold`.
pub fn threshold(
    prob: &[f32],
    width: usize,
    height: usize,
    threshold: f32,
) -> Result<BinaryMask, MetricsError> {
    check_shape("threshold", prob.len(), width, height)?;
    BinaryMask::new(
        width,
        height,
        prob.iter().map(|&p| p >= threshold).collect(),
    )
}

/// Fills holes: background pixels not connected to the image border, through background
/// pixels under the complement of `connectivity`, become foreground (a flood fill from the
/// border). Same as `scipy.ndimage.binary_fill_holes` with the complementary structure.
pub fn fill_holes(mask: &BinaryMask, connectivity: Connectivity) -> BinaryMask {
    let (w, h) = (mask.width(), mask.height());
    let data = mask.data();
    let offsets = connectivity.complement().offsets();
    // reached[i]: background pixel i is connected to the border
    let mut reached = vec![false; w * h];
    let mut stack = Vec::new();
    let seed = |x: usize, y: usize, reached: &mut [bool], stack: &mut Vec<usize>| {
        let i = y * w + x;
        if !data[i] && !reached[i] {
            reached[i] = true;
            stack.push(i);
        }
    };
    for x in 0..w {
        seed(x, 0, &mut reached, &mut stack);
        seed(x, h - 1, &mut reached, &mut stack);
    }
    for y in 0..h {
        seed(0, y, &mut reached, &mut stack);
        seed(w - 1, y, &mut reached, &mut stack);
    }
    while let Some(i) = stack.pop() {
        let (x, y) = (i % w, i / w);
        for_neighbours(x, y, w, h, offsets, |j| {
            if !data[j] && !reached[j] {
                reached[j] = true;
                stack.push(j);
            }
        });
    }
    let filled = reached.iter().map(|&r| !r).collect();
    BinaryMask::new(w, h, filled).expect("same shape as the input mask")
}

/// Connected components of the foreground.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Components {
    /// Per pixel, row-major: 0 for background, else the component's label 1..=count,
    /// numbered in raster order of each component's first pixel (as `scipy.ndimage.label`).
    pub labels: Vec<u32>,
    /// `sizes[l - 1]` is the pixel count of label `l`.
    pub sizes: Vec<usize>,
}

impl Components {
    pub fn count(&self) -> usize {
        self.sizes.len()
    }

    /// Pixel count of the largest component, 0 when there is none.
    pub fn largest(&self) -> usize {
        self.sizes.iter().copied().max().unwrap_or(0)
    }
}

/// Labels the foreground's connected components.
pub fn label_components(mask: &BinaryMask, connectivity: Connectivity) -> Components {
    let (w, h) = (mask.width(), mask.height());
    let data = mask.data();
    let offsets = connectivity.offsets();
    let mut labels = vec![0u32; w * h];
    let mut sizes = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !data[start] || labels[start] != 0 {
            continue;
        }
        let label = u32::try_from(sizes.len() + 1).expect("fewer than 2^32 components");
        labels[start] = label;
        stack.push(start);
        let mut size = 0;
        while let Some(i) = stack.pop() {
            size += 1;
            for_neighbours(i % w, i / w, w, h, offsets, |j| {
                if data[j] && labels[j] == 0 {
                    labels[j] = label;
                    stack.push(j);
                }
            });
        }
        sizes.push(size);
    }
    Components { labels, sizes }
}

/// Keeps the components with `size >= min_area` and `size >= min_relative_area · largest`
/// (the product taken in f64, as the golden script does).
pub fn remove_small_components(
    mask: &BinaryMask,
    connectivity: Connectivity,
    min_area: usize,
    min_relative_area: f64,
) -> BinaryMask {
    let comps = label_components(mask, connectivity);
    let floor = min_relative_area * comps.largest() as f64;
    let keep: Vec<bool> = comps
        .sizes
        .iter()
        .map(|&s| s >= min_area && s as f64 >= floor)
        .collect();
    kept(mask, &comps, &keep)
}

/// The pixels of `mask` in the components whose `keep[label - 1]` is set.
fn kept(mask: &BinaryMask, comps: &Components, keep: &[bool]) -> BinaryMask {
    let data = comps
        .labels
        .iter()
        .map(|&l| l != 0 && keep[l as usize - 1])
        .collect();
    BinaryMask::new(mask.width(), mask.height(), data).expect("same shape as the input mask")
}

/// Keeps the components of `mask` in which some pixel has `prob >= min_peak` (NaN never
/// reaches it). `prob` is row-major, the mask's size (the caller checks).
pub fn remove_faint_components(
    mask: &BinaryMask,
    connectivity: Connectivity,
    prob: &[f32],
    min_peak: f32,
) -> BinaryMask {
    let comps = label_components(mask, connectivity);
    let mut keep = vec![false; comps.count()];
    for (&l, &p) in comps.labels.iter().zip(prob) {
        if l != 0 && p >= min_peak {
            keep[l as usize - 1] = true;
        }
    }
    kept(mask, &comps, &keep)
}

/// Calls `f` with the index of each in-image neighbour of (x, y).
#[inline]
fn for_neighbours(
    x: usize,
    y: usize,
    w: usize,
    h: usize,
    offsets: &[(isize, isize)],
    mut f: impl FnMut(usize),
) {
    for &(dx, dy) in offsets {
        let (nx, ny) = (x as isize + dx, y as isize + dy);
        if nx >= 0 && ny >= 0 && (nx as usize) < w && (ny as usize) < h {
            f(ny as usize * w + nx as usize);
        }
    }
}
