//! The generated int8 and bf16 arrays against the simulator: Verilator
//! lints them (`-Wall`, no waivers) for every size and pipeline depth, and
//! Icarus Verilog (and once Verilator) run testbenches whose vectors and
//! expected results come from the functional simulator; results must be
//! bit-exact (NaN by class) and the cycle count must equal the timing
//! model's for the same pipeline depth. Mutated processing elements must
//! fail. Yosys netlists (generic gates and iCE40 cells) pass the same
//! testbench after synthesis, and `tessera rtl` runs the whole flow through
//! nextpnr-ice40 on a 2x2 array.
//!
//! Tests that need a tool say so and pass when it is missing, unless
//! `TESSERA_REQUIRE_TOOLS=1` (set by `scripts/test.sh`, hence by CI).

mod hdl;

use std::path::Path;
use std::process::Command;

use hdl::{iverilog, run_iverilog, scratch, tool, verilator_lint, verilator_run, write_files};

use proptest::prelude::*;
use tessera_isa::Arch;
use tessera_rtl::array::array_sources;
use tessera_rtl::fpga::{cell_models_extra, parse_stat, yosys_script, Target};
use tessera_rtl::pe::{Buffering, PeType};
use tessera_rtl::sequence_tb::{sequence_cycles, sequence_testbench, ScheduledFold};
use tessera_rtl::testbench::{fold_cycles, fold_testbench, ArrayShape};

fn arch(rows: u32, cols: u32, stages: u32) -> Arch {
    buffered_arch(rows, cols, stages, Buffering::Single)
}

fn buffered_arch(rows: u32, cols: u32, stages: u32, buffering: Buffering) -> Arch {
    let mut spec = Arch::preset("fpga-8x8").unwrap().spec().clone();
    spec.name = format!("rtl-{rows}x{cols}-p{stages}");
    spec.array.rows = rows;
    spec.array.cols = cols;
    spec.array.pe_pipeline_stages = stages;
    spec.array.double_buffered_weights = buffering == Buffering::Double;
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
    wv: Vec<u16>,
) -> Case {
    let a = arch(rows, cols, stages);
    let (fold, cycles) = tessera::cosim::fold(&a, ty, (m, k, n), av, wv).unwrap();
    let shape = ArrayShape {
        rows: rows as usize,
        cols: cols as usize,
        stages: stages as usize,
    };
    let tb = fold_testbench(shape, &fold).unwrap();
    assert_eq!(
        cycles,
        fold_cycles(shape, m) as u64,
        "the timing model's fold formula"
    );
    let design = array_sources(&a)
        .unwrap()
        .into_iter()
        .filter(|(name, _)| name.ends_with(&format!("_{}.v", ty.name())))
        .collect();
    Case { design, tb, cycles }
}

#[test]
fn verilator_lints_every_array_size_clean() {
    if !tool("verilator") {
        return;
    }
    let dir = scratch("lint");
    for (r, c, p, b) in [
        (2, 2, 1, Buffering::Single),
        (4, 4, 2, Buffering::Single),
        (8, 8, 1, Buffering::Single),
        (16, 16, 3, Buffering::Single),
        (3, 5, 6, Buffering::Single),
        (2, 3, 8, Buffering::Single),
        (2, 2, 1, Buffering::Double),
        (8, 8, 2, Buffering::Double),
        (3, 5, 8, Buffering::Double),
    ] {
        let files = write_files(&dir, &array_sources(&buffered_arch(r, c, p, b)).unwrap());
        for ty in PeType::ALL {
            if let Err(e) = verilator_lint(&dir, &ty.array_module(), &files) {
                panic!("{ty:?} {r}x{c} P={p} {b:?}:\n{e}");
            }
        }
    }
    // The place-and-route wrapper lints clean too.
    let w = tessera_rtl::fpga::fmax_wrapper(PeType::Bf16, 3, 2).to_verilog();
    std::fs::write(dir.join("tessera_fmax_top.v"), w).unwrap();
    let mut files = write_files(&dir, &array_sources(&arch(3, 2, 2)).unwrap());
    files.push("tessera_fmax_top.v".to_string());
    if let Err(e) = verilator_lint(&dir, "tessera_fmax_top", &files) {
        panic!("wrapper:\n{e}");
    }
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

/// Element type, array (rows, cols, stages), fold (m, k, n), A and W bits.
type CaseInput = (
    PeType,
    (u32, u32, u32),
    (usize, usize, usize),
    Vec<u16>,
    Vec<u16>,
);

/// Random element type, array (2x2 to 16x16), pipeline depth, fold shape and values.
fn cases() -> impl Strategy<Value = CaseInput> {
    (
        prop::sample::select(PeType::ALL.to_vec()),
        2u32..=16,
        2u32..=16,
        1u32..=6,
    )
        .prop_flat_map(|(ty, r, c, p)| {
            (
                Just(ty),
                Just((r, c, p)),
                1usize..=12,
                1usize..=r as usize,
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
    #![proptest_config(ProptestConfig::with_cases(10))]

    #[test]
    fn iverilog_matches_the_simulator_bit_for_bit_and_cycle_for_cycle(
        (ty, arr, mkn, av, wv) in cases()
    ) {
        if !tool("iverilog") {
            return Ok(());
        }
        let dir = scratch(&format!("iv-{}-{arr:?}-{mkn:?}", ty.name()).replace([' ', '(', ')', ','], ""));
        let c = case(ty, arr, mkn, av, wv);
        let out = run_iverilog(&dir, &c.design, &c.tb);
        prop_assert_eq!(out.trim(), format!("PASS cycles={}", c.cycles));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Vectors whose exact results exercise one corner each: rounding ties,
/// cancellation to zero and to subnormals, overflow to infinity, subnormal
/// products, and the special values.
fn bf16_corners() -> (Vec<u16>, Vec<u16>) {
    // A is 6 x 4, W is 4 x 4 (column j gets the j-th pattern of weights).
    let a = vec![
        0x3f80, 0x3f80, 0x3f80, 0x3f80, // 1, 1, 1, 1
        0x4b80, 0x3f80, 0xcb80, 0x3f80, // 2^24, 1, -2^24, 1: ties and cancellation
        0x7f7f, 0x7f7f, 0x0000, 0x0000, // the largest finite twice: overflow
        0x0001, 0x0001, 0x8001, 0x0080, // subnormal inputs
        0x7f80, 0x0000, 0x3f80, 0xff80, // inf, 0, 1, -inf
        0x7fc0, 0x3f80, 0x3f80, 0x3f80, // NaN
    ];
    let w = vec![
        0x3f80, 0x3f81, 0x0001, 0xbf80, //
        0x3f80, 0x3380, 0x0080, 0x3f80, //
        0x3f80, 0x3f80, 0x8001, 0x3f81, //
        0x3f80, 0x3380, 0x3f80, 0xbf80, //
    ];
    (a, w)
}

#[test]
fn corners_and_mutated_pes_fail() {
    if !tool("iverilog") {
        return;
    }
    let dir = scratch("mutant");
    // int8: every product at its extreme: -128 * -128 summed over 8 rows still fits.
    let c = case(
        PeType::Int8,
        (8, 8, 2),
        (5, 8, 8),
        vec![0x80; 40],
        vec![0x80; 64],
    );
    assert_eq!(
        run_iverilog(&dir, &c.design, &c.tb).trim(),
        format!("PASS cycles={}", c.cycles)
    );
    let (a, w) = bf16_corners();
    let b = case(PeType::Bf16, (4, 4, 3), (6, 4, 4), a, w);
    assert_eq!(
        run_iverilog(&dir, &b.design, &b.tb).trim(),
        format!("PASS cycles={}", b.cycles)
    );
    // Flip one operator in each processing element: the co-simulation must fail.
    for (c, from, to) in [
        (&c, "s2_pin + {{16", "s2_pin - {{16"),
        (&b, "s6_g & (s6_st", "s6_g | (s6_st"),
        (&b, "s3_sp ^ s3_cs", "s3_sp & s3_cs"),
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
fn verilator_runs_the_same_testbench() {
    if !tool("verilator") {
        return;
    }
    let dir = scratch("verilator");
    let (av, wv) = bf16_corners();
    let Case { design, tb, cycles } = case(PeType::Bf16, (4, 4, 2), (6, 4, 4), av, wv);
    let mut files = vec!["tb.v".to_string()];
    std::fs::write(dir.join("tb.v"), tb).unwrap();
    files.extend(write_files(&dir, &design));
    let out = verilator_run(&dir, &files);
    assert!(
        out.lines().any(|l| l == format!("PASS cycles={cycles}")),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn synthesised_netlists_pass_the_same_testbench() {
    if !tool("yosys") || !tool("iverilog") {
        return;
    }
    let dir = scratch("postsynth");
    let av: Vec<u16> = (0..8 * 4).map(|i| (i * 53 % 256) as u16).collect();
    let wv: Vec<u16> = (0..4 * 4).map(|i| (i * 29 % 256) as u16).collect();
    let Case { design, tb, cycles } = case(PeType::Int8, (4, 4, 2), (8, 4, 4), av, wv);
    let files = write_files(&dir, &design);
    std::fs::write(dir.join("tb.v"), &tb).unwrap();
    for target in [Target::Generic, Target::Ice40] {
        let (stat, netlist) = (format!("stat_{target}.txt"), format!("netlist_{target}.v"));
        std::fs::write(
            dir.join("synth.ys"),
            yosys_script(
                target,
                &PeType::Int8.array_module(),
                &files,
                &stat,
                &netlist,
            ),
        )
        .unwrap();
        let out = Command::new("yosys")
            .args(["-q", "-s", "synth.ys"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "yosys {target}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let res = parse_stat(&std::fs::read_to_string(dir.join(&stat)).unwrap());
        // Weight and activation registers at least (Yosys merges redundant sign-extension bits).
        assert!(res.flip_flops >= 4 * 4 * 16, "{target}: {res:?}");
        if target == Target::Ice40 {
            assert!(res.luts > 0 && res.dsps == 0, "{target}: {res:?}");
        }
        let models = tessera::cosim::yosys_datdir().join(target.cell_models());
        let out = iverilog(
            &dir,
            &[
                "tb.v".to_string(),
                netlist.clone(),
                models.to_string_lossy().into_owned(),
            ],
        );
        assert!(
            out.lines().any(|l| l == format!("PASS cycles={cycles}")),
            "{target} netlist:\n{out}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The bf16 mantissa product on ECP5 hard multipliers: Yosys maps it to
/// `MULT18X18D` (one per processing element), and the mapped netlist, with
/// the primitive's model, passes the corner testbench; the same netlist with
/// one product bit flipped in the model fails it, so the DSP outputs are
/// really exercised.
#[test]
fn ecp5_dsp_products_pass_post_synthesis_simulation() {
    if !tool("yosys") || !tool("iverilog") {
        return;
    }
    let dir = scratch("dsp");
    let (av, wv) = bf16_corners();
    // The smallest array keeps the ECP5 synthesis short.
    let (av, wv) = (av[..12].to_vec(), wv[..4].to_vec());
    let Case { design, tb, cycles } = case(PeType::Bf16, (2, 2, 1), (6, 2, 2), av, wv);
    let files = write_files(&dir, &design);
    std::fs::write(dir.join("tb.v"), &tb).unwrap();
    let (stat, netlist) = ("stat.txt".to_string(), "netlist.v".to_string());
    let script = yosys_script(
        Target::Ecp5,
        &PeType::Bf16.array_module(),
        &files,
        &stat,
        &netlist,
    );
    std::fs::write(dir.join("synth.ys"), script).unwrap();
    let out = Command::new("yosys")
        .args(["-q", "-s", "synth.ys"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "yosys:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res = parse_stat(&std::fs::read_to_string(dir.join(&stat)).unwrap());
    assert_eq!(res.dsps, 4, "one MULT18X18D per PE: {res:?}");
    let models = tessera::cosim::yosys_datdir().join(Target::Ecp5.cell_models());
    let extra = cell_models_extra(Target::Ecp5);
    assert_eq!(extra.len(), 1);
    let (name, model) = &extra[0];
    let flipped = model.replace("= prod[35:0];", "= prod[35:0] ^ 36'd8;");
    assert_ne!(&flipped, model, "the mutation must apply");
    for (text, verdict) in [(model, "PASS"), (&flipped, "FAIL")] {
        std::fs::write(dir.join(name), text).unwrap();
        let out = iverilog(
            &dir,
            &[
                "tb.v".to_string(),
                netlist.clone(),
                name.to_string(),
                models.to_string_lossy().into_owned(),
            ],
        );
        let pass = out.lines().any(|l| l == format!("PASS cycles={cycles}"));
        assert_eq!(pass, verdict == "PASS", "{verdict} expected:\n{out}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tessera_rtl_runs_the_whole_flow_through_place_and_route() {
    if !tool("iverilog") || !tool("yosys") || !tool("nextpnr-ice40") {
        return;
    }
    let dir = scratch("flow");
    let mut spec = arch(2, 2, 2).spec().clone();
    spec.array.input_types = vec![tessera_isa::DType::Int8];
    let toml = dir.join("hw.toml");
    std::fs::write(&toml, Arch::new(spec).unwrap().to_toml()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["rtl", "--hw"])
        .arg(&toml)
        .arg("--out")
        .arg(dir.join("out"))
        .args(["--target", "ice40", "--freq", "50", "--vector-unit", "skip"])
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
    for stage in [
        "rtl_simulation",
        "synthesis",
        "post_synthesis_simulation",
        "place_and_route",
    ] {
        assert_eq!(a[stage]["status"], "passed", "{stage}: {a}");
    }
    let fmax = a["fmax_mhz"].as_f64().unwrap();
    assert!(fmax > 20.0 && fmax < 1000.0, "{fmax}");
    assert!(a["resources"]["luts"].as_u64().unwrap() > 0, "{a}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fold sequence's design (only `ty`'s files), testbench on the timing
/// model's schedule, the schedule itself, and the model's cycles.
struct Sequence {
    design: Vec<(String, String)>,
    folds: Vec<ScheduledFold>,
    shape: ArrayShape,
    cycles: u64,
}

fn sequence(
    ty: PeType,
    (rows, cols, stages): (u32, u32, u32),
    buffering: Buffering,
    folds: Vec<tessera::cosim::FoldInput>,
) -> Sequence {
    let a = buffered_arch(rows, cols, stages, buffering);
    let (folds, cycles) = tessera::cosim::fold_sequence(&a, ty, folds).unwrap();
    let shape = ArrayShape {
        rows: rows as usize,
        cols: cols as usize,
        stages: stages as usize,
    };
    assert_eq!(
        cycles,
        sequence_cycles(shape, &folds) as u64,
        "the timing model's region ends with the last compute"
    );
    let design = array_sources(&a)
        .unwrap()
        .into_iter()
        .filter(|(name, _)| name.ends_with(&format!("_{}.v", ty.name())))
        .collect();
    Sequence {
        design,
        folds,
        shape,
        cycles,
    }
}

impl Sequence {
    fn run(&self, dir: &Path, ty: PeType, buffering: Buffering) -> String {
        let tb = sequence_testbench(self.shape, ty, buffering, &self.folds).unwrap();
        run_iverilog(dir, &self.design, &tb)
    }
}

/// Deterministic distinct-ish values for a fold.
fn pattern(ty: PeType, len: usize, seed: usize) -> Vec<u16> {
    (0..len)
        .map(|i| {
            let x = (i * 37 + seed * 101 + 11) % 251;
            match ty {
                PeType::Int8 => x as u16,
                // Sign, exponent 124..131, fraction.
                PeType::Bf16 => {
                    ((x as u16 & 1) << 15) | ((124 + (x as u16 % 8)) << 7) | (x as u16 & 0x7f)
                }
            }
        })
        .collect()
}

fn folds_of(ty: PeType, shapes: &[(usize, usize, usize)]) -> Vec<tessera::cosim::FoldInput> {
    shapes
        .iter()
        .enumerate()
        .map(|(f, &(m, k, n))| {
            (
                (m, k, n),
                pattern(ty, m * k, 2 * f),
                pattern(ty, k * n, 2 * f + 1),
            )
        })
        .collect()
}

#[test]
fn fold_sequences_match_the_simulator_with_single_and_double_buffered_weights() {
    if !tool("iverilog") {
        return;
    }
    let dir = scratch("seq");
    for (ty, arr, shapes) in [
        // M small against R (the preload waits for the wavefront) and large.
        (
            PeType::Int8,
            (8, 8, 1),
            vec![(2, 8, 8), (1, 8, 8), (3, 5, 7), (16, 8, 8), (4, 8, 8)],
        ),
        (
            PeType::Int8,
            (4, 6, 2),
            vec![(16, 4, 6), (2, 3, 6), (1, 4, 1), (9, 4, 6)],
        ),
        (
            PeType::Int8,
            (5, 3, 3),
            vec![(1, 5, 3), (1, 5, 3), (12, 2, 2)],
        ),
        (
            PeType::Bf16,
            (4, 4, 1),
            vec![(3, 4, 4), (12, 4, 4), (1, 2, 3)],
        ),
        (
            PeType::Bf16,
            (3, 5, 3),
            vec![(2, 3, 5), (2, 3, 5), (8, 1, 5)],
        ),
    ] {
        for buffering in [Buffering::Single, Buffering::Double] {
            let s = sequence(ty, arr, buffering, folds_of(ty, &shapes));
            let out = s.run(&dir, ty, buffering);
            assert_eq!(
                out.trim(),
                format!("PASS cycles={}", s.cycles),
                "{ty:?} {arr:?} {buffering:?} {shapes:?}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `folds` on `s`'s design; true when the testbench passes.
fn passes(dir: &Path, s: &Sequence, ty: PeType, folds: &[ScheduledFold]) -> bool {
    let tb = sequence_testbench(s.shape, ty, Buffering::Double, folds).unwrap();
    let out = run_iverilog(dir, &s.design, &tb);
    assert!(out.contains("PASS") || out.contains("FAIL"), "{out}");
    !out.contains("FAIL")
}

#[test]
fn double_buffered_bounds_are_tight_and_mutated_pes_fail() {
    if !tool("iverilog") {
        return;
    }
    let dir = scratch("seq-mutant");
    for (ty, arr) in [
        (PeType::Int8, (4, 4, 1)),
        (PeType::Bf16, (3, 4, 2)),
        (PeType::Int8, (3, 3, 3)),
    ] {
        let (r, c, p) = (arr.0 as usize, arr.1 as usize, arr.2 as usize);
        let shapes = [(16, r, c), (1, r, c), (1, r, c), (6, r, c), (2, r, c)];
        let s = sequence(ty, arr, Buffering::Double, folds_of(ty, &shapes));
        assert!(passes(&dir, &s, ty, &s.folds), "{ty:?} {arr:?}");
        // docs/timing.md: a preload may start (P - 2)^+ (R - 1) cycles after
        // the previous compute, a compute 1 + (2 - P)^+ (R - 1) cycles after
        // its preload. Move every preload (compute) whose move keeps the
        // schedule well-formed to exactly that bound (passes, whatever
        // slack the model's issue slots left) and one cycle before it (fails).
        let (trail, lag) = (
            p.saturating_sub(2) * (r - 1),
            1 + (2usize.saturating_sub(p)) * (r - 1),
        );
        for (what, bound) in [("preload", 0), ("compute", 1)] {
            let mut moved = 0;
            let (mut tight, mut early) = (s.folds.clone(), s.folds.clone());
            for f in 1..s.folds.len() {
                let (prev, cur) = (&s.folds[f - 1], &s.folds[f]);
                if bound == 0 {
                    let b = prev.compute_at + trail;
                    assert!(
                        cur.preload_at >= b,
                        "{ty:?} {arr:?}: the model beats the hardware"
                    );
                    if b > prev.preload_at + r && b <= cur.preload_at {
                        tight[f].preload_at = b;
                        early[f].preload_at = b - 1;
                        moved += 1;
                    }
                } else {
                    let b = cur.preload_at + lag;
                    assert!(
                        cur.compute_at >= b,
                        "{ty:?} {arr:?}: the model beats the hardware"
                    );
                    if b > prev.compute_at + prev.case.m && b <= cur.compute_at {
                        tight[f].compute_at = b;
                        early[f].compute_at = b - 1;
                        moved += 1;
                    }
                }
            }
            assert!(moved > 0, "{ty:?} {arr:?}: no {what} to move");
            assert!(
                passes(&dir, &s, ty, &tight),
                "{ty:?} {arr:?}: a {what} at the bound failed"
            );
            assert!(
                !passes(&dir, &s, ty, &early),
                "{ty:?} {arr:?}: an early {what} passed"
            );
        }
        // Processing elements that switch or latch at the wrong time must fail.
        for (from, to) in [
            // Switch one cycle late: the first row uses the old weight.
            ("prop_in ? w_sh : w_act", "w_act"),
            // A tag one cycle per row: every row latches row 0's weight.
            ("w_tag_out <= w_tag_mid;", "w_tag_out <= w_tag_in;"),
            // A shadow that takes every weight passing by (a shift chain).
            ("if (w_tag_in) w_sh <= w_in;", "w_sh <= w_in;"),
        ] {
            let mut mutant = s.design.clone();
            mutant[0].1 = s.design[0].1.replace(from, to);
            assert_ne!(mutant, s.design, "the mutation {from} -> {to} must apply");
            let tb = sequence_testbench(s.shape, ty, Buffering::Double, &s.folds).unwrap();
            let out = run_iverilog(&dir, &mutant, &tb);
            assert!(
                out.contains("FAIL"),
                "{ty:?} {arr:?}: {from} -> {to} passed:\n{out}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Element type, array (rows, cols, stages) and fold shapes (m, k, n).
type SequenceInput = (PeType, (u32, u32, u32), Vec<(usize, usize, usize)>);

/// Random element type, array (2x2 to 8x8), pipeline depth 1..3 and 2 to 4 folds.
fn sequences() -> impl Strategy<Value = SequenceInput> {
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
                prop::collection::vec((1usize..=16, 1..=r as usize, 1..=c as usize), 2..=4),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn double_buffered_sequences_match_the_simulator((ty, arr, shapes) in sequences(), seed in 0usize..1000) {
        if !tool("iverilog") {
            return Ok(());
        }
        let dir = scratch(&format!("seqp-{seed}"));
        let folds = shapes
            .iter()
            .enumerate()
            .map(|(f, &(m, k, n))| ((m, k, n), pattern(ty, m * k, seed + 2 * f), pattern(ty, k * n, seed + 2 * f + 1)))
            .collect();
        let s = sequence(ty, arr, Buffering::Double, folds);
        let out = s.run(&dir, ty, Buffering::Double);
        prop_assert_eq!(out.trim(), format!("PASS cycles={}", s.cycles));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
