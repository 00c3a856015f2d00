//! The queue front end shared by the core's load, matrix and store queues:
//! an instruction memory, the `loop` stack, the 16 address registers with
//! their per-level loop terms, and the control instructions (`nop`, `halt`,
//! `loop`, `addr.*`, `prof.*`). One Verilog module, emitted once and
//! instantiated per queue; the queue's engine decides when the current
//! instruction retires (`adv`) and decodes its own instructions.
//!
//! Invariant: a loop term stride x index is kept incrementally (added on
//! each back-edge, cleared when its loop exits), so a level's stride must be
//! set before its loop starts; [`crate::core::core_program`] checks it.

use tessera_isa::field::{Reg, MAX_LOOP_DEPTH};

use crate::core::{clog2, field, opcode, sext48_of, zext_of};

/// The front end's module name.
pub const FRONTEND: &str = "tessera_frontend";

/// The Verilog of the front-end module. Parameters: `IMEM_DEPTH` (a power
/// of two, at least 2), `IA` (its address width), `IMEM_INIT` (the
/// `$readmemh` image) and `NP`, the number of address ports.
///
/// Ports: `adv` retires the current instruction `ins`; `halted`; `ctrl`
/// (`ins` is a control instruction, carried out here on `adv`); per address
/// port p, `ra[p]` (a register) gives `ea[p]` = its base plus its loop terms
/// (the operand's offset is the caller's).
pub fn frontend_module() -> String {
    let nregs = u32::from(Reg::COUNT);
    let rb = clog2(u64::from(Reg::COUNT));
    let lv = clog2(MAX_LOOP_DEPTH as u64);
    let op = |m: &str| format!("8'h{:02x}", opcode(m));
    let terms: String = (0..MAX_LOOP_DEPTH)
        .map(|l| format!(" + lacc[{{r, {lv}'d{l}}}]"))
        .collect();
    let subs: Vec<(&str, String)> = vec![
        ("@MODULE@", FRONTEND.into()),
        ("@NREGS@", nregs.to_string()),
        ("@RB@", rb.to_string()),
        ("@LV@", lv.to_string()),
        ("@LD@", MAX_LOOP_DEPTH.to_string()),
        ("@NL@", (nregs as usize * MAX_LOOP_DEPTH).to_string()),
        ("@OP_NOP@", op("nop")),
        ("@OP_HALT@", op("halt")),
        ("@OP_LOOP@", op("loop")),
        ("@OP_ASET@", op("addr.set")),
        ("@OP_ASTEP@", op("addr.step")),
        ("@OP_PBEG@", op("prof.begin")),
        ("@OP_PEND@", op("prof.end")),
        ("@LOOP_COUNT@", zext_of("ins", field("loop", "count"), 32)),
        ("@LOOP_END@", zext_of("ins", field("loop", "end"), 16)),
        ("@ASET_REG@", zext_of("ins", field("addr.set", "reg"), rb)),
        ("@ASET_BASE@", zext_of("ins", field("addr.set", "base"), 48)),
        ("@ASTEP_REG@", zext_of("ins", field("addr.step", "reg"), rb)),
        (
            "@ASTEP_LVL@",
            zext_of("ins", field("addr.step", "level"), lv),
        ),
        (
            "@ASTEP_STRIDE@",
            sext48_of("ins", field("addr.step", "stride")),
        ),
        ("@TERMS@", terms),
    ];
    let mut v = FRONTEND_TEMPLATE.to_string();
    for (k, val) in subs {
        v = v.replace(k, &val);
    }
    v
}

const FRONTEND_TEMPLATE: &str = r#"// Queue front end: instruction memory, loop stack, address registers and
// the control instructions (nop halt loop addr.* prof.*).
module @MODULE@ #(
    parameter IMEM_DEPTH = 2,
    parameter IA = 1,
    parameter IMEM_INIT = "tessera_imem.hex",
    parameter NP = 1
) (
    input wire clk,
    input wire rst,
    input wire adv,
    output wire [127:0] ins,
    output reg halted,
    output wire ctrl,
    input wire [NP*@RB@-1:0] ra,
    output wire [NP*48-1:0] ea
);
    reg [127:0] imem [0:IMEM_DEPTH-1];
    initial $readmemh(IMEM_INIT, imem);
    reg [15:0] pc;
    reg [47:0] base [0:@NREGS@-1];
    reg [47:0] stride [0:@NL@-1];
    // lacc[{r, l}] = stride(r)[l] * index[l], kept incrementally.
    reg [47:0] lacc [0:@NL@-1];
    reg [2:0] depth;
    reg [15:0] lstart [0:@LD@-1];
    reg [15:0] lend [0:@LD@-1];
    reg [31:0] lcnt [0:@LD@-1];
    reg [31:0] lidx [0:@LD@-1];

    assign ins = imem[pc[IA-1:0]];
    wire [7:0] opc = ins[7:0];
    wire is_halt = opc == @OP_HALT@;
    wire is_loop = opc == @OP_LOOP@;
    wire is_aset = opc == @OP_ASET@;
    wire is_astep = opc == @OP_ASTEP@;
    assign ctrl = opc == @OP_NOP@ || is_halt || is_loop || is_aset || is_astep
        || opc == @OP_PBEG@ || opc == @OP_PEND@;

    wire [31:0] f_count = @LOOP_COUNT@;
    wire [15:0] f_body = @LOOP_END@;
    wire [@RB@-1:0] f_sreg = @ASET_REG@;
    wire [47:0] f_base = @ASET_BASE@;
    wire [@RB@-1:0] f_treg = @ASTEP_REG@;
    wire [@LV@-1:0] f_lvl = @ASTEP_LVL@;
    wire [47:0] f_stride = @ASTEP_STRIDE@;

    genvar gp;
    generate
        for (gp = 0; gp < NP; gp = gp + 1) begin : g_ea
            wire [@RB@-1:0] r = ra[gp*@RB@ +: @RB@];
            assign ea[gp*48 +: 48] = base[r]@TERMS@;
        end
    endgenerate

    // Loop back-edges and exits after the current instruction.
    reg [15:0] nx_pc;
    reg [2:0] nx_depth;
    reg back, go_on;
    reg [@LV@-1:0] back_lvl;
    integer l;
    always @* begin
        nx_pc = pc + 16'd1;
        nx_depth = depth;
        back = 1'b0;
        back_lvl = 0;
        go_on = 1'b1;
        for (l = @LD@ - 1; l >= 0; l = l - 1)
            if (go_on && l[2:0] < depth) begin
                if (nx_pc == lend[l]) begin
                    if (lidx[l] + 32'd1 < lcnt[l]) begin
                        nx_pc = lstart[l];
                        back = 1'b1;
                        back_lvl = l[@LV@-1:0];
                        go_on = 1'b0;
                    end else begin
                        nx_depth = l[2:0];
                    end
                end else begin
                    go_on = 1'b0;
                end
            end
    end

    integer i, j;
    always @(posedge clk) begin
        if (rst) begin
            pc <= 16'd0;
            halted <= 1'b0;
            depth <= 3'd0;
            for (i = 0; i < @NREGS@; i = i + 1) base[i] <= 48'd0;
            for (i = 0; i < @NL@; i = i + 1) begin
                stride[i] <= 48'd0;
                lacc[i] <= 48'd0;
            end
        end else if (adv && !halted) begin
            if (is_halt) begin
                halted <= 1'b1;
            end else if (is_loop) begin
                lstart[depth[@LV@-1:0]] <= pc + 16'd1;
                lend[depth[@LV@-1:0]] <= pc + 16'd1 + f_body;
                lcnt[depth[@LV@-1:0]] <= f_count;
                lidx[depth[@LV@-1:0]] <= 32'd0;
                for (i = 0; i < @NREGS@; i = i + 1) lacc[{i[@RB@-1:0], depth[@LV@-1:0]}] <= 48'd0;
                depth <= depth + 3'd1;
                pc <= pc + 16'd1;
            end else begin
                pc <= nx_pc;
                depth <= nx_depth;
                if (back) begin
                    lidx[back_lvl] <= lidx[back_lvl] + 32'd1;
                    for (i = 0; i < @NREGS@; i = i + 1)
                        lacc[{i[@RB@-1:0], back_lvl}] <= lacc[{i[@RB@-1:0], back_lvl}] + stride[{i[@RB@-1:0], back_lvl}];
                end
                for (j = 0; j < @LD@; j = j + 1)
                    if (j[2:0] >= nx_depth && j[2:0] < depth)
                        for (i = 0; i < @NREGS@; i = i + 1) lacc[{i[@RB@-1:0], j[@LV@-1:0]}] <= 48'd0;
                if (is_aset) begin
                    base[f_sreg] <= f_base;
                    for (j = 0; j < @LD@; j = j + 1) begin
                        stride[{f_sreg, j[@LV@-1:0]}] <= 48'd0;
                        lacc[{f_sreg, j[@LV@-1:0]}] <= 48'd0;
                    end
                end
                if (is_astep) stride[{f_treg, f_lvl}] <= f_stride;
            end
        end
    end
endmodule
"#;
