//! Layers that own parameters: SepConv, Conv, BN, the hybrid poolings, Gating, CSA, RIC
//! and the plain block. Each layer declares its parameters under a readable name when it
//! is built (see [`params`]); the model (`crate::model`) composes them. Their forwards are
//! written once over the primitives of a [`Backend`].

pub mod backend;
pub mod layers;
pub mod params;

pub use backend::{Backend, Folds, GpuBackend, Mode};
pub use layers::{Bn, Conv, Csa, Gating, HybridPool, Plain, Ric, SepConv};
pub use params::{FlatGroup, ParamId, ParamInfo, ParamKind, ParamSpec, Params};
