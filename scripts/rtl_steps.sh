#!/usr/bin/env bash
# Run every compiled training step the generated core accepts (a one-layer
# GPT-2 and Llama, fp32 and bf16-mixed, AdamW, SGD, Lion, LAMB and
# Adafactor: twenty programs) on the core under Verilator, each checked
# bit-exact against the functional simulator and within the sequencer
# slack of the timing model (docs/rtl.md, "A whole compiled training
# step"). Each needs a Verilator build of about two minutes on a 2-core
# machine, so this is a script; CI runs the GPT-2 bf16-mixed AdamW step
# only (tests/rtl_step.rs). Needs verilator (Debian).
#
#   scripts/rtl_steps.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export TESSERA_ALL_STEPS=1
exec cargo test --release --test rtl_step -- --nocapture \
    a_whole_training_step_runs_on_the_core_bit_exact
