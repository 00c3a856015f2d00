//! The ISA's `libm` operations as fp32 dataflow graphs ([`crate::fp32_graph`]):
//! the single-precision routines of the `libm` crate (0.2.16, FreeBSD/Sun
//! msun code) that `sim/src/numerics.rs` calls, transcribed line by line
//! (each comment cites the source line or branch), and the activation
//! functions numerics.rs composes from them, with the same operations in
//! the same order, so every rounding is the simulator's.
//!
//! A C branch becomes both sides computed and a select; early returns
//! become a select chain in the source's priority order (the last select
//! is the first `return`). `force_eval!` lines only raise floating-point
//! flags, which the ISA does not have, so they are left out. On x86_64
//! with SSE only the generic code paths are compiled (`expf`'s x87 path
//! needs `x86_no_sse`), which is what the simulator runs and what the
//! graph-against-simulator tests (`tests/rtl_libm.rs`) prove.
//!
//! [`libm_lane`] joins them into the special-function lane's `libm`
//! datapath (`tessera_vec_libm`): inputs `opcode`, `op` (the instruction's
//! opcode and `op` field, decoded here from the ISA's encodings), `a` and
//! `b`; one `expf` shared by every operation that needs it, its argument
//! selected by the operation.

use tessera_isa::field::VecUnOp;

use crate::fp32_graph::{Graph, IntOp, ShiftOp, Val};
use crate::vec_op::VecOp;
use crate::verilog::Module;

/// The `libm` datapath module's name.
pub const VEC_LIBM: &str = "tessera_vec_libm";

/// numerics.rs `SQRT_2_OVER_PI` (0.797_884_6).
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
/// numerics.rs `GELU_C` (0.044_715).
const GELU_C: f32 = 0.044_715;

/// The operations the `libm` datapath builds, in the order of its result select.
pub const LIBM_OPS: [VecOp; 10] = [
    VecOp::Un(VecUnOp::Exp),
    VecOp::Un(VecUnOp::Log),
    VecOp::Un(VecUnOp::Tanh),
    VecOp::Un(VecUnOp::Sigmoid),
    VecOp::Un(VecUnOp::Silu),
    VecOp::Un(VecUnOp::DSilu),
    VecOp::Un(VecUnOp::GeluTanh),
    VecOp::Un(VecUnOp::DGeluTanh),
    VecOp::Un(VecUnOp::GeluErf),
    VecOp::Un(VecUnOp::DGeluErf),
];

/// The |x| bit patterns at which the built routines branch or saturate
/// (the constants of their `if`s, and where scalbnf's prescaling starts
/// through expf's k): test vectors take each of them +-2 ulps, both signs.
pub const BRANCH_THRESHOLDS: [u32; 31] = [
    0x42ae_ac50, // expf: |x| >= 87.33655
    0x42b1_7218, // expf: x >= 88.722839 overflows
    0x42cf_f1b5, // expf: x <= -103.972084 underflows to 0
    0x3eb1_7218, // expf: |x| > 0.5 ln2 reduces
    0x3f85_1592, // expf: |x| > 1.5 ln2 takes k from x / ln2
    0x3900_0000, // expf: |x| > 2^-14
    0x42fe_0000, // expf: 127 < x < 128: k = 127, 128, scalbnf's prescale up
    0x42fc_0000, // expf: x near -126: k = -126, -127, scalbnf's prescale down
    0x4220_0000, // sigmoid(+-40): 1 + exp saturates or underflows
    0x4120_0000, // 10: gelu's cube grows past x
    0x3a80_0000, // 2^-10
    0x3380_0000, // 2^-24
    0x3f35_04f3, // logf: the reduction's boundary sqrt(2)/2
    0x3fb5_04f3, // logf: sqrt(2)
    0x3f80_0000, // logf: x == 1 returns 0
    0x0080_0000, // logf: subnormals scale by 2^25
    0x3f0c_9f54, // tanhf: |x| > log(3)/2
    0x3e82_c578, // tanhf: |x| > log(5/3)/2
    0x4195_b844, // expm1f: |x| >= 27 ln2
    0x3300_0000, // expm1f: |x| < 2^-25 returns x
    0x3f58_0000, // erfcf: |x| < 0.84375
    0x3fa0_0000, // erfcf: |x| < 1.25
    0x4036_db6d, // erfcf: |x| < 1/0.35
    0x41e0_0000, // erfcf: |x| < 28
    0x3e80_0000, // erfcf: |x| < 1/4
    0x2380_0000, // erfcf: |x| < 2^-56
    0x3f98_bc2d, // gelu.erf: x / sqrt(2) near erfcf's 0.84375
    0x3fe2_4630, // gelu.erf: x / sqrt(2) near erfcf's 1.25
    0x4081_4cae, // gelu.erf: x / sqrt(2) near erfcf's 1/0.35
    0x421e_6455, // gelu.erf: x / sqrt(2) near erfcf's 28
    0x3eb5_04f3, // gelu.erf: x / sqrt(2) near erfcf's 1/4
];

/// `a > k` (unsigned) as 0 or 1.
fn ugt(g: &mut Graph, a: Val, k: u32) -> Val {
    let k = g.bits(k);
    g.int(IntOp::Ult, k, a)
}

/// `a >= k` (unsigned, `k > 0`) as 0 or 1.
fn uge(g: &mut Graph, a: Val, k: u32) -> Val {
    ugt(g, a, k - 1)
}

/// `a < k` (unsigned) as 0 or 1.
fn ult(g: &mut Graph, a: Val, k: u32) -> Val {
    g.int_k(IntOp::Ult, a, k)
}

/// Logical and, or, not of 0/1 flags.
fn and(g: &mut Graph, a: Val, b: Val) -> Val {
    g.int(IntOp::And, a, b)
}
fn not(g: &mut Graph, a: Val) -> Val {
    g.int_k(IntOp::Xor, a, 1)
}

/// `libm::scalbnf(x, n)` (`generic/scalbn.rs` for f32: `EXP_MAX` 127,
/// `EXP_MIN` -126, prescale 2^127 up or 2^-126 * 2^24 = 2^-102 down) for
/// `n` in [-228, 254]: one prescaling step, which is all the callers'
/// ranges reach (the second `if n > exp_max` / `if n < exp_min` of the
/// source is unreachable there). The prescale multiplies by 1.0 when no
/// branch is taken, which is exact (a NaN stays a NaN), so one multiplier
/// serves both branches.
fn scalbnf(g: &mut Graph, x: Val, n: Val) -> Val {
    g.note(
        "scalbnf: if n > 127 { x *= 2^127; n -= 127 } else if n < -126 { x *= 2^-102; n += 102 }",
    );
    let e_max = g.bits(127);
    let up = g.int(IntOp::Slt, e_max, n);
    let e_min = g.bits((-126i32) as u32);
    let down = g.int(IntOp::Slt, n, e_min);
    let (p_up, p_down, one) = (g.bits(0x7f00_0000), g.bits(0x0c80_0000), g.float(1.0));
    let pre_down = g.select(down, p_down, one);
    let pre = g.select(up, p_up, pre_down);
    let x1 = g.mul(x, pre);
    let n_up = g.int_k(IntOp::Sub, n, 127);
    let n_down = g.int_k(IntOp::Add, n, 102);
    let n_d = g.select(down, n_down, n);
    let n1 = g.select(up, n_up, n_d);
    g.note("scalbnf: x * from_parts(false, 127 + n, 0)");
    let biased = g.int_k(IntOp::Add, n1, 127);
    let scale = g.shift(ShiftOp::Shl, biased, 23);
    g.mul(x1, scale)
}

/// `libm::expf(x)` (`src/math/expf.rs`, FreeBSD `e_expf.c`).
pub fn expf(g: &mut Graph, x: Val) -> Val {
    g.note("expf: hx = |x| bits, sign = x >> 31");
    let bits = x;
    let sign = g.shift(ShiftOp::Lshr, bits, 31);
    let hx = g.int_k(IntOp::And, bits, 0x7fff_ffff);
    g.note("expf: if hx > 0x3eb17218 (|x| > 0.5 ln2): k from x * INV_LN2 or +-1");
    let reduce = ugt(g, hx, 0x3eb1_7218);
    let far = ugt(g, hx, 0x3f85_1592);
    let (p_half, m_half) = (g.float(0.5), g.float(-0.5));
    let half = g.select(sign, m_half, p_half);
    let inv_ln2 = g.bits(0x3fb8_aa3b);
    let t = g.mul(inv_ln2, x);
    let t = g.add(t, half);
    let k_far = g.to_int(t);
    g.note("expf: k = 1 - sign - sign");
    let one = g.bits(1);
    let k_near = g.int(IntOp::Sub, one, sign);
    let k_near = g.int(IntOp::Sub, k_near, sign);
    let k_red = g.select(far, k_far, k_near);
    g.note("expf: hi = x - kf * LN2_HI; lo = kf * LN2_LO; x = hi - lo");
    let kf = g.from_int(k_red);
    let (ln2_hi, ln2_lo) = (g.bits(0x3f31_7200), g.bits(0x35bf_be8e));
    let t = g.mul(kf, ln2_hi);
    let hi_red = g.sub(x, t);
    let lo_red = g.mul(kf, ln2_lo);
    let x_red = g.sub(hi_red, lo_red);
    g.note("expf: else if hx > 0x39000000 (|x| > 2^-14): k = 0, hi = x, lo = 0");
    let zero = g.bits(0);
    let k = g.select(reduce, k_red, zero);
    let hi = g.select(reduce, hi_red, x);
    let lo = g.select(reduce, lo_red, zero);
    let xr = g.select(reduce, x_red, x);
    g.note("expf: xx = x * x; c = x - xx * (P1 + xx * P2)");
    let xx = g.mul(xr, xr);
    let (p1, p2) = (g.bits(0x3e2a_aa8f), g.bits(0xbb35_5215));
    let t = g.mul(xx, p2);
    let t = g.add(p1, t);
    let t = g.mul(xx, t);
    let c = g.sub(xr, t);
    g.note("expf: y = 1 + (x * c / (2 - c) - lo + hi)");
    let xc = g.mul(xr, c);
    let two = g.float(2.0);
    let d = g.sub(two, c);
    let q = g.div(xc, d);
    let t = g.sub(q, lo);
    let t = g.add(t, hi);
    let fone = g.float(1.0);
    let y = g.add(fone, t);
    g.note("expf: if k == 0 { y } else { scalbnf(y, k) } (k in [-150, 128])");
    let scaled = scalbnf(g, y, k);
    let k_zero = g.int(IntOp::Eq, k, zero);
    let body = g.select(k_zero, y, scaled);
    g.note("expf: early returns, last taken first");
    g.note("expf: else (|x| <= 2^-14) return 1 + x");
    let tiny = not_gt(g, hx, 0x3900_0000);
    let one_x = g.add(fone, x);
    let r = g.select(tiny, one_x, body);
    g.note("expf: if sign && hx >= 0x42cff1b5 (x <= -103.972084) return 0");
    let under = uge(g, hx, 0x42cf_f1b5);
    let under = and(g, sign, under);
    let r = g.select(under, zero, r);
    g.note("expf: if hx >= 0x42b17218 && !sign (x >= 88.722839) return x * 2^127");
    let over = uge(g, hx, 0x42b1_7218);
    let pos = not(g, sign);
    let over = and(g, over, pos);
    let big = g.bits(0x7f00_0000);
    let x_big = g.mul(x, big);
    let r = g.select(over, x_big, r);
    g.note("expf: if hx > 0x7f800000 (NaN) return x");
    let nan = ugt(g, hx, 0x7f80_0000);
    g.select(nan, x, r)
}

/// `libm::logf(x)` (`src/math/logf.rs`, FreeBSD `e_logf.c`).
pub fn logf(g: &mut Graph, x: Val) -> Val {
    g.note("logf: if ix < 0x00800000 || ix >> 31 != 0 (zero, subnormal, negative)");
    let ix = x;
    let tiny = ult(g, ix, 0x0080_0000);
    let neg = g.shift(ShiftOp::Lshr, ix, 31);
    let low = g.int(IntOp::Or, tiny, neg);
    g.note("logf: subnormal: k -= 25; x *= 2^25; ix = x bits");
    let x1p25 = g.bits(0x4c00_0000);
    let scaled = g.mul(x, x1p25);
    let ix = g.select(low, scaled, ix);
    let (m25, zero) = (g.bits((-25i32) as u32), g.bits(0));
    let k0 = g.select(low, m25, zero);
    g.note("logf: ix += 0x3f800000 - 0x3f3504f3; k += (ix >> 23) - 0x7f");
    let ix = g.int_k(IntOp::Add, ix, 0x3f80_0000 - 0x3f35_04f3);
    let e = g.shift(ShiftOp::Lshr, ix, 23);
    let e = g.int_k(IntOp::Sub, e, 0x7f);
    let k = g.int(IntOp::Add, k0, e);
    g.note("logf: ix = (ix & 0x007fffff) + 0x3f3504f3; x = from_bits(ix)");
    let m = g.int_k(IntOp::And, ix, 0x007f_ffff);
    let xr = g.int_k(IntOp::Add, m, 0x3f35_04f3);
    g.note("logf: f = x - 1; s = f / (2 + f); z = s * s; w = z * z");
    let (one, two) = (g.float(1.0), g.float(2.0));
    let f = g.sub(xr, one);
    let d = g.add(two, f);
    let s = g.div(f, d);
    let z = g.mul(s, s);
    let w = g.mul(z, z);
    g.note("logf: t1 = w * (LG2 + w * LG4); t2 = z * (LG1 + w * LG3); r = t2 + t1");
    let (lg1, lg2) = (g.bits(0x3f2a_aaaa), g.bits(0x3ecc_ce13));
    let (lg3, lg4) = (g.bits(0x3e91_e9ee), g.bits(0x3e78_9e26));
    let t = g.mul(w, lg4);
    let t = g.add(lg2, t);
    let t1 = g.mul(w, t);
    let t = g.mul(w, lg3);
    let t = g.add(lg1, t);
    let t2 = g.mul(z, t);
    let r = g.add(t2, t1);
    g.note("logf: hfsq = 0.5 * f * f; dk = k as f32");
    let half = g.float(0.5);
    let h = g.mul(half, f);
    let hfsq = g.mul(h, f);
    let dk = g.from_int(k);
    g.note("logf: s * (hfsq + r) + dk * LN2_LO - hfsq + f + dk * LN2_HI, left to right");
    let (ln2_hi, ln2_lo) = (g.bits(0x3f31_7180), g.bits(0x3717_f7d1));
    let t = g.add(hfsq, r);
    let t = g.mul(s, t);
    let lo = g.mul(dk, ln2_lo);
    let t = g.add(t, lo);
    let t = g.sub(t, hfsq);
    let t = g.add(t, f);
    let hi = g.mul(dk, ln2_hi);
    let body = g.add(t, hi);
    g.note("logf: early returns, last taken first");
    g.note("logf: else if ix == 0x3f800000 return 0");
    let is_one = g.int_k(IntOp::Eq, x, 0x3f80_0000);
    let r = g.select(is_one, zero, body);
    g.note("logf: else if ix >= 0x7f800000 return x (+inf, NaN with the sign bit clear)");
    let top = uge(g, x, 0x7f80_0000);
    let high = not(g, low);
    let top = and(g, top, high);
    let r = g.select(top, x, r);
    g.note(
        "logf: if ix >> 31 != 0 return (x - x) / 0: NaN for every negative x (-inf, NaN included)",
    );
    let nan = g.bits(0x7fc0_0000);
    let r = g.select(neg, nan, r);
    g.note("logf: if ix << 1 == 0 return -1 / (x * x): -1 / +0 = -inf for both zeros");
    let mag = g.shift(ShiftOp::Shl, x, 1);
    let is_zero = g.int_k(IntOp::Eq, mag, 0);
    let minf = g.bits(0xff80_0000);
    g.select(is_zero, minf, r)
}

/// `libm::expm1f(x)` (`src/math/expm1f.rs`, FreeBSD `s_expm1f.c`).
pub fn expm1f(g: &mut Graph, x: Val) -> Val {
    g.note("expm1f: hx = |x| bits, sign = x >> 31");
    let sign = g.shift(ShiftOp::Lshr, x, 31);
    let hx = g.int_k(IntOp::And, x, 0x7fff_ffff);
    let zero = g.bits(0);
    g.note("expm1f: if hx > 0x3eb17218 (|x| > 0.5 ln2): reduce");
    let reduce = ugt(g, hx, 0x3eb1_7218);
    let near = ult(g, hx, 0x3f85_1592);
    g.note("expm1f: |x| < 1.5 ln2: hi = x -+ LN2_HI, lo = +-LN2_LO, k = +-1");
    let (ln2_hi, ln2_lo) = (g.bits(0x3f31_7180), g.bits(0x3717_f7d1));
    let hi_p = g.sub(x, ln2_hi);
    let hi_m = g.add(x, ln2_hi);
    let hi_near = g.select(sign, hi_m, hi_p);
    let m_ln2_lo = g.neg(ln2_lo);
    let lo_near = g.select(sign, m_ln2_lo, ln2_lo);
    let (one_i, m_one_i) = (g.bits(1), g.bits(u32::MAX));
    let k_near = g.select(sign, m_one_i, one_i);
    g.note("expm1f: else k = (INV_LN2 * x + -+0.5) as i32; hi = x - t * LN2_HI; lo = t * LN2_LO");
    let inv_ln2 = g.bits(0x3fb8_aa3b);
    let (p_half, m_half) = (g.float(0.5), g.float(-0.5));
    let half = g.select(sign, m_half, p_half);
    let t = g.mul(inv_ln2, x);
    let t = g.add(t, half);
    let k_far = g.to_int(t);
    let tf = g.from_int(k_far);
    let t = g.mul(tf, ln2_hi);
    let hi_far = g.sub(x, t);
    let lo_far = g.mul(tf, ln2_lo);
    let hi = g.select(near, hi_near, hi_far);
    let lo = g.select(near, lo_near, lo_far);
    let k_red = g.select(near, k_near, k_far);
    g.note("expm1f: x = hi - lo; c = (hi - x) - lo");
    let x_red = g.sub(hi, lo);
    let t = g.sub(hi, x_red);
    let c_red = g.sub(t, lo);
    g.note("expm1f: else k = 0 (c = 0)");
    let xr = g.select(reduce, x_red, x);
    let c = g.select(reduce, c_red, zero);
    let k = g.select(reduce, k_red, zero);
    g.note("expm1f: hfx = 0.5 * x; hxs = x * hfx; r1 = 1 + hxs * (Q1 + hxs * Q2)");
    let (one, p_half) = (g.float(1.0), g.float(0.5));
    let hfx = g.mul(p_half, xr);
    let hxs = g.mul(xr, hfx);
    let (q1, q2) = (g.bits(0xbd08_8868), g.bits(0x3acf_3010));
    let t = g.mul(hxs, q2);
    let t = g.add(q1, t);
    let t = g.mul(hxs, t);
    let r1 = g.add(one, t);
    g.note("expm1f: t = 3 - r1 * hfx; e = hxs * ((r1 - t) / (6 - x * t))");
    let (three, six) = (g.float(3.0), g.float(6.0));
    let t = g.mul(r1, hfx);
    let t = g.sub(three, t);
    let num = g.sub(r1, t);
    let xt = g.mul(xr, t);
    let den = g.sub(six, xt);
    let q = g.div(num, den);
    let e0 = g.mul(hxs, q);
    g.note("expm1f: k == 0: return x - (x * e - hxs)");
    let t = g.mul(xr, e0);
    let t = g.sub(t, hxs);
    let r_k0 = g.sub(xr, t);
    g.note("expm1f: e = x * (e - c) - c; e -= hxs");
    let t = g.sub(e0, c);
    let t = g.mul(xr, t);
    let t = g.sub(t, c);
    let e = g.sub(t, hxs);
    g.note("expm1f: k == -1: return 0.5 * (x - e) - 0.5");
    let x_e = g.sub(xr, e);
    let t = g.mul(p_half, x_e);
    let r_km1 = g.sub(t, p_half);
    g.note("expm1f: k == 1: x < -0.25 ? -2 * (e - (x + 0.5)) : 1 + 2 * (x - e)");
    let t = g.add(xr, p_half);
    let t = g.sub(e, t);
    let m_two = g.float(-2.0);
    let r_k1_lo = g.mul(m_two, t);
    let two = g.float(2.0);
    let t = g.mul(two, x_e);
    let r_k1_hi = g.add(one, t);
    let x_neg = g.shift(ShiftOp::Lshr, xr, 31);
    let x_mag = g.int_k(IntOp::And, xr, 0x7fff_ffff);
    let x_big = ugt(g, x_mag, 0x3e80_0000);
    g.note("expm1f: x < -0.25 on the reduced (finite) x: negative and |x| > 0.25");
    let below = and(g, x_neg, x_big);
    let r_k1 = g.select(below, r_k1_lo, r_k1_hi);
    g.note("expm1f: twopk = from_bits((0x7f + k) << 23); uf = from_bits((0x7f - k) << 23)");
    let t = g.int_k(IntOp::Add, k, 0x7f);
    let twopk = g.shift(ShiftOp::Shl, t, 23);
    let t7f = g.bits(0x7f);
    let t = g.int(IntOp::Sub, t7f, k);
    let uf = g.shift(ShiftOp::Shl, t, 23);
    g.note("expm1f: k < 0 || k > 56: y = x - e + 1; y * 2 * 2^127 (k == 128) or y * twopk; y - 1");
    let t = g.sub(xr, e);
    let y = g.add(t, one);
    let y2 = g.mul(y, two);
    let x1p127 = g.bits(0x7f00_0000);
    let y_128 = g.mul(y2, x1p127);
    let y_k = g.mul(y, twopk);
    let is_128 = g.int_k(IntOp::Eq, k, 128);
    let y = g.select(is_128, y_128, y_k);
    let r_out = g.sub(y, one);
    g.note("expm1f: k < 23: (x - e + (1 - uf)) * twopk; else (x - (e + uf) + 1) * twopk");
    let t = g.sub(one, uf);
    let t = g.add(x_e, t);
    let r_lt23 = g.mul(t, twopk);
    let t = g.add(e, uf);
    let t = g.sub(xr, t);
    let t = g.add(t, one);
    let r_ge23 = g.mul(t, twopk);
    let c23 = g.bits(23);
    let lt23 = g.int(IntOp::Slt, k, c23);
    let r_in = g.select(lt23, r_lt23, r_ge23);
    g.note("expm1f: the returns after the polynomial, last taken first");
    let k_neg = g.int(IntOp::Slt, k, zero);
    let c56 = g.bits(56);
    let k_big = g.int(IntOp::Slt, c56, k);
    let out = g.int(IntOp::Or, k_neg, k_big);
    let r = g.select(out, r_out, r_in);
    let is_k1 = g.int_k(IntOp::Eq, k, 1);
    let r = g.select(is_k1, r_k1, r);
    let is_km1 = g.int_k(IntOp::Eq, k, u32::MAX);
    let r = g.select(is_km1, r_km1, r);
    let is_k0 = g.int_k(IntOp::Eq, k, 0);
    let r = g.select(is_k0, r_k0, r);
    g.note("expm1f: early returns, last taken first");
    g.note("expm1f: else if hx < 0x33000000 (|x| < 2^-25) return x");
    let tiny = ult(g, hx, 0x3300_0000);
    let not_red = not(g, reduce);
    let tiny = and(g, tiny, not_red);
    let r = g.select(tiny, x, r);
    g.note("expm1f: hx >= 0x4195b844: NaN returns x; sign returns -1; hx > 0x42b17217 returns x * 2^127");
    let huge = uge(g, hx, 0x4195_b844);
    let over = ugt(g, hx, 0x42b1_7217);
    let x_over = g.mul(x, x1p127);
    let m_one = g.float(-1.0);
    let r_huge = g.select(over, x_over, r);
    let r_huge = g.select(sign, m_one, r_huge);
    let nan = ugt(g, hx, 0x7f80_0000);
    let r_huge = g.select(nan, x, r_huge);
    g.select(huge, r_huge, r)
}

/// `libm::tanhf(x)` (`src/math/tanhf.rs`, musl `tanhf.c`), through [`expm1f`].
pub fn tanhf(g: &mut Graph, x: Val) -> Val {
    g.note("tanhf: ix = |x| bits, sign = x >> 31, x = |x|, w = ix");
    let sign = g.shift(ShiftOp::Lshr, x, 31);
    let w = g.int_k(IntOp::And, x, 0x7fff_ffff);
    let ax = w;
    let big = ugt(g, w, 0x3f0c_9f54);
    let mid = ugt(g, w, 0x3e82_c578);
    g.note("tanhf: t = expm1f(2x) for |x| > log(5/3)/2, else expm1f(-2x): one expm1f");
    let (two, m_two) = (g.float(2.0), g.float(-2.0));
    let k = g.select(mid, two, m_two);
    let arg = g.mul(k, ax);
    let t = expm1f(g, arg);
    g.note("tanhf: 2 / (t + 2), t / (t + 2), -t / (t + 2): one divider");
    let den = g.add(t, two);
    let neg_t = g.neg(t);
    let num = g.select(mid, t, neg_t);
    let num = g.select(big, two, num);
    let q = g.div(num, den);
    let one = g.float(1.0);
    let r_big = g.sub(one, q);
    g.note("tanhf: w > 0x41200000 (|x| > 10): 1 + 0 / x = NaN for a NaN, else 1");
    let huge = ugt(g, w, 0x4120_0000);
    let is_nan = ugt(g, w, 0x7f80_0000);
    let nan = g.bits(0x7fc0_0000);
    let r_huge = g.select(is_nan, nan, one);
    let r_big = g.select(huge, r_huge, r_big);
    g.note("tanhf: w >= 0x00800000 else |x| (subnormal)");
    let normal = uge(g, w, 0x0080_0000);
    let r = g.select(normal, q, ax);
    let r = g.select(big, r_big, r);
    g.note("tanhf: sign ? -tt : tt");
    let neg_r = g.neg(r);
    g.select(sign, neg_r, r)
}

/// `c[0] + v * (c[1] + v * (... + v * c[n-1]))`, each coefficient `c[i]`
/// selected per path: `coefs[p][i]` where `path[p]` (the last path is the
/// default); a path with fewer coefficients is padded with zeros, which
/// leaves its value unchanged for a finite `v` (`c + v * 0 = c` for a
/// nonzero `c`, and `0 + v * 0` is a zero).
fn horner(g: &mut Graph, v: Val, path: &[Val], coefs: &[&[u32]]) -> Val {
    let n = coefs.iter().map(|c| c.len()).max().unwrap_or(0);
    let coef = |g: &mut Graph, i: usize| {
        let bits = |p: usize| coefs[p].get(i).copied().unwrap_or(0);
        let mut c = g.bits(bits(coefs.len() - 1));
        for p in (0..coefs.len() - 1).rev() {
            let k = g.bits(bits(p));
            c = g.select(path[p], k, c);
        }
        c
    };
    let mut acc = coef(g, n - 1);
    for i in (0..n - 1).rev() {
        let t = g.mul(v, acc);
        let c = coef(g, i);
        acc = g.add(c, t);
    }
    acc
}

/// `libm::erfcf(x)` (`src/math/erff.rs`, FreeBSD `s_erff.c`, with
/// `erfc1`/`erfc2`). The four polynomial pairs of the source (|x| < 0.84375
/// in x^2, < 1.25 in |x| - 1, < 1/0.35 and < 28 in 1/x^2) share one
/// numerator chain, one denominator chain and one divider, their
/// coefficients selected by the range ([`horner`]).
pub fn erfcf(g: &mut Graph, x: Val) -> Val {
    g.note("erfcf: ix = |x| bits, sign = x >> 31");
    let sign = g.shift(ShiftOp::Lshr, x, 31);
    let ix = g.int_k(IntOp::And, x, 0x7fff_ffff);
    let ax = ix;
    let one = g.float(1.0);
    let small = ult(g, ix, 0x3f58_0000);
    let mid = ult(g, ix, 0x3fa0_0000);
    let ra = ult(g, ix, 0x4036_db6d);
    g.note("erfcf: z = x * x (|x| < 0.84375); s = |x| - 1 (erfc1); s = 1 / (x * x) (erfc2)");
    let x2 = g.mul(ax, ax);
    let s1 = g.sub(ax, one);
    let s2 = g.div(one, x2);
    let v = g.select(mid, s1, s2);
    let v = g.select(small, x2, v);
    let path = [small, mid, ra];
    g.note(
        "erfcf: r = PP0 + z * (...PP4); erfc1: p = PA0 + s * (...PA6); erfc2: r = RA0.. or RB0..",
    );
    let r = horner(
        g,
        v,
        &path,
        &[
            &[
                0x3e03_75d4,
                0xbea6_6beb,
                0xbce9_528f,
                0xbbbd_1489,
                0xb7c7_56b1,
            ],
            &[
                0xbb1a_cdc6,
                0x3ed4_6805,
                0xbebe_9208,
                0x3ea2_fe54,
                0xbde3_1cc2,
                0x3d11_51b3,
                0xbb0d_f9c0,
            ],
            &[
                0xbc21_a093,
                0xbf31_a0b7,
                0xc128_f022,
                0xc279_8057,
                0xc322_658c,
                0xc338_9ae7,
                0xc2a2_932b,
                0xc11d_077e,
            ],
            &[
                0xbc21_a092,
                0xbf4c_9dd4,
                0xc18e_104b,
                0xc320_a2ea,
                0xc41f_6441,
                0xc480_230b,
                0xc3f1_c275,
            ],
        ],
    );
    g.note("erfcf: s = 1 + z * (QQ1..QQ5); erfc1: q = 1 + s * (QA1..QA6); erfc2: S = 1 + s * (SA1..SA8 or SB1..SB7)");
    let one_b = 0x3f80_0000;
    let den = horner(
        g,
        v,
        &path,
        &[
            &[
                one_b,
                0x3ecb_bbce,
                0x3d85_2a63,
                0x3ba6_8116,
                0x390a_ee49,
                0xb684_e21a,
            ],
            &[
                one_b,
                0x3dd9_f331,
                0x3f0a_5785,
                0x3d93_1ae7,
                0x3e01_3307,
                0x3c5f_6e13,
                0x3c44_5aa3,
            ],
            &[
                one_b,
                0x419d_35ce,
                0x4309_a863,
                0x43d9_486f,
                0x4421_58c9,
                0x43d6_810b,
                0x42d9_451f,
                0x40d2_3f7c,
                0xbd77_7f97,
            ],
            &[
                one_b,
                0x41f2_b459,
                0x43a2_e571,
                0x44c0_1759,
                0x4547_fdbb,
                0x451f_90ce,
                0x43ed_43a7,
                0xc1b3_8712,
            ],
        ],
    );
    g.note("erfcf: y = r / s; erfc1: p / q; erfc2: r / S");
    let y = g.div(r, den);
    g.note(
        "erfcf, |x| < 0.84375: sign || ix < 0x3e800000 ? 1 - (x + x * y) : 0.5 - (x - 0.5 + x * y)",
    );
    let xy = g.mul(x, y);
    let t = g.add(x, xy);
    let r_quarter = g.sub(one, t);
    let half = g.float(0.5);
    let t = g.sub(x, half);
    let t = g.add(t, xy);
    let r_half = g.sub(half, t);
    let quarter = ult(g, ix, 0x3e80_0000);
    let low = g.int(IntOp::Or, sign, quarter);
    let r_small = g.select(low, r_quarter, r_half);
    g.note("erfcf: |x| < 2^-56: 1 - x");
    let tiny = ult(g, ix, 0x2380_0000);
    let one_x = g.sub(one, x);
    let r_small = g.select(tiny, one_x, r_small);
    g.note("erfc1: 1 - ERX - p / q");
    let erx = g.bits(0x3f58_560b);
    let t = g.sub(one, erx);
    let r_erfc1 = g.sub(t, y);
    g.note("erfc2: z = from_bits(|x| & 0xffffe000); expf(-z * z - 0.5625) * expf((z - x) * (z + x) + r / S) / x");
    let z = g.int_k(IntOp::And, ax, 0xffff_e000);
    let nz = g.neg(z);
    let t = g.mul(nz, z);
    let c = g.float(0.5625);
    let a1 = g.sub(t, c);
    let e1 = expf(g, a1);
    let d = g.sub(z, ax);
    let s_ = g.add(z, ax);
    let t = g.mul(d, s_);
    let a2 = g.add(t, y);
    let e2 = expf(g, a2);
    let t = g.mul(e1, e2);
    let r_erfc2 = g.div(t, ax);
    let e = g.select(mid, r_erfc1, r_erfc2);
    g.note("erfcf, |x| < 28: sign ? 2 - erfc2(ix, x) : erfc2(ix, x)");
    let two = g.float(2.0);
    let two_e = g.sub(two, e);
    let r_mid = g.select(sign, two_e, e);
    g.note("erfcf, |x| >= 28: sign ? 2 - 2^-120 : 2^-120 * 2^-120 (constants)");
    let x1p_120 = f32::from_bits(0x0380_0000);
    let (c_neg, c_pos) = (g.float(2.0 - x1p_120), g.float(x1p_120 * x1p_120));
    let r_big = g.select(sign, c_neg, c_pos);
    let under28 = ult(g, ix, 0x41e0_0000);
    let r = g.select(under28, r_mid, r_big);
    let r = g.select(small, r_small, r);
    g.note("erfcf: ix >= 0x7f800000: 2 * sign + 1 / x: NaN, 0 (+inf), 2 (-inf)");
    let nonfinite = uge(g, ix, 0x7f80_0000);
    let is_nan = ugt(g, ix, 0x7f80_0000);
    let (c2, c0, nan) = (g.float(2.0), g.float(0.0), g.bits(0x7fc0_0000));
    let r_inf = g.select(sign, c2, c0);
    let r_inf = g.select(is_nan, nan, r_inf);
    g.select(nonfinite, r_inf, r)
}

/// A graph of one routine alone: input `x`, its output.
pub fn routine(f: fn(&mut Graph, Val) -> Val) -> (Graph, Val) {
    let mut g = Graph::new(&["x"]);
    let x = g.input("x");
    let out = f(&mut g, x);
    (g, out)
}

/// `a <= k` (unsigned) as 0 or 1.
fn not_gt(g: &mut Graph, a: Val, k: u32) -> Val {
    ult(g, a, k + 1)
}

/// numerics.rs `gelu_u(x) = SQRT_2_OVER_PI * (x + GELU_C * x * x * x)`,
/// the product evaluated left to right.
fn gelu_u(g: &mut Graph, x: Val) -> Val {
    let c = g.float(GELU_C);
    let t = g.mul(c, x);
    let t = g.mul(t, x);
    let t = g.mul(t, x);
    let t = g.add(x, t);
    let s = g.float(SQRT_2_OVER_PI);
    g.mul(s, t)
}

/// The decode flag of `op`: `opcode` and `op` match the ISA's encoding.
fn decode(g: &mut Graph, opcode: Val, code: Val, op: VecOp) -> Val {
    let a = g.int_k(IntOp::Eq, opcode, u32::from(op.opcode()));
    let b = g.int_k(IntOp::Eq, code, op.code());
    and(g, a, b)
}

/// The `libm` datapath as one graph with inputs `opcode`, `op`, `a`, `b`
/// and its output: the result of whichever of [`LIBM_OPS`] `opcode`/`op`
/// name (0 for any other operation).
pub fn libm_lane() -> (Graph, Val) {
    use VecUnOp as U;
    let mut graph = Graph::new(&["opcode", "op", "a", "b"]);
    let g = &mut graph;
    let (opcode, code, x) = (g.input("opcode"), g.input("op"), g.input("a"));
    let is = |g: &mut Graph, o: U| decode(g, opcode, code, VecOp::Un(o));
    let is_exp = is(g, U::Exp);
    let is_gelu = is(g, U::GeluTanh);
    let is_dgelu = is(g, U::DGeluTanh);
    let gelu_family = g.int(IntOp::Or, is_gelu, is_dgelu);
    g.note("The shared expf's argument: x (exp), -(2 u(x)) (gelu.tanh, dgelu.tanh), else -x.");
    let u = gelu_u(g, x);
    let two = g.float(2.0);
    let u2 = g.mul(two, u);
    let neg_u2 = g.neg(u2);
    let neg_x = g.neg(x);
    let arg = g.select(gelu_family, neg_u2, neg_x);
    let arg = g.select(is_exp, x, arg);
    let is_log = is(g, U::Log);
    g.note("Operand isolation: a routine's input is 0 while another operation runs.");
    let zero = g.bits(0);
    let arg = g.select(is_log, zero, arg);
    let is_tanh = is(g, U::Tanh);
    let arg = g.select(is_tanh, zero, arg);
    let is_gelu_erf = is(g, U::GeluErf);
    let arg = g.select(is_gelu_erf, zero, arg);
    g.note("dgelu.erf's pdf: expf(-0.5 * x * x), left to right.");
    let is_dgelu_erf = is(g, U::DGeluErf);
    let m_half = g.float(-0.5);
    let t = g.mul(m_half, x);
    let pdf_arg = g.mul(t, x);
    let arg = g.select(is_dgelu_erf, pdf_arg, arg);
    let e = expf(g, arg);
    g.note("sigmoid(v) = 1 / (1 + expf(-v)): v = x, or 2 u(x) for the gelu.tanh pair.");
    let one = g.float(1.0);
    let den = g.add(one, e);
    let s = g.div(one, den);
    g.note("silu = x * sigmoid(x); gelu.tanh = x * sigmoid(2 u(x)).");
    let xs = g.mul(x, s);
    g.note("dsilu = s * (1 + x * (1 - s)).");
    let one_s = g.sub(one, s);
    let t = g.mul(x, one_s);
    let t = g.add(one, t);
    let dsilu = g.mul(s, t);
    g.note(
        "dgelu.tanh: du = SQRT_2_OVER_PI * (1 + 3 GELU_C * x * x); s + x * 2 * s * (1 - s) * du.",
    );
    let c3 = g.float(3.0 * GELU_C);
    let t = g.mul(c3, x);
    let t = g.mul(t, x);
    let t = g.add(one, t);
    let k = g.float(SQRT_2_OVER_PI);
    let du = g.mul(k, t);
    let t = g.mul(x, two);
    let t = g.mul(t, s);
    let t = g.mul(t, one_s);
    let t = g.mul(t, du);
    let dgelu = g.add(s, t);
    g.note("v.un log: logf(x).");
    let log_x = g.select(is_log, x, zero);
    let log = logf(g, log_x);
    g.note("v.un tanh: tanhf(x).");
    let tanh_x = g.select(is_tanh, x, zero);
    let tanh = tanhf(g, tanh_x);
    g.note("gelu.erf = 0.5 * x * erfcf(-x * FRAC_1_SQRT_2); dgelu.erf: cdf = 0.5 * erfcf(..),");
    g.note("pdf = expf(-0.5 * x * x) * 0.398_942_3, cdf + x * pdf.");
    let erf_family = g.int(IntOp::Or, is_gelu_erf, is_dgelu_erf);
    let erf_x = g.select(erf_family, x, zero);
    let neg = g.neg(erf_x);
    let c = g.float(std::f32::consts::FRAC_1_SQRT_2);
    let z = g.mul(neg, c);
    let erfc = erfcf(g, z);
    let half = g.float(0.5);
    let hx = g.mul(half, x);
    let gelu_erf = g.mul(hx, erfc);
    let cdf = g.mul(half, erfc);
    let k = g.float(0.398_942_3);
    let pdf = g.mul(e, k);
    let t = g.mul(x, pdf);
    let dgelu_erf = g.add(cdf, t);
    let results = [
        (U::Exp, e),
        (U::Log, log),
        (U::Tanh, tanh),
        (U::Sigmoid, s),
        (U::Silu, xs),
        (U::DSilu, dsilu),
        (U::GeluTanh, xs),
        (U::DGeluTanh, dgelu),
        (U::GeluErf, gelu_erf),
        (U::DGeluErf, dgelu_erf),
    ];
    debug_assert_eq!(results.len(), LIBM_OPS.len());
    let mut r = g.bits(0);
    for (o, v) in results.iter().rev() {
        let f = is(g, *o);
        r = g.select(f, *v, r);
    }
    (graph, r)
}

/// The `libm` datapath module ([`VEC_LIBM`]): ports `opcode`, `op`, `a`,
/// `b` (32 bits each, the codes zero-extended) in, `z` out. Combinational.
pub fn vec_libm() -> Module {
    let (g, out) = libm_lane();
    g.module(
        VEC_LIBM,
        &[
            "libm datapath of the special-function lane: expf, logf, tanhf (expm1f), erfcf and the",
            "activations built on them, transcribed from the libm crate's single-precision routines.",
            "Combinational.",
        ],
        out,
    )
}
