//! `tessera check`: structural validation (done when the program is read or
//! assembled) plus the static dependency checker, with a short summary.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Result};
use tessera_isa::check::{check, CheckReport};
use tessera_isa::{Program, Queue};

use crate::files::{load_program, print, shown};
use crate::hw;

/// Per-queue static and executed instruction counts and the token channels.
pub fn summary(p: &Program, report: &CheckReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "hardware `{}` (fingerprint {:016x}), {} symbols, {} instructions",
        p.arch.name(),
        p.arch.fingerprint(),
        p.symbols.len(),
        p.len()
    );
    let _ = writeln!(out, "{:<8} {:>8} {:>10}", "queue", "static", "executed");
    for q in Queue::ALL {
        let _ = writeln!(
            out,
            "{:<8} {:>8} {:>10}",
            q.name(),
            p.queue(q).len(),
            report.executed[q.index()]
        );
    }
    let _ = writeln!(
        out,
        "{:<8} {:>8} {:>10}",
        "total",
        p.len(),
        report.executed.iter().sum::<u64>()
    );
    if report.channels.is_empty() {
        out.push_str("token channels: none\n");
    } else {
        out.push_str("token channels:\n");
        for c in &report.channels {
            let _ = writeln!(
                out,
                "  t{:<3} {:>6} -> {:<6} {:>6} signal{}",
                c.token,
                c.producer.name(),
                c.consumer.name(),
                c.signals,
                if c.signals == 1 { "" } else { "s" }
            );
        }
    }
    out
}

/// The findings, one per line, or a line saying there are none.
pub fn findings(report: &CheckReport) -> String {
    if report.is_clean() {
        return "clean: no races, deadlocks, unbalanced tokens or bad addresses\n".into();
    }
    let mut out = String::new();
    for f in &report.findings {
        let _ = writeln!(out, "{}", f.to_string().replace(['\n', '\r'], " "));
    }
    out
}

/// `tessera check`.
pub fn run(input: &Path, hw_arg: Option<&str>) -> Result<()> {
    let arch = hw_arg.map(hw::load).transpose()?;
    let program = load_program(input, arch.as_ref())?;
    let report = check(&program);
    let mut out = format!("{}: ", shown(input));
    out.push_str(&summary(&program, &report));
    out.push_str(&findings(&report));
    print(&out)?;
    if !report.is_clean() {
        let n = report.findings.len();
        bail!(
            "{}: the dependency checker reported {n} finding{}",
            shown(input),
            if n == 1 { "" } else { "s" }
        );
    }
    Ok(())
}
