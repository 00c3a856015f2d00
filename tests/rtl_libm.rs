//! The special-function lane's `libm` graphs ([`tessera_rtl::libm_graphs`])
//! against the simulator: the Rust interpreter of each graph must give
//! `tessera_sim::numerics` bit for bit (NaN by class: the ISA fixes no
//! payload) on every fp32 special, every branch threshold of the
//! transcribed routines +-2 ulps, and 2^16 random bit patterns per
//! operation through the whole datapath; each routine alone must give the
//! `libm` function it transcribes on 2^20 random patterns and the same
//! specials and thresholds. This proves the transcription;
//! `tests/rtl_vector.rs` then proves the Verilog of the same graphs on the
//! same kind of vectors.

use tessera_isa::field::{VecBinOp, VecUnOp};
use tessera_rtl::fp32_graph::{Graph, Val};
use tessera_rtl::libm_graphs::{self, libm_lane, BRANCH_THRESHOLDS, LIBM_OPS};
use tessera_rtl::vec_op::VecOp;
use tessera_sim::numerics;

/// fp32 specials: signed zeros, subnormals, the smallest and largest
/// normals, infinities, NaNs of several payloads, and small integers.
const SPECIALS: [u32; 22] = [
    0x0000_0000,
    0x8000_0000,
    0x0000_0001,
    0x8000_0001,
    0x007f_ffff,
    0x807f_ffff,
    0x0080_0000,
    0x8080_0000,
    0x7f7f_ffff,
    0xff7f_ffff,
    0x7f80_0000,
    0xff80_0000,
    0x7fc0_0000,
    0xffc0_0000,
    0x7f80_0001,
    0xffc0_1234,
    0x3f80_0000,
    0xbf80_0000,
    0x4000_0000,
    0xc000_0000,
    0x3f00_0000,
    0xbf00_0000,
];

/// xorshift64*.
struct Rng(u64);
impl Rng {
    fn bits(&mut self) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }
}

fn same(got: u32, want: u32) -> bool {
    let (g, w) = (f32::from_bits(got), f32::from_bits(want));
    if w.is_nan() {
        g.is_nan()
    } else {
        got == want
    }
}

fn simulator(op: VecOp, a: u32, b: u32) -> u32 {
    let (a, b) = (f32::from_bits(a), f32::from_bits(b));
    match op {
        VecOp::Un(o) => numerics::unary(o, a),
        VecOp::Bin(o) => numerics::binary(o, a, b),
        VecOp::Axpby | VecOp::Sel => unreachable!("not a libm operation"),
    }
    .to_bits()
}

/// The operands every operation is checked on: specials, thresholds +-2
/// ulps of both signs, and `random` random patterns (half of them with a
/// small exponent, where the routines' polynomials work).
fn operands(random: usize, seed: u64) -> Vec<u32> {
    let mut v: Vec<u32> = SPECIALS.to_vec();
    for t in BRANCH_THRESHOLDS {
        for d in -2i32..=2 {
            let x = t.wrapping_add(d as u32);
            v.extend([x, x | 0x8000_0000]);
        }
    }
    let mut rng = Rng(seed | 1);
    for i in 0..random {
        let r = rng.bits();
        v.push(if i % 2 == 0 {
            r
        } else {
            // Exponents 2^-30 .. 2^8.
            (r & 0x807f_ffff) | ((97 + (r >> 23) % 39) << 23)
        });
    }
    v
}

/// Checks `op` on `xs` (as `a`, `b` from `bs`); returns how many were checked.
fn check(op: VecOp, xs: &[u32], bs: &[u32]) -> usize {
    let (g, out) = libm_lane();
    let mut vals = Vec::new();
    let inputs = |a: u32, b: u32| [u32::from(op.opcode()), op.code(), a, b];
    let mut bad = Vec::new();
    for (i, &a) in xs.iter().enumerate() {
        let b = bs[i % bs.len()];
        let got = g.eval_with(&inputs(a, b), out, &mut vals);
        let want = simulator(op, a, b);
        if !same(got, want) && bad.len() < 10 {
            bad.push(format!(
                "{a:08x} {b:08x}: graph {got:08x}, simulator {want:08x}"
            ));
        }
    }
    assert!(bad.is_empty(), "{}:\n{}", op.name(), bad.join("\n"));
    xs.len()
}

#[test]
fn every_libm_graph_matches_the_simulator_bit_for_bit() {
    let mut total = 0;
    for op in LIBM_OPS {
        // Each routine alone takes 2^20 ([`each_routine_matches_libm_bit_for_bit`]).
        let n = 1 << 16;
        total += check(op, &operands(n, op.code().into()), &[0]);
    }
    assert!(total > LIBM_OPS.len() << 16);
}

/// Each routine alone against the `libm` function it transcribes (expm1f
/// over its whole domain, beyond what tanhf asks of it).
#[test]
fn each_routine_matches_libm_bit_for_bit() {
    type Routine = fn(&mut Graph, Val) -> Val;
    type Reference = fn(f32) -> f32;
    let cases: [(&str, Routine, Reference); 5] = [
        ("expf", libm_graphs::expf, libm::expf),
        ("logf", libm_graphs::logf, libm::logf),
        ("expm1f", libm_graphs::expm1f, libm::expm1f),
        ("tanhf", libm_graphs::tanhf, libm::tanhf),
        ("erfcf", libm_graphs::erfcf, libm::erfcf),
    ];
    for (i, (name, f, reference)) in cases.into_iter().enumerate() {
        let (g, out) = libm_graphs::routine(f);
        let mut vals = Vec::new();
        let mut bad = Vec::new();
        for x in operands(1 << 20, 0x51 + i as u64) {
            let got = g.eval_with(&[x], out, &mut vals);
            let want = reference(f32::from_bits(x)).to_bits();
            if !same(got, want) && bad.len() < 10 {
                bad.push(format!("{x:08x}: graph {got:08x}, libm {want:08x}"));
            }
        }
        assert!(bad.is_empty(), "{name}:\n{}", bad.join("\n"));
    }
}

#[test]
fn other_operations_give_zero_from_the_libm_datapath() {
    let (g, out) = libm_lane();
    for op in [VecOp::Un(VecUnOp::Sqrt), VecOp::Bin(VecBinOp::Add)] {
        let got = g.eval(
            &[u32::from(op.opcode()), op.code(), 0x3f80_0000, 0x3f80_0000],
            out,
        );
        assert_eq!(got, 0, "{}", op.name());
    }
}
