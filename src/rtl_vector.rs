//! `tessera rtl`'s vector-unit step: writes the vector unit's modules (the
//! lane, the reduction lane, the conversions, the unit of `vector.lanes`
//! lanes) and their self-checking testbench with vectors from the
//! functional simulator's numerics (`tessera::vec_vectors`), runs it under
//! Icarus Verilog; `src/rtl_cmd.rs` puts the result in its report's `vector`
//! section.

use std::path::Path;

use anyhow::Result;
use tessera::vec_vectors::{default_vectors, vector_files};
use tessera_isa::Arch;
use tessera_rtl::vec_lane::VEC_LANE;
use tessera_rtl::vec_op::VecOp;
use tessera_rtl::vec_tb::VEC_TB;
use tessera_rtl::vec_unit::VEC_UNIT;

use crate::files::write_atomic;
use crate::rtl_cmd::{simulate, Outcome};

/// The operations the lane does not build, as assembly names them.
fn refused() -> Vec<String> {
    VecOp::all()
        .into_iter()
        .filter(|o| o.lane_support().is_err())
        .map(VecOp::name)
        .collect()
}

/// What the vector step of `tessera rtl` did.
#[derive(Debug)]
pub struct VectorCheck {
    /// Design files written.
    pub design: Vec<String>,
    pub lanes: u32,
    pub special_lanes: u32,
    pub latency: u32,
    pub vectors: usize,
    pub reductions: usize,
    /// The testbench's verdict under Icarus Verilog.
    pub sim: Outcome,
}

impl VectorCheck {
    /// The report's `vector` section.
    pub fn json(&self) -> serde_json::Value {
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
            "rtl_simulation": self.sim.json(),
        })
    }

    /// The report's markdown section.
    pub fn markdown(&self) -> String {
        let sim = self.sim.line();
        format!(
            "\n## vector unit\n\n- design: {} ({} lanes, {} special-function lanes, {} pipeline cycle(s) per lane)\n- built: v.bin add/sub/mul/max/min/cmp.*, v.un copy (casts)/neg/abs/square/relu/sign/nonfinite, v.axpby, v.sel, v.reduce; special-function lanes: {}; not built: {}\n- testbench: {VEC_TB} ({} lane vectors, {} reduction steps from the functional simulator's numerics)\n- RTL simulation (Icarus Verilog): {sim}\n",
            self.design.join(", "),
            self.lanes,
            self.special_lanes,
            self.latency,
            VecOp::special_summary(),
            refused().join(", "),
            self.vectors,
            self.reductions
        )
    }
}

/// Writes the vector unit of `arch` and its testbench into `dir` and, when
/// `simulate`, runs it.
///
/// # Errors
/// A file that cannot be written, or a tool that cannot be started.
pub fn run(dir: &Path, arch: &Arch, simulate_unit: bool) -> Result<VectorCheck> {
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
    let sim = if simulate_unit {
        simulate(dir, &sources, &[])?
    } else {
        Outcome::Skipped("--vector-unit skip".into())
    };
    Ok(VectorCheck {
        design: sources.into_iter().filter(|n| n != VEC_TB).collect(),
        lanes: arch.spec().vector.lanes,
        special_lanes: arch.spec().vector.special_lanes,
        latency: arch.spec().vector.latency_cycles.max(1),
        vectors: set.lanes.len(),
        reductions: set.steps.len(),
        sim,
    })
}
