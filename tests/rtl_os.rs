//! The generated output-stationary int8 and bf16 arrays against the
//! simulator: Verilator lints them (`-Wall`, no waivers) for several sizes
//! and pipeline depths, and Icarus Verilog (and once Verilator) run
//! testbenches whose vectors and expected results come from the functional
//! simulator; results must be bit-exact (NaN by class) and the cycle count
//! must equal the timing model's `K + 2R + C + P - 3`. Mutated processing
//! elements must fail.
//!
//! Tests that need a tool say so and pass when it is missing, unless
//! `TESSERA_REQUIRE_TOOLS=1` (set by `scripts/test.sh`, hence by CI).

use std::process::Command;

use proptest::prelude::*;
use tessera_isa::{Arch, Dataflow};
use tessera_rtl::array::array_sources;
use tessera_rtl::array_os::os_array_module;
use tessera_rtl::pe::PeType;
use tessera_rtl::testbench::ArrayShape;
use tessera_rtl::testbench_os::{os_fold_cycles, os_fold_testbench};

mod hdl;
use hdl::{run_iverilog, scratch, tool, verilator_lint, verilator_run, write_files};

fn arch(rows: u32, cols: u32, stages: u32) -> Arch {
    let mut spec = Arch::preset("fpga-8x8").unwrap().spec().clone();
    spec.name = format!("rtl-os-{rows}x{cols}-p{stages}");
    spec.array.dataflow = Dataflow::OutputStationary;
    spec.array.rows = rows;
    spec.array.cols = cols;
    spec.array.pe_pipeline_stages = stages;
    spec.scratchpad.size_kib = 256;
    Arch::new(spec).unwrap()
}

/// One fold's design (only `ty`'s files), testbench and the timing model's cycles.
struct Case {
    design: Vec<(String, String)>,
    tb: String,
    cycles: u64,
}

fn case(
    ty: PeType,
    (rows, cols, stages): (u32, u32, u32),
    (m, k, n): (usize, usize, usize),
    av: Vec<u16>,
    bv: Vec<u16>,
) -> Case {
    let a = arch(rows, cols, stages);
    let (fold, cycles) = tessera::cosim::fold(&a, ty, (m, k, n), av, bv).unwrap();
    let shape = ArrayShape {
        rows: rows as usize,
        cols: cols as usize,
        stages: stages as usize,
    };
    let tb = os_fold_testbench(shape, &fold).unwrap();
    assert_eq!(
        cycles,
        os_fold_cycles(shape, k) as u64,
        "the timing model's output-stationary fold formula"
    );
    let design = array_sources(&a)
        .unwrap()
        .into_iter()
        .filter(|(name, _)| name.ends_with(&format!("_{}.v", ty.name())))
        .collect();
    Case { design, tb, cycles }
}

#[test]
fn verilator_lints_every_os_array_clean() {
    if !tool("verilator") {
        return;
    }
    let dir = scratch("lint");
    for (r, c, p) in [(2, 2, 1), (4, 4, 2), (3, 5, 3), (5, 2, 4), (8, 8, 8)] {
        let files = write_files(&dir, &array_sources(&arch(r, c, p)).unwrap());
        for ty in PeType::ALL {
            if let Err(e) = verilator_lint(&dir, &os_array_module(ty), &files) {
                panic!("{ty:?} {r}x{c} P={p}:\n{e}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn int8() -> impl Strategy<Value = u16> {
    prop_oneof![1 => Just(0x80u16), 1 => Just(0x7f), 1 => Just(0xff), 6 => any::<u8>().prop_map(u16::from)]
}

/// bf16 bits: specials (zeros, infinities, NaNs, subnormals, the extremes),
/// normals near 1 (sums that cancel and round), and any bits at all.
fn bf16() -> impl Strategy<Value = u16> {
    prop_oneof![
        1 => prop::sample::select(vec![0x0000u16, 0x8000, 0x7f80, 0xff80, 0x7fc0, 0xffc1, 0x7f7f, 0xff7f, 0x0080, 0x8080]),
        2 => (any::<bool>(), 1u16..0x80).prop_map(|(s, f)| (u16::from(s) << 15) | f),
        6 => (any::<bool>(), 120u16..136, 0u16..0x80).prop_map(|(s, e, f)| (u16::from(s) << 15) | (e << 7) | f),
        2 => (any::<bool>(), 0u16..24, 0u16..0x80).prop_map(|(s, e, f)| (u16::from(s) << 15) | (e << 7) | f),
        2 => any::<u16>(),
    ]
}

fn values(ty: PeType, len: usize) -> BoxedStrategy<Vec<u16>> {
    match ty {
        PeType::Int8 => prop::collection::vec(int8(), len).boxed(),
        PeType::Bf16 => prop::collection::vec(bf16(), len).boxed(),
    }
}

/// Element type, array (rows, cols, stages), fold (m, k, n), A and B bits.
type CaseInput = (
    PeType,
    (u32, u32, u32),
    (usize, usize, usize),
    Vec<u16>,
    Vec<u16>,
);

/// Random element type, array (2x2 to 8x8), pipeline depth 1..3, fold
/// shape (m <= R, n <= C, k 1..12, so longer and shorter than the array)
/// and values.
fn cases() -> impl Strategy<Value = CaseInput> {
    (
        prop::sample::select(PeType::ALL.to_vec()),
        2u32..=8,
        2u32..=8,
        1u32..=3,
    )
        .prop_flat_map(|(ty, r, c, p)| {
            (
                Just(ty),
                Just((r, c, p)),
                1usize..=r as usize,
                1usize..=12,
                1usize..=c as usize,
            )
        })
        .prop_flat_map(|(ty, arr, m, k, n)| {
            (
                Just(ty),
                Just(arr),
                Just((m, k, n)),
                values(ty, m * k),
                values(ty, k * n),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn os_array_matches_the_simulator_bit_for_bit_and_cycle_for_cycle(
        (ty, arr, mkn, av, bv) in cases()
    ) {
        if !tool("iverilog") {
            return Ok(());
        }
        let dir = scratch(&format!("iv-{}-{arr:?}-{mkn:?}", ty.name()).replace([' ', '(', ')', ','], ""));
        let c = case(ty, arr, mkn, av, bv);
        let out = run_iverilog(&dir, &c.design, &c.tb);
        prop_assert_eq!(out.trim(), format!("PASS cycles={}", c.cycles));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A (4 x 6) and B (6 x 4) whose exact results exercise one corner each:
/// rounding ties, cancellation to zero, overflow, subnormal products,
/// infinities and NaN; the order of the fused multiply-adds matters.
fn bf16_corners() -> (Vec<u16>, Vec<u16>) {
    let a = vec![
        0x3f80, 0x4b80, 0x3f80, 0xcb80, 0x3f80, 0x3f80, // ties and cancellation over k
        0x7f7f, 0x7f7f, 0x0000, 0x0000, 0xff7f, 0x0001, // overflow, then -max
        0x0001, 0x0001, 0x8001, 0x0080, 0x0000, 0x8000, // subnormal inputs
        0x7f80, 0x0000, 0x3f80, 0xff80, 0x7fc0, 0x3f80, // inf, 0, 1, -inf, NaN
    ];
    let b = vec![
        0x3f80, 0x3f81, 0x0001, 0xbf80, //
        0x3f80, 0x3380, 0x0080, 0x3f80, //
        0x3f80, 0x3f80, 0x8001, 0x3f81, //
        0x3f80, 0x3380, 0x3f80, 0xbf80, //
        0xbf80, 0x0000, 0x3f80, 0x8000, //
        0x3f80, 0x3f80, 0x3f80, 0x3f80, //
    ];
    (a, b)
}

#[test]
fn os_corners_pass_and_mutated_pes_fail() {
    if !tool("iverilog") {
        return;
    }
    let dir = scratch("mutant");
    // int8: every product at its extreme, summed over a reduction longer than the array.
    let c = case(
        PeType::Int8,
        (4, 4, 2),
        (3, 9, 4),
        vec![0x80; 27],
        vec![0x80; 36],
    );
    assert_eq!(
        run_iverilog(&dir, &c.design, &c.tb).trim(),
        format!("PASS cycles={}", c.cycles)
    );
    let (a, b) = bf16_corners();
    let f = case(PeType::Bf16, (4, 4, 3), (4, 6, 4), a, b);
    assert_eq!(
        run_iverilog(&dir, &f.design, &f.tb).trim(),
        format!("PASS cycles={}", f.cycles)
    );
    // Each mutation must make the co-simulation fail: the int8 add, the bf16
    // rounding, the restart from +0, and the drain chain.
    for (c, from, to) in [
        (&c, "s2_pin + {{16", "s2_pin - {{16"),
        (&f, "s6_g & (s6_st", "s6_g | (s6_st"),
        (&c, "? 32'd0 : acc", "? acc : acc"),
        (&f, "if (drain) acc <= d_in;", "if (drain) acc <= acc;"),
    ] {
        let mut mutant = c.design.clone();
        mutant[0].1 = c.design[0].1.replace(from, to);
        assert_ne!(mutant, c.design, "the mutation {from} -> {to} must apply");
        let out = run_iverilog(&dir, &mutant, &c.tb);
        assert!(
            out.contains("FAIL"),
            "a mutated PE ({from} -> {to}) passed:\n{out}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verilator_runs_the_os_testbench() {
    if !tool("verilator") {
        return;
    }
    let dir = scratch("verilator");
    let (av, bv) = bf16_corners();
    let Case { design, tb, cycles } = case(PeType::Bf16, (4, 5, 2), (4, 6, 4), av, bv);
    let files = write_files(&dir, &design);
    std::fs::write(dir.join("tb.v"), tb).unwrap();
    let mut sources = vec!["tb.v".to_string()];
    sources.extend(files);
    let out = verilator_run(&dir, &sources);
    assert!(
        out.lines().any(|l| l == format!("PASS cycles={cycles}")),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tessera_rtl_generates_and_checks_an_os_description() {
    if !tool("iverilog") || !tool("yosys") {
        return;
    }
    let dir = scratch("flow");
    let mut spec = arch(2, 3, 2).spec().clone();
    spec.array.input_types = vec![tessera_isa::DType::Int8];
    let toml = dir.join("hw.toml");
    std::fs::write(&toml, Arch::new(spec).unwrap().to_toml()).unwrap();
    let rtl = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["rtl", "--hw"])
            .arg(&toml)
            .arg("--out")
            .arg(dir.join("out"))
            .args(extra)
            .output()
            .unwrap()
    };
    // A double-buffered output-stationary description has no core: its
    // `--program` is refused, naming the field, before anything is written.
    let mut db = Arch::from_toml(&std::fs::read_to_string(&toml).unwrap())
        .unwrap()
        .spec()
        .clone();
    db.array.double_buffered_weights = true;
    let db_toml = dir.join("db.toml");
    std::fs::write(&db_toml, Arch::new(db).unwrap().to_toml()).unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["rtl", "--hw"])
        .arg(&db_toml)
        .arg("--out")
        .arg(dir.join("out"))
        .args(["--program", "p.s"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && err.contains("array.double_buffered_weights")
            && err.lines().count() == 1,
        "{err}"
    );
    assert!(!dir.join("out").exists());
    // A program on the output-stationary core: several computes,
    // overwrite then accumulate, a transposed A.
    std::fs::write(
        dir.join("p.s"),
        "\
.queue matrix
    addr.set r1, 64
    mm.preload b=spad[r1]:int8, k=5, n=3, transpose=false
    mm.compute a=spad[r0]:int8, c=acc[r0]:int32, m=2, transpose=false, mode=overwrite
    mm.compute a=spad[r0+16]:int8, c=acc[r0]:int32, m=2, transpose=true, mode=accumulate
    halt
",
    )
    .unwrap();
    let spad: Vec<u8> = (0..128u32).map(|i| (i * 37 + 11) as u8).collect();
    std::fs::write(dir.join("spad.bin"), spad).unwrap();
    let program = dir.join("p.s");
    let spad_file = dir.join("spad.bin");
    let out = rtl(&[
        "--vector-unit",
        "skip",
        "--program",
        program.to_str().unwrap(),
        "--spad",
        spad_file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/report.json")).unwrap())
            .unwrap();
    assert_eq!(report["array"]["dataflow"], "output-stationary");
    let a = &report["arrays"][0];
    assert_eq!(a["top"], "tessera_os_array_int8");
    // k = 2R: 4 + 4 + 3 + 2 - 3 steps.
    assert_eq!(a["testbench_cycles_expected"], 10, "{a}");
    assert_eq!(a["rtl_simulation"]["output"], "PASS cycles=10", "{a}");
    for stage in ["synthesis", "post_synthesis_simulation"] {
        assert_eq!(a[stage]["status"], "passed", "{stage}: {a}");
    }
    assert_eq!(a["place_and_route"]["status"], "skipped", "{a}");
    let core = &report["cores"][0];
    assert_eq!(core["top"], "tessera_core_int8", "{core}");
    assert_eq!(core["rtl_simulation"]["status"], "passed", "{core}");
    assert_eq!(
        core["rtl_simulation"]["output"], core["expected_verdict"],
        "{core}"
    );
    assert!(report["cores_not_generated"].is_null(), "{report}");
    // Without `--program` the double-buffered description still gets its
    // arrays, and both reports say why it has no core.
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["rtl", "--hw"])
        .arg(&db_toml)
        .arg("--out")
        .arg(dir.join("db"))
        .args(["--vector-unit", "skip"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("db/report.json")).unwrap())
            .unwrap();
    assert_eq!(
        report["cores"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    let why = report["cores_not_generated"].as_str().unwrap_or_default();
    assert!(why.starts_with("array.double_buffered_weights:"), "{why}");
    let md = std::fs::read_to_string(dir.join("db/report.md")).unwrap();
    assert!(md.contains(&format!("- not generated: {why}")), "{md}");
    let _ = std::fs::remove_dir_all(&dir);
}
