//! Timing-mode speed: simulated instructions and cycles per host second on
//! a large tiled GEMM that uses all four queues, and the three BERT-base
//! GEMMs SCALE-Sim 3.0 needs about 8 minutes for (data/scalesim).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
// Shared with sim/tests/both_modes.rs; the benchmark needs only the program,
// not the operand addresses the test checks.
#[allow(dead_code)]
#[path = "../tests/common/tiled_gemm.rs"]
mod tiled_gemm;

use tessera_isa::asm::assemble;
use tessera_isa::{Arch, Dataflow, Program};

fn executed(p: &Program) -> u64 {
    let r = tessera_sim::timing::run(p, u64::MAX, &mut |_| {}).expect("runs");
    r.engines.iter().map(|e| e.executed).sum()
}

fn bench(c: &mut Criterion) {
    // 16 x 20000 tiles: about a million executed instructions.
    let p = tiled_gemm::tiled_gemm(&Arch::preset("default").unwrap(), 16, 20_000).program;
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
