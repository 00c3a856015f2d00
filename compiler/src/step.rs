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
use crate::setup::TrainingSetup;
use crate::setup::{Precision, Recompute};

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
    if setup.grad_accumulation == 0 || setup.grad_accumulation > 64 {
        return Err(SetupError::Invalid {
            field: "grad_accumulation".into(),
            rule: format!("must be 1 to 64, got {}", setup.grad_accumulation),
        });
    }
    match setup.recompute {
        crate::setup::Recompute::None => {}
        // The fused attention's backward recomputes the scores and
        // probabilities from q, k and v: that is selective recomputation.
        crate::setup::Recompute::Selective if setup.fusion.attention => {}
        crate::setup::Recompute::Selective => {
            return Err(SetupError::Invalid {
                field: "recompute".into(),
                rule: "`selective` recomputes the attention core inside the fused attention op; it needs the attention fusion".into(),
            })
        }
        // Whole blocks are recomputed in the backward (see
        // [`crate::recompute`]); with the attention fusion the attention
        // core is recomputed a second time inside its backward, as in
        // Megatron-LM with FlashAttention.
        crate::setup::Recompute::Full => {}
    }
    let fwd = build::forward(model, setup)?;
    let mut fusion = setup.fusion;
    if setup.precision == Precision::Fp8Mixed {
        // The fp8 product is unscaled before its bias and activation,
        // which the fused GEMM epilogue does not do: keep them apart.
        fusion.epilogue = false;
    }
    let single = crate::fuse::fuse(&fwd.graph, fusion)?;
    let loss_of = |g: &Graph| {
        g.nodes
            .iter()
            .find_map(|n| {
                matches!(&n.op, Op::Output { name } if name == "loss").then(|| n.inputs[0])
            })
            .unwrap_or(fwd.loss)
    };
    if setup.grad_accumulation > 1 && stage != Stage::Forward {
        return accumulated(&single, loss_of(&single), setup, stage);
    }
    let mut g = single.clone();
    let loss = loss_of(&g);
    let mut gradient_seed = None;
    if stage != Stage::Forward {
        let seed = seed(&mut g, setup)?;
        let grads = backward(&mut g, loss, seed.0, 0, setup)?;
        finish(&mut g, grads, seed.1, setup, stage)?;
        gradient_seed = Some(seed.0);
    }
    // Both drop what nothing reads any more (the recomputed copies no rule
    // used, the bf16 casts fp8 replaced).
    if setup.precision == Precision::Fp8Mixed {
        g = crate::fp8::rewrite(&g, gradient_seed)?;
    } else if setup.recompute == Recompute::Full {
        g = crate::fuse::dead_code(&g)?;
    }
    verify::verify(&g)?;
    Ok(g)
}

/// The backward pass of the forward nodes `from..=loss`, recomputing whole
/// blocks when the setup asks for it.
fn backward(
    g: &mut Graph,
    loss: ValueId,
    seed: ValueId,
    from: usize,
    setup: &TrainingSetup,
) -> Result<autodiff::Gradients, SetupError> {
    let blocks = match setup.recompute {
        Recompute::Full => crate::recompute::blocks(g, from, loss.0 + 1),
        Recompute::None | Recompute::Selective => Vec::new(),
    };
    Ok(autodiff::backward_recomputing(g, loss, seed, &blocks)?)
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

/// The value d(loss) starts from: 1, or the loss scale state in fp16-mixed
/// (also returned as the scale).
fn seed(g: &mut Graph, setup: &TrainingSetup) -> Result<(ValueId, Option<ValueId>), SetupError> {
    let scalar = TensorType::scalar();
    if setup.precision != Precision::Fp16Mixed {
        return Ok((
            g.push(
                Op::Const {
                    value: 1.0,
                    ty: scalar,
                },
                &[],
            )?,
            None,
        ));
    }
    if !(setup.loss_scale_init.is_finite() && setup.loss_scale_init > 0.0)
        || setup.loss_scale_interval == 0
    {
        return Err(SetupError::Invalid {
            field: "loss_scale".into(),
            rule: "the initial scale must be positive and the growth interval at least 1".into(),
        });
    }
    let s = g.push(
        Op::State {
            name: "amp.loss_scale".into(),
            ty: scalar,
            init: setup.loss_scale_init,
        },
        &[],
    )?;
    Ok((s, Some(s)))
}

/// Unscaling and overflow check (fp16-mixed), the gradient norm, and the
/// optimizer update.
fn finish(
    g: &mut Graph,
    mut grads: autodiff::Gradients,
    scale: Option<ValueId>,
    setup: &TrainingSetup,
    stage: Stage,
) -> Result<(), SetupError> {
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
        optim::update_guarded(g, &grads, &setup.optimizer, finite, setup.fusion.optimizer)?;
        if let (Some(s), Some(ok)) = (scale, finite) {
            loss_scale_update(g, s, ok, setup.loss_scale_interval)?;
        }
    }
    Ok(())
}

/// Gradient accumulation: the forward and backward of each micro-batch in
/// turn (inputs renamed `NAME.k`), gradients and losses averaged, then one
/// update. Micro-batch k's activations die after its backward, so the
/// peak memory is one micro-batch's.
fn accumulated(
    single: &Graph,
    loss: ValueId,
    setup: &TrainingSetup,
    stage: Stage,
) -> Result<Graph, SetupError> {
    let n = setup.grad_accumulation;
    let mut g = Graph::new(&single.name);
    let (seed, scale) = seed(&mut g, setup)?;
    let weight = g.push(
        Op::Const {
            value: 1.0 / n as f64,
            ty: TensorType::scalar(),
        },
        &[],
    )?;
    let micro_seed = g.push(Op::Mul, &[seed, weight])?;
    let mut shared: std::collections::HashMap<usize, ValueId> = std::collections::HashMap::new();
    let mut sums: Option<autodiff::Gradients> = None;
    let mut losses = Vec::new();
    for k in 0..n {
        let from = g.nodes.len();
        let mut map: Vec<ValueId> = Vec::with_capacity(single.nodes.len());
        for (i, node) in single.nodes.iter().enumerate() {
            let id = match &node.op {
                Op::Param { .. } | Op::State { .. } | Op::Const { .. } => match shared.get(&i) {
                    Some(&v) => v,
                    None => {
                        let v = g.push(node.op.clone(), &[])?;
                        shared.insert(i, v);
                        v
                    }
                },
                Op::Input { name, ty } => g.push(
                    Op::Input {
                        name: format!("{name}.{k}"),
                        ty: ty.clone(),
                    },
                    &[],
                )?,
                Op::Output { .. } | Op::Assign { .. } => ValueId(usize::MAX),
                op => {
                    let inputs: Vec<ValueId> = node.inputs.iter().map(|v| map[v.0]).collect();
                    g.push(op.clone(), &inputs)?
                }
            };
            map.push(id);
        }
        let l = map[loss.0];
        losses.push(l);
        let grads = backward(&mut g, l, micro_seed, from, setup)?;
        sums = Some(match sums {
            None => grads,
            Some(mut acc) => {
                for (a, b) in acc.params.iter_mut().zip(&grads.params) {
                    a.2 = g.push(Op::Add, &[a.2, b.2])?;
                }
                acc
            }
        });
    }
    let mut total = losses[0];
    for &l in &losses[1..] {
        total = g.push(Op::Add, &[total, l])?;
    }
    let mean = g.push(
        Op::Affine {
            scale: 1.0 / n as f64,
            shift: 0.0,
        },
        &[total],
    )?;
    g.push(
        Op::Output {
            name: "loss".into(),
        },
        &[mean],
    )?;
    finish(
        &mut g,
        sums.expect("at least one micro-batch"),
        scale,
        setup,
        stage,
    )?;
    if setup.precision == Precision::Fp8Mixed {
        g = crate::fp8::rewrite(&g, Some(micro_seed))?;
    } else if setup.recompute == Recompute::Full {
        g = crate::fuse::dead_code(&g)?;
    }
    verify::verify(&g)?;
    Ok(g)
}
