//! Fused attention kernels in the style of FlashAttention (Dao et al. 2022)
//! and FlashAttention-2: softmax(scale * Q K^T [masked]) V and its
//! gradients, computed block by block so that the S x S score matrix never
//! reaches HBM.
//!
//! QK^T and PV (and the backward's five products) run on the systolic array
//! with bf16 operands and fp32 accumulation; fp32 inputs are split into
//! bf16 hi + lo terms and multiplied as hi*hi + hi*lo + lo*hi ("bf16x3").
//! Scaling, masking, the online softmax and the gradients of the softmax
//! run in the vector unit. See `docs/attention.md` for tiling, tokens,
//! buffers and limits; [`forward`] and [`backward`] write the programs.

mod backward;
mod emit;
mod forward;

use tessera_isa::asm::assemble;
use tessera_isa::{Arch, DType, Program};

use super::reloc::{placeholder, relocate};
use crate::error::LowerError;

/// One fused attention forward: `o = softmax(scale * q k^T, masked) v` per
/// head, with grouped-query heads (`heads / kv_heads` query heads share a
/// kv head). Tensors are packed row-major in HBM.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionSpec {
    /// Profiling region (an identifier).
    pub name: String,
    pub batch: u64,
    pub heads: u64,
    /// Divides `heads`.
    pub kv_heads: u64,
    pub seq: u64,
    pub head_dim: u64,
    /// `[batch, heads, seq, head_dim]` in `input_type`.
    pub q: u64,
    /// `[batch, kv_heads, seq, head_dim]` in `input_type`.
    pub k: u64,
    /// `[batch, kv_heads, seq, head_dim]` in `input_type`.
    pub v: u64,
    /// fp32 or bf16.
    pub input_type: DType,
    /// Output `[batch, heads, seq, head_dim]` fp32.
    pub o: u64,
    /// Output `[batch, heads, seq]` fp32: log-sum-exp of each row of the
    /// scaled, masked scores (a row with every key masked gets about -1e30
    /// and an all-zero output row).
    pub lse: u64,
    /// Finite and positive (usually `1 / sqrt(head_dim)`).
    pub scale: f64,
    /// Query i sees keys j <= i only.
    pub causal: bool,
    /// `[batch, seq]` fp32, nonzero keeps a key, 0 drops it.
    pub key_mask: Option<u64>,
}

/// The gradient of an [`AttentionSpec`] with respect to q, k and v.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionBackwardSpec {
    /// Shapes and addresses; `o` and `lse` as the forward wrote them.
    pub forward: AttentionSpec,
    /// `[batch, heads, seq, head_dim]` fp32 incoming gradient.
    pub d_o: u64,
    /// Output `[batch, heads, seq, head_dim]` fp32.
    pub dq: u64,
    /// Output `[batch, kv_heads, seq, head_dim]` fp32 (summed over the group's heads).
    pub dk: u64,
    /// Output `[batch, kv_heads, seq, head_dim]` fp32 (summed over the group's heads).
    pub dv: u64,
}

/// Most (query block, key block) steps one unrolled kernel may hold, about
/// 60 instructions each.
const MAX_STEPS: u64 = 1 << 18;

/// Scalar registers every kernel sets first.
pub(crate) mod reg {
    pub const SCALE: u8 = 0;
    pub const MINUS_ONE: u8 = 1;
    pub const NEG_INF: u8 = 2;
    /// The running max never drops below this (fully masked rows stay finite).
    pub const FLOOR: u8 = 3;
    /// Smallest row sum divided by (fully masked rows give 0, not NaN).
    pub const TINY: u8 = 4;
    pub const ONE: u8 = 5;
    pub const ZERO: u8 = 6;
    pub const MINUS_SCALE: u8 = 7;
}

/// Shapes shared by both kernels, checked against the spec and the `Arch`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    pub b: u64,
    pub h: u64,
    pub hk: u64,
    pub s: u64,
    pub d: u64,
    /// Bytes of one input element.
    pub e: u64,
    /// bf16 terms per matrix operand: 1 for bf16 inputs, 2 (hi, lo) for fp32.
    pub terms: usize,
    /// Keys per block: the array's smaller side, at most `s`.
    pub bc: u64,
}

impl Dims {
    /// The term products: A term x B term.
    pub fn pairs(&self) -> &'static [(usize, usize)] {
        if self.terms == 1 {
            &[(0, 0)]
        } else {
            &[(0, 0), (0, 1), (1, 0)]
        }
    }

    pub fn raw_type(&self) -> &'static str {
        if self.e == 4 {
            "fp32"
        } else {
            "bf16"
        }
    }
}

pub(crate) fn kernel_err(spec: &AttentionSpec, rule: impl Into<String>) -> LowerError {
    LowerError::Kernel {
        kernel: spec.name.clone(),
        rule: rule.into(),
    }
}

fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// Checks the spec's shapes, types, scale and HBM ranges; `extra` lists
/// further `(name, address, bytes)` tensors (the backward's).
fn check_spec(
    arch: &Arch,
    spec: &AttentionSpec,
    extra: &[(&str, u64, u64)],
) -> Result<Dims, LowerError> {
    let err = |rule: String| kernel_err(spec, rule);
    if !is_identifier(&spec.name) {
        return Err(err(
            "the region name must be an identifier ([A-Za-z_][A-Za-z0-9_.]*)".into(),
        ));
    }
    for (field, v) in [
        ("batch", spec.batch),
        ("heads", spec.heads),
        ("kv_heads", spec.kv_heads),
        ("seq", spec.seq),
        ("head_dim", spec.head_dim),
    ] {
        if v == 0 {
            return Err(err(format!("`{field}` must be at least 1")));
        }
    }
    if spec.heads % spec.kv_heads != 0 {
        return Err(err(format!(
            "`heads` ({}) must be a multiple of `kv_heads` ({})",
            spec.heads, spec.kv_heads
        )));
    }
    let e = match spec.input_type {
        DType::Fp32 => 4,
        DType::Bf16 => 2,
        t => {
            return Err(err(format!(
                "`input_type` must be fp32 or bf16, got {}",
                t.name()
            )))
        }
    };
    if !arch.supports_input(DType::Bf16) {
        return Err(err(format!(
            "the array of `{}` does not take bf16 inputs",
            arch.name()
        )));
    }
    if !(spec.scale.is_finite() && spec.scale > 0.0 && (spec.scale as f32).is_normal()) {
        return Err(err(format!(
            "`scale` must be a positive finite fp32, got {}",
            spec.scale
        )));
    }
    // Per-row vectors (lse, D, the key mask) are one vector shape of 16-bit extent.
    if spec.seq > emit::COUNT16 {
        return Err(err(format!(
            "`seq` ({}) must be at most 65,535 (one vector shape)",
            spec.seq
        )));
    }
    if spec.head_dim + 1 > emit::COUNT16 || spec.head_dim * 4 > 16_384 {
        return Err(err(format!(
            "`head_dim` ({}) must be at most 4,096",
            spec.head_dim
        )));
    }
    let (b, h, hk, s, d) = (
        spec.batch,
        spec.heads,
        spec.kv_heads,
        spec.seq,
        spec.head_dim,
    );
    let sizes = |n: Option<u64>| n.and_then(|n| n.checked_mul(s)?.checked_mul(d));
    let hbm = arch.hbm_bytes().0;
    let mut tensors = vec![
        (
            "q",
            spec.q,
            sizes(b.checked_mul(h)).and_then(|x| x.checked_mul(e)),
        ),
        (
            "k",
            spec.k,
            sizes(b.checked_mul(hk)).and_then(|x| x.checked_mul(e)),
        ),
        (
            "v",
            spec.v,
            sizes(b.checked_mul(hk)).and_then(|x| x.checked_mul(e)),
        ),
        (
            "o",
            spec.o,
            sizes(b.checked_mul(h)).and_then(|x| x.checked_mul(4)),
        ),
        (
            "lse",
            spec.lse,
            b.checked_mul(h).and_then(|x| x.checked_mul(s * 4)),
        ),
    ];
    if let Some(m) = spec.key_mask {
        tensors.push(("key_mask", m, b.checked_mul(s * 4)));
    }
    tensors.extend(extra.iter().map(|&(n, a, bytes)| (n, a, Some(bytes))));
    for (name, addr, bytes) in tensors {
        match bytes.and_then(|n| addr.checked_add(n)) {
            Some(end) if end <= hbm => {}
            _ => {
                return Err(err(format!(
                    "`{name}` at {addr} does not fit the {hbm}-byte HBM"
                )))
            }
        }
    }
    let bc = u64::from(arch.rows().min(arch.cols())).min(s);
    // The program is unrolled: bound the number of (query block, key block)
    // steps before building it (with one-row query blocks as the worst case).
    let steps = b
        .saturating_mul(h)
        .saturating_mul(s)
        .saturating_mul(s.div_ceil(bc));
    if steps > MAX_STEPS.saturating_mul(bc) {
        return Err(err(format!(
            "batch x heads x seq x key blocks = {steps} rows of work; the unrolled program allows {}",
            MAX_STEPS * bc
        )));
    }
    Ok(Dims {
        b,
        h,
        hk,
        s,
        d,
        e,
        terms: if e == 4 { 2 } else { 1 },
        bc,
    })
}

/// Assembles generated source into a validated program.
fn finish(arch: &Arch, spec: &AttentionSpec, src: &str) -> Result<Program, LowerError> {
    let program = assemble(src, &spec.name, Some(arch))
        .map_err(|e| kernel_err(spec, format!("internal assembly error: {e}")))?;
    if let Err(errors) = program.validate() {
        return Err(kernel_err(
            spec,
            format!("internal error, invalid program: {}", errors[0]),
        ));
    }
    Ok(program)
}

/// Lowers the fused attention forward to one complete program for `arch`:
/// every used queue ends in `halt`, tokens `t0`..`t7` balance, no symbols.
///
/// # Errors
/// [`LowerError::Kernel`] naming the rule when the spec is malformed or its
/// buffers cannot fit the core; never panics.
///
/// ```
/// use tessera_compiler::lower::attention::{attention_forward, AttentionSpec};
/// use tessera_isa::{Arch, DType};
/// let arch = Arch::preset("fpga-8x8")?;
/// let spec = AttentionSpec { name: "attn".into(), batch: 1, heads: 1, kv_heads: 1,
///     seq: 12, head_dim: 8, q: 0, k: 0x1000, v: 0x2000, input_type: DType::Bf16,
///     o: 0x3000, lse: 0x4000, scale: 0.35, causal: true, key_mask: None };
/// let p = attention_forward(&arch, &spec)?;
/// assert!(tessera_isa::check::check(&p).is_clean());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn attention_forward(arch: &Arch, spec: &AttentionSpec) -> Result<Program, LowerError> {
    let dims = check_spec(arch, spec, &[])?;
    let src = forward::emit(arch, spec, &dims)?;
    finish(arch, spec, &src)
}

/// Lowers the fused attention backward (FlashAttention-2 order: key blocks
/// outer, query blocks inner, P recomputed from Q, K and the saved lse) to
/// one complete program for `arch`.
///
/// # Errors
/// [`LowerError::Kernel`] naming the rule when the spec is malformed or a
/// head's resident buffers cannot fit the core; never panics.
///
/// ```
/// use tessera_compiler::lower::attention::{attention_backward, AttentionBackwardSpec, AttentionSpec};
/// use tessera_isa::{Arch, DType};
/// let arch = Arch::preset("fpga-8x8")?;
/// let forward = AttentionSpec { name: "attn".into(), batch: 1, heads: 1, kv_heads: 1,
///     seq: 12, head_dim: 8, q: 0, k: 0x1000, v: 0x2000, input_type: DType::Bf16,
///     o: 0x3000, lse: 0x4000, scale: 0.35, causal: true, key_mask: None };
/// let spec = AttentionBackwardSpec { forward, d_o: 0x5000, dq: 0x6000, dk: 0x7000, dv: 0x8000 };
/// let p = attention_backward(&arch, &spec)?;
/// assert!(tessera_isa::check::check(&p).is_clean());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn attention_backward(
    arch: &Arch,
    spec: &AttentionBackwardSpec,
) -> Result<Program, LowerError> {
    let f = &spec.forward;
    let q_bytes = (f.batch.saturating_mul(f.heads))
        .saturating_mul(f.seq)
        .saturating_mul(f.head_dim)
        .saturating_mul(4);
    let kv_bytes = (f.batch.saturating_mul(f.kv_heads))
        .saturating_mul(f.seq)
        .saturating_mul(f.head_dim)
        .saturating_mul(4);
    let dims = check_spec(
        arch,
        f,
        &[
            ("d_o", spec.d_o, q_bytes),
            ("dq", spec.dq, q_bytes),
            ("dk", spec.dk, kv_bytes),
            ("dv", spec.dv, kv_bytes),
        ],
    )?;
    let src = backward::emit(arch, spec, &dims)?;
    finish(arch, f, &src)
}

/// Attention kernels already generated, by shape: layers of one model
/// differ only in their HBM addresses, so each shape is generated and
/// assembled once with placeholder addresses and then relocated.
#[derive(Debug, Default)]
pub struct AttentionCache {
    templates: std::collections::HashMap<String, Program>,
}

impl AttentionCache {
    /// [`attention_forward`], generated once per shape.
    ///
    /// # Errors
    /// As [`attention_forward`].
    pub fn forward(&mut self, arch: &Arch, spec: &AttentionSpec) -> Result<Program, LowerError> {
        let dims = check_spec(arch, spec, &[])?;
        let slots = [
            spec.q,
            spec.k,
            spec.v,
            spec.o,
            spec.lse,
            spec.key_mask.unwrap_or(0),
        ];
        let mut shape = spec.clone();
        (shape.q, shape.k, shape.v, shape.o, shape.lse) = (
            placeholder(0),
            placeholder(1),
            placeholder(2),
            placeholder(3),
            placeholder(4),
        );
        shape.key_mask = spec.key_mask.map(|_| placeholder(5));
        let key = format!("fwd {shape:?}");
        if !self.templates.contains_key(&key) {
            let src = forward::emit(arch, &shape, &dims)?;
            self.templates
                .insert(key.clone(), finish(arch, &shape, &src)?);
        }
        Ok(relocate(&self.templates[&key], &slots))
    }

    /// [`attention_backward`], generated once per shape.
    ///
    /// # Errors
    /// As [`attention_backward`].
    pub fn backward(
        &mut self,
        arch: &Arch,
        spec: &AttentionBackwardSpec,
    ) -> Result<Program, LowerError> {
        // Validates the real addresses (and computes the plan).
        let f = &spec.forward;
        let q_bytes = f.batch * f.heads * f.seq * f.head_dim * 4;
        let kv_bytes = f.batch * f.kv_heads * f.seq * f.head_dim * 4;
        let dims = check_spec(
            arch,
            f,
            &[
                ("d_o", spec.d_o, q_bytes),
                ("dq", spec.dq, q_bytes),
                ("dk", spec.dk, kv_bytes),
                ("dv", spec.dv, kv_bytes),
            ],
        )?;
        let slots = [
            f.q,
            f.k,
            f.v,
            f.o,
            f.lse,
            f.key_mask.unwrap_or(0),
            spec.d_o,
            spec.dq,
            spec.dk,
            spec.dv,
        ];
        let mut shape = spec.clone();
        let sf = &mut shape.forward;
        (sf.q, sf.k, sf.v, sf.o, sf.lse) = (
            placeholder(0),
            placeholder(1),
            placeholder(2),
            placeholder(3),
            placeholder(4),
        );
        sf.key_mask = f.key_mask.map(|_| placeholder(5));
        (shape.d_o, shape.dq, shape.dk, shape.dv) = (
            placeholder(6),
            placeholder(7),
            placeholder(8),
            placeholder(9),
        );
        let key = format!("bwd {shape:?}");
        if !self.templates.contains_key(&key) {
            let src = backward::emit(arch, &shape, &dims)?;
            self.templates
                .insert(key.clone(), finish(arch, &shape.forward, &src)?);
        }
        Ok(relocate(&self.templates[&key], &slots))
    }
}
