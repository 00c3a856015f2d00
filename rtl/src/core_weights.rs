//! The matrix engine's weight side of the core ([`crate::core`]) for single-
//! or double-buffered weights: the first B row a preload reads, the order it
//! walks the rows in, when a preload and a compute may start, how the
//! weights enter the array and the array's weight and switch ports.
//!
//! Single buffering: a preload starts when the last compute has drained and
//! shifts B in bottom row first for R cycles; a compute starts when the
//! preload has ended. Double buffering (`docs/timing.md`): a preload may
//! start SHD = (P - 2)^+ (R - 1) cycles after the last compute started (and
//! R after the last preload), a compute LAG = 1 + (2 - P)^+ (R - 1) cycles
//! after its preload; the preload reads B top row first, column c of the
//! array gets row r at step T + r + c and its tag with row 0, and the switch
//! bit enters array row r with the first activation row of every compute.

use crate::pe::Buffering;

/// The template substitutions of the core for `buffering` with `rows` rows
/// and `stages` pipeline stages per processing element.
pub(crate) fn weight_subs(
    buffering: Buffering,
    rows: u32,
    stages: u32,
) -> Vec<(&'static str, String)> {
    match buffering {
        Buffering::Single => vec![
            (
                "@P_FIRST@",
                "    wire [47:0] p_first = p_ea + (p_k - 48'd1) * p_rstep;".into(),
            ),
            ("@DB_REGS@", String::new()),
            (
                "@PRE_FREE@",
                "str_left <= 16'd1 && drain_left <= 32'd1".into(),
            ),
            ("@W_READY@", "pre_left <= 16'd1".into()),
            ("@DB_COUNTERS@", String::new()),
            ("@B_ROW0@", "R - 1".into()),
            (
                "@B_STEP@",
                "                b_row <= b_row - 16'd1;\n                if (b_row < b_k) b_ptr <= b_ptr - b_rstep;"
                    .into(),
            ),
            ("@W_FEED@", SINGLE_FEED.into()),
            ("@ARRAY_W_PORTS@", "        .w_shift(w_shift),\n".into()),
        ],
        Buffering::Double => {
            let lag = 1 + 2u32.saturating_sub(stages) * (rows - 1);
            let shd = stages.saturating_sub(2) * (rows - 1);
            vec![
                (
                    "@P_FIRST@",
                    "    // Double-buffered weights enter top row first.\n    wire [47:0] p_first = p_ea;"
                        .into(),
                ),
                (
                    "@DB_REGS@",
                    format!(
                        "    // Double-buffered weights (docs/timing.md): a preload may start SHD
    // cycles after the last compute started, a compute LAG cycles after its
    // preload (and no preload waits for a compute to drain).
    localparam [15:0] LAG = {lag}, SHD = {shd};
    reg [15:0] rdy_left, shd_left;
"
                    ),
                ),
                ("@PRE_FREE@", "shd_left <= 16'd1".into()),
                ("@W_READY@", "rdy_left <= 16'd1".into()),
                ("@DB_COUNTERS@", DOUBLE_COUNTERS.into()),
                ("@B_ROW0@", "16'd0".into()),
                (
                    "@B_STEP@",
                    "                b_row <= b_row + 16'd1;\n                if (b_row + 16'd1 < b_k) b_ptr <= b_ptr + b_rstep;"
                        .into(),
                ),
                ("@W_FEED@", DOUBLE_FEED.into()),
                (
                    "@ARRAY_W_PORTS@",
                    "        .w_tag_top(w_tag_top),\n        .w_tag_bottom(unused_w_tag_bottom),\n        .prop_left(prop_left),\n        .prop_right(unused_prop_right),\n"
                        .into(),
                ),
            ]
        }
    }
}

const SINGLE_FEED: &str = r#"    // Weights: rows >= k and columns >= n get the identity weight.
    wire w_shift = pre_left != 16'd0;
    wire [C*W-1:0] w_top;
    generate
        for (g = 0; g < C; g = g + 1) begin : g_wcol
            localparam [SA-1:0] CI = g;
            wire [SA-1:0] rd_addr = b_ptr + CI * b_cstep;
            assign w_top[g*W +: W] = (b_row < b_k && g < b_n) ? @RD_WORD@ : PAD;
        end
    endgenerate
"#;

const DOUBLE_COUNTERS: &str = r#"    always @(posedge clk) begin
        rdy_left <= rst ? 16'd0 : go_pre ? LAG : (rdy_left != 16'd0) ? rdy_left - 16'd1 : 16'd0;
        shd_left <= rst ? 16'd0 : go_cmp ? SHD : (shd_left != 16'd0) ? shd_left - 16'd1 : 16'd0;
    end
"#;

const DOUBLE_FEED: &str = r#"    // Weights (double-buffered): B's top row first; column c gets row r at
    // step T + r + c of a preload whose first step is T, and its tag (with
    // row 0) at T + c, so element (r, c) latches its shadow at T + 2 r + c.
    // Rows >= k and columns >= n get the identity weight.
    wire w_on = pre_left != 16'd0;
    wire [C*W-1:0] w_top;
    wire [C-1:0] w_tag_top;
    wire [C-1:0] unused_w_tag_bottom;
    // The switch bit: with the first activation row of every compute, skewed like it.
    reg a_first;
    always @(posedge clk) a_first <= !rst && go_cmp;
    wire [R-1:0] prop_left;
    wire [R-1:0] unused_prop_right;
    generate
        for (g = 0; g < C; g = g + 1) begin : g_wcol
            localparam [SA-1:0] CI = g;
            wire [SA-1:0] rd_addr = b_ptr + CI * b_cstep;
            wire [W:0] wdin = {w_on && b_row == 16'd0,
                (w_on && b_row < b_k && g < b_n) ? @RD_WORD@ : PAD};
            if (g == 0) begin : g_direct
                assign {w_tag_top[0], w_top[0 +: W]} = wdin;
            end else if (g == 1) begin : g_skew1
                reg [W:0] line;
                always @(posedge clk) line <= rst ? {(W+1){1'b0}} : wdin;
                assign {w_tag_top[g], w_top[g*W +: W]} = line;
            end else begin : g_skew
                localparam LEN = (W + 1) * g;
                reg [LEN-1:0] line;
                always @(posedge clk) line <= rst ? {LEN{1'b0}} : {line[LEN-W-2:0], wdin};
                assign {w_tag_top[g], w_top[g*W +: W]} = line[LEN-1 -: W+1];
            end
        end
        for (g = 0; g < R; g = g + 1) begin : g_prop
            if (g == 0) begin : g_direct
                assign prop_left[0] = a_first;
            end else if (P * g == 1) begin : g_skew1
                reg line;
                always @(posedge clk) line <= !rst && a_first;
                assign prop_left[g] = line;
            end else begin : g_skew
                localparam LEN = P * g;
                reg [LEN-1:0] line;
                always @(posedge clk) line <= rst ? {LEN{1'b0}} : {line[LEN-2:0], a_first};
                assign prop_left[g] = line[LEN-1];
            end
        end
    endgenerate
"#;
