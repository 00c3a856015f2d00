//! The fp32 multiplier of the vector unit: `z = round_fp32(x * y)`, round
//! to nearest even, subnormal inputs and results honoured, as the
//! simulator's `f32 * f32`. Combinational.
//!
//! The exact 48-bit product `p` of the two 24-bit mantissas (hidden bit
//! included; a subnormal has exponent 1 and no hidden bit) has the value
//! `p * 2^(ex + ey - 300)`. With `lz` leading zeros the normalised biased
//! exponent is `E = ex + ey - 126 - lz`; when `E >= 1` the product shifts
//! left by `lz`, otherwise the result is subnormal and the product shifts
//! by `ex + ey - 127` (left when positive, else right with a sticky bit),
//! which puts the 2^-149 bit at the mantissa's bottom. Rounding adds to the
//! packed exponent/fraction, so it carries into the exponent and into
//! infinity; `E >= 255` overflows to infinity. Zero times a finite is a
//! signed zero, infinity times zero is NaN. NaN results are the canonical
//! 0x7fc00000 (the ISA fixes no payload).

use crate::fp_bits::lead_zeros;
use crate::verilog::{Item, Module, Port, Signedness};

/// The multiplier's module name.
pub const FP32_MUL: &str = "tessera_fp32_mul";

/// The multiplier: ports `x`, `y` (fp32 bits) in, `z` (fp32 bits) out.
pub fn fp32_mul() -> Module {
    let n = Item::net;
    let mut items = Vec::new();
    for v in ["x", "y"] {
        items.extend([
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
            n(
                &format!("{v}_e"),
                10,
                &format!("{{2'd0, ({v}[30:23] == 8'd0) ? 8'd1 : {v}[30:23]}}"),
            ),
        ]);
    }
    items.extend([
        n("sign", 1, "x[31] ^ y[31]"),
        n(
            "nan",
            1,
            "x_nan | y_nan | (x_inf & y_zero) | (y_inf & x_zero)",
        ),
        n("inf", 1, "x_inf | y_inf"),
        n("zero", 1, "x_zero | y_zero"),
        n("p", 48, "x_m * y_m"),
        n("esum", 10, "x_e + y_e"),
        n("lz", 6, &lead_zeros("p", 48, 6)),
        Item::Comment("E = esum - 126 - lz >= 1: a normal result.".into()),
        n("normal", 1, "esum >= 10'd127 + {4'd0, lz}"),
        n("e_n", 10, "esum - 10'd126 - {4'd0, lz}"),
        n("k_left", 1, "esum >= 10'd127"),
        n("k", 10, "k_left ? esum - 10'd127 : 10'd127 - esum"),
        n(
            "shl",
            6,
            "normal ? lz : (k_left ? k[5:0] : 6'd0)",
        ),
        n(
            "shr",
            6,
            "(normal || k_left) ? 6'd0 : ((k > 10'd50) ? 6'd50 : k[5:0])",
        ),
        n("w", 98, "({p, 50'd0} << shl) >> shr"),
        n("g", 1, "w[73]"),
        n("st", 1, "w[72:0] != 73'd0"),
        n("up", 1, "g & (st | w[74])"),
        n("ef", 8, "normal ? e_n[7:0] : 8'd0"),
        n("mag", 31, "{ef, w[96:74]} + {30'd0, up}"),
        n("over", 1, "normal && e_n >= 10'd255"),
        Item::Comment(
            "w[97] is the hidden bit, 1 exactly when normal (Verilator ignores nets named unused*).".into(),
        ),
        n("unused_hidden", 1, "w[97]"),
        Item::Assign {
            lhs: "z".into(),
            rhs: "nan ? 32'h7fc00000 : (inf | over) ? {sign, 8'hff, 23'd0} : zero ? {sign, 31'd0} : {sign, mag}".into(),
        },
    ]);
    Module {
        name: FP32_MUL.into(),
        doc: vec![
            "fp32 multiplier: z = round_fp32(x * y), round to nearest even, subnormals honoured,"
                .into(),
            "canonical NaN. Combinational.".into(),
        ],
        params: vec![],
        ports: vec![
            Port::input_bus("x", "32", Signedness::Unsigned),
            Port::input_bus("y", "32", Signedness::Unsigned),
            Port::output_bus("z", "32"),
        ],
        items,
    }
}
