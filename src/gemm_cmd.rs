//! `tessera gemm`: SCALE-Sim GEMM studies. Reads a topology CSV and either a
//! SCALE-Sim `.cfg` or a hardware description, lowers and times every GEMM
//! (`tessera::gemm_study`), prints a table and writes JSON and a CSV shaped
//! like SCALE-Sim's `COMPUTE_REPORT.csv`. Nothing is written unless every
//! input parses and every layer simulates.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{anyhow, Result};
use tessera::gemm_study::{compute_report_csv, report_json, study_layer};
use tessera_compiler::scalesim::{parse_config, parse_topology};
use tessera_isa::{Arch, DType};

use crate::files::{print, read_text, shown, write_atomic};
use crate::hw;

/// Operand type of every study: SCALE-Sim's word, as bf16.
const DTYPE: DType = DType::Bf16;
/// The preset a `.cfg` modifies.
const BASE_PRESET: &str = "default";

/// Options of `tessera gemm`.
#[derive(Debug, clap::Args)]
pub struct GemmArgs {
    /// SCALE-Sim GEMM topology: `Layer, M, N, K` rows, K the reduction dimension.
    #[arg(long, value_name = "FILE.csv")]
    pub topology: PathBuf,
    /// SCALE-Sim configuration: array size, dataflow, SRAM sizes and
    /// bandwidth, applied to the `default` preset.
    #[arg(
        long,
        value_name = "FILE.cfg",
        conflicts_with = "hw",
        required_unless_present = "hw"
    )]
    pub config: Option<PathBuf>,
    /// Hardware description instead of a `.cfg`: a preset name or a TOML file.
    #[arg(long, value_name = "PRESET|FILE.toml")]
    pub hw: Option<String>,
    /// Write the per-layer report as JSON here.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// Write the per-layer report as a COMPUTE_REPORT-shaped CSV here.
    #[arg(long, value_name = "OUT.csv")]
    pub csv: Option<PathBuf>,
}

/// `tessera gemm`.
pub fn run(args: &GemmArgs) -> Result<()> {
    let topo_name = shown(&args.topology);
    let layers =
        parse_topology(&read_text(&args.topology)?, &topo_name).map_err(|e| anyhow!("{e}"))?;
    let arch: Arch = match (&args.config, &args.hw) {
        (Some(cfg), _) => {
            let name = shown(cfg);
            let config = parse_config(&read_text(cfg)?, &name).map_err(|e| anyhow!("{e}"))?;
            let base = Arch::preset(BASE_PRESET).map_err(|e| anyhow!("{e}"))?;
            config
                .arch(&base, DTYPE, &name)
                .map_err(|e| anyhow!("{e}"))?
        }
        (None, Some(h)) => hw::load(h)?,
        (None, None) => return Err(anyhow!("give --config FILE.cfg or --hw PRESET")),
    };
    let stats = layers
        .iter()
        .map(|l| study_layer(&arch, l, DTYPE))
        .collect::<Result<Vec<_>>>()?;
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report_json(&arch, DTYPE, &stats))? + "\n";
        write_atomic(path, text.as_bytes())?;
    }
    if let Some(path) = &args.csv {
        write_atomic(path, compute_report_csv(&stats).as_bytes())?;
    }
    let mut out = format!(
        "hardware `{}`: {}x{} {}, {} operands\n{:<28} {:>14} {:>12} {:>10} {:>8} {:>14} {:>14}\n",
        arch.name(),
        arch.rows(),
        arch.cols(),
        arch.dataflow(),
        DTYPE,
        "layer",
        "cycles",
        "compute",
        "stall",
        "util %",
        "DRAM read B",
        "DRAM write B"
    );
    for s in &stats {
        let _ = writeln!(
            out,
            "{:<28} {:>14} {:>12} {:>10} {:>8.2} {:>14} {:>14}",
            s.name,
            s.total_cycles_incl_prefetch,
            s.compute_cycles,
            s.stall_cycles,
            s.overall_util_pct,
            s.dram_read_bytes,
            s.dram_write_bytes
        );
    }
    print(&out)
}
