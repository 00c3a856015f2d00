//! The whole training step as one graph: forward and loss ([`build`]),
//! fusion ([`crate::fuse`]), backward ([`autodiff`]), the global gradient norm, and the optimizer
//! update ([`optim`]). The pipeline is this one function, so each stage
//! can be dumped.

use tessera_isa::DType;

use crate::autodiff;
use crate::build;
use crate::error::SetupError;
use crate::ir::{verify, Graph, Op, TensorType, Unary};
use crate::model::ModelConfig;
use crate::optim;
use crate::setup::TrainingSetup;

/// Where the pipeline stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Forward pass and loss.
    Forward,
    /// Plus the backward pass and the gradient norm.
    Backward,
    /// The whole step, optimizer update included.
    Step,
}

/// Builds the training-step graph up to `stage`, verified.
///
/// # Errors
/// [`SetupError`] if the setup does not fit the model.
pub fn training_graph(
    model: &ModelConfig,
    setup: &TrainingSetup,
    stage: Stage,
) -> Result<Graph, SetupError> {
    if setup.grad_accumulation != 1 {
        return Err(SetupError::Invalid {
            field: "grad_accumulation".into(),
            rule: format!("must be 1 in this version, got {}", setup.grad_accumulation),
        });
    }
    let fwd = build::forward(model, setup)?;
    let mut g = crate::fuse::fuse(&fwd.graph, setup.fusion)?;
    // The loss is the value the "loss" output reads.
    let loss = g
        .nodes
        .iter()
        .find_map(|n| matches!(&n.op, Op::Output { name } if name == "loss").then(|| n.inputs[0]))
        .unwrap_or(fwd.loss);
    if stage != Stage::Forward {
        let seed = g.push(
            Op::Const {
                value: 1.0,
                ty: TensorType::scalar(),
            },
            &[],
        )?;
        let grads = autodiff::backward(&mut g, loss, seed)?;
        // Global L2 norm of the gradients, before the update.
        let mut total = None;
        for &(_, _, d) in &grads.params {
            let sq = g.push(Op::Unary(Unary::Square), &[d])?;
            let s = g.push(Op::SumAll, &[sq])?;
            total = Some(match total {
                Some(t) => g.push(Op::Add, &[t, s])?,
                None => s,
            });
        }
        let total = match total {
            Some(t) => t,
            None => g.push(
                Op::Const {
                    value: 0.0,
                    ty: TensorType::new(&[], DType::Fp32),
                },
                &[],
            )?,
        };
        let norm = g.push(Op::Unary(Unary::Sqrt), &[total])?;
        g.push(
            Op::Output {
                name: "grad_norm".into(),
            },
            &[norm],
        )?;
        if stage == Stage::Step {
            optim::update(&mut g, &grads, &setup.optimizer)?;
        }
    }
    verify::verify(&g)?;
    Ok(g)
}
