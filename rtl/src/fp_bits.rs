//! Bit-level helpers for the floating-point datapaths, emitted as plain
//! expressions (no `always` blocks): leading-zero counts as priority
//! chains of conditional operators.

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
