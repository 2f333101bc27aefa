//! `rca-gpu devices`: what wgpu sees, so a user can pick an adapter and check a driver.

use crate::runtime::{driver_hint, list_adapters};

#[derive(clap::Args, Debug)]
pub struct Args {}

fn mib(b: u64) -> String {
    format!("{} MiB", b / (1 << 20))
}

pub fn run(_: Args) -> anyhow::Result<()> {
    let adapters = list_adapters();
    if adapters.is_empty() {
        anyhow::bail!("no GPU adapter found. {}", driver_hint());
    }
    for (i, a) in adapters.iter().enumerate() {
        let d = &a.info;
        println!("[{i}] {}", d.name);
        println!("    backend: {}   type: {}", d.backend, d.device_type);
        println!("    driver: {}", d.driver);
        println!(
            "    max buffer: {}   max storage binding: {}   storage buffers/stage: {}",
            mib(d.max_buffer_size),
            mib(d.max_storage_binding),
            a.max_storage_buffers_per_stage
        );
        println!(
            "    workgroup memory: {} KiB   invocations/workgroup: {}   workgroups/dim: {}",
            a.max_workgroup_storage / 1024,
            a.max_invocations_per_workgroup,
            d.max_workgroups_per_dim
        );
        println!(
            "    immediates: {} ({} B)   timestamps: {}   subgroups: {}   f16: {}",
            yes(a.immediates),
            a.max_immediate_size,
            yes(d.timestamp_queries),
            yes(a.subgroups),
            yes(a.shader_f16)
        );
    }
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
