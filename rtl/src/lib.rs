//! The Tessera RTL generator: structural Verilog of the machine an
//! [`tessera_isa::Arch`] describes, built with a small emitter
//! ([`verilog`]) rather than an HDL framework, so each module is written
//! once and instantiated by generate loops.
//!
//! Today it generates the int8 weight-stationary processing element and the
//! R x C array ([`array`]) and self-checking testbenches for one fold
//! ([`testbench`]); the controller, buffers, DMA and vector unit, the bf16
//! processing element and the FPGA flow are still to come.
//!
//! Architecture invariant: this crate imports `tessera-isa` only, never the
//! compiler or the simulator, and does no IO: emitters return `String`.

pub mod array;
pub mod fpga;
pub mod testbench;
pub mod verilog;

/// A design or case the generator cannot build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtlError {
    /// The hardware description asks for something not generated yet, or a
    /// test case does not fit; the message names the field.
    #[error("{0}")]
    Unsupported(String),
}
