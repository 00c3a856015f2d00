//! Self-checking testbenches for a sequence of weight-stationary folds run
//! back to back on the generated array, each preload and compute starting at
//! the cycle a schedule gives (callers take it from the timing simulator, so
//! the RTL checks that the model's overlap of preloads and computes is one
//! the hardware can honour). The stimulus is tabulated per cycle; the
//! testbench prints `PASS cycles=N` (N from the first preload's start to the
//! last result) or `FAIL ...` lines, comparing as [`crate::testbench`] does.

use std::fmt::Write as _;

use crate::pe::{Buffering, PeType};
use crate::testbench::{ArrayShape, FoldCase};
use crate::RtlError;

/// One fold of a sequence and the cycles, counted from the first preload's
/// start, at which its preload and its compute start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledFold {
    pub case: FoldCase,
    pub preload_at: usize,
    pub compute_at: usize,
}

/// Cycles from the first preload's start to the last result of `folds`:
/// the last compute's start plus its M + P R + C - 2 cycles.
pub fn sequence_cycles(shape: ArrayShape, folds: &[ScheduledFold]) -> usize {
    folds
        .iter()
        .map(|f| f.compute_at + f.case.m + shape.stages * shape.rows + shape.cols - 2)
        .max()
        .unwrap_or(0)
}

/// Checks that `folds` fit `shape`, are in order, all have `ty`, that no
/// two preloads or two computes' streams overlap, and that no compute starts
/// before its preload (single buffering: before its preload ends).
fn validate(
    shape: ArrayShape,
    ty: PeType,
    buffering: Buffering,
    folds: &[ScheduledFold],
) -> Result<(), RtlError> {
    let ArrayShape { rows, cols, stages } = shape;
    let bad = |why: String| Err(RtlError::Unsupported(why));
    if folds.is_empty() || stages == 0 {
        return bad("a fold sequence needs at least one fold and one stage".into());
    }
    for (i, f) in folds.iter().enumerate() {
        let FoldCase { m, k, n, .. } = f.case;
        if f.case.ty != ty || m == 0 || k == 0 || n == 0 || k > rows || n > cols {
            return bad(format!(
                "fold {i}: a {m}x{k}x{n} {} fold does not fit a {rows}x{cols} {} array",
                f.case.ty.name(),
                ty.name()
            ));
        }
        if f.case.a.len() != m * k || f.case.w.len() != k * n || f.case.c.len() != m * n {
            return bad(format!("fold {i}: vectors do not match m, k and n"));
        }
        // Single buffering computes on the shift chain, which the preload
        // fills in R cycles; double buffering leaves the exact bound to the
        // hardware (the fold-sequence tests probe it).
        let ends = match buffering {
            Buffering::Single => rows,
            Buffering::Double => 0,
        };
        if f.compute_at < f.preload_at + ends {
            return bad(format!(
                "fold {i}: the compute starts before its preload {}",
                match buffering {
                    Buffering::Single => "ends",
                    Buffering::Double => "starts",
                }
            ));
        }
        if let Some(p) = i.checked_sub(1).map(|j| &folds[j]) {
            if f.preload_at < p.preload_at + rows || f.compute_at < p.compute_at + p.case.m {
                return bad(format!(
                    "fold {i} overlaps fold {}'s preload or stream",
                    i - 1
                ));
            }
        }
    }
    Ok(())
}

/// A testbench for [`crate::array::array`] of `shape` with `buffering`
/// weights running `folds` of type `ty` on their schedule. With
/// [`Buffering::Double`] it raises `prop_left[r]` with the first activation
/// row of every compute, in every array row.
///
/// # Errors
/// A fold that does not fit, vectors of the wrong length, or a schedule
/// whose preloads or streams overlap.
pub fn sequence_testbench(
    shape: ArrayShape,
    ty: PeType,
    buffering: Buffering,
    folds: &[ScheduledFold],
) -> Result<String, RtlError> {
    validate(shape, ty, buffering, folds)?;
    let ArrayShape { rows, cols, stages } = shape;
    let (bits, digits) = (ty.input_bits() as usize, ty.input_bits() as usize / 4);
    let end = sequence_cycles(shape, folds);
    // Per step t (set at edge t, consumed at edge t + 1).
    let mut shift = vec![vec![false; cols]; end];
    let mut w_top = vec![vec![ty.identity_weight(); cols]; end];
    let mut a_left = vec![vec![0u16; rows]; end];
    let mut prop = vec![vec![false; rows]; end];
    // Per edge e: the expected value of each column, if any.
    let mut expect = vec![vec![None; cols]; end + 2];
    for f in folds {
        let FoldCase { m, k, n, .. } = f.case;
        let weight = |wr: usize, c: usize| {
            if wr < k && c < n {
                f.case.w[wr * n + c]
            } else {
                ty.identity_weight()
            }
        };
        match buffering {
            // The shift chain: bottom weight row first, all columns at once.
            Buffering::Single => {
                for j in 0..rows {
                    let t = f.preload_at + j;
                    shift[t] = vec![true; cols];
                    for (c, v) in w_top[t].iter_mut().enumerate() {
                        *v = weight(rows - 1 - j, c);
                    }
                }
            }
            // The weight pipeline: row r enters column c at T + r + c, the
            // tag with row 0.
            Buffering::Double => {
                for c in 0..cols {
                    shift[f.preload_at + c][c] = true;
                    for r in 0..rows {
                        w_top[f.preload_at + r + c][c] = weight(r, c);
                    }
                }
            }
        }
        for r in 0..rows {
            prop[f.compute_at + stages * r][r] = true;
            for i in 0..m {
                if r < k {
                    a_left[f.compute_at + i + stages * r][r] = f.case.a[i * k + r];
                }
            }
        }
        for i in 0..m {
            for c in 0..n {
                // C[i][c] leaves column c at step i + P R - 1 + c of the compute.
                expect[f.compute_at + i + stages * rows - 1 + c + 2][c] = Some(f.case.c[i * n + c]);
            }
        }
    }
    let mut t = String::new();
    let _ = writeln!(
        t,
        "// Generated by tessera-rtl: {} {} folds on a {rows}x{cols} array, {stages} stage(s), {buffering:?} buffering.",
        folds.len(),
        ty.name()
    );
    let _ = writeln!(t, "`timescale 1ns/1ps");
    let _ = writeln!(t, "module tb;");
    let _ = writeln!(
        t,
        "    localparam R = {rows}, C = {cols}, B = {bits}, T = {end};"
    );
    t.push_str(
        "    reg clk = 1'b0;
    always #5 clk = ~clk;
    reg [C-1:0] w_shift = 0;
    wire [C-1:0] w_tag_bottom;
    reg [C*B-1:0] w_top = 0;
    reg [R*B-1:0] a_left = 0;
    reg [R-1:0] prop_left = 0;
    wire [C*B-1:0] w_bottom;
    wire [R*B-1:0] a_right;
    wire [R-1:0] prop_right;
    wire [C*32-1:0] p_bottom;
",
    );
    let (shift_ports, prop_ports) = match buffering {
        Buffering::Single => (".w_shift(w_shift[0])", ""),
        Buffering::Double => (
            ".w_tag_top(w_shift), .w_tag_bottom(w_tag_bottom)",
            ", .prop_left(prop_left), .prop_right(prop_right)",
        ),
    };
    let _ = writeln!(
        t,
        "    {} #(.ROWS(R), .COLS(C)) dut (.clk(clk), {shift_ports}, .w_top(w_top), .w_bottom(w_bottom), .a_left(a_left), .a_right(a_right){prop_ports}, .p_bottom(p_bottom));",
        ty.array_module()
    );
    t.push_str(
        "    reg [C-1:0] SH [0:T-1];
    reg [C*B-1:0] WT [0:T-1];
    reg [R*B-1:0] AL [0:T-1];
    reg [R-1:0] PL [0:T-1];
    reg [C*32-1:0] E [0:T+1];
    reg [C-1:0] V [0:T+1];
    reg [31:0] got, want;
    reg bad;
    integer cc, errors;
    integer cyc = 0;
    initial begin
",
    );
    let hex = |v: &[u16]| -> String {
        v.iter()
            .rev()
            .map(|x| format!("{x:0digits$x}"))
            .collect::<Vec<_>>()
            .join("_")
    };
    let flags =
        |v: &[bool]| -> String { v.iter().rev().map(|&b| if b { '1' } else { '0' }).collect() };
    for s in 0..end {
        let _ = writeln!(
            t,
            "        SH[{s}] = {cols}'b{}; WT[{s}] = {}'h{}; AL[{s}] = {}'h{}; PL[{s}] = {rows}'b{};",
            flags(&shift[s]),
            cols * bits,
            hex(&w_top[s]),
            rows * bits,
            hex(&a_left[s]),
            flags(&prop[s]),
        );
    }
    for (e, ex) in expect.iter().enumerate() {
        let vals: Vec<String> = ex
            .iter()
            .rev()
            .map(|v| format!("{:08x}", v.unwrap_or(0)))
            .collect();
        let valid: Vec<bool> = ex.iter().map(Option::is_some).collect();
        let _ = writeln!(
            t,
            "        E[{e}] = {}'h{}; V[{e}] = {cols}'b{};",
            cols * 32,
            vals.join("_"),
            flags(&valid)
        );
    }
    let compare = match ty {
        PeType::Int8 => "bad = (got !== want);",
        PeType::Bf16 => {
            "bad = (want[30:23] == 8'hff && want[22:0] != 0) ? !(got[30:23] == 8'hff && got[22:0] != 0) : (got !== want);"
        }
    };
    let _ = write!(
        t,
        "        errors = 0;
    end
    // Fully synchronous stimulus: the inputs of step s are set at edge s and
    // consumed by the array at edge s + 1; results are checked two edges
    // after the step that produced them.
    always @(posedge clk) begin
        cyc <= cyc + 1;
        if (cyc < T) begin
            w_shift <= SH[cyc];
            w_top <= WT[cyc];
            a_left <= AL[cyc];
            prop_left <= PL[cyc];
        end else begin
            w_shift <= 0;
            a_left <= 0;
            prop_left <= 0;
        end
        for (cc = 0; cc < C; cc = cc + 1) begin
            if (V[cyc][cc]) begin
                got = p_bottom[cc*32 +: 32];
                want = E[cyc][cc*32 +: 32];
                {compare}
                if (bad) begin
                    errors = errors + 1;
                    $display(\"FAIL edge %0d column %0d = %h, expected %h\", cyc, cc, got, want);
                end
            end
        end
        if (cyc == T + 1) begin
            if (errors == 0) $display(\"PASS cycles=%0d\", T);
            else $display(\"FAIL errors=%0d\", errors);
            $finish;
        end
    end
endmodule
"
    );
    Ok(t)
}
