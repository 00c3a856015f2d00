//! The generated int8 array against the simulator: Verilator lints it
//! (`-Wall`, no waivers), and Icarus Verilog (and once Verilator) run
//! testbenches whose vectors and expected results come from the functional
//! simulator; results must be bit-exact and the cycle count must equal the
//! timing model's. A mutated processing element must fail. Yosys netlists
//! (generic gates and iCE40 cells) pass the same testbench after synthesis.
//!
//! Tests that need a tool say so and pass when it is missing, unless
//! `TESSERA_REQUIRE_TOOLS=1` (set by `scripts/test.sh`, hence by CI).

use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use tessera_isa::Arch;
use tessera_rtl::array::{array_sources, ARRAY};
use tessera_rtl::fpga::{parse_stat, yosys_script, Target};
use tessera_rtl::testbench::fold_testbench;

fn tool(name: &str) -> bool {
    let found = Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        || Command::new(name).arg("-V").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("TESSERA_REQUIRE_TOOLS").is_none(),
            "{name} is required (TESSERA_REQUIRE_TOOLS is set) but not installed; run scripts/test.sh"
        );
        eprintln!("skipped: {name} is not installed");
    }
    found
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tessera-rtl-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn arch(rows: u32, cols: u32) -> Arch {
    let mut spec = Arch::preset("fpga-8x8").unwrap().spec().clone();
    spec.name = format!("rtl-{rows}x{cols}");
    spec.array.rows = rows;
    spec.array.cols = cols;
    spec.array.double_buffered_weights = false;
    spec.scratchpad.size_kib = 256;
    Arch::new(spec).unwrap()
}

/// Writes the design files, returning their names.
fn write_design(dir: &Path, design: &[(String, String)]) -> Vec<String> {
    for (name, text) in design {
        std::fs::write(dir.join(name), text).unwrap();
    }
    design.iter().map(|(n, _)| n.clone()).collect()
}

/// Compiles `sources` (relative to `dir`) with Icarus Verilog, runs the
/// result, and returns its stdout.
fn iverilog(dir: &Path, sources: &[String]) -> String {
    let out = Command::new("iverilog")
        .args([
            "-g2005",
            "-Wall",
            "-DNO_ICE40_DEFAULT_ASSIGNMENTS",
            "-o",
            "sim.vvp",
        ])
        .args(sources)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "iverilog {sources:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new("vvp")
        .args(["-n", "sim.vvp"])
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&run.stdout).into_owned()
}

/// Writes design and testbench, runs Icarus Verilog, returns stdout.
fn run_iverilog(dir: &Path, design: &[(String, String)], tb: &str) -> String {
    std::fs::write(dir.join("tb.v"), tb).unwrap();
    let mut sources = vec!["tb.v".to_string()];
    sources.extend(write_design(dir, design));
    iverilog(dir, &sources)
}

fn case(
    rows: u32,
    cols: u32,
    m: usize,
    k: usize,
    n: usize,
    av: Vec<i8>,
    wv: Vec<i8>,
) -> (Vec<(String, String)>, String, u64) {
    let a = arch(rows, cols);
    let (fold, cycles) = tessera::cosim::fold(&a, m, k, n, av, wv).unwrap();
    let tb = fold_testbench(rows as usize, cols as usize, &fold).unwrap();
    (array_sources(&a).unwrap(), tb, cycles)
}

#[test]
fn verilator_lints_every_array_size_clean() {
    if !tool("verilator") {
        return;
    }
    let dir = scratch("lint");
    for (r, c) in [(2, 2), (4, 4), (8, 8), (16, 16), (3, 5)] {
        let files = write_design(&dir, &array_sources(&arch(r, c)).unwrap());
        let out = Command::new("verilator")
            .args(["--lint-only", "-Wall", "--top-module", "tessera_array_int8"])
            .args(&files)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{r}x{c}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn int8() -> impl Strategy<Value = i8> {
    prop_oneof![1 => Just(-128i8), 1 => Just(127i8), 1 => Just(-1i8), 6 => any::<i8>()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn iverilog_matches_the_simulator_bit_for_bit_and_cycle_for_cycle(
        (rows, cols, m, k, n, av, wv) in (2u32..=16, 2u32..=16).prop_flat_map(|(r, c)| {
            (Just(r), Just(c), 1usize..=20, 1usize..=r as usize, 1usize..=c as usize)
        }).prop_flat_map(|(r, c, m, k, n)| {
            (Just(r), Just(c), Just(m), Just(k), Just(n), prop::collection::vec(int8(), m * k), prop::collection::vec(int8(), k * n))
        })
    ) {
        if !tool("iverilog") {
            return Ok(());
        }
        let dir = scratch(&format!("iv-{rows}x{cols}-{m}-{k}-{n}"));
        let (design, tb, cycles) = case(rows, cols, m, k, n, av, wv);
        let out = run_iverilog(&dir, &design, &tb);
        prop_assert_eq!(out.trim(), format!("PASS cycles={cycles}"));
        // The timing model's fold formula: 2R + C + M - 2.
        prop_assert_eq!(cycles, u64::from(2 * rows + cols) + m as u64 - 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn extremes_and_a_mutated_pe() {
    if !tool("iverilog") {
        return;
    }
    let dir = scratch("mutant");
    // Every product at its extreme: -128 * -128 summed over 8 rows still fits.
    let (design, tb, cycles) = case(8, 8, 5, 8, 8, vec![-128; 40], vec![-128; 64]);
    assert_eq!(
        run_iverilog(&dir, &design, &tb).trim(),
        format!("PASS cycles={cycles}")
    );
    // Flip one operator in the processing element: the co-simulation must fail.
    let mut mutant = design.clone();
    mutant[0].1 = design[0].1.replace(
        "p_out <= p_in + {{16{prod[15]}}, prod};",
        "p_out <= p_in - {{16{prod[15]}}, prod};",
    );
    assert_ne!(mutant, design, "the mutation must apply");
    let out = run_iverilog(&dir, &mutant, &tb);
    assert!(out.contains("FAIL"), "a mutated PE passed:\n{out}");
}

#[test]
fn verilator_runs_the_same_testbench() {
    if !tool("verilator") {
        return;
    }
    let dir = scratch("verilator");
    let av: Vec<i8> = (0..6 * 4).map(|i| (i * 37 % 256) as u8 as i8).collect();
    let wv: Vec<i8> = (0..4 * 4).map(|i| (i * 91 % 256) as u8 as i8).collect();
    let (design, tb, cycles) = case(4, 4, 6, 4, 4, av, wv);
    let files = write_design(&dir, &design);
    std::fs::write(dir.join("tb.v"), tb).unwrap();
    let build = Command::new("verilator")
        .args([
            "--binary",
            "--timing",
            "-Wno-fatal",
            "--top-module",
            "tb",
            "-Mdir",
            "obj",
            "tb.v",
        ])
        .args(&files)
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "verilator:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let run = Command::new(dir.join("obj/Vtb"))
        .current_dir(&dir)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
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
    let av: Vec<i8> = (0..8 * 4).map(|i| (i * 53 % 256) as u8 as i8).collect();
    let wv: Vec<i8> = (0..4 * 4).map(|i| (i * 29 % 256) as u8 as i8).collect();
    let (design, tb, cycles) = case(4, 4, 8, 4, 4, av, wv);
    let files = write_design(&dir, &design);
    std::fs::write(dir.join("tb.v"), &tb).unwrap();
    for target in [Target::Generic, Target::Ice40] {
        let (stat, netlist) = (format!("stat_{target}.txt"), format!("netlist_{target}.v"));
        std::fs::write(
            dir.join("synth.ys"),
            yosys_script(target, ARRAY, &files, &stat, &netlist),
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
