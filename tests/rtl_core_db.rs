//! The generated core with double-buffered weights: folds back to back
//! (each preload right after the compute before it, M smaller and larger
//! than R) whose preloads overlap computes in the timing model run
//! bit-exact on the core in exactly the model's cycles plus the accumulator
//! write, single- and double-buffered, for P 1..3; mutated engines (a
//! compute or a preload one cycle before the model allows, no switch bit)
//! must fail; a preload that signals is refused; `tessera rtl` runs the
//! whole flow but place and route on a double-buffered description.
//!
//! Tests that need a tool say so and pass when it is missing, unless
//! `TESSERA_REQUIRE_TOOLS=1`.

use std::process::Command;

use tessera::cosim::{run_program, ProgramRun};
use tessera_isa::asm::assemble;
use tessera_isa::{Arch, Queue};
use tessera_rtl::pe::{Buffering, PeType};

mod hdl;
use hdl::{core_output, scratch, tool};

/// `rows` x `cols` array, `stages` per PE, `buffering` weights, 8 KiB of
/// scratchpad in 8 banks of 32 bytes, 4 KiB of accumulator.
fn arch(rows: u32, cols: u32, stages: u32, buffering: Buffering) -> Arch {
    let mut spec = Arch::preset("fpga-8x8").unwrap().spec().clone();
    spec.name = format!("db-{rows}x{cols}-p{stages}-{buffering:?}");
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

/// Rows of A of the back-to-back folds: smaller and larger than R = 4.
const MS: [usize; 6] = [1, 12, 2, 8, 3, 5];

/// Full folds (k = R, n = C) back to back: every preload follows the
/// compute before it with no sequencer instruction in between, each with
/// its own B, A and C.
fn back_to_back(ty: PeType, rows: u32, cols: u32) -> String {
    let (t, acc) = match ty {
        PeType::Int8 => ("int8", "int32"),
        PeType::Bf16 => ("bf16", "fp32"),
    };
    let mut s = String::from(
        ".queue matrix\n    addr.set r1, 0x1000\n    addr.set r2, 0\n    addr.set r3, 0\n",
    );
    for (f, m) in MS.iter().enumerate() {
        s += &format!(
            "    mm.preload b=spad[r1+{}]:{t}, k={rows}, n={cols}, transpose=false\n    mm.compute a=spad[r2+{}]:{t}, c=acc[r3+{}]:{acc}, m={m}, transpose=false, mode=overwrite\n",
            0x80 * f,
            0x100 * f,
            0x100 * f
        );
    }
    s + "    halt\n"
}

/// Deterministic scratchpad bytes: int8 anything, bf16 normals of moderate range.
fn spad(ty: PeType, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..8192)
        .flat_map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let x = (s >> 32) as u32;
            match ty {
                PeType::Int8 => vec![x as u8],
                PeType::Bf16 => (((x & 0x8000) | ((120 + (x >> 16) % 16) << 7) | (x & 0x7f))
                    as u16)
                    .to_le_bytes()
                    .to_vec(),
            }
        })
        .take(8192)
        .collect()
}

fn run(a: &Arch, src: &str, ty: PeType) -> ProgramRun {
    let p = assemble(src, "db.s", Some(a)).unwrap_or_else(|e| panic!("{e}\n{src}"));
    run_program(p, &spad(ty, 7), &[]).unwrap()
}

/// The core's verdict on `r` (after `mutate`) under Icarus Verilog; `None`
/// without Icarus.
fn verdict(name: &str, r: &ProgramRun, mutate: &dyn Fn(String) -> String) -> Option<String> {
    if !tool("iverilog") {
        return None;
    }
    Some(core_output(name, r, mutate).trim().to_string())
}

/// The verdict a correct core prints (`docs/rtl.md`).
fn pass(r: &ProgramRun) -> String {
    format!("PASS cycles={} lead={}", r.cycles + 1, r.first_engine + 2)
}

/// Whether the timing model starts some preload of `r` before the compute
/// issued ahead of it has ended.
fn preload_overlaps_a_compute(r: &ProgramRun) -> bool {
    let mut last_compute_end = 0;
    let mut overlap = false;
    tessera_sim::timing::run(&r.program, 1 << 20, &mut |e| {
        if e.site.queue == Queue::Matrix {
            match e.mnemonic {
                "mm.compute" => last_compute_end = e.end,
                "mm.preload" if e.start < last_compute_end => overlap = true,
                _ => {}
            }
        }
    })
    .unwrap();
    overlap
}

#[test]
fn back_to_back_folds_overlap_and_match_the_model_cycle_for_cycle() {
    for (p, ty, (rows, cols)) in [
        (1, PeType::Int8, (4, 4)),
        (2, PeType::Bf16, (4, 4)),
        (3, PeType::Int8, (3, 5)),
    ] {
        let src = back_to_back(ty, rows, cols);
        let single = run(&arch(rows, cols, p, Buffering::Single), &src, ty);
        let double = run(&arch(rows, cols, p, Buffering::Double), &src, ty);
        assert_eq!(single.acc_out, double.acc_out, "P={p}");
        assert!(preload_overlaps_a_compute(&double), "P={p}");
        assert!(!preload_overlaps_a_compute(&single), "P={p}");
        assert!(double.cycles < single.cycles, "P={p}");
        for (what, r) in [("single", &single), ("double", &double)] {
            if let Some(v) = verdict(&format!("b2b-{what}-p{p}"), r, &|t| t) {
                assert_eq!(v, pass(r), "{what} P={p}");
            }
        }
        eprintln!(
            "{rows}x{cols} P={p} {}: {} folds, core run cycles single {} double {} (model {} / {})",
            ty.name(),
            MS.len(),
            single.cycles + 1,
            double.cycles + 1,
            single.cycles,
            double.cycles
        );
    }
}

#[test]
fn mutated_double_buffered_engines_fail() {
    let cases: [(&str, u32, &str, &str); 3] = [
        (
            "a compute one cycle before its weights are ready",
            1,
            "rdy_left <= 16'd1 && str_left",
            "rdy_left <= 16'd2 && str_left",
        ),
        (
            "a preload one cycle before the last compute's shadows are read",
            3,
            "q_pre[q_head] && pre_left <= 16'd1 && shd_left <= 16'd1",
            "q_pre[q_head] && pre_left <= 16'd1 && shd_left <= 16'd2",
        ),
        (
            "no switch bit with a compute's first row",
            2,
            "always @(posedge clk) a_first <= !rst && go_cmp;",
            "always @(posedge clk) a_first <= 1'b0;",
        ),
    ];
    for (what, p, from, to) in cases {
        let r = run(
            &arch(4, 4, p, Buffering::Double),
            &back_to_back(PeType::Int8, 4, 4),
            PeType::Int8,
        );
        let mutate = |t: String| {
            assert!(t.contains(from), "{what}: pattern not in the core");
            t.replace(from, to)
        };
        if let Some(v) = verdict("mutant", &r, &mutate) {
            eprintln!("{what}: {}", v.lines().last().unwrap_or(""));
            assert!(v.starts_with("FAIL"), "mutant passed: {what}\n{v}");
        }
    }
}

#[test]
fn a_preload_that_signals_is_refused_with_double_buffered_weights() {
    let src = ".queue matrix\n    mm.preload b=spad[r0]:int8, k=2, n=2, transpose=false, signal=t1\n    mm.compute a=spad[r0]:int8, c=acc[r0]:int32, m=2, transpose=false, mode=overwrite\n    halt\n";
    for (b, refused) in [(Buffering::Single, false), (Buffering::Double, true)] {
        let p = assemble(src, "sig.s", Some(&arch(2, 2, 1, b))).unwrap();
        match tessera_rtl::core::core_program(&p) {
            Err(e) => {
                assert!(refused, "{b:?}: {e}");
                assert!(
                    e.to_string()
                        .starts_with("matrix#0 mm.preload: signals a token"),
                    "{e}"
                );
            }
            Ok(_) => assert!(!refused, "{b:?}: accepted"),
        }
    }
}

#[test]
fn tessera_rtl_runs_a_double_buffered_description() {
    if !tool("iverilog") {
        return;
    }
    let dir = scratch("cli");
    let mut spec = arch(2, 2, 2, Buffering::Double).spec().clone();
    spec.array.input_types = vec![tessera_isa::DType::Int8];
    // The array's fold testbench puts B at 0x4000.
    spec.scratchpad.size_kib = 32;
    let toml = dir.join("hw.toml");
    std::fs::write(&toml, Arch::new(spec).unwrap().to_toml()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["rtl", "--hw"])
        .arg(&toml)
        .arg("--out")
        .arg(dir.join("out"))
        .args(["--pnr", "skip", "--vector-unit", "skip"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/report.json")).unwrap())
            .unwrap();
    let a = &report["arrays"][0];
    // The one-fold testbench ends exactly when the model's fold does.
    let expect = format!("PASS cycles={}", a["testbench_cycles_expected"]);
    assert_eq!(a["rtl_simulation"]["output"], expect.as_str(), "{a}");
    let stages: &[&str] = if tool("yosys") {
        &["synthesis", "post_synthesis_simulation"]
    } else {
        &[]
    };
    for stage in stages {
        assert_eq!(a[stage]["status"], "passed", "{stage}: {a}");
    }
    assert_eq!(a["place_and_route"]["status"], "skipped", "{a}");
    let design = std::fs::read_to_string(dir.join("out/tessera_array_int8.v")).unwrap();
    assert!(
        design.contains("prop_left"),
        "not the double-buffered array"
    );
    let core = &report["cores"][0];
    assert_eq!(core["rtl_simulation"]["status"], "passed", "{core}");
    let core_v = std::fs::read_to_string(dir.join("out/tessera_core_int8.v")).unwrap();
    assert!(core_v.contains(".prop_left(prop_left)"), "{core}");
    let _ = std::fs::remove_dir_all(&dir);
}
