//! `tessera simulate`: the main job. Compiles one training step of a model
//! for a hardware description, runs it in timing mode and prints step
//! time, throughput, MFU, energy, power, HBM footprint and the top
//! operators (see `tessera::step_sim`).

use std::path::PathBuf;

use anyhow::Result;
use tessera::step_sim::simulate_step;

use crate::compile_cmd::ModelArgs;
use crate::files::{print, write_atomic};
use crate::hw;

/// `tessera simulate` arguments.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Hardware description: a preset name or a TOML file.
    #[arg(long, default_value = "default", value_name = "PRESET|FILE.toml")]
    hw: String,
    /// Write the figures as JSON here.
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
    /// Operators listed in the summary.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

/// Runs `tessera simulate`.
pub fn run(args: &SimulateArgs) -> Result<()> {
    let arch = hw::load(&args.hw)?;
    let figures = simulate_step(&args.model.model()?, &args.model.setup()?, &arch)?;
    if let Some(path) = &args.json {
        let mut text = serde_json::to_string_pretty(&figures.to_json())?;
        text.push('\n');
        write_atomic(path, text.as_bytes())?;
    }
    print(&figures.to_table(args.top))
}
