//! `RefConfig`: the few hyper-parameters the reference models need, built
//! directly (tiny presets for tests) or from a Hugging Face `config.json`
//! with the defaults of transformers' `GPT2Config`, `LlamaConfig` and
//! `BertConfig` for fields the file leaves out.

use serde_json::Value;

use super::error::RefError;
use super::ops::Activation;

/// Which architecture a config describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `GPT2LMHeadModel`: pre-LN, learned positions, causal, Conv1D weights.
    Gpt2,
    /// `LlamaForCausalLM`: RMSNorm, rotary, SwiGLU, grouped-query attention.
    Llama,
    /// `BertForMaskedLM`: post-LN encoder with the MLM head.
    Bert,
}

/// A validated model description. Invariants (checked by [`RefConfig::validate`]):
/// every size is positive, `num_heads % num_kv_heads == 0`, GPT-2 and BERT have
/// `hidden_size == num_heads * head_dim`, Llama's `head_dim` is even.
#[derive(Debug, Clone, PartialEq)]
pub struct RefConfig {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    /// Equal to `num_heads` except for grouped-query Llama.
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// GPT-2 `n_inner` (default 4 * n_embd), Llama and BERT `intermediate_size`.
    pub intermediate_size: usize,
    /// Learned position table size (GPT-2, BERT); Llama's
    /// `max_position_embeddings` bounds the sequence length too.
    pub max_positions: usize,
    /// BERT only (token type ids are all 0); 0 elsewhere.
    pub type_vocab_size: usize,
    /// LayerNorm or RMSNorm epsilon.
    pub norm_eps: f64,
    /// Llama rotary base; unused elsewhere.
    pub rope_theta: f64,
    pub activation: Activation,
    /// The output projection is the token embedding (stored once).
    pub tie_word_embeddings: bool,
    /// Standard deviation of the normal initialiser.
    pub initializer_range: f64,
}

impl RefConfig {
    /// A tiny GPT-2: vocab 64, 2 layers, width 16, 2 heads, 16 positions.
    pub fn tiny_gpt2() -> RefConfig {
        RefConfig {
            family: Family::Gpt2,
            vocab_size: 64,
            hidden_size: 16,
            num_layers: 2,
            num_heads: 2,
            num_kv_heads: 2,
            head_dim: 8,
            intermediate_size: 64,
            max_positions: 16,
            type_vocab_size: 0,
            norm_eps: 1e-5,
            rope_theta: 0.0,
            activation: Activation::GeluTanh,
            tie_word_embeddings: true,
            initializer_range: 0.02,
        }
    }

    /// A tiny Llama: vocab 64, 2 layers, width 16, 4 query heads sharing 2
    /// key/value heads, untied head.
    pub fn tiny_llama() -> RefConfig {
        RefConfig {
            family: Family::Llama,
            vocab_size: 64,
            hidden_size: 16,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 4,
            intermediate_size: 32,
            max_positions: 64,
            type_vocab_size: 0,
            norm_eps: 1e-6,
            rope_theta: 10000.0,
            activation: Activation::Silu,
            tie_word_embeddings: false,
            initializer_range: 0.02,
        }
    }

    /// A tiny BERT: vocab 64, 2 layers, width 16, 2 heads, 2 token types.
    pub fn tiny_bert() -> RefConfig {
        RefConfig {
            family: Family::Bert,
            vocab_size: 64,
            hidden_size: 16,
            num_layers: 2,
            num_heads: 2,
            num_kv_heads: 2,
            head_dim: 8,
            intermediate_size: 32,
            max_positions: 16,
            type_vocab_size: 2,
            norm_eps: 1e-12,
            rope_theta: 0.0,
            activation: Activation::GeluErf,
            tie_word_embeddings: true,
            initializer_range: 0.02,
        }
    }

    /// Reads a Hugging Face `config.json` (`model_type` gpt2, llama or bert).
    ///
    /// # Errors
    /// Invalid JSON, an unknown `model_type`, a field of the wrong type, an
    /// unsupported feature (e.g. Llama `rope_scaling`), or a config that
    /// fails [`RefConfig::validate`].
    pub fn from_hf_json(text: &str) -> Result<RefConfig, RefError> {
        let v: Value = serde_json::from_str(text).map_err(|e| RefError::Json(e.to_string()))?;
        let j = Fields(&v);
        let cfg = match j.string("model_type", None)?.as_str() {
            "gpt2" => {
                let hidden = j.usize("n_embd", 768)?;
                let heads = j.usize("n_head", 12)?;
                j.reject_true("scale_attn_by_inverse_layer_idx")?;
                j.reject_true("reorder_and_upcast_attn")?;
                if j.0.get("scale_attn_weights").and_then(Value::as_bool) == Some(false) {
                    return Err(unsupported("scale_attn_weights", "only true is supported"));
                }
                RefConfig {
                    family: Family::Gpt2,
                    vocab_size: j.usize("vocab_size", 50257)?,
                    hidden_size: hidden,
                    num_layers: j.usize("n_layer", 12)?,
                    num_heads: heads,
                    num_kv_heads: heads,
                    head_dim: hidden / heads.max(1),
                    intermediate_size: j.opt_usize("n_inner")?.unwrap_or(4 * hidden),
                    max_positions: j.usize("n_positions", 1024)?,
                    type_vocab_size: 0,
                    norm_eps: j.f64("layer_norm_epsilon", 1e-5)?,
                    rope_theta: 0.0,
                    activation: j.activation("activation_function", "gelu_new")?,
                    tie_word_embeddings: j.bool("tie_word_embeddings", true)?,
                    initializer_range: j.f64("initializer_range", 0.02)?,
                }
            }
            "llama" => {
                let hidden = j.usize("hidden_size", 4096)?;
                let heads = j.usize("num_attention_heads", 32)?;
                j.reject_true("attention_bias")?;
                j.reject_true("mlp_bias")?;
                if j.0.get("rope_scaling").is_some_and(|r| !r.is_null()) {
                    return Err(unsupported("rope_scaling", "only null is supported"));
                }
                if j.usize("pretraining_tp", 1)? != 1 {
                    return Err(unsupported("pretraining_tp", "only 1 is supported"));
                }
                RefConfig {
                    family: Family::Llama,
                    vocab_size: j.usize("vocab_size", 32000)?,
                    hidden_size: hidden,
                    num_layers: j.usize("num_hidden_layers", 32)?,
                    num_heads: heads,
                    num_kv_heads: j.opt_usize("num_key_value_heads")?.unwrap_or(heads),
                    head_dim: j.opt_usize("head_dim")?.unwrap_or(hidden / heads.max(1)),
                    intermediate_size: j.usize("intermediate_size", 11008)?,
                    max_positions: j.usize("max_position_embeddings", 2048)?,
                    type_vocab_size: 0,
                    norm_eps: j.f64("rms_norm_eps", 1e-6)?,
                    rope_theta: j.f64("rope_theta", 10000.0)?,
                    activation: j.activation("hidden_act", "silu")?,
                    tie_word_embeddings: j.bool("tie_word_embeddings", false)?,
                    initializer_range: j.f64("initializer_range", 0.02)?,
                }
            }
            "bert" => {
                let hidden = j.usize("hidden_size", 768)?;
                let heads = j.usize("num_attention_heads", 12)?;
                if j.string("position_embedding_type", Some("absolute"))? != "absolute" {
                    return Err(unsupported(
                        "position_embedding_type",
                        "only \"absolute\" is supported",
                    ));
                }
                RefConfig {
                    family: Family::Bert,
                    vocab_size: j.usize("vocab_size", 30522)?,
                    hidden_size: hidden,
                    num_layers: j.usize("num_hidden_layers", 12)?,
                    num_heads: heads,
                    num_kv_heads: heads,
                    head_dim: hidden / heads.max(1),
                    intermediate_size: j.usize("intermediate_size", 3072)?,
                    max_positions: j.usize("max_position_embeddings", 512)?,
                    type_vocab_size: j.usize("type_vocab_size", 2)?,
                    norm_eps: j.f64("layer_norm_eps", 1e-12)?,
                    rope_theta: 0.0,
                    activation: j.activation("hidden_act", "gelu")?,
                    tie_word_embeddings: j.bool("tie_word_embeddings", true)?,
                    initializer_range: j.f64("initializer_range", 0.02)?,
                }
            }
            other => {
                return Err(RefError::Config {
                    field: "model_type",
                    rule: format!("{other:?} is not gpt2, llama or bert"),
                })
            }
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the invariants listed on the type.
    ///
    /// # Errors
    /// The first broken rule, naming the field.
    pub fn validate(&self) -> Result<(), RefError> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("intermediate_size", self.intermediate_size),
            ("max_positions", self.max_positions),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(RefError::Config {
                    field,
                    rule: "must be positive".into(),
                });
            }
        }
        if self.num_heads % self.num_kv_heads != 0 {
            return Err(RefError::Config {
                field: "num_kv_heads",
                rule: format!(
                    "{} does not divide num_heads {}",
                    self.num_kv_heads, self.num_heads
                ),
            });
        }
        match self.family {
            Family::Gpt2 | Family::Bert => {
                if self.num_heads * self.head_dim != self.hidden_size
                    || self.num_kv_heads != self.num_heads
                {
                    return Err(RefError::Config {
                        field: "num_heads",
                        rule: format!(
                            "{} heads do not divide hidden size {} evenly",
                            self.num_heads, self.hidden_size
                        ),
                    });
                }
            }
            Family::Llama => {
                if self.head_dim % 2 != 0 {
                    return Err(RefError::Config {
                        field: "head_dim",
                        rule: format!("{} must be even for rotary embeddings", self.head_dim),
                    });
                }
                if self.rope_theta.is_nan() || self.rope_theta <= 0.0 {
                    return Err(RefError::Config {
                        field: "rope_theta",
                        rule: "must be positive".into(),
                    });
                }
            }
        }
        if self.family == Family::Bert && self.type_vocab_size == 0 {
            return Err(RefError::Config {
                field: "type_vocab_size",
                rule: "must be positive".into(),
            });
        }
        if self.norm_eps.is_nan() || self.norm_eps <= 0.0 {
            return Err(RefError::Config {
                field: "norm_eps",
                rule: "must be positive".into(),
            });
        }
        Ok(())
    }
}

fn unsupported(field: &'static str, rule: &str) -> RefError {
    RefError::Config {
        field,
        rule: rule.into(),
    }
}

/// Typed access to the fields of a config object, with defaults.
struct Fields<'a>(&'a Value);

impl Fields<'_> {
    fn opt_usize(&self, field: &'static str) -> Result<Option<usize>, RefError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or(RefError::Config {
                    field,
                    rule: format!("{v} is not a non-negative integer"),
                }),
        }
    }

    fn usize(&self, field: &'static str, default: usize) -> Result<usize, RefError> {
        Ok(self.opt_usize(field)?.unwrap_or(default))
    }

    fn f64(&self, field: &'static str, default: f64) -> Result<f64, RefError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_f64().ok_or(RefError::Config {
                field,
                rule: format!("{v} is not a number"),
            }),
        }
    }

    fn bool(&self, field: &'static str, default: bool) -> Result<bool, RefError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_bool().ok_or(RefError::Config {
                field,
                rule: format!("{v} is not a boolean"),
            }),
        }
    }

    fn reject_true(&self, field: &'static str) -> Result<(), RefError> {
        if self.bool(field, false)? {
            return Err(unsupported(field, "only false is supported"));
        }
        Ok(())
    }

    fn string(&self, field: &'static str, default: Option<&str>) -> Result<String, RefError> {
        match (self.0.get(field), default) {
            (Some(Value::String(s)), _) => Ok(s.clone()),
            (None | Some(Value::Null), Some(d)) => Ok(d.to_string()),
            (None | Some(Value::Null), None) => Err(RefError::Config {
                field,
                rule: "is required".into(),
            }),
            (Some(v), _) => Err(RefError::Config {
                field,
                rule: format!("{v} is not a string"),
            }),
        }
    }

    fn activation(&self, field: &'static str, default: &str) -> Result<Activation, RefError> {
        let name = self.string(field, Some(default))?;
        Activation::from_hf(&name).ok_or(RefError::Config {
            field,
            rule: format!("{name:?} is not gelu_new, gelu_pytorch_tanh, gelu, silu or swish"),
        })
    }
}
