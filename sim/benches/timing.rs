//! Timing-mode speed: simulated instructions and cycles per host second on
//! a large tiled GEMM that uses all four queues, and the three BERT-base
//! GEMMs SCALE-Sim 3.0 needs about 8 minutes for (data/scalesim).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tessera_isa::asm::assemble;
use tessera_isa::{Arch, Dataflow, Program};

/// C (128 x N) = A (128 x K) * B (K x N) in bf16 on the default 128x128 core:
/// A stays in the scratchpad; each 128x128 tile of B is loaded, preloaded and
/// multiplied; each finished fp32 column block of C is cast to bf16 by the
/// vector unit and stored. Every producer/consumer edge carries a token.
fn tiled_gemm(k_tiles: u64, n_tiles: u64) -> Program {
    let (k, n) = (128 * k_tiles, 128 * n_tiles);
    let src = format!(
        "\
.arch default
.hbm A, 0, {a_bytes}
.hbm B, {b_base}, {b_bytes}
.hbm C, {c_base}, {c_bytes}
.queue load
    dma.hstride row={a_row}, plane=0
    addr.set r1, A
    dma.load dst=spad[r0], src=hbm[r1], rows=128, row_bytes={a_row}, planes=1, transpose=none, signal=t5
    dma.hstride row={b_row}, plane=0
    addr.set r1, B
    addr.step r1, 0, 256
    addr.step r1, 1, {b_ktile}
    addr.set r2, 0x200000
    loop {n_tiles}, l_end
    loop {k_tiles}, l_end
    dma.load dst=spad[r2], src=hbm[r1], rows=128, row_bytes=256, planes=1, transpose=none, wait=t1, signal=t0
l_end:
    nop wait=t1
    halt
.queue matrix
    mm.stride a={a_row}, b=0, c=0
    nop signal=t1, wait=t5
    addr.set r1, 0
    addr.step r1, 1, 256
    addr.set r2, 0x200000
    loop {n_tiles}, m_end
    nop wait=t4
    loop {k_tiles}, m_inner
    mm.preload b=spad[r2]:bf16, k=128, n=128, transpose=false, wait=t0
    mm.compute a=spad[r1]:bf16, c=acc[r0]:fp32, m=128, transpose=false, mode=accumulate, signal=t1
m_inner:
    nop signal=t2
m_end:
    nop wait=t4
    halt
.queue vector
    v.shape rows=128, cols=128
    v.fset f0, 0.0
    addr.set r1, 0x400000
    nop signal=t4
    loop {n_tiles}, v_end
    v.un op=copy, dst=spad[r1]:bf16, a=acc[r0]:fp32, wait=t2|t6, signal=t3
    v.bin op=mul, dst=acc[r0]:fp32, a=acc[r0]:fp32, b=f0, signal=t4
v_end:
    nop wait=t6
    halt
.queue store
    dma.hstride row={c_row}, plane=0
    addr.set r1, C
    addr.step r1, 0, 256
    addr.set r2, 0x400000
    nop signal=t6
    loop {n_tiles}, s_end
    dma.store dst=hbm[r1], src=spad[r2], rows=128, row_bytes=256, planes=1, transpose=none, wait=t3, signal=t6
s_end:
    halt
",
        a_bytes = 128 * k * 2,
        b_base = 1u64 << 24,
        b_bytes = k * n * 2,
        c_base = (1u64 << 24) + k * n * 2,
        c_bytes = 128 * n * 2,
        a_row = k * 2,
        b_row = n * 2,
        b_ktile = 128 * n * 2,
        c_row = n * 2,
    );
    assemble(&src, "bench.s", None).expect("benchmark program assembles")
}

fn executed(p: &Program) -> u64 {
    let r = tessera_sim::timing::run(p, u64::MAX, &mut |_| {}).expect("runs");
    r.engines.iter().map(|e| e.executed).sum()
}

fn bench(c: &mut Criterion) {
    // 16 x 20000 tiles: about a million executed instructions.
    let p = tiled_gemm(16, 20_000);
    let n = executed(&p);
    let cycles = tessera_sim::timing::run(&p, u64::MAX, &mut |_| {})
        .expect("runs")
        .cycles;
    println!("tiled_gemm: {n} executed instructions, {cycles} simulated cycles per run");
    let mut g = c.benchmark_group("timing");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n));
    g.bench_function("tiled_gemm_1M_instructions", |b| {
        b.iter(|| tessera_sim::timing::run(&p, u64::MAX, &mut |_| {}).expect("runs"))
    });
    g.finish();

    let mut spec = Arch::preset("default").unwrap().spec().clone();
    spec.name = "scalesim-ws32".into();
    spec.array.rows = 32;
    spec.array.cols = 32;
    spec.array.dataflow = Dataflow::WeightStationary;
    spec.array.double_buffered_weights = false;
    let arch = Arch::new(spec).unwrap();
    let mut src = String::from(".queue matrix\n");
    for (m, k, nn) in [(512u64, 768u64, 768u64), (512, 768, 3072), (512, 3072, 768)] {
        src += &format!("    loop {}, e{k}_{nn}\n    mm.preload b=spad[r0]:bf16, k=32, n=32, transpose=false\n    mm.compute a=spad[r0]:bf16, c=acc[r0]:fp32, m={m}, transpose=false, mode=accumulate\ne{k}_{nn}:\n", (k / 32) * (nn / 32));
    }
    src += "    halt\n";
    let bert = assemble(&src, "bert.s", Some(&arch)).unwrap();
    c.bench_function("scalesim_bert_base_gemms_ws32", |b| {
        b.iter_batched(
            || (),
            |_| tessera_sim::timing::run(&bert, u64::MAX, &mut |_| {}).expect("runs"),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
