//! The self-checking testbench of the vector lane, the special-function
//! lane, the reduction lane and the widening conversion (`tb_vec_lane.v`), and its `$readmemh` images.
//! Callers supply the vectors with the results the functional simulator's
//! numerics give (this crate does not see the simulator). The testbench
//! streams one lane vector per cycle through the pipelined lane, checks
//! every `y` and `w` when it leaves (`vector.latency_cycles` later) and
//! every widened element the same cycle it enters, then runs the reduction
//! steps, one per cycle, checking the accumulator after each. Results
//! compare bit for bit, except that where the simulator gives a NaN any
//! NaN of the destination type passes (the ISA fixes no payload). It prints
//! `PASS vectors=N reductions=M` or `FAIL ...` lines, then finishes.

use std::fmt::Write as _;

use tessera_isa::field::{Field, ReduceOp};
use tessera_isa::DType;

use crate::vec_convert::VEC_WIDEN;
use crate::vec_lane::VEC_LANE;
use crate::vec_op::{VecOp, OP_BITS};
use crate::vec_reduce::VEC_REDUCE;
use crate::vec_special::VEC_SPECIAL;
use crate::RtlError;

/// The testbench's file name.
pub const VEC_TB: &str = "tb_vec_lane.v";
/// The lane vectors' image.
pub const LANE_IMAGE: &str = "tessera_vec_lane_vectors.hex";
/// The reduction steps' image.
pub const REDUCE_IMAGE: &str = "tessera_vec_reduce_vectors.hex";

/// One lane operation with its operands (fp32 bits) and the expected
/// results, plus one independent read-side check (`raw` of `read_ty`
/// widens to `widened`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneVector {
    pub op: VecOp,
    /// Destination element type.
    pub ty: DType,
    pub a: u32,
    pub b: u32,
    pub mask: u32,
    pub alpha: u32,
    pub beta: u32,
    /// The fp32 result.
    pub y: u32,
    /// The result written as `ty` (low bits).
    pub w: u32,
    pub read_ty: DType,
    pub raw: u32,
    pub widened: u32,
}

/// What a reduction step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceStep {
    /// The first element: restart from the identity.
    Start,
    /// A further element.
    Step,
    /// `x` is the old destination value (`mode=accumulate`).
    Combine,
}

/// One cycle of the reduction lane: `op` applied to `x`, `acc` expected after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReduceVector {
    pub op: ReduceOp,
    pub step: ReduceStep,
    pub x: u32,
    pub acc: u32,
}

/// The image of `lanes`: one 320-bit word per vector.
fn lane_image(lanes: &[LaneVector]) -> String {
    let mut s = String::new();
    for v in lanes {
        let _ = writeln!(
            s,
            "{:02x}{:02x}{:02x}{:02x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            v.op.opcode(),
            v.op.code(),
            v.ty.code(),
            v.read_ty.code(),
            v.a,
            v.b,
            v.mask,
            v.alpha,
            v.beta,
            v.y,
            v.w,
            v.raw,
            v.widened
        );
    }
    s
}

/// The image of `steps`: one 80-bit word per step.
fn reduce_image(steps: &[ReduceVector]) -> String {
    let mut s = String::new();
    for r in steps {
        let kind = match r.step {
            ReduceStep::Start => 0,
            ReduceStep::Step => 1,
            ReduceStep::Combine => 2,
        };
        let _ = writeln!(
            s,
            "{kind:02x}{:02x}{:08x}{:08x}",
            r.op.to_bits(),
            r.x,
            r.acc
        );
    }
    s
}

/// The Verilog condition "`v` is a NaN of type code `t`" for every type.
fn nan_function() -> String {
    let mut cases = String::new();
    for t in DType::ALL {
        let cond = match t {
            DType::Fp32 => "v[30:23] == 8'hff && v[22:0] != 0",
            DType::Bf16 => "v[14:7] == 8'hff && v[6:0] != 0",
            DType::Fp16 => "v[14:10] == 5'h1f && v[9:0] != 0",
            DType::Fp8E4M3 => "v[6:0] == 7'h7f",
            DType::Fp8E5M2 => "v[6:2] == 5'h1f && v[1:0] != 0",
            DType::Int8 | DType::Int32 => "1'b0",
        };
        let _ = writeln!(cases, "            3'd{}: is_nan = {cond};", t.code());
    }
    format!(
        "    function is_nan(input [2:0] t, input [31:0] v);
        case (t)
{cases}            default: is_nan = 1'b0;
        endcase
    endfunction
    // Bit for bit, except that an expected NaN accepts any NaN of the type.
    function same(input [2:0] t, input [31:0] got, input [31:0] want);
        same = is_nan(t, want) ? is_nan(t, got) : (got === want);
    endfunction
"
    )
}

/// The testbench and its two images, `(file name, text)`, for a lane of
/// `latency` pipeline registers.
///
/// # Errors
///
/// [`RtlError::Unsupported`] when a vector asks for an operation the lane
/// does not build (naming it), or when either list is empty.
pub fn vec_testbench(
    lanes: &[LaneVector],
    steps: &[ReduceVector],
    latency: u32,
) -> Result<Vec<(String, String)>, RtlError> {
    for v in lanes {
        v.op.lane_support()?;
    }
    if lanes.is_empty() || steps.is_empty() {
        return Err(RtlError::Unsupported(
            "the vector testbench needs at least one lane vector and one reduction step".into(),
        ));
    }
    if steps[0].step != ReduceStep::Start {
        return Err(RtlError::Unsupported(
            "the first reduction step must start a reduction".into(),
        ));
    }
    let (n, m) = (lanes.len(), steps.len());
    let fp32 = DType::Fp32.code();
    let ob = OP_BITS;
    let tb = format!(
        "\
// Generated by tessera-rtl: checks the vector lane, the reduction lane and the
// widening conversion against vectors from the functional simulator.
`timescale 1ns/1ps
module tb;
    reg clk = 1'b0;
    always #5 clk = ~clk;
    reg rst = 1'b1;
    reg in_valid = 1'b0;
    reg [7:0] opcode = 8'd0;
    reg [{ob}-1:0] op = {ob}'d0;
    reg [2:0] ty = 3'd0, rty = 3'd0;
    reg [31:0] a = 0, b = 0, mask = 0, alpha = 0, beta = 0, raw = 0;
    wire out_valid, bad;
    wire [31:0] y, w, widened;
    {VEC_LANE} dut (.clk(clk), .rst(rst), .in_valid(in_valid), .opcode(opcode), .op(op), .ty(ty),
        .a(a), .b(b), .mask(mask), .alpha(alpha), .beta(beta), .out_valid(out_valid), .bad(bad), .y(y), .w(w));
    wire s_valid, s_bad;
    wire [31:0] s_y, s_w;
    {VEC_SPECIAL} sdut (.clk(clk), .rst(rst), .in_valid(in_valid), .opcode(opcode), .op(op), .ty(ty),
        .a(a), .b(b), .out_valid(s_valid), .bad(s_bad), .y(s_y), .w(s_w));
    // The operation's result comes from whichever lane computes it.
    wire both_bad = bad & s_bad;
    wire [31:0] y_any = bad ? s_y : y;
    wire [31:0] w_any = bad ? s_w : w;
    {VEC_WIDEN} rd (.raw(raw), .ty(rty), .z(widened));
    reg en = 1'b0, start = 1'b0, combine = 1'b0;
    reg [1:0] rop = 2'd0;
    reg [31:0] rx = 0;
    wire [31:0] racc;
    {VEC_REDUCE} red (.clk(clk), .en(en), .start(start), .combine(combine), .op(rop), .x(rx), .acc(racc));
    reg [319:0] V [0:{n}-1];
    reg [79:0] R [0:{m}-1];
    reg [319:0] e;
    integer i, j, errors;
{nan}    initial begin
        $readmemh(\"{LANE_IMAGE}\", V);
        $readmemh(\"{REDUCE_IMAGE}\", R);
        errors = 0;
        j = 0;
        @(posedge clk);
        #1 rst = 1'b0;
        for (i = 0; i < {n} + {latency}; i = i + 1) begin
            if (i < {n}) begin
                e = V[i];
                opcode = e[319:312];
                op = e[{opt}:304];
                ty = e[298:296];
                rty = e[290:288];
                a = e[287:256];
                b = e[255:224];
                mask = e[223:192];
                alpha = e[191:160];
                beta = e[159:128];
                raw = e[63:32];
                in_valid = 1'b1;
                #1;
                if (!same(3'd{fp32}, widened, e[31:0])) begin
                    errors = errors + 1;
                    if (errors <= 10) $display(\"FAIL vector %0d: widen type %0d %h = %h, expected %h\", i, rty, raw, widened, e[31:0]);
                end
            end else in_valid = 1'b0;
            @(posedge clk);
            #1;
            if (out_valid) begin
                e = V[j];
                if (both_bad || s_valid !== out_valid || !same(3'd{fp32}, y_any, e[127:96]) || !same(e[298:296], w_any, e[95:64])) begin
                    errors = errors + 1;
                    if (errors <= 10) $display(\"FAIL vector %0d: opcode %h op %0d type %0d a %h b %h: y %h w %h bad %b, expected y %h w %h\",
                        j, e[319:312], e[{opt}:304], e[298:296], e[287:256], e[255:224], y_any, w_any, both_bad, e[127:96], e[95:64]);
                end
                j = j + 1;
            end
        end
        if (j != {n}) begin
            errors = errors + 1;
            $display(\"FAIL %0d results left the lane, expected {n}\", j);
        end
        for (i = 0; i < {m}; i = i + 1) begin
            start = R[i][79:72] == 8'd0;
            combine = R[i][79:72] == 8'd2;
            rop = R[i][65:64];
            rx = R[i][63:32];
            en = 1'b1;
            @(posedge clk);
            #1 en = 1'b0;
            if (!same(3'd{fp32}, racc, R[i][31:0])) begin
                errors = errors + 1;
                if (errors <= 10) $display(\"FAIL reduction step %0d: op %0d kind %0d x %h: acc %h, expected %h\",
                    i, rop, R[i][79:72], rx, racc, R[i][31:0]);
            end
        end
        if (errors == 0) $display(\"PASS vectors={n} reductions={m}\");
        else $display(\"FAIL errors=%0d\", errors);
        $finish;
    end
endmodule
",
        nan = nan_function(),
        opt = 304 + ob - 1,
    );
    Ok(vec![
        (VEC_TB.into(), tb),
        (LANE_IMAGE.into(), lane_image(lanes)),
        (REDUCE_IMAGE.into(), reduce_image(steps)),
    ])
}
