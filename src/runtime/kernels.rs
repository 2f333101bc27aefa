//! The shader registry and the pipeline cache, and the one function that launches a kernel.
//!
//! Every WGSL file of `shaders/` is listed once in [`Shader`]; a [`Kernel`] is one entry
//! point of one file plus its specialisation (WGSL `override` constants). Each kernel is
//! compiled once per device, the first time it is launched.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::Gpu;

/// The WGSL sources, grouped by family.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Shader {
    Elementwise,
    Reduce,
    Matmul,
    /// `matmul_cpu_sg`: needs subgroups, so a file of its own (see [`Shader::needs_subgroups`]).
    MatmulSg,
    Norm,
    Loss,
    Optim,
    Conv,
    Pool,
    Fft,
    Spectral,
}

impl Shader {
    pub fn source(self) -> &'static str {
        match self {
            Shader::Elementwise => include_str!("../../shaders/elementwise.wgsl"),
            Shader::Reduce => include_str!("../../shaders/reduce.wgsl"),
            Shader::Matmul => concat!(
                include_str!("../../shaders/matmul_common.wgsl"),
                include_str!("../../shaders/matmul.wgsl")
            ),
            Shader::MatmulSg => concat!(
                include_str!("../../shaders/matmul_common.wgsl"),
                include_str!("../../shaders/matmul_sg.wgsl")
            ),
            Shader::Norm => include_str!("../../shaders/norm.wgsl"),
            Shader::Loss => include_str!("../../shaders/loss.wgsl"),
            Shader::Optim => include_str!("../../shaders/optim.wgsl"),
            Shader::Conv => include_str!("../../shaders/conv.wgsl"),
            Shader::Pool => include_str!("../../shaders/pool.wgsl"),
            Shader::Fft => include_str!("../../shaders/fft.wgsl"),
            Shader::Spectral => include_str!("../../shaders/spectral.wgsl"),
        }
    }

    /// Whether the source uses subgroup built-ins, which only a device created with
    /// `wgpu::Features::SUBGROUP` accepts.
    pub fn needs_subgroups(self) -> bool {
        matches!(self, Shader::MatmulSg)
    }

    pub fn all() -> &'static [Shader] {
        &[
            Shader::Elementwise,
            Shader::Reduce,
            Shader::Matmul,
            Shader::MatmulSg,
            Shader::Norm,
            Shader::Loss,
            Shader::Optim,
            Shader::Conv,
            Shader::Pool,
            Shader::Fft,
            Shader::Spectral,
        ]
    }
}

/// One entry point with its override constants.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Kernel {
    pub shader: Shader,
    pub entry: &'static str,
    /// `override` constants (name, value); values are integers in every kernel we have.
    pub constants: Vec<(&'static str, u32)>,
}

impl Kernel {
    pub const fn new(shader: Shader, entry: &'static str) -> Self {
        Self {
            shader,
            entry,
            constants: Vec::new(),
        }
    }

    pub fn with(mut self, name: &'static str, value: u32) -> Self {
        self.constants.push((name, value));
        self
    }
}

pub(crate) struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<Shader, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<Kernel, Arc<Pipeline>>>,
    compiled: AtomicU64,
}

impl PipelineCache {
    pub(crate) fn compiled(&self) -> u64 {
        self.compiled.load(Ordering::Relaxed)
    }

    fn get(&self, device: &wgpu::Device, kernel: &Kernel) -> Arc<Pipeline> {
        if let Some(p) = self.pipelines.lock().expect("pipeline lock").get(kernel) {
            return p.clone();
        }
        let module = {
            let mut modules = self.modules.lock().expect("module lock");
            modules
                .entry(kernel.shader)
                .or_insert_with(|| {
                    Arc::new(device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(&format!("{:?}", kernel.shader)),
                        source: wgpu::ShaderSource::Wgsl(kernel.shader.source().into()),
                    }))
                })
                .clone()
        };
        let constants: Vec<(&str, f64)> = kernel
            .constants
            .iter()
            .map(|&(k, v)| (k, f64::from(v)))
            .collect();
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry),
            layout: None,
            module: &module,
            entry_point: Some(kernel.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        let layout = pipeline.get_bind_group_layout(0);
        let p = Arc::new(Pipeline { pipeline, layout });
        self.compiled.fetch_add(1, Ordering::Relaxed);
        self.pipelines
            .lock()
            .expect("pipeline lock")
            .insert(kernel.clone(), p.clone());
        p
    }
}

impl PipelineCache {
    /// Compile `source` in place of `shader`'s own, dropping the pipelines built from it.
    fn replace(&self, device: &wgpu::Device, shader: Shader, source: &str) {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&format!("{shader:?} (replaced)")),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        self.modules
            .lock()
            .expect("module lock")
            .insert(shader, Arc::new(module));
        self.pipelines
            .lock()
            .expect("pipeline lock")
            .retain(|k, _| k.shader != shader);
    }
}

/// A buffer bound to one `@binding` slot of a kernel.
pub(crate) struct Binding<'a> {
    pub slot: u32,
    pub buffer: &'a wgpu::Buffer,
    /// Bytes from the buffer's start (a multiple of `tensor::VIEW_ALIGN`).
    pub offset: u64,
    pub bytes: u64,
}

/// Split a workgroup count over x and y so no dimension exceeds the device limit
/// (65,535 on most devices). Kernels rebuild the flat index from `num_workgroups`.
pub(crate) fn grid_1d(workgroups: u32, max_per_dim: u32) -> [u32; 3] {
    let workgroups = workgroups.max(1);
    if workgroups <= max_per_dim {
        [workgroups, 1, 1]
    } else {
        let y = workgroups.div_ceil(max_per_dim);
        [workgroups.div_ceil(y), y, 1]
    }
}

/// Invocations per workgroup of the one-element-per-invocation kernels (`WG` in their
/// shaders).
pub(crate) const WG: u32 = 256;

/// Launch a kernel with one invocation per element of `n`, on a grid that respects the
/// per-dimension workgroup limit.
pub(crate) fn launch_1d<P: super::KernelParams>(
    gpu: &Gpu,
    kernel: &Kernel,
    bindings: &[Binding<'_>],
    params: &P,
    n: usize,
) {
    let groups = (n as u64).div_ceil(u64::from(WG));
    let groups = u32::try_from(groups).expect("tensor too large for a 1-D launch");
    let grid = grid_1d(groups, gpu.info().max_workgroups_per_dim);
    gpu.launch(kernel, bindings, params, grid);
}

impl Gpu {
    /// Run `shader` from `source` on this device from now on: for testing that a wrong
    /// kernel is caught (the self-test's own test plants one), never for real work.
    #[doc(hidden)]
    pub fn replace_shader_source(&self, shader: Shader, source: &str) {
        self.inner
            .pipelines
            .replace(&self.inner.device, shader, source);
    }

    /// Record one kernel launch into the pending encoder. `params` is the kernel's
    /// immediate block, declared with `kernel_params!` to mirror its shader's `Params`.
    pub(crate) fn launch<P: super::KernelParams>(
        &self,
        kernel: &Kernel,
        bindings: &[Binding<'_>],
        params: &P,
        workgroups: [u32; 3],
    ) {
        debug_assert!(
            P::SHADERS.contains(&kernel.shader),
            "{}: launched with another shader's parameter block",
            kernel.entry
        );
        let immediates: &[u8] = bytemuck::bytes_of(params);
        let p = self.inner.pipelines.get(&self.inner.device, kernel);
        let entries: Vec<wgpu::BindGroupEntry> = bindings
            .iter()
            .map(|b| wgpu::BindGroupEntry {
                binding: b.slot,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: b.buffer,
                    offset: b.offset,
                    size: wgpu::BufferSize::new(b.bytes),
                }),
            })
            .collect();
        let bind_group = self
            .inner
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &p.layout,
                entries: &entries,
            });
        // While a profile records, the pass writes the clock at its begin and end.
        let mut profile = self.inner.profile.lock().expect("profile lock");
        let slot = profile.as_mut().map(|p| {
            // A range bound to two slots (a scalar and a vec4 view) counts once.
            let mut ranges: Vec<_> = bindings
                .iter()
                .map(|b| (std::ptr::from_ref(b.buffer) as usize, b.offset, b.bytes))
                .collect();
            ranges.sort_unstable();
            ranges.dedup();
            let bytes = ranges.iter().map(|r| r.2).sum();
            p.next(&self.inner.device, kernel.entry, workgroups, bytes)
        });
        let timestamp_writes =
            profile
                .as_ref()
                .zip(slot)
                .map(|(p, (set, index))| wgpu::ComputePassTimestampWrites {
                    query_set: p.set(set),
                    beginning_of_pass_write_index: Some(index),
                    end_of_pass_write_index: Some(index + 1),
                });
        self.inner
            .dispatches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let record = |pass: &mut wgpu::ComputePass<'_>| {
            pass.set_pipeline(&p.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            if !immediates.is_empty() {
                pass.set_immediates(0, immediates);
            }
            pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
        };
        match timestamp_writes {
            // A profile times each dispatch: a pass of its own, with the clock at both ends.
            Some(timestamp_writes) => self.with_encoder(|enc| {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(kernel.entry),
                    timestamp_writes: Some(timestamp_writes),
                });
                record(&mut pass);
            }),
            None => self.with_pass(|pass| record(pass)),
        }
    }
}
