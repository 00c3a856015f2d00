//! Step time of a parallel plan: per-stage compute from a [`LayerTimer`]
//! (the GPU model now, Tessera's compiler plus timing simulator later),
//! tensor-parallel collectives (exposed), pipeline sends and bubble,
//! data-parallel gradient reduction overlapped with the last backward pass
//! in buckets, and the optimizer (on device or offloaded to the CPU).
//!
//! `step = (m + (p-1)/v) * t_mb + exposed_dp + optimizer`, where `t_mb` is
//! one micro-batch's forward and backward on the slowest stage including its
//! tensor-parallel and pipeline communication, `m` the micro-batches per
//! step, `p` the pipeline depth and `v` the interleaving.

use crate::model_error::ModelError;
use crate::scaleout::memory::{memory, Memory};
use crate::scaleout::plan::{GradSync, Offload, Plan, Zero};
use crate::scaleout::topology::Topology;
use crate::units::Seconds;
use crate::workload::{Split, Workload};

/// Per-layer times of a device: what the scale-out model needs from a
/// device model.
pub trait LayerTimer: Sync {
    /// Name shown in reports.
    fn name(&self) -> String;
    /// Usable memory in bytes.
    fn memory_bytes(&self) -> f64;
    /// Forward, backward and recompute time of one layer for one
    /// micro-batch (`job.micro_batch` sequences) split per `split`.
    ///
    /// # Errors
    /// When the device cannot run the job (unsupported precision).
    fn layer(&self, job: &Workload, split: Split) -> Result<[Seconds; 3], ModelError>;
    /// Forward plus backward of embedding, logits and loss.
    ///
    /// # Errors
    /// As [`LayerTimer::layer`].
    fn head(&self, job: &Workload, split: Split) -> Result<Seconds, ModelError>;
    /// Optimizer update of `params` parameters on the device.
    ///
    /// # Errors
    /// As [`LayerTimer::layer`].
    fn optimizer(&self, job: &Workload, params: f64) -> Result<Seconds, ModelError>;
}

/// Where the time of a step goes (each part in seconds of wall clock).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Breakdown {
    /// Forward and backward compute (without recomputation).
    pub compute: Seconds,
    /// Recomputation.
    pub recompute: Seconds,
    /// Exposed communication: tensor-parallel collectives, pipeline sends,
    /// and the part of the data-parallel reduction not hidden by backward.
    pub communication: Seconds,
    /// Pipeline bubble.
    pub bubble: Seconds,
    /// Optimizer update (and offload transfers).
    pub optimizer: Seconds,
}

impl Breakdown {
    /// Sum of the parts: the step time.
    pub fn total(&self) -> Seconds {
        self.compute + self.recompute + self.communication + self.bubble + self.optimizer
    }
}

/// The estimate of one plan.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// The plan, as text.
    pub plan: String,
    /// Step time.
    pub step: Seconds,
    /// Where it goes.
    pub breakdown: Breakdown,
    /// Per-device memory.
    pub memory: Memory,
    /// Whether the memory fits the device.
    pub fits: bool,
    /// Tokens per second over all devices.
    pub tokens_per_s: f64,
    /// Pipeline bubble as a fraction of the pipelined time.
    pub bubble_fraction: f64,
}

/// Host-side assumptions of CPU offload: PCIe per device (Gen4 x16, 25 GB/s
/// achieved of 31, interconnect.csv) and a CPU Adam rate per device.
pub const OFFLOAD_PCIE_BYTES_PER_S: f64 = 25e9;
/// Parameters per second the host updates per device (DeepSpeed CPU-Adam
/// order of magnitude; an assumption).
pub const CPU_ADAM_PARAMS_PER_S: f64 = 1e9;

/// Gradient bucket size of the data-parallel reduction (PyTorch DDP's 25 MB).
pub const BUCKET_BYTES: f64 = 25e6;

fn plan_error(plan: &Plan, rule: impl Into<String>) -> ModelError {
    ModelError::Plan {
        plan: plan.to_string(),
        rule: rule.into(),
    }
}

/// Checks `plan` against `job`, `devices` and `global_batch` and returns
/// the micro-batches per step per replica.
///
/// # Errors
/// [`ModelError::Plan`] naming the broken rule.
pub fn check(
    job: &Workload,
    plan: &Plan,
    devices: u32,
    global_batch: u32,
) -> Result<u32, ModelError> {
    if plan.tp == 0 || plan.pp == 0 || plan.dp == 0 || plan.micro_batch == 0 {
        return Err(plan_error(
            plan,
            "degrees and micro-batch must be at least 1",
        ));
    }
    if plan.tp * plan.pp * plan.dp != devices {
        return Err(plan_error(
            plan,
            format!("tp * pp * dp must equal the {devices} devices"),
        ));
    }
    if job.layers % (plan.pp * plan.chunks()) != 0 {
        return Err(plan_error(
            plan,
            format!("pp * chunks must divide the {} layers", job.layers),
        ));
    }
    if job.heads % plan.tp != 0 || job.kv_heads % plan.tp != 0 && plan.tp % job.kv_heads != 0 {
        return Err(plan_error(
            plan,
            format!("tp must divide the {} heads", job.heads),
        ));
    }
    if global_batch % (plan.dp * plan.micro_batch) != 0 {
        return Err(plan_error(
            plan,
            format!("dp * micro-batch must divide the global batch {global_batch}"),
        ));
    }
    let m = global_batch / (plan.dp * plan.micro_batch);
    if plan.chunks() > 1 && m % plan.pp != 0 {
        return Err(plan_error(
            plan,
            "interleaving needs micro-batches divisible by pp",
        ));
    }
    if plan.sequence_parallel && plan.tp == 1 {
        return Err(plan_error(plan, "sequence parallelism needs tp > 1"));
    }
    Ok(m)
}

/// Estimates one training step of `job` (global batch `global_batch`
/// sequences) on `devices` devices of `timer` joined by `topo` under `plan`.
///
/// # Errors
/// A plan that breaks a rule of [`check`], or a device that cannot run the job.
pub fn estimate(
    timer: &dyn LayerTimer,
    topo: &Topology,
    job: &Workload,
    plan: &Plan,
    devices: u32,
    global_batch: u32,
) -> Result<Estimate, ModelError> {
    job.validate()?;
    topo.validate()?;
    let m = check(job, plan, devices, global_batch)?;
    let mut mb = job.clone();
    mb.micro_batch = plan.micro_batch;
    mb.recompute = plan.recompute;
    let split = Split {
        tp: plan.tp,
        sequence_parallel: plan.sequence_parallel,
    };
    let [fwd, bwd, rec] = timer.layer(&mb, split)?;
    let layers = f64::from(job.layers / plan.pp);
    // The head runs on the last stage; the slowest stage sets the pace, so
    // with pp > 1 the head adds to the last stage only (Megatron balances
    // layers evenly, so the last stage is the slowest).
    let head = timer.head(&mb, split)?;
    let act_bytes = f64::from(plan.micro_batch)
        * f64::from(job.seq)
        * f64::from(job.hidden)
        * job.precision.activation_bytes();
    // Tensor parallelism: 2 all-reduces (or reduce-scatter + all-gather
    // under sequence parallelism, the same volume) forward, 2 backward, 2
    // more when the forward is recomputed fully.
    let tp_ar = topo.all_reduce(plan.all_reduce, act_bytes, plan.tp, 1);
    let tp_per_layer = tp_ar
        * if plan.recompute == crate::workload::Recompute::Full {
            6.0
        } else {
            4.0
        };
    // Pipeline: send activations forward and gradients back at every stage
    // boundary a micro-batch crosses (v chunks per device). Each of the tp
    // ranks of a stage sends only its 1/tp slice to its peer (Megatron's
    // scatter/gather, Narayanan et al. 2021 Sec. 4.1), and without sequence
    // parallelism the receivers all-gather the slices over the tp group.
    let pp_send = if plan.pp > 1 {
        let slice = act_bytes / f64::from(plan.tp);
        let gather = if plan.sequence_parallel {
            Seconds::ZERO
        } else {
            topo.reduce_scatter(act_bytes, plan.tp, 1)
        };
        (topo.p2p(slice, plan.tp * plan.dp) + gather) * (2.0 * f64::from(plan.chunks()))
    } else {
        Seconds::ZERO
    };
    let compute_mb = (fwd + bwd) * layers + head;
    let recompute_mb = rec * layers;
    let comm_mb = tp_per_layer * layers + pp_send;
    let t_mb = compute_mb + recompute_mb + comm_mb;
    let mf = f64::from(m);
    let bubble_mbs = f64::from(plan.pp - 1) / f64::from(plan.chunks());
    let bubble = t_mb * bubble_mbs;
    let bubble_fraction = bubble_mbs / (mf + bubble_mbs);
    // Data parallelism: gradients of this device's parameters reduced over
    // dp; ZeRO-3 also gathers weights for forward and backward (1.5x).
    let params = job.params() / f64::from(plan.tp * plan.pp);
    let grad_bytes = params * crate::scaleout::memory::bytes_per_param(job.precision).1;
    let dp_stride = plan.tp;
    let dp_time = topo.all_reduce(plan.all_reduce, grad_bytes, plan.dp, dp_stride)
        * if plan.zero == Zero::Stage3 { 1.5 } else { 1.0 };
    // Bucketed and overlapped with the last micro-batch's backward; the last
    // bucket is always exposed.
    let last_bucket = topo.all_reduce(
        plan.all_reduce,
        BUCKET_BYTES.min(grad_bytes),
        plan.dp,
        dp_stride,
    );
    let window = (bwd + rec) * layers;
    let dp_exposed = if plan.dp > 1 && plan.grad_sync == GradSync::AfterBackward {
        dp_time
    } else if plan.dp > 1 {
        Seconds((dp_time.0 - window.0).max(last_bucket.0))
    } else {
        Seconds::ZERO
    };
    let shard = match plan.zero {
        Zero::None => params,
        _ => params / f64::from(plan.dp),
    };
    let optimizer = match plan.offload {
        Offload::None => timer.optimizer(&mb, shard)?,
        Offload::Cpu => {
            Seconds(shard * 4.0 / OFFLOAD_PCIE_BYTES_PER_S + shard / CPU_ADAM_PARAMS_PER_S)
        }
    };
    let breakdown = Breakdown {
        compute: compute_mb * mf,
        recompute: recompute_mb * mf,
        communication: comm_mb * mf + dp_exposed,
        bubble,
        optimizer,
    };
    let mem = memory(&mb, plan, m);
    let step = breakdown.total();
    Ok(Estimate {
        plan: plan.to_string(),
        step,
        breakdown,
        fits: mem.total() <= timer.memory_bytes(),
        memory: mem,
        tokens_per_s: f64::from(global_batch) * f64::from(job.seq) / step.0,
        bubble_fraction,
    })
}
