//! One program through every back end of the simulator: a token-synchronised
//! tiled GEMM over all four queues must pass the dependency checker, compute
//! the right numbers in functional mode, and keep the timing invariants.

use half::bf16;
use tessera_isa::asm::assemble;
use tessera_isa::check::check;
use tessera_isa::program::MemSpace;
use tessera_isa::{Arch, Program};
use tessera_sim::{run_functional, simulate, timing, Memory};

const A: u64 = 0;
const B: u64 = 0x10_0000;
const C: u64 = 0x20_0000;

/// C (T x N) = A (T x K) * B (K x N), bf16 in, bf16 out, T = the array size,
/// K = `kt` tiles, N = `nt` tiles. B tiles stream through one scratchpad
/// buffer with a load -> matrix token (t0) and a matrix -> load "buffer free"
/// token (t1); finished accumulator tiles go matrix -> vector (t2, cast to
/// bf16) -> store (t3), with store -> vector (t6) and vector -> matrix (t4)
/// returning the buffers.
fn tiled_gemm(arch: &Arch, kt: u64, nt: u64) -> Program {
    let t = u64::from(arch.rows());
    assert_eq!(arch.rows(), arch.cols());
    let (k, n) = (t * kt, t * nt);
    let tile_b = t * 2; // bytes per tile row in bf16
    let src = format!(
        "\
.hbm A, {A}, {a_bytes}
.hbm B, {B}, {b_bytes}
.hbm C, {C}, {c_bytes}
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
    assemble(&src, "tiled_gemm.s", Some(arch)).expect("the test program assembles")
}

fn values(count: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..count)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            bf16::from_f32(((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0).to_f32()
        })
        .collect()
}

#[test]
fn tiled_gemm_checks_computes_and_times() {
    let arch = Arch::preset("fpga-8x8").unwrap();
    let (kt, nt) = (3u64, 4u64);
    let p = tiled_gemm(&arch, kt, nt);
    let (t, k, n) = (8usize, 8 * kt as usize, 8 * nt as usize);

    let report = check(&p);
    assert!(
        report.is_clean(),
        "{:?}",
        report
            .findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );

    // Functional: C must equal the stepwise fp32 reference, rounded to bf16.
    let (a, b) = (values(t * k, 1), values(k * n, 2));
    let mut mem = Memory::new(&p.arch);
    let bytes = |v: &[f32]| {
        v.iter()
            .flat_map(|x| bf16::from_f32(*x).to_le_bytes())
            .collect::<Vec<u8>>()
    };
    mem.write(MemSpace::Hbm, A, &bytes(&a)).unwrap();
    mem.write(MemSpace::Hbm, B, &bytes(&b)).unwrap();
    run_functional(&p, &mut mem, 1 << 24).unwrap();
    let c = mem.read_vec(MemSpace::Hbm, C, t * n * 2).unwrap();
    for i in 0..t {
        for j in 0..n {
            // Each k-tile sums in fp32 from +0 with fused steps, then adds to the accumulator.
            let mut acc = 0f32;
            for ktile in 0..kt as usize {
                let mut s = 0f32;
                for kk in 0..t {
                    let col = ktile * t + kk;
                    s = a[i * k + col].mul_add(b[col * n + j], s);
                }
                acc += s;
            }
            let got = bf16::from_le_bytes([c[2 * (i * n + j)], c[2 * (i * n + j) + 1]]).to_f32();
            assert_eq!(got, bf16::from_f32(acc).to_f32(), "C[{i}][{j}]");
        }
    }

    // Timing: every queue accounts for every cycle, bytes are conserved, runs are deterministic.
    let r = timing::run(&p, 1 << 24, &mut |_| {}).unwrap();
    for e in &r.engines {
        assert_eq!(e.total(), r.cycles);
    }
    let ct = &r.counters;
    assert_eq!(ct.dma_load_source_bytes, ct.dma_load_dest_bytes);
    assert_eq!(ct.dma_store_source_bytes, ct.dma_store_dest_bytes);
    assert_eq!(ct.dma_load_source_bytes, (t * k * 2 + k * n * 2) as u64);
    assert_eq!(ct.dma_store_dest_bytes, (t * n * 2) as u64);
    assert_eq!(ct.macs.iter().sum::<u64>(), (t * k * n) as u64);
    assert_eq!(r, timing::run(&p, 1 << 24, &mut |_| {}).unwrap());
    // Both modes executed the same instruction stream.
    let f = run_functional(&p, &mut Memory::new(&p.arch), 1 << 24).unwrap();
    let executed: Vec<u64> = r.engines.iter().map(|e| e.executed).collect();
    assert_eq!(executed, f.executed.to_vec());

    // The whole job: report and trace are byte-identical across runs.
    let (rep1, trace1) = simulate(&p, true).unwrap();
    let (rep2, trace2) = simulate(&p, true).unwrap();
    assert_eq!(rep1, rep2);
    assert_eq!(trace1, trace2);
    assert!(rep1.energy_joules > 0.0 && rep1.utilization > 0.0 && rep1.utilization <= 1.0);
}

#[test]
fn the_same_program_on_a_larger_core_is_faster() {
    let small = Arch::preset("fpga-8x8").unwrap();
    let mut spec = small.spec().clone();
    spec.name = "fpga-8x8-fast-dram".into();
    spec.hbm.bandwidth_gb_per_s *= 8.0;
    let fast = Arch::new(spec).unwrap();
    let slow_r = timing::run(&tiled_gemm(&small, 2, 2), 1 << 24, &mut |_| {}).unwrap();
    let fast_r = timing::run(&tiled_gemm(&fast, 2, 2), 1 << 24, &mut |_| {}).unwrap();
    assert!(
        fast_r.cycles < slow_r.cycles,
        "{} !< {}",
        fast_r.cycles,
        slow_r.cycles
    );
}
