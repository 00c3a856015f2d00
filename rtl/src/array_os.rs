//! The output-stationary systolic array: a processing element that keeps
//! its C element in place, reusing the element type's datapath
//! ([`crate::pipeline::Datapath::accumulator_items`]), and an R x C grid of
//! it built with generate loops, sized by the hardware description.
//!
//! Dataflow of one fold (m <= R rows of A, n <= C columns of B, a K-long
//! reduction): A's row r enters array row r from the left with element k at
//! step k + r, B's column c enters array column c from the top with element
//! k at step k + c (the caller skews both); operands move one processing
//! element per step, so PE (r, c) sees A[r][k] and B[k][c] together at step
//! k + r + c and, P - 1 product registers later, adds the product to its
//! accumulator. Each A element carries a valid bit (accumulate) and a first
//! bit (the sum restarts from +0, as the functional simulator's), so rows
//! and columns the fold leaves unused never disturb a result and nothing
//! needs clearing between folds.
//!
//! Timing, matching the simulator's model (`docs/timing.md`): the last
//! accumulate (PE (R-1, C-1), k = K-1) happens at step K + R + C + P - 4;
//! then `drain` is held for R steps and the accumulators shift down the
//! columns as one chain, so row R-1-d of C is on `p_bottom` during drain
//! step d and leaves at its end: a fold takes **K + 2R + C + P - 3** steps.

use tessera_isa::Arch;

use crate::array::pe_types;
use crate::pe::PeType;
use crate::verilog::{Item, Module, Port, Signedness};
use crate::RtlError;

/// The output-stationary processing element's module name.
pub fn os_pe_module(ty: PeType) -> String {
    format!("tessera_os_pe_{}", ty.name())
}

/// The output-stationary array's module name.
pub fn os_array_module(ty: PeType) -> String {
    format!("tessera_os_array_{}", ty.name())
}

/// Bits of one element of the horizontal stream: `{first, valid, a}`.
fn h_bits(ty: PeType) -> u32 {
    ty.input_bits() + 2
}

/// The output-stationary processing element of `ty` with `stages` - 1
/// registers on the product. Ports: `h_in`/`h_out` the A stream `{first,
/// valid, a}` (moves right), `b_in`/`b_out` the B stream (moves down),
/// `d_in` the accumulator above (read while `drain`), `acc` the C element.
///
/// # Errors
/// `stages` is 0.
pub fn os_pe(ty: PeType, stages: u32) -> Result<Module, RtlError> {
    let (w, s, h) = (ty.input_bits(), ty.sum_bits(), h_bits(ty));
    let u = Signedness::Unsigned;
    let mut items = vec![
        Item::Comment("The datapath's operands: a, the moving b, and the accumulator.".into()),
        Item::net("a_in", w, &format!("h_in[{}:0]", w - 1)),
        Item::net("w", w, "b_in"),
    ];
    // The valid and first bits follow the product through its P - 1 registers.
    let (mut v, mut f) = (format!("h_in[{w}]"), format!("h_in[{}]", w + 1));
    let mut delays = Vec::new();
    for d in 1..stages {
        for (name, src) in [(format!("v_d{d}"), &mut v), (format!("f_d{d}"), &mut f)] {
            items.push(Item::Reg {
                name: name.clone(),
                width: None,
                sign: u,
            });
            delays.push(format!("{name} <= {src};"));
            *src = name;
        }
    }
    if !delays.is_empty() {
        items.push(Item::Clocked {
            clock: "clk".into(),
            body: delays,
        });
    }
    items.push(Item::Comment(
        "A fold's first product starts from +0, as the functional simulator's sum.".into(),
    ));
    items.push(Item::net("p_in", s, &format!("{f} ? {s}'d0 : acc")));
    let datapath = ty.datapath();
    items.extend(datapath.accumulator_items(stages)?);
    let res = format!("s{}_res", datapath.segments.len() - 1);
    items.push(Item::Clocked {
        clock: "clk".into(),
        body: vec![
            "h_out <= h_in;".into(),
            "b_out <= b_in;".into(),
            "if (drain) acc <= d_in;".into(),
            format!("else if ({v}) acc <= {res};"),
        ],
    });
    Ok(Module {
        name: os_pe_module(ty),
        doc: vec![
            format!(
                "Output-stationary {} processing element, {stages} pipeline stage(s): A moves",
                ty.name()
            ),
            "right, B moves down, the product is registered stages - 1 times and added to the"
                .into(),
            "accumulator in one cycle; while drain is high the accumulator takes d_in.".into(),
        ],
        params: vec![],
        ports: vec![
            Port::input("clk"),
            Port::input("drain"),
            Port::input_bus("h_in", &h.to_string(), u),
            Port::output_reg("h_out", &h.to_string(), u),
            Port::input_bus("b_in", &w.to_string(), u),
            Port::output_reg("b_out", &w.to_string(), u),
            Port::input_bus("d_in", &s.to_string(), u),
            Port::output_reg("acc", &s.to_string(), u),
        ],
        items,
    })
}

/// The R x C output-stationary array of [`os_pe`] for `ty`, with flattened
/// buses: `a_left[r*(W+2) +: W+2]` = `{first, valid, a}` enters row r,
/// `b_top[c*W +: W]` enters column c, `p_bottom[c*32 +: 32]` is the bottom
/// accumulator of column c; operands leaving the far edges are outputs too.
pub fn os_array(ty: PeType, rows: u32, cols: u32) -> Module {
    let (w, p, h) = (ty.input_bits(), ty.sum_bits(), h_bits(ty));
    let at = |bus: &str, index: &str, width: u32| format!("{bus}[({index})*{width} +: {width}]");
    let pe = Item::Instance {
        module: os_pe_module(ty),
        name: "u_pe".into(),
        params: vec![],
        ports: vec![
            ("clk".into(), "clk".into()),
            ("drain".into(), "drain".into()),
            ("h_in".into(), at("a_h", "r*(COLS+1)+c", h)),
            ("h_out".into(), at("a_h", "r*(COLS+1)+c+1", h)),
            ("b_in".into(), at("b_v", "r*COLS+c", w)),
            ("b_out".into(), at("b_v", "(r+1)*COLS+c", w)),
            ("d_in".into(), at("d_v", "r*COLS+c", p)),
            ("acc".into(), at("d_v", "(r+1)*COLS+c", p)),
        ],
    };
    let u = Signedness::Unsigned;
    let wire = |name: &str, width: String| Item::Wire {
        name: name.into(),
        width: Some(width),
        sign: u,
    };
    let for_ = |var: &str, to: &str, label: &str, body: Vec<Item>| Item::For {
        var: var.into(),
        from: "0".into(),
        to: to.into(),
        label: label.into(),
        body,
    };
    let assign = |lhs: String, rhs: String| Item::Assign { lhs, rhs };
    Module {
        name: os_array_module(ty),
        doc: vec![format!(
            "{rows} x {cols} {} output-stationary systolic array.",
            ty.name()
        )],
        params: vec![
            ("ROWS".into(), rows.to_string()),
            ("COLS".into(), cols.to_string()),
        ],
        ports: vec![
            Port::input("clk"),
            Port::input("drain"),
            Port::input_bus("a_left", &format!("ROWS*{h}"), u),
            Port::output_bus("a_right", &format!("ROWS*{h}")),
            Port::input_bus("b_top", &format!("COLS*{w}"), u),
            Port::output_bus("b_bottom", &format!("COLS*{w}")),
            Port::output_bus("p_bottom", &format!("COLS*{p}")),
        ],
        items: vec![
            Item::Comment(
                "A moves right, B moves down; accumulators shift down while drain is high.".into(),
            ),
            wire("a_h", format!("ROWS*(COLS+1)*{h}")),
            wire("b_v", format!("(ROWS+1)*COLS*{w}")),
            wire("d_v", format!("(ROWS+1)*COLS*{p}")),
            Item::Genvar("r".into()),
            Item::Genvar("c".into()),
            for_(
                "c",
                "COLS",
                "g_edge_col",
                vec![
                    assign(at("b_v", "c", w), at("b_top", "c", w)),
                    assign(at("d_v", "c", p), format!("{p}'d0")),
                    assign(at("b_bottom", "c", w), at("b_v", "ROWS*COLS+c", w)),
                    assign(at("p_bottom", "c", p), at("d_v", "ROWS*COLS+c", p)),
                ],
            ),
            for_(
                "r",
                "ROWS",
                "g_edge_row",
                vec![
                    assign(at("a_h", "r*(COLS+1)", h), at("a_left", "r", h)),
                    assign(at("a_right", "r", h), at("a_h", "r*(COLS+1)+COLS", h)),
                ],
            ),
            for_(
                "r",
                "ROWS",
                "g_row",
                vec![for_("c", "COLS", "g_col", vec![pe])],
            ),
        ],
    }
}

/// The Verilog sources of the output-stationary arrays of `arch`, one
/// module per file: `(file name, text)` for each element type's processing
/// element, then its array. `array.double_buffered_weights` does not apply
/// (nothing is preloaded).
///
/// # Errors
/// An input type without a processing element, or no pipeline stage.
pub fn os_array_sources(arch: &Arch) -> Result<Vec<(String, String)>, RtlError> {
    let header = format!(
        "// Generated by tessera-rtl for hardware `{}` (fingerprint {:016x}). Do not edit.\n",
        arch.name(),
        arch.fingerprint()
    );
    let mut files = Vec::new();
    for ty in pe_types(arch)? {
        for m in [
            os_pe(ty, arch.pe_stages())?,
            os_array(ty, arch.rows(), arch.cols()),
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
    fn an_os_array_is_one_pe_and_one_grid_per_type() {
        let mut spec = Arch::preset("fpga-8x8").unwrap().spec().clone();
        spec.array.dataflow = tessera_isa::Dataflow::OutputStationary;
        spec.array.rows = 16;
        spec.array.cols = 16;
        spec.array.pe_pipeline_stages = 3;
        let files = os_array_sources(&Arch::new(spec).unwrap()).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "tessera_os_pe_int8.v",
                "tessera_os_array_int8.v",
                "tessera_os_pe_bf16.v",
                "tessera_os_array_bf16.v"
            ]
        );
        let lines: usize = files.iter().map(|(_, v)| v.lines().count()).sum();
        assert!(lines < 450, "{lines} lines");
        // Two product registers, then the accumulate closes in one cycle.
        assert!(files[0].1.contains("f_d2 <= f_d1;"), "{}", files[0].1);
        assert!(files[0].1.contains("else if (v_d2) acc <= s2_res;"));
        assert!(files[0].1.contains("wire [32-1:0] s2_pin = s1_pin;"));
    }
}
