//! A per-dispatch profile from timestamp queries: while a profile is on, every kernel
//! launch (one compute pass each) writes the device's clock when its pass begins and ends,
//! and is recorded with its entry point, its grid, the bytes it binds, the FLOPs its
//! launcher declares and the block of the network it ran in (`Backend::enter`). Read back
//! once at the end, so profiling adds no read-back to the work it measures.
//!
//! Only where the adapter offers timestamp queries inside passes; `rca-gpu bench
//! --profile` turns the dispatches into a table per kernel and the slowest dispatches.

use super::Gpu;
use crate::error::{Error, Result};

/// Queries per query set (two per dispatch); more sets are made as a profile grows.
const QUERIES: u32 = 4096;

/// One profiled dispatch.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Dispatch {
    /// The kernel's entry point (`matmul_cpu`, `dw_conv`, …).
    pub kernel: &'static str,
    /// The network block it ran in (`enc2`, `dec0.csa`, …), or "" outside one.
    pub block: String,
    /// Workgroups of the dispatch.
    pub grid: [u32; 3],
    /// Bytes of the buffers it binds (what it can read or write, an upper bound of its
    /// traffic).
    pub bytes: u64,
    /// Floating-point operations, where the launcher declares them (the matmuls).
    pub flops: Option<f64>,
    /// GPU time between the pass's begin and end, in milliseconds.
    pub ms: f64,
}

#[derive(Default)]
pub(crate) struct Profile {
    sets: Vec<wgpu::QuerySet>,
    dispatches: Vec<Dispatch>,
    block: String,
}

impl Profile {
    /// The timestamp writes of the next dispatch, making a query set when one is full.
    pub(crate) fn next(
        &mut self,
        device: &wgpu::Device,
        kernel: &'static str,
        grid: [u32; 3],
        bytes: u64,
    ) -> (usize, u32) {
        let index = self.dispatches.len();
        let slot = (2 * index) as u32 % QUERIES;
        if slot == 0 {
            self.sets
                .push(device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("rca-gpu profile"),
                    ty: wgpu::QueryType::Timestamp,
                    count: QUERIES,
                }));
        }
        self.dispatches.push(Dispatch {
            kernel,
            block: self.block.clone(),
            grid,
            bytes,
            flops: None,
            ms: 0.0,
        });
        (self.sets.len() - 1, slot)
    }

    pub(crate) fn set(&self, i: usize) -> &wgpu::QuerySet {
        &self.sets[i]
    }
}

impl Gpu {
    /// Start recording a profile of every following launch (see the module doc).
    pub fn start_profile(&self) -> Result<()> {
        if !self.info().timestamp_queries {
            return Err(Error::Unsupported {
                adapter: self.info().name.clone(),
                reason: "it has no timestamp queries inside passes, which the profile reads".into(),
            });
        }
        self.flush();
        *self.inner.profile.lock().expect("profile lock") = Some(Profile::default());
        Ok(())
    }

    /// Whether a profile is being recorded.
    pub fn profiling(&self) -> bool {
        self.inner.profile.lock().expect("profile lock").is_some()
    }

    /// Name the network block that the following dispatches belong to (a no-op unless a
    /// profile is recording).
    pub fn set_block(&self, name: &str) {
        if let Some(p) = self.inner.profile.lock().expect("profile lock").as_mut() {
            p.block.clear();
            p.block.push_str(name);
        }
    }

    /// The block a profile is labelling dispatches with; None when no profile records.
    pub(crate) fn current_block(&self) -> Option<String> {
        self.inner
            .profile
            .lock()
            .expect("profile lock")
            .as_ref()
            .map(|p| p.block.clone())
    }

    /// Declare the FLOPs of the dispatch just launched (the matmuls know theirs).
    pub(crate) fn note_flops(&self, flops: f64) {
        if let Some(p) = self.inner.profile.lock().expect("profile lock").as_mut()
            && let Some(d) = p.dispatches.last_mut()
        {
            d.flops = Some(flops);
        }
    }

    /// Stop recording and return every dispatch with its GPU time (waits for the GPU).
    pub fn finish_profile(&self) -> Result<Vec<Dispatch>> {
        let Some(profile) = self.inner.profile.lock().expect("profile lock").take() else {
            return Ok(Vec::new());
        };
        let Profile {
            sets,
            mut dispatches,
            ..
        } = profile;
        let period_ns = f64::from(self.queue().get_timestamp_period());
        for (i, set) in sets.iter().enumerate() {
            let first = i * (QUERIES as usize / 2);
            let count = (dispatches.len() - first).min(QUERIES as usize / 2);
            let bytes = 16 * count as u64;
            let resolve = self.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("rca-gpu profile resolve"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let read = self.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("rca-gpu profile read"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            self.with_encoder(|enc| {
                enc.resolve_query_set(set, 0..2 * count as u32, &resolve, 0);
                enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, bytes);
            });
            let ticks: Vec<u64> = self.submit_and_read(&read, bytes)?;
            for (d, t) in dispatches[first..first + count]
                .iter_mut()
                .zip(ticks.chunks(2))
            {
                d.ms = t[1].wrapping_sub(t[0]) as f64 * period_ns / 1e6;
            }
        }
        Ok(dispatches)
    }
}
