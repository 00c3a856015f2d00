//! `tessera rtl`: writes the generated Verilog of a hardware description
//! (one processing element and array per input type), a self-checking
//! testbench per array whose vectors and expected results come from the
//! simulator, and the Yosys and nextpnr scripts for the chosen FPGA family.
//! When the tools are installed it also runs each testbench (Icarus
//! Verilog), synthesises (Yosys), re-runs the testbench on the netlist,
//! places and routes a wrapper of the array (nextpnr-ice40 / nextpnr-ecp5)
//! and reports resources and Fmax in `report.json` and `report.md`.
//!
//! It also writes the matrix core of each input type (or of `--program`'s
//! type) with its memory images and testbench, runs the program (a built-in
//! one without `--program`) on the core and on the simulators, and reports
//! whether the accumulator is bit-exact and the cycle count is the timing
//! model's plus the accumulator write.
//!
//! An output-stationary description gets the output-stationary array
//! ([`tessera_rtl::array_os`]), its testbench and synthesis, and the core
//! with the output-stationary matrix engine ([`tessera_rtl::core_os`]; none
//! with `array.double_buffered_weights`, whose `--program` is refused); the
//! place-and-route wrapper is weight-stationary only, so that step is
//! reported as skipped.
//! A description with double-buffered weights gets the double-buffered
//! array (its testbench runs one fold with the compute at the earliest step
//! the timing model allows) and core; the place-and-route wrapper drives a
//! single-buffered array, so that step is reported as skipped.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use tessera_isa::{Arch, Dataflow};
use tessera_rtl::array::{array_sources, pe_types};
use tessera_rtl::array_os::{os_array_module, os_pe_module};
use tessera_rtl::fpga::{
    cell_models_extra, fmax_wrapper, parse_fmax, parse_stat, pnr_device, pnr_synth_script,
    yosys_script, Resources, Target, FMAX_TOP,
};
use tessera_rtl::pe::{Buffering, PeType};
use tessera_rtl::sequence_tb::{sequence_testbench, ScheduledFold};
use tessera_rtl::testbench::{fold_testbench, ArrayShape};
use tessera_rtl::testbench_os::os_fold_testbench;

use crate::files::{print, shown, write_atomic};
use crate::hw;
use tessera::cosim;

/// Whether `tessera rtl` places and routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pnr {
    /// When nextpnr for the target is installed.
    Auto,
    /// Never (place and route of a 16x16 array takes many minutes).
    Skip,
}

/// Whether `tessera rtl` runs the vector unit's testbench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VectorUnit {
    /// The directed corners and random vectors of every built operation
    /// (about a minute under Icarus Verilog with the libm datapath).
    Run,
    /// Write the unit and its testbench without simulating them (the
    /// cores, which contain the unit, are still simulated).
    Skip,
}

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
    /// Place and route (ice40 and ecp5 targets) to measure Fmax.
    #[arg(long, value_enum, default_value_t = Pnr::Auto)]
    pub pnr: Pnr,
    /// Run the vector unit's own testbench.
    #[arg(long, value_enum, default_value_t = VectorUnit::Run)]
    pub vector_unit: VectorUnit,
    /// Target clock for place and route in MHz (default: the hardware's clock).
    #[arg(long, value_name = "MHZ")]
    pub freq: Option<f64>,
    /// A program (`.tsr` or `.s`; load, matrix, vector and store queues,
    /// the subset of `docs/rtl.md`) for the generated core; without it each
    /// input type's core runs a built-in test program.
    #[arg(long, value_name = "FILE.tsr")]
    pub program: Option<PathBuf>,
    /// Raw bytes the scratchpad starts with (from address 0) for `--program`.
    #[arg(long, value_name = "FILE", requires = "program")]
    pub spad: Option<PathBuf>,
    /// Raw bytes HBM starts with (from address 0) for `--program`; the rest is zero.
    #[arg(long, value_name = "FILE", requires = "program")]
    pub hbm: Option<PathBuf>,
}

/// What running a tool gave.
#[derive(Debug)]
pub(crate) enum Outcome {
    Skipped(String),
    Passed(String),
    Failed(String),
}

impl Outcome {
    pub(crate) fn json(&self) -> serde_json::Value {
        match self {
            Outcome::Skipped(why) => serde_json::json!({ "status": "skipped", "reason": why }),
            Outcome::Passed(s) => serde_json::json!({ "status": "passed", "output": s }),
            Outcome::Failed(s) => serde_json::json!({ "status": "failed", "output": s }),
        }
    }

    pub(crate) fn line(&self) -> String {
        match self {
            Outcome::Skipped(why) => format!("skipped ({why})"),
            Outcome::Passed(s) => format!("passed: {s}"),
            Outcome::Failed(s) => format!("FAILED: {s}"),
        }
    }
}

fn not_installed(tool: &str) -> Outcome {
    Outcome::Skipped(format!("{tool} is not installed"))
}

fn installed(tool: &str) -> bool {
    Command::new(tool).arg("-V").output().is_ok()
}

fn nonblank_lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn first_line(bytes: &[u8]) -> String {
    nonblank_lines(bytes).into_iter().next().unwrap_or_default()
}

fn last_line(bytes: &[u8]) -> String {
    nonblank_lines(bytes).pop().unwrap_or_default()
}

/// Compiles with iverilog and runs; the testbench's last line is the verdict.
pub(crate) fn simulate(dir: &Path, files: &[String], extra: &[PathBuf]) -> Result<Outcome> {
    if !installed("iverilog") {
        return Ok(not_installed("iverilog"));
    }
    let compile = Command::new("iverilog")
        .args(["-g2005", "-DNO_ICE40_DEFAULT_ASSIGNMENTS", "-o", "tb.vvp"])
        .args(files)
        .args(extra)
        .current_dir(dir)
        .output()
        .context("running iverilog")?;
    if !compile.status.success() {
        return Ok(Outcome::Failed(first_line(&compile.stderr)));
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

/// Runs `yosys -q -s script` in `dir`.
fn yosys(dir: &Path, script: &str) -> Result<Outcome> {
    if !installed("yosys") {
        return Ok(not_installed("yosys"));
    }
    let out = Command::new("yosys")
        .args(["-q", "-s", script])
        .current_dir(dir)
        .output()
        .context("running yosys")?;
    Ok(if out.status.success() {
        Outcome::Passed(script.to_string())
    } else {
        Outcome::Failed(last_line(&out.stderr))
    })
}

/// Everything the flow learnt about one array.
#[derive(Debug)]
struct ArrayRun {
    ty: PeType,
    testbench: String,
    cycles: u64,
    rtl_sim: Outcome,
    synth: Outcome,
    resources: Option<Resources>,
    post_sim: Outcome,
    pnr: Outcome,
    fmax_mhz: Option<f64>,
}

/// Places and routes the wrapper of `ty`'s array; `Ok(None)` fmax when the
/// tool or the target has no flow.
fn place_and_route(
    dir: &Path,
    target: Target,
    ty: PeType,
    design: &[String],
    freq: f64,
) -> Result<(Outcome, Option<f64>)> {
    let Some(device) = pnr_device(target) else {
        return Ok((
            Outcome::Skipped(format!("no open place and route for {target}")),
            None,
        ));
    };
    let Some(tool) = device.tools.iter().copied().find(|t| installed(t)) else {
        return Ok((not_installed(device.tools[0]), None));
    };
    let json = format!("pnr_{target}_{}.json", ty.name());
    let script = format!("pnr_{target}_{}.ys", ty.name());
    let mut files = design.to_vec();
    files.push(format!("{FMAX_TOP}_{}.v", ty.name()));
    let text = pnr_synth_script(target, &files, &json)
        .ok_or_else(|| anyhow!("{target}: no place-and-route synthesis script"))?;
    write_atomic(&dir.join(&script), text.as_bytes())?;
    if let Outcome::Failed(msg) = yosys(dir, &script)? {
        return Ok((Outcome::Failed(format!("yosys: {msg}")), None));
    }
    let log = format!("nextpnr_{target}_{}.log", ty.name());
    let out = Command::new(tool)
        .args(device.args)
        .args([
            "--json",
            &json,
            "--freq",
            &format!("{freq}"),
            "--timing-allow-fail",
        ])
        .args(["--seed", "1", "--threads", "1"])
        .current_dir(dir)
        .output()
        .with_context(|| format!("running {tool}"))?;
    std::fs::write(dir.join(&log), &out.stderr).with_context(|| log.clone())?;
    let _ = std::fs::remove_file(dir.join(&json));
    let text = String::from_utf8_lossy(&out.stderr);
    Ok(match (out.status.success(), parse_fmax(&text)) {
        (true, Some(f)) => (
            Outcome::Passed(format!("{tool} on {}, log in {log}", device.device)),
            Some(f),
        ),
        _ => (
            Outcome::Failed(format!(
                "{tool} on {}: {}",
                device.device,
                text.lines()
                    .rfind(|l| l.starts_with("ERROR"))
                    .unwrap_or("no Fmax reported")
            )),
            None,
        ),
    })
}

fn run_array(
    args: &RtlArgs,
    arch: &Arch,
    target: Target,
    ty: PeType,
    design: &[String],
) -> Result<ArrayRun> {
    let dir = &args.out;
    let (fold, cycles) = cosim::full_fold(arch, ty, 1)?;
    let shape = ArrayShape {
        rows: arch.rows() as usize,
        cols: arch.cols() as usize,
        stages: arch.pe_stages() as usize,
    };
    let os = arch.dataflow() == Dataflow::OutputStationary;
    let double = !os && Buffering::of(arch) == Buffering::Double;
    let tb = if os {
        os_fold_testbench(shape, &fold)
    } else if double {
        // The preload at step 0 and the compute at the earliest step the
        // double-buffered rules allow (docs/timing.md), as the model does.
        let lag = 1 + 2usize.saturating_sub(shape.stages) * (shape.rows - 1);
        let one = ScheduledFold {
            case: fold,
            preload_at: 0,
            compute_at: lag,
        };
        sequence_testbench(shape, ty, Buffering::Double, &[one])
    } else {
        fold_testbench(shape, &fold)
    }
    .map_err(|e| anyhow!("{e}"))?;
    let testbench = format!("tb_fold_{}.v", ty.name());
    write_atomic(&dir.join(&testbench), tb.as_bytes())?;
    let top = array_module(arch, ty);
    let stat = format!("stat_{target}_{}.txt", ty.name());
    let netlist = format!("netlist_{target}_{}.v", ty.name());
    let script = format!("synth_{target}_{}.ys", ty.name());
    write_atomic(
        &dir.join(&script),
        yosys_script(target, &top, design, &stat, &netlist).as_bytes(),
    )?;
    if !os && !double {
        let wrapper = fmax_wrapper(ty, arch.rows(), arch.cols()).to_verilog();
        write_atomic(
            &dir.join(format!("{FMAX_TOP}_{}.v", ty.name())),
            wrapper.as_bytes(),
        )?;
    }

    let mut rtl_files = vec![testbench.clone()];
    rtl_files.extend(design.iter().cloned());
    let rtl_sim = simulate(dir, &rtl_files, &[])?;
    let synth = yosys(dir, &script)?;
    let (resources, post_sim) = if let Outcome::Passed(_) = synth {
        let stat_text = std::fs::read_to_string(dir.join(&stat)).with_context(|| stat.clone())?;
        let models = cosim::yosys_datdir().join(target.cell_models());
        let mut files = vec![testbench.clone(), netlist.clone()];
        for (name, text) in cell_models_extra(target) {
            write_atomic(&dir.join(name), text.as_bytes())?;
            files.push(name.to_string());
        }
        let post = simulate(dir, &files, &[models])?;
        (Some(parse_stat(&stat_text)), post)
    } else {
        (None, Outcome::Skipped("no netlist".into()))
    };
    let (pnr, fmax_mhz) = match args.pnr {
        Pnr::Skip => (Outcome::Skipped("--pnr skip".into()), None),
        Pnr::Auto if os => (
            Outcome::Skipped(
                "the place-and-route wrapper drives weight-stationary arrays only".into(),
            ),
            None,
        ),
        Pnr::Auto if double => (
            Outcome::Skipped(
                "the place-and-route wrapper drives single-buffered weights only".into(),
            ),
            None,
        ),
        Pnr::Auto => {
            let freq = args.freq.unwrap_or(arch.spec().clock.frequency_mhz);
            place_and_route(dir, target, ty, design, freq)?
        }
    };
    Ok(ArrayRun {
        ty,
        testbench,
        cycles,
        rtl_sim,
        synth,
        resources,
        post_sim,
        pnr,
        fmax_mhz,
    })
}

/// What running one program on the core gave.
#[derive(Debug)]
struct CoreRun {
    ty: PeType,
    program: String,
    testbench: String,
    model_cycles: u64,
    expected: String,
    sim: Outcome,
}

/// Writes the core of `run`'s type, its images and testbench, and
/// simulates it; the verdict must be exactly `expected`.
fn run_core(dir: &Path, program: String, run: &cosim::ProgramRun) -> Result<CoreRun> {
    let files = cosim::core_files(run)?;
    for (name, text) in &files {
        write_atomic(&dir.join(name), text.as_bytes())?;
    }
    let ty = run.core.ty;
    let testbench = format!("tb_core_{}.v", ty.name());
    let mut sources = vec![testbench.clone()];
    sources.extend(
        files
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| n.ends_with(".v") && *n != testbench),
    );
    let expected = run.expected_verdict();
    let sim = match simulate(dir, &sources, &[])? {
        Outcome::Passed(v) => match run.verdict_matches(&v) {
            Ok(()) => Outcome::Passed(v),
            Err(e) => Outcome::Failed(e),
        },
        o => o,
    };
    Ok(CoreRun {
        ty,
        program,
        testbench,
        model_cycles: run.cycles,
        expected,
        sim,
    })
}

/// The array module of `ty` in `arch`'s dataflow.
fn array_module(arch: &Arch, ty: PeType) -> String {
    match arch.dataflow() {
        Dataflow::WeightStationary => ty.array_module(),
        Dataflow::OutputStationary => os_array_module(ty),
    }
}

/// The processing-element module of `ty` in `arch`'s dataflow.
fn pe_module(arch: &Arch, ty: PeType) -> String {
    match arch.dataflow() {
        Dataflow::WeightStationary => ty.pe_module(),
        Dataflow::OutputStationary => os_pe_module(ty),
    }
}

fn run_cores(args: &RtlArgs, arch: &Arch, types: &[PeType]) -> Result<Vec<CoreRun>> {
    let dir = &args.out;
    if arch.dataflow() == Dataflow::OutputStationary
        && tessera_rtl::core_os::check_os_arch(arch).is_err()
    {
        // No core for this description (`run` refuses `--program` for it).
        return Ok(Vec::new());
    }
    match &args.program {
        Some(path) => {
            let p = crate::files::load_program(path, Some(arch))?;
            let spad = match &args.spad {
                Some(f) => std::fs::read(f).with_context(|| shown(f))?,
                None => Vec::new(),
            };
            let cap = arch.scratchpad_bytes().get();
            if spad.len() as u64 > cap {
                bail!(
                    "--spad {}: {} bytes do not fit the {cap}-byte scratchpad",
                    shown(args.spad.as_deref().unwrap_or(Path::new(""))),
                    spad.len()
                );
            }
            let hbm = match &args.hbm {
                Some(f) => std::fs::read(f).with_context(|| shown(f))?,
                None => Vec::new(),
            };
            let hcap = arch.capacity(tessera_isa::program::MemSpace::Hbm).get();
            if hbm.len() as u64 > hcap {
                bail!(
                    "--hbm {}: {} bytes do not fit the {hcap}-byte HBM",
                    shown(args.hbm.as_deref().unwrap_or(Path::new(""))),
                    hbm.len()
                );
            }
            let run = cosim::run_program_hbm(p, &hbm, &spad, &[])
                .map_err(|e| anyhow!("{}: {e}", shown(path)))?;
            Ok(vec![run_core(dir, shown(path), &run)?])
        }
        None => types
            .iter()
            .map(|ty| {
                let run = cosim::builtin_program(arch, *ty)?;
                run_core(dir, "built-in".into(), &run)
            })
            .collect(),
    }
}

/// `tessera rtl`.
pub fn run(args: &RtlArgs) -> Result<()> {
    let arch = hw::load(&args.hw)?;
    let target = Target::from_name(&args.target)
        .ok_or_else(|| anyhow!("--target {}: unknown", args.target))?;
    if let Some(f) = args.freq {
        if !(f.is_finite() && f > 0.0 && f <= 2000.0) {
            bail!("--freq {f}: must be a clock in MHz between 0 and 2000");
        }
    }
    // The output-stationary core's rules (checked again by the generator).
    let os_core = match arch.dataflow() {
        Dataflow::OutputStationary => tessera_rtl::core_os::check_os_arch(&arch),
        Dataflow::WeightStationary => Ok(()),
    };
    if let (Err(e), Some(_)) = (&os_core, &args.program) {
        bail!("{}: {e}", args.hw);
    }
    let sources = array_sources(&arch).map_err(|e| anyhow!("{}: {e}", args.hw))?;
    let types = pe_types(&arch).map_err(|e| anyhow!("{}: {e}", args.hw))?;
    std::fs::create_dir_all(&args.out).with_context(|| shown(&args.out))?;
    let dir = &args.out;

    let mut design_files = Vec::new();
    for (name, text) in &sources {
        write_atomic(&dir.join(name), text.as_bytes())?;
        design_files.push(name.clone());
    }
    let mut runs = Vec::new();
    for &ty in &types {
        let design: Vec<String> = [pe_module(&arch, ty), array_module(&arch, ty)]
            .iter()
            .map(|m| format!("{m}.v"))
            .collect();
        runs.push(run_array(args, &arch, target, ty, &design)?);
    }
    let cores = run_cores(args, &arch, &types)?;
    let vector = crate::rtl_vector::run(dir, &arch, args.vector_unit == VectorUnit::Run)?;
    let core_json: Vec<serde_json::Value> = cores
        .iter()
        .map(|c| {
            serde_json::json!({
                "input": c.ty.name(),
                "top": tessera_rtl::core::core_module_name(c.ty),
                "program": c.program,
                "testbench": c.testbench,
                "timing_model_cycles": c.model_cycles,
                "expected_verdict": c.expected,
                "rtl_simulation": c.sim.json(),
            })
        })
        .collect();

    let arrays: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| {
            let res = r.resources.as_ref().map(|r| {
                serde_json::json!({ "luts": r.luts, "flip_flops": r.flip_flops, "dsps": r.dsps, "block_rams": r.block_rams, "cells": r.cells })
            });
            serde_json::json!({
                "input": r.ty.name(),
                "top": array_module(&arch, r.ty),
                "testbench": r.testbench,
                "testbench_cycles_expected": r.cycles,
                "rtl_simulation": r.rtl_sim.json(),
                "synthesis": r.synth.json(),
                "resources": res,
                "post_synthesis_simulation": r.post_sim.json(),
                "place_and_route": r.pnr.json(),
                "fmax_mhz": r.fmax_mhz,
            })
        })
        .collect();
    let report = serde_json::json!({
        "hardware": arch.name(),
        "fingerprint": format!("{:016x}", arch.fingerprint()),
        "array": {
            "rows": arch.rows(),
            "cols": arch.cols(),
            "dataflow": arch.dataflow().to_string(),
            "pe_pipeline_stages": arch.pe_stages(),
        },
        "target": target.name(),
        "design": design_files,
        "arrays": arrays,
        "cores": core_json,
        "cores_not_generated": os_core.as_ref().err().map(ToString::to_string),
        "vector": vector.json(),
    });
    let mut json = serde_json::to_string_pretty(&report)?;
    json.push('\n');
    write_atomic(&dir.join("report.json"), json.as_bytes())?;

    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Tessera RTL: `{}` ({}x{} {} array, {} pipeline stage(s), {target})\n",
        arch.name(),
        arch.rows(),
        arch.cols(),
        arch.dataflow(),
        arch.pe_stages()
    );
    let _ = writeln!(md, "- design: {}", design_files.join(", "));
    for r in &runs {
        let _ = writeln!(md, "\n## {} array\n", r.ty.name());
        let _ = writeln!(md, "- testbench: {} (a full fold from the functional simulator, {} cycles in the timing model)", r.testbench, r.cycles);
        let _ = writeln!(
            md,
            "- RTL simulation (Icarus Verilog): {}",
            r.rtl_sim.line()
        );
        let _ = writeln!(md, "- synthesis (Yosys): {}", r.synth.line());
        if let Some(res) = &r.resources {
            let _ = writeln!(
                md,
                "- resources: {} LUTs, {} flip-flops, {} DSPs, {} block RAMs",
                res.luts, res.flip_flops, res.dsps, res.block_rams
            );
        }
        let _ = writeln!(md, "- post-synthesis simulation: {}", r.post_sim.line());
        let _ = writeln!(md, "- place and route: {}", r.pnr.line());
        match r.fmax_mhz {
            Some(f) => {
                let _ = writeln!(md, "- Fmax: {f:.2} MHz");
            }
            None => {
                let _ = writeln!(md, "- Fmax: not measured");
            }
        }
    }
    if let Err(e) = &os_core {
        let _ = writeln!(md, "\n## matrix core\n\n- not generated: {e}");
    }
    for c in &cores {
        let _ = writeln!(md, "\n## {} matrix core\n", c.ty.name());
        let _ = writeln!(
            md,
            "- program: {} ({} cycles in the timing model; expected `{}`)",
            c.program, c.model_cycles, c.expected
        );
        let _ = writeln!(
            md,
            "- RTL simulation (Icarus Verilog, {}): {}",
            c.testbench,
            c.sim.line()
        );
    }
    md.push_str(&vector.markdown());
    write_atomic(&dir.join("report.md"), md.as_bytes())?;
    print(&md)?;

    if let Outcome::Failed(msg) = &vector.sim {
        bail!("{}: vector unit simulation failed: {msg}", shown(dir));
    }

    for c in &cores {
        if let Outcome::Failed(msg) = &c.sim {
            bail!(
                "{}: {} matrix core simulation failed: {msg}",
                shown(dir),
                c.ty.name()
            );
        }
    }
    for r in &runs {
        for (what, o) in [
            ("RTL simulation", &r.rtl_sim),
            ("synthesis", &r.synth),
            ("post-synthesis simulation", &r.post_sim),
        ] {
            if let Outcome::Failed(msg) = o {
                bail!("{}: {} {what} failed: {msg}", shown(dir), r.ty.name());
            }
        }
    }
    Ok(())
}
