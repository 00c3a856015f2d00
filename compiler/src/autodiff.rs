//! Reverse-mode automatic differentiation over the graph IR.
//!
//! [`backward`] appends, for a scalar value `loss`, the nodes computing
//! d(seed * loss)/d(p) for every parameter `p` the loss depends on. Each
//! forward op has one rule below, written with IR ops, so the backward
//! graph is ordinary IR: it prints, parses, verifies and lowers like the
//! forward one. Gradients are fp32. In mixed precision the incoming
//! gradient of a matmul is cast to the matmul's input type first, as
//! `torch.autocast` does.

use std::collections::BTreeMap;

use tessera_isa::DType;

use crate::error::IrError;
use crate::ir::{AttentionPart, Epilogue, EpiloguePart, Graph, Op, TensorType, Unary, ValueId};

/// Parameter gradients, in parameter order.
#[derive(Debug)]
pub struct Gradients {
    /// `(parameter value, its name, its gradient)`.
    pub params: Vec<(ValueId, String, ValueId)>,
}

/// Appends the backward pass of `loss` to `g`. `seed` is the value
/// d(loss) starts from (a scalar: 1, or the loss scale).
///
/// # Errors
/// [`IrError::Verify`] if the loss is not a scalar or a node on the path
/// to it has no derivative (a gradient op itself: no second order).
pub fn backward(g: &mut Graph, loss: ValueId, seed: ValueId) -> Result<Gradients, IrError> {
    backward_recomputing(g, loss, seed, &[])
}

/// [`backward`] with full recomputation: `blocks[i]` names the block of
/// forward node `i` ([`crate::recompute::blocks`]; missing entries are
/// `None`). Just before the first backward rule of a block runs, every node
/// of that block is computed again (in forward order, from the values the
/// block reads from outside), and the block's rules read those copies, so
/// the originals die at the end of the forward pass. Copies no rule reads
/// are left for [`crate::fuse::dead_code`] to drop.
///
/// # Errors
/// As [`backward`].
pub fn backward_recomputing(
    g: &mut Graph,
    loss: ValueId,
    seed: ValueId,
    blocks: &[Option<u32>],
) -> Result<Gradients, IrError> {
    if !g.ty(loss).shape.is_empty() {
        return Err(IrError::Verify {
            node: loss.0,
            op: g.nodes[loss.0].op.name().into(),
            rule: "the loss must be a scalar".into(),
        });
    }
    let forward_len = loss.0 + 1;
    // Which values depend on a parameter (only those get gradients).
    let mut needs = vec![false; forward_len];
    for i in 0..forward_len {
        let n = &g.nodes[i];
        needs[i] = matches!(n.op, Op::Param { .. }) || n.inputs.iter().any(|v| needs[v.0]);
    }
    let block_of = |i: usize| blocks.get(i).copied().flatten();
    // Recomputed copies: original node -> copy, and back.
    let mut copy_of: BTreeMap<usize, ValueId> = BTreeMap::new();
    let mut original_of: BTreeMap<usize, usize> = BTreeMap::new();
    let mut recomputed: std::collections::BTreeSet<u32> = std::collections::BTreeSet::new();
    let mut grads: BTreeMap<usize, ValueId> = BTreeMap::new();
    grads.insert(loss.0, seed);
    for i in (0..forward_len).rev() {
        let Some(&dy) = grads.get(&i) else { continue };
        if matches!(g.nodes[i].op, Op::Param { .. }) {
            continue;
        }
        if let Some(b) = block_of(i) {
            if recomputed.insert(b) {
                for j in (0..forward_len).filter(|&j| block_of(j) == Some(b)) {
                    let node = g.nodes[j].clone();
                    let inputs: Vec<ValueId> = node
                        .inputs
                        .iter()
                        .map(|v| copy_of.get(&v.0).copied().unwrap_or(*v))
                        .collect();
                    let c = g.push(node.op, &inputs)?;
                    copy_of.insert(j, c);
                    original_of.insert(c.0, j);
                }
            }
        }
        // A block's rules read its own copies; values from outside the
        // block are the kept originals.
        let own = |v: ValueId| match block_of(i) {
            Some(b) if block_of(v.0) == Some(b) => copy_of.get(&v.0).copied().unwrap_or(v),
            _ => v,
        };
        let node = g.nodes[i].clone();
        let inputs: Vec<ValueId> = node.inputs.iter().map(|&v| own(v)).collect();
        let y = own(ValueId(i));
        let contributions = rule(g, y, &node.op, &inputs, dy)?;
        for (input, d) in contributions {
            let input = ValueId(original_of.get(&input.0).copied().unwrap_or(input.0));
            if !needs[input.0] {
                continue;
            }
            let sum = match grads.get(&input.0) {
                Some(&prev) => g.push(Op::Add, &[prev, d])?,
                None => d,
            };
            grads.insert(input.0, sum);
        }
    }
    let params = g
        .params()
        .map(|(v, name)| (v, name.to_string()))
        .collect::<Vec<_>>()
        .into_iter()
        .filter_map(|(v, name)| grads.get(&v.0).map(|&d| (v, name, d)))
        .collect();
    Ok(Gradients { params })
}

/// The contributions of one node's output gradient `dy` to its inputs.
fn rule(
    g: &mut Graph,
    y: ValueId,
    op: &Op,
    x: &[ValueId],
    dy: ValueId,
) -> Result<Vec<(ValueId, ValueId)>, IrError> {
    let shape = |g: &Graph, v: ValueId| g.ty(v).shape.clone();
    // Reduces a broadcast operand's gradient back to its shape.
    let unbroadcast = |g: &mut Graph, d: ValueId, to: ValueId| -> Result<ValueId, IrError> {
        let target = g.ty(to).shape.clone();
        if g.ty(d).shape == target {
            Ok(d)
        } else {
            g.push(Op::SumTo { shape: target }, &[d])
        }
    };
    let mut out = Vec::new();
    match op {
        Op::Param { .. } | Op::Input { .. } | Op::State { .. } | Op::Const { .. } => {}
        Op::Add => {
            out.push((x[0], dy));
            out.push((x[1], unbroadcast(g, dy, x[1])?));
        }
        Op::Sub => {
            out.push((x[0], dy));
            let n = g.push(Op::Unary(Unary::Neg), &[dy])?;
            out.push((x[1], unbroadcast(g, n, x[1])?));
        }
        Op::Mul => {
            out.push((x[0], g.push(Op::Mul, &[dy, x[1]])?));
            let p = g.push(Op::Mul, &[dy, x[0]])?;
            out.push((x[1], unbroadcast(g, p, x[1])?));
        }
        Op::Div => {
            out.push((x[0], g.push(Op::Div, &[dy, x[1]])?));
            // d/db (a / b) = -a / b^2 = -(y / b)
            let q = g.push(Op::Div, &[y, x[1]])?;
            let p = g.push(Op::Mul, &[dy, q])?;
            let n = g.push(Op::Unary(Unary::Neg), &[p])?;
            out.push((x[1], unbroadcast(g, n, x[1])?));
        }
        Op::Affine { scale, .. } => {
            out.push((
                x[0],
                g.push(
                    Op::Affine {
                        scale: *scale,
                        shift: 0.0,
                    },
                    &[dy],
                )?,
            ));
        }
        Op::Unary(u) => {
            let d = match u {
                Unary::Neg => g.push(Op::Unary(Unary::Neg), &[dy])?,
                Unary::Exp => g.push(Op::Mul, &[dy, y])?,
                Unary::Log => g.push(Op::Div, &[dy, x[0]])?,
                Unary::Sqrt => {
                    let q = g.push(Op::Div, &[dy, y])?;
                    g.push(
                        Op::Affine {
                            scale: 0.5,
                            shift: 0.0,
                        },
                        &[q],
                    )?
                }
                Unary::Rsqrt => {
                    // d/dx x^-1/2 = -1/2 y^3
                    let y2 = g.push(Op::Unary(Unary::Square), &[y])?;
                    let y3 = g.push(Op::Mul, &[y2, y])?;
                    let p = g.push(Op::Mul, &[dy, y3])?;
                    g.push(
                        Op::Affine {
                            scale: -0.5,
                            shift: 0.0,
                        },
                        &[p],
                    )?
                }
                Unary::Recip => {
                    let y2 = g.push(Op::Unary(Unary::Square), &[y])?;
                    let p = g.push(Op::Mul, &[dy, y2])?;
                    g.push(Op::Unary(Unary::Neg), &[p])?
                }
                Unary::Square => {
                    let p = g.push(Op::Mul, &[dy, x[0]])?;
                    g.push(
                        Op::Affine {
                            scale: 2.0,
                            shift: 0.0,
                        },
                        &[p],
                    )?
                }
                Unary::Sign | Unary::NonZero => return Ok(out),
                Unary::GeluTanh | Unary::GeluErf | Unary::Silu => {
                    let gradf = match u {
                        Unary::GeluTanh => Unary::GeluTanhGrad,
                        Unary::GeluErf => Unary::GeluErfGrad,
                        _ => Unary::SiluGrad,
                    };
                    let dfx = g.push(Op::Unary(gradf), &[x[0]])?;
                    g.push(Op::Mul, &[dy, dfx])?
                }
                Unary::GeluTanhGrad | Unary::GeluErfGrad | Unary::SiluGrad => {
                    return Err(no_rule(g, y, "second derivatives are not supported"))
                }
            };
            out.push((x[0], d));
        }
        Op::Cast { .. } => {
            let from = g.ty(x[0]).dtype;
            let d = if g.ty(dy).dtype == from {
                dy
            } else {
                g.push(Op::Cast { to: from }, &[dy])?
            };
            out.push((x[0], d));
        }
        Op::Reshape { .. } => {
            let s = shape(g, x[0]);
            out.push((x[0], g.push(Op::Reshape { shape: s }, &[dy])?));
        }
        Op::MatMul { ta, tb, .. } => matmul_rule(g, x, *ta, *tb, dy, &mut out)?,
        Op::MatMulEpilogue(e) if e.part == EpiloguePart::Out => {
            epilogue_rule(g, e, x, dy, &mut out)?
        }
        Op::SumAll => {
            let ones = g.push(
                Op::Const {
                    value: 1.0,
                    ty: TensorType::new(&shape(g, x[0]), DType::Fp32),
                },
                &[],
            )?;
            out.push((x[0], g.push(Op::Mul, &[ones, dy])?));
        }
        Op::Where => {
            let zeros = g.push(
                Op::Const {
                    value: 0.0,
                    ty: g.ty(dy).clone(),
                },
                &[],
            )?;
            out.push((x[1], g.push(Op::Where, &[x[0], dy, zeros])?));
            out.push((x[2], g.push(Op::Where, &[x[0], zeros, dy])?));
        }
        Op::Softmax { .. } => out.push((x[0], g.push(Op::SoftmaxGrad, &[y, dy])?)),
        Op::Attention { scale, causal } => {
            let mut operands = vec![x[0], x[1], x[2], y, dy];
            operands.extend(x.get(3).copied());
            for part in [AttentionPart::Q, AttentionPart::K, AttentionPart::V] {
                let d = g.push(
                    Op::AttentionGrad {
                        scale: *scale,
                        causal: *causal,
                        part,
                    },
                    &operands,
                )?;
                out.push((x[part.index()], d));
            }
        }
        Op::LayerNorm { eps } => {
            out.push((
                x[0],
                g.push(Op::LayerNormGradX { eps: *eps }, &[x[0], x[1], dy])?,
            ));
            out.push((x[1], g.push(Op::LayerNormGradW { eps: *eps }, &[x[0], dy])?));
            out.push((x[2], unbroadcast(g, dy, x[2])?));
        }
        Op::RmsNorm { eps } => {
            out.push((
                x[0],
                g.push(Op::RmsNormGradX { eps: *eps }, &[x[0], x[1], dy])?,
            ));
            out.push((x[1], g.push(Op::RmsNormGradW { eps: *eps }, &[x[0], dy])?));
        }
        Op::Embedding => {
            let rows = g.ty(x[0]).shape[0];
            out.push((x[0], g.push(Op::EmbeddingGrad { rows }, &[dy, x[1]])?));
        }
        Op::Rope { theta, inverse } => {
            out.push((
                x[0],
                g.push(
                    Op::Rope {
                        theta: *theta,
                        inverse: !inverse,
                    },
                    &[dy],
                )?,
            ));
        }
        Op::SplitHeads { .. } => out.push((x[0], g.push(Op::MergeHeads, &[dy])?)),
        Op::MergeHeads => {
            let heads = g.ty(x[0]).shape[1];
            out.push((x[0], g.push(Op::SplitHeads { heads }, &[dy])?));
        }
        Op::RepeatKv { groups } => out.push((x[0], g.push(Op::SumKv { groups: *groups }, &[dy])?)),
        Op::SumKv { groups } => out.push((x[0], g.push(Op::RepeatKv { groups: *groups }, &[dy])?)),
        Op::Slice { axis, start, .. } => {
            let total = g.ty(x[0]).shape[*axis as usize];
            out.push((
                x[0],
                g.push(
                    Op::Pad {
                        axis: *axis,
                        start: *start,
                        total,
                    },
                    &[dy],
                )?,
            ));
        }
        Op::Pad { axis, start, .. } => {
            let len = g.ty(x[0]).shape[*axis as usize];
            out.push((
                x[0],
                g.push(
                    Op::Slice {
                        axis: *axis,
                        start: *start,
                        len,
                    },
                    &[dy],
                )?,
            ));
        }
        Op::CrossEntropy { shift } => {
            out.push((
                x[0],
                g.push(Op::CrossEntropyGrad { shift: *shift }, &[x[0], x[1], dy])?,
            ));
        }
        // Scales are constants of the step (no gradient through amax).
        Op::AbsMax => {}
        Op::RowMean => out.push((x[0], g.push(Op::RowMean, &[dy])?)),
        Op::LogSoftmax => out.push((x[0], g.push(Op::LogSoftmaxGrad, &[y, dy])?)),
        Op::Nll { shift } => {
            out.push((
                x[0],
                g.push(Op::NllGrad { shift: *shift }, &[x[0], x[1], dy])?,
            ));
        }
        Op::SumTo { .. }
        | Op::Max
        | Op::Min
        | Op::MatMulEpilogue(_)
        | Op::AllFinite
        | Op::LogSoftmaxGrad
        | Op::NllGrad { .. }
        | Op::SoftmaxGrad
        | Op::AttentionGrad { .. }
        | Op::AdamW { .. }
        | Op::LayerNormGradX { .. }
        | Op::LayerNormGradW { .. }
        | Op::RmsNormGradX { .. }
        | Op::RmsNormGradW { .. }
        | Op::EmbeddingGrad { .. }
        | Op::CrossEntropyGrad { .. }
        | Op::Output { .. }
        | Op::Assign { .. } => return Err(no_rule(g, y, "has no derivative rule")),
    }
    Ok(out)
}

fn no_rule(g: &Graph, y: ValueId, why: &str) -> IrError {
    IrError::Verify {
        node: y.0,
        op: g.nodes[y.0].op.name().into(),
        rule: format!("on the loss path, {why}"),
    }
}

/// Gradients of a fused epilogue, exactly the rules of the unfused chain
/// (cast, residual add, GELU, bias add, product) in reverse. The GELU's
/// derivative reads the pre-activation from the op's `pre` part (written
/// by the forward kernel) instead of recomputing the product.
fn epilogue_rule(
    g: &mut Graph,
    e: &Epilogue,
    x: &[ValueId],
    dy: ValueId,
    out: &mut Vec<(ValueId, ValueId)>,
) -> Result<(), IrError> {
    let d_sum = if g.ty(dy).dtype == DType::Fp32 {
        dy
    } else {
        g.push(Op::Cast { to: DType::Fp32 }, &[dy])?
    };
    let bias_at = 2;
    let res_at = 2 + usize::from(e.bias);
    if e.residual {
        out.push((x[res_at], d_sum));
    }
    let d_pre = match e.act {
        Some(u) => {
            let gradf = match u {
                Unary::GeluErf => Unary::GeluErfGrad,
                _ => Unary::GeluTanhGrad,
            };
            let pre = g.push(
                Op::MatMulEpilogue(e.with_part(EpiloguePart::Pre)),
                &x[..res_at],
            )?;
            let dfx = g.push(Op::Unary(gradf), &[pre])?;
            g.push(Op::Mul, &[d_sum, dfx])?
        }
        None => d_sum,
    };
    if e.bias {
        let n = g.ty(x[bias_at]).shape.clone();
        out.push((x[bias_at], g.push(Op::SumTo { shape: n }, &[d_pre])?));
    }
    matmul_rule(g, &x[..2], e.ta, e.tb, d_pre, out)
}

/// Gradients of `C = op_a(A) op_b(B)`; a 2-D `B` shared by a batched `A`
/// gets its gradient with the batch folded into the reduction.
fn matmul_rule(
    g: &mut Graph,
    x: &[ValueId],
    ta: bool,
    tb: bool,
    dy: ValueId,
    out: &mut Vec<(ValueId, ValueId)>,
) -> Result<(), IrError> {
    let (a, b) = (x[0], x[1]);
    let f32_ = DType::Fp32;
    let cast_to = |g: &mut Graph, v: ValueId, to: DType| -> Result<ValueId, IrError> {
        if g.ty(v).dtype == to {
            Ok(v)
        } else {
            g.push(Op::Cast { to }, &[v])
        }
    };
    let da_in = cast_to(g, dy, g.ty(b).dtype)?;
    let db_in = cast_to(g, dy, g.ty(a).dtype)?;
    let mm = |g: &mut Graph, p: ValueId, q: ValueId, ta: bool, tb: bool| {
        g.push(Op::MatMul { ta, tb, out: f32_ }, &[p, q])
    };
    // dA
    let da = match (ta, tb) {
        (false, false) => mm(g, da_in, b, false, true)?,
        (false, true) => mm(g, da_in, b, false, false)?,
        (true, false) => mm(g, b, da_in, false, true)?,
        (true, true) => mm(g, b, da_in, true, true)?,
    };
    out.push((a, da));
    // dB
    let batched_a = g.ty(a).shape.len() > 2;
    let shared_b = g.ty(b).shape.len() == 2;
    if batched_a && shared_b {
        if ta {
            return Err(no_rule(
                g,
                a,
                "a transposed batched left operand with a shared right operand",
            ));
        }
        let flat = |g: &mut Graph, v: ValueId| -> Result<ValueId, IrError> {
            let s = g.ty(v).shape.clone();
            let rows: u64 = s[..s.len() - 1].iter().product();
            g.push(
                Op::Reshape {
                    shape: vec![rows, s[s.len() - 1]],
                },
                &[v],
            )
        };
        let a2 = flat(g, a)?;
        let d2 = flat(g, db_in)?;
        let db = if tb {
            mm(g, d2, a2, true, false)?
        } else {
            mm(g, a2, d2, true, false)?
        };
        out.push((b, db));
    } else {
        let db = match (ta, tb) {
            (false, false) => mm(g, a, db_in, true, false)?,
            (false, true) => mm(g, db_in, a, true, false)?,
            (true, false) => mm(g, a, db_in, false, false)?,
            (true, true) => mm(g, db_in, a, true, true)?,
        };
        out.push((b, db));
    }
    Ok(())
}
