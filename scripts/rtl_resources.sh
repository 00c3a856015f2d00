#!/usr/bin/env bash
# Resource counts of the generated int8 and bf16 arrays (Yosys synthesis
# only, no simulation, no place and route) on ECP5 and Xilinx 7-series, as
# reported in docs/rtl.md:
#
#   scripts/rtl_resources.sh [INT8_STAGES] [BF16_STAGES] [SIZES...]
#                            (defaults: 2 4 4 8 16)
#
# Each design is the fpga-8x8 preset with one input type, N x N, and that
# type's pipeline stages. A flattened ECP5 synthesis of a 16x16 bf16 array
# takes Yosys well over half an hour on one core.
set -euo pipefail
cd "$(dirname "$0")/.."
int8_stages="${1:-2}"
bf16_stages="${2:-4}"
shift 2 || true
sizes="${*:-4 8 16}"
cargo build --release --quiet
root=target/rtl-resources
mkdir -p "$root"
echo "| array | input | P | target | LUTs | FFs | DSPs | BRAMs |"
echo "|---|---|---|---|---|---|---|---|"
for n in $sizes; do
    for spec in "int8:$int8_stages" "bf16:$bf16_stages"; do
        ty=${spec%%:*}
        p=${spec##*:}
        name="res-$ty-${n}x${n}-p$p"
        ./target/release/tessera hw show fpga-8x8 | sed -n '/^# Derived/q;p' \
            | sed "s/^name = .*/name = \"$name\"/; s/^rows = .*/rows = $n/; s/^cols = .*/cols = $n/; s/^pe_pipeline_stages = .*/pe_pipeline_stages = $p/; s/^input_types = .*/input_types = [\"$ty\"]/" \
            > "$root/$name.toml"
        for target in ecp5 xc7; do
            out="$root/$name-$target"
            # No simulator on the PATH: only the Verilog and the scripts are written.
            env PATH=/nonexistent ./target/release/tessera rtl --hw "$root/$name.toml" --out "$out" --target "$target" --pnr skip >/dev/null
            (cd "$out" && yosys -q -s "synth_${target}_${ty}.ys")
            python3 - "$out/stat_${target}_${ty}.txt" "$n" "$ty" "$p" "$target" <<'PY'
import sys
path, n, ty, p, target = sys.argv[1:]
block = open(path).read().split("=== ")[-1]
cells, on = {}, False
for line in block.splitlines():
    t = line.strip()
    if t.startswith("Number of cells:"):
        on = True
    elif on:
        parts = t.split()
        if len(parts) == 2 and parts[1].isdigit():
            cells[parts[0]] = int(parts[1])
        elif t:
            on = False
count = lambda *pre: sum(v for k, v in cells.items() if k.startswith(pre))
print(f"| {n}x{n} | {ty} | {p} | {target} | {count('LUT', 'SB_LUT')} | "
      f"{count('TRELLIS_FF', 'FD', 'SB_DFF')} | {count('DSP48', 'MULT18', 'SB_MAC')} | "
      f"{count('RAMB', 'DP16KD', 'SB_RAM')} |")
PY
        done
    done
done
