//! The vector unit's datapath (`tessera_vec_unit`), sized by the hardware
//! description: `vector.lanes` lanes ([`crate::vec_lane`]) and reduction
//! lanes ([`crate::vec_reduce`]), `vector.special_lanes` special-function
//! lanes ([`crate::vec_special`]), all with `vector.latency_cycles`
//! pipeline registers; and the list of every module file it needs.

use tessera_isa::Arch;

use crate::fp32_add::FP32_ADD;
use crate::fp32_cmp::out1;
use crate::vec_lane::{vec_lane, VEC_LANE};
use crate::vec_op::OP_BITS;
use crate::verilog::{Item, Module, Port, Signedness};

/// The unit's module name.
pub const VEC_UNIT: &str = "tessera_vec_unit";

fn in32(name: &str) -> Port {
    Port::input_bus(name, "32", Signedness::Unsigned)
}

/// The unit: `LANES` lanes sharing the decode and the scalars, as many
/// reduction lanes ([`crate::vec_reduce`]) and `SPECIAL` special-function
/// lanes ([`crate::vec_special`]) fed from the first `SPECIAL` lanes'
/// operands (`SPECIAL <= LANES`, as the hardware description checks).
pub fn vec_unit(lanes: u32, special: u32) -> Module {
    let lane_ports: Vec<(String, String)> = [
        ("clk", "clk"),
        ("rst", "rst"),
        ("in_valid", "in_valid"),
        ("opcode", "opcode"),
        ("op", "op"),
        ("ty", "ty"),
        ("a", "a[32*l +: 32]"),
        ("b", "b[32*l +: 32]"),
        ("mask", "mask[32*l +: 32]"),
        ("alpha", "alpha"),
        ("beta", "beta"),
        ("out_valid", "valid_l[l]"),
        ("bad", "bad[l]"),
        ("y", "y[32*l +: 32]"),
        ("w", "w[32*l +: 32]"),
    ]
    .iter()
    .map(|(p, n)| (p.to_string(), n.to_string()))
    .collect();
    let red_ports: Vec<(String, String)> = [
        ("clk", "clk"),
        ("en", "red_en"),
        ("start", "red_start"),
        ("combine", "red_combine"),
        ("op", "red_op"),
        ("x", "red_x[32*l +: 32]"),
        ("acc", "red_acc[32*l +: 32]"),
    ]
    .iter()
    .map(|(p, n)| (p.to_string(), n.to_string()))
    .collect();
    let special_ports: Vec<(String, String)> = [
        ("clk", "clk"),
        ("rst", "rst"),
        ("in_valid", "in_valid"),
        ("opcode", "opcode"),
        ("op", "op"),
        ("ty", "ty"),
        ("a", "a[32*l +: 32]"),
        ("b", "b[32*l +: 32]"),
        ("out_valid", "valid_s[l]"),
        ("bad", "s_bad[l]"),
        ("y", "s_y[32*l +: 32]"),
        ("w", "s_w[32*l +: 32]"),
    ]
    .iter()
    .map(|(p, n)| (p.to_string(), n.to_string()))
    .collect();
    let bus = |name: &str| Port::input_bus(name, "LANES*32", Signedness::Unsigned);
    Module {
        name: VEC_UNIT.into(),
        doc: vec![format!(
            "Vector unit datapath: LANES = vector.lanes ({lanes}) lanes and reduction lanes, SPECIAL = vector.special_lanes ({special}) special-function lanes."
        )],
        params: vec![
            ("LANES".into(), lanes.to_string()),
            ("SPECIAL".into(), special.to_string()),
        ],
        ports: vec![
            Port::input("clk"),
            Port::input("rst"),
            Port::input("in_valid"),
            Port::input_bus("opcode", "8", Signedness::Unsigned),
            Port::input_bus("op", &OP_BITS.to_string(), Signedness::Unsigned),
            Port::input_bus("ty", "3", Signedness::Unsigned),
            bus("a"),
            bus("b"),
            bus("mask"),
            in32("alpha"),
            in32("beta"),
            out1("out_valid"),
            Port::output_bus("bad", "LANES"),
            Port::output_bus("y", "LANES*32"),
            Port::output_bus("w", "LANES*32"),
            Port::input("red_en"),
            Port::input("red_start"),
            Port::input("red_combine"),
            Port::input_bus("red_op", "2", Signedness::Unsigned),
            bus("red_x"),
            Port::output_bus("red_acc", "LANES*32"),
            Port::output_bus("s_bad", "SPECIAL"),
            Port::output_bus("s_y", "SPECIAL*32"),
            Port::output_bus("s_w", "SPECIAL*32"),
        ],
        items: vec![
            Item::Wire {
                name: "valid_l".into(),
                width: Some("LANES".into()),
                sign: Signedness::Unsigned,
            },
            Item::Comment("Every lane sees the same valid; lane 0's stands for all.".into()),
            Item::Assign {
                lhs: "out_valid".into(),
                rhs: "valid_l[0]".into(),
            },
            Item::Wire {
                name: "valid_s".into(),
                width: Some("SPECIAL".into()),
                sign: Signedness::Unsigned,
            },
            Item::net("unused_valid", 1, "&valid_l & &valid_s"),
            Item::Genvar("l".into()),
            Item::For {
                var: "l".into(),
                from: "0".into(),
                to: "LANES".into(),
                label: "g_lane".into(),
                body: vec![
                    Item::Instance {
                        module: VEC_LANE.into(),
                        name: "u_lane".into(),
                        params: vec![],
                        ports: lane_ports,
                    },
                    Item::Instance {
                        module: crate::vec_reduce::VEC_REDUCE.into(),
                        name: "u_reduce".into(),
                        params: vec![],
                        ports: red_ports,
                    },
                ],
            },
            Item::For {
                var: "l".into(),
                from: "0".into(),
                to: "SPECIAL".into(),
                label: "g_special".into(),
                body: vec![Item::Instance {
                    module: crate::vec_special::VEC_SPECIAL.into(),
                    name: "u_special".into(),
                    params: vec![],
                    ports: special_ports,
                }],
            },
        ],
    }
}

/// Every module file of the vector unit of `arch`, `(file name, text)`,
/// in dependency order: the fp32 adder, multiplier, comparator, divider and
/// square root, the conversions, the lane, the special-function lane, the
/// reduction lane and the unit.
pub fn vec_sources(arch: &Arch) -> Vec<(String, String)> {
    let v = &arch.spec().vector;
    let mut out = vec![(format!("{FP32_ADD}.v"), crate::fp32_add::fp32_add())];
    for m in [
        crate::fp32_mul::fp32_mul(),
        crate::fp32_cmp::fp32_cmp(),
        crate::fp32_divsqrt::fp32_div(),
        crate::fp32_divsqrt::fp32_sqrt(),
        crate::fp32_graph::fp32_to_int(),
        crate::fp32_graph::fp32_from_int(),
        crate::libm_graphs::vec_libm(),
        crate::vec_convert::vec_widen(),
        crate::vec_convert::vec_narrow(),
        vec_lane(v.latency_cycles.max(1)),
        crate::vec_special::vec_special(v.latency_cycles.max(1)),
        crate::vec_reduce::vec_reduce(),
        vec_unit(v.lanes, v.special_lanes),
    ] {
        out.push((format!("{}.v", m.name), m.to_verilog()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_takes_its_sizes_and_latency_from_the_description() {
        let mut spec = Arch::preset("fpga-8x8").unwrap().spec().clone();
        spec.vector.lanes = 16;
        spec.vector.special_lanes = 4;
        spec.vector.latency_cycles = 3;
        let files = vec_sources(&Arch::new(spec).unwrap());
        let text = |name: &str| {
            files
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.clone())
                .unwrap_or_default()
        };
        let unit = text("tessera_vec_unit.v");
        assert!(unit.contains("parameter LANES = 16"), "{unit}");
        assert!(unit.contains("parameter SPECIAL = 4"), "{unit}");
        for lane in [text("tessera_vec_lane.v"), text("tessera_vec_special.v")] {
            assert!(
                lane.contains("d2 <= d1;") && !lane.contains("d3 <="),
                "{lane}"
            );
            assert!(lane.contains("assign out_valid = v_q[2];"), "{lane}");
        }
        assert_eq!(
            files,
            vec_sources(
                &Arch::preset("fpga-8x8")
                    .map(|a| {
                        let mut s = a.spec().clone();
                        s.vector.lanes = 16;
                        s.vector.special_lanes = 4;
                        s.vector.latency_cycles = 3;
                        Arch::new(s).unwrap()
                    })
                    .unwrap()
            )
        );
    }
}
