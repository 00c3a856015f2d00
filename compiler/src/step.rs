//! The whole training step as one graph: forward and loss ([`build`]),
//! fusion ([`crate::fuse`]), backward ([`autodiff`]), the global gradient norm, and the optimizer
//! update ([`optim`]). The pipeline is this one function, so each stage
//! can be dumped.

use tessera_isa::DType;

use crate::autodiff;
use crate::build;
use crate::error::SetupError;
use crate::ir::{verify, Graph, Op, TensorType, Unary, ValueId};
use crate::model::ModelConfig;
use crate::optim;
use crate::setup::Precision;
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
        let scaled = setup.precision == Precision::Fp16Mixed;
        let scalar = TensorType::scalar();
        // fp16-mixed: the loss gradient starts at the loss scale.
        let (seed, scale) = if scaled {
            if !(setup.loss_scale_init.is_finite() && setup.loss_scale_init > 0.0)
                || setup.loss_scale_interval == 0
            {
                return Err(SetupError::Invalid {
                    field: "loss_scale".into(),
                    rule: "the initial scale must be positive and the growth interval at least 1"
                        .into(),
                });
            }
            let s = g.push(
                Op::State {
                    name: "amp.loss_scale".into(),
                    ty: scalar.clone(),
                    init: setup.loss_scale_init,
                },
                &[],
            )?;
            (s, Some(s))
        } else {
            (
                g.push(
                    Op::Const {
                        value: 1.0,
                        ty: scalar.clone(),
                    },
                    &[],
                )?,
                None,
            )
        };
        let mut grads = autodiff::backward(&mut g, loss, seed)?;
        // Unscale, and note whether every gradient is finite.
        let mut finite = None;
        if let Some(s) = scale {
            let inv = g.push(Op::Unary(Unary::Recip), &[s])?;
            for entry in &mut grads.params {
                entry.2 = g.push(Op::Mul, &[entry.2, inv])?;
                let ok = g.push(Op::AllFinite, &[entry.2])?;
                finite = Some(match finite {
                    Some(f) => g.push(Op::Mul, &[f, ok])?,
                    None => ok,
                });
            }
        }
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
        if let (Some(s), Some(ok)) = (scale, finite) {
            g.push(
                Op::Output {
                    name: "loss_scale".into(),
                },
                &[s],
            )?;
            let skipped = g.push(
                Op::Affine {
                    scale: -1.0,
                    shift: 1.0,
                },
                &[ok],
            )?;
            g.push(
                Op::Output {
                    name: "skipped".into(),
                },
                &[skipped],
            )?;
        }
        if stage == Stage::Step {
            optim::update_guarded(&mut g, &grads, &setup.optimizer, finite)?;
            if let (Some(s), Some(ok)) = (scale, finite) {
                loss_scale_update(&mut g, s, ok, setup.loss_scale_interval)?;
            }
        }
    }
    verify::verify(&g)?;
    Ok(g)
}

/// GradScaler's update: after a clean step count it; at the interval,
/// double the scale and restart the count; after an overflow halve the
/// scale and restart the count.
fn loss_scale_update(
    g: &mut Graph,
    scale: ValueId,
    ok: ValueId,
    interval: u64,
) -> Result<(), crate::error::IrError> {
    let scalar = TensorType::scalar();
    let count = g.push(
        Op::State {
            name: "amp.growth_tracker".into(),
            ty: scalar,
            init: 0.0,
        },
        &[],
    )?;
    let next = g.push(
        Op::Affine {
            scale: 1.0,
            shift: 1.0,
        },
        &[count],
    )?;
    // reached = 1 if next == interval, else 0
    let diff = g.push(
        Op::Affine {
            scale: 1.0,
            shift: -(interval as f64),
        },
        &[next],
    )?;
    let differs = g.push(Op::Unary(Unary::NonZero), &[diff])?;
    let reached = g.push(
        Op::Affine {
            scale: -1.0,
            shift: 1.0,
        },
        &[differs],
    )?;
    let factor = g.push(
        Op::Affine {
            scale: 1.0,
            shift: 1.0,
        },
        &[reached],
    )?;
    let grown = g.push(Op::Mul, &[scale, factor])?;
    let kept = g.push(Op::Mul, &[next, differs])?;
    let halved = g.push(
        Op::Affine {
            scale: 0.5,
            shift: 0.0,
        },
        &[scale],
    )?;
    let zero = g.push(
        Op::Const {
            value: 0.0,
            ty: TensorType::scalar(),
        },
        &[],
    )?;
    let new_scale = g.push(Op::Where, &[ok, grown, halved])?;
    let new_count = g.push(Op::Where, &[ok, kept, zero])?;
    g.push(
        Op::Assign {
            name: "amp.loss_scale".into(),
        },
        &[new_scale],
    )?;
    g.push(
        Op::Assign {
            name: "amp.growth_tracker".into(),
        },
        &[new_count],
    )?;
    Ok(())
}
