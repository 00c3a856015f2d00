//! Transformer model descriptions: the three supported families (GPT-2,
//! Llama, BERT), read from Hugging Face `config.json` files or taken from
//! built-in presets.
//!
//! Invariants of a [`ModelConfig`] (checked by [`ModelConfig::validate`]):
//! every size is at least 1, `hidden` is a multiple of `heads`, `heads` is a
//! multiple of `kv_heads`, and the head dimension is even for rotary models.

use serde_json::Value;
use std::fmt;

use crate::error::ModelError;

/// The model families the compiler knows how to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// Pre-LN decoder with learned positions and a tied LM head (`gpt2`).
    Gpt2,
    /// Pre-RMSNorm decoder with rotary positions, SwiGLU and grouped-query
    /// attention (`llama`).
    Llama,
    /// Post-LN encoder with a masked-LM head (`bert`).
    Bert,
}

impl Family {
    /// The Hugging Face `model_type` of the family.
    pub fn model_type(self) -> &'static str {
        match self {
            Family::Gpt2 => "gpt2",
            Family::Llama => "llama",
            Family::Bert => "bert",
        }
    }

    /// Whether the family is a causal decoder (causal-LM loss with label
    /// shift) rather than an encoder (masked-LM loss).
    pub fn is_causal(self) -> bool {
        !matches!(self, Family::Bert)
    }
}

/// The MLP nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// GELU, tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// GELU, exact erf form (`gelu`).
    GeluErf,
    /// SiLU in a gated SwiGLU MLP (`silu`).
    Silu,
}

impl Activation {
    /// The name used in the IR text form.
    pub fn name(self) -> &'static str {
        match self {
            Activation::GeluTanh => "gelu_tanh",
            Activation::GeluErf => "gelu_erf",
            Activation::Silu => "silu",
        }
    }
}

/// One Transformer model's shape and conventions.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Display name (preset name or file name).
    pub name: String,
    /// Architecture family.
    pub family: Family,
    /// Vocabulary size.
    pub vocab_size: u64,
    /// Model width (d_model).
    pub hidden: u64,
    /// Number of Transformer blocks.
    pub layers: u64,
    /// Query heads.
    pub heads: u64,
    /// Key/value heads (equal to `heads` unless grouped-query attention).
    pub kv_heads: u64,
    /// Inner size of the MLP (per branch for gated MLPs).
    pub ffn_hidden: u64,
    /// Longest sequence the position table or rotary setup allows.
    pub max_positions: u64,
    /// Epsilon of the layer or RMS norms.
    pub norm_eps: f64,
    /// MLP nonlinearity.
    pub activation: Activation,
    /// Whether the LM head shares the token embedding matrix.
    pub tie_embeddings: bool,
    /// Token-type (segment) vocabulary, BERT only (0 otherwise).
    pub type_vocab_size: u64,
    /// Rotary base, Llama only (0 otherwise).
    pub rope_theta: f64,
}

impl fmt::Display for ModelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}: {} layers, hidden {}, {} heads",
            self.name,
            self.family.model_type(),
            self.layers,
            self.hidden,
            self.heads
        )?;
        if self.kv_heads != self.heads {
            write!(f, " / {} kv heads", self.kv_heads)?;
        }
        write!(
            f,
            ", ffn {}, vocab {}, {:.1}M parameters)",
            self.ffn_hidden,
            self.vocab_size,
            self.parameter_count() as f64 / 1e6
        )
    }
}

impl ModelConfig {
    /// Width of one attention head.
    pub fn head_dim(&self) -> u64 {
        self.hidden / self.heads
    }

    /// Checks the invariants listed in the module documentation.
    ///
    /// # Errors
    /// [`ModelError::Invalid`] naming the first broken rule.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |field: &str, rule: String| {
            Err(ModelError::Invalid {
                model: self.name.clone(),
                field: field.to_string(),
                rule,
            })
        };
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden", self.hidden),
            ("layers", self.layers),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("ffn_hidden", self.ffn_hidden),
            ("max_positions", self.max_positions),
        ] {
            if v == 0 {
                return bad(field, "must be at least 1".into());
            }
            if v > 1 << 24 {
                return bad(field, format!("must be at most {}, got {v}", 1u64 << 24));
            }
        }
        if self.hidden % self.heads != 0 {
            return bad(
                "hidden",
                format!(
                    "{} is not a multiple of the {} heads",
                    self.hidden, self.heads
                ),
            );
        }
        if self.heads % self.kv_heads != 0 {
            return bad(
                "kv_heads",
                format!(
                    "{} heads are not a multiple of {} kv heads",
                    self.heads, self.kv_heads
                ),
            );
        }
        if !(self.norm_eps > 0.0 && self.norm_eps < 1.0) {
            return bad(
                "norm_eps",
                format!("must be in (0, 1), got {}", self.norm_eps),
            );
        }
        match self.family {
            Family::Llama => {
                if self.head_dim() % 2 != 0 {
                    return bad(
                        "hidden",
                        format!(
                            "rotary embeddings need an even head dimension, got {}",
                            self.head_dim()
                        ),
                    );
                }
                if self.rope_theta.is_nan() || self.rope_theta <= 1.0 {
                    return bad(
                        "rope_theta",
                        format!("must be above 1, got {}", self.rope_theta),
                    );
                }
            }
            Family::Bert if self.type_vocab_size == 0 => {
                return bad("type_vocab_size", "must be at least 1".into());
            }
            Family::Gpt2 | Family::Bert => {}
        }
        Ok(())
    }

    /// Trainable parameters, counting tied embeddings once.
    pub fn parameter_count(&self) -> u64 {
        let (h, f, v) = (self.hidden, self.ffn_hidden, self.vocab_size);
        let kv = self.kv_heads * self.head_dim();
        match self.family {
            Family::Gpt2 => {
                let block =
                    2 * 2 * h + (h * 3 * h + 3 * h) + (h * h + h) + (h * f + f) + (f * h + h);
                let lm = if self.tie_embeddings { 0 } else { v * h };
                v * h + self.max_positions * h + self.layers * block + 2 * h + lm
            }
            Family::Llama => {
                let block = 2 * h + h * h + 2 * h * kv + h * h + 3 * h * f;
                let lm = if self.tie_embeddings { 0 } else { v * h };
                v * h + self.layers * block + h + lm
            }
            Family::Bert => {
                let block = 4 * (h * h + h) + 2 * 2 * h + (h * f + f) + (f * h + h);
                let embeddings = (v + self.max_positions + self.type_vocab_size) * h + 2 * h;
                let head = h * h + h + 2 * h + v;
                embeddings + self.layers * block + head
            }
        }
    }

    /// Reads a Hugging Face `config.json`. `source` names the file in errors.
    ///
    /// # Errors
    /// Malformed JSON, an unsupported `model_type`, or a missing or invalid
    /// field, each naming the file and field.
    pub fn from_hf_json(text: &str, source: &str) -> Result<ModelConfig, ModelError> {
        let json: Value = serde_json::from_str(text).map_err(|e| ModelError::Json {
            source_name: source.to_string(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        let fields = HfFields {
            json: &json,
            source,
        };
        let model_type = fields.string("model_type")?;
        let name = source.to_string();
        let config = match model_type.as_str() {
            "gpt2" => {
                let hidden = fields.uint("n_embd")?;
                let activation = match fields.opt_string("activation_function")?.as_deref() {
                    None | Some("gelu_new" | "gelu_pytorch_tanh" | "gelu_fast") => {
                        Activation::GeluTanh
                    }
                    Some("gelu") => Activation::GeluErf,
                    Some(other) => return Err(fields.unsupported("activation_function", other)),
                };
                ModelConfig {
                    name,
                    family: Family::Gpt2,
                    vocab_size: fields.uint("vocab_size")?,
                    hidden,
                    layers: fields.uint("n_layer")?,
                    heads: fields.uint("n_head")?,
                    kv_heads: fields.uint("n_head")?,
                    ffn_hidden: fields.opt_uint("n_inner")?.unwrap_or(4 * hidden),
                    max_positions: fields.uint("n_positions")?,
                    norm_eps: fields.opt_float("layer_norm_epsilon")?.unwrap_or(1e-5),
                    activation,
                    tie_embeddings: fields.opt_bool("tie_word_embeddings")?.unwrap_or(true),
                    type_vocab_size: 0,
                    rope_theta: 0.0,
                }
            }
            "llama" => {
                let heads = fields.uint("num_attention_heads")?;
                match fields.opt_string("hidden_act")?.as_deref() {
                    None | Some("silu") => {}
                    Some(other) => return Err(fields.unsupported("hidden_act", other)),
                }
                ModelConfig {
                    name,
                    family: Family::Llama,
                    vocab_size: fields.uint("vocab_size")?,
                    hidden: fields.uint("hidden_size")?,
                    layers: fields.uint("num_hidden_layers")?,
                    heads,
                    kv_heads: fields.opt_uint("num_key_value_heads")?.unwrap_or(heads),
                    ffn_hidden: fields.uint("intermediate_size")?,
                    max_positions: fields.uint("max_position_embeddings")?,
                    norm_eps: fields.opt_float("rms_norm_eps")?.unwrap_or(1e-6),
                    activation: Activation::Silu,
                    tie_embeddings: fields.opt_bool("tie_word_embeddings")?.unwrap_or(false),
                    type_vocab_size: 0,
                    rope_theta: fields.opt_float("rope_theta")?.unwrap_or(10_000.0),
                }
            }
            "bert" => {
                let activation = match fields.opt_string("hidden_act")?.as_deref() {
                    None | Some("gelu") => Activation::GeluErf,
                    Some("gelu_new" | "gelu_pytorch_tanh") => Activation::GeluTanh,
                    Some(other) => return Err(fields.unsupported("hidden_act", other)),
                };
                let heads = fields.uint("num_attention_heads")?;
                ModelConfig {
                    name,
                    family: Family::Bert,
                    vocab_size: fields.uint("vocab_size")?,
                    hidden: fields.uint("hidden_size")?,
                    layers: fields.uint("num_hidden_layers")?,
                    heads,
                    kv_heads: heads,
                    ffn_hidden: fields.uint("intermediate_size")?,
                    max_positions: fields.uint("max_position_embeddings")?,
                    norm_eps: fields.opt_float("layer_norm_eps")?.unwrap_or(1e-12),
                    activation,
                    tie_embeddings: fields.opt_bool("tie_word_embeddings")?.unwrap_or(true),
                    type_vocab_size: fields.opt_uint("type_vocab_size")?.unwrap_or(2),
                    rope_theta: 0.0,
                }
            }
            other => {
                return Err(ModelError::UnsupportedModelType {
                    source_name: source.to_string(),
                    model_type: other.to_string(),
                })
            }
        };
        if config.family == Family::Bert && !config.tie_embeddings {
            return Err(fields.unsupported("tie_word_embeddings", "false"));
        }
        config.validate()?;
        Ok(config)
    }

    /// A built-in preset by name (see [`PRESETS`]).
    ///
    /// # Errors
    /// [`ModelError::UnknownPreset`] listing the known names.
    pub fn preset(name: &str) -> Result<ModelConfig, ModelError> {
        let (_, family, dims) = PRESETS.iter().find(|(n, _, _)| *n == name).ok_or_else(|| {
            ModelError::UnknownPreset {
                name: name.to_string(),
                known: PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", "),
            }
        })?;
        let [vocab_size, hidden, layers, heads, kv_heads, ffn_hidden, max_positions] = *dims;
        // The family's conventions, as its Hugging Face configs default them.
        let (norm_eps, activation, tie_embeddings, type_vocab_size, rope_theta) = match family {
            Family::Gpt2 => (1e-5, Activation::GeluTanh, true, 0, 0.0),
            Family::Llama => (1e-5, Activation::Silu, false, 0, 10_000.0),
            Family::Bert => (1e-12, Activation::GeluErf, true, 2, 0.0),
        };
        let config = ModelConfig {
            name: name.to_string(),
            family: *family,
            vocab_size,
            hidden,
            layers,
            heads,
            kv_heads,
            ffn_hidden,
            max_positions,
            norm_eps,
            activation,
            tie_embeddings,
            type_vocab_size,
            rope_theta,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Built-in presets: name, family and
/// `[vocab, hidden, layers, heads, kv_heads, ffn_hidden, max_positions]`,
/// from the models' published Hugging Face configs (GPT-3 175B from Brown et
/// al. 2020, Table 2.1, with GPT-2's vocabulary; Llama 2 7B/13B; Llama 2 70B
/// uses 8 kv heads).
pub const PRESETS: &[(&str, Family, [u64; 7])] = &[
    (
        "gpt2-small",
        Family::Gpt2,
        [50257, 768, 12, 12, 12, 3072, 1024],
    ),
    (
        "gpt2-medium",
        Family::Gpt2,
        [50257, 1024, 24, 16, 16, 4096, 1024],
    ),
    (
        "gpt2-large",
        Family::Gpt2,
        [50257, 1280, 36, 20, 20, 5120, 1024],
    ),
    (
        "gpt2-xl",
        Family::Gpt2,
        [50257, 1600, 48, 25, 25, 6400, 1024],
    ),
    (
        "gpt3-175b",
        Family::Gpt2,
        [50257, 12288, 96, 96, 96, 49152, 2048],
    ),
    (
        "bert-base",
        Family::Bert,
        [30522, 768, 12, 12, 12, 3072, 512],
    ),
    (
        "bert-large",
        Family::Bert,
        [30522, 1024, 24, 16, 16, 4096, 512],
    ),
    (
        "llama-7b",
        Family::Llama,
        [32000, 4096, 32, 32, 32, 11008, 4096],
    ),
    (
        "llama-13b",
        Family::Llama,
        [32000, 5120, 40, 40, 40, 13824, 4096],
    ),
    (
        "llama-70b",
        Family::Llama,
        [32000, 8192, 80, 64, 8, 28672, 4096],
    ),
];

/// Typed access to the fields of a Hugging Face config, with errors naming
/// the file and field.
struct HfFields<'a> {
    json: &'a Value,
    source: &'a str,
}

impl HfFields<'_> {
    fn get(&self, field: &str) -> Option<&Value> {
        self.json.get(field).filter(|v| !v.is_null())
    }

    fn missing(&self, field: &str) -> ModelError {
        ModelError::MissingField {
            source_name: self.source.to_string(),
            field: field.to_string(),
        }
    }

    fn wrong(&self, field: &str, want: &str) -> ModelError {
        ModelError::FieldType {
            source_name: self.source.to_string(),
            field: field.to_string(),
            expected: want.to_string(),
        }
    }

    fn unsupported(&self, field: &str, value: &str) -> ModelError {
        ModelError::UnsupportedValue {
            source_name: self.source.to_string(),
            field: field.to_string(),
            value: value.to_string(),
        }
    }

    fn string(&self, field: &str) -> Result<String, ModelError> {
        self.opt_string(field)?.ok_or_else(|| self.missing(field))
    }

    fn opt_string(&self, field: &str) -> Result<Option<String>, ModelError> {
        self.get(field)
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| self.wrong(field, "a string"))
            })
            .transpose()
    }

    fn uint(&self, field: &str) -> Result<u64, ModelError> {
        self.opt_uint(field)?.ok_or_else(|| self.missing(field))
    }

    fn opt_uint(&self, field: &str) -> Result<Option<u64>, ModelError> {
        self.get(field)
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| self.wrong(field, "a non-negative integer"))
            })
            .transpose()
    }

    fn opt_float(&self, field: &str) -> Result<Option<f64>, ModelError> {
        self.get(field)
            .map(|v| v.as_f64().ok_or_else(|| self.wrong(field, "a number")))
            .transpose()
    }

    fn opt_bool(&self, field: &str) -> Result<Option<bool>, ModelError> {
        self.get(field)
            .map(|v| {
                v.as_bool()
                    .ok_or_else(|| self.wrong(field, "true or false"))
            })
            .transpose()
    }
}
