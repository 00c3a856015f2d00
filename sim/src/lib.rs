//! The Tessera simulator: runs `.tsr` programs on the machine an
//! [`tessera_isa::Arch`] describes.
//!
//! [`numerics`] defines how elements are read, rounded and computed; it is the
//! numeric specification the compiler and the RTL are checked against.

pub mod functional;
pub mod memory;
pub mod numerics;

pub use functional::{run as run_functional, FunctionalStats, SimError};
pub use memory::Memory;
pub mod timing;

pub use timing::{run as run_timing, EngineCycles, TimingReport};
