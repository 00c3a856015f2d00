//! placeholder

pub mod gemm;
