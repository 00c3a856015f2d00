//! One program through every back end of the simulator: a token-synchronised
//! tiled GEMM over all four queues must pass the dependency checker, compute
//! the right numbers in functional mode, and keep the timing invariants.

use half::bf16;
use tessera_isa::check::check;
use tessera_isa::program::MemSpace;
use tessera_isa::Arch;
use tessera_sim::{run_functional, simulate, timing, Memory};

#[path = "common/tiled_gemm.rs"]
mod tiled_gemm;

use tiled_gemm::tiled_gemm;

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
    let g = tiled_gemm(&arch, kt, nt);
    let p = g.program;
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
    mem.write(MemSpace::Hbm, g.a, &bytes(&a)).unwrap();
    mem.write(MemSpace::Hbm, g.b, &bytes(&b)).unwrap();
    run_functional(&p, &mut mem, 1 << 24).unwrap();
    let c = mem.read_vec(MemSpace::Hbm, g.c, t * n * 2).unwrap();
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
    let slow_r = timing::run(&tiled_gemm(&small, 2, 2).program, 1 << 24, &mut |_| {}).unwrap();
    let fast_r = timing::run(&tiled_gemm(&fast, 2, 2).program, 1 << 24, &mut |_| {}).unwrap();
    assert!(
        fast_r.cycles < slow_r.cycles,
        "{} !< {}",
        fast_r.cycles,
        slow_r.cycles
    );
}
