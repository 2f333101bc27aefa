//! The set-up shared by every module of the test hub (`tests/tests.rs`):
//! - one device for the whole test binary, in NaN-poison mode (an output element a kernel
//!   never writes reads back as NaN and fails the comparison), `gpu_with` for one that
//!   runs the kernel variants of the other adapter class, and `own_gpu` for a test that
//!   asserts on device-wide counters, which the tests running beside it would move;
//! - a fresh random seed per test (printed, and fixed by `RCA_TEST_SEED` to replay);
//! - `assert_close` with atol and rtol that reports the worst element;
//! - `check_op`: one call tests an op's forward against its CPU reference, its GPU
//!   backward (through the tape) against the CPU backward, and the CPU backward against
//!   central finite differences in f64;
//! - `BIN`, the `rca-gpu` executable that the command-line tests run;
//! - builders for small data-set folders (the `data_*` modules): images and masks in the
//!   pixel formats real downloads contain (8-bit grey, RGB, RGBA, 16-bit grey, JPEG, BMP,
//!   TIFF), plus deliberately broken files.

use std::path::Path;
use std::sync::OnceLock;

use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage, Rgba, RgbaImage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rca_gpu::{AdapterRequest, Gpu, KernelClass, Shape, Tape, Tensor, ops};

/// The `rca-gpu` executable, for the tests of its commands.
pub const BIN: &str = env!("CARGO_BIN_EXE_rca-gpu");

/// A new device on the adapter the tests use, set up as every test device is.
fn new_gpu() -> rca_gpu::Result<Gpu> {
    let g = Gpu::new(&AdapterRequest::from_env())?;
    g.set_poison(true);
    Ok(g)
}

/// The shared device, or `None` (with a loud message) when there is none outside CI.
/// Under CI (`CI=true`) a missing adapter fails the test: a GPU test never skips there.
pub fn gpu() -> Option<Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| match new_gpu() {
        Ok(g) => {
            eprintln!("GPU tests run on: {}", g.info());
            Some(g)
        }
        Err(e) => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "CI=true and no GPU adapter: {e}");
            eprintln!("\n*** SKIPPING GPU TEST: {e} ***\n");
            None
        }
    })
    .clone()
}

/// A shared device on the same adapter that runs the kernel variants of `class` (see
/// `KernelClass`), or `None` when [`gpu`] is: the tests hold the CPU-shaped and the
/// GPU-shaped variant of a kernel to the reference on whatever adapter they run on.
pub fn gpu_with(class: KernelClass) -> Option<Gpu> {
    static DEVICES: OnceLock<[Option<Gpu>; 2]> = OnceLock::new();
    gpu()?;
    let open = |class| {
        let g = Gpu::new(&AdapterRequest {
            kernels: Some(class),
            ..AdapterRequest::from_env()
        })
        .expect("a second device on the adapter of the shared one");
        g.set_poison(true);
        Some(g)
    };
    let devices = DEVICES.get_or_init(|| [open(KernelClass::Cpu), open(KernelClass::Gpu)]);
    devices[usize::from(class == KernelClass::Gpu)].clone()
}

/// Every kernel variant the adapter can run, each on a shared device, labelled: the
/// CPU-shaped kernels (with subgroup-sharing kernels where the adapter has subgroups), the
/// CPU-shaped kernels without subgroups (only where the first used them), the adapter's
/// own class with few pipelines ([`few_pipelines_gpu`]), and the GPU-shaped kernels.
/// Empty when [`gpu`] is `None`.
pub fn kernel_variants() -> Vec<(&'static str, Gpu)> {
    static NO_SUBGROUPS: OnceLock<Option<Gpu>> = OnceLock::new();
    let Some(cpu) = gpu_with(KernelClass::Cpu) else {
        return Vec::new();
    };
    let mut all = vec![("cpu", cpu.clone())];
    if cpu.info().subgroup_size.is_some() {
        let plain = NO_SUBGROUPS.get_or_init(|| {
            let g = Gpu::new(&AdapterRequest {
                kernels: Some(KernelClass::Cpu),
                subgroups: Some(false),
                ..AdapterRequest::from_env()
            })
            .expect("a device without subgroups on the adapter of the shared one");
            g.set_poison(true);
            Some(g)
        });
        all.extend(plain.clone().map(|g| ("cpu without subgroups", g)));
    }
    if let Some(few) = few_pipelines_gpu() {
        let label = match few.info().kernels {
            KernelClass::Cpu => "cpu, few pipelines",
            KernelClass::Gpu => "gpu, few pipelines",
        };
        all.push((label, few));
    }
    all.extend(gpu_with(KernelClass::Gpu).map(|g| ("gpu", g)));
    all
}

/// A shared device set up like [`gpu`]'s that compiles fewer pipelines, as `infer` and
/// `eval` do for a small model (`Gpu::set_few_pipelines`: 8-row products that accumulate
/// by a flag, one depthwise pipeline for every K, one vec4 per invocation of the maps),
/// or `None` when [`gpu`] is.
pub fn few_pipelines_gpu() -> Option<Gpu> {
    static FEW: OnceLock<Option<Gpu>> = OnceLock::new();
    gpu()?;
    FEW.get_or_init(|| {
        let g = new_gpu().expect("a second device on the adapter of the shared one");
        g.set_poison(true);
        g.set_few_pipelines(true);
        Some(g)
    })
    .clone()
}

/// [`gpu`] and [`few_pipelines_gpu`], labelled; empty when there is no adapter.
pub fn shared_and_few() -> Vec<(&'static str, Gpu)> {
    let mut all: Vec<_> = gpu().map(|g| ("shared", g)).into_iter().collect();
    all.extend(few_pipelines_gpu().map(|g| ("few pipelines", g)));
    all
}

/// A device of the calling test's own, set up like the shared one, or `None` when
/// [`gpu`] is. For a test that asserts on what the whole device did (`Gpu::stats`, a GPU
/// timer around its queue): every other test in the binary shares [`gpu`]'s buffer pool,
/// pipeline cache and queue, and runs beside it.
pub fn own_gpu() -> Option<Gpu> {
    gpu()?;
    Some(new_gpu().expect("a second device on the adapter of the shared one"))
}

/// Panic unless `check` fails on a fresh CPU-class device whose `shader` has `planted`
/// replaced by `wrong`: the checks it runs must be able to fail. Nothing where there is no
/// CPU-class device.
pub fn assert_plant_fails(
    shader: rca_gpu::runtime::Shader,
    planted: &str,
    wrong: &str,
    check: impl Fn(&Gpu),
) {
    if gpu_with(KernelClass::Cpu).is_none() {
        return;
    }
    let source = shader.source();
    assert!(source.contains(planted), "{planted}");
    let gpu = Gpu::new(&AdapterRequest {
        kernels: Some(KernelClass::Cpu),
        ..AdapterRequest::from_env()
    })
    .unwrap();
    gpu.set_poison(true);
    gpu.replace_shader_source(shader, &source.replace(planted, wrong));
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&gpu)));
    assert!(failed.is_err(), "{wrong}: passed the check");
}

/// A generator seeded afresh for each test; the seed is printed so a failure replays
/// with `RCA_TEST_SEED=<seed>`.
pub fn rng() -> StdRng {
    let seed = std::env::var("RCA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("seed: {seed} (replay with RCA_TEST_SEED={seed})");
    StdRng::seed_from_u64(seed)
}

/// Uniform values in [-1, 1).
pub fn uniform(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Uniform values in [-1, 1) at least `margin` away from 0 (for kinks such as ReLU's).
pub fn uniform_away_from_zero(rng: &mut StdRng, n: usize, margin: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            loop {
                let v: f32 = rng.random_range(-1.0..1.0);
                if v.abs() > margin {
                    break v;
                }
            }
        })
        .collect()
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// Tolerances of a comparison: |got − want| ≤ atol + rtol·|want|.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub atol: f64,
    pub rtol: f64,
}

/// f32 kernels against f64 references.
pub const F32: Tol = Tol {
    atol: 1e-5,
    rtol: 1e-4,
};

/// Compare element-wise; on failure report the worst element, its index, both values,
/// and how many elements failed (NaN counts as a failure).
pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: Tol) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst: Option<(usize, f64)> = None;
    let mut failures = 0;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = f64::from(g);
        let allowed = tol.atol + tol.rtol * w.abs();
        let err = (g - w).abs();
        let ratio = if err.is_nan() {
            f64::INFINITY
        } else {
            err / allowed
        };
        if ratio > 1.0 {
            failures += 1;
        }
        if worst.is_none_or(|(_, r)| ratio > r) {
            worst = Some((i, ratio));
        }
    }
    if failures > 0 {
        let (i, r) = worst.expect("non-empty");
        panic!(
            "{what}: {failures} of {} elements out of tolerance (atol {}, rtol {}); worst at {i}: got {}, want {} ({r:.1}× the allowed error)",
            got.len(),
            tol.atol,
            tol.rtol,
            got[i],
            want[i]
        );
    }
}

/// f64 analytic gradient against f64 finite differences.
pub fn assert_close_f64(what: &str, got: &[f64], want: &[f64], tol: Tol) {
    let g32: Vec<f32> = got.iter().map(|&v| v as f32).collect();
    // Compare in f64: reuse the reporting, but on the exact values.
    let mut worst = (0, 0.0f64);
    let mut failures = 0;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ratio = (g - w).abs() / (tol.atol + tol.rtol * w.abs());
        if ratio.is_nan() || ratio > 1.0 {
            failures += 1;
        }
        if ratio.is_nan() || ratio > worst.1 {
            worst = (i, if ratio.is_nan() { f64::INFINITY } else { ratio });
        }
    }
    assert!(
        failures == 0,
        "{what}: {failures} of {} elements out of tolerance; worst at {}: got {}, want {} ({:.1}× allowed); first values {:?}",
        got.len(),
        worst.0,
        got[worst.0],
        want[worst.0],
        worst.1,
        &g32[..g32.len().min(4)]
    );
}

/// Coordinates per input checked by finite differences.
const FD_SAMPLES: usize = 40;

/// An input of an op under test.
pub struct Input {
    pub shape: Shape,
    pub data: Vec<f32>,
}

pub fn input(shape: &[usize], data: Vec<f32>) -> Input {
    assert_eq!(shape.iter().product::<usize>(), data.len());
    Input {
        shape: Shape::new(shape),
        data,
    }
}

/// Test one op end to end:
/// 1. forward on the GPU against `cpu_fwd`;
/// 2. the GPU gradients of L = Σ w ⊙ op(inputs), w random, against `cpu_bwd(inputs, w)`;
/// 3. `cpu_bwd` against central finite differences of `cpu_fwd` in f64.
#[allow(clippy::too_many_arguments)]
pub fn check_op(
    gpu: &Gpu,
    rng: &mut StdRng,
    name: &str,
    inputs: &[Input],
    gpu_op: impl Fn(&[&Tensor]) -> rca_gpu::Result<Tensor>,
    cpu_fwd: impl Fn(&[Vec<f64>]) -> Vec<f64>,
    cpu_bwd: impl Fn(&[Vec<f64>], &[f64]) -> Vec<Vec<f64>>,
    tol: Tol,
) {
    let xs: Vec<Tensor> = inputs
        .iter()
        .map(|i| {
            Tensor::from_vec(gpu, i.shape.clone(), &i.data)
                .unwrap()
                .requires_grad()
        })
        .collect();
    let x64: Vec<Vec<f64>> = inputs.iter().map(|i| to_f64(&i.data)).collect();
    let want = cpu_fwd(&x64);

    let tape = Tape::start();
    let refs: Vec<&Tensor> = xs.iter().collect();
    let y = gpu_op(&refs).unwrap();
    assert_close(&format!("{name} forward"), &y.to_vec().unwrap(), &want, tol);

    let w = uniform(rng, y.numel());
    let wt = Tensor::from_vec(gpu, y.shape().clone(), &w).unwrap();
    let loss = ops::sum(&ops::mul(&y, &wt).unwrap()).unwrap();
    let grads = tape.backward(&loss).unwrap();
    let w64 = to_f64(&w);
    let want_grads = cpu_bwd(&x64, &w64);
    assert_eq!(want_grads.len(), xs.len(), "{name}: one gradient per input");
    for (k, (x, want_g)) in xs.iter().zip(&want_grads).enumerate() {
        let g = grads
            .get(x)
            .unwrap_or_else(|| panic!("{name}: no gradient for input {k}"));
        assert_eq!(g.shape(), x.shape(), "{name}: gradient {k} shape");
        assert_close(
            &format!("{name} backward, input {k}"),
            &g.to_vec().unwrap(),
            want_g,
            tol,
        );
    }

    // The CPU backward against finite differences of the CPU forward, at a random
    // sample of coordinates (all of them for small inputs).
    for (k, want_g) in want_grads.iter().enumerate() {
        let n = x64[k].len();
        let picks: Vec<usize> = if n <= FD_SAMPLES {
            (0..n).collect()
        } else {
            (0..FD_SAMPLES).map(|_| rng.random_range(0..n)).collect()
        };
        let mut numeric = Vec::with_capacity(picks.len());
        let mut analytic = Vec::with_capacity(picks.len());
        for &i in &picks {
            let h = 1e-6;
            let mut all = x64.clone();
            all[k][i] = x64[k][i] + h;
            let up = cpu_fwd(&all);
            all[k][i] = x64[k][i] - h;
            let down = cpu_fwd(&all);
            // Σ w·(up − down), not Σ w·up − Σ w·down: differencing two sums over every
            // output would put their round-off into the estimate (seen at 1e-6 on a
            // 16k-output batch norm, the tolerance itself).
            let diff: f64 = w64
                .iter()
                .zip(up.iter().zip(&down))
                .map(|(w, (u, d))| w * (u - d))
                .sum();
            numeric.push(diff / (2.0 * h));
            analytic.push(want_g[i]);
        }
        assert_close_f64(
            &format!("{name} CPU backward vs finite differences, input {k}"),
            &analytic,
            &numeric,
            Tol {
                atol: 1e-6,
                rtol: 1e-6,
            },
        );
    }
}

// Data-set folders for the `data_*` modules.

/// A smooth, non-symmetric test picture: value depends on (x, y, seed).
pub fn picture(w: u32, h: u32, seed: u32) -> GrayImage {
    ImageBuffer::from_fn(w, h, |x, y| {
        let s = seed as f32;
        let v = 0.5
            + 0.25 * ((x as f32 / w as f32) * (3.0 + s) + s).sin()
            + 0.25 * ((y as f32 / h as f32) * (2.0 + 0.7 * s)).cos();
        Luma([(v.clamp(0.0, 1.0) * 255.0) as u8])
    })
}

/// A mask with a filled rectangle [x0, x1) × [y0, y1).
pub fn rect_mask(w: u32, h: u32, x0: u32, y0: u32, x1: u32, y1: u32) -> GrayImage {
    ImageBuffer::from_fn(w, h, |x, y| {
        Luma([if x >= x0 && x < x1 && y >= y0 && y < y1 {
            255
        } else {
            0
        }])
    })
}

pub fn mkdir(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
}

pub fn save_gray(p: &Path, img: &GrayImage) {
    mkdir(p.parent().unwrap());
    img.save(p).unwrap();
}

pub fn save_rgb(p: &Path, img: &GrayImage) {
    mkdir(p.parent().unwrap());
    let rgb: RgbImage = ImageBuffer::from_fn(img.width(), img.height(), |x, y| {
        let v = img.get_pixel(x, y)[0];
        Rgb([v, v, v])
    });
    rgb.save(p).unwrap();
}

/// An RGBA mask the way some BUSI masks come: red lesion on black, opaque.
pub fn save_rgba_mask(p: &Path, mask: &GrayImage) {
    mkdir(p.parent().unwrap());
    let rgba: RgbaImage = ImageBuffer::from_fn(mask.width(), mask.height(), |x, y| {
        let on = mask.get_pixel(x, y)[0] > 0;
        Rgba([if on { 200 } else { 0 }, 0, 0, 255])
    });
    rgba.save(p).unwrap();
}

/// A 16-bit grey PNG with values v·257 (so it reads back as the 8-bit picture).
pub fn save_gray16(p: &Path, img: &GrayImage) {
    mkdir(p.parent().unwrap());
    let g16: ImageBuffer<Luma<u16>, Vec<u16>> =
        ImageBuffer::from_fn(img.width(), img.height(), |x, y| {
            Luma([img.get_pixel(x, y)[0] as u16 * 257])
        });
    g16.save(p).unwrap();
}

/// A file with an image extension but garbage content.
pub fn save_corrupt(p: &Path) {
    mkdir(p.parent().unwrap());
    std::fs::write(p, b"\x89PNG\r\n\x1a\nthis is not really a png").unwrap();
}

pub fn touch(p: &Path, text: &str) {
    mkdir(p.parent().unwrap());
    std::fs::write(p, text).unwrap();
}

/// A small, valid BUSI folder: 2 benign (one with an extra mask, one RGBA mask,
/// one 16-bit image), 1 malignant, 1 normal; names with spaces and parentheses.
pub fn busi(root: &Path) {
    let (w, h) = (40, 30);
    save_rgb(&root.join("benign/benign (1).png"), &picture(w, h, 1));
    save_gray(
        &root.join("benign/benign (1)_mask.png"),
        &rect_mask(w, h, 5, 5, 15, 15),
    );
    save_gray(
        &root.join("benign/benign (1)_mask_1.png"),
        &rect_mask(w, h, 20, 10, 30, 20),
    );
    save_gray16(&root.join("benign/benign (2).png"), &picture(w, h, 2));
    save_rgba_mask(
        &root.join("benign/benign (2)_mask.png"),
        &rect_mask(w, h, 10, 10, 20, 20),
    );
    save_gray(
        &root.join("malignant/malignant (1).png"),
        &picture(50, 44, 3),
    );
    save_gray(
        &root.join("malignant/malignant (1)_mask.png"),
        &rect_mask(50, 44, 0, 0, 25, 22),
    );
    save_gray(&root.join("normal/normal (1).png"), &picture(w, h, 4));
    save_gray(
        &root.join("normal/normal (1)_mask.png"),
        &rect_mask(w, h, 0, 0, 0, 0),
    );
}

/// A small BUSIS folder with the given folder names; masks carry `suffix`.
pub fn busis(root: &Path, img_dir: &str, gt_dir: &str, suffix: &str) {
    for i in 1..=3u32 {
        save_gray(
            &root.join(img_dir).join(format!("case{i:03}.png")),
            &picture(32, 32, i),
        );
        save_gray(
            &root.join(gt_dir).join(format!("case{i:03}{suffix}.png")),
            &rect_mask(32, 32, 4, 4, 10 + i, 12),
        );
    }
}

/// A small pairs folder.
pub fn pairs(root: &Path) {
    for i in 1..=3u32 {
        save_gray(&root.join(format!("images/p{i}.png")), &picture(24, 20, i));
        save_gray(
            &root.join(format!("masks/p{i}.png")),
            &rect_mask(24, 20, 2, 2, 8, 8),
        );
    }
}
