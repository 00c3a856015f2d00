//! The Tessera RTL generator: structural Verilog of the machine an
//! [`tessera_isa::Arch`] describes, built with a small emitter
//! ([`verilog`]) rather than an HDL framework, so each module is written
//! once and instantiated by generate loops.
//!
//! Today it generates pipelined int8 and bf16 weight-stationary processing
//! elements ([`pe`], [`pe_int8`], [`pe_bf16`], staged by [`pipeline`]), the
//! R x C array ([`array`], single- or double-buffered weights), the
//! output-stationary array ([`array_os`]), self-checking testbenches for one
//! fold ([`testbench`], [`testbench_os`]) and for fold sequences on the
//! timing model's schedule ([`sequence_tb`]), the core that runs a program's load, matrix and
//! store queues with dependency tokens, HBM and DMA ([`core`], [`frontend`], [`dma`],
//! and for an output-stationary array the matrix engine of [`core_os`],
//! [`fp32_add`], [`core_tb`]), the FPGA flow's scripts and report parsers ([`fpga`]), and the
//! vector unit's datapath: the lane ([`vec_lane`]), the special-function lane
//! ([`vec_special`]), the reduction lane ([`vec_reduce`]), element
//! conversions ([`vec_convert`]) and their testbench ([`vec_tb`]), for the
//! operations [`vec_op`] lists; the core's vector sequencer is still to come.
//!
//! Architecture invariant: this crate imports `tessera-isa` only, never the
//! compiler or the simulator, and does no IO: emitters return `String`.

pub mod arith;
pub mod array;
pub mod array_os;
pub mod core;
pub mod core_os;
pub mod core_tb;
mod core_weights;
pub mod dma;
pub mod dsp_model;
pub mod fp32_add;
pub mod fp32_cmp;
pub mod fp32_divsqrt;
pub mod fp32_graph;
pub mod fp32_mul;
pub mod fp_bits;
pub mod fpga;
pub mod frontend;
pub mod libm_graphs;
pub mod pe;
pub mod pe_bf16;
pub mod pe_int8;
pub mod pipeline;
pub mod sequence_tb;
pub mod testbench;
pub mod testbench_os;
pub mod vec_convert;
pub mod vec_engine;
pub mod vec_lane;
pub mod vec_op;
pub mod vec_reduce;
pub mod vec_special;
pub mod vec_tb;
pub mod vec_unit;
pub mod verilog;

/// A design or case the generator cannot build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtlError {
    /// The hardware description asks for something not generated yet, or a
    /// test case does not fit; the message names the field.
    #[error("{0}")]
    Unsupported(String),
}
