//! What the RTL tests share: finding the HDL tools, scratch directories,
//! and running Icarus Verilog and Verilator on generated files.
//!
//! A test that needs a missing tool says so and passes, unless
//! `TESSERA_REQUIRE_TOOLS` is set (`scripts/test.sh`, hence CI, sets it),
//! in which case it fails. Each `tests/rtl_*.rs` includes this module with
//! `mod hdl;`, so not every test crate uses every function.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether `name` can be run; panics when it cannot and the tools are required.
pub fn tool(name: &str) -> bool {
    let found = Command::new(name).arg("-V").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("TESSERA_REQUIRE_TOOLS").is_none(),
            "{name} is required (TESSERA_REQUIRE_TOOLS is set) but not installed; run scripts/test.sh"
        );
        eprintln!("skipped: {name} is not installed");
    }
    found
}

/// An empty directory of its own for test `name` of this test crate and process.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "tessera-{}-{}-{name}",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes `files` (name, text) into `dir`; returns the names of the Verilog sources among them.
pub fn write_files(dir: &Path, files: &[(String, String)]) -> Vec<String> {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    files
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| n.ends_with(".v"))
        .collect()
}

/// Compiles `sources` (relative to `dir`) with Icarus Verilog, runs the
/// result, and returns its standard output.
pub fn iverilog(dir: &Path, sources: &[String]) -> String {
    let out = Command::new("iverilog")
        .args([
            "-g2005",
            "-Wall",
            "-DNO_ICE40_DEFAULT_ASSIGNMENTS",
            "-o",
            "sim.vvp",
        ])
        .args(sources)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "iverilog {sources:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new("vvp")
        .args(["-n", "sim.vvp"])
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&run.stdout).into_owned()
}

/// Writes `files` (a testbench and what it needs) and runs them under Icarus Verilog.
pub fn iverilog_files(dir: &Path, files: &[(String, String)]) -> String {
    let sources = write_files(dir, files);
    iverilog(dir, &sources)
}

/// Writes `design` and testbench `tb` (as `tb.v`), runs Icarus Verilog, returns stdout.
pub fn run_iverilog(dir: &Path, design: &[(String, String)], tb: &str) -> String {
    std::fs::write(dir.join("tb.v"), tb).unwrap();
    let mut sources = vec!["tb.v".to_string()];
    sources.extend(write_files(dir, design));
    iverilog(dir, &sources)
}

/// `verilator --lint-only -Wall` of module `top` in `sources`; `Err` holds its messages.
pub fn verilator_lint(dir: &Path, top: &str, sources: &[String]) -> Result<(), String> {
    let out = Command::new("verilator")
        .args(["--lint-only", "-Wall", "--top-module", top])
        .args(sources)
        .current_dir(dir)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Builds testbench module `tb` in `sources` with Verilator, runs it and
/// returns its standard output. The C++ is compiled without optimization:
/// the tests' simulations are short and the build dominates (a core with
/// the `libm` datapath: about 1 minute instead of 2 on two cores).
pub fn verilator_run(dir: &Path, sources: &[String]) -> String {
    let build = Command::new("verilator")
        .args([
            "--binary",
            "--timing",
            "-Wno-fatal",
            "--top-module",
            "tb",
            "-Mdir",
            "obj",
            "-MAKEFLAGS",
            "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0",
        ])
        .args(sources)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "verilator:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let run = Command::new(dir.join("obj/Vtb"))
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&run.stdout).into_owned()
}

/// The core testbench's standard output for `run` under Icarus Verilog, with
/// `mutate` applied to the core module's source (`|t| t` for a real run).
/// The scratch directory is removed unless `KEEP` is set.
pub fn core_output(
    name: &str,
    run: &tessera::cosim::ProgramRun,
    mutate: &dyn Fn(String) -> String,
) -> String {
    let dir = scratch(name);
    let files: Vec<(String, String)> = tessera::cosim::core_files(run)
        .unwrap()
        .into_iter()
        .map(|(n, t)| {
            if n.starts_with("tessera_core_") {
                (n, mutate(t))
            } else {
                (n, t)
            }
        })
        .collect();
    let out = iverilog_files(&dir, &files);
    if std::env::var_os("KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    out
}

/// `(cycles, lead)` of a core testbench's `PASS cycles=N lead=L` line.
pub fn pass_cycles(out: &str) -> Option<(u64, u64)> {
    let rest = out.trim().strip_prefix("PASS cycles=")?;
    let (c, l) = rest.split_once(" lead=")?;
    Some((c.parse().ok()?, l.parse().ok()?))
}
