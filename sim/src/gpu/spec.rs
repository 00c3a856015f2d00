//! GPU device specifications (peak rates per precision, HBM, TDP, NVLink)
//! parsed from `data/gpu_devices.toml`, which is compiled in.

use serde::Deserialize;

use crate::model_error::ModelError;
use crate::workload::Precision;

/// The built-in device table.
pub const BUILTIN_DEVICES: &str = include_str!("../../../data/gpu_devices.toml");

/// One GPU as the device model sees it. Invariant (checked on load): every
/// rate, bandwidth and power is finite and non-negative, `tdp_w > idle_w`,
/// and the 16-bit tensor peak is positive.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    /// Name used on the command line (`a100-80gb`).
    pub name: String,
    /// Which fitted parameter set it uses (`a100` for both A100 variants).
    pub family: String,
    /// Dense peaks in TFLOP/s; 0 means unsupported.
    pub fp32_tflops: f64,
    pub tf32_tflops: f64,
    pub mixed16_tflops: f64,
    pub fp8_tflops: f64,
    /// HBM bandwidth in GB/s.
    pub hbm_gbps: f64,
    /// HBM capacity in GB.
    pub hbm_gb: f64,
    /// Board power limit in watts.
    pub tdp_w: f64,
    /// Assumed idle power in watts.
    pub idle_w: f64,
    /// NVLink bandwidth per GPU per direction in GB/s.
    pub nvlink_gbps: f64,
    /// Where the figures come from.
    pub source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceFile {
    device: Vec<DeviceSpec>,
}

impl DeviceSpec {
    /// Dense peak FLOP/s of GEMMs at `p`, if the device supports it.
    pub fn peak_flops(&self, p: Precision) -> Option<f64> {
        let tf = match p {
            Precision::Fp32 => self.fp32_tflops,
            Precision::Tf32 => self.tf32_tflops,
            Precision::Mixed16 => self.mixed16_tflops,
            Precision::Fp8 => self.fp8_tflops,
        };
        (tf > 0.0).then_some(tf * 1e12)
    }

    /// HBM bandwidth in bytes per second.
    pub fn hbm_bytes_per_s(&self) -> f64 {
        self.hbm_gbps * 1e9
    }

    /// HBM capacity in bytes.
    pub fn hbm_bytes(&self) -> f64 {
        self.hbm_gb * 1e9
    }

    fn check(&self) -> Result<(), String> {
        let fields = [
            ("fp32_tflops", self.fp32_tflops),
            ("tf32_tflops", self.tf32_tflops),
            ("mixed16_tflops", self.mixed16_tflops),
            ("fp8_tflops", self.fp8_tflops),
            ("hbm_gbps", self.hbm_gbps),
            ("hbm_gb", self.hbm_gb),
            ("tdp_w", self.tdp_w),
            ("idle_w", self.idle_w),
            ("nvlink_gbps", self.nvlink_gbps),
        ];
        for (f, v) in fields {
            if !v.is_finite() || v < 0.0 {
                return Err(format!(
                    "device `{}`: field `{f}` must be finite and >= 0",
                    self.name
                ));
            }
        }
        if self.mixed16_tflops <= 0.0 || self.hbm_gbps <= 0.0 {
            return Err(format!(
                "device `{}`: fields `mixed16_tflops` and `hbm_gbps` must be > 0",
                self.name
            ));
        }
        if self.tdp_w <= self.idle_w {
            return Err(format!(
                "device `{}`: field `tdp_w` must exceed `idle_w`",
                self.name
            ));
        }
        Ok(())
    }
}

/// Parses a device table in the `data/gpu_devices.toml` format.
///
/// # Errors
/// [`ModelError::Data`] naming the device and field that breaks a rule.
pub fn parse_devices(text: &str, file: &str) -> Result<Vec<DeviceSpec>, ModelError> {
    let data = |detail: String| ModelError::Data {
        file: file.to_string(),
        detail,
    };
    let parsed: DeviceFile = toml::from_str(text).map_err(|e| data(e.message().to_string()))?;
    for d in &parsed.device {
        d.check().map_err(data)?;
    }
    Ok(parsed.device)
}

/// The built-in devices.
///
/// # Errors
/// Only if the compiled-in table is broken (a test guards it).
pub fn builtin_devices() -> Result<Vec<DeviceSpec>, ModelError> {
    parse_devices(BUILTIN_DEVICES, "data/gpu_devices.toml")
}

/// The built-in device called `name`.
///
/// ```
/// let h100 = tessera_sim::gpu::device("h100")?;
/// assert_eq!(h100.peak_flops(tessera_sim::workload::Precision::Mixed16), Some(989e12));
/// # Ok::<(), tessera_sim::ModelError>(())
/// ```
///
/// # Errors
/// [`ModelError::Unknown`] listing the known names.
pub fn device(name: &str) -> Result<DeviceSpec, ModelError> {
    let all = builtin_devices()?;
    let known = all
        .iter()
        .map(|d| d.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    all.iter()
        .find(|d| d.name == name)
        .cloned()
        .ok_or(ModelError::Unknown {
            what: "device",
            name: name.to_string(),
            known,
        })
}
