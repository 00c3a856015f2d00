//! The compiler's error types: one enum per stage, each message one line
//! naming the file, field, node or rule involved.

use thiserror::Error;

/// Errors reading or checking a model description.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ModelError {
    /// The config file is not valid JSON.
    #[error("{source_name}:{line}:{column}: invalid JSON: {message}")]
    Json {
        source_name: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// `model_type` names a family the compiler does not build.
    #[error("{source_name}: unsupported model_type `{model_type}` (supported: gpt2, llama, bert)")]
    UnsupportedModelType {
        source_name: String,
        model_type: String,
    },
    /// A required field is absent.
    #[error("{source_name}: missing field `{field}`")]
    MissingField { source_name: String, field: String },
    /// A field has the wrong JSON type.
    #[error("{source_name}: field `{field}` must be {expected}")]
    FieldType {
        source_name: String,
        field: String,
        expected: String,
    },
    /// A field has a value the compiler does not support.
    #[error("{source_name}: field `{field}` has unsupported value `{value}`")]
    UnsupportedValue {
        source_name: String,
        field: String,
        value: String,
    },
    /// The sizes break a structural rule.
    #[error("model {model}: field `{field}` {rule}")]
    Invalid {
        model: String,
        field: String,
        rule: String,
    },
    /// No preset of that name.
    #[error("unknown model preset `{name}` (known: {known})")]
    UnknownPreset { name: String, known: String },
}

/// Errors in a graph: from the text parser (with line and column) or the
/// verifier (with the node).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IrError {
    /// The text form does not parse.
    #[error("{source_name}:{line}:{column}: {message}")]
    Parse {
        source_name: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A node breaks a typing rule.
    #[error("node %{node} ({op}): {rule}")]
    Verify {
        node: usize,
        op: String,
        rule: String,
    },
}

/// Errors building a training step.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SetupError {
    /// A training-setup value breaks a rule.
    #[error("training setup: `{field}` {rule}")]
    Invalid { field: String, rule: String },
    /// The model description is wrong.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The built graph failed verification: a compiler bug, reported rather than hidden.
    #[error("internal error, the built graph is invalid: {0}")]
    Graph(#[from] IrError),
}

/// Errors lowering a graph to a program.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LowerError {
    /// A kernel cannot be generated for this hardware.
    #[error("kernel `{kernel}`: {rule}")]
    Kernel { kernel: String, rule: String },
    /// The graph needs more HBM than the hardware has.
    #[error("the step needs {needed} bytes of HBM at its peak, the hardware has {capacity}: use a smaller batch, gradient accumulation, or a chip with more HBM")]
    OutOfMemory { needed: u64, capacity: u64 },
    /// The parameters, optimizer states and inputs alone exceed the HBM.
    #[error("the parameters, optimizer states and inputs need {needed} bytes of HBM, the hardware has {capacity}: the model does not fit one chip (`tessera scale` plans many)")]
    ModelTooLarge { needed: u64, capacity: u64 },
    /// An op has no lowering yet.
    #[error("node %{node}: op `{op}` {rule}")]
    Unsupported {
        node: usize,
        op: String,
        rule: String,
    },
    /// Linking kernels broke a program rule (a compiler bug, reported).
    #[error("internal error linking kernels: {0}")]
    Link(String),
}
