//! `tessera rtl`: writes the generated Verilog of a hardware description, a
//! self-checking testbench whose vectors and expected results come from the
//! simulator, and a Yosys script for the chosen FPGA family; when Icarus
//! Verilog and Yosys are installed it also runs the testbench, synthesises,
//! re-runs the testbench on the netlist, and reports resources.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use tessera_rtl::array::{array_sources, ARRAY};
use tessera_rtl::fpga::{parse_stat, yosys_script, Resources, Target};
use tessera_rtl::testbench::fold_testbench;

use crate::files::{print, shown, write_atomic};
use crate::hw;
use tessera::cosim;

/// Options of `tessera rtl`.
#[derive(Debug, clap::Args)]
pub struct RtlArgs {
    /// Hardware description: a preset name or a TOML file.
    #[arg(long, value_name = "PRESET|FILE.toml")]
    pub hw: String,
    /// Directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// FPGA family for the synthesis script.
    #[arg(long, default_value = "generic", value_parser = ["generic", "ice40", "ecp5", "xc7"])]
    pub target: String,
}

/// What running a tool gave.
#[derive(Debug)]
enum Outcome {
    NotInstalled(&'static str),
    Passed(String),
    Failed(String),
}

impl Outcome {
    fn json(&self) -> serde_json::Value {
        match self {
            Outcome::NotInstalled(t) => {
                serde_json::json!({ "status": "skipped", "reason": format!("{t} is not installed") })
            }
            Outcome::Passed(s) => serde_json::json!({ "status": "passed", "output": s }),
            Outcome::Failed(s) => serde_json::json!({ "status": "failed", "output": s }),
        }
    }

    fn line(&self) -> String {
        match self {
            Outcome::NotInstalled(t) => format!("skipped ({t} is not installed)"),
            Outcome::Passed(s) => format!("passed: {s}"),
            Outcome::Failed(s) => format!("FAILED: {s}"),
        }
    }
}

fn installed(tool: &str) -> bool {
    Command::new(tool).arg("-V").output().is_ok()
}

/// Compiles with iverilog and runs; the testbench's last line is the verdict.
fn simulate(dir: &Path, files: &[String], extra: &[PathBuf]) -> Result<Outcome> {
    if !installed("iverilog") {
        return Ok(Outcome::NotInstalled("iverilog"));
    }
    let compile = Command::new("iverilog")
        .args(["-g2005", "-DNO_ICE40_DEFAULT_ASSIGNMENTS", "-o", "tb.vvp"])
        .args(files)
        .args(extra)
        .current_dir(dir)
        .output()
        .context("running iverilog")?;
    if !compile.status.success() {
        return Ok(Outcome::Failed(
            String::from_utf8_lossy(&compile.stderr)
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
        ));
    }
    let run = Command::new("vvp")
        .args(["-n", "tb.vvp"])
        .current_dir(dir)
        .output()
        .context("running vvp")?;
    let _ = std::fs::remove_file(dir.join("tb.vvp"));
    let out = String::from_utf8_lossy(&run.stdout);
    let verdict = out
        .lines()
        .find(|l| l.starts_with("PASS") || l.starts_with("FAIL"))
        .unwrap_or("no verdict")
        .to_string();
    Ok(if verdict.starts_with("PASS") {
        Outcome::Passed(verdict)
    } else {
        Outcome::Failed(verdict)
    })
}

/// `tessera rtl`.
pub fn run(args: &RtlArgs) -> Result<()> {
    let arch = hw::load(&args.hw)?;
    let target = Target::from_name(&args.target)
        .ok_or_else(|| anyhow!("--target {}: unknown", args.target))?;
    let sources = array_sources(&arch).map_err(|e| anyhow!("{}: {e}", args.hw))?;
    let (fold, cycles) = cosim::full_fold(&arch, 1)?;
    let tb = fold_testbench(arch.rows() as usize, arch.cols() as usize, &fold)
        .map_err(|e| anyhow!("{e}"))?;
    std::fs::create_dir_all(&args.out).with_context(|| shown(&args.out))?;
    let dir = &args.out;

    let mut design_files = Vec::new();
    for (name, text) in &sources {
        write_atomic(&dir.join(name), text.as_bytes())?;
        design_files.push(name.clone());
    }
    write_atomic(&dir.join("tb_fold.v"), tb.as_bytes())?;
    let stat = format!("stat_{target}.txt");
    let netlist = format!("netlist_{target}.v");
    let script = format!("synth_{target}.ys");
    write_atomic(
        &dir.join(&script),
        yosys_script(target, ARRAY, &design_files, &stat, &netlist).as_bytes(),
    )?;

    let mut rtl_files = vec!["tb_fold.v".to_string()];
    rtl_files.extend(design_files.iter().cloned());
    let rtl_sim = simulate(dir, &rtl_files, &[])?;
    let (synth, resources, post_sim) = if installed("yosys") {
        let out = Command::new("yosys")
            .args(["-q", "-s", &script])
            .current_dir(dir)
            .output()
            .context("running yosys")?;
        if out.status.success() {
            let stat_text =
                std::fs::read_to_string(dir.join(&stat)).with_context(|| stat.clone())?;
            let models = cosim::yosys_datdir().join(target.cell_models());
            let post = simulate(dir, &["tb_fold.v".to_string(), netlist.clone()], &[models])?;
            (
                Outcome::Passed(script.clone()),
                Some(parse_stat(&stat_text)),
                post,
            )
        } else {
            let msg = String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
                .to_string();
            (
                Outcome::Failed(msg),
                None,
                Outcome::NotInstalled("a netlist"),
            )
        }
    } else {
        (
            Outcome::NotInstalled("yosys"),
            None,
            Outcome::NotInstalled("yosys"),
        )
    };

    let res_json = resources.as_ref().map(|r: &Resources| {
        serde_json::json!({ "luts": r.luts, "flip_flops": r.flip_flops, "dsps": r.dsps, "block_rams": r.block_rams, "cells": r.cells })
    });
    let report = serde_json::json!({
        "hardware": arch.name(),
        "fingerprint": format!("{:016x}", arch.fingerprint()),
        "array": { "rows": arch.rows(), "cols": arch.cols(), "input": "int8", "dataflow": "weight-stationary" },
        "target": target.name(),
        "files": { "design": design_files, "testbench": "tb_fold.v", "synthesis_script": script },
        "testbench_cycles_expected": cycles,
        "rtl_simulation": rtl_sim.json(),
        "synthesis": synth.json(),
        "resources": res_json,
        "post_synthesis_simulation": post_sim.json(),
        "fmax_mhz": serde_json::Value::Null,
    });
    let mut json = serde_json::to_string_pretty(&report)?;
    json.push('\n');
    write_atomic(&dir.join("report.json"), json.as_bytes())?;

    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Tessera RTL: `{}` ({}x{} int8 weight-stationary array)\n",
        arch.name(),
        arch.rows(),
        arch.cols()
    );
    let _ = writeln!(md, "- design: {}", design_files.join(", "));
    let _ = writeln!(md, "- testbench: tb_fold.v ({}x{}x{} fold from the functional simulator, {cycles} cycles in the timing model)", fold.m, fold.k, fold.n);
    let _ = writeln!(md, "- RTL simulation (Icarus Verilog): {}", rtl_sim.line());
    let _ = writeln!(md, "- synthesis ({target}, Yosys): {}", synth.line());
    if let Some(r) = &resources {
        let _ = writeln!(
            md,
            "- resources: {} LUTs, {} flip-flops, {} DSPs, {} block RAMs",
            r.luts, r.flip_flops, r.dsps, r.block_rams
        );
    }
    let _ = writeln!(md, "- post-synthesis simulation: {}", post_sim.line());
    let _ = writeln!(
        md,
        "- Fmax: not measured (place and route is not part of this flow yet)"
    );
    write_atomic(&dir.join("report.md"), md.as_bytes())?;
    print(&md)?;

    for (what, o) in [
        ("RTL simulation", &rtl_sim),
        ("synthesis", &synth),
        ("post-synthesis simulation", &post_sim),
    ] {
        if let Outcome::Failed(msg) = o {
            bail!("{}: {what} failed: {msg}", shown(dir));
        }
    }
    Ok(())
}
