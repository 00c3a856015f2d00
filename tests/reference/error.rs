//! The reference's one error type: bad configs, shapes, tokens, weights and
//! safetensors files, each message naming the field or tensor at fault.

/// Everything the reference rejects instead of panicking.
#[derive(Debug, thiserror::Error)]
pub enum RefError {
    #[error("config.json: {0}")]
    Json(String),
    #[error("config field `{field}`: {rule}")]
    Config { field: &'static str, rule: String },
    #[error("weight `{name}` is missing")]
    MissingWeight { name: String },
    #[error("weight `{name}` is not expected for this model")]
    UnexpectedWeight { name: String },
    #[error("weight `{name}` has shape {got:?}, expected {expected:?}")]
    WeightShape {
        name: String,
        got: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("{what}: {rule}")]
    Input { what: &'static str, rule: String },
    #[error("safetensors: {0}")]
    Safetensors(String),
    #[error("safetensors tensor `{name}` has dtype {dtype}, expected F32, F64, F16 or BF16")]
    Dtype { name: String, dtype: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}
