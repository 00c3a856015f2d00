//! The Tessera simulator: runs `.tsr` programs on the machine an
//! [`tessera_isa::Arch`] describes.
//!
//! - [`numerics`] defines how elements are read, rounded and computed: the
//!   numeric specification the compiler and the RTL are checked against.
//! - [`functional`] executes programs on real values ([`Memory`]).
//! - [`timing`] counts cycles per queue and actions, without values.
//! - [`energy`] prices the actions from `data/energy.toml`.
//! - [`report`] turns a run into a table, JSON and a Perfetto trace.
//! - [`workload`] describes a Transformer training job as operators;
//!   [`gpu`] times it on a GPU (calibrated against published runs);
//!   [`scaleout`] spreads it over many devices.
//!
//! Architecture invariant: this crate imports `tessera-isa` only; it never
//! sees the compiler or the RTL generator, and it does no file IO.

pub mod energy;
pub mod functional;
pub mod gpu;
pub mod memory;
pub mod model_error;
pub mod numerics;
pub mod report;
pub mod scaleout;
pub mod timing;
pub mod units;
pub mod workload;

pub use functional::{run as run_functional, FunctionalStats, SimError};
pub use memory::Memory;
pub use model_error::ModelError;
pub use report::SimReport;
pub use timing::{run as run_timing, EngineCycles, TimingReport};

use tessera_isa::Program;

/// The whole timing job: simulate `p`, price its energy, and optionally
/// build a Perfetto trace. Memory grows with cycles only when a trace is asked for.
///
/// # Errors
/// Whatever [`timing::run`] reports, or a broken built-in energy table.
pub fn simulate(p: &Program, want_trace: bool) -> Result<(SimReport, Option<String>), SimError> {
    let mut events = Vec::new();
    let t = if want_trace {
        timing::run(p, timing::DEFAULT_LIMIT, &mut |e| events.push(e))?
    } else {
        timing::run(p, timing::DEFAULT_LIMIT, &mut |_| {})?
    };
    let model =
        energy::EnergyModel::builtin(&p.arch).map_err(|e| SimError::Invalid(e.to_string()))?;
    let priced = model.price(&t.counters, p.arch.seconds(tessera_isa::Cycles(t.cycles)));
    let report = SimReport::new(&p.arch, &t, &priced);
    let trace = want_trace.then(|| report::chrome_trace(&p.arch, &events));
    Ok((report, trace))
}
