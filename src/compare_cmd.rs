//! `tessera compare`: Tessera and a GPU on the same training job, side by
//! side (see `tessera::compare`).

use std::path::PathBuf;

use anyhow::{bail, Result};
use tessera::compare::{compare, compare_scaled, to_json, to_table, PlanChoice};

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
    /// Run both sides on this many devices through the scale-out model
    /// (data parallel unless `--search`); `--batch` is per device.
    #[arg(long, value_name = "N")]
    devices: Option<u32>,
    /// With `--devices`: each side's fastest fitting plan instead of data
    /// parallelism.
    #[arg(long, requires = "devices")]
    search: bool,
    /// Write the comparison as JSON here.
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
}

/// Runs `tessera compare`.
pub fn run(args: &CompareArgs) -> Result<()> {
    let arch = hw::load(&args.hw)?;
    let model = args.model.model()?;
    let setup = args.model.setup()?;
    let (tessera, gpu, scaled) = match args.devices {
        None => {
            let (_, t, g) = compare(&model, &setup, &arch, &args.gpu)?;
            (t, g, None)
        }
        Some(0) => bail!("--devices must be at least 1"),
        Some(n) => {
            let choice = if args.search {
                PlanChoice::Search
            } else {
                PlanChoice::DataParallel
            };
            let s = compare_scaled(&model, &setup, &arch, &args.gpu, n, choice)?;
            (s.tessera.clone(), s.gpu.clone(), Some(s))
        }
    };
    let mut table = to_table(&tessera, &gpu);
    let mut json = to_json(&tessera, &gpu);
    if let Some(s) = &scaled {
        table += &format!(
            "devices: {} per side\ntessera plan: {}\ngpu plan:     {}\n",
            s.devices, s.tessera_plan, s.gpu_plan
        );
        json["devices"] = s.devices.into();
        json["plans"] = serde_json::json!({"tessera": s.tessera_plan, "gpu": s.gpu_plan});
    }
    if let Some(path) = &args.json {
        let mut text = serde_json::to_string_pretty(&json)?;
        text.push('\n');
        write_atomic(path, text.as_bytes())?;
    }
    print(&table)
}
