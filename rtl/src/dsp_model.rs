//! A simulation model of the ECP5 `MULT18X18D` multiplier for
//! post-synthesis simulation: Yosys 0.23 ships it as a black box only
//! (`ecp5/cells_bb.v`), so a DSP-mapped netlist could not be simulated.
//!
//! The model covers the configuration Yosys's `mul2dsp` mapping emits and
//! nothing else: every register bypassed (`REG_*_CLK = "NONE"`, the
//! defaults), `P = A * B` over 18-bit operands, each two's complement when
//! its `SIGNEDA`/`SIGNEDB` input is high, unsigned otherwise (Lattice
//! TN1267, "sysDSP Usage Guide"). Any other register setting makes the
//! simulation stop with a `FAIL` line instead of simulating something the
//! model does not describe. Simulating the mapped netlist with it checks
//! Yosys's mapping (bit order, operand extension, signedness), the part
//! that went wrong for iCE40.

/// The module name of the modelled primitive.
pub const MULT18X18D: &str = "MULT18X18D";

fn bus(prefix: &str, n: u32) -> String {
    (0..n)
        .map(|i| format!("{prefix}{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn concat(prefix: &str, n: u32) -> String {
    (0..n)
        .rev()
        .map(|i| format!("{prefix}{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Verilog-2005 text of the [`MULT18X18D`] model, with the primitive's
/// full port list (unused ports are accepted and ignored).
pub fn mult18x18d_model() -> String {
    let regs = [
        "REG_INPUTA_CLK",
        "REG_INPUTB_CLK",
        "REG_INPUTC_CLK",
        "REG_PIPELINE_CLK",
        "REG_OUTPUT_CLK",
    ];
    let params: String = regs
        .iter()
        .map(|r| format!("    parameter {r} = \"NONE\";\n"))
        .collect();
    let check = regs
        .iter()
        .map(|r| format!("{r} != \"NONE\""))
        .collect::<Vec<_>>()
        .join(" || ");
    format!(
        "\
// Simulation model of the ECP5 MULT18X18D, combinational configuration only
// (every register bypassed): P = A * B, each operand signed when SIGNEDA/SIGNEDB.
module {MULT18X18D} (
    input {a},
    input {b},
    input {c},
    input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3, RST0, RST1, RST2, RST3,
    input {sria},
    input {srib},
    output {sroa},
    output {srob},
    output {roa},
    output {rob},
    output {roc},
    output {p},
    output SIGNEDP
);
{params}    wire [17:0] a = {{{ac}}};
    wire [17:0] b = {{{bc}}};
    wire signed [18:0] sa = {{SIGNEDA & a[17], a}};
    wire signed [18:0] sb = {{SIGNEDB & b[17], b}};
    wire signed [37:0] prod = sa * sb;
    assign {{{pc}}} = prod[35:0];
    assign SIGNEDP = SIGNEDA | SIGNEDB;
    assign {{{sroac}}} = a;
    assign {{{srobc}}} = b;
    assign {{{roac}}} = a;
    assign {{{robc}}} = b;
    assign {{{rocc}}} = 18'd0;
    initial begin
        #0;
        if ({check}) begin
            $display(\"FAIL MULT18X18D model: registered configurations are not modelled\");
            $finish;
        end
    end
endmodule
",
        a = bus("A", 18),
        b = bus("B", 18),
        c = bus("C", 18),
        sria = bus("SRIA", 18),
        srib = bus("SRIB", 18),
        sroa = bus("SROA", 18),
        srob = bus("SROB", 18),
        roa = bus("ROA", 18),
        rob = bus("ROB", 18),
        roc = bus("ROC", 18),
        p = bus("P", 36),
        ac = concat("A", 18),
        bc = concat("B", 18),
        pc = concat("P", 36),
        sroac = concat("SROA", 18),
        srobc = concat("SROB", 18),
        roac = concat("ROA", 18),
        robc = concat("ROB", 18),
        rocc = concat("ROC", 18),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_lists_every_port_and_refuses_registers() {
        let m = mult18x18d_model();
        assert!(m.contains("output P0, P1,"), "{m}");
        assert!(m.contains("P35"), "{m}");
        assert!(m.contains("REG_OUTPUT_CLK != \"NONE\""), "{m}");
        assert!(m.contains("wire signed [37:0] prod = sa * sb;"), "{m}");
    }
}
