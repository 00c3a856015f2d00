//! The vector unit's element conversions, as the simulator's
//! `numerics::load`/`store` define them (`docs/isa.md`, "Reading and
//! writing elements"):
//!
//! - [`VEC_WIDEN`] reads an element of any type as fp32: exactly for the
//!   floating types and int8 (subnormals normalised, never flushed), with
//!   round to nearest even for int32 beyond 2^24.
//! - [`VEC_NARROW`] writes fp32 as any type with round to nearest even:
//!   bf16 and fp16 overflow to infinity; fp8 e4m3/e5m2 saturate to their
//!   largest finite value (infinities included); int8/int32 round, then
//!   saturate, NaN giving 0; subnormal results are kept.
//!
//! Element bits sit in the low bits of a 32-bit port, zero-extended. The
//! type is the ISA's element-type code ([`DType::code`]). NaNs keep their
//! sign and are otherwise canonical (quiet, payload dropped): the ISA fixes
//! no payload, so testbenches compare NaNs by class. Both are combinational.

use tessera_isa::DType;

use crate::fp_bits::lead_zeros;
use crate::verilog::{Item, Module, Port, Signedness};

/// The widening module's name.
pub const VEC_WIDEN: &str = "tessera_vec_widen";
/// The narrowing module's name.
pub const VEC_NARROW: &str = "tessera_vec_narrow";

/// A narrow floating format: sign, `e` exponent bits (bias `bias`), `m`
/// fraction bits. Invariant: `e + m + 1 <= 16`, `m <= 10`.
#[derive(Debug, Clone, Copy)]
struct Small {
    ty: DType,
    e: u32,
    m: u32,
    bias: u32,
    /// Overflow and infinity saturate to `max` (OCP fp8 "satfinite").
    saturate: bool,
    /// The all-ones exponent with a zero fraction is infinity (otherwise
    /// only the all-ones pattern is NaN, as e4m3's 0x7f).
    has_inf: bool,
    /// Largest finite value's bits, sign clear.
    max: u32,
    /// The NaN written, sign clear.
    nan: u32,
}

/// The narrow floating types, from their definitions in `docs/isa.md`.
const SMALL: [Small; 4] = [
    Small {
        ty: DType::Bf16,
        e: 8,
        m: 7,
        bias: 127,
        saturate: false,
        has_inf: true,
        max: 0x7f7f,
        nan: 0x7fc0,
    },
    Small {
        ty: DType::Fp16,
        e: 5,
        m: 10,
        bias: 15,
        saturate: false,
        has_inf: true,
        max: 0x7bff,
        nan: 0x7e00,
    },
    Small {
        ty: DType::Fp8E4M3,
        e: 4,
        m: 3,
        bias: 7,
        saturate: true,
        has_inf: false,
        max: 0x7e,
        nan: 0x7f,
    },
    Small {
        ty: DType::Fp8E5M2,
        e: 5,
        m: 2,
        bias: 15,
        saturate: true,
        has_inf: true,
        max: 0x7b,
        nan: 0x7e,
    },
];

fn tag(ty: DType) -> String {
    ty.name().replace('-', "_")
}

fn type_is(ty: DType) -> String {
    format!("ty == 3'd{}", ty.code())
}

/// fp32 `x` rounded to the small format `f`: nets `{tag}_z` (`1 + e + m` bits).
fn narrow_small(f: Small) -> Vec<Item> {
    let n = Item::net;
    let p = tag(f.ty);
    let (e, m) = (f.e, f.m);
    let bits = 1 + e + m;
    let thr = 128 - f.bias;
    let pw = 11 + m;
    // Rounded magnitudes above the largest finite value overflow.
    let over = format!("{}'h{:x}", e + m, f.max + 1);
    vec![
        Item::Comment(format!(
            "{}: e{e}m{m}, bias {}; {}",
            f.ty,
            f.bias,
            if f.saturate {
                "overflow and infinity saturate"
            } else {
                "overflow gives infinity"
            }
        )),
        n(&format!("{p}_normal"), 1, &format!("ee >= 10'd{thr}")),
        n(
            &format!("{p}_rraw"),
            10,
            &format!("{p}_normal ? 10'd{} : 10'd{} - ee", 23 - m, 23 - m + thr),
        ),
        n(
            &format!("{p}_r"),
            5,
            &format!("({p}_rraw > 10'd26) ? 5'd26 : {p}_rraw[4:0]"),
        ),
        n(&format!("{p}_w"), 48, &format!("{{mx, 24'd0}} >> {p}_r")),
        n(&format!("{p}_q"), m + 1, &format!("{p}_w[{}:24]", 24 + m)),
        n(
            &format!("unused_{p}_q"),
            1,
            &format!("{p}_w[47:{}] != {}'d0", 25 + m, 23 - m),
        ),
        n(
            &format!("{p}_up"),
            1,
            &format!("{p}_w[23] & ({p}_w[22:0] != 23'd0 | {p}_q[0])"),
        ),
        n(
            &format!("{p}_tm1"),
            10,
            &format!("{p}_normal ? ee - 10'd{thr} : 10'd0"),
        ),
        n(
            &format!("{p}_packed"),
            pw,
            &format!(
                "{{{p}_tm1, {m}'d0}} + {{{}'d0, {p}_q}} + {{{}'d0, {p}_up}}",
                pw - m - 1,
                pw - 1
            ),
        ),
        n(
            &format!("{p}_ovf"),
            1,
            &format!("{p}_packed >= {{{}'d0, {over}}}", pw - e - m),
        ),
        n(
            &format!("{p}_z"),
            bits,
            &format!(
                "{{s, xnan ? {w}'h{nan:x} : (xinf | {p}_ovf) ? {w}'h{big:x} : {p}_packed[{top}:0]}}",
                w = e + m,
                nan = f.nan,
                big = if f.saturate { f.max } else { f.max + 1 },
                top = e + m - 1
            ),
        ),
    ]
}

/// The narrowing module: ports `x` (fp32), `ty` (element-type code) in,
/// `z` (the element's bits, zero-extended) out.
pub fn vec_narrow() -> Module {
    let n = Item::net;
    let mut items = vec![
        n("s", 1, "x[31]"),
        n("xmax", 1, "x[30:23] == 8'hff"),
        n("xnan", 1, "xmax && x[22:0] != 23'd0"),
        n("xinf", 1, "xmax && x[22:0] == 23'd0"),
        n("mx", 24, "{x[30:23] != 8'd0, x[22:0]}"),
        n("ee", 10, "{2'd0, (x[30:23] == 8'd0) ? 8'd1 : x[30:23]}"),
    ];
    for f in SMALL {
        items.extend(narrow_small(f));
    }
    items.extend([
        Item::Comment(
            "Integers: round to nearest even, then saturate; NaN gives 0. |x| = mx 2^(ee-150)."
                .into(),
        ),
        n("i_left", 1, "ee >= 10'd150"),
        n("i_big", 1, "ee >= 10'd158"),
        n(
            "i_rraw",
            10,
            "i_left ? 10'd0 : 10'd150 - ee",
        ),
        n("i_r", 5, "(i_rraw > 10'd26) ? 5'd26 : i_rraw[4:0]"),
        n("i_w", 48, "{mx, 24'd0} >> i_r"),
        n("i_up", 1, "i_w[23] & (i_w[22:0] != 23'd0 | i_w[24])"),
        Item::Comment("ee - 150 for ee in 150..157 (150 = 6 mod 8).".into()),
        n("i_shl", 3, "ee[2:0] - 3'd6"),
        n(
            "i_mag",
            32,
            "i_left ? ({8'd0, mx} << i_shl) : ({8'd0, i_w[47:24]} + {31'd0, i_up})",
        ),
        n("i_neg", 32, "32'd0 - i_mag"),
        n(
            "int32_z",
            32,
            "xnan ? 32'd0 : i_big ? (s ? 32'h80000000 : 32'h7fffffff) : (s ? i_neg : i_mag)",
        ),
        n(
            "int8_z",
            8,
            "xnan ? 8'd0 : s ? ((i_big || i_mag > 32'd128) ? 8'h80 : i_neg[7:0]) : ((i_big || i_mag > 32'd127) ? 8'h7f : i_mag[7:0])",
        ),
    ]);
    let mut sel = String::from("32'd0");
    for (ty, z) in [
        (DType::Fp32, "x".to_string()),
        (DType::Int32, "int32_z".to_string()),
        (DType::Int8, "{24'd0, int8_z}".to_string()),
    ]
    .into_iter()
    .chain(
        SMALL
            .iter()
            .map(|f| (f.ty, format!("{{{}'d0, {}_z}}", 31 - f.e - f.m, tag(f.ty)))),
    ) {
        sel = format!("({}) ? {z} : {sel}", type_is(ty));
    }
    items.push(Item::Assign {
        lhs: "z".into(),
        rhs: sel,
    });
    Module {
        name: VEC_NARROW.into(),
        doc: vec![
            "fp32 -> element type ty (ISA code), round to nearest even; fp8 saturates,".into(),
            "integers saturate (NaN -> 0). Combinational.".into(),
        ],
        params: vec![],
        ports: vec![
            Port::input_bus("x", "32", Signedness::Unsigned),
            Port::input_bus("ty", "3", Signedness::Unsigned),
            Port::output_bus("z", "32"),
        ],
        items,
    }
}

/// fp32 value of the small format `f` in the low bits of `raw`: net `{tag}_x`.
fn widen_small(f: Small) -> Vec<Item> {
    let n = Item::net;
    let p = tag(f.ty);
    let (e, m) = (f.e, f.m);
    let ones_e = format!("{e}'h{:x}", (1u32 << e) - 1);
    let nan = if f.has_inf {
        format!("{p}_emax && {p}_f != {m}'d0")
    } else {
        format!("{p}_emax && {p}_f == {m}'h{:x}", (1u32 << m) - 1)
    };
    let inf = if f.has_inf {
        format!("{p}_emax && {p}_f == {m}'d0")
    } else {
        "1'b0".into()
    };
    vec![
        n(&format!("{p}_s"), 1, &format!("raw[{}]", e + m)),
        n(&format!("{p}_e"), e, &format!("raw[{}:{m}]", e + m - 1)),
        n(&format!("{p}_f"), m, &format!("raw[{}:0]", m - 1)),
        n(&format!("{p}_emax"), 1, &format!("{p}_e == {ones_e}")),
        n(&format!("{p}_nan"), 1, &nan),
        n(&format!("{p}_inf"), 1, &inf),
        n(
            &format!("{p}_lz"),
            4,
            &lead_zeros(&format!("{p}_f"), m, 4),
        ),
        Item::Comment("A subnormal's leading one shifts out of the fraction.".into()),
        n(
            &format!("{p}_fsh"),
            m,
            &format!("{p}_f << ({p}_lz + 4'd1)"),
        ),
        n(
            &format!("{p}_x"),
            32,
            &format!(
                "{p}_nan ? {{{p}_s, 8'hff, 1'b1, 22'd0}} : {p}_inf ? {{{p}_s, 8'hff, 23'd0}} : ({p}_e == {e}'d0) ? (({p}_f == {m}'d0) ? {{{p}_s, 31'd0}} : {{{p}_s, 8'd{sub} - {{4'd0, {p}_lz}}, {p}_fsh, {z}'d0}}) : {{{p}_s, {{{pad}'d0, {p}_e}} + 8'd{off}, {p}_f, {z}'d0}}",
                sub = 127 - f.bias,
                off = 127 - f.bias,
                z = 23 - m,
                pad = 8 - e
            ),
        ),
    ]
}

/// The widening module: ports `raw` (the element's bits in the low bits),
/// `ty` (element-type code) in, `z` (fp32) out.
pub fn vec_widen() -> Module {
    let n = Item::net;
    let mut items = Vec::new();
    // bf16 is fp32's top half; the other small formats normalise subnormals.
    let small: Vec<Small> = SMALL
        .iter()
        .copied()
        .filter(|f| f.ty != DType::Bf16)
        .collect();
    for f in &small {
        items.extend(widen_small(*f));
    }
    items.extend([
        Item::Comment("Integers: |v| normalised, round to nearest even (int32 beyond 2^24).".into()),
        n(
            "v",
            32,
            &format!(
                "({}) ? {{{{24{{raw[7]}}}}, raw[7:0]}} : raw",
                type_is(DType::Int8)
            ),
        ),
        n("v_mag", 32, "v[31] ? 32'd0 - v : v"),
        n("v_lz", 6, &lead_zeros("v_mag", 32, 6)),
        n("v_n", 32, "v_mag << v_lz"),
        n("v_up", 1, "v_n[7] & (v_n[6:0] != 7'd0 | v_n[8])"),
        n(
            "int_x",
            32,
            "(v_mag == 32'd0) ? 32'd0 : {v[31], {8'd158 - {2'd0, v_lz}, v_n[30:8]} + {30'd0, v_up}}",
        ),
        n("unused_v_top", 1, "v_n[31]"),
    ]);
    let mut sel = String::from("32'd0");
    for (ty, z) in [
        (DType::Fp32, "raw".to_string()),
        (DType::Bf16, "{raw[15:0], 16'd0}".to_string()),
        (DType::Int8, "int_x".to_string()),
        (DType::Int32, "int_x".to_string()),
    ]
    .into_iter()
    .chain(small.iter().map(|f| (f.ty, format!("{}_x", tag(f.ty)))))
    {
        sel = format!("({}) ? {z} : {sel}", type_is(ty));
    }
    items.push(Item::Assign {
        lhs: "z".into(),
        rhs: sel,
    });
    Module {
        name: VEC_WIDEN.into(),
        doc: vec![
            "element type ty (ISA code) -> fp32, exact (int32 beyond 2^24 rounds to nearest even)."
                .into(),
            "Combinational.".into(),
        ],
        params: vec![],
        ports: vec![
            Port::input_bus("raw", "32", Signedness::Unsigned),
            Port::input_bus("ty", "3", Signedness::Unsigned),
            Port::output_bus("z", "32"),
        ],
        items,
    }
}
