//! A parallel plan: how a training job is spread over devices (data,
//! tensor and pipeline parallel degrees, micro-batch, pipeline schedule,
//! ZeRO stage, recomputation, offload), and its one-line text form.

use std::fmt;

use crate::scaleout::collective::AllReduceAlgo;
use crate::workload::Recompute;

/// Pipeline schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Schedule {
    /// All forwards, then all backwards: bubble `(p-1)/(m+p-1)`, and `m`
    /// micro-batches of activations in flight.
    GPipe,
    /// One forward, one backward: same bubble, at most `p` in flight.
    OneFOneB,
    /// Interleaved 1F1B with `v` model chunks per device: bubble divided by `v`.
    Interleaved { v: u32 },
}

/// ZeRO stage of data parallelism (Rajbhandari et al. 2020).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Zero {
    /// Replicated states.
    None,
    /// Optimizer states partitioned.
    Stage1,
    /// Optimizer states and gradients partitioned.
    Stage2,
    /// Optimizer states, gradients and parameters partitioned.
    Stage3,
}

/// Where optimizer states live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Offload {
    /// On the device.
    None,
    /// In host memory, updated by the CPU (ZeRO-Offload).
    Cpu,
}

/// When the data-parallel gradient reduction runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GradSync {
    /// In buckets, overlapped with the last micro-batch's backward pass.
    Overlapped,
    /// After the whole backward pass (Megatron-LM 2021), fully exposed.
    AfterBackward,
}

/// A parallel plan. Invariant (checked against a job and a device count by
/// `step::estimate`): `tp * pp * dp` equals the devices, `pp * v` divides
/// the layers, `tp` divides the heads, and `dp * micro_batch` divides the
/// global batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Plan {
    pub tp: u32,
    pub pp: u32,
    pub dp: u32,
    /// Sequences per micro-batch per data-parallel replica.
    pub micro_batch: u32,
    pub schedule: Schedule,
    pub zero: Zero,
    pub sequence_parallel: bool,
    pub recompute: Recompute,
    pub offload: Offload,
    pub all_reduce: AllReduceAlgo,
    pub grad_sync: GradSync,
}

impl Plan {
    /// Model chunks per device (1 unless interleaved).
    pub fn chunks(&self) -> u32 {
        match self.schedule {
            Schedule::Interleaved { v } => v.max(1),
            _ => 1,
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sched = match self.schedule {
            Schedule::GPipe => "gpipe".to_string(),
            Schedule::OneFOneB => "1f1b".to_string(),
            Schedule::Interleaved { v } => format!("interleaved:{v}"),
        };
        let zero = match self.zero {
            Zero::None => 0,
            Zero::Stage1 => 1,
            Zero::Stage2 => 2,
            Zero::Stage3 => 3,
        };
        let rc = match self.recompute {
            Recompute::None => "none",
            Recompute::Selective => "selective",
            Recompute::Full => "full",
        };
        write!(
            f,
            "tp={} pp={} dp={} mb={} {} zero={} sp={} recompute={} offload={} allreduce={} overlap={}",
            self.tp,
            self.pp,
            self.dp,
            self.micro_batch,
            sched,
            zero,
            if self.sequence_parallel { "on" } else { "off" },
            rc,
            if self.offload == Offload::Cpu {
                "cpu"
            } else {
                "none"
            },
            if self.all_reduce == AllReduceAlgo::Ring {
                "ring"
            } else {
                "tree"
            },
            if self.grad_sync == GradSync::Overlapped {
                "on"
            } else {
                "off"
            },
        )
    }
}
