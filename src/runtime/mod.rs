//! The GPU runtime: adapter choice, device and queue, the pipeline cache, the buffer pool,
//! and the pending command encoder into which every kernel launch is recorded.
//!
//! Kernels are not submitted one by one: launches are appended to one pending encoder and
//! submitted together when the host needs a result (a read-back), when host data is
//! uploaded, or when the caller asks ([`Gpu::flush`]). A training step is therefore a
//! handful of submits, not hundreds.

mod adapter;
mod kernels;
mod params;
mod pool;
mod profile;
mod timer;

pub use adapter::{AdapterReport, driver_hint, list_adapters};
pub(crate) use kernels::{Binding, WG, grid_1d, launch_1d};
pub use kernels::{Kernel, Shader};
#[cfg(test)]
pub(crate) use params::assert_mirrors_wgsl;
pub(crate) use params::{KernelParams, kernel_params};
pub(crate) use pool::{Kind, size_class};
pub use pool::{PoolStats, PooledBuffer};
pub use profile::Dispatch;
pub use timer::GpuTimer;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// Which adapter to open. The default prefers a real GPU over a software one.
#[derive(Clone, Debug, Default)]
pub struct AdapterRequest {
    /// Case-insensitive substring of the adapter name (`--adapter`, `RCA_GPU_ADAPTER`).
    pub name: Option<String>,
    /// Treat the storage-binding limit as at most this many bytes
    /// (`RCA_GPU_MAX_BINDING`): behaves like a device with less memory per buffer, to test
    /// or reproduce what happens there (inference splits its batches; training refuses a
    /// batch that cannot fit).
    pub max_binding: Option<u64>,
    /// Run the kernel variants of this adapter class instead of the adapter's own
    /// (`RCA_GPU_KERNELS=cpu|gpu`): the tests hold both variants of every kernel to the
    /// reference on one adapter.
    pub kernels: Option<KernelClass>,
    /// `Some(false)` keeps the device from using subgroup operations even where the
    /// adapter has them (`RCA_GPU_SUBGROUPS=off`): the tests hold the kernels written for
    /// devices without them to the reference on an adapter that has them.
    pub subgroups: Option<bool>,
}

/// Which shape of the hot kernels a device runs. A CPU adapter (lavapipe) executes 8
/// consecutive invocations as the lanes of one vector register, pays about the same for
/// every load instruction and much for barriers; a GPU wants workgroup tiles and coalesced
/// loads. Chosen from the adapter's type when the device is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelClass {
    Cpu,
    Gpu,
}

impl std::str::FromStr for KernelClass {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(KernelClass::Cpu),
            "gpu" => Ok(KernelClass::Gpu),
            other => Err(format!("unknown kernel class '{other}' (cpu or gpu)")),
        }
    }
}

impl std::fmt::Display for KernelClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KernelClass::Cpu => "cpu",
            KernelClass::Gpu => "gpu",
        })
    }
}

impl AdapterRequest {
    /// The request a user makes through the environment: `RCA_GPU_ADAPTER` picks by name;
    /// `WGPU_BACKEND` (read when the instance is created) restricts the backends.
    pub fn from_env() -> Self {
        Self {
            name: std::env::var("RCA_GPU_ADAPTER")
                .ok()
                .filter(|s| !s.trim().is_empty()),
            max_binding: std::env::var("RCA_GPU_MAX_BINDING")
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            kernels: std::env::var("RCA_GPU_KERNELS")
                .ok()
                .and_then(|s| s.parse().ok()),
            subgroups: std::env::var("RCA_GPU_SUBGROUPS").ok().and_then(|s| {
                match s.trim().to_ascii_lowercase().as_str() {
                    "0" | "off" | "false" | "no" => Some(false),
                    "1" | "on" | "true" | "yes" => Some(true),
                    _ => None,
                }
            }),
        }
    }
}

/// What the engine knows about the adapter it runs on.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub max_buffer_size: u64,
    pub max_storage_binding: u64,
    pub max_workgroups_per_dim: u32,
    pub timestamp_queries: bool,
    /// The kernel variants this device runs.
    pub kernels: KernelClass,
    /// Lanes per subgroup when the device was created with subgroup operations and the
    /// adapter runs every subgroup at that one size; `None` otherwise. Kernels that share
    /// loads across a subgroup (`matmul_cpu_sg`) run only where this is what they assume.
    pub subgroup_size: Option<u32>,
}

impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, {}, driver: {}; {} kernels",
            self.name, self.backend, self.device_type, self.driver, self.kernels
        )?;
        match self.subgroup_size {
            Some(n) => write!(f, ", subgroups of {n})"),
            None => f.write_str(")"),
        }
    }
}

/// A handle on one GPU device. Cheap to clone; all clones share the pipeline cache,
/// the buffer pool and the pending encoder.
#[derive(Clone)]
pub struct Gpu {
    pub(crate) inner: Arc<GpuInner>,
}

pub(crate) struct GpuInner {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) info: DeviceInfo,
    pub(crate) pipelines: kernels::PipelineCache,
    pub(crate) pool: Mutex<pool::Pool>,
    pending: Mutex<Pending>,
    /// Fill every buffer handed out by the pool with NaN (tests: an output element a
    /// kernel never writes then shows up as NaN instead of as a stale value).
    poison: AtomicBool,
    /// Compile one pipeline where a large model is better served by several
    /// ([`Gpu::set_few_pipelines`]).
    few_pipelines: AtomicBool,
    submits: AtomicU64,
    dispatches: AtomicU64,
    /// Read-only tables that kernels bind on every call (the FFT's twiddles, spectral
    /// pooling's matrices), by name: uploaded once, kept as long as the device. Plain
    /// buffers, not tensors, because a tensor holds its device and would keep it alive
    /// from inside.
    tables: Mutex<std::collections::HashMap<String, wgpu::Buffer>>,
    /// The per-dispatch profile being recorded, if any ([`Gpu::start_profile`]).
    profile: Mutex<Option<profile::Profile>>,
}

#[derive(Default)]
struct Pending {
    /// The compute pass that launches are recorded into, open on `encoder` (declared
    /// first: it must end before the encoder is used or finished).
    pass: Option<wgpu::ComputePass<'static>>,
    encoder: Option<wgpu::CommandEncoder>,
    launches: u32,
}

/// Counters that make the runtime's behaviour observable in tests and benches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    pub pool: PoolStats,
    pub pipelines_compiled: u64,
    pub submits: u64,
    /// Kernel launches recorded (compute dispatches; copies and clears are not counted).
    pub dispatches: u64,
}

/// Launches recorded before a submit is forced, so a long no-read-back loop still
/// lets the GPU start working and keeps command memory bounded.
const MAX_PENDING_LAUNCHES: u32 = 512;

impl Gpu {
    /// Open the best adapter for `request` (see [`AdapterRequest`]).
    pub fn new(request: &AdapterRequest) -> Result<Self> {
        let (adapter, mut info) = adapter::choose(request)?;
        if let Some(cap) = request.max_binding {
            info.max_storage_binding = info.max_storage_binding.min(cap);
        }
        if let Some(class) = request.kernels {
            info.kernels = class;
        }
        let features = adapter.features();
        if !features.contains(wgpu::Features::IMMEDIATES) {
            return Err(Error::Unsupported {
                adapter: info.name.clone(),
                reason: "it lacks immediate data (push constants), which every kernel uses for its sizes"
                    .into(),
            });
        }
        let mut required_features = wgpu::Features::IMMEDIATES;
        if info.timestamp_queries {
            required_features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let subgroups =
            features.contains(wgpu::Features::SUBGROUP) && request.subgroups != Some(false);
        if subgroups {
            required_features |= wgpu::Features::SUBGROUP;
            let a = adapter.get_info();
            info.subgroup_size = (a.subgroup_min_size == a.subgroup_max_size
                && a.subgroup_min_size > 0)
                .then_some(a.subgroup_min_size);
        }
        // The adapter's own limits, not the portable defaults: batch 8 at 256² has single
        // activations above the default 128 MiB binding size.
        let required_limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("rca-gpu"),
            required_features,
            required_limits,
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|source| Error::RequestDevice {
            adapter: info.name.clone(),
            source,
        })?;
        Ok(Self {
            inner: Arc::new(GpuInner {
                device,
                queue,
                info,
                pipelines: kernels::PipelineCache::default(),
                pool: Mutex::new(pool::Pool::default()),
                pending: Mutex::new(Pending::default()),
                poison: AtomicBool::new(false),
                few_pipelines: AtomicBool::new(false),
                submits: AtomicU64::new(0),
                dispatches: AtomicU64::new(0),
                tables: Mutex::default(),
                profile: Mutex::default(),
            }),
        })
    }

    /// The adapter this device runs on.
    pub fn info(&self) -> &DeviceInfo {
        &self.inner.info
    }

    /// The wgpu device, for callers that build their own passes (benches, timestamp queries).
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// Turn NaN-poisoning of freshly handed-out buffers on or off (tests).
    pub fn set_poison(&self, on: bool) {
        self.inner.poison.store(on, Ordering::Relaxed);
    }

    pub(crate) fn poison(&self) -> bool {
        self.inner.poison.load(Ordering::Relaxed)
    }

    /// Trade some speed of large models for fewer, quicker pipelines to compile. On CPU
    /// adapters every product then runs as 8-row blocks (never 16, 32 or 64), with one
    /// pipeline that adds to its output or not as a flag says instead of two; one
    /// depthwise pipeline whose row loop stays a loop serves every kernel size instead of
    /// one unrolled per size; the element-wise maps take one vec4 per invocation instead
    /// of four. Worth it where the model is small, so that compiling a pipeline takes
    /// longer than everything it would save: lavapipe compiles each at its first dispatch,
    /// the unrolled ones in 0.3–0.9 s. The results are the same bit for bit (the same sums
    /// in the same order).
    pub fn set_few_pipelines(&self, on: bool) {
        self.inner.few_pipelines.store(on, Ordering::Relaxed);
    }

    pub(crate) fn few_pipelines(&self) -> bool {
        self.inner.few_pipelines.load(Ordering::Relaxed)
    }

    /// Counters: buffers created and reused, pipelines compiled, submits, dispatches.
    pub fn stats(&self) -> RuntimeStats {
        RuntimeStats {
            pool: self.inner.pool.lock().expect("pool lock").stats(),
            pipelines_compiled: self.inner.pipelines.compiled(),
            submits: self.inner.submits.load(Ordering::Relaxed),
            dispatches: self.inner.dispatches.load(Ordering::Relaxed),
        }
    }

    /// Release the pool's idle buffers (GPU memory) between phases of a run.
    pub fn trim_pool(&self) {
        self.inner.pool.lock().expect("pool lock").trim();
    }

    /// Run `f` with the pending encoder, creating it if needed (and ending the open
    /// compute pass first: copies and clears are recorded outside passes).
    pub(crate) fn with_encoder<R>(&self, f: impl FnOnce(&mut wgpu::CommandEncoder) -> R) -> R {
        let mut pending = self.inner.pending.lock().expect("encoder lock");
        pending.pass = None;
        let encoder = pending.encoder.get_or_insert_with(|| self.new_encoder());
        let r = f(encoder);
        self.count_launch(&mut pending);
        r
    }

    /// Run `f` with the open compute pass of the pending encoder, beginning one if needed.
    /// Consecutive launches share one pass; wgpu orders the dispatches inside it as it
    /// orders passes (each dispatch is its own usage scope), and a CPU adapter then pays
    /// for one pass instead of one per dispatch.
    pub(crate) fn with_pass<R>(&self, f: impl FnOnce(&mut wgpu::ComputePass<'static>) -> R) -> R {
        let mut pending = self.inner.pending.lock().expect("encoder lock");
        if pending.pass.is_none() {
            let encoder = pending.encoder.get_or_insert_with(|| self.new_encoder());
            let pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("rca-gpu launches"),
                    timestamp_writes: None,
                })
                .forget_lifetime();
            pending.pass = Some(pass);
        }
        let r = f(pending.pass.as_mut().expect("just opened"));
        self.count_launch(&mut pending);
        r
    }

    fn new_encoder(&self) -> wgpu::CommandEncoder {
        self.inner
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("rca-gpu pending"),
            })
    }

    /// Count one recorded command; submit when enough are pending.
    fn count_launch(&self, pending: &mut Pending) {
        pending.launches += 1;
        if pending.launches >= MAX_PENDING_LAUNCHES {
            pending.launches = 0;
            pending.pass = None;
            let encoder = pending.encoder.take().expect("just used");
            self.inner.queue.submit([encoder.finish()]);
            self.inner.submits.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Submit everything recorded so far. Does not wait for it to finish.
    pub fn flush(&self) {
        self.flush_then(|_| ());
    }

    /// Submit everything recorded so far, then run `f` on the queue before any other
    /// thread can record or submit. Host writes go through here: a queue write lands
    /// before the next submit, so it must come after every command that may still read
    /// the buffer being written (a recycled one), including another thread's.
    pub(crate) fn flush_then<R>(&self, f: impl FnOnce(&wgpu::Queue) -> R) -> R {
        let mut pending = self.inner.pending.lock().expect("encoder lock");
        pending.launches = 0;
        pending.pass = None;
        if let Some(encoder) = pending.encoder.take() {
            // Submitted under the lock, so submits reach the queue in recording order.
            self.inner.queue.submit([encoder.finish()]);
            self.inner.submits.fetch_add(1, Ordering::Relaxed);
        }
        f(&self.inner.queue)
    }

    /// The read-only f32 table `name` of this device, made by `make` and uploaded on first
    /// use (mapped at creation: no submit, so it can be made between any two launches).
    pub(crate) fn table(&self, name: &str, make: impl FnOnce() -> Vec<f32>) -> wgpu::Buffer {
        let mut tables = self.inner.tables.lock().expect("tables lock");
        if let Some(buffer) = tables.get(name) {
            return buffer.clone();
        }
        tables
            .entry(name.to_string())
            .or_insert_with(|| {
                let data = make();
                let buffer = self.inner.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(name),
                    size: (data.len() * 4) as u64,
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: true,
                });
                buffer
                    .slice(..)
                    .get_mapped_range_mut()
                    .expect("a buffer mapped at creation is mapped")
                    .copy_from_slice(bytemuck::cast_slice(&data));
                buffer.unmap();
                buffer
            })
            .clone()
    }

    /// Submit everything recorded so far, wait for it, and read the first `bytes` of the
    /// mappable `buffer` (the target of a recorded copy) as `T`s.
    pub(crate) fn submit_and_read<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        bytes: u64,
    ) -> Result<Vec<T>> {
        self.flush();
        let slice = buffer.slice(0..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        let failed = |e: &dyn std::fmt::Display| Error::ReadBack(e.to_string());
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| failed(&e))?;
        rx.recv().map_err(|e| failed(&e))?.map_err(|e| failed(&e))?;
        let out = {
            let view = slice.get_mapped_range().map_err(|e| failed(&e))?;
            bytemuck::cast_slice::<u8, T>(&view).to_vec()
        };
        buffer.unmap();
        Ok(out)
    }

    /// Submit everything and block until the device is idle (benches drain before reading
    /// the clock).
    pub fn sync(&self) {
        self.flush();
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .expect("device lost while waiting for it");
    }
}
