//! Hardware descriptions on the command line: `--hw PRESET|FILE.toml` and
//! the `hw show`, `hw list` and `hw check` subcommands.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{anyhow, Result};
use tessera_isa::{Arch, PRESET_NAMES};

use crate::files::{print, read_text, shown};

/// Resolves a `--hw` argument: a path ending in `.toml` is read and
/// validated; anything else names a preset.
pub fn load(arg: &str) -> Result<Arch> {
    if arg.ends_with(".toml") {
        let path = Path::new(arg);
        let text = read_text(path)?;
        Arch::from_toml(&text).map_err(|e| anyhow!("{}: {e}", shown(path)))
    } else {
        Arch::preset(arg).map_err(|e| {
            if arg.contains(['/', '.']) {
                anyhow!("{e}; a hardware file name must end in .toml")
            } else {
                anyhow!("{e}")
            }
        })
    }
}

/// Derived figures of a description, one `label: value` per line.
pub fn figures(a: &Arch) -> Vec<(&'static str, String)> {
    let s = a.spec();
    let peak = a.peak_flops();
    let hbm_bytes_per_s = s.hbm.bandwidth_gb_per_s * 1.0e9;
    vec![
        ("fingerprint", format!("{:016x}", a.fingerprint())),
        (
            "peak matrix throughput",
            format!(
                "{:.3} TFLOP/s ({} MACs/cycle x {} cores)",
                peak / 1.0e12,
                u64::from(a.rows()) * u64::from(a.cols()),
                s.chip.cores
            ),
        ),
        ("cycle time", format!("{:.3} ns", a.cycle_seconds() * 1.0e9)),
        (
            "HBM bandwidth",
            format!("{:.2} bytes/cycle (chip)", a.hbm_bytes_per_cycle()),
        ),
        (
            "HBM latency",
            format!("{} cycles", a.hbm_latency_cycles().get()),
        ),
        (
            "machine balance",
            format!(
                "{:.1} FLOP per HBM byte (GEMMs below this intensity are memory-bound)",
                peak / hbm_bytes_per_s
            ),
        ),
        (
            "scratchpad",
            format!(
                "{} bytes per core, {} bytes/cycle over {} banks",
                a.scratchpad_bytes().get(),
                u64::from(s.scratchpad.banks) * u64::from(s.scratchpad.bank_width_bytes),
                s.scratchpad.banks
            ),
        ),
        (
            "accumulator",
            format!(
                "{} bytes per core = {} fp32 output tiles of {}x{}",
                a.accumulator_bytes().get(),
                a.accumulator_bytes().get() / (u64::from(a.rows()) * u64::from(a.cols()) * 4),
                a.rows(),
                a.cols()
            ),
        ),
        (
            "vector unit",
            format!(
                "{:.1} GFLOP/s simple, {:.1} G/s special per core",
                f64::from(s.vector.lanes) * s.clock.frequency_mhz / 1.0e3,
                f64::from(s.vector.special_lanes) * s.clock.frequency_mhz / 1.0e3
            ),
        ),
    ]
}

/// `tessera hw show`: canonical TOML, then the derived figures as TOML
/// comments, so the output is itself a valid description.
pub fn show(arg: &str) -> Result<()> {
    let a = load(arg)?;
    let mut out = a.to_toml();
    out.push_str("\n# Derived figures (not part of the description):\n");
    for (label, value) in figures(&a) {
        let _ = writeln!(out, "# {label}: {value}");
    }
    print(&out)
}

/// `tessera hw list`.
pub fn list() -> Result<()> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:>9} {:>9} {:>6} {:>13} {:>10} {:>10}",
        "preset", "array", "clock", "cores", "peak", "HBM", "scratchpad"
    );
    for name in PRESET_NAMES {
        let a = Arch::preset(name).map_err(|e| anyhow!("{e}"))?;
        let s = a.spec();
        let _ = writeln!(
            out,
            "{:<12} {:>9} {:>5} MHz {:>6} {:>13} {:>10} {:>6} KiB",
            name,
            format!("{}x{}", a.rows(), a.cols()),
            s.clock.frequency_mhz,
            s.chip.cores,
            rate(a.peak_flops(), "FLOP/s"),
            rate(s.hbm.bandwidth_gb_per_s * 1.0e9, "B/s"),
            s.scratchpad.size_kib
        );
    }
    out.push_str("\nshow one with `tessera hw show PRESET`; write your own from its output\n");
    print(&out)
}

/// `value` with a T, G or M prefix and three significant digits.
fn rate(value: f64, unit: &str) -> String {
    let (v, p) = if value >= 1.0e12 {
        (value / 1.0e12, "T")
    } else if value >= 1.0e9 {
        (value / 1.0e9, "G")
    } else {
        (value / 1.0e6, "M")
    };
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$} {p}{unit}")
}

/// `tessera hw check`.
pub fn check(arg: &str) -> Result<()> {
    let a = load(arg)?;
    print(&format!(
        "{arg}: ok: `{}`, {}x{} array, fingerprint {:016x}\n",
        a.name(),
        a.rows(),
        a.cols(),
        a.fingerprint()
    ))
}
