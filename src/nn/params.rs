//! Parameters: every layer declares its tensors by name, shape and kind into a
//! [`ParamSpec`] while the network is built (no GPU needed, so counts and summaries are
//! exact before anything is allocated); [`ParamSpec::init`] then makes the tensors on a
//! device with the seeded Glorot-uniform initialisation of MODEL.md.
//!
//! On the device the trainable tensors are slices of one flat buffer ([`FlatGroup`]; a
//! few where one would pass the adapter's binding limit), so that Adam updates all of
//! them in one launch. BN running statistics, which the forward pass replaces, are
//! tensors of their own.

use crate::data::rng::Rng;

use crate::error::Result;
use crate::runtime::Gpu;
use crate::tensor::{Tensor, VIEW_ALIGN};

/// What a parameter is for: trained by the optimizer, or a batch-norm running statistic
/// (part of the model, saved in checkpoints, but not trained).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// A convolution kernel: Glorot-uniform with the given fans.
    Kernel { fan_in: usize, fan_out: usize },
    /// A bias or BN β: zeros.
    Zeros,
    /// BN γ: ones.
    Ones,
    /// BN running mean: zeros, not trained.
    RunningMean,
    /// BN running variance: ones, not trained.
    RunningVar,
}

impl ParamKind {
    pub fn trainable(self) -> bool {
        !matches!(self, ParamKind::RunningMean | ParamKind::RunningVar)
    }
}

/// Index of a parameter in its [`ParamSpec`] / [`Params`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParamId(pub usize);

/// One declared parameter.
#[derive(Clone, Debug)]
pub struct ParamInfo {
    /// Stable, readable name, e.g. `enc2.ric.l1.sep5.depthwise.weight`.
    pub name: String,
    pub shape: Vec<usize>,
    pub kind: ParamKind,
}

impl ParamInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The parameters a network declares, in declaration order.
#[derive(Clone, Debug, Default)]
pub struct ParamSpec {
    params: Vec<ParamInfo>,
}

impl ParamSpec {
    /// Declare a parameter; names must be unique.
    pub fn add(&mut self, name: String, shape: &[usize], kind: ParamKind) -> ParamId {
        debug_assert!(
            self.params.iter().all(|p| p.name != name),
            "duplicate parameter name {name}"
        );
        self.params.push(ParamInfo {
            name,
            shape: shape.to_vec(),
            kind,
        });
        ParamId(self.params.len() - 1)
    }

    pub fn params(&self) -> &[ParamInfo] {
        &self.params
    }

    pub fn get(&self, id: ParamId) -> &ParamInfo {
        &self.params[id.0]
    }

    /// Trainable values (what Keras calls trainable params).
    pub fn trainable_count(&self) -> usize {
        self.params
            .iter()
            .filter(|p| p.kind.trainable())
            .map(ParamInfo::numel)
            .sum()
    }

    /// Non-trainable values (BN running statistics).
    pub fn non_trainable_count(&self) -> usize {
        self.params
            .iter()
            .filter(|p| !p.kind.trainable())
            .map(ParamInfo::numel)
            .sum()
    }

    /// The initial values of every parameter, seeded (host side, in declaration order).
    ///
    /// Each kernel draws from its own stream of the project's generator
    /// (`crate::data::rng::Rng`, xoshiro256**), keyed by (seed, its index): the same on
    /// every machine and with every version of every crate (`rand`'s `StdRng` promises
    /// neither), and one layer's values do not depend on how many come before it.
    pub fn init_values(&self, seed: u64) -> Vec<Vec<f32>> {
        self.params
            .iter()
            .enumerate()
            .map(|(i, p)| match p.kind {
                ParamKind::Kernel { fan_in, fan_out } => {
                    let mut rng = Rng::from_parts(&[seed, i as u64]);
                    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
                    (0..p.numel()).map(|_| rng.uniform(-limit, limit)).collect()
                }
                ParamKind::Zeros | ParamKind::RunningMean => vec![0.0; p.numel()],
                ParamKind::Ones | ParamKind::RunningVar => vec![1.0; p.numel()],
            })
            .collect()
    }

    /// The lengths (elements, with the alignment gaps) of the flat buffers that hold the
    /// trainable tensors on a device that binds at most `limit_bytes` per buffer.
    pub fn flat_lengths(&self, limit_bytes: u64) -> Vec<usize> {
        flat_layout(&self.params, (limit_bytes / 4) as usize)
            .iter()
            .map(|g| g.len)
            .collect()
    }

    /// Make the tensors on `gpu`: trainable ones are marked as parameters of the tape.
    pub fn init(&self, gpu: &Gpu, seed: u64) -> Result<Params> {
        let values = self.init_values(seed);
        self.load(gpu, &values)
    }

    /// Make the tensors from given values (a checkpoint), in declaration order.
    pub fn load(&self, gpu: &Gpu, values: &[Vec<f32>]) -> Result<Params> {
        if values.len() != self.params.len() {
            return Err(crate::error::Error::DataLength {
                op: "load parameters",
                len: values.len(),
                expected: self.params.len(),
                shape: [self.params.len()].into(),
            });
        }
        for (p, v) in self.params.iter().zip(values) {
            if v.len() != p.numel() {
                return Err(crate::error::Error::DataLength {
                    op: "upload",
                    len: v.len(),
                    expected: p.numel(),
                    shape: p.shape.as_slice().into(),
                });
            }
        }
        let info = gpu.info();
        let limit = (info.max_storage_binding.min(info.max_buffer_size) / 4) as usize;
        let mut tensors: Vec<Option<Tensor>> = vec![None; self.params.len()];
        let mut groups = Vec::new();
        for layout in flat_layout(&self.params, limit) {
            let mut host = vec![0.0f32; layout.len];
            for &(id, start) in &layout.members {
                host[start..start + self.params[id.0].numel()].copy_from_slice(&values[id.0]);
            }
            let flat = Tensor::from_vec(gpu, [layout.len], &host)?;
            for &(id, start) in &layout.members {
                let t = flat.slice(start, self.params[id.0].shape.as_slice())?;
                tensors[id.0] = Some(t.requires_grad());
            }
            groups.push(FlatGroup {
                tensor: flat,
                members: layout.members,
            });
        }
        let tensors = self
            .params
            .iter()
            .zip(values)
            .zip(tensors)
            .map(|((p, v), t)| match t {
                Some(t) => Ok(t),
                None => Tensor::from_vec(gpu, p.shape.as_slice(), v),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Params {
            spec: self.clone(),
            tensors,
            groups,
        })
    }
}

/// Trainable parameters packed into one buffer: each is the slice of `tensor` that starts
/// at its element offset (a multiple of `VIEW_ALIGN` / 4; the gaps hold zeros).
pub struct FlatGroup {
    /// The whole buffer, (len).
    pub tensor: Tensor,
    /// (parameter, first element), in declaration order.
    pub members: Vec<(ParamId, usize)>,
}

/// Where each trainable parameter goes: in declaration order, each at the next aligned
/// offset, a new group whenever the next one would pass `limit` elements. Each takes whole
/// vec4s (its last one padded with zeros), so that Adam updates a run of them as vec4s.
struct Layout {
    len: usize,
    members: Vec<(ParamId, usize)>,
}

fn flat_layout(params: &[ParamInfo], limit: usize) -> Vec<Layout> {
    let align = (VIEW_ALIGN / 4) as usize;
    let mut groups: Vec<Layout> = Vec::new();
    for (i, p) in params.iter().enumerate() {
        if !p.kind.trainable() {
            continue;
        }
        let start = groups.last().map_or(0, |g| g.len.next_multiple_of(align));
        let quads = p.numel().next_multiple_of(4);
        let fits = groups.last().is_some_and(|_| start + quads <= limit);
        if fits {
            let g = groups.last_mut().expect("checked");
            g.members.push((ParamId(i), start));
            g.len = start + quads;
        } else {
            groups.push(Layout {
                len: quads,
                members: vec![(ParamId(i), 0)],
            });
        }
    }
    groups
}

/// The tensors of a network, indexed by [`ParamId`].
pub struct Params {
    spec: ParamSpec,
    tensors: Vec<Tensor>,
    groups: Vec<FlatGroup>,
}

impl Params {
    pub fn spec(&self) -> &ParamSpec {
        &self.spec
    }

    pub fn get(&self, id: ParamId) -> &Tensor {
        &self.tensors[id.0]
    }

    /// Replace a BN running statistic (after a training step). Trainable tensors are
    /// slices of their [`FlatGroup`] and are only ever updated in place.
    pub fn set(&mut self, id: ParamId, t: Tensor) {
        debug_assert_eq!(t.dims(), self.spec.get(id).shape.as_slice());
        assert!(
            !self.spec.get(id).kind.trainable(),
            "{}: a trainable parameter is updated in place, not replaced",
            self.spec.get(id).name
        );
        self.tensors[id.0] = t;
    }

    /// The flat buffers that hold the trainable tensors.
    pub fn groups(&self) -> &[FlatGroup] {
        &self.groups
    }

    /// (info, tensor) pairs in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (&ParamInfo, &Tensor)> {
        self.spec.params.iter().zip(&self.tensors)
    }

    /// Read every tensor back to the host, in declaration order.
    pub fn to_host(&self) -> Result<Vec<Vec<f32>>> {
        self.tensors.iter().map(Tensor::to_vec).collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Model, ModelConfig, Variant};

    use super::ParamKind;

    #[test]
    fn initial_kernels_are_glorot_uniform_and_per_layer_streams() {
        let m = Model::new(ModelConfig::new(Variant::RcaIunet, 4, 32).unwrap());
        let values = m.spec.init_values(42);
        assert_eq!(
            values,
            m.spec.init_values(42),
            "the same seed, the same weights"
        );
        assert_ne!(values, m.spec.init_values(43));
        let kernels: Vec<usize> = m
            .spec
            .params()
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p.kind, ParamKind::Kernel { .. }))
            .map(|(i, _)| i)
            .collect();
        for &i in &kernels {
            let ParamKind::Kernel { fan_in, fan_out } = m.spec.params()[i].kind else {
                unreachable!()
            };
            let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
            assert!(values[i].iter().all(|v| v.abs() <= limit));
        }
        // Two kernels of the same shape draw different values (their own streams).
        let (a, b) = (kernels[0], kernels[1]);
        assert_ne!(values[a][..4], values[b][..4]);
    }

    #[test]
    fn the_initial_weights_of_a_seed_are_pinned() {
        // The stream of the project's own generator for (seed 42, parameter 0): if this
        // changes, every published run stops being reproducible from its seed, so it must
        // not change silently.
        let m = Model::new(ModelConfig::new(Variant::RcaIunet, 16, 256).unwrap());
        let first = &m.spec.init_values(42)[0];
        let got: Vec<String> = first[..3].iter().map(|v| format!("{v:.6}")).collect();
        assert_eq!(got, PINNED);
    }

    const PINNED: [&str; 3] = ["-0.262433", "0.016562", "-0.034112"];
}
