//! The generated core's load, matrix and store queues against the
//! simulators: tiled GEMM programs (A and B tiles loaded from HBM with row
//! strides into double-buffered scratchpad tiles, handed over with tokens,
//! results stored from double-buffered accumulator tiles to HBM) run on the
//! functional simulator and on the core under Icarus Verilog; the final
//! accumulator and HBM must be bit-exact (NaN by class), and the core's
//! cycles must equal the timing model's: `lead` = the first `dma.load`'s
//! index + 1 (its start is the last lead cycle) and `run` + 1 = the model's
//! total (`docs/rtl.md`). Mutated cores must fail; Verilator lints the multi-queue core.
//!
//! Tests that need a tool say so and pass when it is missing, unless
//! `TESSERA_REQUIRE_TOOLS=1`.

use std::process::Command;

use proptest::prelude::*;
use tessera::cosim::{run_program_hbm, ProgramRun};
use tessera_isa::asm::assemble;
use tessera_isa::Arch;
use tessera_rtl::core::core_module_name;
use tessera_rtl::pe::{Buffering, PeType};

mod hdl;
use hdl::{core_output, pass_cycles, scratch, tool, verilator_lint, write_files};

/// `rows` x `cols` array, single-buffered weights, 8 KiB scratchpad, 4 KiB
/// accumulator; DMA as `fpga-8x8` (one engine, 64-byte bursts, 2 cycles per
/// burst, 12 cycles latency).
fn arch(rows: u32, cols: u32) -> Arch {
    arch_engines(rows, cols, 1)
}

/// As [`arch`] with `engines` DMA engines.
fn arch_engines(rows: u32, cols: u32, engines: u32) -> Arch {
    arch_dma(rows, cols, 1, engines, (3.2, 120.0))
}

/// As [`arch`] with `stages` per PE, `engines` DMA engines and HBM
/// (bandwidth in GB/s, latency in ns) at 100 MHz.
fn arch_dma(rows: u32, cols: u32, stages: u32, engines: u32, hbm: (f64, f64)) -> Arch {
    buffered_arch_dma(rows, cols, stages, engines, hbm, Buffering::Single)
}

/// As [`arch_dma`] with `buffering` weights.
fn buffered_arch_dma(
    rows: u32,
    cols: u32,
    stages: u32,
    engines: u32,
    (bw, lat): (f64, f64),
    buffering: Buffering,
) -> Arch {
    let mut spec = Arch::preset("fpga-8x8").unwrap().spec().clone();
    spec.name = format!("dma-{rows}x{cols}");
    spec.array.rows = rows;
    spec.array.cols = cols;
    spec.array.pe_pipeline_stages = stages;
    spec.array.double_buffered_weights = buffering == Buffering::Double;
    spec.scratchpad.size_kib = 8;
    spec.scratchpad.banks = 8;
    spec.scratchpad.bank_width_bytes = 32;
    spec.accumulator.size_kib = 4;
    spec.dma.engines = engines;
    spec.hbm.bandwidth_gb_per_s = bw;
    spec.hbm.latency_ns = lat;
    Arch::new(spec).unwrap()
}

/// A tiled GEMM C (m x n, fp32/int32) = A (m x k) B (k x n) of `ty` with
/// tiles of `mt` rows, `kt` = array rows and `nt` = array cols. HBM: A at
/// 0, B at 0x1000, C at 0x2000, all row-major. Tokens: t0 load -> matrix
/// (operand buffer loaded), t1 matrix -> load (operand buffer free), t2
/// matrix -> store (accumulator tile done), t3 store -> matrix
/// (accumulator tile free).
fn gemm_source(
    ty: PeType,
    (m, k, n): (usize, usize, usize),
    (mt, kt, nt): (usize, usize, usize),
) -> String {
    let (t, acc) = match ty {
        PeType::Int8 => ("int8", "int32"),
        PeType::Bf16 => ("bf16", "fp32"),
    };
    let eb = ty.input_bits() as usize / 8;
    let tiles = |x: usize, t: usize| x.div_ceil(t);
    let (tm, tk, tn) = (tiles(m, mt), tiles(k, kt), tiles(n, nt));
    let steps = tm * tn * tk;
    let outs = tm * tn;
    let (mut load, mut mm, mut store) = (String::new(), String::new(), String::new());
    let mut s = 0;
    for i in 0..tm {
        for j in 0..tn {
            let o = i * tn + j;
            let (rm, rn) = ((m - i * mt).min(mt), (n - j * nt).min(nt));
            let acc_at = (o % 2) * 0x400;
            for kk in 0..tk {
                let rk = (k - kk * kt).min(kt);
                let buf = (s % 2) * 0x200;
                let free = if s >= 2 { ", wait=t1" } else { "" };
                load += &format!(
                    "    addr.set r1, {a_h}\n    addr.set r2, {buf}\n    dma.hstride row={ar}, plane=0\n    dma.load dst=spad[r2], src=hbm[r1], rows={rm}, row_bytes={ab}, planes=1, transpose=none{free}\n    addr.set r1, {b_h}\n    addr.set r2, {b_l}\n    dma.hstride row={br}, plane=0\n    dma.load dst=spad[r2], src=hbm[r1], rows={rk}, row_bytes={bb}, planes=1, transpose=none, signal=t0\n",
                    a_h = (i * mt * k + kk * kt) * eb,
                    ar = k * eb,
                    ab = rk * eb,
                    b_h = 0x1000 + (kk * kt * n + j * nt) * eb,
                    b_l = buf + 0x100,
                    br = n * eb,
                    bb = rn * eb,
                );
                let mode = if kk == 0 { "overwrite" } else { "accumulate" };
                let tile_free = if kk == 0 && o >= 2 {
                    ", wait=t0|t3"
                } else {
                    ", wait=t0"
                };
                let mut sig = Vec::new();
                if s + 2 < steps {
                    sig.push("t1");
                }
                if kk + 1 == tk {
                    sig.push("t2");
                }
                let sig = if sig.is_empty() {
                    String::new()
                } else {
                    format!(", signal={}", sig.join("|"))
                };
                mm += &format!(
                    "    addr.set r1, {b_l}\n    addr.set r2, {buf}\n    addr.set r3, {acc_at}\n    mm.preload b=spad[r1]:{t}, k={rk}, n={rn}, transpose=false{tile_free}\n    mm.compute a=spad[r2]:{t}, c=acc[r3]:{acc}, m={rm}, transpose=false, mode={mode}{sig}\n",
                    b_l = buf + 0x100,
                );
                s += 1;
            }
            let rel = if o + 2 < outs { ", signal=t3" } else { "" };
            store += &format!(
                "    addr.set r1, {acc_at}\n    addr.set r2, {c_h}\n    dma.hstride row={cr}, plane=0\n    dma.store dst=hbm[r2], src=acc[r1], rows={rm}, row_bytes={cb}, planes=1, transpose=none, wait=t2{rel}\n",
                c_h = 0x2000 + (i * mt * n + j * nt) * 4,
                cr = n * 4,
                cb = rn * 4,
            );
        }
    }
    format!(
        ".queue load\n{load}    halt\n.queue matrix\n{mm}    halt\n.queue store\n{store}    halt\n"
    )
}

/// Deterministic elements of `ty` as bytes: int8 with -128 and 127; bf16
/// of moderate range with zeros, subnormals, the largest finite value,
/// infinities and NaNs.
fn elements(ty: PeType, count: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::new();
    for i in 0..count {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let x = (s >> 32) as u32;
        match ty {
            PeType::Int8 => out.push(match i % 23 {
                0 => 0x80,
                1 => 0x7f,
                _ => x as u8,
            }),
            PeType::Bf16 => {
                let v: u16 = match i % 37 {
                    0 => 0x0000,
                    1 => 0x0001,
                    2 => 0x7f7f,
                    3 if seed % 3 == 0 => 0xff80,
                    4 if seed % 5 == 0 => 0x7fc1,
                    _ => ((x & 0x8000) | ((120 + (x >> 16) % 16) << 7) | (x & 0x7f)) as u16,
                };
                out.extend(v.to_le_bytes());
            }
        }
    }
    out
}

fn gemm_run(
    arch: &Arch,
    ty: PeType,
    mkn: (usize, usize, usize),
    mt: usize,
    seed: u64,
) -> ProgramRun {
    let src = gemm_source(ty, mkn, (mt, arch.rows() as usize, arch.cols() as usize));
    let p = assemble(&src, "gemm.s", Some(arch)).unwrap_or_else(|e| panic!("{e}\n{src}"));
    let (m, k, n) = mkn;
    let mut hbm = elements(ty, m * k, seed);
    hbm.resize(0x1000, 0);
    hbm.extend(elements(ty, k * n, seed ^ 0x77));
    hbm.resize(0x2000 + 4 * m * n, 0);
    run_program_hbm(p, &hbm, &[], &[]).unwrap_or_else(|e| panic!("{e}\n{src}"))
}

/// The core's verdict on `r`'s files (after `mutate`): `Some((cycles, lead))` on PASS.
fn verdict(
    name: &str,
    r: &ProgramRun,
    mutate: &dyn Fn(String) -> String,
) -> (String, Option<(u64, u64)>) {
    let out = core_output(name, r, mutate);
    let parsed = pass_cycles(&out);
    (out, parsed)
}

/// Checks `r` bit-exact on the core and its cycles against the timing model.
fn check(name: &str, r: &ProgramRun) {
    if !tool("iverilog") {
        return;
    }
    let (out, v) = verdict(name, r, &|t| t);
    let (cycles, lead) = v.unwrap_or_else(|| panic!("{name}: {out}"));
    assert_eq!(lead, first_load(r) + 1, "{name}: lead");
    // The first transfer starts in the last lead cycle; from then to `done`
    // the core takes exactly the model's total.
    assert_eq!(
        cycles + 1,
        r.cycles,
        "{name}: core run cycles + 1 against the model"
    );
}

/// Index of the first `dma.load` in the load queue.
fn first_load(r: &ProgramRun) -> u64 {
    r.program
        .queue(tessera_isa::Queue::Load)
        .iter()
        .position(|i| i.op.mnemonic() == "dma.load")
        .unwrap_or(0) as u64
}

/// Operands loaded once; the matrix unit writes accumulator tile 0, then
/// tile 1, then tile 0 again once the store has released it (t3).
const RELEASE_PROGRAM: &str = "\
.queue load
    addr.set r1, 0
    dma.load dst=spad[r1], src=hbm[r1], rows=1, row_bytes=64, planes=1, transpose=none, signal=t0
    halt
.queue matrix
    addr.set r1, 0
    addr.set r2, 16
    addr.set r3, 32
    addr.set r4, 0
    addr.set r5, 64
    mm.preload b=spad[r1]:int8, k=2, n=2, transpose=false, wait=t0
    mm.compute a=spad[r2]:int8, c=acc[r4]:int32, m=2, transpose=false, mode=overwrite, signal=t2
    mm.compute a=spad[r3]:int8, c=acc[r5]:int32, m=2, transpose=false, mode=overwrite, signal=t2
    mm.compute a=spad[r3+8]:int8, c=acc[r4]:int32, m=2, transpose=false, mode=overwrite, signal=t2, wait=t3
    halt
.queue store
    addr.set r1, 0
    addr.set r2, 64
    addr.set r3, 0x2000
    dma.store dst=hbm[r3], src=acc[r1], rows=2, row_bytes=8, planes=1, transpose=none, wait=t2, signal=t3
    dma.store dst=hbm[r3+16], src=acc[r2], rows=2, row_bytes=8, planes=1, transpose=none, wait=t2
    dma.store dst=hbm[r3+32], src=acc[r1], rows=2, row_bytes=8, planes=1, transpose=none, wait=t2
    halt
";

#[test]
fn mutated_cores_fail() {
    if !tool("iverilog") {
        return;
    }
    let r = gemm_run(&arch(2, 2), PeType::Int8, (6, 4, 6), 3, 9);
    let (out, v) = verdict("unmutated", &r, &|t| t);
    assert!(v.is_some(), "{out}");
    let mutants: [(&str, &str, &str); 3] = [
        (
            "matrix ignores its wait tokens",
            "wire h_valid = q_count != 3'd0 && (q_wait[q_head] & ~tok_pos) == 16'd0;",
            "wire h_valid = q_count != 3'd0;",
        ),
        (
            "load row stride one element long",
            "ld_hr <= ld_hr + ld_hrs_q;",
            "ld_hr <= ld_hr + ld_hrs_q + ES;",
        ),
        (
            "store signals when it starts",
            "assign st_give = st_fin ? st_sig_q : 16'd0;",
            "assign st_give = st_go ? st_sg : 16'd0;",
        ),
    ];
    // The store-signal mutant needs a matrix queue that is ready to overwrite
    // the tile as soon as the store releases it.
    let p = assemble(RELEASE_PROGRAM, "release.s", Some(&arch(2, 2))).unwrap();
    let mut hbm = elements(PeType::Int8, 64, 5);
    hbm.resize(0x2000 + 64, 0);
    let release = run_program_hbm(p, &hbm, &[], &[]).unwrap();
    check("release", &release);
    for (what, from, to) in mutants {
        let r = if what.starts_with("store") {
            &release
        } else {
            &r
        };
        let mutate = |t: String| {
            assert!(t.contains(from), "{what}: pattern not in the core");
            t.replace(from, to)
        };
        let (out, v) = verdict(what, r, &mutate);
        assert!(v.is_none(), "mutant passed: {what}\n{out}");
    }
}

#[test]
fn verilator_lints_the_multi_queue_core_clean() {
    if !tool("verilator") {
        return;
    }
    let dir = scratch("lint");
    // One type a shape, alternating (each lint covers the vector unit's
    // libm datapath too, about 7 s a core).
    for (i, (rows, cols)) in [(2, 2), (4, 4), (3, 5), (2, 3)].into_iter().enumerate() {
        {
            let ty = PeType::ALL[i % PeType::ALL.len()];
            let shape = tessera_rtl::core::CoreShape {
                depths: [16, 8, 4],
                vector_depth: 2,
                hbm_bytes: 12288,
            };
            let files = tessera_rtl::core::core_sources(&arch(rows, cols), ty, shape).unwrap();
            let names = write_files(&dir, &files);
            if let Err(e) = verilator_lint(&dir, &core_module_name(ty), &names) {
                panic!("{ty:?} {rows}x{cols}:\n{e}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Random arrays, pipeline depths, HBM bandwidths (1, 2 or 4 cycles per
    /// burst) and latencies, tiled GEMM shapes, tile heights and data; one
    /// DMA engine (with more, the model overlaps a queue's own transfers and
    /// the core does not).
    #[test]
    fn random_tiled_gemms_match_the_simulator(
        rows in 2u32..=6,
        cols in 2u32..=6,
        stages in 1u32..=3,
        bw in prop::sample::select(vec![6.4, 3.2, 1.6]),
        lat in prop::sample::select(vec![60.0, 120.0]),
        bf16 in any::<bool>(),
        m in 1usize..=10,
        k in 1usize..=10,
        n in 1usize..=10,
        mt in 1usize..=6,
        seed in any::<u64>(),
    ) {
        let ty = if bf16 { PeType::Bf16 } else { PeType::Int8 };
        let r = gemm_run(&arch_dma(rows, cols, stages, 1, (bw, lat)), ty, (m, k, n), mt, seed);
        check("prop", &r);
    }
}

#[test]
fn int8_tiled_gemm_matches_the_simulator() {
    let r = gemm_run(&arch(4, 4), PeType::Int8, (10, 7, 9), 5, 1);
    check("int8", &r);
}

#[test]
fn int8_tiled_gemm_matches_the_simulator_with_double_buffered_weights() {
    for stages in 1..=3 {
        let a = buffered_arch_dma(4, 4, stages, 1, (3.2, 120.0), Buffering::Double);
        let r = gemm_run(&a, PeType::Int8, (10, 7, 9), 5, 1);
        check(&format!("int8-double-p{stages}"), &r);
    }
}

#[test]
fn bf16_tiled_gemm_matches_the_simulator() {
    let r = gemm_run(&arch(3, 5), PeType::Bf16, (6, 7, 8), 4, 15);
    check("bf16", &r);
}

#[test]
fn tessera_rtl_runs_a_dma_program_with_an_hbm_image() {
    if !tool("iverilog") {
        return;
    }
    let dir = scratch("cli");
    let mut spec = arch(2, 2).spec().clone();
    spec.array.input_types = vec![tessera_isa::DType::Int8];
    // The array's fold testbench puts B at 0x4000.
    spec.scratchpad.size_kib = 32;
    let toml = dir.join("hw.toml");
    std::fs::write(&toml, Arch::new(spec).unwrap().to_toml()).unwrap();
    let prog = dir.join("p.s");
    std::fs::write(&prog, RELEASE_PROGRAM).unwrap();
    let hbm = dir.join("hbm.bin");
    std::fs::write(&hbm, elements(PeType::Int8, 64, 5)).unwrap();
    let tessera = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["rtl", "--hw"])
            .arg(&toml)
            .arg("--out")
            .arg(dir.join("out"))
            .args(["--pnr", "skip", "--vector-unit", "skip", "--program"])
            .arg(&prog)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = tessera(&["--hbm", hbm.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/report.json")).unwrap())
            .unwrap();
    let core = &report["cores"][0];
    assert_eq!(core["rtl_simulation"]["status"], "passed", "{core}");
    // An instruction the core refuses (every DMA instruction now runs;
    // result rows that overlap do not): one `error:` line naming it.
    std::fs::write(
        &prog,
        RELEASE_PROGRAM.replace(
            "    mm.preload b=spad[r1]:int8",
            "    mm.stride a=0, b=0, c=4\n    mm.preload b=spad[r1]:int8",
        ),
    )
    .unwrap();
    let out = tessera(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error:") && err.contains("matrix#7 mm.compute: result rows overlap"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
