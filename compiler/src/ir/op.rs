//! The IR's operations: what each computes, its attributes (for the text
//! form) and its typing rule ([`Op::infer`]).
//!
//! Broadcasting has one rule: where an op allows it, the second operand's
//! shape is a suffix of the first's (a bias `[H]` against `[B, S, H]`, a
//! scalar `[]` against anything), and the result has the first's shape.

use super::epilogue::Epilogue;
use super::TensorType;
use tessera_isa::DType;

/// Masking applied before a softmax over the last axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mask {
    /// No masking.
    None,
    /// Query row i sees keys 0..=i (the last two axes are queries x keys).
    Causal,
}

/// Which operand an [`Op::AttentionGrad`] differentiates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttentionPart {
    /// The queries.
    Q,
    /// The keys.
    K,
    /// The values.
    V,
}

impl AttentionPart {
    /// The operand index and name.
    pub fn index(self) -> usize {
        match self {
            AttentionPart::Q => 0,
            AttentionPart::K => 1,
            AttentionPart::V => 2,
        }
    }

    fn name(self) -> &'static str {
        ["q", "k", "v"][self.index()]
    }
}

/// Which result of a fused AdamW update an [`Op::AdamW`] node gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdamPart {
    /// The updated first moment.
    M = 0,
    /// The updated second moment.
    V = 1,
    /// The updated parameter.
    P = 2,
}

impl AdamPart {
    fn name(self) -> &'static str {
        match self {
            AdamPart::P => "p",
            AdamPart::M => "m",
            AdamPart::V => "v",
        }
    }
}

/// Elementwise functions of one operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unary {
    /// -x
    Neg,
    /// e^x
    Exp,
    /// ln x
    Log,
    /// sqrt x
    Sqrt,
    /// 1 / sqrt x
    Rsqrt,
    /// 1 / x
    Recip,
    /// x^2
    Square,
    /// sign x (0 at 0)
    Sign,
    /// GELU, tanh approximation.
    GeluTanh,
    /// GELU, erf form.
    GeluErf,
    /// x * sigmoid(x).
    Silu,
    /// d/dx of GELU (tanh form).
    GeluTanhGrad,
    /// d/dx of GELU (erf form).
    GeluErfGrad,
    /// d/dx of SiLU.
    SiluGrad,
    /// 1 where x != 0, else 0.
    NonZero,
}

impl Unary {
    /// Every unary function, for the parser.
    pub const ALL: [Unary; 15] = [
        Unary::Neg,
        Unary::Exp,
        Unary::Log,
        Unary::Sqrt,
        Unary::Rsqrt,
        Unary::Recip,
        Unary::Square,
        Unary::Sign,
        Unary::GeluTanh,
        Unary::GeluErf,
        Unary::Silu,
        Unary::GeluTanhGrad,
        Unary::GeluErfGrad,
        Unary::SiluGrad,
        Unary::NonZero,
    ];

    /// The op name in the text form.
    pub fn name(self) -> &'static str {
        match self {
            Unary::Neg => "neg",
            Unary::Exp => "exp",
            Unary::Log => "log",
            Unary::Sqrt => "sqrt",
            Unary::Rsqrt => "rsqrt",
            Unary::Recip => "recip",
            Unary::Square => "square",
            Unary::Sign => "sign",
            Unary::GeluTanh => "gelu_tanh",
            Unary::GeluErf => "gelu_erf",
            Unary::Silu => "silu",
            Unary::GeluTanhGrad => "gelu_tanh_grad",
            Unary::GeluErfGrad => "gelu_erf_grad",
            Unary::SiluGrad => "silu_grad",
            Unary::NonZero => "nonzero",
        }
    }
}

/// One operation of the graph IR.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A trainable parameter, by its Hugging Face tensor name.
    Param { name: String, ty: TensorType },
    /// Data fed each step (token ids, labels, masks).
    Input { name: String, ty: TensorType },
    /// Persistent non-trainable state (optimizer moments, step counters,
    /// loss scale), initialised to `init` before the first step.
    State {
        name: String,
        ty: TensorType,
        init: f64,
    },
    /// A tensor filled with one value.
    Const { value: f64, ty: TensorType },
    /// a + b (b broadcast).
    Add,
    /// a - b (b broadcast).
    Sub,
    /// a * b (b broadcast).
    Mul,
    /// a / b (b broadcast).
    Div,
    /// max(a, b) elementwise (b broadcast); a NaN operand yields the other
    /// (IEEE maxNum, as the vector unit). No derivative: optimizer code.
    Max,
    /// min(a, b) elementwise (b broadcast), NaN as for [`Op::Max`].
    Min,
    /// x * scale + shift.
    Affine { scale: f64, shift: f64 },
    /// An elementwise function.
    Unary(Unary),
    /// Conversion to another element type (round to nearest even).
    Cast { to: DType },
    /// Batched matrix product `[.., m, k] x [.., k, n] -> [.., m, n]`; `ta`
    /// / `tb`: the operand is stored with its last two axes swapped. A 2-D
    /// `b` is shared by every batch. Products accumulate in fp32; `out` is
    /// the stored type.
    MatMul { ta: bool, tb: bool, out: DType },
    /// A matrix product with a fused epilogue (bias, GELU, residual, cast);
    /// see [`super::epilogue`].
    MatMulEpilogue(Epilogue),
    /// The same elements in a new shape (row-major order kept).
    Reshape { shape: Vec<u64> },
    /// Sums the leading axes away, leaving `shape` (a suffix of the input's).
    SumTo { shape: Vec<u64> },
    /// Sum of every element (fp32 scalar).
    SumAll,
    /// Largest magnitude of any element (fp32 scalar; NaNs are passed
    /// over): the amax of fp8 scaling. Its derivative is taken as zero,
    /// scales being constants of the step.
    AbsMax,
    /// 1.0 if every element is finite, else 0.0 (fp32 scalar).
    AllFinite,
    /// `cond != 0 ? a : b` with a scalar `cond`.
    Where,
    /// Softmax over the last axis (computed in fp32). Optional second operand:
    /// a `[B, S]` key mask (1 keep, 0 drop) for `[B, h, S, S]` scores.
    Softmax { mask: Mask },
    /// Gradient of a softmax: `(y, dy) -> y * (dy - sum(dy * y))`.
    SoftmaxGrad,
    /// Fused attention: `(q [B, h, S, D], k, v [B, kv, S, D] [, key mask
    /// [B, S]]) -> softmax(scale * q k^T, masked) v`, fp32, each kv head
    /// serving `h / kv` query heads; the S x S scores are never stored.
    Attention { scale: f64, causal: bool },
    /// One result of a fused AdamW step (`torch.optim.AdamW`):
    /// `(p, g, m, v, sqrt(1 - beta2^t), lr / (1 - beta1^t))`, computed with
    /// the same roundings as the unfused graph code:
    /// `m' = b1 m + (1 - b1) g`, `v' = b2 v + (1 - b2) g^2`,
    /// `p' = p (1 - lr wd) - (m' / (sqrt(v') / sqrt(1 - b2^t) + eps)) * step`.
    AdamW {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
        part: AdamPart,
    },
    /// One gradient of a fused attention: `(q, k, v, o, do [, key mask])`
    /// -> d`part` (fp32, `part` = q, k or v; k and v summed over their group).
    AttentionGrad {
        scale: f64,
        causal: bool,
        part: AttentionPart,
    },
    /// Layer norm over the last axis: `(x, w, b)`.
    LayerNorm { eps: f64 },
    /// d/dx of a layer norm: `(x, w, dy)`.
    LayerNormGradX { eps: f64 },
    /// d/dw of a layer norm summed over rows: `(x, dy) -> [H]`.
    LayerNormGradW { eps: f64 },
    /// RMS norm over the last axis: `(x, w)`.
    RmsNorm { eps: f64 },
    /// d/dx of an RMS norm: `(x, w, dy)`.
    RmsNormGradX { eps: f64 },
    /// d/dw of an RMS norm summed over rows: `(x, dy) -> [H]`.
    RmsNormGradW { eps: f64 },
    /// Row lookup: `(table [V, H], ids [..] int32) -> [.., H]`.
    Embedding,
    /// Scatter-add of rows into a `[rows, H]` fp32 table; negative ids are skipped.
    EmbeddingGrad { rows: u64 },
    /// Rotary position embedding on `[B, h, S, D]` with positions 0..S
    /// (Hugging Face `rotate_half` pairing); `inverse` rotates back (its gradient).
    Rope { theta: f64, inverse: bool },
    /// `[B, S, h*D] -> [B, h, S, D]`.
    SplitHeads { heads: u64 },
    /// `[B, h, S, D] -> [B, S, h*D]`.
    MergeHeads,
    /// `[B, kv, S, D] -> [B, kv*groups, S, D]`, each kv head repeated for its group.
    RepeatKv { groups: u64 },
    /// Inverse reduction of `RepeatKv`: sums each group.
    SumKv { groups: u64 },
    /// `len` entries from `start` along `axis`.
    Slice { axis: u64, start: u64, len: u64 },
    /// Zero-pads along `axis` to `total`, the input at `start` (the gradient of a slice).
    Pad { axis: u64, start: u64, total: u64 },
    /// Mean cross-entropy over counted tokens: `(logits [B, S, V], labels [B, S] int32)`;
    /// labels equal to -100 are not counted; `shift` predicts labels[t+1] from position t.
    CrossEntropy { shift: bool },
    /// d(loss)/d(logits): `(logits, labels, dloss [])`.
    CrossEntropyGrad { shift: bool },
    /// Mean over the last axis, broadcast back: every element of a row
    /// becomes the row's mean (fp32, the input's shape). Its own gradient
    /// operator: d/dx of `row_mean(x)` read out by `dy` is `row_mean(dy)`.
    RowMean,
    /// `x - log(sum(exp(x)))` over the last axis (fp32).
    LogSoftmax,
    /// Gradient of a log-softmax: `(y, dy) -> dy - exp(y) * sum(dy)`.
    LogSoftmaxGrad,
    /// Negative log-likelihood: `(log-probabilities [B, S, V], labels [B, S]
    /// int32) -> -mean(logp[label])` over counted tokens, with the labels
    /// rules of [`Op::CrossEntropy`] (`nll(log_softmax(z))` is `cross_entropy(z)`).
    Nll { shift: bool },
    /// d(loss)/d(logp): `(logp, labels, dloss [])`, `-dloss / counted` at
    /// each counted label, 0 elsewhere.
    NllGrad { shift: bool },
    /// A named result of the step (loss, grad norm).
    Output { name: String },
    /// Writes a new value into the parameter or state of that name.
    Assign { name: String },
}

/// An attribute value in the text form.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    /// Integer.
    Int(u64),
    /// Floating-point, printed so that it parses back exactly.
    Float(f64),
    /// true / false.
    Bool(bool),
    /// A quoted string.
    Str(String),
    /// A bare word (element type, mask, ...).
    Word(String),
    /// `[a, b, ...]`.
    Shape(Vec<u64>),
}

impl Op {
    /// The op's name in the text form.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Param { .. } => "param",
            Op::Input { .. } => "input",
            Op::State { .. } => "state",
            Op::Const { .. } => "const",
            Op::Add => "add",
            Op::Sub => "sub",
            Op::Mul => "mul",
            Op::Div => "div",
            Op::Max => "max",
            Op::Min => "min",
            Op::Affine { .. } => "affine",
            Op::Unary(u) => u.name(),
            Op::Cast { .. } => "cast",
            Op::MatMul { .. } => "matmul",
            Op::MatMulEpilogue(_) => "matmul_epilogue",
            Op::Reshape { .. } => "reshape",
            Op::SumTo { .. } => "sum_to",
            Op::SumAll => "sum_all",
            Op::AbsMax => "abs_max",
            Op::AllFinite => "all_finite",
            Op::Where => "where",
            Op::Softmax { .. } => "softmax",
            Op::SoftmaxGrad => "softmax_grad",
            Op::Attention { .. } => "attention",
            Op::AdamW { .. } => "adamw",
            Op::AttentionGrad { .. } => "attention_grad",
            Op::LayerNorm { .. } => "layer_norm",
            Op::LayerNormGradX { .. } => "layer_norm_grad_x",
            Op::LayerNormGradW { .. } => "layer_norm_grad_w",
            Op::RmsNorm { .. } => "rms_norm",
            Op::RmsNormGradX { .. } => "rms_norm_grad_x",
            Op::RmsNormGradW { .. } => "rms_norm_grad_w",
            Op::Embedding => "embedding",
            Op::EmbeddingGrad { .. } => "embedding_grad",
            Op::Rope { .. } => "rope",
            Op::SplitHeads { .. } => "split_heads",
            Op::MergeHeads => "merge_heads",
            Op::RepeatKv { .. } => "repeat_kv",
            Op::SumKv { .. } => "sum_kv",
            Op::Slice { .. } => "slice",
            Op::Pad { .. } => "pad",
            Op::CrossEntropy { .. } => "cross_entropy",
            Op::CrossEntropyGrad { .. } => "cross_entropy_grad",
            Op::RowMean => "row_mean",
            Op::LogSoftmax => "log_softmax",
            Op::LogSoftmaxGrad => "log_softmax_grad",
            Op::Nll { .. } => "nll",
            Op::NllGrad { .. } => "nll_grad",
            Op::Output { .. } => "output",
            Op::Assign { .. } => "assign",
        }
    }

    /// Whether the op's type is given in the text rather than inferred.
    pub fn is_source(&self) -> bool {
        matches!(
            self,
            Op::Param { .. } | Op::Input { .. } | Op::State { .. } | Op::Const { .. }
        )
    }

    /// The attributes, in text-form order.
    pub fn attrs(&self) -> Vec<(&'static str, Attr)> {
        let f = Attr::Float;
        match self {
            Op::Param { name, .. } | Op::Input { name, .. } => {
                vec![("name", Attr::Str(name.clone()))]
            }
            Op::State { name, init, .. } => {
                vec![("name", Attr::Str(name.clone())), ("init", f(*init))]
            }
            Op::Const { value, .. } => vec![("value", f(*value))],
            Op::Affine { scale, shift } => vec![("scale", f(*scale)), ("shift", f(*shift))],
            Op::Cast { to } => vec![("to", Attr::Word(to.name().to_string()))],
            Op::MatMul { ta, tb, out } => vec![
                ("ta", Attr::Bool(*ta)),
                ("tb", Attr::Bool(*tb)),
                ("out", Attr::Word(out.name().to_string())),
            ],
            Op::MatMulEpilogue(e) => e.attrs(),
            Op::SumTo { shape } | Op::Reshape { shape } => {
                vec![("shape", Attr::Shape(shape.clone()))]
            }
            Op::Softmax { mask } => vec![(
                "mask",
                Attr::Word(match mask {
                    Mask::None => "none".into(),
                    Mask::Causal => "causal".into(),
                }),
            )],
            Op::Attention { scale, causal } => {
                vec![("scale", f(*scale)), ("causal", Attr::Bool(*causal))]
            }
            Op::AdamW {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
                part,
            } => vec![
                ("lr", f(*lr)),
                ("beta1", f(*beta1)),
                ("beta2", f(*beta2)),
                ("eps", f(*eps)),
                ("weight_decay", f(*weight_decay)),
                ("part", Attr::Word(part.name().to_string())),
            ],
            Op::AttentionGrad {
                scale,
                causal,
                part,
            } => vec![
                ("scale", f(*scale)),
                ("causal", Attr::Bool(*causal)),
                ("part", Attr::Word(part.name().to_string())),
            ],
            Op::LayerNorm { eps }
            | Op::LayerNormGradX { eps }
            | Op::LayerNormGradW { eps }
            | Op::RmsNorm { eps }
            | Op::RmsNormGradX { eps }
            | Op::RmsNormGradW { eps } => vec![("eps", f(*eps))],
            Op::EmbeddingGrad { rows } => vec![("rows", Attr::Int(*rows))],
            Op::Rope { theta, inverse } => {
                vec![("theta", f(*theta)), ("inverse", Attr::Bool(*inverse))]
            }
            Op::SplitHeads { heads } => vec![("heads", Attr::Int(*heads))],
            Op::RepeatKv { groups } | Op::SumKv { groups } => vec![("groups", Attr::Int(*groups))],
            Op::Slice { axis, start, len } => vec![
                ("axis", Attr::Int(*axis)),
                ("start", Attr::Int(*start)),
                ("len", Attr::Int(*len)),
            ],
            Op::Pad { axis, start, total } => vec![
                ("axis", Attr::Int(*axis)),
                ("start", Attr::Int(*start)),
                ("total", Attr::Int(*total)),
            ],
            Op::CrossEntropy { shift }
            | Op::CrossEntropyGrad { shift }
            | Op::Nll { shift }
            | Op::NllGrad { shift } => {
                vec![("shift", Attr::Bool(*shift))]
            }
            Op::Output { name } | Op::Assign { name } => vec![("name", Attr::Str(name.clone()))],
            Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Max
            | Op::Min
            | Op::Unary(_)
            | Op::SumAll
            | Op::AbsMax
            | Op::AllFinite
            | Op::Where
            | Op::SoftmaxGrad
            | Op::Embedding
            | Op::MergeHeads
            | Op::RowMean
            | Op::LogSoftmax
            | Op::LogSoftmaxGrad => Vec::new(),
        }
    }

    /// Builds an op from its text-form name, attributes and (for sources)
    /// declared type.
    ///
    /// # Errors
    /// A message naming the unknown op, or the missing or ill-typed attribute.
    pub fn from_parts(
        name: &str,
        attrs: &[(String, Attr)],
        ty: Option<TensorType>,
    ) -> Result<Op, String> {
        let get = |key: &str| {
            attrs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .ok_or_else(|| format!("`{name}` needs attribute `{key}`"))
        };
        let float = |key: &str| match get(key)? {
            Attr::Float(x) => Ok(*x),
            Attr::Int(i) => Ok(*i as f64),
            _ => Err(format!("attribute `{key}` of `{name}` must be a number")),
        };
        let int = |key: &str| match get(key)? {
            Attr::Int(i) => Ok(*i),
            _ => Err(format!("attribute `{key}` of `{name}` must be an integer")),
        };
        let boolean = |key: &str| match get(key)? {
            Attr::Bool(b) => Ok(*b),
            _ => Err(format!(
                "attribute `{key}` of `{name}` must be true or false"
            )),
        };
        let string = |key: &str| match get(key)? {
            Attr::Str(s) => Ok(s.clone()),
            _ => Err(format!(
                "attribute `{key}` of `{name}` must be a quoted string"
            )),
        };
        let dtype = |key: &str| match get(key)? {
            Attr::Word(w) => w.parse::<DType>(),
            _ => Err(format!(
                "attribute `{key}` of `{name}` must be an element type"
            )),
        };
        let source_ty = || {
            ty.clone()
                .ok_or_else(|| format!("`{name}` needs a declared type `: [..] dtype`"))
        };
        let op = match name {
            "param" => Op::Param {
                name: string("name")?,
                ty: source_ty()?,
            },
            "input" => Op::Input {
                name: string("name")?,
                ty: source_ty()?,
            },
            "state" => Op::State {
                name: string("name")?,
                ty: source_ty()?,
                init: float("init")?,
            },
            "const" => Op::Const {
                value: float("value")?,
                ty: source_ty()?,
            },
            "add" => Op::Add,
            "sub" => Op::Sub,
            "mul" => Op::Mul,
            "div" => Op::Div,
            "max" => Op::Max,
            "min" => Op::Min,
            "affine" => Op::Affine {
                scale: float("scale")?,
                shift: float("shift")?,
            },
            "cast" => Op::Cast { to: dtype("to")? },
            "matmul" => Op::MatMul {
                ta: boolean("ta")?,
                tb: boolean("tb")?,
                out: dtype("out")?,
            },
            "matmul_epilogue" => Op::MatMulEpilogue(Epilogue::from_attrs(attrs)?),
            "sum_to" => match get("shape")? {
                Attr::Shape(s) => Op::SumTo { shape: s.clone() },
                _ => return Err("attribute `shape` of `sum_to` must be a shape `[..]`".into()),
            },
            "reshape" => match get("shape")? {
                Attr::Shape(s) => Op::Reshape { shape: s.clone() },
                _ => return Err("attribute `shape` of `reshape` must be a shape `[..]`".into()),
            },
            "sum_all" => Op::SumAll,
            "abs_max" => Op::AbsMax,
            "all_finite" => Op::AllFinite,
            "where" => Op::Where,
            "softmax" => Op::Softmax {
                mask: match get("mask")? {
                    Attr::Word(w) if w == "none" => Mask::None,
                    Attr::Word(w) if w == "causal" => Mask::Causal,
                    _ => return Err("attribute `mask` of `softmax` must be none or causal".into()),
                },
            },
            "softmax_grad" => Op::SoftmaxGrad,
            "adamw" => Op::AdamW {
                lr: float("lr")?,
                beta1: float("beta1")?,
                beta2: float("beta2")?,
                eps: float("eps")?,
                weight_decay: float("weight_decay")?,
                part: match get("part")? {
                    Attr::Word(w) if w == "p" => AdamPart::P,
                    Attr::Word(w) if w == "m" => AdamPart::M,
                    Attr::Word(w) if w == "v" => AdamPart::V,
                    _ => return Err("attribute `part` of `adamw` must be p, m or v".into()),
                },
            },
            "attention" => Op::Attention {
                scale: float("scale")?,
                causal: boolean("causal")?,
            },
            "attention_grad" => Op::AttentionGrad {
                scale: float("scale")?,
                causal: boolean("causal")?,
                part: match get("part")? {
                    Attr::Word(w) if w == "q" => AttentionPart::Q,
                    Attr::Word(w) if w == "k" => AttentionPart::K,
                    Attr::Word(w) if w == "v" => AttentionPart::V,
                    _ => {
                        return Err("attribute `part` of `attention_grad` must be q, k or v".into())
                    }
                },
            },
            "layer_norm" => Op::LayerNorm { eps: float("eps")? },
            "layer_norm_grad_x" => Op::LayerNormGradX { eps: float("eps")? },
            "layer_norm_grad_w" => Op::LayerNormGradW { eps: float("eps")? },
            "rms_norm" => Op::RmsNorm { eps: float("eps")? },
            "rms_norm_grad_x" => Op::RmsNormGradX { eps: float("eps")? },
            "rms_norm_grad_w" => Op::RmsNormGradW { eps: float("eps")? },
            "embedding" => Op::Embedding,
            "embedding_grad" => Op::EmbeddingGrad { rows: int("rows")? },
            "rope" => Op::Rope {
                theta: float("theta")?,
                inverse: boolean("inverse")?,
            },
            "split_heads" => Op::SplitHeads {
                heads: int("heads")?,
            },
            "merge_heads" => Op::MergeHeads,
            "repeat_kv" => Op::RepeatKv {
                groups: int("groups")?,
            },
            "sum_kv" => Op::SumKv {
                groups: int("groups")?,
            },
            "slice" => Op::Slice {
                axis: int("axis")?,
                start: int("start")?,
                len: int("len")?,
            },
            "pad" => Op::Pad {
                axis: int("axis")?,
                start: int("start")?,
                total: int("total")?,
            },
            "cross_entropy" => Op::CrossEntropy {
                shift: boolean("shift")?,
            },
            "cross_entropy_grad" => Op::CrossEntropyGrad {
                shift: boolean("shift")?,
            },
            "row_mean" => Op::RowMean,
            "log_softmax" => Op::LogSoftmax,
            "log_softmax_grad" => Op::LogSoftmaxGrad,
            "nll" => Op::Nll {
                shift: boolean("shift")?,
            },
            "nll_grad" => Op::NllGrad {
                shift: boolean("shift")?,
            },
            "output" => Op::Output {
                name: string("name")?,
            },
            "assign" => Op::Assign {
                name: string("name")?,
            },
            other => match Unary::ALL.iter().find(|u| u.name() == other) {
                Some(u) => Op::Unary(*u),
                None => return Err(format!("unknown op `{other}`")),
            },
        };
        if let Some((extra, _)) = attrs
            .iter()
            .find(|(k, _)| !op.attrs().iter().any(|(known, _)| known == k))
        {
            return Err(format!("`{name}` has no attribute `{extra}`"));
        }
        Ok(op)
    }

    /// The type of the op's value given its operands' types (`None` for sinks).
    ///
    /// # Errors
    /// The typing rule the operands break.
    pub fn infer(&self, t: &[&TensorType]) -> Result<Option<TensorType>, String> {
        let arity = |n: usize| {
            if t.len() == n {
                Ok(())
            } else {
                Err(format!("takes {n} operand(s), got {}", t.len()))
            }
        };
        let float = |x: &TensorType, what: &str| {
            if !x.dtype.is_integer() {
                Ok(())
            } else {
                Err(format!(
                    "{what} must be floating-point, got {}",
                    x.dtype.name()
                ))
            }
        };
        let rank = |x: &TensorType, r: usize, what: &str| {
            if x.shape.len() == r {
                Ok(())
            } else {
                Err(format!("{what} must have rank {r}, got {:?}", x.shape))
            }
        };
        let same = |a: &TensorType, b: &TensorType, what: &str| {
            if a == b {
                Ok(())
            } else {
                Err(format!(
                    "{what}: {:?} {} and {:?} {} differ",
                    a.shape,
                    a.dtype.name(),
                    b.shape,
                    b.dtype.name()
                ))
            }
        };
        let row_vec = |x: &TensorType, w: &TensorType, what: &str| {
            if w.shape == [x.last()] {
                Ok(())
            } else {
                Err(format!("{what} must be [{}], got {:?}", x.last(), w.shape))
            }
        };
        let out = |ty: TensorType| Ok(Some(ty));
        match self {
            Op::Param { ty, .. }
            | Op::Input { ty, .. }
            | Op::State { ty, .. }
            | Op::Const { ty, .. } => {
                arity(0)?;
                out(ty.clone())
            }
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Max | Op::Min => {
                arity(2)?;
                float(t[0], "operand a")?;
                float(t[1], "operand b")?;
                if !t[0].shape.ends_with(&t[1].shape) {
                    return Err(format!(
                        "b {:?} must be a suffix of a {:?}",
                        t[1].shape, t[0].shape
                    ));
                }
                out(t[0].clone())
            }
            Op::Affine { .. } | Op::Unary(_) => {
                arity(1)?;
                float(t[0], "the operand")?;
                out(t[0].clone())
            }
            Op::Cast { to } => {
                arity(1)?;
                float(t[0], "the operand")?;
                if to.is_integer() {
                    return Err(format!(
                        "can only cast to a floating type, not {}",
                        to.name()
                    ));
                }
                out(TensorType {
                    shape: t[0].shape.clone(),
                    dtype: *to,
                })
            }
            Op::MatMul { ta, tb, out: o } => {
                arity(2)?;
                float(t[0], "a")?;
                float(t[1], "b")?;
                if o.is_integer() {
                    return Err(format!("out must be floating, not {}", o.name()));
                }
                let (a, b) = (&t[0].shape, &t[1].shape);
                if a.len() < 2 || b.len() < 2 {
                    return Err("operands must have rank at least 2".into());
                }
                let (m, ka) = if *ta {
                    (a[a.len() - 1], a[a.len() - 2])
                } else {
                    (a[a.len() - 2], a[a.len() - 1])
                };
                let (kb, n) = if *tb {
                    (b[b.len() - 1], b[b.len() - 2])
                } else {
                    (b[b.len() - 2], b[b.len() - 1])
                };
                if ka != kb {
                    return Err(format!(
                        "reduction lengths differ: a {a:?} has {ka}, b {b:?} has {kb}"
                    ));
                }
                let batch = &a[..a.len() - 2];
                if b.len() > 2 && b[..b.len() - 2] != *batch {
                    return Err(format!("batch axes differ: a {a:?}, b {b:?}"));
                }
                let mut shape = batch.to_vec();
                shape.extend([m, n]);
                out(TensorType { shape, dtype: *o })
            }
            Op::MatMulEpilogue(e) => out(e.infer(t)?),
            Op::SumTo { shape } => {
                arity(1)?;
                float(t[0], "the operand")?;
                if !t[0].shape.ends_with(shape) {
                    return Err(format!("{shape:?} must be a suffix of {:?}", t[0].shape));
                }
                out(TensorType {
                    shape: shape.clone(),
                    dtype: DType::Fp32,
                })
            }
            Op::Reshape { shape } => {
                arity(1)?;
                if shape.iter().product::<u64>() != t[0].elements() {
                    return Err(format!(
                        "{shape:?} does not hold the {} elements of {:?}",
                        t[0].elements(),
                        t[0].shape
                    ));
                }
                out(TensorType {
                    shape: shape.clone(),
                    dtype: t[0].dtype,
                })
            }
            Op::SumAll | Op::AbsMax | Op::AllFinite => {
                arity(1)?;
                float(t[0], "the operand")?;
                out(TensorType::scalar())
            }
            Op::Where => {
                arity(3)?;
                rank(t[0], 0, "the condition")?;
                same(t[1], t[2], "the two branches")?;
                out(t[1].clone())
            }
            Op::Softmax { mask } => {
                if t.len() != 1 && t.len() != 2 {
                    return Err(format!("takes 1 or 2 operands, got {}", t.len()));
                }
                float(t[0], "the scores")?;
                if *mask == Mask::Causal || t.len() == 2 {
                    rank(t[0], 4, "masked scores")?;
                    if t[0].shape[2] != t[0].shape[3] {
                        return Err(format!(
                            "masked scores must be square in the last two axes, got {:?}",
                            t[0].shape
                        ));
                    }
                }
                if let Some(m) = t.get(1) {
                    if m.shape != [t[0].shape[0], t[0].shape[3]] {
                        return Err(format!(
                            "the key mask must be [{}, {}], got {:?}",
                            t[0].shape[0], t[0].shape[3], m.shape
                        ));
                    }
                }
                out(TensorType {
                    shape: t[0].shape.clone(),
                    dtype: DType::Fp32,
                })
            }
            Op::AdamW { .. } => {
                arity(6)?;
                for (i, what) in ["p", "g", "m", "v"].iter().enumerate() {
                    if t[i].shape != t[0].shape || t[i].dtype != DType::Fp32 {
                        return Err(format!(
                            "{what} must be fp32 {:?}, got {:?} {}",
                            t[0].shape,
                            t[i].shape,
                            t[i].dtype.name()
                        ));
                    }
                }
                rank(t[4], 0, "sqrt(1 - beta2^t)")?;
                rank(t[5], 0, "the step size")?;
                out(t[0].clone())
            }
            Op::Attention { .. } | Op::AttentionGrad { .. } => {
                let grad = matches!(self, Op::AttentionGrad { .. });
                let base = if grad { 5 } else { 3 };
                if t.len() != base && t.len() != base + 1 {
                    return Err(format!(
                        "takes {base} or {} operands, got {}",
                        base + 1,
                        t.len()
                    ));
                }
                for (i, what) in ["q", "k", "v"].iter().enumerate() {
                    rank(t[i], 4, what)?;
                    float(t[i], what)?;
                }
                let (q, k, v) = (&t[0].shape, &t[1].shape, &t[2].shape);
                if k != v
                    || k[0] != q[0]
                    || k[2] != q[2]
                    || k[3] != q[3]
                    || k[1] == 0
                    || q[1] % k[1] != 0
                {
                    return Err(format!(
                        "q {q:?} and k, v {k:?}, {v:?} do not form grouped attention heads"
                    ));
                }
                if t[0].dtype != t[1].dtype || t[1].dtype != t[2].dtype {
                    return Err("q, k and v must share an element type".into());
                }
                if grad {
                    for (i, what) in [(3, "o"), (4, "do")] {
                        if t[i].shape != *q {
                            return Err(format!("{what} must be {q:?}, got {:?}", t[i].shape));
                        }
                    }
                }
                if let Some(m) = t.get(base) {
                    if m.shape != [q[0], q[2]] {
                        return Err(format!(
                            "the key mask must be [{}, {}], got {:?}",
                            q[0], q[2], m.shape
                        ));
                    }
                }
                let shape = match self {
                    Op::AttentionGrad { part, .. } => t[part.index()].shape.clone(),
                    _ => q.clone(),
                };
                out(TensorType {
                    shape,
                    dtype: DType::Fp32,
                })
            }
            Op::SoftmaxGrad => {
                arity(2)?;
                if t[0].shape != t[1].shape {
                    return Err(format!("y {:?} and dy {:?} differ", t[0].shape, t[1].shape));
                }
                out(TensorType {
                    shape: t[0].shape.clone(),
                    dtype: DType::Fp32,
                })
            }
            Op::LayerNorm { .. } => {
                arity(3)?;
                float(t[0], "x")?;
                row_vec(t[0], t[1], "the weight")?;
                row_vec(t[0], t[2], "the bias")?;
                out(t[0].clone())
            }
            Op::RmsNorm { .. } => {
                arity(2)?;
                float(t[0], "x")?;
                row_vec(t[0], t[1], "the weight")?;
                out(t[0].clone())
            }
            Op::LayerNormGradX { .. } | Op::RmsNormGradX { .. } => {
                arity(3)?;
                row_vec(t[0], t[1], "the weight")?;
                if t[2].shape != t[0].shape {
                    return Err(format!("dy {:?} must match x {:?}", t[2].shape, t[0].shape));
                }
                out(TensorType {
                    shape: t[0].shape.clone(),
                    dtype: DType::Fp32,
                })
            }
            Op::LayerNormGradW { .. } | Op::RmsNormGradW { .. } => {
                arity(2)?;
                if t[1].shape != t[0].shape {
                    return Err(format!("dy {:?} must match x {:?}", t[1].shape, t[0].shape));
                }
                out(TensorType {
                    shape: vec![t[0].last()],
                    dtype: DType::Fp32,
                })
            }
            Op::Embedding => {
                arity(2)?;
                rank(t[0], 2, "the table")?;
                float(t[0], "the table")?;
                if t[1].dtype != DType::Int32 {
                    return Err("ids must be int32".into());
                }
                let mut shape = t[1].shape.clone();
                shape.push(t[0].shape[1]);
                out(TensorType {
                    shape,
                    dtype: t[0].dtype,
                })
            }
            Op::EmbeddingGrad { rows } => {
                arity(2)?;
                if t[1].dtype != DType::Int32 {
                    return Err("ids must be int32".into());
                }
                if t[0].shape.len() != t[1].shape.len() + 1 || !t[0].shape.starts_with(&t[1].shape)
                {
                    return Err(format!(
                        "dy {:?} must be ids {:?} plus a row axis",
                        t[0].shape, t[1].shape
                    ));
                }
                out(TensorType {
                    shape: vec![*rows, t[0].last()],
                    dtype: DType::Fp32,
                })
            }
            Op::Rope { .. } => {
                arity(1)?;
                rank(t[0], 4, "x")?;
                float(t[0], "x")?;
                if t[0].shape[3] % 2 != 0 {
                    return Err(format!(
                        "the head dimension must be even, got {}",
                        t[0].shape[3]
                    ));
                }
                out(t[0].clone())
            }
            Op::SplitHeads { heads } => {
                arity(1)?;
                rank(t[0], 3, "x")?;
                let (b, s, hd) = (t[0].shape[0], t[0].shape[1], t[0].shape[2]);
                if *heads == 0 || hd % heads != 0 {
                    return Err(format!("width {hd} is not a multiple of {heads} heads"));
                }
                out(TensorType {
                    shape: vec![b, *heads, s, hd / heads],
                    dtype: t[0].dtype,
                })
            }
            Op::MergeHeads => {
                arity(1)?;
                rank(t[0], 4, "x")?;
                let s = &t[0].shape;
                out(TensorType {
                    shape: vec![s[0], s[2], s[1] * s[3]],
                    dtype: t[0].dtype,
                })
            }
            Op::RepeatKv { groups } => {
                arity(1)?;
                rank(t[0], 4, "x")?;
                let mut shape = t[0].shape.clone();
                shape[1] *= groups;
                out(TensorType {
                    shape,
                    dtype: t[0].dtype,
                })
            }
            Op::SumKv { groups } => {
                arity(1)?;
                rank(t[0], 4, "x")?;
                if *groups == 0 || t[0].shape[1] % groups != 0 {
                    return Err(format!(
                        "{} heads are not a multiple of {groups} groups",
                        t[0].shape[1]
                    ));
                }
                let mut shape = t[0].shape.clone();
                shape[1] /= groups;
                out(TensorType {
                    shape,
                    dtype: DType::Fp32,
                })
            }
            Op::Slice { axis, start, len } => {
                arity(1)?;
                let a = usize::try_from(*axis).unwrap_or(usize::MAX);
                let dim = *t[0]
                    .shape
                    .get(a)
                    .ok_or_else(|| format!("axis {axis} out of rank {}", t[0].shape.len()))?;
                if *len == 0 || start + len > dim {
                    return Err(format!(
                        "slice {start}..{} outside axis of length {dim}",
                        start + len
                    ));
                }
                let mut shape = t[0].shape.clone();
                shape[a] = *len;
                out(TensorType {
                    shape,
                    dtype: t[0].dtype,
                })
            }
            Op::Pad { axis, start, total } => {
                arity(1)?;
                let a = usize::try_from(*axis).unwrap_or(usize::MAX);
                let dim = *t[0]
                    .shape
                    .get(a)
                    .ok_or_else(|| format!("axis {axis} out of rank {}", t[0].shape.len()))?;
                if start + dim > *total {
                    return Err(format!("{dim} entries at {start} do not fit in {total}"));
                }
                let mut shape = t[0].shape.clone();
                shape[a] = *total;
                out(TensorType {
                    shape,
                    dtype: DType::Fp32,
                })
            }
            Op::RowMean | Op::LogSoftmax => {
                arity(1)?;
                float(t[0], "the operand")?;
                if t[0].shape.is_empty() {
                    return Err("the operand must have at least one axis".into());
                }
                out(TensorType {
                    shape: t[0].shape.clone(),
                    dtype: DType::Fp32,
                })
            }
            Op::LogSoftmaxGrad => {
                arity(2)?;
                if t[0].shape != t[1].shape || t[0].shape.is_empty() {
                    return Err(format!("y {:?} and dy {:?} differ", t[0].shape, t[1].shape));
                }
                out(TensorType {
                    shape: t[0].shape.clone(),
                    dtype: DType::Fp32,
                })
            }
            Op::CrossEntropy { .. }
            | Op::CrossEntropyGrad { .. }
            | Op::Nll { .. }
            | Op::NllGrad { .. } => {
                let grad = matches!(self, Op::CrossEntropyGrad { .. } | Op::NllGrad { .. });
                arity(if grad { 3 } else { 2 })?;
                rank(t[0], 3, "the logits")?;
                if t[1].dtype != DType::Int32 || t[1].shape != t[0].shape[..2] {
                    return Err(format!(
                        "labels must be int32 {:?}, got {:?}",
                        &t[0].shape[..2],
                        t[1].shape
                    ));
                }
                if grad {
                    rank(t[2], 0, "dloss")?;
                    out(TensorType {
                        shape: t[0].shape.clone(),
                        dtype: DType::Fp32,
                    })
                } else {
                    out(TensorType::scalar())
                }
            }
            Op::Output { .. } | Op::Assign { .. } => {
                arity(1)?;
                Ok(None)
            }
        }
    }
}
