//! `tessera compare`: one training job on a Tessera chip (compiled and
//! simulated, [`crate::step_sim`]) beside the same job on a GPU (the
//! calibrated device model, `tessera_sim::gpu`): step time, tokens/s, MFU,
//! energy per step and tokens per joule, with the ratio of each.
//!
//! The GPU job mirrors the Tessera one: same model shape, micro-batch,
//! sequence and gradient accumulation; bf16-mixed and fp16-mixed map to
//! the GPU's 16-bit mixed precision, fp32 to TF32 where the GPU has it;
//! fused attention on Tessera is compared with FlashAttention-2 on the GPU
//! (and unfused with unfused); the GPU runs framework (unfused) elementwise
//! kernels, as Tessera does today. MFU on both sides uses PaLM's model FLOPs
//! over each device's dense peak at that precision.
//!
//! On `N` devices ([`compare_scaled`]) both sides run the scale-out model
//! (`tessera_sim::scaleout`): the GPU with its device model as layer timer,
//! Tessera with [`crate::tessera_timer::TesseraTimer`] (compiler plus timing
//! simulator), each on its default topology; data parallel over `N` with
//! the job's micro-batch by default, or each side's fastest fitting plan
//! ([`PlanChoice::Search`]). Energy on `N` devices is `N x step x` the
//! average power of the one-device step (idle time in communication is
//! charged at that power: an upper bound).

use anyhow::{Context, Result};
use serde_json::{json, Value};
use tessera_compiler::model::{Family, ModelConfig};
use tessera_compiler::setup::{Precision, TrainingSetup};
use tessera_isa::Arch;
use tessera_sim::gpu::model::{GpuModel, StepLayout};
use tessera_sim::scaleout::collective::AllReduceAlgo;
use tessera_sim::scaleout::search::{search, SearchSpace};
use tessera_sim::scaleout::{
    estimate, Estimate, GradSync, LayerTimer, Offload, Plan, Schedule, Topology, Zero,
};
use tessera_sim::workload::{self, AttentionKernel, Masking, Mlp, Recompute, Workload};

use crate::step_sim::{simulate_step, StepFigures};
use crate::tessera_timer::{default_topology, gpu_with_links, TesseraTimer};

/// Figures of one device on the job.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceFigures {
    /// Device name.
    pub device: String,
    /// Seconds per step.
    pub step_seconds: f64,
    /// Tokens per second.
    pub tokens_per_second: f64,
    /// Model FLOPs utilization.
    pub mfu: f64,
    /// Joules per step.
    pub energy_joules: f64,
}

impl DeviceFigures {
    /// Tokens per joule.
    pub fn tokens_per_joule(&self) -> f64 {
        self.tokens_per_second * self.step_seconds / self.energy_joules
    }

    fn json(&self) -> Value {
        json!({
            "device": self.device,
            "step_seconds": self.step_seconds,
            "tokens_per_second": self.tokens_per_second,
            "mfu": self.mfu,
            "energy_joules": self.energy_joules,
            "tokens_per_joule": self.tokens_per_joule(),
        })
    }
}

/// The GPU version of a Tessera job.
pub fn gpu_workload(model: &ModelConfig, setup: &TrainingSetup) -> Result<Workload> {
    let narrow = |v: u64, what: &str| {
        u32::try_from(v).with_context(|| format!("{what} {v} is too large for the GPU model"))
    };
    Ok(Workload {
        name: model.name.clone(),
        layers: narrow(model.layers, "layers")?,
        hidden: narrow(model.hidden, "hidden")?,
        heads: narrow(model.heads, "heads")?,
        kv_heads: narrow(model.kv_heads, "kv_heads")?,
        ffn: narrow(model.ffn_hidden, "ffn")?,
        mlp: if model.family == Family::Llama {
            Mlp::SwiGlu
        } else {
            Mlp::Gelu
        },
        vocab: narrow(model.vocab_size, "vocab")?,
        tied_embedding: model.tie_embeddings,
        seq: narrow(setup.seq, "seq")?,
        memory_len: 0,
        micro_batch: narrow(setup.batch, "batch")?,
        masking: if model.family.is_causal() {
            Masking::Causal
        } else {
            Masking::Bidirectional
        },
        precision: match setup.precision {
            Precision::Fp32 => workload::Precision::Tf32,
            Precision::Bf16Mixed | Precision::Fp16Mixed => workload::Precision::Mixed16,
            Precision::Fp8Mixed => workload::Precision::Fp8,
        },
        attention: if setup.fusion.attention {
            AttentionKernel::Flash
        } else {
            AttentionKernel::Unfused
        },
        recompute: workload::Recompute::None,
        fusion: workload::Fusion::Framework,
    })
}

/// Both devices on the job: (Tessera's full figures, Tessera, GPU).
///
/// # Errors
/// The Tessera step does not compile or simulate, the GPU is unknown, or
/// the GPU lacks the precision.
pub fn compare(
    model: &ModelConfig,
    setup: &TrainingSetup,
    arch: &Arch,
    gpu: &str,
) -> Result<(StepFigures, DeviceFigures, DeviceFigures)> {
    // The cheap checks first: an unknown GPU fails before the simulation.
    let device = GpuModel::builtin(gpu)?;
    let job = gpu_workload(model, setup)?;
    let t = simulate_step(model, setup, arch)?;
    let tessera = DeviceFigures {
        device: format!("tessera-{}", arch.name()),
        step_seconds: t.step_seconds,
        tokens_per_second: t.tokens_per_second,
        mfu: t.mfu,
        energy_joules: t.energy_joules,
    };
    let grad_accum = u32::try_from(setup.grad_accumulation).context("--grad-accumulation")?;
    let est = device.step(
        &job,
        StepLayout {
            grad_accum,
            optimizer_shards: 1,
        },
    )?;
    let peak = device
        .spec
        .peak_flops(job.precision)
        .with_context(|| format!("`{gpu}` has no {:?} peak", job.precision))?;
    // The same model FLOPs as the Tessera side (PaLM convention).
    let gpu = DeviceFigures {
        device: gpu.to_string(),
        step_seconds: est.time.0,
        tokens_per_second: est.tokens_per_s(),
        mfu: t.model_flops / (est.time.0 * peak),
        energy_joules: est.energy.0,
    };
    Ok((t, tessera, gpu))
}

/// The JSON report.
pub fn to_json(t: &DeviceFigures, g: &DeviceFigures) -> Value {
    json!({
        "tessera": t.json(),
        "gpu": g.json(),
        "ratio_tessera_over_gpu": {
            "step_seconds": t.step_seconds / g.step_seconds,
            "tokens_per_second": t.tokens_per_second / g.tokens_per_second,
            "mfu": t.mfu / g.mfu,
            "energy_joules": t.energy_joules / g.energy_joules,
            "tokens_per_joule": t.tokens_per_joule() / g.tokens_per_joule(),
        }
    })
}

/// The side-by-side table.
pub fn to_table(t: &DeviceFigures, g: &DeviceFigures) -> String {
    let mut s = format!(
        "{:<18} {:>16} {:>16} {:>10}\n",
        "", t.device, g.device, "ratio"
    );
    let rows = [
        ("step time (s)", t.step_seconds, g.step_seconds),
        ("tokens/s", t.tokens_per_second, g.tokens_per_second),
        ("MFU", t.mfu, g.mfu),
        ("energy/step (J)", t.energy_joules, g.energy_joules),
        ("tokens/J", t.tokens_per_joule(), g.tokens_per_joule()),
    ];
    for (name, a, b) in rows {
        s += &format!("{name:<18} {a:>16.4} {b:>16.4} {:>9.2}x\n", a / b);
    }
    s
}

/// How the plan on `N` devices is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanChoice {
    /// Data parallel over all devices, the job's micro-batch, gradients
    /// reduced in buckets overlapped with the backward pass.
    DataParallel,
    /// Each side's fastest fitting plan (`tessera scale --search`).
    Search,
}

/// Both sides on `devices` devices.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaledComparison {
    /// Devices per side.
    pub devices: u32,
    /// Tessera over all devices (energy summed over them).
    pub tessera: DeviceFigures,
    /// The GPU over all devices.
    pub gpu: DeviceFigures,
    /// Tessera's plan.
    pub tessera_plan: String,
    /// The GPU's plan.
    pub gpu_plan: String,
}

fn data_parallel(devices: u32, micro_batch: u32) -> Plan {
    Plan {
        tp: 1,
        pp: 1,
        dp: devices,
        micro_batch,
        schedule: Schedule::OneFOneB,
        zero: Zero::None,
        sequence_parallel: false,
        recompute: Recompute::None,
        offload: Offload::None,
        all_reduce: AllReduceAlgo::Ring,
        grad_sync: GradSync::Overlapped,
    }
}

fn plan_on(
    timer: &dyn LayerTimer,
    topo: &Topology,
    job: &Workload,
    devices: u32,
    global_batch: u32,
    choice: PlanChoice,
) -> Result<Estimate> {
    Ok(match choice {
        PlanChoice::DataParallel => estimate(
            timer,
            topo,
            job,
            &data_parallel(devices, job.micro_batch),
            devices,
            global_batch,
        )?,
        PlanChoice::Search => search(
            timer,
            topo,
            job,
            devices,
            global_batch,
            &SearchSpace::default(),
        )?
        .swap_remove(0),
    })
}

/// The job of `setup` on each of `devices` devices (global batch
/// `devices x batch x grad_accumulation`), both sides through the
/// scale-out model; figures from the one-device comparison give the power.
///
/// # Errors
/// As [`compare`], or no plan fits.
pub fn compare_scaled(
    model: &ModelConfig,
    setup: &TrainingSetup,
    arch: &Arch,
    gpu: &str,
    devices: u32,
    choice: PlanChoice,
) -> Result<ScaledComparison> {
    let (one, t1, g1) = compare(model, setup, arch, gpu)?;
    let job = gpu_workload(model, setup)?;
    let accum = u32::try_from(setup.grad_accumulation).context("--grad-accumulation")?;
    let global = job
        .micro_batch
        .checked_mul(accum)
        .and_then(|b| b.checked_mul(devices))
        .context("--devices x --batch x --grad-accumulation overflows")?;
    let model_flops = one.model_flops * f64::from(devices);
    let (gpu_model, link, inter) = gpu_with_links(gpu)?;
    let gpu_peak = gpu_model
        .spec
        .peak_flops(job.precision)
        .with_context(|| format!("`{gpu}` has no {:?} peak", job.precision))?;
    let gpu_est = plan_on(
        &gpu_model,
        &Topology::dgx(link, inter),
        &job,
        devices,
        global,
        choice,
    )
    .with_context(|| format!("{gpu} on {devices} devices"))?;
    let timer = TesseraTimer::new(arch.clone());
    let t_est = plan_on(&timer, &default_topology(), &job, devices, global, choice)
        .with_context(|| format!("{} on {devices} devices", t1.device))?;
    let n = f64::from(devices);
    let side = |base: &DeviceFigures, e: &Estimate, peak: f64| DeviceFigures {
        device: format!("{devices} x {}", base.device),
        step_seconds: e.step.0,
        tokens_per_second: e.tokens_per_s,
        mfu: model_flops / (e.step.0 * n * peak),
        energy_joules: n * e.step.0 * base.energy_joules / base.step_seconds,
    };
    Ok(ScaledComparison {
        devices,
        tessera: side(&t1, &t_est, arch.peak_flops()),
        gpu: side(&g1, &gpu_est, gpu_peak),
        tessera_plan: t_est.plan,
        gpu_plan: gpu_est.plan,
    })
}
