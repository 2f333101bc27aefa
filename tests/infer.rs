//! The `Predictor` behind `rca-gpu infer` and `eval`: splitting a batch into chunks does not
//! change any prediction (eval mode couples no samples), predictions come back at each
//! image's original size, and a batch too large for the device's binding limit is split
//! instead of failing.

use std::path::Path;

use rca_gpu::data::{GrayF32, preprocess_image, resize_probability};
use rca_gpu::infer::{Ensemble, Predictor, mirror};
use rca_gpu::model::{Model, ModelConfig, Variant};
use rca_gpu::train::checkpoint::{NamedTensor, save_model};
use rca_gpu::{Tensor, metrics::PostProcess};

use crate::common;

/// A checkpoint of the initial weights of `width`/`size` RCA-IUnet.
fn checkpoint(path: &Path, width: usize, size: usize) {
    checkpoint_seeded(path, width, size, 3);
}

/// The same from another weight-initialisation seed.
fn checkpoint_seeded(path: &Path, width: usize, size: usize, seed: u64) {
    let mc = ModelConfig::new(Variant::RcaIunet, width, size).unwrap();
    let model = Model::new(mc);
    let tensors: Vec<NamedTensor> = model
        .spec
        .params()
        .iter()
        .zip(model.spec.init_values(seed))
        .map(|(p, data)| NamedTensor {
            name: p.name.clone(),
            shape: p.shape.clone(),
            data,
        })
        .collect();
    save_model(path, &mc, 0, &serde_json::Value::Null, &tensors).unwrap();
}

/// A grey test image with some structure (a bright disc on a ramp).
fn image(w: usize, h: usize, seed: usize) -> GrayF32 {
    let (cx, cy, r) = (
        (w / 2 + seed) as f32,
        (h / 3 + seed) as f32,
        (w.min(h) / 4) as f32,
    );
    GrayF32::from_vec(
        w,
        h,
        (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32, (i / w) as f32);
                let d = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt();
                if d < r { 0.9 } else { 0.2 + 0.3 * x / w as f32 }
            })
            .collect(),
    )
}

#[test]
fn chunked_batches_predict_what_single_images_do_at_the_original_size() {
    let Some(gpu) = common::gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("m.safetensors");
    checkpoint(&ck, 2, 32);
    let images: Vec<GrayF32> = [(45, 37), (32, 32), (80, 20), (17, 50), (64, 64)]
        .iter()
        .enumerate()
        .map(|(k, &(w, h))| image(w, h, k))
        .collect();
    let mut whole = Predictor::load(&gpu, &ck).unwrap();
    let all = whole.predict_batch(&images).unwrap();
    assert_eq!(whole.chunk(), usize::MAX, "5 tiny images fit in one pass");
    let mut chunked = Predictor::load(&gpu, &ck).unwrap();
    chunked.set_max_chunk(2);
    let parts = chunked.predict_batch(&images).unwrap();
    assert_eq!(all.len(), 5);
    for (k, img) in images.iter().enumerate() {
        let alone = &whole.predict_batch(std::slice::from_ref(img)).unwrap()[0];
        for other in [&all[k], &parts[k]] {
            assert_eq!((other.width, other.height), (img.w, img.h));
            assert_eq!(other.probability.len(), img.w * img.h);
            let worst = other
                .probability
                .iter()
                .zip(&alone.probability)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst < 1e-5,
                "image {k}: batched and alone differ by {worst}"
            );
        }
        assert!(all[k].probability.iter().all(|p| (0.0..=1.0).contains(p)));
        let mask = all[k].mask(&PostProcess::default()).unwrap();
        assert_eq!((mask.width(), mask.height()), (img.w, img.h));
    }
    // The prediction is the sigmoid of the forward pass on the training preprocessing,
    // resized back.
    let img = &images[0];
    let x = Tensor::from_vec(&gpu, [1, 1, 32, 32], &preprocess_image(img, 32)).unwrap();
    let logits = whole.forward_logits(&x).unwrap().to_vec().unwrap();
    let prob: Vec<f32> = logits.iter().map(|z| 1.0 / (1.0 + (-z).exp())).collect();
    let want = resize_probability(&prob, 32, 32, img.w, img.h);
    for (a, b) in all[0].probability.iter().zip(&want) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

/// On a device whose binding limit is below what a batch needs (lavapipe: 128 MiB, which
/// batch 8 at 256×256 and F = 16 exceeds with 8 × 64 × 256² floats) the predictor halves
/// the chunk instead of failing, and predicts what the unlimited device does. Here the
/// limit is lowered (`RCA_GPU_MAX_BINDING`'s field) to 128 KiB, which a 32×32 F = 2 batch
/// of 8 exceeds (an inception concat of 8 channels is 32 KiB per image) and one image fits.
#[test]
fn a_batch_above_the_binding_limit_is_split_not_refused() {
    let Some(gpu) = common::gpu() else { return };
    let small = rca_gpu::Gpu::new(&rca_gpu::AdapterRequest {
        max_binding: Some(128 << 10),
        ..rca_gpu::AdapterRequest::from_env()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("m.safetensors");
    checkpoint(&ck, 2, 32);
    let images: Vec<GrayF32> = (0..8).map(|k| image(40, 36, k)).collect();
    let mut limited = Predictor::load(&small, &ck).unwrap();
    let got = limited.predict_batch(&images).unwrap();
    let mut whole = Predictor::load(&gpu, &ck).unwrap();
    let want = whole.predict_batch(&images).unwrap();
    eprintln!(
        "binding limit {} bytes: chunk {} (unlimited: {})",
        small.info().max_storage_binding,
        limited.chunk(),
        whole.chunk()
    );
    assert!(limited.chunk() < 8, "the chunk was not reduced");
    assert!(whole.chunk() >= 8, "the unlimited device needs no split");
    assert_eq!(got.len(), 8);
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((g.width, g.height), (w.width, w.height));
        for (a, b) in g.probability.iter().zip(&w.probability) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}

#[test]
fn mirroring_twice_is_the_identity_and_flips_the_right_axis() {
    let (w, h) = (3, 4);
    let orig: Vec<f32> = (0..w * h).map(|i| i as f32).collect();
    let mut d = orig.clone();
    mirror(&mut d, w, h, true, false);
    assert_eq!(&d[..3], &[2.0, 1.0, 0.0]);
    mirror(&mut d, w, h, true, false);
    assert_eq!(d, orig);
    mirror(&mut d, w, h, false, true);
    assert_eq!(&d[..3], &[9.0, 10.0, 11.0]);
    assert_eq!(&d[9..], &[0.0, 1.0, 2.0]);
    // Both axes of the top–bottom mirror image: the left–right one.
    mirror(&mut d, w, h, true, true);
    assert_eq!(&d[..3], &[2.0, 1.0, 0.0]);
    mirror(&mut d, w, h, true, false);
    assert_eq!(d, orig);
}

#[test]
fn an_ensemble_averages_its_members_and_identical_members_do_not_disagree() {
    let Some(gpu) = common::gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        dir.path().join("a.safetensors"),
        dir.path().join("b.safetensors"),
    );
    checkpoint_seeded(&a, 2, 32, 3);
    checkpoint_seeded(&b, 2, 32, 11);
    let images = [image(45, 37, 0), image(32, 32, 3)];
    let alone = |p: &Path| {
        Predictor::load(&gpu, p)
            .unwrap()
            .predict_batch(&images)
            .unwrap()
    };
    let (pa, pb) = (alone(&a), alone(&b));
    let mut two = Ensemble::new(
        vec![
            Predictor::load(&gpu, &a).unwrap(),
            Predictor::load(&gpu, &b).unwrap(),
        ],
        false,
    );
    assert_eq!(two.views(), 2);
    let got = two.predict_batch(&images).unwrap();
    let mut spread = 0.0f32;
    for ((g, x), y) in got.iter().zip(&pa).zip(&pb) {
        assert_eq!((g.mean.width, g.mean.height), (x.width, x.height));
        for (i, ((m, p), q)) in g
            .mean
            .probability
            .iter()
            .zip(&x.probability)
            .zip(&y.probability)
            .enumerate()
        {
            assert!(
                (m - (p + q) / 2.0).abs() < 1e-6,
                "pixel {i}: {m} vs mean of {p}, {q}"
            );
            let sd = (p - q).abs() / 2.0;
            assert!(
                (g.uncertainty[i] - sd).abs() < 1e-5,
                "pixel {i}: sd {} vs {sd}",
                g.uncertainty[i]
            );
            spread = spread.max(sd);
        }
    }
    assert!(
        spread > 1e-4,
        "two initialisations should disagree somewhere: {spread}"
    );
    // Two copies of one checkpoint: the mean is the member's prediction, the spread zero.
    let mut same = Ensemble::new(
        vec![
            Predictor::load(&gpu, &a).unwrap(),
            Predictor::load(&gpu, &a).unwrap(),
        ],
        false,
    );
    for (g, x) in same.predict_batch(&images).unwrap().iter().zip(&pa) {
        assert_eq!(g.mean.probability, x.probability);
        assert!(g.uncertainty.iter().all(|&u| u == 0.0));
    }
}

#[test]
fn test_time_mirroring_is_equivariant_and_averages_four_views() {
    let Some(gpu) = common::gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.safetensors");
    checkpoint(&a, 2, 32);
    let img = image(40, 29, 1);
    let mut flipped = img.clone();
    mirror(&mut flipped.data, img.w, img.h, true, false);
    let mut tta = Ensemble::new(vec![Predictor::load(&gpu, &a).unwrap()], true);
    assert_eq!(tta.views(), 4);
    let got = tta.predict_batch(&[img.clone(), flipped]).unwrap();
    // The mean over all mirrorings of a mirrored image is the mirrored mean.
    let mut back = got[1].mean.probability.clone();
    mirror(&mut back, img.w, img.h, true, false);
    for (i, (p, q)) in got[0].mean.probability.iter().zip(&back).enumerate() {
        assert!((p - q).abs() < 1e-6, "pixel {i}: {p} vs {q}");
    }
    // And it is the mean of the four single predictions, mirrored back.
    let mut single = Predictor::load(&gpu, &a).unwrap();
    let mut want = vec![0.0f32; img.w * img.h];
    for (h, v) in rca_gpu::infer::TTA_MIRRORS {
        let mut m = img.clone();
        mirror(&mut m.data, m.w, m.h, h, v);
        let mut p = single.predict_batch(&[m]).unwrap().remove(0).probability;
        mirror(&mut p, img.w, img.h, h, v);
        want.iter_mut().zip(&p).for_each(|(w, x)| *w += x / 4.0);
    }
    for (i, (p, q)) in got[0].mean.probability.iter().zip(&want).enumerate() {
        assert!((p - q).abs() < 1e-6, "pixel {i}: {p} vs {q}");
    }
    assert!(got[0].uncertainty.iter().any(|&u| u > 0.0));
}
