//! The Tessera instruction set and hardware description: what the machine is.
//!
//! This crate owns the hardware description ([`Arch`]), the instruction table
//! ([`inst`]), binary encoding and the program container ([`Program`]), the
//! assembler and disassembler, queue front-end semantics (loops and address
//! generation, [`exec`]) and the static dependency checker ([`check`]). It
//! depends on no other Tessera crate and does no file, process or environment IO.

pub mod arch;
pub mod asm;
pub mod check;
pub mod disasm;
pub mod doc;
pub mod dtype;
pub mod exec;
pub mod field;
pub mod inst;
mod presets;
pub mod program;
pub mod units;

pub use arch::{Arch, ArchError, ArchSpec, Dataflow, PRESET_NAMES};
pub use dtype::DType;
pub use inst::{Instruction, Op, Queue, INSTRUCTIONS};
pub use program::{Program, Site, Symbol};
pub use units::{Bytes, Cycles, Picojoules};
