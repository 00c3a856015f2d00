//! Element numerics: the ISA's definition of how bytes become numbers and
//! numbers become bytes, and of every vector operation.
//!
//! - Reading widens exactly to fp32 (int32 rounds to nearest even).
//! - Writing rounds fp32 to the destination with round-to-nearest-even:
//!   bf16 and fp16 per IEEE 754 (overflow to infinity, NaN stays NaN); fp8
//!   e4m3 and e5m2 saturate to the largest finite value (OCP "satfinite",
//!   infinities included) with NaN staying NaN; int8 and int32 round to
//!   nearest even and saturate, NaN giving 0.
//! - Vector operations compute in fp32; transcendental functions use `libm`
//!   single-precision routines so results are the same on every host.

use half::{bf16, f16};
use tessera_isa::field::{ReduceOp, VecBinOp, VecUnOp};
use tessera_isa::DType;

/// Reads element `i` of type `t` from `bytes` (little-endian) as fp32.
pub fn load(t: DType, bytes: &[u8]) -> f32 {
    match t {
        DType::Fp32 => f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        DType::Bf16 => bf16::from_le_bytes([bytes[0], bytes[1]]).to_f32(),
        DType::Fp16 => f16::from_le_bytes([bytes[0], bytes[1]]).to_f32(),
        DType::Fp8E4M3 => float8::F8E4M3::from_bits(bytes[0]).to_f32(),
        DType::Fp8E5M2 => float8::F8E5M2::from_bits(bytes[0]).to_f32(),
        DType::Int8 => f32::from(bytes[0] as i8),
        DType::Int32 => i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as f32,
    }
}

/// Rounds `x` to an integer with ties to even and saturates to `[lo, hi]`; NaN gives 0.
fn to_int(x: f32, lo: f64, hi: f64) -> i64 {
    if x.is_nan() {
        return 0;
    }
    f64::from(x).round_ties_even().clamp(lo, hi) as i64
}

/// Writes `x` as type `t` into `out` (little-endian), rounding to nearest even.
pub fn store(t: DType, x: f32, out: &mut [u8]) {
    match t {
        DType::Fp32 => out[..4].copy_from_slice(&x.to_le_bytes()),
        DType::Bf16 => out[..2].copy_from_slice(&bf16::from_f32(x).to_le_bytes()),
        DType::Fp16 => out[..2].copy_from_slice(&f16::from_f32(x).to_le_bytes()),
        DType::Fp8E4M3 => out[0] = float8::F8E4M3::from_f32(x).to_bits(),
        DType::Fp8E5M2 => out[0] = float8::F8E5M2::from_f32(x).to_bits(),
        DType::Int8 => out[0] = to_int(x, -128.0, 127.0) as i8 as u8,
        DType::Int32 => {
            let v = to_int(x, f64::from(i32::MIN), f64::from(i32::MAX)) as i32;
            out[..4].copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// Rounds `x` through type `t` and back: the value a store then load gives.
pub fn round_to(t: DType, x: f32) -> f32 {
    let mut b = [0u8; 4];
    store(t, x, &mut b);
    load(t, &b)
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_C: f32 = 0.044_715;

/// An elementwise binary operation in fp32.
pub fn binary(op: VecBinOp, a: f32, b: f32) -> f32 {
    let flag = |c: bool| if c { 1.0 } else { 0.0 };
    match op {
        VecBinOp::Add => a + b,
        VecBinOp::Sub => a - b,
        VecBinOp::Mul => a * b,
        VecBinOp::Div => a / b,
        VecBinOp::Max => libm::fmaxf(a, b),
        VecBinOp::Min => libm::fminf(a, b),
        VecBinOp::CmpLt => flag(a < b),
        VecBinOp::CmpLe => flag(a <= b),
        VecBinOp::CmpEq => flag(a == b),
        VecBinOp::CmpNe => flag(a != b),
        VecBinOp::Pow => libm::powf(a, b),
    }
}

/// The tanh-GELU argument sqrt(2/pi) * (x + 0.044715 x^3).
fn gelu_u(x: f32) -> f32 {
    SQRT_2_OVER_PI * (x + GELU_C * x * x * x)
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + libm::expf(-x))
}

/// An elementwise unary operation in fp32.
pub fn unary(op: VecUnOp, x: f32) -> f32 {
    match op {
        VecUnOp::Copy => x,
        VecUnOp::Neg => -x,
        VecUnOp::Abs => x.abs(),
        VecUnOp::Exp => libm::expf(x),
        VecUnOp::Log => libm::logf(x),
        VecUnOp::Sqrt => libm::sqrtf(x),
        VecUnOp::Rsqrt => 1.0 / libm::sqrtf(x),
        VecUnOp::Recip => 1.0 / x,
        VecUnOp::Square => x * x,
        VecUnOp::Tanh => libm::tanhf(x),
        VecUnOp::Sigmoid => sigmoid(x),
        // NaN propagates; -0.0 and negatives give +0.0.
        VecUnOp::Relu => {
            if x > 0.0 || x.is_nan() {
                x
            } else {
                0.0
            }
        }
        // 0.5 * (1 + tanh(u)) = sigmoid(2u) and 0.5 * (1 + erf(z)) = 0.5 * erfc(-z):
        // both forms avoid the cancellation of 1 + tanh or 1 + erf for x < 0.
        VecUnOp::GeluTanh => x * sigmoid(2.0 * gelu_u(x)),
        VecUnOp::GeluErf => 0.5 * x * libm::erfcf(-x * std::f32::consts::FRAC_1_SQRT_2),
        VecUnOp::Silu => x * sigmoid(x),
        VecUnOp::DGeluTanh => {
            let s = sigmoid(2.0 * gelu_u(x));
            let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x);
            s + x * 2.0 * s * (1.0 - s) * du
        }
        VecUnOp::DGeluErf => {
            let cdf = 0.5 * libm::erfcf(-x * std::f32::consts::FRAC_1_SQRT_2);
            let pdf = libm::expf(-0.5 * x * x) * 0.398_942_3;
            cdf + x * pdf
        }
        VecUnOp::DSilu => {
            let s = sigmoid(x);
            s * (1.0 + x * (1.0 - s))
        }
        VecUnOp::NonFinite => {
            if x.is_finite() {
                0.0
            } else {
                1.0
            }
        }
        VecUnOp::Sign => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x
            }
        }
    }
}

/// The identity of a reduction.
pub fn reduce_init(op: ReduceOp) -> f32 {
    match op {
        ReduceOp::Sum | ReduceOp::SumSq => 0.0,
        ReduceOp::Max => f32::NEG_INFINITY,
        ReduceOp::Min => f32::INFINITY,
    }
}

/// One step of a reduction: `acc` combined with element `x`.
pub fn reduce_step(op: ReduceOp, acc: f32, x: f32) -> f32 {
    match op {
        ReduceOp::Sum => acc + x,
        ReduceOp::SumSq => acc + x * x,
        ReduceOp::Max => libm::fmaxf(acc, x),
        ReduceOp::Min => libm::fminf(acc, x),
    }
}

/// Combines a reduction result with what the destination held (accumulate mode).
pub fn reduce_combine(op: ReduceOp, old: f32, new: f32) -> f32 {
    match op {
        ReduceOp::Sum | ReduceOp::SumSq => old + new,
        ReduceOp::Max => libm::fmaxf(old, new),
        ReduceOp::Min => libm::fminf(old, new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every finite value of an 8- or 16-bit type as f64, with its bit pattern.
    fn finite_values(t: DType) -> Vec<(u32, f64)> {
        let n: u32 = if t.size_bytes() == 1 { 256 } else { 65536 };
        (0..n)
            .filter_map(|bits| {
                let b = bits.to_le_bytes();
                let v = load(t, &b[..t.size_bytes() as usize]);
                v.is_finite().then_some((bits, f64::from(v)))
            })
            .collect()
    }

    /// Independent reference: the nearest representable value, found in the
    /// table sorted by value, ties to the even bit pattern; beyond the largest
    /// finite value, saturation (fp8) or infinity (bf16, fp16) per IEEE rounding.
    fn reference(t: DType, x: f64, sorted: &[(f64, u32)]) -> f64 {
        let max = sorted[sorted.len() - 1].0;
        let saturating = matches!(t, DType::Fp8E4M3 | DType::Fp8E5M2);
        if !saturating {
            let below = sorted
                .iter()
                .rev()
                .find(|v| v.0 < max)
                .expect("more than one value")
                .0;
            if x.abs() >= max + (max - below) / 2.0 {
                return f64::INFINITY.copysign(x);
            }
        }
        let i = sorted.partition_point(|v| v.0 < x);
        let mut best = None::<(f64, u32)>;
        for &(v, bits) in &sorted[i.saturating_sub(2)..(i + 2).min(sorted.len())] {
            best = match best {
                Some((bv, bb)) => {
                    let (d, bd) = ((v - x).abs(), (bv - x).abs());
                    if d < bd || (d == bd && bits % 2 == 0 && bb % 2 == 1) {
                        Some((v, bits))
                    } else {
                        Some((bv, bb))
                    }
                }
                None => Some((v, bits)),
            };
        }
        let v = best.expect("window is not empty").0;
        if v == 0.0 {
            0.0f64.copysign(x)
        } else {
            v
        }
    }

    #[test]
    fn narrow_float_rounding_matches_an_exhaustive_reference() {
        // A deterministic spread of inputs: every bit pattern's neighbourhood plus a log sweep.
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for t in [DType::Bf16, DType::Fp16, DType::Fp8E4M3, DType::Fp8E5M2] {
            let table = finite_values(t);
            let mut sorted: Vec<(f64, u32)> = table.iter().map(|&(b, v)| (v, b)).collect();
            sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
            // +0 and -0 are one value; keep +0's even pattern.
            sorted.dedup_by(|a, b| a.0 == b.0 && a.0 == 0.0);
            let mut inputs: Vec<f32> = Vec::new();
            for &(_, v) in table
                .iter()
                .step_by(if t.size_bytes() == 1 { 1 } else { 61 })
            {
                let v = v as f32;
                inputs.extend([
                    v,
                    f32::from_bits(v.to_bits().wrapping_add(1)),
                    v * 1.000_1,
                    v * 0.999_9,
                ]);
            }
            for _ in 0..4000 {
                let e = (next() % 80) as i32 - 40;
                let m = 1.0 + (next() % 1_000_000) as f32 / 1.0e6;
                let s = if next() % 2 == 0 { 1.0 } else { -1.0 };
                inputs.push(s * m * 2f32.powi(e));
            }
            // Exact midpoints between neighbours exercise ties-to-even.
            for w in sorted.windows(2) {
                if w[0].0 < w[1].0 {
                    inputs.push(((w[0].0 + w[1].0) / 2.0) as f32);
                }
            }
            for x in inputs {
                let got = f64::from(round_to(t, x));
                let want = reference(t, f64::from(x), &sorted);
                assert!(
                    got == want || (got == 0.0 && want == 0.0),
                    "{t}: round({x:e}) = {got:e}, reference {want:e}"
                );
            }
        }
    }

    #[test]
    fn specials_follow_the_isa() {
        assert!(round_to(DType::Bf16, f32::NAN).is_nan());
        assert_eq!(round_to(DType::Fp16, 1.0e6), f32::INFINITY);
        assert_eq!(round_to(DType::Fp8E4M3, 1.0e6), 448.0);
        assert_eq!(round_to(DType::Fp8E5M2, f32::NEG_INFINITY), -57344.0);
        assert!(round_to(DType::Fp8E4M3, f32::NAN).is_nan());
        assert_eq!(round_to(DType::Int8, 2.5), 2.0);
        assert_eq!(round_to(DType::Int8, 3.5), 4.0);
        assert_eq!(round_to(DType::Int8, -1000.0), -128.0);
        assert_eq!(round_to(DType::Int8, f32::NAN), 0.0);
        assert_eq!(round_to(DType::Int32, 3.0e10), i32::MAX as f32);
        // Subnormal bf16 survives a round trip (no flush to zero).
        let tiny = f32::from_bits(0x0001_0000);
        assert_eq!(round_to(DType::Bf16, tiny), tiny);
    }

    #[test]
    fn activation_functions_match_f64_formulas() {
        for i in -400..=400 {
            let x = i as f32 / 50.0;
            let xd = f64::from(x);
            let gelu_tanh = 0.5
                * xd
                * (1.0
                    + ((2.0 / std::f64::consts::PI).sqrt() * (xd + 0.044715 * xd.powi(3))).tanh());
            let close =
                |got: f32, want: f64| (f64::from(got) - want).abs() <= 1e-5 * (1.0 + want.abs());
            assert!(
                close(unary(VecUnOp::GeluTanh, x), gelu_tanh),
                "gelu.tanh({x})"
            );
            let sig = 1.0 / (1.0 + (-xd).exp());
            assert!(close(unary(VecUnOp::Silu, x), xd * sig), "silu({x})");
            // Derivatives against central differences of the f64 formulas.
            let h = 1e-6;
            let g = |x: f64| {
                0.5 * x
                    * (1.0
                        + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
            };
            let s = |x: f64| x / (1.0 + (-x).exp());
            assert!(
                close(
                    unary(VecUnOp::DGeluTanh, x),
                    (g(xd + h) - g(xd - h)) / (2.0 * h)
                ),
                "dgelu.tanh({x})"
            );
            assert!(
                close(
                    unary(VecUnOp::DSilu, x),
                    (s(xd + h) - s(xd - h)) / (2.0 * h)
                ),
                "dsilu({x})"
            );
            let erf_gelu = |x: f64| 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
            assert!(
                close(unary(VecUnOp::GeluErf, x), erf_gelu(xd)),
                "gelu.erf({x})"
            );
            assert!(
                close(
                    unary(VecUnOp::DGeluErf, x),
                    (erf_gelu(xd + h) - erf_gelu(xd - h)) / (2.0 * h)
                ),
                "dgelu.erf({x})"
            );
        }
    }
}
