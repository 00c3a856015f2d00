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

use tessera_isa::{Arch, DType, Dataflow};

use crate::verilog::{Item, Module, Port, Signedness};
use crate::RtlError;

/// Name of the int8 processing element.
pub const PE_INT8: &str = "tessera_pe_int8";
/// Name of the array.
pub const ARRAY: &str = "tessera_array_int8";

/// The int8 multiply-accumulate processing element.
pub fn pe_int8() -> Module {
    let s = Signedness::Signed;
    Module {
        name: PE_INT8.into(),
        doc: vec![
            "Weight-stationary int8 processing element: the weight register is also the".into(),
            "preload shift chain; activations move right and partial sums move down.".into(),
        ],
        params: vec![],
        ports: vec![
            Port::input("clk"),
            Port::input("w_shift"),
            Port::input_bus("w_in", "8", s),
            Port::output_reg("w", "8", s),
            Port::input_bus("a_in", "8", s),
            Port::output_reg("a_out", "8", s),
            Port::input_bus("p_in", "32", s),
            Port::output_reg("p_out", "32", s),
        ],
        items: vec![
            Item::Comment("int8 x int8 is exact in 16 bits (-128 * -128 = 16384).".into()),
            Item::Wire {
                name: "a16".into(),
                width: Some("16".into()),
                sign: s,
            },
            Item::Wire {
                name: "w16".into(),
                width: Some("16".into()),
                sign: s,
            },
            Item::Wire {
                name: "prod".into(),
                width: Some("16".into()),
                sign: s,
            },
            Item::Assign {
                lhs: "a16".into(),
                rhs: "{{8{a_in[7]}}, a_in}".into(),
            },
            Item::Assign {
                lhs: "w16".into(),
                rhs: "{{8{w[7]}}, w}".into(),
            },
            Item::Assign {
                lhs: "prod".into(),
                rhs: "a16 * w16".into(),
            },
            Item::Clocked {
                clock: "clk".into(),
                body: vec![
                    "if (w_shift) w <= w_in;".into(),
                    "a_out <= a_in;".into(),
                    "p_out <= p_in + {{16{prod[15]}}, prod};".into(),
                ],
            },
        ],
    }
}

/// The R x C array of [`pe_int8`], with flattened buses:
/// `w_top[c*8 +: 8]` enters column c, `a_left[r*8 +: 8]` enters row r,
/// `p_bottom[c*32 +: 32]` leaves column c; activations and weights that leave
/// the far edges are outputs too (for chaining arrays).
pub fn array_int8(rows: u32, cols: u32) -> Module {
    let at = |bus: &str, index: &str, width: u32| format!("{bus}[({index})*{width} +: {width}]");
    let pe = Item::Instance {
        module: PE_INT8.into(),
        name: "u_pe".into(),
        params: vec![],
        ports: vec![
            ("clk".into(), "clk".into()),
            ("w_shift".into(), "w_shift".into()),
            ("w_in".into(), at("w_v", "r*COLS+c", 8)),
            ("w".into(), at("w_v", "(r+1)*COLS+c", 8)),
            ("a_in".into(), at("a_h", "r*(COLS+1)+c", 8)),
            ("a_out".into(), at("a_h", "r*(COLS+1)+c+1", 8)),
            ("p_in".into(), at("p_v", "r*COLS+c", 32)),
            ("p_out".into(), at("p_v", "(r+1)*COLS+c", 32)),
        ],
    };
    let u = Signedness::Unsigned;
    Module {
        name: ARRAY.into(),
        doc: vec![format!(
            "{rows} x {cols} int8 weight-stationary systolic array."
        )],
        params: vec![
            ("ROWS".into(), rows.to_string()),
            ("COLS".into(), cols.to_string()),
        ],
        ports: vec![
            Port::input("clk"),
            Port::input("w_shift"),
            Port::input_bus("w_top", "COLS*8", u),
            Port::output_bus("w_bottom", "COLS*8"),
            Port::input_bus("a_left", "ROWS*8", u),
            Port::output_bus("a_right", "ROWS*8"),
            Port::output_bus("p_bottom", "COLS*32"),
        ],
        items: vec![
            Item::Comment(
                "Weights shift down, activations move right, partial sums move down.".into(),
            ),
            Item::Wire {
                name: "w_v".into(),
                width: Some("(ROWS+1)*COLS*8".into()),
                sign: u,
            },
            Item::Wire {
                name: "a_h".into(),
                width: Some("ROWS*(COLS+1)*8".into()),
                sign: u,
            },
            Item::Wire {
                name: "p_v".into(),
                width: Some("(ROWS+1)*COLS*32".into()),
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
                        lhs: at("w_v", "c", 8),
                        rhs: at("w_top", "c", 8),
                    },
                    Item::Assign {
                        lhs: at("p_v", "c", 32),
                        rhs: "32'd0".into(),
                    },
                    Item::Assign {
                        lhs: at("w_bottom", "c", 8),
                        rhs: at("w_v", "ROWS*COLS+c", 8),
                    },
                    Item::Assign {
                        lhs: at("p_bottom", "c", 32),
                        rhs: at("p_v", "ROWS*COLS+c", 32),
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
                        lhs: at("a_h", "r*(COLS+1)", 8),
                        rhs: at("a_left", "r", 8),
                    },
                    Item::Assign {
                        lhs: at("a_right", "r", 8),
                        rhs: at("a_h", "r*(COLS+1)+COLS", 8),
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
    }
}

/// The Verilog sources of the int8 array for `arch`, one module per file:
/// `(file name, text)` for the processing element, then the array.
///
/// # Errors
/// A design this generator does not build yet: only weight-stationary
/// arrays with int8 inputs and single-buffered weights are generated today.
pub fn array_sources(arch: &Arch) -> Result<Vec<(String, String)>, RtlError> {
    if arch.dataflow() != Dataflow::WeightStationary {
        return Err(RtlError::Unsupported(
            "array.dataflow: only weight-stationary arrays are generated".into(),
        ));
    }
    if !arch.supports_input(DType::Int8) {
        return Err(RtlError::Unsupported(
            "array.input_types: the generated processing element is int8; add int8".into(),
        ));
    }
    if arch.spec().array.double_buffered_weights {
        return Err(RtlError::Unsupported(
            "array.double_buffered_weights: the generated array has single-buffered weights; set it to false".into(),
        ));
    }
    let header = format!(
        "// Generated by tessera-rtl for hardware `{}` (fingerprint {:016x}). Do not edit.\n",
        arch.name(),
        arch.fingerprint()
    );
    Ok([pe_int8(), array_int8(arch.rows(), arch.cols())]
        .into_iter()
        .map(|m| {
            (
                format!("{}.v", m.name),
                format!("{header}{}", m.to_verilog()),
            )
        })
        .collect())
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
        let files = array_sources(&Arch::new(spec).unwrap()).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["tessera_pe_int8.v", "tessera_array_int8.v"]);
        // One module per kind, instantiated by generate loops: size does not grow with R x C.
        let lines: usize = files.iter().map(|(_, v)| v.lines().count()).sum();
        assert!(lines < 120, "{lines} lines");
        assert!(files[1].1.contains("parameter ROWS = 16"));
    }

    #[test]
    fn unsupported_designs_name_the_field() {
        let e = array_sources(&Arch::preset("default").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("array.double_buffered_weights"), "{e}");
    }
}
