//! `tessera simulate`: the main job. Compiles one training step of a model
//! for a hardware description, runs it in timing mode and prints step
//! time, throughput, MFU, energy, power, HBM footprint and the top
//! operators (see `tessera::step_sim`).

use std::path::PathBuf;

use anyhow::Result;
use tessera::step_sim::{fusion_savings, recompute_policies, simulate_step};

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
    /// Also simulate the step with each fusion pass turned off and report
    /// the HBM traffic, time and peak memory each one saves.
    #[arg(long)]
    fusion_report: bool,
    /// Also simulate the step under each activation-recomputation policy
    /// (none, selective, full) and report the peak HBM and time of each.
    #[arg(long)]
    recompute_report: bool,
}

/// Runs `tessera simulate`.
pub fn run(args: &SimulateArgs) -> Result<()> {
    let arch = hw::load(&args.hw)?;
    let (model, setup) = (args.model.model()?, args.model.setup()?);
    let figures = simulate_step(&model, &setup, &arch)?;
    let savings = if args.fusion_report {
        fusion_savings(&model, &setup, &arch, &figures)?
    } else {
        Vec::new()
    };
    let policies = if args.recompute_report {
        recompute_policies(&model, &setup, &arch)?
    } else {
        Vec::new()
    };
    let mut json = figures.to_json();
    if args.recompute_report {
        json["recompute"] = policies
            .iter()
            .map(|p| match &p.step {
                Ok(f) => serde_json::json!({
                    "policy": p.name,
                    "keeps": p.keeps,
                    "hbm_peak_bytes": f.hbm_peak_bytes,
                    "step_seconds": f.step_seconds,
                    "mfu": f.mfu,
                }),
                Err(e) => serde_json::json!({
                    "policy": p.name,
                    "keeps": p.keeps,
                    "error": e,
                }),
            })
            .collect();
    }
    if args.fusion_report {
        json["fusions"] = savings
            .iter()
            .map(|f| {
                serde_json::json!({
                    "name": f.name,
                    "hbm_bytes_saved": f.hbm_bytes_saved,
                    "seconds_saved": f.seconds_saved,
                    "peak_hbm_bytes_saved": f.peak_bytes_saved,
                })
            })
            .collect();
    }
    if let Some(path) = &args.json {
        let mut text = serde_json::to_string_pretty(&json)?;
        text.push('\n');
        write_atomic(path, text.as_bytes())?;
    }
    let mut table = figures.to_table(args.top);
    for f in &savings {
        table += &format!(
            "fusion {:<13} saves {:.2} GB of HBM traffic, {:.2} ms ({:.1}%) and {:.2} GiB of peak HBM per step\n",
            f.name,
            f.hbm_bytes_saved as f64 / 1e9,
            f.seconds_saved * 1e3,
            f.seconds_saved / (figures.step_seconds + f.seconds_saved) * 100.0,
            f.peak_bytes_saved as f64 / f64::from(1u32 << 30)
        );
    }
    if !policies.is_empty() {
        table += &recompute_table(&policies);
    }
    print(&table)
}

/// The recomputation comparison: peak HBM and step time per policy, and
/// what each saves against keeping everything.
fn recompute_table(policies: &[tessera::step_sim::RecomputePolicy]) -> String {
    let size = |b: f64| {
        let (unit, scale) = if b.abs() >= f64::from(1u32 << 30) {
            ("GiB", f64::from(1u32 << 30))
        } else if b.abs() >= f64::from(1u32 << 20) {
            ("MiB", f64::from(1u32 << 20))
        } else {
            ("KiB", 1024.0)
        };
        format!("{:.2} {unit}", b / scale)
    };
    let base = policies
        .first()
        .and_then(|p| p.step.as_ref().ok())
        .map(|f| (f.hbm_peak_bytes as f64, f.step_seconds));
    let mut t =
        String::from("\nrecompute     peak HBM  saved vs none  step time   vs none  keeps\n");
    for p in policies {
        match (&p.step, base) {
            (Ok(f), Some((peak, secs))) => {
                t += &format!(
                    "{:<10} {:>11} {:>12}    {:>7.1} ms {:>+8.1} ms  {}\n",
                    p.name,
                    size(f.hbm_peak_bytes as f64),
                    size(peak - f.hbm_peak_bytes as f64),
                    f.step_seconds * 1e3,
                    (f.step_seconds - secs) * 1e3,
                    p.keeps
                );
            }
            (Ok(f), None) => {
                t += &format!(
                    "{:<10} {:>11}            -    {:>7.1} ms        -    {}\n",
                    p.name,
                    size(f.hbm_peak_bytes as f64),
                    f.step_seconds * 1e3,
                    p.keeps
                );
            }
            (Err(e), _) => t += &format!("{:<10} does not compile: {e}\n", p.name),
        }
    }
    t
}
