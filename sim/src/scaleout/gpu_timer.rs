//! The GPU device model as a [`LayerTimer`] for the scale-out model.

use crate::gpu::GpuModel;
use crate::model_error::ModelError;
use crate::scaleout::step::LayerTimer;
use crate::units::Seconds;
use crate::workload::{Pass, Split, Workload};

/// Share of HBM a plan may use; the rest is left to the framework,
/// allocator fragmentation and communication buffers (an assumption).
pub const USABLE_MEMORY: f64 = 0.9;

impl LayerTimer for GpuModel {
    fn name(&self) -> String {
        self.spec.name.clone()
    }

    fn memory_bytes(&self) -> f64 {
        self.spec.hbm_bytes() * USABLE_MEMORY
    }

    fn layer(&self, job: &Workload, split: Split) -> Result<[Seconds; 3], ModelError> {
        let mut t = [Seconds::ZERO; 3];
        for op in job.layer_ops(split) {
            let s = self.op_time(&op, job.precision)?;
            match op.pass {
                Pass::Forward => t[0] += s,
                Pass::Backward => t[1] += s,
                Pass::Recompute => t[2] += s,
                Pass::Optimizer => {}
            }
        }
        Ok(t)
    }

    fn head(&self, job: &Workload, split: Split) -> Result<Seconds, ModelError> {
        job.head_ops(split)
            .iter()
            .map(|op| self.op_time(op, job.precision))
            .sum()
    }

    fn optimizer(&self, job: &Workload, params: f64) -> Result<Seconds, ModelError> {
        job.optimizer_ops(params)
            .iter()
            .map(|op| self.op_time(op, job.precision))
            .sum()
    }
}
