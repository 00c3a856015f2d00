//! placeholder

pub mod gemm;
pub mod scalesim;
