//! A plain description of one Transformer training job (model shape, batch,
//! precision, attention kernel, recomputation) and its decomposition into
//! operators with FLOPs and bytes. It does not depend on the compiler crate;
//! the root package converts the compiler's model config into a [`Workload`].
//!
//! Invariants: every operator list describes one micro-batch on one device
//! for the given tensor-parallel split; FLOPs count multiply-adds as 2;
//! backward GEMMs are the data-gradient and weight-gradient products, each
//! with the forward FLOPs.

use crate::model_error::ModelError;

/// Number format of the training step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Precision {
    /// IEEE fp32 everywhere (CUDA cores on V100).
    Fp32,
    /// fp32 storage, TF32 tensor-core matmuls (A100 and later).
    Tf32,
    /// bf16 or fp16 compute with fp32 master weights (AMP, Megatron "mixed").
    Mixed16,
    /// fp8 GEMMs (Transformer Engine), bf16 elsewhere, fp32 master weights.
    Fp8,
}

impl Precision {
    /// Bytes of one activation element.
    pub fn activation_bytes(self) -> f64 {
        match self {
            Precision::Fp32 | Precision::Tf32 => 4.0,
            Precision::Mixed16 | Precision::Fp8 => 2.0,
        }
    }

    /// Bytes of one GEMM input element.
    pub fn gemm_input_bytes(self) -> f64 {
        match self {
            Precision::Fp8 => 1.0,
            p => p.activation_bytes(),
        }
    }

    /// Parses `fp32`, `tf32`, `bf16`/`fp16`/`mixed`, `fp8`.
    ///
    /// # Errors
    /// [`ModelError::Unknown`] for anything else.
    pub fn parse(s: &str) -> Result<Precision, ModelError> {
        match s {
            "fp32" => Ok(Precision::Fp32),
            "tf32" => Ok(Precision::Tf32),
            "bf16" | "fp16" | "mixed" => Ok(Precision::Mixed16),
            "fp8" => Ok(Precision::Fp8),
            _ => Err(ModelError::Unknown {
                what: "precision",
                name: s.to_string(),
                known: "fp32, tf32, bf16, fp16, mixed, fp8".into(),
            }),
        }
    }
}

/// How the attention core (scores, softmax, weighted sum) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AttentionKernel {
    /// Batched GEMMs plus separate softmax/mask/dropout kernels over the
    /// full score matrix in memory.
    Unfused,
    /// FlashAttention (v1): fused, tiled, scores never leave the chip.
    FlashV1,
    /// FlashAttention-2 / cuDNN fused attention.
    Flash,
}

/// Activation recomputation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Recompute {
    /// Keep every activation.
    None,
    /// Recompute only the attention core (Korthikanti et al. 2022).
    Selective,
    /// Recompute each layer's whole forward pass in the backward pass.
    Full,
}

/// The feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mlp {
    /// Two matrices with GELU between them.
    Gelu,
    /// Gated (SwiGLU): three matrices.
    SwiGlu,
}

/// How far the implementation fuses memory-bound work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fusion {
    /// A framework's separate kernels: norms, residuals, dropouts and the
    /// activation each read and write memory; the loss upcasts to fp32.
    Framework,
    /// Hand-fused kernels (llm.c, FlashAttention's training scripts): the
    /// activation and bias live in GEMM epilogues, residual and norm share a
    /// kernel, and the classifier fuses softmax, loss and its gradient.
    Fused,
}

/// Whether attention sees only earlier tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Masking {
    /// Decoder (GPT): fused kernels skip the masked half.
    Causal,
    /// Encoder (BERT): every token sees every token.
    Bidirectional,
}

/// One training job on one device: the model, one micro-batch and the
/// numerics. Invariant (checked by [`Workload::validate`]): all sizes are
/// non-zero, `heads` divides `hidden`, and `kv_heads` divides `heads`.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Name shown in reports.
    pub name: String,
    /// Transformer layers.
    pub layers: u32,
    /// Model width.
    pub hidden: u32,
    /// Attention heads.
    pub heads: u32,
    /// Key/value heads (equal to `heads` without grouped-query attention).
    pub kv_heads: u32,
    /// Feed-forward inner size.
    pub ffn: u32,
    /// Feed-forward kind.
    pub mlp: Mlp,
    /// Vocabulary size (rows of the embedding, columns of the logits).
    pub vocab: u32,
    /// Whether the output projection shares the embedding matrix.
    pub tied_embedding: bool,
    /// Query length per sequence.
    pub seq: u32,
    /// Extra keys per query (Transformer-XL memory); 0 for GPT/BERT.
    pub memory_len: u32,
    /// Sequences per micro-batch on one device (before tensor parallelism).
    pub micro_batch: u32,
    /// Attention masking.
    pub masking: Masking,
    /// Number format.
    pub precision: Precision,
    /// Attention kernel.
    pub attention: AttentionKernel,
    /// Recomputation policy.
    pub recompute: Recompute,
    /// Kernel fusion of memory-bound work.
    pub fusion: Fusion,
}

/// How one layer's work is split across a tensor-parallel group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// Tensor-parallel degree (Megatron column/row splits).
    pub tp: u32,
    /// Sequence parallelism: norms and dropouts also split by `tp`.
    pub sequence_parallel: bool,
}

impl Split {
    /// No tensor parallelism.
    pub const NONE: Split = Split {
        tp: 1,
        sequence_parallel: false,
    };
}

/// Which part of the step an operator belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pass {
    /// Forward pass.
    Forward,
    /// Backward pass.
    Backward,
    /// Forward work repeated in the backward pass by recomputation.
    Recompute,
    /// Optimizer update.
    Optimizer,
}

/// What an operator does, enough to time it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OpShape {
    /// `C[m,n] = A[m,k] B[k,n]`, repeated `Op::count` times.
    Gemm { m: f64, n: f64, k: f64 },
    /// A fused attention kernel with its FLOPs and HBM bytes.
    FusedAttention {
        flops: f64,
        bytes: f64,
        kernel: AttentionKernel,
    },
    /// Memory-bound work (norms, activations, softmax, dropout, optimizer).
    Elementwise { bytes: f64 },
}

/// One operator of a training step.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    /// Short name (`qkv`, `mlp_up`, `attention`, ...).
    pub name: &'static str,
    /// Pass it belongs to.
    pub pass: Pass,
    /// Its shape.
    pub shape: OpShape,
    /// How many times it runs (batched GEMMs, repeated kernels).
    pub count: f64,
    /// Kernel launches in total for all `count` repetitions.
    pub kernels: f64,
}

impl Op {
    /// FLOPs of all repetitions.
    pub fn flops(&self) -> f64 {
        self.count
            * match self.shape {
                OpShape::Gemm { m, n, k } => 2.0 * m * n * k,
                OpShape::FusedAttention { flops, .. } => flops,
                OpShape::Elementwise { .. } => 0.0,
            }
    }
}

impl Workload {
    /// Head width.
    pub fn head_dim(&self) -> f64 {
        f64::from(self.hidden) / f64::from(self.heads)
    }

    /// Tokens of one micro-batch.
    pub fn tokens(&self) -> f64 {
        f64::from(self.micro_batch) * f64::from(self.seq)
    }

    /// Parameters of one Transformer layer (weights, biases, norms).
    pub fn layer_params(&self) -> f64 {
        let h = f64::from(self.hidden);
        let kv = f64::from(self.kv_heads) * self.head_dim();
        let ffn = f64::from(self.ffn);
        let attn = h * (h + 2.0 * kv) + (h + 2.0 * kv) + h * h + h;
        let mlp = match self.mlp {
            Mlp::Gelu => 2.0 * h * ffn + ffn + h,
            Mlp::SwiGlu => 3.0 * h * ffn,
        };
        attn + mlp + 4.0 * h
    }

    /// Parameters outside the embedding (all layers plus the final norm).
    pub fn non_embedding_params(&self) -> f64 {
        f64::from(self.layers) * self.layer_params() + 2.0 * f64::from(self.hidden)
    }

    /// All parameters: layers, the embedding, and the output projection
    /// unless it is tied to the embedding.
    pub fn params(&self) -> f64 {
        let tables = if self.tied_embedding { 1.0 } else { 2.0 };
        self.non_embedding_params() + tables * f64::from(self.vocab) * f64::from(self.hidden)
    }

    /// Checks the invariant stated on [`Workload`].
    ///
    /// # Errors
    /// [`ModelError::Workload`] naming the first field that breaks a rule.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |field: &'static str, rule: &str| {
            Err(ModelError::Workload {
                name: self.name.clone(),
                field,
                rule: rule.to_string(),
            })
        };
        for (field, v) in [
            ("layers", self.layers),
            ("hidden", self.hidden),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("ffn", self.ffn),
            ("vocab", self.vocab),
            ("seq", self.seq),
            ("micro_batch", self.micro_batch),
        ] {
            if v == 0 {
                return bad(field, "must be at least 1");
            }
        }
        if self.hidden % self.heads != 0 {
            return bad("heads", "must divide hidden");
        }
        if self.heads % self.kv_heads != 0 {
            return bad("kv_heads", "must divide heads");
        }
        Ok(())
    }

    /// Operators of one layer for one micro-batch (forward, backward and,
    /// per the recompute policy, recomputation), split per `split`.
    pub fn layer_ops(&self, split: Split) -> Vec<Op> {
        let t = f64::from(split.tp.max(1));
        let sp = if split.sequence_parallel { t } else { 1.0 };
        let tok = self.tokens();
        let h = f64::from(self.hidden);
        let dh = self.head_dim();
        let kv = f64::from(self.kv_heads) * dh;
        let ffn = f64::from(self.ffn);
        let heads = f64::from(self.heads) / t;
        let b = f64::from(self.micro_batch);
        let s = f64::from(self.seq);
        let skv = s + f64::from(self.memory_len);
        let ab = self.precision.activation_bytes();
        let up_n = match self.mlp {
            Mlp::Gelu => ffn,
            Mlp::SwiGlu => 2.0 * ffn,
        };
        let gemm = |name, m: f64, n: f64, k: f64| (name, OpShape::Gemm { m, n, k }, 1.0);
        let mut fwd: Vec<(&'static str, OpShape, f64)> = vec![
            gemm("qkv", tok, (h + 2.0 * kv) / t, h),
            gemm("attn_out", tok, h, h / t),
            gemm("mlp_up", tok, up_n / t, h),
            gemm("mlp_down", tok, h, ffn / t),
        ];
        // Norms (2 x 2 passes), residual adds (2 x 3), dropouts (2 x 2 plus a
        // mask byte), all over [tokens, hidden]; split by sp under sequence
        // parallelism. The activation reads 1 and writes 1 [tokens, ffn/t].
        let act_passes = match self.mlp {
            Mlp::Gelu => 2.0,
            Mlp::SwiGlu => 3.0,
        };
        let (h_passes, act_passes, fwd_kernels) = match self.fusion {
            Fusion::Framework => (14.0, act_passes, 8.0),
            Fusion::Fused => (6.0, 0.0, 3.0),
        };
        let ew = tok * h * ab * h_passes / sp + tok * (ffn / t) * ab * act_passes;
        fwd.push(("elementwise", OpShape::Elementwise { bytes: ew }, 1.0));
        let core = self.attention_core(b * heads, s, skv, dh);
        let mut ops = Vec::new();
        let push = |ops: &mut Vec<Op>, pass, list: &[(&'static str, OpShape, f64)], scale| {
            for &(name, shape, kernels) in list {
                ops.push(Op {
                    name,
                    pass,
                    shape,
                    count: 1.0,
                    kernels: kernels * scale,
                });
            }
        };
        fwd.iter_mut().for_each(|f| {
            if f.0 == "elementwise" {
                f.2 = fwd_kernels;
            }
        });
        push(&mut ops, Pass::Forward, &fwd, 1.0);
        for c in &core {
            ops.push(Op {
                name: c.0,
                pass: Pass::Forward,
                shape: c.1,
                count: c.3,
                kernels: c.2,
            });
        }
        // Backward: every GEMM twice (data and weight gradients), the
        // elementwise work twice, the attention core per its kernel.
        for &(name, shape, _) in &fwd {
            match shape {
                OpShape::Gemm { m, n, k } => {
                    ops.push(Op {
                        name,
                        pass: Pass::Backward,
                        shape: OpShape::Gemm { m, n: k, k: n },
                        count: 1.0,
                        kernels: 1.0,
                    });
                    ops.push(Op {
                        name,
                        pass: Pass::Backward,
                        shape: OpShape::Gemm { m: k, n, k: m },
                        count: 1.0,
                        kernels: 1.0,
                    });
                }
                OpShape::Elementwise { bytes } => ops.push(Op {
                    name,
                    pass: Pass::Backward,
                    shape: OpShape::Elementwise { bytes: 2.0 * bytes },
                    count: 1.0,
                    kernels: 2.0 * fwd_kernels,
                }),
                OpShape::FusedAttention { .. } => {}
            }
        }
        for op in self.attention_core_backward(&core) {
            ops.push(op);
        }
        let recompute_core = match self.recompute {
            Recompute::None => false,
            Recompute::Selective => true,
            Recompute::Full => {
                push(&mut ops, Pass::Recompute, &fwd, 1.0);
                true
            }
        };
        if recompute_core {
            for c in &core {
                ops.push(Op {
                    name: c.0,
                    pass: Pass::Recompute,
                    shape: c.1,
                    count: c.3,
                    kernels: c.2,
                });
            }
        }
        ops
    }

    /// The forward attention core: `(name, shape, kernels, count)`.
    fn attention_core(
        &self,
        batch_heads: f64,
        s: f64,
        skv: f64,
        dh: f64,
    ) -> Vec<(&'static str, OpShape, f64, f64)> {
        let ab = self.precision.activation_bytes();
        match self.attention {
            AttentionKernel::Unfused => {
                // scores = Q K^T, probs = softmax(scale, mask, dropout), out = P V.
                // Bytes per score element: a framework runs scale, mask,
                // softmax and dropout as separate kernels, each reading and
                // writing the scores; autocast runs softmax in fp32 (4-byte
                // output, dropout on fp32 plus a 1-byte mask, a cast back):
                // 16-bit 2+2 + 2+2 + 2+4 + 4+4+1 + 4+2 = 29, fp32 33.
                // Fused scale-mask-softmax (Megatron): 3 passes over the
                // scores, as before this accounting (validated on the
                // Megatron layer times, docs/scaleout.md).
                let per_element = match (self.fusion, ab < 4.0) {
                    (Fusion::Framework, true) => 29.0,
                    (Fusion::Framework, false) => 33.0,
                    (Fusion::Fused, _) => 3.0 * ab,
                };
                let score_bytes = batch_heads * s * skv * per_element;
                vec![
                    (
                        "scores",
                        OpShape::Gemm {
                            m: s,
                            n: skv,
                            k: dh,
                        },
                        1.0,
                        batch_heads,
                    ),
                    (
                        "softmax",
                        OpShape::Elementwise { bytes: score_bytes },
                        3.0,
                        1.0,
                    ),
                    (
                        "attn_v",
                        OpShape::Gemm {
                            m: s,
                            n: dh,
                            k: skv,
                        },
                        1.0,
                        batch_heads,
                    ),
                ]
            }
            kernel => {
                let frac = match self.masking {
                    Masking::Causal => 0.5,
                    Masking::Bidirectional => 1.0,
                };
                let flops = 4.0 * batch_heads * s * skv * dh * frac;
                let bytes = batch_heads * (2.0 * s + 2.0 * skv) * dh * ab;
                vec![(
                    "attention",
                    OpShape::FusedAttention {
                        flops,
                        bytes,
                        kernel,
                    },
                    1.0,
                    1.0,
                )]
            }
        }
    }

    /// Backward of the attention core: unfused twice every GEMM and the
    /// softmax traffic; fused kernels 2.5x the forward FLOPs (5 matmuls
    /// against 2, FlashAttention-2 paper) and twice the bytes.
    fn attention_core_backward(&self, core: &[(&'static str, OpShape, f64, f64)]) -> Vec<Op> {
        let mut out = Vec::new();
        for &(name, shape, kernels, count) in core {
            let (shape, count, kernels) = match shape {
                OpShape::Gemm { .. } => (shape, 2.0 * count, 2.0 * kernels),
                OpShape::Elementwise { bytes } => {
                    (OpShape::Elementwise { bytes: 1.2 * bytes }, count, kernels)
                }
                OpShape::FusedAttention {
                    flops,
                    bytes,
                    kernel,
                } => (
                    OpShape::FusedAttention {
                        flops: 2.5 * flops,
                        bytes: 2.0 * bytes,
                        kernel,
                    },
                    count,
                    kernels,
                ),
            };
            out.push(Op {
                name,
                pass: Pass::Backward,
                shape,
                count,
                kernels,
            });
        }
        out
    }

    /// Embedding, final norm, logits and loss for one micro-batch,
    /// forward and backward; the vocabulary is split by `split.tp`.
    pub fn head_ops(&self, split: Split) -> Vec<Op> {
        let t = f64::from(split.tp.max(1));
        let tok = self.tokens();
        let h = f64::from(self.hidden);
        let v = f64::from(self.vocab) / t;
        let ab = self.precision.activation_bytes();
        let logits = OpShape::Gemm { m: tok, n: v, k: h };
        // fp32 softmax cross-entropy: read logits, write probabilities, read
        // again for the gradient, write the gradient.
        let loss = OpShape::Elementwise {
            bytes: tok
                * v
                * match self.fusion {
                    Fusion::Framework => ab + 4.0 + 4.0 + ab,
                    Fusion::Fused => 2.0 * ab,
                },
        };
        let embed = OpShape::Elementwise {
            bytes: tok * h * ab * 6.0,
        };
        let op = |name, pass, shape, kernels| Op {
            name,
            pass,
            shape,
            count: 1.0,
            kernels,
        };
        vec![
            op("embedding", Pass::Forward, embed, 3.0),
            op("logits", Pass::Forward, logits, 1.0),
            op("loss", Pass::Forward, loss, 4.0),
            op(
                "logits",
                Pass::Backward,
                OpShape::Gemm { m: tok, n: h, k: v },
                1.0,
            ),
            op(
                "logits",
                Pass::Backward,
                OpShape::Gemm { m: h, n: v, k: tok },
                1.0,
            ),
            op("embedding", Pass::Backward, embed, 3.0),
        ]
    }

    /// The Adam update of `params` parameters held on one device: fp32
    /// master weight, two moments and the gradient read, three written,
    /// plus the low-precision weight copy (16 + 12 + 2 bytes per parameter,
    /// 32 in fp32 training with no copy).
    pub fn optimizer_ops(&self, params: f64) -> Vec<Op> {
        let per_param = match self.precision {
            Precision::Fp32 | Precision::Tf32 => 28.0,
            Precision::Mixed16 | Precision::Fp8 => 30.0,
        };
        vec![Op {
            name: "adam",
            pass: Pass::Optimizer,
            shape: OpShape::Elementwise {
                bytes: params * per_param,
            },
            count: 1.0,
            kernels: 4.0 * f64::from(self.layers),
        }]
    }

    /// Every operator of one micro-batch on one device with no model
    /// parallelism, without the optimizer.
    pub fn micro_batch_ops(&self) -> Vec<Op> {
        let layer = self.layer_ops(Split::NONE);
        let mut ops = Vec::with_capacity(layer.len() + 6);
        for op in layer {
            ops.push(Op {
                count: op.count * f64::from(self.layers),
                kernels: op.kernels * f64::from(self.layers),
                ..op
            });
        }
        ops.extend(self.head_ops(Split::NONE));
        ops
    }
}

/// A built-in model: `(name, layers, hidden, heads, kv_heads, ffn, mlp,
/// vocab, seq, masking, source)`.
type PresetRow = (
    &'static str,
    u32,
    u32,
    u32,
    u32,
    u32,
    Mlp,
    u32,
    u32,
    Masking,
    &'static str,
);

const C: Masking = Masking::Causal;
const B: Masking = Masking::Bidirectional;
const G: Mlp = Mlp::Gelu;
const S: Mlp = Mlp::SwiGlu;
const MEGATRON: &str = "Narayanan et al. SC'21 Table 1 (vocab 51200)";

/// Built-in models with their sources.
pub const PRESETS: &[PresetRow] = &[
    (
        "gpt2-small",
        12,
        768,
        12,
        12,
        3072,
        G,
        50257,
        1024,
        C,
        "Radford et al. 2019 / HF gpt2 config",
    ),
    (
        "gpt2-medium",
        24,
        1024,
        16,
        16,
        4096,
        G,
        50257,
        1024,
        C,
        "HF gpt2-medium config",
    ),
    (
        "gpt2-large",
        36,
        1280,
        20,
        20,
        5120,
        G,
        50257,
        1024,
        C,
        "HF gpt2-large config",
    ),
    (
        "gpt2-xl",
        48,
        1600,
        25,
        25,
        6400,
        G,
        50257,
        1024,
        C,
        "HF gpt2-xl config",
    ),
    (
        "bert-base",
        12,
        768,
        12,
        12,
        3072,
        G,
        30522,
        512,
        B,
        "Devlin et al. 2019",
    ),
    (
        "bert-large",
        24,
        1024,
        16,
        16,
        4096,
        G,
        30522,
        512,
        B,
        "Devlin et al. 2019",
    ),
    (
        "llama-7b",
        32,
        4096,
        32,
        32,
        11008,
        S,
        32000,
        2048,
        C,
        "Touvron et al. 2023 Table 2",
    ),
    (
        "llama-13b",
        40,
        5120,
        40,
        40,
        13824,
        S,
        32000,
        2048,
        C,
        "Touvron et al. 2023 Table 2",
    ),
    (
        "llama-70b",
        80,
        8192,
        64,
        8,
        28672,
        S,
        32000,
        4096,
        C,
        "Llama 2 70B config (GQA, 8 kv heads)",
    ),
    (
        "gpt3-175b",
        96,
        12288,
        96,
        96,
        49152,
        G,
        50257,
        2048,
        C,
        "Brown et al. 2020 Table 2.1",
    ),
    (
        "gpt-22b",
        48,
        6144,
        64,
        64,
        24576,
        G,
        51200,
        2048,
        C,
        "Korthikanti et al. 2022 Table 3",
    ),
    (
        "gpt-1.7b", 24, 2304, 24, 24, 9216, G, 51200, 2048, C, MEGATRON,
    ),
    (
        "gpt-3.6b", 30, 3072, 32, 32, 12288, G, 51200, 2048, C, MEGATRON,
    ),
    (
        "gpt-7.5b", 36, 4096, 32, 32, 16384, G, 51200, 2048, C, MEGATRON,
    ),
    (
        "gpt-18.4b",
        40,
        6144,
        48,
        48,
        24576,
        G,
        51200,
        2048,
        C,
        MEGATRON,
    ),
    (
        "gpt-39.1b",
        48,
        8192,
        64,
        64,
        32768,
        G,
        51200,
        2048,
        C,
        MEGATRON,
    ),
    (
        "gpt-76.1b",
        60,
        10240,
        80,
        80,
        40960,
        G,
        51200,
        2048,
        C,
        MEGATRON,
    ),
    (
        "gpt-145.6b",
        80,
        12288,
        96,
        96,
        49152,
        G,
        51200,
        2048,
        C,
        MEGATRON,
    ),
    (
        "gpt-310.1b",
        96,
        16384,
        128,
        128,
        65536,
        G,
        51200,
        2048,
        C,
        MEGATRON,
    ),
    (
        "gpt-529.6b",
        105,
        20480,
        128,
        128,
        81920,
        G,
        51200,
        2048,
        C,
        MEGATRON,
    ),
    (
        "gpt-1t", 128, 25600, 160, 160, 102400, G, 51200, 2048, C, MEGATRON,
    ),
];

/// A built-in model as a workload with micro-batch 1, mixed precision,
/// fused attention and no recomputation; callers change what they need.
///
/// ```
/// let w = tessera_sim::workload::preset("gpt3-175b")?;
/// assert!((w.params() / 1e9 - 175.0).abs() < 1.0);
/// # Ok::<(), tessera_sim::ModelError>(())
/// ```
///
/// # Errors
/// [`ModelError::Unknown`] for a name not in [`PRESETS`].
pub fn preset(name: &str) -> Result<Workload, ModelError> {
    let row = PRESETS
        .iter()
        .find(|r| r.0 == name)
        .ok_or_else(|| ModelError::Unknown {
            what: "model",
            name: name.to_string(),
            known: PRESETS.iter().map(|r| r.0).collect::<Vec<_>>().join(", "),
        })?;
    let (name, layers, hidden, heads, kv_heads, ffn, mlp, vocab, seq, masking, _) = *row;
    Ok(Workload {
        name: name.to_string(),
        layers,
        hidden,
        heads,
        kv_heads,
        ffn,
        mlp,
        vocab,
        tied_embedding: !name.starts_with("llama"),
        seq,
        memory_len: 0,
        micro_batch: 1,
        masking,
        precision: Precision::Mixed16,
        attention: AttentionKernel::Flash,
        recompute: Recompute::None,
        fusion: Fusion::Framework,
    })
}
