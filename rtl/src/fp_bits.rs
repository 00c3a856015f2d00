//! Bit-level helpers for the floating-point datapaths, emitted as plain
//! expressions (no `always` blocks): leading-zero counts as priority
//! chains of conditional operators, and the normalise-round-pack back end
//! shared by the divider and the square root.

use crate::verilog::Item;

/// A Verilog expression counting the leading zeros of the `width`-bit net
/// `sig` as a `bits`-bit value: `width` when `sig` is zero. `bits` must hold
/// `width` (`2^bits > width`).
pub fn lead_zeros(sig: &str, width: u32, bits: u32) -> String {
    let mut e = format!("{bits}'d{width}");
    for i in 0..width {
        e = format!("{sig}[{i}] ? {bits}'d{} : ({e})", width - 1 - i);
    }
    e
}

/// Nets `{p}_mag` (31 bits: the rounded fp32 exponent and fraction,
/// carried into infinity's pattern on overflow) and `{p}_over` (the
/// normalised exponent is 255 or more) of the positive value
/// `S * 2^(e_top - 127 - (width - 1))`, where `S` is the `width`-bit net
/// `sig` (its bit 0 may be a sticky bit: it must lie below the guard bit,
/// so `S`'s leading one must be at bit 25 or higher when it is nonzero)
/// and `e_top` the 12-bit two's-complement net `etop`: the biased exponent
/// of a leading one at bit `width - 1`. Round to nearest even; subnormal
/// results keep their scale (the significand shifts right, with a sticky
/// bit, to exponent 1).
pub fn round_pack(p: &str, sig: &str, width: u32, etop: &str) -> Vec<Item> {
    let n = Item::net;
    let w = width + 32;
    let lzb = 32 - width.leading_zeros();
    vec![
        n(&format!("{p}_lz"), lzb, &lead_zeros(sig, width, lzb)),
        n(
            &format!("{p}_e"),
            12,
            &format!("{etop} - {{{}'d0, {p}_lz}}", 12 - lzb),
        ),
        n(
            &format!("{p}_normal"),
            1,
            &format!("!{p}_e[11] && {p}_e != 12'd0"),
        ),
        n(
            &format!("{p}_tpos"),
            1,
            &format!("!{etop}[11] && {etop} != 12'd0"),
        ),
        n(&format!("{p}_tm1"), 12, &format!("{etop} - 12'd1")),
        n(&format!("{p}_neg"), 12, &format!("12'd1 - {etop}")),
        n(
            &format!("{p}_shl"),
            lzb,
            &format!(
                "{p}_normal ? {p}_lz : {p}_tpos ? {p}_tm1[{}:0] : {lzb}'d0",
                lzb - 1
            ),
        ),
        n(
            &format!("{p}_shr"),
            6,
            &format!("({p}_normal || {p}_tpos) ? 6'd0 : ({p}_neg > 12'd40) ? 6'd40 : {p}_neg[5:0]"),
        ),
        n(
            &format!("{p}_w"),
            w,
            &format!("({{{sig}, 32'd0}} << {p}_shl) >> {p}_shr"),
        ),
        n(
            &format!("{p}_up"),
            1,
            &format!(
                "{p}_w[{g}] & ({p}_w[{}:0] != {}'d0 | {p}_w[{}])",
                w - 26,
                w - 25,
                w - 24,
                g = w - 25
            ),
        ),
        n(
            &format!("{p}_ef"),
            8,
            &format!("{p}_normal ? {p}_e[7:0] : 8'd0"),
        ),
        n(
            &format!("{p}_mag"),
            31,
            &format!(
                "{{{p}_ef, {p}_w[{}:{}]}} + {{30'd0, {p}_up}}",
                w - 2,
                w - 24
            ),
        ),
        n(
            &format!("{p}_over"),
            1,
            &format!("{p}_normal && {p}_e >= 12'd255"),
        ),
        n(&format!("unused_{p}_top"), 1, &format!("{p}_w[{}]", w - 1)),
        n(
            &format!("unused_{p}_hi"),
            1,
            &format!(
                "{p}_e[10:8] != 3'd0 | {p}_tm1[11:{lzb}] != {}'d0 | {p}_neg[11:6] != 6'd0",
                12 - lzb
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_put_the_top_bit_first() {
        assert_eq!(
            lead_zeros("s", 2, 2),
            "s[1] ? 2'd0 : (s[0] ? 2'd1 : (2'd2))"
        );
    }
}
