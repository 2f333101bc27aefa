//! The buffer pool: storage buffers are recycled by size class, so that after a warm-up
//! step a repeated computation creates no new GPU buffers.
//!
//! A dropped tensor hands its buffer back here at once, even while recorded-but-unsubmitted
//! kernels still use it. That is safe because every later use of the buffer is recorded in
//! the same pending encoder, after those kernels (wgpu orders them); the one exception, a
//! host write through the queue, flushes the pending encoder first (see `tensor::upload`).

use std::collections::HashMap;
use std::sync::Weak;

use super::GpuInner;

/// Counters of the pool, exposed through [`super::Gpu::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// GPU buffers ever created by the pool.
    pub created: u64,
    /// Requests served by a recycled buffer.
    pub reused: u64,
    /// Buffers currently lent out.
    pub live: u64,
    /// Buffers currently waiting in the pool.
    pub idle: u64,
    /// Bytes held by all buffers the pool created (lent and idle).
    pub bytes: u64,
    /// The largest storage tensor ever requested, in bytes (before size-class rounding):
    /// what a binding must hold, measured so that the trainer's up-front batch-size check
    /// can be tested against what the model really allocates.
    pub largest_request: u64,
}

/// Storage buffers and map-read staging buffers are kept apart: their usages differ.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum Kind {
    Storage,
    Staging,
}

#[derive(Default)]
pub(crate) struct Pool {
    free: HashMap<(Kind, u64), Vec<wgpu::Buffer>>,
    stats: PoolStats,
}

/// Round a request up to its size class: four classes per power of two, so at most a
/// quarter of a buffer is wasted while differently-sized layers still share buffers.
pub(crate) fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(256);
    let top = 63 - bytes.leading_zeros() as u64; // floor(log2)
    let step = 1u64 << top.saturating_sub(2);
    bytes.div_ceil(step) * step
}

impl Pool {
    pub(crate) fn stats(&self) -> PoolStats {
        let mut s = self.stats;
        s.idle = self.free.values().map(|v| v.len() as u64).sum();
        s
    }

    /// Record a storage request of `bytes` (see [`PoolStats::largest_request`]).
    pub(crate) fn note_request(&mut self, bytes: u64) {
        self.stats.largest_request = self.stats.largest_request.max(bytes);
    }

    pub(crate) fn take(&mut self, device: &wgpu::Device, kind: Kind, class: u64) -> wgpu::Buffer {
        self.stats.live += 1;
        if let Some(buf) = self.free.get_mut(&(kind, class)).and_then(Vec::pop) {
            self.stats.reused += 1;
            return buf;
        }
        self.stats.created += 1;
        self.stats.bytes += class;
        let usage = match kind {
            Kind::Storage => {
                wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST
            }
            Kind::Staging => wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        };
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(match kind {
                Kind::Storage => "rca-gpu tensor",
                Kind::Staging => "rca-gpu read-back",
            }),
            size: class,
            usage,
            mapped_at_creation: false,
        })
    }

    fn give_back(&mut self, kind: Kind, class: u64, buf: wgpu::Buffer) {
        self.stats.live -= 1;
        self.free.entry((kind, class)).or_default().push(buf);
    }

    /// Drop every idle buffer (frees GPU memory between phases, e.g. after training).
    pub(crate) fn trim(&mut self) {
        for (&(_, class), v) in self.free.iter() {
            self.stats.bytes -= class * v.len() as u64;
        }
        self.free.clear();
    }
}

/// A buffer lent by the pool; it returns there when dropped.
pub struct PooledBuffer {
    buffer: Option<wgpu::Buffer>,
    kind: Kind,
    class: u64,
    owner: Weak<GpuInner>,
}

impl PooledBuffer {
    pub(crate) fn new(buffer: wgpu::Buffer, kind: Kind, class: u64, owner: Weak<GpuInner>) -> Self {
        Self {
            buffer: Some(buffer),
            kind,
            class,
            owner,
        }
    }

    /// The underlying wgpu buffer (its size is the size class, not the tensor's size).
    pub fn raw(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("buffer present until drop")
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let (Some(buf), Some(owner)) = (self.buffer.take(), self.owner.upgrade())
            && let Ok(mut pool) = owner.pool.lock()
        {
            pool.give_back(self.kind, self.class, buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_cover_the_request_and_waste_at_most_a_quarter() {
        for bytes in [1u64, 255, 256, 257, 1000, 4096, 4097, 65_537, 123_456_789] {
            let c = size_class(bytes);
            assert!(c >= bytes, "{bytes} -> {c}");
            assert!(c <= (bytes.max(256) as f64 * 1.34) as u64, "{bytes} -> {c}");
        }
    }
}
