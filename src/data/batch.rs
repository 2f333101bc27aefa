//! Batches for the trainer, prepared on a CPU thread while the GPU works.
//!
//! A background thread walks one epoch in a seeded shuffled order, builds each
//! batch (copy, augment) and hands it over through a `sync_channel` with a small
//! bound, so at most `prefetch` batches wait in memory. Each sample's
//! augmentation stream is derived from (seed, epoch, sample index), and the
//! order from (seed, epoch), so the batches are the same for a seed whatever
//! the thread timing or the number of worker threads.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use super::augment::{AugmentConfig, augment};
use super::dataset::{Dataset, parallel_map};
use super::rng::Rng;
use super::synth::{generate_phantom, phantom_class};

/// One batch, laid out for an NCHW tensor with C = 1.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// n × 1 × size × size, values in [0, 1].
    pub images: Vec<f32>,
    /// n × 1 × size × size, each 0.0 or 1.0.
    pub masks: Vec<f32>,
    /// Sample names, in batch order.
    pub names: Vec<String>,
    pub size: usize,
    pub n: usize,
}

/// Anything that can hand out preprocessed size×size samples by index.
pub trait SampleSource: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;
    /// True if there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Side S of every sample.
    fn size(&self) -> usize;
    /// (image, mask, name) of sample `index`; both planes size×size.
    fn sample(&self, index: usize) -> (Vec<f32>, Vec<f32>, String);
    /// Name of sample `index` (what split files list).
    fn name(&self, index: usize) -> String {
        self.sample(index).2
    }
    /// A phrase naming the source in error messages ("the data set at …").
    fn describe(&self) -> String {
        "the data source".into()
    }
}

impl SampleSource for Dataset {
    fn len(&self) -> usize {
        self.samples.len()
    }
    fn size(&self) -> usize {
        self.size
    }
    fn sample(&self, index: usize) -> (Vec<f32>, Vec<f32>, String) {
        let s = &self.samples[index];
        (s.image.clone(), s.mask.clone(), s.name.clone())
    }
    fn name(&self, index: usize) -> String {
        self.samples[index].name.clone()
    }
    fn describe(&self) -> String {
        format!("the data set at {}", self.root.display())
    }
}

/// Phantoms generated on the fly: the built-in data set of `rca-gpu train`
/// when no data set is given. Sample `i` is `generate_phantom(seed, i, size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhantomSource {
    pub seed: u64,
    pub count: usize,
    pub size: usize,
}

impl SampleSource for PhantomSource {
    fn len(&self) -> usize {
        self.count
    }
    fn size(&self) -> usize {
        self.size
    }
    fn sample(&self, index: usize) -> (Vec<f32>, Vec<f32>, String) {
        let p = generate_phantom(self.seed, index as u64, self.size);
        (p.image.data, p.mask.data, self.name(index))
    }
    fn name(&self, index: usize) -> String {
        format!(
            "phantom/{}/{index:06}",
            phantom_class(self.seed, index as u64)
        )
    }
    fn describe(&self) -> String {
        format!(
            "the built-in phantoms (seed {}, {} images)",
            self.seed, self.count
        )
    }
}

/// A [`PhantomSource`] that generates each phantom once and keeps it, for a training run
/// that reads every phantom once an epoch: generating one at 128×128 (formed at 256×256)
/// takes about 15 ms of a CPU that the adapter may share. Phantoms past `budget_bytes` of
/// kept planes are generated again on each read, as the plain source does.
pub struct KeptPhantoms {
    source: PhantomSource,
    kept: Vec<std::sync::OnceLock<(Vec<f32>, Vec<f32>)>>,
}

impl KeptPhantoms {
    pub fn new(source: PhantomSource, budget_bytes: usize) -> Self {
        let per_phantom = 2 * source.size * source.size * std::mem::size_of::<f32>();
        let n = source.count.min(budget_bytes / per_phantom.max(1));
        KeptPhantoms {
            source,
            kept: (0..n).map(|_| std::sync::OnceLock::new()).collect(),
        }
    }
}

impl SampleSource for KeptPhantoms {
    fn len(&self) -> usize {
        self.source.len()
    }
    fn size(&self) -> usize {
        self.source.size()
    }
    fn sample(&self, index: usize) -> (Vec<f32>, Vec<f32>, String) {
        match self.kept.get(index) {
            Some(cell) => {
                let (image, mask) = cell.get_or_init(|| {
                    let (image, mask, _) = self.source.sample(index);
                    (image, mask)
                });
                (image.clone(), mask.clone(), self.source.name(index))
            }
            None => self.source.sample(index),
        }
    }
    fn name(&self, index: usize) -> String {
        self.source.name(index)
    }
    fn describe(&self) -> String {
        self.source.describe()
    }
}

/// How an epoch is batched.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchConfig {
    pub batch_size: usize,
    /// Shuffle the order each epoch (training); off for evaluation.
    pub shuffle: bool,
    /// Drop a last, incomplete batch (keeps batch-norm statistics sane).
    pub drop_last: bool,
    pub seed: u64,
    /// Augmentation for training; None for evaluation.
    pub augment: Option<AugmentConfig>,
    /// Batches prepared ahead (the channel bound); at least 1.
    pub prefetch: usize,
    /// Threads that build one batch's samples in parallel (0 = all cores).
    pub threads: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            batch_size: 8,
            shuffle: true,
            drop_last: false,
            seed: 0,
            augment: Some(AugmentConfig::default()),
            prefetch: 2,
            threads: 0,
        }
    }
}

impl BatchConfig {
    /// Settings for evaluation: in order, no augmentation, keep the last batch.
    pub fn evaluation(batch_size: usize) -> Self {
        BatchConfig {
            batch_size,
            shuffle: false,
            drop_last: false,
            augment: None,
            ..Default::default()
        }
    }
}

/// The sample order of one epoch.
pub fn epoch_order(indices: &[usize], cfg: &BatchConfig, epoch: u64) -> Vec<usize> {
    let mut order = indices.to_vec();
    if cfg.shuffle {
        Rng::from_parts(&[cfg.seed, epoch, 0x0BDE]).shuffle(&mut order);
    }
    order
}

/// Builds one batch from the given sample indices (synchronously).
pub fn make_batch(
    source: &dyn SampleSource,
    indices: &[usize],
    cfg: &BatchConfig,
    epoch: u64,
) -> Batch {
    let size = source.size();
    let samples = parallel_map(indices, cfg.threads, |&i| {
        let (mut img, mut mask, name) = source.sample(i);
        if let Some(aug) = &cfg.augment {
            let mut rng = Rng::from_parts(&[cfg.seed, epoch, i as u64, 0xA06]);
            augment(&mut img, &mut mask, size, aug, &mut rng);
        }
        (img, mask, name)
    });
    let n = samples.len();
    let mut batch = Batch {
        images: Vec::with_capacity(n * size * size),
        masks: Vec::with_capacity(n * size * size),
        names: Vec::with_capacity(n),
        size,
        n,
    };
    for (img, mask, name) in samples {
        batch.images.extend_from_slice(&img);
        batch.masks.extend_from_slice(&mask);
        batch.names.push(name);
    }
    batch
}

/// An epoch's batches, produced by a background thread.
pub struct BatchIter {
    rx: Option<Receiver<Batch>>,
    handle: Option<JoinHandle<()>>,
    remaining: usize,
}

/// Starts producing the batches of `epoch` over `indices` of `source`.
pub fn epoch_batches(
    source: Arc<dyn SampleSource>,
    indices: &[usize],
    cfg: &BatchConfig,
    epoch: u64,
) -> BatchIter {
    assert!(cfg.batch_size > 0, "batch size must be positive");
    let order = epoch_order(indices, cfg, epoch);
    let mut chunks: Vec<Vec<usize>> = order
        .chunks(cfg.batch_size)
        .map(<[usize]>::to_vec)
        .collect();
    if cfg.drop_last && chunks.last().is_some_and(|c| c.len() < cfg.batch_size) {
        chunks.pop();
    }
    let remaining = chunks.len();
    let (tx, rx) = sync_channel(cfg.prefetch.max(1));
    let cfg = cfg.clone();
    let handle = std::thread::Builder::new()
        .name("batch-producer".into())
        .spawn(move || {
            for chunk in chunks {
                let batch = make_batch(source.as_ref(), &chunk, &cfg, epoch);
                // The receiver is gone when the trainer stops early: just end.
                if tx.send(batch).is_err() {
                    return;
                }
            }
        })
        .expect("cannot spawn the batch producer thread");
    BatchIter {
        rx: Some(rx),
        handle: Some(handle),
        remaining,
    }
}

impl Iterator for BatchIter {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let batch = self.rx.as_ref()?.recv().ok();
        if batch.is_some() {
            self.remaining -= 1;
        } else if self.remaining > 0 {
            // The producer ended early: only a panic does that; surface it.
            if let Some(h) = self.handle.take()
                && let Err(e) = h.join()
            {
                std::panic::resume_unwind(e);
            }
        }
        batch
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for BatchIter {}

impl Drop for BatchIter {
    fn drop(&mut self) {
        // Dropping the receiver first unblocks a producer waiting in `send`.
        self.rx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
