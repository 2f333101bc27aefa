//! `rca-gpu summary`: the layer table, parameter totals and forward FLOPs of a variant,
//! as Keras' `model.summary()` prints them. Needs no GPU.

use crate::model::{Model, ModelConfig, Variant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// unet, unet+ric, unet+csa, unet+ric+hp, unet+csa+hp, unet+csa+ric or rca-iunet.
    #[arg(long, default_value = "rca-iunet")]
    pub variant: Variant,
    /// Input side (a power of two ≥ 32).
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Base width F (16 in the paper).
    #[arg(long, default_value_t = 16)]
    pub width: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config =
        ModelConfig::new(args.variant, args.width, args.size).map_err(anyhow::Error::msg)?;
    print!("{}", Model::new(config).summary_table());
    Ok(())
}
