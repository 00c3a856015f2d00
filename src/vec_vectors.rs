//! Test vectors for the vector unit's RTL, with the results the functional
//! simulator's numerics (`tessera_sim::numerics`, the ISA's definition)
//! give: random operands weighted heavily towards specials (signed zeros,
//! infinities, NaNs of several payloads, subnormals, the largest and
//! smallest normals, each narrow type's boundaries and rounding midpoints,
//! short mantissas whose products tie, values that cancel), every
//! destination type, every built operation; and directed corners (every
//! pair of a list of specials through every binary operation).

use anyhow::Result;
use tessera_isa::field::{ReduceOp, VecUnOp};
use tessera_isa::{Arch, DType};
use tessera_rtl::libm_graphs::{BRANCH_THRESHOLDS, LIBM_OPS};
use tessera_rtl::vec_op::VecOp;
use tessera_rtl::vec_tb::vec_testbench;
use tessera_rtl::vec_tb::{LaneVector, ReduceStep, ReduceVector};
use tessera_rtl::vec_unit::vec_sources;
use tessera_sim::numerics;

/// Lane vectors and reduction steps for one testbench.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VectorSet {
    pub lanes: Vec<LaneVector>,
    pub steps: Vec<ReduceVector>,
}

impl VectorSet {
    /// Appends `other`'s vectors.
    pub fn extend(&mut self, other: VectorSet) {
        self.lanes.extend(other.lanes);
        self.steps.extend(other.steps);
    }
}

/// fp32 values that exercise rounding, overflow, saturation and classes.
pub const SPECIALS: [u32; 44] = [
    0x0000_0000, // +0
    0x8000_0000, // -0
    0x7f80_0000, // +inf
    0xff80_0000, // -inf
    0x7fc0_0000, // quiet NaN
    0xffc0_1234, // negative NaN with a payload
    0x7f80_0001, // signalling NaN
    0x0000_0001, // smallest subnormal
    0x8000_0001,
    0x007f_ffff, // largest subnormal
    0x0080_0000, // smallest normal
    0x7f7f_ffff, // largest finite
    0xff7f_ffff,
    0x3f80_0000, // 1
    0xbf80_0000, // -1
    0x3f80_0001, // 1 + ulp
    0x3f80_0800, // 1 + 2^-12: its square ties
    0x3fc0_0000, // 1.5
    0x3f00_0000, // 0.5
    0x4020_0000, // 2.5 (int tie to even)
    0x4060_0000, // 3.5
    0x42ff_0000, // 127.5
    0x4301_0000, // 129
    0xc301_0000, // -129
    0xc300_8000, // -128.5
    0x43e0_0000, // 448 (e4m3 max)
    0x43e8_0000, // 464 (e4m3 midpoint to overflow)
    0x43e8_0001,
    0x4760_0000, // 57344 (e5m2 max)
    0x4770_0000, // 61440 (e5m2 overflow midpoint)
    0x477f_e000, // 65504 (fp16 max)
    0x477f_f000, // 65520 (fp16 overflow midpoint)
    0x3380_0000, // 2^-24 (fp16 smallest subnormal)
    0x3300_0000, // 2^-25 (ties to zero in fp16)
    0x3340_0000, // 1.5 * 2^-25
    0x3b00_0000, // 2^-9 (e4m3 smallest subnormal)
    0x3a80_0000, // 2^-10 (ties to zero in e4m3)
    0x3780_0000, // 2^-16 (e5m2 smallest subnormal)
    0x4f00_0000, // 2^31
    0xcf00_0000, // -2^31
    0x4eff_ffff, // largest fp32 below 2^31
    0x3f7f_ff80, // rounds to 1 in bf16 (tie to even up)
    0x0040_0000, // subnormal, half the smallest normal
    0x1f80_0000, // 2^-64: squares to a subnormal
];

/// A small deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    /// The next 64 random bits.
    pub fn bits(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.bits() % n
    }

    /// An fp32 operand, often related to `other` (equal, negated, a few
    /// ulps away, scaled by a power of two) so sums cancel and tie.
    pub fn operand(&mut self, other: u32) -> u32 {
        let r = self.bits();
        match self.below(10) {
            0 | 1 => SPECIALS[self.below(SPECIALS.len() as u64) as usize],
            2 => (r as u32) & 0x807f_ffff, // subnormal
            3 => match self.below(4) {
                0 => other,
                1 => other ^ 0x8000_0000,
                2 => (other ^ 0x8000_0000).wrapping_add(self.below(5) as u32),
                _ => other.wrapping_sub(self.below(3) as u32 * 0x0080_0000),
            },
            4 | 5 => {
                // Short mantissas: products and sums tie exactly.
                let keep = self.below(14) as u32;
                let e = 100 + self.below(56) as u32;
                ((r as u32) & 0x8000_0000)
                    | (e << 23)
                    | ((r >> 32) as u32 & 0x007f_ffff & !((1u32 << (23 - keep)) - 1))
            }
            6 | 7 => {
                // A narrow type's value or a midpoint between two neighbours.
                let t = DType::ALL[self.below(7) as usize];
                let raw = (r as u32) & type_mask(t);
                let v = widen(t, raw);
                let next = widen(t, raw.wrapping_add(1) & type_mask(t));
                if self.below(2) == 0 && v.is_finite() && next.is_finite() {
                    ((f64::from(v) + f64::from(next)) / 2.0) as f32
                } else {
                    v
                }
                .to_bits()
            }
            _ => r as u32,
        }
    }
}

/// The mask of a type's bits in a 32-bit word.
fn type_mask(t: DType) -> u32 {
    match t.size_bytes() {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    }
}

/// `raw` (low bits) of type `t` read as fp32 by the simulator.
pub fn widen(t: DType, raw: u32) -> f32 {
    numerics::load(t, &raw.to_le_bytes())
}

/// `x` written as type `t` by the simulator, in the low bits.
pub fn narrow(t: DType, x: f32) -> u32 {
    let mut b = [0u8; 4];
    numerics::store(t, x, &mut b);
    u32::from_le_bytes(b) & type_mask(t)
}

/// The simulator's fp32 result of `op` (as `sim/src/functional.rs` applies it).
pub fn expected(op: VecOp, a: f32, b: f32, mask: f32, alpha: f32, beta: f32) -> f32 {
    match op {
        VecOp::Bin(o) => numerics::binary(o, a, b),
        VecOp::Un(o) => numerics::unary(o, a),
        // functional.rs: `al * a + be * b`, two rounded products and a rounded sum.
        VecOp::Axpby => alpha * a + beta * b,
        VecOp::Sel => {
            if mask != 0.0 {
                a
            } else {
                b
            }
        }
    }
}

/// The operands' lane vector with its expected results; `read` is the
/// read-side check riding along.
pub fn lane_vector(op: VecOp, ty: DType, ops: [u32; 5], read: (DType, u32)) -> LaneVector {
    let [a, b, mask, alpha, beta] = ops;
    let f = f32::from_bits;
    let y = expected(op, f(a), f(b), f(mask), f(alpha), f(beta));
    LaneVector {
        op,
        ty,
        a,
        b,
        mask,
        alpha,
        beta,
        y: y.to_bits(),
        w: narrow(ty, y),
        read_ty: read.0,
        raw: read.1,
        widened: widen(read.0, read.1).to_bits(),
    }
}

/// Every operation the lane builds.
pub fn built_ops() -> Vec<VecOp> {
    VecOp::all()
        .into_iter()
        .filter(|o| o.lane_support().is_ok())
        .collect()
}

/// The steps of one reduction of `xs` (at least one), combined with `old`
/// when given, and the accumulator the simulator has after each.
pub fn reduction(op: ReduceOp, xs: &[u32], old: Option<u32>) -> Vec<ReduceVector> {
    let mut acc = numerics::reduce_init(op);
    let mut out = Vec::new();
    for (i, &x) in xs.iter().enumerate() {
        acc = numerics::reduce_step(op, acc, f32::from_bits(x));
        out.push(ReduceVector {
            op,
            step: if i == 0 {
                ReduceStep::Start
            } else {
                ReduceStep::Step
            },
            x,
            acc: acc.to_bits(),
        });
    }
    if let Some(o) = old {
        acc = numerics::reduce_combine(op, f32::from_bits(o), acc);
        out.push(ReduceVector {
            op,
            step: ReduceStep::Combine,
            x: o,
            acc: acc.to_bits(),
        });
    }
    out
}

/// A random read-side check: a type and its raw bits (specials of the
/// type's own encoding come up through the raw bits' spread).
fn random_read(rng: &mut Rng) -> (DType, u32) {
    let t = DType::ALL[rng.below(7) as usize];
    let raw = match rng.below(4) {
        0 => rng.operand(0),
        _ => rng.bits() as u32,
    };
    (t, raw & type_mask(t))
}

/// `per_op` random vectors of every built operation (destination types in
/// turn) and `reductions` random reductions of 1..=8 elements.
pub fn random_vectors(seed: u64, per_op: usize, reductions: usize) -> VectorSet {
    let mut rng = Rng::new(seed);
    let mut set = VectorSet::default();
    let ops = built_ops();
    for i in 0..per_op {
        for &op in &ops {
            let a = rng.operand(0);
            let b = rng.operand(a);
            let mask = match rng.below(3) {
                0 => 0,
                1 => 0x8000_0000,
                _ => rng.operand(0),
            };
            let alpha = rng.operand(b);
            let beta = rng.operand(a);
            let ty = DType::ALL[(i + set.lanes.len()) % DType::ALL.len()];
            let read = random_read(&mut rng);
            set.lanes
                .push(lane_vector(op, ty, [a, b, mask, alpha, beta], read));
        }
    }
    for _ in 0..reductions {
        let op = ReduceOp::ALL[rng.below(4) as usize];
        let len = 1 + rng.below(8) as usize;
        let mut xs = vec![rng.operand(0)];
        while xs.len() < len {
            let prev = xs[xs.len() - 1];
            xs.push(rng.operand(prev));
        }
        let old = (rng.below(2) == 0).then(|| rng.operand(xs[0]));
        set.steps.extend(reduction(op, &xs, old));
    }
    set
}

/// Directed corners: every ordered pair of [`SPECIALS`] through every
/// built binary operation, `v.axpby` (scales from the list too) and
/// `v.sel`, every special through every built unary operation, each
/// written as every destination type; every 8-bit pattern of the 8-bit
/// types and every 16th of the 16-bit ones read back; and reductions of
/// every special after and before each other.
pub fn corner_vectors() -> VectorSet {
    sampled_corners(1)
}

/// [`corner_vectors`] over the first eight specials and every `stride`-th
/// further one, and
/// every `stride`-th 16-bit read: a quicker set for mutation tests.
pub fn sampled_corners(stride: usize) -> VectorSet {
    let stride = stride.max(1);
    // The signed zeros, infinities, NaNs and the smallest subnormal always.
    let specials: Vec<u32> = SPECIALS[..8]
        .iter()
        .chain(SPECIALS[8..].iter().step_by(stride))
        .copied()
        .collect();
    let mut set = VectorSet::default();
    let mut reads = Vec::new();
    for t in DType::ALL {
        let n: u32 = match t.size_bytes() {
            1 => 256,
            2 => 4096 / stride as u32,
            _ => 0,
        };
        let step = 65536 / n.max(1);
        reads.extend((0..n).map(|i| (t, if n == 256 { i } else { i * step + (i % step) })));
        reads.extend(specials.iter().map(|&s| {
            (
                t,
                if t.size_bytes() == 4 {
                    s
                } else {
                    s & type_mask(t)
                },
            )
        }));
    }
    reads.extend([
        (DType::Int32, 0x8000_0000),
        (DType::Int32, 0x7fff_ffff),
        (DType::Int32, 0x0100_0001),
        (DType::Int32, 0xfeff_ffff),
    ]);
    let mut k = 0usize;
    let next_read = |k: &mut usize| {
        *k += 1;
        reads[*k % reads.len()]
    };
    let ops = built_ops();
    let mut i = 0usize;
    for &a in &specials {
        for &b in &specials {
            for &op in &ops {
                let (mask, alpha, beta) = match op {
                    VecOp::Axpby => (0, a, b),
                    VecOp::Sel => (b, a, b),
                    VecOp::Un(_) if b != SPECIALS[0] => continue,
                    _ => (0, 0, 0),
                };
                let (x, y) = if op == VecOp::Axpby { (b, a) } else { (a, b) };
                let ty = DType::ALL[i % DType::ALL.len()];
                i += 1;
                set.lanes.push(lane_vector(
                    op,
                    ty,
                    [x, y, mask, alpha, beta],
                    next_read(&mut k),
                ));
            }
        }
        for op in ops.iter().filter(|o| matches!(o, VecOp::Un(_))) {
            for ty in DType::ALL {
                set.lanes
                    .push(lane_vector(*op, ty, [a, 0, 0, 0, 0], next_read(&mut k)));
            }
        }
    }
    while k < reads.len() {
        let r = next_read(&mut k);
        set.lanes.push(lane_vector(
            VecOp::Un(VecUnOp::Copy),
            DType::Fp32,
            [0; 5],
            r,
        ));
    }
    for op in ReduceOp::ALL {
        for &a in &specials {
            set.steps
                .extend(reduction(*op, &[a, SPECIALS[0], a], Some(SPECIALS[1])));
            set.steps.extend(reduction(*op, &[SPECIALS[1], a], Some(a)));
        }
    }
    set
}

/// Vectors of every built `libm` operation ([`LIBM_OPS`]): every
/// [`SPECIALS`] value, every branch threshold of the transcribed routines
/// ([`BRANCH_THRESHOLDS`]) +-2 ulps of both signs, and `per_op` random
/// operands (half of them between 2^-30 and 2^9, where the routines'
/// polynomials work), destination types in turn.
pub fn libm_vectors(seed: u64, per_op: usize) -> VectorSet {
    let mut rng = Rng::new(seed);
    let mut set = VectorSet::default();
    for op in LIBM_OPS {
        let mut xs: Vec<u32> = SPECIALS.to_vec();
        for t in BRANCH_THRESHOLDS {
            for d in 0..5u32 {
                let x = t.wrapping_add(d).wrapping_sub(2);
                xs.extend([x, x | 0x8000_0000]);
            }
        }
        for i in 0..per_op {
            let r = rng.bits() as u32;
            xs.push(if i % 2 == 0 {
                r
            } else {
                (r & 0x807f_ffff) | ((97 + (r >> 23) % 40) << 23)
            });
        }
        for (i, &a) in xs.iter().enumerate() {
            let b = rng.operand(a);
            let ty = DType::ALL[i % DType::ALL.len()];
            let read = random_read(&mut rng);
            set.lanes.push(lane_vector(op, ty, [a, b, 0, 0, 0], read));
        }
    }
    set.steps
        .extend(reduction(ReduceOp::Sum, &[SPECIALS[13]], None));
    set
}

/// The vector unit's design files and the testbench files for `set`.
///
/// # Errors
/// A vector of an operation the lane does not build (the message names it).
pub fn vector_files(arch: &Arch, set: &VectorSet) -> Result<Vec<(String, String)>> {
    let mut files = vec_sources(arch);
    let latency = arch.spec().vector.latency_cycles.max(1);
    files.extend(vec_testbench(&set.lanes, &set.steps, latency)?);
    Ok(files)
}

/// The vectors `tessera rtl` checks: the directed corners and 64 random
/// vectors per operation.
pub fn default_vectors() -> VectorSet {
    let mut set = corner_vectors();
    set.extend(random_vectors(1, 64, 200));
    set
}
