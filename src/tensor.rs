//! The tensor: an f32 buffer on the GPU plus its shape (NCHW for images, any rank for
//! weights and statistics). Tensors are immutable values; ops make new ones. Cloning a
//! tensor clones a handle, not the data; the buffer returns to the pool when the last
//! handle is dropped.
//!
//! The two kernels that the layers below the ops need, the fill (for `full` and the
//! NaN poison) and the unrecorded sum (the tape's gradient accumulation), launch from here
//! through the element-wise family's launcher, which `crate::ops` shares.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::runtime::{Binding, Kernel, Kind, Shader, size_class};
use crate::runtime::{Gpu, PooledBuffer};

/// A tensor's dimensions, outermost first.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Shape(pub Vec<usize>);

impl Shape {
    pub fn new(dims: &[usize]) -> Self {
        Self(dims.to_vec())
    }
    pub fn dims(&self) -> &[usize] {
        &self.0
    }
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }
    /// (N, C, H, W) of a rank-4 shape.
    pub fn nchw(&self) -> Option<(usize, usize, usize, usize)> {
        match self.0[..] {
            [n, c, h, w] => Some((n, c, h, w)),
            _ => None,
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, ")")
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<&[usize]> for Shape {
    fn from(d: &[usize]) -> Self {
        Self(d.to_vec())
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(d: [usize; N]) -> Self {
        Self(d.to_vec())
    }
}

/// Byte alignment of a [`Tensor::slice`]: WebGPU's largest
/// `min_storage_buffer_offset_alignment`, so a slice can be bound on every device.
pub(crate) const VIEW_ALIGN: u64 = 256;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// An f32 tensor on the GPU.
#[derive(Clone)]
pub struct Tensor {
    pub(crate) buf: Arc<PooledBuffer>,
    /// Where this tensor's data starts in `buf`, in bytes: 0, or a multiple of
    /// [`VIEW_ALIGN`] for a slice of a larger tensor (see [`Tensor::slice`]).
    offset: u64,
    shape: Shape,
    id: u64,
    requires_grad: bool,
    gpu: Gpu,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor#{}{}", self.id, self.shape)
    }
}

impl Tensor {
    /// A tensor with undefined contents (NaN when the device is in poison mode). Ops use
    /// it for their outputs.
    pub fn uninit(gpu: &Gpu, shape: impl Into<Shape>, op: &'static str) -> Result<Self> {
        let t = Self::allocate(gpu, shape.into(), op)?;
        if gpu.poison() {
            t.fill(f32::NAN);
        }
        Ok(t)
    }

    /// A tensor of +0.0 set by a transfer command (a clear), not a kernel launch.
    pub(crate) fn cleared(gpu: &Gpu, shape: impl Into<Shape>, op: &'static str) -> Result<Self> {
        let t = Self::allocate(gpu, shape.into(), op)?;
        t.clear();
        Ok(t)
    }

    /// A pooled buffer for `shape`, its contents whatever they were.
    fn allocate(gpu: &Gpu, shape: Shape, op: &'static str) -> Result<Self> {
        let numel = shape.numel();
        if numel == 0 {
            return Err(Error::BadShape {
                op,
                shape,
                expected: "no zero-sized dimension".into(),
            });
        }
        let bytes = 4 * numel as u64;
        let info = gpu.info();
        let limit = info.max_storage_binding.min(info.max_buffer_size);
        if bytes > limit {
            return Err(Error::TooLarge {
                op,
                bytes,
                limit,
                what: "storage binding",
            });
        }
        let class = size_class(bytes);
        let raw = {
            let mut pool = gpu.inner.pool.lock().expect("pool lock");
            pool.note_request(bytes);
            pool.take(&gpu.inner.device, Kind::Storage, class)
        };
        Ok(Self {
            buf: Arc::new(PooledBuffer::new(
                raw,
                Kind::Storage,
                class,
                Arc::downgrade(&gpu.inner),
            )),
            offset: 0,
            shape,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            requires_grad: false,
            gpu: gpu.clone(),
        })
    }

    /// The device's read-only table `name` ([`Gpu::table`]: made by `make` and uploaded on
    /// first use, then shared) as a tensor of `shape`, for a kernel to read. Dropping it
    /// leaves the table with the device, outside the buffer pool.
    pub(crate) fn table(
        gpu: &Gpu,
        name: &str,
        shape: impl Into<Shape>,
        make: impl FnOnce() -> Vec<f32>,
    ) -> Self {
        let shape = shape.into();
        let buffer = gpu.table(name, make);
        assert_eq!(
            buffer.size(),
            4 * shape.numel() as u64,
            "table {name} is {shape}"
        );
        Self {
            buf: Arc::new(PooledBuffer::new(
                buffer,
                Kind::Storage,
                0,
                std::sync::Weak::new(),
            )),
            offset: 0,
            shape,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            requires_grad: false,
            gpu: gpu.clone(),
        }
    }

    /// Upload host data.
    pub fn from_vec(gpu: &Gpu, shape: impl Into<Shape>, data: &[f32]) -> Result<Self> {
        let shape = shape.into();
        if data.len() != shape.numel() {
            return Err(Error::DataLength {
                op: "upload",
                len: data.len(),
                expected: shape.numel(),
                shape,
            });
        }
        // Every element is written: nothing to poison.
        let t = Self::allocate(gpu, shape, "upload")?;
        t.write(data)?;
        Ok(t)
    }

    /// Overwrite the data with host values, in place (not recorded).
    pub fn write(&self, data: &[f32]) -> Result<()> {
        if data.len() != self.numel() {
            return Err(Error::DataLength {
                op: "upload",
                len: data.len(),
                expected: self.numel(),
                shape: self.shape.clone(),
            });
        }
        // The buffer may still be read by recorded kernels; a queue write would land
        // before them, so submit those first.
        self.gpu.flush_then(|q| {
            q.write_buffer(self.buf.raw(), self.offset, bytemuck::cast_slice(data));
        });
        Ok(())
    }

    /// A tensor filled with one value.
    pub fn full(gpu: &Gpu, shape: impl Into<Shape>, value: f32) -> Result<Self> {
        // Every element is written: nothing to poison.
        let t = Self::allocate(gpu, shape.into(), "full")?;
        t.fill(value);
        Ok(t)
    }

    /// Zeros.
    pub fn zeros(gpu: &Gpu, shape: impl Into<Shape>) -> Result<Self> {
        Self::cleared(gpu, shape, "zeros")
    }

    /// Read the data back to the host (submits pending work and waits for it).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        let gpu = &self.gpu;
        let bytes = self.bytes();
        let class = size_class(bytes);
        let staging = PooledBuffer::new(
            gpu.inner
                .pool
                .lock()
                .expect("pool lock")
                .take(&gpu.inner.device, Kind::Staging, class),
            Kind::Staging,
            class,
            Arc::downgrade(&gpu.inner),
        );
        gpu.with_encoder(|enc| {
            enc.copy_buffer_to_buffer(self.buf.raw(), self.offset, staging.raw(), 0, bytes);
        });
        gpu.submit_and_read(staging.raw(), bytes)
    }

    /// Read back a one-element tensor.
    pub fn to_scalar(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::BadShape {
                op: "to_scalar",
                shape: self.shape.clone(),
                expected: "one element".into(),
            });
        }
        Ok(self.to_vec()?[0])
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }
    pub fn bytes(&self) -> u64 {
        4 * self.numel() as u64
    }
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }
    /// A process-unique identity (the autodiff tape keys gradients by it).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Mark this tensor as a parameter: a leaf whose gradient `backward` keeps.
    pub fn requires_grad(mut self) -> Self {
        self.requires_grad = true;
        self
    }
    pub fn is_param(&self) -> bool {
        self.requires_grad
    }

    /// The same data under another shape with the same number of elements.
    /// (A view for the engine; autodiff treats it as the same tensor only through ops,
    /// so callers reshape before recording, e.g. when building parameters.)
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        if shape.numel() != self.numel() {
            return Err(Error::Shape {
                op: "reshape",
                lhs: self.shape.clone(),
                rhs: shape,
            });
        }
        Ok(Self {
            buf: self.buf.clone(),
            offset: self.offset,
            shape,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            requires_grad: false,
            gpu: self.gpu.clone(),
        })
    }

    /// The elements `start..start + shape.numel()` of this tensor as a tensor of their
    /// own that shares its buffer (writes through one are seen through the other). `start`
    /// must be a multiple of [`VIEW_ALIGN`] / 4 elements: where a slice may be bound.
    ///
    /// Kernels check their operands per buffer, not per range: a kernel may not write one
    /// slice of a buffer while reading another.
    pub(crate) fn slice(&self, start: usize, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        let end = start.checked_add(shape.numel());
        let offset = self.offset + 4 * start as u64;
        if end.is_none_or(|e| e > self.numel()) || !offset.is_multiple_of(VIEW_ALIGN) {
            return Err(Error::BadShape {
                op: "slice",
                shape,
                expected: format!(
                    "a slice within {} elements starting at a multiple of {}, not at {start}",
                    self.numel(),
                    VIEW_ALIGN / 4
                ),
            });
        }
        Ok(Self {
            buf: self.buf.clone(),
            offset,
            shape,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            requires_grad: false,
            gpu: self.gpu.clone(),
        })
    }

    /// Whether `self` and `other` are (parts of) one buffer.
    pub(crate) fn shares_buffer(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.buf, &other.buf)
    }

    /// Copy `src`'s data over this tensor's (same number of elements), recorded in order
    /// with the kernels (not on the tape).
    pub(crate) fn copy_from(&self, src: &Tensor) -> Result<()> {
        if src.numel() != self.numel() {
            return Err(Error::Shape {
                op: "copy",
                lhs: self.shape.clone(),
                rhs: src.shape.clone(),
            });
        }
        self.gpu.with_encoder(|enc| {
            enc.copy_buffer_to_buffer(
                src.buf.raw(),
                src.offset,
                self.buf.raw(),
                self.offset,
                self.bytes(),
            );
        });
        Ok(())
    }

    /// Set every element to +0.0, in place (not recorded): a transfer command, no kernel.
    pub(crate) fn clear(&self) {
        self.gpu.with_encoder(|enc| {
            enc.clear_buffer(self.buf.raw(), self.offset, Some(self.bytes()));
        });
    }

    /// Fill the elements with `value`, in place (not recorded).
    pub(crate) fn fill(&self, value: f32) {
        let p = EwParams {
            s: value,
            ..EwParams::default()
        };
        launch_elementwise("fill", None, None, self, self.numel(), p);
    }

    /// self + other (same shapes) without recording: the tape's gradient accumulation.
    pub(crate) fn add_unrecorded(&self, other: &Tensor) -> Result<Tensor> {
        if self.shape != other.shape {
            return Err(Error::Shape {
                op: "add",
                lhs: self.shape.clone(),
                rhs: other.shape.clone(),
            });
        }
        let out = Self::uninit(&self.gpu, self.shape.clone(), "add")?;
        let n = out.numel();
        launch_elementwise("add", Some(self), Some(other), &out, n, EwParams::default());
        Ok(out)
    }

    /// The sum of `terms` (one shape), unrecorded, added left to right as a chain of
    /// [`Tensor::add_unrecorded`] would: up to [`ADD_MANY_MAX`] in one pass (`add_many4`)
    /// where the elements are whole vec4s, else a chain of adds.
    pub(crate) fn sum_unrecorded(terms: &[Tensor]) -> Result<Tensor> {
        let Some((first, rest)) = terms.split_first() else {
            panic!("a sum of no tensors");
        };
        if rest.is_empty() {
            return Ok(first.clone());
        }
        for t in rest {
            if t.shape != first.shape {
                return Err(Error::Shape {
                    op: "add",
                    lhs: first.shape.clone(),
                    rhs: t.shape.clone(),
                });
            }
        }
        let n = first.numel();
        if !n.is_multiple_of(4) {
            return rest
                .iter()
                .try_fold(first.clone(), |acc, t| acc.add_unrecorded(t));
        }
        // The running sum and as many of the next terms as fit in one pass, until none is
        // left; one term left is one add.
        let mut acc = first.clone();
        let mut rest = rest;
        while !rest.is_empty() {
            let take = rest.len().min(ADD_MANY_MAX - 1);
            acc = if take == 1 {
                acc.add_unrecorded(&rest[0])?
            } else {
                let out = Self::uninit(&first.gpu, first.shape.clone(), "add")?;
                let (kernel, per) = vec4_kernel(&first.gpu, "add_many4");
                let kernel = kernel.with("TERMS", u32::try_from(take + 1).expect("at most 7"));
                // Every input slot is bound (the layout has them all); the ones past TERMS
                // hold the running sum again and are never read.
                let group: Vec<&Tensor> = std::iter::once(&acc).chain(&rest[..take]).collect();
                let mut bindings: Vec<Binding<'_>> = Vec::with_capacity(ADD_MANY_MAX + 1);
                for (i, slot) in [0, 1, 3, 4, 5, 6, 7].into_iter().enumerate() {
                    bindings.push(group.get(i).unwrap_or(&group[0]).bind(slot));
                }
                bindings.push(out.bind(2));
                let params = EwParams {
                    n: u32::try_from(n / 4).expect("tensors are bounded by the binding limit"),
                    ..EwParams::default()
                };
                crate::runtime::launch_1d(
                    &first.gpu,
                    &kernel,
                    &bindings,
                    &params,
                    (n / 4).div_ceil(per),
                );
                out
            };
            rest = &rest[take..];
        }
        Ok(acc)
    }

    /// This tensor bound at `@binding(slot)`.
    pub(crate) fn bind(&self, slot: u32) -> Binding<'_> {
        Binding {
            slot,
            buffer: self.buf.raw(),
            offset: self.offset,
            bytes: self.bytes(),
        }
    }
}

crate::runtime::kernel_params! {
    /// The parameter block of the element-wise kernels (`shaders/elementwise.wgsl`).
    pub(crate) struct EwParams for Elementwise {
        /// Elements to write (set by [`launch_elementwise`]).
        n: u32,
        /// Channels C of the (outer, C, inner) view.
        c: u32,
        /// H·W.
        inner: u32,
        /// Per-kernel extras (the channel offsets and totals of `copy_channels`).
        x0: u32,
        x1: u32,
        x2: u32,
        x3: u32,
        /// The scalar operand (fill value, scale factor).
        s: f32,
    }
}

/// vec4s per invocation of the vec4 twins (`V4` in `shaders/elementwise.wgsl`).
const V4_PER: usize = 4;
/// The most tensors `add_many4` adds in one pass (7 inputs and the output: the 8 storage
/// buffers every adapter offers a shader stage).
pub(crate) const ADD_MANY_MAX: usize = 7;

/// The entry point that computes `entry` over whole vec4s, if it has one.
fn vec4_twin(entry: &str) -> Option<&'static str> {
    Some(match entry {
        "fill" => "fill4",
        "add" => "add4",
        "mul" => "mul4",
        "scale" => "scale4",
        "relu" => "relu4",
        "relu_backward" => "relu_backward4",
        _ => return None,
    })
}

/// Launch the element-wise entry point `entry` with one invocation per element of the
/// `n` it writes into `out` (per vec4 when `n` is a multiple of 4 and the entry has a
/// vec4 twin), reading `a` (slot 0) and `b` (slot 1).
/// A map over whole vec4s and the vec4s each invocation takes: V4_PER (see the shader),
/// or one with few pipelines: the loop unrolled four times took LLVM on lavapipe 0.14 s to
/// compile (`add4`), and a small model's vec4s are few.
fn vec4_kernel(gpu: &Gpu, entry: &'static str) -> (Kernel, usize) {
    let kernel = Kernel::new(Shader::Elementwise, entry);
    if gpu.few_pipelines() {
        (kernel.with("V4", 1), 1)
    } else {
        (kernel, V4_PER)
    }
}

pub(crate) fn launch_elementwise(
    entry: &'static str,
    a: Option<&Tensor>,
    b: Option<&Tensor>,
    out: &Tensor,
    n: usize,
    params: EwParams,
) {
    // The simple maps have a twin over whole vec4s (`vec4_kernel`).
    let (kernel, n, invocations) = match vec4_twin(entry) {
        Some(twin) if n.is_multiple_of(4) => {
            let (kernel, per) = vec4_kernel(out.gpu(), twin);
            (kernel, n / 4, (n / 4).div_ceil(per))
        }
        _ => (Kernel::new(Shader::Elementwise, entry), n, n),
    };
    let params = EwParams {
        n: u32::try_from(n).expect("tensors are bounded by the binding limit"),
        ..params
    };
    let mut bindings = Vec::with_capacity(3);
    bindings.extend(a.map(|a| a.bind(0)));
    bindings.extend(b.map(|b| b.bind(1)));
    bindings.push(out.bind(2));
    crate::runtime::launch_1d(out.gpu(), &kernel, &bindings, &params, invocations);
}
