//! The int8 weight-stationary systolic array: one processing-element module
//! and an R x C grid of it built with generate loops, sized by the hardware
//! description.
//!
//! Timing, matching the simulator's model (`docs/timing.md`): weights shift
//! down the columns for R cycles (`w_shift`), fed bottom row first; then
//! activation row i enters array row k at cycle i + k (the caller skews
//! them), moves right one column per cycle, and partial sums move down one
//! row per cycle, so C[i][c] leaves the bottom of column c at the end of
//! cycle i + (R - 1) + c: a tile of M rows takes M + R + C - 2 cycles.
//!
//! Numerics, matching the functional simulator: int8 x int8 products are
//! exact in 16 bits and the column sum wraps in 32-bit two's complement.

//! The weight-stationary systolic array: one processing-element module per
//! element type ([`crate::pe`]) and an R x C grid of it built with generate
//! loops, sized by the hardware description.
//!
//! Timing, matching the simulator's model (`docs/timing.md`) for P pipeline
//! stages per processing element: weights shift down the columns for R
//! cycles (`w_shift`), fed bottom row first; then activation row i enters
//! array row r at cycle i + P r (the caller skews them), moves right one
//! column per cycle, and a partial sum crosses a row in P cycles, so C[i][c]
//! leaves the bottom of column c at the end of cycle i + P R + c - 1: a
//! tile of M rows takes M + P R + C - 2 cycles.
//!
//! With double-buffered weights the caller feeds the weight of row r into
//! column c at cycle T + r + c of a preload starting at T (top row first,
//! columns skewed like the activations) and raises `w_tag_top[c]` at T + c;
//! the tag crosses a row in two cycles, so element (r, c) latches its shadow
//! weight at cycle T + 2 r + c. The caller raises `prop_left[r]` with the
//! first activation row of every compute (skewed like it): element (r, c)
//! switches to its shadow weight at cycle s + P r + c of a compute starting
//! at s. So a preload may start at s + (P - 2)^+ (R - 1) and the next compute
//! 1 + (2 - P)^+ (R - 1) cycles after the preload (`docs/timing.md`).

use tessera_isa::{Arch, Dataflow};

use crate::pe::{pe, Buffering, PeType};
use crate::verilog::{Item, Module, Port, Signedness};
use crate::RtlError;

/// The R x C array of [`pe`] for `ty`, with flattened buses (W input bits,
/// 32-bit sums): `w_top[c*W +: W]` enters column c, `a_left[r*W +: W]`
/// enters row r, `p_bottom[c*32 +: 32]` leaves column c; activations and
/// weights that leave the far edges are outputs too (for chaining arrays).
/// With [`Buffering::Double`], `w_tag_top[c]` replaces `w_shift` and marks
/// the top row's weight entering column c (`w_tag_bottom[c]` leaves it), and
/// `prop_left[r]` enters row r with the activation it marks (the first row of
/// a compute, skewed like the activations) and `prop_right[r]` leaves it.
pub fn array(ty: PeType, rows: u32, cols: u32, buffering: Buffering) -> Module {
    let (w, p) = (ty.input_bits(), ty.sum_bits());
    let at = |bus: &str, index: &str, width: u32| format!("{bus}[({index})*{width} +: {width}]");
    let mut pe_ports: Vec<(String, String)> = vec![
        ("clk".into(), "clk".into()),
        ("w_shift".into(), "w_shift".into()),
        ("w_in".into(), at("w_v", "r*COLS+c", w)),
        (buffering.chain_port().into(), at("w_v", "(r+1)*COLS+c", w)),
        ("a_in".into(), at("a_h", "r*(COLS+1)+c", w)),
        ("a_out".into(), at("a_h", "r*(COLS+1)+c+1", w)),
        ("p_in".into(), at("p_v", "r*COLS+c", p)),
        ("p_out".into(), at("p_v", "(r+1)*COLS+c", p)),
    ];
    let u = Signedness::Unsigned;
    let mut ports = vec![
        Port::input("clk"),
        Port::input("w_shift"),
        Port::input_bus("w_top", &format!("COLS*{w}"), u),
        Port::output_bus("w_bottom", &format!("COLS*{w}")),
        Port::input_bus("a_left", &format!("ROWS*{w}"), u),
        Port::output_bus("a_right", &format!("ROWS*{w}")),
        Port::output_bus("p_bottom", &format!("COLS*{p}")),
    ];
    let mut prop_items = Vec::new();
    if buffering == Buffering::Double {
        pe_ports[1] = ("w_tag_in".into(), at("t_v", "r*COLS+c", 1));
        pe_ports.insert(2, ("w_tag_out".into(), at("t_v", "(r+1)*COLS+c", 1)));
        pe_ports.insert(7, ("prop_in".into(), at("s_h", "r*(COLS+1)+c", 1)));
        pe_ports.insert(8, ("prop_out".into(), at("s_h", "r*(COLS+1)+c+1", 1)));
        ports[1] = Port::input_bus("w_tag_top", "COLS", u);
        ports.insert(2, Port::output_bus("w_tag_bottom", "COLS"));
        ports.insert(7, Port::input_bus("prop_left", "ROWS", u));
        ports.insert(8, Port::output_bus("prop_right", "ROWS"));
        prop_items = vec![
            Item::Wire {
                name: "t_v".into(),
                width: Some("(ROWS+1)*COLS".into()),
                sign: u,
            },
            Item::For {
                var: "c".into(),
                from: "0".into(),
                to: "COLS".into(),
                label: "g_edge_tag".into(),
                body: vec![
                    Item::Assign {
                        lhs: "t_v[c]".into(),
                        rhs: "w_tag_top[c]".into(),
                    },
                    Item::Assign {
                        lhs: "w_tag_bottom[c]".into(),
                        rhs: "t_v[ROWS*COLS+c]".into(),
                    },
                ],
            },
            Item::Wire {
                name: "s_h".into(),
                width: Some("ROWS*(COLS+1)".into()),
                sign: u,
            },
            Item::For {
                var: "r".into(),
                from: "0".into(),
                to: "ROWS".into(),
                label: "g_edge_prop".into(),
                body: vec![
                    Item::Assign {
                        lhs: "s_h[r*(COLS+1)]".into(),
                        rhs: "prop_left[r]".into(),
                    },
                    Item::Assign {
                        lhs: "prop_right[r]".into(),
                        rhs: "s_h[r*(COLS+1)+COLS]".into(),
                    },
                ],
            },
        ];
    }
    let pe = Item::Instance {
        module: ty.pe_module(),
        name: "u_pe".into(),
        params: vec![],
        ports: pe_ports,
    };
    let kind = match buffering {
        Buffering::Single => "",
        Buffering::Double => ", double-buffered weights",
    };
    let mut m = Module {
        name: ty.array_module(),
        doc: vec![format!(
            "{rows} x {cols} {} weight-stationary systolic array{kind}.",
            ty.name()
        )],
        params: vec![
            ("ROWS".into(), rows.to_string()),
            ("COLS".into(), cols.to_string()),
        ],
        ports,
        items: vec![
            Item::Comment(
                "Weights shift down, activations move right, partial sums move down.".into(),
            ),
            Item::Wire {
                name: "w_v".into(),
                width: Some(format!("(ROWS+1)*COLS*{w}")),
                sign: u,
            },
            Item::Wire {
                name: "a_h".into(),
                width: Some(format!("ROWS*(COLS+1)*{w}")),
                sign: u,
            },
            Item::Wire {
                name: "p_v".into(),
                width: Some(format!("(ROWS+1)*COLS*{p}")),
                sign: u,
            },
            Item::Genvar("r".into()),
            Item::Genvar("c".into()),
            Item::For {
                var: "c".into(),
                from: "0".into(),
                to: "COLS".into(),
                label: "g_edge_col".into(),
                body: vec![
                    Item::Assign {
                        lhs: at("w_v", "c", w),
                        rhs: at("w_top", "c", w),
                    },
                    Item::Assign {
                        lhs: at("p_v", "c", p),
                        rhs: format!("{p}'d0"),
                    },
                    Item::Assign {
                        lhs: at("w_bottom", "c", w),
                        rhs: at("w_v", "ROWS*COLS+c", w),
                    },
                    Item::Assign {
                        lhs: at("p_bottom", "c", p),
                        rhs: at("p_v", "ROWS*COLS+c", p),
                    },
                ],
            },
            Item::For {
                var: "r".into(),
                from: "0".into(),
                to: "ROWS".into(),
                label: "g_edge_row".into(),
                body: vec![
                    Item::Assign {
                        lhs: at("a_h", "r*(COLS+1)", w),
                        rhs: at("a_left", "r", w),
                    },
                    Item::Assign {
                        lhs: at("a_right", "r", w),
                        rhs: at("a_h", "r*(COLS+1)+COLS", w),
                    },
                ],
            },
            Item::For {
                var: "r".into(),
                from: "0".into(),
                to: "ROWS".into(),
                label: "g_row".into(),
                body: vec![Item::For {
                    var: "c".into(),
                    from: "0".into(),
                    to: "COLS".into(),
                    label: "g_col".into(),
                    body: vec![pe],
                }],
            },
        ],
    };
    // After the genvar declarations, before the processing elements.
    let at_genvars = m.items.len() - 1;
    m.items.splice(at_genvars..at_genvars, prop_items);
    m
}

/// The element types of `arch` that get a processing element, in
/// [`PeType::ALL`] order.
///
/// # Errors
/// An input type with no generated processing element.
pub fn pe_types(arch: &Arch) -> Result<Vec<PeType>, RtlError> {
    for t in &arch.spec().array.input_types {
        if !PeType::ALL.iter().any(|p| p.dtype() == *t) {
            return Err(RtlError::Unsupported(format!(
                "array.input_types: {t} has no generated processing element (int8 and bf16 do); remove it"
            )));
        }
    }
    Ok(PeType::ALL
        .into_iter()
        .filter(|p| arch.supports_input(p.dtype()))
        .collect())
}

/// The Verilog sources of the arrays of `arch`, one module per file:
/// `(file name, text)` for each element type's processing element, then its
/// array.
///
/// # Errors
/// A design this generator does not build yet: weight-stationary arrays
/// with single- or double-buffered weights and int8 or bf16 inputs are
/// generated today, and output-stationary arrays
/// ([`crate::array_os::os_array_sources`]).
pub fn array_sources(arch: &Arch) -> Result<Vec<(String, String)>, RtlError> {
    if arch.dataflow() == Dataflow::OutputStationary {
        return crate::array_os::os_array_sources(arch);
    }
    let header = format!(
        "// Generated by tessera-rtl for hardware `{}` (fingerprint {:016x}). Do not edit.\n",
        arch.name(),
        arch.fingerprint()
    );
    let mut files = Vec::new();
    for ty in pe_types(arch)? {
        for m in [
            pe(ty, arch.pe_stages(), Buffering::of(arch))?,
            array(ty, arch.rows(), arch.cols(), Buffering::of(arch)),
        ] {
            files.push((
                format!("{}.v", m.name),
                format!("{header}{}", m.to_verilog()),
            ));
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_16x16_array_stays_small() {
        let mut spec = Arch::preset("fpga-8x8").unwrap().spec().clone();
        spec.array.rows = 16;
        spec.array.cols = 16;
        spec.array.double_buffered_weights = false;
        spec.array.pe_pipeline_stages = 3;
        let files = array_sources(&Arch::new(spec).unwrap()).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "tessera_pe_int8.v",
                "tessera_array_int8.v",
                "tessera_pe_bf16.v",
                "tessera_array_bf16.v"
            ]
        );
        // One module per kind, instantiated by generate loops: size does not grow with R x C.
        let lines: usize = files.iter().map(|(_, v)| v.lines().count()).sum();
        assert!(lines < 400, "{lines} lines");
        assert!(files[1].1.contains("parameter ROWS = 16"));
    }

    #[test]
    fn unsupported_designs_name_the_field() {
        // Output-stationary arrays are generated now; fp16 inputs are not.
        let mut spec = Arch::preset("fpga-8x8").unwrap().spec().clone();
        spec.array.input_types = vec![tessera_isa::DType::Fp16];
        let e = array_sources(&Arch::new(spec).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("array.input_types"), "{e}");
    }

    #[test]
    fn double_buffered_weights_add_a_weight_pipeline_a_shadow_register_and_a_switch_bit() {
        let mut spec = Arch::preset("fpga-8x8").unwrap().spec().clone();
        spec.array.double_buffered_weights = true;
        let files = array_sources(&Arch::new(spec.clone()).unwrap()).unwrap();
        let (pe, array) = (&files[0].1, &files[1].1);
        assert!(pe.contains("if (prop_in) w_act <= w_sh;"), "{pe}");
        assert!(pe.contains("if (w_tag_in) w_sh <= w_in;"), "{pe}");
        assert!(
            array.contains("prop_left") && array.contains("w_tag_top"),
            "{array}"
        );
        assert!(!array.contains("w_shift"), "{array}");
        spec.array.double_buffered_weights = false;
        let single = array_sources(&Arch::new(spec).unwrap()).unwrap();
        assert!(!single[0].1.contains("w_act") && !single[1].1.contains("prop_left"));
    }
}
