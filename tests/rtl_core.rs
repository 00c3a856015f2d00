//! The generated matrix core against the simulator: matrix-queue programs
//! (assembled here, with the scratchpad and accumulator they start from)
//! run on the functional simulator and on the core under Icarus Verilog;
//! the whole accumulator must be bit-exact (NaN by class) and the core's
//! cycle count must be the timing model's plus the one accumulator-write
//! cycle the model does not count (`docs/rtl.md`). Verilator lints the core
//! (`-Wall`, no waivers) and runs one program; a property test draws random
//! arrays, shapes, loops and values; mutated cores must fail; Yosys
//! synthesises a small core.
//!
//! Tests that need a tool say so and pass when it is missing, unless
//! `TESSERA_REQUIRE_TOOLS=1` (set by `scripts/test.sh`, hence by CI).

use std::process::Command;

use proptest::prelude::*;
use tessera::cosim::{core_files, run_program, ProgramRun};
use tessera_isa::asm::assemble;
use tessera_isa::Arch;
use tessera_rtl::core::core_module_name;
use tessera_rtl::pe::{Buffering, PeType};

mod hdl;
use hdl::{
    core_output, iverilog_files, pass_cycles, scratch, tool, verilator_lint, verilator_run,
    write_files,
};

/// A small hardware description: `rows` x `cols` array with `stages` per PE,
/// single-buffered weights, 8 KiB of scratchpad in 8 banks of 32 bytes, 4
/// KiB of accumulator.
fn arch(rows: u32, cols: u32, stages: u32) -> Arch {
    buffered_arch(rows, cols, stages, Buffering::Single)
}

/// As [`arch`] with `buffering` weights.
fn buffered_arch(rows: u32, cols: u32, stages: u32, buffering: Buffering) -> Arch {
    let mut spec = Arch::preset("fpga-8x8").unwrap().spec().clone();
    spec.name = format!("core-{rows}x{cols}-p{stages}-{buffering:?}");
    spec.array.rows = rows;
    spec.array.cols = cols;
    spec.array.pe_pipeline_stages = stages;
    spec.array.double_buffered_weights = buffering == Buffering::Double;
    spec.scratchpad.size_kib = 8;
    spec.scratchpad.banks = 8;
    spec.scratchpad.bank_width_bytes = 32;
    spec.accumulator.size_kib = 4;
    Arch::new(spec).unwrap()
}

fn run(arch: &Arch, src: &str, spad: &[u8], acc: &[u8]) -> ProgramRun {
    let p = assemble(src, "core.s", Some(arch)).unwrap_or_else(|e| panic!("{e}\n{src}"));
    run_program(p, spad, acc).unwrap()
}

/// The verdict a correct core prints for `r`.
fn pass(r: &ProgramRun) -> String {
    format!("PASS cycles={} lead={}", r.cycles + 1, r.first_engine + 2)
}

/// `(run, lead)` cycles of `r` on the core under Icarus Verilog (bit-exact
/// or the test fails), `None` without Icarus.
fn verdict(name: &str, r: &ProgramRun) -> Option<(u64, u64)> {
    if !tool("iverilog") {
        return None;
    }
    let out = core_output(name, r, &|t| t);
    Some(pass_cycles(&out).unwrap_or_else(|| panic!("{name}: {out}")))
}

/// Checks `r` on the core under Icarus Verilog.
fn check(name: &str, r: &ProgramRun) {
    if let Some((cycles, lead)) = verdict(name, r) {
        let got = format!("PASS cycles={cycles} lead={lead}");
        assert_eq!(got, pass(r), "{name}");
    }
}

fn int8_bytes(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

const INT8_PROGRAM: &str = "\
.queue matrix
    addr.set r1, 0x400
    addr.set r2, 0x0
    addr.set r3, 0x0
    addr.step r2, 0, 40
    addr.step r3, 0, 96
    prof.begin body
    mm.preload b=spad[r1]:int8, k=3, n=4, transpose=false
    loop 2, l_end
    mm.compute a=spad[r2]:int8, c=acc[r3]:int32, m=5, transpose=false, mode=overwrite
    mm.compute a=spad[r2+8]:int8, c=acc[r3]:int32, m=2, transpose=false, mode=accumulate
l_end:
    mm.stride a=0, b=8, c=32
    mm.preload b=spad[r1+64]:int8, k=4, n=3, transpose=true
    mm.compute a=spad[r2+256]:int8, c=acc[r3+512]:int32, m=6, transpose=true, mode=accumulate
    prof.end body
    halt
";

#[test]
fn int8_program_with_loops_strides_and_transposes() {
    let a = arch(4, 4, 2);
    let r = run(&a, INT8_PROGRAM, &int8_bytes(2048, 7), &int8_bytes(1024, 3));
    check("int8", &r);
    // Double-buffered, the program's two sequencer instructions between
    // engine operations (`loop` after the first preload, `mm.stride` before
    // the second) are free only where the model leaves the front end two
    // cycles: after a preload that is R = 4 for P = 1 (exact), 1 for P >= 2,
    // so there the core may take up to one cycle more for each.
    for p in 1..=3 {
        let a = buffered_arch(4, 4, p, Buffering::Double);
        let r = run(&a, INT8_PROGRAM, &int8_bytes(2048, 7), &int8_bytes(1024, 3));
        if p == 1 {
            check(&format!("int8-double-p{p}"), &r);
        } else if let Some((cycles, lead)) = verdict(&format!("int8-double-p{p}"), &r) {
            assert_eq!(lead, r.first_engine as u64 + 2, "P={p}: lead");
            let extra = cycles - (r.cycles + 1);
            assert!(
                (1..=2).contains(&extra),
                "P={p}: {cycles} against the model's {} + 1",
                r.cycles
            );
        }
    }
}

/// Deterministic pseudo-random elements of `ty`'s input format (raw bits),
/// with the special values mixed in.
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
                    1 => (x >> 8) as u16,
                    // Sign, exponent 120..135, any fraction: sums that cancel and round.
                    _ => {
                        ((x >> 8) & 0x8000 | ((120 + (x >> 20) % 16) << 7) | (x >> 40) & 0x7f)
                            as u16
                    }
                },
            }
        })
        .collect()
}

fn spad_bytes(ty: PeType, seed: u64) -> Vec<u8> {
    let v = elements(ty, 4096, seed);
    match ty {
        PeType::Int8 => v.iter().map(|x| *x as u8).collect(),
        PeType::Bf16 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// Initial accumulator words: int32 bits, or fp32 values of every class
/// (bf16 patterns widened, so sums tie and cancel, plus arbitrary bits).
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

/// One fold of a random program: B (k x n, maybe transposed), then computes
/// (m, A transposed, accumulate) repeated `reps` times in a loop.
#[derive(Debug, Clone)]
struct Fold {
    k: u32,
    n: u32,
    b_tr: bool,
    reps: u32,
    computes: Vec<(u32, bool, bool)>,
}

/// How [`program`] lays out a fold's repetitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Address registers set before each preload, the computes in a loop.
    Looped,
    /// Every address register set at the start, the repetitions unrolled:
    /// only engine operations follow, so the front end keeps ahead of a
    /// double-buffered engine (`docs/rtl.md`).
    Unrolled,
}

fn program(ty: PeType, folds: &[Fold], layout: Layout) -> String {
    let (t, acc) = match ty {
        PeType::Int8 => ("int8", "int32"),
        PeType::Bf16 => ("bf16", "fp32"),
    };
    let mut s = String::from(".queue matrix\n");
    if layout == Layout::Unrolled {
        // Fold f: B at r(4 + 2f), A at r(5 + 2f); repetition i of compute j
        // reads A at +16 i + 0x100 j, as the looped layout's address step.
        for f in 0..folds.len() {
            s += &format!(
                "    addr.set r{}, {}\n    addr.set r{}, {}\n",
                4 + 2 * f,
                0x1000 + 0x200 * f,
                5 + 2 * f,
                0x400 * f
            );
        }
        for (f, fold) in folds.iter().enumerate() {
            let (b, a) = (4 + 2 * f, 5 + 2 * f);
            s += &format!(
                "    mm.preload b=spad[r{b}]:{t}, k={}, n={}, transpose={}\n",
                fold.k, fold.n, fold.b_tr
            );
            for i in 0..fold.reps {
                for (j, (m, a_tr, accumulate)) in fold.computes.iter().enumerate() {
                    let mode = if *accumulate {
                        "accumulate"
                    } else {
                        "overwrite"
                    };
                    s += &format!(
                        "    mm.compute a=spad[r{a}+{}]:{t}, c=acc[r3+{}]:{acc}, m={m}, transpose={a_tr}, mode={mode}\n",
                        16 * i as usize + 0x100 * j,
                        0x100 * j
                    );
                }
            }
        }
        return s + "    halt\n";
    }
    for (f, fold) in folds.iter().enumerate() {
        let Fold {
            k,
            n,
            b_tr,
            reps,
            computes,
        } = fold;
        // Sequencer instructions before the preload, so the front end keeps
        // ahead of a 2-cycle preload (docs/rtl.md).
        s += &format!("    addr.set r1, {}\n", 0x1000 + 0x200 * f);
        s += &format!("    addr.set r2, {}\n    addr.step r2, 0, 16\n", 0x400 * f);
        s += &format!("    mm.preload b=spad[r1]:{t}, k={k}, n={n}, transpose={b_tr}\n");
        s += &format!("    loop {reps}, f{f}_end\n");
        for (j, (m, a_tr, accumulate)) in computes.iter().enumerate() {
            let mode = if *accumulate {
                "accumulate"
            } else {
                "overwrite"
            };
            s += &format!(
                "    mm.compute a=spad[r2+{}]:{t}, c=acc[r3+{}]:{acc}, m={m}, transpose={a_tr}, mode={mode}\n",
                0x100 * j,
                0x100 * j
            );
        }
        s += &format!("f{f}_end:\n");
    }
    s + "    halt\n"
}

fn folds(rows: u32, cols: u32) -> impl Strategy<Value = Vec<Fold>> {
    let compute = (1u32..=8, any::<bool>(), prop::bool::weighted(0.6));
    let fold = (
        1..=rows,
        1..=cols,
        any::<bool>(),
        1u32..=3,
        prop::collection::vec(compute, 1..=2),
    )
        .prop_map(|(k, n, b_tr, reps, computes)| Fold {
            k,
            n,
            b_tr,
            reps,
            computes,
        });
    prop::collection::vec(fold, 1..=3)
}

type Case = (PeType, (u32, u32, u32), Buffering, Vec<Fold>, u64);

fn cases() -> impl Strategy<Value = Case> {
    (
        prop::sample::select(PeType::ALL.to_vec()),
        2u32..=6,
        2u32..=6,
        1u32..=3,
        prop::sample::select(vec![Buffering::Single, Buffering::Double]),
    )
        .prop_flat_map(|(ty, r, c, p, b)| {
            (
                Just(ty),
                Just((r, c, p)),
                Just(b),
                folds(r, c),
                any::<u64>(),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn random_programs_match_the_simulator_bit_for_bit_and_cycle_for_cycle(
        (ty, (r, c, p), b, f, seed) in cases()
    ) {
        let a = buffered_arch(r, c, p, b);
        // Single buffering runs the looped layout exactly, double buffering
        // the unrolled one (sequencer instructions between engine operations
        // cost the core cycles the double-buffered model does not leave).
        let layout = match b {
            Buffering::Single => Layout::Looped,
            Buffering::Double => Layout::Unrolled,
        };
        let src = program(ty, &f, layout);
        let run = run(&a, &src, &spad_bytes(ty, seed), &acc_bytes(ty, seed));
        check(&format!("prop-{seed:x}"), &run);
    }
}

const BF16_PROGRAM: &str = "\
.queue matrix
    addr.set r1, 0x1000
    addr.set r3, 0x40
    mm.preload b=spad[r1]:bf16, k=4, n=4, transpose=false
    mm.compute a=spad[r2]:bf16, c=acc[r3]:fp32, m=8, transpose=false, mode=accumulate
    mm.preload b=spad[r1+32]:bf16, k=2, n=3, transpose=true
    mm.compute a=spad[r2+64]:bf16, c=acc[r3]:fp32, m=8, transpose=true, mode=accumulate
    mm.compute a=spad[r2+128]:bf16, c=acc[r3+256]:fp32, m=3, transpose=false, mode=overwrite
    halt
";

#[test]
fn bf16_program_accumulates_with_the_simulators_rounding() {
    let a = arch(4, 4, 3);
    let r = run(
        &a,
        BF16_PROGRAM,
        &spad_bytes(PeType::Bf16, 11),
        &acc_bytes(PeType::Bf16, 11),
    );
    check("bf16", &r);
    for p in 1..=3 {
        let a = buffered_arch(4, 4, p, Buffering::Double);
        let r = run(
            &a,
            BF16_PROGRAM,
            &spad_bytes(PeType::Bf16, 11),
            &acc_bytes(PeType::Bf16, 11),
        );
        check(&format!("bf16-double-p{p}"), &r);
    }
}

#[test]
fn mutated_cores_fail() {
    if !tool("iverilog") {
        return;
    }
    let dir = scratch("mutant");
    let int8 = run(
        &arch(4, 4, 2),
        INT8_PROGRAM,
        &spad_bytes(PeType::Int8, 5),
        &acc_bytes(PeType::Int8, 5),
    );
    let bf16 = run(
        &arch(4, 4, 3),
        BF16_PROGRAM,
        &spad_bytes(PeType::Bf16, 11),
        &acc_bytes(PeType::Bf16, 11),
    );
    for (r, file, from, to) in [
        // Overwrite and accumulate swapped.
        (
            &int8,
            "tessera_core_int8.v",
            "t[TW-2] ? sum_c : p_c",
            "t[TW-2] ? p_c : sum_c",
        ),
        // Transposed A read as if stored m x k.
        (
            &int8,
            "tessera_core_int8.v",
            "c_rstep = c_tr ? ES : c_str",
            "c_rstep = c_str",
        ),
        // The fp32 adder rounds up on every guard bit (no ties to even).
        (
            &bf16,
            "tessera_fp32_add.v",
            "n[2] & (n[1] | n[0] | n[3])",
            "n[2]",
        ),
        // The fp32 adder drops the sticky bit of the aligned operand.
        (&bf16, "tessera_fp32_add.v", "|bw50[23:0]}", "1'b0}"),
    ] {
        let mut files = core_files(r).unwrap();
        let f = files.iter_mut().find(|(n, _)| n == file).unwrap();
        let mutated = f.1.replace(from, to);
        assert_ne!(mutated, f.1, "the mutation {from} -> {to} must apply");
        f.1 = mutated;
        let out = iverilog_files(&dir, &files);
        assert!(
            out.contains("FAIL"),
            "a mutated core ({from} -> {to}) passed:\n{out}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verilator_lints_every_core_clean() {
    if !tool("verilator") {
        return;
    }
    let dir = scratch("lint");
    let single = [(2, 2, 1), (4, 4, 2), (3, 5, 3), (5, 2, 1), (8, 8, 2)]
        .map(|(r, c, p)| (r, c, p, Buffering::Single));
    let double =
        [(2, 2, 1), (4, 4, 2), (3, 5, 3), (3, 5, 1)].map(|(r, c, p)| (r, c, p, Buffering::Double));
    // Each shape with one type, alternating: both types meet both kinds
    // of weights, and each lint also covers the vector unit with its libm
    // datapath (about 7 s a core on two cores).
    for (i, (r, c, p, b)) in single.into_iter().chain(double).enumerate() {
        {
            let ty = PeType::ALL[i % PeType::ALL.len()];
            let shape = tessera_rtl::core::CoreShape {
                depths: [8, 8, 8],
                vector_depth: 2,
                hbm_bytes: 4096,
            };
            let files =
                tessera_rtl::core::core_sources(&buffered_arch(r, c, p, b), ty, shape).unwrap();
            let names = write_files(&dir, &files);
            if let Err(e) = verilator_lint(&dir, &core_module_name(ty), &names) {
                panic!("{ty:?} {r}x{c} P={p} {b:?}:\n{e}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verilator_runs_a_program() {
    if !tool("verilator") {
        return;
    }
    let dir = scratch("verilator");
    let r = run(
        &arch(4, 4, 3),
        BF16_PROGRAM,
        &spad_bytes(PeType::Bf16, 3),
        &acc_bytes(PeType::Bf16, 3),
    );
    let names = write_files(&dir, &core_files(&r).unwrap());
    let out = verilator_run(&dir, &names);
    assert!(out.lines().any(|l| l == pass(&r)), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Programs the core does not run, and the rule each breaks.
#[test]
fn unsupported_programs_name_the_instruction() {
    let a = arch(4, 4, 1);
    for (src, expect) in [
        (
            ".queue matrix\n    mm.stride a=0, b=0, c=4\n    mm.preload b=spad[r0]:int8, k=2, n=2, transpose=false\n    mm.compute a=spad[r0]:int8, c=acc[r0]:int32, m=2, transpose=false, mode=overwrite\n    halt\n",
            "matrix#2 mm.compute: result rows overlap",
        ),
        (
            ".queue matrix\n    loop 2, e\n    addr.step r1, 0, 4\ne:\n    halt\n",
            "matrix#1 addr.step: level 0 is an open loop",
        ),
        (
            ".queue vector\n    v.shape rows=2, cols=2\n    v.gather mode=rows, dst=spad[r0+4]:fp32, table=acc[r0]:fp32, idx=spad[r0]\n    halt\n",
            "vector#1 v.gather: destination spad",
        ),
        (
            ".queue vector\n    v.bin op=pow, dst=spad[r0]:fp32, a=spad[r0]:fp32, b=spad[r0]:fp32\n    halt\n",
            "vector#0 v.bin pow: the ISA defines it as libm",
        ),
        (
            ".queue store\n    loop 2, e\n    addr.step r1, 0, 4\ne:\n    halt\n",
            "store#1 addr.step: level 0 is an open loop",
        ),
        (".queue matrix\n    halt\n", "queue matrix: no mm.preload"),
    ] {
        let p = assemble(src, "bad.s", Some(&a)).unwrap();
        let e = tessera_rtl::core::core_program(&p).unwrap_err().to_string();
        assert!(e.starts_with(expect), "{e}");
    }
}

#[test]
fn tessera_rtl_runs_a_program_on_the_core() {
    if !tool("iverilog") {
        return;
    }
    let dir = scratch("cli");
    let mut spec = arch(2, 2, 2).spec().clone();
    spec.array.input_types = vec![tessera_isa::DType::Int8];
    // The array's fold testbench puts B at 0x4000.
    spec.scratchpad.size_kib = 32;
    let toml = dir.join("hw.toml");
    std::fs::write(&toml, Arch::new(spec).unwrap().to_toml()).unwrap();
    let prog = dir.join("p.s");
    std::fs::write(
        &prog,
        INT8_PROGRAM
            .replace("k=3, n=4", "k=2, n=2")
            .replace("k=4, n=3", "k=2, n=1"),
    )
    .unwrap();
    std::fs::write(dir.join("spad.bin"), spad_bytes(PeType::Int8, 1)).unwrap();
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
    let spad = dir.join("spad.bin");
    let out = tessera(&["--spad", spad.to_str().unwrap()]);
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
    assert_eq!(core["top"], "tessera_core_int8");
    // `--vector-unit skip`: the unit and its testbench are written, not simulated.
    let vector = &report["vector"];
    assert_eq!(vector["rtl_simulation"]["status"], "skipped", "{vector}");
    assert!(dir.join("out/tb_vec_lane.v").exists());
    // A program outside the subset: one `error:` line naming the instruction.
    std::fs::write(&prog, ".queue matrix\n    mm.preload b=spad[r0]:int8, k=2, n=2, transpose=false\n    loop 2, e\n    addr.step r1, 0, 4\ne:\n    halt\n").unwrap();
    let out = tessera(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("matrix#2 addr.step: level 0 is an open loop"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
