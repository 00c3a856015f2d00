//! Fusion passes over the forward graph. Each is visible in the IR (it
//! replaces a chain of ops by one fused op) and can be switched off.
//!
//! - **Attention**: `matmul(q, k^T) -> affine(scale) -> softmax[causal |
//!   key mask] -> [cast] -> matmul(., v)` becomes one `attention` op
//!   (FlashAttention-style: the S x S scores never reach HBM). Grouped kv
//!   heads are passed as they are, without `repeat_kv`.
//!
//! - **Epilogue**: `matmul -> [+ bias row] -> [gelu] -> [+ residual] ->
//!   [cast]` (at least one of the four, each intermediate read by nothing
//!   else) becomes one `matmul_epilogue` op, lowered to one GEMM kernel
//!   whose output path applies the chain to each tile (see
//!   [`crate::ir::epilogue`]). Only products of array-native operands
//!   (bf16, fp16) with an fp32 result are fused: fp32 operands run as
//!   three products, which the fused kernel does not split.
//!
//! - **Optimizer**: AdamW's update is emitted as fused `adamw` ops (see
//!   [`crate::optim`]) rather than elementwise graph code.
//!
//! - **Norm**: the eager chain of a layer norm, `row_mean -> sub -> square
//!   -> row_mean -> affine(+eps) -> rsqrt -> mul -> mul(w) -> add(b)`,
//!   becomes one `layer_norm` op, and `square -> row_mean -> affine(+eps)
//!   -> rsqrt -> mul -> mul(w)` one `rms_norm` (their gradients are then
//!   the fused `*_grad_x` / `*_grad_w` ops, not the primitives' rules).
//!
//! - **Cross-entropy**: `nll(log_softmax(logits), labels)` becomes one
//!   `cross_entropy` op: the `[N, V]` log-probabilities never reach HBM
//!   and the gradient is one `cross_entropy_grad` kernel.
//!
//! A chain is rewritten only if none of its intermediate values has a
//! user outside it.
//!
//! [`dead_code`] then drops the nodes nothing reads any more (sources are
//! kept so the parameter set does not change).

use std::collections::HashMap;

use crate::error::IrError;
use tessera_isa::DType;

use crate::ir::{Epilogue, EpiloguePart, Graph, Mask, Node, Op, Unary, ValueId};

/// Which fusions run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fusion {
    /// Fused attention.
    pub attention: bool,
    /// AdamW's update of each parameter as one op (and one kernel) instead
    /// of a dozen elementwise ones.
    pub optimizer: bool,
    /// Layer and RMS norms as one op each instead of their primitive chains.
    pub norm: bool,
    /// Log-softmax plus negative log-likelihood as one `cross_entropy` op.
    pub cross_entropy: bool,
    /// Matmul epilogues (bias, GELU, residual add, cast) on the GEMM's output tiles.
    pub epilogue: bool,
}

impl Fusion {
    /// Every fusion on.
    pub const ALL: Fusion = Fusion {
        attention: true,
        optimizer: true,
        norm: true,
        cross_entropy: true,
        epilogue: true,
    };
    /// Every fusion off.
    pub const NONE: Fusion = Fusion {
        attention: false,
        optimizer: false,
        norm: false,
        cross_entropy: false,
        epilogue: false,
    };

    /// Names accepted by [`Fusion::disable`].
    pub const NAMES: [&'static str; 5] = [
        "attention",
        "optimizer",
        "norm",
        "cross_entropy",
        "epilogue",
    ];

    /// Whether the pass of that name is on.
    pub fn enabled(&self, name: &str) -> bool {
        match name {
            "attention" => self.attention,
            "optimizer" => self.optimizer,
            "norm" => self.norm,
            "cross_entropy" => self.cross_entropy,
            "epilogue" => self.epilogue,
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
            "norm" => self.norm = false,
            "cross_entropy" => self.cross_entropy = false,
            "epilogue" => self.epilogue = false,
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
    let mut g = if fusion.attention {
        fuse_attention(g)?
    } else {
        g.clone()
    };
    if fusion.norm {
        g = fuse_norms(&g)?;
    }
    if fusion.cross_entropy {
        g = fuse_cross_entropy(&g)?;
    }
    if fusion.epilogue {
        g = fuse_epilogues(&g)?;
    }
    Ok(g)
}

/// A fused op and its operands, replacing the chain ending at its root.
type Replacement = (Op, Vec<ValueId>);

/// Rebuilds `g` with each root in `fused` replaced by its fused op, then
/// drops the chains' dead nodes. Operands of a replacement precede its root.
fn replace(g: &Graph, fused: &HashMap<usize, Replacement>) -> Result<Graph, IrError> {
    if fused.is_empty() {
        return Ok(g.clone());
    }
    let mut out = Graph::new(&g.name);
    let mut map: Vec<ValueId> = Vec::with_capacity(g.nodes.len());
    for (i, node) in g.nodes.iter().enumerate() {
        let (op, inputs) = match fused.get(&i) {
            Some((op, inputs)) => (op, inputs),
            None => (&node.op, &node.inputs),
        };
        let inputs: Vec<ValueId> = inputs.iter().map(|v| map[v.0]).collect();
        map.push(out.push(op.clone(), &inputs)?);
    }
    dead_code(&out)
}

/// Matches chains of ops one step at a time: each step checks the op of a
/// value and that the chain is its only user.
struct Chain<'a> {
    g: &'a Graph,
    uses: &'a [usize],
    /// Nodes of the chain matched so far (the root excluded).
    nodes: Vec<usize>,
}

impl<'a> Chain<'a> {
    fn new(g: &'a Graph, uses: &'a [usize]) -> Chain<'a> {
        Chain {
            g,
            uses,
            nodes: Vec::new(),
        }
    }

    /// The operands of `v` if its op satisfies `is` and the chain holds
    /// all `users` of it.
    fn step(&mut self, v: ValueId, users: usize, is: impl Fn(&Op) -> bool) -> Option<Vec<ValueId>> {
        let n = &self.g.nodes[v.0];
        if !is(&n.op) || self.uses[v.0] != users {
            return None;
        }
        self.nodes.push(v.0);
        Some(n.inputs.clone())
    }

    /// Whether `w` is a `[H]` vector for rows of `x`.
    fn row_vector(&self, x: ValueId, w: ValueId) -> bool {
        let (xt, wt) = (self.g.ty(x), self.g.ty(w));
        !xt.shape.is_empty() && wt.shape == [xt.last()] && !wt.dtype.is_integer()
    }
}

/// `x * rsqrt(row_mean(square(x)) + eps) -> (x, eps)`, the product `v`
/// being the chain's; `x_users` is how many uses of `x` the chain makes
/// (2 for a layer norm's centred value, which has no other user).
fn match_normalize(c: &mut Chain, v: ValueId, x_users: Option<usize>) -> Option<(ValueId, f64)> {
    let prod = c.step(v, 1, |op| matches!(op, Op::Mul))?;
    let (x, inv) = (prod[0], prod[1]);
    let [shifted] = c.step(inv, 1, |op| matches!(op, Op::Unary(Unary::Rsqrt)))?[..] else {
        return None;
    };
    let eps = match c.g.nodes[shifted.0].op {
        Op::Affine { scale, shift } if scale == 1.0 && shift.is_finite() && shift >= 0.0 => shift,
        _ => return None,
    };
    let [var] = c.step(shifted, 1, |op| matches!(op, Op::Affine { .. }))?[..] else {
        return None;
    };
    let [sq] = c.step(var, 1, |op| matches!(op, Op::RowMean))?[..] else {
        return None;
    };
    let [sq_of] = c.step(sq, 1, |op| matches!(op, Op::Unary(Unary::Square)))?[..] else {
        return None;
    };
    if sq_of != x {
        return None;
    }
    if let Some(n) = x_users {
        if c.uses[x.0] != n {
            return None;
        }
    }
    Some((x, eps))
}

/// A layer norm ending at `root`: `add(mul(normalize(x - row_mean(x)), w), b)`.
fn match_layer_norm(g: &Graph, uses: &[usize], root: usize) -> Option<(Vec<usize>, Replacement)> {
    let mut c = Chain::new(g, uses);
    let n = &g.nodes[root];
    if !matches!(n.op, Op::Add) {
        return None;
    }
    let (scaled, b) = (n.inputs[0], n.inputs[1]);
    let [xhat, w] = c.step(scaled, 1, |op| matches!(op, Op::Mul))?[..] else {
        return None;
    };
    let (centred, eps) = match_normalize(&mut c, xhat, Some(2))?;
    let [x, mean] = c.step(centred, 2, |op| matches!(op, Op::Sub))?[..] else {
        return None;
    };
    let [mean_of] = c.step(mean, 1, |op| matches!(op, Op::RowMean))?[..] else {
        return None;
    };
    let fits = mean_of == x
        && c.row_vector(x, w)
        && c.row_vector(x, b)
        && !g.ty(x).dtype.is_integer()
        && g.ty(ValueId(root)) == g.ty(x);
    fits.then(|| (c.nodes, (Op::LayerNorm { eps }, vec![x, w, b])))
}

/// An RMS norm ending at `root`: `mul(normalize(x), w)`.
fn match_rms_norm(g: &Graph, uses: &[usize], root: usize) -> Option<(Vec<usize>, Replacement)> {
    let mut c = Chain::new(g, uses);
    let n = &g.nodes[root];
    if !matches!(n.op, Op::Mul) {
        return None;
    }
    let (xhat, w) = (n.inputs[0], n.inputs[1]);
    let (x, eps) = match_normalize(&mut c, xhat, None)?;
    let fits = c.row_vector(x, w) && !g.ty(x).dtype.is_integer() && g.ty(ValueId(root)) == g.ty(x);
    fits.then(|| (c.nodes, (Op::RmsNorm { eps }, vec![x, w])))
}

/// The `norm` pass: layer norms first, then RMS norms among the nodes no
/// layer norm took (a layer norm's tail is itself an RMS norm of the
/// centred value).
fn fuse_norms(g: &Graph) -> Result<Graph, IrError> {
    let uses = use_counts(g);
    let mut fused = HashMap::new();
    let mut taken = vec![false; g.nodes.len()];
    type Matcher = fn(&Graph, &[usize], usize) -> Option<(Vec<usize>, Replacement)>;
    for matcher in [match_layer_norm as Matcher, match_rms_norm] {
        for root in 0..g.nodes.len() {
            if taken[root] {
                continue;
            }
            if let Some((chain, rep)) = matcher(g, &uses, root) {
                if chain.iter().any(|&i| taken[i]) {
                    continue;
                }
                for i in chain {
                    taken[i] = true;
                }
                taken[root] = true;
                fused.insert(root, rep);
            }
        }
    }
    replace(g, &fused)
}

/// The `cross_entropy` pass: `nll{shift}(log_softmax(z), labels)` ->
/// `cross_entropy{shift}(z, labels)`.
fn fuse_cross_entropy(g: &Graph) -> Result<Graph, IrError> {
    let uses = use_counts(g);
    let mut fused = HashMap::new();
    for (root, n) in g.nodes.iter().enumerate() {
        let Op::Nll { shift } = n.op else { continue };
        let mut c = Chain::new(g, &uses);
        if let Some([z]) = c
            .step(n.inputs[0], 1, |op| matches!(op, Op::LogSoftmax))
            .as_deref()
        {
            fused.insert(root, (Op::CrossEntropy { shift }, vec![*z, n.inputs[1]]));
        }
    }
    replace(g, &fused)
}

/// The `attention` pass.
fn fuse_attention(g: &Graph) -> Result<Graph, IrError> {
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

/// The users of every value, in node order.
fn users(g: &Graph) -> Vec<Vec<usize>> {
    let mut u = vec![Vec::new(); g.nodes.len()];
    for (i, node) in g.nodes.iter().enumerate() {
        for v in &node.inputs {
            u[v.0].push(i);
        }
    }
    u
}

/// The fusable epilogue chain starting at the product `mm`: the fused op,
/// its operands and the chain's last node.
fn match_epilogue(
    g: &Graph,
    users: &[Vec<usize>],
    mm: usize,
) -> Option<(Epilogue, Vec<ValueId>, usize)> {
    let Op::MatMul {
        ta,
        tb,
        out: DType::Fp32,
    } = g.nodes[mm].op
    else {
        return None;
    };
    let x = &g.nodes[mm].inputs;
    if g.ty(x[0]).dtype == DType::Fp32 || g.ty(x[1]).dtype == DType::Fp32 {
        return None;
    }
    let mut e = Epilogue {
        ta,
        tb,
        bias: false,
        act: None,
        residual: false,
        out: DType::Fp32,
        part: EpiloguePart::Out,
    };
    let mut operands = vec![x[0], x[1]];
    let mut residual = None;
    let mut cur = mm;
    let shape = g.ty(ValueId(mm)).shape.clone();
    let n = *shape.last()?;
    // The single user of `cur`, if any.
    let next = |cur: usize| match users[cur].as_slice() {
        [u] => Some(*u),
        _ => None,
    };
    let fp32 = |v: usize| g.ty(ValueId(v)).dtype == DType::Fp32;
    // The other operand of a binary op `u` that reads `cur`.
    let other = |u: usize, cur: usize| {
        let i = &g.nodes[u].inputs;
        match (i[0].0 == cur, i[1].0 == cur) {
            (true, false) => Some((i[1], true)),
            (false, true) => Some((i[0], false)),
            _ => None,
        }
    };
    if let Some(u) = next(cur) {
        if let Some((b, true)) = (g.nodes[u].op == Op::Add).then(|| other(u, cur)).flatten() {
            if g.ty(b).shape == [n] && fp32(u) {
                e.bias = true;
                operands.push(b);
                cur = u;
            }
        }
    }
    if let Some(u) = next(cur) {
        if let Op::Unary(f @ (Unary::GeluTanh | Unary::GeluErf)) = g.nodes[u].op {
            e.act = Some(f);
            cur = u;
        }
    }
    if let Some(u) = next(cur) {
        if let Some((r, _)) = (g.nodes[u].op == Op::Add).then(|| other(u, cur)).flatten() {
            if g.ty(r).shape == shape && fp32(u) && fp32(r.0) {
                e.residual = true;
                residual = Some(r);
                cur = u;
            }
        }
    }
    if let Some(u) = next(cur) {
        if let Op::Cast { to } = g.nodes[u].op {
            e.out = to;
            cur = u;
        }
    }
    operands.extend(residual);
    (cur != mm).then_some((e, operands, cur))
}

/// Rewrites every fusable matmul epilogue chain into one `matmul_epilogue`
/// (placed where the chain's last node was) and removes dead nodes.
fn fuse_epilogues(g: &Graph) -> Result<Graph, IrError> {
    let users = users(g);
    let mut ends: HashMap<usize, (Epilogue, Vec<ValueId>)> = HashMap::new();
    for mm in 0..g.nodes.len() {
        if let Some((e, operands, end)) = match_epilogue(g, &users, mm) {
            ends.insert(end, (e, operands));
        }
    }
    let mut out = Graph::new(&g.name);
    let mut map: Vec<ValueId> = Vec::with_capacity(g.nodes.len());
    for (i, node) in g.nodes.iter().enumerate() {
        let new = match ends.get(&i) {
            Some((e, operands)) => {
                let inputs: Vec<ValueId> = operands.iter().map(|v| map[v.0]).collect();
                out.push(Op::MatMulEpilogue(*e), &inputs)?
            }
            None => {
                let inputs: Vec<ValueId> = node.inputs.iter().map(|v| map[v.0]).collect();
                out.push(node.op.clone(), &inputs)?
            }
        };
        map.push(new);
    }
    dead_code(&out)
}
