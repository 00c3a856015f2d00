//! `tessera compare`: Tessera and a GPU on the same training job, side by
//! side (see `tessera::compare`).

use std::path::PathBuf;

use anyhow::Result;
use tessera::compare::{compare, to_json, to_table};

use crate::compile_cmd::ModelArgs;
use crate::files::{print, write_atomic};
use crate::hw;

/// `tessera compare` arguments.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Tessera hardware description: a preset name or a TOML file.
    #[arg(long, default_value = "default", value_name = "PRESET|FILE.toml")]
    hw: String,
    /// GPU: v100, a100-40gb, a100-80gb, h100 or h200.
    #[arg(long, default_value = "h100")]
    gpu: String,
    /// Write the comparison as JSON here.
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
}

/// Runs `tessera compare`.
pub fn run(args: &CompareArgs) -> Result<()> {
    let arch = hw::load(&args.hw)?;
    let (_, tessera, gpu) = compare(&args.model.model()?, &args.model.setup()?, &arch, &args.gpu)?;
    if let Some(path) = &args.json {
        let mut text = serde_json::to_string_pretty(&to_json(&tessera, &gpu))?;
        text.push('\n');
        write_atomic(path, text.as_bytes())?;
    }
    print(&to_table(&tessera, &gpu))
}
