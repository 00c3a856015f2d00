//! The core's output-stationary matrix engine ([`crate::core`] selects it
//! by `array.dataflow`): the same memories, tokens, DMA and vector queues
//! and matrix front end as the weight-stationary core, driving the
//! output-stationary array of [`crate::array_os`].
//!
//! `mm.preload` only binds B (first row, row and column steps, k, n) in the
//! front end: it is a control instruction there, as in the timing model,
//! where it takes no time (it takes its waited tokens when it issues, and
//! one that signals waits for the engine to finish). Each `mm.compute`
//! queues A, the bound B and C. A fold of k steps starts when the previous
//! fold's last step runs (the model starts a compute when the previous one
//! ends: computes never overlap); in step s < k it reads column s of A
//! (rows < m) and row s of B (columns < n) and feeds them skewed one cycle
//! per row and column, from step k + R + C + P - 3 it holds `drain` for R
//! steps, so row R - 1 - d of C leaves the array in drain step d; each row
//! is registered and written one cycle later (the result, or old + result
//! with wrapping int32 or [`crate::fp32_add`]), so the last write is
//! k + 2R + C + P - 2 cycles after the compute starts: the model's
//! k + 2R + C + P - 3, plus the accumulator write the weight-stationary
//! core counts too.

use tessera_isa::{Arch, Op};

use crate::array_os::{os_array, os_pe};
use crate::pe::{Buffering, PeType};
use crate::RtlError;

/// Refuses an output-stationary description the core is not generated for
/// ([`crate::core::core_program`] calls it; `tessera rtl` asks before it
/// writes anything).
///
/// # Errors
/// `array.double_buffered_weights` set: an output-stationary array keeps
/// no weights, and the timing model's output-stationary preload takes no
/// time whatever that field says, so there is nothing to double-buffer.
pub fn check_os_arch(arch: &Arch) -> Result<(), RtlError> {
    if Buffering::of(arch) == Buffering::Double {
        return Err(RtlError::Unsupported(
            "array.double_buffered_weights: an output-stationary array holds no weights, so the core generates no double-buffered output-stationary engine; set it to false".into(),
        ));
    }
    Ok(())
}

/// Checks the shape of a matrix engine instruction against the
/// output-stationary array: B has at most C columns, A at most R rows (k
/// is any 16-bit count: it is streamed). Returns why not, for the caller
/// to name the instruction.
pub(crate) fn check_os_shape(op: &Op, arch: &Arch) -> Result<(), String> {
    match *op {
        Op::MmPreload { n, .. } if n.get() > u64::from(arch.cols()) => Err(format!(
            "n = {} exceeds the array's {} columns",
            n.get(),
            arch.cols()
        )),
        Op::MmCompute { m, .. } if m.get() > u64::from(arch.rows()) => Err(format!(
            "m = {} exceeds the array's {} rows (output-stationary)",
            m.get(),
            arch.rows()
        )),
        _ => Ok(()),
    }
}

/// The processing element and array files of the output-stationary core of
/// `ty`, each text starting with `header`.
///
/// # Errors
/// A pipeline depth the processing element generator refuses.
pub(crate) fn os_array_files(
    arch: &Arch,
    ty: PeType,
    header: &str,
) -> Result<Vec<(String, String)>, RtlError> {
    Ok([
        os_pe(ty, arch.pe_stages())?,
        os_array(ty, arch.rows(), arch.cols()),
    ]
    .into_iter()
    .map(|m| {
        (
            format!("{}.v", m.name),
            format!("{header}{}", m.to_verilog()),
        )
    })
    .collect())
}

/// The template substitutions of the output-stationary engine. `early`: a
/// compute's signal becomes visible the cycle the timing model ends it (two
/// cycles before its last accumulator write, safe when its consumers touch
/// memory no sooner than two cycles after they start, as the
/// weight-stationary core's); otherwise with its last write.
pub(crate) fn os_subs(early: bool) -> Vec<(&'static str, String)> {
    let sig = if early {
        "    assign mm_tgive = (f_on && f_st + 32'd1 == f_last) ? f_sig : 16'd0;".to_string()
    } else {
        "    reg [15:0] w_sig;
    always @(posedge clk) w_sig <= (!rst && draining && f_st == f_last) ? f_sig : 16'd0;
    assign mm_tgive = w_sig;"
            .to_string()
    };
    vec![
        (
            "@P_FIRST@",
            "    // Output-stationary B streams top row first.\n    wire [47:0] p_first = p_ea;"
                .into(),
        ),
        ("@PAD_LINE@", String::new()),
        ("@TAG_PARAM@", String::new()),
        ("@DATAFLOW@", "output-stationary".into()),
        ("@OS_SIG@", sig),
    ]
}

/// The output-stationary matrix engine, completing [`crate::core`]'s head.
pub(crate) const OS_ENGINE: &str = r#"    // Compute queue: mm.preload binds B in the front end (a control
    // instruction); each mm.compute queues A, the bound B and C.
    reg [2:0] q_count;
    reg [1:0] q_head, q_tail;
    reg [SA-1:0] q_aaddr [0:FD-1];
    reg [SA-1:0] q_arstep [0:FD-1];
    reg [SA-1:0] q_acstep [0:FD-1];
    reg [SA-1:0] q_baddr [0:FD-1];
    reg [SA-1:0] q_brstep [0:FD-1];
    reg [SA-1:0] q_bcstep [0:FD-1];
    reg [15:0] q_k [0:FD-1];
    reg [15:0] q_n [0:FD-1];
    reg [15:0] q_m [0:FD-1];
    reg [AA-1:0] q_caddr [0:FD-1];
    reg [AA-1:0] q_cstr [0:FD-1];
    reg q_acc [0:FD-1];
    reg [15:0] q_wait [0:FD-1];
    reg [15:0] q_sig [0:FD-1];
    // The bound B: its first row and the steps between its rows and columns.
    reg [SA-1:0] ob_addr, ob_rstep, ob_cstep;
    wire eng = is_cmp;
    wire mm_idle;
    // Computes take their waited tokens when they start; a control
    // instruction (a preload too) waits for the queued computes to start
    // first, and one that signals waits for the matrix unit to finish.
@MM_ISSUE@
    assign mm_pgive = 16'd0;
    always @(posedge clk) begin
        if (rst) begin
            sa <= 48'd0;
            sb <= 48'd0;
            sc <= 48'd0;
            bk <= 16'd0;
            bn <= 16'd0;
            ob_addr <= {SA{1'b0}};
            ob_rstep <= {SA{1'b0}};
            ob_cstep <= {SA{1'b0}};
        end else if (mm_adv) begin
            if (is_mstr) begin
                sa <= @MSTR_A@;
                sb <= @MSTR_B@;
                sc <= @MSTR_C@;
            end
            if (is_pre) begin
                bk <= p_k[15:0];
                bn <= p_n[15:0];
                ob_addr <= p_first[SA-1:0];
                ob_rstep <= p_rstep[SA-1:0];
                ob_cstep <= p_cstep[SA-1:0];
            end
        end
    end
    always @(posedge clk) error <= !rst && (error || mm_err || ld_err || st_err || v_err);

    always @(posedge clk) begin
        if (rst) begin
            q_count <= 3'd0;
            q_head <= 2'd0;
            q_tail <= 2'd0;
        end else begin
            if (push) begin
                q_aaddr[q_tail] <= c_aea[SA-1:0];
                q_arstep[q_tail] <= c_rstep[SA-1:0];
                q_acstep[q_tail] <= c_cstep[SA-1:0];
                q_baddr[q_tail] <= ob_addr;
                q_brstep[q_tail] <= ob_rstep;
                q_bcstep[q_tail] <= ob_cstep;
                q_k[q_tail] <= bk;
                q_n[q_tail] <= bn;
                q_m[q_tail] <= c_m[15:0];
                q_caddr[q_tail] <= c_cea[AA+1:2];
                q_cstr[q_tail] <= c_cstr[AA+1:2];
                q_acc[q_tail] <= c_acc;
                q_wait[q_tail] <= mm_wt;
                q_sig[q_tail] <= mm_sg;
                q_tail <= q_tail + 2'd1;
            end
            if (go) q_head <= q_head + 2'd1;
            q_count <= q_count + {2'd0, push} - {2'd0, go};
        end
    end
@MM_UNUSED@

    // ------------------------------------------------------------------ engine
    // Fold step s runs the s-th cycle after its compute starts: while s < k
    // it reads column s of A and row s of B; from step k + DRAIN0 the array
    // drains for R steps; its last step, k + TAIL - 1, is the one in which
    // the next compute may start (the model does not overlap computes).
    localparam [31:0] DRAIN0 = R + C + P - 3;
    localparam [31:0] TAIL = 2 * R + C + P - 3;
    localparam [AA-1:0] LAST_ROW = R - 1;
    localparam [15:0] LAST_ROW16 = R - 1;
    reg f_on, f_acc;
    reg [31:0] f_st, f_last, f_drain;
    reg [15:0] f_k, f_n, f_m, f_row, f_sig;
    reg [SA-1:0] a_ptr, a_rstep, a_cstep, b_ptr, b_rstep, b_cstep;
    reg [AA-1:0] c_ptr, c_step;
    reg started;
    wire h_valid = q_count != 3'd0 && (q_wait[q_head] & ~tok_pos) == 16'd0;
    wire go_cmp = h_valid && (!f_on || f_st == f_last);
    assign go = go_cmp;
    wire streaming = f_on && f_st < {16'd0, f_k};
    wire draining = f_on && f_st >= f_drain;
    always @(posedge clk) begin
        if (rst) begin
            f_on <= 1'b0;
            f_st <= 32'd0;
            started <= 1'b0;
        end else begin
            if (go || ld_go || st_go || v_go) started <= 1'b1;
            if (go_cmp) begin
                f_on <= 1'b1;
                f_st <= 32'd0;
                f_last <= {16'd0, q_k[q_head]} + TAIL - 32'd1;
                f_drain <= {16'd0, q_k[q_head]} + DRAIN0;
                f_k <= q_k[q_head];
                f_n <= q_n[q_head];
                f_m <= q_m[q_head];
                f_row <= LAST_ROW16;
                f_acc <= q_acc[q_head];
                f_sig <= q_sig[q_head];
                a_ptr <= q_aaddr[q_head];
                a_rstep <= q_arstep[q_head];
                a_cstep <= q_acstep[q_head];
                b_ptr <= q_baddr[q_head];
                b_rstep <= q_brstep[q_head];
                b_cstep <= q_bcstep[q_head];
                c_ptr <= q_caddr[q_head] + LAST_ROW * q_cstr[q_head];
                c_step <= q_cstr[q_head];
            end else if (f_on) begin
                f_st <= f_st + 32'd1;
                if (f_st == f_last) f_on <= 1'b0;
                if (streaming) begin
                    a_ptr <= a_ptr + a_cstep;
                    b_ptr <= b_ptr + b_rstep;
                end
                if (draining) begin
                    c_ptr <= c_ptr - c_step;
                    f_row <= f_row - 16'd1;
                end
            end
        end
    end

    // A: array row r gets {first, valid, A[r][s]} (valid low for r >= m),
    // delayed by r cycles; B: column c gets B[s][c] (0 for c >= n), delayed by c.
    wire [R*(W+2)-1:0] a_left;
    wire [C*W-1:0] b_top;
    generate
        for (g = 0; g < R; g = g + 1) begin : g_arow
            localparam [SA-1:0] RI = g;
            wire on = streaming && g < f_m;
            wire [SA-1:0] rd_addr = a_ptr + RI * a_rstep;
            wire [W+1:0] din = {on && f_st == 32'd0, on, on ? @RD_WORD@ : {W{1'b0}}};
            if (g == 0) begin : g_direct
                assign a_left[0 +: W+2] = din;
            end else if (g == 1) begin : g_skew1
                reg [W+1:0] line;
                always @(posedge clk) line <= rst ? {(W+2){1'b0}} : din;
                assign a_left[(W+2) +: W+2] = line;
            end else begin : g_skew
                localparam LEN = (W + 2) * g;
                reg [LEN-1:0] line;
                always @(posedge clk) line <= rst ? {LEN{1'b0}} : {line[LEN-W-3:0], din};
                assign a_left[g*(W+2) +: W+2] = line[LEN-1 -: W+2];
            end
        end
        for (g = 0; g < C; g = g + 1) begin : g_bcol
            localparam [SA-1:0] CI = g;
            wire [SA-1:0] rd_addr = b_ptr + CI * b_cstep;
            wire [W-1:0] din = (streaming && g < f_n) ? @RD_WORD@ : {W{1'b0}};
            if (g == 0) begin : g_direct
                assign b_top[0 +: W] = din;
            end else if (g == 1) begin : g_skew1
                reg [W-1:0] line;
                always @(posedge clk) line <= rst ? {W{1'b0}} : din;
                assign b_top[W +: W] = line;
            end else begin : g_skew
                localparam LEN = W * g;
                reg [LEN-1:0] line;
                always @(posedge clk) line <= rst ? {LEN{1'b0}} : {line[LEN-W-1:0], din};
                assign b_top[g*W +: W] = line[LEN-1 -: W];
            end
        end
    endgenerate
    wire [C*32-1:0] p_bottom;
    wire [R*(W+2)-1:0] unused_a_right;
    wire [C*W-1:0] unused_b_bottom;
    @ARRAY@ #(.ROWS(R), .COLS(C)) u_array (
        .clk(clk),
        .drain(draining),
        .a_left(a_left),
        .a_right(unused_a_right),
        .b_top(b_top),
        .b_bottom(unused_b_bottom),
        .p_bottom(p_bottom)
    );

    // Drain step d puts row R-1-d of C on p_bottom; the row is registered
    // and written the next cycle (rows >= m are not), old + result when accumulating.
    reg w_on, w_acc;
    reg [15:0] w_n;
    reg [AA-1:0] w_ptr;
    reg [C*32-1:0] w_p;
    always @(posedge clk) begin
        w_on <= !rst && draining && f_row < f_m;
        w_acc <= f_acc;
        w_n <= f_n;
        w_ptr <= c_ptr;
        w_p <= p_bottom;
    end
    wire [C-1:0] wen;
    wire [C*AA-1:0] widx;
    wire [C*32-1:0] wdata;
    generate
        for (g = 0; g < C; g = g + 1) begin : g_wb
            localparam [AA-1:0] CJ = g;
            wire [AA-1:0] idx = w_ptr + CJ;
            wire [31:0] p_c = w_p[g*32 +: 32];
            wire [31:0] old_c = acc[idx];
            wire [31:0] sum_c;
@ADDER@
            assign wen[g] = w_on && g < w_n;
            assign widx[g*AA +: AA] = idx;
            assign wdata[g*32 +: 32] = w_acc ? sum_c : p_c;
        end
    endgenerate
    // A compute's signal (see EARLY in the generator).
@OS_SIG@
    // Accumulator writes: the array's results, then the load queue's bytes.
    integer wc;
    always @(posedge clk) begin
        for (wc = 0; wc < C; wc = wc + 1)
            if (wen[wc]) acc[widx[wc*AA +: AA]] <= wdata[wc*32 +: 32];
        for (b = 0; b < BURST; b = b + 1)
            if (ld_on[b] && ld_acc)
                acc[ld_lb[b*LW + 2 +: AA]][{ld_lb[b*LW +: 2], 3'b000} +: 8] <= ld_zero ? 8'd0 : hbm[ld_hb[b*HA +: HA]];
        for (b = 0; b < @VL@ * 4; b = b + 1)
            if (v_we[b] && v_wacc)
                acc[v_wca[b*(AA+2) + 2 +: AA]][{v_wca[b*(AA+2) +: 2], 3'b000} +: 8] <= v_wd[b*8 +: 8];
    end

    assign mm_idle = q_count == 3'd0 && !f_on && !w_on;
    assign done = mm_halted && mm_idle && ld_halted && !ld_busy && st_halted && !st_busy && v_halted && v_idle;
    always @(posedge clk) begin
        if (rst) begin
            lead_cycles <= 32'd0;
            run_cycles <= 32'd0;
        end else if (!started) begin
            lead_cycles <= lead_cycles + 32'd1;
        end else if (!done) begin
            run_cycles <= run_cycles + 32'd1;
        end
    end
endmodule
"#;
