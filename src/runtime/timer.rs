//! Time on the GPU itself, with timestamp queries: the device's clock at two points of the
//! command stream, so a measurement excludes the host's recording, submit and read-back
//! overhead that a wall clock includes. Only where the adapter offers timestamp queries
//! ([`crate::runtime::DeviceInfo::timestamp_queries`]); `rca-gpu bench` reports both.
//!
//! Launches are one compute pass each, so the marks are empty compute passes of their own
//! that write a timestamp when they begin: everything recorded between the two marks, across
//! any number of submits, lies between the two readings.

use super::Gpu;
use crate::error::Result;

/// Two timestamps (start, stop) and the buffers to read them back.
pub struct GpuTimer {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    read: wgpu::Buffer,
}

const MARKS: u32 = 2;
const BYTES: u64 = MARKS as u64 * 8;

impl Gpu {
    /// A timer on this device, or None when its adapter has no timestamp queries.
    pub fn timer(&self) -> Option<GpuTimer> {
        if !self.info().timestamp_queries {
            return None;
        }
        let device = self.device();
        Some(GpuTimer {
            set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("rca-gpu timer"),
                ty: wgpu::QueryType::Timestamp,
                count: MARKS,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("rca-gpu timer resolve"),
                size: BYTES,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            read: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("rca-gpu timer read"),
                size: BYTES,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        })
    }
}

impl GpuTimer {
    fn mark(&self, gpu: &Gpu, index: u32) {
        gpu.with_encoder(|enc| {
            // An empty pass: it only writes the timestamp where it stands in the stream.
            drop(enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("rca-gpu timestamp"),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &self.set,
                    beginning_of_pass_write_index: Some(index),
                    end_of_pass_write_index: None,
                }),
            }));
        });
    }

    /// Mark the start, after everything recorded so far.
    pub fn start(&self, gpu: &Gpu) {
        self.mark(gpu, 0);
    }

    /// Mark the stop, after everything recorded so far, and queue the read-back copy.
    pub fn stop(&self, gpu: &Gpu) {
        self.mark(gpu, 1);
        gpu.with_encoder(|enc| {
            enc.resolve_query_set(&self.set, 0..MARKS, &self.resolve, 0);
            enc.copy_buffer_to_buffer(&self.resolve, 0, &self.read, 0, BYTES);
        });
    }

    /// Milliseconds of GPU time between the last start and stop; waits for the GPU.
    pub fn elapsed_ms(&self, gpu: &Gpu) -> Result<f64> {
        let ticks: Vec<u64> = gpu.submit_and_read(&self.read, BYTES)?;
        let period_ns = f64::from(gpu.queue().get_timestamp_period());
        Ok(ticks[1].wrapping_sub(ticks[0]) as f64 * period_ns / 1e6)
    }
}
