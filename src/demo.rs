//! `tessera demo`: the README's first command. Today it takes the shipped
//! tiled bf16 matrix multiply (`examples/tiled_matmul.s`, embedded so it runs
//! from any directory) through the whole ISA toolchain: assemble for the
//! `default` preset, check, disassemble, re-assemble and compare bytes.
//! Later issues replace it with simulating a GPT-2 training step.

use std::fmt::Write as _;

use anyhow::{anyhow, bail, Result};
use tessera_isa::asm::assemble;
use tessera_isa::check::check;
use tessera_isa::disasm::disassemble;
use tessera_isa::Arch;

use crate::check_cmd;
use crate::files::print;
use crate::hw;

/// The example, as shipped.
const SOURCE: &str = include_str!("../examples/tiled_matmul.s");
/// The name errors and the summary use for it.
const NAME: &str = "examples/tiled_matmul.s";
/// Disassembled lines shown.
const SHOWN_LINES: usize = 14;

/// `tessera demo`.
pub fn run() -> Result<()> {
    let arch = Arch::preset("default").map_err(|e| anyhow!("{e}"))?;
    let program = assemble(SOURCE, NAME, Some(&arch)).map_err(|e| anyhow!("{e}"))?;
    let bytes = program.to_bytes();
    let report = check(&program);
    let text = disassemble(&program);
    let again = assemble(&text, "<disassembly>", Some(&arch)).map_err(|e| anyhow!("{e}"))?;
    let round_trip = again.to_bytes() == bytes;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "Tessera demo: C[256,256] = A[256,256] x B[256,256] in bf16, tiled 128x128,\n\
         on four concurrent queues (load, matrix, vector, store) joined by tokens.\n"
    );
    let _ = writeln!(out, "hardware `{}`:", arch.name());
    for (label, value) in hw::figures(&arch).into_iter().take(4) {
        let _ = writeln!(out, "  {label}: {value}");
    }
    let _ = writeln!(
        out,
        "\nassembled {NAME} ({} source lines):",
        SOURCE.lines().count()
    );
    out.push_str(&check_cmd::summary(&program, &report));
    let _ = writeln!(
        out,
        "container: {} bytes (16-byte instruction words, embedded hardware TOML, CRC-32)",
        bytes.len()
    );
    let flops = 2.0 * 256.0f64.powi(3);
    let _ = writeln!(
        out,
        "work: {flops:.0} FLOP = {:.2} us at peak ({:.1} TFLOP/s)",
        flops / arch.peak_flops() * 1.0e6,
        arch.peak_flops() / 1.0e12
    );
    let _ = writeln!(out, "\ndependency checker:");
    out.push_str(&check_cmd::findings(&report));
    let _ = writeln!(out, "\ndisassembly of the matrix queue (first lines):");
    for line in text
        .lines()
        .skip_while(|l| *l != ".queue matrix")
        .take(SHOWN_LINES)
    {
        let _ = writeln!(out, "  {line}");
    }
    let _ = writeln!(
        out,
        "\nround trip: assemble -> disassemble -> assemble gives {} bytes",
        if round_trip { "identical" } else { "DIFFERENT" }
    );
    out.push_str(
        "\nnext: `tessera hw list`, `tessera asm examples/tiled_matmul.s -o mm.tsr`, \
         `tessera check mm.tsr`, `tessera disasm mm.tsr`\n",
    );
    print(&out)?;
    if !report.is_clean() {
        bail!("{NAME}: the dependency checker reported findings");
    }
    if !round_trip {
        bail!("{NAME}: the disassembly does not re-assemble to the same bytes");
    }
    Ok(())
}
