//! `tessera rtl`'s vector-unit step: writes the vector unit's modules (the
//! lane, the reduction lane, the conversions, the unit of `vector.lanes`
//! lanes) and their self-checking testbench with vectors from the
//! functional simulator's numerics (`tessera::vec_vectors`), runs it under
//! Icarus Verilog, and adds a `vector` section to the report
//! `src/rtl_cmd.rs` has written (one call, [`extend_report`]).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use tessera::vec_vectors::{default_vectors, vector_files};
use tessera_isa::Arch;
use tessera_rtl::vec_lane::VEC_LANE;
use tessera_rtl::vec_op::VecOp;
use tessera_rtl::vec_tb::VEC_TB;
use tessera_rtl::vec_unit::VEC_UNIT;

use crate::files::{print, shown, write_atomic};

/// Compiles the files named `sources` in `dir` with Icarus Verilog and runs
/// them; `Ok(None)` when iverilog is not installed, else the verdict line
/// (`PASS ...`, `FAIL ...` or the compiler's first error).
pub fn icarus(dir: &Path, sources: &[String]) -> Result<Option<String>> {
    if Command::new("iverilog").arg("-V").output().is_err() {
        return Ok(None);
    }
    let compile = Command::new("iverilog")
        .args(["-g2005", "-Wall", "-o", "tb_vec.vvp"])
        .args(sources)
        .current_dir(dir)
        .output()
        .context("running iverilog")?;
    if !compile.status.success() {
        let err = String::from_utf8_lossy(&compile.stderr);
        return Ok(Some(format!(
            "FAIL iverilog: {}",
            err.lines().next().unwrap_or("")
        )));
    }
    let run = Command::new("vvp")
        .args(["-n", "tb_vec.vvp"])
        .current_dir(dir)
        .output()
        .context("running vvp")?;
    let _ = std::fs::remove_file(dir.join("tb_vec.vvp"));
    let out = String::from_utf8_lossy(&run.stdout);
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    let verdict = out
        .lines()
        .find(|l| l.starts_with("PASS"))
        .map(str::to_string)
        .unwrap_or_else(|| {
            if fails.is_empty() {
                "FAIL no verdict".into()
            } else {
                fails.join("; ")
            }
        });
    Ok(Some(verdict))
}

/// The operations the lane does not build, as assembly names them.
fn refused() -> Vec<String> {
    VecOp::all()
        .into_iter()
        .filter(|o| o.lane_support().is_err())
        .map(VecOp::name)
        .collect()
}

/// What the vector step of `tessera rtl` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorCheck {
    /// Design files written.
    pub design: Vec<String>,
    pub lanes: u32,
    pub special_lanes: u32,
    pub latency: u32,
    pub vectors: usize,
    pub reductions: usize,
    /// The testbench's verdict, `None` when iverilog is missing.
    pub verdict: Option<String>,
}

impl VectorCheck {
    /// Whether the simulation ran and failed.
    pub fn failed(&self) -> bool {
        self.verdict
            .as_deref()
            .is_some_and(|v| !v.starts_with("PASS"))
    }

    /// The report's `vector` section.
    pub fn json(&self) -> serde_json::Value {
        let sim = match &self.verdict {
            None => {
                serde_json::json!({ "status": "skipped", "reason": "iverilog is not installed" })
            }
            Some(v) if v.starts_with("PASS") => {
                serde_json::json!({ "status": "passed", "output": v })
            }
            Some(v) => serde_json::json!({ "status": "failed", "output": v }),
        };
        serde_json::json!({
            "top": VEC_UNIT,
            "lane": VEC_LANE,
            "lanes": self.lanes,
            "special_lanes": self.special_lanes,
            "lane_latency_cycles": self.latency,
            "design": self.design,
            "testbench": VEC_TB,
            "vectors": self.vectors,
            "reduction_steps": self.reductions,
            "refused": refused(),
            "rtl_simulation": sim,
        })
    }

    /// The report's markdown section.
    pub fn markdown(&self) -> String {
        let sim = match &self.verdict {
            None => "skipped (iverilog is not installed)".to_string(),
            Some(v) if v.starts_with("PASS") => format!("passed: {v}"),
            Some(v) => format!("FAILED: {v}"),
        };
        format!(
            "\n## vector unit\n\n- design: {} ({} lanes, {} special-function lanes, {} pipeline cycle(s) per lane)\n- built: v.bin add/sub/mul/max/min/cmp.*, v.un copy (casts)/neg/abs/square/relu/sign/nonfinite, v.axpby, v.sel, v.reduce; special-function lanes: v.bin div, v.un sqrt/rsqrt/recip; not built: {}\n- testbench: {VEC_TB} ({} lane vectors, {} reduction steps from the functional simulator's numerics)\n- RTL simulation (Icarus Verilog): {sim}\n",
            self.design.join(", "),
            self.lanes,
            self.special_lanes,
            self.latency,
            refused().join(", "),
            self.vectors,
            self.reductions
        )
    }
}

/// Writes the vector unit of `arch` and its testbench into `dir` and runs it.
///
/// # Errors
/// A file that cannot be written, or a tool that cannot be started.
pub fn run(dir: &Path, arch: &Arch) -> Result<VectorCheck> {
    let set = default_vectors();
    let files = vector_files(arch, &set)?;
    for (name, text) in &files {
        write_atomic(&dir.join(name), text.as_bytes())?;
    }
    let sources: Vec<String> = files
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| n.ends_with(".v"))
        .collect();
    let verdict = icarus(dir, &sources)?;
    Ok(VectorCheck {
        design: sources.into_iter().filter(|n| n != VEC_TB).collect(),
        lanes: arch.spec().vector.lanes,
        special_lanes: arch.spec().vector.special_lanes,
        latency: arch.spec().vector.latency_cycles.max(1),
        vectors: set.lanes.len(),
        reductions: set.steps.len(),
        verdict,
    })
}

/// Runs the vector step for `arch` in `dir` and adds its section to the
/// `report.json` and `report.md` there (each rewritten whole, atomically).
///
/// # Errors
/// A file that cannot be read or written, or a failed simulation.
pub fn extend_report(dir: &Path, arch: &Arch) -> Result<()> {
    let check = run(dir, arch)?;
    let path = dir.join("report.json");
    let mut report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).with_context(|| shown(&path))?)
            .with_context(|| shown(&path))?;
    if let Some(map) = report.as_object_mut() {
        map.insert("vector".into(), check.json());
    }
    let mut json = serde_json::to_string_pretty(&report)?;
    json.push('\n');
    write_atomic(&path, json.as_bytes())?;
    let md_path = dir.join("report.md");
    let mut md = std::fs::read_to_string(&md_path).with_context(|| shown(&md_path))?;
    md.push_str(&check.markdown());
    write_atomic(&md_path, md.as_bytes())?;
    print(&check.markdown())?;
    if check.failed() {
        bail!(
            "{}: vector unit simulation failed: {}",
            shown(dir),
            check.verdict.as_deref().unwrap_or("")
        );
    }
    Ok(())
}
