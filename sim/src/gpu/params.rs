//! The fitted efficiency parameters of the GPU model, one set per device
//! family, and their file format (`data/gpu_fit.toml`, written by
//! `tessera calibrate` and compiled in here).

use serde::{Deserialize, Serialize};

use crate::model_error::ModelError;

/// The fitted parameters shipped with the repository.
pub const BUILTIN_FIT: &str = include_str!("../../../data/gpu_fit.toml");

/// Efficiency parameters of one device family. Invariant: every value is
/// finite and positive; efficiencies are fractions of the spec peak (the
/// model clamps products at 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FamilyParams {
    /// Family name (`v100`, `a100`, `h100`).
    pub name: String,
    /// Best GEMM efficiency (fraction of peak) per precision.
    pub gemm_eff_fp32: f64,
    pub gemm_eff_tf32: f64,
    pub gemm_eff_mixed16: f64,
    pub gemm_eff_fp8: f64,
    /// GEMM dimension scale: a GEMM with one dimension this size and the
    /// other two much larger reaches half the best efficiency
    /// (`model::gemm_shape_eff`).
    pub gemm_dim_half: f64,
    /// FlashAttention-2 class kernels: efficiency relative to the 16-bit GEMM best.
    pub flash_eff: f64,
    /// FlashAttention v1: efficiency relative to the 16-bit GEMM best.
    pub flash_v1_eff: f64,
    /// Achieved fraction of HBM bandwidth in memory-bound kernels.
    pub mem_eff: f64,
    /// Launch and synchronisation overhead per kernel, microseconds.
    pub launch_us: f64,
}

/// Names of the fitted values, in [`FamilyParams::values`] order.
pub const PARAM_NAMES: [&str; 9] = [
    "gemm_eff_fp32",
    "gemm_eff_tf32",
    "gemm_eff_mixed16",
    "gemm_eff_fp8",
    "gemm_dim_half",
    "flash_eff",
    "flash_v1_eff",
    "mem_eff",
    "launch_us",
];

impl FamilyParams {
    /// Starting point of the fit (and the value of any parameter no data
    /// point constrains): typical figures from the literature.
    pub fn prior(name: &str) -> FamilyParams {
        FamilyParams {
            name: name.to_string(),
            gemm_eff_fp32: 0.8,
            gemm_eff_tf32: 0.6,
            gemm_eff_mixed16: 0.75,
            gemm_eff_fp8: 0.6,
            gemm_dim_half: 128.0,
            flash_eff: 0.7,
            flash_v1_eff: 0.5,
            mem_eff: 0.7,
            launch_us: 5.0,
        }
    }

    /// The values as a vector, in [`PARAM_NAMES`] order.
    pub fn values(&self) -> [f64; 9] {
        [
            self.gemm_eff_fp32,
            self.gemm_eff_tf32,
            self.gemm_eff_mixed16,
            self.gemm_eff_fp8,
            self.gemm_dim_half,
            self.flash_eff,
            self.flash_v1_eff,
            self.mem_eff,
            self.launch_us,
        ]
    }

    /// A copy with values from `v` (in [`PARAM_NAMES`] order).
    pub fn with_values(&self, v: &[f64; 9]) -> FamilyParams {
        FamilyParams {
            name: self.name.clone(),
            gemm_eff_fp32: v[0],
            gemm_eff_tf32: v[1],
            gemm_eff_mixed16: v[2],
            gemm_eff_fp8: v[3],
            gemm_dim_half: v[4],
            flash_eff: v[5],
            flash_v1_eff: v[6],
            mem_eff: v[7],
            launch_us: v[8],
        }
    }
}

/// The `data/gpu_fit.toml` file: provenance plus one set per family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitFile {
    /// Command that produced the file.
    pub command: String,
    /// Data file the fit used.
    pub data: String,
    /// FNV-1a 64 of the data file's bytes, hex.
    pub data_fnv1a: String,
    /// Calibration points used.
    pub points: usize,
    /// Fitted parameters.
    pub family: Vec<FamilyParams>,
}

impl FitFile {
    /// Parses the TOML form.
    ///
    /// # Errors
    /// [`ModelError::Data`] when the text does not parse or a value is not
    /// finite and positive.
    pub fn parse(text: &str, file: &str) -> Result<FitFile, ModelError> {
        let data = |detail: String| ModelError::Data {
            file: file.to_string(),
            detail,
        };
        let f: FitFile = toml::from_str(text).map_err(|e| data(e.message().to_string()))?;
        for fam in &f.family {
            for (name, v) in PARAM_NAMES.iter().zip(fam.values()) {
                if !v.is_finite() || v <= 0.0 {
                    return Err(data(format!(
                        "family `{}`: field `{name}` must be finite and > 0",
                        fam.name
                    )));
                }
            }
        }
        Ok(f)
    }

    /// The TOML form (deterministic).
    pub fn to_toml(&self) -> String {
        let mut s = String::from(
            "# Fitted parameters of the GPU device model (docs/gpu_model.md).\n\
             # Generated; do not edit. Regenerate with the command below.\n",
        );
        s.push_str(&toml::to_string(self).unwrap_or_default());
        s
    }

    /// The parameters of `family`.
    ///
    /// # Errors
    /// [`ModelError::Unknown`] when the file has no such family.
    pub fn family(&self, family: &str) -> Result<&FamilyParams, ModelError> {
        self.family
            .iter()
            .find(|f| f.name == family)
            .ok_or_else(|| ModelError::Unknown {
                what: "fitted device family",
                name: family.to_string(),
                known: self
                    .family
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// The compiled-in fit.
///
/// # Errors
/// Only if the shipped file is broken (a test guards it).
pub fn builtin_fit() -> Result<FitFile, ModelError> {
    FitFile::parse(BUILTIN_FIT, "data/gpu_fit.toml")
}
