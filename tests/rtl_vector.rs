//! The vector unit's RTL against the simulator: lane vectors and reduction
//! steps whose expected results come from `tessera_sim::numerics` run on
//! the generated lane, reduction lane and widening conversion under Icarus
//! Verilog (and once under Verilator); every result must be bit-exact (NaN
//! by class). Directed corners (every pair of specials through every
//! operation, every 8-bit pattern read back), a property test of random
//! vectors, mutated datapaths that must fail, `verilator --lint-only -Wall`
//! of the unit at several sizes and latencies, and the refusal of
//! operations the lane does not build.
//!
//! Tests that need a tool say so and pass when it is missing, unless
//! `TESSERA_REQUIRE_TOOLS=1` (set by `scripts/test.sh`, hence by CI).

use proptest::prelude::*;
use tessera::vec_vectors::{
    corner_vectors, lane_vector, libm_vectors, random_vectors, sampled_corners, vector_files,
    VectorSet,
};
use tessera_isa::field::{VecBinOp, VecUnOp};
use tessera_isa::{Arch, DType};
use tessera_rtl::libm_graphs::LIBM_OPS;
use tessera_rtl::vec_op::VecOp;
use tessera_rtl::vec_tb::vec_testbench;
use tessera_rtl::vec_unit::VEC_UNIT;

mod hdl;
use hdl::{iverilog_files, scratch, tool, verilator_lint, verilator_run, write_files};

/// A hardware description with `lanes` vector lanes of `latency` cycles.
fn arch(lanes: u32, latency: u32) -> Arch {
    let mut spec = Arch::preset("fpga-8x8").unwrap().spec().clone();
    spec.name = format!("vec-{lanes}-l{latency}");
    spec.vector.lanes = lanes;
    spec.vector.special_lanes = 1;
    spec.vector.latency_cycles = latency;
    Arch::new(spec).unwrap()
}

fn pass(set: &VectorSet) -> String {
    format!(
        "PASS vectors={} reductions={}",
        set.lanes.len(),
        set.steps.len()
    )
}

/// Checks `set` on the lane of `arch` under Icarus Verilog.
fn check(name: &str, arch: &Arch, set: &VectorSet) {
    if !tool("iverilog") {
        return;
    }
    let dir = scratch(name);
    let out = iverilog_files(&dir, &vector_files(arch, set).unwrap());
    assert_eq!(out.trim(), pass(set), "{name}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The directed corners under Icarus, the libm operations' aside: they run
/// at about 40 vectors a second under Icarus, so their specials and
/// thresholds run here in [`libm_operations_are_bit_exact`] and all their
/// corners under Verilator.
#[test]
fn directed_corners_are_bit_exact() {
    let mut set = corner_vectors();
    set.lanes.retain(|v| !LIBM_OPS.contains(&v.op));
    check("corners", &arch(4, 4), &set);
}

/// Every built libm operation on the specials, its routines' branch
/// thresholds and 32 random operands each under Icarus Verilog (about 40
/// vectors a second through the libm datapath); Verilator runs thousands
/// ([`verilator_runs_the_testbench_and_the_libm_vectors`]).
#[test]
fn libm_operations_are_bit_exact() {
    check("libm", &arch(4, 3), &libm_vectors(11, 32));
}

/// Under Verilator, one build: the directed corners and random vectors of
/// every built operation, and every built libm operation on 3000 random
/// operands each (and the specials and thresholds).
#[test]
fn verilator_runs_the_testbench_and_the_libm_vectors() {
    if !tool("verilator") {
        return;
    }
    let dir = scratch("verilator");
    let mut set = corner_vectors();
    set.extend(random_vectors(7, 16, 32));
    set.extend(libm_vectors(13, 3000));
    let names = write_files(&dir, &vector_files(&arch(4, 3), &set).unwrap());
    let out = verilator_run(&dir, &names);
    assert!(out.lines().any(|l| l == pass(&set)), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]
    #[test]
    fn random_vectors_are_bit_exact(seed in any::<u64>(), latency in 1u32..6) {
        // The libm operations' random operands run under Verilator
        // (`verilator_runs_the_testbench_and_the_libm_vectors`), their
        // specials and thresholds under Icarus too (`libm_operations_are_bit_exact`).
        let mut set = random_vectors(seed, 24, 40);
        set.lanes.retain(|v| !LIBM_OPS.contains(&v.op));
        check("random", &arch(8, latency), &set);
    }
}

#[test]
fn mutated_datapaths_fail() {
    if !tool("iverilog") {
        return;
    }
    let dir = scratch("mutant");
    let a = arch(4, 2);
    // Every third special in pairs and some random vectors: quicker than
    // the full corners.
    let mut set = sampled_corners(3);
    set.extend(random_vectors(3, 16, 32));
    // The libm datapath has its own mutants (`mutated_libm_datapaths_fail`)
    // and is slow under Icarus; these mutants do not touch it.
    set.lanes.retain(|v| !LIBM_OPS.contains(&v.op));
    for (file, from, to) in [
        // max returns the NaN when its first operand is NaN.
        ("tessera_fp32_cmp.v", "(x_nan | lt) ? y : x", "lt ? y : x"),
        // min returns its first operand of two equal zeros.
        (
            "tessera_fp32_cmp.v",
            "(y_nan | lt) ? x : y",
            "(y_nan | lt | eq) ? x : y",
        ),
        // The multiplier rounds up on every guard bit (no ties to even).
        ("tessera_fp32_mul.v", "g & (st | w[74])", "g"),
        // The multiplier drops its sticky bit.
        ("tessera_fp32_mul.v", "w[72:0] != 73'd0", "1'b0"),
        // e4m3 does not saturate finite overflow.
        (
            "tessera_vec_narrow.v",
            "(xinf | fp8_e4m3_ovf) ? 7'h7e",
            "xinf ? 7'h7e",
        ),
        // int8 wraps instead of saturating positive values.
        (
            "tessera_vec_narrow.v",
            "(i_big || i_mag > 32'd127) ? 8'h7f",
            "i_big ? 8'h7f",
        ),
        // fp16 subnormals read without dropping the leading one.
        (
            "tessera_vec_widen.v",
            "fp16_f << (fp16_lz + 4'd1)",
            "fp16_f << fp16_lz",
        ),
        // int32 beyond 2^24 read by truncation.
        (
            "tessera_vec_widen.v",
            "v_n[7] & (v_n[6:0] != 7'd0 | v_n[8])",
            "1'b0",
        ),
        // relu keeps -0.
        (
            "tessera_vec_lane.v",
            "(a[31] && !a_nan) ? 32'd0 : a",
            "(a[31] && !a_nan && a[30:0] != 31'd0) ? 32'd0 : a",
        ),
        // The divider drops the remainder's sticky bit.
        ("tessera_fp32_div.v", "s25 != 26'd0", "1'b0"),
        // The square root drops the remainder's sticky bit.
        ("tessera_fp32_sqrt.v", "r26 != 28'd0", "1'b0"),
        // rsqrt divides by a instead of its root.
        ("tessera_vec_special.v", "is_v_un_rsqrt ? root : a", "a"),
        // sumsq adds the element, not its square.
        ("tessera_vec_reduce.v", "? sq : x", "? x : x"),
    ] {
        let mut files = vector_files(&a, &set).unwrap();
        let f = files.iter_mut().find(|(n, _)| n == file).unwrap();
        let mutated = f.1.replace(from, to);
        assert_ne!(mutated, f.1, "the mutation {from} -> {to} must apply");
        f.1 = mutated;
        let out = iverilog_files(&dir, &files);
        assert!(
            out.contains("FAIL"),
            "a mutated datapath ({from} -> {to}) passed:\n{out}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mutated_libm_datapaths_fail() {
    if !tool("iverilog") {
        return;
    }
    let dir = scratch("libm-mutant");
    // Each mutant runs on the specials and thresholds of the operation it
    // breaks: about 40 vectors a second under Icarus.
    let set = libm_vectors(5, 0);
    let only = |op: VecUnOp| {
        let mut s = set.clone();
        s.lanes.retain(|v| v.op == VecOp::Un(op));
        s
    };
    for (file, from, to, op) in [
        // expf's P2 with one coefficient bit flipped.
        (
            "tessera_vec_libm.v",
            "= 32'hbb355215;",
            "= 32'hbb255215;",
            VecUnOp::Exp,
        ),
        // expf's NaN test one off: hx > 0x7f800000 as hx >= 0x7f800000 (-inf returns itself).
        (
            "tessera_vec_libm.v",
            "= 32'h7f800000;",
            "= 32'h7f7fffff;",
            VecUnOp::Exp,
        ),
        // logf scales subnormals by 2^24 instead of 2^25.
        (
            "tessera_vec_libm.v",
            "= 32'h4c000000;",
            "= 32'h4b800000;",
            VecUnOp::Log,
        ),
        // expm1f's Q1 with one coefficient bit flipped.
        (
            "tessera_vec_libm.v",
            "= 32'hbd088868;",
            "= 32'hbd098868;",
            VecUnOp::Tanh,
        ),
        // erfcf's erfc2 coefficient RA3 with one bit flipped.
        (
            "tessera_vec_libm.v",
            "= 32'hc2798057;",
            "= 32'hc2788057;",
            VecUnOp::GeluErf,
        ),
        // An adder that truncates instead of rounding to nearest even.
        (
            "tessera_fp32_add.v",
            "wire up = n[2] & (n[1] | n[0] | n[3]);",
            "wire up = 1'b0;",
            VecUnOp::GeluTanh,
        ),
    ] {
        let set = only(op);
        let mut files = vector_files(&arch(2, 2), &set).unwrap();
        let f = files.iter_mut().find(|(n, _)| n == file).unwrap();
        let mutated = f.1.replace(from, to);
        assert_ne!(mutated, f.1, "the mutation {from} -> {to} must apply");
        f.1 = mutated;
        let out = iverilog_files(&dir, &files);
        assert!(
            out.contains("FAIL"),
            "a mutated datapath ({from} -> {to}) passed:\n{out}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verilator_lints_the_unit_clean() {
    if !tool("verilator") {
        return;
    }
    let dir = scratch("lint");
    for (lanes, latency) in [(1, 1), (4, 2), (16, 8), (8, 3)] {
        let files = tessera_rtl::vec_unit::vec_sources(&arch(lanes, latency));
        let names = write_files(&dir, &files);
        if let Err(e) = verilator_lint(&dir, VEC_UNIT, &names) {
            panic!("{lanes} lanes, latency {latency}:\n{e}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Operations the lane does not build are refused, naming the operation.
#[test]
fn unbuilt_operations_are_refused_by_name() {
    let refused: Vec<VecOp> = VecOp::all()
        .into_iter()
        .filter(|o| o.lane_support().is_err())
        .collect();
    assert_eq!(refused, [VecOp::Bin(VecBinOp::Pow)]);
    for op in refused {
        let name = op.name();
        let v = lane_vector(op, DType::Fp32, [0x3f80_0000; 5], (DType::Fp32, 0));
        let err = vec_testbench(&[v], &[], 1).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{name}: ")), "{err}");
        assert!(!err.contains('\n') && !err.ends_with('.'), "{err}");
    }
}
