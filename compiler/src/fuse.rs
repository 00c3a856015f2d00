//! Fusion passes over the forward graph. Each is visible in the IR (it
//! replaces a chain of ops by one fused op) and can be switched off.
//!
//! - **Attention**: `matmul(q, k^T) -> affine(scale) -> softmax[causal |
//!   key mask] -> [cast] -> matmul(., v)` becomes one `attention` op
//!   (FlashAttention-style: the S x S scores never reach HBM). Grouped kv
//!   heads are passed as they are, without `repeat_kv`.
//!
//! - **Optimizer**: AdamW's update is emitted as fused `adamw` ops (see
//!   [`crate::optim`]) rather than elementwise graph code.
//!
//! [`dead_code`] then drops the nodes nothing reads any more (sources are
//! kept so the parameter set does not change).

use std::collections::HashMap;

use crate::error::IrError;
use crate::ir::{Graph, Mask, Node, Op, ValueId};

/// Which fusions run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fusion {
    /// Fused attention.
    pub attention: bool,
    /// AdamW's update of each parameter as one op (and one kernel) instead
    /// of a dozen elementwise ones.
    pub optimizer: bool,
}

impl Fusion {
    /// Every fusion on.
    pub const ALL: Fusion = Fusion {
        attention: true,
        optimizer: true,
    };
    /// Every fusion off.
    pub const NONE: Fusion = Fusion {
        attention: false,
        optimizer: false,
    };

    /// Names accepted by [`Fusion::disable`].
    pub const NAMES: [&'static str; 2] = ["attention", "optimizer"];

    /// Whether the pass of that name is on.
    pub fn enabled(&self, name: &str) -> bool {
        match name {
            "attention" => self.attention,
            "optimizer" => self.optimizer,
            _ => false,
        }
    }

    /// Turns one fusion off by name.
    ///
    /// # Errors
    /// The unknown name, with the known ones.
    pub fn disable(&mut self, name: &str) -> Result<(), String> {
        match name {
            "attention" => self.attention = false,
            "optimizer" => self.optimizer = false,
            other => {
                return Err(format!(
                    "unknown fusion `{other}` (known: {})",
                    Fusion::NAMES.join(", ")
                ))
            }
        }
        Ok(())
    }
}

/// Uses of every value.
fn use_counts(g: &Graph) -> Vec<usize> {
    let mut n = vec![0; g.nodes.len()];
    for node in &g.nodes {
        for v in &node.inputs {
            n[v.0] += 1;
        }
    }
    n
}

/// The operands of a fusable attention ending at node `ctx`:
/// `(q, k, v, key mask, scale, causal)`.
fn match_attention(
    g: &Graph,
    uses: &[usize],
    ctx: usize,
) -> Option<(ValueId, ValueId, ValueId, Option<ValueId>, f64, bool)> {
    let node = |v: ValueId| &g.nodes[v.0];
    let single = |v: ValueId| uses[v.0] == 1;
    let n = &g.nodes[ctx];
    let Op::MatMul {
        ta: false,
        tb: false,
        ..
    } = n.op
    else {
        return None;
    };
    let (mut probs, v) = (n.inputs[0], n.inputs[1]);
    if matches!(node(probs).op, Op::Cast { .. }) && single(probs) {
        probs = node(probs).inputs[0];
    }
    let Op::Softmax { mask } = node(probs).op else {
        return None;
    };
    if !single(probs) {
        return None;
    }
    let sm = node(probs);
    let key_mask = sm.inputs.get(1).copied();
    let scaled = sm.inputs[0];
    let Op::Affine { scale, shift } = node(scaled).op else {
        return None;
    };
    if shift != 0.0 || !single(scaled) || scale.is_nan() || scale <= 0.0 {
        return None;
    }
    let scores = node(scaled).inputs[0];
    let Op::MatMul {
        ta: false,
        tb: true,
        ..
    } = node(scores).op
    else {
        return None;
    };
    if !single(scores) {
        return None;
    }
    let (q, k) = (node(scores).inputs[0], node(scores).inputs[1]);
    let rank4 = |x: ValueId| g.ty(x).shape.len() == 4;
    if !(rank4(q) && rank4(k) && rank4(v))
        || g.ty(q).dtype != g.ty(k).dtype
        || g.ty(k).dtype != g.ty(v).dtype
    {
        return None;
    }
    // The fused kernel takes fp32 or bf16 operands (fp16-mixed stays unfused).
    if !matches!(
        g.ty(q).dtype,
        tessera_isa::DType::Fp32 | tessera_isa::DType::Bf16
    ) {
        return None;
    }
    Some((q, k, v, key_mask, scale, mask == Mask::Causal))
}

/// Looks through `repeat_kv` (and a cast of it) to the grouped heads.
fn grouped(g: &Graph, x: ValueId) -> (ValueId, bool) {
    let n = &g.nodes[x.0];
    match &n.op {
        Op::RepeatKv { .. } => (n.inputs[0], false),
        Op::Cast { .. } if matches!(g.nodes[n.inputs[0].0].op, Op::RepeatKv { .. }) => {
            (g.nodes[n.inputs[0].0].inputs[0], true)
        }
        _ => (x, false),
    }
}

/// Applies the enabled fusions and removes dead nodes.
///
/// # Errors
/// Only if the rewritten graph fails to type (a compiler bug).
pub fn fuse(g: &Graph, fusion: Fusion) -> Result<Graph, IrError> {
    if !fusion.attention {
        return Ok(g.clone());
    }
    let uses = use_counts(g);
    let mut out = Graph::new(&g.name);
    let mut map: Vec<ValueId> = Vec::with_capacity(g.nodes.len());
    for (i, node) in g.nodes.iter().enumerate() {
        let m = |v: &ValueId, map: &[ValueId]| map[v.0];
        let new = match match_attention(g, &uses, i) {
            Some((q, k, v, km, scale, causal)) => {
                let mut operands = vec![m(&q, &map)];
                for x in [k, v] {
                    let (src, cast) = grouped(g, x);
                    let id = if cast {
                        out.push(g.nodes[x.0].op.clone(), &[m(&src, &map)])?
                    } else {
                        m(&src, &map)
                    };
                    operands.push(id);
                }
                operands.extend(km.map(|k| m(&k, &map)));
                out.push(Op::Attention { scale, causal }, &operands)?
            }
            None => {
                let inputs: Vec<ValueId> = node.inputs.iter().map(|v| m(v, &map)).collect();
                out.push(node.op.clone(), &inputs)?
            }
        };
        map.push(new);
    }
    dead_code(&out)
}

/// Drops nodes whose values nothing reads (sources and sinks stay).
///
/// # Errors
/// Only if the rebuilt graph fails to type (a compiler bug).
pub fn dead_code(g: &Graph) -> Result<Graph, IrError> {
    let mut live = vec![false; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate().rev() {
        if n.ty.is_none() || n.op.is_source() {
            live[i] = true;
        }
        if live[i] {
            for v in &n.inputs {
                live[v.0] = true;
            }
        }
    }
    let mut out = Graph::new(&g.name);
    let mut map: HashMap<usize, ValueId> = HashMap::new();
    for (i, Node { op, inputs, .. }) in g.nodes.iter().enumerate() {
        if live[i] {
            let inputs: Vec<ValueId> = inputs.iter().map(|v| map[&v.0]).collect();
            map.insert(i, out.push(op.clone(), &inputs)?);
        }
    }
    Ok(out)
}
