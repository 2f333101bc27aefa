//! The runtime: upload and read-back, NaN poisoning, the buffer pool (no new buffers in
//! the steady state), the pipeline cache, adapter errors, and `rca-gpu devices`.

use rca_gpu::{AdapterRequest, Gpu, Tape, Tensor, ops};

use crate::common;

#[test]
fn upload_then_read_back_is_exact() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::rng();
    let data = common::uniform(&mut rng, 1001);
    let t = Tensor::from_vec(&gpu, [7, 11, 13], &data).unwrap();
    assert_eq!(t.to_vec().unwrap(), data);
}

#[test]
fn upload_rejects_data_of_the_wrong_length() {
    let Some(gpu) = common::gpu() else { return };
    let e = Tensor::from_vec(&gpu, [2, 3], &[1.0; 5])
        .unwrap_err()
        .to_string();
    assert_eq!(e, "upload: 5 values given for shape (2, 3) (6 expected)");
}

#[test]
fn fresh_buffers_are_nan_in_poison_mode() {
    let Some(gpu) = common::gpu() else { return };
    let t = Tensor::uninit(&gpu, [3, 100], "test").unwrap();
    assert!(t.to_vec().unwrap().iter().all(|v| v.is_nan()));
}

#[test]
fn fill_writes_every_element() {
    let Some(gpu) = common::gpu() else { return };
    // 1000 is not a multiple of the workgroup size (250 vec4s: the vec4 fill); 999
    // elements are not whole vec4s (the scalar fill).
    for shape in [[10, 100], [9, 111]] {
        let t = Tensor::full(&gpu, shape, 2.5).unwrap();
        assert!(t.to_vec().unwrap().iter().all(|&v| v == 2.5), "{shape:?}");
    }
}

/// One training-like step: forward, loss, backward through every kind of op.
fn step(gpu: &Gpu, x: &Tensor, w: &Tensor, b: &Tensor) -> f32 {
    let tape = Tape::start();
    let h = ops::relu(&ops::conv1x1(x, w, Some(b)).unwrap()).unwrap();
    let cat = ops::concat_channels(&[&h, x]).unwrap();
    let y = ops::sigmoid(&ops::scale(&cat, 0.5).unwrap()).unwrap();
    let loss = ops::mean(&ops::mul(&y, &y).unwrap()).unwrap();
    let grads = tape.backward(&loss).unwrap();
    assert_eq!(grads.len(), 2);
    let _ = gpu;
    loss.to_scalar().unwrap()
}

#[test]
fn repeating_a_step_allocates_no_new_buffers_after_warm_up() {
    // A device of its own: other tests running in parallel would move the counters.
    let Ok(gpu) = Gpu::new(&AdapterRequest::from_env()) else {
        assert!(common::gpu().is_none());
        return;
    };
    let mut rng = common::rng();
    let x = Tensor::from_vec(
        &gpu,
        [2, 3, 17, 19],
        &common::uniform(&mut rng, 2 * 3 * 17 * 19),
    )
    .unwrap();
    let w = Tensor::from_vec(&gpu, [5, 3, 1, 1], &common::uniform(&mut rng, 15))
        .unwrap()
        .requires_grad();
    let b = Tensor::zeros(&gpu, [5]).unwrap().requires_grad();
    let first = step(&gpu, &x, &w, &b);
    step(&gpu, &x, &w, &b);
    let warm = gpu.stats();
    for _ in 0..3 {
        assert_eq!(step(&gpu, &x, &w, &b), first, "same inputs, same loss");
    }
    let after = gpu.stats();
    assert!(warm.pool.created > 0);
    assert_eq!(
        after.pool.created, warm.pool.created,
        "new GPU buffers after warm-up: {warm:?} -> {after:?}"
    );
    assert!(after.pool.reused > warm.pool.reused);
    assert_eq!(
        after.pipelines_compiled, warm.pipelines_compiled,
        "a pipeline was compiled twice"
    );
    // Everything but the inputs went back to the pool.
    assert_eq!(after.pool.live, 3, "{after:?}");
}

#[test]
fn an_unknown_adapter_name_lists_what_exists() {
    if common::gpu().is_none() {
        return;
    }
    let e = Gpu::new(&AdapterRequest {
        name: Some("no-such-gpu-xyz".into()),
        ..Default::default()
    })
    .err()
    .expect("no adapter has that name")
    .to_string();
    assert!(
        e.contains("no-such-gpu-xyz") && e.contains("found only"),
        "{e}"
    );
}

#[test]
fn devices_command_lists_the_adapters() {
    if common::gpu().is_none() {
        return;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rca-gpu"))
        .arg("devices")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[0] ") && text.contains("backend:"), "{text}");
    assert!(text.contains("max storage binding"), "{text}");
}

#[test]
fn every_shader_file_validates_on_the_device() {
    let Some(gpu) = common::gpu() else { return };
    let subgroups = gpu.device().features().contains(wgpu::Features::SUBGROUP);
    for &shader in rca_gpu::runtime::Shader::all() {
        if shader.needs_subgroups() && !subgroups {
            continue;
        }
        let scope = gpu.device().push_error_scope(wgpu::ErrorFilter::Validation);
        let _module = gpu
            .device()
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: None,
                source: wgpu::ShaderSource::Wgsl(shader.source().into()),
            });
        let error = pollster::block_on(scope.pop());
        assert!(error.is_none(), "{shader:?}: {error:?}");
    }
}

#[test]
fn the_gpu_timer_measures_work_between_its_marks_within_the_wall_time() {
    // A device of its own: the marks time everything on the queue between them, and work
    // of the tests running beside it would land in the "empty" measurement.
    let Some(gpu) = common::own_gpu() else { return };
    let Some(timer) = gpu.timer() else {
        // The adapter says it has no timestamp queries: nothing to measure, and `bench`
        // reports wall time only. (lavapipe has them, so CI runs the check below.)
        assert!(!gpu.info().timestamp_queries);
        return;
    };
    let mut rng = common::rng();
    let x = Tensor::from_vec(
        &gpu,
        [1, 256, 64, 64],
        &common::uniform(&mut rng, 256 * 4096),
    )
    .unwrap();
    let w = Tensor::from_vec(
        &gpu,
        [256, 256, 1, 1],
        &common::uniform(&mut rng, 256 * 256),
    )
    .unwrap();
    gpu.sync();
    let wall = std::time::Instant::now();
    timer.start(&gpu);
    let mut y = x.clone();
    for _ in 0..3 {
        y = ops::conv1x1(&y, &w, None).unwrap();
    }
    timer.stop(&gpu);
    let ms = timer.elapsed_ms(&gpu).unwrap();
    let wall_ms = wall.elapsed().as_secs_f64() * 1e3;
    eprintln!("3 matmuls of 256×256×4096: GPU {ms:.2} ms, wall {wall_ms:.2} ms");
    assert!(ms > 0.0 && ms.is_finite(), "GPU time {ms} ms");
    assert!(
        ms <= wall_ms,
        "GPU time {ms} ms beyond the wall time {wall_ms} ms around it"
    );
    // Reusable: a second measurement of nothing is shorter than one of the matmuls.
    timer.start(&gpu);
    timer.stop(&gpu);
    let empty = timer.elapsed_ms(&gpu).unwrap();
    assert!(empty >= 0.0 && empty < ms, "empty {empty} ms, work {ms} ms");
}

#[test]
fn a_profile_times_every_dispatch_with_its_kernel_block_and_flops() {
    let Some(gpu) = common::own_gpu() else { return };
    // lavapipe and every GPU we target have timestamp queries; an adapter without them
    // refuses a profile with a clear error instead.
    if !gpu.info().timestamp_queries {
        let e = gpu.start_profile().unwrap_err().to_string();
        assert!(e.contains("timestamp"), "{e}");
        return;
    }
    let x = Tensor::full(&gpu, [2, 8, 6, 6], 0.5).unwrap();
    let w = Tensor::full(&gpu, [4, 8, 1, 1], 0.25).unwrap();
    gpu.start_profile().unwrap();
    gpu.set_block("enc1");
    let y = ops::conv1x1(&x, &w, None).unwrap();
    gpu.set_block("enc2");
    let z = ops::relu(&y).unwrap();
    let dispatches = gpu.finish_profile().unwrap();
    assert!(!gpu.profiling());
    let matmul = dispatches
        .iter()
        .find(|d| d.kernel.starts_with("matmul"))
        .expect("the product was profiled");
    assert_eq!(matmul.block, "enc1");
    assert_eq!(matmul.flops, Some((2 * 2 * 4 * 8 * 36) as f64));
    let last = dispatches.last().unwrap();
    // 288 elements: the ReLU's vec4 twin.
    assert_eq!((last.kernel, last.block.as_str()), ("relu4", "enc2"));
    assert!(last.bytes >= 2 * z.bytes(), "binds its input and output");
    assert!(dispatches.iter().all(|d| d.ms.is_finite() && d.ms >= 0.0));
    // Nothing is recorded once the profile is finished.
    ops::relu(&z).unwrap();
    assert!(gpu.finish_profile().unwrap().is_empty());
}
