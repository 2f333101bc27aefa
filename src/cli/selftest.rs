//! `rca-gpu selftest`: every kernel against its f64 reference on the chosen adapter, in
//! both kernel shapes, with pass/fail and the worst error of each (see
//! [`crate::selftest`]). Run it first on a new GPU or driver; it exits non-zero when a
//! check fails.

use std::path::PathBuf;

use anyhow::Context;

use crate::runtime::AdapterRequest;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also write the checks as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub adapter: super::AdapterArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let request = AdapterRequest {
        name: args.adapter.adapter.clone(),
        ..AdapterRequest::from_env()
    };
    let gpu = args.adapter.open()?;
    drop(gpu);
    let checks =
        crate::selftest::run(&request, args.seed).context("the self-test could not run")?;
    println!("| check | kernels | worst error / tolerance | where | result |");
    println!("|---|---|---:|---|---|");
    for c in &checks {
        println!(
            "| {} | {} | {:.3} | {} | {} |",
            c.name,
            c.kernels,
            c.worst,
            c.at,
            if c.pass { "pass" } else { "FAIL" }
        );
    }
    if let Some(path) = &args.json {
        crate::atomic::write(path, serde_json::to_string_pretty(&checks)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.pass)
        .map(|c| c.name.as_str())
        .collect();
    let passed = checks.len() - failed.len();
    println!("{passed} passed, {} failed", failed.len());
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} kernel checks failed on this adapter ({}): its results would be wrong. \
             Report it with this output and `rca-gpu devices`",
            failed.len(),
            checks.len(),
            failed.join(", ")
        );
    }
    Ok(())
}
