//! Lowering: from the graph IR to one Tessera program. Each op (or fused
//! group of ops) becomes a kernel, a complete program over HBM addresses;
//! the [`link::Linker`] joins kernels with barriers. HBM is planned by
//! liveness ([`plan`]) as the nodes are lowered in order.
//!
//! The program expects parameters, optimizer states, inputs and
//! [`ConstInit`] data at their addresses before it starts (a runtime
//! writes them once; states and parameters then persist across steps, and
//! `assign`s take effect at the end of each step).

pub mod attention;
pub mod copy;
pub mod epilogue;
pub mod graph_ops;
pub mod link;
pub mod plan;
pub mod reloc;
pub mod rowwise;
pub mod vector_ops;

use tessera_isa::program::MemSpace;
use tessera_isa::{Arch, Program};

use crate::error::LowerError;
use crate::gemm::{gemm_kernel, GemmSpec};
use crate::ir::{EpiloguePart, Graph, Op, TensorType, ValueId};
use attention::{AttentionBackwardSpec, AttentionSpec};
use copy::BoxCopy;
use plan::FirstFit;
use rowwise::RowKernel;

/// Data the program expects in HBM before it starts: fp32 values.
#[derive(Clone, Debug, PartialEq)]
pub struct ConstInit {
    /// Byte address.
    pub addr: u64,
    /// The values, fp32.
    pub values: Vec<f32>,
}

/// One kernel before assembly.
#[derive(Clone, Debug)]
pub enum Kernel {
    /// Row-wise vector work.
    Row(RowKernel),
    /// Strided copy.
    Copy(BoxCopy),
    /// Matrix product.
    Gemm(GemmSpec),
    /// Matrix product with an epilogue on its output tiles.
    GemmEpilogue(GemmSpec, crate::gemm::GemmEpilogue),
    /// Already assembled.
    Program(Program),
}

impl Kernel {
    /// [`Kernel::lower`] through `cache`: row kernels and copies are built
    /// once per shape and relocated to their addresses.
    ///
    /// # Errors
    /// As [`Kernel::lower`].
    pub fn lower_cached(
        &self,
        arch: &Arch,
        cache: &mut reloc::TemplateCache,
    ) -> Result<Program, LowerError> {
        use reloc::placeholder;
        match self {
            Kernel::Row(k) => {
                let mut shape = k.clone();
                let mut slots = Vec::new();
                for o in shape.inputs.iter_mut().chain(shape.outputs.iter_mut()) {
                    slots.push(o.addr);
                    o.addr = placeholder(slots.len() - 1);
                }
                for a in &mut shape.accumulators {
                    slots.push(a.addr);
                    a.addr = placeholder(slots.len() - 1);
                }
                cache.get(format!("row {shape:?}"), &slots, || shape.lower(arch))
            }
            Kernel::Copy(c) => {
                let mut shape = c.clone();
                let slots = [c.src, c.dst];
                (shape.src, shape.dst) = (placeholder(0), placeholder(1));
                cache.get(format!("copy {shape:?}"), &slots, || shape.lower(arch))
            }
            Kernel::Gemm(spec) => crate::gemm::gemm_kernel_cached(arch, spec, cache),
            Kernel::GemmEpilogue(spec, epi) => {
                crate::gemm::gemm_epilogue_kernel_cached(arch, spec, epi, cache)
            }
            Kernel::Program(p) => Ok(p.clone()),
        }
    }

    /// The kernel as a program.
    ///
    /// # Errors
    /// [`LowerError::Kernel`] if it cannot be built for `arch`.
    pub fn lower(&self, arch: &Arch) -> Result<Program, LowerError> {
        match self {
            Kernel::Row(k) => k.lower(arch),
            Kernel::Copy(k) => k.lower(arch),
            Kernel::Gemm(spec) => gemm_kernel(arch, spec).map_err(|e| LowerError::Kernel {
                kernel: spec.name.clone(),
                rule: e.to_string(),
            }),
            Kernel::GemmEpilogue(spec, epi) => crate::gemm::gemm_epilogue_kernel(arch, spec, epi)
                .map_err(|e| LowerError::Kernel {
                    kernel: spec.name.clone(),
                    rule: e.to_string(),
                }),
            Kernel::Program(p) => Ok(p.clone()),
        }
    }
}

/// A named tensor at a fixed HBM address.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    /// Parameter, state, input or output name.
    pub name: String,
    /// Byte address.
    pub addr: u64,
    /// Shape and element type.
    pub ty: TensorType,
}

/// A lowered training step.
#[derive(Debug)]
pub struct LoweredStep {
    /// The program.
    pub program: Program,
    /// Parameters, by name.
    pub params: Vec<Binding>,
    /// States with their initial value.
    pub states: Vec<(Binding, f64)>,
    /// Per-step inputs.
    pub inputs: Vec<Binding>,
    /// Named outputs (valid after the step).
    pub outputs: Vec<Binding>,
    /// Data to write once before the first step.
    pub constants: Vec<ConstInit>,
    /// Bytes of parameters, states, inputs and constants.
    pub persistent_bytes: u64,
    /// Highest HBM address used, plus one: the step's peak footprint.
    pub hbm_peak: u64,
    /// Kernels linked.
    pub kernels: usize,
    /// Address of every node's value (meaningful while it is live).
    pub values: Vec<u64>,
}

struct Driver<'a> {
    arch: &'a Arch,
    addr: Vec<u64>,
    temps: FirstFit,
    scratch: Vec<(u64, u64)>,
    constants: Vec<ConstInit>,
    /// Attention kernels by shape.
    attention: attention::AttentionCache,
    /// Rotary tables by (theta bits, seq, head dim, inverse): persistent, shared.
    rope_tables: std::collections::BTreeMap<(u64, u64, u64, bool), (u64, u64)>,
}

impl vector_ops::Placement for Driver<'_> {
    fn addr(&self, v: ValueId) -> u64 {
        self.addr[v.0]
    }
}

impl graph_ops::Context for Driver<'_> {
    fn scratch(&mut self, bytes: u64) -> u64 {
        let a = self.temps.alloc(bytes);
        self.scratch.push((a, bytes));
        a
    }

    fn rope_tables(&self, theta: f64, seq: u64, dim: u64, inverse: bool) -> Option<(u64, u64)> {
        self.rope_tables
            .get(&(theta.to_bits(), seq, dim, inverse))
            .copied()
    }

    fn arch(&self) -> &Arch {
        self.arch
    }

    fn attention_forward(&mut self, spec: &AttentionSpec) -> Result<Program, LowerError> {
        self.attention.forward(self.arch, spec)
    }
}

/// Choices that change the program but not what it computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LowerOptions {
    /// Reuse the HBM of dead values (off: every value keeps its own
    /// address, so all of them can be inspected after a run).
    pub reuse_memory: bool,
}

impl Default for LowerOptions {
    fn default() -> LowerOptions {
        LowerOptions { reuse_memory: true }
    }
}

/// Whether two `adamw` nodes have the same hyper-parameters.
fn same_adamw(a: &Op, b: &Op) -> bool {
    match (a, b) {
        (
            Op::AdamW {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            },
            Op::AdamW {
                lr: l2,
                beta1: b1,
                beta2: b2,
                eps: e2,
                weight_decay: w2,
                ..
            },
        ) => lr == l2 && beta1 == b1 && beta2 == b2 && eps == e2 && weight_decay == w2,
        _ => false,
    }
}

/// The attention kernel spec of node `i` (an `attention` or
/// `attention_grad`), writing `o` and `lse`.
fn attention_spec(g: &Graph, i: usize, o: u64, lse: u64, d: &Driver) -> AttentionSpec {
    let node = &g.nodes[i];
    let x = &node.inputs;
    let (scale, causal, mask_at) = match node.op {
        Op::AttentionGrad { scale, causal, .. } => (scale, causal, 5),
        Op::Attention { scale, causal } => (scale, causal, 3),
        _ => (1.0, false, usize::MAX),
    };
    let (q, k) = (g.ty(x[0]), g.ty(x[1]));
    AttentionSpec {
        name: "attention".into(),
        batch: q.shape[0],
        heads: q.shape[1],
        kv_heads: k.shape[1],
        seq: q.shape[2],
        head_dim: q.shape[3],
        q: d.addr[x[0].0],
        k: d.addr[x[1].0],
        v: d.addr[x[2].0],
        input_type: q.dtype,
        o,
        lse,
        scale,
        causal,
        key_mask: x.get(mask_at).map(|m| d.addr[m.0]),
    }
}

/// The backward of a fused attention: the forward again (for the row
/// log-sum-exp it does not keep), then one kernel writing dq, dk and dv
/// (scratch for a part nothing reads).
fn attention_backward_kernels(
    g: &Graph,
    i: usize,
    parts: [Option<u64>; 3],
    d: &mut Driver,
) -> Result<Vec<Program>, LowerError> {
    use graph_ops::Context;
    let x = g.nodes[i].inputs.clone();
    let q = g.ty(x[0]).clone();
    let (b, h, s) = (q.shape[0], q.shape[1], q.shape[2]);
    let lse = d.scratch(b * h * s * 4);
    let o_again = d.scratch(q.elements() * 4);
    let fwd = attention_spec(g, i, o_again, lse, d);
    let mut out = vec![d.attention.forward(d.arch, &fwd)?];
    let slot =
        |p: usize, d: &mut Driver| parts[p].unwrap_or_else(|| d.scratch(g.ty(x[p]).elements() * 4));
    let (dq, dk, dv) = (slot(0, d), slot(1, d), slot(2, d));
    let mut forward = fwd;
    forward.o = d.addr[x[3].0];
    let spec = AttentionBackwardSpec {
        forward,
        d_o: d.addr[x[4].0],
        dq,
        dk,
        dv,
    };
    out.push(d.attention.backward(d.arch, &spec)?);
    Ok(out)
}

/// Lowers a verified graph to one program for `arch`.
///
/// # Errors
/// [`LowerError`] if an op cannot be lowered, a kernel does not fit the
/// hardware, or the step needs more HBM than the hardware has.
pub fn lower_graph(g: &Graph, arch: &Arch) -> Result<LoweredStep, LowerError> {
    lower_graph_with(g, arch, LowerOptions::default())
}

/// [`lower_graph`] with options.
///
/// # Errors
/// As [`lower_graph`].
pub fn lower_graph_with(
    g: &Graph,
    arch: &Arch,
    opts: LowerOptions,
) -> Result<LoweredStep, LowerError> {
    let mut persistent = FirstFit::new(0);
    let mut addr = vec![0u64; g.nodes.len()];
    let (mut params, mut states, mut inputs, mut outputs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut constants = Vec::new();
    for (i, node) in g.nodes.iter().enumerate() {
        let Some(ty) = &node.ty else { continue };
        if !node.op.is_source() {
            continue;
        }
        addr[i] = persistent.alloc(ty.bytes());
        let bind = |name: &str| Binding {
            name: name.to_string(),
            addr: addr[i],
            ty: ty.clone(),
        };
        match &node.op {
            Op::Param { name, .. } => params.push(bind(name)),
            Op::State { name, init, .. } => states.push((bind(name), *init)),
            Op::Input { name, .. } => inputs.push(bind(name)),
            Op::Const { value, .. } => constants.push(ConstInit {
                addr: addr[i],
                values: vec![*value as f32; ty.elements() as usize],
            }),
            _ => {}
        }
    }
    // Constant tables live with the persistent data: the runtime writes them
    // once, so no kernel may use their bytes as scratch.
    let mut rope_tables = std::collections::BTreeMap::new();
    for node in &g.nodes {
        if let (Op::Rope { theta, inverse }, Some(ty)) = (&node.op, &node.ty) {
            let (seq, dim) = (ty.shape[2], ty.shape[3]);
            let key = (theta.to_bits(), seq, dim, *inverse);
            if rope_tables.contains_key(&key) {
                continue;
            }
            let (cos, sin) = graph_ops::rope_table_values(*theta, seq, dim, *inverse);
            let (ca, sa) = (
                persistent.alloc(seq * dim * 4),
                persistent.alloc(seq * dim * 4),
            );
            constants.push(ConstInit {
                addr: ca,
                values: cos,
            });
            constants.push(ConstInit {
                addr: sa,
                values: sin,
            });
            rope_tables.insert(key, (ca, sa));
        }
    }
    let persistent_bytes = persistent.high_water;
    let capacity = arch.capacity(MemSpace::Hbm).0;
    if persistent_bytes > capacity {
        // Parameters, optimizer states and inputs alone do not fit: say so before lowering anything.
        return Err(LowerError::ModelTooLarge {
            needed: persistent_bytes,
            capacity,
        });
    }
    let last = plan::last_uses(g);
    let mut frees: Vec<Vec<usize>> = vec![Vec::new(); g.nodes.len()];
    for (v, l) in last.iter().enumerate() {
        if let (Some(l), false) = (l, g.nodes[v].op.is_source()) {
            frees[*l].push(v);
        }
    }
    let mut d = Driver {
        arch,
        addr,
        temps: FirstFit::new(plan::plan_base(persistent_bytes)),
        scratch: Vec::new(),
        constants,
        rope_tables,
        attention: attention::AttentionCache::default(),
    };
    let mut linker = link::Linker::new(arch);
    let mut kernels = 0usize;
    let mut assigns = Vec::new();
    let mut precomputed = std::collections::HashSet::new();
    let mut templates = reloc::TemplateCache::default();
    for (i, node) in g.nodes.iter().enumerate() {
        match (&node.op, &node.ty) {
            (op, _) if op.is_source() => continue,
            (Op::Reshape { .. }, _) => d.addr[i] = d.addr[node.inputs[0].0],
            (Op::Output { name }, _) => {
                let v = node.inputs[0];
                outputs.push(Binding {
                    name: name.clone(),
                    addr: d.addr[v.0],
                    ty: g.ty(v).clone(),
                });
            }
            (Op::Assign { name }, _) => assigns.push((name.clone(), node.inputs[0])),
            (Op::AttentionGrad { .. } | Op::AdamW { .. } | Op::MatMulEpilogue(_), Some(_))
                if precomputed.contains(&i) => {}
            (Op::MatMulEpilogue(e), Some(ty)) => {
                // The pre-activation the backward reads (a later `pre`
                // sibling: same product and bias) comes from this kernel.
                d.addr[i] = d.temps.alloc(ty.bytes());
                let mut pre = None;
                if e.part == EpiloguePart::Out && e.act.is_some() {
                    let want = Op::MatMulEpilogue(e.with_part(EpiloguePart::Pre));
                    let operands = &node.inputs[..2 + usize::from(e.bias)];
                    let sibling = g.nodes.iter().enumerate().skip(i + 1).find(|(j, other)| {
                        other.op == want && other.inputs == operands && !precomputed.contains(j)
                    });
                    if let Some((j, other)) = sibling {
                        d.addr[j] = d.temps.alloc(other.ty.as_ref().map_or(0, |t| t.bytes()));
                        precomputed.insert(j);
                        pre = Some(d.addr[j]);
                    }
                }
                for k in epilogue::epilogue_kernels(g, i, d.addr[i], pre, &d)? {
                    linker.push(&k.lower_cached(arch, &mut templates)?, node.op.name())?;
                    kernels += 1;
                }
            }
            (Op::AdamW { .. }, Some(ty)) => {
                // m', v' and p' of one parameter come from one kernel.
                d.addr[i] = d.temps.alloc(ty.bytes());
                let mut parts: [Option<u64>; 3] = [None; 3];
                for (j, other) in g.nodes.iter().enumerate().skip(i) {
                    if let (Op::AdamW { part, .. }, true) = (
                        &other.op,
                        other.inputs == node.inputs && same_adamw(&other.op, &node.op),
                    ) {
                        if j != i {
                            d.addr[j] = d.temps.alloc(ty.bytes());
                            precomputed.insert(j);
                        }
                        parts[*part as usize] = Some(d.addr[j]);
                    }
                }
                let k = graph_ops::adamw_kernel(g, i, parts, &mut d)?;
                linker.push(&k.lower_cached(arch, &mut templates)?, node.op.name())?;
                kernels += 1;
                for (a, bytes) in std::mem::take(&mut d.scratch) {
                    d.temps.free(a, bytes);
                }
            }
            (Op::AttentionGrad { scale, causal, .. }, Some(ty)) => {
                // dq, dk and dv come from one backward kernel: give the
                // sibling nodes (same operands) their slots now.
                d.addr[i] = d.temps.alloc(ty.bytes());
                let mut parts: [Option<u64>; 3] = [None; 3];
                for (j, other) in g.nodes.iter().enumerate().skip(i) {
                    if let Op::AttentionGrad {
                        scale: s2,
                        causal: c2,
                        part,
                    } = other.op
                    {
                        if s2 == *scale && c2 == *causal && other.inputs == node.inputs {
                            if j != i {
                                d.addr[j] = d.temps.alloc(g.ty(ValueId(j)).bytes());
                                precomputed.insert(j);
                            }
                            parts[part.index()] = Some(d.addr[j]);
                        }
                    }
                }
                let ks = attention_backward_kernels(g, i, parts, &mut d)?;
                for k in ks {
                    linker.push(&k, node.op.name())?;
                    kernels += 1;
                }
                for (a, bytes) in std::mem::take(&mut d.scratch) {
                    d.temps.free(a, bytes);
                }
            }
            (_, Some(ty)) => {
                d.addr[i] = d.temps.alloc(ty.bytes());
                let ks = match vector_ops::lower_rowwise(g, i, &d)? {
                    Some(ks) => ks.into_iter().map(Kernel::Row).collect(),
                    None => graph_ops::lower_node(g, i, &mut d)?.ok_or_else(|| {
                        LowerError::Unsupported {
                            node: i,
                            op: node.op.name().to_string(),
                            rule: "has no lowering".into(),
                        }
                    })?,
                };
                for k in ks {
                    linker.push(&k.lower_cached(arch, &mut templates)?, node.op.name())?;
                    kernels += 1;
                }
                for (a, bytes) in std::mem::take(&mut d.scratch) {
                    d.temps.free(a, bytes);
                }
            }
            _ => {}
        }
        for &v in frees[i].iter().filter(|_| opts.reuse_memory) {
            d.temps
                .free(d.addr[v], g.nodes[v].ty.as_ref().map_or(0, |t| t.bytes()));
        }
    }
    // Assignments take effect at the end of the step.
    for (name, v) in assigns {
        let target = params
            .iter()
            .chain(states.iter().map(|(b, _)| b))
            .find(|b| b.name == name)
            .map(|b| b.addr);
        let target =
            target.ok_or_else(|| LowerError::Link(format!("assign to unknown `{name}`")))?;
        for c in BoxCopy::contiguous("assign", d.addr[v.0], target, g.ty(v).bytes()) {
            linker.push(
                &Kernel::Copy(c).lower_cached(arch, &mut templates)?,
                "assign",
            )?;
            kernels += 1;
        }
    }
    let hbm_peak = d.temps.high_water;
    if hbm_peak > capacity {
        return Err(LowerError::OutOfMemory {
            needed: hbm_peak,
            capacity,
        });
    }
    let mut program = linker.finish()?;
    program.symbols = persistent_symbols(&params, &states, &inputs, &d.constants);
    Ok(LoweredStep {
        program,
        params,
        states,
        inputs,
        outputs,
        constants: d.constants,
        persistent_bytes,
        hbm_peak,
        kernels,
        values: d.addr,
    })
}

/// HBM symbols for everything that lives at one address for the whole step
/// (parameters, states, inputs, constant tables). They bound what the
/// dependency checker takes a gather from a table or a scatter-add into it
/// to touch: without them it assumes the rest of HBM.
fn persistent_symbols(
    params: &[Binding],
    states: &[(Binding, f64)],
    inputs: &[Binding],
    constants: &[ConstInit],
) -> Vec<tessera_isa::program::Symbol> {
    use tessera_isa::program::{MemSpace, Symbol};
    let size = |b: &Binding| b.ty.elements() * b.ty.dtype.size_bytes();
    let named = params
        .iter()
        .chain(states.iter().map(|(b, _)| b))
        .chain(inputs)
        .map(|b| (b.name.clone(), b.addr, size(b)));
    let tables = constants
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("const.{i}"), c.addr, 4 * c.values.len() as u64));
    let mut seen = std::collections::HashSet::new();
    named
        .chain(tables)
        .filter(|(name, _, size)| {
            *size > 0 && tessera_isa::program::is_identifier(name) && seen.insert(name.clone())
        })
        .map(|(name, addr, size)| Symbol {
            name,
            space: MemSpace::Hbm,
            addr,
            size,
        })
        .collect()
}
