//! The flow behind `tessera gemm`: the compiler lowers each GEMM of a
//! SCALE-Sim topology to a kernel, the timing simulator runs it, and the
//! per-layer figures are rendered as JSON and as a CSV shaped like
//! SCALE-Sim's `COMPUTE_REPORT.csv`. Definitions (also in `docs/gemm.md`):
//!
//! - total cycles (incl. prefetch): the whole kernel, cycle 0 to the last store;
//! - total cycles: from the array's first busy cycle to the end;
//! - compute cycles: cycles the array is busy (preloading or streaming);
//! - stall cycles: total cycles minus compute cycles;
//! - overall utilization: MACs / (rows x cols x total cycles);
//! - compute utilization: MACs / (rows x cols x compute cycles);
//! - mapping efficiency: MACs / (rows x cols x cycles rows stream in);
//! - DRAM read/write bytes: bytes the DMA moved from/to HBM.

use std::fmt::Write as _;

use anyhow::{anyhow, Result};
use serde_json::{json, Value};
use tessera_compiler::gemm::{gemm_kernel, plan, CInit, GemmSpec, HbmMatrix, Layout};
use tessera_compiler::scalesim::TopologyLayer;
use tessera_isa::{Arch, DType, Dataflow, Queue};
use tessera_sim::timing;

/// Figures of one simulated GEMM.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerStats {
    pub name: String,
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub total_cycles_incl_prefetch: u64,
    pub total_cycles: u64,
    pub compute_cycles: u64,
    pub stall_cycles: u64,
    pub macs: u64,
    pub overall_util_pct: f64,
    pub mapping_efficiency_pct: f64,
    pub compute_util_pct: f64,
    pub dram_read_bytes: u64,
    pub dram_write_bytes: u64,
    /// Instructions in the generated kernel.
    pub instructions: u64,
}

/// Lowers `layer` with `dtype` operands (A at 0, B and C on the next 1 MiB
/// boundaries, packed, C = A * B) and times it on `arch`.
///
/// # Errors
/// The compiler's or the simulator's error, prefixed with the layer name.
pub fn study_layer(arch: &Arch, layer: &TopologyLayer, dtype: DType) -> Result<LayerStats> {
    let e = dtype.size_bytes();
    let mib = |x: u64| x.div_ceil(1 << 20) << 20;
    let mat = |addr| HbmMatrix {
        addr,
        row_stride: 0,
        dtype,
        layout: Layout::RowMajor,
    };
    let bytes = |r: u64, c: u64| {
        r.checked_mul(c)
            .and_then(|x| x.checked_mul(e))
            .filter(|x| *x <= arch.hbm_bytes().get())
            .ok_or_else(|| {
                anyhow!(
                    "layer `{}`: a {r} x {c} operand does not fit the {}-byte HBM",
                    layer.name,
                    arch.hbm_bytes().get()
                )
            })
    };
    let b_addr = mib(bytes(layer.m, layer.k)?);
    let c_addr = b_addr + mib(bytes(layer.k, layer.n)?);
    let spec = GemmSpec {
        name: "gemm".into(),
        m: layer.m,
        n: layer.n,
        k: layer.k,
        a: mat(0),
        b: mat(b_addr),
        c: mat(c_addr),
        c_init: CInit::Zero,
    };
    let ctx = |e: String| anyhow!("layer `{}`: {e}", layer.name);
    let program = gemm_kernel(arch, &spec).map_err(|e| ctx(e.to_string()))?;
    let tiling = plan(arch, &spec).map_err(|e| ctx(e.to_string()))?;
    let mut first_busy = u64::MAX;
    let report = timing::run(&program, timing::DEFAULT_LIMIT, &mut |ev| {
        if ev.site.queue == Queue::Matrix && ev.end > ev.start {
            first_busy = first_busy.min(ev.start);
        }
    })
    .map_err(|e| ctx(e.to_string()))?;
    let pes = u64::from(arch.rows()) * u64::from(arch.cols());
    let macs = report.counters.macs.iter().sum::<u64>();
    let total = report.cycles - first_busy.min(report.cycles);
    let compute = report.engines[Queue::Matrix.index()].busy;
    // Cycles in which rows stream into the array, over all folds.
    let streamed = match tiling.dataflow {
        Dataflow::WeightStationary => {
            tiling.n.div_ceil(tiling.n_tile) * tiling.k.div_ceil(tiling.k_chunk) * tiling.m
        }
        Dataflow::OutputStationary => {
            tiling.m.div_ceil(tiling.m_block) * tiling.n.div_ceil(tiling.n_tile) * tiling.k
        }
    };
    let pct = |cycles: u64| {
        if cycles == 0 {
            0.0
        } else {
            100.0 * macs as f64 / (pes * cycles) as f64
        }
    };
    Ok(LayerStats {
        name: layer.name.clone(),
        m: layer.m,
        n: layer.n,
        k: layer.k,
        total_cycles_incl_prefetch: report.cycles,
        total_cycles: total,
        compute_cycles: compute,
        stall_cycles: total.saturating_sub(compute),
        macs,
        overall_util_pct: pct(total),
        mapping_efficiency_pct: pct(streamed),
        compute_util_pct: pct(compute),
        dram_read_bytes: report.counters.dma_load_source_bytes,
        dram_write_bytes: report.counters.dma_store_dest_bytes,
        instructions: program.len() as u64,
    })
}

/// The CSV with SCALE-Sim's `COMPUTE_REPORT.csv` columns (and its trailing
/// commas), then the layer name, compute cycles and DRAM bytes.
pub fn compute_report_csv(layers: &[LayerStats]) -> String {
    let mut out = String::from(
        "LayerID, Total Cycles (incl. prefetch), Total Cycles, Stall Cycles, Overall Util %, \
         Mapping Efficiency %, Compute Util %, Layer, Compute Cycles, DRAM Read Bytes, DRAM Write Bytes,\n",
    );
    for (i, l) in layers.iter().enumerate() {
        let _ = writeln!(
            out,
            "{i}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {},",
            l.total_cycles_incl_prefetch,
            l.total_cycles,
            l.stall_cycles,
            l.overall_util_pct,
            l.mapping_efficiency_pct,
            l.compute_util_pct,
            l.name,
            l.compute_cycles,
            l.dram_read_bytes,
            l.dram_write_bytes,
        );
    }
    out
}

/// The JSON report: the hardware and one object per layer.
pub fn report_json(arch: &Arch, dtype: DType, layers: &[LayerStats]) -> Value {
    let rows: Vec<Value> = layers
        .iter()
        .map(|l| {
            json!({
                "layer": l.name, "m": l.m, "n": l.n, "k": l.k,
                "total_cycles_incl_prefetch": l.total_cycles_incl_prefetch,
                "total_cycles": l.total_cycles,
                "compute_cycles": l.compute_cycles,
                "stall_cycles": l.stall_cycles,
                "macs": l.macs,
                "overall_util_pct": l.overall_util_pct,
                "mapping_efficiency_pct": l.mapping_efficiency_pct,
                "compute_util_pct": l.compute_util_pct,
                "dram_read_bytes": l.dram_read_bytes,
                "dram_write_bytes": l.dram_write_bytes,
                "instructions": l.instructions,
            })
        })
        .collect();
    json!({
        "hardware": arch.name(),
        "array": { "rows": arch.rows(), "cols": arch.cols(), "dataflow": arch.dataflow().to_string() },
        "dtype": dtype.name(),
        "layers": rows,
    })
}
