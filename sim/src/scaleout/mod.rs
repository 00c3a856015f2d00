//! The multi-chip scale-out model: data, tensor and pipeline parallelism,
//! ZeRO, recomputation, gradient accumulation and CPU offload on a
//! topology, with per-layer times from any [`LayerTimer`].
//!
//! - [`collective`]: cost formulas of all-reduce, reduce-scatter, all-gather, p2p.
//! - [`topology`]: ring, torus, switched fabric; the link a group gets.
//! - [`plan`]: a parallel plan and its text form.
//! - [`memory`]: per-device memory (ZeRO and Korthikanti formulas).
//! - [`step`]: step time and its breakdown.
//! - [`search`]: parallel plan search with `rayon`.
//! - [`gpu_timer`]: the GPU model as a [`LayerTimer`].
//! - [`validate`]: Megatron-LM validation cases from the calibration data.

pub mod collective;
pub mod gpu_timer;
pub mod memory;
pub mod plan;
pub mod search;
pub mod step;
pub mod topology;
pub mod validate;

pub use plan::{GradSync, Offload, Plan, Schedule, Zero};
pub use step::{estimate, Breakdown, Estimate, LayerTimer};
pub use topology::{Fabric, Topology};
