//! The Hugging Face "How big should my language model be?" speed fit
//! (Le Scao 2020), used as a baseline estimator:
//! `speed = k * k1^o1 * k2^o2 * depth/(depth + b) * width^a * ln(batch + 1)^c`
//! in non-embedding FLO/s, where a step of `N` non-embedding parameters
//! costs `6 N` FLO per token (`data/calibration/hf_speed_model.csv`).

use crate::gpu::csv::Table;
use crate::model_error::ModelError;
use crate::workload::{Precision, Workload};

/// The constants of one GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct HfSpeed {
    /// GPU name as in the source.
    pub gpu: String,
    /// Multiplicative constant.
    pub k: f64,
    /// Speed multiplier of apex AMP O1 (`o1 = 1`).
    pub k1: f64,
    /// Speed multiplier of apex AMP O2.
    pub k2: f64,
    /// Width exponent.
    pub a: f64,
    /// Depth offset.
    pub b: f64,
    /// Exponent of `ln(batch + 1)`.
    pub c: f64,
}

impl HfSpeed {
    /// Speed in non-embedding FLO/s for `job` (batch = its micro-batch);
    /// mixed precision uses the AMP O1 multiplier, fp32/tf32 none.
    pub fn flo_per_s(&self, job: &Workload) -> f64 {
        let depth = f64::from(job.layers);
        let width = f64::from(job.hidden);
        let batch = f64::from(job.micro_batch);
        let amp = match job.precision {
            Precision::Fp32 | Precision::Tf32 => 1.0,
            Precision::Mixed16 | Precision::Fp8 => self.k1,
        };
        self.k * amp * depth / (depth + self.b)
            * width.powf(self.a)
            * (batch + 1.0).ln().powf(self.c)
    }

    /// Predicted tokens per second on one GPU.
    pub fn tokens_per_s(&self, job: &Workload) -> f64 {
        self.flo_per_s(job) / (6.0 * job.non_embedding_params())
    }
}

/// Parses `hf_speed_model.csv`.
///
/// # Errors
/// [`ModelError::Data`] for a missing column or a value that is not a number.
pub fn parse_hf(text: &str, file: &str) -> Result<Vec<HfSpeed>, ModelError> {
    let t = Table::parse(text, file)?;
    let mut out = Vec::new();
    for r in 0..t.len() {
        let num = |c: &str| t.number(r, c);
        out.push(HfSpeed {
            gpu: t.get(r, "gpu")?.to_string(),
            k: num("k")?,
            k1: num("amp_O1_multiplier_k1")?,
            k2: num("amp_O2_multiplier_k2")?,
            a: num("width_exponent_a")?,
            b: num("depth_offset_b")?,
            c: num("batch_log_exponent_c")?,
        });
    }
    Ok(out)
}
