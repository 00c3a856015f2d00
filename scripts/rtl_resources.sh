#!/usr/bin/env bash
# Resource counts of the generated int8 and bf16 arrays (Yosys synthesis
# only, no place and route) for a list of sizes on ECP5 and Xilinx 7-series,
# as reported in docs/rtl.md:
#
#   scripts/rtl_resources.sh [STAGES] [SIZES...]     (default: 2 4 8 16)
#
# Each size is a copy of the fpga-8x8 preset with that many rows and
# columns and STAGES pipeline stages per processing element. A 16x16 bf16
# array takes Yosys a long time; run it when the machine is free.
set -euo pipefail
cd "$(dirname "$0")/.."
stages="${1:-2}"
shift || true
sizes=("${@:-4 8 16}")
cargo build --release --quiet
root=target/rtl-resources
mkdir -p "$root"
for n in ${sizes[@]}; do
    hw="$root/rtl-${n}x${n}-p${stages}.toml"
    ./target/release/tessera hw show fpga-8x8 | sed -n '/^# Derived/q;p' \
        | sed "s/^name = .*/name = \"rtl-${n}x${n}-p${stages}\"/; s/^rows = .*/rows = $n/; s/^cols = .*/cols = $n/; s/^pe_pipeline_stages = .*/pe_pipeline_stages = $stages/" > "$hw"
    for target in ecp5 xc7; do
        out="$root/${n}x${n}-p${stages}-$target"
        ./target/release/tessera rtl --hw "$hw" --out "$out" --target "$target" --pnr skip >/dev/null
        python3 - "$out/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
a = r["array"]
for x in r["arrays"]:
    res = x["resources"]
    print(f'| {a["rows"]}x{a["cols"]} | {x["input"]} | {a["pe_pipeline_stages"]} | {r["target"]} | '
          f'{res["luts"]} | {res["flip_flops"]} | {res["dsps"]} | {res["block_rams"]} |')
PY
    done
done
