//! `tessera demo`: the README's first command. Today it takes the shipped
//! tiled bf16 matrix multiply (`examples/tiled_matmul.s`, embedded so it runs
//! from any directory) through the whole toolchain: assemble for the
//! `default` preset, check, disassemble and re-assemble, run it on real
//! numbers (checked against an f64 reference) and in timing mode. Later
//! issues replace it with simulating a GPT-2 training step.

use std::fmt::Write as _;

use anyhow::{anyhow, bail, Result};
use tessera_isa::asm::assemble;
use tessera_isa::check::check;
use tessera_isa::disasm::disassemble;
use tessera_isa::program::MemSpace;
use tessera_isa::{Arch, Program};
use tessera_sim::{run_functional, simulate, Memory};

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
    let worst = functional_error(&program)?;
    let _ = writeln!(
        out,
        "\nfunctional run on random bf16 inputs: largest error of C against an f64 reference \
         is {worst:.2e} relative (bf16 output rounding is 3.9e-3)"
    );
    let (sim, _) = simulate(&program, false).map_err(|e| anyhow!("{NAME}: {e}"))?;
    let _ = writeln!(out, "\ntiming run (`tessera sim`):");
    for line in sim.to_table().lines() {
        let _ = writeln!(out, "  {line}");
    }
    out.push_str(
        "\nnext: `tessera hw list`, `tessera asm examples/tiled_matmul.s -o mm.tsr`, \
         `tessera check mm.tsr`, `tessera sim mm.tsr --trace mm.trace.json`\n",
    );
    print(&out)?;
    if !report.is_clean() {
        bail!("{NAME}: the dependency checker reported findings");
    }
    if !round_trip {
        bail!("{NAME}: the disassembly does not re-assemble to the same bytes");
    }
    if worst > 1.0 / 128.0 {
        bail!("{NAME}: the functional result is off by {worst:.2e} relative");
    }
    Ok(())
}

/// Runs the program on deterministic random bf16 A and B and returns the
/// largest error of C against an f64 matrix product, relative to max |C|.
fn functional_error(p: &Program) -> Result<f64> {
    let n = 256usize;
    let sym = |name: &str| {
        p.symbols
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.addr)
            .ok_or_else(|| anyhow!("{NAME}: no symbol `{name}`"))
    };
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        half::bf16::from_f32((seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
    };
    let a: Vec<half::bf16> = (0..n * n).map(|_| next()).collect();
    let b: Vec<half::bf16> = (0..n * n).map(|_| next()).collect();
    let bytes = |v: &[half::bf16]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let mut mem = Memory::new(&p.arch);
    mem.write(MemSpace::Hbm, sym("A")?, &bytes(&a))?;
    mem.write(MemSpace::Hbm, sym("B")?, &bytes(&b))?;
    run_functional(p, &mut mem, tessera_sim::functional::DEFAULT_LIMIT)
        .map_err(|e| anyhow!("{NAME}: {e}"))?;
    let c = mem.read_vec(MemSpace::Hbm, sym("C")?, n * n * 2)?;
    let mut worst = 0f64;
    let mut scale = 0f64;
    for i in 0..n {
        for j in 0..n {
            let exact: f64 = (0..n)
                .map(|k| f64::from(a[i * n + k].to_f32()) * f64::from(b[k * n + j].to_f32()))
                .sum();
            let got = f64::from(
                half::bf16::from_le_bytes([c[2 * (i * n + j)], c[2 * (i * n + j) + 1]]).to_f32(),
            );
            worst = worst.max((got - exact).abs());
            scale = scale.max(exact.abs());
        }
    }
    Ok(worst / scale)
}
