//! Adapter choice: a real GPU before a software one, a user's name filter first of all,
//! and an error that says what was tried and how to get a driver when nothing is found.

use super::{AdapterRequest, DeviceInfo, KernelClass};
use crate::error::{Error, Result};

/// One adapter as `rca-gpu devices` shows it.
#[derive(Clone, Debug)]
pub struct AdapterReport {
    pub info: DeviceInfo,
    pub vendor: u32,
    pub device_id: u32,
    pub driver_info: String,
    pub max_storage_buffers_per_stage: u32,
    pub max_workgroup_storage: u32,
    pub max_invocations_per_workgroup: u32,
    pub max_immediate_size: u32,
    pub immediates: bool,
    pub subgroups: bool,
    pub shader_f16: bool,
}

fn instance() -> wgpu::Instance {
    // WGPU_BACKEND (e.g. "vulkan", "metal", "dx12") narrows the backends tried.
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

fn backends_tried() -> String {
    match std::env::var("WGPU_BACKEND") {
        Ok(b) if !b.is_empty() => format!("backends from WGPU_BACKEND={b}"),
        _ => "backends Vulkan, Metal, DX12".to_string(),
    }
}

const DRIVER_HINT: &str = "Install a GPU driver with Vulkan support; on a machine without a GPU, \
Mesa's software Vulkan driver works: `sudo apt-get install mesa-vulkan-drivers libvulkan1` on \
Debian/Ubuntu (`dnf install mesa-vulkan-drivers` on Fedora). `rca-gpu devices` lists what wgpu sees.";

pub(crate) fn device_info(adapter: &wgpu::Adapter) -> DeviceInfo {
    let info = adapter.get_info();
    let limits = adapter.limits();
    DeviceInfo {
        name: info.name,
        backend: format!("{:?}", info.backend),
        device_type: device_type_name(info.device_type).into(),
        driver: if info.driver.is_empty() {
            info.driver_info
        } else {
            format!("{} {}", info.driver, info.driver_info)
                .trim()
                .into()
        },
        max_buffer_size: limits.max_buffer_size,
        max_storage_binding: limits.max_storage_buffer_binding_size,
        max_workgroups_per_dim: limits.max_compute_workgroups_per_dimension,
        timestamp_queries: adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY),
        // Set when the device is created with subgroups (`Gpu::new`).
        subgroup_size: None,
        kernels: if info.device_type == wgpu::DeviceType::Cpu {
            KernelClass::Cpu
        } else {
            KernelClass::Gpu
        },
    }
}

fn device_type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete GPU",
        wgpu::DeviceType::IntegratedGpu => "integrated GPU",
        wgpu::DeviceType::VirtualGpu => "virtual GPU",
        wgpu::DeviceType::Cpu => "CPU (software)",
        wgpu::DeviceType::Other => "other",
    }
}

/// Lower is better: real GPUs first, software rasterisers last.
fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

pub(crate) fn choose(request: &AdapterRequest) -> Result<(wgpu::Adapter, DeviceInfo)> {
    let instance = instance();
    let all = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    if all.is_empty() {
        return Err(Error::NoAdapter {
            tried: backends_tried(),
            hint: DRIVER_HINT.into(),
        });
    }
    let mut candidates: Vec<wgpu::Adapter> = match &request.name {
        Some(want) => {
            let want_lc = want.to_lowercase();
            let matching: Vec<_> = all
                .iter()
                .filter(|a| a.get_info().name.to_lowercase().contains(&want_lc))
                .cloned()
                .collect();
            if matching.is_empty() {
                let names: Vec<String> = all
                    .iter()
                    .map(|a| {
                        let i = a.get_info();
                        format!("'{}' ({:?})", i.name, i.backend)
                    })
                    .collect();
                return Err(Error::NoAdapter {
                    tried: format!(
                        "{}, name containing '{want}'; found only {}",
                        backends_tried(),
                        names.join(", ")
                    ),
                    hint: "Pick one of those names with --adapter or RCA_GPU_ADAPTER.".into(),
                });
            }
            matching
        }
        None => all,
    };
    // Stable: among equals, keep wgpu's enumeration order (Vulkan before others on Linux).
    candidates.sort_by_key(|a| rank(a.get_info().device_type));
    let adapter = candidates.remove(0);
    let info = device_info(&adapter);
    Ok((adapter, info))
}

/// Every adapter wgpu can see, for `rca-gpu devices`.
pub fn list_adapters() -> Vec<AdapterReport> {
    let instance = instance();
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    adapters
        .iter()
        .map(|a| {
            let info = a.get_info();
            let limits = a.limits();
            let features = a.features();
            AdapterReport {
                info: device_info(a),
                vendor: info.vendor,
                device_id: info.device,
                driver_info: info.driver_info,
                max_storage_buffers_per_stage: limits.max_storage_buffers_per_shader_stage,
                max_workgroup_storage: limits.max_compute_workgroup_storage_size,
                max_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
                max_immediate_size: limits.max_immediate_size,
                immediates: features.contains(wgpu::Features::IMMEDIATES),
                subgroups: features.contains(wgpu::Features::SUBGROUP),
                shader_f16: features.contains(wgpu::Features::SHADER_F16),
            }
        })
        .collect()
}

/// The hint printed when no adapter is found, exposed for the CLI and the test harness.
pub fn driver_hint() -> &'static str {
    DRIVER_HINT
}
