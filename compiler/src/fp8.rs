//! fp8 products (`--precision fp8-mixed`): rewrites every bf16 product of
//! the step (a `matmul` whose operands are both bf16 casts) into a product
//! of fp8 operands with dynamic per-tensor scales.
//!
//! For an operand `x` of format `F` (e4m3 for weights and activations, e5m2
//! for anything derived from the loss gradient, the `seed`):
//! `s = max_F / max(amax(x), tiny)`, `q = cast_F(x * s)`; the product of
//! `q_a` and `q_b` accumulates in fp32 and is multiplied by
//! `1 / (s_a * s_b)`. A value's fp8 copy is made once and shared by every
//! product that reads it, so the forward's e4m3 activations are what the
//! weight-gradient products read in the backward (as Transformer Engine
//! keeps them). Scales are constants of the step: no gradient flows
//! through `amax`, and the backward was derived for the bf16 products
//! (the straight-through estimator of the casts).

use std::collections::HashMap;

use tessera_isa::DType;

use crate::error::IrError;
use crate::fuse::dead_code;
use crate::ir::{Graph, Op, TensorType, ValueId};

/// Largest finite e4m3 value.
pub const E4M3_MAX: f64 = 448.0;
/// Largest finite e5m2 value.
pub const E5M2_MAX: f64 = 57344.0;
/// Floor of amax, so an all-zero tensor gets a finite scale.
const AMAX_FLOOR: f64 = 1e-12;

/// Rewrites the bf16 products of `g` to fp8; `seed` is the value the
/// backward pass starts from (operands that depend on it are gradients;
/// `None` for a forward graph), then drops what nothing reads any more.
///
/// # Errors
/// Only if the rebuilt graph fails to type (a compiler bug).
pub fn rewrite(g: &Graph, seed: Option<ValueId>) -> Result<Graph, IrError> {
    let mut gradient = vec![false; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        gradient[i] = Some(ValueId(i)) == seed || n.inputs.iter().any(|v| gradient[v.0]);
    }
    // The fp32 value behind a bf16 operand, and the reshapes (innermost
    // first) between its cast and the product.
    let bf16_cast_of = |mut v: ValueId| {
        let mut reshapes = Vec::new();
        loop {
            match &g.nodes[v.0].op {
                Op::Cast { to: DType::Bf16 } => {
                    reshapes.reverse();
                    return Some((g.nodes[v.0].inputs[0], reshapes));
                }
                Op::Reshape { shape } => {
                    reshapes.push(shape.clone());
                    v = g.nodes[v.0].inputs[0];
                }
                _ => return None,
            }
        }
    };
    let mut out = Graph::new(&g.name);
    let mut map: Vec<ValueId> = Vec::with_capacity(g.nodes.len());
    // (original value, format) -> (fp8 copy, its scale)
    let mut copies: HashMap<(usize, DType), (ValueId, ValueId)> = HashMap::new();
    for node in &g.nodes {
        let inputs: Vec<ValueId> = node.inputs.iter().map(|v| map[v.0]).collect();
        let sources = match &node.op {
            Op::MatMul { .. } => node
                .inputs
                .iter()
                .map(|&v| bf16_cast_of(v))
                .collect::<Option<Vec<_>>>(),
            _ => None,
        };
        let Some(sources) = sources else {
            map.push(out.push(node.op.clone(), &inputs)?);
            continue;
        };
        let mut operands = Vec::new();
        let mut scales = Vec::new();
        for (x, reshapes) in sources {
            let format = if gradient[x.0] {
                DType::Fp8E5M2
            } else {
                DType::Fp8E4M3
            };
            let (q, s) = match copies.get(&(x.0, format)) {
                Some(&c) => c,
                None => {
                    let c = scaled_copy(&mut out, map[x.0], format)?;
                    copies.insert((x.0, format), c);
                    c
                }
            };
            let mut q = q;
            for shape in reshapes {
                q = out.push(Op::Reshape { shape }, &[q])?;
            }
            operands.push(q);
            scales.push(s);
        }
        let product = out.push(node.op.clone(), &operands)?;
        let both = out.push(Op::Mul, &[scales[0], scales[1]])?;
        let unscale = out.push(Op::Unary(crate::ir::Unary::Recip), &[both])?;
        map.push(out.push(Op::Mul, &[product, unscale])?);
    }
    dead_code(&out)
}

/// `(cast_F(x * s), s)` with `s = max_F / max(amax(x), floor)`.
fn scaled_copy(g: &mut Graph, x: ValueId, format: DType) -> Result<(ValueId, ValueId), IrError> {
    let scalar = |g: &mut Graph, value: f64| {
        g.push(
            Op::Const {
                value,
                ty: TensorType::scalar(),
            },
            &[],
        )
    };
    let largest = if format == DType::Fp8E5M2 {
        E5M2_MAX
    } else {
        E4M3_MAX
    };
    let amax = g.push(Op::AbsMax, &[x])?;
    let floor = scalar(g, AMAX_FLOOR)?;
    let amax = g.push(Op::Max, &[amax, floor])?;
    let top = scalar(g, largest)?;
    let s = g.push(Op::Div, &[top, amax])?;
    let scaled = g.push(Op::Mul, &[x, s])?;
    let q = g.push(Op::Cast { to: format }, &[scaled])?;
    Ok((q, s))
}
