//! `rca-gpu selftest`: it passes on the test adapter in both kernel shapes, and it fails,
//! naming the kernel, when a wrong kernel is planted in place of the real one.

use std::process::Command;

use rca_gpu::runtime::Shader;
use rca_gpu::{AdapterRequest, Gpu};

use crate::common::{self, BIN};

#[test]
fn selftest_passes_every_check_in_both_kernel_shapes() {
    if common::gpu().is_none() {
        return;
    }
    let out = Command::new(BIN).arg("selftest").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "| conv1x1 2x12x6x10 -> 20 | cpu |",
        "| conv1x1 2x12x6x10 -> 20 | gpu |",
    ] {
        assert!(stdout.contains(line), "{line} missing from:\n{stdout}");
    }
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

#[test]
fn selftest_fails_on_a_planted_wrong_kernel_and_names_it() {
    if common::gpu().is_none() {
        return;
    }
    let gpu = Gpu::new(&AdapterRequest::from_env()).unwrap();
    // A ReLU that clips at 0.25 instead of 0, in both its scalar and vec4 forms.
    let source = Shader::Elementwise.source();
    let wrong = source
        .replace("out[i] = max(a[i], 0.0);", "out[i] = max(a[i], 0.25);")
        .replace(
            "out4[i] = max(a4[i], vec4<f32>(0.0));",
            "out4[i] = max(a4[i], vec4<f32>(0.25));",
        );
    assert_ne!(wrong, source, "the plant found its lines");
    gpu.replace_shader_source(Shader::Elementwise, &wrong);
    let checks = rca_gpu::selftest::run_on(&gpu, 1).unwrap();
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.pass)
        .map(|c| c.name.as_str())
        .collect();
    assert!(
        failed.contains(&"relu 2x3x5x7") && failed.contains(&"relu 2x3x4x6"),
        "{failed:?}"
    );
    assert!(failed.iter().all(|n| n.starts_with("relu")), "{failed:?}");
}
