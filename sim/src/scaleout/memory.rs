//! Per-device memory of a plan: weights, gradients and optimizer states by
//! the ZeRO paper's formulas (mixed-precision Adam: 2 + 2 + K bytes per
//! parameter with K = 12; stage 1 divides K by `dp`, stage 2 also the
//! gradients, stage 3 also the weights), and activations by Korthikanti et
//! al. 2022 (per layer `s b h (34 + 5 a s / h)` bytes, split by `tp` as
//! sequence parallelism and recomputation allow).

use crate::scaleout::plan::{Offload, Plan, Schedule, Zero};
use crate::workload::{AttentionKernel, Precision, Recompute, Workload};

/// Bytes per device, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Memory {
    pub weights: f64,
    pub gradients: f64,
    pub optimizer: f64,
    pub activations: f64,
}

impl Memory {
    /// Sum of the parts.
    pub fn total(&self) -> f64 {
        self.weights + self.gradients + self.optimizer + self.activations
    }
}

/// Bytes per parameter of weights, gradients and optimizer states
/// (`K`) for a precision: 2/2/12 in mixed precision, 4/4/8 in fp32.
pub fn bytes_per_param(p: Precision) -> (f64, f64, f64) {
    match p {
        Precision::Fp32 | Precision::Tf32 => (4.0, 4.0, 8.0),
        Precision::Mixed16 | Precision::Fp8 => (2.0, 2.0, 12.0),
    }
}

/// Activation bytes of one layer for one micro-batch on one device.
pub fn layer_activation_bytes(job: &Workload, plan: &Plan) -> f64 {
    let t = f64::from(plan.tp);
    let s = f64::from(job.seq);
    let b = f64::from(plan.micro_batch);
    let h = f64::from(job.hidden);
    let a = f64::from(job.heads);
    let scale = job.precision.activation_bytes() / 2.0;
    let sbh = s * b * h * scale;
    // Score-sized tensors vanish with fused attention or selective recompute.
    let scores = if job.attention == AttentionKernel::Unfused && plan.recompute == Recompute::None {
        5.0 * a * s / h / t
    } else {
        0.0
    };
    match plan.recompute {
        Recompute::Full => 2.0 * sbh / if plan.sequence_parallel { t } else { 1.0 },
        _ if plan.sequence_parallel => sbh * (34.0 / t + scores),
        _ => sbh * (10.0 + 24.0 / t + scores),
    }
}

/// Memory per device of `job` (whose `micro_batch` is ignored in favour
/// of the plan's) under `plan` with `micro_batches` per step per replica.
pub fn memory(job: &Workload, plan: &Plan, micro_batches: u32) -> Memory {
    let params = job.params() / f64::from(plan.tp * plan.pp);
    let dp = f64::from(plan.dp);
    let (w, g, k) = bytes_per_param(job.precision);
    let (wd, gd, kd) = match plan.zero {
        Zero::None => (1.0, 1.0, 1.0),
        Zero::Stage1 => (1.0, 1.0, dp),
        Zero::Stage2 => (1.0, dp, dp),
        Zero::Stage3 => (dp, dp, dp),
    };
    let optimizer = match plan.offload {
        Offload::None => params * k / kd,
        Offload::Cpu => 0.0,
    };
    let layers_per_device = f64::from(job.layers) / f64::from(plan.pp);
    let per_layer = layer_activation_bytes(job, plan);
    // Micro-batches whose activations the first stage holds at once.
    let m = f64::from(micro_batches.max(1));
    let p = f64::from(plan.pp);
    let in_flight = match plan.schedule {
        Schedule::GPipe => m,
        Schedule::OneFOneB => p.min(m),
        Schedule::Interleaved { v } => (p * (1.0 + (p - 1.0) / (p * f64::from(v)))).min(m * 2.0),
    };
    // With full recomputation one layer's full activations are live again.
    let working = if plan.recompute == Recompute::Full {
        let full = Plan {
            recompute: Recompute::None,
            ..*plan
        };
        layer_activation_bytes(job, &full)
    } else {
        0.0
    };
    Memory {
        weights: params * w / wd,
        gradients: params * g / gd,
        optimizer,
        activations: per_layer * layers_per_device * in_flight.max(1.0) + working,
    }
}
