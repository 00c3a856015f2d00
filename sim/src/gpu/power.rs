//! Power model of a GPU, bounded by its TDP: idle power over the whole
//! time plus dynamic energy per FLOP and per HBM byte, capped so that the
//! average power of any operator never exceeds the board limit.
//!
//! Not fitted (the calibration data has no power measurements): the energy
//! per FLOP is set so that running at the spec peak with no memory traffic
//! draws `0.8 * (TDP - idle)` of dynamic power, and HBM costs 3.9 pJ/bit
//! (`data/calibration/energy_per_op.csv`, HBM2/HBM2e rows).

use crate::gpu::spec::DeviceSpec;
use crate::units::{Joules, Seconds};
use crate::workload::{Op, OpShape, Precision};

/// HBM access energy, joules per byte (3.9 pJ/bit).
pub const HBM_J_PER_BYTE: f64 = 3.9e-12 * 8.0;

/// Share of the dynamic budget that compute at peak uses.
pub const COMPUTE_SHARE: f64 = 0.8;

/// Energy coefficients of one device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerModel {
    idle_w: f64,
    tdp_w: f64,
    dynamic_w: f64,
    peaks: [Option<f64>; 4],
}

impl PowerModel {
    /// Coefficients for `spec`.
    pub fn new(spec: &DeviceSpec) -> PowerModel {
        let p = [
            Precision::Fp32,
            Precision::Tf32,
            Precision::Mixed16,
            Precision::Fp8,
        ];
        PowerModel {
            idle_w: spec.idle_w,
            tdp_w: spec.tdp_w,
            dynamic_w: spec.tdp_w - spec.idle_w,
            peaks: p.map(|q| spec.peak_flops(q)),
        }
    }

    fn joules_per_flop(&self, p: Precision) -> f64 {
        let i = match p {
            Precision::Fp32 => 0,
            Precision::Tf32 => 1,
            Precision::Mixed16 => 2,
            Precision::Fp8 => 3,
        };
        let peak = self.peaks[i].or(self.peaks[2]).unwrap_or(1.0);
        COMPUTE_SHARE * self.dynamic_w / peak
    }

    /// Energy of `op` repeated `times` times taking `t` in all, at most
    /// `tdp_w * t`.
    pub fn energy(&self, op: &Op, p: Precision, t: Seconds, times: f64) -> Joules {
        let bytes = match op.shape {
            OpShape::Gemm { m, n, k } => {
                (m * k + k * n) * p.gemm_input_bytes() + m * n * p.activation_bytes()
            }
            OpShape::FusedAttention { bytes, .. } | OpShape::Elementwise { bytes } => bytes,
        } * op.count
            * times;
        let dynamic = op.flops() * times * self.joules_per_flop(p) + bytes * HBM_J_PER_BYTE;
        Joules((self.idle_w * t.0 + dynamic).min(self.tdp_w * t.0))
    }
}
