//! The GPU device model: time and energy of one training step on V100,
//! A100 (40/80 GB), H100 and H200 from spec peaks, HBM bandwidth and a few
//! fitted efficiency parameters per device family and precision.
//!
//! - [`spec`]: device specifications (`data/gpu_devices.toml`).
//! - [`params`]: fitted parameters and their file (`data/gpu_fit.toml`).
//! - [`model`]: per-operator timing and the step estimate.
//! - [`power`]: energy, bounded by TDP.
//! - [`hf`]: the Hugging Face speed-fit baseline.
//! - [`csv`], [`dataset`]: calibration points from `training_measurements.csv`.
//! - [`fit`], [`calibrate`]: Nelder–Mead fit and k-fold cross-validation.

pub mod calibrate;
pub mod csv;
pub mod dataset;
pub mod fit;
pub mod hf;
pub mod model;
pub mod params;
pub mod power;
pub mod spec;

pub use calibrate::{calibrate, CalibrationReport, GroupError};
pub use model::{gemm_shape_eff, GpuModel, PassTimes, StepEstimate, StepLayout};
pub use spec::{device, DeviceSpec};
