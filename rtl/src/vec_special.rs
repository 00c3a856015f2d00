//! The special-function lane of the vector unit (`tessera_vec_special`):
//! `v.bin div`, `v.un sqrt`, `v.un rsqrt` and `v.un recip`, as the
//! simulator computes them: `a / b`, `libm::sqrtf(a)` (correctly rounded),
//! `1.0 / libm::sqrtf(a)` (two roundings: the square root, then the
//! division) and `1.0 / a`, from one divider and one square root
//! ([`crate::fp32_divsqrt`]); and the `libm` operations of
//! [`crate::libm_graphs::LIBM_OPS`] from the combinational `libm` datapath
//! ([`crate::libm_graphs::vec_libm`], its operands held at 0 for other
//! operations so it does not toggle). Same ports and pipeline as the lane
//! ([`crate::vec_lane`]) without the `v.sel`/`v.axpby` operands; `bad`
//! flags the operations it does not compute. The unit has
//! `vector.special_lanes` of them.

use crate::fp32_cmp::out1;
use crate::fp32_divsqrt::{FP32_DIV, FP32_SQRT};
use crate::libm_graphs::{LIBM_OPS, VEC_LIBM};
use crate::vec_convert::VEC_NARROW;
use crate::vec_lane::output_pipeline;
use crate::vec_op::{VecOp, OP_BITS};
use crate::verilog::{Item, Module, Port, Signedness};
use tessera_isa::field::{VecBinOp, VecUnOp};

/// The special-function lane's module name.
pub const VEC_SPECIAL: &str = "tessera_vec_special";

fn decode_net(op: VecOp) -> String {
    format!("is_{}", op.name().replace(['.', ' '], "_"))
}

fn decode(op: VecOp) -> Item {
    Item::net(
        &decode_net(op),
        1,
        &format!(
            "opcode == 8'h{:02x} && op == {OP_BITS}'d{}",
            op.opcode(),
            op.code()
        ),
    )
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

/// The special-function lane with `latency` (at least 1) pipeline registers.
pub fn vec_special(latency: u32) -> Module {
    let n = Item::net;
    let mut items: Vec<Item> = [
        VecOp::Bin(VecBinOp::Div),
        VecOp::Un(VecUnOp::Sqrt),
        VecOp::Un(VecUnOp::Rsqrt),
        VecOp::Un(VecUnOp::Recip),
    ]
    .into_iter()
    .chain(LIBM_OPS)
    .map(decode)
    .collect();
    let libm_flags: Vec<String> = LIBM_OPS.iter().map(|&o| decode_net(o)).collect();
    items.extend([
        wire32("root"),
        inst(FP32_SQRT, "u_sqrt", &[("x", "a"), ("z", "root")]),
        Item::Comment("recip and rsqrt divide 1.0 by a and by sqrt(a).".into()),
        n("div_x", 32, "is_v_bin_div ? a : 32'h3f800000"),
        n("div_y", 32, "is_v_bin_div ? b : is_v_un_rsqrt ? root : a"),
        wire32("quot"),
        inst(
            FP32_DIV,
            "u_div",
            &[("x", "div_x"), ("y", "div_y"), ("z", "quot")],
        ),
        Item::Comment("The libm datapath: expf and the activations on it. Its operands are".into()),
        Item::Comment("held at 0 for other operations, so it does not toggle for them.".into()),
        n("is_libm", 1, &libm_flags.join(" | ")),
        n("libm_a", 32, "is_libm ? a : 32'd0"),
        n("libm_b", 32, "is_libm ? b : 32'd0"),
        wire32("libm_z"),
        inst(
            VEC_LIBM,
            "u_libm",
            &[
                ("opcode", "{24'd0, opcode}"),
                ("op", &format!("{{{}'d0, op}}", 32 - OP_BITS)),
                ("a", "libm_a"),
                ("b", "libm_b"),
                ("z", "libm_z"),
            ],
        ),
        n(
            "res",
            32,
            "is_v_un_sqrt ? root : (is_v_bin_div | is_v_un_rsqrt | is_v_un_recip) ? quot : is_libm ? libm_z : 32'd0",
        ),
        n(
            "bad_c",
            1,
            "!(is_v_bin_div | is_v_un_sqrt | is_v_un_rsqrt | is_v_un_recip | is_libm)",
        ),
        wire32("res_w"),
        inst(
            VEC_NARROW,
            "u_narrow",
            &[("x", "res"), ("ty", "ty"), ("z", "res_w")],
        ),
    ]);
    items.extend(output_pipeline(latency));
    Module {
        name: VEC_SPECIAL.into(),
        doc: vec![
            format!(
                "Special-function lane: {}, as the simulator computes them (fp32);",
                VecOp::special_summary()
            ),
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
            Port::input_bus("a", "32", Signedness::Unsigned),
            Port::input_bus("b", "32", Signedness::Unsigned),
            out1("out_valid"),
            out1("bad"),
            Port::output_bus("y", "32"),
            Port::output_bus("w", "32"),
        ],
        items,
    }
}
