//! The one error type of the analytical models (workloads, GPU device model,
//! calibration, scale-out). Messages are lowercase, name the field or row at
//! fault and the rule it breaks.

/// What can go wrong when describing a job, loading device data or fitting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// A workload field breaks a rule (zero sizes, heads not dividing hidden, ...).
    #[error("workload `{name}`: field `{field}` {rule}")]
    Workload {
        name: String,
        field: &'static str,
        rule: String,
    },
    /// A name that is not a built-in preset.
    #[error("unknown {what} `{name}` (known: {known})")]
    Unknown {
        what: &'static str,
        name: String,
        known: String,
    },
    /// A data file (TOML or CSV text) that does not parse or breaks a rule.
    #[error("{file}: {detail}")]
    Data { file: String, detail: String },
    /// A parallel plan that cannot run this job.
    #[error("plan {plan}: {rule}")]
    Plan { plan: String, rule: String },
}
