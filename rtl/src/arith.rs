//! Arithmetic building blocks emitted as nets, shaped for FPGA fabric:
//! a multiplier as a balanced tree of shifted partial products, so its depth
//! is three carry chains instead of the eight of Yosys's array multiplier,
//! split in two halves that a pipeline boundary may separate.

use crate::verilog::Item;

/// Whether the multiplicand's top bit weighs negatively (two's complement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operands {
    /// Both operands unsigned: the product is exact in 16 bits.
    Unsigned,
    /// Both operands two's complement: the product is exact in 16 bits
    /// (-128 x -128 = 16384).
    Signed,
}

/// The first half of an 8 x 8 -> 16 multiplier of the 8-bit nets `a` and
/// `b`: eight partial products (`a` extended to 16 bits, shifted, gated by
/// a bit of `b`; the sign bit of a signed `b` weighs -128) summed in pairs
/// into the nets `{p}_q0` .. `{p}_q3`.
pub fn mul8_first_half(p: &str, a: &str, b: &str, ops: Operands) -> Vec<Item> {
    let ext = match ops {
        Operands::Signed => format!("{{{{8{{{a}[7]}}}}, {a}}}"),
        Operands::Unsigned => format!("{{8'd0, {a}}}"),
    };
    let mut items = vec![Item::net(&format!("{p}_a16"), 16, &ext)];
    for i in 0..8 {
        let shifted = if i == 0 {
            format!("{p}_a16")
        } else {
            format!("{{{p}_a16[{}:0], {i}'d0}}", 15 - i)
        };
        items.push(Item::net(
            &format!("{p}_pp{i}"),
            16,
            &format!("{b}[{i}] ? {shifted} : 16'd0"),
        ));
    }
    let last = match ops {
        Operands::Signed => "-",
        Operands::Unsigned => "+",
    };
    for q in 0..4 {
        let op = if q == 3 { last } else { "+" };
        items.push(Item::net(
            &format!("{p}_q{q}"),
            16,
            &format!("{p}_pp{} {op} {p}_pp{}", 2 * q, 2 * q + 1),
        ));
    }
    items
}

/// The second half: `{out} = ({q0} + {q1}) + ({q2} + {q3})`, reading the four
/// sums by the names `{p}_q0` .. `{p}_q3`.
pub fn mul8_second_half(p: &str, out: &str) -> Vec<Item> {
    vec![
        Item::net(&format!("{p}_h0"), 16, &format!("{p}_q0 + {p}_q1")),
        Item::net(&format!("{p}_h1"), 16, &format!("{p}_q2 + {p}_q3")),
        Item::net(out, 16, &format!("{p}_h0 + {p}_h1")),
    ]
}
