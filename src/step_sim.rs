//! The main job: compile one training step of a model for a hardware
//! description (compiler), run it in timing mode (simulator) and derive
//! the figures a user compares chips by: step time, tokens per second,
//! model-FLOPs utilization, energy per step and per token, power, peak HBM
//! footprint, and the operators that take the time.
//!
//! Model FLOPs follow PaLM (Chowdhery et al. 2022, appendix B):
//! `6 * params * tokens + 12 * layers * hidden * seq * tokens`, the
//! attention term without a causal discount; MFU divides them by the step
//! time and the chip's peak matrix FLOP/s.
//!
//! A chip with several cores runs data-parallel: each core takes
//! `batch / cores` sequences of the same step and the simulator times one
//! core with its share of the HBM bandwidth. The gradient reduction
//! between cores is not modelled (it would add one pass over the
//! gradients in HBM).

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tessera_compiler::lower::lower_graph;
use tessera_compiler::model::ModelConfig;
use tessera_compiler::setup::TrainingSetup;
use tessera_compiler::{training_graph, Stage};
use tessera_isa::{Arch, Queue};

/// Time spent in one kind of operator.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorTime {
    /// IR op name (one kernel kind).
    pub name: String,
    /// Seconds per step.
    pub seconds: f64,
    /// Kernels of this kind per step.
    pub kernels: u64,
}

/// The figures of one simulated training step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepFigures {
    /// Model name.
    pub model: String,
    /// Hardware description name.
    pub hardware: String,
    /// The setup it ran.
    pub setup: TrainingSetup,
    /// Trainable parameters.
    pub parameters: u64,
    /// Tokens per step (all cores).
    pub tokens: u64,
    /// Simulated cycles of one step.
    pub cycles: u64,
    /// Seconds per step.
    pub step_seconds: f64,
    /// Tokens per second.
    pub tokens_per_second: f64,
    /// Model FLOPs per step (PaLM convention).
    pub model_flops: f64,
    /// Model FLOPs utilization.
    pub mfu: f64,
    /// Matrix-unit FLOPs the hardware executed (incl. recomputation and the
    /// extra products of fp32 emulation) over its peak.
    pub hardware_utilization: f64,
    /// Energy per step (all cores).
    pub energy_joules: f64,
    /// Peak HBM footprint.
    pub hbm_peak_bytes: u64,
    /// Bytes read from and written to HBM per step (all cores).
    pub hbm_traffic_bytes: u64,
    /// Parameters, optimizer states, inputs and constant tables.
    pub hbm_persistent_bytes: u64,
    /// Kernels per step.
    pub kernels: usize,
    /// Instructions in the program.
    pub instructions: usize,
    /// Operators by time, longest first.
    pub operators: Vec<OperatorTime>,
}

impl StepFigures {
    /// Joules per token.
    pub fn joules_per_token(&self) -> f64 {
        self.energy_joules / self.tokens as f64
    }

    /// Average power over the step.
    pub fn average_power_watts(&self) -> f64 {
        self.energy_joules / self.step_seconds
    }

    /// The JSON report (`tessera simulate --json`).
    pub fn to_json(&self) -> Value {
        let ops: Vec<Value> = self
            .operators
            .iter()
            .map(|o| json!({"name": o.name, "seconds": o.seconds, "share": o.seconds / self.step_seconds, "kernels": o.kernels}))
            .collect();
        json!({
            "model": self.model,
            "hardware": self.hardware,
            "batch": self.setup.batch,
            "seq": self.setup.seq,
            "precision": self.setup.precision.name(),
            "optimizer": self.setup.optimizer.name(),
            "parameters": self.parameters,
            "tokens_per_step": self.tokens,
            "cycles": self.cycles,
            "step_seconds": self.step_seconds,
            "tokens_per_second": self.tokens_per_second,
            "model_flops": self.model_flops,
            "mfu": self.mfu,
            "hardware_utilization": self.hardware_utilization,
            "energy_joules": self.energy_joules,
            "joules_per_token": self.joules_per_token(),
            "average_power_watts": self.average_power_watts(),
            "hbm_peak_bytes": self.hbm_peak_bytes,
            "hbm_traffic_bytes": self.hbm_traffic_bytes,
            "hbm_persistent_bytes": self.hbm_persistent_bytes,
            "kernels": self.kernels,
            "instructions": self.instructions,
            "top_operators": ops,
        })
    }

    /// The human-readable summary.
    pub fn to_table(&self, top: usize) -> String {
        let mut s = String::new();
        let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
        s += &format!(
            "model            {} ({:.1}M parameters)\n",
            self.model,
            self.parameters as f64 / 1e6
        );
        let micro = match self.setup.grad_accumulation {
            1 => String::new(),
            n => format!(" x {n} micro-batches"),
        };
        s += &format!(
            "hardware         {}\nsetup            batch {} x seq {}{micro}, {}, {}\n",
            self.hardware,
            self.setup.batch,
            self.setup.seq,
            self.setup.precision.name(),
            self.setup.optimizer.name()
        );
        s += &format!(
            "step time        {:.4} s ({} cycles)\n",
            self.step_seconds, self.cycles
        );
        s += &format!("throughput       {:.0} tokens/s\n", self.tokens_per_second);
        s += &format!(
            "MFU              {:.1}% (hardware matrix utilization {:.1}%)\n",
            self.mfu * 100.0,
            self.hardware_utilization * 100.0
        );
        s += &format!(
            "energy           {:.3} J/step, {:.3} mJ/token, {:.1} W average\n",
            self.energy_joules,
            self.joules_per_token() * 1e3,
            self.average_power_watts()
        );
        s += &format!(
            "HBM              {:.2} GiB peak ({:.2} GiB parameters, states and inputs)\n",
            gib(self.hbm_peak_bytes),
            gib(self.hbm_persistent_bytes)
        );
        s += &format!(
            "program          {} kernels, {} instructions\n",
            self.kernels, self.instructions
        );
        s += "top operators    time        share  kernels\n";
        for o in self.operators.iter().take(top) {
            s += &format!(
                "  {:<24} {:>9.3} ms {:>5.1}% {:>7}\n",
                o.name,
                o.seconds * 1e3,
                o.seconds / self.step_seconds * 100.0,
                o.kernels
            );
        }
        s
    }
}

/// Compiles and times one training step.
///
/// # Errors
/// The model or setup is invalid, the step does not fit the hardware, or
/// the simulation fails.
pub fn simulate_step(
    model: &ModelConfig,
    setup: &TrainingSetup,
    arch: &Arch,
) -> Result<StepFigures> {
    let cores = u64::from(arch.spec().chip.cores);
    if setup.batch % cores != 0 {
        bail!("--batch {} must be a multiple of the {cores} cores of `{}` (each core takes an equal share)", setup.batch, arch.name());
    }
    let mut per_core = *setup;
    per_core.batch = setup.batch / cores;
    let graph = training_graph(model, &per_core, Stage::Step)?;
    let step = lower_graph(&graph, arch)
        .with_context(|| format!("compiling {} for `{}`", model.name, arch.name()))?;
    let (report, _) = tessera_sim::simulate(&step.program, false).context("simulating the step")?;
    let seconds = report.seconds;
    let tokens = setup.tokens_per_step();
    let params = model.parameter_count();
    let attention =
        12.0 * model.layers as f64 * model.hidden as f64 * setup.seq as f64 * tokens as f64;
    let model_flops = 6.0 * params as f64 * tokens as f64 + attention;
    let mut operators: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in &report.regions {
        if r.queue == Queue::Matrix.name() {
            let e = operators.entry(r.name.clone()).or_default();
            e.0 += r.cycles;
            e.1 += r.entries;
        }
    }
    let mut operators: Vec<OperatorTime> = operators
        .into_iter()
        .map(|(name, (cycles, kernels))| OperatorTime {
            name,
            seconds: cycles as f64 * arch.cycle_seconds(),
            kernels,
        })
        .collect();
    operators.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then(a.name.cmp(&b.name)));
    Ok(StepFigures {
        model: model.name.clone(),
        hardware: arch.name().to_string(),
        setup: *setup,
        parameters: params,
        tokens,
        cycles: report.cycles,
        step_seconds: seconds,
        tokens_per_second: tokens as f64 / seconds,
        model_flops,
        mfu: model_flops / (seconds * arch.peak_flops()),
        hardware_utilization: report.utilization,
        energy_joules: report.energy_joules * cores as f64,
        hbm_peak_bytes: step.hbm_peak,
        hbm_traffic_bytes: (report.hbm_read_bytes + report.hbm_write_bytes) * cores,
        hbm_persistent_bytes: step.persistent_bytes,
        kernels: step.kernels,
        instructions: step.program.len(),
        operators,
    })
}

/// What one fusion pass saves: the step simulated with it turned off,
/// against the step with every pass on.
#[derive(Debug, Clone, PartialEq)]
pub struct FusionSaving {
    /// Pass name (`--no-fuse NAME`).
    pub name: String,
    /// HBM bytes per step the pass saves (negative: it costs).
    pub hbm_bytes_saved: i64,
    /// Seconds per step the pass saves.
    pub seconds_saved: f64,
    /// Peak HBM bytes the pass saves.
    pub peak_bytes_saved: i64,
}

/// Simulates the step once per fusion pass with that pass off.
///
/// # Errors
/// As [`simulate_step`].
pub fn fusion_savings(
    model: &ModelConfig,
    setup: &TrainingSetup,
    arch: &Arch,
    fused: &StepFigures,
) -> Result<Vec<FusionSaving>> {
    let mut out = Vec::new();
    for name in tessera_compiler::fuse::Fusion::NAMES {
        let mut s = *setup;
        if !s.fusion.enabled(name) {
            continue;
        }
        s.fusion.disable(name).map_err(anyhow::Error::msg)?;
        let off = simulate_step(model, &s, arch)
            .with_context(|| format!("the step without the {name} fusion"))?;
        out.push(FusionSaving {
            name: name.to_string(),
            hbm_bytes_saved: off.hbm_traffic_bytes as i64 - fused.hbm_traffic_bytes as i64,
            seconds_saved: off.step_seconds - fused.step_seconds,
            peak_bytes_saved: off.hbm_peak_bytes as i64 - fused.hbm_peak_bytes as i64,
        });
    }
    Ok(out)
}

/// One activation-recomputation policy, simulated.
#[derive(Debug, Clone, PartialEq)]
pub struct RecomputePolicy {
    /// `none`, `selective` or `full`.
    pub name: &'static str,
    /// What the policy keeps between the forward and the backward pass.
    pub keeps: &'static str,
    /// The step under the policy, or why it could not be compiled (a model
    /// that does not fit, say).
    pub step: std::result::Result<StepFigures, String>,
}

/// Simulates the step under each recomputation policy, the setup's other
/// choices unchanged: `none` stores every activation, the S x S attention
/// probabilities included (attention unfused); `selective` recomputes the
/// attention core inside the fused attention's backward; `full` stores only
/// each block's input and recomputes the block.
///
/// # Errors
/// Only for failures other than the step not compiling (those are kept in
/// [`RecomputePolicy::step`]).
pub fn recompute_policies(
    model: &ModelConfig,
    setup: &TrainingSetup,
    arch: &Arch,
) -> Result<Vec<RecomputePolicy>> {
    use tessera_compiler::setup::Recompute;
    let policies = [
        (
            "none",
            Recompute::None,
            false,
            "every activation, S x S attention probabilities included",
        ),
        (
            "selective",
            Recompute::Selective,
            true,
            "every activation but the attention core's",
        ),
        ("full", Recompute::Full, true, "each block's input only"),
    ];
    let mut out = Vec::new();
    for (name, recompute, attention, keeps) in policies {
        let mut s = *setup;
        s.recompute = recompute;
        s.fusion.attention = attention;
        let step = simulate_step(model, &s, arch).map_err(|e| format!("{e:#}"));
        out.push(RecomputePolicy { name, keeps, step });
    }
    Ok(out)
}
