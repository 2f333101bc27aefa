//! The counting backend: the network run on shapes alone (no GPU), which gives
//! `model.summary()` as Keras prints it (one row per block with its output shape, its
//! parameters and its forward FLOPs, then the totals), the memory traffic of a forward, and
//! the largest buffer a training step allocates (what decides the largest batch an adapter
//! can bind).
//!
//! FLOPs count a multiply-add as 2, a complex 2-D FFT of n points as 5·n·log2(n), and one
//! per element for element-wise work (batch norm 4, sigmoid 4, a 2×2 max 3 compares).

use crate::error::Result;
use crate::nn::{Backend, Bn, Conv, ParamId, ParamSpec, SepConv};
use crate::ops;

use super::Model;

/// One row of the summary.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: String,
    /// (C, H, W) of the block's output, batch omitted.
    pub shape: [usize; 3],
    pub params: usize,
    pub flops: f64,
    /// Bytes the block's ops read and write (every input and output once).
    pub bytes: f64,
}

/// A value of the counting backend: its (N, C, H, W).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta(pub [usize; 4]);

impl Meta {
    fn numel(self) -> usize {
        self.0.iter().product()
    }
}

/// The counting backend (see the module doc). Its values are [`Meta`]s; every op adds its
/// FLOPs and bytes to the current block's row and its buffers to the largest so far.
pub struct Count<'a> {
    spec: &'a ParamSpec,
    /// One row per block entered, in data-flow order.
    pub rows: Vec<Row>,
    /// The largest single buffer, in bytes, that a training step on this input allocates:
    /// every op's output (a gradient has the shape of its value, so the backward allocates
    /// nothing larger), the scratch buffers the op's forward or backward makes inside
    /// (`ops::conv::Dense::scratch_floats`, `ops::conv::depthwise_scratch_floats`,
    /// `ops::spectral::scratch_floats`), and each parameter (whose gradient has its
    /// shape). Small per-workgroup partial sums are not counted, nor are the flat buffers
    /// that hold all trainable parameters, their moments and a copy of their gradients
    /// (`nn::FlatGroup`): those are split wherever one would pass the binding limit, so
    /// they never decide a batch. `tests/` holds the figure to what a real step allocates.
    pub largest_buffer: u64,
}

impl<'a> Count<'a> {
    pub fn new(spec: &'a ParamSpec) -> Self {
        let largest_param = spec.params().iter().map(|p| p.numel()).max().unwrap_or(0);
        Self {
            spec,
            rows: Vec::new(),
            largest_buffer: 4 * largest_param as u64,
        }
    }

    /// Account for one op: its output, the floats it reads, its FLOPs and its largest
    /// internal buffer (floats).
    fn op(&mut self, out: [usize; 4], read: usize, flops: f64, scratch: usize) -> Meta {
        let out = Meta(out);
        self.largest_buffer = self
            .largest_buffer
            .max(4 * out.numel() as u64)
            .max(4 * scratch as u64);
        if self.rows.is_empty() {
            self.enter("input");
        }
        let row = self.rows.last_mut().expect("a row was entered");
        row.flops += flops;
        row.bytes += 4.0 * (read + out.numel()) as f64;
        let [_, c, h, w] = out.0;
        row.shape = [c, h, w];
        out
    }

    /// One FLOP count per output element (`per` of them) for element-wise work.
    fn elementwise(&mut self, xs: &[Meta], per: usize) -> Meta {
        let out = xs[0].0;
        let read = xs.iter().map(|x| x.numel()).sum();
        self.op(out, read, (per * Meta(out).numel()) as f64, 0)
    }
}

/// The shape of the channel concatenation of `xs`, without counting one.
fn concat_meta(xs: &[&Meta]) -> Meta {
    let [n, _, h, w] = xs[0].0;
    Meta([n, xs.iter().map(|x| x.0[1]).sum(), h, w])
}

fn fft_flops(n: usize) -> f64 {
    5.0 * n as f64 * (n as f64).log2()
}

impl Backend for Count<'_> {
    type T = Meta;

    fn param(&mut self, id: ParamId) -> Result<Meta> {
        let shape = &self.spec.get(id).shape;
        let mut dims = [1; 4];
        dims[..shape.len()].copy_from_slice(shape);
        Ok(Meta(dims))
    }

    fn dims(&self, x: &Meta) -> [usize; 4] {
        x.0
    }

    fn depthwise(&mut self, x: &Meta, k: &Meta) -> Result<Meta> {
        let kk = k.0[2] * k.0[3];
        let flops = 2 * kk * x.numel();
        let [n, c, h, w] = x.0;
        let scratch = ops::conv::depthwise_scratch_floats(n, c, h, w, k.0[2]);
        Ok(self.op(x.0, x.numel() + k.numel(), flops as f64, scratch))
    }

    fn conv1x1(&mut self, x: &Meta, w: &Meta, b: &Meta) -> Result<Meta> {
        let [n, cin, h, wd] = x.0;
        let cout = w.0[0];
        let p = n * h * wd;
        let flops = 2 * cin * cout * p + cout * p;
        let read = x.numel() + w.numel() + b.numel();
        Ok(self.op([n, cout, h, wd], read, flops as f64, 0))
    }

    fn conv2d(&mut self, x: &Meta, w: &Meta, b: &Meta, stride: usize, pad: usize) -> Result<Meta> {
        let [n, cin, _, _] = x.0;
        let [cout, _, kh, kw] = w.0;
        let d = ops::conv::Dense::new(x.0, [cout, kh, kw], stride, pad);
        let flops = (2 * kh * kw * cin + 1) * cout * n * d.ho * d.wo;
        let read = x.numel() + w.numel() + b.numel();
        Ok(self.op(
            [n, cout, d.ho, d.wo],
            read,
            flops as f64,
            d.scratch_floats(),
        ))
    }

    fn batch_norm(&mut self, x: &Meta, _: &Bn) -> Result<Meta> {
        Ok(self.elementwise(&[*x], 4))
    }

    fn relu(&mut self, x: &Meta) -> Result<Meta> {
        Ok(self.elementwise(&[*x], 1))
    }

    fn sigmoid(&mut self, x: &Meta) -> Result<Meta> {
        Ok(self.elementwise(&[*x], 4))
    }

    fn add(&mut self, a: &Meta, b: &Meta) -> Result<Meta> {
        Ok(self.elementwise(&[*a, *b], 1))
    }

    fn mul_bcast(&mut self, a: &Meta, b: &Meta) -> Result<Meta> {
        Ok(self.elementwise(&[*a, *b], 1))
    }

    fn concat(&mut self, xs: &[&Meta]) -> Result<Meta> {
        let [n, _, h, w] = xs[0].0;
        let c = xs.iter().map(|x| x.0[1]).sum();
        let read = xs.iter().map(|x| x.numel()).sum();
        Ok(self.op([n, c, h, w], read, 0.0, 0))
    }

    fn max_pool_valid(&mut self, x: &Meta) -> Result<Meta> {
        let [n, c, h, w] = x.0;
        let out = [n, c, h / 2, w / 2];
        Ok(self.op(out, x.numel(), (3 * Meta(out).numel()) as f64, 0))
    }

    fn max_pool_same(&mut self, x: &Meta) -> Result<Meta> {
        Ok(self.op(x.0, x.numel(), (3 * x.numel()) as f64, 0))
    }

    fn upsample2x(&mut self, x: &Meta) -> Result<Meta> {
        let [n, c, h, w] = x.0;
        Ok(self.op([n, c, 2 * h, 2 * w], x.numel(), 0.0, 0))
    }

    fn spectral_pool(&mut self, x: &Meta, h: usize) -> Result<Meta> {
        let [n, c, m, _] = x.0;
        let planes = (n * c) as f64;
        let flops = planes * (fft_flops(m * m) + fft_flops(h * h));
        let scratch = ops::spectral::scratch_floats(n, c, m, h);
        Ok(self.op([n, c, h, h], x.numel(), flops, scratch))
    }

    /// The composition's FLOPs, without the concatenation's buffer or copy: with a 1×1
    /// kernel the GPU adds one product per input into the output (`ops::conv1x1_cat`).
    fn conv_cat(&mut self, l: &Conv, xs: &[&Meta]) -> Result<Meta> {
        let (w, b) = (self.param(l.weight)?, self.param(l.bias)?);
        if w.0[2..] != [1, 1] {
            let cat = self.concat(xs)?;
            return self.conv2d(&cat, &w, &b, 1, 0);
        }
        self.conv1x1(&concat_meta(xs), &w, &b)
    }

    /// The composition's FLOPs (the 1×1 depthwise scale included), without the buffers
    /// of the concatenation and of its scaled copy: the GPU folds the scale into the
    /// weights and adds one product per input into the output.
    fn sep_conv_cat(&mut self, l: &SepConv, xs: &[&Meta]) -> Result<Meta> {
        let k = self.param(l.depthwise)?;
        if k.0[2..] != [1, 1] {
            let cat = self.concat(xs)?;
            return self.sep_conv(l, &cat);
        }
        let cat = concat_meta(xs);
        let (w, b) = (self.param(l.pointwise)?, self.param(l.bias)?);
        let y = self.conv1x1(&cat, &w, &b)?;
        let row = self.rows.last_mut().expect("conv1x1 entered a row");
        row.flops += (2 * cat.numel()) as f64;
        row.bytes += 4.0 * k.numel() as f64;
        Ok(y)
    }

    fn enter(&mut self, name: &str) {
        self.rows.push(Row {
            name: name.to_string(),
            shape: [0; 3],
            params: 0,
            flops: 0.0,
            bytes: 0.0,
        });
    }
}

impl Model {
    /// The network counted on a batch of `batch` inputs (no GPU).
    pub fn count(&self, batch: usize) -> Count<'_> {
        let s = self.config.size;
        let mut count = Count::new(&self.spec);
        self.run(&mut count, &Meta([batch, 1, s, s]))
            .expect("counting does not fail");
        count
    }

    /// The summary rows at batch 1, in data-flow order; parameters are attributed to rows
    /// by name, so every parameter is counted exactly once.
    pub fn summary(&self) -> Vec<Row> {
        let mut rows = self.count(1).rows;
        // Attribute parameters by name prefix: `dec0.csa.*` to dec0.csa, `dec0.ric.*` to dec0.
        for p in self.spec.params() {
            let row = rows
                .iter_mut()
                .filter(|r| p.name.starts_with(&format!("{}.", r.name)))
                .max_by_key(|r| r.name.len())
                .expect("every parameter belongs to a row");
            row.params += p.numel();
        }
        rows
    }

    /// Forward FLOPs at batch 1.
    pub fn forward_flops(&self) -> f64 {
        self.summary().iter().map(|r| r.flops).sum()
    }

    /// The largest single buffer, in bytes, that a training step on a batch of `batch`
    /// allocates (see [`Count::largest_buffer`]): a batch whose figure exceeds the
    /// adapter's storage-binding limit cannot run.
    pub fn largest_training_buffer(&self, batch: usize) -> u64 {
        self.count(batch).largest_buffer
    }

    /// The summary as a printable table.
    pub fn summary_table(&self) -> String {
        let rows = self.summary();
        let c = &self.config;
        let mut out = format!(
            "Model: {} (F = {}, input 1×{}×{})\n",
            c.variant, c.width, c.size, c.size
        );
        let line = "─".repeat(72);
        out += &format!(
            "{line}\n{:<14} {:>20} {:>14} {:>18}\n{line}\n",
            "block", "output shape", "params", "forward FLOPs"
        );
        for r in &rows {
            out += &format!(
                "{:<14} {:>20} {:>14} {:>18}\n",
                r.name,
                format!("({}, {}, {})", r.shape[0], r.shape[1], r.shape[2]),
                group(r.params as u64),
                group(r.flops.round() as u64)
            );
        }
        let trainable = self.spec.trainable_count();
        let fixed = self.spec.non_trainable_count();
        out += &format!("{line}\n");
        out += &format!("Total params: {}\n", group((trainable + fixed) as u64));
        out += &format!("Trainable params: {}\n", group(trainable as u64));
        out += &format!(
            "Non-trainable params: {} (BN running mean and variance)\n",
            group(fixed as u64)
        );
        out += &format!(
            "Forward FLOPs (batch 1): {} ({:.2} GFLOP)\n",
            group(self.forward_flops().round() as u64),
            self.forward_flops() / 1e9
        );
        out
    }
}

/// 1234567 → "1,234,567", as Keras prints counts.
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::model::{Model, ModelConfig, Variant};

    #[test]
    fn rows_account_for_every_parameter() {
        for v in Variant::ALL {
            let m = Model::new(ModelConfig::new(v, 16, 256).unwrap());
            let total: usize = m.summary().iter().map(|r| r.params).sum();
            assert_eq!(
                total,
                m.spec.trainable_count() + m.spec.non_trainable_count(),
                "{v}"
            );
        }
    }

    #[test]
    fn rca_iunet_forward_flops_are_those_of_the_layer_by_layer_count() {
        // 12,348,860,672: what the layer-by-layer FLOP formulas of the summary printed
        // before the network was written once over backends (ENGINE.md rounds it to 12.0).
        let m = Model::new(ModelConfig::new(Variant::RcaIunet, 16, 256).unwrap());
        assert_eq!(m.forward_flops(), 12_348_860_672.0);
    }

    #[test]
    fn table_prints_keras_style_totals() {
        let m = Model::new(ModelConfig::new(Variant::RcaIunet, 16, 256).unwrap());
        let t = m.summary_table();
        assert!(t.contains("Total params: 2,929,413"), "{t}");
        assert!(t.contains("Trainable params: 2,913,793"), "{t}");
        assert!(t.contains("Non-trainable params: 15,620"), "{t}");
    }

    #[test]
    fn the_largest_training_buffer_is_the_widest_full_size_map() {
        // The last decoder block's input, concat[Up(e1) (2F), skip (F)] at S×S: 3F floats
        // per pixel. The inception and hybrid-pool merges build no concatenation (their
        // 6F-channel inputs are never one buffer), so with RIC it is the same as without.
        for (v, per_pixel) in [(Variant::RcaIunet, 3), (Variant::Unet, 3)] {
            let m = Model::new(ModelConfig::new(v, 16, 256).unwrap());
            for n in [1, 8] {
                let want = per_pixel * 16 * 256 * 256 * n as u64 * 4;
                assert_eq!(m.largest_training_buffer(n), want, "{v} batch {n}");
            }
        }
    }
}
