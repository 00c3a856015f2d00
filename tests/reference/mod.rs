//! An independent f64 reference of GPT-2, Llama and BERT training (forward,
//! loss, hand-written backward, optimisers) used as the test oracle for the
//! compiler's simulated training steps. It shares no code with
//! `tessera-compiler`; see `README.md` here for conventions.
//!
//! Include it from a test file with `mod reference;`.
#![allow(dead_code, unused_imports)]

pub mod attention;
pub mod bert;
pub mod blocks;
pub mod config;
pub mod error;
pub mod gpt2;
pub mod llama;
pub mod loss;
pub mod model;
pub mod ops;
pub mod optim;
pub mod safetensors_io;
pub mod tensor;
pub mod train;
pub mod weights;

pub use config::{Family, RefConfig};
pub use error::RefError;
pub use model::{loss, loss_and_grads, Batch};
pub use optim::{OptState, Optimizer};
pub use tensor::{Rng, Tensor};
pub use train::{train, train_accumulated, StepRecord};
pub use weights::Weights;
