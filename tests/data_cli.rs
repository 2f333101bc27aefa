//! The `data` and `synth` commands as library calls: they succeed on good
//! input and fail with the file named on bad input.

use rca_gpu::cli::data::{DataArgs, run as run_data};
use rca_gpu::cli::synth::{SynthArgs, run as run_synth};

fn data_args(dir: &std::path::Path) -> DataArgs {
    DataArgs {
        dir: dir.to_path_buf(),
        layout: Default::default(),
        skip_bad: false,
        size: 32,
        hash_threshold: rca_gpu::data::hash::DEFAULT_HASH_THRESHOLD,
        min_correlation: rca_gpu::data::hash::DEFAULT_MIN_CORRELATION,
        json: None,
        write_split: None,
        split: None,
        seed: 0,
        folds: Default::default(),
    }
}

#[test]
fn synth_then_data_writes_report_and_split() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("phantoms");
    run_synth(SynthArgs {
        out: out.clone(),
        count: 7,
        size: 32,
        seed: 3,
    })
    .unwrap();
    let args = DataArgs {
        json: Some(dir.path().join("report.json")),
        write_split: Some(dir.path().join("split.json")),
        ..data_args(&out)
    };
    run_data(args).unwrap();
    let report: rca_gpu::data::DatasetReport =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report.images_loaded, 7);
    let split = rca_gpu::data::Split::load(&dir.path().join("split.json")).unwrap();
    assert_eq!(split.train.len() + split.val.len() + split.test.len(), 7);
    // The saved split checks out against the same folder.
    run_data(DataArgs {
        split: Some(dir.path().join("split.json")),
        ..data_args(&out)
    })
    .unwrap();
}

#[test]
fn data_with_a_split_naming_a_missing_file_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("phantoms");
    run_synth(SynthArgs {
        out: out.clone(),
        count: 7,
        size: 32,
        seed: 3,
    })
    .unwrap();
    run_data(DataArgs {
        write_split: Some(dir.path().join("split.json")),
        ..data_args(&out)
    })
    .unwrap();
    std::fs::remove_file(out.join("benign/benign (1).png")).unwrap();
    std::fs::remove_file(out.join("benign/benign (1)_mask.png")).unwrap();
    let err = run_data(DataArgs {
        split: Some(dir.path().join("split.json")),
        ..data_args(&out)
    })
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("benign/benign (1).png"),
        "{err:#}"
    );
}

#[test]
fn data_on_a_corrupt_file_fails_naming_it_and_suggests_skip_bad() {
    let dir = tempfile::tempdir().unwrap();
    run_synth(SynthArgs {
        out: dir.path().to_path_buf(),
        count: 3,
        size: 32,
        seed: 0,
    })
    .unwrap();
    std::fs::write(dir.path().join("benign/benign (1).png"), b"garbage").unwrap();
    let err = run_data(data_args(dir.path())).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("benign (1).png") && text.contains("--skip-bad"),
        "{text}"
    );
    run_data(DataArgs {
        skip_bad: true,
        ..data_args(dir.path())
    })
    .unwrap();
}

#[test]
fn data_args_parse_from_the_command_line() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: DataArgs,
    }
    let cli = Cli::try_parse_from([
        "data",
        "/tmp/x",
        "--format",
        "busis",
        "--skip-bad",
        "--size",
        "128",
    ])
    .unwrap();
    assert_eq!(cli.args.layout.format, Some(rca_gpu::data::Format::Busis));
    assert!(cli.args.skip_bad);
    assert_eq!(cli.args.size, 128);
}
