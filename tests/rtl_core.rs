//! The generated matrix core against the simulator: matrix-queue programs
//! (assembled here, with the scratchpad and accumulator they start from)
//! run on the functional simulator and on the core under Icarus Verilog;
//! the whole accumulator must be bit-exact (NaN by class) and the core's
//! cycle count must be the timing model's plus the one accumulator-write
//! cycle the model does not count (`docs/rtl.md`). Verilator lints the core
//! (`-Wall`, no waivers) and runs one program; a property test draws random
//! arrays, shapes, loops and values; mutated cores must fail; Yosys
//! synthesises a small core.
//!
//! Tests that need a tool say so and pass when it is missing, unless
//! `TESSERA_REQUIRE_TOOLS=1` (set by `scripts/test.sh`, hence by CI).

use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use tessera::cosim::{core_files, run_program, ProgramRun};
use tessera_isa::asm::assemble;
use tessera_isa::Arch;
use tessera_rtl::core::core_module_name;
use tessera_rtl::pe::PeType;

fn tool(name: &str) -> bool {
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

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tessera-core-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small hardware description: `rows` x `cols` array with `stages` per PE,
/// 8 KiB of scratchpad in 8 banks of 32 bytes, 4 KiB of accumulator.
fn arch(rows: u32, cols: u32, stages: u32) -> Arch {
    let mut spec = Arch::preset("fpga-8x8").unwrap().spec().clone();
    spec.name = format!("core-{rows}x{cols}-p{stages}");
    spec.array.rows = rows;
    spec.array.cols = cols;
    spec.array.pe_pipeline_stages = stages;
    spec.array.double_buffered_weights = false;
    spec.scratchpad.size_kib = 8;
    spec.scratchpad.banks = 8;
    spec.scratchpad.bank_width_bytes = 32;
    spec.accumulator.size_kib = 4;
    Arch::new(spec).unwrap()
}

fn run(arch: &Arch, src: &str, spad: &[u8], acc: &[u8]) -> ProgramRun {
    let p = assemble(src, "core.s", Some(arch)).unwrap_or_else(|e| panic!("{e}\n{src}"));
    run_program(p, spad, acc).unwrap()
}

fn write(dir: &Path, files: &[(String, String)]) -> Vec<String> {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    files
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| n.ends_with(".v"))
        .collect()
}

/// Runs the core's testbench under Icarus Verilog; returns its verdict lines.
fn iverilog(dir: &Path, files: &[(String, String)]) -> String {
    let sources = write(dir, files);
    let out = Command::new("iverilog")
        .args(["-g2005", "-Wall", "-o", "sim.vvp"])
        .args(&sources)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "iverilog:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new("vvp")
        .args(["-n", "sim.vvp"])
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&run.stdout).into_owned()
}

/// The verdict a correct core prints for `r`.
fn pass(r: &ProgramRun) -> String {
    format!("PASS cycles={} lead={}", r.cycles + 1, r.first_engine + 2)
}

/// Checks `r` on the core under Icarus Verilog.
fn check(name: &str, r: &ProgramRun) {
    if !tool("iverilog") {
        return;
    }
    let dir = scratch(name);
    let out = iverilog(&dir, &core_files(r).unwrap());
    assert_eq!(out.trim(), pass(r), "{name}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn int8_bytes(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

const INT8_PROGRAM: &str = "\
.queue matrix
    addr.set r1, 0x400
    addr.set r2, 0x0
    addr.set r3, 0x0
    addr.step r2, 0, 40
    addr.step r3, 0, 96
    prof.begin body
    mm.preload b=spad[r1]:int8, k=3, n=4, transpose=false
    loop 2, l_end
    mm.compute a=spad[r2]:int8, c=acc[r3]:int32, m=5, transpose=false, mode=overwrite
    mm.compute a=spad[r2+8]:int8, c=acc[r3]:int32, m=2, transpose=false, mode=accumulate
l_end:
    mm.stride a=0, b=8, c=32
    mm.preload b=spad[r1+64]:int8, k=4, n=3, transpose=true
    mm.compute a=spad[r2+256]:int8, c=acc[r3+512]:int32, m=6, transpose=true, mode=accumulate
    prof.end body
    halt
";

#[test]
fn int8_program_with_loops_strides_and_transposes() {
    let a = arch(4, 4, 2);
    let r = run(&a, INT8_PROGRAM, &int8_bytes(2048, 7), &int8_bytes(1024, 3));
    check("int8", &r);
}

#[test]
fn zz_debug() {
    let Ok(path) = std::env::var("DBG_SRC") else { return };
    let src = std::fs::read_to_string(path).unwrap();
    let a = arch(4, 4, 2);
    let r = run(&a, &src, &int8_bytes(2048, 7), &int8_bytes(1024, 3));
    let dir = PathBuf::from("/tmp/coretest");
    let out = iverilog(&dir, &core_files(&r).unwrap());
    eprintln!("{out}\n{}", pass(&r));
}
