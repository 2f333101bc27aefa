//! The building blocks of RCA-IUnet (MODEL.md, "Building blocks", "Residual inception
//! block", "Cross-spatial attention"). Constructors declare parameters; shapes are NCHW and
//! every constructor states its input and output channels. Each layer's `forward` is
//! written once, over any [`Backend`] (GPU, f64 reference, counting).

use super::backend::Backend;
use super::params::{ParamId, ParamKind, ParamSpec};
use crate::error::Result;

fn kernel(
    spec: &mut ParamSpec,
    name: String,
    shape: &[usize],
    fan_in: usize,
    fan_out: usize,
) -> ParamId {
    spec.add(name, shape, ParamKind::Kernel { fan_in, fan_out })
}

/// Depthwise k×k (no bias, 'same') then pointwise 1×1 with bias: cin → cout.
#[derive(Clone, Debug)]
pub struct SepConv {
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub depthwise: ParamId,
    pub pointwise: ParamId,
    pub bias: ParamId,
}

impl SepConv {
    pub fn new(spec: &mut ParamSpec, name: &str, cin: usize, cout: usize, k: usize) -> Self {
        // Keras' DepthwiseConv2D kernel is (k, k, cin, 1): fans k²·cin and k².
        let depthwise = kernel(
            spec,
            format!("{name}.depthwise.weight"),
            &[cin, 1, k, k],
            k * k * cin,
            k * k,
        );
        let pointwise = kernel(
            spec,
            format!("{name}.pointwise.weight"),
            &[cout, cin, 1, 1],
            cin,
            cout,
        );
        let bias = spec.add(format!("{name}.pointwise.bias"), &[cout], ParamKind::Zeros);
        Self {
            cin,
            cout,
            k,
            depthwise,
            pointwise,
            bias,
        }
    }
}

/// Dense k×k convolution with bias: cin → cout (stride and padding chosen at the call).
#[derive(Clone, Debug)]
pub struct Conv {
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub weight: ParamId,
    pub bias: ParamId,
}

impl Conv {
    pub fn new(spec: &mut ParamSpec, name: &str, cin: usize, cout: usize, k: usize) -> Self {
        let weight = kernel(
            spec,
            format!("{name}.weight"),
            &[cout, cin, k, k],
            k * k * cin,
            k * k * cout,
        );
        let bias = spec.add(format!("{name}.bias"), &[cout], ParamKind::Zeros);
        Self {
            cin,
            cout,
            k,
            weight,
            bias,
        }
    }
}

/// Batch norm over (N, H, W) per channel: γ, β and the running statistics.
#[derive(Clone, Debug)]
pub struct Bn {
    pub c: usize,
    pub gamma: ParamId,
    pub beta: ParamId,
    pub running_mean: ParamId,
    pub running_var: ParamId,
}

impl Bn {
    /// Keras' defaults as MODEL.md fixes them.
    pub const EPS: f32 = 1e-3;
    pub const MOMENTUM: f32 = 0.99;

    pub fn new(spec: &mut ParamSpec, name: &str, c: usize) -> Self {
        Self {
            c,
            gamma: spec.add(format!("{name}.gamma"), &[c], ParamKind::Ones),
            beta: spec.add(format!("{name}.beta"), &[c], ParamKind::Zeros),
            running_mean: spec.add(format!("{name}.running_mean"), &[c], ParamKind::RunningMean),
            running_var: spec.add(format!("{name}.running_var"), &[c], ParamKind::RunningVar),
        }
    }
}

/// HybridPool: concat[max pool, ReLU(spectral pool)] (2C) → Conv(2C, C, 1).
/// The 'valid' form halves the size (down-sampling); the 'same' form keeps it (a branch of
/// the inception block). Which one is decided at the call; the parameters are the same.
#[derive(Clone, Debug)]
pub struct HybridPool {
    pub c: usize,
    pub merge: Conv,
}

impl HybridPool {
    pub fn new(spec: &mut ParamSpec, name: &str, c: usize) -> Self {
        Self {
            c,
            merge: Conv::new(spec, &format!("{name}.merge"), 2 * c, c, 1),
        }
    }
}

/// Gating(cin, s): Conv(cin, s, 1) → BN → ReLU.
#[derive(Clone, Debug)]
pub struct Gating {
    pub conv: Conv,
    pub bn: Bn,
}

impl Gating {
    pub fn new(spec: &mut ParamSpec, name: &str, cin: usize, s: usize) -> Self {
        Self {
            conv: Conv::new(spec, &format!("{name}.conv"), cin, s, 1),
            bn: Bn::new(spec, &format!("{name}.bn"), s),
        }
    }
}

/// A SepConv followed by BN (then ReLU at the call): one inception branch.
#[derive(Clone, Debug)]
pub struct SepBn {
    pub sep: SepConv,
    pub bn: Bn,
}

impl SepBn {
    pub fn new(spec: &mut ParamSpec, name: &str, cin: usize, cout: usize, k: usize) -> Self {
        Self {
            sep: SepConv::new(spec, &format!("{name}.sep{k}"), cin, cout, k),
            bn: Bn::new(spec, &format!("{name}.bn{k}"), cout),
        }
    }
}

/// One inception layer of RIC: branches k = 3, 1, 5 (layer 1) or 1, 3, 5 (layer 2), each
/// SepConv → BN → ReLU, plus HybridPoolSame → BN → ReLU; concat; SepConv(…, s, 1).
#[derive(Clone, Debug)]
pub struct Inception {
    pub branches: Vec<SepBn>,
    pub pool: HybridPool,
    pub pool_bn: Bn,
    pub merge: SepConv,
}

impl HybridPool {
    /// [`HybridPool::forward`] at the same size, then batch norm and ReLU: the inception
    /// block's pool branch.
    pub fn forward_bn<B: Backend>(&self, b: &mut B, x: &B::T, bn: &Bn) -> Result<B::T> {
        let (pooled, spectral) = self.branches(b, x, false)?;
        b.conv_cat_bn(&self.merge, bn, &[&pooled, &spectral], true)
    }

    /// The max-pool branch and the ReLU of the spectral one.
    fn branches<B: Backend>(&self, b: &mut B, x: &B::T, valid: bool) -> Result<(B::T, B::T)> {
        let m = b.dims(x)[2];
        Ok(if valid {
            (b.max_pool_valid(x)?, b.spectral_pool_relu(x, m / 2)?)
        } else {
            (b.max_pool_same(x)?, b.spectral_pool_relu(x, m)?)
        })
    }
}

impl Inception {
    fn new(spec: &mut ParamSpec, name: &str, cin: usize, s: usize, ks: [usize; 3]) -> Self {
        let branches = ks
            .iter()
            .map(|&k| SepBn::new(spec, name, cin, s, k))
            .collect();
        let pool = HybridPool::new(spec, &format!("{name}.hp"), cin);
        let pool_bn = Bn::new(spec, &format!("{name}.bnhp"), cin);
        let merge = SepConv::new(spec, &format!("{name}.merge"), 3 * s + cin, s, 1);
        Self {
            branches,
            pool,
            pool_bn,
            merge,
        }
    }
}

/// Residual inception block RIC(cin → s): two inception layers plus a SepConv(1) → BN
/// shortcut, added (no activation after).
#[derive(Clone, Debug)]
pub struct Ric {
    pub cin: usize,
    pub s: usize,
    pub l1: Inception,
    pub l2: Inception,
    pub shortcut: SepConv,
    pub shortcut_bn: Bn,
}

impl Ric {
    pub fn new(spec: &mut ParamSpec, name: &str, cin: usize, s: usize) -> Self {
        // Layer 1 of MODEL.md lists its branches as 3×3, 1×1, 5×5; layer 2 as 1×1, 3×3, 5×5.
        let l1 = Inception::new(spec, &format!("{name}.l1"), cin, s, [3, 1, 5]);
        // Layer 2 runs on a (s channels), so its merge is SepConv(3s + s = 4s, s, 1).
        let l2 = Inception::new(spec, &format!("{name}.l2"), s, s, [1, 3, 5]);
        let shortcut = SepConv::new(spec, &format!("{name}.shortcut.sep1"), cin, s, 1);
        let shortcut_bn = Bn::new(spec, &format!("{name}.shortcut.bn"), s);
        Self {
            cin,
            s,
            l1,
            l2,
            shortcut,
            shortcut_bn,
        }
    }
}

/// The ablation's plain block: SepConv(3) → BN → ReLU → SepConv(3) → BN → ReLU, plus a
/// Conv(1) → BN shortcut, added.
#[derive(Clone, Debug)]
pub struct Plain {
    pub cin: usize,
    pub s: usize,
    pub a: SepBn,
    pub b: SepBn,
    pub shortcut: Conv,
    pub shortcut_bn: Bn,
}

impl Plain {
    pub fn new(spec: &mut ParamSpec, name: &str, cin: usize, s: usize) -> Self {
        Self {
            cin,
            s,
            a: SepBn::new(spec, &format!("{name}.a"), cin, s, 3),
            b: SepBn::new(spec, &format!("{name}.b"), s, s, 3),
            shortcut: Conv::new(spec, &format!("{name}.shortcut.conv"), cin, s, 1),
            shortcut_bn: Bn::new(spec, &format!("{name}.shortcut.bn"), s),
        }
    }
}

/// Cross-spatial attention at one decoder level of width s. Inputs: P (pooled map that
/// entered the encoder block, ch_p), E (encoder output, ch_e, resolution R), D (next
/// encoder output, ch_d, R/2).
#[derive(Clone, Debug)]
pub struct Csa {
    pub s: usize,
    pub gate_x: Gating,
    pub gate_y: Gating,
    pub gate_z: Gating,
    /// Conv(s, s, 2, stride 2) on gx and gy.
    pub theta_x: Conv,
    pub theta_y: Conv,
    /// Conv(s, s, 1) then Conv(s, s, 3, pad 1) on gz.
    pub phi_z1: Conv,
    pub phi_z3: Conv,
    /// Conv(s, 1, 1) → sigmoid: the attention map α.
    pub psi: Conv,
    /// Conv(s, s, 1) → BN → ReLU on α ⊙ gx.
    pub out: Conv,
    pub out_bn: Bn,
}

impl Csa {
    pub fn new(
        spec: &mut ParamSpec,
        name: &str,
        ch_p: usize,
        ch_e: usize,
        ch_d: usize,
        s: usize,
    ) -> Self {
        Self {
            s,
            gate_x: Gating::new(spec, &format!("{name}.gate_x"), ch_p, s),
            gate_y: Gating::new(spec, &format!("{name}.gate_y"), ch_e, s),
            gate_z: Gating::new(spec, &format!("{name}.gate_z"), ch_d, s),
            theta_x: Conv::new(spec, &format!("{name}.theta_x"), s, s, 2),
            theta_y: Conv::new(spec, &format!("{name}.theta_y"), s, s, 2),
            phi_z1: Conv::new(spec, &format!("{name}.phi_z1"), s, s, 1),
            phi_z3: Conv::new(spec, &format!("{name}.phi_z3"), s, s, 3),
            psi: Conv::new(spec, &format!("{name}.psi"), s, 1, 1),
            out: Conv::new(spec, &format!("{name}.out.conv"), s, s, 1),
            out_bn: Bn::new(spec, &format!("{name}.out.bn"), s),
        }
    }
}

// The forwards, over any backend.

impl SepConv {
    pub fn forward<B: Backend>(&self, b: &mut B, x: &B::T) -> Result<B::T> {
        b.sep_conv(self, x)
    }
}

impl SepBn {
    /// SepConv → BN → ReLU.
    pub fn forward<B: Backend>(&self, b: &mut B, x: &B::T) -> Result<B::T> {
        b.sep_conv_bn(&self.sep, &self.bn, x, true)
    }
}

impl HybridPool {
    /// concat[max pool, ReLU(spectral pool)] → Conv(2C, C, 1) on (N, C, M, M); `valid`
    /// halves M (down-sampling), else the size is kept (an inception branch).
    pub fn forward<B: Backend>(&self, b: &mut B, x: &B::T, valid: bool) -> Result<B::T> {
        let (pooled, spectral) = self.branches(b, x, valid)?;
        b.conv_cat(&self.merge, &[&pooled, &spectral])
    }
}

impl Inception {
    /// Three SepConv → BN → ReLU branches and HybridPoolSame → BN → ReLU, concatenated,
    /// then the merging SepConv(…, s, 1).
    pub fn forward<B: Backend>(&self, b: &mut B, x: &B::T) -> Result<B::T> {
        let mut outs = Vec::with_capacity(4);
        for branch in &self.branches {
            outs.push(branch.forward(b, x)?);
        }
        outs.push(self.pool.forward_bn(b, x, &self.pool_bn)?);
        let refs: Vec<&B::T> = outs.iter().collect();
        b.sep_conv_cat(&self.merge, &refs)
    }
}

impl Ric {
    /// x (N, cin, H, W) → (N, s, H, W): BN(shortcut(x)) + layer2(layer1(x)).
    pub fn forward<B: Backend>(&self, b: &mut B, x: &B::T) -> Result<B::T> {
        let l1 = self.l1.forward(b, x)?;
        let l2 = self.l2.forward(b, &l1)?;
        let s = b.sep_conv_bn(&self.shortcut, &self.shortcut_bn, x, false)?;
        b.add(&s, &l2)
    }
}

impl Plain {
    /// x (N, cin, H, W) → (N, s, H, W): BN(Conv1(x)) + (SepBn ∘ SepBn)(x).
    pub fn forward<B: Backend>(&self, b: &mut B, x: &B::T) -> Result<B::T> {
        let y = self.a.forward(b, x)?;
        let y = self.b.forward(b, &y)?;
        let s = b.conv_bn(&self.shortcut, &self.shortcut_bn, x, false)?;
        b.add(&s, &y)
    }
}

impl Gating {
    /// Conv(cin, s, 1) → BN → ReLU.
    pub fn forward<B: Backend>(&self, b: &mut B, x: &B::T) -> Result<B::T> {
        b.conv_bn(&self.conv, &self.bn, x, true)
    }
}

impl Csa {
    /// CSA_i(P, E, D): P and E at resolution R, D at R/2 (MODEL.md); the output is
    /// (N, s, R, R).
    pub fn forward<B: Backend>(&self, b: &mut B, p: &B::T, e: &B::T, d: &B::T) -> Result<B::T> {
        let gx = self.gate_x.forward(b, p)?;
        let gy = self.gate_y.forward(b, e)?;
        let gz = self.gate_z.forward(b, d)?;
        let tx = b.conv(&self.theta_x, &gx, 2, 0)?;
        let ty = b.conv(&self.theta_y, &gy, 2, 0)?;
        let z1 = b.conv(&self.phi_z1, &gz, 1, 0)?;
        let pz = b.conv(&self.phi_z3, &z1, 1, 1)?;
        let sum = b.add(&tx, &ty)?;
        let sum = b.add(&sum, &pz)?;
        let r = b.relu(&sum)?;
        let psi = b.conv(&self.psi, &r, 1, 0)?;
        let alpha = b.sigmoid(&psi)?;
        let alpha = b.upsample2x(&alpha)?;
        let attended = b.mul_bcast(&gx, &alpha)?;
        b.conv_bn(&self.out, &self.out_bn, &attended, true)
    }
}
