//! The Tessera compiler: Transformer training steps to Tessera programs.
//!
//! Pipeline: [`model::ModelConfig`] + [`setup::TrainingSetup`] ->
//! forward graph ([`build`]) -> backward graph ([`autodiff`]) -> optimizer
//! update ([`optim`]) -> the graph IR ([`ir`]), which has a text form a user
//! can read and edit.
//!
//! Architecture invariant: this crate imports `tessera-isa` only; cost
//! estimates are pure functions of an `Arch`, never calls into the simulator.

pub mod autodiff;
pub mod build;
pub mod error;
pub mod fp8;
pub mod fuse;
pub mod gemm;
pub mod ir;
pub mod lower;
pub mod model;
pub mod optim;
pub mod recompute;
pub mod scalesim;
pub mod setup;
pub mod step;

pub use error::{IrError, LowerError, ModelError, SetupError};
pub use model::{Activation, Family, ModelConfig};
pub use setup::{Optimizer, Precision, Recompute, TrainingSetup};
pub use step::{training_graph, Stage};
