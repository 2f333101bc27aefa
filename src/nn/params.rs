//! Parameters: every layer declares its tensors by name, shape and kind into a
//! [`ParamSpec`] while the network is built (no GPU needed, so counts and summaries are
//! exact before anything is allocated); [`ParamSpec::init`] then makes the tensors on a
//! device with the seeded Glorot-uniform initialisation of MODEL.md.

use crate::data::rng::Rng;

use crate::error::Result;
use crate::runtime::Gpu;
use crate::tensor::Tensor;

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

    /// Make the tensors on `gpu`: trainable ones are marked as parameters of the tape.
    pub fn init(&self, gpu: &Gpu, seed: u64) -> Result<Params> {
        let values = self.init_values(seed);
        self.load(gpu, &values)
    }

    /// Make the tensors from given values (a checkpoint), in declaration order.
    pub fn load(&self, gpu: &Gpu, values: &[Vec<f32>]) -> Result<Params> {
        let tensors = self
            .params
            .iter()
            .zip(values)
            .map(|(p, v)| {
                let t = Tensor::from_vec(gpu, p.shape.as_slice(), v)?;
                Ok(if p.kind.trainable() {
                    t.requires_grad()
                } else {
                    t
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Params {
            spec: self.clone(),
            tensors,
        })
    }
}

/// The tensors of a network, indexed by [`ParamId`].
pub struct Params {
    spec: ParamSpec,
    tensors: Vec<Tensor>,
}

impl Params {
    pub fn spec(&self) -> &ParamSpec {
        &self.spec
    }

    pub fn get(&self, id: ParamId) -> &Tensor {
        &self.tensors[id.0]
    }

    /// Replace a tensor (e.g. a BN running statistic after a training step).
    pub fn set(&mut self, id: ParamId, t: Tensor) {
        debug_assert_eq!(t.dims(), self.spec.get(id).shape.as_slice());
        self.tensors[id.0] = t;
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
