//! Flows that join Tessera's crates, shared by the `tessera` binary and the
//! end-to-end tests. Library crates never meet each other; they meet here.
//!
//! - [`cosim`]: generated RTL against the simulator (vectors and expected
//!   results from the functional mode, cycle counts from the timing mode).
//! - [`gemm_study`]: SCALE-Sim GEMM studies (compiler lowers, timing sim times).
//! - [`compare`]: a Tessera chip and a GPU on the same job, side by side.
//! - [`train`]: training on the functional simulator from a safetensors checkpoint.
//! - [`step_sim`]: one training step of a model, compiled and timed (the main job).
//! - [`tessera_timer`]: a Tessera chip as the scale-out model's layer timer
//!   (compiler plus timing simulator).

pub mod compare;
pub mod cosim;
pub mod gemm_study;
pub mod step_sim;
pub mod tessera_timer;
pub mod train;
pub mod vec_vectors;
