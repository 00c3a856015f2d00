//! The bf16 x bf16 -> fp32 partial-sum datapath: one fused multiply-add per
//! step, `p_out = round(a * w + p_in)` with the exact product and a single
//! rounding to nearest even, as the functional simulator's `f32::mul_add`
//! on bf16 inputs widened to fp32. Subnormal inputs and partial sums are
//! honoured (no flush to zero), overflow gives infinity, an exact zero sum
//! is +0 unless both addends are -0.
//!
//! NaN results (a NaN input, inf x 0, inf - inf) are the canonical quiet NaN
//! 0x7fc00000: the ISA says only that NaN stays NaN, so testbenches compare
//! NaNs by class, every other result bit for bit.
//!
//! How it is exact: the 16-bit product mantissa (an unsigned 8 x 8
//! multiply, which ECP5 synthesis maps to a `MULT18X18D`) is normalised,
//! then of the product and the 24-bit partial-sum mantissa the one with the
//! higher top (an exponent `t`, biased by 268 so that it is never negative)
//! is `big` and sits at the top of a 27-bit window; the other is shifted
//! right by the exponent difference with its lost bits ORed into bit 0 (the
//! sticky bit): one alignment shifter. 27 bits are 24 mantissa bits plus
//! guard, round and sticky: an effective subtraction that loses bits to the
//! sticky bit has an exponent difference of at least 2 and so cancels at
//! most one leading bit, and with a difference of 0 or 1 nothing is lost
//! (a subnormal partial sum as `big` fixes the rounding position at its own
//! last bit, higher still). One adder forms `big + small` or `big - small`
//! (carry-in through an extra low bit) and a second `small - big`, taken
//! when the first is negative. The sum is normalised left by at most the
//! exponent budget (so subnormal results keep their scale), then rounded by
//! adding the round bit to the packed exponent and fraction, which carries
//! into the exponent and into infinity as IEEE 754 requires.
//!
//! Seven segments: unpack and the mantissa product; normalise the product;
//! special values, swap and align; add; count leading zeros (a balanced
//! tree), shift = min(count, exponent - 1), shift by its 16 and 8; shift by
//! its 4, 2, 1; round and pack. Registered boundaries as P grows: after the add,
//! after the product (the hard multiplier is slow), after the product
//! normalisation, between the two normalisation halves, after the
//! alignment, before the rounding. Boundaries
//! 0 and 1 carry nothing that mixes the product with the partial sum, so
//! the output-stationary form
//! ([`crate::pipeline::Datapath::accumulator_items`]) registers them on the
//! product alone.

use crate::pipeline::{carry, Datapath, Segment};
use crate::verilog::Item;

fn n(name: &str, width: u32, rhs: &str) -> Item {
    Item::net(name, width, rhs)
}

fn unpack(items: &mut Vec<Item>, x: &str, src: &str, exp_hi: u32, frac_bits: u32) {
    let top = exp_hi + 1;
    let fz = format!("{frac_bits}'d0");
    items.push(n(&format!("s0_{x}_s"), 1, &format!("{src}[{top}]")));
    items.push(n(
        &format!("s0_{x}_e"),
        8,
        &format!("{src}[{exp_hi}:{frac_bits}]"),
    ));
    items.push(n(
        &format!("s0_{x}_f"),
        frac_bits,
        &format!("{src}[{}:0]", frac_bits - 1),
    ));
    items.push(n(
        &format!("s0_{x}_zero"),
        1,
        &format!("(s0_{x}_e == 8'd0) && (s0_{x}_f == {fz})"),
    ));
    items.push(n(
        &format!("s0_{x}_inf"),
        1,
        &format!("(s0_{x}_e == 8'hff) && (s0_{x}_f == {fz})"),
    ));
    items.push(n(
        &format!("s0_{x}_nan"),
        1,
        &format!("(s0_{x}_e == 8'hff) && (s0_{x}_f != {fz})"),
    ));
    // Subnormals have exponent field 0 and the scale of exponent 1.
    items.push(n(
        &format!("s0_{x}_e1"),
        8,
        &format!("(s0_{x}_e == 8'd0) ? 8'd1 : s0_{x}_e"),
    ));
}

/// A leading-zero step of the `w`-bit net `s{seg}_m{from}` by `k` bits:
/// `s{seg}_go{k}` says whether its top `k` bits are zero, and `s{seg}_m{to}`
/// is it shifted left by `k` when they are.
fn lz_step(items: &mut Vec<Item>, seg: u32, (from, to): (&str, &str), w: u32, k: u32) {
    let (mi, mo, go) = (
        format!("s{seg}_m{from}"),
        format!("s{seg}_m{to}"),
        format!("s{seg}_go{k}"),
    );
    items.push(n(&go, 1, &format!("{mi}[{}:{}] == {k}'d0", w - 1, w - k)));
    items.push(n(
        &mo,
        w,
        &format!("{go} ? {{{mi}[{}:0], {k}'d0}} : {mi}", w - 1 - k),
    ));
}

/// A leading-zero counter of a `2^levels`-bit value whose bit `j` is the
/// expression `bit(j)`, as a balanced tree (pairs of bits, then pairs of
/// pairs), so its depth is `levels` mux levels instead of a priority chain:
/// returns the `levels`-bit count net, valid when the value is not zero
/// (the caller pads it with a one).
fn lzc(items: &mut Vec<Item>, p: &str, bit: &dyn Fn(u32) -> String, levels: u32) -> String {
    // Level 1: bit pairs, count width 1.
    let mut nodes: Vec<(String, String)> = (0..1u32 << (levels - 1))
        .map(|i| {
            let (z, c) = (format!("{p}_z1_{i}"), format!("{p}_c1_{i}"));
            let (hi, lo) = (2 * i + 1, 2 * i);
            // Zero flags are read by the parent's count only from a high
            // child, so the lowest node of every level needs none.
            if i != 0 {
                items.push(n(&z, 1, &format!("~({} | {})", bit(hi), bit(lo))));
            }
            items.push(n(&c, 1, &format!("~{}", bit(hi))));
            (z, c)
        })
        .collect();
    for level in 2..=levels {
        let top = level == levels;
        nodes = nodes
            .chunks(2)
            .enumerate()
            .map(|(i, pair)| {
                let ((zl, cl), (zh, ch)) = (&pair[0], &pair[1]);
                let (z, c) = (format!("{p}_z{level}_{i}"), format!("{p}_c{level}_{i}"));
                if !top && i != 0 {
                    items.push(n(&z, 1, &format!("{zh} & {zl}")));
                }
                items.push(n(
                    &c,
                    level,
                    &format!("{zh} ? {{1'b1, {cl}}} : {{1'b0, {ch}}}"),
                ));
                (z, c)
            })
            .collect();
    }
    nodes.remove(0).1
}

/// The datapath of [`crate::pe::pe`] for bf16.
pub fn datapath() -> Datapath {
    let mut s0 = vec![Item::Comment(
        "segment 0: unpack, first half of the product, exponents, special values".into(),
    )];
    unpack(&mut s0, "a", "a_in", 14, 7);
    unpack(&mut s0, "w", "w", 14, 7);
    unpack(&mut s0, "c", "p_in", 30, 23);
    // A zero partial sum needs no flag: its mantissa is simply 0.
    s0.retain(|i| !matches!(i, Item::Net { name, .. } if name == "s0_c_zero"));
    s0.extend([
        n("s0_a_m", 8, "{s0_a_e != 8'd0, s0_a_f}"),
        n("s0_w_m", 8, "{s0_w_e != 8'd0, s0_w_f}"),
    ]);
    s0.push(Item::Comment(
        "The exact 16-bit mantissa product: a hard multiplier on ECP5 (MULT18X18D), unsigned."
            .into(),
    ));
    s0.push(n("s0_mul", 16, "s0_a_m * s0_w_m"));
    s0.extend([
        n("s0_ms", 24, "{s0_c_e != 8'd0, s0_c_f}"),
        Item::Comment(
            "Exclusive tops of the operands, biased by 268: product 16-bit mantissa, partial sum 24-bit.".into(),
        ),
        n("s0_tp", 10, "{2'd0, s0_a_e1} + {2'd0, s0_w_e1} + 10'd16"),
        n("s0_ts", 10, "{2'd0, s0_c_e1} + 10'd142"),
        n("s0_pz", 1, "s0_a_zero | s0_w_zero"),
        n("s0_sp", 1, "s0_a_s ^ s0_w_s"),
        n("s0_cs", 1, "s0_c_s"),
        n(
            "s0_pnan",
            1,
            "s0_a_nan | s0_w_nan | (s0_a_inf & s0_w_zero) | (s0_w_inf & s0_a_zero)",
        ),
        n("s0_pinf", 1, "(s0_a_inf | s0_w_inf) & ~s0_pnan"),
    ]);
    // The product's and the partial sum's special flags stay apart until
    // segment 2, so boundaries 0 and 1 carry nothing that mixes them (the
    // output-stationary form pipelines the product alone).
    let flags = [
        carry("pnan", 1),
        carry("pinf", 1),
        carry("c_nan", 1),
        carry("c_inf", 1),
    ];
    let special = || [carry("nan", 1), carry("inf", 1), carry("inf_s", 1)];
    let common = |v: &mut Vec<crate::pipeline::Carry>| v.extend(special());
    let mut out0 = vec![
        carry("mul", 16),
        carry("ms", 24),
        carry("tp", 10),
        carry("ts", 10),
        carry("pz", 1),
        carry("sp", 1),
        carry("cs", 1),
    ];
    out0.extend(flags.clone());

    let mut s1 = vec![Item::Comment(
        "segment 1: the exact product mantissa, normalised (subnormal inputs give leading zeros)"
            .into(),
    )];
    s1.push(n("s1_ma", 16, "s1_mul"));
    lz_step(&mut s1, 1, ("a", "b"), 16, 8);
    lz_step(&mut s1, 1, ("b", "c"), 16, 4);
    lz_step(&mut s1, 1, ("c", "d"), 16, 2);
    lz_step(&mut s1, 1, ("d", "e"), 16, 1);
    s1.extend([
        n("s1_mp", 16, "s1_me"),
        Item::Comment("The product's leading-zero count lowers its top.".into()),
        n(
            "s1_tpn",
            10,
            "s1_tp - {6'd0, s1_go8, s1_go4, s1_go2, s1_go1}",
        ),
    ]);
    let mut out1 = vec![
        carry("mp", 16),
        carry("ms", 24),
        carry("tpn", 10),
        carry("ts", 10),
        carry("pz", 1),
        carry("sp", 1),
        carry("cs", 1),
    ];
    out1.extend(flags);

    let s2 = vec![
        Item::Comment(
            "segment 2: special values; the operand with the higher top is `big`, the other is aligned to it, lost bits become sticky".into(),
        ),
        n(
            "s2_nan",
            1,
            "s2_pnan | s2_c_nan | (s2_pinf & s2_c_inf & (s2_sp != s2_cs))",
        ),
        n("s2_inf", 1, "~s2_nan & (s2_pinf | s2_c_inf)"),
        n("s2_inf_s", 1, "s2_pinf ? s2_sp : s2_cs"),
        Item::Comment(
            "A zero product is never `big`; then its shift distance is irrelevant.".into(),
        ),
        n("s2_dc", 11, "{1'b0, s2_ts} - {1'b0, s2_tpn}"),
        n("s2_cbig", 1, "s2_pz | ~s2_dc[10]"),
        n("s2_t", 10, "s2_cbig ? s2_ts : s2_tpn"),
        n("s2_d", 10, "s2_cbig ? s2_dc[9:0] : s2_tpn - s2_ts"),
        Item::Comment(
            "A distance of 32 or more shifts everything into the sticky bit (27 to 31 do too): no compare.".into(),
        ),
        n("s2_dhi", 1, "|s2_d[9:5]"),
        n("s2_pf", 27, "{s2_mp, 11'd0}"),
        n("s2_cf", 27, "{s2_ms, 3'd0}"),
        n("s2_big", 27, "s2_cbig ? s2_cf : s2_pf"),
        n("s2_sm", 27, "s2_cbig ? s2_pf : s2_cf"),
        n("s2_sa", 27, "s2_dhi ? 27'd0 : (s2_sm >> s2_d[4:0])"),
        n(
            "s2_sl",
            1,
            "s2_dhi ? |s2_sm : |(s2_sm & ~({27{1'b1}} << s2_d[4:0]))",
        ),
        n("s2_sw", 27, "{s2_sa[26:1], s2_sa[0] | s2_sl}"),
    ];
    let mut out2 = vec![
        carry("big", 27),
        carry("sw", 27),
        carry("cbig", 1),
        carry("t", 10),
        carry("sp", 1),
        carry("cs", 1),
    ];
    common(&mut out2);

    let s3 = vec![
        Item::Comment(
            "segment 3: signed-magnitude add, one adder with carry-in for big +/- small; an exact zero is +0 unless both are -0".into(),
        ),
        n("s3_sub", 1, "s3_sp ^ s3_cs"),
        n(
            "s3_as1",
            29,
            "{1'b0, s3_big, 1'b1} + {s3_sub, s3_sw ^ {27{s3_sub}}, s3_sub}",
        ),
        n("s3_as", 28, "s3_as1[28:1]"),
        n("s3_neg", 1, "s3_sub & s3_as[27]"),
        n("s3_smb", 28, "{1'b0, s3_sw} - {1'b0, s3_big}"),
        n("s3_m", 28, "s3_neg ? s3_smb : s3_as"),
        n("s3_bs", 1, "s3_cbig ? s3_cs : s3_sp"),
        n(
            "s3_sign",
            1,
            "~s3_sub ? s3_sp : (s3_neg ? ~s3_bs : ((s3_as1 == 29'd0) ? 1'b0 : s3_bs))",
        ),
        Item::Comment("Biased exponent of window bit 27.".into()),
        n("s3_e", 10, "s3_t - 10'd141"),
    ];
    let mut out3 = vec![carry("m", 28), carry("e", 10), carry("sign", 1)];
    common(&mut out3);

    let mut s4 = vec![Item::Comment(
        "segment 4: shift = min(leading zeros, exponent - 1), so subnormal results keep their scale; shift by its 16 and 8".into(),
    )];
    // The sum padded with ones to 32 bits: an all-zero sum counts 28.
    let padded = |j: u32| {
        if j >= 4 {
            format!("s4_m[{}]", j - 4)
        } else {
            "1'b1".to_string()
        }
    };
    let lz = lzc(&mut s4, "s4_lz", &padded, 5);
    s4.extend([
        n("s4_lz", 5, &lz),
        n("s4_room", 10, "s4_e - 10'd1"),
        n(
            "s4_sh",
            5,
            "({5'd0, s4_lz} > s4_room) ? s4_room[4:0] : s4_lz",
        ),
        n("s4_mb", 28, "s4_sh[4] ? {s4_m[11:0], 16'd0} : s4_m"),
        n("s4_mo", 28, "s4_sh[3] ? {s4_mb[19:0], 8'd0} : s4_mb"),
    ]);
    let mut out4 = vec![
        carry("mo", 28),
        carry("sh", 5),
        carry("e", 10),
        carry("sign", 1),
    ];
    common(&mut out4);

    let s5 = vec![
        Item::Comment("segment 5: the rest of the shift, by 4, 2, 1; the exponent".into()),
        n("s5_mb", 28, "s5_sh[2] ? {s5_mo[23:0], 4'd0} : s5_mo"),
        n("s5_mc", 28, "s5_sh[1] ? {s5_mb[25:0], 2'd0} : s5_mb"),
        n("s5_mf", 28, "s5_sh[0] ? {s5_mc[26:0], 1'd0} : s5_mc"),
        Item::Comment("The exponent follows the whole shift (here, off segment 4's path).".into()),
        n("s5_ef", 10, "s5_e - {5'd0, s5_sh}"),
    ];
    let mut out5 = vec![carry("mf", 28), carry("ef", 10), carry("sign", 1)];
    common(&mut out5);

    let s6 = vec![
        Item::Comment("segment 6: round to nearest even, pack, special values".into()),
        n("s6_g", 1, "s6_mf[3]"),
        n("s6_st", 1, "|s6_mf[2:0]"),
        n("s6_up", 1, "s6_g & (s6_st | s6_mf[4])"),
        n("s6_ex", 10, "s6_mf[27] ? s6_ef : 10'd0"),
        n("s6_pack", 31, "{s6_ex[7:0], s6_mf[26:4]} + {30'd0, s6_up}"),
        n("s6_big", 1, "s6_ex >= 10'd255"),
        n(
            "s6_res",
            32,
            "s6_nan ? 32'h7fc00000 : (s6_inf ? {s6_inf_s, 31'h7f800000} : (s6_big ? {s6_sign, 31'h7f800000} : {s6_sign, s6_pack}))",
        ),
    ];

    Datapath {
        segments: [s0, s1, s2, s3, s4, s5, s6]
            .into_iter()
            .zip([out0, out1, out2, out3, out4, out5, vec![]])
            .map(|(items, out)| Segment { items, out })
            .collect(),
        cut_order: vec![3, 0, 1, 4, 2, 5],
        res_width: 32,
        product_cut_order: vec![1, 0],
        sum_carries: vec!["ms", "ts", "cs", "c_nan", "c_inf"],
    }
}
