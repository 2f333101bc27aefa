//! Linear-time check of the distance-based metrics: average Hausdorff distance, HD95, the
//! exact distance transform and post-processing on square masks of side 64, 128, 256, 512.
//! Throughput is in pixels, so a linear-time implementation shows a flat elements/s across
//! sizes (a quadratic brute force would lose 4× per doubling of the side).
//!
//! Run: `cargo bench --bench metrics`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rca_gpu::metrics::{
    BinaryMask, PostProcess, average_hausdorff, hausdorff95, squared_distance_to_foreground,
};

const SIDES: [usize; 4] = [64, 128, 256, 512];

/// A lesion-like pair: the ground truth an ellipse, the prediction shifted and larger, both
/// a fixed fraction of the image so the work per pixel does not change with size.
fn pair(n: usize) -> (BinaryMask, BinaryMask) {
    let s = n as f64;
    let ellipse = |cx: f64, cy: f64, rx: f64, ry: f64| {
        BinaryMask::from_fn(n, n, move |x, y| {
            let (dx, dy) = ((x as f64 - cx) / rx, (y as f64 - cy) / ry);
            dx * dx + dy * dy <= 1.0
        })
        .unwrap()
    };
    (
        ellipse(0.52 * s, 0.48 * s, 0.30 * s, 0.20 * s),
        ellipse(0.50 * s, 0.50 * s, 0.25 * s, 0.18 * s),
    )
}

fn distances(c: &mut Criterion) {
    let mut ahd = c.benchmark_group("average_hausdorff");
    for n in SIDES {
        let (p, g) = pair(n);
        ahd.throughput(Throughput::Elements((n * n) as u64));
        ahd.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| average_hausdorff(black_box(&p), black_box(&g)).unwrap())
        });
    }
    ahd.finish();

    let mut hd = c.benchmark_group("hausdorff95");
    for n in SIDES {
        let (p, g) = pair(n);
        hd.throughput(Throughput::Elements((n * n) as u64));
        hd.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| hausdorff95(black_box(&p), black_box(&g)).unwrap())
        });
    }
    hd.finish();

    let mut edt = c.benchmark_group("distance_transform");
    for n in SIDES {
        let (_, g) = pair(n);
        edt.throughput(Throughput::Elements((n * n) as u64));
        edt.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| squared_distance_to_foreground(black_box(&g)))
        });
    }
    edt.finish();
}

fn postprocess(c: &mut Criterion) {
    let mut group = c.benchmark_group("postprocess");
    for n in SIDES {
        let (p, _) = pair(n);
        // a probability map with the lesion, speckle and a hole
        let prob: Vec<f32> = p
            .data()
            .iter()
            .enumerate()
            .map(|(i, &v)| match (v, i % 97 == 0) {
                (true, false) | (false, true) => 0.9,
                _ => 0.1,
            })
            .collect();
        let pp = PostProcess::default();
        group.throughput(Throughput::Elements((n * n) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| pp.apply(black_box(&prob), n, n).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, distances, postprocess);
criterion_main!(benches);
