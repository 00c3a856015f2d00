//! The reduction lane of the vector unit (`tessera_vec_reduce`): one fp32
//! accumulator that combines one element per cycle, in the order the
//! elements arrive, exactly as the simulator's `reduce_init`,
//! `reduce_step` and `reduce_combine` (`sim/src/numerics.rs`):
//!
//! - `start`: the accumulator restarts from the identity (+0 for `sum` and
//!   `sumsq`, -inf for `max`, +inf for `min`) and takes `x` in the same
//!   cycle, so a reduction of n elements takes n cycles (`en` high, `start`
//!   with the first) and its result is on `acc` after the n-th clock edge;
//! - a step: `acc + x`, `acc + round(x * x)` (two roundings, as
//!   `reduce_step`), `fmaxf(acc, x)` or `fminf(acc, x)`;
//! - `combine` (`mode=accumulate`, one more cycle): `x` is the old
//!   destination value and the result is `f(x, acc)` without squaring:
//!   `x + acc`, `fmaxf(x, acc)`, `fminf(x, acc)` (argument order matters
//!   for signed zeros). `start` and `combine` are not raised together.
//!
//! The operation code is the ISA's `ReduceOp` encoding. A row reduction
//! (`axis=rows`) of an R x C tile on L lanes takes R / L rounds of C
//! cycles (plus one with `accumulate`); the adder, multiplier and
//! comparator are the vector lane's modules.

use tessera_isa::field::{Field, ReduceOp};

use crate::fp32_add::FP32_ADD;
use crate::fp32_cmp::FP32_CMP;
use crate::fp32_mul::FP32_MUL;
use crate::verilog::{Item, Module, Port, Signedness};

/// The reduction lane's module name.
pub const VEC_REDUCE: &str = "tessera_vec_reduce";

fn code(op: ReduceOp) -> String {
    format!("{}'d{}", ReduceOp::BITS, op.to_bits())
}

fn wire32(name: &str) -> Item {
    Item::Wire {
        name: name.into(),
        width: Some("32".into()),
        sign: Signedness::Unsigned,
    }
}

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

/// The reduction lane: ports `clk`, `en`, `start`, `combine`, `op`
/// (`ReduceOp` code), `x` (fp32) in; `acc` (fp32 register) out.
pub fn vec_reduce() -> Module {
    let n = Item::net;
    let is = |op: ReduceOp| format!("op == {}", code(op));
    let items = vec![
        n(
            "ident",
            32,
            &format!(
                "({}) ? 32'hff800000 : ({}) ? 32'h7f800000 : 32'd0",
                is(ReduceOp::Max),
                is(ReduceOp::Min)
            ),
        ),
        n("cur", 32, "start ? ident : acc"),
        wire32("sq"),
        inst(FP32_MUL, "u_sq", &[("x", "x"), ("y", "x"), ("z", "sq")]),
        n("q", 32, &format!("({}) ? sq : x", is(ReduceOp::SumSq))),
        Item::Comment("A step is f(acc, q); combine is f(old, acc) without squaring.".into()),
        n("p0", 32, "combine ? x : cur"),
        n("p1", 32, "combine ? cur : q"),
        wire32("sum"),
        inst(FP32_ADD, "u_add", &[("x", "p0"), ("y", "p1"), ("z", "sum")]),
        wire32("mx"),
        wire32("mn"),
        Item::Wire {
            name: "unused_lt".into(),
            width: None,
            sign: Signedness::Unsigned,
        },
        Item::Wire {
            name: "unused_eq".into(),
            width: None,
            sign: Signedness::Unsigned,
        },
        inst(
            FP32_CMP,
            "u_cmp",
            &[
                ("x", "p0"),
                ("y", "p1"),
                ("lt", "unused_lt"),
                ("eq", "unused_eq"),
                ("max", "mx"),
                ("min", "mn"),
            ],
        ),
        n(
            "next",
            32,
            &format!(
                "({}) ? mx : ({}) ? mn : sum",
                is(ReduceOp::Max),
                is(ReduceOp::Min)
            ),
        ),
        Item::Clocked {
            clock: "clk".into(),
            body: vec!["if (en) acc <= next;".into()],
        },
    ];
    Module {
        name: VEC_REDUCE.into(),
        doc: vec![
            "Reduction lane: acc = f(acc, x) per cycle in arrival order (sum, sumsq, max, min),"
                .into(),
            "start from the identity, combine with an old value; bit-exact with the simulator."
                .into(),
        ],
        params: vec![],
        ports: vec![
            Port::input("clk"),
            Port::input("en"),
            Port::input("start"),
            Port::input("combine"),
            Port::input_bus("op", &ReduceOp::BITS.to_string(), Signedness::Unsigned),
            Port::input_bus("x", "32", Signedness::Unsigned),
            Port::output_reg("acc", "32", Signedness::Unsigned),
        ],
        items,
    }
}
