//! A token-synchronised tiled GEMM over all four queues, shared by the
//! simulator tests (`both_modes.rs`) and the timing benchmark, which include
//! this file as a module.

use tessera_isa::asm::assemble;
use tessera_isa::{Arch, Program};

/// The program and where its operands live in HBM.
#[derive(Debug)]
pub struct TiledGemm {
    pub program: Program,
    /// HBM address of A (T x K bf16).
    pub a: u64,
    /// HBM address of B (K x N bf16).
    pub b: u64,
    /// HBM address of C (T x N bf16).
    pub c: u64,
}

/// C (T x N) = A (T x K) * B (K x N), bf16 in, bf16 out, T = the array size,
/// K = `kt` tiles, N = `nt` tiles. B tiles stream through one scratchpad
/// buffer with a load -> matrix token (t0) and a matrix -> load "buffer free"
/// token (t1); finished accumulator tiles go matrix -> vector (t2, cast to
/// bf16) -> store (t3), with store -> vector (t6) and vector -> matrix (t4)
/// returning the buffers.
pub fn tiled_gemm(arch: &Arch, kt: u64, nt: u64) -> TiledGemm {
    let t = u64::from(arch.rows());
    assert_eq!(arch.rows(), arch.cols());
    let (k, n) = (t * kt, t * nt);
    let tile_b = t * 2; // bytes per tile row in bf16
                        // A at 0, then B and C, each starting on a MiB boundary.
    let mib = |x: u64| x.div_ceil(1 << 20) << 20;
    let (a, b) = (0, mib(t * k * 2));
    let c = b + mib(k * n * 2);
    let src = format!(
        "\
.hbm A, {a}, {a_bytes}
.hbm B, {b}, {b_bytes}
.hbm C, {c}, {c_bytes}
.queue load
    dma.hstride row={a_row}, plane=0
    addr.set r1, A
    dma.load dst=spad[r0], src=hbm[r1], rows={t}, row_bytes={a_row}, planes=1, transpose=none, signal=t5
    dma.hstride row={b_row}, plane=0
    addr.set r1, B
    addr.step r1, 0, {tile_b}
    addr.step r1, 1, {b_ktile}
    addr.set r2, {bbuf}
    loop {nt}, l_end
    loop {kt}, l_end
    dma.load dst=spad[r2], src=hbm[r1], rows={t}, row_bytes={tile_b}, planes=1, transpose=none, wait=t1, signal=t0
l_end:
    nop wait=t1
    halt
.queue matrix
    mm.stride a={a_row}, b=0, c=0
    nop signal=t1, wait=t5
    addr.set r1, 0
    addr.step r1, 1, {tile_b}
    addr.set r2, {bbuf}
    loop {nt}, m_end
    nop wait=t4
    addr.set r3, 0
    loop {kt}, m_inner
    mm.preload b=spad[r2]:bf16, k={t}, n={t}, transpose=false, wait=t0
    mm.compute a=spad[r1]:bf16, c=acc[r0]:fp32, m={t}, transpose=false, mode=accumulate, signal=t1
m_inner:
    nop signal=t2
m_end:
    nop wait=t4
    halt
.queue vector
    v.shape rows={t}, cols={t}
    v.fset f0, 0.0
    addr.set r1, {cbuf}
    nop signal=t4
    loop {nt}, v_end
    v.un op=copy, dst=spad[r1]:bf16, a=acc[r0]:fp32, wait=t2|t6, signal=t3
    v.bin op=mul, dst=acc[r0]:fp32, a=acc[r0]:fp32, b=f0, signal=t4
v_end:
    nop wait=t6
    halt
.queue store
    dma.hstride row={c_row}, plane=0
    addr.set r1, C
    addr.step r1, 0, {tile_b}
    addr.set r2, {cbuf}
    nop signal=t6
    loop {nt}, s_end
    dma.store dst=hbm[r1], src=spad[r2], rows={t}, row_bytes={tile_b}, planes=1, transpose=none, wait=t3, signal=t6
s_end:
    halt
",
        a_bytes = t * k * 2,
        b_bytes = k * n * 2,
        c_bytes = t * n * 2,
        a_row = k * 2,
        b_row = n * 2,
        b_ktile = t * n * 2,
        c_row = n * 2,
        bbuf = t * k * 2,
        cbuf = t * k * 2 + t * t * 2,
    );
    let program = assemble(&src, "tiled_gemm.s", Some(arch)).expect("the tiled GEMM assembles");
    TiledGemm { program, a, b, c }
}
