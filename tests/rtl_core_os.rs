//! The core with the output-stationary matrix engine against the
//! simulator: matrix-queue programs (several computes, overwrite then
//! accumulate, transposed A and B, m < R, n < C, k up to 3R) int8 and bf16
//! with special values, and a tiled GEMM with the load and store queues,
//! run on the functional simulator and on the core under Icarus Verilog.
//! The accumulator (and HBM) must be bit-exact (NaN by class) and the
//! verdict exactly `ProgramRun::expected_verdict`: matrix-only the run is
//! the model's cycles plus one and lead the first compute's index plus
//! two; with DMA the run is the model's minus one and lead the first
//! load's index plus one (`docs/rtl.md`). Mutated cores must fail, Verilator lints
//! the core (`-Wall`, no waivers), and the generator refuses a
//! double-buffered output-stationary description by name.
//!
//! Tests that need a tool say so and pass when it is missing, unless
//! `TESSERA_REQUIRE_TOOLS=1` (set by `scripts/test.sh`, hence by CI).

use tessera::cosim::{run_program, run_program_hbm, ProgramRun};
use tessera_isa::asm::assemble;
use tessera_isa::{Arch, Dataflow};
use tessera_rtl::core::{core_module_name, core_program, core_sources, CoreShape};
use tessera_rtl::pe::PeType;

mod hdl;
use hdl::{core_output, scratch, tool, verilator_lint, write_files};

/// An output-stationary `rows` x `cols` array with `stages` per PE, 8 KiB
/// of scratchpad in 8 banks of 32 bytes, 4 KiB of accumulator, DMA as
/// `fpga-8x8` (one engine, 64-byte bursts, 12 cycles latency).
fn arch(rows: u32, cols: u32, stages: u32) -> Arch {
    let mut spec = Arch::preset("fpga-8x8").unwrap().spec().clone();
    spec.name = format!("os-core-{rows}x{cols}-p{stages}");
    spec.array.dataflow = Dataflow::OutputStationary;
    spec.array.rows = rows;
    spec.array.cols = cols;
    spec.array.pe_pipeline_stages = stages;
    spec.scratchpad.size_kib = 8;
    spec.scratchpad.banks = 8;
    spec.scratchpad.bank_width_bytes = 32;
    spec.accumulator.size_kib = 4;
    Arch::new(spec).unwrap()
}

/// Deterministic elements of `ty` (raw bits): int8 with -128 and 127
/// weighted; bf16 of moderate range (sums cancel and round) with zeros,
/// infinities, NaNs, subnormals and the extremes mixed in.
fn elements(ty: PeType, n: usize, seed: u64) -> Vec<u16> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    (0..n)
        .map(|_| {
            let x = next();
            match ty {
                PeType::Int8 => match x % 8 {
                    0 => 0x80,
                    1 => 0x7f,
                    _ => (x >> 8) as u8 as u16,
                },
                PeType::Bf16 => match x % 24 {
                    0 => [
                        0x0000, 0x8000, 0x7f80, 0xff80, 0x7fc0, 0x0001, 0x7f7f, 0x8080,
                    ][(x >> 8) as usize % 8],
                    _ => {
                        ((x >> 8) & 0x8000 | ((120 + (x >> 20) % 16) << 7) | (x >> 40) & 0x7f)
                            as u16
                    }
                },
            }
        })
        .collect()
}

/// `n` elements of `ty` as little-endian bytes.
fn bytes(ty: PeType, n: usize, seed: u64) -> Vec<u8> {
    let eb = ty.input_bits() as usize / 8;
    elements(ty, n, seed)
        .iter()
        .flat_map(|x| x.to_le_bytes().into_iter().take(eb))
        .collect()
}

/// Initial accumulator words: int32 bits, or fp32 values of every class.
fn acc_bytes(ty: PeType, seed: u64) -> Vec<u8> {
    let hi = elements(PeType::Bf16, 1024, seed ^ 0x5555);
    let lo = elements(PeType::Int8, 1024, seed ^ 0xaaaa);
    hi.iter()
        .zip(&lo)
        .enumerate()
        .flat_map(|(i, (h, l))| {
            let w = match (ty, i % 5) {
                (PeType::Bf16, 0) => u32::from(*h) << 16 | u32::from(*l) << 3,
                (PeType::Bf16, _) => u32::from(*h) << 16,
                (PeType::Int8, _) => u32::from(*h) << 16 | u32::from(*l) << 8 | u32::from(*l),
            };
            w.to_le_bytes()
        })
        .collect()
}

/// A matrix-queue program of `ty` on an R x C array: three folds whose
/// k is 3R, R + 1 and 1, full and partial m and n, packed and strided,
/// plain and transposed operands, a loop, overwrite then accumulate into
/// the same C, and a preload whose B the next computes reuse.
fn matrix_program(ty: PeType, r: u32, c: u32) -> String {
    let (t, acc) = match ty {
        PeType::Int8 => ("int8", "int32"),
        PeType::Bf16 => ("bf16", "fp32"),
    };
    let eb = ty.input_bits() / 8;
    let (k1, k2) = (3 * r, r + 1);
    let (m2, n2) = (r - 1, c - 1);
    format!(
        "\
.queue matrix
    addr.set r1, 0x1000
    addr.set r2, 0x0
    addr.set r3, 0x0
    addr.step r2, 0, {a_step}
    prof.begin body
    mm.preload b=spad[r1]:{t}, k={k1}, n={c}, transpose=false
    mm.compute a=spad[r2]:{t}, c=acc[r3]:{acc}, m={r}, transpose=false, mode=overwrite
    loop 2, l_end
    mm.compute a=spad[r2+0x200]:{t}, c=acc[r3]:{acc}, m={r}, transpose=false, mode=accumulate
l_end:
    mm.stride a=0, b={b_str}, c=128
    mm.preload b=spad[r1+0x400]:{t}, k={k2}, n={n2}, transpose=true
    mm.compute a=spad[r2+0x300]:{t}, c=acc[r3+0x200]:{acc}, m={m2}, transpose=true, mode=overwrite
    mm.compute a=spad[r2+0x400]:{t}, c=acc[r3+0x200]:{acc}, m={r}, transpose=false, mode=accumulate
    mm.stride a={a_str}, b=0, c=0
    mm.preload b=spad[r1+0x600]:{t}, k=1, n={n2}, transpose=false
    mm.compute a=spad[r2+0x500]:{t}, c=acc[r3+0x400]:{acc}, m={m2}, transpose=true, mode=accumulate
    prof.end body
    halt
",
        a_step = 3 * r * c * eb,
        b_str = (k2 + 3) * eb,
        a_str = (r + 2) * eb,
    )
}

fn run(arch: &Arch, ty: PeType, src: &str, seed: u64) -> ProgramRun {
    let p = assemble(src, "os.s", Some(arch)).unwrap_or_else(|e| panic!("{e}\n{src}"));
    // The whole 8 KiB scratchpad.
    let spad = bytes(ty, 8192 / (ty.input_bits() as usize / 8), seed);
    run_program(p, &spad, &acc_bytes(ty, seed)).unwrap_or_else(|e| panic!("{e}\n{src}"))
}

/// The core's verdict line on `r`'s files, with `mutate` applied to the
/// core module (identity for a real run).
fn verdict(name: &str, r: &ProgramRun, mutate: &dyn Fn(String) -> String) -> String {
    core_output(name, r, mutate).trim().to_string()
}

/// Checks `r` bit-exact and cycle-exact on the core under Icarus Verilog.
fn check(name: &str, r: &ProgramRun) {
    if !tool("iverilog") {
        return;
    }
    let got = verdict(name, r, &|t| t);
    eprintln!("{name}: {got} (timing model {} cycles)", r.cycles);
    if let Err(e) = r.verdict_matches(&got) {
        panic!("{name}: {e}");
    }
    assert_eq!(got, r.expected_verdict(), "{name}");
}

#[test]
fn matrix_programs_match_the_simulator_bit_and_cycle_exact() {
    for (ty, (rows, cols, p)) in [
        (PeType::Int8, (4, 4, 1)),
        (PeType::Int8, (3, 5, 2)),
        (PeType::Bf16, (4, 3, 2)),
        (PeType::Bf16, (2, 2, 3)),
    ] {
        let a = arch(rows, cols, p);
        let r = run(
            &a,
            ty,
            &matrix_program(ty, rows, cols),
            u64::from(rows * 7 + p),
        );
        // Matrix-only: run = model + 1 (the last accumulator write), lead =
        // the sequencer instructions before the first compute + 2.
        assert_eq!(
            r.expected_verdict(),
            format!("PASS cycles={} lead={}", r.cycles + 1, r.first_engine + 2)
        );
        check(&format!("{}-{rows}x{cols}-p{p}", ty.name()), &r);
    }
}

#[test]
fn the_builtin_program_runs_on_the_os_core() {
    for ty in PeType::ALL {
        let r = tessera::cosim::builtin_program(&arch(3, 4, 2), ty).unwrap();
        check(&format!("builtin-{}", ty.name()), &r);
    }
}

/// A tiled GEMM C (m x n) = A (m x k) B (k x n) of `ty` on an
/// output-stationary core: tiles of `mt` <= R rows, `kt` reduction steps
/// (any length: it is streamed) and `nt` <= C columns. HBM: A at 0, B at
/// 0x1000, C at 0x2000, row-major. Tokens: t0 load -> matrix (operands
/// loaded), t1 matrix -> load (operand buffer free), t2 matrix -> store (C
/// tile done), t3 store -> matrix (C tile free). The matrix queue's waits
/// are on its computes: its preloads take no time and only bind B.
fn gemm_source(
    ty: PeType,
    (m, k, n): (usize, usize, usize),
    (mt, kt, nt): (usize, usize, usize),
    waits_on: WaitsOn,
) -> String {
    let (t, acc) = match ty {
        PeType::Int8 => ("int8", "int32"),
        PeType::Bf16 => ("bf16", "fp32"),
    };
    let eb = ty.input_bits() as usize / 8;
    let (tm, tk, tn) = (m.div_ceil(mt), k.div_ceil(kt), n.div_ceil(nt));
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
                let buf = (s % 2) * 0x400;
                let free = if s >= 2 { ", wait=t1" } else { "" };
                load += &format!(
                    "    addr.set r1, {a_h}\n    addr.set r2, {buf}\n    dma.hstride row={ar}, plane=0\n    dma.load dst=spad[r2], src=hbm[r1], rows={rm}, row_bytes={ab}, planes=1, transpose=none{free}\n    addr.set r1, {b_h}\n    addr.set r2, {b_l}\n    dma.hstride row={br}, plane=0\n    dma.load dst=spad[r2], src=hbm[r1], rows={rk}, row_bytes={bb}, planes=1, transpose=none, signal=t0\n",
                    a_h = (i * mt * k + kk * kt) * eb,
                    ar = k * eb,
                    ab = rk * eb,
                    b_h = 0x1000 + (kk * kt * n + j * nt) * eb,
                    b_l = buf + 0x200,
                    br = n * eb,
                    bb = rn * eb,
                );
                let mode = if kk == 0 { "overwrite" } else { "accumulate" };
                let waits = if kk == 0 && o >= 2 { "t0|t3" } else { "t0" };
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
                let (pre_wait, cmp_wait) = match waits_on {
                    WaitsOn::Compute => (String::new(), format!(", wait={waits}")),
                    WaitsOn::Preload => (format!(", wait={waits}"), String::new()),
                };
                mm += &format!(
                    "    addr.set r1, {b_l}\n    addr.set r2, {buf}\n    addr.set r3, {acc_at}\n    mm.preload b=spad[r1]:{t}, k={rk}, n={rn}, transpose=false{pre_wait}\n    mm.compute a=spad[r2]:{t}, c=acc[r3]:{acc}, m={rm}, transpose=false, mode={mode}{cmp_wait}{sig}\n",
                    b_l = buf + 0x200,
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

/// Which matrix instruction of a GEMM step waits for its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitsOn {
    /// The compute, which reads the operands: exact.
    Compute,
    /// The preload, as the weight-stationary programs do: each waiting
    /// preload may cost the core up to two cycles (`docs/rtl.md`).
    Preload,
}

fn gemm_run(
    arch: &Arch,
    ty: PeType,
    mkn: (usize, usize, usize),
    kt: usize,
    waits_on: WaitsOn,
    seed: u64,
) -> ProgramRun {
    let tiles = (arch.rows() as usize, kt, arch.cols() as usize);
    let src = gemm_source(ty, mkn, tiles, waits_on);
    let p = assemble(&src, "gemm.s", Some(arch)).unwrap_or_else(|e| panic!("{e}\n{src}"));
    let (m, k, n) = mkn;
    let mut hbm = bytes(ty, m * k, seed);
    hbm.resize(0x1000, 0);
    hbm.extend(bytes(ty, k * n, seed ^ 0x77));
    hbm.resize(0x2000 + 4 * m * n, 0);
    run_program_hbm(p, &hbm, &[], &[]).unwrap_or_else(|e| panic!("{e}\n{src}"))
}

#[test]
fn tiled_gemms_with_dma_match_the_simulator() {
    for (ty, (rows, cols, p), mkn, kt) in [
        (PeType::Int8, (4, 4, 2), (10, 13, 7), 8),
        (PeType::Bf16, (3, 5, 1), (7, 9, 11), 6),
    ] {
        let r = gemm_run(&arch(rows, cols, p), ty, mkn, kt, WaitsOn::Compute, 11);
        // With DMA: the first load starts in the last lead cycle and the
        // core then takes the model's total (run + 1 = model).
        let first_load = r
            .program
            .queue(tessera_isa::Queue::Load)
            .iter()
            .position(|i| i.op.mnemonic() == "dma.load")
            .unwrap() as u64;
        assert_eq!(
            r.expected_verdict(),
            format!("PASS cycles={} lead={}", r.cycles - 1, first_load + 1)
        );
        check(&format!("gemm-{}-{rows}x{cols}", ty.name()), &r);
    }
}

#[test]
fn a_preload_that_waits_costs_at_most_two_cycles() {
    if !tool("iverilog") {
        return;
    }
    let r = gemm_run(
        &arch(4, 4, 2),
        PeType::Int8,
        (10, 13, 7),
        8,
        WaitsOn::Preload,
        11,
    );
    let got = verdict("preload-waits", &r, &|t| t);
    let (cycles, lead) = got
        .strip_prefix("PASS cycles=")
        .and_then(|rest| rest.split_once(" lead="))
        .map(|(c, l)| (c.parse::<u64>().unwrap(), l.parse::<u64>().unwrap()))
        .unwrap_or_else(|| panic!("{got}"));
    let waiting = r
        .program
        .queue(tessera_isa::Queue::Matrix)
        .iter()
        .filter(|i| i.op.mnemonic() == "mm.preload" && i.wait.iter().next().is_some())
        .count() as u64;
    eprintln!(
        "preload-waits: {got} (timing model {} cycles, {waiting} waiting preloads)",
        r.cycles
    );
    assert_eq!(
        lead.to_string(),
        r.expected_verdict().rsplit('=').next().unwrap()
    );
    assert!(
        (r.cycles..=r.cycles + 2 * waiting).contains(&(cycles + 1)),
        "{got} against the model's {} with {waiting} waiting preloads",
        r.cycles
    );
}

#[test]
fn mutated_cores_fail() {
    if !tool("iverilog") {
        return;
    }
    let a = arch(3, 3, 2);
    let r = run(&a, PeType::Int8, &matrix_program(PeType::Int8, 3, 3), 5);
    assert_eq!(verdict("ok", &r, &|t| t), r.expected_verdict());
    for (name, from, to) in [
        // Accumulate ignored: every compute overwrites.
        (
            "no-accumulate",
            "wdata[g*32 +: 32] = w_acc ? sum_c : p_c;",
            "wdata[g*32 +: 32] = p_c;",
        ),
        // A compute starts one cycle before the previous one has drained.
        (
            "early-start",
            "(!f_on || f_st == f_last)",
            "(!f_on || f_st + 32'd1 == f_last)",
        ),
        // A transposed A read as packed.
        (
            "a-packed",
            "a_rstep <= q_arstep[q_head];",
            "a_rstep <= q_acstep[q_head];",
        ),
        // The drain one step late.
        (
            "late-drain",
            "f_drain <= {16'd0, q_k[q_head]} + DRAIN0;",
            "f_drain <= {16'd0, q_k[q_head]} + DRAIN0 + 32'd1;",
        ),
    ] {
        let mutate = |t: String| {
            assert!(t.contains(from), "{name}: the core lost `{from}`");
            t.replace(from, to)
        };
        let got = verdict(name, &r, &mutate);
        assert!(
            r.verdict_matches(&got).is_err(),
            "{name}: the mutant passed: {got}"
        );
    }
}

#[test]
fn verilator_lints_the_os_core_clean() {
    if !tool("verilator") {
        return;
    }
    for (rows, cols) in [(2, 2), (4, 4)] {
        for ty in PeType::ALL {
            let a = arch(rows, cols, 2);
            let src = gemm_source(
                ty,
                (5, 6, 5),
                (rows as usize, 3, cols as usize),
                WaitsOn::Compute,
            );
            let p = assemble(&src, "gemm.s", Some(&a)).unwrap();
            let core = core_program(&p).unwrap();
            let files = core_sources(&a, ty, CoreShape::of(&core)).unwrap();
            let dir = scratch(&format!("lint-{}-{rows}x{cols}", ty.name()));
            let sources = write_files(&dir, &files);
            let lint = verilator_lint(&dir, &core_module_name(ty), &sources);
            let _ = std::fs::remove_dir_all(&dir);
            if let Err(e) = lint {
                panic!("{} {rows}x{cols}:\n{e}", ty.name());
            }
        }
    }
}

#[test]
fn the_generator_refuses_what_it_does_not_build() {
    let mut spec = arch(2, 2, 1).spec().clone();
    spec.array.double_buffered_weights = true;
    let a = Arch::new(spec).unwrap();
    let src = "\
.queue matrix
    mm.preload b=spad[r0]:int8, k=2, n=2, transpose=false
    mm.compute a=spad[r0]:int8, c=acc[r0]:int32, m=2, transpose=false, mode=overwrite
    halt
";
    let p = assemble(src, "db.s", Some(&a)).unwrap();
    let e = core_program(&p).unwrap_err().to_string();
    assert!(e.starts_with("array.double_buffered_weights:"), "{e}");
    // The same program on a single-buffered OS array is accepted, and the
    // core it gets is output-stationary.
    let p = assemble(src, "os.s", Some(&arch(2, 2, 1))).unwrap();
    let core = core_program(&p).unwrap();
    let files = core_sources(&p.arch, core.ty, CoreShape::of(&core)).unwrap();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"tessera_os_array_int8.v"), "{names:?}");
    assert!(!names.contains(&"tessera_array_int8.v"), "{names:?}");
}
