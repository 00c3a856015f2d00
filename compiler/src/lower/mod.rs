//! Lowering: from the graph IR to Tessera programs. Each op (or fused
//! group of ops) becomes a kernel, a complete program over HBM addresses;
//! the [`link::Linker`] joins kernels with barriers into one program.

pub mod attention;
pub mod link;
pub mod rowwise;
pub mod vector_ops;
