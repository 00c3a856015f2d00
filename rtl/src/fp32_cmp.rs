//! The fp32 comparator of the vector unit: IEEE `<` and `==` (false when
//! either operand is NaN; +0 equals -0) and the simulator's `max`/`min`,
//! which are `libm::fmaxf`/`fminf`: `fmaxf(x, y) = (x is NaN or x < y) ? y : x`
//! and `fminf(x, y) = (y is NaN or x < y) ? x : y`. So the non-NaN operand
//! wins, and of two equal zeros `max` returns its first operand and `min`
//! its second (`max(-0, +0) = -0`, `min(-0, +0) = +0`): the ISA fixes no
//! rule for signed zeros, the simulator is the reference. Combinational.

use crate::verilog::{Item, Module, Port};

/// The comparator's module name.
pub const FP32_CMP: &str = "tessera_fp32_cmp";

/// The comparator: ports `x`, `y` (fp32 bits) in; `lt`, `eq` (one bit) and
/// `max`, `min` (fp32 bits) out.
pub fn fp32_cmp() -> Module {
    let items = vec![
        Item::net("x_nan", 1, "x[30:23] == 8'hff && x[22:0] != 23'd0"),
        Item::net("y_nan", 1, "y[30:23] == 8'hff && y[22:0] != 23'd0"),
        Item::net("unordered", 1, "x_nan | y_nan"),
        Item::net("zeros", 1, "x[30:0] == 31'd0 && y[30:0] == 31'd0"),
        Item::Comment("Ordered magnitudes: sign-magnitude order, zeros equal.".into()),
        Item::net(
            "less",
            1,
            "(x[31] != y[31]) ? x[31] : (x[31] ? (x[30:0] > y[30:0]) : (x[30:0] < y[30:0]))",
        ),
        Item::Assign {
            lhs: "lt".into(),
            rhs: "!unordered && !zeros && less".into(),
        },
        Item::Assign {
            lhs: "eq".into(),
            rhs: "!unordered && (zeros || x == y)".into(),
        },
        Item::Assign {
            lhs: "max".into(),
            rhs: "(x_nan | lt) ? y : x".into(),
        },
        Item::Assign {
            lhs: "min".into(),
            rhs: "(y_nan | lt) ? x : y".into(),
        },
    ];
    Module {
        name: FP32_CMP.into(),
        doc: vec![
            "fp32 comparator: IEEE lt/eq, libm fmaxf/fminf (the non-NaN operand wins). Combinational.".into(),
        ],
        params: vec![],
        ports: vec![
            Port::input_bus("x", "32", crate::verilog::Signedness::Unsigned),
            Port::input_bus("y", "32", crate::verilog::Signedness::Unsigned),
            out1("lt"),
            out1("eq"),
            Port::output_bus("max", "32"),
            Port::output_bus("min", "32"),
        ],
        items,
    }
}

/// A one-bit output wire.
pub(crate) fn out1(name: &str) -> Port {
    Port {
        width: None,
        ..Port::output_bus(name, "1")
    }
}
