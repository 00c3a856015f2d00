//! Builds the forward graph and loss of a model for a training setup,
//! following the Hugging Face implementations op for op (parameter names
//! and layouts included: GPT-2's `Conv1D` stores `[in, out]`, `nn.Linear`
//! stores `[out, in]`; tied embeddings are one parameter).
//!
//! Inputs: `input_ids` `[B, S]` int32 and `labels` `[B, S]` int32 (for
//! causal models the labels are usually the input ids: the loss shifts them;
//! for BERT, -100 marks unmasked positions), plus for BERT
//! `token_type_ids` `[B, S]` int32 and `attention_mask` `[B, S]` fp32 (1
//! keep, 0 padding). Dropout is not modelled (deterministic steps).

use tessera_isa::DType;

use crate::error::{IrError, SetupError};
use crate::ir::{Graph, Mask, Op, TensorType, Unary, ValueId};
use crate::model::{Activation, Family, ModelConfig};
use crate::setup::{Precision, TrainingSetup};

/// The forward graph: the loss value is `loss`, also declared as the
/// output named "loss".
#[derive(Debug)]
pub struct Forward {
    /// The graph so far.
    pub graph: Graph,
    /// The scalar mean loss.
    pub loss: ValueId,
}

/// Builds the forward pass and loss.
///
/// # Errors
/// [`SetupError`] if the setup does not fit the model (sequence longer
/// than the position table, zero sizes).
pub fn forward(model: &ModelConfig, setup: &TrainingSetup) -> Result<Forward, SetupError> {
    model.validate()?;
    if setup.batch == 0 || setup.seq == 0 || setup.grad_accumulation == 0 {
        return Err(SetupError::Invalid {
            field: "batch/seq/grad_accumulation".into(),
            rule: "must all be at least 1".into(),
        });
    }
    if setup.seq > model.max_positions {
        return Err(SetupError::Invalid {
            field: "seq".into(),
            rule: format!(
                "{} exceeds the model's {} positions",
                setup.seq, model.max_positions
            ),
        });
    }
    let mut b = Builder {
        g: Graph::new(&format!("{}_train_step", model.name)),
        m: model,
        s: setup,
    };
    let loss = match model.family {
        Family::Gpt2 => b.gpt2()?,
        Family::Llama => b.llama()?,
        Family::Bert => b.bert()?,
    };
    b.g.push(
        Op::Output {
            name: "loss".into(),
        },
        &[loss],
    )?;
    Ok(Forward { graph: b.g, loss })
}

struct Builder<'a> {
    g: Graph,
    m: &'a ModelConfig,
    s: &'a TrainingSetup,
}

/// How a projection's weight is stored.
#[derive(Clone, Copy)]
enum WeightLayout {
    /// `[in, out]`, y = x W (GPT-2 `Conv1D`).
    InOut,
    /// `[out, in]`, y = x W^T (`nn.Linear`).
    OutIn,
}

impl Builder<'_> {
    fn op(&mut self, op: Op, inputs: &[ValueId]) -> Result<ValueId, IrError> {
        self.g.push(op, inputs)
    }

    fn param(&mut self, name: &str, shape: &[u64]) -> Result<ValueId, IrError> {
        self.op(
            Op::Param {
                name: name.into(),
                ty: TensorType::new(shape, DType::Fp32),
            },
            &[],
        )
    }

    fn ids(&mut self, name: &str) -> Result<ValueId, IrError> {
        let ty = TensorType::new(&[self.s.batch, self.s.seq], DType::Int32);
        self.op(
            Op::Input {
                name: name.into(),
                ty,
            },
            &[],
        )
    }

    /// Casts to the matmul input type of the precision recipe.
    fn mm_input(&mut self, x: ValueId) -> Result<ValueId, IrError> {
        match self.s.precision {
            Precision::Fp32 => Ok(x),
            // fp8-mixed is built as bf16-mixed; `fp8::rewrite` then moves
            // the products to fp8.
            Precision::Bf16Mixed | Precision::Fp8Mixed => {
                self.op(Op::Cast { to: DType::Bf16 }, &[x])
            }
            Precision::Fp16Mixed => self.op(Op::Cast { to: DType::Fp16 }, &[x]),
        }
    }

    fn matmul(&mut self, a: ValueId, b: ValueId, ta: bool, tb: bool) -> Result<ValueId, IrError> {
        let (a, b) = (self.mm_input(a)?, self.mm_input(b)?);
        self.op(
            Op::MatMul {
                ta,
                tb,
                out: DType::Fp32,
            },
            &[a, b],
        )
    }

    /// `x W (+ b)` with the weight named `{prefix}.weight`.
    fn linear(
        &mut self,
        x: ValueId,
        prefix: &str,
        (inp, out): (u64, u64),
        layout: WeightLayout,
        bias: bool,
    ) -> Result<ValueId, IrError> {
        let name = format!("{prefix}.weight");
        let y = match layout {
            WeightLayout::InOut => {
                let w = self.param(&name, &[inp, out])?;
                self.matmul(x, w, false, false)?
            }
            WeightLayout::OutIn => {
                let w = self.param(&name, &[out, inp])?;
                self.matmul(x, w, false, true)?
            }
        };
        if bias {
            let b = self.param(&format!("{prefix}.bias"), &[out])?;
            self.op(Op::Add, &[y, b])
        } else {
            Ok(y)
        }
    }

    /// `x * rsqrt(mean(x^2) + eps)`, or for a layer norm `(x - mean(x))`
    /// in place of `x`, as eager PyTorch computes it: one primitive op
    /// (and kernel) per step; the `norm` fusion makes it one op again.
    fn normalize(&mut self, x: ValueId, centre: bool) -> Result<ValueId, IrError> {
        let c = if centre {
            let mean = self.op(Op::RowMean, &[x])?;
            self.op(Op::Sub, &[x, mean])?
        } else {
            x
        };
        let sq = self.op(Op::Unary(Unary::Square), &[c])?;
        let var = self.op(Op::RowMean, &[sq])?;
        let shifted = self.op(
            Op::Affine {
                scale: 1.0,
                shift: self.m.norm_eps,
            },
            &[var],
        )?;
        let inv = self.op(Op::Unary(Unary::Rsqrt), &[shifted])?;
        self.op(Op::Mul, &[c, inv])
    }

    fn layer_norm(&mut self, x: ValueId, prefix: &str) -> Result<ValueId, IrError> {
        let h = self.m.hidden;
        let w = self.param(&format!("{prefix}.weight"), &[h])?;
        let b = self.param(&format!("{prefix}.bias"), &[h])?;
        let xhat = self.normalize(x, true)?;
        let scaled = self.op(Op::Mul, &[xhat, w])?;
        self.op(Op::Add, &[scaled, b])
    }

    fn rms_norm(&mut self, x: ValueId, name: &str) -> Result<ValueId, IrError> {
        let w = self.param(name, &[self.m.hidden])?;
        let xhat = self.normalize(x, false)?;
        self.op(Op::Mul, &[xhat, w])
    }

    fn activation(&mut self, x: ValueId) -> Result<ValueId, IrError> {
        let f = match self.m.activation {
            Activation::GeluTanh => Unary::GeluTanh,
            Activation::GeluErf => Unary::GeluErf,
            Activation::Silu => Unary::Silu,
        };
        self.op(Op::Unary(f), &[x])
    }

    /// Positions `0..S` of a learned position table.
    fn positions(&mut self, name: &str) -> Result<ValueId, IrError> {
        let table = self.param(name, &[self.m.max_positions, self.m.hidden])?;
        if self.s.seq == self.m.max_positions {
            return Ok(table);
        }
        self.op(
            Op::Slice {
                axis: 0,
                start: 0,
                len: self.s.seq,
            },
            &[table],
        )
    }

    /// Scaled dot-product attention on `[B, h, S, D]` heads.
    fn attention(
        &mut self,
        q: ValueId,
        k: ValueId,
        v: ValueId,
        mask: Mask,
        key_mask: Option<ValueId>,
    ) -> Result<ValueId, IrError> {
        let scores = self.matmul(q, k, false, true)?;
        let scale = 1.0 / (self.m.head_dim() as f64).sqrt();
        let scaled = self.op(Op::Affine { scale, shift: 0.0 }, &[scores])?;
        let probs = match key_mask {
            Some(km) => self.op(Op::Softmax { mask }, &[scaled, km])?,
            None => self.op(Op::Softmax { mask }, &[scaled])?,
        };
        let ctx = self.matmul(probs, v, false, false)?;
        self.op(Op::MergeHeads, &[ctx])
    }

    fn lm_loss(&mut self, hidden: ValueId, head: ValueId, shift: bool) -> Result<ValueId, IrError> {
        let logits = self.matmul(hidden, head, false, true)?;
        self.lm_loss_from_logits(logits, shift)
    }

    fn lm_loss_from_logits(&mut self, logits: ValueId, shift: bool) -> Result<ValueId, IrError> {
        // `F.cross_entropy` in eager PyTorch: log-probabilities materialised,
        // then the pick-and-mean; the `cross_entropy` fusion makes it one op.
        let logp = self.op(Op::LogSoftmax, &[logits])?;
        let labels = self.ids("labels")?;
        self.op(Op::Nll { shift }, &[logp, labels])
    }

    fn gpt2(&mut self) -> Result<ValueId, IrError> {
        let (h, f, v) = (self.m.hidden, self.m.ffn_hidden, self.m.vocab_size);
        let ids = self.ids("input_ids")?;
        let wte = self.param("wte.weight", &[v, h])?;
        let tok = self.op(Op::Embedding, &[wte, ids])?;
        let pos = self.positions("wpe.weight")?;
        let mut x = self.op(Op::Add, &[tok, pos])?;
        for i in 0..self.m.layers {
            let p = format!("h.{i}");
            let a = self.layer_norm(x, &format!("{p}.ln_1"))?;
            let qkv = self.linear(
                a,
                &format!("{p}.attn.c_attn"),
                (h, 3 * h),
                WeightLayout::InOut,
                true,
            )?;
            let mut heads = Vec::new();
            for j in 0..3 {
                let part = self.op(
                    Op::Slice {
                        axis: 2,
                        start: j * h,
                        len: h,
                    },
                    &[qkv],
                )?;
                heads.push(self.op(
                    Op::SplitHeads {
                        heads: self.m.heads,
                    },
                    &[part],
                )?);
            }
            let ctx = self.attention(heads[0], heads[1], heads[2], Mask::Causal, None)?;
            let o = self.linear(
                ctx,
                &format!("{p}.attn.c_proj"),
                (h, h),
                WeightLayout::InOut,
                true,
            )?;
            x = self.op(Op::Add, &[x, o])?;
            let a = self.layer_norm(x, &format!("{p}.ln_2"))?;
            let up = self.linear(
                a,
                &format!("{p}.mlp.c_fc"),
                (h, f),
                WeightLayout::InOut,
                true,
            )?;
            let act = self.activation(up)?;
            let down = self.linear(
                act,
                &format!("{p}.mlp.c_proj"),
                (f, h),
                WeightLayout::InOut,
                true,
            )?;
            x = self.op(Op::Add, &[x, down])?;
        }
        let x = self.layer_norm(x, "ln_f")?;
        let head = if self.m.tie_embeddings {
            wte
        } else {
            self.param("lm_head.weight", &[v, h])?
        };
        self.lm_loss(x, head, true)
    }

    fn llama(&mut self) -> Result<ValueId, IrError> {
        let (h, f, v) = (self.m.hidden, self.m.ffn_hidden, self.m.vocab_size);
        let kv = self.m.kv_heads * self.m.head_dim();
        let groups = self.m.heads / self.m.kv_heads;
        let theta = self.m.rope_theta;
        let ids = self.ids("input_ids")?;
        let embed = self.param("model.embed_tokens.weight", &[v, h])?;
        let mut x = self.op(Op::Embedding, &[embed, ids])?;
        for i in 0..self.m.layers {
            let p = format!("model.layers.{i}");
            let a = self.rms_norm(x, &format!("{p}.input_layernorm.weight"))?;
            let q = self.linear(
                a,
                &format!("{p}.self_attn.q_proj"),
                (h, h),
                WeightLayout::OutIn,
                false,
            )?;
            let k = self.linear(
                a,
                &format!("{p}.self_attn.k_proj"),
                (h, kv),
                WeightLayout::OutIn,
                false,
            )?;
            let vv = self.linear(
                a,
                &format!("{p}.self_attn.v_proj"),
                (h, kv),
                WeightLayout::OutIn,
                false,
            )?;
            let q = self.op(
                Op::SplitHeads {
                    heads: self.m.heads,
                },
                &[q],
            )?;
            let k = self.op(
                Op::SplitHeads {
                    heads: self.m.kv_heads,
                },
                &[k],
            )?;
            let vv = self.op(
                Op::SplitHeads {
                    heads: self.m.kv_heads,
                },
                &[vv],
            )?;
            let q = self.op(
                Op::Rope {
                    theta,
                    inverse: false,
                },
                &[q],
            )?;
            let mut k = self.op(
                Op::Rope {
                    theta,
                    inverse: false,
                },
                &[k],
            )?;
            let mut vv = vv;
            if groups > 1 {
                k = self.op(Op::RepeatKv { groups }, &[k])?;
                vv = self.op(Op::RepeatKv { groups }, &[vv])?;
            }
            let ctx = self.attention(q, k, vv, Mask::Causal, None)?;
            let o = self.linear(
                ctx,
                &format!("{p}.self_attn.o_proj"),
                (h, h),
                WeightLayout::OutIn,
                false,
            )?;
            x = self.op(Op::Add, &[x, o])?;
            let a = self.rms_norm(x, &format!("{p}.post_attention_layernorm.weight"))?;
            let gate = self.linear(
                a,
                &format!("{p}.mlp.gate_proj"),
                (h, f),
                WeightLayout::OutIn,
                false,
            )?;
            let up = self.linear(
                a,
                &format!("{p}.mlp.up_proj"),
                (h, f),
                WeightLayout::OutIn,
                false,
            )?;
            let act = self.activation(gate)?;
            let gated = self.op(Op::Mul, &[act, up])?;
            let down = self.linear(
                gated,
                &format!("{p}.mlp.down_proj"),
                (f, h),
                WeightLayout::OutIn,
                false,
            )?;
            x = self.op(Op::Add, &[x, down])?;
        }
        let x = self.rms_norm(x, "model.norm.weight")?;
        let head = if self.m.tie_embeddings {
            embed
        } else {
            self.param("lm_head.weight", &[v, h])?
        };
        self.lm_loss(x, head, true)
    }

    fn bert(&mut self) -> Result<ValueId, IrError> {
        let (h, f, v) = (self.m.hidden, self.m.ffn_hidden, self.m.vocab_size);
        let ids = self.ids("input_ids")?;
        let types = self.ids("token_type_ids")?;
        let mask_ty = TensorType::new(&[self.s.batch, self.s.seq], DType::Fp32);
        let key_mask = self.op(
            Op::Input {
                name: "attention_mask".into(),
                ty: mask_ty,
            },
            &[],
        )?;
        let word = self.param("bert.embeddings.word_embeddings.weight", &[v, h])?;
        let tok = self.op(Op::Embedding, &[word, ids])?;
        let pos = self.positions("bert.embeddings.position_embeddings.weight")?;
        let type_table = self.param(
            "bert.embeddings.token_type_embeddings.weight",
            &[self.m.type_vocab_size, h],
        )?;
        let typ = self.op(Op::Embedding, &[type_table, types])?;
        let x = self.op(Op::Add, &[tok, typ])?;
        let x = self.op(Op::Add, &[x, pos])?;
        let mut x = self.layer_norm(x, "bert.embeddings.LayerNorm")?;
        for i in 0..self.m.layers {
            let p = format!("bert.encoder.layer.{i}");
            let mut heads = Vec::new();
            for part in ["query", "key", "value"] {
                let y = self.linear(
                    x,
                    &format!("{p}.attention.self.{part}"),
                    (h, h),
                    WeightLayout::OutIn,
                    true,
                )?;
                heads.push(self.op(
                    Op::SplitHeads {
                        heads: self.m.heads,
                    },
                    &[y],
                )?);
            }
            let ctx = self.attention(heads[0], heads[1], heads[2], Mask::None, Some(key_mask))?;
            let o = self.linear(
                ctx,
                &format!("{p}.attention.output.dense"),
                (h, h),
                WeightLayout::OutIn,
                true,
            )?;
            let r = self.op(Op::Add, &[x, o])?;
            x = self.layer_norm(r, &format!("{p}.attention.output.LayerNorm"))?;
            let up = self.linear(
                x,
                &format!("{p}.intermediate.dense"),
                (h, f),
                WeightLayout::OutIn,
                true,
            )?;
            let act = self.activation(up)?;
            let down = self.linear(
                act,
                &format!("{p}.output.dense"),
                (f, h),
                WeightLayout::OutIn,
                true,
            )?;
            let r = self.op(Op::Add, &[x, down])?;
            x = self.layer_norm(r, &format!("{p}.output.LayerNorm"))?;
        }
        let t = self.linear(
            x,
            "cls.predictions.transform.dense",
            (h, h),
            WeightLayout::OutIn,
            true,
        )?;
        let t = self.activation(t)?;
        let t = self.layer_norm(t, "cls.predictions.transform.LayerNorm")?;
        let logits = self.matmul(t, word, false, true)?;
        let bias = self.param("cls.predictions.bias", &[v])?;
        let logits = self.op(Op::Add, &[logits, bias])?;
        self.lm_loss_from_logits(logits, false)
    }
}
