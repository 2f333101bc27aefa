//! `model.summary()` as Keras prints it: one row per layer block with its output shape,
//! its parameters and its forward FLOPs, then the totals.
//!
//! Shapes and FLOPs are derived from the configuration alone (no GPU). FLOPs count a
//! multiply-add as 2, a complex 2-D FFT of n points as 5·n·log2(n), and one per element for
//! element-wise work (batch norm 4, sigmoid 4); batch 1.

use crate::nn::layers::Inception;
use crate::nn::{Conv, Csa, HybridPool, Plain, Ric, SepConv};

use super::{Block, Model};

/// One row of the summary.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: String,
    /// (C, H, W) of the block's output, batch omitted.
    pub shape: [usize; 3],
    pub params: usize,
    pub flops: f64,
}

fn sep(l: &SepConv, p: usize) -> f64 {
    (2 * l.k * l.k * l.cin * p + 2 * l.cin * l.cout * p + l.cout * p) as f64
}

fn conv(l: &Conv, p_out: usize) -> f64 {
    ((2 * l.k * l.k * l.cin + 1) * l.cout * p_out) as f64
}

fn bn(c: usize, p: usize) -> f64 {
    (4 * c * p) as f64
}

fn fft(n: usize) -> f64 {
    5.0 * n as f64 * (n as f64).log2()
}

/// concat[max pool, ReLU(spectral pool)] → Conv(2C, C, 1) on C×M×M; `valid` halves M.
fn hybrid(l: &HybridPool, m: usize, valid: bool) -> f64 {
    let h = if valid { m / 2 } else { m };
    let c = l.c;
    let maxpool = (3 * c * h * h) as f64;
    let spectral = c as f64 * (fft(m * m) + fft(h * h)) + (c * h * h) as f64;
    maxpool + spectral + conv(&l.merge, h * h)
}

fn inception(l: &Inception, cin: usize, m: usize) -> f64 {
    let p = m * m;
    let branches: f64 = l
        .branches
        .iter()
        .map(|b| sep(&b.sep, p) + bn(b.sep.cout, p) + (b.sep.cout * p) as f64)
        .sum();
    branches + hybrid(&l.pool, m, false) + bn(cin, p) + (cin * p) as f64 + sep(&l.merge, p)
}

fn ric(l: &Ric, m: usize) -> f64 {
    let p = m * m;
    inception(&l.l1, l.cin, m)
        + inception(&l.l2, l.s, m)
        + sep(&l.shortcut, p)
        + bn(l.s, p)
        + (l.s * p) as f64
}

fn plain(l: &Plain, m: usize) -> f64 {
    let p = m * m;
    let s = l.s;
    sep(&l.a.sep, p)
        + sep(&l.b.sep, p)
        + 2.0 * (bn(s, p) + (s * p) as f64)
        + conv(&l.shortcut, p)
        + bn(s, p)
        + (s * p) as f64
}

fn block(b: &Block, m: usize) -> f64 {
    match b {
        Block::Ric(r) => ric(r, m),
        Block::Plain(p) => plain(p, m),
    }
}

/// CSA at resolution R = m (its attention works at m/2).
fn csa(l: &Csa, m: usize) -> f64 {
    let (p, q, s) = (m * m, m * m / 4, l.s);
    let gates = conv(&l.gate_x.conv, p)
        + conv(&l.gate_y.conv, p)
        + conv(&l.gate_z.conv, q)
        + 2.0 * (bn(s, p) + (s * p) as f64)
        + bn(s, q)
        + (s * q) as f64;
    let attention = conv(&l.theta_x, q)
        + conv(&l.theta_y, q)
        + conv(&l.phi_z1, q)
        + conv(&l.phi_z3, q)
        + (3 * s * q) as f64
        + conv(&l.psi, q)
        + (4 * q) as f64;
    gates + attention + (s * p) as f64 + conv(&l.out, p) + bn(s, p) + (s * p) as f64
}

impl Model {
    /// The summary rows, in data-flow order; parameters are attributed to rows by name,
    /// so every parameter is counted exactly once.
    pub fn summary(&self) -> Vec<Row> {
        let s = self.config.size;
        let w = self.config.widths();
        let mut rows = Vec::new();
        let mut push = |name: String, shape: [usize; 3], flops: f64| {
            rows.push(Row {
                name,
                shape,
                params: 0,
                flops,
            })
        };
        push("enc0".into(), [w[0], s, s], block(&self.enc[0], s));
        for i in 1..5 {
            let m = s >> (i - 1);
            let flops = match &self.down[i - 1] {
                Some(hp) => hybrid(hp, m, true),
                None => (3 * w[i - 1] * m * m / 4) as f64,
            };
            push(format!("down{i}"), [w[i - 1], m / 2, m / 2], flops);
            push(
                format!("enc{i}"),
                [w[i], m / 2, m / 2],
                block(&self.enc[i], m / 2),
            );
        }
        for i in (0..4).rev() {
            let m = s >> i;
            push(format!("up{i}"), [w[i + 1], m, m], 0.0);
            if let Some(c) = &self.csa[i] {
                push(format!("dec{i}.csa"), [w[i], m, m], csa(c, m));
            }
            push(format!("dec{i}"), [w[i], m, m], block(&self.dec[i], m));
        }
        push(
            "head".into(),
            [1, s, s],
            conv(&self.head, s * s) + bn(1, s * s),
        );
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
    fn rca_iunet_forward_is_about_twelve_gflop_at_256() {
        // ENGINE.md counts 12.0 GFLOP layer by layer for RCA-IUnet at 256×256, batch 1.
        let m = Model::new(ModelConfig::new(Variant::RcaIunet, 16, 256).unwrap());
        let g = m.forward_flops() / 1e9;
        assert!((11.0..13.0).contains(&g), "{g} GFLOP");
    }

    #[test]
    fn table_prints_keras_style_totals() {
        let m = Model::new(ModelConfig::new(Variant::RcaIunet, 16, 256).unwrap());
        let t = m.summary_table();
        assert!(t.contains("Total params: 2,929,413"), "{t}");
        assert!(t.contains("Trainable params: 2,913,793"), "{t}");
        assert!(t.contains("Non-trainable params: 15,620"), "{t}");
    }
}
