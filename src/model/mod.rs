//! RCA-IUnet and its ablation variants (MODEL.md "The network", Table 3 of the paper),
//! assembled from the layers of `crate::nn`.
//!
//! Widths w = [F, 2F, 4F, 8F, 16F] (F = 16 in the paper); input 1×S×S with S a power of
//! two ≥ 32. Encoder: e0 = Block(x, w0); p_i = Down(e_{i−1}); e_i = Block(p_i, w_i) for
//! i = 1..4. Decoder for i = 3, 2, 1, 0: u = Up(d) (d starts as e4), skip = CSA_i(P_i, e_i,
//! e_{i+1}) or e_i, d = Block(concat[u, skip], w_i). Head: Conv(F, 1, 1) → BN(1) → sigmoid
//! (the loss takes the logits before the sigmoid).

use std::fmt;
use std::str::FromStr;

mod forward;
mod summary;

pub use summary::{Count, Meta, Row, group};

pub use crate::nn::Mode;

use crate::nn::{Bn, Conv, Csa, HybridPool, ParamSpec, Plain, Ric};

/// The seven models of the paper's ablation (Table 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    Unet,
    UnetRic,
    UnetCsa,
    UnetRicHp,
    UnetCsaHp,
    UnetCsaRic,
    RcaIunet,
}

impl Variant {
    pub const ALL: [Variant; 7] = [
        Variant::Unet,
        Variant::UnetRic,
        Variant::UnetCsa,
        Variant::UnetRicHp,
        Variant::UnetCsaHp,
        Variant::UnetCsaRic,
        Variant::RcaIunet,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Unet => "unet",
            Variant::UnetRic => "unet+ric",
            Variant::UnetCsa => "unet+csa",
            Variant::UnetRicHp => "unet+ric+hp",
            Variant::UnetCsaHp => "unet+csa+hp",
            Variant::UnetCsaRic => "unet+csa+ric",
            Variant::RcaIunet => "rca-iunet",
        }
    }

    /// Residual inception blocks (else the plain block).
    pub fn ric(self) -> bool {
        matches!(
            self,
            Variant::UnetRic | Variant::UnetRicHp | Variant::UnetCsaRic | Variant::RcaIunet
        )
    }

    /// Cross-spatial attention on the skips (else the skip is e_i).
    pub fn csa(self) -> bool {
        matches!(
            self,
            Variant::UnetCsa | Variant::UnetCsaHp | Variant::UnetCsaRic | Variant::RcaIunet
        )
    }

    /// Hybrid pooling for down-sampling (else 2×2 max pooling).
    pub fn hp(self) -> bool {
        matches!(
            self,
            Variant::UnetRicHp | Variant::UnetCsaHp | Variant::RcaIunet
        )
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Variant::ALL.iter().map(|v| v.name()).collect();
                format!("unknown variant '{s}' (one of: {})", names.join(", "))
            })
    }
}

/// The largest input side S a model may declare: an 8192² image at F = 1 already needs
/// gigabytes of activations. Checked where a checkpoint or the command line names one.
pub const MAX_INPUT_SIZE: usize = 8192;

/// The largest base width F a model may declare (the paper's is 16; at 1024 the bottom
/// level has 16,384 channels).
pub const MAX_WIDTH: usize = 1024;

/// What defines a model's parameters and input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelConfig {
    pub variant: Variant,
    /// Base width F (16 in the paper).
    pub width: usize,
    /// Input side S (a power of two ≥ 32).
    pub size: usize,
}

impl ModelConfig {
    pub fn new(variant: Variant, width: usize, size: usize) -> Result<Self, String> {
        if !size.is_power_of_two() || size < 32 {
            return Err(format!(
                "input size {size} is not a power of two ≥ 32 (four 2× down-samplings and the FFT need it)"
            ));
        }
        if size > MAX_INPUT_SIZE {
            return Err(format!(
                "input size {size} is larger than {MAX_INPUT_SIZE} (one image's activations would not fit a GPU)"
            ));
        }
        if width == 0 || width > MAX_WIDTH {
            return Err(format!(
                "width F = {width} is outside 1 to {MAX_WIDTH} (the paper's is 16)"
            ));
        }
        Ok(Self {
            variant,
            width,
            size,
        })
    }

    /// Channel widths of the five levels.
    pub fn widths(&self) -> [usize; 5] {
        let f = self.width;
        [f, 2 * f, 4 * f, 8 * f, 16 * f]
    }
}

/// One encoder/decoder block: residual inception or the ablation's plain block.
#[derive(Clone, Debug)]
pub enum Block {
    Ric(Ric),
    Plain(Plain),
}

impl Block {
    fn new(spec: &mut ParamSpec, name: &str, ric: bool, cin: usize, s: usize) -> Self {
        if ric {
            Block::Ric(Ric::new(spec, &format!("{name}.ric"), cin, s))
        } else {
            Block::Plain(Plain::new(spec, &format!("{name}.plain"), cin, s))
        }
    }
}

/// The network: its layers (holding parameter ids) and its parameter spec.
#[derive(Clone, Debug)]
pub struct Model {
    pub config: ModelConfig,
    pub spec: ParamSpec,
    /// Encoder blocks e0..e4.
    pub enc: Vec<Block>,
    /// Down-sampling before e1..e4: hybrid pooling (HP variants) or plain max pooling.
    pub down: Vec<Option<HybridPool>>,
    /// Decoder levels 3, 2, 1, 0 (index = level).
    pub csa: Vec<Option<Csa>>,
    pub dec: Vec<Block>,
    pub head: Conv,
    pub head_bn: Bn,
    /// Weight of the old value in training mode's running-statistics update (MODEL.md:
    /// 0.99, Keras' default). A training setting, not part of the checkpoint's identity: a
    /// short run may lower it so that eval mode's statistics catch up with the weights.
    pub bn_momentum: f32,
}

impl Model {
    /// Declare every layer and parameter of `config` (no GPU needed).
    pub fn new(config: ModelConfig) -> Self {
        let v = config.variant;
        let w = config.widths();
        let mut spec = ParamSpec::default();
        let mut enc = Vec::with_capacity(5);
        let mut down = Vec::with_capacity(4);
        enc.push(Block::new(&mut spec, "enc0", v.ric(), 1, w[0]));
        for i in 1..5 {
            down.push(
                v.hp()
                    .then(|| HybridPool::new(&mut spec, &format!("down{i}"), w[i - 1])),
            );
            enc.push(Block::new(
                &mut spec,
                &format!("enc{i}"),
                v.ric(),
                w[i - 1],
                w[i],
            ));
        }
        // Decoder levels are built from the deepest up, so names and declaration order
        // follow the data flow; they are stored by level.
        let mut csa: Vec<Option<Csa>> = vec![None; 4];
        let mut dec: Vec<Option<Block>> = vec![None; 4];
        for i in (0..4).rev() {
            // P_i: the image at level 0, else the pooled map that entered e_i (w_{i−1} ch).
            let ch_p = if i == 0 { 1 } else { w[i - 1] };
            if v.csa() {
                csa[i] = Some(Csa::new(
                    &mut spec,
                    &format!("dec{i}.csa"),
                    ch_p,
                    w[i],
                    w[i + 1],
                    w[i],
                ));
            }
            dec[i] = Some(Block::new(
                &mut spec,
                &format!("dec{i}"),
                v.ric(),
                w[i + 1] + w[i],
                w[i],
            ));
        }
        let head = Conv::new(&mut spec, "head.conv", w[0], 1, 1);
        let head_bn = Bn::new(&mut spec, "head.bn", 1);
        Self {
            config,
            spec,
            enc,
            down,
            csa,
            dec: dec.into_iter().map(|b| b.expect("built above")).collect(),
            head,
            head_bn,
            bn_momentum: Bn::MOMENTUM,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names_round_trip() {
        for v in Variant::ALL {
            assert_eq!(v.name().parse::<Variant>().unwrap(), v);
        }
        let e = "resnet".parse::<Variant>().unwrap_err();
        assert!(e.contains("rca-iunet"), "{e}");
    }

    #[test]
    fn sizes_must_be_powers_of_two_of_at_least_32() {
        assert!(ModelConfig::new(Variant::RcaIunet, 16, 256).is_ok());
        assert!(ModelConfig::new(Variant::RcaIunet, 16, 16).is_err());
        assert!(ModelConfig::new(Variant::RcaIunet, 16, 96).is_err());
        assert!(ModelConfig::new(Variant::RcaIunet, 16, MAX_INPUT_SIZE).is_ok());
        assert!(ModelConfig::new(Variant::RcaIunet, 16, 2 * MAX_INPUT_SIZE).is_err());
        assert!(ModelConfig::new(Variant::RcaIunet, MAX_WIDTH, 32).is_ok());
        assert!(ModelConfig::new(Variant::RcaIunet, MAX_WIDTH + 1, 32).is_err());
        assert!(ModelConfig::new(Variant::RcaIunet, 0, 32).is_err());
        // A checkpoint may declare any number: the product must not overflow on the way.
        assert!(ModelConfig::new(Variant::RcaIunet, usize::MAX, 1 << 62).is_err());
    }

    #[test]
    fn parameter_names_are_unique_and_readable() {
        let m = Model::new(ModelConfig::new(Variant::RcaIunet, 16, 256).unwrap());
        let mut names: Vec<&str> = m.spec.params().iter().map(|p| p.name.as_str()).collect();
        assert!(names.contains(&"enc2.ric.l1.sep5.depthwise.weight"));
        assert!(names.contains(&"dec0.csa.theta_x.weight"));
        assert!(names.contains(&"down4.merge.bias"));
        assert!(names.contains(&"head.bn.running_var"));
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate parameter names");
    }
}
