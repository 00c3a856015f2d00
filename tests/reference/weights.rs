//! Parameters by Hugging Face tensor name, in Hugging Face layouts, and the
//! deterministic initialiser. The list of names and shapes is written once,
//! in [`param_specs`]; gradients use the same map type and names.

use std::collections::BTreeMap;

use super::config::{Family, RefConfig};
use super::error::RefError;
use super::tensor::{Rng, Tensor};

/// How a parameter starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// normal(0, initializer_range): matrices and embedding tables.
    Normal,
    /// Norm scales.
    Ones,
    /// Biases.
    Zeros,
}

/// One parameter: its Hugging Face name, shape and initialiser.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
}

fn spec(name: String, shape: &[usize], init: Init) -> ParamSpec {
    ParamSpec {
        name,
        shape: shape.to_vec(),
        init,
    }
}

/// The name of the output projection when it is not tied to the token embedding.
pub fn untied_head_name(family: Family) -> &'static str {
    match family {
        Family::Gpt2 | Family::Llama => "lm_head.weight",
        Family::Bert => "cls.predictions.decoder.weight",
    }
}

/// The token embedding, which a tied output projection shares.
pub fn embedding_name(family: Family) -> &'static str {
    match family {
        Family::Gpt2 => "wte.weight",
        Family::Llama => "model.embed_tokens.weight",
        Family::Bert => "bert.embeddings.word_embeddings.weight",
    }
}

/// Every parameter of the model, in a fixed order. Tied weights appear once.
pub fn param_specs(c: &RefConfig) -> Vec<ParamSpec> {
    let (v, h, i) = (c.vocab_size, c.hidden_size, c.intermediate_size);
    let mut s = Vec::new();
    use Init::{Normal, Ones, Zeros};
    match c.family {
        Family::Gpt2 => {
            s.push(spec("wte.weight".into(), &[v, h], Normal));
            s.push(spec("wpe.weight".into(), &[c.max_positions, h], Normal));
            for l in 0..c.num_layers {
                let p = |n: &str| format!("h.{l}.{n}");
                s.push(spec(p("ln_1.weight"), &[h], Ones));
                s.push(spec(p("ln_1.bias"), &[h], Zeros));
                s.push(spec(p("attn.c_attn.weight"), &[h, 3 * h], Normal));
                s.push(spec(p("attn.c_attn.bias"), &[3 * h], Zeros));
                s.push(spec(p("attn.c_proj.weight"), &[h, h], Normal));
                s.push(spec(p("attn.c_proj.bias"), &[h], Zeros));
                s.push(spec(p("ln_2.weight"), &[h], Ones));
                s.push(spec(p("ln_2.bias"), &[h], Zeros));
                s.push(spec(p("mlp.c_fc.weight"), &[h, i], Normal));
                s.push(spec(p("mlp.c_fc.bias"), &[i], Zeros));
                s.push(spec(p("mlp.c_proj.weight"), &[i, h], Normal));
                s.push(spec(p("mlp.c_proj.bias"), &[h], Zeros));
            }
            s.push(spec("ln_f.weight".into(), &[h], Ones));
            s.push(spec("ln_f.bias".into(), &[h], Zeros));
        }
        Family::Llama => {
            let (qd, kd) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
            s.push(spec("model.embed_tokens.weight".into(), &[v, h], Normal));
            for l in 0..c.num_layers {
                let p = |n: &str| format!("model.layers.{l}.{n}");
                s.push(spec(p("input_layernorm.weight"), &[h], Ones));
                s.push(spec(p("self_attn.q_proj.weight"), &[qd, h], Normal));
                s.push(spec(p("self_attn.k_proj.weight"), &[kd, h], Normal));
                s.push(spec(p("self_attn.v_proj.weight"), &[kd, h], Normal));
                s.push(spec(p("self_attn.o_proj.weight"), &[h, qd], Normal));
                s.push(spec(p("post_attention_layernorm.weight"), &[h], Ones));
                s.push(spec(p("mlp.gate_proj.weight"), &[i, h], Normal));
                s.push(spec(p("mlp.up_proj.weight"), &[i, h], Normal));
                s.push(spec(p("mlp.down_proj.weight"), &[h, i], Normal));
            }
            s.push(spec("model.norm.weight".into(), &[h], Ones));
        }
        Family::Bert => {
            let e = |n: &str| format!("bert.embeddings.{n}");
            s.push(spec(e("word_embeddings.weight"), &[v, h], Normal));
            s.push(spec(
                e("position_embeddings.weight"),
                &[c.max_positions, h],
                Normal,
            ));
            s.push(spec(
                e("token_type_embeddings.weight"),
                &[c.type_vocab_size, h],
                Normal,
            ));
            s.push(spec(e("LayerNorm.weight"), &[h], Ones));
            s.push(spec(e("LayerNorm.bias"), &[h], Zeros));
            for l in 0..c.num_layers {
                let p = |n: &str| format!("bert.encoder.layer.{l}.{n}");
                for m in ["query", "key", "value"] {
                    s.push(spec(
                        p(&format!("attention.self.{m}.weight")),
                        &[h, h],
                        Normal,
                    ));
                    s.push(spec(p(&format!("attention.self.{m}.bias")), &[h], Zeros));
                }
                s.push(spec(p("attention.output.dense.weight"), &[h, h], Normal));
                s.push(spec(p("attention.output.dense.bias"), &[h], Zeros));
                s.push(spec(p("attention.output.LayerNorm.weight"), &[h], Ones));
                s.push(spec(p("attention.output.LayerNorm.bias"), &[h], Zeros));
                s.push(spec(p("intermediate.dense.weight"), &[i, h], Normal));
                s.push(spec(p("intermediate.dense.bias"), &[i], Zeros));
                s.push(spec(p("output.dense.weight"), &[h, i], Normal));
                s.push(spec(p("output.dense.bias"), &[h], Zeros));
                s.push(spec(p("output.LayerNorm.weight"), &[h], Ones));
                s.push(spec(p("output.LayerNorm.bias"), &[h], Zeros));
            }
            let t = |n: &str| format!("cls.predictions.{n}");
            s.push(spec(t("transform.dense.weight"), &[h, h], Normal));
            s.push(spec(t("transform.dense.bias"), &[h], Zeros));
            s.push(spec(t("transform.LayerNorm.weight"), &[h], Ones));
            s.push(spec(t("transform.LayerNorm.bias"), &[h], Zeros));
            s.push(spec(t("bias"), &[v], Zeros));
        }
    }
    if !c.tie_word_embeddings {
        s.push(spec(untied_head_name(c.family).into(), &[v, h], Normal));
    }
    s
}

/// Names a Hugging Face checkpoint may hold besides the parameters: tied
/// copies (`lm_head.weight`, `cls.predictions.decoder.*`) and GPT-2's old
/// attention-mask buffers. Loading drops them.
fn is_alias_or_buffer(c: &RefConfig, name: &str) -> bool {
    match c.family {
        Family::Gpt2 => {
            (c.tie_word_embeddings && name == "lm_head.weight")
                || (name.starts_with("h.")
                    && (name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias")))
        }
        Family::Llama => c.tie_word_embeddings && name == "lm_head.weight",
        Family::Bert => {
            name == "cls.predictions.decoder.bias"
                || (c.tie_word_embeddings && name == "cls.predictions.decoder.weight")
        }
    }
}

/// Tensors by Hugging Face name (parameters, or gradients with the same names).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Weights {
    pub map: BTreeMap<String, Tensor>,
}

impl Weights {
    /// Deterministic initial parameters: normal(0, initializer_range) for
    /// matrices and tables, 1 for norm scales, 0 for biases, drawn in
    /// [`param_specs`] order from one [`Rng`] seeded with `seed`.
    pub fn init(c: &RefConfig, seed: u64) -> Weights {
        let mut rng = Rng::new(seed);
        let mut map = BTreeMap::new();
        for s in param_specs(c) {
            let mut t = Tensor::zeros(&s.shape);
            match s.init {
                Init::Normal => t
                    .data
                    .iter_mut()
                    .for_each(|x| *x = c.initializer_range * rng.normal()),
                Init::Ones => t.data.fill(1.0),
                Init::Zeros => {}
            }
            map.insert(s.name, t);
        }
        Weights { map }
    }

    /// Zero tensors with the shapes of `self`.
    pub fn zeros_like(&self) -> Weights {
        Weights {
            map: self
                .map
                .iter()
                .map(|(k, t)| (k.clone(), Tensor::zeros(&t.shape)))
                .collect(),
        }
    }

    /// The data of tensor `name`.
    ///
    /// # Errors
    /// `name` is absent.
    pub fn get(&self, name: &str) -> Result<&[f64], RefError> {
        self.map
            .get(name)
            .map(|t| t.data.as_slice())
            .ok_or_else(|| RefError::MissingWeight { name: name.into() })
    }

    /// Adds `delta` into tensor `name`, creating it with `shape` if absent.
    pub fn accumulate(&mut self, name: &str, shape: &[usize], delta: &[f64]) {
        let t = self
            .map
            .entry(name.to_string())
            .or_insert_with(|| Tensor::zeros(shape));
        t.data.iter_mut().zip(delta).for_each(|(a, d)| *a += d);
    }

    /// The L2 norm over every element of every tensor.
    pub fn global_norm(&self) -> f64 {
        self.map.values().map(Tensor::sum_sq).sum::<f64>().sqrt()
    }

    /// Keeps exactly the parameters of `c` with their shapes, dropping tied
    /// copies and buffers a Hugging Face checkpoint may carry.
    ///
    /// # Errors
    /// A missing parameter, a wrongly shaped one, or an unknown name.
    pub fn checked_for(mut self, c: &RefConfig) -> Result<Weights, RefError> {
        let mut map = BTreeMap::new();
        for s in param_specs(c) {
            let t = self
                .map
                .remove(&s.name)
                .ok_or_else(|| RefError::MissingWeight {
                    name: s.name.clone(),
                })?;
            if t.shape != s.shape {
                return Err(RefError::WeightShape {
                    name: s.name,
                    got: t.shape,
                    expected: s.shape,
                });
            }
            map.insert(s.name, t);
        }
        if let Some(name) = self.map.keys().find(|n| !is_alias_or_buffer(c, n)) {
            return Err(RefError::UnexpectedWeight { name: name.clone() });
        }
        Ok(Weights { map })
    }
}
