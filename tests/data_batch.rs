//! Batching: shapes, coverage of an epoch, and batches that depend only on the
//! seed and the epoch, not on thread timing or the number of threads.

use std::sync::Arc;

use rca_gpu::data::{Batch, BatchConfig, PhantomSource, SampleSource, epoch_batches, make_batch};

fn source() -> Arc<dyn SampleSource> {
    Arc::new(PhantomSource {
        seed: 1,
        count: 10,
        size: 32,
    })
}

fn collect(cfg: &BatchConfig, epoch: u64) -> Vec<Batch> {
    let idx: Vec<usize> = (0..10).collect();
    epoch_batches(source(), &idx, cfg, epoch).collect()
}

#[test]
fn batches_are_n_by_1_by_s_by_s() {
    let cfg = BatchConfig {
        batch_size: 4,
        ..Default::default()
    };
    let batches = collect(&cfg, 0);
    assert_eq!(
        batches.iter().map(|b| b.n).collect::<Vec<_>>(),
        vec![4, 4, 2]
    );
    for b in &batches {
        assert_eq!(b.size, 32);
        assert_eq!(b.images.len(), b.n * 32 * 32);
        assert_eq!(b.masks.len(), b.n * 32 * 32);
        assert_eq!(b.names.len(), b.n);
    }
}

#[test]
fn an_epoch_visits_every_sample_once() {
    let cfg = BatchConfig {
        batch_size: 3,
        ..Default::default()
    };
    let mut names: Vec<String> = collect(&cfg, 0).into_iter().flat_map(|b| b.names).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 10);
}

#[test]
fn drop_last_drops_only_an_incomplete_batch() {
    let cfg = BatchConfig {
        batch_size: 4,
        drop_last: true,
        ..Default::default()
    };
    assert_eq!(collect(&cfg, 0).len(), 2);
    let cfg = BatchConfig {
        batch_size: 5,
        drop_last: true,
        ..Default::default()
    };
    assert_eq!(collect(&cfg, 0).len(), 2);
}

#[test]
fn batches_are_the_same_whatever_the_threads_and_prefetch() {
    let a = BatchConfig {
        batch_size: 4,
        threads: 1,
        prefetch: 1,
        seed: 7,
        ..Default::default()
    };
    let b = BatchConfig {
        threads: 4,
        prefetch: 3,
        ..a.clone()
    };
    assert_eq!(collect(&a, 2), collect(&b, 2));
}

#[test]
fn epochs_are_shuffled_differently() {
    let cfg = BatchConfig {
        batch_size: 10,
        augment: None,
        ..Default::default()
    };
    assert_ne!(collect(&cfg, 0)[0].names, collect(&cfg, 1)[0].names);
}

#[test]
fn evaluation_batches_keep_the_order_and_the_pixels() {
    let cfg = BatchConfig::evaluation(4);
    let src = source();
    let b = make_batch(src.as_ref(), &[3, 1], &cfg, 0);
    let (img3, mask3, name3) = src.sample(3);
    assert_eq!(b.names[0], name3);
    assert_eq!(&b.images[..32 * 32], &img3[..]);
    assert_eq!(&b.masks[..32 * 32], &mask3[..]);
}

#[test]
fn dropping_an_epoch_early_does_not_hang() {
    let cfg = BatchConfig {
        batch_size: 1,
        prefetch: 1,
        ..Default::default()
    };
    let idx: Vec<usize> = (0..10).collect();
    let mut it = epoch_batches(source(), &idx, &cfg, 0);
    assert_eq!(it.len(), 10);
    let _first = it.next().unwrap();
    drop(it);
}

#[test]
fn a_dataset_is_a_sample_source() {
    let dir = tempfile::tempdir().unwrap();
    rca_gpu::data::write_phantoms(dir.path(), 6, 32, 2, &|| {}).unwrap();
    let ds = rca_gpu::data::load_dataset(
        dir.path(),
        &rca_gpu::data::LoadOptions {
            size: 32,
            ..Default::default()
        },
    )
    .unwrap();
    let ds: Arc<dyn SampleSource> = Arc::new(ds);
    let batches: Vec<Batch> = epoch_batches(
        ds,
        &[0, 1, 2, 3, 4],
        &BatchConfig {
            batch_size: 2,
            ..Default::default()
        },
        0,
    )
    .collect();
    assert_eq!(batches.iter().map(|b| b.n).sum::<usize>(), 5);
}

#[test]
fn kept_phantoms_give_the_phantoms_themselves_within_and_past_their_budget() {
    use rca_gpu::data::KeptPhantoms;
    let src = PhantomSource {
        seed: 3,
        count: 6,
        size: 32,
    };
    // Room for two phantoms (two 32×32 planes each): the rest are generated on each read.
    let kept = KeptPhantoms::new(src, 2 * 2 * 32 * 32 * 4);
    assert_eq!((kept.len(), kept.size()), (6, 32));
    for i in [0, 1, 5, 0, 1, 5] {
        assert_eq!(kept.sample(i), src.sample(i), "phantom {i}");
        assert_eq!(kept.name(i), src.name(i));
    }
    assert_eq!(kept.describe(), src.describe());
}
