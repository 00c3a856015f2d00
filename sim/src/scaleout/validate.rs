//! Validation cases for the scale-out model from the calibration data:
//! the Megatron-LM 2021 weak-scaling table (Narayanan et al. SC'21
//! Table 1: GPT 1.7B to 1T on 32 to 3072 A100s) and the per-layer times of
//! the 22B model (Korthikanti et al. 2022 Table 4).

use crate::gpu::csv::Table;
use crate::model_error::ModelError;
use crate::scaleout::collective::AllReduceAlgo;
use crate::scaleout::plan::{GradSync, Offload, Plan, Schedule, Zero};
use crate::scaleout::step::{estimate, Estimate, LayerTimer};
use crate::scaleout::topology::Topology;
use crate::units::Seconds;
use crate::workload::{
    self, AttentionKernel, Fusion, Precision, Recompute, Split, Workload, PRESETS,
};

/// One row of the weak-scaling table.
#[derive(Debug, Clone, PartialEq)]
pub struct WeakScalingCase {
    /// CSV line.
    pub line: usize,
    /// The model (a built-in preset with the row's layers and hidden size).
    pub job: Workload,
    pub devices: u32,
    pub tp: u32,
    pub pp: u32,
    pub dp: u32,
    pub global_batch: u32,
    /// Published TFLOP/s per GPU (Megatron's Eq. 3 convention).
    pub tflops: f64,
}

/// One row of the 22B per-layer table.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerCase {
    pub line: usize,
    /// Mode as the source names it.
    pub mode: String,
    pub job: Workload,
    pub tp: u32,
    pub sequence_parallel: bool,
    /// Published forward + backward time of one layer, seconds.
    pub seconds: f64,
}

fn megatron_job(layers: u32, hidden: u32, line: usize, file: &str) -> Result<Workload, ModelError> {
    let row = PRESETS
        .iter()
        .find(|r| r.1 == layers && r.2 == hidden)
        .ok_or_else(|| ModelError::Data {
            file: file.to_string(),
            detail: format!("row {line}: no preset with {layers} layers and hidden {hidden}"),
        })?;
    let mut job = workload::preset(row.0)?;
    job.precision = Precision::Mixed16;
    job.attention = AttentionKernel::Unfused;
    // Megatron fuses bias+GELU, bias+dropout+add and scale+mask+softmax
    // (Narayanan et al. 2021, Sec. 4.2).
    job.fusion = Fusion::Fused;
    Ok(job)
}

fn num(t: &Table, r: usize, c: &str) -> Result<u32, ModelError> {
    Ok(t.number(r, c)? as u32)
}

/// The weak-scaling rows (`megatron_ptdp_2021`).
///
/// # Errors
/// [`ModelError::Data`] for a malformed row.
pub fn weak_scaling_cases(text: &str, file: &str) -> Result<Vec<WeakScalingCase>, ModelError> {
    let t = Table::parse(text, file)?;
    let mut out = Vec::new();
    for r in 0..t.len() {
        if t.get(r, "group")? != "megatron_ptdp_2021" {
            continue;
        }
        let line = r + 2;
        out.push(WeakScalingCase {
            line,
            job: megatron_job(num(&t, r, "n_layers")?, num(&t, r, "hidden")?, line, file)?,
            devices: num(&t, r, "n_accel")?,
            tp: num(&t, r, "tp")?,
            pp: num(&t, r, "pp")?,
            dp: num(&t, r, "dp")?,
            global_batch: num(&t, r, "global_batch_seqs")?,
            tflops: t.number(r, "value")?,
        });
    }
    Ok(out)
}

/// The 22B per-layer rows (`megatron_layer_time_2022`).
///
/// # Errors
/// [`ModelError::Data`] for a malformed row.
pub fn layer_cases(text: &str, file: &str) -> Result<Vec<LayerCase>, ModelError> {
    let t = Table::parse(text, file)?;
    let mut out = Vec::new();
    for r in 0..t.len() {
        if t.get(r, "group")? != "megatron_layer_time_2022" {
            continue;
        }
        let mode = t.get(r, "other_parallel")?.to_string();
        let mut job = workload::preset("gpt-22b")?;
        job.attention = AttentionKernel::Unfused;
        job.fusion = Fusion::Fused;
        job.micro_batch = num(&t, r, "micro_batch")?;
        job.recompute = if mode.contains("full recompute") {
            Recompute::Full
        } else if mode.contains("selective") {
            Recompute::Selective
        } else {
            Recompute::None
        };
        out.push(LayerCase {
            line: r + 2,
            sequence_parallel: mode.contains("sequence parallelism"),
            mode,
            job,
            tp: num(&t, r, "tp")?,
            seconds: t.number(r, "value")? * 1e-3,
        });
    }
    Ok(out)
}

/// Megatron's Eq. 3: FLOPs of one step with full recomputation,
/// `96 B s l h^2 (1 + s/6h + V/16lh)`.
pub fn megatron_step_flops(job: &Workload, global_batch: u32) -> f64 {
    let (b, s, l, h, v) = (
        f64::from(global_batch),
        f64::from(job.seq),
        f64::from(job.layers),
        f64::from(job.hidden),
        f64::from(job.vocab),
    );
    96.0 * b * s * l * h * h * (1.0 + s / (6.0 * h) + v / (16.0 * l * h))
}

/// Predicts a weak-scaling row: the published degrees with full
/// recomputation, gradients reduced after the backward pass, and the micro-batch (1, 2, 4, 8) and interleaving
/// (1F1B or 2, 3, 4, 6 chunks) the authors tuned chosen as the fastest
/// that fits. Returns the estimate and predicted TFLOP/s per GPU.
///
/// # Errors
/// When no configuration fits or the device cannot run the job.
pub fn predict_weak_scaling(
    timer: &dyn LayerTimer,
    topo: &Topology,
    case: &WeakScalingCase,
) -> Result<(Estimate, f64), ModelError> {
    let mut best: Option<Estimate> = None;
    for micro_batch in [1, 2, 4, 8] {
        for schedule in [
            Schedule::OneFOneB,
            Schedule::Interleaved { v: 2 },
            Schedule::Interleaved { v: 3 },
            Schedule::Interleaved { v: 4 },
            Schedule::Interleaved { v: 6 },
        ] {
            let plan = Plan {
                tp: case.tp,
                pp: case.pp,
                dp: case.dp,
                micro_batch,
                schedule,
                zero: Zero::None,
                sequence_parallel: false,
                recompute: Recompute::Full,
                offload: Offload::None,
                all_reduce: AllReduceAlgo::Ring,
                // Megatron-LM 2021 reduced gradients after the backward pass.
                grad_sync: GradSync::AfterBackward,
            };
            if let Ok(e) = estimate(
                timer,
                topo,
                &case.job,
                &plan,
                case.devices,
                case.global_batch,
            ) {
                if e.fits && best.as_ref().is_none_or(|b| e.step < b.step) {
                    best = Some(e);
                }
            }
        }
    }
    let e = best.ok_or_else(|| ModelError::Plan {
        plan: format!("line {}", case.line),
        rule: "no micro-batch and schedule fits".into(),
    })?;
    let tflops = megatron_step_flops(&case.job, case.global_batch)
        / e.step.0
        / f64::from(case.devices)
        / 1e12;
    Ok((e, tflops))
}

/// Predicts one layer's forward + backward time: compute from `timer`
/// plus the tensor-parallel all-reduces (4, or 6 with full recompute).
///
/// # Errors
/// When the device cannot run the job.
pub fn predict_layer(
    timer: &dyn LayerTimer,
    topo: &Topology,
    case: &LayerCase,
) -> Result<Seconds, ModelError> {
    let split = Split {
        tp: case.tp,
        sequence_parallel: case.sequence_parallel,
    };
    let [f, b, r] = timer.layer(&case.job, split)?;
    let bytes = f64::from(case.job.micro_batch)
        * f64::from(case.job.seq)
        * f64::from(case.job.hidden)
        * case.job.precision.activation_bytes();
    let ar = topo.all_reduce(AllReduceAlgo::Ring, bytes, case.tp, 1);
    let n = if case.job.recompute == Recompute::Full {
        6.0
    } else {
        4.0
    };
    Ok(f + b + r + ar * n)
}

/// The Selene topology of the 2021 runs: DGX A100 nodes (NVLink 3, 300
/// GB/s per GPU per direction) with 8 x 200 Gb/s HDR per node (25 GB/s
/// per GPU), from `interconnect.csv`.
pub fn selene() -> Topology {
    Topology::dgx(300.0, 25.0)
}
