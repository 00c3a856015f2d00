//! One lane of the vector unit (`tessera_vec_lane`); the unit of
//! `vector.lanes` of them is [`crate::vec_unit`].
//!
//! A lane takes fp32 operands already widened ([`crate::vec_convert`]):
//! `a`, `b`, `mask` (`v.sel`) and the scalars `alpha`, `beta` (`v.axpby`),
//! the instruction's opcode and `op` field as the ISA encodes them
//! ([`crate::vec_op`]) and the destination's element-type code; it gives
//! the fp32 result `y` and `w`, `y` written as the destination type. `bad`
//! flags an operation the lane does not compute (its `y` is 0).
//!
//! Datapath, bit-exact with `sim/src/numerics.rs`: two fp32 multipliers
//! ([`crate::fp32_mul`]) and one adder ([`crate::fp32_add`]) so `v.axpby`
//! is `round(round(alpha a) + round(beta b))` in one pass; `sub` adds `-b`;
//! `square` multiplies `a` by itself; the comparator
//! ([`crate::fp32_cmp`]) gives `max`, `min` and the comparisons (1.0 or
//! 0.0); the unary operations are sign and class logic.
//!
//! Pipelining: the lane's result leaves `vector.latency_cycles` clock edges
//! after its operands enter (`out_valid` follows `in_valid`), one element
//! per cycle, so a vector operation on n elements per lane takes latency +
//! n cycles as `docs/timing.md` models it. The registers sit after the
//! combinational datapath (a synthesis tool may retime them into it).

use tessera_isa::field::{VecBinOp, VecUnOp};

use crate::fp32_add::FP32_ADD;
use crate::fp32_cmp::{out1, FP32_CMP};
use crate::fp32_mul::FP32_MUL;
use crate::vec_convert::VEC_NARROW;
use crate::vec_op::{VecOp, OP_BITS};
use crate::verilog::{Item, Module, Port, Signedness};

/// The lane's module name.
pub const VEC_LANE: &str = "tessera_vec_lane";

/// fp32 1.0.
const ONE: &str = "32'h3f800000";

fn inst(module: &str, name: &str, ports: &[(&str, &str)]) -> Item {
    Item::Instance {
        module: module.into(),
        name: name.into(),
        params: vec![],
        ports: ports
            .iter()
            .map(|(p, n)| (p.to_string(), n.to_string()))
            .collect(),
    }
}

fn in32(name: &str) -> Port {
    Port::input_bus(name, "32", Signedness::Unsigned)
}

/// The decode net of `op`: `is_v_bin_max`, `is_v_axpby`.
fn decode_net(op: VecOp) -> String {
    format!("is_{}", op.name().replace(['.', ' '], "_"))
}

/// The lane's result for each built operation, in the order of the result mux.
fn results() -> Vec<(VecOp, String)> {
    use VecBinOp as B;
    use VecUnOp as U;
    let flag = |c: &str| format!("({c}) ? {ONE} : 32'd0");
    vec![
        (VecOp::Bin(B::Add), "sum".into()),
        (VecOp::Bin(B::Sub), "sum".into()),
        (VecOp::Axpby, "sum".into()),
        (VecOp::Bin(B::Mul), "prod0".into()),
        (VecOp::Un(U::Square), "prod0".into()),
        (VecOp::Bin(B::Max), "cmp_max".into()),
        (VecOp::Bin(B::Min), "cmp_min".into()),
        (VecOp::Bin(B::CmpLt), flag("lt")),
        (VecOp::Bin(B::CmpLe), flag("lt | eq")),
        (VecOp::Bin(B::CmpEq), flag("eq")),
        (VecOp::Bin(B::CmpNe), flag("!eq")),
        (VecOp::Un(U::Copy), "a".into()),
        (VecOp::Un(U::Neg), "{~a[31], a[30:0]}".into()),
        (VecOp::Un(U::Abs), "{1'b0, a[30:0]}".into()),
        (VecOp::Un(U::Relu), "(a[31] && !a_nan) ? 32'd0 : a".into()),
        (
            VecOp::Un(U::Sign),
            "(a_nan || a[30:0] == 31'd0) ? a : {a[31], 8'h7f, 23'd0}".into(),
        ),
        (VecOp::Un(U::NonFinite), flag("a[30:23] == 8'hff")),
        (VecOp::Sel, "(mask[30:0] != 31'd0) ? a : b".into()),
    ]
}

/// The lane with a pipeline of `latency` (at least 1) registers.
pub fn vec_lane(latency: u32) -> Module {
    use VecBinOp as B;
    use VecUnOp as U;
    let n = Item::net;
    let ops = results();
    let mut items = vec![Item::Comment(
        "Decode: opcodes and op codes from the ISA table.".into(),
    )];
    for (op, _) in &ops {
        let cond = match op {
            VecOp::Bin(_) | VecOp::Un(_) => format!(
                "opcode == 8'h{:02x} && op == {OP_BITS}'d{}",
                op.opcode(),
                op.code()
            ),
            VecOp::Axpby | VecOp::Sel => format!("opcode == 8'h{:02x}", op.opcode()),
        };
        items.push(n(&decode_net(*op), 1, &cond));
    }
    let d = |o: VecOp| decode_net(o);
    items.extend([
        n("a_nan", 1, "a[30:23] == 8'hff && a[22:0] != 23'd0"),
        Item::Comment("v.sel takes a where mask != 0.0: the mask's sign does not matter.".into()),
        n("unused_mask_sign", 1, "mask[31]"),
        Item::Comment("Two multipliers and one adder (v.axpby uses all three).".into()),
        n("m0_x", 32, &format!("{} ? alpha : a", d(VecOp::Axpby))),
        n(
            "m0_y",
            32,
            &format!(
                "{} ? a : {} ? a : b",
                d(VecOp::Axpby),
                d(VecOp::Un(U::Square))
            ),
        ),
        Item::Wire {
            name: "prod0".into(),
            width: Some("32".into()),
            sign: Signedness::Unsigned,
        },
        Item::Wire {
            name: "prod1".into(),
            width: Some("32".into()),
            sign: Signedness::Unsigned,
        },
        Item::Wire {
            name: "sum".into(),
            width: Some("32".into()),
            sign: Signedness::Unsigned,
        },
        inst(
            FP32_MUL,
            "u_mul0",
            &[("x", "m0_x"), ("y", "m0_y"), ("z", "prod0")],
        ),
        inst(
            FP32_MUL,
            "u_mul1",
            &[("x", "beta"), ("y", "b"), ("z", "prod1")],
        ),
        n("add_x", 32, &format!("{} ? prod0 : a", d(VecOp::Axpby))),
        n(
            "add_y",
            32,
            &format!(
                "{} ? prod1 : {} ? {{~b[31], b[30:0]}} : b",
                d(VecOp::Axpby),
                d(VecOp::Bin(B::Sub))
            ),
        ),
        inst(
            FP32_ADD,
            "u_add",
            &[("x", "add_x"), ("y", "add_y"), ("z", "sum")],
        ),
        Item::Wire {
            name: "lt".into(),
            width: None,
            sign: Signedness::Unsigned,
        },
        Item::Wire {
            name: "eq".into(),
            width: None,
            sign: Signedness::Unsigned,
        },
        Item::Wire {
            name: "cmp_max".into(),
            width: Some("32".into()),
            sign: Signedness::Unsigned,
        },
        Item::Wire {
            name: "cmp_min".into(),
            width: Some("32".into()),
            sign: Signedness::Unsigned,
        },
        inst(
            FP32_CMP,
            "u_cmp",
            &[
                ("x", "a"),
                ("y", "b"),
                ("lt", "lt"),
                ("eq", "eq"),
                ("max", "cmp_max"),
                ("min", "cmp_min"),
            ],
        ),
    ]);
    let mut res = "32'd0".to_string();
    for (op, r) in ops.iter().rev() {
        res = format!("{} ? {r} :\n        {res}", d(*op));
    }
    let built: Vec<String> = ops.iter().map(|(o, _)| d(*o)).collect();
    items.extend([
        n("res", 32, &res),
        n("bad_c", 1, &format!("!({})", built.join(" | "))),
        Item::Wire {
            name: "res_w".into(),
            width: Some("32".into()),
            sign: Signedness::Unsigned,
        },
        inst(
            VEC_NARROW,
            "u_narrow",
            &[("x", "res"), ("ty", "ty"), ("z", "res_w")],
        ),
        Item::Comment(format!(
            "{latency} pipeline register(s): vector.latency_cycles of the hardware description."
        )),
    ]);
    items.extend(output_pipeline(latency));
    Module {
        name: VEC_LANE.into(),
        doc: vec![
            "Vector lane: v.bin/v.un/v.axpby/v.sel in fp32, bit-exact with the functional simulator;".into(),
            format!("y (fp32) and w (y as element type ty) leave {latency} cycle(s) after the operands."),
        ],
        params: vec![],
        ports: vec![
            Port::input("clk"),
            Port::input("rst"),
            Port::input("in_valid"),
            Port::input_bus("opcode", "8", Signedness::Unsigned),
            Port::input_bus("op", &OP_BITS.to_string(), Signedness::Unsigned),
            Port::input_bus("ty", "3", Signedness::Unsigned),
            in32("a"),
            in32("b"),
            in32("mask"),
            in32("alpha"),
            in32("beta"),
            out1("out_valid"),
            out1("bad"),
            Port::output_bus("y", "32"),
            Port::output_bus("w", "32"),
        ],
        items,
    }
}

/// The output registers of a lane: `latency` (at least 1) stages of the
/// nets `bad_c`, `res` and `res_w` and of `in_valid`, driving `bad`, `y`,
/// `w` and `out_valid`.
pub(crate) fn output_pipeline(latency: u32) -> Vec<Item> {
    let (mut body, valid_out) = if latency == 1 {
        (
            vec!["v_q <= !rst && in_valid;".to_string()],
            "v_q".to_string(),
        )
    } else {
        (
            vec![format!(
                "v_q <= rst ? {latency}'d0 : {{v_q[{}:0], in_valid}};",
                latency - 2
            )],
            format!("v_q[{}]", latency - 1),
        )
    };
    let mut items = Vec::new();
    for s in 0..latency {
        let src = if s == 0 {
            "{bad_c, res, res_w}".to_string()
        } else {
            format!("d{}", s - 1)
        };
        items.push(Item::Reg {
            name: format!("d{s}"),
            width: Some("65".into()),
            sign: Signedness::Unsigned,
        });
        body.push(format!("d{s} <= {src};"));
    }
    items.extend([
        Item::Reg {
            name: "v_q".into(),
            width: (latency > 1).then(|| latency.to_string()),
            sign: Signedness::Unsigned,
        },
        Item::Clocked {
            clock: "clk".into(),
            body,
        },
        Item::Assign {
            lhs: "out_valid".into(),
            rhs: valid_out,
        },
        Item::Assign {
            lhs: "{bad, y, w}".into(),
            rhs: format!("d{}", latency - 1),
        },
    ]);
    items
}
