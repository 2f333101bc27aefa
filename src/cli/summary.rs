//! `rca-gpu summary`: the layer table, parameter totals and forward FLOPs of a variant,
//! as Keras' `model.summary()` prints them. Needs no GPU.

use crate::model::Model;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: super::ModelArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    print!("{}", Model::new(args.model.config()?).summary_table());
    Ok(())
}
