//! The fp32 adder of the accumulator memory (`mode=accumulate` on fp32
//! results), of the vector lanes and of the store engine's
//! `dma.scatter_add` (one per 4 bytes of an HBM burst): `z = round_fp32(x +
//! y)`, round to nearest even, subnormals honoured, emitted once as its own
//! combinational module.
//!
//! Numerics, matching the functional simulator's `f32 + f32`: the operand
//! of larger magnitude `a` keeps its 24-bit mantissa in a 27-bit window
//! (guard, round and sticky bits below it); the other is aligned into the
//! same window with a sticky bit collecting what it loses. An effective
//! subtraction with an exponent difference of 2 or more needs at most one
//! bit of left normalisation, and with a difference of 0 or 1 nothing is
//! lost, so three extra bits round correctly in every case. Normalisation
//! is limited by the exponent so subnormal results keep their scale;
//! rounding adds to the packed exponent/fraction so it carries into the
//! exponent and into infinity. An exact zero sum is +0 unless both addends
//! are -0. NaN results are the canonical 0x7fc00000 (the ISA fixes no
//! payload).

/// The adder's module name.
pub const FP32_ADD: &str = "tessera_fp32_add";

/// The Verilog-2005 text of [`FP32_ADD`]: ports `x`, `y` (fp32 bits in) and
/// `z` (fp32 bits out), purely combinational.
pub fn fp32_add() -> String {
    format!(
        "\
// fp32 adder: z = round_fp32(x + y), round to nearest even, subnormals honoured,
// canonical NaN. Combinational.
module {FP32_ADD} (
    input wire [31:0] x,
    input wire [31:0] y,
    output wire [31:0] z
);
    // a: the operand of larger magnitude.
    wire swap = y[30:0] > x[30:0];
    wire [31:0] a = swap ? y : x;
    wire [31:0] b = swap ? x : y;
    wire a_max = a[30:23] == 8'hff;
    wire x_nan = x[30:23] == 8'hff && x[22:0] != 23'd0;
    wire y_nan = y[30:23] == 8'hff && y[22:0] != 23'd0;
    wire x_inf = x[30:23] == 8'hff && x[22:0] == 23'd0;
    wire y_inf = y[30:23] == 8'hff && y[22:0] == 23'd0;
    wire nan = x_nan | y_nan | (x_inf & y_inf & (x[31] ^ y[31]));
    // Effective exponents (subnormals: 1, no hidden bit) and mantissas.
    wire [7:0] ea = (a[30:23] == 8'd0) ? 8'd1 : a[30:23];
    wire [7:0] eb = (b[30:23] == 8'd0) ? 8'd1 : b[30:23];
    wire [23:0] ma = {{a[30:23] != 8'd0, a[22:0]}};
    wire [23:0] mb = {{b[30:23] != 8'd0, b[22:0]}};
    wire [7:0] d = ea - eb;
    wire [5:0] dd = (d > 8'd50) ? 6'd50 : d[5:0];
    // b aligned: 24 mantissa bits, guard and round in [49:24], sticky below.
    wire [49:0] bw50 = {{mb, 26'd0}} >> dd;
    wire [26:0] aw = {{ma, 3'd0}};
    wire [26:0] bw = {{bw50[49:24], |bw50[23:0]}};
    wire sub = a[31] ^ b[31];
    wire [27:0] s = sub ? {{1'b0, aw}} - {{1'b0, bw}} : {{1'b0, aw}} + {{1'b0, bw}};
    // Leading zeros of s[26:0].
    reg [4:0] lz;
    integer i;
    always @* begin
        lz = 5'd27;
        for (i = 0; i < 27; i = i + 1)
            if (s[i]) lz = 5'd26 - i[4:0];
    end
    wire [7:0] room = ea - 8'd1;
    wire [7:0] sh = ({{3'd0, lz}} > room) ? room : {{3'd0, lz}};
    wire [26:0] left = s[26:0] << sh;
    wire [26:0] n = s[27] ? {{s[27:2], s[1] | s[0]}} : left;
    wire [8:0] e9 = s[27] ? {{1'b0, ea}} + 9'd1 : {{1'b0, ea}} - {{1'b0, sh}};
    wire [7:0] ef = n[26] ? e9[7:0] : 8'd0;
    wire up = n[2] & (n[1] | n[0] | n[3]);
    wire [30:0] mag = {{ef, n[25:3]}} + {{30'd0, up}};
    wire zero = s == 28'd0;
    wire sign = zero ? (a[31] & b[31]) : a[31];
    assign z = nan ? 32'h7fc00000
             : a_max ? a
             : (e9 >= 9'd255) ? {{a[31], 8'hff, 23'd0}}
             : {{sign, mag}};
endmodule
"
    )
}
