//! Parameter counts of the seven models of Table 3 must equal MODEL.md's table exactly
//! (total = trainable + BN running mean/var), at the paper's F = 16.

use rca_gpu::model::{Model, ModelConfig, Variant, group};

/// (variant, total, trainable, BN running statistics) from MODEL.md.
const TABLE: [(&str, usize, usize, usize); 7] = [
    ("unet", 353_022, 348_604, 4_418),
    ("unet+ric", 2_390_161, 2_376_461, 13_700),
    ("unet+csa", 848_514, 842_176, 6_338),
    ("unet+ric+hp", 2_433_921, 2_420_221, 13_700),
    ("unet+csa+hp", 892_274, 885_936, 6_338),
    ("unet+csa+ric", 2_885_653, 2_870_033, 15_620),
    ("rca-iunet", 2_929_413, 2_913_793, 15_620),
];

#[test]
fn every_variant_has_the_parameter_count_of_model_md() {
    for (name, total, trainable, running) in TABLE {
        let v: Variant = name.parse().unwrap();
        let m = Model::new(ModelConfig::new(v, 16, 256).unwrap());
        let t = m.spec.trainable_count();
        let r = m.spec.non_trainable_count();
        assert_eq!((t + r, t, r), (total, trainable, running), "{name}");
    }
}

#[test]
fn parameter_count_does_not_depend_on_the_input_size() {
    let a = Model::new(ModelConfig::new(Variant::RcaIunet, 16, 32).unwrap());
    let b = Model::new(ModelConfig::new(Variant::RcaIunet, 16, 512).unwrap());
    assert_eq!(a.spec.trainable_count(), b.spec.trainable_count());
}

#[test]
fn summary_command_prints_the_same_totals() {
    for (name, total, trainable, running) in TABLE {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rca-gpu"))
            .args(["summary", "--variant", name])
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}");
        let text = String::from_utf8_lossy(&out.stdout);
        for line in [
            format!("Total params: {}", group(total as u64)),
            format!("Trainable params: {}", group(trainable as u64)),
            format!("Non-trainable params: {}", group(running as u64)),
        ] {
            assert!(text.contains(&line), "{name}: no '{line}' in\n{text}");
        }
    }
}

#[test]
fn summary_command_rejects_an_unknown_variant() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rca-gpu"))
        .args(["summary", "--variant", "resnet"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown variant 'resnet'"));
}
