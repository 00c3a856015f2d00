//! The fp32 divider (`z = round_fp32(x / y)`) and square root
//! (`z = round_fp32(sqrt(x))`) of the vector unit's special-function lane,
//! correctly rounded (to nearest even) as IEEE 754 and the simulator's
//! `f32 / f32` and `libm::sqrtf` are; subnormal inputs and results
//! honoured. Combinational.
//!
//! Both first normalise subnormal mantissas (24 bits, leading one at bit
//! 23, the exponent lowered to match). The divider takes the 26-bit
//! quotient of `mx * 2^25 / my` (between 2^24 and 2^26) by the restoring
//! recurrence, one quotient bit per stage (compare, subtract, shift), and
//! a sticky bit for a nonzero remainder; the square root makes the exponent even
//! (doubling the mantissa when it is odd) and takes the 26-bit integer
//! square root of `m * 2^26` by the restoring digit recurrence, one result
//! bit per stage, with a sticky bit for a nonzero remainder. Either
//! significand then goes through [`crate::fp_bits::round_pack`], so an
//! exact result is never rounded and a tie can only be exact. NaN results
//! are the canonical 0x7fc00000.

use crate::fp_bits::{lead_zeros, round_pack};
use crate::verilog::{Item, Module, Port, Signedness};

/// The divider's module name.
pub const FP32_DIV: &str = "tessera_fp32_div";
/// The square root's module name.
pub const FP32_SQRT: &str = "tessera_fp32_sqrt";

/// Unpacks fp32 net `v`: class nets and `{v}_mn` (normalised 24-bit
/// mantissa), `{v}_en` (12-bit two's-complement effective exponent).
fn unpack(v: &str) -> Vec<Item> {
    let n = Item::net;
    vec![
        n(&format!("{v}_max"), 1, &format!("{v}[30:23] == 8'hff")),
        n(
            &format!("{v}_nan"),
            1,
            &format!("{v}_max && {v}[22:0] != 23'd0"),
        ),
        n(
            &format!("{v}_inf"),
            1,
            &format!("{v}_max && {v}[22:0] == 23'd0"),
        ),
        n(&format!("{v}_zero"), 1, &format!("{v}[30:0] == 31'd0")),
        n(
            &format!("{v}_m"),
            24,
            &format!("{{{v}[30:23] != 8'd0, {v}[22:0]}}"),
        ),
        n(&format!("{v}_lz"), 5, &lead_zeros(&format!("{v}_m"), 24, 5)),
        n(&format!("{v}_mn"), 24, &format!("{v}_m << {v}_lz")),
        n(
            &format!("{v}_en"),
            12,
            &format!("{{4'd0, ({v}[30:23] == 8'd0) ? 8'd1 : {v}[30:23]}} - {{7'd0, {v}_lz}}"),
        ),
    ]
}

fn module(name: &str, doc: &str, ports: Vec<Port>, items: Vec<Item>) -> Module {
    Module {
        name: name.into(),
        doc: vec![doc.into()],
        params: vec![],
        ports,
        items,
    }
}

/// The divider: ports `x`, `y` (fp32 bits) in, `z` (fp32 bits) out.
pub fn fp32_div() -> Module {
    let n = Item::net;
    let mut items = unpack("x");
    items.extend(unpack("y"));
    items.extend([
        n("sign", 1, "x[31] ^ y[31]"),
        n(
            "nan",
            1,
            "x_nan | y_nan | (x_zero & y_zero) | (x_inf & y_inf)",
        ),
        n("inf", 1, "x_inf | y_zero"),
        n("zero", 1, "x_zero | y_inf"),
        Item::Comment(
            "mx 2^25 / my lies in (2^24, 2^26): restoring division, one quotient bit per stage."
                .into(),
        ),
        n("dv", 26, "{2'd0, y_mn}"),
        n("v0", 26, "{2'd0, x_mn}"),
    ]);
    for k in 0..26u32 {
        items.extend([
            n(&format!("c{k}"), 1, &format!("v{k} >= dv")),
            n(&format!("s{k}"), 26, &format!("c{k} ? v{k} - dv : v{k}")),
        ]);
        if k < 25 {
            items.push(n(
                &format!("v{}", k + 1),
                26,
                &format!("{{s{k}[24:0], 1'b0}}"),
            ));
            items.push(n(&format!("unused_s{k}"), 1, &format!("s{k}[25]")));
        }
    }
    let quotient: Vec<String> = (0..26).map(|k| format!("c{k}")).collect();
    items.extend([
        n("rem_nz", 1, "s25 != 26'd0"),
        n("sig", 27, &format!("{{{}, rem_nz}}", quotient.join(", "))),
        n("etop", 12, "x_en - y_en + 12'd127"),
    ]);
    items.extend(round_pack("r", "sig", 27, "etop"));
    items.push(Item::Assign {
        lhs: "z".into(),
        rhs: "nan ? 32'h7fc00000 : inf ? {sign, 8'hff, 23'd0} : zero ? {sign, 31'd0} : r_over ? {sign, 8'hff, 23'd0} : {sign, r_mag}".into(),
    });
    module(
        FP32_DIV,
        "fp32 divider: z = round_fp32(x / y), round to nearest even, subnormals honoured. Combinational.",
        vec![
            Port::input_bus("x", "32", Signedness::Unsigned),
            Port::input_bus("y", "32", Signedness::Unsigned),
            Port::output_bus("z", "32"),
        ],
        items,
    )
}

/// The square root: port `x` (fp32 bits) in, `z` (fp32 bits) out.
pub fn fp32_sqrt() -> Module {
    let n = Item::net;
    let mut items = unpack("x");
    items.extend([
        n("nan", 1, "x_nan | (x[31] & !x_zero)"),
        Item::Comment("An odd exponent doubles the mantissa; the radicand is m 2^26.".into()),
        n("odd", 1, "x_en[0]"),
        n("rad", 52, "odd ? {1'b0, x_mn, 27'd0} : {2'b0, x_mn, 26'd0}"),
        n("ev", 12, "odd ? x_en - 12'd1 : x_en"),
        Item::Comment("e_top = (ev - 150) / 2 - 14 + 26 + 127 = (ev + 64) / 2 + 32.".into()),
        n("evp", 12, "ev + 12'd64"),
        n("etop", 12, "{1'b0, evp[11:1]} + 12'd32"),
        n("unused_evp", 1, "evp[0]"),
        n("q0", 26, "26'd0"),
        n("r0", 28, "28'd0"),
    ]);
    // Restoring square root, one result bit per stage from the top pair.
    for i in 0..26u32 {
        let hi = 51 - 2 * i;
        items.extend([
            n(
                &format!("t{i}"),
                28,
                &format!("{{r{i}[25:0], rad[{hi}:{}]}}", hi - 1),
            ),
            n(&format!("d{i}"), 28, &format!("{{q{i}, 2'b01}}")),
            n(&format!("k{i}"), 1, &format!("t{i} >= d{i}")),
            n(
                &format!("r{}", i + 1),
                28,
                &format!("k{i} ? t{i} - d{i} : t{i}"),
            ),
            n(&format!("q{}", i + 1), 26, &format!("{{q{i}[24:0], k{i}}}")),
            n(
                &format!("unused_s{i}"),
                1,
                &format!("r{i}[27:26] != 2'd0 | q{i}[25]"),
            ),
        ]);
    }
    items.extend([
        n("sig", 27, "{q26, r26 != 28'd0}"),
        n("unused_q", 1, "q26[25]"),
    ]);
    items.extend(round_pack("r", "sig", 27, "etop"));
    items.extend([
        n("unused_r", 1, "r_over"),
        Item::Assign {
            lhs: "z".into(),
            rhs: "nan ? 32'h7fc00000 : (x_inf | x_zero) ? x : {1'b0, r_mag}".into(),
        },
    ]);
    module(
        FP32_SQRT,
        "fp32 square root: z = round_fp32(sqrt(x)), round to nearest even, subnormals honoured. Combinational.",
        vec![
            Port::input_bus("x", "32", Signedness::Unsigned),
            Port::output_bus("z", "32"),
        ],
        items,
    )
}
